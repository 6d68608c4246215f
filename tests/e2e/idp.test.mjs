// Identity toward a real authorization server: oidc-provider (tests/e2e/lib/oidc-idp.mjs) on
// loopback, toolgate configured with nothing but the issuer and the audience. It finds the
// keys through the issuer's metadata, pins the metadata's issuer, follows key rotation and
// fails closed (with the reason in /readyz) when the metadata cannot be had.
import { test, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startToolgate, killAll, freePort, httpGet, waitUntil } from "./lib/harness.mjs";
import { startBackend } from "./lib/backend.mjs";
import { startIdp } from "./lib/oidc-idp.mjs";

const backends = [];
after(async () => {
    await killAll();
    await Promise.all(backends.map((b) => b.close()));
});

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
            ...(token ? { Authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify(INIT),
        signal: AbortSignal.timeout(10000),
    });
    const text = await r.text();
    let body = null;
    try {
        body = JSON.parse(text);
    } catch {
        body = text;
    }
    return { status: r.status, body, rid: r.headers.get("x-request-id") };
}

/* The reason code toolgate logged for the exchange r. */
async function reason(tg, r) {
    const line = await tg.logFor(r.rid);
    return line.reason;
}

/* toolgate with one discovered issuer; every route path of it is an audience. */
async function gateway(issuer, extraIssuer = {}) {
    const backend = await startBackend();
    backends.push(backend);
    const port = await freePort();
    const audience = `http://127.0.0.1:${port}/mcp`;
    const tg = await startToolgate({
        port,
        routes: [{ name: "mcp", path: "/mcp", url: backend.url }],
        identity: {
            issuers: [{ issuer, audiences: [audience], jwks_refetch_interval: "50ms", jwks_timeout: "2s", ...extraIssuer }],
        },
        admin: true,
    });
    return { tg, backend, audience };
}

async function readyz(tg) {
    const r = await httpGet(`${tg.adminBase}/readyz`);
    return { status: r.status, body: JSON.parse(r.body) };
}

describe("discovery from the issuer alone", () => {
    test("a token issued by oidc-provider is accepted; other audiences and issuers are refused", async () => {
        const idp = await startIdp();
        const other = await startIdp(); // a second, unconfigured authorization server
        try {
            const { tg, audience } = await gateway(idp.issuer);
            const rz = await readyz(tg);
            assert.equal(rz.status, 200, JSON.stringify(rz.body));
            assert.equal(rz.body.checks.identity_jwks.state, "ok");

            const ok = await call(tg, await idp.token({ resource: audience }));
            assert.equal(ok.status, 200, JSON.stringify(ok.body));
            assert.ok(ok.body.result, "the backend answered initialize");

            const wrongAud = await call(tg, await idp.token({ resource: "http://127.0.0.1:1/other" }));
            assert.equal(wrongAud.status, 401);
            assert.equal(await reason(tg, wrongAud), "identity.bad_audience");

            const wrongIss = await call(tg, await other.token({ resource: audience }));
            assert.equal(wrongIss.status, 401);
            assert.equal(await reason(tg, wrongIss), "identity.bad_issuer");

            const none = await call(tg, null);
            assert.equal(none.status, 401);
            await tg.stop();
        } finally {
            await idp.stop();
            await other.stop();
        }
    });

    test("an issuer with a path: the well-known URLs in order, the metadata found at the last", async () => {
        const idp = await startIdp({ prefix: "/tenant1" });
        try {
            const { tg, audience } = await gateway(idp.issuer);
            assert.equal((await readyz(tg)).status, 200);
            const wk = idp.seen.filter((u) => u.includes("/.well-known/"));
            assert.deepEqual(wk.slice(0, 3), [
                "/.well-known/oauth-authorization-server/tenant1",
                "/.well-known/openid-configuration/tenant1",
                "/tenant1/.well-known/openid-configuration",
            ]);
            const r = await call(tg, await idp.token({ resource: audience }));
            assert.equal(r.status, 200, JSON.stringify(r.body));
            await tg.stop();
        } finally {
            await idp.stop();
        }
    });

    test("key rotation at the provider is picked up", async () => {
        const idp = await startIdp({ keys: ["test-idp-rsa-1"] });
        try {
            const { tg, audience } = await gateway(idp.issuer);
            const before = await idp.token({ resource: audience });
            assert.equal((await call(tg, before)).status, 200);
            await idp.restart({ keys: ["test-idp-rsa-2"] });
            const rotated = await idp.token({ resource: audience });
            assert.equal(JSON.parse(Buffer.from(rotated.split(".")[0], "base64url")).kid, "test-idp-rsa-2");
            // An unknown kid refetches the keys, at most once per jwks_refetch_interval
            // (50 ms here): a call that lands inside the interval of the last fetch is
            // refused as unknown_kid, one after it passes.
            let r;
            await waitUntil(async () => (r = await call(tg, rotated)).status === 200, 5000, "the rotated key");
            assert.equal(r.status, 200, JSON.stringify(r.body));
            await tg.stop();
        } finally {
            await idp.stop();
        }
    });

    test("metadata naming another issuer is refused and said so", async () => {
        const idp = await startIdp();
        try {
            // One byte off: the configured issuer has a trailing slash, the metadata has none.
            const { tg, audience } = await gateway(`${idp.issuer}/`);
            const rz = await readyz(tg);
            assert.equal(rz.status, 503);
            assert.equal(rz.body.checks.identity_jwks.state, "failing");
            assert.match(rz.body.checks.identity_jwks.detail, /not the configured/);
            await tg.waitForLog((l) => l.event === "idp_issuer_mismatch", 5000, "the mismatch logged");
            // Its tokens are refused: toolgate holds no key for the configured issuer.
            const tok = await idp.token({ resource: audience });
            const r = await call(tg, tok);
            assert.notEqual(r.status, 200);
            await tg.stop();
        } finally {
            await idp.stop();
        }
    });

    test("discovery down: fail closed, the reason in /readyz, recovery once it is up", async () => {
        const idp = await startIdp();
        const port = idp.port;
        const issuer = idp.issuer;
        await idp.stop();
        const { tg, audience } = await gateway(issuer);
        const rz = await readyz(tg);
        assert.equal(rz.status, 503);
        assert.match(rz.body.checks.identity_jwks.detail, /metadata from http:\/\/127\.0\.0\.1:\d+\/\.well-known\//);
        const metrics = (await httpGet(`${tg.adminBase}/metrics`)).body;
        assert.match(metrics, /toolgate_idp_discovery_failures\{issuer="[^"]+"\} [1-9]/);

        // A token the provider signs, with keys toolgate has never seen. It is minted by the same
        // issuer served on another port, which toolgate never asks: were it the configured port,
        // a discovery retry could fetch the keys in the moment the provider is up.
        const up = await startIdp({ issuer });
        const tok = await up.token({ resource: audience });
        await up.stop();
        const denied = await call(tg, tok);
        assert.equal(denied.status, 503);
        assert.equal(await reason(tg, denied), "identity.no_keys");

        const again = await startIdp({ port });
        try {
            await waitUntil(async () => (await readyz(tg)).status === 200, 15000, "keys after the IdP is back");
            assert.equal((await call(tg, tok)).status, 200);
            await tg.stop();
        } finally {
            await again.stop();
        }
    });
});
