// Rule conditions on tool annotations and the approval key, end to end: the MCP SDK client
// against server-everything (whose tools carry annotations) behind toolgate. toolgate learns
// the annotations from the tools/list answer it relays; before that every tool reads as
// unknown (not read-only), and a permit that asks for an approver's approval is denied with a
// reference (these tests give approvers no time: role_timeout 0). The prompts to the user are
// in approval_user.test.mjs, the approvers' queue in approval_role.test.mjs.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startToolgate, startEverything, killAll, withTimeout, TOOLGATE_BIN } from "./lib/harness.mjs";

const POLICY = {
    rules: [
        { id: "reads", effect: "permit", tools: "*", annotations: { readOnlyHint: true } },
        {
            id: "writes-need-approval",
            effect: "permit",
            tools: "*",
            annotations: { readOnlyHint: false },
            approval: { by: "role:oncall", ttl: "5m" },
        },
        { id: "no-open-world", effect: "forbid", tools: "get-*", annotations: { openWorldHint: true } },
    ],
    approvals: { role_timeout: "0s" },
};

let everything;
before(async () => {
    everything = await startEverything();
});
after(killAll);

function decisionOf(r) {
    return r._meta?.["toolgate/decision"] ?? {};
}

describe("annotations learned from the backend's tools/list", () => {
    let tg;
    let client;
    before(async () => {
        tg = await startToolgate({ routes: [{ url: everything.url }], policy: POLICY });
        client = new Client({ name: "toolgate-e2e-approval", version: "1.0.0" });
        await withTimeout(client.connect(new StreamableHTTPClientTransport(new URL(tg.url))), 10000, "initialize");
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("before any listing, a read-only tool is unknown: the approval rule decides, and it fails closed", async () => {
        const r = await client.callTool({ name: "echo", arguments: { message: "early" } });
        assert.equal(r.isError, true, JSON.stringify(r));
        assert.equal(decisionOf(r).reason, "policy.approval_pending");
        assert.equal(decisionOf(r).rule, "writes-need-approval");
        assert.match(r.content[0].text, /role oncall/);
        assert.match(r.content[0].text, /reference apr-[0-9a-f]{16}/);
        assert.ok(!JSON.stringify(r).includes("Echo: early"));
    });

    test("once listed, the backend's readOnlyHint lets the read through", async () => {
        const { tools } = await client.listTools();
        assert.ok(tools.some((t) => t.name === "echo"));
        const r = await client.callTool({ name: "echo", arguments: { message: "later" } });
        assert.notEqual(r.isError, true, JSON.stringify(r));
        assert.match(r.content[0].text, /Echo: later/);
    });

    test("a tool the backend says is not read-only still needs approval, and is denied", async () => {
        await client.listTools();
        const r = await client.callTool({ name: "toggle-simulated-logging", arguments: {} });
        assert.equal(r.isError, true, JSON.stringify(r));
        assert.equal(decisionOf(r).reason, "policy.approval_pending");
        const line = await tg.waitForLog(
            (l) => l.event === "request" && l.rpc_method === "tools/call" && l.reason === "policy.approval_pending",
            3000,
            "the denied call's log line",
        );
        assert.equal(line.layer, "policy");
        assert.equal(line.upstream_status, 0, "not forwarded");
    });

    test("a forbid on a risky hint does not fire for a tool declared closed-world", async () => {
        await client.listTools();
        const r = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } });
        assert.notEqual(r.isError, true, JSON.stringify(r));
        assert.match(JSON.stringify(r.content), /5/);
    });
});

describe("toolgate policy explain and policy tests", () => {
    test("explain reads --annotations and shows an approval call as the gateway answers it", () => {
        const dir = mkdtempSync(path.join(os.tmpdir(), "toolgate-approval-"));
        try {
            const cfg = path.join(dir, "policy.yaml");
            writeFileSync(cfg, `policy: ${JSON.stringify(POLICY)}\n`);
            const run = (...args) => spawnSync(TOOLGATE_BIN, ["policy", "explain", "--config", cfg, "--sub", "ann", ...args], { encoding: "utf8", timeout: 10000 });
            const unknown = run("--tool", "echo");
            assert.equal(unknown.status, 1, unknown.stdout + unknown.stderr);
            assert.match(unknown.stdout, /decision: deny \(policy\.approval_required\)/);
            assert.match(unknown.stdout, /approval: needed from role oncall \(rule writes-need-approval, ttl 300s\)/);
            const ro = run("--tool", "echo", "--annotations", '{"readOnlyHint":true,"openWorldHint":false}');
            assert.equal(ro.status, 0, ro.stdout + ro.stderr);
            assert.match(ro.stdout, /decision: allow \(policy\.permit\)/);
            const bad = run("--tool", "echo", "--annotations", "[true]");
            assert.equal(bad.status, 2);
            assert.match(bad.stderr, /--annotations: expected a JSON object/);
            writeFileSync(cfg, "policy: {rules: [{id: a, effect: forbid, tools: x, approval: {by: user}}]}\n");
            const invalid = spawnSync(TOOLGATE_BIN, ["policy", "explain", "--config", cfg, "--tool", "x"], { encoding: "utf8", timeout: 10000 });
            assert.equal(invalid.status, 2);
            assert.match(invalid.stderr, /policy\.rules\[0\]\.approval: approval belongs on permit rules/);
        } finally {
            rmSync(dir, { recursive: true, force: true });
        }
    });
});
