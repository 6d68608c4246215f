// stages: where a call's time went, from toolgate's own audit records (bench/run.sh, openloop).
//
//   toolgate audit export STORE --format jsonl --since T0 --until T1 | node bench/stages.mjs
//
// Reads the exported records on stdin and prints, for every key of the completion records'
// latency_ns (each layer's stage, upstream_first_byte, total), one line
//
//   STAGE key=NAME n=N p50_us=F p99_us=F p999_us=F max_us=F
//
// in the order: the layers as they run, then upstream_first_byte, then total. Records that are
// not completions, or have no latency_ns, are skipped; a line that is not JSON ends the run with
// status 1 (the export is toolgate's own, so that is a bug worth seeing). Nothing but the
// latencies is read: no subject, tool or argument reaches the output.
import { createInterface } from "node:readline";

const ORDER = ["identity", "safety", "policy", "limits", "integrity", "routing", "audit",
    "upstream_first_byte", "total"];
const samples = new Map();

function quantile(sorted, q) {
    if (sorted.length === 0) return 0;
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return sorted[i];
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
let lineNo = 0;
for await (const line of lines) {
    lineNo++;
    if (line.trim() === "") continue;
    let rec;
    try {
        rec = JSON.parse(line);
    } catch {
        console.error(`stages: line ${lineNo} is not JSON`);
        process.exit(1);
    }
    if (rec.kind !== "completion" || typeof rec.latency_ns !== "object" || rec.latency_ns === null)
        continue;
    for (const [key, value] of Object.entries(rec.latency_ns)) {
        const ns = Number(value);
        if (!Number.isFinite(ns) || ns < 0) continue;
        if (!samples.has(key)) samples.set(key, []);
        samples.get(key).push(ns / 1000);
    }
}

const keys = [...samples.keys()].sort((a, b) => {
    const ia = ORDER.indexOf(a), ib = ORDER.indexOf(b);
    return (ia < 0 ? ORDER.length : ia) - (ib < 0 ? ORDER.length : ib) || a.localeCompare(b);
});
for (const key of keys) {
    const v = samples.get(key).sort((a, b) => a - b);
    const f = (x) => x.toFixed(1);
    console.log(`STAGE key=${key} n=${v.length} p50_us=${f(quantile(v, 0.5))} ` +
        `p99_us=${f(quantile(v, 0.99))} p999_us=${f(quantile(v, 0.999))} max_us=${f(v[v.length - 1])}`);
}
