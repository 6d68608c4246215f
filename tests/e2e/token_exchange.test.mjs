// RFC 8693 token exchange toward a real authorization server: oidc-provider with the
// token-exchange grant registered by the test helper (tests/e2e/lib/oidc-idp.mjs). toolgate
// verifies the user's token, exchanges it at the provider's token endpoint as its own client
// and sends the backend only the token the provider issued for the backend's audience. Every
// failure of the exchange denies the call with routing.token_exchange_failed.
import { test, after, before, describe } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { startToolgate, killAll, freePort, httpGet, tempDir, waitUntil } from "./lib/harness.mjs";
import { startBackend } from "./lib/backend.mjs";
import {
    startIdp,
    GATEWAY_CLIENT_ID,
    GATEWAY_POST_CLIENT_ID,
    GATEWAY_CLIENT_SECRET,
    ACCESS_TOKEN_TYPE,
    CLIENT_ID,
} from "./lib/oidc-idp.mjs";

after(killAll);

const BACKEND_AUDIENCE = "https://ehr-backend.example/api";

const INIT = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "e2e", version: "1" } },
};

async function call(tg, token) {
    const r = await fetch(tg.url, {
        method: "POST",
        headers: {
            "Content-Type": "application/json",
            Accept: "application/json, text/event-stream",
            Authorization: `Bearer ${token}`,
        },
        body: JSON.stringify(INIT),
        signal: AbortSignal.timeout(15000),
    });
    const text = await r.text();
    let body = text;
    try {
        body = JSON.parse(text);
    } catch {
        /* not JSON */
    }
    return { status: r.status, body, rid: r.headers.get("x-request-id") };
}

function claimsOf(jwt) {
    return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url"));
}

async function metric(tg, name) {
    const r = await httpGet(`${tg.adminBase}/metrics`);
    let total = 0;
    for (const line of r.body.split("\n")) {
        if (line.startsWith(name + " ") || line.startsWith(name + "{")) total += Number(line.split(" ").pop());
    }
    return total;
}

/* toolgate in front of a recording backend, exchanging at idp with the given inject keys. */
async function gateway(idp, inject = {}, secret = GATEWAY_CLIENT_SECRET) {
    const backend = await startBackend();
    const port = await freePort();
    const audience = `http://127.0.0.1:${port}/mcp`;
    const dir = tempDir();
    const secretFile = path.join(dir, "gw-secret");
    writeFileSync(secretFile, secret + "\n", { mode: 0o600 });
    const tg = await startToolgate({
        port,
        routes: [
            {
                name: "mcp",
                path: "/mcp",
                url: backend.url,
                inject: {
                    mode: "token_exchange",
                    issuer: idp.issuer,
                    client_id: GATEWAY_CLIENT_ID,
                    client_secret_file: secretFile,
                    audience: BACKEND_AUDIENCE,
                    scope: "patients.read",
                    timeout: "1s",
                    ...inject,
                },
            },
        ],
        identity: { issuers: [{ issuer: idp.issuer, audiences: [audience], jwks_timeout: "2s" }] },
        admin: true,
    });
    idp.exchange.subjectAudience = audience;
    return { tg, backend, audience };
}

describe("token exchange (RFC 8693) at oidc-provider", () => {
    let idp, tg, backend, audience;
    before(async () => {
        idp = await startIdp();
        ({ tg, backend, audience } = await gateway(idp));
    });
    after(async () => {
        await tg?.stop();
        await backend?.close();
        await idp?.stop();
    });

    test("the backend sees a token for its audience, with the user as sub and toolgate as act", async () => {
        const user = await idp.token({ resource: audience });
        const before = idp.exchange.exchanges;
        const r = await call(tg, user);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.ok(r.body.result, "the backend answered");
        assert.equal(idp.exchange.exchanges, before + 1);

        // What toolgate sent the provider: the user's token as subject, its own client as actor.
        const sent = idp.exchange.last;
        assert.equal(sent.clientId, GATEWAY_CLIENT_ID);
        assert.equal(sent.auth, "basic");
        assert.equal(sent.params.subject_token, user);
        assert.equal(sent.params.subject_token_type, ACCESS_TOKEN_TYPE);
        assert.equal(sent.params.requested_token_type, ACCESS_TOKEN_TYPE);
        assert.equal(sent.params.audience, BACKEND_AUDIENCE);
        assert.equal(sent.params.scope, "patients.read");
        assert.equal(sent.params.resource, undefined, "an audience was configured: no resource");

        // What the backend received: one Authorization, the exchanged token, never the user's.
        const rec = backend.received.at(-1);
        const auth = rec.rawHeaders.filter(([k]) => k.toLowerCase() === "authorization");
        assert.equal(auth.length, 1);
        const got = auth[0][1].replace(/^Bearer /, "");
        assert.notEqual(got, user);
        for (const [, v] of rec.rawHeaders) assert.ok(!v.includes(user), "the user's token reached the backend");
        assert.ok(!rec.body.includes(user));
        const c = claimsOf(got);
        const u = claimsOf(user);
        assert.equal(c.iss, idp.issuer);
        assert.equal(c.aud, BACKEND_AUDIENCE);
        assert.equal(c.sub, u.sub);
        assert.equal(c.scope, "patients.read");
        assert.deepEqual(c.act, { sub: GATEWAY_CLIENT_ID, act: { sub: CLIENT_ID } });

        // Neither token reaches toolgate's log.
        const out = tg.child.output();
        assert.ok(!out.includes(user) && !out.includes(got), "a token is in toolgate's log");
    });

    test("a second call with the same token is served from the cache: no second exchange", async () => {
        const user = await idp.token({ resource: audience });
        const r1 = await call(tg, user);
        assert.equal(r1.status, 200, JSON.stringify(r1.body));
        const n = idp.exchange.exchanges;
        const hits = await metric(tg, "toolgate_token_exchange_cache_hits_total");
        const r2 = await call(tg, user);
        assert.equal(r2.status, 200, JSON.stringify(r2.body));
        assert.equal(idp.exchange.exchanges, n, "the provider was asked again");
        assert.equal(await metric(tg, "toolgate_token_exchange_cache_hits_total"), hits + 1);
        const a1 = backend.received.at(-2).headers.authorization;
        const a2 = backend.received.at(-1).headers.authorization;
        assert.equal(a1, a2);

        // Another user token is another exchange (the cache is per subject token).
        const other = await idp.token({ resource: audience });
        assert.equal((await call(tg, other)).status, 200);
        assert.equal(idp.exchange.exchanges, n + 1);
    });

    for (const [mode, status] of [
        ["invalid_grant", 403],
        ["wrong_type", 502],
        ["not_bearer", 502],
        ["malformed", 502],
        ["oversized", 502],
        ["server_error", 503],
        ["slow", 504],
    ]) {
        test(`the provider answers ${mode}: denied with routing.token_exchange_failed`, async () => {
            const user = await idp.token({ resource: audience });
            const seenBefore = backend.received.length;
            const failsBefore = await metric(tg, "toolgate_token_exchange_failures_total");
            idp.exchange.mode = mode;
            let r;
            try {
                r = await call(tg, user);
            } finally {
                idp.exchange.mode = "ok";
            }
            assert.equal(r.status, status, JSON.stringify(r.body));
            assert.equal(r.body.jsonrpc, "2.0");
            assert.ok(r.body.error, "a JSON-RPC error");
            if (mode === "invalid_grant") assert.match(r.body.error.message, /invalid_grant/);
            const line = await tg.logFor(r.rid);
            assert.equal(line.reason, "routing.token_exchange_failed");
            assert.equal(backend.received.length, seenBefore, "the backend was called");
            assert.equal(await metric(tg, "toolgate_token_exchange_failures_total"), failsBefore + 1);
            // The failure is not cached: the same token works once the provider does.
            const ok = await call(tg, user);
            assert.equal(ok.status, 200, JSON.stringify(ok.body));
            const out = tg.child.output();
            assert.ok(!out.includes(user), "the user's token is in toolgate's log");
        });
    }

    test("the provider is down: denied with the reason, and served again once it is back", async () => {
        const user = await idp.token({ resource: audience });
        const seenBefore = backend.received.length;
        await idp.stop();
        let r;
        try {
            r = await call(tg, user);
        } finally {
            await idp.restart({ keys: ["test-idp-rsa-1"] });
        }
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.match(r.body.error.message, /could not be reached/);
        assert.equal((await tg.logFor(r.rid)).reason, "routing.token_exchange_failed");
        assert.equal(backend.received.length, seenBefore);
        const ok = await call(tg, user);
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
    });

    test("the audit record of a failed exchange names the reason and holds no token", async () => {
        const user = await idp.token({ resource: audience });
        idp.exchange.mode = "invalid_grant";
        let r;
        try {
            r = await call(tg, user);
        } finally {
            idp.exchange.mode = "ok";
        }
        assert.equal(r.status, 403);
        let rec;
        await waitUntil(async () => {
            const d = await httpGet(`${tg.adminBase}/admin/api/decisions?decision=deny&limit=50`);
            rec = JSON.parse(d.body).decisions?.find((x) => x.request_id === r.rid);
            return !!rec;
        }, 10000, "the denial to be in the audit store");
        assert.equal(rec.layer, "routing");
        assert.equal(rec.reason, "routing.token_exchange_failed");
        assert.ok(!JSON.stringify(rec).includes(user));
        const dir = path.dirname(tg.configPath);
        for (const f of readdirSync(dir).filter((n) => n.includes("audit"))) {
            const bytes = readFileSync(path.join(dir, f));
            assert.ok(!bytes.includes(Buffer.from(user)), `the user's token is in ${f}`);
        }
    });
});

describe("token exchange: client authentication and endpoint", () => {
    test("client_secret_post at a configured token_endpoint; a wrong secret is refused", async () => {
        const idp = await startIdp();
        try {
            const { tg, backend, audience } = await gateway(idp, {
                issuer: undefined,
                token_endpoint: `${idp.issuer}/token`,
                client_id: GATEWAY_POST_CLIENT_ID,
                auth_method: "client_secret_post",
                audience: undefined,
                scope: undefined,
            });
            const user = await idp.token({ resource: audience });
            const r = await call(tg, user);
            assert.equal(r.status, 200, JSON.stringify(r.body));
            assert.equal(idp.exchange.last.auth, "post");
            assert.equal(idp.exchange.last.clientId, GATEWAY_POST_CLIENT_ID);
            // Neither audience nor resource configured: the backend's URL is the resource.
            assert.equal(idp.exchange.last.params.resource, backend.url);
            assert.equal(claimsOf(backend.received.at(-1).headers.authorization.slice(7)).aud, backend.url);
            await tg.stop();
            await backend.close();

            // The same client with a wrong secret: the provider says invalid_client.
            const bad = await gateway(
                idp,
                {
                    issuer: undefined,
                    token_endpoint: `${idp.issuer}/token`,
                    client_id: GATEWAY_POST_CLIENT_ID,
                    auth_method: "client_secret_post",
                },
                "not-the-secret",
            );
            const user2 = await idp.token({ resource: bad.audience });
            const before = idp.exchange.exchanges;
            const d = await call(bad.tg, user2);
            assert.equal(d.status, 403, JSON.stringify(d.body));
            assert.match(d.body.error.message, /invalid_client/);
            assert.equal(idp.exchange.exchanges, before, "the grant ran for an unauthenticated client");
            assert.equal(bad.backend.received.length, 0);
            await bad.tg.stop();
            await bad.backend.close();
        } finally {
            await idp.stop();
        }
    });
});
