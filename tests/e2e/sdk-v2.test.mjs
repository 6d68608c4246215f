// The MCP TypeScript SDK v2 client (@modelcontextprotocol/client) through toolgate, with real
// tokens and a policy, to two backends: the SDK 1.x reference server of the conformance tests
// (lib/conformance/everything-server.mjs) and a server written on the SDK v2
// (@modelcontextprotocol/server, lib/v2-server.mjs) in the 2025 era: initialize, tools/list
// filtered by policy, tools/call, resources, prompts, denied calls.
//
// The v2 packages also speak the 2026-07-28 revision (stateless, `server/discover`), and so
// does toolgate, on the same endpoint: the last tests connect in that revision (auto and
// pinned), see it governed the same way, and try headers that disagree with the body.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Child, E2E_DIR, freePort, killAll, waitForPort, withTimeout } from "./lib/harness.mjs";
import { startReferenceServer } from "./lib/conformance/suite.mjs";
import { startIdentityGateway } from "./lib/identity-gateway.mjs";

const POLICY = {
    rules: [
        { id: "v2-plain-tools", effect: "permit", tools: ["test_simple_text", "test_error_handling", "echo"] },
        { id: "v2-small-sums", effect: "permit", tools: ["add"], when: [{ arg: "/a", range: { max: 100 } }] },
        { id: "v2-resources", effect: "permit", resources: "*" },
        { id: "v2-prompts", effect: "permit", prompts: "*" },
    ],
};

let reference;
let v2;
let gw;

async function startV2Backend() {
    const port = await freePort();
    const child = new Child("v2-server", process.execPath, [path.join(E2E_DIR, "lib/v2-server.mjs"), String(port)], {
        cwd: E2E_DIR,
    });
    await waitForPort(port, 15000, child);
    return { child, url: `http://127.0.0.1:${port}/mcp` };
}

before(async () => {
    reference = await startReferenceServer();
    v2 = await startV2Backend();
    gw = await startIdentityGateway({
        routes: [
            { name: "reference", path: "/mcp", url: reference.url },
            { name: "v2", path: "/v2", url: v2.url },
            {
                name: "fed",
                path: "/fed",
                backends: [
                    { name: "ref", url: reference.url, prefix: "ref." },
                    { name: "two", url: v2.url, prefix: "two." },
                ],
            },
        ],
        policy: POLICY,
    });
});

after(async () => {
    try {
        if (gw) await gw.tg.stop();
    } finally {
        await killAll();
    }
});

/* A v2 client connected to url (with a token for route path p unless token is null). */
async function connect(url, { p, token, versionNegotiation } = {}) {
    const client = new Client(
        { name: "toolgate-e2e-v2", version: "1.0.0" },
        versionNegotiation ? { versionNegotiation } : {},
    );
    const headers = token === null ? {} : { Authorization: `Bearer ${token ?? gw.mint({ sub: "v2-user", path: p })}` };
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
    await withTimeout(client.connect(transport), 15000, `v2 client connecting to ${url}`);
    return { client, transport };
}

const BACKENDS = [
    {
        name: "the SDK 1.x reference server",
        path: "/mcp",
        server: "toolgate-conformance-everything",
        tools: ["test_error_handling", "test_simple_text"],
        call: { name: "test_simple_text", arguments: {} },
        result: [{ type: "text", text: "This is a simple text response for testing." }],
        hidden: "test_sampling",
        resource: { uri: "test://static-text", text: "This is the content of the static text resource." },
        prompt: { name: "test_prompt_with_arguments", arguments: { arg1: "a", arg2: "b" }, text: "Prompt with arguments: arg1='a', arg2='b'" },
    },
    {
        name: "a SDK v2 server (2025 era)",
        path: "/v2",
        server: "toolgate-e2e-v2",
        tools: ["add", "echo"],
        call: { name: "echo", arguments: { message: "hello v2" } },
        result: [{ type: "text", text: "v2 echo: hello v2" }],
        hidden: "admin_reset",
        resource: { uri: "v2://greeting", text: "hello from the v2 server" },
        prompt: { name: "greet", arguments: { name: "Ann" }, text: "Say hello to Ann" },
    },
];

for (const b of BACKENDS) {
    describe(`SDK v2 client through toolgate to ${b.name}`, () => {
        let client;
        let transport;
        before(async () => {
            ({ client, transport } = await connect(`${gw.tg.base}${b.path}`, { p: b.path }));
        });
        after(async () => {
            if (client) await client.close().catch(() => {});
        });

        test("initialize: the server's info, 2025-11-25, toolgate's own session id", () => {
            assert.equal(client.getServerVersion().name, b.server);
            assert.equal(transport.protocolVersion, "2025-11-25");
            assert.match(transport.sessionId, /^[A-Za-z0-9_-]{43}$/, "toolgate's own session id");
            assert.ok(client.getServerCapabilities().tools);
        });

        test("tools/list shows only what the policy permits", async () => {
            const { tools } = await client.listTools();
            assert.deepEqual(tools.map((t) => t.name).sort(), b.tools);
            for (const t of tools) assert.equal(typeof t.inputSchema, "object", t.name);
        });

        test("tools/call", async () => {
            const r = await client.callTool(b.call);
            assert.notEqual(r.isError, true, JSON.stringify(r));
            assert.deepEqual(r.content, b.result);
        });

        test("resources: list and read", async () => {
            const { resources } = await client.listResources();
            assert.ok(resources.some((r) => r.uri === b.resource.uri), JSON.stringify(resources));
            const read = await client.readResource({ uri: b.resource.uri });
            assert.equal(read.contents[0].uri, b.resource.uri);
            assert.equal(read.contents[0].text, b.resource.text);
        });

        test("prompts: list and get", async () => {
            const { prompts } = await client.listPrompts();
            assert.ok(prompts.some((p) => p.name === b.prompt.name), JSON.stringify(prompts));
            const got = await client.getPrompt({ name: b.prompt.name, arguments: b.prompt.arguments });
            assert.deepEqual(got.messages, [{ role: "user", content: { type: "text", text: b.prompt.text } }]);
        });

        test("a tool the policy hides: a clear -32602 error, as for a tool that does not exist; not forwarded", async () => {
            await assert.rejects(
                client.callTool({ name: b.hidden, arguments: { prompt: "x" } }),
                (e) => {
                    assert.equal(e.code, -32602, String(e));
                    assert.match(e.message, new RegExp(`Unknown tool: ${b.hidden}`));
                    return true;
                },
            );
            const line = await gw.tg.waitForLog(
                (l) => l.event === "request" && l.rpc_method === "tools/call" && l.decision === "deny" && l.route === (b.path === "/v2" ? "v2" : "reference"),
                3000,
                "the denied call's log line",
            );
            assert.equal(line.layer, "policy");
            assert.equal(line.upstream_status, 0, "not forwarded");
        });
    });
}

describe("a permitted tool called outside its rule's condition", () => {
    test("the v2 client gets a tool error with the reason and toolgate's decision; the backend is not called", async () => {
        const { client } = await connect(`${gw.tg.base}/v2`, { p: "/v2" });
        try {
            const ok = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
            assert.deepEqual(ok.structuredContent, { sum: 5 });
            const r = await client.callTool({ name: "add", arguments: { a: 1000, b: 1 } });
            assert.equal(r.isError, true, JSON.stringify(r));
            assert.equal(r.content[0].type, "text");
            assert.ok(r.content[0].text.length > 0, JSON.stringify(r));
            assert.doesNotMatch(JSON.stringify(r.content), /1001/, "not computed by the backend");
            const d = r._meta?.["toolgate/decision"];
            assert.ok(d, JSON.stringify(r));
            assert.equal(d.layer, "policy", JSON.stringify(d));
        } finally {
            await client.close().catch(() => {});
        }
    });
});

describe("no token", () => {
    test("the v2 client cannot connect: 401", async () => {
        await assert.rejects(connect(`${gw.tg.base}/v2`, { token: null }), (e) => {
            assert.equal(e.constructor.name, "SdkHttpError", String(e));
            assert.equal(e.status ?? e.data?.status, 401, `${e} ${JSON.stringify(e.data)}`);
            assert.match(e.message, /identity\.missing_token/, String(e));
            return true;
        });
    });
});

describe("the 2026-07-28 revision through toolgate (a v2 server behind it)", () => {
    const META = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    };
    const post = (headers, body) =>
        fetch(`${gw.tg.base}/v2`, {
            method: "POST",
            headers: {
                "Content-Type": "application/json",
                Accept: "application/json, text/event-stream",
                Authorization: `Bearer ${gw.mint({ path: "/v2" })}`,
                "MCP-Protocol-Version": "2026-07-28",
                ...headers,
            },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(5000),
        });

    test("auto negotiation gets 2026-07-28 through toolgate, as directly", async () => {
        const direct = await connect(v2.url, { token: null, versionNegotiation: { mode: "auto" } });
        assert.equal(direct.transport.protocolVersion, "2026-07-28");
        await direct.client.close();

        const via = await connect(`${gw.tg.base}/v2`, { p: "/v2", versionNegotiation: { mode: "auto" } });
        try {
            assert.equal(via.transport.protocolVersion, "2026-07-28");
            assert.equal(via.transport.sessionId, undefined, "stateless: no session");
            const tools = (await via.client.listTools()).tools.map((t) => t.name).sort();
            assert.deepEqual(tools, ["add", "echo"], "admin_reset is hidden by policy in 2026-07-28 too");
            assert.deepEqual((await via.client.callTool({ name: "add", arguments: { a: 2, b: 3 } })).structuredContent, { sum: 5 });
        } finally {
            await via.client.close().catch(() => {});
        }
    });

    test("pinned to 2026-07-28: governed like the 2025 era (policy conditions, hidden tools)", async () => {
        const via = await connect(`${gw.tg.base}/v2`, { p: "/v2", versionNegotiation: { mode: { pin: "2026-07-28" } } });
        try {
            assert.equal(via.transport.protocolVersion, "2026-07-28");
            const big = await via.client.callTool({ name: "add", arguments: { a: 500, b: 1 } });
            assert.equal(big.isError, true, "the rule's range condition holds in 2026-07-28");
            await assert.rejects(via.client.callTool({ name: "admin_reset", arguments: {} }), /Unknown tool/);
            const r = await via.client.readResource({ uri: "v2://greeting" });
            assert.equal(r.contents[0].text, "hello from the v2 server");
        } finally {
            await via.client.close().catch(() => {});
        }
        // Nothing hidden reached the backend: the refused call has no upstream status.
        const refused = gw.tg.requestLogs().filter((l) => l.route === "v2" && l.reason === "policy.hidden");
        assert.ok(refused.length >= 1 && refused.every((l) => !l.upstream_status), JSON.stringify(refused));
    });

    test("headers that disagree with the body are refused before any layer: 400, -32020", async () => {
        const call = (name, args) => ({ jsonrpc: "2.0", id: 9, method: "tools/call", params: { name, arguments: args, _meta: META } });
        const cases = [
            [{ "Mcp-Method": "tools/call", "Mcp-Name": "admin_reset" }, call("echo", { message: "x" })],
            [{ "Mcp-Method": "tools/list", "Mcp-Name": "echo" }, call("echo", { message: "x" })],
            [{ "Mcp-Method": "tools/call" }, call("echo", { message: "x" })],
            [{ "Mcp-Method": "tools/call", "Mcp-Name": "echo", "Mcp-Param-Message": "y" }, call("echo", { message: "x" })],
            [{ "Mcp-Method": "tools/call", "Mcp-Name": "=?base64?ZWNobw?=" }, call("echo", { message: "x" })],
        ];
        for (const [headers, body] of cases) {
            const res = await post(headers, body);
            const text = await res.text();
            assert.equal(res.status, 400, `${JSON.stringify(headers)}: ${text}`);
            assert.equal(JSON.parse(text).error.code, -32020, text);
        }
        // The base64 form, decoded, does match.
        const ok = await post({ "Mcp-Method": "tools/call", "Mcp-Name": "=?base64?ZWNobw==?=" }, call("echo", { message: "x" }));
        assert.equal(ok.status, 200, await ok.text());
    });

    test("an unknown revision: 400, -32022 with the revisions toolgate serves", async () => {
        const res = await post(
            { "MCP-Protocol-Version": "2027-01-01", "Mcp-Method": "server/discover" },
            { jsonrpc: "2.0", id: 1, method: "server/discover", params: { _meta: { ...META, "io.modelcontextprotocol/protocolVersion": "2027-01-01" } } },
        );
        assert.equal(res.status, 400);
        const body = await res.json();
        assert.equal(body.error.code, -32022, JSON.stringify(body));
        assert.equal(body.id, 1, "the error answers the request it refuses");
        // In the stateless envelope, the stateless revision is the one to use instead.
        assert.deepEqual(body.error.data.supported, ["2026-07-28"]);
        assert.equal(body.error.data.requested, "2027-01-01");
        // Without the envelope, every revision toolgate serves.
        const legacy = await post(
            { "MCP-Protocol-Version": "2024-01-01" },
            { jsonrpc: "2.0", id: "x", method: "tools/list", params: {} },
        );
        const lb = await legacy.json();
        assert.equal(legacy.status, 400);
        assert.equal(lb.id, "x");
        assert.deepEqual(lb.error.data.supported, ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]);
    });

    test("a federated route serves 2026-07-28 too: a read routed by prefix to its v2 backend; the 1.x backend answers with its own error", async () => {
        const send = (id, method, params, headers = {}) =>
            fetch(`${gw.tg.base}/fed`, {
                method: "POST",
                headers: {
                    "Content-Type": "application/json",
                    Accept: "application/json, text/event-stream",
                    Authorization: `Bearer ${gw.mint({ path: "/fed" })}`,
                    "MCP-Protocol-Version": "2026-07-28",
                    "Mcp-Method": method,
                    ...headers,
                },
                body: JSON.stringify({ jsonrpc: "2.0", id, method, params: { ...params, _meta: META } }),
                signal: AbortSignal.timeout(5000),
            });
        const read = await send(3, "resources/read", { uri: "two.v2://greeting" }, { "Mcp-Name": "two.v2://greeting" });
        const text = await read.text();
        assert.equal(read.status, 200, text);
        const body = JSON.parse(text.startsWith("{") ? text : /data: (.*)/.exec(text)[1]);
        assert.equal(body.id, 3);
        assert.equal(body.result.contents[0].uri, "two.v2://greeting");
        assert.equal(body.result.contents[0].text, "hello from the v2 server");
        // The SDK 1.x reference server does not serve 2026-07-28: its refusal is relayed.
        const list = await send(4, "tools/list", {});
        assert.equal(list.status, 400);
        assert.ok((await list.json()).error, "the backend's own error");
    });
});
