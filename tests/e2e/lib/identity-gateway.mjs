// toolgate with real identity for tests that bring their own clients: an ES256 issuer made by
// `toolgate keys generate`, tokens minted by `toolgate token`, audit in a SQLite file.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { TOOLGATE_BIN, PERMIT_ALL, freePort, startToolgate, tempDir } from "./harness.mjs";

export const ISSUER = "https://idp.e2e-sdk.toolgate.invalid/";

/*
 * routes: [{name, path, url}] as for startToolgate. front: the origin clients use (default
 * toolgate's own; a front such as a shim gives its own origin, which becomes public_url and the
 * allowed origin). Every route path is an audience. Resolves {tg, front, audience(path),
 * mint({sub, roles, scopes, path}), mintExpired({sub, roles, path}), auditDb}. integrity: the
 * integrity section (default: none, so the defaults: pinning enforced). admin (as for
 * startToolgate) adds an admin listener; extra adds top-level sections (safety, say).
 */
export async function startIdentityGateway({ routes, policy = PERMIT_ALL, front, port, integrity, admin, extra = {} } = {}) {
    const dir = tempDir();
    const keys = path.join(dir, "idp");
    execFileSync(TOOLGATE_BIN, ["keys", "generate", "--alg", "ES256", "--out", keys], { timeout: 20000 });
    port = port ?? (await freePort());
    front = front ?? `http://127.0.0.1:${port}`;
    const paths = routes.map((r) => r.path || "/mcp");
    const auditDb = path.join(dir, "audit.db");
    const tg = await startToolgate({
        port,
        routes,
        policy,
        admin,
        identity: {
            issuers: [
                {
                    issuer: ISSUER,
                    audiences: paths.map((p) => `${front}${p}`),
                    jwks_file: path.join(keys, "jwks.json"),
                    algorithms: ["ES256"],
                },
            ],
        },
        extra: {
            server: {
                listen: [`127.0.0.1:${port}`],
                public_url: front,
                allowed_origins: [front],
                workers: 2,
                log_level: "info",
                limits: { shutdown_timeout: "5s" },
            },
            audit: { store: `sqlite:${auditDb}` },
            ...(integrity ? { integrity } : {}),
            ...extra,
        },
    });
    const mint = ({ sub = "e2e-user", roles = "tester", scopes = "tools.read", path: p = paths[0] } = {}) =>
        execFileSync(
            TOOLGATE_BIN,
            ["token", "--key", path.join(keys, "private.pem"), "--iss", ISSUER, "--aud", `${front}${p}`, "--sub", sub,
                "--roles", roles, "--scopes", scopes, "--client", "e2e-sdk", "--ttl", "30m"],
            { encoding: "utf8", timeout: 20000 },
        ).trim();
    // The same, with its issuer's key, but expired since 1970 (exp = 1000).
    const mintExpired = ({ sub = "e2e-user", roles = "tester", path: p = paths[0] } = {}) =>
        execFileSync(
            TOOLGATE_BIN,
            ["token", "--key", path.join(keys, "private.pem"), "--iss", ISSUER, "--aud", `${front}${p}`, "--sub", sub,
                "--roles", roles, "--claim", "exp=1000"],
            { encoding: "utf8", timeout: 20000 },
        ).trim();
    return { tg, front, audience: (p) => `${front}${p}`, mint, mintExpired, auditDb };
}
