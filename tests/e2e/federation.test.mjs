// Federation: the demo backend and server-everything behind one /mcp endpoint, used with the
// official MCP SDK client. toolgate owns the client's session, opens the backends' sessions
// lazily, lists their tools under prefixes (paged backend by backend), routes each call by
// its prefix, relays progress, filters the list by policy and closes everything on DELETE.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { startToolgate, startEhr, startEverything, killAll, withTimeout, waitUntil, freePort, tempDir, TOOLGATE_BIN } from "./lib/harness.mjs";

const cli = (...args) => execFileSync(TOOLGATE_BIN, args, { encoding: "utf8", timeout: 20000 });

after(killAll);

async function allTools(client) {
    const names = [];
    let cursor;
    for (let pages = 0; pages < 20; pages++) {
        const r = await client.listTools(cursor ? { cursor } : {});
        names.push(...r.tools.map((t) => t.name));
        if (!r.nextCursor) return { names, pages: pages + 1 };
        cursor = r.nextCursor;
    }
    throw new Error("tools/list did not end");
}

describe("two backends behind one endpoint", () => {
    let tg, ehr, ev, client, transport;

    before(async () => {
        ehr = await startEhr("sse", ["--page-size", "3"]);
        ev = await startEverything();
        tg = await startToolgate({
            routes: [],
            extra: {
                routes: [
                    {
                        name: "all",
                        path: "/mcp",
                        backends: [
                            { name: "ehr", url: ehr.url, prefix: "ehr." },
                            { name: "everything", url: ev.url, prefix: "ev." },
                        ],
                        inject: { mode: "none" },
                    },
                ],
            },
            policy: {
                rules: [
                    { id: "ehr-tools", effect: "permit", tools: ["ehr.*"] },
                    { id: "some-everything", effect: "permit", tools: ["ev.echo", "ev.trigger-long-running-operation"] },
                    { id: "no-deletes", effect: "forbid", tools: ["ehr.delete_patient"] },
                ],
            },
        });
        client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
        transport = new StreamableHTTPClientTransport(new URL(tg.url));
        await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
    });

    after(async () => {
        try {
            if (tg) await tg.stop();
        } finally {
            if (ehr) await ehr.stop();
            if (ev) await ev.stop();
        }
    });

    test("toolgate answers initialize with its own session", async () => {
        assert.equal(client.getServerVersion().name, "toolgate");
        assert.match(transport.sessionId, /^[A-Za-z0-9_-]{43}$/);
        assert.ok(client.getServerCapabilities().tools);
    });

    test("tools/list merges both backends under prefixes, paged, filtered by policy", async () => {
        const { names, pages } = await allTools(client);
        const ehrTools = names.filter((n) => n.startsWith("ehr."));
        const evTools = names.filter((n) => n.startsWith("ev."));
        assert.deepEqual(ehrTools, [
            "ehr.get_patient", "ehr.search_patients", "ehr.update_note",
            "ehr.charge_card", "ehr.fetch_url", "ehr.slow_report", "ehr.whoami",
        ]);
        assert.deepEqual(evTools.sort(), ["ev.echo", "ev.trigger-long-running-operation"]);
        assert.equal(names.length, ehrTools.length + evTools.length);
        assert.ok(pages >= 4, `the demo backend's pages of 3 and the other backend's (${pages})`);
    });

    test("tools/call goes to the backend its prefix names", async () => {
        const p = await client.callTool({ name: "ehr.get_patient", arguments: { patient_id: "P123" } });
        assert.match(p.content[0].text, /Daniel Patel/);
        const e = await client.callTool({ name: "ev.echo", arguments: { message: "federated" } });
        assert.equal(e.content[0].text, "Echo: federated");
        await assert.rejects(
            client.callTool({ name: "nope.echo", arguments: {} }),
            (err) => err.code === -32602,
        );
        await assert.rejects(
            client.callTool({ name: "ehr.delete_patient", arguments: { patient_id: "P1" } }),
            (err) => err.code === -32602,
        );
    });

    test("progress from a backend reaches the client as it happens", async () => {
        const seen = [];
        const r = await client.callTool(
            { name: "ev.trigger-long-running-operation", arguments: { duration: 2, steps: 4 } },
            undefined,
            { onprogress: (p) => seen.push({ at: Date.now(), progress: p.progress }), timeout: 20000 },
        );
        assert.ok(r.content.length > 0);
        assert.ok(seen.length >= 3, `progress notifications (${seen.length})`);
        assert.ok(seen[seen.length - 1].at - seen[0].at >= 500, "spread over the run");
    });

    test("DELETE closes the session; it is gone afterwards", async () => {
        const sid = transport.sessionId;
        await transport.terminateSession();
        const res = await fetch(tg.url, {
            method: "POST",
            headers: {
                "Content-Type": "application/json",
                Accept: "application/json, text/event-stream",
                "Mcp-Session-Id": sid,
                "MCP-Protocol-Version": "2025-06-18",
            },
            body: JSON.stringify({ jsonrpc: "2.0", id: 5, method: "tools/list" }),
        });
        assert.equal(res.status, 404);
        await client.close();
    });

    test("GET (the server stream) needs a session", async () => {
        const res = await fetch(tg.url, { headers: { Accept: "text/event-stream" } });
        assert.equal(res.status, 400);
    });
});

/* ---------- resources, templates, prompts and completions, two users ---------- */

// An MCP server of the SDK on a free loopback port, one transport per session; `build` adds
// its tools, resources and prompts. `seen` records the method of every request it received.
async function startSdkBackend(name, build) {
    const { McpServer } = await import("@modelcontextprotocol/sdk/server/mcp.js");
    const { StreamableHTTPServerTransport } = await import("@modelcontextprotocol/sdk/server/streamableHttp.js");
    const { randomUUID } = await import("node:crypto");
    const http = await import("node:http");
    const port = await freePort();
    const transports = new Map();
    const seen = [];
    const servers = [];
    const server = http.createServer(async (req, res) => {
        let body = "";
        for await (const c of req) body += c;
        const parsed = body ? JSON.parse(body) : undefined;
        seen.push({ httpMethod: req.method, msg: parsed });
        const sid = req.headers["mcp-session-id"];
        let t = sid && transports.get(sid);
        if (!t) {
            if (sid) {
                res.writeHead(404).end();
                return;
            }
            const mcp = new McpServer({ name, version: "1.0.0" }, { capabilities: { logging: {} } });
            build(mcp);
            servers.push(mcp);
            t = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                onsessioninitialized: (id) => transports.set(id, t),
            });
            await mcp.connect(t);
        }
        await t.handleRequest(req, res, parsed);
    });
    await new Promise((r) => server.listen(port, "127.0.0.1", r));
    return {
        url: `http://127.0.0.1:${port}/mcp`,
        seen,
        servers,
        methods: () => seen.map((s) => s.msg && s.msg.method).filter(Boolean),
        stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
    };
}

describe("resources, prompts and completions of two backends, two users", () => {
    let tg, ehr, billing;
    const tokens = {};
    const clients = {};
    const transports = {};
    const elicited = [];
    const ISSUER = "https://idp.federation.invalid/";

    before(async () => {
        const { z } = await import("zod");
        const { ResourceTemplate } = await import("@modelcontextprotocol/sdk/server/mcp.js");
        const { completable } = await import("@modelcontextprotocol/sdk/server/completable.js");
        const { SubscribeRequestSchema, UnsubscribeRequestSchema } = await import("@modelcontextprotocol/sdk/types.js");
        ehr = await startSdkBackend("ehr", (mcp) => {
            const text = (uri, t) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: t }] });
            mcp.registerResource("public", "file:///records/public.txt", { mimeType: "text/plain" }, (uri) => text(uri, "public record"));
            mcp.registerResource("secret", "file:///records/secret.txt", { mimeType: "text/plain" }, (uri) => text(uri, "SECRET record"));
            mcp.registerResource(
                "record",
                new ResourceTemplate("file:///records/{name}", {
                    list: undefined,
                    complete: { name: (v) => ["daniel.txt", "dana.txt", "public.txt"].filter((n) => n.startsWith(v)) },
                }),
                { mimeType: "text/plain" },
                (uri, { name }) => text(uri, `record ${name}`),
            );
            mcp.registerPrompt(
                "summary",
                { argsSchema: { patient: completable(z.string(), (v) => ["Daniel", "Dana", "Eve"].filter((n) => n.startsWith(v))) } },
                ({ patient }) => ({ messages: [{ role: "user", content: { type: "text", text: `Summarise ${patient}` } }] }),
            );
            mcp.registerTool("touch", { inputSchema: {} }, async (_args, extra) => {
                await extra.sendNotification({ method: "notifications/resources/updated", params: { uri: "file:///records/public.txt" } });
                await extra.sendNotification({ method: "notifications/resources/updated", params: { uri: "file:///records/secret.txt" } });
                return { content: [{ type: "resource_link", uri: "file:///records/public.txt", name: "public" }] };
            });
            mcp.server.registerCapabilities({ resources: { subscribe: true } });
            mcp.server.setRequestHandler(SubscribeRequestSchema, () => ({}));
            mcp.server.setRequestHandler(UnsubscribeRequestSchema, () => ({}));
        });
        billing = await startSdkBackend("billing", (mcp) => {
            mcp.registerResource("invoice", "db://invoices/1", { mimeType: "text/plain" }, (uri) => ({
                contents: [{ uri: uri.href, text: "invoice 1: 12.00" }],
            }));
            mcp.registerPrompt("invoice", { argsSchema: { id: z.string() } }, ({ id }) => ({
                messages: [{ role: "user", content: { type: "text", text: `Explain invoice ${id}` } }],
            }));
            mcp.registerTool("total", { inputSchema: {} }, async () => ({ content: [{ type: "text", text: "12.00" }] }));
        });
        const dir = tempDir();
        const keys = path.join(dir, "keys");
        cli("keys", "generate", "--alg", "EdDSA", "--out", keys);
        const port = await freePort();
        const audience = `http://127.0.0.1:${port}/mcp`;
        tg = await startToolgate({
            port,
            routes: [],
            identity: {
                issuers: [{ issuer: ISSUER, audiences: [audience], jwks_file: path.join(keys, "jwks.json"), algorithms: ["EdDSA"] }],
            },
            extra: {
                routes: [
                    {
                        name: "fed",
                        path: "/mcp",
                        backends: [
                            { name: "ehr", url: ehr.url, prefix: "ehr." },
                            { name: "billing", url: billing.url, prefix: "billing." },
                        ],
                        inject: { mode: "none" },
                    },
                ],
            },
            policy: {
                rules: [
                    { id: "tools", effect: "permit", tools: "*" },
                    { id: "doctors-records", effect: "permit", resources: ["ehr.file:///records/*"], roles_any: ["doctor"] },
                    { id: "doctors-prompts", effect: "permit", prompts: ["ehr.*"], roles_any: ["doctor"] },
                    { id: "clerks-billing", effect: "permit", resources: ["billing.*"], roles_any: ["clerk"] },
                    { id: "clerks-prompts", effect: "permit", prompts: ["billing.*"], roles_any: ["clerk"] },
                    { id: "no-secret", effect: "forbid", resources: ["ehr.file:///records/secret.txt"] },
                ],
            },
        });
        const mint = (sub, roles) =>
            cli("token", "--key", path.join(keys, "private.pem"), "--iss", ISSUER, "--aud", audience, "--sub", sub,
                "--roles", roles, "--scopes", "tools.read", "--ttl", "10m").trim();
        tokens.alice = mint("alice", "doctor");
        tokens.bob = mint("bob", "clerk");
        for (const user of ["alice", "bob"]) {
            const client = new Client(
                { name: `e2e-${user}`, version: "1.0.0" },
                { capabilities: { elicitation: {}, sampling: {} } },
            );
            const { ElicitRequestSchema, CreateMessageRequestSchema } = await import("@modelcontextprotocol/sdk/types.js");
            client.setRequestHandler(ElicitRequestSchema, (req, extra) => {
                elicited.push({ id: extra.requestId, message: req.params.message });
                return { action: "accept", content: { account: "acme" } };
            });
            client.setRequestHandler(CreateMessageRequestSchema, () => ({
                role: "assistant",
                content: { type: "text", text: "sampled" },
                model: "test",
            }));
            const transport = new StreamableHTTPClientTransport(new URL(tg.url), {
                requestInit: { headers: { Authorization: `Bearer ${tokens[user]}` } },
            });
            await withTimeout(client.connect(transport), 10000, `initialize as ${user}`);
            clients[user] = client;
            transports[user] = transport;
        }
    });

    after(async () => {
        for (const c of Object.values(clients)) await c.close().catch(() => {});
        try {
            if (tg) await tg.stop();
        } finally {
            if (ehr) await ehr.stop();
            if (billing) await billing.stop();
        }
    });

    // Every page of a list, through toolgate's cursor.
    async function all(client, fn, key) {
        const out = [];
        let cursor;
        for (let pages = 0; pages < 20; pages++) {
            const r = await client[fn](cursor ? { cursor } : {});
            out.push(...r[key]);
            if (!r.nextCursor) return out;
            cursor = r.nextCursor;
        }
        throw new Error(`${fn} did not end`);
    }

    test("initialize merges the backends' capabilities", () => {
        const caps = clients.alice.getServerCapabilities();
        assert.ok(caps.tools);
        assert.equal(caps.resources.subscribe, true, JSON.stringify(caps));
        assert.ok(caps.prompts);
        assert.ok(caps.completions, JSON.stringify(caps));
        assert.ok(caps.logging);
        assert.equal(caps.experimental, undefined);
    });

    test("resources, templates and prompts are merged, prefixed and filtered per user", async () => {
        const aRes = (await all(clients.alice, "listResources", "resources")).map((r) => r.uri);
        assert.deepEqual(aRes, ["ehr.file:///records/public.txt"]);
        const bRes = (await all(clients.bob, "listResources", "resources")).map((r) => r.uri);
        assert.deepEqual(bRes, ["billing.db://invoices/1"]);
        const aTpl = (await all(clients.alice, "listResourceTemplates", "resourceTemplates")).map((r) => r.uriTemplate);
        assert.deepEqual(aTpl, ["ehr.file:///records/{name}"]);
        const bTpl = (await all(clients.bob, "listResourceTemplates", "resourceTemplates")).map((r) => r.uriTemplate);
        assert.deepEqual(bTpl, []);
        const aPr = (await all(clients.alice, "listPrompts", "prompts")).map((p) => p.name);
        assert.deepEqual(aPr, ["ehr.summary"]);
        const bPr = (await all(clients.bob, "listPrompts", "prompts")).map((p) => p.name);
        assert.deepEqual(bPr, ["billing.invoice"]);
    });

    test("reads and prompts go to the backend their prefix names", async () => {
        const r = await clients.alice.readResource({ uri: "ehr.file:///records/public.txt" });
        assert.equal(r.contents[0].text, "public record");
        assert.equal(r.contents[0].uri, "ehr.file:///records/public.txt");
        const t = await clients.alice.readResource({ uri: "ehr.file:///records/daniel.txt" });
        assert.equal(t.contents[0].text, "record daniel.txt");
        const b = await clients.bob.readResource({ uri: "billing.db://invoices/1" });
        assert.equal(b.contents[0].text, "invoice 1: 12.00");
        assert.ok(billing.methods().includes("resources/read"));
        const p = await clients.alice.getPrompt({ name: "ehr.summary", arguments: { patient: "Dana" } });
        assert.equal(p.messages[0].content.text, "Summarise Dana");
        const q = await clients.bob.getPrompt({ name: "billing.invoice", arguments: { id: "7" } });
        assert.equal(q.messages[0].content.text, "Explain invoice 7");
    });

    test("a hidden backend's resources cannot be read by guessing their URIs", async () => {
        const before = ehr.methods().filter((m) => m === "resources/read").length;
        for (const uri of [
            "ehr.file:///records/public.txt",
            "EHR.file:///records/public.txt",
            "ehr.file:///records/./public.txt",
        ])
            await assert.rejects(clients.bob.readResource({ uri }), (e) => e.code === -32002, uri);
        await assert.rejects(clients.alice.readResource({ uri: "ehr.file:///records/secret.txt" }), (e) => e.code === -32002);
        await assert.rejects(clients.alice.readResource({ uri: "file:///records/secret.txt" }), (e) => e.code === -32002);
        await assert.rejects(clients.alice.readResource({ uri: "billing.db://invoices/1" }), (e) => e.code === -32002);
        await assert.rejects(clients.bob.getPrompt({ name: "ehr.summary", arguments: { patient: "x" } }), (e) => e.code === -32602);
        assert.equal(ehr.methods().filter((m) => m === "resources/read").length, before, "nothing reached the backend");
    });

    test("subscribe is governed and routed; updates come back under the prefix, filtered", async () => {
        await clients.alice.subscribeResource({ uri: "ehr.file:///records/public.txt" });
        const sub = ehr.seen.find((s) => s.msg && s.msg.method === "resources/subscribe");
        assert.equal(sub.msg.params.uri, "file:///records/public.txt");
        await assert.rejects(clients.alice.subscribeResource({ uri: "ehr.file:///records/secret.txt" }), (e) => e.code === -32002);
        await assert.rejects(clients.bob.subscribeResource({ uri: "ehr.file:///records/public.txt" }), (e) => e.code === -32002);
        assert.equal(ehr.seen.filter((s) => s.msg && s.msg.method === "resources/subscribe").length, 1);
        await clients.alice.unsubscribeResource({ uri: "ehr.file:///records/public.txt" });

        const { ResourceUpdatedNotificationSchema } = await import("@modelcontextprotocol/sdk/types.js");
        const updates = [];
        clients.alice.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.push(n.params.uri));
        const r = await clients.alice.callTool({ name: "ehr.touch", arguments: {} });
        assert.equal(r.content[0].uri, "ehr.file:///records/public.txt", "a resource link carries the client's URI");
        assert.deepEqual(updates, ["ehr.file:///records/public.txt"], "the secret's update is not shown");
    });

    test("completions go to the backend their ref names", async () => {
        const p = await clients.alice.complete({ ref: { type: "ref/prompt", name: "ehr.summary" }, argument: { name: "patient", value: "Da" } });
        assert.deepEqual(p.completion.values, ["Daniel", "Dana"]);
        const r = await clients.alice.complete({
            ref: { type: "ref/resource", uri: "ehr.file:///records/{name}" },
            argument: { name: "name", value: "da" },
        });
        assert.deepEqual(r.completion.values, ["daniel.txt", "dana.txt"]);
        const c = ehr.seen.filter((s) => s.msg && s.msg.method === "completion/complete").map((s) => s.msg.params.ref);
        assert.deepEqual(c, [{ type: "ref/prompt", name: "summary" }, { type: "ref/resource", uri: "file:///records/{name}" }]);
        await assert.rejects(
            clients.bob.complete({ ref: { type: "ref/prompt", name: "ehr.summary" }, argument: { name: "patient", value: "D" } }),
            (e) => e.code === -32602,
        );
    });

    test("the server stream merges both backends' notifications", async () => {
        const { ToolListChangedNotificationSchema, PromptListChangedNotificationSchema } = await import("@modelcontextprotocol/sdk/types.js");
        // Each backend got a GET in alice's session (she connected first: her sessions are the first).
        await waitUntil(() => ehr.seen.some((r) => r.httpMethod === "GET") && billing.seen.some((r) => r.httpMethod === "GET"), 5000, "GETs at both backends");
        const got = [];
        clients.alice.setNotificationHandler(ToolListChangedNotificationSchema, () => got.push("tools"));
        clients.alice.setNotificationHandler(PromptListChangedNotificationSchema, () => got.push("prompts"));
        await billing.servers[0].sendToolListChanged();
        await ehr.servers[0].sendPromptListChanged();
        await waitUntil(() => got.length === 2, 5000, "both notifications");
        assert.deepEqual(got.sort(), ["prompts", "tools"]);
    });

    test("a backend's elicitation reaches the client; the answer reaches that backend", async () => {
        const answered = await billing.servers[0].server.elicitInput({
            message: "Which account?",
            requestedSchema: { type: "object", properties: { account: { type: "string" } } },
        });
        assert.deepEqual(answered, { action: "accept", content: { account: "acme" } });
        assert.match(elicited[0].id, /^toolgate-[0-9a-f]{32}$/, "under toolgate's id");
        assert.equal(elicited[0].message, "Which account?");
        const sampled = await ehr.servers[0].server.createMessage({
            messages: [{ role: "user", content: { type: "text", text: "hi" } }],
            maxTokens: 10,
        });
        assert.equal(sampled.content.text, "sampled");
        const answers = (b) => b.seen.filter((r) => r.msg && r.msg.result && r.httpMethod === "POST").length;
        assert.equal(answers(billing), 1);
        assert.equal(answers(ehr), 1);

        // An answer under an id toolgate did not issue, or one already answered, reaches no backend.
        const post = (id) =>
            fetch(tg.url, {
                method: "POST",
                headers: {
                    "Content-Type": "application/json",
                    Accept: "application/json, text/event-stream",
                    Authorization: `Bearer ${tokens.alice}`,
                    "Mcp-Session-Id": transports.alice.sessionId,
                    "MCP-Protocol-Version": "2025-06-18",
                },
                body: JSON.stringify({ jsonrpc: "2.0", id, result: { action: "accept", content: { account: "evil" } } }),
            });
        for (const id of ["toolgate-00000000000000000000000000000000", elicited[0].id, 1, "x"]) {
            const r = await post(id);
            assert.equal(r.status, 202, String(id));
        }
        // Bob's session cannot answer what was asked in alice's.
        assert.equal(answers(billing), 1);
        assert.equal(answers(ehr), 1);
        assert.ok(!JSON.stringify(billing.seen.concat(ehr.seen).map((r) => r.msg)).includes("evil"));
    });

    test("logging/setLevel reaches every backend", async () => {
        await clients.alice.setLoggingLevel("warning");
        assert.ok(ehr.methods().includes("logging/setLevel"));
        assert.ok(billing.methods().includes("logging/setLevel"));
    });
});

/* ---------- a hostile backend's server stream; identity per backend ---------- */

describe("a hostile backend's server stream, and each backend's own identity", () => {
    let tg, a, b, dir, token, sid;
    const ISSUER = "https://idp.federation-hostile.invalid/";

    // A backend of the test's: sessions, 202 for notifications, the GET stream given.
    function handler(name, onGet) {
        return (req, res, body) => {
            if (req.method === "GET") return onGet(req, res);
            if (req.method === "DELETE") return res.writeHead(200).end();
            const msg = body ? JSON.parse(body) : {};
            if (msg.id === undefined || msg.method === undefined) return res.writeHead(202).end();
            const result =
                msg.method === "initialize"
                    ? { protocolVersion: "2025-06-18", capabilities: { tools: {} }, serverInfo: { name, version: "1" } }
                    : { tools: [] };
            const s = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result });
            res.writeHead(200, { "Content-Type": "application/json", "Mcp-Session-Id": `${name}-session` });
            res.end(s);
        };
    }

    before(async () => {
        const { startBackend, sseEvent } = await import("./lib/backend.mjs");
        a = await startBackend(handler("a", (req, res) => res.writeHead(405).end()));
        b = await startBackend(
            handler("b", (req, res) => {
                res.writeHead(200, { "Content-Type": "text/event-stream" });
                res.write("id: 5\nretry: 100\ndata:\n\n"); // priming: not for a merged stream
                res.write(": a comment\n\n");
                res.write(`event: weird\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/tools/list_changed" })}\n\n`);
                res.write(sseEvent({ jsonrpc: "2.0", id: 1, result: { stolen: true } })); // an answer on a server stream
                res.write(sseEvent({ jsonrpc: "2.0", method: "notifications/evil", params: {} }));
                res.write("data: {not json\n\n");
                res.write(sseEvent({ jsonrpc: "2.0", method: "notifications/tools/list_changed" }, "e1"));
                res.write(sseEvent({ jsonrpc: "2.0", id: 7, method: "roots/list", params: {} }, "e2"));
            }),
        );
        dir = tempDir();
        cli("keys", "generate", "--alg", "EdDSA", "--out", path.join(dir, "idp"));
        cli("keys", "generate", "--alg", "EdDSA", "--out", path.join(dir, "egress"));
        const port = await freePort();
        const audience = `http://127.0.0.1:${port}/mcp`;
        tg = await startToolgate({
            port,
            routes: [],
            identity: {
                issuers: [{ issuer: ISSUER, audiences: [audience], jwks_file: path.join(dir, "idp", "jwks.json"), algorithms: ["EdDSA"] }],
            },
            egress: { allow: ["127.0.0.0/8"], signing_key: path.join(dir, "egress", "private.pem") },
            extra: {
                routes: [
                    {
                        name: "fed",
                        path: "/mcp",
                        backends: [
                            { name: "a", url: a.url, prefix: "a." },
                            { name: "b", url: b.url, prefix: "b." },
                        ],
                        inject: { mode: "jwt" },
                    },
                ],
            },
        });
        token = cli("token", "--key", path.join(dir, "idp", "private.pem"), "--iss", ISSUER, "--aud", audience,
            "--sub", "alice", "--roles", "doctor", "--scopes", "tools.read", "--ttl", "10m").trim();
        const res = await fetch(tg.url, {
            method: "POST",
            headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", Authorization: `Bearer ${token}` },
            body: JSON.stringify({
                jsonrpc: "2.0", id: 1, method: "initialize",
                params: { protocolVersion: "2025-06-18", capabilities: { roots: {} }, clientInfo: { name: "raw", version: "1" } },
            }),
        });
        assert.equal(res.status, 200);
        sid = res.headers.get("mcp-session-id");
        await res.text();
    });

    after(async () => {
        try {
            if (tg) await tg.stop();
        } finally {
            if (a) await a.close();
            if (b) await b.close();
        }
    });

    const aud = (rec) => {
        const h = rec.headers.authorization;
        if (!h) return null;
        return JSON.parse(Buffer.from(h.split(" ")[1].split(".")[1], "base64url").toString()).aud;
    };

    test("a token minted for one backend never reaches another", () => {
        const ai = a.received.find((r) => r.body.includes('"initialize"'));
        const bi = b.received.find((r) => r.body.includes('"initialize"'));
        assert.equal(aud(ai), a.url, "the vetted backend gets its token");
        assert.equal(bi.headers.authorization, undefined, "the other backend does not get it");
        assert.match(bi.body, /"roots":\{\}/, "the client's capabilities are offered to the backends");
        for (const r of b.received) assert.notEqual(aud(r), a.url);
    });

    test("the client's roots change reaches every backend", async () => {
        const res = await fetch(tg.url, {
            method: "POST",
            headers: {
                "Content-Type": "application/json", Accept: "application/json, text/event-stream",
                Authorization: `Bearer ${token}`, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18",
            },
            body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/roots/list_changed" }),
        });
        assert.equal(res.status, 202);
        for (const be of [a, b]) {
            const got = be.received.filter((r) => r.body.includes("notifications/roots/list_changed"));
            assert.equal(got.length, 1);
            assert.match(got[0].headers["mcp-session-id"], /^[ab]-session$/);
        }
    });

    test("only understood requests and notifications go on, without event ids; answers are routed", async () => {
        const ctl = new AbortController();
        const res = await fetch(tg.url, {
            headers: { Accept: "text/event-stream", Authorization: `Bearer ${token}`, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18" },
            signal: ctl.signal,
        });
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type"), /text\/event-stream/);
        const reader = res.body.getReader();
        let text = "";
        const events = () => text.split("\n\n").filter((e) => e.includes("data:"));
        while (events().length < 2) {
            const { value, done } = await withTimeout(reader.read(), 5000, "events of the merged stream");
            if (done) break;
            text += Buffer.from(value).toString();
        }
        ctl.abort();
        const msgs = events().map((e) => JSON.parse(e.slice(e.indexOf("data:") + 5)));
        assert.equal(msgs.length, 2, text);
        assert.deepEqual(msgs[0], { jsonrpc: "2.0", method: "notifications/tools/list_changed" });
        assert.equal(msgs[1].method, "roots/list");
        assert.match(msgs[1].id, /^toolgate-[0-9a-f]{32}$/);
        assert.ok(!/^id:/m.test(text), "no event ids: the merged stream is not resumable");
        assert.ok(!text.includes("stolen") && !text.includes("evil") && !text.includes("retry"));

        const answer = (id, user = token) =>
            fetch(tg.url, {
                method: "POST",
                headers: {
                    "Content-Type": "application/json", Accept: "application/json, text/event-stream",
                    Authorization: `Bearer ${user}`, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18",
                },
                body: JSON.stringify({ jsonrpc: "2.0", id, result: { roots: [{ uri: "file:///home", name: "home" }] } }),
            });
        const mark = b.received.length;
        const first = await answer(msgs[1].id);
        assert.equal(first.status, 202);
        const got = b.received.slice(mark).filter((r) => r.method === "POST");
        assert.equal(got.length, 1);
        assert.deepEqual(JSON.parse(got[0].body), { jsonrpc: "2.0", id: 7, result: { roots: [{ uri: "file:///home", name: "home" }] } });
        assert.equal(got[0].headers["mcp-session-id"], "b-session");
        // Again, or under ids toolgate never issued: nobody sees it.
        const marks = [a.received.length, b.received.length];
        for (const id of [msgs[1].id, 7, "toolgate-ffffffffffffffffffffffffffffffff"]) assert.equal((await answer(id)).status, 202);
        assert.equal(a.received.length, marks[0]);
        assert.equal(b.received.length, marks[1]);
    });
});
