import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEhr, killAll } from "./lib/harness.mjs";
const ehr = await startEhr("sse");
const tg = await startToolgate({ routes: [{ url: ehr.url, name: "ehr" }] });
let fails = 0;
for (let round = 0; round < 15; round++) {
  const client = new Client({ name: "x", version: "1" });
  const tr = new StreamableHTTPClientTransport(new URL(tg.url), { requestInit: { headers: { Authorization: "Bearer x" } } });
  await client.connect(tr);
  await client.listTools();
  await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
  const seen = [];
  try {
    await client.callTool({ name: "slow_report", arguments: { patient_id: "P3", steps: 10, interval_ms: 100 } }, undefined,
      { timeout: 5000, onprogress: (p) => seen.push(p.progress) });
  } catch (e) {
    fails++;
    console.log("round", round, "FAIL", e.message, "progress", seen.join(","), "sid", tr.sessionId);
  }
  await tr.terminateSession().catch(e => console.log("term", e.message));
  await client.close();
}
console.log("fails", fails);
console.log(tg.child.stderrLines.filter(l => !l.includes('"status":200')).slice(-30).join("\n"));
await tg.stop(); await ehr.stop(); await killAll();
