// Backend failures as the client sees them: unreachable, silent, cut mid-stream, slow streams.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startToolgate, killAll, refusedPort, sleep } from "./lib/harness.mjs";
import { startBackend, startRawBackend, sseEvent } from "./lib/backend.mjs";
import { RawConn, postJson, exchange, jsonBody, parseSse } from "./lib/raw.mjs";

let tg;
let closedPort;
let silent; // accepts and never answers
let cut; // starts an SSE answer, sends two events, then drops the connection
let slow; // an SSE answer with one event every 300 ms
let stall; // answers the head, then goes silent mid-body
let odd; // answers per test (bad JSON, oversize, endless stream)
let oddHandler = null;
let endlessClosed = 0; // endless streams whose connection toolgate closed

const note = (i) => ({
    jsonrpc: "2.0",
    method: "notifications/progress",
    params: { progressToken: "t", progress: i, total: 5 },
});

before(async () => {
    closedPort = await refusedPort(); // nothing listens here
    silent = await startRawBackend(() => {});
    cut = await startRawBackend((s) => {
        const body = sseEvent(note(1), "1") + sseEvent(note(2), "2");
        s.write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
                `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n`,
        );
        setTimeout(() => s.destroy(), 200);
    });
    stall = await startRawBackend((s) => {
        s.write(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\":",
        );
    });
    slow = await startBackend(async (req, res, body) => {
        const id = JSON.parse(body).id;
        res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
        for (let i = 1; i <= 5; i++) {
            await sleep(300);
            res.write(sseEvent(note(i), String(i)));
        }
        res.end(sseEvent({ jsonrpc: "2.0", id, result: { done: true } }, "6"));
    });
    odd = await startBackend((req, res, body, rec) => oddHandler(req, res, body, rec));
    tg = await startToolgate({
        limits: { max_response: "64KiB", max_sse_event: "16KiB" },
        routes: [
            { name: "odd", path: "/odd", url: odd.url },
            { name: "closed", path: "/closed", url: `http://127.0.0.1:${closedPort}/mcp` },
            { name: "silent", path: "/silent", url: silent.url, timeouts: { first_byte: "1s" } },
            { name: "cut", path: "/cut", url: cut.url },
            { name: "stall", path: "/stall", url: stall.url, timeouts: { idle: "1s" } },
            { name: "slow", path: "/slow", url: slow.url },
        ],
    });
});

after(async () => {
    try {
        if (tg) await tg.stop();
    } finally {
        for (const b of [silent, cut, slow, stall, odd]) if (b) await b.close();
        await killAll();
    }
});

const call = (id) => ({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "x", arguments: {} } });

test("backend port closed -> 502 with a JSON-RPC error carrying the request id", async () => {
    const res = await exchange(tg.port, postJson("/closed", call("req-502")));
    assert.equal(res.status, 502);
    const b = jsonBody(res);
    assert.equal(b.jsonrpc, "2.0");
    assert.equal(b.id, "req-502");
    assert.equal(typeof b.error.code, "number");
    assert.equal(b.error.data["toolgate/error"].reason, "upstream.connect");
    assert.equal(b.error.data["toolgate/error"].request_id, res.headers["x-request-id"]);
    const log = await tg.logFor(res.headers["x-request-id"]);
    assert.equal(log.status, 502);
});

test("a 2025-03-26 batch to a closed port: one error per request, each with its id", async () => {
    const batch = [call(1), { jsonrpc: "2.0", method: "notifications/initialized" }, call("two")];
    const res = await exchange(tg.port, postJson("/closed", batch, { "MCP-Protocol-Version": "2025-03-26" }));
    assert.equal(res.status, 502);
    const b = jsonBody(res);
    assert.deepEqual(
        b.map((m) => m.id),
        [1, "two"],
    );
    assert.ok(b.every((m) => m.error));
});

test("backend accepts and never answers -> 504 after timeouts.first_byte (1s)", async () => {
    const t0 = Date.now();
    const res = await exchange(tg.port, postJson("/silent", call(42)), 6000);
    const took = Date.now() - t0;
    assert.equal(res.status, 504);
    assert.equal(jsonBody(res).id, 42);
    assert.equal(jsonBody(res).error.data["toolgate/error"].reason, "upstream.timeout");
    assert.ok(took >= 900 && took < 3000, `504 after ${took} ms`);
});

test("backend stalls mid-body -> 504 after timeouts.idle", async () => {
    const t0 = Date.now();
    const res = await exchange(tg.port, postJson("/stall", call(43)), 6000);
    const took = Date.now() - t0;
    assert.equal(res.status, 504);
    assert.equal(jsonBody(res).id, 43);
    assert.ok(took >= 900 && took < 3000, `504 after ${took} ms`);
});

test("SSE backend dies mid-stream -> the client's stream ends cleanly after the events sent", async () => {
    const c = await RawConn.open(tg.port);
    await c.write(postJson("/cut", call(7)));
    const res = await c.readResponse(5000);
    c.close();
    assert.equal(res.status, 200);
    assert.match(res.headers["content-type"], /^text\/event-stream/);
    assert.ok(res.chunked, "a chunked stream");
    assert.equal(res.cleanEnd, true, "terminated by the last chunk, not cut");
    const events = parseSse(res.body.toString());
    assert.deepEqual(
        events.map((e) => JSON.parse(e.data).params.progress),
        [1, 2],
    );
    assert.deepEqual(
        events.map((e) => e.id),
        ["1", "2"],
        "event ids kept for resumption",
    );
    const log = await tg.logFor(res.headers["x-request-id"]);
    assert.equal(log.status, 200);
});

test("slow SSE backend: events reach the client one by one", async () => {
    const t0 = Date.now();
    const arrivals = [];
    const res = await fetch(`${tg.base}/slow`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
        body: JSON.stringify(call(8)),
        signal: AbortSignal.timeout(10000),
    });
    assert.equal(res.status, 200);
    const decoder = new TextDecoder();
    let text = "";
    let count = 0;
    for await (const chunk of res.body) {
        text += decoder.decode(chunk, { stream: true });
        const n = parseSse(text.slice(0, text.lastIndexOf("\n\n") + 2)).length;
        for (; count < n; count++) arrivals.push(Date.now() - t0);
    }
    const events = parseSse(text);
    assert.equal(events.length, 6);
    assert.deepEqual(JSON.parse(events[5].data), { jsonrpc: "2.0", id: 8, result: { done: true } });
    assert.equal(arrivals.length, 6);
    for (let i = 1; i < 5; i++)
        assert.ok(arrivals[i] - arrivals[i - 1] >= 150, `arrivals ${JSON.stringify(arrivals)}`);
    assert.ok(arrivals[4] - arrivals[0] >= 1000, `arrivals ${JSON.stringify(arrivals)}`);
});

test("backend answers JSON that is not JSON-RPC -> 502 upstream.bad_json", async () => {
    oddHandler = (req, res) => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end('{"a":1,"a":2}');
    };
    const res = await exchange(tg.port, postJson("/odd", call(50)));
    assert.equal(res.status, 502);
    assert.equal(jsonBody(res).id, 50);
    assert.equal(jsonBody(res).error.data["toolgate/error"].reason, "upstream.bad_json");
});

test("a JSON answer over max_response -> 502 upstream.too_large", async () => {
    oddHandler = (req, res) => {
        const s = JSON.stringify({ jsonrpc: "2.0", id: 51, result: { big: "x".repeat(100 * 1024) } });
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(s);
    };
    const res = await exchange(tg.port, postJson("/odd", call(51)));
    assert.equal(res.status, 502);
    assert.equal(jsonBody(res).id, 51);
    assert.equal(jsonBody(res).error.data["toolgate/error"].reason, "upstream.too_large");
});

test("SSE: an event that is not a JSON-RPC message is dropped, the rest relayed", async () => {
    oddHandler = (req, res) => {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(sseEvent(note(1)));
        res.write("event: message\ndata: not json at all\n\n");
        res.write(": a comment line\n\n");
        res.end(sseEvent({ jsonrpc: "2.0", id: 52, result: {} }));
    };
    const res = await exchange(tg.port, postJson("/odd", call(52)));
    assert.equal(res.status, 200);
    const text = res.body.toString();
    assert.ok(!text.includes("not json at all"));
    const events = parseSse(text);
    assert.deepEqual(
        events.map((e) => JSON.parse(e.data).id ?? "note"),
        ["note", 52],
    );
});

test("SSE: an event over max_sse_event ends the stream; nothing of it is relayed", async () => {
    oddHandler = (req, res) => {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(sseEvent(note(1)));
        res.write(sseEvent({ ...note(2), params: { ...note(2).params, message: "y".repeat(32 * 1024) } }));
        res.end(sseEvent({ jsonrpc: "2.0", id: 53, result: {} }));
    };
    const res = await exchange(tg.port, postJson("/odd", call(53)));
    assert.equal(res.status, 200);
    assert.equal(res.cleanEnd, true);
    const text = res.body.toString();
    assert.ok(!text.includes("yyyy"), "no part of the oversize event");
    assert.deepEqual(
        parseSse(text).map((e) => JSON.parse(e.data).params.progress),
        [1],
    );
});

test("the client leaving mid-stream closes the backend stream", async () => {
    let opened = 0;
    oddHandler = (req, res) => {
        opened++;
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        const iv = setInterval(() => res.write(sseEvent(note(1))), 50);
        res.on("close", () => {
            clearInterval(iv);
            endlessClosed++;
        });
    };
    const before = endlessClosed;
    const c = await RawConn.open(tg.port);
    await c.write(postJson("/odd", call(54)));
    await c.waitForData((s) => s.includes("notifications/progress"), 3000, "the first event");
    c.close();
    const t0 = Date.now();
    while (endlessClosed === before && Date.now() - t0 < 3000) await sleep(20);
    assert.equal(opened, 1);
    assert.equal(endlessClosed, before + 1, "backend stream closed after the client left");
    const line = await tg.waitForLog(
        (l) => l.event === "request" && l.route === "odd" && l.status === 200 && l.duration_ms > 0,
        3000,
        "the abandoned stream's log line",
    );
    assert.ok(line);
});

test("an HTTP/1.0 client gets the SSE stream close-delimited", async () => {
    oddHandler = (req, res) => {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(sseEvent(note(1)));
        setTimeout(() => res.end(sseEvent({ jsonrpc: "2.0", id: 55, result: {} })), 100);
    };
    const body = JSON.stringify(call(55));
    const c = await RawConn.open(tg.port);
    await c.write(
        `POST /odd HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    const res = await c.readResponse(5000);
    c.close();
    assert.equal(res.status, 200);
    assert.equal(res.headers["transfer-encoding"], undefined);
    assert.equal(res.headers["content-length"], undefined);
    assert.equal(res.headers.connection, "close");
    assert.deepEqual(
        parseSse(res.body.toString()).map((e) => JSON.parse(e.data).id ?? "note"),
        ["note", 55],
    );
});
