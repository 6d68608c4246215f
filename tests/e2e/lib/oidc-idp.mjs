// A real OAuth 2.0 / OpenID Connect authorization server for tests: the npm package
// oidc-provider on a loopback port, signing RS256 with the test keys of tests/keys (NOT
// SECRET). Clients get JWT access tokens for a resource (RFC 8707) through the
// client_credentials grant, so no browser is needed.
import http from "node:http";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createPrivateKey } from "node:crypto";
import Provider from "oidc-provider";
import { REPO_DIR, freePort } from "./harness.mjs";

export const CLIENT_ID = "e2e-app";
// A test credential of a test IdP, published here on purpose.
export const CLIENT_SECRET = "e2e-app-test-secret-not-secret";

/* The test key `name` (tests/keys/<name>.pem) as a private JWK with its kid. */
export function testKey(name) {
    const pem = readFileSync(path.join(REPO_DIR, "tests", "keys", `${name}.pem`), "utf8");
    return { ...createPrivateKey(pem).export({ format: "jwk" }), kid: name, alg: "RS256", use: "sig" };
}

/*
 * Starts oidc-provider. issuer: default http://127.0.0.1:<port> (port: default a free one);
 * prefix (e.g. "/tenant1") mounts the provider under a path, which becomes part of the issuer.
 * keys: test key names, the first signs. Resolves {issuer, port, token({resource, scope}),
 * stop(), restart({keys})}: restart keeps the port, as an IdP rotating its keys does.
 */
export async function startIdp({ port, issuer, prefix = "", keys = ["test-idp-rsa-1"] } = {}) {
    port = port ?? (await freePort());
    issuer = issuer ?? `http://127.0.0.1:${port}${prefix}`;
    const seen = []; // request paths, for tests of what toolgate asked for
    let server = null;
    const sockets = new Set();

    async function listen(keyNames) {
        const provider = new Provider(issuer, {
            clients: [
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
        token,
        stop,
        restart: async ({ keys: k }) => {
            await stop();
            await listen(k);
        },
    };
}
