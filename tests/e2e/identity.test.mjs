// Identity, policy and the injected identity end to end: real tokens signed with keys made by
// `toolgate keys generate` / `toolgate token`, the official MCP SDK client, the demo backend.
//
// - a valid token connects and works; none, expired, wrong audience, wrong signer -> 401 with
//   the RFC 9728 challenge the SDK's own helpers read, and the metadata they fetch;
// - two users with different roles see different tool lists and are allowed / denied;
// - a session belongs to its user; another user's token on it gets 404;
// - the backend receives a gateway-signed JWT for the user (verified here against the
//   gateway's published JWKS), never the user's token;
// - every one of these, allowed or denied, is in the audit log, which verifies intact.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createPublicKey, verify as cryptoVerify } from "node:crypto";
import http from "node:http";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
    extractWWWAuthenticateParams,
    discoverOAuthProtectedResourceMetadata,
} from "@modelcontextprotocol/sdk/client/auth.js";
import {
    startToolgate,
    startEhr,
    killAll,
    tempDir,
    freePort,
    withTimeout,
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

function decodeJwt(tok) {
    const [h, p] = tok.split(".");
    return {
        header: JSON.parse(Buffer.from(h, "base64url").toString()),
        payload: JSON.parse(Buffer.from(p, "base64url").toString()),
    };
}

async function connect(url, token) {
    const client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: token ? { Authorization: `Bearer ${token}` } : {} },
    });
    await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
    return { client, transport };
}

describe("identity, policy, injection and audit with real tokens", () => {
    let dir, tg, ehr, capture, captured, audience, keys;
    const tokens = {};

    before(async () => {
        dir = tempDir();
        keys = path.join(dir, "idp");
        toolgate("keys", "generate", "--alg", "ES256", "--out", keys);
        toolgate("keys", "generate", "--alg", "EdDSA", "--out", path.join(dir, "egress"));
        toolgate("keys", "generate", "--alg", "ES256", "--out", path.join(dir, "rogue"));
        ehr = await startEhr("sse");

        // A second backend that records the headers it gets (to check the injected JWT).
        captured = [];
        const capturePort = await freePort();
        capture = http.createServer((req, res) => {
            let body = "";
            req.on("data", (c) => (body += c));
            req.on("end", () => {
                captured.push({ headers: req.headers, body });
                const msg = JSON.parse(body || "{}");
                res.setHeader("Content-Type", "application/json");
                if (msg.method === "initialize") res.setHeader("Mcp-Session-Id", "cap-session-1");
                if (msg.id === undefined) {
                    res.statusCode = 202;
                    return res.end();
                }
                res.end(JSON.stringify({
                    jsonrpc: "2.0",
                    id: msg.id,
                    result: msg.method === "initialize"
                        ? { protocolVersion: "2025-06-18", capabilities: { tools: {} }, serverInfo: { name: "capture", version: "1" } }
                        : { content: [{ type: "text", text: "ok" }] },
                }));
            });
        });
        await new Promise((r) => capture.listen(capturePort, "127.0.0.1", r));

        const port = await freePort();
        audience = `http://127.0.0.1:${port}/mcp`;
        tg = await startToolgate({
            port,
            routes: [
                { name: "ehr", path: "/mcp", url: ehr.url, inject: { mode: "jwt", audience: "ehr-backend" } },
                {
                    name: "cap",
                    path: "/cap",
                    url: `http://127.0.0.1:${capturePort}/mcp`,
                    inject: { mode: "jwt", audience: "capture-backend" },
                },
            ],
            egress: { allow: ["127.0.0.0/8"], signing_key: path.join(dir, "egress", "private.pem") },
            identity: {
                issuers: [
                    {
                        issuer: ISSUER,
                        audiences: [audience, `http://127.0.0.1:${port}/cap`],
                        jwks_file: path.join(keys, "jwks.json"),
                        algorithms: ["ES256"],
                    },
                ],
                scopes_supported: ["tools.read", "patients.read", "billing.charge"],
            },
            policy: {
                rules: [
                    {
                        id: "doctors-read",
                        effect: "permit",
                        tools: ["get_patient", "search_patients", "whoami"],
                        roles_any: ["doctor"],
                        scopes_all: ["patients.read"],
                    },
                    {
                        id: "billing-charge",
                        effect: "permit",
                        tools: ["charge_card", "whoami"],
                        roles_any: ["billing"],
                        scopes_all: ["billing.charge"],
                        when: [{ arg: "/amount", range: { max: 500 } }],
                    },
                    { id: "capture-anything", effect: "permit", tools: ["anything"], roles_any: ["doctor"] },
                    { id: "nobody-deletes", effect: "forbid", tools: ["delete_patient"] },
                ],
            },
            extra: {
                audit: { store: `sqlite:${path.join(dir, "audit.db")}` },
                // The payment tool needs the card number (cards are redacted by default).
                safety: { tools: [{ tools: ["charge_card"], detectors: { credit_card: "log" } }] },
            },
        });
        const mint = (key, sub, roles, scopes, aud = audience, ...more) =>
            toolgate("token", "--key", key, "--iss", ISSUER, "--aud", aud, "--sub", sub, "--roles", roles,
                "--scopes", scopes, "--client", "e2e-agent", "--ttl", "10m", ...more).trim();
        const key = path.join(keys, "private.pem");
        tokens.alice = mint(key, "alice", "doctor", "tools.read patients.read");
        tokens.bob = mint(key, "bob", "billing", "tools.read billing.charge");
        tokens.wrongAud = mint(key, "alice", "doctor", "tools.read patients.read", "https://elsewhere.example/mcp");
        tokens.rogue = mint(path.join(dir, "rogue", "private.pem"), "alice", "doctor", "tools.read patients.read");
        // Expired five minutes ago: beyond the default 60 s leeway.
        const past = Math.floor(Date.now() / 1000) - 300;
        tokens.expired = mint(key, "alice", "doctor", "tools.read patients.read", audience,
            "--claim", `exp=${past}`, "--claim", `iat=${past - 600}`);
        tokens.aliceCap = mint(key, "alice", "doctor", "tools.read", `http://127.0.0.1:${port}/cap`);
    });

    after(async () => {
        if (capture) capture.close();
        if (tg) await tg.stop();
        if (ehr) await ehr.stop();
    });

    test("a valid token: the SDK client connects, lists and calls tools", async () => {
        const { client } = await connect(tg.url, tokens.alice);
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((t) => t.name).sort(), ["get_patient", "search_patients", "whoami"]);
        const r = await client.callTool({ name: "get_patient", arguments: { patient_id: "P123" } });
        assert.notEqual(r.isError, true);
        assert.match(r.content[0].text, /Daniel Patel/);
        await client.close();
    });

    test("no token: 401 with a challenge the SDK reads, and metadata it can fetch", async () => {
        const res = await fetch(tg.url, { method: "POST", headers: MCP_HEADERS, body: JSON.stringify(INIT) });
        assert.equal(res.status, 401);
        const { resourceMetadataUrl, scope, error } = extractWWWAuthenticateParams(res);
        assert.equal(resourceMetadataUrl.href, `${tg.base}/.well-known/oauth-protected-resource/mcp`);
        assert.equal(scope, "tools.read patients.read billing.charge");
        assert.equal(error, undefined);
        const body = await res.json();
        assert.equal(body.error.code, -32001);
        const meta = await discoverOAuthProtectedResourceMetadata(new URL(tg.url), { resourceMetadataUrl });
        assert.equal(meta.resource, audience);
        assert.deepEqual(meta.authorization_servers, [ISSUER]);
        assert.deepEqual(meta.bearer_methods_supported, ["header"]);
        // The SDK client without credentials fails to connect, on the 401.
        await assert.rejects(connect(tg.url, null), (e) => e.code === 401);
    });

    for (const [name, which] of [
        ["an expired token", "expired"],
        ["a token for another audience", "wrongAud"],
        ["a token signed by an unknown key", "rogue"],
    ]) {
        test(`${name}: 401 invalid_token, and the SDK client cannot connect`, async () => {
            const res = await fetch(tg.url, {
                method: "POST",
                headers: { ...MCP_HEADERS, Authorization: `Bearer ${tokens[which]}` },
                body: JSON.stringify(INIT),
            });
            assert.equal(res.status, 401);
            const p = extractWWWAuthenticateParams(res);
            assert.equal(p.error, "invalid_token");
            assert.match(p.resourceMetadataUrl.href, /oauth-protected-resource\/mcp$/);
            await assert.rejects(connect(tg.url, tokens[which]), (e) => e.code === 401);
        });
    }

    test("two users, two roles: different tool lists, allowed and denied calls", async () => {
        const alice = await connect(tg.url, tokens.alice);
        const bob = await connect(tg.url, tokens.bob);
        const bobTools = (await bob.client.listTools()).tools.map((t) => t.name).sort();
        assert.deepEqual(bobTools, ["charge_card", "whoami"]);
        // A tool bob cannot see answers like a tool that does not exist.
        await assert.rejects(
            bob.client.callTool({ name: "get_patient", arguments: { patient_id: "P123" } }),
            (e) => e.code === -32602 && /Unknown tool: get_patient/.test(e.message) && !e.data,
        );
        await assert.rejects(
            bob.client.callTool({ name: "no_such_tool", arguments: {} }),
            (e) => e.code === -32602 && !e.data,
        );
        // Within his rule: allowed; over the amount: a tool error the model can read.
        const ok = await bob.client.callTool({
            name: "charge_card",
            arguments: { patient_id: "P1", amount: 20, card_number: "4111 1111 1111 1111" },
        });
        assert.notEqual(ok.isError, true);
        const denied = await bob.client.callTool({
            name: "charge_card",
            arguments: { patient_id: "P1", amount: 600, card_number: "4111 1111 1111 1111" },
        });
        assert.equal(denied.isError, true);
        assert.equal(denied._meta["toolgate/decision"].layer, "policy");
        assert.equal(denied._meta["toolgate/decision"].reason, "policy.no_match");
        // delete_patient is forbidden for everyone, and hidden.
        await assert.rejects(
            alice.client.callTool({ name: "delete_patient", arguments: { patient_id: "P1" } }),
            (e) => e.code === -32602,
        );
        // The backend acts for the verified user (whoami reports the injected identity).
        const who = await alice.client.callTool({ name: "whoami", arguments: {} });
        assert.match(JSON.stringify(who), /authorization_present\\?":true|Authorization/i);

        // bob presenting alice's session: 404, as for an unknown session.
        const res = await fetch(tg.url, {
            method: "POST",
            headers: {
                ...MCP_HEADERS,
                Authorization: `Bearer ${tokens.bob}`,
                "Mcp-Session-Id": alice.transport.sessionId,
                "MCP-Protocol-Version": "2025-06-18",
            },
            body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
        });
        assert.equal(res.status, 404);
        const body = await res.json();
        assert.equal(body.error.data, undefined);
        await alice.client.close();
        await bob.client.close();
    });

    test("the backend gets a gateway-signed JWT for the user, never the user's token", async () => {
        captured.length = 0;
        const { client } = await connect(`${tg.base}/cap`, tokens.aliceCap);
        await client.callTool({ name: "anything", arguments: { x: 1 } });
        await client.close();
        assert.ok(captured.length >= 2);
        const jwks = await (await fetch(`${tg.base}/.well-known/jwks.json`)).json();
        assert.ok(jwks.keys.length >= 1);
        for (const c of captured) {
            const auth = c.headers.authorization;
            assert.ok(auth && auth.startsWith("Bearer "), "an identity is injected");
            const tok = auth.slice(7);
            assert.notEqual(tok, tokens.aliceCap, "never the user's own token");
            const { header, payload } = decodeJwt(tok);
            const jwk = jwks.keys.find((k) => k.kid === header.kid);
            assert.ok(jwk, "signed by a key the gateway publishes");
            const [h, p, s] = tok.split(".");
            const ok = cryptoVerify(null, Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk, format: "jwk" }),
                Buffer.from(s, "base64url"));
            assert.ok(ok, "the signature verifies with the published key");
            assert.equal(payload.sub, "alice");
            assert.equal(payload.aud, "capture-backend");
            assert.equal(payload.iss, tg.base);
            assert.deepEqual(payload.act, { sub: "e2e-agent" });
            assert.ok(payload.exp - payload.iat <= 60);
            assert.equal(c.headers["x-toolgate-subject"], undefined);
        }
    });

    test("every call above is in the audit log, which verifies intact", async () => {
        await tg.stop();
        const store = `sqlite:${path.join(dir, "audit.db")}`;
        const rows = JSON.parse(toolgate("audit", "query", store, "--format", "json", "--limit", "1000"));
        const denied = rows.filter((r) => r.decision === "deny");
        assert.ok(denied.some((r) => r.layer === "identity"), "authentication failures are recorded");
        assert.ok(denied.some((r) => r.layer === "policy" && r.subject === "bob"), "policy denials are recorded");
        assert.ok(rows.some((r) => r.decision === "allow" && r.subject === "alice" && r.tool === "get_patient"));
        const text = JSON.stringify(rows);
        for (const t of Object.values(tokens)) assert.ok(!text.includes(t), "no token in the audit log");
        const pub = `${path.join(dir, "audit.db")}.ed25519.pem.pub`;
        const out = toolgate("audit", "verify", store, "--pubkey", pub);
        assert.match(out, /ok|intact/i);
        tg = null;
    });
});
