// The closed world, attacked: toolgate in front of a hostile backend, with real tokens, tried
// the way an attacker (a client, a compromised model, or the backend itself) would. Each
// group is one class of bypass; every case says what must happen and, for the client's side,
// whether anything reached the backend. What toolgate does not understand, it must not let
// through, in either direction.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { startToolgate, killAll, freePort, tempDir, TOOLGATE_BIN } from "./lib/harness.mjs";
import { exchange, request } from "./lib/raw.mjs";

const ISSUER = "https://idp.adversarial.invalid/";
let tg, backend, backendPort, audience;
const tokens = {};
const seen = []; // what the backend received: {method, headers, body}
let script = null; // the backend's behaviour for the current test: (msg, req, res) => handled?

const toolgateCli = (...args) => execFileSync(TOOLGATE_BIN, args, { encoding: "utf8", timeout: 20000 });

function send(res, status, obj, headers = {}) {
    const s = obj === null ? "" : JSON.stringify(obj);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s), ...headers });
    res.end(s);
}

function sse(res, events, headers = {}) {
    res.writeHead(200, { "Content-Type": "text/event-stream", ...headers });
    res.end(events.join(""));
}

const TOOLS = [
    { name: "get_patient", inputSchema: { type: "object" } },
    { name: "search_patients", inputSchema: { type: "object" } },
    { name: "delete_patient", inputSchema: { type: "object" } },
    { name: "secret_admin", inputSchema: { type: "object" } },
    { name: "fetch", inputSchema: { type: "object" } },
    { name: "pay", inputSchema: { type: "object" } },
];

// A backend that answers everything the simplest way, unless the test's script takes over.
function defaultAnswer(msg, req, res) {
    if (req.method === "DELETE") return send(res, 200, null);
    if (!msg || msg.id === undefined) return send(res, 202, null);
    if (msg.method === "initialize") {
        const sid = `backend-session-${seen.length}`;
        seen[seen.length - 1].issued = sid;
        return send(
            res,
            200,
            { jsonrpc: "2.0", id: msg.id, result: { protocolVersion: "2025-06-18", capabilities: { tools: {}, resources: {} }, serverInfo: { name: "hostile", version: "1" } } },
            { "Mcp-Session-Id": sid },
        );
    }
    if (msg.method === "tools/list") return send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { tools: TOOLS } });
    return send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "ok" }] } });
}

before(async () => {
    const dir = tempDir();
    const keys = path.join(dir, "keys");
    toolgateCli("keys", "generate", "--alg", "EdDSA", "--out", keys);
    backendPort = await freePort();
    backend = http.createServer((req, res) => {
        let body = "";
        req.on("data", (d) => (body += d));
        req.on("end", () => {
            let msg = null;
            try {
                msg = body ? JSON.parse(body) : null;
            } catch {
                /* not JSON */
            }
            seen.push({ method: req.method, headers: req.headers, body, msg });
            if (script && script(msg, req, res)) return;
            defaultAnswer(msg, req, res);
        });
    });
    await new Promise((r) => backend.listen(backendPort, "127.0.0.1", r));
    const port = await freePort();
    audience = `http://127.0.0.1:${port}/mcp`;
    tg = await startToolgate({
        port,
        routes: [{ name: "mcp", path: "/mcp", url: `http://127.0.0.1:${backendPort}/mcp` }],
        identity: {
            issuers: [{ issuer: ISSUER, audiences: [audience], jwks_file: path.join(keys, "jwks.json"), algorithms: ["EdDSA"] }],
        },
        policy: {
            rules: [
                { id: "read", effect: "permit", tools: ["get_*", "search_*", "fetch", "pay", "delete_*"], roles_any: ["doctor"] },
                { id: "no-delete", effect: "forbid", tools: ["delete_patient"] },
                { id: "no-big-pay", effect: "forbid", tools: ["pay"], when: [{ arg: "/amount", eq: 500 }] },
                { id: "no-internal", effect: "forbid", tools: ["fetch"], when: [{ arg: "/url", host_in: ["internal.example"] }] },
                { id: "public-files", effect: "permit", resources: ["file:///public/*"], roles_any: ["doctor"] },
                { id: "summary", effect: "permit", prompts: ["summary"], roles_any: ["doctor"] },
            ],
        },
        extra: { audit: { store: `sqlite:${path.join(dir, "audit.db")}` } },
    });
    const mint = (sub, roles) =>
        toolgateCli("token", "--key", path.join(keys, "private.pem"), "--iss", ISSUER, "--aud", audience, "--sub", sub,
            "--roles", roles, "--scopes", "tools.read", "--ttl", "10m").trim();
    tokens.alice = mint("alice", "doctor");
    tokens.bob = mint("bob", "doctor");
});

after(async () => {
    try {
        if (tg) await tg.stop();
    } finally {
        if (backend) await new Promise((r) => backend.close(r));
        await killAll();
    }
});

let nextId = 1;
async function post(body, { user = "alice", session, headers = {}, raw = false } = {}) {
    const h = {
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
        ...(user ? { Authorization: `Bearer ${tokens[user]}` } : {}),
        ...(session ? { "Mcp-Session-Id": session } : {}),
        ...headers,
    };
    const mark = seen.length;
    const res = await fetch(`${tg.base}/mcp`, { method: "POST", headers: h, body: raw ? body : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try {
        json = text && !text.startsWith("data:") && !text.startsWith("id:") ? JSON.parse(text) : null;
    } catch {
        /* SSE or empty */
    }
    return { res, text, json, reached: seen.slice(mark) };
}

const call = (name, args = {}) => ({ jsonrpc: "2.0", id: nextId++, method: "tools/call", params: { name, arguments: args } });

async function openSession(user = "alice") {
    const r = await post(
        { jsonrpc: "2.0", id: nextId++, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "attacker", version: "1" } } },
        { user, headers: { "MCP-Protocol-Version": "2025-06-18" } },
    );
    assert.equal(r.res.status, 200);
    const sid = r.res.headers.get("mcp-session-id");
    const backendSid = r.reached[0].issued;
    return { sid, backendSid };
}

// Denied as a tool result the model can read, or as a JSON-RPC error: either way not forwarded.
function assertDenied(r, what) {
    assert.equal(r.reached.length, 0, `${what}: must not reach the backend`);
    const denied = (r.json && (r.json.error || r.json.result?.isError)) || r.res.status >= 400;
    assert.ok(denied, `${what}: expected a denial, got ${r.res.status} ${r.text.slice(0, 200)}`);
}

describe("class 1: sessions are toolgate's own", () => {
    test("made-up, stolen, leaked and ended session ids are all unknown (404) and never reach the backend", async () => {
        const { sid, backendSid } = await openSession("alice");
        assert.match(sid, /^[A-Za-z0-9_-]{43}$/);
        assert.notEqual(sid, backendSid);
        const attempts = [
            ["made up", { session: "0".repeat(43) }],
            ["made up, short", { session: "s1" }],
            ["another user's", { session: sid, user: "bob" }],
            ["the backend's own id", { session: backendSid }],
            ["one character off", { session: sid.slice(0, -1) + (sid.endsWith("A") ? "B" : "A") }],
        ];
        for (const [what, opts] of attempts) {
            const r = await post({ jsonrpc: "2.0", id: nextId++, method: "tools/list" }, opts);
            assert.equal(r.res.status, 404, what);
            assert.equal(r.reached.length, 0, `${what}: reached the backend`);
        }
        // Her own works, and the backend gets its own id, never toolgate's.
        const ok = await post({ jsonrpc: "2.0", id: nextId++, method: "tools/list" }, { session: sid });
        assert.equal(ok.res.status, 200);
        assert.equal(ok.reached[0].headers["mcp-session-id"], backendSid);
        // Ended: unknown from then on.
        const del = await fetch(`${tg.base}/mcp`, { method: "DELETE", headers: { Authorization: `Bearer ${tokens.alice}`, "Mcp-Session-Id": sid } });
        assert.equal(del.status, 200);
        const after = await post({ jsonrpc: "2.0", id: nextId++, method: "tools/list" }, { session: sid });
        assert.equal(after.res.status, 404);
    });

    test("a backend that forgets a session (404) ends toolgate's too", async () => {
        const { sid } = await openSession("alice");
        script = (msg, req, res) => {
            send(res, 404, { jsonrpc: "2.0", id: msg?.id ?? null, error: { code: -32001, message: "Session not found" } });
            return true;
        };
        try {
            const r = await post({ jsonrpc: "2.0", id: nextId++, method: "tools/list" }, { session: sid });
            assert.equal(r.res.status, 404);
        } finally {
            script = null;
        }
        const again = await post({ jsonrpc: "2.0", id: nextId++, method: "tools/list" }, { session: sid });
        assert.equal(again.res.status, 404);
        assert.equal(again.reached.length, 0);
    });
});

describe("class 2: every method classified; unknown ones refused", () => {
    test("unclassified client methods and case games are -32601 and never forwarded", async () => {
        for (const method of ["Tools/Call", "tools/call ", "TOOLS/LIST", "tools/delete", "admin/shutdown", "sampling/createMessage", "x"]) {
            const r = await post({ jsonrpc: "2.0", id: nextId++, method, params: { name: "get_patient" } });
            assertDenied(r, method);
            assert.equal(r.json.error.code, -32601, method);
        }
    });

    test("subscriptions and completions are governed by what they name", async () => {
        const cases = [
            [{ method: "resources/subscribe", params: { uri: "file:///secret/keys" } }, false],
            [{ method: "resources/subscribe", params: { uri: "file:///public/a" } }, true],
            [{ method: "completion/complete", params: { ref: { type: "ref/prompt", name: "admin_prompt" }, argument: { name: "a", value: "b" } } }, false],
            [{ method: "completion/complete", params: { ref: { type: "ref/prompt", name: "summary" }, argument: { name: "a", value: "b" } } }, true],
            [{ method: "completion/complete", params: { ref: { type: "ref/resource", uri: "file:///etc/{x}" }, argument: { name: "x", value: "p" } } }, false],
        ];
        for (const [m, allowed] of cases) {
            const r = await post({ jsonrpc: "2.0", id: nextId++, ...m });
            if (allowed) assert.equal(r.reached.length, 1, JSON.stringify(m));
            else assertDenied(r, JSON.stringify(m));
        }
    });

    test("what the backend sends that is not an MCP message of this revision does not reach the client", async () => {
        script = (msg, req, res) => {
            if (msg?.method !== "tools/call") return false;
            sse(res, [
                ": a comment the model should never see\n\n",
                `event: exfiltrate\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "typed" } })}\n\n`,
                `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/steal_tokens", params: {} })}\n\n`,
                `data: ${JSON.stringify({ jsonrpc: "2.0", id: 99, method: "admin/run", params: {} })}\n\n`,
                `id: \u0001bad\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } })}\n\n`,
                `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "kept" } })}\n\n`,
                `id: e7\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "done" }] } })}\n\n`,
            ]);
            return true;
        };
        try {
            const r = await post(call("get_patient", { id: "P1" }));
            assert.equal(r.res.status, 200);
            assert.ok(!r.text.includes("comment"), "comments are dropped");
            assert.ok(!r.text.includes("exfiltrate") && !r.text.includes("typed"), "unknown event types are dropped");
            assert.ok(!r.text.includes("steal_tokens") && !r.text.includes("admin/run"), "unknown methods are dropped");
            assert.ok(!r.text.includes("\u0001"), "ids with control characters are dropped");
            assert.ok(r.text.includes("kept"), "understood notifications pass");
            assert.match(r.text, /id: e7\ndata: .*"done"/);
        } finally {
            script = null;
        }
    });
});

describe("class 3: answers matched to what they are", () => {
    test("a batch that repeats an id is refused whole", async () => {
        const r = await post(
            [{ jsonrpc: "2.0", id: 5, method: "ping" }, { jsonrpc: "2.0", id: 5, method: "tools/list" }],
            { headers: { "MCP-Protocol-Version": "2025-03-26" } },
        );
        assert.equal(r.res.status, 400);
        assert.equal(r.reached.length, 0);
    });

    test("a tools list in the answer to a ping is filtered all the same", async () => {
        script = (msg, req, res) => {
            if (msg?.method !== "ping") return false;
            send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { tools: TOOLS, resources: [{ uri: "file:///secret/x", name: "x" }] } });
            return true;
        };
        try {
            const r = await post({ jsonrpc: "2.0", id: nextId++, method: "ping" });
            const names = r.json.result.tools.map((t) => t.name);
            assert.ok(!names.includes("secret_admin"), names.join(","));
            assert.equal(r.json.result.resources.length, 0);
        } finally {
            script = null;
        }
    });

    test("resource notifications reach only users who may see the resource", async () => {
        script = (msg, req, res) => {
            if (msg?.method !== "tools/call") return false;
            sse(res, [
                `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/resources/updated", params: { uri: "file:///secret/payroll" } })}\n\n`,
                `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/resources/updated", params: { uri: "file:///public/../secret/x" } })}\n\n`,
                `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/resources/updated", params: { uri: "file:///public/menu" } })}\n\n`,
                `data: ${JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [] } })}\n\n`,
            ]);
            return true;
        };
        try {
            const r = await post(call("get_patient", {}));
            assert.ok(!r.text.includes("payroll") && !r.text.includes("secret"), r.text);
            assert.ok(r.text.includes("file:///public/menu"));
        } finally {
            script = null;
        }
    });
});

describe("class 4: names and URIs compared in canonical form", () => {
    test("dot segments and encodings cannot climb out of an allowed prefix", async () => {
        const read = (uri) => post({ jsonrpc: "2.0", id: nextId++, method: "resources/read", params: { uri } });
        for (const uri of [
            "file:///public/../secret",
            "file:///public/%2e%2e/secret",
            "file:///public/%2E%2e/secret",
            "file:///public/.%2e/secret",
            "file:///public/..%2fsecret",
            "file:///public/..%5csecret",
            "file:///public/..\\secret",
            "file:///public//secret",
            "file:///public/%00",
            "file:///public/../../etc/passwd",
            "FILE:///secret",
        ]) {
            assertDenied(await read(uri), uri);
        }
        // Allowed, and forwarded in the canonical form that was judged.
        const ok = await read("file:///public/x/../%61.txt");
        assert.equal(ok.reached.length, 1);
        assert.equal(ok.reached[0].msg.params.uri, "file:///public/a.txt");
    });

    test("tool names: exact bytes, and forbids hold in any case", async () => {
        for (const name of ["delete_patient", "Delete_Patient", "DELETE_PATIENT", "delete_patient ", " delete_patient", "delete_patient\u0000", "delete\u200bpatient", "secret_admin"]) {
            assertDenied(await post(call(name, {})), JSON.stringify(name));
        }
        assert.equal((await post(call("get_patient", { id: "P1" }))).reached.length, 1);
    });
});

describe("class 5: one URL parser; URL arguments vetted for every tool", () => {
    test("host_in reads URLs as curl does", async () => {
        for (const url of ["http://internal.example/", "http://public.example\\@internal.example/", "http://x@internal.example/", "http://INTERNAL.example./"]) {
            assertDenied(await post(call("fetch", { url })), url);
        }
    });

    test("URLs to private places are refused in any argument of any tool", async () => {
        const cases = [
            { url: "http://127.0.0.1:6379/" },
            { nested: { list: ["ok", "http://169.254.169.254/latest/meta-data"] } },
            { u: "http:169.254.169.254" },
            { u: "gopher://127.0.0.1:11211/_stats" },
            { u: "http://0x7f.1/" },
            { u: "http://[::ffff:10.0.0.1]/" },
            { u: "  http://10.1.2.3/" },
        ];
        for (const args of cases) assertDenied(await post(call("search_patients", args)), JSON.stringify(args));
        assert.equal((await post(call("search_patients", { q: "see http://example.org and more" }))).reached.length, 1);
    });
});

describe("class 9: equality by value, not spelling", () => {
    test("a forbid on a number catches every spelling of it", async () => {
        for (const amount of [500, 500.0, "500", "500.0", "0500", " 500", "5e2", "+500", "0x1f4", "5_00", "500 apples"]) {
            const r = await post(call("pay", { amount }));
            assertDenied(r, JSON.stringify(amount));
            assert.match(r.json.result._meta["toolgate/decision"].rule, /no-big-pay/);
        }
        assert.equal((await post(call("pay", { amount: "499" }))).reached.length, 1);
    });
});

describe("class 10: DNS rebinding", () => {
    test("a foreign Origin or a rebound Host is 403; the gateway's own pass", async () => {
        const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });
        const base = { "Content-Type": "application/json", Authorization: `Bearer ${tokens.alice}`, "Content-Length": body.length };
        const mark = seen.length;
        for (const extra of [{ Origin: "http://evil.example" }, { Origin: "null" }, { Host: "evil.example" }, { Host: "rebind.attacker.example:8080" }]) {
            const res = await exchange(tg.port, request("POST", "/mcp", { ...base, ...extra }, body));
            assert.equal(res.status, 403, JSON.stringify(extra));
        }
        assert.equal(seen.length, mark, "nothing reached the backend");
        for (const extra of [{ Origin: tg.base }, { Host: `127.0.0.1:${tg.port}` }, { Host: `localhost:${tg.port}` }]) {
            const res = await exchange(tg.port, request("POST", "/mcp", { ...base, ...extra }, body));
            assert.equal(res.status, 200, JSON.stringify(extra));
        }
    });
});
