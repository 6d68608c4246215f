// `toolgate status`: a terminal summary of a running gateway through its admin listener, and
// the /admin/status document it reads.
import { test, after, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { startToolgate, killAll, tempDir, freePort, TOOLGATE_BIN } from "./lib/harness.mjs";
import { startBackend } from "./lib/backend.mjs";

const status = (...args) => spawnSync(TOOLGATE_BIN, ["status", ...args], { encoding: "utf8", timeout: 20000 });

after(async () => {
    await killAll();
});

describe("toolgate status", () => {
    test("summarises the build, the configuration's routes and the readiness checks; exit 0 when ready", async () => {
        const backend = await startBackend();
        const tg = await startToolgate({ admin: true, routes: [{ name: "ehr", path: "/mcp", url: backend.url }] });
        try {
            const doc = await (await fetch(`${tg.adminBase}/admin/status`)).json();
            assert.equal(doc.status, "ready");
            assert.equal(doc.config.routes[0].name, "ehr");
            assert.equal(doc.config.routes[0].backends[0].protocol, "auto");
            assert.equal(typeof doc.uptime_s, "number");
            assert.equal(doc.checks.config.state, "ok");
            const r = status("--admin", tg.adminBase);
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stdout, /^toolgate \S+ \(\S+\): ready, up \d+s/m);
            assert.match(r.stdout, /ehr\s+\/mcp\s+mcp\s+backend \(1 endpoint, auto\)/);
            assert.match(r.stdout, /checks:\n(.|\n)*config\s+ok/);
            // Nothing admin on the main listener.
            assert.equal((await fetch(`${tg.base}/admin/status`)).status, 404);
        } finally {
            await tg.stop();
            await backend.close();
        }
    });

    test("with an admin token: refused without it (exit 2, says why), answered with it", async () => {
        const dir = tempDir();
        const tokenFile = path.join(dir, "admin.token");
        writeFileSync(tokenFile, "status-test-token-0123456789\n");
        const backend = await startBackend();
        const tg = await startToolgate({ admin: { token_file: tokenFile }, routes: [{ url: backend.url }] });
        try {
            const without = status("--admin", tg.adminBase);
            assert.equal(without.status, 2);
            assert.match(without.stderr, /401.*token/);
            const withToken = status("--admin", `${tg.adminBase}/`, "--token-file", tokenFile);
            assert.equal(withToken.status, 0, withToken.stderr);
            assert.doesNotMatch(withToken.stdout, /status-test-token/, "the token is never printed");
        } finally {
            await tg.stop();
            await backend.close();
        }
    });

    test("nothing listening: exit 2 with the reason", async () => {
        const port = await freePort();
        const r = status("--admin", `http://127.0.0.1:${port}`);
        assert.equal(r.status, 2);
        assert.match(r.stderr, /cannot reach/);
    });
});
