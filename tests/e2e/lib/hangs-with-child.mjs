// Used by harness.test.mjs: a test file that starts a child through the harness, writes its
// pid to the file named by argv, and never ends, so the test runner's time bound ends it.
import { test } from "node:test";
import { writeFileSync } from "node:fs";
import { Child } from "./harness.mjs";

test("outlives its time bound", async () => {
    const c = new Child("sleeper", "sleep", ["600"]);
    writeFileSync(process.env.HARNESS_PID_FILE, String(c.pid));
    await new Promise(() => {});
});
