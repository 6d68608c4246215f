// Which headers cross the gateway, in each direction. A test backend records exactly what it
// received; the client side is a raw socket, so every header sent and received is visible.
//
// Client -> backend: Content-Type, Accept, MCP-Protocol-Version, Last-Event-ID, plus
// toolgate's own X-Request-Id (and Host/Content-Length of the new request), and the backend's
// own session id for toolgate's session the client names. Nothing else: not Authorization,
// hop-by-hop headers, cookies or custom headers, nor the client's Mcp-Session-Id.
// Backend -> client: Content-Type, MCP-Protocol-Version, Cache-Control, Retry-After, Allow,
// plus toolgate's X-Request-Id and session id, Date, Server and framing. Nothing else.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startToolgate, killAll } from "./lib/harness.mjs";
import { startBackend, echoRpc, sseEvent } from "./lib/backend.mjs";
import { RawConn, request, exchange, jsonBody, parseSse } from "./lib/raw.mjs";
import { openSession } from "./lib/session.mjs";

let tg;
let backend;

before(async () => {
    backend = await startBackend();
    tg = await startToolgate({ routes: [{ url: backend.url }] });
});

after(async () => {
    try {
        if (tg) await tg.stop();
    } finally {
        if (backend) await backend.close();
        await killAll();
    }
});

const names = (rawHeaders) => rawHeaders.map(([n]) => n.toLowerCase()).sort();

test("request headers: relayed allowlist; Authorization and hop-by-hop never forwarded", async () => {
    const sid = await openSession(tg.port, backend, "session-abc-123");
    const mark = backend.received.length;
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    const c = await RawConn.open(tg.port);
    await c.write(
        request("POST", "/mcp?x=1", [
            ["Host", `127.0.0.1:${tg.port}`],
            ["Authorization", "Bearer client-secret-token"],
            ["Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"],
            ["Content-Type", "application/json"],
            ["Accept", "application/json, text/event-stream"],
            ["Mcp-Session-Id", sid],
            ["MCP-Protocol-Version", "2025-06-18"],
            ["Last-Event-ID", "event-41"],
            ["Connection", "keep-alive, X-Hop"],
            ["X-Hop", "hop-value"],
            ["Keep-Alive", "timeout=5"],
            ["TE", "trailers"],
            ["Upgrade", "h2c"],
            ["Cookie", "sid=client-cookie"],
            ["X-Request-Id", "client-chosen-id"],
            ["X-Forwarded-For", "203.0.113.9"],
            ["X-Custom", "custom"],
            ["Transfer-Encoding", "chunked"],
        ]) + `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    );
    const res = await c.readResponse();
    c.close();
    assert.equal(res.status, 200);
    const rid = res.headers["x-request-id"];
    assert.match(rid, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, "UUIDv7");

    const got = backend.received.slice(mark);
    assert.equal(got.length, 1);
    const h = got[0].headers;
    assert.equal(got[0].body, body);
    assert.equal(h["content-type"], "application/json");
    assert.equal(h.accept, "application/json, text/event-stream");
    assert.equal(h["mcp-session-id"], "session-abc-123", "the backend's own id, not toolgate's");
    assert.equal(h["mcp-protocol-version"], "2025-06-18");
    assert.equal(h["last-event-id"], "event-41");
    assert.equal(h["x-request-id"], rid, "toolgate's request id replaces the client's");
    assert.equal(h["content-length"], String(body.length));
    assert.equal(h.host, `127.0.0.1:${backend.port}`);
    assert.equal(got[0].url, "/mcp", "the backend URL's path, not the client's target");
    assert.deepEqual(names(got[0].rawHeaders), [
        "accept",
        "content-length",
        "content-type",
        "host",
        "last-event-id",
        "mcp-protocol-version",
        "mcp-session-id",
        "x-request-id",
    ]);
    // Belt and braces: no trace of the secrets anywhere in what the backend saw.
    const all = JSON.stringify(got[0]);
    assert.ok(!all.includes("client-secret-token"));
    assert.ok(!all.includes("cHJveHk6c2VjcmV0"));
});

test("GET and DELETE relay the session headers too", async () => {
    backend.setHandler((req, res, body) => {
        if (req.method === "GET") {
            res.writeHead(200, { "Content-Type": "text/event-stream" });
            res.end(sseEvent({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "x" } }, "e1"));
        } else if (req.method === "DELETE") {
            res.writeHead(200, { "Content-Length": 0 });
            res.end();
        } else echoRpc(req, res, body);
    });
    try {
        const sid = await openSession(tg.port, backend, "s-get");
        const mark = backend.received.length;
        const get = await exchange(
            tg.port,
            request("GET", "/mcp", {
                Accept: "text/event-stream",
                "Mcp-Session-Id": sid,
                "MCP-Protocol-Version": "2025-06-18",
                "Last-Event-ID": "e0",
                Authorization: "Bearer t",
            }),
        );
        assert.equal(get.status, 200);
        assert.match(get.headers["content-type"], /^text\/event-stream/);
        const events = parseSse(get.body.toString());
        assert.equal(events.length, 1);
        assert.equal(events[0].id, "e1");
        const del = await exchange(tg.port, request("DELETE", "/mcp", { "Mcp-Session-Id": sid }));
        assert.equal(del.status, 200);
        // Deleted: the id is unknown from now on, and never reaches the backend again.
        const again = await exchange(tg.port, request("GET", "/mcp", { Accept: "text/event-stream", "Mcp-Session-Id": sid }));
        assert.equal(again.status, 404);
        const [g, d] = backend.received.slice(mark);
        assert.equal(g.method, "GET");
        assert.equal(g.headers["mcp-session-id"], "s-get");
        assert.equal(g.headers["last-event-id"], "e0");
        assert.equal(g.headers.accept, "text/event-stream");
        assert.equal(g.headers.authorization, undefined);
        assert.equal(d.method, "DELETE");
        assert.equal(d.headers["mcp-session-id"], "s-get");
    } finally {
        backend.setHandler(echoRpc);
    }
});

test("a repeated Mcp-Session-Id or MCP-Protocol-Version header -> 400", async () => {
    const mark = backend.received.length;
    for (const name of ["Mcp-Session-Id", "MCP-Protocol-Version"]) {
        const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });
        const res = await exchange(
            tg.port,
            request(
                "POST",
                "/mcp",
                [
                    ["Content-Type", "application/json"],
                    [name, "a"],
                    [name, "b"],
                    ["Content-Length", body.length],
                ],
                body,
            ),
        );
        assert.equal(res.status, 400, name);
        assert.equal(jsonBody(res).id, null);
    }
    assert.equal(backend.received.length, mark);
});

test("response headers: only the relayed set reaches the client", async () => {
    backend.setHandler((req, res, body) => {
        const msg = JSON.parse(body);
        const s = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: {} });
        res.writeHead(200, [
            ["Content-Type", "application/json"],
            ["Content-Length", Buffer.byteLength(s)],
            ["Mcp-Session-Id", "backend-session"],
            ["MCP-Protocol-Version", "2025-06-18"],
            ["Cache-Control", "no-store"],
            ["Set-Cookie", "backend=secret; HttpOnly"],
            ["X-Powered-By", "Express"],
            ["Server", "backend/1.0"],
            ["X-Request-Id", "backend-chosen"],
            ["Access-Control-Allow-Origin", "*"],
            ["WWW-Authenticate", 'Basic realm="backend"'],
            ["Location", "http://127.0.0.1:1/elsewhere"],
            ["Strict-Transport-Security", "max-age=1"],
            ["Keep-Alive", "timeout=5"],
            ["X-Internal-Host", "db01.internal"],
        ]);
        res.end(s);
    });
    try {
        const body = JSON.stringify({ jsonrpc: "2.0", id: 3, method: "ping" });
        const res = await exchange(
            tg.port,
            request("POST", "/mcp", { "Content-Type": "application/json", "Content-Length": body.length }, body),
        );
        assert.equal(res.status, 200);
        assert.deepEqual(jsonBody(res), { jsonrpc: "2.0", id: 3, result: {} });
        // The backend's session becomes one of toolgate's; its own id stays inside.
        assert.match(res.headers["mcp-session-id"], /^[A-Za-z0-9_-]{43}$/);
        assert.ok(!res.body.toString().includes("backend-session"));
        assert.equal(res.headers["mcp-protocol-version"], "2025-06-18");
        assert.equal(res.headers["cache-control"], "no-store");
        assert.equal(res.headers.server, "toolgate");
        assert.match(res.headers["x-request-id"], /^[0-9a-f-]{36}$/);
        assert.deepEqual(names(res.rawHeaders), [
            "cache-control",
            "content-length",
            "content-type",
            "date",
            "mcp-protocol-version",
            "mcp-session-id",
            "server",
            "x-request-id",
        ]);
    } finally {
        backend.setHandler(echoRpc);
    }
});

test("Retry-After and Allow of an error answer are relayed", async () => {
    backend.setHandler((req, res) => {
        res.writeHead(429, {
            "Content-Type": "text/plain",
            "Retry-After": "7",
            Allow: "POST",
            "Set-Cookie": "x=y",
        });
        res.end("slow down");
    });
    try {
        const body = JSON.stringify({ jsonrpc: "2.0", id: 4, method: "ping" });
        const res = await exchange(
            tg.port,
            request("POST", "/mcp", { "Content-Type": "application/json", "Content-Length": body.length }, body),
        );
        assert.equal(res.status, 429);
        assert.equal(res.headers["retry-after"], "7");
        assert.equal(res.headers.allow, "POST");
        assert.equal(res.headers["set-cookie"], undefined);
        assert.equal(res.body.toString(), "slow down");
    } finally {
        backend.setHandler(echoRpc);
    }
});
