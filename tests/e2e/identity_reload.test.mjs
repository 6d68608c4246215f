// Reloading the identity section (POST /admin/reload) with real RS256 tokens signed with the
// test keys in tests/keys, JWKS served by loopback servers, the official MCP SDK client and
// the demo backend:
//
// - a new issuer's token is refused before the reload and accepted after it; its JWKS is
//   fetched during the reload; the metrics and the protected-resource metadata follow;
// - a removed issuer's token is refused after the reload with 401 and the challenge, although
//   it was verified (and cached) before;
// - an audience change refuses tokens for the old audience and accepts the new one;
// - a new issuer whose JWKS cannot be fetched refuses the reload (422 naming it) and the
//   running generation keeps serving;
// - a session stays bound to its user: a claim mapping that makes the same token another
//   subject finds the session unknown (404);
// - reloads under load with tokens valid in both generations fail no call.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, sign } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEhr, killAll, withTimeout, waitUntil, freePort, refusedPort, REPO_DIR } from "./lib/harness.mjs";
import { underLoad } from "./lib/reload.mjs";

const KEYS = path.join(REPO_DIR, "tests", "keys");
const ISSUER_A = "https://a.idp.e2e.toolgate.invalid/";
const ISSUER_B = "https://b.idp.e2e.toolgate.invalid/";
const ISSUER_C = "https://c.idp.e2e.toolgate.invalid/";
const INIT = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "e2e", version: "1" } },
};
const MCP_HEADERS = { "Content-Type": "application/json", Accept: "application/json, text/event-stream" };

function keyPair(name) {
    const priv = createPrivateKey(readFileSync(path.join(KEYS, `${name}.pem`)));
    const jwk = { ...createPublicKey(priv).export({ format: "jwk" }), kid: name, alg: "RS256", use: "sig" };
    return { priv, kid: name, jwk };
}

function token(key, claims) {
    const now = Math.floor(Date.now() / 1000);
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const head = enc({ alg: "RS256", typ: "JWT", kid: key.kid });
    const body = enc({ sub: "alice", iat: now, nbf: now, exp: now + 600, ...claims });
    const sig = sign("sha256", Buffer.from(`${head}.${body}`), key.priv).toString("base64url");
    return `${head}.${body}.${sig}`;
}

/*
 * A loopback JWKS server, which is also an issuer of its own (srv.issuer) with RFC 8414
 * metadata naming its jwks_uri; `requests` counts key GETs, `metadataRequests` metadata GETs.
 */
async function jwksServer(keys) {
    const srv = { requests: 0, metadataRequests: 0 };
    const port = await freePort();
    srv.url = `http://127.0.0.1:${port}/jwks`;
    srv.issuer = `http://127.0.0.1:${port}/`;
    srv.server = http.createServer((req, res) => {
        res.setHeader("Content-Type", "application/json");
        if (req.url === "/.well-known/oauth-authorization-server") {
            srv.metadataRequests++;
            return res.end(JSON.stringify({ issuer: srv.issuer, jwks_uri: srv.url }));
        }
        if (req.url !== "/jwks") {
            res.statusCode = 404;
            return res.end("{}");
        }
        srv.requests++;
        res.setHeader("Cache-Control", "max-age=600");
        res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
    });
    await new Promise((r) => srv.server.listen(port, "127.0.0.1", r));
    return srv;
}

function metricsOf(text) {
    return Object.fromEntries(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
}

function issuersIn(families, name) {
    return (families[name]?.metrics || []).map((m) => m.labels.issuer).sort();
}

async function connect(url, tok) {
    const client = new Client({ name: "toolgate-e2e-identity-reload", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { Authorization: `Bearer ${tok}` } },
    });
    await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
    return client;
}

describe("identity reload", () => {
    let ehr, tg, idpA, idpB, idpD, audience;
    const keyA = keyPair("test-rsa");
    const keyB = keyPair("test-idp-rsa-1");
    const keyD = keyPair("test-idp-rsa-2");

    const issuerA = () => ({ issuer: ISSUER_A, audiences: [audience], jwks_uri: idpA.url, algorithms: ["RS256"] });
    const issuerB = (aud = audience) => ({ issuer: ISSUER_B, audiences: [aud], jwks_uri: idpB.url, algorithms: ["RS256"] });

    /* Writes the running configuration with `identity` in place of its section, and reloads. */
    async function reloadWith(identity) {
        writeFileSync(tg.configPath, JSON.stringify({ ...tg.config, identity }, null, 2));
        const r = await fetch(`${tg.adminBase}/admin/reload`, { method: "POST" });
        return { status: r.status, body: await r.json() };
    }

    async function initialize(tok) {
        const r = await fetch(tg.url, {
            method: "POST",
            headers: { ...MCP_HEADERS, Authorization: `Bearer ${tok}` },
            body: JSON.stringify(INIT),
        });
        await r.arrayBuffer();
        return r;
    }

    /* The answer must be the normal 401 with the RFC 9728 challenge. */
    async function assertRefused(tok, what) {
        const r = await initialize(tok);
        assert.equal(r.status, 401, what);
        const challenge = r.headers.get("www-authenticate") || "";
        assert.match(challenge, /^Bearer /, what);
        assert.match(challenge, /resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/);
        assert.match(challenge, /error="invalid_token"/, what);
    }

    async function metrics() {
        return metricsOf(await (await fetch(`${tg.adminBase}/metrics`)).text());
    }

    async function resourceMetadata() {
        const r = await fetch(`${tg.base}/.well-known/oauth-protected-resource/mcp`);
        assert.equal(r.status, 200);
        return r.json();
    }

    before(async () => {
        ehr = await startEhr("json");
        idpA = await jwksServer([keyA]);
        idpB = await jwksServer([keyB]);
        idpD = await jwksServer([keyD]);
        const port = await freePort();
        audience = `http://127.0.0.1:${port}/mcp`;
        tg = await startToolgate({
            port,
            routes: [{ url: ehr.url, name: "ehr" }],
            admin: true,
            identity: { issuers: [issuerA()], scopes_supported: ["tools.read"] },
        });
    });

    after(async () => {
        if (tg) await tg.stop().catch(() => {});
        await killAll();
        for (const s of [idpA, idpB, idpD]) if (s) await new Promise((r) => s.server.close(r));
    });

    test("a new issuer: refused before, fetched during the reload, accepted after", async () => {
        const tokA = token(keyA, { iss: ISSUER_A, aud: audience });
        const tokB = token(keyB, { iss: ISSUER_B, aud: audience });
        assert.equal((await initialize(tokA)).status, 200);
        await assertRefused(tokB, "issuer B before the reload");
        assert.deepEqual(issuersIn(await metrics(), "toolgate_jwks_keys"), [ISSUER_A]);
        assert.deepEqual((await resourceMetadata()).authorization_servers, [ISSUER_A]);
        const fetchesA = idpA.requests;

        const r = await reloadWith({ issuers: [issuerA(), issuerB()], scopes_supported: ["tools.read"] });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(idpB.requests, 1, "issuer B's keys are fetched by the reload");
        assert.equal(idpA.requests, fetchesA, "issuer A's keys carry over");
        assert.equal((await initialize(tokB)).status, 200);
        assert.equal((await initialize(tokA)).status, 200);
        const m = await metrics();
        assert.deepEqual(issuersIn(m, "toolgate_jwks_keys"), [ISSUER_A, ISSUER_B]);
        assert.deepEqual(issuersIn(m, "toolgate_jwks_key_age_seconds"), [ISSUER_A, ISSUER_B]);
        assert.deepEqual((await resourceMetadata()).authorization_servers, [ISSUER_A, ISSUER_B]);
        const ready = await (await fetch(`${tg.adminBase}/readyz`)).json();
        assert.equal(ready.checks.identity_jwks.state, "ok", JSON.stringify(ready));
    });

    test("a removed issuer's token is refused with the challenge, although it was cached", async () => {
        const tokA = token(keyA, { iss: ISSUER_A, aud: audience });
        assert.equal((await initialize(tokA)).status, 200);
        assert.equal((await initialize(tokA)).status, 200); /* a cache hit now */
        const r = await reloadWith({ issuers: [issuerB()], scopes_supported: ["tools.read", "tools.write"] });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        await assertRefused(tokA, "issuer A after its removal");
        assert.equal((await initialize(token(keyB, { iss: ISSUER_B, aud: audience }))).status, 200);
        // Challenges and metadata follow the new generation.
        const bare = await fetch(tg.url, { method: "POST", headers: MCP_HEADERS, body: JSON.stringify(INIT) });
        await bare.arrayBuffer();
        assert.equal(bare.status, 401);
        assert.match(bare.headers.get("www-authenticate"), /scope="tools\.read tools\.write"/);
        const prm = await resourceMetadata();
        assert.deepEqual(prm.authorization_servers, [ISSUER_B]);
        assert.deepEqual(prm.scopes_supported, ["tools.read", "tools.write"]);
        assert.deepEqual(issuersIn(await metrics(), "toolgate_jwks_keys"), [ISSUER_B]);
    });

    test("an audience change refuses the old audience and accepts the new one", async () => {
        const other = `${tg.base}/other-audience`;
        const oldAud = token(keyB, { iss: ISSUER_B, aud: audience });
        const newAud = token(keyB, { iss: ISSUER_B, aud: other });
        assert.equal((await initialize(oldAud)).status, 200);
        await assertRefused(newAud, "the new audience before the reload");
        const r = await reloadWith({ issuers: [issuerB(other)] });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        await assertRefused(oldAud, "the old audience after the reload");
        assert.equal((await initialize(newAud)).status, 200);
        const back = await reloadWith({ issuers: [issuerB()] });
        assert.equal(back.status, 200, JSON.stringify(back.body));
        await assertRefused(newAud, "the other audience once it is gone again");
        assert.equal((await initialize(oldAud)).status, 200);
    });

    test("a new issuer whose JWKS cannot be fetched refuses the reload; the running one serves", async () => {
        const closed = await refusedPort(); /* nothing listens there */
        const gen = (await (await fetch(`${tg.adminBase}/admin/status`)).json()).reload.generation;
        const t0 = Date.now();
        const r = await reloadWith({
            issuers: [issuerB(), { issuer: ISSUER_C, audiences: [audience], jwks_uri: `http://127.0.0.1:${closed}/jwks`, jwks_timeout: "1s" }],
        });
        assert.equal(r.status, 422, JSON.stringify(r.body));
        assert.equal(r.body.outcome, "invalid");
        assert.ok(r.body.message.includes(ISSUER_C), r.body.message);
        assert.match(r.body.message, /cannot be fetched/);
        assert.ok(Date.now() - t0 < 5000, "bounded by the issuer's jwks_timeout");
        const s = (await (await fetch(`${tg.adminBase}/admin/status`)).json()).reload;
        assert.equal(s.generation, gen);
        assert.equal(s.last.ok, false);
        assert.equal((await initialize(token(keyB, { iss: ISSUER_B, aud: audience }))).status, 200);
        assert.deepEqual(issuersIn(await metrics(), "toolgate_jwks_keys"), [ISSUER_B]);
        // A change of the session map's size still needs a restart.
        const sessions = await reloadWith({ issuers: [issuerB()], sessions: { entries: 1000 } });
        assert.equal(sessions.status, 409, JSON.stringify(sessions.body));
        assert.equal(sessions.body.outcome, "restart_required");
        assert.match(sessions.body.message, /identity\.sessions/);
    });

    test("a session stays bound to its user across a claim-mapping change", async () => {
        const tok = token(keyB, { iss: ISSUER_B, aud: audience, email: "mallory@example.test" });
        const client = await connect(tg.url, tok);
        try {
            await client.listTools();
            // The same token now maps to another subject: the session is not theirs.
            const r = await reloadWith({ issuers: [issuerB()], claims: { subject: ["email"] } });
            assert.equal(r.status, 200, JSON.stringify(r.body));
            await assert.rejects(client.listTools(), /404|Session not found/);
        } finally {
            await client.close().catch(() => {});
        }
        const r = await reloadWith({ issuers: [issuerB()] });
        assert.equal(r.status, 200, JSON.stringify(r.body));
    });

    test("a discovered issuer is discovered by the reload that adds it, then carried over", async () => {
        const tokD = token(keyD, { iss: idpD.issuer, aud: audience });
        await assertRefused(tokD, "the discovered issuer before the reload");
        const discovered = { issuer: idpD.issuer, audiences: [audience], algorithms: ["RS256"] };
        const r = await reloadWith({ issuers: [issuerB(), discovered] });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(idpD.metadataRequests, 1);
        assert.equal(idpD.requests, 1);
        assert.equal((await initialize(tokD)).status, 200);
        const again = await reloadWith({ issuers: [issuerB(), discovered], scopes_supported: ["x"] });
        assert.equal(again.status, 200, JSON.stringify(again.body));
        assert.equal(idpD.metadataRequests, 1, "the metadata carries over");
        assert.equal(idpD.requests, 1, "the keys carry over");
        assert.equal((await initialize(tokD)).status, 200);
        const m = await metrics();
        assert.equal(m.toolgate_idp_discovery_failures.metrics.find((x) => x.labels.issuer === idpD.issuer).value, "0");
        const back = await reloadWith({ issuers: [issuerB()] });
        assert.equal(back.status, 200, JSON.stringify(back.body));
        await assertRefused(tokD, "the discovered issuer once removed");
    });

    test("reloads under load fail no call whose token is valid in both generations", { timeout: 120000 }, async () => {
        const tok = token(keyB, { iss: ISSUER_B, aud: audience });
        const clients = await Promise.all([1, 2, 3].map(() => connect(tg.url, tok)));
        let outcomes, calls, failures;
        try {
            ({ result: outcomes, calls, failures } = await underLoad(clients, async () => {
                const outcomes = [];
                for (let i = 0; i < 20; i++) {
                    // Alternate what changes: another issuer, another extra audience, the metadata.
                    const identity =
                        i % 3 === 0
                            ? { issuers: [issuerB(), issuerA()] }
                            : i % 3 === 1
                              ? { issuers: [{ ...issuerB(), audiences: [audience, `${tg.base}/extra-${i}`] }] }
                              : { issuers: [issuerB()], scopes_supported: [`s${i}`] };
                    outcomes.push((await reloadWith(identity)).status);
                }
                return outcomes;
            }));
        } finally {
            await Promise.all(clients.map((c) => c.close()));
        }
        assert.deepEqual(failures, []);
        assert.ok(calls > 20, `calls ${calls}`);
        assert.deepEqual(outcomes, Array(20).fill(200));
        // Issuer A came and went; its keys were fetched at most once per time it was added.
        assert.ok(idpA.requests <= 1 + 7, `issuer A fetched ${idpA.requests} times`);
        // The old generations, and the key stores and caches they held, are freed once their
        // last request has ended.
        await waitUntil(
            async () => (await (await fetch(`${tg.adminBase}/admin/status`)).json()).reload.generations_alive <= 2,
            5000,
            "old generations to be freed",
        );
    });
});
