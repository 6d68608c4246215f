// Approval by the user the call acts for, end to end with real clients and real tokens.
//
// Session era (the MCP SDK 1.x client, protocol 2025-06-18/2025-11-25): toolgate itself sends
// elicitation/create on the call's stream; the client's elicitation handler answers. Accept
// lets the call through (and the same call again, for the rule's ttl), decline and cancel deny
// it, a client without the capability is told it cannot be asked, no answer in time denies.
//
// 2026-07-28 (the SDK v2 client, pinned): the call is answered input_required with the prompt
// and a sealed requestState; the client's handler answers and the client retries. A replayed
// state, one for another user and one for other arguments are refused (raw requests).
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { Client as Client2, StreamableHTTPClientTransport as Transport2 } from "@modelcontextprotocol/client";
import { Child, E2E_DIR, freePort, killAll, startEverything, waitForPort, withTimeout, TOOLGATE_BIN } from "./lib/harness.mjs";
import { startIdentityGateway } from "./lib/identity-gateway.mjs";

const POLICY = {
    rules: [
        { id: "echo-asks-user", effect: "permit", tools: ["echo"], approval: { by: "user", ttl: "10m" } },
        { id: "sum-free", effect: "permit", tools: ["get-sum", "add"] },
        { id: "fed-echo-asks-user", effect: "permit", tools: ["ev.echo"], approval: { by: "user", ttl: "10m" } },
    ],
    approvals: { prompt_timeout: "1s" },
};

let everything;
let v2;
let gw;

before(async () => {
    everything = await startEverything();
    const port = await freePort();
    const child = new Child("v2-server", process.execPath, [path.join(E2E_DIR, "lib/v2-server.mjs"), String(port)], { cwd: E2E_DIR });
    await waitForPort(port, 15000, child);
    v2 = { url: `http://127.0.0.1:${port}/mcp` };
    gw = await startIdentityGateway({
        routes: [
            { name: "everything", path: "/mcp", url: everything.url },
            { name: "v2", path: "/v2", url: v2.url },
            {
                name: "fed",
                path: "/fed",
                backends: [
                    { name: "ev", url: everything.url, prefix: "ev." },
                    { name: "two", url: v2.url, prefix: "two." },
                ],
            },
        ],
        policy: POLICY,
        extra: { safety: { detectors: { email: "log" } } },
    });
});

after(async () => {
    try {
        if (gw) await gw.tg.stop();
    } finally {
        await killAll();
    }
});

const decisionOf = (r) => r._meta?.["toolgate/decision"] ?? {};

/* A 1.x client as `sub`, with the elicitation capability unless caps says otherwise. */
async function connect(sub, { caps = { elicitation: {} }, onElicit, route = "/mcp" } = {}) {
    const client = new Client({ name: "toolgate-e2e-approval-user", version: "1.0.0" }, { capabilities: caps });
    const prompts = [];
    if (caps.elicitation)
        client.setRequestHandler(ElicitRequestSchema, async (req) => {
            prompts.push(req.params);
            return onElicit ? onElicit(req.params) : { action: "accept", content: { approve: true } };
        });
    const transport = new StreamableHTTPClientTransport(new URL(`${gw.tg.base}${route}`), {
        requestInit: { headers: { Authorization: `Bearer ${gw.mint({ sub, path: route })}` } },
    });
    await withTimeout(client.connect(transport), 15000, `initialize as ${sub}`);
    return { client, prompts };
}

function auditRows() {
    return JSON.parse(
        execFileSync(TOOLGATE_BIN, ["audit", "query", `sqlite:${gw.auditDb}`, "--format", "json", "--limit", "10000"], {
            encoding: "utf8",
            timeout: 30000,
        }),
    );
}

describe("session era: toolgate prompts the user with elicitation/create", () => {
    test("accept: the call goes through; the prompt names the tool and a digest, never the PII value", async () => {
        const { client, prompts } = await connect("alice");
        try {
            const r = await withTimeout(
                client.callTool({ name: "echo", arguments: { message: "write to ann@example.com" } }),
                15000,
                "approved call",
            );
            assert.notEqual(r.isError, true, JSON.stringify(r));
            assert.match(r.content[0].text, /Echo: write to ann@example.com/);
            assert.equal(prompts.length, 1);
            const p = prompts[0];
            assert.match(p.message, /tool "echo"/);
            assert.match(p.message, /rule echo-asks-user/);
            assert.match(p.message, /sha256:[0-9a-f]{12}/);
            assert.ok(!p.message.includes("ann@example.com"), p.message);
            assert.match(p.message, /message=\[withheld: sensitive\]/);
            assert.equal(p.requestedSchema.properties.approve.type, "boolean");

            // The same call again is approved already; other arguments are asked for anew.
            const again = await client.callTool({ name: "echo", arguments: { message: "write to ann@example.com" } });
            assert.notEqual(again.isError, true, JSON.stringify(again));
            assert.equal(prompts.length, 1, "no second prompt within the ttl");
            const other = await client.callTool({ name: "echo", arguments: { message: "something else" } });
            assert.notEqual(other.isError, true);
            assert.equal(prompts.length, 2, "other arguments: another prompt");
            assert.match(prompts[1].message, /message="something else"/);
        } finally {
            await client.close().catch(() => {});
        }
        // Another user's same call is not approved by alice's yes.
        const bob = await connect("bob", { onElicit: () => ({ action: "decline" }) });
        try {
            const r = await bob.client.callTool({ name: "echo", arguments: { message: "write to ann@example.com" } });
            assert.equal(r.isError, true);
            assert.equal(bob.prompts.length, 1);
        } finally {
            await bob.client.close().catch(() => {});
        }
    });

    test("a federated endpoint prompts the same way (its own session, the backend's tool behind a prefix)", async () => {
        const yes = await connect("fiona", { route: "/fed" });
        try {
            const r = await withTimeout(yes.client.callTool({ name: "ev.echo", arguments: { message: "fed" } }), 15000, "fed call");
            assert.notEqual(r.isError, true, JSON.stringify(r));
            assert.match(r.content[0].text, /Echo: fed/);
            assert.equal(yes.prompts.length, 1);
            assert.match(yes.prompts[0].message, /tool "ev.echo"/);
        } finally {
            await yes.client.close().catch(() => {});
        }
        const no = await connect("fiona-no", { route: "/fed", onElicit: () => ({ action: "decline" }) });
        try {
            const r = await no.client.callTool({ name: "ev.echo", arguments: { message: "fed" } });
            assert.equal(decisionOf(r).reason, "policy.approval_declined");
        } finally {
            await no.client.close().catch(() => {});
        }
    });

    test("decline and cancel deny the call with a reason the model can read; the backend never sees it", async () => {
        for (const action of ["decline", "cancel"]) {
            const { client, prompts } = await connect(`carol-${action}`, { onElicit: () => ({ action }) });
            try {
                const r = await client.callTool({ name: "echo", arguments: { message: `no ${action}` } });
                assert.equal(r.isError, true, JSON.stringify(r));
                assert.equal(decisionOf(r).reason, "policy.approval_declined");
                assert.equal(decisionOf(r).rule, "echo-asks-user");
                assert.match(r.content[0].text, /did not approve this call/);
                assert.ok(!JSON.stringify(r).includes("Echo:"));
                assert.equal(prompts.length, 1);
            } finally {
                await client.close().catch(() => {});
            }
        }
        // accept with approve: false is a no.
        const { client } = await connect("carol-false", { onElicit: () => ({ action: "accept", content: { approve: false } }) });
        try {
            const r = await client.callTool({ name: "echo", arguments: { message: "accept but no" } });
            assert.equal(decisionOf(r).reason, "policy.approval_declined");
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("a client without the elicitation capability is told it cannot be asked", async () => {
        const { client } = await connect("dave", { caps: {} });
        try {
            const r = await client.callTool({ name: "echo", arguments: { message: "hi" } });
            assert.equal(r.isError, true);
            assert.equal(decisionOf(r).reason, "policy.approval_unavailable");
            assert.match(r.content[0].text, /cannot show prompts/);
            // A call that needs no approval is unaffected.
            const sum = await client.callTool({ name: "get-sum", arguments: { a: 1, b: 2 } });
            assert.notEqual(sum.isError, true);
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("no answer within prompt_timeout denies the call; the late answer is dropped", async () => {
        let release;
        const late = new Promise((r) => (release = r));
        const { client, prompts } = await connect("erin", {
            onElicit: async () => {
                await late;
                return { action: "accept", content: { approve: true } };
            },
        });
        try {
            const r = await withTimeout(client.callTool({ name: "echo", arguments: { message: "slow" } }), 15000, "timed out call");
            assert.equal(r.isError, true);
            assert.equal(decisionOf(r).reason, "policy.approval_timeout");
            assert.equal(prompts.length, 1);
            release();
            // The late yes does not approve anything: the same call prompts again (and is answered at once now).
            const again = await client.callTool({ name: "echo", arguments: { message: "slow" } });
            assert.notEqual(again.isError, true, JSON.stringify(again));
            assert.equal(prompts.length, 2);
        } finally {
            release();
            await client.close().catch(() => {});
        }
    });

    test("an answer to a prompt id of another session, or an id toolgate never issued, reaches no one", async () => {
        const { client } = await connect("frank", { caps: {} });
        try {
            // A raw response with toolgate's id prefix in frank's session: taken (202) and dropped.
            const t = client.transport;
            const res = await fetch(`${gw.tg.base}/mcp`, {
                method: "POST",
                headers: {
                    "Content-Type": "application/json",
                    Accept: "application/json, text/event-stream",
                    Authorization: `Bearer ${gw.mint({ sub: "frank", path: "/mcp" })}`,
                    "Mcp-Session-Id": t.sessionId,
                    "MCP-Protocol-Version": t.protocolVersion ?? "2025-06-18",
                },
                body: JSON.stringify({ jsonrpc: "2.0", id: "toolgate-ask-00000000000000000000000000000000", result: { action: "accept", content: { approve: true } } }),
                signal: AbortSignal.timeout(5000),
            });
            assert.equal(res.status, 202);
            await gw.tg.waitForLog((l) => l.event === "ask_answer_dropped", 3000, "the dropped answer");
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("the audit record of an approved call says who approved, how and when", async () => {
        const rows = auditRows();
        const approved = rows.filter((r) => r.approval?.decision === "approved" && r.approval?.via === "elicitation");
        assert.ok(approved.length >= 1, JSON.stringify(rows.slice(-5)));
        const a = approved[0].approval;
        assert.equal(a.by, "user");
        assert.equal(a.approver, "user");
        assert.equal(a.rule, "echo-asks-user");
        assert.match(a.digest, /^sha256:[0-9a-f]{12}$/);
        assert.ok(a.at > 0);
        assert.ok(rows.some((r) => r.approval?.via === "cached"), "the second call: approved before");
        assert.ok(rows.some((r) => r.approval?.decision === "declined"));
        assert.ok(rows.some((r) => r.approval?.decision === "timeout"));
        assert.ok(rows.some((r) => r.approval?.decision === "unavailable"));
        assert.ok(!JSON.stringify(rows).includes("ann@example.com"), "no PII value in the audit log");
    });
});

describe("2026-07-28: input_required with a sealed requestState", () => {
    const V = "2026-07-28";

    async function connect2(sub, { caps = { elicitation: {} }, onElicit } = {}) {
        const client = new Client2(
            { name: "toolgate-e2e-approval-2026", version: "1.0.0" },
            { capabilities: caps, versionNegotiation: { mode: { pin: V } } },
        );
        const prompts = [];
        if (caps.elicitation)
            client.setRequestHandler("elicitation/create", async (req) => {
                prompts.push(req.params);
                return onElicit ? onElicit(req.params) : { action: "accept", content: { approve: true } };
            });
        const transport = new Transport2(new URL(`${gw.tg.base}/v2`), {
            requestInit: { headers: { Authorization: `Bearer ${gw.mint({ sub, path: "/v2" })}` } },
        });
        await withTimeout(client.connect(transport), 15000, `connecting as ${sub}`);
        return { client, prompts };
    }

    test("the SDK client's elicitation handler answers and its retry goes through", async () => {
        const { client, prompts } = await connect2("gina");
        try {
            const r = await withTimeout(client.callTool({ name: "echo", arguments: { message: "modern yes" } }), 15000, "call");
            assert.notEqual(r.isError, true, JSON.stringify(r));
            assert.deepEqual(r.content, [{ type: "text", text: "v2 echo: modern yes" }]);
            assert.equal(prompts.length, 1);
            assert.match(prompts[0].message, /tool "echo"/);
        } finally {
            await client.close().catch(() => {});
        }
    });

    test("decline denies; a client without the capability is told it cannot be asked", async () => {
        const no = await connect2("hank", { onElicit: () => ({ action: "decline" }) });
        try {
            const r = await no.client.callTool({ name: "echo", arguments: { message: "modern no" } });
            assert.equal(r.isError, true, JSON.stringify(r));
            assert.equal(decisionOf(r).reason, "policy.approval_declined");
        } finally {
            await no.client.close().catch(() => {});
        }
        const blind = await connect2("ivy", { caps: {} });
        try {
            const r = await blind.client.callTool({ name: "echo", arguments: { message: "modern blind" } });
            assert.equal(r.isError, true, JSON.stringify(r));
            assert.equal(decisionOf(r).reason, "policy.approval_unavailable");
            assert.match(r.content[0].text, /cannot show prompts/);
        } finally {
            await blind.client.close().catch(() => {});
        }
    });

    describe("the sealed state, raw", () => {
        const META = {
            "io.modelcontextprotocol/protocolVersion": V,
            "io.modelcontextprotocol/clientCapabilities": { elicitation: {} },
        };
        const post = (sub, params) =>
            fetch(`${gw.tg.base}/v2`, {
                method: "POST",
                headers: {
                    "Content-Type": "application/json",
                    Accept: "application/json, text/event-stream",
                    Authorization: `Bearer ${gw.mint({ sub, path: "/v2" })}`,
                    "MCP-Protocol-Version": V,
                    "Mcp-Method": "tools/call",
                    "Mcp-Name": "echo",
                },
                body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "echo", _meta: META, ...params } }),
                signal: AbortSignal.timeout(5000),
            }).then(async (res) => ({ status: res.status, body: await res.json() }));
        const YES = { "toolgate.approval": { action: "accept", content: { approve: true } } };
        const ask = async (sub, message) => {
            const r = await post(sub, { arguments: { message } });
            assert.equal(r.status, 200);
            assert.equal(r.body.result.resultType, "input_required", JSON.stringify(r.body));
            const req = r.body.result.inputRequests["toolgate.approval"];
            assert.equal(req.method, "elicitation/create");
            assert.match(r.body.result.requestState, /^tgs1\./);
            return r.body.result.requestState;
        };

        test("the retry with the state and a yes goes through, once; a replay is refused", async () => {
            const state = await ask("jack", "raw one");
            const ok = await post("jack", { arguments: { message: "raw one" }, requestState: state, inputResponses: YES });
            assert.deepEqual(ok.body.result.content, [{ type: "text", text: "v2 echo: raw one" }], JSON.stringify(ok.body));
            const replay = await post("jack", { arguments: { message: "raw one" }, requestState: state, inputResponses: YES });
            assert.equal(replay.body.result.isError, true);
            assert.equal(replay.body.result._meta["toolgate/decision"].reason, "policy.approval_invalid");
            assert.match(replay.body.result.content[0].text, /used already/);
        });

        test("a state is refused for another user, for other arguments, and when altered", async () => {
            const state = await ask("kate", "raw two");
            const other = await post("leo", { arguments: { message: "raw two" }, requestState: state, inputResponses: YES });
            assert.equal(other.body.result._meta["toolgate/decision"].reason, "policy.approval_invalid");
            assert.match(other.body.result.content[0].text, /another user/);
            const args = await post("kate", { arguments: { message: "raw two, changed" }, requestState: state, inputResponses: YES });
            assert.match(args.body.result.content[0].text, /another call/);
            const flip = state.slice(0, -2) + (state.at(-2) === "A" ? "B" : "A") + state.at(-1);
            const altered = await post("kate", { arguments: { message: "raw two" }, requestState: flip, inputResponses: YES });
            assert.match(altered.body.result.content[0].text, /altered|malformed/);
            const junk = await post("kate", { arguments: { message: "raw two" }, requestState: "tgs1.!!!", inputResponses: YES });
            assert.match(junk.body.result.content[0].text, /malformed/);
            // None of these used the state up: kate's own retry still works.
            const ok = await post("kate", { arguments: { message: "raw two" }, requestState: state, inputResponses: YES });
            assert.deepEqual(ok.body.result.content, [{ type: "text", text: "v2 echo: raw two" }], JSON.stringify(ok.body));
        });

        test("a state with no answer, or a no, does not let the call through", async () => {
            const state = await ask("mia", "raw three");
            const none = await post("mia", { arguments: { message: "raw three" }, requestState: state });
            assert.equal(none.body.result.isError, true);
            const state2 = await ask("mia", "raw three");
            const no = await post("mia", {
                arguments: { message: "raw three" },
                requestState: state2,
                inputResponses: { "toolgate.approval": { action: "decline" } },
            });
            assert.equal(no.body.result._meta["toolgate/decision"].reason, "policy.approval_declined");
        });
    });
});
