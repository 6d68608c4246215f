// Clients and backends of different eras. A 2026-07-28 client in front of a session-era backend
// (`protocol: 2025-11-25`): toolgate holds a backend session per user and bridges each
// stateless request into it (the SDK v2 client pinned to 2026-07-28, the SDK 1.x reference
// server of the conformance tests). A session-era client in front of a 2026-07-28 backend
// (`protocol: 2026-07-28`): toolgate answers initialize from the backend's discover and carries
// each call statelessly (the SDK 1.x client, the 2026 reference server). What the revisions
// cannot say to each other is refused with an error naming them.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as LegacyClient } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as LegacyTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Child, killAll, waitForPort, withTimeout } from "./lib/harness.mjs";
import { startReferenceServer } from "./lib/conformance/suite.mjs";
import { startIdentityGateway } from "./lib/identity-gateway.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
};

const POLICY = {
    rules: [
        { id: "bridge-tools", effect: "permit", tools: ["test_simple_text", "test_error_handling", "test_elicitation"] },
        {
            id: "bridge-legacy-tools",
            effect: "permit",
            tools: ["test_custom_headers", "test_input_required_result_elicitation"],
        },
        { id: "bridge-resources", effect: "permit", resources: "test://*" },
        { id: "bridge-prompts", effect: "permit", prompts: "*" },
    ],
};

let reference;
let modern;
let gw;

before(async () => {
    reference = await startReferenceServer();
    modern = await startReferenceServer({ era: 2026 });
    gw = await startIdentityGateway({
        routes: [
            { name: "legacy", path: "/legacy", backends: [{ name: "ref", url: reference.url, protocol: "2025-11-25" }] },
            { name: "modern-only", path: "/modern-only", backends: [{ name: "ref2", url: modern.url, protocol: "2026-07-28" }] },
            { name: "m26", path: "/m26", backends: [{ name: "ref3", url: modern.url }] },
        ],
        policy: POLICY,
    });
});

after(async () => {
    try {
        if (gw) await gw.tg.stop();
    } finally {
        await reference?.stop();
        await modern?.stop();
        await killAll();
    }
});

async function connect(sub = "bridge-user") {
    const client = new Client({ name: "bridge-e2e", version: "1.0.0" }, { versionNegotiation: { mode: { pin: "2026-07-28" } } });
    const transport = new StreamableHTTPClientTransport(new URL(`${gw.tg.base}/legacy`), {
        requestInit: { headers: { Authorization: `Bearer ${gw.mint({ sub, path: "/legacy" })}` } },
    });
    await withTimeout(client.connect(transport), 15000, "the v2 client connecting through the bridge");
    return { client, transport };
}

const post = (p, headers, body) =>
    fetch(`${gw.tg.base}${p}`, {
        method: "POST",
        headers: {
            "Content-Type": "application/json",
            Accept: "application/json, text/event-stream",
            Authorization: `Bearer ${gw.mint({ path: p })}`,
            ...headers,
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10000),
    });

describe("a 2026-07-28 client, a 2025-11-25 backend", () => {
    test("connects in 2026-07-28; discover, lists, calls, reads and prompts are bridged and governed", async () => {
        const { client, transport } = await connect();
        try {
            assert.equal(transport.protocolVersion, "2026-07-28");
            assert.equal(transport.sessionId, undefined, "the client side is stateless");
            const tools = (await client.listTools()).tools.map((t) => t.name).sort();
            assert.deepEqual(tools, ["test_elicitation", "test_error_handling", "test_simple_text"], "filtered by policy");
            const r = await client.callTool({ name: "test_simple_text", arguments: {} });
            assert.deepEqual(r.content, [{ type: "text", text: "This is a simple text response for testing." }]);
            const res = await client.readResource({ uri: "test://static-text" });
            assert.equal(res.contents[0].text, "This is the content of the static text resource.");
            const p = await client.getPrompt({ name: "test_prompt_with_arguments", arguments: { arg1: "a", arg2: "b" } });
            assert.match(JSON.stringify(p.messages), /arg1='a'/);
            // A tool the policy hides is refused before the backend, in the client's revision.
            await assert.rejects(client.callTool({ name: "test_sampling", arguments: {} }), /Unknown tool/);
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("a resource the policy hides is not found, naming the URI (-32602, data.uri)", async () => {
        const res = await post("/legacy", { "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "resources/read", "Mcp-Name": "secret://x" }, {
            jsonrpc: "2.0",
            id: 9,
            method: "resources/read",
            params: { uri: "secret://x", _meta: META },
        });
        const body = await res.json();
        assert.equal(body.error.code, -32602, JSON.stringify(body));
        assert.deepEqual(body.error.data, { uri: "secret://x" });
    });

    test("server/discover is answered from the backend session's initialize", async () => {
        const res = await post("/legacy", { "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover" }, {
            jsonrpc: "2.0",
            id: 1,
            method: "server/discover",
            params: { _meta: META },
        });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.result.resultType, "complete");
        assert.deepEqual(body.result.supportedVersions, ["2026-07-28"]);
        assert.ok(body.result.capabilities.tools, JSON.stringify(body.result));
        assert.equal(body.result.capabilities.resources?.subscribe, undefined, "no listen stream to carry updates");
        assert.ok(body.result._meta["io.modelcontextprotocol/serverInfo"].name);
    });

    test("what the revisions cannot say to each other is refused, naming them", async () => {
        const { client } = await connect("bridge-elicit");
        try {
            // The backend asks the client (elicitation/create) on the call's stream: 2026-07-28
            // has no such request, so the call ends with an error naming both.
            await assert.rejects(client.callTool({ name: "test_elicitation", arguments: {} }), /elicitation\/create.*2026-07-28/);
        } finally {
            await client.close().catch(() => {});
        }
        const res = await post("/legacy", { "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "subscriptions/listen" }, {
            jsonrpc: "2.0",
            id: 2,
            method: "subscriptions/listen",
            params: { _meta: META, notifications: { toolsListChanged: true } },
        });
        assert.equal(res.status, 404);
        const body = await res.json();
        assert.equal(body.error.code, -32601);
        assert.match(body.error.message, /cannot be bridged.*2025-11-25/);
    });

    test("a backend that forgot the session (restarted) gets a new one, and the call goes through", async () => {
        const { client } = await connect("bridge-restart");
        try {
            await client.callTool({ name: "test_simple_text", arguments: {} });
            const port = reference.port;
            await reference.stop();
            const child = new Child("conformance-everything", process.execPath, [path.join(here, "lib/conformance/everything-server.mjs"), String(port)], {
                cwd: here,
            });
            await waitForPort(port, 15000, child);
            reference = { ...reference, child, stop: () => child.kill() };
            const r = await client.callTool({ name: "test_simple_text", arguments: {} });
            assert.equal(r.isError, undefined, JSON.stringify(r));
            assert.match(r.content[0].text, /simple text/);
        } finally {
            await client.close().catch(() => {});
        }
    });

});

describe("a session-era client, a 2026-07-28 backend", () => {
    test("SDK 1.x connects in 2025-11-25; toolgate answers initialize from discover and carries each call statelessly", async () => {
        const client = new LegacyClient({ name: "bridge-legacy-e2e", version: "1.0.0" }, { capabilities: { elicitation: {} } });
        const transport = new LegacyTransport(new URL(`${gw.tg.base}/modern-only`), {
            requestInit: { headers: { Authorization: `Bearer ${gw.mint({ sub: "legacy-user", path: "/modern-only" })}` } },
        });
        await withTimeout(client.connect(transport), 15000, "the 1.x client connecting through the bridge");
        try {
            assert.match(transport.sessionId, /^[A-Za-z0-9_-]{43}$/, "the session is toolgate's");
            assert.equal(client.getServerVersion()?.name !== undefined, true);
            const tools = (await client.listTools()).tools.map((t) => t.name).sort();
            assert.deepEqual(tools, ["test_custom_headers", "test_elicitation", "test_error_handling", "test_input_required_result_elicitation", "test_simple_text"]);
            // x-mcp-header: the backend insists on Mcp-Param-Region matching the body; toolgate
            // derives it from the schema it saw in tools/list (base64 for the trailing space).
            const r = await client.callTool({ name: "test_custom_headers", arguments: { region: "Z\u00fcrich " } });
            assert.equal(r.isError, undefined, JSON.stringify(r));
            assert.match(JSON.stringify(r.content), /Z\u00fcrich|Zürich/);
            await client.ping();
            // A multi-round request cannot reach a session-era client through the bridge.
            await assert.rejects(
                client.callTool({ name: "test_input_required_result_elicitation", arguments: {} }),
                /input_required.*2025-11-25/,
            );
            await assert.rejects(client.subscribeResource({ uri: "test://watched-resource" }), /cannot be bridged/);
        } finally {
            await client.close().catch(() => {});
        }
    });
});

describe("2026-07-28 on a plain route: Mcp-Param headers held to the arguments they mirror", () => {
    const H = { "MCP-Protocol-Version": "2026-07-28" };
    const call = (args) => ({ jsonrpc: "2.0", id: 11, method: "tools/call", params: { name: "test_custom_headers", arguments: args, _meta: META } });
    test("once tools/list showed the tool's x-mcp-header marks, the headers must be exactly those values", async () => {
        // Before any tools/list, toolgate holds the header to some argument only.
        const list = await post("/m26", { ...H, "Mcp-Method": "tools/list" }, { jsonrpc: "2.0", id: 10, method: "tools/list", params: { _meta: META } });
        assert.equal(list.status, 200);
        const cases = [
            [{ "Mcp-Param-Region": "eu" }, { region: "eu" }, 200],
            [{ "Mcp-Param-Region": "=?base64?ZXU=?=" }, { region: "eu" }, 200],
            [{}, { region: "eu" }, 400], // the mirrored argument without its header
            [{ "Mcp-Param-Region": "evil" }, { region: "eu", note: "evil" }, 400], // another argument's value
            [{ "Mcp-Param-Region": "eu", "Mcp-Param-Other": "eu" }, { region: "eu" }, 400], // names no mark
        ];
        for (const [headers, args, status] of cases) {
            const res = await post("/m26", { ...H, "Mcp-Method": "tools/call", "Mcp-Name": "test_custom_headers", ...headers }, call(args));
            const body = await res.json();
            assert.equal(res.status, status, `${JSON.stringify(headers)} ${JSON.stringify(args)}: ${JSON.stringify(body)}`);
            if (status === 400) assert.equal(body.error.code, -32020);
        }
    });
});

