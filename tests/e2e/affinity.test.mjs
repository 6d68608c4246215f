// Session affinity: two replicas of a stateful MCP backend (each knows only the sessions it
// issued) behind one backend with two endpoints. The official SDK client's session must stay
// on the replica that created it for every later request, while new sessions still spread.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEhr, killAll, withTimeout } from "./lib/harness.mjs";

after(killAll);

const initializes = (ehr) => ehr.child.stderrLines.filter((l) => l.includes('"rpc":"initialize"')).length;
const calls = (ehr) => ehr.child.stderrLines.filter((l) => l.includes('"tool":"get_patient"')).length;

test("each session stays on the replica that issued it", async () => {
    const a = await startEhr("json");
    const b = await startEhr("json");
    const tg = await startToolgate({
        routes: [{ name: "ehr", path: "/mcp", backends: [{ name: "ehr", endpoints: [a.url, b.url] }] }],
    });
    try {
        const clients = [];
        for (let i = 0; i < 4; i++) {
            const client = new Client({ name: `c${i}`, version: "1" });
            await withTimeout(client.connect(new StreamableHTTPClientTransport(new URL(tg.url))), 10000, "connect");
            clients.push(client);
        }
        // Round-robin spread the four sessions over both replicas...
        assert.ok(initializes(a) >= 1 && initializes(b) >= 1, `initializes: ${initializes(a)} / ${initializes(b)}`);
        // ...and every later call of every session works (a wrong replica would answer 404).
        for (let round = 0; round < 5; round++)
            for (const client of clients) {
                const r = await client.callTool({ name: "get_patient", arguments: { patient_id: "P123" } });
                assert.match(r.content[0].text, /Daniel Patel/);
            }
        assert.equal(calls(a) + calls(b), 20);
        for (const client of clients) await client.close();
    } finally {
        await tg.stop();
        await a.stop();
        await b.stop();
    }
});
