// REST tool routes: POST <path>/<tool> with a JSON object of arguments, for callers that do
// not speak MCP (function calling, custom agents). The same six layers govern the call; the
// backend is a plain HTTP API (a small node server here) that gets the arguments and the
// injected identity, never the caller's token.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { startToolgate, killAll, tempDir, freePort, TOOLGATE_BIN } from "./lib/harness.mjs";

after(killAll);

const ISSUER = "https://idp.rest.toolgate.invalid/";
const toolgate = (...a) => execFileSync(TOOLGATE_BIN, a, { encoding: "utf8", timeout: 20000 });

describe("REST tool routes", () => {
    let dir, tg, api, seen, token, audience;

    before(async () => {
        dir = tempDir();
        toolgate("keys", "generate", "--alg", "EdDSA", "--out", path.join(dir, "idp"));
        toolgate("keys", "generate", "--alg", "EdDSA", "--out", path.join(dir, "egress"));
        seen = [];
        const apiPort = await freePort();
        api = http.createServer((req, res) => {
            let body = "";
            req.on("data", (c) => (body += c));
            req.on("end", () => {
                seen.push({ url: req.url, headers: req.headers, body });
                res.setHeader("Content-Type", "application/json");
                if (req.url === "/api/lookup") {
                    const args = JSON.parse(body);
                    res.end(JSON.stringify({ id: args.id, name: "Daniel Patel", ssn: "134-67-7626", plan: "gold" }));
                } else if (req.url === "/api/broken") {
                    res.statusCode = 500;
                    res.end(JSON.stringify({ error: "backend failure" }));
                } else {
                    res.end(JSON.stringify({ ok: true, tool: req.url }));
                }
            });
        });
        await new Promise((r) => api.listen(apiPort, "127.0.0.1", r));
        const port = await freePort();
        audience = `http://127.0.0.1:${port}/tools`;
        tg = await startToolgate({
            port,
            routes: [],
            extra: {
                routes: [
                    {
                        name: "api",
                        path: "/tools",
                        kind: "rest",
                        backends: [{ name: "api", url: `http://127.0.0.1:${apiPort}/api` }],
                        inject: { mode: "jwt", audience: "api-backend" },
                    },
                ],
                audit: { store: `sqlite:${path.join(dir, "audit.db")}` },
            },
            egress: { allow: ["127.0.0.0/8"], signing_key: path.join(dir, "egress", "private.pem") },
            identity: {
                issuers: [{ issuer: ISSUER, audiences: [audience], jwks_file: path.join(dir, "idp", "jwks.json"), algorithms: ["EdDSA"] }],
            },
            policy: {
                rules: [
                    { id: "agents-lookup", effect: "permit", tools: ["lookup", "echo", "broken"], roles_any: ["agent"] },
                    { id: "small-amounts", effect: "permit", tools: ["pay"], roles_any: ["agent"], when: [{ arg: "/amount", range: { max: 100 } }] },
                ],
            },
        });
        token = toolgate("token", "--key", path.join(dir, "idp", "private.pem"), "--iss", ISSUER, "--aud", audience,
            "--sub", "agent-7", "--roles", "agent", "--client", "custom-agent", "--ttl", "10m").trim();
    });

    after(async () => {
        if (api) api.close();
        if (tg) await tg.stop();
    });

    const call = (tool, args, { auth = true, method = "POST", body } = {}) =>
        fetch(`${tg.base}/tools/${tool}`, {
            method,
            headers: { "Content-Type": "application/json", ...(auth ? { Authorization: `Bearer ${token}` } : {}) },
            body: method === "POST" ? (body ?? JSON.stringify(args)) : undefined,
        });

    test("an allowed call reaches the backend with the injected identity; PII in the answer is redacted", async () => {
        seen.length = 0;
        const res = await call("lookup", { id: "P123" });
        assert.equal(res.status, 200);
        const out = await res.json();
        assert.equal(out.name, "Daniel Patel");
        assert.equal(out.plan, "gold");
        assert.notEqual(out.ssn, "134-67-7626", "the SSN does not reach the caller");
        assert.match(out.ssn, /REDACTED/);
        assert.equal(seen.length, 1);
        assert.equal(seen[0].url, "/api/lookup");
        assert.deepEqual(JSON.parse(seen[0].body), { id: "P123" });
        const auth = seen[0].headers.authorization;
        assert.ok(auth.startsWith("Bearer ") && !auth.includes(token), "an injected identity, not the caller's token");
        const claims = JSON.parse(Buffer.from(auth.slice(7).split(".")[1], "base64url"));
        assert.equal(claims.sub, "agent-7");
        assert.equal(claims.aud, "api-backend");
        assert.match(res.headers.get("x-request-id"), /^[0-9a-f-]{36}$/);
    });

    test("denials answer in HTTP terms and never reach the backend", async () => {
        seen.length = 0;
        let res = await call("pay", { amount: 500 });
        assert.equal(res.status, 403);
        let e = (await res.json()).error;
        assert.equal(e.code, "policy.no_match");
        assert.equal(e.layer, "policy");
        res = await call("delete_everything", {});
        assert.equal(res.status, 404, "a tool the caller may not see does not exist for them");
        res = await call("echo", { note: "my SSN is 134-67-7626" });
        assert.equal(res.status, 403);
        e = (await res.json()).error;
        assert.equal(e.code, "pii.ssn");
        assert.ok(!JSON.stringify(e).includes("134-67-7626"));
        res = await call("echo", {}, { auth: false });
        assert.equal(res.status, 401);
        const challenge = res.headers.get("www-authenticate");
        const metaUrl = /resource_metadata="([^"]+)"/.exec(challenge)[1];
        assert.match(metaUrl, /\/\.well-known\/oauth-protected-resource\/tools$/);
        const meta = await (await fetch(metaUrl)).json();
        assert.equal(meta.resource, audience);
        assert.equal(seen.length, 0);
    });

    test("malformed calls: 400, 405, 415, 404", async () => {
        assert.equal((await call("echo", null, { body: "{not json" })).status, 400);
        assert.equal((await call("echo", null, { body: "[1,2]" })).status, 400);
        assert.equal((await call("echo", null, { method: "GET" })).status, 405);
        const res = await fetch(`${tg.base}/tools/echo`, {
            method: "POST",
            headers: { "Content-Type": "text/plain", Authorization: `Bearer ${token}` },
            body: "x",
        });
        assert.equal(res.status, 415);
        assert.equal((await call("a/b", {})).status, 404);
    });

    test("a backend error is passed on with its status", async () => {
        const res = await call("broken", {});
        assert.equal(res.status, 500);
        assert.equal((await res.json()).error, "backend failure");
    });

    test("REST calls are in the audit log like MCP calls", async () => {
        await tg.stop();
        tg = null;
        const rows = JSON.parse(toolgate("audit", "query", `sqlite:${path.join(dir, "audit.db")}`, "--format", "json", "--limit", "100"));
        assert.ok(rows.some((r) => r.tool === "lookup" && r.decision === "allow" && r.subject === "agent-7"));
        assert.ok(rows.some((r) => r.tool === "pay" && r.decision === "deny" && r.layer === "policy"));
        assert.ok(rows.some((r) => r.tool === "echo" && r.decision === "deny" && r.layer === "safety"));
    });
});
