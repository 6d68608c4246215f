// One backend with two endpoints: two demo backend processes (--stateless: no sessions, so
// either may answer any request) behind one toolgate backend.
//
// - calls are spread over both endpoints (round-robin);
// - one is killed: once toolgate has ejected it or its health check failed, every call
//   succeeds on the other;
// - it is restarted on the same port: its health check passes and calls reach it again.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startToolgate, startEhr, killAll, freePort, withLogs, waitUntil, sleep } from "./lib/harness.mjs";

after(killAll);

const HEADERS = {
    "Content-Type": "application/json",
    Accept: "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
};

let nextId = 1;
async function call(url) {
    const res = await fetch(url, {
        method: "POST",
        headers: HEADERS,
        body: JSON.stringify({
            jsonrpc: "2.0",
            id: nextId++,
            method: "tools/call",
            params: { name: "get_patient", arguments: { patient_id: "P123" } },
        }),
    });
    const text = await res.text();
    return { status: res.status, body: text };
}

/* tools/call lines a backend process logged (one per HTTP request). */
function calls(ehr) {
    return ehr.child.stderrLines.filter((l) => l.includes('"tool":"get_patient"')).length;
}

describe("a backend with two endpoints", () => {
    let tg, a, b, portB;

    before(async () => {
        a = await startEhr("json", ["--stateless"]);
        portB = await freePort();
        b = await startEhr("json", ["--stateless"], portB);
        tg = await startToolgate({
            routes: [
                {
                    name: "ehr",
                    path: "/mcp",
                    backends: [
                        {
                            name: "ehr",
                            endpoints: [a.url, b.url],
                            health: { path: "/healthz", interval: "200ms", timeout: "200ms", unhealthy: 1, healthy: 1 },
                            eject: { failures: 1, base: "1s", max: "2s" },
                        },
                    ],
                },
            ],
        });
    });

    after(async () => {
        if (tg) await tg.stop();
        if (a) await a.stop();
        if (b) await b.stop();
    });

    test("calls are spread over both endpoints", async () => {
        const before = [calls(a), calls(b)];
        for (let i = 0; i < 10; i++) {
            const r = await withLogs(call(tg.url), tg.child);
            assert.equal(r.status, 200, r.body);
            assert.match(r.body, /Daniel Patel/);
        }
        await waitUntil(() => calls(a) + calls(b) - before[0] - before[1] === 10, 2000, "backend log lines");
        assert.equal(calls(a) - before[0], 5);
        assert.equal(calls(b) - before[1], 5);
    });

    test("one endpoint dies: after it is marked down, every call succeeds on the other", async () => {
        await b.child.kill();
        await tg.waitForLog(
            (l) => (l.event === "endpoint_down" || l.event === "endpoint_ejected") && l.endpoint === 1,
            5000,
            "endpoint 1 marked down or ejected",
        );
        const beforeA = calls(a);
        for (let i = 0; i < 10; i++) {
            const r = await call(tg.url);
            assert.equal(r.status, 200, r.body);
        }
        await waitUntil(() => calls(a) - beforeA === 10, 2000, "all ten calls on endpoint 0");
    });

    test("it comes back when restarted", async () => {
        b = await startEhr("json", ["--stateless"], portB);
        await tg.waitForLog((l) => l.event === "endpoint_up" && l.endpoint === 1, 5000, "endpoint 1 up again");
        // An ejection (if the kill was seen by a request first) ends when the check passes.
        await sleep(50);
        const before = [calls(a), calls(b)];
        for (let i = 0; i < 10; i++) {
            const r = await call(tg.url);
            assert.equal(r.status, 200, r.body);
        }
        await waitUntil(() => calls(a) + calls(b) - before[0] - before[1] === 10, 2000, "backend log lines");
        assert.ok(calls(b) - before[1] >= 4, `endpoint 1 served ${calls(b) - before[1]} of 10`);
    });

    test("no endpoint usable: 503 with a JSON-RPC error", async () => {
        await a.child.kill();
        await b.child.kill();
        await waitUntil(async () => (await call(tg.url)).status === 503, 5000, "503 once both are down");
        const r = await call(tg.url);
        assert.equal(r.status, 503);
        const body = JSON.parse(r.body);
        assert.equal(body.error.code, -32603);
        assert.match(JSON.stringify(body), /routing\.no_healthy_endpoint|No endpoint/);
    });
});
