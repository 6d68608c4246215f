// The admin listener: health, readiness and metrics answer there and nowhere else; a token
// guards it when configured; readiness follows a Redis store going away and coming back; the
// metrics parse with a Prometheus text-format parser and count allowed and denied calls with
// the right labels. Everything listens on loopback and is stopped at the end.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import net from "node:net";
import os from "node:os";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
    startToolgate,
    startEhr,
    killAll,
    freePort,
    tempDir,
    waitUntil,
    waitForPort,
    httpGet,
    withTimeout,
    TOOLGATE_BIN,
} from "./lib/harness.mjs";

const POLICY = { rules: [{ id: "read-only", effect: "permit", tools: ["get_patient"] }] };

function get(url, headers = {}) {
    return fetch(url, { headers }).then(async (r) => ({ status: r.status, headers: r.headers, body: await r.text() }));
}

function metricsOf(text) {
    const families = parsePrometheusTextFormat(text);
    return Object.fromEntries(families.map((f) => [f.name, f]));
}

/*
 * One labelled histogram series read from the text (the parser folds a histogram family's
 * series into one, dropping their labels, so labelled histograms are read here): buckets by
 * le, sum and count. The parser has already accepted the same text.
 */
function histogramOf(text, name, labels) {
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    const out = { buckets: {}, sum: NaN, count: NaN };
    for (const line of text.split("\n")) {
        const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
        if (!m || !m[1].startsWith(name) || !want.every((w) => m[2].split(",").includes(w))) continue;
        const suffix = m[1].slice(name.length);
        if (suffix === "_bucket") out.buckets[/le="([^"]+)"/.exec(m[2])[1]] = Number(m[3]);
        else if (suffix === "_sum") out.sum = Number(m[3]);
        else if (suffix === "_count") out.count = Number(m[3]);
    }
    return out;
}

/* The value of a counter's sample whose labels include `labels` (0 when there is none). */
function counterValue(families, name, labels) {
    const f = families[name];
    if (!f) return 0;
    let total = 0;
    for (const m of f.metrics)
        if (Object.entries(labels).every(([k, v]) => (m.labels || {})[k] === v)) total += Number(m.value);
    return total;
}

/* A redis-server on a loopback port, in dir; stop() waits for its exit. */
async function startRedis(port, dir) {
    const p = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"], {
        stdio: ["ignore", "ignore", "ignore"],
    });
    const exited = new Promise((r) => p.on("exit", r));
    await waitForPort(port, 10000);
    return {
        stop: async () => {
            p.kill("SIGTERM");
            await exited;
        },
    };
}

describe("admin listener", () => {
    let ehr, tg, redis, redisPort, dir;

    before(async () => {
        dir = tempDir();
        redisPort = await freePort();
        redis = await startRedis(redisPort, dir);
        ehr = await startEhr("json");
        tg = await startToolgate({
            routes: [{ url: ehr.url, name: "ehr" }],
            policy: POLICY,
            admin: true,
            extra: { limits: { store: `redis://127.0.0.1:${redisPort}`, fail: "local" } },
        });
    });

    after(async () => {
        if (redis) await redis.stop().catch(() => {});
        await killAll();
    });

    test("health, readiness and metrics answer on the admin listener", async () => {
        const h = await get(`${tg.adminBase}/healthz`);
        assert.equal(h.status, 200);
        assert.deepEqual(JSON.parse(h.body), { status: "ok" });
        const r = await get(`${tg.adminBase}/readyz`);
        assert.equal(r.status, 200, r.body);
        const ready = JSON.parse(r.body);
        assert.equal(ready.status, "ready");
        for (const name of ["config", "server", "audit_store", "limits_redis"])
            assert.equal(ready.checks[name]?.state, "ok", `${name}: ${r.body}`);
        const m = await get(`${tg.adminBase}/metrics`);
        assert.equal(m.status, 200);
        assert.match(m.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
        const families = metricsOf(m.body);
        for (const name of [
            "toolgate_build_info",
            "toolgate_config_generation",
            "toolgate_open_connections",
            "toolgate_sessions",
            "toolgate_requests_total",
            "toolgate_request_duration_seconds",
            "toolgate_stage_duration_seconds",
            "toolgate_upstream_duration_seconds",
            "toolgate_upstream_errors_total",
            "toolgate_audit_queue_depth",
            "toolgate_audit_last_checkpoint_seq",
            "toolgate_audit_commit_duration_seconds",
            "toolgate_audit_wal_folds_total",
            "toolgate_audit_wal_pages",
        ])
            assert.ok(families[name], `${name} is exposed`);
        assert.equal(families.toolgate_build_info.type, "GAUGE");
        /*
         * The allocator serving malloc is the one the build links: mimalloc by default, the
         * sanitizer's own in an ASan build (as `toolgate --version` says).
         */
        const version = execFileSync(TOOLGATE_BIN, ["--version"], { timeout: 10000 }).toString();
        const linked = /\(([^,()]+), (.+)\)\s*$/.exec(version)?.[2];
        assert.match(linked ?? version, /^(mimalloc \d+\.\d+\.\d+|sanitizer)$/);
        assert.equal(families.toolgate_build_info.metrics[0].labels.allocator, linked);
        assert.equal(families.toolgate_request_duration_seconds.type, "HISTOGRAM");
        assert.ok(families.toolgate_open_connections.metrics[0].value >= 1);
    });

    test("nothing admin is served on the gateway's listener, nor routes on the admin one", async () => {
        for (const p of ["/readyz", "/metrics"]) {
            const r = await get(`${tg.base}${p}`);
            assert.equal(r.status, 404, `${p} on the main listener`);
        }
        // The gateway's own liveness path stays where it was.
        assert.equal((await get(`${tg.base}/healthz`)).status, 200);
        for (const p of ["/mcp", "/.well-known/oauth-protected-resource", "/"]) {
            const r = await get(`${tg.adminBase}${p}`);
            assert.equal(r.status, 404, `${p} on the admin listener`);
        }
        const post = await fetch(`${tg.adminBase}/metrics`, { method: "POST", body: "" });
        assert.equal(post.status, 405);
    });

    test("metrics count an allowed and a denied call with their labels", async () => {
        const before = metricsOf((await get(`${tg.adminBase}/metrics`)).body);
        const client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
        const transport = new StreamableHTTPClientTransport(new URL(tg.url));
        await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
        try {
            const ok = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
            assert.ok(!ok.isError, JSON.stringify(ok));
            // A tool the policy does not permit is hidden: -32602, as if it did not exist.
            await assert.rejects(client.callTool({ name: "delete_patient", arguments: { patient_id: "P1" } }), /-32602/);
        } finally {
            await client.close();
        }
        const allowed = { route: "ehr", method: "tools/call", decision: "allow", layer: "", reason: "" };
        const refused = { route: "ehr", method: "tools/call", decision: "deny", layer: "policy", reason: "policy.hidden" };
        // The request's counters move when its answer has ended: wait for them, no deadline race.
        let after, text;
        await waitUntil(
            async () => {
                text = (await get(`${tg.adminBase}/metrics`)).body;
                after = metricsOf(text);
                return (
                    counterValue(after, "toolgate_requests_total", refused) >
                    counterValue(before, "toolgate_requests_total", refused)
                );
            },
            5000,
            "the denied call to be counted",
        );
        assert.equal(
            counterValue(after, "toolgate_requests_total", allowed) - counterValue(before, "toolgate_requests_total", allowed),
            1,
        );
        assert.equal(
            counterValue(after, "toolgate_requests_total", refused) - counterValue(before, "toolgate_requests_total", refused),
            1,
        );
        assert.ok(counterValue(after, "toolgate_requests_total", { method: "initialize", decision: "allow" }) >= 1);
        // No label carries a user id or a free-text value.
        for (const m of after.toolgate_requests_total.metrics)
            assert.deepEqual(Object.keys(m.labels).sort(), ["decision", "layer", "method", "reason", "route"]);
        const hist = histogramOf(text, "toolgate_request_duration_seconds", { route: "ehr" });
        assert.ok(hist.count >= 3, JSON.stringify(hist));
        assert.equal(hist.buckets["+Inf"], hist.count);
        assert.ok(hist.sum > 0);
        // Cumulative: each bucket holds at least what the one below it holds.
        const les = Object.keys(hist.buckets).filter((le) => le !== "+Inf").map(Number).sort((a, b) => a - b);
        for (let i = 1; i < les.length; i++) assert.ok(hist.buckets[String(les[i])] >= hist.buckets[String(les[i - 1])]);
        const policy = histogramOf(text, "toolgate_stage_duration_seconds", { stage: "policy" });
        assert.ok(policy.count >= 2);
        const up = histogramOf(text, "toolgate_upstream_duration_seconds", { route: "ehr", backend: "backend" });
        assert.ok(up.count >= 1);
        // The layers' own families are there too, with bounded labels only.
        assert.equal(after.toolgate_pii_findings_total?.type, "COUNTER");
        for (const m of after.toolgate_pii_findings_total.metrics)
            assert.deepEqual(Object.keys(m.labels).sort(), ["action", "direction", "type"]);
        assert.ok(counterValue(after, "toolgate_safety_messages_scanned_total", {}) >= 2);
        assert.ok(after.toolgate_limits_events_total, "limits events");
    });

    test("readiness follows Redis going away and coming back", async () => {
        await redis.stop();
        redis = null;
        let last;
        await waitUntil(
            async () => {
                last = await get(`${tg.adminBase}/readyz`);
                return last.status === 503;
            },
            10000,
            "/readyz to fail with Redis stopped",
            100,
        );
        const body = JSON.parse(last.body);
        assert.equal(body.status, "not_ready");
        assert.equal(body.checks.limits_redis.state, "failing");
        assert.match(body.checks.limits_redis.detail, /Redis/);
        assert.equal(body.checks.audit_store.state, "ok");
        // Liveness does not depend on the stores.
        assert.equal((await get(`${tg.adminBase}/healthz`)).status, 200);
        redis = await startRedis(redisPort, dir);
        await waitUntil(
            async () => (await get(`${tg.adminBase}/readyz`)).status === 200,
            10000,
            "/readyz to recover with Redis back",
            100,
        );
    });
});

describe("admin listener with a token", () => {
    let tg;
    const token = "e2e-admin-token-" + "0123456789abcdef";

    before(async () => {
        const dir = tempDir();
        const file = path.join(dir, "admin-token");
        writeFileSync(file, `${token}\n`);
        tg = await startToolgate({ routes: [{ url: "http://127.0.0.1:9/mcp", name: "ehr" }], admin: { token_file: file } });
    });

    after(killAll);

    test("401 without the token, 403 with a wrong one, 200 with it", async () => {
        const none = await get(`${tg.adminBase}/metrics`);
        assert.equal(none.status, 401);
        assert.match(none.headers.get("www-authenticate"), /^Bearer /);
        assert.equal((await get(`${tg.adminBase}/metrics`, { Authorization: "Basic Zm9vOmJhcg==" })).status, 401);
        assert.equal((await get(`${tg.adminBase}/healthz`, { Authorization: "Bearer wrong-token-wrong-token" })).status, 403);
        assert.equal((await get(`${tg.adminBase}/healthz`, { Authorization: `Bearer ${token}x` })).status, 403);
        const ok = await get(`${tg.adminBase}/metrics`, { Authorization: `Bearer ${token}` });
        assert.equal(ok.status, 200);
        assert.ok(metricsOf(ok.body).toolgate_build_info);
        // Unauthenticated, not even a path's existence shows.
        assert.equal((await get(`${tg.adminBase}/nothing-here`)).status, 401);
    });
});

describe("admin listener on a non-loopback address", () => {
    // Which non-loopback address this machine has, if any (only loopback traffic is sent).
    const nonLoopback = () => {
        for (const list of Object.values(os.networkInterfaces()))
            for (const a of list || []) if (a.family === "IPv4" && !a.internal) return a.address;
        return null;
    };

    test("refused at load without a token", async () => {
        await assert.rejects(
            startToolgate({ routes: [{ url: "http://127.0.0.1:9/mcp", name: "ehr" }], admin: { listen: "0.0.0.0:19999" } }),
            /not a loopback address and admin\.token_file is not set/,
        );
    });

    test("a peer that is not loopback is refused without a token", async (t) => {
        const addr = nonLoopback();
        if (!addr) return t.skip("no non-loopback IPv4 address on this machine");
        // The listener is on loopback (as it must be without a token); a connection from a
        // local non-loopback source address reaches it only if routed there, so bind the
        // client to that address and talk to 127.0.0.1: the peer the gateway sees is addr.
        const tg = await startToolgate({ routes: [{ url: "http://127.0.0.1:9/mcp", name: "ehr" }], admin: true });
        const [host, port] = tg.config.admin.listen.split(":");
        const status = await new Promise((resolve) => {
            const s = net.connect({ host, port: Number(port), localAddress: addr }, () =>
                s.write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            );
            let buf = "";
            s.on("data", (d) => (buf += d));
            s.on("end", () => resolve(Number(buf.slice(9, 12))));
            s.on("error", () => resolve(null));
        });
        if (status === null) return t.skip("this machine does not route from a non-loopback source to 127.0.0.1");
        assert.equal(status, 403);
        const ok = await httpGet(`${tg.adminBase}/healthz`);
        assert.equal(ok.status, 200);
    });

    after(killAll);
});
