// Single-use sealed approval states across instances (policy.approvals.replay_store): two
// toolgate instances share the sealing key file and one redis-server, which the test starts
// on a loopback port. A 2026-07-28 call needing approval is answered input_required with a
// sealed requestState; the retry redeemed on one instance is refused as a replay on the other
// (and on the first). With Redis stopped a retry is denied, never allowed, with a reason, a log
// line and a metric; once Redis is back an unredeemed state goes through. Two instances in
// memory mode keep today's behaviour: a replay is refused where it was redeemed.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import net from "node:net";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { Child, E2E_DIR, freePort, killAll, startToolgate, tempDir, waitForPort, waitUntil, httpGet, TOOLGATE_BIN } from "./lib/harness.mjs";

const ISSUER = "https://idp.e2e-replay.toolgate.invalid/";
const V = "2026-07-28";
const YES = { "toolgate.approval": { action: "accept", content: { approve: true } } };
const META = {
    "io.modelcontextprotocol/protocolVersion": V,
    "io.modelcontextprotocol/clientCapabilities": { elicitation: {} },
};

let dir, keys, stateKey, backendUrl, redis, redisPort;
const gws = {};

function startRedis() {
    redis = new Child("redis-server", "redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"]);
    return waitForPort(redisPort, 10000, redis);
}

const tcpOpen = (port) =>
    new Promise((resolve) => {
        const s = net.connect(port, "127.0.0.1");
        s.on("connect", () => { s.destroy(); resolve(true); });
        s.on("error", () => resolve(false));
    });

/* One instance on `port`; every instance's origin is an audience so one token serves all. */
async function startInstance(port, ports, replayStore) {
    return startToolgate({
        port,
        routes: [{ name: "v2", path: "/v2", url: backendUrl }],
        admin: true,
        identity: {
            issuers: [{ issuer: ISSUER, audiences: ports.map((p) => `http://127.0.0.1:${p}/v2`), jwks_file: path.join(keys, "jwks.json"), algorithms: ["ES256"] }],
        },
        policy: {
            rules: [{ id: "echo-asks-user", effect: "permit", tools: ["echo"], approval: { by: "user", ttl: "10m" } }],
            approvals: { state_key: stateKey, replay_store: replayStore, replay_timeout: "300ms" },
        },
        extra: { server: { listen: [`127.0.0.1:${port}`], public_url: `http://127.0.0.1:${port}`, workers: 2, log_level: "info", limits: { shutdown_timeout: "5s" } } },
    });
}

before(async () => {
    dir = tempDir();
    keys = path.join(dir, "idp");
    execFileSync(TOOLGATE_BIN, ["keys", "generate", "--alg", "ES256", "--out", keys], { timeout: 20000 });
    stateKey = path.join(dir, "state.key");
    writeFileSync(stateKey, "e2e-replay-sealing-key-0123456789abcdef0123456789\n"); // a test key
    redisPort = await freePort();
    await startRedis();
    const bport = await freePort();
    const backend = new Child("v2-server", process.execPath, [path.join(E2E_DIR, "lib/v2-server.mjs"), String(bport)], { cwd: E2E_DIR });
    await waitForPort(bport, 15000, backend);
    backendUrl = `http://127.0.0.1:${bport}/mcp`;
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const shared = `redis://127.0.0.1:${redisPort}`;
    // One after the other: four at once may miss the start bound on a loaded machine.
    gws.a = await startInstance(ports[0], ports, shared);
    gws.b = await startInstance(ports[1], ports, shared);
    gws.memA = await startInstance(ports[2], ports, "memory");
    gws.memB = await startInstance(ports[3], ports, "memory");
    const args = ["token", "--key", path.join(keys, "private.pem"), "--iss", ISSUER, "--sub", "ann", "--roles", "tester", "--scopes", "tools.read", "--client", "e2e-replay", "--ttl", "30m"];
    for (const p of ports) args.push("--aud", `http://127.0.0.1:${p}/v2`);
    gws.token = execFileSync(TOOLGATE_BIN, args, { encoding: "utf8", timeout: 20000 }).trim();
});

after(async () => {
    try {
        await Promise.all(["a", "b", "memA", "memB"].map((k) => gws[k]?.stop().catch(() => {})));
    } finally {
        await killAll();
    }
});

const post = (tg, params) =>
    fetch(`${tg.base}/v2`, {
        method: "POST",
        headers: {
            "Content-Type": "application/json",
            Accept: "application/json, text/event-stream",
            Authorization: `Bearer ${gws.token}`,
            "MCP-Protocol-Version": V,
            "Mcp-Method": "tools/call",
            "Mcp-Name": "echo",
        },
        body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "echo", _meta: META, ...params } }),
        signal: AbortSignal.timeout(5000),
    }).then(async (res) => ({ status: res.status, body: await res.json() }));

async function ask(tg, message) {
    const r = await post(tg, { arguments: { message } });
    assert.equal(r.status, 200);
    assert.equal(r.body.result.resultType, "input_required", JSON.stringify(r.body));
    assert.match(r.body.result.requestState, /^tgs1\./);
    return r.body.result.requestState;
}

const redeem = (tg, message, state) => post(tg, { arguments: { message }, requestState: state, inputResponses: YES });

function passed(r, message) {
    assert.deepEqual(r.body.result?.content, [{ type: "text", text: `v2 echo: ${message}` }], JSON.stringify(r.body));
}

function refused(r, reason, text) {
    assert.equal(r.body.result?.isError, true, JSON.stringify(r.body));
    assert.equal(r.body.result._meta["toolgate/decision"].reason, reason);
    assert.match(r.body.result.content[0].text, text);
    assert.ok(!/v2 echo/.test(JSON.stringify(r.body)), "the backend was not called");
}

async function metric(tg, outcome) {
    const r = await httpGet(`${tg.adminBase}/metrics`);
    const line = r.body.split("\n").find((l) => l.startsWith(`toolgate_approval_replay_claims_total{outcome="${outcome}"} `));
    return line ? Number(line.split(" ").pop()) : 0;
}

describe("replay_store: Redis shared by two instances", () => {
    test("a state redeemed on A is refused on B, and on A again", async () => {
        const state = await ask(gws.a, "one");
        passed(await redeem(gws.a, "one", state), "one");
        refused(await redeem(gws.b, "one", state), "policy.approval_invalid", /used already/);
        refused(await redeem(gws.a, "one", state), "policy.approval_invalid", /used already/);
        const ready = JSON.parse((await httpGet(`${gws.a.adminBase}/readyz`)).body);
        assert.equal(ready.checks.approval_replay_redis.state, "ok");
        assert.equal(JSON.parse((await httpGet(`${gws.memA.adminBase}/readyz`)).body).checks.approval_replay_redis, undefined);
        assert.ok((await metric(gws.a, "first")) >= 1);
        assert.ok((await metric(gws.a, "replay")) >= 1);
        assert.ok((await metric(gws.b, "replay")) >= 1);
    });

    test("a state issued by B is good on A (the shared key), once; still bound to its call", async () => {
        const state = await ask(gws.b, "two");
        refused(await redeem(gws.a, "two, changed", state), "policy.approval_invalid", /another call/);
        passed(await redeem(gws.a, "two", state), "two");
        refused(await redeem(gws.b, "two", state), "policy.approval_invalid", /used already/);
    });

    test("concurrent replays on both instances: exactly one goes through", async () => {
        const state = await ask(gws.a, "race");
        const rs = await Promise.all([gws.a, gws.b, gws.a, gws.b, gws.a, gws.b].map((tg) => redeem(tg, "race", state)));
        const ok = rs.filter((r) => !r.body.result?.isError);
        assert.equal(ok.length, 1, JSON.stringify(rs.map((r) => r.body)));
        passed(ok[0], "race");
        for (const r of rs.filter((x) => x.body.result?.isError)) refused(r, "policy.approval_invalid", /used already/);
    });

    test("Redis stopped: the retry is denied with a reason, a log line and a metric; back up, it goes through", async () => {
        const state = await ask(gws.a, "three");
        const before = await metric(gws.a, "unavailable");
        await redis.terminate(10000);
        await waitUntil(async () => !(await tcpOpen(redisPort)), 5000, "redis-server down");
        for (const tg of [gws.a, gws.b]) {
            const r = await redeem(tg, "three", state);
            refused(r, "policy.approval_unavailable", /did not answer/);
        }
        await gws.a.waitForLog((l) => l.event === "approval_replay_unavailable", 5000, "the denial's log line");
        assert.ok((await metric(gws.a, "unavailable")) > before);
        // Readiness says so (probed at most once a second); the memory instances are not concerned.
        let ready;
        await waitUntil(async () => (ready = await httpGet(`${gws.a.adminBase}/readyz`)).status === 503, 5000, "/readyz failing with Redis stopped", 100);
        const checks = JSON.parse(ready.body).checks;
        assert.equal(checks.approval_replay_redis.state, "failing");
        assert.match(checks.approval_replay_redis.detail, /Redis at 127\.0\.0\.1:\d+/);
        assert.equal((await httpGet(`${gws.memA.adminBase}/readyz`)).status, 200);
        await startRedis();
        await waitUntil(async () => (await httpGet(`${gws.a.adminBase}/readyz`)).status === 200, 5000, "/readyz ok with Redis back", 100);
        // Past the half-second pause before a reconnect.
        await waitUntil(async () => !(await redeem(gws.b, "three", state)).body.result?.isError, 5000, "the state redeemed once Redis is back");
        refused(await redeem(gws.a, "three", state), "policy.approval_invalid", /used already/);
    });

    test("the keys in Redis hold a digest of the id and expire with the state", async () => {
        const out = execFileSync("redis-cli", ["-p", String(redisPort), "--scan", "--pattern", "toolgate:approval:once:*"], { encoding: "utf8", timeout: 5000 });
        const keys = out.trim().split("\n").filter(Boolean);
        assert.ok(keys.length >= 1);
        for (const k of keys) assert.match(k, /^toolgate:approval:once:[0-9a-f]{64}$/);
        const ttl = Number(execFileSync("redis-cli", ["-p", String(redisPort), "PTTL", keys[0]], { encoding: "utf8", timeout: 5000 }).trim());
        assert.ok(ttl > 0 && ttl <= 600000, `PTTL ${ttl}`);
    });
});

describe("replay_store: memory (the default)", () => {
    test("a replay is refused on the instance that redeemed the state", async () => {
        const state = await ask(gws.memA, "four");
        passed(await redeem(gws.memA, "four", state), "four");
        refused(await redeem(gws.memA, "four", state), "policy.approval_invalid", /used already/);
        // Each instance remembers only its own redemptions (docs/approval.md, "Several instances").
        passed(await redeem(gws.memB, "four", state), "four");
        assert.equal(await metric(gws.memA, "first"), 0, "memory mode does not ask Redis");
    });
});
