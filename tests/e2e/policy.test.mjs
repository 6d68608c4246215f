// Deny by default, end to end: the MCP SDK client against server-everything behind toolgate
// without a policy section, and with a policy permitting one tool.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEverything, killAll, withTimeout } from "./lib/harness.mjs";

let everything;

before(async () => {
    everything = await startEverything();
});

after(killAll);

async function connect(tg) {
    const client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(tg.url));
    await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
    return client;
}

describe("no policy section", () => {
    let tg;
    let client;
    before(async () => {
        tg = await startToolgate({ routes: [{ url: everything.url }], policy: null });
        client = await connect(tg);
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("initialize still works; every tool is hidden", async () => {
        const { tools } = await client.listTools();
        assert.deepEqual(tools, []);
    });

    test("a tools/call is denied and never reaches the backend", async () => {
        const r = await client
            .callTool({ name: "echo", arguments: { message: "x" } })
            .then((v) => ({ result: v }), (e) => ({ error: e }));
        if (r.result) {
            assert.equal(r.result.isError, true, JSON.stringify(r.result));
            assert.ok(!JSON.stringify(r.result).includes("Echo: x"));
        } else {
            assert.equal(r.error.code, -32602, String(r.error));
        }
        const line = await tg.waitForLog(
            (l) => l.event === "request" && l.rpc_method === "tools/call",
            3000,
            "the tools/call log line",
        );
        assert.equal(line.decision, "deny");
        assert.equal(line.layer, "policy");
        assert.equal(line.upstream_status, 0, "not forwarded");
    });
});

describe("a policy permitting only echo", () => {
    let tg;
    let client;
    before(async () => {
        tg = await startToolgate({
            routes: [{ url: everything.url }],
            policy: { rules: [{ id: "echo-only", effect: "permit", tools: "echo" }] },
        });
        client = await connect(tg);
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("tools/list shows only echo", async () => {
        const { tools } = await client.listTools();
        assert.deepEqual(
            tools.map((t) => t.name),
            ["echo"],
        );
    });

    test("echo is allowed, another tool is not", async () => {
        const ok = await client.callTool({ name: "echo", arguments: { message: "allowed" } });
        assert.deepEqual(ok.content, [{ type: "text", text: "Echo: allowed" }]);
        const r = await client
            .callTool({ name: "get-sum", arguments: { a: 1, b: 2 } })
            .then((v) => ({ result: v }), (e) => ({ error: e }));
        if (r.result) assert.equal(r.result.isError, true, JSON.stringify(r.result));
        else assert.equal(r.error.code, -32602, String(r.error));
    });
});
