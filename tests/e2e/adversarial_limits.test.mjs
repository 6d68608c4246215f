// The limits layer, attacked through the real binary. Two classes of bypass:
//
//   - spend refunded by hanging up: a client sends a costly call to a slow backend and hangs
//     up before the answer, hoping the call is not charged. Once sent, a call is charged its
//     estimate (a timeout or a 5xx after sending too); a call whose connection to the backend
//     never opened is not. After N such calls the budget is spent and the next call is
//     refused before it reaches the backend.
//   - loop detection evaded by spelling the same call differently: a dummy counter argument
//     (declared volatile), trailing or Unicode spaces, another key order, 1 against 1.0, or a
//     counter nobody declared while the answer never changes. Each is caught; distinct calls
//     that merely look alike are not.
//
// Everything runs on loopback: toolgate in front of a backend inside this process; a second
// toolgate keeps its spend in a redis-server started for the test.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startToolgate, killAll, freePort, refusedPort, waitUntil, waitForPort, withLogs, tempDir, Child } from "./lib/harness.mjs";
import { startBackend } from "./lib/backend.mjs";

let backend, tg, tgRedis, deadPort;
const held = []; // answers the slow backend never gives

function send(res, status, obj) {
    const s = JSON.stringify(obj);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s) });
    res.end(s);
}

// Per tool: how the backend answers. Tools not listed answer with a fresh text each time.
const answers = {
    slow_charge: (msg, res) => held.push(res), // works for ever: the client gives up first
    stall_charge: (msg, res) => held.push(res), // never starts answering: toolgate times out
    flaky_charge: (msg, res) => {
        res.writeHead(503, { "Content-Type": "text/plain" });
        res.end("overloaded");
    },
    poll_job: (msg, res) => send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "pending" }] } }),
    lookup: (msg, res) => send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "same answer" }] } }),
};

let served = 0;
function handler(req, res, body) {
    let msg = null;
    try {
        msg = JSON.parse(body);
    } catch {
        /* not JSON */
    }
    if (!msg || msg.id === undefined) {
        res.writeHead(202);
        res.end();
        return;
    }
    const tool = msg.method === "tools/call" ? msg.params?.name : null;
    if (tool && answers[tool]) return answers[tool](msg, res);
    served++;
    send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: `answer ${served}` }] } });
}

const callsTo = (tool) => backend.received.filter((r) => r.body.includes(`"name":"${tool}"`)).length;

const routes = () => [
    { name: "mcp", path: "/mcp", url: backend.url },
    { name: "dead", path: "/dead", url: `http://127.0.0.1:${deadPort}/mcp` },
    { name: "stall", path: "/stall", url: backend.url, timeouts: { connect: "2s", first_byte: "300ms", idle: "5m" } },
];

before(async () => {
    backend = await startBackend(handler);
    deadPort = await refusedPort(); // nothing listens here: connections are refused
    const redisPort = await freePort();
    const redis = new Child("redis-server", "redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--dir", tempDir(), "--save", "", "--appendonly", "no"]);
    await waitForPort(redisPort, 10000, redis);
    // One worker: one Redis connection, so a refund is applied before the next call's check.
    tgRedis = await startToolgate({
        workers: 1,
        routes: routes(),
        extra: {
            limits: {
                store: `redis://127.0.0.1:${redisPort}`,
                costs: { default: 0, slow_charge: 1.0 },
                budgets: [{ name: "hangups", per: "user", cap: 2.0, period: "day", tools: ["slow_charge"] }],
            },
        },
    });
    tg = await startToolgate({
        routes: routes(),
        extra: {
            limits: {
                ledger: "none",
                costs: { default: 0, slow_charge: 1.0, flaky_charge: 1.0, stall_charge: 1.0 },
                budgets: [
                    { name: "hangups", per: "user", cap: 3.0, period: "day", tools: ["slow_charge"] },
                    { name: "flaky", per: "user", cap: 2.0, period: "day", tools: ["flaky_charge"] },
                    { name: "stalls", per: "user", cap: 2.0, period: "day", tools: ["stall_charge"] },
                ],
                loops: {
                    identical: 3,
                    no_progress: 0,
                    near_identical: 3,
                    max_cycle: 0,
                    warnings: 0,
                    volatile: { "counter_*": ["nonce", "/meta/ts"] },
                },
            },
        },
    });
});

after(async () => {
    try {
        for (const res of held) res.destroy();
        if (tg) await tg.stop();
        if (tgRedis) await tgRedis.stop();
    } finally {
        if (backend) await backend.close();
        await killAll();
    }
});

let nextId = 1;
// Posts a JSON-RPC body (an object, or raw text to keep 1.0 and key order as written).
async function post(path, body, gw = tg) {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    const res = await fetch(`${gw.base}${path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18" },
        body: text,
    });
    const out = await res.text();
    let json = null;
    try {
        json = JSON.parse(out);
    } catch {
        /* not JSON */
    }
    return { status: res.status, json, text: out };
}

const callBody = (name, args) => ({ jsonrpc: "2.0", id: nextId++, method: "tools/call", params: { name, arguments: args } });
const rawCall = (name, argsText) => `{"jsonrpc":"2.0","id":${nextId++},"method":"tools/call","params":{"name":"${name}","arguments":${argsText}}}`;

function denial(r) {
    const meta = r.json?.result?._meta?.["toolgate/decision"];
    return r.json?.result?.isError === true && meta ? meta.reason : null;
}

// The number of finished tools/call requests that ended with this status (toolgate's log).
const finished = (gw, status) => gw.requestLogs().filter((l) => l.status === status && l.rpc_method === "tools/call").length;

// Sends a call over a raw connection, waits until the backend has it, and hangs up.
async function hangUpAfterSend(tool, gw = tg) {
    const before = callsTo(tool);
    const gone = finished(gw, 499);
    const body = JSON.stringify(callBody(tool, { amount: 1, order: `hangup-${nextId}` }));
    const sock = net.connect(gw.port, "127.0.0.1");
    sock.on("error", () => {});
    await new Promise((r) => sock.once("connect", r));
    sock.write(
        `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nContent-Type: application/json\r\n` +
            `Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await waitUntil(() => callsTo(tool) > before, 5000, `${tool} to reach the backend`);
    sock.destroy();
    // The exchange has ended (and settled) once toolgate logs it as abandoned by the client.
    await waitUntil(() => finished(gw, 499) > gone, 5000, "toolgate to see the client leave");
}

describe("spend refunded by hanging up", () => {
    test("connect failures charge nothing; hanging up after sending is charged until the budget is spent", async () => {
        await withLogs(
            (async () => {
                // Five calls whose backend refuses connections: nothing was sent, nothing is
                // charged (were they charged, the cap of three would be gone already).
                for (let i = 0; i < 5; i++) {
                    const r = await post("/dead", callBody("slow_charge", { amount: 1, order: `dead-${i}` }));
                    assert.equal(denial(r), null, `call ${i} through the dead route is not a limits denial`);
                    assert.ok(r.status >= 500, `the dead backend answers as unreachable (got ${r.status})`);
                }
                // Three calls sent to a slow backend and hung up on: each is charged.
                for (let i = 0; i < 3; i++) await hangUpAfterSend("slow_charge");
                assert.equal(callsTo("slow_charge"), 3);
                // The fourth is refused before it is sent.
                const r = await post("/mcp", callBody("slow_charge", { amount: 1, order: "last" }));
                assert.equal(r.status, 200);
                assert.equal(denial(r), "limits.budget", r.text);
                assert.equal(callsTo("slow_charge"), 3, "the refused call never reached the backend");
            })(),
            tg.child,
        );
    });

    test("the same with the spend in Redis", async () => {
        await withLogs(
            (async () => {
                const sent = callsTo("slow_charge");
                for (let i = 0; i < 3; i++) {
                    const r = await post("/dead", callBody("slow_charge", { amount: 1, order: `redis-dead-${i}` }), tgRedis);
                    assert.equal(denial(r), null, `call ${i} through the dead route is not a limits denial`);
                }
                for (let i = 0; i < 2; i++) await hangUpAfterSend("slow_charge", tgRedis);
                const r = await post("/mcp", callBody("slow_charge", { amount: 1, order: "redis-last" }), tgRedis);
                assert.equal(denial(r), "limits.budget", r.text);
                assert.equal(callsTo("slow_charge"), sent + 2, "the refused call never reached the backend");
            })(),
            tgRedis.child,
        );
    });

    test("a 5xx after sending is charged", async () => {
        for (let i = 0; i < 2; i++) {
            const r = await post("/mcp", callBody("flaky_charge", { order: `flaky-${i}` }));
            assert.equal(denial(r), null);
            assert.ok(r.status >= 500, `the backend's failure reaches the client (got ${r.status})`);
        }
        const r = await post("/mcp", callBody("flaky_charge", { order: "flaky-last" }));
        assert.equal(denial(r), "limits.budget", r.text);
        assert.equal(callsTo("flaky_charge"), 2);
    });

    test("a timeout after sending is charged", async () => {
        for (let i = 0; i < 2; i++) {
            const r = await post("/stall", callBody("stall_charge", { order: `stall-${i}` }));
            assert.equal(r.status, 504, r.text);
        }
        const r = await post("/stall", callBody("stall_charge", { order: "stall-last" }));
        assert.equal(denial(r), "limits.budget", r.text);
        assert.equal(callsTo("stall_charge"), 2);
    });
});

describe("loop detection evaded by spelling the call differently", () => {
    // Three spellings of one call: the first two pass, the third is the loop and is denied
    // before it reaches the backend (identical: 3, no warnings).
    const evasions = {
        "a dummy counter declared volatile": ["counter_get", ['{"id":"P1","nonce":1}', '{"id":"P1","nonce":2}', '{"nonce":"x3","id":"P1"}']],
        "a nested timestamp declared volatile": ["counter_ts", ['{"id":"P1","meta":{"ts":1}}', '{"id":"P1","meta":{"ts":2}}', '{"id":"P1","meta":{"ts":1764800000}}']],
        "trailing and Unicode spaces": ["get_spaces", ['{"id":"P1"}', '{"id":"P1 "}', '{"id":" P1\\u00a0\\u200b"}']],
        "whitespace runs inside": ["get_runs", ['{"q":"heart rate"}', '{"q":"heart   rate"}', '{"q":"heart\\t\\nrate "}']],
        "key order": ["get_order", ['{"a":"x","b":{"c":1,"d":2}}', '{"b":{"d":2,"c":1},"a":"x"}', '{"b":{"c":1,"d":2},"a":"x"}']],
        "1 against 1.0": ["get_number", ['{"id":1}', '{"id":1.0}', '{"id":1e0}']],
    };
    for (const [name, [tool, variants]] of Object.entries(evasions)) {
        test(`caught: ${name}`, async () => {
            for (let i = 0; i < 2; i++) {
                const r = await post("/mcp", rawCall(tool, variants[i]));
                assert.equal(denial(r), null, `spelling ${i} passes: ${r.text}`);
            }
            const r = await post("/mcp", rawCall(tool, variants[2]));
            assert.equal(denial(r), "limits.loop", r.text);
            assert.equal(callsTo(tool), 2, "the looping call never reached the backend");
        });
    }

    test("caught: a counter nobody declared, while the answer never changes", async () => {
        for (let i = 0; i < 2; i++) {
            const r = await post("/mcp", callBody("poll_job", { job: "j1", attempt: i }));
            assert.equal(denial(r), null, r.text);
        }
        const r = await post("/mcp", callBody("poll_job", { job: "j1", attempt: 2 }));
        assert.equal(denial(r), "limits.loop", r.text);
        assert.match(r.json.result._meta["toolgate/decision"].rule ?? "", /near_identical/);
    });

    test("not flagged: distinct records, pages with new answers, words that differ", async () => {
        for (let i = 0; i < 6; i++) {
            const r = await post("/mcp", callBody("get_record", { id: `P${i}` }));
            assert.equal(denial(r), null, r.text);
        }
        for (let page = 0; page < 6; page++) {
            const r = await post("/mcp", callBody("search", { q: "cardiology", page }));
            assert.equal(denial(r), null, r.text);
        }
        // The same answer each time, but different queries: not a loop.
        for (const q of ["heart rate", "heartrate", "heart-rate", "Heart rate", "heart rates"]) {
            const r = await post("/mcp", callBody("lookup", { q }));
            assert.equal(denial(r), null, r.text);
        }
        // A volatile member only hides itself: another record is another call.
        for (let i = 0; i < 4; i++) {
            const r = await post("/mcp", callBody("counter_other", { id: `Q${i}`, nonce: 7 }));
            assert.equal(denial(r), null, r.text);
        }
    });
});
