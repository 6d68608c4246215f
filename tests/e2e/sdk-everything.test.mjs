// The official MCP SDK client through toolgate to the reference server (server-everything):
// the whole Streamable HTTP life of a session.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEverything, killAll, withTimeout } from "./lib/harness.mjs";

let tg;
let everything;
let client;
let transport;

before(async () => {
    everything = await startEverything();
    tg = await startToolgate({ routes: [{ url: everything.url }] });
    client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
    transport = new StreamableHTTPClientTransport(new URL(tg.url));
    await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
});

after(async () => {
    try {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    } finally {
        await killAll();
    }
});

test("initialize: server info and a session id come back through the gateway", () => {
    const info = client.getServerVersion();
    assert.ok(info && typeof info.name === "string" && info.name.length > 0);
    assert.ok(client.getServerCapabilities().tools, "the server offers tools");
    assert.match(transport.sessionId, /^[A-Za-z0-9_-]{43}$/, "toolgate's own session id");
});

test("tools/list", async () => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    assert.ok(names.includes("echo"), names.join(","));
    assert.ok(names.includes("trigger-long-running-operation"), names.join(","));
});

test("tools/call echo", async () => {
    const r = await client.callTool({ name: "echo", arguments: { message: "hello through toolgate" } });
    assert.deepEqual(r.content, [{ type: "text", text: "Echo: hello through toolgate" }]);
});

test("progress notifications of a long tool arrive one by one, not at the end", async () => {
    const seen = [];
    const t0 = Date.now();
    const r = await client.callTool(
        { name: "trigger-long-running-operation", arguments: { duration: 3, steps: 6 } },
        undefined,
        {
            timeout: 20000,
            onprogress: (p) => seen.push({ at: Date.now() - t0, progress: p.progress, total: p.total }),
        },
    );
    const done = Date.now() - t0;
    assert.match(r.content[0].text, /Long running operation completed/);
    assert.deepEqual(
        seen.map((s) => s.progress),
        [1, 2, 3, 4, 5, 6],
    );
    assert.ok(seen.every((s) => s.total === 6));
    // Steps are 500 ms apart at the server; relayed event by event they arrive spread out.
    const spread = seen[5].at - seen[0].at;
    assert.ok(spread >= 1800, `progress spread over ${spread} ms: ${JSON.stringify(seen)}`);
    assert.ok(done - seen[0].at >= 2000, `first progress ${seen[0].at} ms, result ${done} ms`);
    for (let i = 1; i < seen.length; i++)
        assert.ok(seen[i].at - seen[i - 1].at >= 200, `gap before step ${i + 1}: ${JSON.stringify(seen)}`);
});

test("resources and prompts listing", async () => {
    const { resources } = await client.listResources();
    assert.ok(resources.length > 0, "resources listed");
    const first = resources[0];
    const read = await client.readResource({ uri: first.uri });
    assert.equal(read.contents[0].uri, first.uri);
    const { prompts } = await client.listPrompts();
    const names = prompts.map((p) => p.name);
    assert.ok(names.length > 0, "prompts listed");
    const simple = prompts.find((p) => !p.arguments || p.arguments.every((a) => !a.required));
    if (simple) {
        const got = await client.getPrompt({ name: simple.name });
        assert.ok(got.messages.length > 0);
    }
});

test("session termination (DELETE) and the session is gone afterwards", async () => {
    const sid = transport.sessionId;
    assert.ok(sid);
    await transport.terminateSession();
    assert.equal(transport.sessionId, undefined);
    const del = await tg.waitForLog(
        (l) => l.event === "request" && l.http_method === "DELETE",
        3000,
        "the DELETE's request log",
    );
    assert.equal(del.status, 200);
    // The old session id no longer works: the backend refuses it through the gateway.
    const res = await fetch(tg.url, {
        method: "POST",
        headers: {
            "Content-Type": "application/json",
            Accept: "application/json, text/event-stream",
            "Mcp-Session-Id": sid,
            "MCP-Protocol-Version": "2025-06-18",
        },
        body: JSON.stringify({ jsonrpc: "2.0", id: 99, method: "tools/list" }),
        signal: AbortSignal.timeout(5000),
    });
    assert.ok(res.status === 404 || res.status === 400, `status ${res.status}`);
    const body = await res.json();
    assert.ok(body.error, JSON.stringify(body));
});
