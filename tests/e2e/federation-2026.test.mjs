// Federation in the stateless revision 2026-07-28: two backends written on the MCP TypeScript
// SDK v2 (lib/v2-server.mjs and lib/conformance/server-2026.mjs), both serving 2026-07-28,
// behind one toolgate endpoint, used by the SDK v2 client pinned to 2026-07-28 and by plain
// requests. toolgate answers server/discover from both backends' answers, lists their tools,
// prompts and resources under prefixes (filtered per user: two users, two policies), routes
// calls and reads by prefix, fans subscriptions/listen out to both and merges the streams.
// A recorder in front of each backend keeps what it received: the mirrored headers must name
// what the body names (the backend's own, unprefixed name), with the client's envelope.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { freePort, killAll, waitUntil, withTimeout } from "./lib/harness.mjs";
import { startIdentityGateway } from "./lib/identity-gateway.mjs";
import { McpServer, createMcpHandler, fromJsonSchema } from "@modelcontextprotocol/server";
import { startV2Server, readBody, toRequest, sendResponse } from "./lib/v2-server.mjs";
import { startServer2026 } from "./lib/conformance/server-2026.mjs";

const V = "2026-07-28";
const META = {
    "io.modelcontextprotocol/protocolVersion": V,
    "io.modelcontextprotocol/clientCapabilities": { elicitation: {} },
    "io.modelcontextprotocol/clientInfo": { name: "raw-e2e", version: "0.1" },
};

const POLICY = {
    rules: [
        {
            id: "clinician-tools",
            effect: "permit",
            roles_any: ["clinician"],
            tools: [
                "one.echo", "one.add", "two.test_simple_text", "two.test_trigger_tool_change", "two.test_custom_headers",
                "two.test_input_required_result_elicitation",
            ],
        },
        { id: "viewer-tools", effect: "permit", roles_any: ["viewer"], tools: ["one.echo", "two.test_simple_text", "three.touch"] },
        { id: "clinician-resources", effect: "permit", roles_any: ["clinician"], resources: "*" },
        { id: "viewer-resources", effect: "permit", roles_any: ["viewer"], resources: ["two.test://static-*", "three.doc://a"] },
        { id: "all-prompts", effect: "permit", prompts: "*" },
    ],
};

/*
 * An HTTP front that records every request (method, headers, parsed body) and passes it to
 * target, streaming the answer back (a listen stream stays open until either side closes).
 */
async function startRecorder(target) {
    const seen = [];
    const port = await freePort();
    const server = http.createServer(async (req, res) => {
        const body = await readBody(req);
        let parsed;
        try {
            parsed = body.length ? JSON.parse(body.toString("utf8")) : undefined;
        } catch {
            parsed = undefined;
        }
        const entry = { method: req.method, headers: req.headers, body: parsed, open: true };
        seen.push(entry);
        const headers = {};
        for (const [k, v] of Object.entries(req.headers))
            if (!["host", "content-length", "connection"].includes(k)) headers[k] = v;
        const ac = new AbortController();
        res.on("close", () => {
            entry.open = false;
            ac.abort();
        });
        try {
            const up = await fetch(target, { method: req.method, headers, body: body.length ? body : undefined, signal: ac.signal });
            const h = {};
            up.headers.forEach((v, k) => (h[k] = v));
            delete h["content-length"];
            delete h["content-encoding"];
            res.writeHead(up.status, h);
            res.flushHeaders();
            if (up.body) for await (const chunk of up.body) res.write(chunk);
            res.end();
        } catch {
            res.destroy();
        }
    });
    await new Promise((r) => server.listen(port, "127.0.0.1", r));
    return {
        url: `http://127.0.0.1:${port}/mcp`,
        seen,
        calls: (method) => seen.filter((s) => s.body?.method === method),
        /* Requests whose connection is still open (a listen stream, say). */
        open: (method) => seen.filter((s) => s.open && s.body?.method === method).length,
        close: () =>
            new Promise((r) => {
                server.closeAllConnections();
                server.close(() => r());
            }),
    };
}

/*
 * A 2026-07-28 backend without prompts: a resource clients may subscribe to, and a tool that
 * tells subscribers the resource it names was updated.
 */
async function startTouchServer() {
    let handler;
    handler = createMcpHandler(() => {
        const server = new McpServer({ name: "touch", version: "1.0.0" }, { capabilities: { tools: {}, resources: { subscribe: true } } });
        server.registerTool(
            "touch",
            { description: "Marks doc://<name> updated", inputSchema: fromJsonSchema({ type: "object", properties: { name: { type: "string" } }, required: ["name"] }) },
            async ({ name }) => {
                handler.notify.resourceUpdated(`doc://${name}`);
                return { content: [{ type: "text", text: `touched doc://${name}` }] };
            },
        );
        server.registerResource("a", "doc://a", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, text: "a" }] }));
        return server;
    }, { legacy: "reject" });
    const port = await freePort();
    const server = http.createServer(async (req, res) => {
        const body = await readBody(req);
        await sendResponse(res, await handler.fetch(toRequest(req, body)));
    });
    await new Promise((r) => server.listen(port, "127.0.0.1", r));
    return {
        url: `http://127.0.0.1:${port}/mcp`,
        close: () =>
            new Promise((r) => {
                server.closeAllConnections();
                server.close(() => r());
            }),
    };
}

/*
 * A backend whose listen never acknowledges: its stream stays open with keep-alive comments
 * only. Anything else is 404, -32601.
 */
async function startSilentListener() {
    const state = { open: 0, asked: 0 };
    const port = await freePort();
    const server = http.createServer(async (req, res) => {
        const body = JSON.parse((await readBody(req)).toString("utf8") || "{}");
        if (body.method !== "subscriptions/listen") {
            res.writeHead(404, { "Content-Type": "application/json" });
            return res.end(JSON.stringify({ jsonrpc: "2.0", id: body.id ?? null, error: { code: -32601, message: "Method not found" } }));
        }
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        state.open++;
        state.asked++;
        const t = setInterval(() => res.write(": keepalive\n\n"), 100);
        res.on("close", () => {
            clearInterval(t);
            state.open--;
        });
    });
    await new Promise((r) => server.listen(port, "127.0.0.1", r));
    return {
        url: `http://127.0.0.1:${port}/mcp`,
        state,
        close: () =>
            new Promise((r) => {
                server.closeAllConnections();
                server.close(() => r());
            }),
    };
}

let one, two, three, silent, recOne, recTwo, gw;
const tokens = {};

before(async () => {
    one = await startV2Server(await freePort());
    two = await startServer2026(await freePort());
    three = await startTouchServer();
    silent = await startSilentListener();
    recOne = await startRecorder(one.url);
    recTwo = await startRecorder(two.url);
    gw = await startIdentityGateway({
        routes: [
            {
                name: "fed",
                path: "/fed",
                backends: [
                    { name: "one", url: recOne.url, prefix: "one." },
                    { name: "two", url: recTwo.url, prefix: "two." },
                ],
            },
            {
                name: "fed3",
                path: "/fed3",
                backends: [
                    { name: "one", url: one.url, prefix: "one." },
                    { name: "three", url: three.url, prefix: "three." },
                ],
            },
            {
                name: "fed4",
                path: "/fed4",
                timeouts: { first_byte: "1s" },
                backends: [
                    { name: "one", url: one.url, prefix: "one." },
                    { name: "silent", url: silent.url, prefix: "silent." },
                ],
            },
        ],
        policy: POLICY,
    });
    tokens.alice = gw.mint({ sub: "alice", roles: "clinician", path: "/fed" });
    tokens.bob = gw.mint({ sub: "bob", roles: "viewer", path: "/fed" });
    tokens.carol = gw.mint({ sub: "carol", roles: "viewer", path: "/fed3" });
    tokens.dave = gw.mint({ sub: "dave", roles: "clinician", path: "/fed4" });
});

after(async () => {
    try {
        if (gw) await gw.tg.stop();
    } finally {
        for (const s of [recOne, recTwo, one, two, three, silent]) if (s) await s.close().catch(() => {});
        await killAll();
    }
});

/* A 2026-07-28 POST to the federated route; the answer's one JSON-RPC response. */
const PATHS = { carol: "/fed3", dave: "/fed4" };
async function post(user, body, headers = {}, path = PATHS[user] ?? "/fed") {
    const res = await fetch(`${gw.tg.base}${path}`, {
        method: "POST",
        headers: {
            "Content-Type": "application/json",
            Accept: "application/json, text/event-stream",
            Authorization: `Bearer ${tokens[user]}`,
            "MCP-Protocol-Version": V,
            "Mcp-Method": body.method,
            ...headers,
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10000),
    });
    const text = await res.text();
    let msg;
    if ((res.headers.get("content-type") || "").startsWith("text/event-stream")) {
        const datas = text.split(/\r?\n\r?\n/).flatMap((ev) => ev.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n") || []);
        msg = datas.map((d) => JSON.parse(d)).find((m) => m.id !== undefined && !m.method);
    } else msg = text ? JSON.parse(text) : undefined;
    return { status: res.status, headers: res.headers, msg, text };
}

const rpc = (id, method, params = {}) => ({ jsonrpc: "2.0", id, method, params: { ...params, _meta: META } });

async function allPages(user, method, key) {
    const items = [];
    const pages = [];
    let cursor;
    for (let i = 0; i < 10; i++) {
        const r = await post(user, rpc(`${method}-${i}`, method, cursor ? { cursor } : {}));
        assert.equal(r.status, 200, r.text);
        assert.ok(r.msg.result, r.text);
        pages.push(r.msg.result);
        items.push(...r.msg.result[key]);
        cursor = r.msg.result.nextCursor;
        if (!cursor) return { items, pages };
    }
    throw new Error(`${method} did not end`);
}

/* A v2 client pinned to 2026-07-28, as `user`. */
async function connect(user) {
    const client = new Client({ name: "toolgate-e2e-fed26", version: "1.0.0" }, { versionNegotiation: { mode: { pin: V } } });
    const transport = new StreamableHTTPClientTransport(new URL(`${gw.tg.base}/fed`), {
        requestInit: { headers: { Authorization: `Bearer ${tokens[user]}` } },
    });
    await withTimeout(client.connect(transport), 15000, "the v2 client connecting through toolgate");
    return { client, transport };
}

async function clientTools(client) {
    const names = [];
    let cursor;
    for (let i = 0; i < 10; i++) {
        const r = await client.listTools(cursor ? { cursor } : undefined);
        names.push(...r.tools.map((t) => t.name));
        cursor = r.nextCursor;
        if (!cursor) return names.sort();
    }
    throw new Error("tools/list did not end");
}

describe("server/discover", () => {
    test("toolgate answers, merging both backends' discover results", async () => {
        const before = recOne.calls("server/discover").length + recTwo.calls("server/discover").length;
        const r = await post("alice", rpc("d1", "server/discover"));
        assert.equal(r.status, 200, r.text);
        const d = r.msg.result;
        assert.equal(d.resultType, "complete");
        assert.deepEqual(d.supportedVersions, [V]);
        assert.deepEqual(d._meta["io.modelcontextprotocol/serverInfo"].name, "toolgate");
        // tools always; the second backend's listChanged, subscribe, logging and completions.
        assert.equal(d.capabilities.tools.listChanged, true, JSON.stringify(d.capabilities));
        assert.equal(d.capabilities.resources.subscribe, true);
        assert.equal(d.capabilities.prompts.listChanged, true);
        assert.ok(d.capabilities.logging && d.capabilities.completions, JSON.stringify(d.capabilities));
        assert.equal(d.cacheScope, "private", "the second backend's discover is private");
        assert.equal(d.ttlMs, 0, "the smallest ttlMs");
        assert.match(d.instructions, /prefix/);
        // Each backend was asked once, with the client's envelope as sent.
        const got = [...recOne.calls("server/discover"), ...recTwo.calls("server/discover")];
        assert.equal(got.length - before, 2);
        for (const c of got.slice(-1)) {
            assert.deepEqual(c.body.params._meta, META);
            assert.equal(c.headers["mcp-method"], "server/discover");
            assert.equal(c.headers["mcp-protocol-version"], V);
            assert.equal(c.headers["mcp-session-id"], undefined);
        }
    });

    test("the v2 client pinned to 2026-07-28 connects: toolgate's info, merged capabilities, no session", async () => {
        const { client, transport } = await connect("alice");
        try {
            assert.equal(transport.protocolVersion, V);
            assert.equal(transport.sessionId, undefined);
            assert.equal(client.getServerVersion().name, "toolgate");
            assert.equal(client.getServerCapabilities().tools.listChanged, true);
        } finally {
            await client.close().catch(() => {});
        }
        assert.equal(recOne.calls("initialize").length + recTwo.calls("initialize").length, 0, "no backend is initialized");
    });
});

describe("lists, merged under prefixes and filtered per user", () => {
    test("tools: each user sees what their policy permits, page by page across the backends", async () => {
        const alice = await allPages("alice", "tools/list", "tools");
        assert.deepEqual(alice.items.map((t) => t.name).sort(), [
            "one.add", "one.echo", "two.test_custom_headers", "two.test_input_required_result_elicitation", "two.test_simple_text",
            "two.test_trigger_tool_change",
        ]);
        assert.ok(alice.pages.length >= 2, "one page per backend at least");
        for (const p of alice.pages) {
            assert.equal(p.resultType, "complete");
            assert.equal(p.cacheScope, "private");
            assert.equal(typeof p.ttlMs, "number");
        }
        const bob = await allPages("bob", "tools/list", "tools");
        assert.deepEqual(bob.items.map((t) => t.name).sort(), ["one.echo", "two.test_simple_text"]);
        // The backends' schemas go on unchanged (x-mcp-header included).
        const custom = alice.items.find((t) => t.name === "two.test_custom_headers");
        assert.equal(custom.inputSchema.properties.region["x-mcp-header"], "Region");
        // Each backend got the client's envelope and its own cursor, never toolgate's.
        const lists = recTwo.calls("tools/list");
        assert.ok(lists.length >= 2);
        for (const c of lists) {
            assert.deepEqual(c.body.params._meta, META);
            assert.equal(c.body.params.cursor, undefined);
            assert.equal(c.headers["mcp-method"], "tools/list");
            assert.equal(c.headers["mcp-name"], undefined);
        }
    });

    test("resources and prompts carry the backends' URI prefixes and name prefixes", async () => {
        const res = await allPages("alice", "resources/list", "resources");
        const uris = res.items.map((r) => r.uri);
        assert.ok(uris.includes("one.v2://greeting"), JSON.stringify(uris));
        assert.ok(uris.includes("two.test://static-text"), JSON.stringify(uris));
        const bobs = (await allPages("bob", "resources/list", "resources")).items.map((r) => r.uri);
        assert.deepEqual(bobs.sort(), ["two.test://static-binary", "two.test://static-text"]);
        const templates = await allPages("alice", "resources/templates/list", "resourceTemplates");
        assert.deepEqual(templates.items.map((t) => t.uriTemplate), ["two.test://template/{id}/data"]);
        for (const p of templates.pages) assert.equal(p.cacheScope, "private", JSON.stringify(p));
        const prompts = (await allPages("alice", "prompts/list", "prompts")).items.map((p) => p.name);
        assert.ok(prompts.includes("one.greet") && prompts.includes("two.test_simple_prompt"), JSON.stringify(prompts));
    });

    test("a backend without the list gives an empty page of toolgate's (200), and paging ends", async () => {
        const first = await post("carol", rpc("p1", "prompts/list"));
        assert.equal(first.status, 200, first.text);
        assert.deepEqual(first.msg.result.prompts.map((p) => p.name), ["one.greet"]);
        const last = await post("carol", rpc("p2", "prompts/list", { cursor: first.msg.result.nextCursor }));
        assert.equal(last.status, 200, last.text);
        assert.deepEqual(last.msg.result.prompts, []);
        assert.equal(last.msg.result.resultType, "complete");
        assert.equal(last.msg.result.cacheScope, "private");
        assert.equal(last.msg.result.nextCursor, undefined);
        // A cursor toolgate did not issue is refused.
        const bad = await post("carol", rpc("p3", "prompts/list", { cursor: "not-ours" }));
        assert.equal(bad.msg.error.code, -32602, bad.text);
    });

    test("the v2 client lists the same", async () => {
        const { client } = await connect("bob");
        try {
            assert.deepEqual(await clientTools(client), ["one.echo", "two.test_simple_text"]);
        } finally {
            await client.close().catch(() => {});
        }
    });
});

describe("calls, reads and prompts routed by prefix", () => {
    test("tools/call: the backend gets its own name in the body and in Mcp-Name, with the client's envelope", async () => {
        const r = await post("alice", rpc("c1", "tools/call", { name: "one.echo", arguments: { message: "hi" } }), { "Mcp-Name": "one.echo" });
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.msg.result.content, [{ type: "text", text: "v2 echo: hi" }]);
        const c = recOne.calls("tools/call").at(-1);
        assert.equal(c.body.params.name, "echo");
        assert.equal(c.headers["mcp-name"], "echo");
        assert.equal(c.headers["mcp-method"], "tools/call");
        assert.equal(c.headers["mcp-protocol-version"], V);
        assert.deepEqual(c.body.params._meta, META, "the envelope as the client sent it");
        assert.equal(c.body.id, "c1");
        assert.equal(recTwo.calls("tools/call").filter((x) => x.body.params.name === "echo").length, 0);
    });

    test("the v2 client's calls, with an Mcp-Param header mirrored for the backend", async () => {
        const { client } = await connect("alice");
        try {
            await clientTools(client); // the client learns the x-mcp-header declarations
            const t = await client.callTool({ name: "two.test_simple_text", arguments: {} });
            assert.deepEqual(t.content, [{ type: "text", text: "This is a simple text response for testing." }]);
            const h = await client.callTool({ name: "two.test_custom_headers", arguments: { region: "Zürich " } });
            assert.notEqual(h.isError, true, JSON.stringify(h));
            assert.deepEqual(h.content, [{ type: "text", text: "region: Zürich " }]);
            const c = recTwo.calls("tools/call").filter((x) => x.body.params.name === "test_custom_headers").at(-1);
            assert.equal(c.headers["mcp-name"], "test_custom_headers");
            assert.equal(Buffer.from(/^=\?base64\?(.*)\?=$/.exec(c.headers["mcp-param-region"])[1], "base64").toString("utf8"), "Zürich ");
            const sum = await client.callTool({ name: "one.add", arguments: { a: 2, b: 3 } });
            assert.deepEqual(sum.structuredContent, { sum: 5 });
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("a call that needs the user's input: the backend's InputRequiredResult reaches the client, the retry goes back", async () => {
        const client = new Client(
            { name: "toolgate-e2e-fed26", version: "1.0.0" },
            { capabilities: { elicitation: {} }, versionNegotiation: { mode: { pin: V } } },
        );
        client.setRequestHandler("elicitation/create", async () => ({ action: "accept", content: { name: "Ann" } }));
        const transport = new StreamableHTTPClientTransport(new URL(`${gw.tg.base}/fed`), {
            requestInit: { headers: { Authorization: `Bearer ${tokens.alice}` } },
        });
        await withTimeout(client.connect(transport), 15000, "connecting");
        try {
            const r = await client.callTool({ name: "two.test_input_required_result_elicitation", arguments: {} });
            assert.deepEqual(r.content, [{ type: "text", text: "Hello, Ann!" }], JSON.stringify(r));
        } finally {
            await client.close().catch(() => {});
        }
        const rounds = recTwo.calls("tools/call").filter((c) => c.body.params.name === "test_input_required_result_elicitation");
        assert.equal(rounds.length, 2, "the first round and the retry");
        assert.equal(rounds[1].body.params.inputResponses.user_name.content.name, "Ann");
        assert.equal(rounds[1].headers["mcp-name"], "test_input_required_result_elicitation");
    });

    test("a tool hidden by policy is refused as unknown, and no backend sees it", async () => {
        const before = recOne.seen.length + recTwo.seen.length;
        const hidden = await post("bob", rpc("h1", "tools/call", { name: "one.add", arguments: { a: 1, b: 2 } }), { "Mcp-Name": "one.add" });
        assert.equal(hidden.msg.error.code, -32602, hidden.text);
        assert.match(hidden.msg.error.message, /Unknown tool: one\.add/);
        const { client } = await connect("alice");
        try {
            await assert.rejects(client.callTool({ name: "one.admin_reset", arguments: {} }), /Unknown tool/);
        } finally {
            await client.close().catch(() => {});
        }
        const seen = [...recOne.seen, ...recTwo.seen].slice(0).filter((s) => s.body?.method === "tools/call");
        assert.ok(seen.every((s) => s.body.params.name !== "admin_reset"), "admin_reset never reached a backend");
        assert.equal(recOne.seen.length + recTwo.seen.length - before, 2, "only the v2 client's discover reached the backends");
        // A name no prefix matches is unknown too.
        const none = await post("alice", rpc("h2", "tools/call", { name: "three.x", arguments: {} }), { "Mcp-Name": "three.x" });
        assert.equal(none.msg.error.code, -32602, none.text);
    });

    test("resources/read by prefixed URI: the backend reads its own URI, the contents come back prefixed", async () => {
        const r = await post("alice", rpc("r1", "resources/read", { uri: "two.test://static-text" }), { "Mcp-Name": "two.test://static-text" });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.msg.result.contents[0].uri, "two.test://static-text");
        assert.equal(r.msg.result.contents[0].text, "This is the content of the static text resource.");
        const c = recTwo.calls("resources/read").at(-1);
        assert.equal(c.body.params.uri, "test://static-text");
        assert.equal(c.headers["mcp-name"], "test://static-text");
        const { client } = await connect("alice");
        try {
            const g = await client.readResource({ uri: "one.v2://greeting" });
            assert.equal(g.contents[0].uri, "one.v2://greeting");
            assert.equal(g.contents[0].text, "hello from the v2 server");
            const p = await client.getPrompt({ name: "one.greet", arguments: { name: "Ann" } });
            assert.deepEqual(p.messages, [{ role: "user", content: { type: "text", text: "Say hello to Ann" } }]);
        } finally {
            await client.close().catch(() => {});
        }
        const pg = recOne.calls("prompts/get").at(-1);
        assert.equal(pg.body.params.name, "greet");
        assert.equal(pg.headers["mcp-name"], "greet");
        // A resource bob may not read is unknown to him.
        const denied = await post("bob", rpc("r2", "resources/read", { uri: "one.v2://greeting" }), { "Mcp-Name": "one.v2://greeting" });
        assert.equal(denied.msg.error.code, -32602, denied.text);
    });

    test("completion/complete by its ref's prefix", async () => {
        const r = await post("alice", rpc("k1", "completion/complete", {
            ref: { type: "ref/prompt", name: "two.test_prompt_with_arguments" },
            argument: { name: "arg1", value: "pa" },
        }));
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.msg.result.completion.values, ["paris", "park", "party"]);
        assert.equal(recTwo.calls("completion/complete").at(-1).body.params.ref.name, "test_prompt_with_arguments");
    });
});

/* Reads SSE events from a fetch response body, one message at a time. */
function eventReader(res) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    const queue = [];
    return async function next(ms, what) {
        return withTimeout(
            (async () => {
                for (;;) {
                    if (queue.length) return queue.shift();
                    const { value, done } = await reader.read();
                    if (done) return undefined;
                    buf += decoder.decode(value, { stream: true });
                    let i;
                    while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
                        const ev = buf.slice(0, i);
                        buf = buf.slice(i).replace(/^\r?\n\r?\n/, "");
                        const data = ev.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
                        if (data) queue.push(JSON.parse(data));
                    }
                }
            })(),
            ms,
            what,
        );
    };
}

describe("subscriptions/listen fanned out to both backends", () => {
    test("one acknowledgement, then the second backend's tools/list_changed under the client's id", async () => {
        const ac = new AbortController();
        const res = await fetch(`${gw.tg.base}/fed`, {
            method: "POST",
            headers: {
                "Content-Type": "application/json",
                Accept: "application/json, text/event-stream",
                Authorization: `Bearer ${tokens.alice}`,
                "MCP-Protocol-Version": V,
                "Mcp-Method": "subscriptions/listen",
            },
            body: JSON.stringify(rpc("listen-7", "subscriptions/listen", {
                notifications: { toolsListChanged: true, resourceSubscriptions: ["two.test://watched-resource", "one.v2://greeting"] },
            })),
            signal: ac.signal,
        });
        try {
            assert.equal(res.status, 200);
            assert.match(res.headers.get("content-type"), /text\/event-stream/);
            const next = eventReader(res);
            const ack = await next(10000, "the acknowledgement");
            assert.equal(ack.method, "notifications/subscriptions/acknowledged", JSON.stringify(ack));
            assert.equal(ack.params._meta["io.modelcontextprotocol/subscriptionId"], "listen-7");
            // The second backend honours list changes and subscriptions; the first neither.
            assert.deepEqual(ack.params.notifications, { toolsListChanged: true, resourceSubscriptions: ["two.test://watched-resource"] });
            // Each backend got its own share, its own URIs, the client's envelope.
            const l1 = recOne.calls("subscriptions/listen").at(-1);
            const l2 = recTwo.calls("subscriptions/listen").at(-1);
            assert.deepEqual(l1.body.params.notifications, { toolsListChanged: true, resourceSubscriptions: ["v2://greeting"] });
            assert.deepEqual(l2.body.params.notifications, { toolsListChanged: true, resourceSubscriptions: ["test://watched-resource"] });
            assert.deepEqual(l2.body.params._meta, META);
            assert.equal(l2.headers["mcp-method"], "subscriptions/listen");

            const trigger = await post("alice", rpc("t1", "tools/call", { name: "two.test_trigger_tool_change", arguments: {} }), {
                "Mcp-Name": "two.test_trigger_tool_change",
            });
            assert.equal(trigger.status, 200, trigger.text);
            const changed = await next(10000, "tools/list_changed on the merged stream");
            assert.equal(changed.method, "notifications/tools/list_changed", JSON.stringify(changed));
            assert.equal(changed.params._meta["io.modelcontextprotocol/subscriptionId"], "listen-7");
            assert.equal(recTwo.open("subscriptions/listen"), 1, "the second backend's listen is open");
        } finally {
            ac.abort();
        }
        // The client left: toolgate closes every backend's listen (their cancellation).
        await waitUntil(() => recOne.open("subscriptions/listen") + recTwo.open("subscriptions/listen") === 0, 10000,
            "the backends' listen streams to be closed");
    });

    test("the v2 client's listen() gets the merged acknowledgement and the change", async () => {
        const { client } = await connect("alice");
        try {
            const got = [];
            client.setNotificationHandler("notifications/tools/list_changed", (n) => got.push(n));
            const sub = await withTimeout(client.listen({ toolsListChanged: true }), 10000, "listen()");
            assert.equal(sub.honoredFilter.toolsListChanged, true, JSON.stringify(sub.honoredFilter));
            await client.callTool({ name: "two.test_trigger_tool_change", arguments: {} });
            await withTimeout(
                (async () => {
                    while (got.length === 0) await new Promise((r) => setTimeout(r, 20));
                })(),
                10000,
                "the list change through the SDK",
            );
            await sub.close();
        } finally {
            await client.close().catch(() => {});
        }
    });

    const listen4 = (id, notifications, signal) =>
        fetch(`${gw.tg.base}/fed4`, {
            method: "POST",
            headers: {
                "Content-Type": "application/json",
                Accept: "application/json, text/event-stream",
                Authorization: `Bearer ${tokens.dave}`,
                "MCP-Protocol-Version": V,
                "Mcp-Method": "subscriptions/listen",
            },
            body: JSON.stringify(rpc(id, "subscriptions/listen", { notifications })),
            signal,
        });

    test("a backend that never acknowledges is left out at its first-byte timeout", async () => {
        const ac = new AbortController();
        const res = await listen4(42, { toolsListChanged: true }, ac.signal);
        try {
            assert.equal(res.status, 200);
            const next = eventReader(res);
            const ack = await next(10000, "the acknowledgement without the silent backend");
            assert.equal(ack.method, "notifications/subscriptions/acknowledged", JSON.stringify(ack));
            assert.deepEqual(ack.params.notifications, { toolsListChanged: true }, "the first backend's");
            assert.equal(ack.params._meta["io.modelcontextprotocol/subscriptionId"], 42);
            await waitUntil(() => silent.state.open === 0, 10000, "the silent backend's listen to be closed");
            await gw.tg.waitForLog((l) => l.event === "federation_listen_no_ack", 5000, "the backend left out, logged");
        } finally {
            ac.abort();
        }
    });

    test("when every backend's listen ends, toolgate answers the listen request and ends the stream", async () => {
        const asked = silent.state.asked;
        // The first backend does not offer resource subscriptions: it acknowledges nothing and
        // ends; the other has no share of the filter and is not asked.
        const res = await listen4("l-end", { resourceSubscriptions: ["one.v2://greeting"] }, AbortSignal.timeout(15000));
        assert.equal(res.status, 200);
        const next = eventReader(res);
        const ack = await next(10000, "the acknowledgement");
        assert.equal(ack.method, "notifications/subscriptions/acknowledged", JSON.stringify(ack));
        assert.deepEqual(ack.params.notifications, {});
        const end = await next(10000, "toolgate's answer to the listen request");
        assert.equal(end.id, "l-end", JSON.stringify(end));
        assert.equal(end.result.resultType, "complete");
        assert.equal(end.result._meta["io.modelcontextprotocol/subscriptionId"], "l-end");
        assert.equal(end.result._meta["io.modelcontextprotocol/serverInfo"].name, "toolgate");
        assert.equal(await next(10000, "the end of the stream"), undefined);
        assert.equal(silent.state.asked, asked, "the silent backend was not asked");
    });

    test("resources/updated reaches the client with the backend's URI prefix and the client's id", async () => {
        const ac = new AbortController();
        const res = await fetch(`${gw.tg.base}/fed3`, {
            method: "POST",
            headers: {
                "Content-Type": "application/json",
                Accept: "application/json, text/event-stream",
                Authorization: `Bearer ${tokens.carol}`,
                "MCP-Protocol-Version": V,
                "Mcp-Method": "subscriptions/listen",
            },
            body: JSON.stringify(rpc("watch", "subscriptions/listen", { notifications: { resourceSubscriptions: ["three.doc://a"] } })),
            signal: ac.signal,
        });
        try {
            assert.equal(res.status, 200);
            const next = eventReader(res);
            const ack = await next(10000, "the acknowledgement");
            assert.deepEqual(ack.params.notifications, { resourceSubscriptions: ["three.doc://a"] }, JSON.stringify(ack));
            const t = await post("carol", rpc("touch-1", "tools/call", { name: "three.touch", arguments: { name: "a" } }), { "Mcp-Name": "three.touch" });
            assert.deepEqual(t.msg.result.content, [{ type: "text", text: "touched doc://a" }], t.text);
            const upd = await next(10000, "resources/updated");
            assert.equal(upd.method, "notifications/resources/updated", JSON.stringify(upd));
            assert.equal(upd.params.uri, "three.doc://a");
            assert.equal(upd.params._meta["io.modelcontextprotocol/subscriptionId"], "watch");
        } finally {
            ac.abort();
        }
    });

    test("a listen for a resource the user may not read is refused before any backend", async () => {
        const before = recOne.calls("subscriptions/listen").length + recTwo.calls("subscriptions/listen").length;
        const r = await post("bob", rpc("l2", "subscriptions/listen", { notifications: { resourceSubscriptions: ["one.v2://greeting"] } }));
        assert.equal(r.msg?.error?.code, -32602, r.text);
        assert.equal(recOne.calls("subscriptions/listen").length + recTwo.calls("subscriptions/listen").length, before);
    });
});

describe("the session era beside it, on the same route", () => {
    test("a client without the pin initializes in 2025-11-25 and gets a session of toolgate's", async () => {
        const client = new Client({ name: "toolgate-e2e-fed26", version: "1.0.0" });
        const transport = new StreamableHTTPClientTransport(new URL(`${gw.tg.base}/fed`), {
            requestInit: { headers: { Authorization: `Bearer ${tokens.bob}` } },
        });
        await withTimeout(client.connect(transport), 15000, "a 2025-era client connecting");
        try {
            assert.equal(transport.protocolVersion, "2025-11-25");
            assert.match(transport.sessionId, /^[A-Za-z0-9_-]{43}$/);
            assert.deepEqual(await clientTools(client), ["one.echo", "two.test_simple_text"]);
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("GET and DELETE in 2026-07-28 are 405", async () => {
        for (const method of ["GET", "DELETE"]) {
            const res = await fetch(`${gw.tg.base}/fed`, {
                method,
                headers: { Authorization: `Bearer ${tokens.alice}`, "MCP-Protocol-Version": V, Accept: "text/event-stream" },
            });
            assert.equal(res.status, 405, method);
        }
    });
});

describe("what toolgate logged", () => {
    test("nothing a backend sent was dropped as not understood", () => {
        const warned = gw.tg.logs().filter((l) => l.level === "warn" || l.level === "error");
        assert.deepEqual(warned.filter((l) => l.event === "upstream_not_understood"), []);
    });
});
