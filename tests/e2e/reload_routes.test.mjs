// Routes and egress across a configuration reload, with real MCP SDK clients through toolgate
// to the demo backend: routes added and removed, a backend URL changed under load with no
// failed call, sessions on replicas kept, the egress allow list and signing key applied, and a
// local backend's change refused with its name. Everything listens on loopback and is stopped.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import path from "node:path";
import { startToolgate, startEhr, waitUntil, E2E_DIR } from "./lib/harness.mjs";
import { connect, metricsOf, sample, underLoad } from "./lib/reload.mjs";

describe("routes and egress follow a reload", () => {
    let a, b, replicas, tg;
    const PERMIT = { rules: [{ id: "all", effect: "permit", tools: ["*"] }] };

    /* The file: the main route on `url`, and whatever else `patch` adds. */
    function writeRoutes(routes, patch = (c) => c) {
        const cfg = patch(structuredClone({ ...tg.config, routes }));
        writeFileSync(tg.configPath, JSON.stringify(cfg, null, 2));
    }
    const main = (url) => ({ name: "main", path: "/mcp", inject: { mode: "none" }, backends: [{ name: "ehr", url }] });
    const extra = (url) => ({ name: "extra", path: "/extra", inject: { mode: "none" }, backends: [{ name: "ehr2", url }] });

    async function reload() {
        const r = await fetch(`${tg.adminBase}/admin/reload`, { method: "POST" });
        return { status: r.status, body: await r.json() };
    }
    async function adminJson(p) {
        const r = await fetch(`${tg.adminBase}${p}`);
        return { status: r.status, body: await r.json() };
    }
    async function call(client) {
        const r = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
        assert.ok(!r.isError, JSON.stringify(r));
        return r;
    }
    /* What an MCP initialize to `path` answers, raw. */
    async function initialize(p) {
        const r = await fetch(`${tg.base}${p}`, {
            method: "POST",
            headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
            body: JSON.stringify({
                jsonrpc: "2.0",
                id: 1,
                method: "initialize",
                params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
            }),
        });
        return { status: r.status, text: await r.text() };
    }

    before(async () => {
        // Stateless replicas: a backend URL can move between them while sessions go on.
        a = await startEhr("json", ["--stateless"]);
        b = await startEhr("json", ["--stateless"]);
        replicas = [await startEhr("json"), await startEhr("json")];
        tg = await startToolgate({ routes: [{ url: a.url, name: "main", backendName: "ehr" }], policy: PERMIT, admin: true });
    });

    after(async () => {
        if (tg) await tg.stop().catch(() => {});
        for (const e of [a, b, ...(replicas || [])]) if (e) await e.stop().catch(() => {});
    });

    test("a route added by a reload serves; removed, it answers as an unknown path", async () => {
        const unknown = await initialize("/extra");
        assert.equal(unknown.status, 404);
        writeRoutes([main(a.url), extra(b.url)]);
        const r = await reload();
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const client = await connect(`${tg.base}/extra`);
        try {
            await call(client);
        } finally {
            await client.close();
        }
        const st = await adminJson("/admin/status");
        assert.deepEqual(st.body.config.routes.map((x) => x.name), ["main", "extra"]);
        const rz = await adminJson("/readyz");
        assert.equal(rz.status, 200);
        assert.equal(rz.body.checks["route:extra"].state, "ok");
        assert.match(rz.body.checks["route:extra"].detail, /ehr2: 1 of 1 endpoints usable/);
        const m = metricsOf(await (await fetch(`${tg.adminBase}/metrics`)).text());
        assert.ok(sample(m, "toolgate_requests_total", { route: "extra", method: "tools/call", decision: "allow" }) >= 1);
        assert.equal(sample(m, "toolgate_metrics_route_series_dropped_total"), 0);

        writeRoutes([main(a.url)]);
        assert.equal((await reload()).status, 200);
        const gone = await initialize("/extra");
        assert.equal(gone.status, unknown.status);
        assert.equal(gone.text, unknown.text);
        const rz2 = await adminJson("/readyz");
        assert.equal(rz2.body.checks["route:extra"], undefined);
        assert.ok(rz2.body.checks["route:main"]);
        // The removed route's counts stay (counters never go back).
        const m2 = metricsOf(await (await fetch(`${tg.adminBase}/metrics`)).text());
        assert.ok(sample(m2, "toolgate_requests_total", { route: "extra", method: "tools/call", decision: "allow" }) >= 1);
    });

    // Bounded: 50 reloads, at most 5 minutes.
    test("50 reloads moving the backend URL and adding and removing a route under load fail no call", { timeout: 300000 }, async () => {
        const clients = await Promise.all([1, 2, 3, 4].map(() => connect(tg.url)));
        const { result: outcomes, calls, failures } = await underLoad(clients, async () => {
            const outcomes = [];
            for (let i = 0; i < 50; i++) {
                const url = i % 2 ? a.url : b.url;
                writeRoutes(i % 3 ? [main(url)] : [main(url), extra(a.url)]);
                outcomes.push((await reload()).status);
                await new Promise((r) => setTimeout(r, 20));
            }
            // The last one sends to b: a can go, and calls go on.
            writeRoutes([main(b.url)]);
            outcomes.push((await reload()).status);
            return outcomes;
        });
        try {
            assert.deepEqual(failures, []);
            assert.ok(calls > 50, `calls ${calls}`);
            assert.deepEqual(outcomes, Array(51).fill(200));
            await a.stop();
            for (const c of clients) await call(c);
        } finally {
            await Promise.all(clients.map((c) => c.close()));
            a = await startEhr("json", ["--stateless"]);
        }
        await waitUntil(async () => (await adminJson("/admin/status")).body.reload.generations_alive <= 2, 5000, "old generations to be freed");
    });

    test("a session on a backend with replicas stays on its replica across reloads", async () => {
        const replicated = { name: "main", path: "/mcp", inject: { mode: "none" }, backends: [{ name: "ehr", endpoints: replicas.map((r) => r.url) }] };
        writeRoutes([replicated]);
        assert.equal((await reload()).status, 200);
        const clients = await Promise.all([1, 2, 3, 4].map(() => connect(tg.url)));
        try {
            for (let i = 0; i < 6; i++) {
                // Another route comes and goes; the sessions' route and backend stay as they were.
                writeRoutes(i % 2 ? [replicated] : [replicated, extra(b.url)]);
                assert.equal((await reload()).status, 200);
                for (const c of clients) await call(c);
            }
        } finally {
            await Promise.all(clients.map((c) => c.close()));
        }
    });

    test("an egress change applies: the allow list and the signing key", async () => {
        writeRoutes([main(b.url)]);
        assert.equal((await reload()).status, 200);
        const client = await connect(tg.url);
        try {
            await call(client);
            // Loopback no longer allowed: the same session's next call is refused by egress.
            writeRoutes([main(b.url)], (c) => ({ ...c, egress: { allow: [] } }));
            assert.equal((await reload()).status, 200);
            await assert.rejects(call(client), /not allowed by the egress policy/);
            writeRoutes([main(b.url)]);
            assert.equal((await reload()).status, 200);
            await call(client);
        } finally {
            await client.close();
        }
        // A signing key set by a reload is published; the one before it stays published
        // beside it for the tokens it signed.
        const jwks = async () => (await (await fetch(`${tg.base}/.well-known/jwks.json`)).json()).keys.map((k) => k.kid);
        const keyFile = (n) => {
            const file = path.join(path.dirname(tg.configPath), `key${n}.pem`);
            const { privateKey } = generateKeyPairSync("ed25519");
            writeFileSync(file, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
            return file;
        };
        const k1 = keyFile(1), k2 = keyFile(2);
        writeRoutes([main(b.url)], (c) => ({ ...c, egress: { ...c.egress, signing_key: k1 } }));
        assert.equal((await reload()).status, 200);
        const first = await jwks();
        assert.equal(first.length, 1);
        writeRoutes([main(b.url)], (c) => ({ ...c, egress: { ...c.egress, signing_key: k2 } }));
        assert.equal((await reload()).status, 200);
        const second = await jwks();
        assert.equal(second.length, 2);
        assert.notEqual(second[0], first[0]);
        assert.equal(second[1], first[0]);
        // A reload that keeps the key keeps publishing the one it replaced (for 65 s).
        writeRoutes([main(b.url), extra(a.url)], (c) => ({ ...c, egress: { ...c.egress, signing_key: k2 } }));
        assert.equal((await reload()).status, 200);
        assert.deepEqual(await jwks(), second);
        // A key that does not load is refused; the running one keeps signing.
        writeRoutes([main(b.url)], (c) => ({ ...c, egress: { ...c.egress, signing_key: path.join(path.dirname(tg.configPath), "missing.pem") } }));
        const bad = await reload();
        assert.equal(bad.status, 422, JSON.stringify(bad.body));
        assert.match(bad.body.message, /egress\.signing_key: cannot open the signing key/);
        assert.deepEqual(await jwks(), second);
        writeRoutes([main(b.url)]);
        assert.equal((await reload()).status, 200);
    });
});

describe("local backends across a reload", () => {
    let ehr, tg;
    const EVERYTHING = path.join(E2E_DIR, "node_modules", "@modelcontextprotocol/server-everything/dist/index.js");
    const local = (args) => ({ name: "local", path: "/mcp", inject: { mode: "none" }, backends: [{ name: "ev", command: [process.execPath, EVERYTHING, ...args] }] });
    const http = (url) => ({ name: "web", path: "/web", inject: { mode: "none" }, backends: [{ name: "ehr", url }] });

    function writeRoutes(routes) {
        writeFileSync(tg.configPath, JSON.stringify({ ...tg.config, routes }, null, 2));
    }
    async function reload() {
        const r = await fetch(`${tg.adminBase}/admin/reload`, { method: "POST" });
        return { status: r.status, body: await r.json() };
    }

    before(async () => {
        ehr = await startEhr("json");
        tg = await startToolgate({
            routes: [{ name: "local", backends: local(["stdio"]).backends }],
            admin: true,
            policy: { rules: [{ id: "all", effect: "permit", tools: ["*"] }] },
        });
    });

    after(async () => {
        if (tg) await tg.stop().catch(() => {});
        if (ehr) await ehr.stop().catch(() => {});
    });

    test("a changed, added or removed local backend is refused with 409 naming it; kept, it goes on", async () => {
        const client = await connect(tg.url);
        try {
            const echo = async () => {
                const r = await client.callTool({ name: "echo", arguments: { message: "hi" } });
                assert.ok(!r.isError, JSON.stringify(r));
            };
            await echo();
            for (const [routes, pattern] of [
                [[local(["stdio", "--changed"])], /routes\[0\] \(local\): the local backend ev has a changed definition.*restart/],
                [[http(ehr.url)], /routes\[0\] \(local\): the local backend ev was removed.*restart/],
                [[http(ehr.url), { ...local(["stdio"]), name: "other", path: "/other" }], /routes\[1\] \(other\): the local backend ev is new.*restart/],
            ]) {
                writeRoutes(routes);
                const r = await reload();
                assert.equal(r.status, 409, JSON.stringify(r.body));
                assert.equal(r.body.outcome, "restart_required");
                assert.match(r.body.message, pattern);
                await echo();
            }
            // An HTTP route added before it moves its place in the file: the process is kept.
            writeRoutes([http(ehr.url), local(["stdio"])]);
            const r = await reload();
            assert.equal(r.status, 200, JSON.stringify(r.body));
            await echo();
            const web = await connect(`${tg.base}/web`);
            try {
                const p = await web.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
                assert.ok(!p.isError, JSON.stringify(p));
            } finally {
                await web.close();
            }
            // The same process: no restart counted.
            const m = metricsOf(await (await fetch(`${tg.adminBase}/metrics`)).text());
            assert.equal(sample(m, "toolgate_stdio_restarts_total", { backend: "ev" }), 0);
            assert.equal(sample(m, "toolgate_stdio_processes", { backend: "ev" }), 1);
        } finally {
            await client.close();
        }
    });
});
