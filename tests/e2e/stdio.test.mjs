// Local stdio MCP servers behind toolgate (backends[].command): real servers from npm
// (server-everything in stdio mode, server-filesystem) driven by the MCP SDK client through
// toolgate, governed like HTTP backends; and the process hardening seen from /proc.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
    E2E_DIR,
    startToolgate,
    startEverything,
    killAll,
    withTimeout,
    waitUntil,
    tempDir,
    httpGet,
} from "./lib/harness.mjs";
import { startIdentityGateway } from "./lib/identity-gateway.mjs";

const MODULES = path.join(E2E_DIR, "node_modules");
const EVERYTHING = path.join(MODULES, "@modelcontextprotocol/server-everything/dist/index.js");
const FILESYSTEM = path.join(MODULES, "@modelcontextprotocol/server-filesystem/dist/index.js");
const NODE = process.execPath;

after(killAll);

async function connect(url, headers = {}, capabilities = {}) {
    const client = new Client({ name: "toolgate-e2e", version: "1.0.0" }, { capabilities });
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
    await withTimeout(client.connect(transport), 20000, "initialize through toolgate");
    return client;
}

// /proc: every process, with its parent, process group and command line.
function processes() {
    const out = [];
    for (const d of readdirSync("/proc")) {
        if (!/^\d+$/.test(d)) continue;
        try {
            const stat = readFileSync(`/proc/${d}/stat`, "utf8");
            const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
            const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").filter(Boolean);
            out.push({ pid: Number(d), state: f[0], ppid: Number(f[1]), pgrp: Number(f[2]), cmd });
        } catch {
            /* gone meanwhile */
        }
    }
    return out;
}
const childrenOf = (pid) => processes().filter((p) => p.ppid === pid && p.state !== "Z");
const inGroup = (pgrp) => processes().filter((p) => p.pgrp === pgrp && p.state !== "Z");

async function metric(tg, name) {
    const r = await httpGet(`${tg.adminBase}/metrics`);
    const line = r.body.split("\n").find((l) => l.startsWith(name));
    return line ? Number(line.split(" ").pop()) : undefined;
}

const textOf = (r) => r.content.map((c) => c.text || "").join("");

describe("server-everything over stdio, shared, with a policy", () => {
    let tg, client;
    before(async () => {
        tg = await startToolgate({
            admin: true,
            env: { TOOLGATE_E2E_SECRET: "must-not-leak" },
            routes: [
                {
                    backends: [
                        {
                            name: "ev",
                            command: [NODE, EVERYTHING, "stdio"],
                            env: { E2E_LISTED: "listed-value" },
                            restart: { base: "100ms", max: "400ms", attempts: 20 },
                        },
                    ],
                },
            ],
            policy: {
                rules: [
                    { id: "some", effect: "permit", tools: ["echo", "get-env", "trigger-long-running-operation"] },
                ],
            },
        });
        client = await connect(tg.url);
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("tools/list is filtered by policy", async () => {
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((t) => t.name).sort(), ["echo", "get-env", "trigger-long-running-operation"]);
    });

    test("a permitted call reaches the process; a denied one does not", async () => {
        assert.equal(textOf(await client.callTool({ name: "echo", arguments: { message: "hi" } })), "Echo: hi");
        const denied = await client
            .callTool({ name: "get-sum", arguments: { a: 1, b: 2 } })
            .then((v) => ({ result: v }), (e) => ({ error: e }));
        if (denied.result) assert.equal(denied.result.isError, true);
        else assert.equal(denied.error.code, -32602);
        assert.ok(!/sum of 1 and 2/i.test(JSON.stringify(denied)), "no sum computed");
    });

    test("the environment is clean: PATH and the listed variables only", async () => {
        const env = JSON.parse(textOf(await client.callTool({ name: "get-env", arguments: {} })));
        assert.deepEqual(Object.keys(env).sort(), ["E2E_LISTED", "PATH"]);
        assert.equal(env.PATH, "/usr/local/bin:/usr/bin:/bin");
        assert.equal(env.E2E_LISTED, "listed-value");
        assert.ok(!JSON.stringify(env).includes("must-not-leak"));
    });

    test("its own process group, resource limits and seccomp", async () => {
        const [child] = childrenOf(tg.child.pid);
        assert.ok(child, "a child process");
        assert.equal(child.pgrp, child.pid, "leader of its own group");
        const limits = readFileSync(`/proc/${child.pid}/limits`, "utf8");
        assert.match(limits, /Max address space\s+4294967296/);
        assert.match(limits, /Max open files\s+1024\s+1024/);
        const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
        assert.match(status, /Seccomp:\s+2/);
        assert.match(status, /NoNewPrivs:\s+1/);
    });

    test("a crashed process: the call in flight gets an error, the process comes back", async () => {
        const [child] = childrenOf(tg.child.pid);
        const call = client
            .callTool({ name: "trigger-long-running-operation", arguments: { duration: 30, steps: 30 } })
            .then((v) => ({ result: v }), (e) => ({ error: e }));
        await waitUntil(async () => true, 300, "the call to start");
        await new Promise((r) => setTimeout(r, 500));
        process.kill(child.pid, "SIGKILL");
        const r = await withTimeout(call, 10000, "the in-flight call's answer");
        assert.ok(r.error || r.result?.isError, JSON.stringify(r));
        assert.match(String(r.error?.message ?? JSON.stringify(r.result)), /local server/);
        await waitUntil(
            async () => {
                const c = childrenOf(tg.child.pid);
                return c.length === 1 && c[0].pid !== child.pid;
            },
            10000,
            "a new process",
        );
        await waitUntil(
            async () =>
                client
                    .callTool({ name: "echo", arguments: { message: "again" } })
                    .then((v) => textOf(v) === "Echo: again", () => false),
            10000,
            "the session working again",
            200,
        );
        assert.ok((await metric(tg, 'toolgate_stdio_restarts_total{backend="ev"}')) >= 1);
        const ready = await httpGet(`${tg.adminBase}/readyz`);
        assert.match(ready.body, /stdio:ev/);
    });

    test("shutdown kills the whole process group: no orphans", async () => {
        const [child] = childrenOf(tg.child.pid);
        assert.ok(inGroup(child.pgrp).length >= 1);
        await client.close().catch(() => {});
        client = null;
        await tg.stop();
        tg = null;
        await waitUntil(async () => inGroup(child.pgrp).length === 0, 5000, "the group gone");
    });
});

describe("server-filesystem over stdio: PII in results redacted", () => {
    let tg, client, dir;
    before(async () => {
        dir = tempDir();
        writeFileSync(path.join(dir, "card.txt"), "card on file: 4111 1111 1111 1111\n");
        tg = await startToolgate({
            routes: [{ backends: [{ name: "fs", command: [NODE, FILESYSTEM, dir] }] }],
            extra: { safety: { detectors: { credit_card: "redact" }, responses: { default: "redact" } } },
        });
        client = await connect(tg.url);
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("reading a file with a card number: redacted", async () => {
        const r = await client.callTool({ name: "read_text_file", arguments: { path: path.join(dir, "card.txt") } });
        const text = JSON.stringify(r);
        assert.ok(text.includes("card on file"), text);
        assert.ok(!text.includes("4111 1111 1111 1111"), text);
    });
});

describe("per_user instances", () => {
    let gw, a, b;
    before(async () => {
        gw = await startIdentityGateway({
            routes: [
                {
                    backends: [{ name: "ev", command: [NODE, EVERYTHING, "stdio"], instances: "per_user", max_instances: 4 }],
                },
            ],
        });
        a = await connect(gw.tg.url, { Authorization: `Bearer ${gw.mint({ sub: "alice" })}` });
        b = await connect(gw.tg.url, { Authorization: `Bearer ${gw.mint({ sub: "bob" })}` });
    });
    after(async () => {
        for (const c of [a, b]) if (c) await c.close().catch(() => {});
        if (gw) await gw.tg.stop();
    });

    test("two users get two processes", async () => {
        assert.equal(textOf(await a.callTool({ name: "echo", arguments: { message: "a" } })), "Echo: a");
        assert.equal(textOf(await b.callTool({ name: "echo", arguments: { message: "b" } })), "Echo: b");
        const kids = childrenOf(gw.tg.child.pid);
        assert.equal(kids.length, 2, JSON.stringify(kids));
        assert.notEqual(kids[0].pgrp, kids[1].pgrp);
    });

    test("shutdown leaves nothing of either process group", async () => {
        const groups = childrenOf(gw.tg.child.pid).map((k) => k.pgrp);
        assert.equal(groups.length, 2);
        for (const c of [a, b]) await c.close().catch(() => {});
        a = b = null;
        await gw.tg.stop();
        gw = null;
        await waitUntil(async () => groups.every((g) => inGroup(g).length === 0), 5000, "both groups gone");
    });
});

describe("federation of a stdio backend with an HTTP backend", () => {
    let tg, client, everything;
    before(async () => {
        everything = await startEverything();
        tg = await startToolgate({
            routes: [
                {
                    backends: [
                        { name: "local", command: [NODE, EVERYTHING, "stdio"], prefix: "local." },
                        { name: "remote", url: everything.url, prefix: "remote." },
                    ],
                },
            ],
        });
        client = await connect(tg.url);
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("both backends' tools, each call to its own", async () => {
        const names = [];
        let cursor;
        do {
            const page = await client.listTools(cursor ? { cursor } : {});
            names.push(...page.tools.map((t) => t.name));
            cursor = page.nextCursor;
        } while (cursor);
        assert.ok(names.includes("local.echo") && names.includes("remote.echo"), names.join(","));
        assert.equal(textOf(await client.callTool({ name: "local.echo", arguments: { message: "l" } })), "Echo: l");
        assert.equal(textOf(await client.callTool({ name: "remote.echo", arguments: { message: "r" } })), "Echo: r");
    });
});

function bwrapWorks() {
    try {
        execFileSync("bwrap", ["--ro-bind", "/", "/", "--unshare-all", "--", "/bin/true"], { timeout: 5000 });
        return true;
    } catch {
        return false;
    }
}

describe("sandbox: bwrap", () => {
    const usable = bwrapWorks();
    let tg, client, rw, ro;
    before(async () => {
        if (!usable) return;
        rw = tempDir();
        ro = tempDir();
        tg = await startToolgate({
            routes: [
                {
                    backends: [
                        {
                            name: "fs",
                            command: [NODE, FILESYSTEM, rw, ro],
                            sandbox: "bwrap",
                            bind: [MODULES, ro],
                            bind_rw: [rw],
                        },
                    ],
                },
            ],
        });
        client = await connect(tg.url);
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("writes only where bind_rw allows, and no network", { skip: usable ? false : "bwrap cannot create namespaces here" }, async () => {
        const ok = await client.callTool({ name: "write_file", arguments: { path: path.join(rw, "a.txt"), content: "yes" } });
        assert.ok(!ok.isError, JSON.stringify(ok));
        assert.equal(readFileSync(path.join(rw, "a.txt"), "utf8"), "yes");
        const no = await client.callTool({ name: "write_file", arguments: { path: path.join(ro, "b.txt"), content: "no" } });
        assert.equal(no.isError, true, JSON.stringify(no));
        assert.ok(!existsSync(path.join(ro, "b.txt")));
        // The server runs in a network namespace of its own (no interfaces but lo, down).
        const inner = processes().filter((p) => p.cmd.includes(FILESYSTEM) && p.cmd[0] !== "bwrap");
        assert.ok(inner.length >= 1);
        assert.notEqual(readlinkSync(`/proc/${inner[0].pid}/ns/net`), readlinkSync("/proc/self/ns/net"));
    });
});

describe("server-to-client requests and progress from a stdio server", () => {
    let tg, client;
    before(async () => {
        tg = await startToolgate({ routes: [{ backends: [{ name: "ev", command: [NODE, EVERYTHING, "stdio"] }] }] });
        client = await connect(tg.url, {}, { sampling: {} });
        const { CreateMessageRequestSchema } = await import("@modelcontextprotocol/sdk/types.js");
        client.setRequestHandler(CreateMessageRequestSchema, async () => ({
            model: "e2e-model",
            role: "assistant",
            content: { type: "text", text: "sampled through toolgate" },
        }));
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("sampling/createMessage reaches the client and its answer the server", async () => {
        const r = await withTimeout(
            client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } }),
            15000,
            "the sampling round trip",
        );
        assert.match(JSON.stringify(r), /sampled through toolgate/);
    });

    test("progress notifications reach the caller under its own token", async () => {
        const seen = [];
        const r = await client.callTool(
            { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
            undefined,
            { onprogress: (p) => seen.push(p.progress) },
        );
        assert.ok(!r.isError, JSON.stringify(r));
        assert.ok(seen.length >= 1, "progress seen");
    });
});

describe("a stdout line over max_line", () => {
    let tg, client, dir;
    before(async () => {
        dir = tempDir();
        writeFileSync(path.join(dir, "small.txt"), "small\n");
        writeFileSync(path.join(dir, "big.txt"), "x".repeat(64 * 1024));
        tg = await startToolgate({
            admin: true,
            routes: [
                {
                    backends: [
                        { name: "fs", command: [NODE, FILESYSTEM, dir], max_line: "8KiB", restart: { base: "100ms", max: "200ms" } },
                    ],
                },
            ],
        });
        client = await connect(tg.url);
    });
    after(async () => {
        if (client) await client.close().catch(() => {});
        if (tg) await tg.stop();
    });

    test("the call gets a clear error, the process is restarted, small answers work again", async () => {
        const [before] = childrenOf(tg.child.pid);
        const r = await client
            .callTool({ name: "read_text_file", arguments: { path: path.join(dir, "big.txt") } })
            .then((v) => ({ result: v }), (e) => ({ error: e }));
        assert.match(String(r.error?.message ?? JSON.stringify(r.result)), /max_line/);
        await waitUntil(
            async () =>
                client
                    .callTool({ name: "read_text_file", arguments: { path: path.join(dir, "small.txt") } })
                    .then((v) => JSON.stringify(v).includes("small"), () => false),
            10000,
            "the restarted process answering",
            200,
        );
        const [after_] = childrenOf(tg.child.pid);
        assert.notEqual(after_.pid, before.pid);
        assert.equal(await metric(tg, 'toolgate_stdio_line_overflows_total{backend="fs"}'), 1);
    });
});
