// The harness itself: a test file the runner ends at its time bound leaves no child running
// (the runner's SIGTERM skips `after` hooks and the exit hook; the harness handles it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { tempDir, waitUntil, E2E_DIR } from "./lib/harness.mjs";

function alive(pid) {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

test("a file ended by the runner's time bound leaves no child running", { timeout: 60000 }, async () => {
    const pidFile = path.join(tempDir(), "child.pid");
    // A runner of its own, not a subprocess reporting to this one.
    const env = { ...process.env, HARNESS_PID_FILE: pidFile };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ["--test", "--test-timeout=3000", path.join(E2E_DIR, "lib", "hangs-with-child.mjs")], {
        env,
        encoding: "utf8",
        timeout: 45000,
    });
    assert.notEqual(r.status, 0, "the hanging file must fail");
    assert.ok(existsSync(pidFile), `the child was not started: ${r.stdout}${r.stderr}`);
    const pid = Number(readFileSync(pidFile, "utf8"));
    assert.ok(pid > 0);
    await waitUntil(async () => !alive(pid), 5000, "the child to be gone");
});
