// The MCP SDK client through toolgate to the demo backend (examples/ehr-backend), with the
// backend answering POSTs as JSON and as SSE streams.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEhr, killAll, withTimeout, withLogs } from "./lib/harness.mjs";

after(killAll);

for (const mode of ["json", "sse"]) {
    describe(`ehr-backend --mode ${mode}`, () => {
        let tg;
        let ehr;
        let client;
        let transport;

        before(async () => {
            ehr = await startEhr(mode);
            tg = await startToolgate({ routes: [{ url: ehr.url, name: "ehr" }] });
            client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
            transport = new StreamableHTTPClientTransport(new URL(tg.url), {
                // A bearer token the gateway must never pass on to the backend.
                requestInit: { headers: { Authorization: "Bearer e2e-secret-token" } },
            });
            await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
        });

        after(async () => {
            try {
                if (client) await client.close().catch(() => {});
                if (tg) await tg.stop();
            } finally {
                if (ehr) await ehr.stop();
            }
        });

        test("initialize and tools/list", async () => {
            assert.ok(transport.sessionId, "Mcp-Session-Id relayed");
            assert.ok(client.getServerCapabilities().tools);
            const { tools } = await client.listTools();
            const names = tools.map((t) => t.name).sort();
            for (const n of [
                "charge_card",
                "delete_patient",
                "fetch_url",
                "get_patient",
                "search_patients",
                "slow_report",
                "update_note",
                "whoami",
            ])
                assert.ok(names.includes(n), `${n} in ${names}`);
        });

        test("tools/call get_patient and search_patients", async () => {
            const r = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
            assert.equal(r.isError, false);
            assert.equal(r.structuredContent.id ?? r.structuredContent.patient_id, "P1");
            assert.equal(JSON.parse(r.content[0].text).id ?? JSON.parse(r.content[0].text).patient_id, "P1");
            const s = await client.callTool({ name: "search_patients", arguments: { query: "a", limit: 3 } });
            assert.ok(!s.isError, JSON.stringify(s));
        });

        test("a bad argument comes back as the backend's error", async () => {
            const r = await client
                .callTool({ name: "get_patient", arguments: { patient_id: "not-an-id" } })
                .then(
                    (v) => ({ result: v }),
                    (e) => ({ error: e }),
                );
            if (r.result) assert.equal(r.result.isError, true, JSON.stringify(r.result));
            else assert.match(String(r.error.message), /patient|invalid|argument/i);
        });

        test("the client's Authorization header does not reach the backend", async () => {
            const r = await client.callTool({ name: "whoami", arguments: {} });
            const who = r.structuredContent ?? JSON.parse(r.content[0].text);
            assert.equal(who.authorization_present, false, JSON.stringify(who));
        });

        if (mode === "json") {
            test("slow_report in JSON mode: one answer at the end, no progress", async () => {
                const seen = [];
                const t0 = Date.now();
                const r = await client.callTool(
                    { name: "slow_report", arguments: { patient_id: "P2", steps: 3, interval_ms: 300 } },
                    undefined,
                    { timeout: 10000, onprogress: (p) => seen.push(p) },
                );
                const took = Date.now() - t0;
                assert.equal(r.isError, false);
                assert.equal(r.structuredContent.steps, 3);
                assert.ok(took >= 800, `answered after ${took} ms`);
                assert.equal(seen.length, 0, "JSON answers carry no progress");
            });
        } else {
            test("slow_report over ~10 s: progress arrives at the client step by step", async () => {
                const seen = [];
                const t0 = Date.now();
                const r = await withLogs(
                    client.callTool(
                        { name: "slow_report", arguments: { patient_id: "P3", steps: 10, interval_ms: 1000 } },
                        undefined,
                        {
                            timeout: 30000,
                            onprogress: (p) => seen.push({ at: Date.now() - t0, progress: p.progress }),
                        },
                    ),
                    tg,
                    ehr,
                );
                const done = Date.now() - t0;
                assert.equal(r.isError, false);
                assert.equal(r.structuredContent.steps, 10);
                assert.deepEqual(
                    seen.map((s) => s.progress),
                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                );
                // Each step 1 s after the last: relayed one by one, not held to the end.
                assert.ok(seen[0].at < 2500, `first progress at ${seen[0].at} ms`);
                assert.ok(seen[9].at - seen[0].at >= 8000, JSON.stringify(seen));
                for (let i = 1; i < seen.length; i++)
                    assert.ok(seen[i].at - seen[i - 1].at >= 600, `gap before ${i + 1}: ${JSON.stringify(seen)}`);
                assert.ok(done >= 9500, `result after ${done} ms`);
            });
        }

        test(`the answer reaches the client as ${mode === "sse" ? "an SSE stream" : "JSON"}`, async () => {
            const res = await withLogs(fetch(tg.url, {
                method: "POST",
                headers: {
                    "Content-Type": "application/json",
                    Accept: "application/json, text/event-stream",
                    "Mcp-Session-Id": transport.sessionId,
                    "MCP-Protocol-Version": transport.protocolVersion ?? "2025-06-18",
                },
                body: JSON.stringify({
                    jsonrpc: "2.0",
                    id: "ct",
                    method: "tools/call",
                    params: { name: "get_patient", arguments: { patient_id: "P4" } },
                }),
                signal: AbortSignal.timeout(5000),
            }), tg, ehr);
            assert.equal(res.status, 200);
            const text = await res.text();
            if (mode === "sse") {
                assert.match(res.headers.get("content-type"), /^text\/event-stream/);
                assert.match(text, /^event: message\ndata: \{.*"id":"ct"/m);
            } else {
                assert.match(res.headers.get("content-type"), /^application\/json/);
                assert.equal(JSON.parse(text).id, "ct");
            }
            assert.match(res.headers.get("x-request-id"), /^[0-9a-f-]{36}$/);
        });

        test("session termination: the session is gone afterwards", async () => {
            const sid = transport.sessionId;
            await transport.terminateSession();
            assert.equal(transport.sessionId, undefined);
            const res = await fetch(tg.url, {
                method: "POST",
                headers: {
                    "Content-Type": "application/json",
                    Accept: "application/json, text/event-stream",
                    "Mcp-Session-Id": sid,
                    "MCP-Protocol-Version": "2025-06-18",
                },
                body: JSON.stringify({ jsonrpc: "2.0", id: 5, method: "tools/list" }),
                signal: AbortSignal.timeout(5000),
            });
            assert.equal(res.status, 404, "a terminated session is unknown (MCP: 404)");
            await res.arrayBuffer();
        });
    });
}
