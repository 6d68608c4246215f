// OpenTelemetry traces of governed requests, against an OTLP/HTTP receiver on loopback that
// decodes what toolgate sends with the OpenTelemetry project's own protobuf definitions.
//
// What is proved: an incoming traceparent (header or params._meta, _meta first) is continued
// and the backend gets toolgate's upstream span as its parent (header, and _meta where the
// client put it); invalid context starts a new trace and never fails the call; baggage keys
// outside the allow-list never reach the backend (and a backend's trace headers never reach
// the client); one span per layer with its decision; a denied call's span has error status
// and names the deciding layer; sampling follows the parent; a stalled or dead collector
// never fails calls, the queue stays bounded and the dropped / failed counters rise; queued
// spans are flushed at shutdown, and shutdown with a stalled collector ends within its bound.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { startToolgate, killAll, refusedPort, waitUntil, sleep } from "./lib/harness.mjs";
import { startBackend } from "./lib/backend.mjs";
import { exchange, postJson, jsonBody } from "./lib/raw.mjs";
import { openSession } from "./lib/session.mjs";
import { startOtlpReceiver } from "./lib/otlp-receiver.mjs";

const T1 = "4bf92f3577b34da6a3ce929d0e0e4736";
const P1 = "00f067aa0ba902b7";
const T2 = "0af7651916cd43dd8448eb211c80319c";
const P2 = "b7ad6b7169203331";
const LAYERS = ["identity", "safety", "integrity", "policy", "limits", "routing", "audit"];

const POLICY = {
    rules: [
        { id: "allow-echo", effect: "permit", tools: ["echo", "search"] },
        { id: "no-delete", effect: "forbid", tools: ["delete_everything"] },
        { id: "all-else", effect: "permit", tools: ["delete_everything"] },
    ],
};

function traces(endpoint, more = {}) {
    return {
        telemetry: {
            traces: {
                endpoint,
                interval: "50ms",
                batch: 16,
                baggage: ["tenant.tier", "session.kind"],
                ...more,
            },
        },
    };
}

async function metricsOf(tg) {
    const r = await fetch(`${tg.adminBase}/metrics`);
    const families = parsePrometheusTextFormat(await r.text());
    const out = {};
    for (const f of families) out[f.name] = Number(f.metrics[0]?.value ?? 0);
    return out;
}

/* A tools/call in the session; returns the response. */
function call(tg, sid, name, { headers = {}, meta, id = 1 } = {}) {
    const params = { name, arguments: { q: "alice@example.com" } };
    if (meta) params._meta = meta;
    return exchange(
        tg.port,
        postJson(
            "/mcp",
            { jsonrpc: "2.0", id, method: "tools/call", params },
            { "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18", ...headers },
        ),
    );
}

after(killAll);

describe("a collector that answers", () => {
    let tg, backend, rcv, sid;
    before(async () => {
        rcv = await startOtlpReceiver();
        backend = await startBackend();
        tg = await startToolgate({
            routes: [{ url: backend.url }],
            policy: POLICY,
            admin: true,
            extra: traces(rcv.url, { resource: { "deployment.environment.name": "e2e" } }),
        });
        sid = await openSession(tg.port, backend, "backend-session-1");
    });
    after(async () => {
        if (tg) await tg.stop();
        if (backend) await backend.close();
        if (rcv) await rcv.close();
    });

    test("an incoming traceparent header is continued; the backend's parent is toolgate's client span", async () => {
        const mark = backend.received.length;
        const res = await call(tg, sid, "echo", {
            headers: { traceparent: `00-${T1}-${P1}-01`, tracestate: "vendor=abc,other@sys=x1" },
        });
        assert.equal(res.status, 200);
        const rid = res.headers["x-request-id"];
        const { server, children } = await rcv.traceOf(rid, 5000, { count: 9 });

        assert.equal(server.traceId, T1, "same trace id");
        assert.equal(server.parentSpanId, P1, "parent = the caller's span");
        assert.equal(server.kind, 2, "SERVER");
        assert.equal(server.name, "tools/call echo");
        assert.equal(server.traceState, "vendor=abc,other@sys=x1");
        const a = server.attributes;
        assert.equal(a["mcp.method.name"], "tools/call");
        assert.equal(a["gen_ai.tool.name"], "echo");
        assert.equal(a["gen_ai.operation.name"], "execute_tool");
        assert.equal(a["jsonrpc.request.id"], "1");
        assert.equal(a["mcp.protocol.version"], "2025-06-18");
        assert.match(a["mcp.session.id"], /^[A-Za-z0-9_-]{43}$/);
        assert.equal(a["http.response.status_code"], 200);
        assert.equal(a["toolgate.decision"], "allow");
        assert.equal(a["error.type"], undefined);
        assert.equal(server.status.code, 0, "UNSET on success");
        assert.equal(a["enduser.id"], undefined, "no user id unless the operator enables it");
        assert.equal(server.resource["service.name"], "toolgate");
        assert.equal(server.resource["deployment.environment.name"], "e2e");
        assert.match(server.resource["service.version"], /^\d+\.\d+\.\d+/);
        assert.equal(server.scope.name, "toolgate");
        const text = JSON.stringify(server.attributes) + JSON.stringify(children.map((c) => c.attributes));
        assert.ok(!text.includes("alice@example.com"), "argument values never reach spans");

        // One span per layer, children of the server span, each with its verdict.
        const byName = Object.fromEntries(children.map((c) => [c.name, c]));
        for (const l of LAYERS) {
            const s = byName[`toolgate.${l}`];
            assert.ok(s, `a span for ${l}`);
            assert.equal(s.kind, 1, "INTERNAL");
            assert.equal(s.attributes["toolgate.layer"], l);
            assert.equal(s.attributes["toolgate.decision"], "pass");
            assert.ok(s.start >= server.start && s.end <= server.end, `${l} inside the request`);
        }
        assert.equal(byName["toolgate.policy"].attributes["toolgate.rule_id"], "allow-echo");
        const client = children.find((c) => c.kind === 3);
        assert.ok(client, "a CLIENT span for the upstream call");
        assert.equal(client.attributes["toolgate.backend"], "backend");
        assert.equal(client.attributes["server.address"], "127.0.0.1");
        assert.equal(client.attributes["server.port"], backend.port);
        assert.equal(client.attributes["http.response.status_code"], 200);

        // The backend continues toolgate's trace, under the client span.
        const got = backend.received.slice(mark);
        assert.equal(got.length, 1);
        assert.equal(got[0].headers.traceparent, `00-${T1}-${client.spanId}-01`);
        assert.equal(got[0].headers.tracestate, "vendor=abc,other@sys=x1");
        assert.equal(JSON.parse(got[0].body).params._meta, undefined, "no _meta added");
    });

    test("params._meta traceparent is honoured over the header and answered in kind", async () => {
        const mark = backend.received.length;
        const res = await call(tg, sid, "echo", {
            headers: { traceparent: `00-${T1}-${P1}-01` },
            meta: { traceparent: `00-${T2}-${P2}-01`, tracestate: "m=1", "io.example/other": "kept" },
        });
        assert.equal(res.status, 200);
        const { server, children } = await rcv.traceOf(res.headers["x-request-id"], 5000, { count: 9 });
        assert.equal(server.traceId, T2);
        assert.equal(server.parentSpanId, P2);
        const client = children.find((c) => c.kind === 3);
        const got = backend.received.slice(mark)[0];
        const want = `00-${T2}-${client.spanId}-01`;
        assert.equal(got.headers.traceparent, want);
        const meta = JSON.parse(got.body).params._meta;
        assert.equal(meta.traceparent, want, "the MCP backend sees toolgate's span in _meta");
        assert.equal(meta.tracestate, "m=1");
        assert.equal(meta["io.example/other"], "kept", "other _meta keys untouched");
    });

    test("baggage: allowed keys pass, every other key is dropped (header and _meta)", async () => {
        let mark = backend.received.length;
        let res = await call(tg, sid, "echo", {
            headers: {
                baggage: "tenant.tier=gold, user.email=alice%40example.com,session.kind=chat;p=1, token=s3cr3t",
            },
        });
        assert.equal(res.status, 200);
        let got = backend.received.slice(mark)[0];
        assert.equal(got.headers.baggage, "tenant.tier=gold,session.kind=chat");
        assert.ok(!JSON.stringify(got).includes("alice%40example.com"));
        assert.ok(!JSON.stringify(got).includes("s3cr3t"));

        mark = backend.received.length;
        res = await call(tg, sid, "echo", { meta: { baggage: "user.id=u-42,tenant.tier=silver" } });
        assert.equal(res.status, 200);
        got = backend.received.slice(mark)[0];
        assert.equal(got.headers.baggage, "tenant.tier=silver");
        const meta = JSON.parse(got.body).params._meta;
        assert.equal(meta.baggage, "tenant.tier=silver");
        assert.match(meta.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, "a new trace, in kind");

        // Nothing allowed: no baggage at all, in either carrier.
        mark = backend.received.length;
        res = await call(tg, sid, "echo", {
            headers: { baggage: "user.email=bob%40example.com" },
            meta: { baggage: "user.email=bob%40example.com" },
        });
        got = backend.received.slice(mark)[0];
        assert.equal(got.headers.baggage, undefined);
        assert.equal(JSON.parse(got.body).params._meta.baggage, undefined);

        // Header values never go into the body: _meta gets only what came in _meta.
        mark = backend.received.length;
        res = await call(tg, sid, "echo", {
            headers: { baggage: "tenant.tier=gold", tracestate: "h=1", traceparent: `00-${T1}-${P1}-01` },
            meta: { traceparent: `00-${T2}-${P2}-01` },
        });
        got = backend.received.slice(mark)[0];
        assert.equal(got.headers.baggage, "tenant.tier=gold");
        const m2 = JSON.parse(got.body).params._meta;
        assert.equal(m2.baggage, undefined);
        assert.equal(m2.tracestate, undefined);
        assert.equal(got.headers.tracestate, undefined, "tracestate goes with its own traceparent");

        // The other way: a backend's trace headers never reach the client.
        const previous = backend.handler;
        backend.setHandler((req, r, body) => {
            const out = JSON.stringify({ jsonrpc: "2.0", id: JSON.parse(body).id, result: { content: [] } });
            r.writeHead(200, {
                "Content-Type": "application/json",
                "Content-Length": Buffer.byteLength(out),
                baggage: "tenant.tier=gold,backend.secret=s3",
                traceparent: `00-${T2}-${P2}-01`,
                tracestate: "b=1",
            });
            r.end(out);
        });
        try {
            res = await call(tg, sid, "echo", { headers: { baggage: "tenant.tier=gold" } });
            assert.equal(res.status, 200);
            assert.equal(res.headers.baggage, undefined);
            assert.equal(res.headers.traceparent, undefined);
            assert.equal(res.headers.tracestate, undefined);
        } finally {
            backend.setHandler(previous);
        }

        // Malformed baggage is dropped whole, even its allowed members.
        mark = backend.received.length;
        res = await call(tg, sid, "echo", { headers: { baggage: "tenant.tier=gold,,=broken" } });
        assert.equal(res.status, 200);
        assert.equal(backend.received.slice(mark)[0].headers.baggage, undefined);
    });

    test("invalid trace context starts a new trace and never fails the call", async () => {
        const bad = [
            `00-${"0".repeat(32)}-${P1}-01`, // all-zero trace id
            `00-${T1}-${"0".repeat(16)}-01`, // all-zero parent id
            `00-${T1.toUpperCase()}-${P1}-01`, // upper-case hex
            `ff-${T1}-${P1}-01`, // version ff
            `00-${T1}-${P1}-01-extra`, // version 00 must be exactly 55 characters
            `00-${T1}-${P1}`, // too short
            `00_${T1}_${P1}_01`, // wrong separators
            `00-${T1}-${P1}-0g`, // bad flags
            `0${"x".repeat(5000)}`, // long
        ];
        for (const tp of bad) {
            const mark = backend.received.length;
            const res = await call(tg, sid, "echo", {
                headers: { traceparent: tp, tracestate: "vendor=abc" },
            });
            assert.equal(res.status, 200, tp);
            const { server } = await rcv.traceOf(res.headers["x-request-id"]);
            assert.notEqual(server.traceId, T1, tp);
            assert.equal(server.parentSpanId, "", `${tp}: a root span`);
            assert.equal(server.traceState, "", "tracestate goes with the traceparent it came with");
            const h = backend.received.slice(mark)[0].headers;
            assert.match(h.traceparent, new RegExp(`^00-${server.traceId}-[0-9a-f]{16}-01$`));
            assert.equal(h.tracestate, undefined);
        }
        // A future version with extra fields is read by its first four.
        let res = await call(tg, sid, "echo", { headers: { traceparent: `cc-${T1}-${P1}-01-what-ever` } });
        let { server } = await rcv.traceOf(res.headers["x-request-id"]);
        assert.equal(server.traceId, T1);
        // Two traceparent headers: which one is meant is unknown, so neither.
        const raw = postJson(
            "/mcp",
            { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "echo", arguments: {} } },
            { "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18", traceparent: `00-${T1}-${P1}-01` },
        ).replace("\r\n\r\n", `\r\ntraceparent: 00-${T2}-${P2}-01\r\n\r\n`);
        res = await exchange(tg.port, raw);
        assert.equal(res.status, 200);
        ({ server } = await rcv.traceOf(res.headers["x-request-id"]));
        assert.ok(server.traceId !== T1 && server.traceId !== T2);
        // An invalid tracestate is dropped; the traceparent stays.
        const mark = backend.received.length;
        res = await call(tg, sid, "echo", {
            headers: { traceparent: `00-${T1}-${P1}-01`, tracestate: "UPPER=bad,ok=1" },
        });
        ({ server } = await rcv.traceOf(res.headers["x-request-id"]));
        assert.equal(server.traceId, T1);
        assert.equal(server.traceState, "");
        assert.equal(backend.received.slice(mark)[0].headers.tracestate, undefined);
        // _meta values of the wrong type or shape fall back to the header.
        res = await call(tg, sid, "echo", {
            headers: { traceparent: `00-${T1}-${P1}-01` },
            meta: { traceparent: 42 },
        });
        ({ server } = await rcv.traceOf(res.headers["x-request-id"]));
        assert.equal(server.traceId, T1);
    });

    test("a denied call: error status, the deciding layer, no upstream span", async () => {
        const mark = backend.received.length;
        const res = await call(tg, sid, "delete_everything", { headers: { traceparent: `00-${T1}-${P1}-01` } });
        assert.equal(res.status, 200);
        const body = jsonBody(res);
        assert.ok(body.error || body.result.isError, JSON.stringify(body));
        assert.equal(backend.received.length, mark, "never forwarded");
        const { server, children } = await rcv.traceOf(res.headers["x-request-id"], 5000, { count: 6 });
        await sleep(100); // let every span of the request arrive (they come in one export)
        assert.equal(server.status.code, 2, "ERROR");
        assert.equal(server.attributes["toolgate.decision"], "deny");
        assert.equal(server.attributes["toolgate.deciding_layer"], "policy");
        assert.match(server.attributes["error.type"], /^policy\./);
        assert.equal(server.attributes["toolgate.rule_id"], "no-delete");
        const names = children.map((c) => c.name).sort();
        assert.deepEqual(names, ["toolgate.audit", "toolgate.identity", "toolgate.integrity", "toolgate.policy", "toolgate.safety"]);
        const policy = children.find((c) => c.name === "toolgate.policy");
        assert.equal(policy.status.code, 2);
        assert.equal(policy.attributes["toolgate.decision"], "deny");
        assert.equal(policy.attributes["toolgate.rule_id"], "no-delete");
        assert.ok(!children.some((c) => c.kind === 3), "no client span");
    });

    test("a request refused before the layers (bad JSON) still has its span, from 'protocol'", async () => {
        const res = await exchange(
            tg.port,
            postJson("/mcp", '{"jsonrpc":"2.0","id":1,"method":', {
                "Mcp-Session-Id": sid,
                "MCP-Protocol-Version": "2025-06-18",
                traceparent: `00-${T1}-${P1}-01`,
            }),
        );
        assert.equal(res.status, 400);
        const { server, children } = await rcv.traceOf(res.headers["x-request-id"], 5000, { count: 2 });
        assert.equal(server.traceId, T1);
        assert.equal(server.status.code, 2);
        assert.equal(server.attributes["toolgate.deciding_layer"], "protocol");
        assert.equal(server.attributes["error.type"], "protocol.parse_error");
        assert.equal(server.name, "POST /mcp");
        assert.deepEqual(
            children.map((c) => c.name),
            ["toolgate.audit"],
            "only audit, which sees every request, ran",
        );
    });

    test("parent-based sampling: an unsampled parent exports nothing but propagates", async () => {
        const mark = backend.received.length;
        const before = rcv.spans.length;
        const res = await call(tg, sid, "echo", { headers: { traceparent: `00-${T2}-${P2}-00` } });
        assert.equal(res.status, 200);
        const h = backend.received.slice(mark)[0].headers;
        assert.match(h.traceparent, new RegExp(`^00-${T2}-[0-9a-f]{16}-00$`));
        assert.notEqual(h.traceparent, `00-${T2}-${P2}-00`, "toolgate's own span id");
        // A sampled request after it is exported; the unsampled one never is.
        const res2 = await call(tg, sid, "echo");
        await rcv.traceOf(res2.headers["x-request-id"]);
        assert.ok(!rcv.spans.slice(before).some((s) => s.attributes["toolgate.request.id"] === res.headers["x-request-id"]));
    });

    test("the exported counter counts what the collector accepted", async () => {
        const m = await metricsOf(tg);
        assert.ok(m.toolgate_trace_spans_exported_total >= 8);
        assert.equal(m.toolgate_trace_spans_dropped_total, 0);
        assert.equal(m.toolgate_trace_spans_failed_total, 0);
    });
});

describe("a collector that stalls", () => {
    let tg, backend, rcv, sid;
    before(async () => {
        rcv = await startOtlpReceiver("stall");
        backend = await startBackend();
        tg = await startToolgate({
            routes: [{ url: backend.url }],
            policy: POLICY,
            admin: true,
            extra: traces(rcv.url, { queue: 3, batch: 1, timeout: "10s", retries: 0, shutdown: "1s" }),
        });
        sid = await openSession(tg.port, backend, "backend-session-2");
    });
    after(async () => {
        if (backend) await backend.close();
        if (rcv) await rcv.close();
    });

    test("calls still succeed; the queue stays bounded and drops are counted", async () => {
        for (let i = 0; i < 20; i++) {
            const res = await call(tg, sid, "echo", { id: i + 10 });
            assert.equal(res.status, 200);
            assert.equal(jsonBody(res).result.echo, "tools/call");
        }
        await waitUntil(() => rcv.state.requests.length >= 1, 5000, "the exporter to reach the collector");
        const m = await metricsOf(tg);
        assert.ok(m.toolgate_trace_queue_requests <= 3, `queue bounded: ${m.toolgate_trace_queue_requests}`);
        assert.equal(m.toolgate_trace_queue_capacity, 3);
        assert.ok(m.toolgate_trace_spans_dropped_total > 0, "dropped counter rose");
        assert.equal(m.toolgate_trace_spans_exported_total, 0);
    });

    test("shutdown ends within its bound although the collector never answers", async () => {
        const r = await tg.stop(15000); // 10s export timeout, 1s shutdown bound: the bound wins
        assert.equal(r.code, 0);
    });
});

describe("shutdown flush", () => {
    let backend, rcv;
    before(async () => {
        rcv = await startOtlpReceiver();
        backend = await startBackend();
    });
    after(async () => {
        if (backend) await backend.close();
        if (rcv) await rcv.close();
    });

    test("spans still queued at shutdown reach the collector", async () => {
        // A batch that never fills and an interval that never passes: only the flush sends.
        const tg = await startToolgate({
            routes: [{ url: backend.url }],
            policy: POLICY,
            extra: traces(rcv.url, { interval: "60s", batch: 1000, shutdown: "5s" }),
        });
        const sid = await openSession(tg.port, backend, "backend-session-6");
        const res = await call(tg, sid, "echo");
        assert.equal(res.status, 200);
        assert.equal(rcv.state.requests.length, 0, "nothing sent before shutdown");
        await tg.stop();
        const { server, children } = await rcv.traceOf(res.headers["x-request-id"], 1000, { count: 9 });
        assert.equal(server.name, "tools/call echo");
        assert.equal(children.length, 8);
    });
});

describe("a collector that is down", () => {
    let tg, backend, sid;
    before(async () => {
        backend = await startBackend();
        const dead = await refusedPort(); // nothing listens there
        tg = await startToolgate({
            routes: [{ url: backend.url }],
            policy: POLICY,
            admin: true,
            extra: traces(`http://127.0.0.1:${dead}/v1/traces`, { batch: 1, retries: 1, timeout: "500ms" }),
        });
        sid = await openSession(tg.port, backend, "backend-session-3");
    });
    after(async () => {
        if (tg) await tg.stop();
        if (backend) await backend.close();
    });

    test("calls succeed and failed spans are counted", async () => {
        for (let i = 0; i < 5; i++) assert.equal((await call(tg, sid, "echo", { id: i })).status, 200);
        await waitUntil(async () => (await metricsOf(tg)).toolgate_trace_spans_failed_total > 0, 10000, "failed spans counted");
        const m = await metricsOf(tg);
        assert.ok(m.toolgate_trace_export_requests_total >= 2, "retried");
        assert.equal(m.toolgate_trace_spans_exported_total, 0);
    });
});

describe("sample: 0", () => {
    let tg, backend, rcv, sid;
    before(async () => {
        rcv = await startOtlpReceiver();
        backend = await startBackend();
        tg = await startToolgate({
            routes: [{ url: backend.url }],
            policy: POLICY,
            extra: traces(rcv.url, { sample: 0 }),
        });
        sid = await openSession(tg.port, backend, "backend-session-5");
    });
    after(async () => {
        if (tg) await tg.stop();
        if (backend) await backend.close();
        if (rcv) await rcv.close();
    });

    test("new traces are not exported, still propagated unsampled; a sampled parent is exported", async () => {
        const mark = backend.received.length;
        const unsampled = await call(tg, sid, "echo");
        assert.equal(unsampled.status, 200);
        assert.match(backend.received[mark].headers.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
        const sampled = await call(tg, sid, "echo", { headers: { traceparent: `00-${T1}-${P1}-01` } });
        const { server } = await rcv.traceOf(sampled.headers["x-request-id"]);
        assert.equal(server.traceId, T1);
        assert.ok(
            !rcv.spans.some((s) => s.attributes["toolgate.request.id"] === unsampled.headers["x-request-id"]),
            "the unsampled request left no span",
        );
    });
});

describe("traces off", () => {
    let tg, backend, sid;
    before(async () => {
        backend = await startBackend();
        tg = await startToolgate({ routes: [{ url: backend.url }], policy: POLICY, admin: true });
        sid = await openSession(tg.port, backend, "backend-session-4");
    });
    after(async () => {
        if (tg) await tg.stop();
        if (backend) await backend.close();
    });

    test("no telemetry section: no trace headers, _meta untouched, no trace metrics", async () => {
        const mark = backend.received.length;
        const meta = { traceparent: `00-${T1}-${P1}-01`, baggage: "user.email=x" };
        const res = await call(tg, sid, "echo", { headers: { traceparent: `00-${T1}-${P1}-01` }, meta });
        assert.equal(res.status, 200);
        const got = backend.received.slice(mark)[0];
        assert.equal(got.headers.traceparent, undefined);
        assert.deepEqual(JSON.parse(got.body).params._meta, meta);
        const m = await metricsOf(tg);
        assert.equal(m.toolgate_trace_spans_exported_total, undefined);
    });
});
