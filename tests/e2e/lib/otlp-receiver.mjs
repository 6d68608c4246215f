// An OTLP/HTTP trace receiver on loopback for the e2e tests. It decodes what toolgate sends
// with the OpenTelemetry project's own protobuf definitions (the generated root shipped in
// @opentelemetry/otlp-transformer), not with a parser of ours, and keeps the spans.
//
// mode: "ok" answers 200, "fail" answers 503, "stall" accepts the request and never answers
// (a collector that hangs); setMode changes it.
import http from "node:http";
import { createRequire } from "node:module";
import { freePort, withTimeout, waitUntil } from "./harness.mjs";

const require = createRequire(import.meta.url);
const root = require("@opentelemetry/otlp-transformer/build/src/generated/root.js");
const ExportTraceServiceRequest = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const ExportTraceServiceResponse = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;

const hex = (b) => (b && b.length ? Buffer.from(b).toString("hex") : "");

function anyValue(v) {
    if (!v) return undefined;
    if (v.stringValue !== undefined && v.stringValue !== null) return v.stringValue;
    if (v.boolValue !== undefined && v.boolValue !== null) return v.boolValue;
    if (v.intValue !== undefined && v.intValue !== null) return Number(v.intValue);
    if (v.doubleValue !== undefined && v.doubleValue !== null) return v.doubleValue;
    return undefined;
}

function attrs(list) {
    const out = {};
    for (const kv of list || []) out[kv.key] = anyValue(kv.value);
    return out;
}

/* A decoded span in plain terms: hex ids, attributes as an object, times as BigInt ns. */
function plainSpan(s, resource, scope) {
    return {
        traceId: hex(s.traceId),
        spanId: hex(s.spanId),
        parentSpanId: hex(s.parentSpanId),
        traceState: s.traceState || "",
        name: s.name,
        kind: s.kind,
        start: BigInt(s.startTimeUnixNano.toString()),
        end: BigInt(s.endTimeUnixNano.toString()),
        attributes: attrs(s.attributes),
        status: { code: s.status ? s.status.code || 0 : 0, message: s.status ? s.status.message || "" : "" },
        flags: s.flags,
        resource,
        scope,
    };
}

export async function startOtlpReceiver(mode = "ok") {
    const port = await freePort();
    const state = { mode, spans: [], requests: [], stalled: [] };
    const sockets = new Set();
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            const body = Buffer.concat(chunks);
            state.requests.push({ url: req.url, headers: req.headers, bytes: body.length });
            if (state.mode === "stall") {
                state.stalled.push(res);
                return;
            }
            if (state.mode === "fail") {
                res.writeHead(503, { "Content-Type": "text/plain" });
                res.end("unavailable");
                return;
            }
            if (req.url !== "/v1/traces" || req.headers["content-type"] !== "application/x-protobuf") {
                res.writeHead(415);
                res.end();
                return;
            }
            const msg = ExportTraceServiceRequest.decode(body);
            for (const rs of msg.resourceSpans) {
                const resource = attrs(rs.resource && rs.resource.attributes);
                for (const ss of rs.scopeSpans) {
                    const scope = ss.scope ? { name: ss.scope.name, version: ss.scope.version } : {};
                    for (const s of ss.spans) state.spans.push(plainSpan(s, resource, scope));
                }
            }
            const out = Buffer.from(ExportTraceServiceResponse.encode({}).finish());
            res.writeHead(200, { "Content-Type": "application/x-protobuf", "Content-Length": out.length });
            res.end(out);
        });
    });
    server.on("connection", (s) => {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", resolve);
    });
    return {
        port,
        url: `http://127.0.0.1:${port}`,
        state,
        get spans() {
            return state.spans;
        },
        setMode(m) {
            state.mode = m;
        },
        /* The spans of the trace whose server span carries this toolgate request id. */
        async traceOf(requestId, ms = 5000, { count } = {}) {
            let server;
            await waitUntil(
                () => {
                    server = state.spans.find(
                        (s) => s.kind === 2 && s.attributes["toolgate.request.id"] === requestId,
                    );
                    if (!server) return false;
                    const kids = state.spans.filter((s) => s.parentSpanId === server.spanId);
                    return count === undefined || kids.length + 1 >= count;
                },
                ms,
                `the spans of request ${requestId}`,
            );
            const children = state.spans.filter(
                (s) => s.traceId === server.traceId && s.parentSpanId === server.spanId,
            );
            return { server, children };
        },
        async close() {
            for (const r of state.stalled) r.destroy();
            for (const s of sockets) s.destroy();
            await withTimeout(new Promise((r) => server.close(r)), 3000, "otlp receiver close").catch(() => {});
        },
    };
}
