import { listServerScenarios, runSuite, score, describeFailures, startReferenceServer, startGatewayWithShim, startTokenShim } from "./lib/conformance/suite.mjs";
import { killAll } from "./lib/harness.mjs";
import { writeFileSync } from "node:fs";
const sc = await listServerScenarios();
const ref = await startReferenceServer();
for (const v of ["2025-03-26"]) {
  const shim = await startTokenShim({ targetPort: ref.port, initVersion: v, mapHost: true });
  const { results: d } = await runSuite(shim.url, sc);
  console.log(v, "direct", score(d)); console.log(describeFailures(d, { warnings: true }));
  const gw = await startGatewayWithShim(ref.url, { initVersion: v });
  const { results: t } = await runSuite(gw.url, sc, 15000);
  console.log(v, "via", score(t)); console.log(describeFailures(t, { warnings: true }));
  writeFileSync(`/tmp/era-${v}.txt`, gw.tg.child.stderrLines.join("\n"));
  await gw.shim.close(); await gw.tg.stop().catch(e => console.log(String(e).slice(0, 300))); await shim.close();
}
await killAll();
