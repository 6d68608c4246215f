// The structured log: one JSON line per request on a route, naming the request id that the
// client got in X-Request-Id, with the status the client saw; no secrets in any line.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startToolgate, killAll, freePort } from "./lib/harness.mjs";
import { startBackend, echoRpc, sseEvent } from "./lib/backend.mjs";
import { exchange, postJson, request } from "./lib/raw.mjs";
import { openSession } from "./lib/session.mjs";

let tg;
let backend;
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

before(async () => {
    backend = await startBackend((req, res, body) => {
        if (req.method === "GET") {
            res.writeHead(200, { "Content-Type": "text/event-stream" });
            res.end(sseEvent({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: 1 } }));
        } else if (req.method === "DELETE") {
            res.writeHead(204);
            res.end();
        } else echoRpc(req, res, body);
    });
    const closed = await freePort();
    tg = await startToolgate({
        routes: [
            { name: "main", path: "/mcp", url: backend.url },
            { name: "down", path: "/down", url: `http://127.0.0.1:${closed}/mcp` },
        ],
    });
});

after(async () => {
    try {
        if (tg) await tg.stop();
    } finally {
        if (backend) await backend.close();
        await killAll();
    }
});

const secret = "Bearer log-secret-0123456789";

test("each request on a route: one log line whose request_id is the X-Request-Id, with its status", async () => {
    const sid = await openSession(tg.port, backend, "backend-s");
    const cases = [
        { name: "allowed POST", bytes: postJson("/mcp", { jsonrpc: "2.0", id: 1, method: "ping" }, { Authorization: secret }), status: 200, method: "POST", route: "main", rpc: "ping" },
        { name: "notification", bytes: postJson("/mcp", { jsonrpc: "2.0", method: "notifications/initialized" }), status: 202, method: "POST", route: "main" },
        { name: "bad JSON", bytes: postJson("/mcp", "{nope", { Authorization: secret }), status: 400, method: "POST", route: "main", decision: "deny" },
        { name: "wrong content type", bytes: postJson("/mcp", "{}", { "Content-Type": "text/plain" }), status: 415, method: "POST", route: "main", decision: "deny" },
        { name: "backend down", bytes: postJson("/down", { jsonrpc: "2.0", id: 2, method: "tools/list" }), status: 502, method: "POST", route: "down" },
        { name: "GET stream", bytes: request("GET", "/mcp", { Accept: "text/event-stream" }), status: 200, method: "GET", route: "main" },
        { name: "unknown session", bytes: request("DELETE", "/mcp", { "Mcp-Session-Id": "made-up" }), status: 404, method: "DELETE", route: "main", decision: "deny" },
        { name: "DELETE", bytes: request("DELETE", "/mcp", { "Mcp-Session-Id": sid }), status: 204, method: "DELETE", route: "main" },
    ];
    const ids = new Set();
    for (const c of cases) {
        const res = await exchange(tg.port, c.bytes);
        assert.equal(res.status, c.status, c.name);
        const rid = res.headers["x-request-id"];
        assert.match(rid ?? "", UUID7, `${c.name}: X-Request-Id`);
        assert.ok(!ids.has(rid), `${c.name}: request ids are unique`);
        ids.add(rid);
        const line = await tg.logFor(rid);
        assert.equal(line.status, c.status, c.name);
        assert.equal(line.http_method, c.method, c.name);
        assert.equal(line.route, c.route, c.name);
        assert.equal(line.level, "info");
        assert.equal(typeof line.duration_ms, "number");
        assert.ok(!Number.isNaN(Date.parse(line.ts)), `${c.name}: ts is a timestamp`);
        if (c.rpc) assert.equal(line.rpc_method, c.rpc, c.name);
        if (c.decision) assert.equal(line.decision, c.decision, c.name);
    }
    // Exactly one line per request (the lines are written when the exchange ends).
    for (const rid of ids)
        assert.equal(tg.requestLogs().filter((l) => l.request_id === rid).length, 1, rid);
});

test("no log line carries the bearer token or request bodies", async () => {
    const marker = "123-45-6789-body-marker";
    const res = await exchange(
        tg.port,
        postJson(
            "/mcp",
            { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "x", arguments: { ssn: marker } } },
            { Authorization: secret },
        ),
    );
    assert.equal(res.status, 200);
    await tg.logFor(res.headers["x-request-id"]);
    const all = tg.child.stderrLines.join("\n") + tg.child.stdoutLines.join("\n");
    assert.ok(!all.includes("log-secret-0123456789"), "token in the log");
    assert.ok(!all.includes(marker), "argument value in the log");
});

test("every stderr line is one JSON object", async () => {
    const lines = tg.child.stderrLines.filter((l) => l.trim());
    assert.ok(lines.length > 5);
    for (const l of lines) {
        const v = JSON.parse(l);
        assert.equal(typeof v.ts, "string");
        assert.equal(typeof v.level, "string");
        assert.equal(typeof v.event, "string");
    }
});

// Answers the server gives before a route is involved (unknown path, wrong method, malformed
// HTTP) carry an X-Request-Id and leave a request log line, so they can be correlated too.
test(
    "answers outside a route (404, 405 on a route, 413) carry X-Request-Id and a log line",
    async () => {
        for (const bytes of [
            postJson("/unknown", { jsonrpc: "2.0", id: 1, method: "ping" }),
            request("PUT", "/mcp", { "Content-Length": 0 }),
            request("POST", "/mcp", { "Content-Type": "application/json", "Content-Length": 10 * 1024 * 1024 }),
        ]) {
            const res = await exchange(tg.port, bytes);
            const rid = res.headers["x-request-id"];
            assert.match(rid ?? "", UUID7, `status ${res.status}: X-Request-Id`);
            const line = await tg.logFor(rid, 1000);
            assert.equal(line.status, res.status);
        }
    },
);
