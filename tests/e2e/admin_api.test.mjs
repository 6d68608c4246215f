// The admin JSON API, the live feed of decisions and the dashboard's files: every endpoint
// answers with the shape docs/operations.md describes, decisions come from the audit store,
// spend from the limits layer, the feed shows a denied call as it happens; bad parameters get
// 400 with a JSON error; a token guards everything but the dashboard's static files; the
// admin listener serves TLS with a real handshake. Everything listens on loopback.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEhr, killAll, tempDir, waitUntil, withTimeout } from "./lib/harness.mjs";

const POLICY = { rules: [{ id: "read-only", effect: "permit", tools: ["get_patient"] }] };
const LIMITS = { costs: { default: 0.25 }, budgets: [{ name: "user-daily", per: "user", cap: 10, period: "day" }] };

async function getJson(url, headers = {}) {
    const r = await fetch(url, { headers });
    const text = await r.text();
    let body = null;
    try {
        body = JSON.parse(text);
    } catch {
        /* not JSON */
    }
    return { status: r.status, headers: r.headers, body, text };
}

async function calls(tg, fn) {
    const client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
    await withTimeout(client.connect(new StreamableHTTPClientTransport(new URL(tg.url))), 10000, "initialize");
    try {
        await fn(client);
    } finally {
        await client.close();
    }
}

/* Reads server-sent events from the feed until pred(event) holds; returns that event. */
async function feedUntil(url, headers, pred, ms = 10000) {
    const ac = new AbortController();
    const r = await fetch(url, { headers, signal: ac.signal });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /^text\/event-stream/);
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
        return await withTimeout(
            (async () => {
                for (;;) {
                    const { value, done } = await reader.read();
                    if (done) throw new Error("the feed ended");
                    buf += dec.decode(value, { stream: true });
                    let cut;
                    while ((cut = buf.indexOf("\n\n")) >= 0) {
                        const block = buf.slice(0, cut);
                        buf = buf.slice(cut + 2);
                        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
                        const type = (block.split("\n").find((l) => l.startsWith("event: ")) || "").slice(7);
                        if (type === "decision" && data) {
                            const ev = JSON.parse(data);
                            if (pred(ev)) return ev;
                        }
                    }
                }
            })(),
            ms,
            "the feed to show the event",
        );
    } finally {
        ac.abort();
    }
}

describe("admin API without a token (loopback only)", () => {
    let ehr, tg, api;

    before(async () => {
        ehr = await startEhr("json");
        tg = await startToolgate({
            routes: [{ url: ehr.url, name: "ehr" }],
            policy: POLICY,
            admin: true,
            extra: { limits: { ...LIMITS, ledger: "none" } },
        });
        api = `${tg.adminBase}/admin/api`;
    });

    after(killAll);

    test("a denied call appears in the live feed, then in decisions and the summary from the audit store", async () => {
        const feed = feedUntil(`${api}/events`, {}, (ev) => ev.decision === "deny" && ev.tool === "delete_patient");
        await new Promise((r) => setTimeout(r, 300)); // let the stream start before the call
        await calls(tg, async (client) => {
            const ok = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
            assert.ok(!ok.isError);
            await assert.rejects(client.callTool({ name: "delete_patient", arguments: { patient_id: "P1" } }), /-32602/);
        });
        const ev = await feed;
        assert.equal(ev.layer, "policy");
        assert.equal(ev.reason, "policy.hidden");
        assert.equal(ev.route, "ehr");
        assert.ok(ev.seq >= 1 && typeof ev.latency_us === "number");
        assert.ok(!("arguments" in ev), "no argument values in the feed");
        assert.ok(!JSON.stringify(ev).includes("P1"), "no argument value leaks into the feed");

        // after=0 replays what the ring still holds, oldest first.
        const replay = await feedUntil(`${api}/events?after=0`, {}, (e) => e.tool === "get_patient");
        assert.equal(replay.decision, "allow");

        let d;
        await waitUntil(async () => {
            d = await getJson(`${api}/decisions?decision=deny&tool=delete_*`);
            return d.status === 200 && d.body.decisions.length >= 1;
        }, 10000, "the denial to be in the audit store");
        const rec = d.body.decisions[0];
        assert.equal(rec.decision, "deny");
        assert.equal(rec.tool, "delete_patient");
        assert.equal(rec.layer, "policy");
        assert.equal(rec.reason, "policy.hidden");
        assert.ok(!JSON.stringify(d.body).includes("P1"), "no argument value in decisions");
        const allowed = await getJson(`${api}/decisions?decision=allow&tool=get_patient`);
        assert.ok(allowed.body.decisions.every((x) => x.decision === "allow" && x.tool === "get_patient"));
        assert.ok(allowed.body.decisions.length >= 1);

        const sm = await getJson(`${api}/summary?since=1h`);
        assert.equal(sm.status, 200);
        assert.ok(sm.body.totals.calls >= 2);
        assert.ok(sm.body.totals.denied >= 1);
        assert.ok(sm.body.denials_by_layer.policy >= 1);
        assert.ok(sm.body.denials_by_reason.some((r) => r.layer === "policy" && r.reason === "policy.hidden"));
        assert.ok(sm.body.top_tools.some((t) => t.tool === "get_patient"));
        assert.equal(sm.body.series.points.length, sm.body.series.buckets);
        for (const k of ["rate_limited", "budget_exceeded", "loop_denied", "loop_warned"]) assert.equal(typeof sm.body.limits_events[k], "number");
        assert.ok(Array.isArray(sm.body.pii_by_type));
    });

    test("decisions are paged newest first with next_before", async () => {
        await calls(tg, async (client) => {
            for (let i = 0; i < 3; i++) await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
        });
        let first;
        await waitUntil(async () => {
            first = await getJson(`${api}/decisions?limit=2`);
            return first.body.matched >= 4;
        }, 10000, "records to be committed");
        assert.equal(first.body.decisions.length, 2);
        assert.ok(first.body.decisions[0].seq > first.body.decisions[1].seq, "newest first");
        assert.ok(first.body.next_before);
        const second = await getJson(`${api}/decisions?limit=2&before=${first.body.next_before}`);
        assert.equal(second.status, 200);
        assert.ok(second.body.decisions.every((x) => x.seq < first.body.next_before));
        assert.ok(second.body.decisions.length >= 1);
    });

    test("spend against budgets, and spend per tenant on /metrics with a bounded label", async () => {
        let sp;
        await waitUntil(async () => {
            sp = await getJson(`${api}/spend`);
            return sp.status === 200 && sp.body.budgets[0]?.spenders.length > 0;
        }, 10000, "spend to be settled");
        const b = sp.body.budgets[0];
        assert.equal(b.name, "user-daily");
        assert.equal(b.per, "user");
        assert.equal(b.cap, 10);
        assert.ok(b.spenders[0].spent > 0);
        assert.ok(b.spenders[0].used > 0 && b.spenders[0].used < 1);
        const m = await (await fetch(`${tg.adminBase}/metrics`)).text();
        const lines = m.split("\n").filter((l) => l.startsWith("toolgate_limits_tenant_spend_total{"));
        assert.ok(lines.some((l) => l.includes('tenant="other"')), m);
        assert.ok(lines.length <= 11, "at most ten named tenants plus other");
        assert.ok(!m.includes("subject="), "no user id as a label");
    });

    test("the chain status, with a verification on request", async () => {
        const a = await getJson(`${api}/audit`);
        assert.equal(a.status, 200);
        assert.equal(a.body.writer.running, true);
        assert.ok(a.body.head.seq >= 1);
        const v = await getJson(`${api}/audit?verify=1`);
        assert.equal(v.status, 200);
        assert.equal(v.body.verify.state, "intact", JSON.stringify(v.body));
        assert.equal(v.body.verify.chain, "intact");
        // A new store is compact and keeps the stats day counters: compared, and they match.
        assert.equal(v.body.verify.counters, "intact");
        assert.ok(v.body.verify.records >= 1);
        assert.ok(v.body.last_checkpoint.seq >= 1);
    });

    test("the configuration of the running generation, with secrets elided", async () => {
        const c = await getJson(`${api}/config`);
        assert.equal(c.status, 200);
        assert.match(c.body.sha256, /^[0-9a-f]{64}$/);
        assert.equal(c.body.config.routes[0].name, "ehr");
        assert.equal(c.body.config.admin.listen, tg.config.admin.listen);
    });

    test("bad parameters get 400 with a JSON error; unknown endpoints 404; other methods 405", async () => {
        const bad = [
            "decisions?limit=0",
            "decisions?limit=201",
            "decisions?limit=ten",
            "decisions?decision=maybe",
            "decisions?since=forever",
            "decisions?since=400d",
            "decisions?before=-1",
            "decisions?colour=red",
            "decisions?limit=1&limit=2",
            "decisions?tool=%zz",
            "decisions?tool=%00",
            "decisions?" + "x".repeat(40) + "=1",
            "decisions?user=" + "u".repeat(300),
            "decisions?" + Array.from({ length: 17 }, (_, i) => `a${"abcdefghijklmnopq"[i]}=1`).join("&"),
            "summary?since=30d",
            "summary?limit=1",
            "audit?verify=yes",
            "spend?limit=1000",
            "spend?who=x",
            "config?x=1",
            "events?after=abc",
            "events?after=1&x=2",
        ];
        for (const q of bad) {
            const r = await getJson(`${api}/${q}`);
            assert.equal(r.status, 400, `${q}: ${r.text}`);
            assert.match(r.headers.get("content-type"), /application\/json/);
            assert.equal(typeof r.body.error, "string", q);
        }
        for (const p of ["nope", "Decisions", "decisions/x", ""]) {
            const r = await getJson(`${api}/${p}`);
            assert.equal(r.status, 404, p);
            assert.equal(typeof r.body.error, "string");
        }
        const post = await fetch(`${api}/decisions`, { method: "POST", body: "{}" });
        assert.equal(post.status, 405);
        assert.equal(post.headers.get("allow"), "GET");
    });

    test("the live feed takes a bounded number of subscribers", async () => {
        const open = [];
        try {
            for (let i = 0; i < 16; i++) {
                const ac = new AbortController();
                const r = await fetch(`${api}/events`, { signal: ac.signal });
                open.push(ac);
                assert.equal(r.status, 200, `subscriber ${i + 1}`);
            }
            const extra = await getJson(`${api}/events`);
            assert.equal(extra.status, 503);
            assert.match(extra.body.error, /subscribers/);
        } finally {
            for (const ac of open) ac.abort();
        }
        // Gone subscribers free their places.
        await waitUntil(async () => {
            const ac = new AbortController();
            const r = await fetch(`${api}/events`, { signal: ac.signal });
            ac.abort();
            return r.status === 200;
        }, 10000, "places to be freed");
    });

    test("the dashboard's files are compiled in, with a strict CSP", async () => {
        const r = await fetch(`${tg.adminBase}/ui`);
        assert.equal(r.status, 200);
        assert.match(r.headers.get("content-type"), /^text\/html/);
        const csp = r.headers.get("content-security-policy");
        assert.match(csp, /default-src 'self'/);
        const html = await r.text();
        assert.ok(!/<script>/.test(html) && !/<script[^>]*>[^<]+<\/script>/.test(html), "no inline script");
        assert.ok(!/https?:\/\//.test(html.replace(/http:\/\/www\.w3\.org[^"]*/g, "")), "no other origin");
        for (const f of ["app.js", "app.css"]) assert.equal((await fetch(`${tg.adminBase}/ui/${f}`)).status, 200, f);
        assert.equal((await fetch(`${tg.adminBase}/ui/nope.js`)).status, 404);
    });

    test("a gateway with live feed subscribers still stops cleanly on SIGTERM", async () => {
        const streams = [];
        for (let i = 0; i < 3; i++) {
            const r = await fetch(`${api}/events`);
            assert.equal(r.status, 200);
            streams.push(r.body.getReader());
        }
        const ended = Promise.all(streams.map(async (reader) => {
            for (;;) {
                const { done } = await reader.read().catch(() => ({ done: true }));
                if (done) return;
            }
        }));
        const r = await tg.stop(15000);
        assert.equal(r.code, 0);
        await withTimeout(ended, 5000, "the streams to end");
    });
});

describe("admin API with a token, over TLS", () => {
    let ehr, tg, dir, ca, base;
    const TOKEN = "e2e-admin-token-0123456789abcdef";

    before(async () => {
        dir = tempDir();
        const ossl = (...a) => execFileSync("openssl", a, { cwd: dir, stdio: ["ignore", "ignore", "pipe"], timeout: 20000 });
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-subj", "/CN=toolgate e2e test CA", "-days", "1", "-out", "ca.pem");
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "admin.key", "-subj", "/CN=admin", "-out", "admin.csr");
        writeFileSync(path.join(dir, "admin.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        ossl("x509", "-req", "-in", "admin.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-out", "admin.pem", "-extfile", "admin.ext");
        ca = readFileSync(path.join(dir, "ca.pem"));
        writeFileSync(path.join(dir, "token"), TOKEN + "\n");
        ehr = await startEhr("json");
        tg = await startToolgate({
            routes: [{ url: ehr.url, name: "ehr" }],
            policy: POLICY,
            admin: { token_file: path.join(dir, "token"), tls: { cert: path.join(dir, "admin.pem"), key: path.join(dir, "admin.key") } },
        });
        base = `https://${tg.config.admin.listen}`;
    });

    after(killAll);

    function get(p, headers = {}) {
        return new Promise((resolve, reject) => {
            const req = https.get(`${base}${p}`, { ca, headers, timeout: 10000 }, (res) => {
                let body = "";
                const tls = res.socket.getProtocol();
                res.on("data", (d) => (body += d));
                res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body, tls }));
            });
            req.on("error", reject);
        });
    }

    test("every API endpoint needs the token; the dashboard's files do not", async () => {
        for (const p of ["/admin/api/summary", "/admin/api/decisions", "/admin/api/audit", "/admin/api/spend", "/admin/api/config", "/admin/api/events"]) {
            const none = await get(p);
            assert.equal(none.status, 401, p);
            assert.match(none.headers["www-authenticate"], /^Bearer/);
            const wrong = await get(p, { Authorization: "Bearer wrong-token-0123456789" });
            assert.equal(wrong.status, 403, p);
        }
        const ok = await get("/admin/api/config", { Authorization: `Bearer ${TOKEN}` });
        assert.equal(ok.status, 200, ok.body);
        assert.match(ok.tls, /^TLSv1\.[23]$/);
        const cfg = JSON.parse(ok.body).config;
        assert.equal(cfg.admin.token_file, "[elided]", "a path to a secret is elided");
        assert.equal(cfg.admin.tls.key, "[elided]", "the TLS key path is elided");
        assert.ok(!ok.body.includes(TOKEN));
        const ui = await get("/ui");
        assert.equal(ui.status, 200);
        assert.match(ui.headers["content-security-policy"], /default-src 'self'/);
    });

    test("a client that does not trust the certificate fails the handshake", async () => {
        await assert.rejects(
            new Promise((resolve, reject) => https.get(`${base}/healthz`, { timeout: 5000 }, resolve).on("error", reject)),
            /self[- ]signed|unable to verify|certificate/i,
        );
    });
});
