// The HTTP/1.1 front end over raw sockets: request framing, limits, timeouts, and the
// JSON-RPC checks made before anything reaches a backend.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startToolgate, killAll, sleep } from "./lib/harness.mjs";
import { startBackend, echoRpc } from "./lib/backend.mjs";
import { RawConn, request, postJson, exchange, jsonBody } from "./lib/raw.mjs";

const LIMITS = {
    max_body: "4KiB",
    max_header: "2KiB",
    header_timeout: "1s",
    body_timeout: "1s",
    idle_timeout: "1s",
    max_connections: 4,
    max_json_depth: 16,
};

let tg;
let backend;

before(async () => {
    backend = await startBackend();
    tg = await startToolgate({ limits: LIMITS, routes: [{ url: backend.url }] });
});

after(async () => {
    try {
        if (tg) await tg.stop();
    } finally {
        if (backend) await backend.close();
        await killAll();
    }
});

const ping = (id) => ({ jsonrpc: "2.0", id, method: "ping" });

/* Requests the backend saw since `mark` (an index into backend.received). */
const since = (mark) => backend.received.slice(mark);

describe("request framing", () => {
    test("a well-formed POST is relayed and answered", async () => {
        const res = await exchange(tg.port, postJson("/mcp", ping(1)));
        assert.equal(res.status, 200);
        assert.deepEqual(jsonBody(res), { jsonrpc: "2.0", id: 1, result: { echo: "ping", params: null } });
    });

    test("malformed request line -> 400", async () => {
        for (const line of [
            "GET /m cp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "GET /mcp\x7f HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        ]) {
            const c = await RawConn.open(tg.port);
            await c.write(line);
            const res = await c.readResponse();
            assert.equal(res.status, 400, `status for ${JSON.stringify(line)}`);
            assert.equal(res.headers.connection, "close");
            assert.equal(jsonBody(res).id, null);
            await c.waitClosed(2000);
            c.close();
        }
    });

    // RFC 9112 §3: an invalid request-line gets 400 (a misspelt protocol name, doubled
    // spaces, junk after the version), and the request never reaches the backend.
    test(
        "request lines the grammar forbids -> 400, never relayed",
        async () => {
            const got = [];
            for (const line of [
                "GET /mcp HTTQ/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                "GET  /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                "GET /mcp HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n",
                "GET /mcp HTTP/1.1\x01\r\nHost: 127.0.0.1\r\n\r\n",
            ]) {
                const mark = backend.received.length;
                const res = await exchange(tg.port, line);
                got.push({ line, status: res.status, relayed: since(mark).length > 0 });
            }
            assert.deepEqual(
                got.filter((g) => g.status !== 400 || g.relayed),
                [],
                "request lines not refused with 400",
            );
        },
    );

    test("a method the parser does not know -> 400, a known one not served -> 405", async () => {
        const res = await exchange(tg.port, "BREW /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert.equal(res.status, 400);
        const patch = await exchange(tg.port, request("PATCH", "/mcp", { "Content-Length": 0 }));
        assert.equal(patch.status, 405);
    });

    test("an upgrade request is answered as plain HTTP and the connection closed", async () => {
        const mark = backend.received.length;
        const c = await RawConn.open(tg.port);
        await c.write(
            postJson("/mcp", ping("up"), {
                Connection: "Upgrade",
                Upgrade: "websocket",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            }),
        );
        const res = await c.readResponse();
        assert.notEqual(res.status, 101);
        assert.equal(res.headers.upgrade, undefined);
        assert.equal(res.headers.connection, "close");
        await c.waitClosed(2000);
        c.close();
        for (const r of since(mark)) {
            assert.equal(r.headers.upgrade, undefined);
            assert.equal(r.headers["sec-websocket-key"], undefined);
        }
    });

    test("request target that is not an absolute path -> 400", async () => {
        const res = await exchange(tg.port, "GET http://evil.example/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert.equal(res.status, 400);
    });

    test("missing Host on HTTP/1.1 -> 400", async () => {
        const res = await exchange(tg.port, "GET /healthz HTTP/1.1\r\n\r\n");
        assert.equal(res.status, 400);
    });

    test("header block over server.limits.max_header -> 431", async () => {
        const big = "a".repeat(3000);
        const res = await exchange(tg.port, request("GET", "/healthz", { "X-Big": big }));
        assert.equal(res.status, 431);
    });

    test("Content-Length over max_body -> 413 before the body is sent", async () => {
        const c = await RawConn.open(tg.port);
        await c.write(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
        );
        const res = await c.readResponse();
        assert.equal(res.status, 413);
        await c.waitClosed(2000);
        c.close();
    });

    test("chunked body over max_body -> 413", async () => {
        const mark = backend.received.length;
        const c = await RawConn.open(tg.port);
        await c.write(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        const chunk = "x".repeat(1024);
        let res;
        for (let i = 0; i < 8 && !c.ended; i++) {
            await c.write(`400\r\n${chunk}\r\n`).catch(() => {});
            await sleep(10);
        }
        res = await c.readResponse();
        assert.equal(res.status, 413);
        c.close();
        assert.equal(since(mark).length, 0, "nothing reached the backend");
    });

    test("Expect: 100-continue gets 100 then the answer", async () => {
        const body = JSON.stringify(ping("c1"));
        const c = await RawConn.open(tg.port);
        await c.write(
            `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        const interim = await c.readResponse(2000);
        assert.equal(interim.status, 100);
        await c.write(body);
        const res = await c.readResponse();
        assert.equal(res.status, 200);
        assert.equal(jsonBody(res).id, "c1");
        c.close();
    });

    test("an Expect other than 100-continue -> 417", async () => {
        const res = await exchange(tg.port, postJson("/mcp", ping(1), { Expect: "something-else" }));
        assert.equal(res.status, 417);
    });

    test("chunked request body is reassembled and forwarded", async () => {
        const mark = backend.received.length;
        const body = JSON.stringify({ jsonrpc: "2.0", id: 77, method: "tools/list", params: {} });
        const a = body.slice(0, 10);
        const b = body.slice(10);
        const c = await RawConn.open(tg.port);
        await c.write(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        await c.write(`${a.length.toString(16)}\r\n${a}\r\n`);
        await sleep(50);
        await c.write(`${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`);
        const res = await c.readResponse();
        c.close();
        assert.equal(res.status, 200);
        assert.equal(jsonBody(res).id, 77);
        const got = since(mark);
        assert.equal(got.length, 1);
        assert.equal(got[0].body, body);
        assert.equal(got[0].headers["transfer-encoding"], undefined);
    });

    test("two Content-Length headers -> 400", async () => {
        for (const [a, b] of [
            [10, 10],
            [10, 12],
        ]) {
            const res = await exchange(
                tg.port,
                `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${a}\r\nContent-Length: ${b}\r\n\r\n{"a":12345}`,
            );
            assert.equal(res.status, 400, `Content-Length ${a} and ${b}`);
        }
    });

    test("Content-Length together with Transfer-Encoding: chunked -> 400", async () => {
        const mark = backend.received.length;
        const res = await exchange(
            tg.port,
            `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
        );
        assert.equal(res.status, 400);
        assert.equal(since(mark).length, 0);
    });

    test("keep-alive: several requests on one connection", async () => {
        const c = await RawConn.open(tg.port);
        for (let i = 0; i < 3; i++) {
            await c.write(postJson("/mcp", ping(`k${i}`)));
            const res = await c.readResponse();
            assert.equal(res.status, 200);
            assert.equal(jsonBody(res).id, `k${i}`);
            assert.notEqual(res.headers.connection, "close");
        }
        assert.equal(c.ended, false);
        c.close();
    });

    test("Connection: close is honoured; HTTP/1.0 closes unless keep-alive is asked for", async () => {
        const c = await RawConn.open(tg.port);
        await c.write(postJson("/mcp", ping("cc"), { Connection: "close" }));
        const res = await c.readResponse();
        assert.equal(res.status, 200);
        assert.equal(res.headers.connection, "close");
        await c.waitClosed(2000);
        c.close();
        const body = JSON.stringify(ping("h10"));
        const d = await RawConn.open(tg.port);
        await d.write(
            `POST /mcp HTTP/1.0\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
        const r1 = await d.readResponse();
        assert.equal(r1.status, 200);
        assert.equal(r1.headers.connection, "keep-alive");
        await d.write(`GET /healthz HTTP/1.0\r\n\r\n`);
        const r2 = await d.readResponse();
        assert.equal(r2.status, 200);
        await d.waitClosed(2000);
        d.close();
    });

    // RFC 9112 §5.1: whitespace between a field name and the colon MUST be answered 400 (the
    // classic "Transfer-Encoding : chunked" desync); §5.2: obs-fold is rejected (or replaced
    // by spaces); §6.1: a transfer coding the server does not understand gets 501.
    test(
        "header syntax the RFC says to refuse: space before colon, obs-fold, unknown coding",
        async () => {
            const body = JSON.stringify(ping("hs"));
            const start = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
            const got = [];
            for (const [name, bytes, want] of [
                ["space before colon", `${start}X-A : b\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 400],
                ["obs-fold", `${start}X-A: a\r\n  b\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 400],
                [
                    "unknown transfer coding",
                    `${start}Transfer-Encoding: gzip, chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
                    501,
                ],
            ]) {
                const mark = backend.received.length;
                const res = await exchange(tg.port, bytes);
                if (res.status !== want || since(mark).length > 0)
                    got.push({ name, status: res.status, want, relayed: since(mark).length > 0 });
            }
            assert.deepEqual(got, []);
        },
    );

    test("NUL in a header value, bad chunk size, signed or listed Content-Length -> 400", async () => {
        const body = JSON.stringify(ping("x"));
        const start = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
        const mark = backend.received.length;
        for (const bytes of [
            `${start}X-A: a\0b\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
            `${start}Transfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
            `${start}Content-Length: +${body.length}\r\n\r\n${body}`,
            `${start}Content-Length: -1\r\n\r\n${body}`,
            `${start}Content-Length: ${body.length}, ${body.length}\r\n\r\n${body}`,
            `${start}Transfer-Encoding: identity\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        ]) {
            const res = await exchange(tg.port, bytes);
            assert.equal(res.status, 400, JSON.stringify(bytes.slice(start.length, start.length + 50)));
        }
        assert.equal(since(mark).length, 0);
    });

    test("two Host headers -> 400", async () => {
        const res = await exchange(tg.port, "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert.equal(res.status, 400);
    });

    test("pipelined requests are answered in order", async () => {
        // The first request is the slowest at the backend: answers must still come in order.
        const delays = { p0: 300, p1: 0, p2: 100 };
        backend.setHandler(async (req, res, body) => {
            const m = JSON.parse(body);
            await sleep(delays[m.id] ?? 0);
            echoRpc(req, res, body);
        });
        try {
            const c = await RawConn.open(tg.port);
            await c.write(["p0", "p1", "p2"].map((id) => postJson("/mcp", ping(id))).join(""));
            const ids = [];
            for (let i = 0; i < 3; i++) {
                const res = await c.readResponse();
                assert.equal(res.status, 200);
                ids.push(jsonBody(res).id);
            }
            c.close();
            assert.deepEqual(ids, ["p0", "p1", "p2"]);
        } finally {
            backend.setHandler(echoRpc);
        }
    });

    test("unknown path -> 404", async () => {
        const res = await exchange(tg.port, postJson("/nope", ping(1)));
        assert.equal(res.status, 404);
        assert.equal(jsonBody(res).error.code, -32601);
    });

    test("PUT -> 405 with Allow", async () => {
        const res = await exchange(
            tg.port,
            request("PUT", "/mcp", { "Content-Type": "application/json", "Content-Length": 2 }, "{}"),
        );
        assert.equal(res.status, 405);
        assert.match(res.headers.allow, /POST/);
        assert.match(res.headers.allow, /GET/);
        assert.match(res.headers.allow, /DELETE/);
    });

    test("HTTP/2 preface / unsupported versions are refused", async () => {
        const res = await exchange(tg.port, "GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n");
        assert.ok(res.status === 505 || res.status === 400, `status ${res.status}`);
    });
});

describe("timeouts and connection limits", () => {
    test("slow-loris: a head trickled slower than header_timeout -> 408 and closed", async () => {
        const c = await RawConn.open(tg.port);
        const t0 = Date.now();
        const head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + "y".repeat(40);
        let i = 0;
        const timer = setInterval(() => {
            if (i < head.length && !c.ended) c.socket.write(head[i++]);
        }, 100);
        try {
            const res = await c.readResponse(4000);
            const took = Date.now() - t0;
            assert.equal(res.status, 408);
            assert.ok(took >= 800 && took < 3000, `408 after ${took} ms (header_timeout 1s)`);
            await c.waitClosed(2000);
        } finally {
            clearInterval(timer);
            c.close();
        }
    });

    test("a body slower than body_timeout -> 408", async () => {
        const c = await RawConn.open(tg.port);
        await c.write(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        );
        const res = await c.readResponse(4000);
        assert.equal(res.status, 408);
        await c.waitClosed(2000);
        c.close();
    });

    test("a connection that sends nothing is closed after header_timeout", async () => {
        const c = await RawConn.open(tg.port);
        const t0 = Date.now();
        await c.waitClosed(4000);
        const took = Date.now() - t0;
        assert.ok(took >= 800 && took < 3000, `closed after ${took} ms`);
        c.close();
    });

    test("idle keep-alive connection closed after idle_timeout", async () => {
        const c = await RawConn.open(tg.port);
        await c.write(postJson("/mcp", ping(1)));
        const res = await c.readResponse();
        assert.equal(res.status, 200);
        const t0 = Date.now();
        await c.waitClosed(4000);
        const took = Date.now() - t0;
        assert.ok(took >= 800 && took < 3000, `closed after ${took} ms (idle_timeout 1s)`);
        c.close();
    });

    test("max_connections -> 503, and room again once one closes", async () => {
        const held = [];
        try {
            // Fill every slot with an accepted, idle keep-alive connection.
            for (let i = 0; i < LIMITS.max_connections; i++) {
                const c = await RawConn.open(tg.port);
                held.push(c);
                await c.write(request("GET", "/healthz"));
                assert.equal((await c.readResponse()).status, 200);
            }
            const extra = await RawConn.open(tg.port);
            await extra.write(request("GET", "/healthz")).catch(() => {});
            const res = await extra.readResponse();
            assert.equal(res.status, 503);
            assert.equal(jsonBody(res).error.code, -32000);
            await extra.waitClosed(2000);
            extra.close();
            held.shift().close();
            await sleep(200);
            const again = await exchange(tg.port, request("GET", "/healthz"));
            assert.equal(again.status, 200);
        } finally {
            for (const c of held) c.close();
            // The server counts a connection as gone once it has seen the close; wait for
            // that (bounded) so the next test does not meet a full server.
            for (let i = 0; i < 40; i++) {
                const r = await exchange(tg.port, request("GET", "/healthz")).catch(() => null);
                if (r && r.status === 200) break;
                await sleep(50);
            }
        }
    });
});

describe("JSON-RPC checks", () => {
    const post = (body, headers) => exchange(tg.port, postJson("/mcp", body, headers));

    test("invalid JSON -> 400, -32700, id null", async () => {
        const mark = backend.received.length;
        const res = await post('{"jsonrpc":"2.0","id":1,"method":');
        assert.equal(res.status, 400);
        const b = jsonBody(res);
        assert.equal(b.jsonrpc, "2.0");
        assert.equal(b.id, null);
        assert.equal(b.error.code, -32700);
        assert.equal(since(mark).length, 0);
    });

    test("invalid JSON-RPC -> -32600 carrying the id when recoverable", async () => {
        const mark = backend.received.length;
        for (const [body, id] of [
            [{ jsonrpc: "2.0", id: 7, method: 5 }, 7],
            [{ jsonrpc: "1.0", id: "abc", method: "ping" }, "abc"],
            [{ jsonrpc: "2.0", id: 9, method: "ping", params: "not an object" }, 9],
            [{ jsonrpc: "2.0", id: 9.5, method: "ping" }, null],
            [[], null],
            [[1], null],
        ]) {
            const res = await post(body, { "MCP-Protocol-Version": "2025-03-26" });
            assert.equal(res.status, 400, JSON.stringify(body));
            const b = jsonBody(res);
            assert.equal(b.error.code, -32600, JSON.stringify(body));
            assert.deepEqual(b.id, id, JSON.stringify(body));
        }
        assert.equal(since(mark).length, 0);
    });

    test("duplicate keys -> -32700", async () => {
        const mark = backend.received.length;
        const res = await post('{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}');
        assert.equal(res.status, 400);
        assert.equal(jsonBody(res).error.code, -32700);
        assert.equal(since(mark).length, 0);
    });

    test("nesting deeper than max_json_depth is rejected", async () => {
        const mark = backend.received.length;
        const deep = "[".repeat(40) + "]".repeat(40);
        const res = await post(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":${deep}}}`);
        assert.equal(res.status, 400);
        assert.ok([-32700, -32600].includes(jsonBody(res).error.code));
        assert.equal(since(mark).length, 0);
        // Just inside the bound goes through.
        const ok = "[".repeat(10) + "]".repeat(10);
        const res2 = await post(`{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":${ok}}}`);
        assert.equal(res2.status, 200);
    });

    test("batch under protocol 2025-06-18 is rejected", async () => {
        const mark = backend.received.length;
        const res = await post([ping(1), ping(2)], { "MCP-Protocol-Version": "2025-06-18" });
        assert.equal(res.status, 400);
        assert.equal(jsonBody(res).error.code, -32600);
        assert.equal(since(mark).length, 0);
    });

    test("batch under protocol 2025-03-26 is forwarded", async () => {
        const mark = backend.received.length;
        const batch = [ping(1), { jsonrpc: "2.0", method: "notifications/initialized" }, ping(2)];
        const res = await post(batch, { "MCP-Protocol-Version": "2025-03-26" });
        assert.equal(res.status, 200);
        const b = jsonBody(res);
        assert.ok(Array.isArray(b));
        assert.deepEqual(
            b.map((m) => m.id),
            [1, 2],
        );
        const got = since(mark);
        assert.equal(got.length, 1);
        assert.deepEqual(JSON.parse(got[0].body), batch);
    });

    test("wrong Content-Type -> 415", async () => {
        const mark = backend.received.length;
        for (const ct of ["text/plain", "application/jsonx", "application/x-www-form-urlencoded"]) {
            const res = await post(ping(1), { "Content-Type": ct });
            assert.equal(res.status, 415, ct);
        }
        const noCt = await exchange(
            tg.port,
            request("POST", "/mcp", { "Content-Length": 2 }, "{}"),
        );
        assert.equal(noCt.status, 415);
        assert.equal(since(mark).length, 0);
        const ok = await post(ping(1), { "Content-Type": "application/json; charset=utf-8" });
        assert.equal(ok.status, 200);
    });
});
