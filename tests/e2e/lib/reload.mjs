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
