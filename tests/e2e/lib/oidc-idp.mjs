// A real OAuth 2.0 / OpenID Connect authorization server for tests: the npm package
// oidc-provider on a loopback port, signing RS256 with the test keys of tests/keys (NOT
// SECRET). Clients get JWT access tokens for a resource (RFC 8707) through the
// client_credentials grant, so no browser is needed.
//
// It also serves RFC 8693 token exchange, which oidc-provider has no built-in grant for: the
// grant is registered through its registerGrantType API (exchangeGrant below). toolgate's
// client (GATEWAY_CLIENT_ID) may use it; the subject token must be one this provider signed,
// for the audience the test names, and the issued token carries the requested audience and
// an `act` claim naming toolgate's client (with the runtime's client nested under it).
import http from "node:http";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createPrivateKey, createPublicKey, sign, verify, randomUUID } from "node:crypto";
import Provider, { errors } from "oidc-provider";
import { REPO_DIR, freePort } from "./harness.mjs";

export const CLIENT_ID = "e2e-app";
// A test credential of a test IdP, published here on purpose.
export const CLIENT_SECRET = "e2e-app-test-secret-not-secret";
// toolgate's own client at the test IdP (test credentials, NOT SECRET): one authenticating
// with client_secret_basic, one with client_secret_post.
export const GATEWAY_CLIENT_ID = "toolgate-gw";
export const GATEWAY_POST_CLIENT_ID = "toolgate-gw-post";
export const GATEWAY_CLIENT_SECRET = "toolgate-gw-test-secret-not-secret";
export const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/* Signs claims as an RS256 JWT with the test key `name`. */
function signJwt(name, claims) {
    const key = createPrivateKey(readFileSync(path.join(REPO_DIR, "tests", "keys", `${name}.pem`), "utf8"));
    const head = b64url(JSON.stringify({ alg: "RS256", typ: "at+jwt", kid: name }));
    const body = b64url(JSON.stringify(claims));
    const sig = sign("sha256", Buffer.from(`${head}.${body}`), key);
    return `${head}.${body}.${b64url(sig)}`;
}

/* The claims of a JWT this provider signed with one of keyNames, or null. */
function verifyJwt(token, keyNames) {
    const parts = String(token).split(".");
    if (parts.length !== 3) return null;
    let head;
    try {
        head = JSON.parse(Buffer.from(parts[0], "base64url"));
    } catch {
        return null;
    }
    if (head.alg !== "RS256" || !keyNames.includes(head.kid)) return null;
    const pub = createPublicKey(createPrivateKey(readFileSync(path.join(REPO_DIR, "tests", "keys", `${head.kid}.pem`), "utf8")));
    if (!verify("sha256", Buffer.from(`${parts[0]}.${parts[1]}`), pub, Buffer.from(parts[2], "base64url"))) return null;
    try {
        return JSON.parse(Buffer.from(parts[1], "base64url"));
    } catch {
        return null;
    }
}

/* The test key `name` (tests/keys/<name>.pem) as a private JWK with its kid. */
export function testKey(name) {
    const pem = readFileSync(path.join(REPO_DIR, "tests", "keys", `${name}.pem`), "utf8");
    return { ...createPrivateKey(pem).export({ format: "jwk" }), kid: name, alg: "RS256", use: "sig" };
}

/*
 * Starts oidc-provider. issuer: default http://127.0.0.1:<port> (port: default a free one);
 * prefix (e.g. "/tenant1") mounts the provider under a path, which becomes part of the issuer.
 * keys: test key names, the first signs. Resolves {issuer, port, seen, exchange (above),
 * token({resource, scope}),
 * stop(), restart({keys})}: restart keeps the port, as an IdP rotating its keys does.
 */
export async function startIdp({ port, issuer, prefix = "", keys = ["test-idp-rsa-1"] } = {}) {
    port = port ?? (await freePort());
    issuer = issuer ?? `http://127.0.0.1:${port}${prefix}`;
    const seen = []; // request paths, for tests of what toolgate asked for
    let server = null;
    let currentKeys = keys;
    const sockets = new Set();
    /*
     * The token exchange: exchanges counts the grant's calls, last is what the latest one
     * was sent (parameters and the authenticated client). subjectAudience: the audience a
     * subject token must have (toolgate's public URL). mode: "ok", or a misbehaviour for the
     * failure tests: "invalid_grant", "wrong_type", "not_bearer", "oversized", "malformed",
     * "server_error", "slow". ttl: lifetime of issued tokens in seconds.
     */
    const exchange = { exchanges: 0, last: null, subjectAudience: null, mode: "ok", ttl: 300 };

    async function exchangeGrant(ctx) {
        exchange.exchanges++;
        const p = ctx.oidc.params;
        exchange.last = { params: { ...p }, clientId: ctx.oidc.client.clientId, auth: ctx.get("authorization") ? "basic" : "post" };
        const mode = exchange.mode;
        if (mode === "slow") await new Promise((r) => setTimeout(r, 3000));
        if (mode === "server_error") {
            ctx.status = 500;
            ctx.body = { error: "server_error" };
            return;
        }
        if (mode === "malformed") {
            ctx.status = 200;
            ctx.type = "application/json";
            ctx.body = '{"access_token": "abc", "access_token": "dup"';
            return;
        }
        if (mode === "oversized") {
            ctx.status = 200;
            ctx.body = { access_token: "x".repeat(200000), issued_token_type: ACCESS_TOKEN_TYPE, token_type: "Bearer", expires_in: 300 };
            return;
        }
        if (mode === "invalid_grant") throw new errors.InvalidGrant("the subject may not reach this audience");
        if (p.subject_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest("unsupported subject_token_type");
        const subject = verifyJwt(p.subject_token, currentKeys);
        const now = Math.floor(Date.now() / 1000);
        if (!subject || subject.iss !== issuer || !(subject.exp > now)) throw new errors.InvalidGrant("subject token invalid");
        const auds = [].concat(subject.aud ?? []);
        if (exchange.subjectAudience && !auds.includes(exchange.subjectAudience))
            throw new errors.InvalidGrant("subject token is not for this actor");
        const audience = p.audience || p.resource;
        if (!audience) throw new errors.InvalidTarget("audience or resource is required");
        const runtime = subject.client_id || subject.azp;
        const claims = {
            iss: issuer,
            sub: subject.sub,
            aud: audience,
            iat: now,
            exp: now + exchange.ttl,
            jti: randomUUID(),
            client_id: ctx.oidc.client.clientId,
            ...(p.scope ? { scope: p.scope } : {}),
            // RFC 8693 §4.1: the current actor is toolgate's client; the one before it nests.
            act: { sub: ctx.oidc.client.clientId, ...(runtime ? { act: { sub: runtime } } : {}) },
        };
        ctx.body = {
            access_token: signJwt(currentKeys[0], claims),
            issued_token_type: mode === "wrong_type" ? "urn:ietf:params:oauth:token-type:refresh_token" : ACCESS_TOKEN_TYPE,
            token_type: mode === "not_bearer" ? "N_A" : "Bearer",
            expires_in: exchange.ttl,
            ...(p.scope ? { scope: p.scope } : {}),
        };
    }

    async function listen(keyNames) {
        currentKeys = keyNames;
        const gateway = (client_id, method) => ({
            client_id,
            client_secret: GATEWAY_CLIENT_SECRET,
            grant_types: [TOKEN_EXCHANGE],
            redirect_uris: [],
            response_types: [],
            token_endpoint_auth_method: method,
        });
        const provider = new Provider(issuer, {
            clients: [
                gateway(GATEWAY_CLIENT_ID, "client_secret_basic"),
                gateway(GATEWAY_POST_CLIENT_ID, "client_secret_post"),
                {
                    client_id: CLIENT_ID,
                    client_secret: CLIENT_SECRET,
                    grant_types: ["client_credentials"],
                    redirect_uris: [],
                    response_types: [],
                    token_endpoint_auth_method: "client_secret_basic",
                },
            ],
            jwks: { keys: keyNames.map(testKey) },
            features: {
                devInteractions: { enabled: false },
                clientCredentials: { enabled: true },
                resourceIndicators: {
                    enabled: true,
                    defaultResource: () => undefined,
                    useGrantedResource: () => true,
                    getResourceServerInfo: (_ctx, resource) => ({
                        scope: "tools.read tools.write",
                        audience: resource,
                        accessTokenTTL: 600,
                        accessTokenFormat: "jwt",
                        jwt: { sign: { alg: "RS256" } },
                    }),
                },
            },
            ttl: { ClientCredentials: 600 },
            extraTokenClaims: () => ({ roles: ["tester"] }),
        });
        provider.registerGrantType(TOKEN_EXCHANGE, exchangeGrant, [
            "subject_token",
            "subject_token_type",
            "actor_token",
            "actor_token_type",
            "requested_token_type",
            "audience",
            "resource",
            "scope",
        ]);
        provider.on("server_error", (_ctx, err) => console.error("oidc-provider:", err));
        const handle = provider.callback();
        server = http.createServer((req, res) => {
            seen.push(req.url);
            if (prefix) {
                // Mounted under a path: the provider sees the rest, as behind a path router.
                if (!req.url.startsWith(`${prefix}/`)) {
                    res.writeHead(404, { "Content-Type": "application/json" });
                    return res.end('{"error":"not_found"}');
                }
                req.originalUrl = req.url;
                req.url = req.url.slice(prefix.length);
            }
            return handle(req, res);
        });
        server.on("connection", (s) => {
            sockets.add(s);
            s.on("close", () => sockets.delete(s));
        });
        await new Promise((resolve, reject) => {
            server.once("error", reject);
            server.listen(port, "127.0.0.1", resolve);
        });
    }

    async function stop() {
        if (!server) return;
        const s = server;
        server = null;
        for (const sock of sockets) sock.destroy();
        await new Promise((resolve) => s.close(resolve));
    }

    /* A JWT access token for resource, from the provider's token endpoint. */
    async function token({ resource, scope = "tools.read" }) {
        const body = new URLSearchParams({ grant_type: "client_credentials", resource, scope });
        // A fresh connection each time: the provider may have been restarted in between.
        const r = await new Promise((resolve, reject) => {
            const req = http.request(
                `http://127.0.0.1:${port}${prefix}/token`,
                {
                    method: "POST",
                    agent: false,
                    timeout: 5000,
                    headers: {
                        "Content-Type": "application/x-www-form-urlencoded",
                        Authorization: "Basic " + Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64"),
                    },
                },
                (res) => {
                    const chunks = [];
                    res.on("data", (c) => chunks.push(c));
                    res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
                    res.on("error", reject);
                },
            );
            req.on("timeout", () => req.destroy(new Error("token endpoint timed out")));
            req.on("error", reject);
            req.end(body.toString());
        });
        if (r.status !== 200) throw new Error(`token endpoint: ${r.status} ${r.text}`);
        return JSON.parse(r.text).access_token;
    }

    await listen(keys);
    return {
        issuer,
        port,
        seen,
        exchange,
        token,
        stop,
        restart: async ({ keys: k }) => {
            await stop();
            await listen(k);
        },
    };
}
