// Graceful shutdown on SIGTERM: requests in flight finish, new connections are refused, open
// server streams end, the process exits 0 — and the shutdown deadline is honoured.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startToolgate, killAll, sleep, waitUntil, withTimeout } from "./lib/harness.mjs";
import { startBackend, sseEvent } from "./lib/backend.mjs";
import { RawConn, postJson, request, jsonBody, parseSse } from "./lib/raw.mjs";

const backends = [];
after(async () => {
    for (const b of backends) await b.close();
    await killAll();
});

function connectOutcome(port) {
    return withTimeout(
        new Promise((resolve) => {
            const s = net.connect(port, "127.0.0.1");
            s.once("connect", () => {
                s.destroy();
                resolve("connected");
            });
            s.once("error", (e) => resolve(e.code));
        }),
        3000,
        "connect outcome",
    );
}

test("SIGTERM with a slow POST in flight: it completes, new connections refused, exit 0", async () => {
    const backend = await startBackend(async (req, res, body) => {
        await sleep(1500);
        const s = JSON.stringify({ jsonrpc: "2.0", id: JSON.parse(body).id, result: { slow: true } });
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(s);
    });
    backends.push(backend);
    const tg = await startToolgate({ routes: [{ url: backend.url }], limits: { shutdown_timeout: "10s" } });
    const c = await RawConn.open(tg.port);
    await c.write(postJson("/mcp", { jsonrpc: "2.0", id: "inflight", method: "tools/call", params: { name: "x" } }));
    await waitUntil(() => backend.received.length === 1, 3000, "the backend to get the request");

    const t0 = Date.now();
    tg.signalTerm();
    await tg.waitForLog((l) => l.event === "shutdown", 2000, "the shutdown log line");
    await sleep(100);
    assert.equal(await connectOutcome(tg.port), "ECONNREFUSED", "no new connections while draining");

    const res = await c.readResponse(5000);
    assert.equal(res.status, 200);
    assert.deepEqual(jsonBody(res), { jsonrpc: "2.0", id: "inflight", result: { slow: true } });
    assert.equal(res.headers.connection, "close", "the drained connection is not kept alive");
    await c.waitClosed(2000);
    c.close();

    const r = await tg.stop(5000);
    assert.equal(r.code, 0);
    const took = Date.now() - t0;
    assert.ok(took < 5000, `exited ${took} ms after SIGTERM (in-flight answer took ~1.5 s)`);
    const log = tg.requestLogs().find((l) => l.status === 200);
    assert.ok(log, "the in-flight request was logged");
});

test("SIGTERM ends an open GET SSE stream cleanly and exits without waiting for the deadline", async () => {
    let backendStreamClosed = false;
    const backend = await startBackend((req, res) => {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(
            sseEvent({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "hello" } }, "1"),
        );
        res.on("close", () => (backendStreamClosed = true));
        // Never ends on its own.
    });
    backends.push(backend);
    const tg = await startToolgate({ routes: [{ url: backend.url }], limits: { shutdown_timeout: "10s" } });
    // A GET stream without a session (a stateless backend's); sessions are toolgate's own.
    const c = await RawConn.open(tg.port);
    await c.write(request("GET", "/mcp", { Accept: "text/event-stream" }));
    await c.waitForData((s) => s.includes("hello"), 3000, "the first event");

    const t0 = Date.now();
    tg.signalTerm();
    const res = await c.readResponse(3000);
    const ended = Date.now() - t0;
    assert.equal(res.status, 200);
    assert.equal(res.cleanEnd, true, "the stream ends with its last chunk");
    assert.equal(parseSse(res.body.toString()).length, 1);
    assert.ok(ended < 2000, `stream ended ${ended} ms after SIGTERM`);
    const r = await tg.stop(5000);
    assert.equal(r.code, 0);
    assert.ok(Date.now() - t0 < 4000, "exit well before shutdown_timeout (10 s)");
    await waitUntil(() => backendStreamClosed, 2000, "the backend stream to be closed");
    c.close();
});

test("a request still running at shutdown_timeout is cut and the process still exits 0", async () => {
    const backend = await startBackend(() => {
        /* never answers */
    });
    backends.push(backend);
    const tg = await startToolgate({ routes: [{ url: backend.url }], limits: { shutdown_timeout: "1s" } });
    const c = await RawConn.open(tg.port);
    await c.write(postJson("/mcp", { jsonrpc: "2.0", id: 1, method: "ping" }));
    await waitUntil(() => backend.received.length === 1, 3000, "the backend to get the request");
    const t0 = Date.now();
    tg.signalTerm();
    const r = await tg.stop(5000);
    const took = Date.now() - t0;
    assert.equal(r.code, 0);
    assert.ok(took >= 900 && took < 3500, `exited ${took} ms after SIGTERM (deadline 1 s)`);
    await c.waitClosed(2000);
    c.close();
    assert.ok(
        tg.logs().some((l) => l.event === "shutdown" && l.level === "warn"),
        "the forced close is logged",
    );
});

test("idle keep-alive connections are closed at once on SIGTERM", async () => {
    const backend = await startBackend();
    backends.push(backend);
    const tg = await startToolgate({ routes: [{ url: backend.url }], limits: { shutdown_timeout: "10s" } });
    const c = await RawConn.open(tg.port);
    await c.write(postJson("/mcp", { jsonrpc: "2.0", id: 1, method: "ping" }));
    assert.equal((await c.readResponse()).status, 200);
    const t0 = Date.now();
    tg.signalTerm();
    await c.waitClosed(2000);
    const r = await tg.stop(3000);
    assert.equal(r.code, 0);
    assert.ok(Date.now() - t0 < 2000);
    c.close();
});

// The drain is done but the process is still tearing down (flushing the audit log): a
// repeated SIGTERM (supervisors resend it) must not turn a clean exit into a signal death.
test(
    "a second SIGTERM after the drain still ends with exit 0",
    async () => {
        const backend = await startBackend();
        backends.push(backend);
        let killed = 0;
        for (let i = 0; i < 5; i++) {
            const tg = await startToolgate({ routes: [{ url: backend.url }] });
            tg.signalTerm();
            await tg
                .waitForLog((l) => l.msg === "all workers stopped", 3000, "drain done")
                .catch(() => {});
            if (tg.child.running) tg.child.proc.kill("SIGTERM");
            const r = await withTimeout(tg.child.exited, 5000, "exit");
            if (r.code !== 0) killed++;
        }
        assert.equal(killed, 0, "runs ended by the second SIGTERM instead of exit 0");
    },
);
