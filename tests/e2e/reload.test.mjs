// Reloading the configuration (SIGHUP, POST /admin/reload) with real MCP SDK clients through
// toolgate to the demo backend: a policy change takes effect for new calls, broken files are
// refused with the running generation still serving and the error visible in the answer,
// /admin/status and /metrics, a call started before a reload finishes on its generation, and
// many reloads under load fail no request, open streams hear of list changes, and a TLS
// listener's new certificate is served to new handshakes (routes and egress across a reload:
// reload_routes.test.mjs). Everything listens on loopback and is stopped.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, renameSync, existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";
import tls from "node:tls";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { startToolgate, startEhr, killAll, waitUntil, tempDir, freePort } from "./lib/harness.mjs";
import { connect, metricsOf, sample, underLoad } from "./lib/reload.mjs";

const permit = (id, tools) => ({ rules: [{ id, effect: "permit", tools }] });
const BASE = permit("base", ["get_patient", "slow_report"]);
const WIDER = permit("wider", ["get_patient", "slow_report", "search_patients"]);


describe("configuration reload", () => {
    let ehr, tg;

    /* Writes the file with `policy` (and `patch` applied to a copy of the running config). */
    function writeConfig(policy, patch = (c) => c) {
        const cfg = patch(structuredClone({ ...tg.config, policy }));
        writeFileSync(tg.configPath, JSON.stringify(cfg, null, 2));
    }

    async function reload() {
        const r = await fetch(`${tg.adminBase}/admin/reload`, { method: "POST" });
        return { status: r.status, body: await r.json() };
    }

    async function status() {
        return (await (await fetch(`${tg.adminBase}/admin/status`)).json()).reload;
    }

    async function metrics() {
        return metricsOf(await (await fetch(`${tg.adminBase}/metrics`)).text());
    }

    before(async () => {
        ehr = await startEhr("json");
        tg = await startToolgate({ routes: [{ url: ehr.url, name: "ehr" }], policy: BASE, admin: true });
    });

    after(async () => {
        if (tg) await tg.stop().catch(() => {});
        await killAll();
    });

    test("a policy change deny -> permit takes effect for new calls after SIGHUP", async () => {
        const client = await connect(tg.url);
        try {
            await assert.rejects(client.callTool({ name: "search_patients", arguments: { query: "a" } }), /-32602/);
        } finally {
            await client.close();
        }
        const gen = (await status()).generation;
        writeConfig(WIDER);
        process.kill(tg.pid, "SIGHUP");
        await waitUntil(async () => (await status()).generation > gen, 10000, "the SIGHUP reload");
        const last = (await status()).last;
        assert.equal(last.ok, true, JSON.stringify(last));
        const again = await connect(tg.url);
        try {
            const r = await again.callTool({ name: "search_patients", arguments: { query: "a" } });
            assert.ok(!r.isError, JSON.stringify(r));
        } finally {
            await again.close();
        }
        const m = await metrics();
        assert.equal(sample(m, "toolgate_config_generation"), gen + 1);
    });

    test("POST /admin/reload answers with the new generation; permit -> deny and back", async () => {
        writeConfig(BASE);
        const r = await reload();
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.ok, true);
        const client = await connect(tg.url);
        try {
            await assert.rejects(client.callTool({ name: "search_patients", arguments: { query: "a" } }), /-32602/);
            writeConfig(WIDER);
            const r2 = await reload();
            assert.equal(r2.status, 200, JSON.stringify(r2.body));
            assert.equal(r2.body.generation, r.body.generation + 1);
            // The same session, a new call: it starts on the new generation.
            const ok = await client.callTool({ name: "search_patients", arguments: { query: "a" } });
            assert.ok(!ok.isError, JSON.stringify(ok));
        } finally {
            await client.close();
        }
        const wrong = await fetch(`${tg.adminBase}/admin/reload`);
        assert.equal(wrong.status, 405);
    });

    for (const [what, write, pattern] of [
        ["bad YAML", () => writeFileSync(tg.configPath, "server: {listen: [\n  routes: ]]\n"), /toolgate\.yaml:\d+/],
        ["an unknown key", () => writeConfig(WIDER, (c) => ({ ...c, polcy: {} })), /polcy/],
        [
            "a policy that fails to compile",
            () =>
                writeConfig({
                    rules: [{ id: "bad", effect: "permit", tools: ["get_patient"], when: [{ arg: "/patient_id", matches: "([" }] }],
                }),
            /matches|regular expression|pattern/i,
        ],
        ["a key that needs a restart", () => writeConfig(WIDER, (c) => ({ ...c, server: { ...c.server, workers: 3 } })), /server\.workers.*restart/],
        [
            "a section whose runtime cannot follow",
            () => writeConfig(WIDER, (c) => ({ ...c, limits: { rate: [{ per: "user", limit: 5, window: "1s" }] } })),
            /limits changed.*restart/,
        ],
        ["a file that has disappeared", () => renameSync(tg.configPath, `${tg.configPath}.gone`), /toolgate\.yaml/],
    ]) {
        test(`a reload with ${what} is refused and the running generation keeps serving`, async () => {
            const m0 = await metrics();
            const failed0 = sample(m0, "toolgate_config_reloads_total", { outcome: "failure" }) ?? 0;
            const gen0 = sample(m0, "toolgate_config_generation");
            write();
            try {
                const r = await reload();
                assert.ok(r.status === 422 || r.status === 409, `${r.status} ${JSON.stringify(r.body)}`);
                assert.equal(r.body.ok, false);
                assert.match(r.body.message, pattern);
                assert.equal(r.body.generation, gen0);
                const s = await status();
                assert.equal(s.last.ok, false);
                assert.equal(s.last.message, r.body.message);
                if (r.body.line) assert.equal(s.last.line, r.body.line);
                const m = await metrics();
                assert.equal(sample(m, "toolgate_config_reloads_total", { outcome: "failure" }), failed0 + 1);
                assert.equal(sample(m, "toolgate_config_last_reload_success"), 0);
                assert.equal(sample(m, "toolgate_config_generation"), gen0);
                // The previous generation (WIDER) still serves.
                const client = await connect(tg.url);
                try {
                    const ok = await client.callTool({ name: "search_patients", arguments: { query: "a" } });
                    assert.ok(!ok.isError, JSON.stringify(ok));
                } finally {
                    await client.close();
                }
            } finally {
                if (existsSync(`${tg.configPath}.gone`)) renameSync(`${tg.configPath}.gone`, tg.configPath);
                writeConfig(WIDER);
            }
        });
    }

    test("the bad-YAML answer names the line", async () => {
        writeFileSync(tg.configPath, '{"server": {"listen": ["127.0.0.1:1"]},\n "routes": [\n  ]]\n');
        try {
            const r = await reload();
            assert.equal(r.status, 422);
            assert.ok(r.body.line >= 1, JSON.stringify(r.body));
        } finally {
            writeConfig(WIDER);
        }
    });

    test("a slow call started before a reload completes on its old generation", async () => {
        writeConfig(BASE);
        assert.equal((await reload()).status, 200);
        const client = await connect(tg.url);
        try {
            const slow = client.callTool(
                { name: "slow_report", arguments: { patient_id: "P1", steps: 3, interval_ms: 300 } },
                undefined,
                { timeout: 20000 },
            );
            // Let the call leave toolgate, then take slow_report away.
            await new Promise((r) => setTimeout(r, 200));
            writeConfig(permit("no-slow", ["get_patient", "search_patients"]));
            const r = await reload();
            assert.equal(r.status, 200, JSON.stringify(r.body));
            const done = await slow;
            assert.ok(!done.isError, JSON.stringify(done));
            await assert.rejects(
                client.callTool({ name: "slow_report", arguments: { patient_id: "P1", steps: 1, interval_ms: 0 } }),
                /-32602/,
            );
        } finally {
            await client.close();
        }
        writeConfig(WIDER);
        assert.equal((await reload()).status, 200);
    });

    test("a client listening on its stream gets tools/list_changed when its tools change", async () => {
        writeConfig(BASE);
        assert.equal((await reload()).status, 200);
        const client = await connect(tg.url);
        let changed = 0;
        client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
            changed++;
        });
        try {
            const before = (await client.listTools()).tools.map((t) => t.name).sort();
            assert.deepEqual(before, ["get_patient", "slow_report"]);
            const limits = (c) => ({ ...c, server: { ...c.server, limits: { ...c.server.limits, idle_timeout: "61s" } } });
            // The SDK opens its GET stream after initialize; toolgate has relayed it once the
            // backend's answer head came back (its request log line is written when it ends,
            // so wait on the open connection count instead: the POSTs are done by now).
            await waitUntil(async () => sample(await metrics(), "toolgate_open_connections") >= 2, 5000, "the GET stream");
            // A reload that leaves the policy alone says nothing; the next one, which widens
            // it, does (notifications arrive in order on the one stream: no waiting on absence).
            writeConfig(BASE, limits);
            assert.equal((await reload()).status, 200);
            writeConfig(WIDER, limits);
            assert.equal((await reload()).status, 200);
            await waitUntil(() => changed > 0, 5000, "notifications/tools/list_changed");
            assert.equal(changed, 1);
            assert.ok(changed >= 1, "notifications/tools/list_changed arrived");
            const now = (await client.listTools()).tools.map((t) => t.name);
            assert.ok(now.includes("get_patient"));
        } finally {
            await client.close();
        }
        writeConfig(WIDER);
        assert.equal((await reload()).status, 200);
    });

    // Bounded: 50 reloads, and at most 5 minutes (seconds on an idle machine; sanitizer
    // builds on a loaded one are much slower).
    test("50 reloads under load fail no request", { timeout: 300000 }, async () => {
        const clients = await Promise.all([1, 2, 3, 4].map(() => connect(tg.url)));
        let outcomes, calls, failures;
        try {
            ({ result: outcomes, calls, failures } = await underLoad(clients, async () => {
                const outcomes = [];
                for (let i = 0; i < 50; i++) {
                    writeConfig(i % 2 ? WIDER : permit(`base-${i}`, ["get_patient", "slow_report", "search_patients"]));
                    outcomes.push((await reload()).status);
                }
                return outcomes;
            }));
        } finally {
            await Promise.all(clients.map((c) => c.close()));
        }
        assert.deepEqual(failures, []);
        assert.ok(calls > 50, `calls ${calls}`);
        assert.deepEqual(outcomes, Array(50).fill(200));
        // Old generations go once their last request has ended.
        await waitUntil(async () => (await status()).generations_alive <= 2, 5000, "old generations to be freed");
    });

    test("a storm of SIGHUPs and concurrent POSTs is answered, never queued without bound", async () => {
        writeConfig(WIDER);
        const gen0 = (await status()).generation;
        for (let i = 0; i < 30; i++) process.kill(tg.pid, "SIGHUP");
        const answers = await Promise.all(Array.from({ length: 8 }, () => reload()));
        for (const a of answers) {
            assert.ok(a.status === 200 || (a.status === 409 && a.body.outcome === "busy"), JSON.stringify(a));
        }
        await waitUntil(async () => !(await status()).running, 10000, "the reloads to end");
        const s = await status();
        // 30 signals fold into at most two runs besides the POSTs that were not busy.
        const accepted = answers.filter((a) => a.status === 200).length;
        assert.ok(s.generation - gen0 <= accepted + 2, `generation moved by ${s.generation - gen0}`);
        const client = await connect(tg.url);
        try {
            const ok = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
            assert.ok(!ok.isError);
        } finally {
            await client.close();
        }
    });

    test("a reload asked for during shutdown is refused; the process exits 0", async () => {
        writeConfig(WIDER);
        // A call in flight keeps the drain going while the reloads are asked for.
        const client = await connect(tg.url);
        const slow = client.callTool(
            { name: "slow_report", arguments: { patient_id: "P1", steps: 4, interval_ms: 300 } },
            undefined,
            { timeout: 20000 },
        );
        await new Promise((r) => setTimeout(r, 200));
        tg.signalTerm();
        await tg.waitForLog((l) => l.event === "shutdown", 5000, "the drain to begin");
        process.kill(tg.pid, "SIGHUP");
        await tg.waitForLog((l) => l.event === "reload" && /shutting down/.test(l.msg), 5000, "the refused SIGHUP");
        const done = await slow;
        assert.ok(!done.isError, JSON.stringify(done));
        await client.close().catch(() => {});
        const exit = await tg.stop(15000);
        assert.equal(exit.code, 0);
        tg = null;
    });
});

describe("listener certificate reload", () => {
    let ehr, tg, dir;

    function openssl(...args) {
        execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"], timeout: 20000 });
    }

    /* A fresh self-signed certificate (made for this run only) written as listener.pem/.key. */
    function makeCert(cn) {
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "listener.key",
            "-out", "listener.pem", "-days", "1", "-subj", `/CN=${cn}`);
    }

    /* Opens a TLS connection and returns it with the certificate's fingerprint. */
    function handshake(port) {
        return new Promise((resolve, reject) => {
            const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () =>
                resolve({ socket: s, fingerprint: s.getPeerCertificate().fingerprint256, cn: s.getPeerCertificate().subject.CN }),
            );
            s.once("error", reject);
        });
    }

    /* One keep-alive GET /healthz on an open socket; resolves with the status line. */
    function healthz(socket) {
        return new Promise((resolve, reject) => {
            let buf = "";
            const onData = (d) => {
                buf += d;
                const end = buf.indexOf("\r\n\r\n");
                const m = /Content-Length: (\d+)/i.exec(buf);
                if (end >= 0 && m && buf.length >= end + 4 + Number(m[1])) {
                    socket.off("data", onData);
                    resolve(buf.split("\r\n")[0]);
                }
            };
            socket.on("data", onData);
            socket.once("error", reject);
            socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        });
    }

    before(async () => {
        dir = tempDir();
        makeCert("first.toolgate.test");
        ehr = await startEhr("json");
        const port = await freePort();
        const tlsPort = await freePort();
        tg = await startToolgate({
            port,
            routes: [{ url: ehr.url, name: "ehr" }],
            admin: true,
            extra: {
                server: {
                    listen: [
                        `127.0.0.1:${port}`,
                        { address: `127.0.0.1:${tlsPort}`, tls: { cert: path.join(dir, "listener.pem"), key: path.join(dir, "listener.key") } },
                    ],
                    workers: 2,
                    limits: { shutdown_timeout: "5s" },
                },
            },
        });
        tg.tlsPort = tlsPort;
    });

    after(async () => {
        if (tg) await tg.stop().catch(() => {});
        await killAll();
    });

    test("a new handshake gets the new certificate; an open connection goes on", async () => {
        const first = await handshake(tg.tlsPort);
        assert.equal(first.cn, "first.toolgate.test");
        assert.match(await healthz(first.socket), / 200 /);
        makeCert("second.toolgate.test");
        const r = await fetch(`${tg.adminBase}/admin/reload`, { method: "POST" });
        assert.equal(r.status, 200, await r.text());
        const second = await handshake(tg.tlsPort);
        assert.equal(second.cn, "second.toolgate.test");
        assert.notEqual(second.fingerprint, first.fingerprint);
        // The connection made before the reload still serves requests.
        assert.match(await healthz(first.socket), / 200 /);
        first.socket.destroy();
        second.socket.destroy();
    });

    test("a certificate that does not load is refused and the old one keeps serving", async () => {
        const before = await handshake(tg.tlsPort);
        writeFileSync(path.join(dir, "listener.pem"), "not a certificate\n");
        const r = await fetch(`${tg.adminBase}/admin/reload`, { method: "POST" });
        const body = await r.json();
        assert.equal(r.status, 422, JSON.stringify(body));
        assert.match(body.message, /server\.listen\[1\]\.tls/);
        const after = await handshake(tg.tlsPort);
        assert.equal(after.fingerprint, before.fingerprint);
        before.socket.destroy();
        after.socket.destroy();
    });
});
