// Event streams relayed exactly: priming events and resumption (a client that lost its POST
// stream GETs with Last-Event-ID and receives what the backend replays, answers included), and
// order (a session's GET stream reaches the backend before the POSTs sent after it, so what the
// backend sends on it while answering them is not lost).
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startToolgate, killAll, withTimeout } from "./lib/harness.mjs";
import { startBackend } from "./lib/backend.mjs";
import { RawConn, request, parseSse } from "./lib/raw.mjs";
import { openSession } from "./lib/session.mjs";

let tg, backend;

before(async () => {
    backend = await startBackend();
    tg = await startToolgate({ routes: [{ url: `${backend.url}/mcp` }] });
});

after(async () => {
    await tg?.stop();
    await backend?.close();
    await killAll();
});

const call = (id, name = "slow") =>
    JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: {} } });

function postRequest(sid, body) {
    return request(
        "POST",
        "/mcp",
        {
            "Content-Type": "application/json",
            Accept: "application/json, text/event-stream",
            "Mcp-Session-Id": sid,
            "MCP-Protocol-Version": "2025-06-18",
            "Content-Length": Buffer.byteLength(body),
        },
        body,
    );
}

function getRequest(sid, extra = {}) {
    return request("GET", "/mcp", {
        Accept: "text/event-stream",
        "Mcp-Session-Id": sid,
        "MCP-Protocol-Version": "2025-06-18",
        ...extra,
    });
}

describe("resumption", () => {
    test("a priming event reaches the client with its id and retry; a GET with Last-Event-ID gets the replayed answer at once", async () => {
        const sid = await openSession(tg.port, backend, "backend-resume");
        const gets = [];
        backend.setHandler((req, res, body) => {
            if (req.method === "GET") {
                gets.push(req.headers["last-event-id"]);
                res.writeHead(200, { "Content-Type": "text/event-stream" });
                if (req.headers["last-event-id"] === "stream-1.0") {
                    const answer = { jsonrpc: "2.0", id: 41, result: { content: [{ type: "text", text: "replayed" }] } };
                    res.write(`id: stream-1.1\ndata: ${JSON.stringify(answer)}\n\n`);
                }
                return; // the stream stays open, as a GET stream does
            }
            const msg = JSON.parse(body);
            if (msg.method === "tools/call") {
                // The priming event, then the connection goes away before the answer.
                res.writeHead(200, { "Content-Type": "text/event-stream" });
                res.write("id: stream-1.0\nretry: 250\ndata: \n\n");
                res.end();
                return;
            }
            res.writeHead(202);
            res.end();
        });

        const post = await RawConn.open(tg.port);
        await post.write(postRequest(sid, call(41)));
        const r = await post.readResponse(10000);
        post.close();
        assert.equal(r.status, 200);
        const events = parseSse(r.body.toString("utf8"));
        const priming = events.find((e) => e.id === "stream-1.0");
        assert.ok(priming, `the priming event reaches the client: ${r.body}`);
        assert.match(r.body.toString("utf8"), /retry: 250/, "with its retry");

        const get = await RawConn.open(tg.port);
        await get.write(getRequest(sid, { "Last-Event-ID": "stream-1.0" }));
        // The replayed answer arrives while the stream is still open (a GET stream never ends
        // with an answer of its own, so nothing may wait for its end).
        await get.waitForData((t) => t.includes("replayed") && t.includes("stream-1.1"), 10000, "the replayed answer");
        assert.equal(get.ended, false, "the GET stream is still open");
        get.close();
        assert.deepEqual(gets, ["stream-1.0"], "the backend was asked to resume from the client's event id");
    });

    test("a replayed answer on a GET stream still goes through the response hooks (the closed world applies)", async () => {
        const sid = await openSession(tg.port, backend, "backend-resume-2");
        backend.setHandler((req, res) => {
            res.writeHead(200, { "Content-Type": "text/event-stream" });
            // A message of no MCP method, then a replayed answer: only the answer goes on.
            res.write(`id: a\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "evil/unknown", params: {} })}\n\n`);
            res.write(`id: b\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: 5, result: { content: [{ type: "text", text: "fine" }] } })}\n\n`);
        });
        const get = await RawConn.open(tg.port);
        await get.write(getRequest(sid, { "Last-Event-ID": "z" }));
        await get.waitForData((t) => t.includes("fine"), 10000, "the replayed answer");
        const text = get.buf.toString("latin1");
        get.close();
        assert.doesNotMatch(text, /evil\/unknown/, "a method outside the table does not reach the client");
    });
});

describe("order of a session's streams", () => {
    test("a POST sent right after the GET reaches the backend only once the GET stream is open there", async () => {
        const sid = await openSession(tg.port, backend, "backend-order");
        let getStream = null;
        let headSent = false;
        let getArrived = null;
        const getReached = new Promise((r) => (getArrived = r));
        const seenAtPost = [];
        backend.setHandler(async (req, res, body) => {
            if (req.method === "GET") {
                getArrived();
                // A backend slow to open the stream: the head comes 400 ms after the request.
                await new Promise((r) => setTimeout(r, 400));
                res.writeHead(200, { "Content-Type": "text/event-stream" });
                res.flushHeaders();
                headSent = true;
                getStream = res;
                return;
            }
            const msg = JSON.parse(body);
            if (msg.method !== "tools/call") {
                res.writeHead(202);
                res.end();
                return;
            }
            seenAtPost.push(headSent);
            // Asks the user something on the GET stream while answering the call.
            getStream?.write(
                `id: g1\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: "e1", method: "elicitation/create", params: { message: "Sure?", requestedSchema: { type: "object", properties: {} } } })}\n\n`,
            );
            const s = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "done" }] } });
            res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s) });
            res.end(s);
        });

        const get = await RawConn.open(tg.port);
        const post = await RawConn.open(tg.port);
        await get.write(getRequest(sid));
        // Two connections have no order between them: the POST goes once toolgate has passed
        // the GET on (its head is still 400 ms away), which is the window under test.
        await Promise.race([
            getReached,
            new Promise((_, no) => setTimeout(() => no(new Error("the GET never reached the backend")), 10000).unref()),
        ]);
        await post.write(postRequest(sid, call(7, "ask")));
        const r = await post.readResponse(10000);
        assert.equal(r.status, 200);
        assert.match(r.body.toString("utf8"), /done/);
        assert.deepEqual(seenAtPost, [true], "the backend had the GET stream open when the POST arrived");
        await get.waitForData((t) => t.includes("elicitation/create"), 10000, "the elicitation request on the GET stream");
        get.close();
        post.close();
    });

    test("a backend that never opens the GET stream delays the session's POSTs a bounded time, then they go", async () => {
        const sid = await openSession(tg.port, backend, "backend-order-2");
        const posts = [];
        backend.setHandler((req, res, body) => {
            if (req.method === "GET") return; // never answers
            const msg = JSON.parse(body);
            posts.push(msg.id);
            const s = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "ok" }] } });
            res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s) });
            res.end(s);
        });
        const get = await RawConn.open(tg.port);
        await get.write(getRequest(sid));
        const post = await RawConn.open(tg.port);
        await post.write(postRequest(sid, call(8)));
        const r = await withTimeout(post.readResponse(15000), 15000, "the POST's answer");
        assert.equal(r.status, 200);
        // Once the bound has passed, the next POST does not wait at all for that GET.
        await post.write(postRequest(sid, call(9)));
        const r2 = await post.readResponse(15000);
        assert.equal(r2.status, 200);
        assert.deepEqual(posts, [8, 9]);
        get.close();
        post.close();
    });

    test("a POST of another session does not wait for this session's GET", async () => {
        const sidA = await openSession(tg.port, backend, "backend-order-a");
        const sidB = await openSession(tg.port, backend, "backend-order-b");
        let getAnswered = false;
        let postSawGetAnswered = null;
        backend.setHandler(async (req, res, body) => {
            if (req.method === "GET") {
                await new Promise((r) => setTimeout(r, 1500));
                getAnswered = true;
                res.writeHead(200, { "Content-Type": "text/event-stream" });
                res.flushHeaders();
                return;
            }
            const msg = JSON.parse(body);
            postSawGetAnswered = getAnswered;
            const s = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [] } });
            res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s) });
            res.end(s);
        });
        const get = await RawConn.open(tg.port);
        await get.write(getRequest(sidA));
        const post = await RawConn.open(tg.port);
        await post.write(postRequest(sidB, call(10)));
        const r = await post.readResponse(10000);
        assert.equal(r.status, 200);
        assert.equal(postSawGetAnswered, false, "session B's POST went on without waiting for A's GET");
        get.close();
        post.close();
    });
});

describe("a server request the call's revision does not have", () => {
    test("elicitation/create to a 2025-03-26 call: the call gets an error at once and the backend's stream is closed", async () => {
        const sid = await openSession(tg.port, backend, "backend-refused");
        let streamClosed = null;
        backend.setHandler((req, res, body) => {
            const msg = JSON.parse(body);
            if (msg.method !== "tools/call") {
                res.writeHead(202);
                return res.end();
            }
            res.writeHead(200, { "Content-Type": "text/event-stream" });
            // elicitation/create exists from 2025-06-18 on; the backend then waits for an answer.
            res.write(`id: r1\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: "ask-1", method: "elicitation/create", params: { message: "Sure?", requestedSchema: { type: "object", properties: {} } } })}\n\n`);
            streamClosed = new Promise((resolve) => res.on("close", () => resolve(true)));
        });
        const body = call(21, "ask");
        const conn = await RawConn.open(tg.port);
        await conn.write(
            request(
                "POST",
                "/mcp",
                {
                    "Content-Type": "application/json",
                    Accept: "application/json, text/event-stream",
                    "Mcp-Session-Id": sid,
                    "MCP-Protocol-Version": "2025-03-26",
                    "Content-Length": Buffer.byteLength(body),
                },
                body,
            ),
        );
        const r = await conn.readResponse(10000);
        conn.close();
        const text = r.body.toString("utf8");
        assert.doesNotMatch(text, /elicitation\/create"/, "the request did not reach the client");
        const events = parseSse(text).map((e) => JSON.parse(e.data));
        assert.equal(events.length, 1, text);
        assert.equal(events[0].id, 21);
        assert.match(events[0].error.message, /elicitation\/create.*2025-03-26/);
        assert.equal(await withTimeout(streamClosed, 10000, "the backend's stream to close"), true);
    });
});

