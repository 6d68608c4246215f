// The demo backend verifies the identity toolgate injects (`inject: {mode: jwt}`): it is
// started with --jwks-url <toolgate>/.well-known/jwks.json --issuer <toolgate> --audience
// ehr-backend, after toolgate (whose backend is checked per request only).
//
// - whoami through toolgate reports the verified user, roles, scopes, tenant and client;
// - the backend called directly without a token, with the user's own token, with a token
//   signed by another key, or with a toolgate-signed token for another audience gets 401;
// - X-Toolgate-* headers and a second Authorization sent by the client through toolgate do not
//   change who the backend sees.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
    startToolgate,
    startEhr,
    killAll,
    tempDir,
    freePort,
    withTimeout,
    withLogs,
    TOOLGATE_BIN,
} from "./lib/harness.mjs";

after(killAll);

const ISSUER = "https://idp.e2e.toolgate.invalid/";
const MCP_HEADERS = {
    "Content-Type": "application/json",
    Accept: "application/json, text/event-stream",
};
const INIT = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "e2e", version: "1" } },
};

function toolgate(...args) {
    return execFileSync(TOOLGATE_BIN, args, { encoding: "utf8", timeout: 20000 });
}

async function connect(url, headers) {
    const client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
    await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
    return client;
}

async function whoami(client) {
    const r = await withTimeout(client.callTool({ name: "whoami", arguments: {} }), 10000, "whoami");
    assert.notEqual(r.isError, true, JSON.stringify(r));
    return r.structuredContent;
}

describe("the demo backend verifies the injected JWT", () => {
    let dir, tg, ehr, ehrPort, tgBase;
    const tokens = {};

    before(async () => {
        dir = tempDir();
        const idp = path.join(dir, "idp");
        toolgate("keys", "generate", "--alg", "ES256", "--out", idp);
        toolgate("keys", "generate", "--alg", "EdDSA", "--out", path.join(dir, "egress"));
        toolgate("keys", "generate", "--alg", "EdDSA", "--out", path.join(dir, "rogue"));
        ehrPort = await freePort();
        const port = await freePort();
        tgBase = `http://127.0.0.1:${port}`;
        // toolgate first: the backend fetches toolgate's keys when it starts.
        tg = await startToolgate({
            port,
            routes: [
                {
                    name: "ehr",
                    path: "/mcp",
                    url: `http://127.0.0.1:${ehrPort}/mcp`,
                    inject: { mode: "jwt", audience: "ehr-backend" },
                },
            ],
            egress: { allow: ["127.0.0.0/8"], signing_key: path.join(dir, "egress", "private.pem") },
            identity: {
                issuers: [
                    {
                        issuer: ISSUER,
                        audiences: [`${tgBase}/mcp`],
                        jwks_file: path.join(idp, "jwks.json"),
                        algorithms: ["ES256"],
                    },
                ],
                claims: { tenant: "org_id" },
            },
            policy: {
                rules: [{ id: "doctors", effect: "permit", tools: ["whoami", "get_patient"], roles_any: ["doctor"] }],
            },
        });
        ehr = await startEhr("sse", [
            "--jwks-url", `${tgBase}/.well-known/jwks.json`,
            "--issuer", tgBase,
            "--audience", "ehr-backend",
        ], ehrPort);
        const mint = (key, iss, aud, ...more) =>
            toolgate("token", "--key", key, "--iss", iss, "--aud", aud, "--sub", "alice",
                "--roles", "doctor,nurse", "--scopes", "tools.read patients.read", "--client", "e2e-agent",
                "--ttl", "10m", ...more).trim();
        tokens.alice = mint(path.join(idp, "private.pem"), ISSUER, `${tgBase}/mcp`, "--claim", "org_id=clinic-7");
        // Tokens aimed at the backend directly: right claims, wrong signer; right signer (the
        // gateway's own key and kid), wrong audience.
        tokens.forged = mint(path.join(dir, "rogue", "private.pem"), tgBase, "ehr-backend", "--ttl", "60s");
        const jwks = await (await fetch(`${tgBase}/.well-known/jwks.json`)).json();
        tokens.otherAudience = mint(path.join(dir, "egress", "private.pem"), tgBase, "billing-backend",
            "--ttl", "60s", "--kid", jwks.keys[0].kid);
        tokens.gatewaySigned = mint(path.join(dir, "egress", "private.pem"), tgBase, "ehr-backend",
            "--ttl", "60s", "--kid", jwks.keys[0].kid);
    });

    after(async () => {
        if (tg) await tg.stop();
        if (ehr) await ehr.stop();
    });

    test("whoami through toolgate reports the verified user", async () => {
        const client = await withLogs(connect(tg.url, { Authorization: `Bearer ${tokens.alice}` }), tg.child, ehr.child);
        const me = await whoami(client);
        assert.equal(me.verified, true);
        assert.equal(me.subject, "alice");
        assert.deepEqual(me.roles, ["doctor", "nurse"]);
        assert.deepEqual(me.scopes, ["tools.read", "patients.read"]);
        assert.equal(me.tenant, "clinic-7");
        assert.equal(me.client, "e2e-agent");
        assert.equal(me.authorization_present, true);
        assert.ok(!JSON.stringify(me).includes(tokens.alice.split(".")[1]), "no token echoed");
        const r = await client.callTool({ name: "get_patient", arguments: { patient_id: "P123" } });
        assert.notEqual(r.isError, true);
        await client.close();
    });

    for (const [name, header] of [
        ["no token", () => undefined],
        ["the user's own token", () => `Bearer ${tokens.alice}`],
        ["a token signed by another key", () => `Bearer ${tokens.forged}`],
        ["a gateway-signed token for another audience", () => `Bearer ${tokens.otherAudience}`],
        ["a token in another scheme", () => `Basic ${Buffer.from("alice:pw").toString("base64")}`],
    ]) {
        test(`the backend called directly with ${name}: 401`, async () => {
            const h = { ...MCP_HEADERS, "X-Toolgate-Subject": "alice" };
            if (header()) h.Authorization = header();
            const res = await fetch(ehr.url, { method: "POST", headers: h, body: JSON.stringify(INIT) });
            assert.equal(res.status, 401);
            assert.match(res.headers.get("www-authenticate") || "", /^Bearer error="invalid_token"/);
            const body = await res.json();
            assert.equal(body.jsonrpc, "2.0");
            assert.equal(body.error.code, -32001);
            assert.match(body.error.message, /^Unauthorized/);
        });
    }

    test("the backend called directly with a valid gateway-signed token: accepted", async () => {
        // The control for the cases above: the same request with a proper token works.
        const res = await fetch(ehr.url, {
            method: "POST",
            headers: { ...MCP_HEADERS, Authorization: `Bearer ${tokens.gatewaySigned}` },
            body: JSON.stringify(INIT),
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
    });

    test("client-sent X-Toolgate-* and Authorization headers do not change who the backend sees", async () => {
        const client = await connect(tg.url, {
            Authorization: `Bearer ${tokens.alice}`,
            "X-Toolgate-Subject": "mallory",
            "X-Toolgate-Roles": "admin",
            "X-Toolgate-Tenant": "other-clinic",
            "X-Toolgate-Client": "evil",
        });
        const me = await whoami(client);
        assert.equal(me.subject, "alice");
        assert.deepEqual(me.roles, ["doctor", "nurse"]);
        assert.equal(me.tenant, "clinic-7");
        assert.equal(me.client, "e2e-agent");
        await client.close();
        // A second Authorization header (a forged backend token) next to the user's.
        const res = await fetch(tg.url, {
            method: "POST",
            headers: [
                ["Content-Type", "application/json"],
                ["Accept", "application/json, text/event-stream"],
                ["Authorization", `Bearer ${tokens.alice}`],
                ["Authorization", `Bearer ${tokens.forged}`],
            ],
            body: JSON.stringify(INIT),
        });
        // Either refused at the gateway, or the backend saw toolgate's token only.
        assert.ok([200, 400, 401].includes(res.status), `status ${res.status}`);
        await res.body?.cancel();
    });
});
