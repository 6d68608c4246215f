// What the reload tests share: an SDK client through toolgate and the metrics they read.
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { withTimeout } from "./harness.mjs";

export async function connect(url) {
    const client = new Client({ name: "toolgate-e2e-reload", version: "1.0.0" });
    await withTimeout(client.connect(new StreamableHTTPClientTransport(new URL(url))), 10000, "initialize");
    return client;
}

/* The families of a /metrics text by name (parsed by a real Prometheus text parser). */
export function metricsOf(text) {
    return Object.fromEntries(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
}

/* The value of the first sample of `name` whose labels include `labels`. */
export function sample(families, name, labels = {}) {
    const f = families[name];
    if (!f) return undefined;
    const m = f.metrics.find((s) => Object.entries(labels).every(([k, v]) => (s.labels || {})[k] === v));
    return m ? Number(m.value) : undefined;
}

/* Runs `work` while every client calls get_patient in a loop, then stops the load (bounded in
 * time) and returns what `work` returned with the number of calls and the failed ones. */
export async function underLoad(clients, work) {
    let stop = false;
    let calls = 0;
    const failures = [];
    const load = clients.map(async (c) => {
        while (!stop) {
            try {
                const r = await c.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
                if (r.isError) failures.push(JSON.stringify(r));
            } catch (e) {
                failures.push(String(e));
            }
            calls++;
        }
    });
    try {
        const result = await work();
        return { result, calls, failures };
    } finally {
        stop = true;
        await withTimeout(Promise.all(load), 20000, "the load to stop");
    }
}
