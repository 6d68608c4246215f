// Federation: the demo backend and server-everything behind one /mcp endpoint, used with the
// official MCP SDK client. toolgate owns the client's session, opens the backends' sessions
// lazily, lists their tools under prefixes (paged backend by backend), routes each call by
// its prefix, relays progress, filters the list by policy and closes everything on DELETE.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEhr, startEverything, killAll, withTimeout } from "./lib/harness.mjs";

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

    test("GET (a server stream) is not offered on a federated endpoint", async () => {
        const res = await fetch(tg.url, { headers: { Accept: "text/event-stream" } });
        assert.equal(res.status, 405);
    });
});
