// Approval by someone holding a role (`approval: {by: "role:oncall"}`), end to end: the MCP SDK
// client calls through toolgate with real tokens; the call waits while an approver, holding the
// admin token, finds it with GET /admin/api/approvals and decides with
// POST /admin/api/approvals/<id>. A call nobody decides in time is denied with a reference the
// user can quote; approved later, the same call goes through on its next try. The audit record
// says who approved, how and when. The action endpoint is held to its token, a JSON body and
// its own Origin. With policy.approvals.approvers: token the decision also carries the approver's
// own access token (X-Approver-Token): only a verified user holding the role, and not the user
// who asked, decides, and is the approver recorded.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { killAll, startEverything, tempDir, waitUntil, withTimeout, TOOLGATE_BIN } from "./lib/harness.mjs";
import { ISSUER, startIdentityGateway } from "./lib/identity-gateway.mjs";

const ADMIN_TOKEN = "e2e-test-admin-token-approvals-0123456789abcdef"; // a test token
const POLICY = {
    rules: [{ id: "echo-needs-oncall", effect: "permit", tools: ["echo"], approval: { by: "role:oncall", ttl: "10m" } }],
    approvals: { role_timeout: "8s" },
};

let everything;
let gw;
let api;
const auth = { Authorization: `Bearer ${ADMIN_TOKEN}` };

before(async () => {
    everything = await startEverything();
    const dir = tempDir();
    const tokenFile = path.join(dir, "admin-token");
    writeFileSync(tokenFile, ADMIN_TOKEN + "\n");
    gw = await startIdentityGateway({
        routes: [{ name: "everything", path: "/mcp", url: everything.url }],
        policy: POLICY,
        admin: { token_file: tokenFile },
    });
    api = `${gw.tg.adminBase}/admin/api`;
});

after(async () => {
    try {
        if (gw) await gw.tg.stop();
    } finally {
        await killAll();
    }
});

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const decisionOf = (r) => r._meta?.["toolgate/decision"] ?? {};

async function connect(sub) {
    const client = new Client({ name: "toolgate-e2e-approval-role", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(`${gw.tg.base}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${gw.mint({ sub, path: "/mcp" })}` } },
    });
    await withTimeout(client.connect(transport), 15000, `initialize as ${sub}`);
    return client;
}

async function pending(sub) {
    let found;
    await waitUntil(
        async () => {
            const r = await fetch(`${api}/approvals`, { headers: auth });
            assert.equal(r.status, 200);
            const { approvals } = await r.json();
            found = approvals.find((a) => a.user === sub && a.waiting);
            return !!found;
        },
        10000,
        `${sub}'s call in the approvers' queue`,
    );
    return found;
}

const decide = (id, decision, headers = {}) =>
    fetch(`${api}/approvals/${id}`, {
        method: "POST",
        headers: { ...auth, "Content-Type": "application/json", ...headers },
        body: JSON.stringify({ decision }),
    });

describe("approval by role through the admin API", () => {
    test("the call waits; an approver approves it; it goes through", async () => {
        const client = await connect("olga");
        try {
            const call = client.callTool({ name: "echo", arguments: { message: "please" } });
            const p = await pending("olga");
            assert.match(p.id, /^apr-[0-9a-f]{16}$/);
            assert.equal(p.tool, "echo");
            assert.equal(p.role, "oncall");
            assert.equal(p.rule, "echo-needs-oncall");
            assert.equal(p.arguments, 'message="please"');
            assert.match(p.digest, /^sha256:[0-9a-f]{12}$/);
            const res = await decide(p.id, "approve");
            assert.equal(res.status, 200, await res.clone().text());
            const body = await res.json();
            assert.equal(body.approval.state, "approved");
            assert.match(body.approval.approver, /^admin-token:[0-9a-f]{12}$/);
            const r = await withTimeout(call, 15000, "the approved call");
            assert.notEqual(r.isError, true, JSON.stringify(r));
            assert.match(r.content[0].text, /Echo: please/);
            // Decided once: a second decision conflicts.
            assert.equal((await decide(p.id, "deny")).status, 409);
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("an approver denies: the call is denied, naming the reference", async () => {
        const client = await connect("pete");
        try {
            const call = client.callTool({ name: "echo", arguments: { message: "no way" } });
            const p = await pending("pete");
            assert.equal((await decide(p.id, "deny")).status, 200);
            const r = await withTimeout(call, 15000, "the denied call");
            assert.equal(r.isError, true);
            assert.equal(decisionOf(r).reason, "policy.approval_declined");
            assert.ok(r.content[0].text.includes(p.id), r.content[0].text);
            assert.ok(!JSON.stringify(r).includes("Echo:"));
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("nobody decides in time: denied with a reference; approved later, the next try goes through", async () => {
        const client = await connect("quinn");
        try {
            const r = await withTimeout(client.callTool({ name: "echo", arguments: { message: "later" } }), 30000, "the waiting call");
            assert.equal(r.isError, true);
            assert.equal(decisionOf(r).reason, "policy.approval_pending");
            const ref = r.content[0].text.match(/reference (apr-[0-9a-f]{16})/)?.[1];
            assert.ok(ref, r.content[0].text);
            const listed = await (await fetch(`${api}/approvals`, { headers: auth })).json();
            assert.ok(listed.approvals.some((a) => a.id === ref && !a.waiting), "still open to approvers");
            assert.equal((await decide(ref, "approve")).status, 200);
            const again = await client.callTool({ name: "echo", arguments: { message: "later" } });
            assert.notEqual(again.isError, true, JSON.stringify(again));
            // Another user's identical call is not covered by quinn's approval.
            const other = await connect("rita");
            try {
                const call = other.callTool({ name: "echo", arguments: { message: "later" } });
                const p = await pending("rita");
                assert.notEqual(p.id, ref);
                await decide(p.id, "deny");
                assert.equal((await call).isError, true);
            } finally {
                await other.close().catch(() => {});
            }
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("the action endpoint: token, JSON body, own Origin, POST only, known ids, valid decisions", async () => {
        const id = "apr-0000000000000000";
        assert.equal((await fetch(`${api}/approvals/${id}`, { method: "POST", body: "{}" })).status, 401);
        const plain = await fetch(`${api}/approvals/${id}`, {
            method: "POST",
            headers: { ...auth, "Content-Type": "text/plain" },
            body: JSON.stringify({ decision: "approve" }),
        });
        assert.equal(plain.status, 403);
        assert.equal((await decide(id, "approve", { Origin: "http://evil.example" })).status, 403);
        assert.equal((await fetch(`${api}/approvals/${id}`, { headers: auth })).status, 404);
        assert.equal((await fetch(`${api}/approvals/${id}`, { method: "PUT", headers: auth })).status, 405);
        assert.equal((await decide(id, "approve")).status, 404);
        assert.equal((await decide(id, "maybe")).status, 400);
        assert.equal((await decide("APR-../x", "approve")).status, 404);
        assert.equal((await fetch(`${api}/approvals?state=bogus`, { headers: auth })).status, 400);
        const all = await (await fetch(`${api}/approvals?state=all`, { headers: auth })).json();
        assert.ok(all.approvals.some((a) => a.state === "approved"));
        assert.ok(all.approvals.some((a) => a.state === "denied"));
        // The admin credential approves for every role: an approver's token changes nothing.
        assert.equal(all.approvers, "admin");
    });

    test("the dashboard lists the waiting call and approves it", { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, async () => {
        const browser = await withTimeout(
            chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] }),
            30000,
            "chromium to start",
        );
        const client = await connect("sam");
        try {
            const page = await browser.newPage();
            await page.goto(`${gw.tg.adminBase}/ui`);
            await page.waitForSelector("#login:not(.hidden)", { timeout: 10000 });
            await page.fill("#token", ADMIN_TOKEN);
            await page.click("#login-form button");
            await page.waitForSelector("#panels:not(.hidden)", { timeout: 10000 });
            const call = client.callTool({ name: "echo", arguments: { message: "from the dashboard" } });
            const p = await pending("sam");
            // The page refreshes every 5 s; a reload shows the row at once (the token is kept).
            await page.reload();
            const row = `#approvals tr[data-id="${p.id}"]`;
            await page.waitForSelector(row, { timeout: 15000 });
            assert.match(await page.textContent(row), /sam.*echo.*from the dashboard/s);
            await page.click(`${row} button.decide-approve`);
            const r = await withTimeout(call, 15000, "the call approved in the dashboard");
            assert.notEqual(r.isError, true, JSON.stringify(r));
            assert.match(r.content[0].text, /Echo: from the dashboard/);
        } finally {
            await client.close().catch(() => {});
            await browser.close().catch(() => {});
        }
    });

    test("the audit record names the approver, the reference and the time", () => {
        const rows = JSON.parse(
            execFileSync(TOOLGATE_BIN, ["audit", "query", `sqlite:${gw.auditDb}`, "--format", "json", "--limit", "10000"], {
                encoding: "utf8",
                timeout: 30000,
            }),
        );
        const ok = rows.find((r) => r.approval?.via === "admin" && r.approval?.decision === "approved");
        assert.ok(ok, JSON.stringify(rows.filter((r) => r.approval).slice(0, 3)));
        assert.equal(ok.approval.by, "role:oncall");
        assert.match(ok.approval.approver, /^admin-token:[0-9a-f]{12}$/);
        assert.match(ok.approval.reference, /^apr-/);
        assert.ok(ok.approval.at > 0);
        assert.ok(rows.some((r) => r.approval?.decision === "declined"));
        assert.ok(rows.some((r) => r.approval?.decision === "timeout"));
        assert.ok(rows.some((r) => r.approval?.via === "cached"));
        assert.ok(!JSON.stringify(rows).includes(ADMIN_TOKEN));
    });
});

describe("approvers: token — a person holding the role decides with their own token", () => {
    let tgw;
    let tapi;
    before(async () => {
        const dir = tempDir();
        const tokenFile = path.join(dir, "admin-token");
        writeFileSync(tokenFile, ADMIN_TOKEN + "\n");
        tgw = await startIdentityGateway({
            routes: [{ name: "everything", path: "/mcp", url: everything.url }],
            policy: { ...POLICY, approvals: { role_timeout: "8s", approvers: "token" } },
            admin: { token_file: tokenFile },
        });
        tapi = `${tgw.tg.adminBase}/admin/api`;
    });
    after(async () => {
        if (tgw) await tgw.tg.stop();
    });

    async function tconnect(sub) {
        const client = new Client({ name: "toolgate-e2e-approval-token", version: "1.0.0" });
        const transport = new StreamableHTTPClientTransport(new URL(`${tgw.tg.base}/mcp`), {
            requestInit: { headers: { Authorization: `Bearer ${tgw.mint({ sub, path: "/mcp" })}` } },
        });
        await withTimeout(client.connect(transport), 15000, `initialize as ${sub}`);
        return client;
    }
    async function tlist(state = "all") {
        const r = await fetch(`${tapi}/approvals?state=${state}`, { headers: auth });
        assert.equal(r.status, 200);
        return r.json();
    }
    async function tpending(sub) {
        let found;
        await waitUntil(
            async () => {
                found = (await tlist("pending")).approvals.find((a) => a.user === sub && a.waiting);
                return !!found;
            },
            10000,
            `${sub}'s call in the approvers' queue`,
        );
        return found;
    }
    const tdecide = (id, decision, approverToken, headers = {}) =>
        fetch(`${tapi}/approvals/${id}`, {
            method: "POST",
            headers: {
                ...auth,
                "Content-Type": "application/json",
                ...(approverToken !== undefined ? { "X-Approver-Token": approverToken } : {}),
                ...headers,
            },
            body: JSON.stringify({ decision }),
        });
    async function refused(res, status, pattern) {
        assert.equal(res.status, status, await res.clone().text());
        assert.match(res.headers.get("content-type") ?? "", /application\/json/);
        const body = await res.json();
        assert.equal(typeof body.error, "string");
        if (pattern) assert.match(body.error, pattern);
        return body;
    }
    const mintWith = (key, args) =>
        execFileSync(TOOLGATE_BIN, ["token", "--key", key, "--iss", ISSUER, "--aud", tgw.audience("/mcp"), ...args], {
            encoding: "utf8",
            timeout: 20000,
        }).trim();

    test("without a valid token 401, without the role or as the asking user 403; the approval stays open; a holder of the role approves and is recorded", async () => {
        const client = await tconnect("uma");
        try {
            const call = client.callTool({ name: "echo", arguments: { message: "by a person" } });
            const p = await tpending("uma");
            assert.equal((await tlist()).approvers, "token");
            // The admin credential alone no longer decides.
            await refused(await tdecide(p.id, "approve"), 401, /X-Approver-Token/);
            await refused(await tdecide(p.id, "deny"), 401, /X-Approver-Token/);
            await refused(await tdecide(p.id, "approve", ""), 401);
            // Invalid tokens: garbage, a good one with its signature altered, one signed by a key
            // the issuer does not publish, an expired one, one for another audience.
            const good = tgw.mint({ sub: "victor", roles: "oncall", path: "/mcp" });
            const [h, b, sig] = good.split(".");
            const flipped = `${h}.${b}.${sig[0] === "A" ? "B" : "A"}${sig.slice(1)}`;
            const foreign = mintWith(path.resolve("../keys/test-p256.pem"), ["--sub", "victor", "--roles", "oncall", "--kid", "test-p256"]);
            const expiredToken = tgw.mintExpired({ sub: "victor", roles: "oncall", path: "/mcp" });
            const otherAudience = tgw.mint({ sub: "victor", roles: "oncall", path: "/elsewhere" });
            for (const bad of ["not-a-token", "a.b.c", flipped, foreign, expiredToken, otherAudience, `Bearer ${good}`]) {
                await refused(await tdecide(p.id, "approve", bad), 401, /invalid or expired/);
            }
            // Valid, but without the role.
            const noRole = tgw.mint({ sub: "walt", roles: "tester", path: "/mcp" });
            const body = await refused(await tdecide(p.id, "approve", noRole), 403, /role/);
            assert.equal(body.role, "oncall");
            // The user who asked, even holding the role, does not decide their own call.
            const self = tgw.mint({ sub: "uma", roles: "oncall", path: "/mcp" });
            await refused(await tdecide(p.id, "approve", self), 403, /made the call/);
            // Nothing of that decided it.
            const still = (await tlist("pending")).approvals.find((a) => a.id === p.id);
            assert.ok(still, "the approval is still open");
            assert.equal(still.state, "pending");
            // A holder of the role approves (roles among others).
            const res = await tdecide(p.id, "approve", tgw.mint({ sub: "victor", roles: "staff,oncall", path: "/mcp" }));
            assert.equal(res.status, 200, await res.clone().text());
            const decided = await res.json();
            assert.equal(decided.approval.state, "approved");
            assert.equal(decided.approval.approver, `user:victor@${ISSUER}`);
            const r = await withTimeout(call, 15000, "the approved call");
            assert.notEqual(r.isError, true, JSON.stringify(r));
            assert.match(r.content[0].text, /Echo: by a person/);
            const listed = (await tlist("approved")).approvals.find((a) => a.id === p.id);
            assert.equal(listed.approver, `user:victor@${ISSUER}`);
            // Decided once: a second decision, even by a holder of the role, conflicts.
            assert.equal((await tdecide(p.id, "deny", good)).status, 409);
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("a holder of the role denies: the call is denied", async () => {
        const client = await tconnect("vera");
        try {
            const call = client.callTool({ name: "echo", arguments: { message: "denied by a person" } });
            const p = await tpending("vera");
            const res = await tdecide(p.id, "deny", tgw.mint({ sub: "xena", roles: "oncall", path: "/mcp" }));
            assert.equal(res.status, 200, await res.clone().text());
            assert.equal((await res.json()).approval.approver, `user:xena@${ISSUER}`);
            const r = await withTimeout(call, 15000, "the denied call");
            assert.equal(r.isError, true);
            assert.equal(decisionOf(r).reason, "policy.approval_declined");
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("the dashboard takes the approver's own token in the page only and sends it with the decision", { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, async () => {
        const browser = await withTimeout(
            chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] }),
            30000,
            "chromium to start",
        );
        const client = await tconnect("yuri");
        try {
            const page = await browser.newPage();
            await page.goto(`${tgw.tg.adminBase}/ui`);
            await page.waitForSelector("#login:not(.hidden)", { timeout: 10000 });
            await page.fill("#token", ADMIN_TOKEN);
            await page.click("#login-form button");
            await page.waitForSelector("#panels:not(.hidden)", { timeout: 10000 });
            await page.waitForSelector("#approver:not(.hidden)", { timeout: 10000 });
            const call = client.callTool({ name: "echo", arguments: { message: "from a person's dashboard" } });
            const p = await tpending("yuri");
            await page.reload();
            const row = `#approvals tr[data-id="${p.id}"]`;
            await page.waitForSelector(row, { timeout: 15000 });
            // No token entered: nothing is sent, the page says what is missing.
            await page.click(`${row} button.decide-approve`);
            await page.waitForFunction(() => /own access token/.test(document.getElementById("status").textContent), null, { timeout: 5000 });
            // A token without the role: refused, the row stays.
            await page.fill("#approver-token", tgw.mint({ sub: "zoe", roles: "tester", path: "/mcp" }));
            await page.click(`${row} button.decide-approve`);
            await page.waitForFunction(() => /role/.test(document.getElementById("status").textContent), null, { timeout: 5000 });
            assert.ok((await tlist("pending")).approvals.some((a) => a.id === p.id));
            // A holder of the role approves from the page.
            const own = tgw.mint({ sub: "zoe", roles: "oncall", path: "/mcp" });
            await page.fill("#approver-token", own);
            await page.waitForSelector(row, { timeout: 15000 });
            await page.click(`${row} button.decide-approve`);
            const r = await withTimeout(call, 15000, "the call approved in the dashboard");
            assert.notEqual(r.isError, true, JSON.stringify(r));
            const done = (await tlist("approved")).approvals.find((a) => a.id === p.id);
            assert.equal(done.approver, `user:zoe@${ISSUER}`);
            // The approver's token is in no storage of the page.
            const stored = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }) + document.cookie);
            assert.ok(!stored.includes(own), "the approver's token is not stored");
            assert.ok(stored.includes(ADMIN_TOKEN), "the admin token is kept as before");
        } finally {
            await client.close().catch(() => {});
            await browser.close().catch(() => {});
        }
    });

    test("the audit record names the verified approver, and no token", () => {
        const rows = JSON.parse(
            execFileSync(TOOLGATE_BIN, ["audit", "query", `sqlite:${tgw.auditDb}`, "--format", "json", "--limit", "10000"], {
                encoding: "utf8",
                timeout: 30000,
            }),
        );
        const decided = rows.filter((r) => r.approval?.via === "admin");
        assert.ok(decided.length >= 3, JSON.stringify(rows.filter((r) => r.approval).slice(0, 3)));
        for (const r of decided) assert.match(r.approval.approver, /^user:(victor|xena|zoe)@/);
        const ok = decided.find((r) => r.approval.approver === `user:victor@${ISSUER}`);
        assert.equal(ok.approval.decision, "approved");
        assert.equal(ok.approval.by, "role:oncall");
        const no = rows.find((r) => r.approval?.decision === "declined");
        assert.equal(no.approval.approver, `user:xena@${ISSUER}`);
        const text = JSON.stringify(rows);
        assert.ok(!text.includes(ADMIN_TOKEN));
        assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(text), "no token in the audit records");
    });
});
