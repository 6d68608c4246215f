// Process harness for the end-to-end tests: free loopback ports, toolgate and backends as
// child processes with captured output, bounded waits, and a registry that kills every child
// a test file started (call `after(killAll)` in each file; an exit hook backs it up).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import net from "node:net";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.resolve(here, "..");
export const REPO_DIR = path.resolve(E2E_DIR, "..", "..");
export const TOOLGATE_BIN = process.env.TOOLGATE_BIN || path.join(REPO_DIR, "build", "toolgate");
export const EHR_BACKEND_BIN =
    process.env.EHR_BACKEND_BIN || path.join(REPO_DIR, "build", "ehr-backend");
const EVERYTHING_JS = path.join(
    E2E_DIR,
    "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Resolves p, or rejects with `what` after ms: every wait in these tests is bounded. */
export function withTimeout(p, ms, what) {
    let timer;
    const t = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/* Awaits p; on failure adds the last output lines of the given children to the error. */
export async function withLogs(p, ...children) {
    try {
        return await p;
    } catch (e) {
        const tail = children
            .filter(Boolean)
            .map((c) => {
                const ch = c.child || c;
                const state = ch.running
                    ? "running"
                    : `exited: code ${ch.exitCode} signal ${ch.signal}${ch.termSent ? "" : " (not stopped by this test)"}`;
                return `--- ${ch.name} [${state}] (last lines)\n${[...ch.stdoutLines, ...ch.stderrLines].slice(-40).join("\n")}`;
            })
            .join("\n");
        e.message = `${e.message}\n${tail}`;
        throw e;
    }
}

/* Polls fn until it returns a truthy value; throws after ms. */
export async function waitUntil(fn, ms, what, every = 25) {
    const deadline = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
        await sleep(every);
    }
}

/* A free loopback port: bind port 0, read the port the kernel chose, release it. */
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/*
 * A loopback port where connections are refused, and stay refused for the test. A port freePort
 * handed out and released can be handed out again to the next server a test starts (a Redis, a
 * toolgate), which would then answer for the "dead" backend. So this one is taken below the
 * kernel's ephemeral range, where binding port 0 never lands and no test binds a fixed port,
 * and a connection to it is tried to confirm that it is refused.
 */
export async function refusedPort() {
    let low = 32768;
    try {
        low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || low;
    } catch {
        /* not Linux: the usual default */
    }
    const base = Math.max(1024, Math.min(20000, low - 2000));
    for (let attempt = 0; attempt < 50; attempt++) {
        const port = base + Math.floor(Math.random() * Math.max(1, low - base));
        const refused = await new Promise((resolve) => {
            const sock = net.connect(port, "127.0.0.1");
            sock.once("connect", () => {
                sock.destroy();
                resolve(false);
            });
            sock.once("error", (e) => resolve(e.code === "ECONNREFUSED"));
        });
        if (refused) return port;
    }
    throw new Error(`no refused loopback port found below ${low}`);
}

const tempDirs = [];
export function tempDir() {
    const d = mkdtempSync(path.join(os.tmpdir(), "toolgate-e2e-"));
    tempDirs.push(d);
    return d;
}

const children = new Set();

/* A child process with its output captured line by line. */
export class Child {
    constructor(name, cmd, args, options = {}) {
        this.name = name;
        this.stdoutLines = [];
        this.stderrLines = [];
        this.exitCode = undefined;
        this.signal = undefined;
        this.proc = spawn(cmd, args, {
            cwd: options.cwd,
            env: { ...process.env, ...(options.env || {}) },
            stdio: ["ignore", "pipe", "pipe"],
        });
        this.pid = this.proc.pid;
        children.add(this);
        this.exited = new Promise((resolve) => {
            this.proc.on("exit", (code, signal) => {
                this.exitCode = code;
                this.signal = signal;
                children.delete(this);
                resolve({ code, signal });
            });
            this.proc.on("error", (err) => {
                this.spawnError = err;
                children.delete(this);
                resolve({ code: null, signal: null, error: err });
            });
        });
        this._listeners = new Set();
        this._split(this.proc.stdout, this.stdoutLines);
        this._split(this.proc.stderr, this.stderrLines);
    }

    _split(stream, lines) {
        let rest = "";
        stream.setEncoding("utf8");
        stream.on("data", (s) => {
            rest += s;
            let i;
            while ((i = rest.indexOf("\n")) >= 0) {
                const line = rest.slice(0, i);
                rest = rest.slice(i + 1);
                lines.push(line);
                for (const l of this._listeners) l(line);
            }
        });
    }

    get running() {
        return this.exitCode === undefined && !this.spawnError;
    }

    /* Waits for an output line (stdout or stderr) matching pred. */
    waitForLine(pred, ms, what) {
        const seen = [...this.stdoutLines, ...this.stderrLines].find(pred);
        if (seen !== undefined) return Promise.resolve(seen);
        let listener;
        const p = new Promise((resolve, reject) => {
            listener = (line) => {
                if (pred(line)) resolve(line);
            };
            this._listeners.add(listener);
            this.exited.then(() => reject(new Error(`${this.name} exited while waiting: ${what}`)));
        });
        return withTimeout(p, ms, `${this.name}: ${what}`).finally(() =>
            this._listeners.delete(listener),
        );
    }

    output() {
        return `--- ${this.name} stdout\n${this.stdoutLines.join("\n")}\n--- ${this.name} stderr\n${this.stderrLines.join("\n")}`;
    }

    /* Sends SIGKILL when still running and waits (bounded) for the exit. */
    async kill() {
        this.termSent = true;
        if (this.running) {
            try {
                this.proc.kill("SIGKILL");
            } catch {
                /* already gone */
            }
        }
        await withTimeout(this.exited, 5000, `${this.name} to die after SIGKILL`).catch(() => {});
    }

    /* Sends SIGTERM and waits at most ms for the exit; returns {code, signal, ms}. */
    async terminate(ms = 15000) {
        const t0 = Date.now();
        this.termSent = true;
        if (this.running) this.proc.kill("SIGTERM");
        const r = await withTimeout(this.exited, ms, `${this.name} to exit after SIGTERM`);
        return { ...r, ms: Date.now() - t0 };
    }

    /* Resident set size in bytes, from /proc/PID/status. */
    rss() {
        const s = readFileSync(`/proc/${this.pid}/status`, "utf8");
        const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(s);
        return m ? Number(m[1]) * 1024 : NaN;
    }
}

/* Kills every child still running and removes temp dirs: for `after` hooks. */
export async function killAll() {
    await Promise.all([...children].map((c) => c.kill()));
    for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

function killChildrenNow() {
    for (const c of children) {
        try {
            c.proc.kill("SIGKILL");
        } catch {
            /* gone */
        }
    }
    for (const d of tempDirs.splice(0)) {
        try {
            rmSync(d, { recursive: true, force: true });
        } catch {
            /* best effort at exit */
        }
    }
}

process.on("exit", killChildrenNow);
/* The test runner ends a file that outlives its time bound with SIGTERM, which skips the
 * `after` hooks and the exit hook: the servers it started must not outlive it. */
for (const [sig, n] of [
    ["SIGTERM", 15],
    ["SIGINT", 2],
    ["SIGHUP", 1],
]) {
    process.once(sig, () => {
        killChildrenNow();
        process.exit(128 + n);
    });
}

/* GET url with a bounded time; resolves {status, headers, body} or rejects. */
export function httpGet(url, ms = 2000) {
    return new Promise((resolve, reject) => {
        const req = http.get(url, { agent: false, timeout: ms }, (res) => {
            const chunks = [];
            res.on("data", (c) => chunks.push(c));
            res.on("end", () =>
                resolve({
                    status: res.statusCode,
                    headers: res.headers,
                    body: Buffer.concat(chunks).toString(),
                }),
            );
            res.on("error", reject);
        });
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", reject);
    });
}

/* Resolves once a TCP connection to port succeeds; throws after ms. */
export async function waitForPort(port, ms, child) {
    await waitUntil(
        async () => {
            if (child && !child.running)
                throw new Error(`${child.name} exited early\n${child.output()}`);
            return new Promise((resolve) => {
                const s = net.connect(port, "127.0.0.1");
                s.on("connect", () => {
                    s.destroy();
                    resolve(true);
                });
                s.on("error", () => resolve(false));
            });
        },
        ms,
        `port ${port} to accept connections`,
        50,
    );
}

/* ---------- toolgate ---------- */

export const PERMIT_ALL = {
    rules: [
        { id: "e2e-all-tools", effect: "permit", tools: "*" },
        { id: "e2e-all-resources", effect: "permit", resources: "*" },
        { id: "e2e-all-prompts", effect: "permit", prompts: "*" },
    ],
};

/*
 * Writes a configuration and starts `toolgate serve`. JSON is valid YAML, so the config is
 * written as JSON. opts: routes ([{name, path, url, timeouts}]), limits (server.limits),
 * workers, logLevel, identity (default {mode: "off"}: these tests of the core proxy run
 * without tokens; the identity tests bring issuers; null for no section), policy (default
 * PERMIT_ALL; null for none), extra (top-level sections merged in), env (added to the
 * environment), admin (true, or the admin section's keys: an admin listener on a free loopback
 * port unless `listen` is given; tg.adminBase is its origin). The audit log goes to the
 * default SQLite store in the temp dir.
 */
export async function startToolgate(opts = {}) {
    const port = opts.port ?? (await freePort());
    const dir = tempDir();
    const routes = (opts.routes || []).map((r) => ({
        name: r.name || "mcp",
        path: r.path || "/mcp",
        // r.backends (a list written as in the config) replaces the one-backend short form.
        backends: r.backends ?? [{ name: r.backendName || "backend", url: r.url }],
        ...(r.timeouts ? { timeouts: r.timeouts } : {}),
        // The core tests look at exactly what crosses the proxy: no identity is injected
        // unless a test asks for it (routing tests do).
        inject: r.inject ?? { mode: "none" },
    }));
    let admin = null;
    if (opts.admin) {
        admin = { ...(opts.admin === true ? {} : opts.admin) };
        if (!admin.listen) admin.listen = `127.0.0.1:${await freePort()}`;
    }
    const config = {
        ...(admin ? { admin } : {}),
        server: {
            listen: [`127.0.0.1:${port}`],
            workers: opts.workers ?? 2,
            log_level: opts.logLevel || "info",
            limits: { shutdown_timeout: "5s", ...(opts.limits || {}) },
        },
        routes,
        // Test backends listen on loopback, a private destination that must be allowed.
        egress: opts.egress ?? { allow: ["127.0.0.0/8"] },
        // No identity section denies every request; mode off lets the core tests run without
        // tokens (every request acts as "anonymous").
        ...(opts.identity === null ? {} : { identity: opts.identity ?? { mode: "off" } }),
        // No policy section denies every governed action; these tests of the core proxy
        // permit everything unless a test brings its own policy (opts.policy, or null).
        ...(opts.policy === null ? {} : { policy: opts.policy ?? PERMIT_ALL }),
        ...(opts.extra || {}),
    };
    const configPath = path.join(dir, "toolgate.yaml");
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    const child = new Child("toolgate", TOOLGATE_BIN, ["serve", "--config", configPath], {
        cwd: dir,
        env: opts.env,
    });
    const tg = new Toolgate(child, port, configPath, config);
    try {
        await waitUntil(
            async () => {
                if (!child.running) throw new Error(`toolgate exited early\n${child.output()}`);
                try {
                    const r = await httpGet(`${tg.base}/healthz`, 500);
                    return r.status === 200;
                } catch {
                    return false;
                }
            },
            10000,
            "toolgate /healthz",
            50,
        );
    } catch (e) {
        await child.kill();
        throw e;
    }
    return tg;
}

export class Toolgate {
    constructor(child, port, configPath, config) {
        this.child = child;
        this.port = port;
        this.configPath = configPath;
        this.config = config;
        this.base = `http://127.0.0.1:${port}`;
        this.url = `${this.base}/mcp`;
        // The admin listener's origin, when the configuration has one.
        this.adminBase = config.admin ? `http://${config.admin.listen}` : null;
    }

    get pid() {
        return this.child.pid;
    }

    /* Every stderr line that parses as a JSON object. */
    logs() {
        const out = [];
        for (const l of this.child.stderrLines) {
            try {
                const v = JSON.parse(l);
                if (v && typeof v === "object") out.push(v);
            } catch {
                /* not a log line */
            }
        }
        return out;
    }

    /* The per-request log lines ("event":"request"). */
    requestLogs() {
        return this.logs().filter((l) => l.event === "request");
    }

    async waitForLog(pred, ms = 5000, what = "a log line") {
        const line = await this.child.waitForLine((l) => {
            try {
                return pred(JSON.parse(l));
            } catch {
                return false;
            }
        }, ms, what);
        return JSON.parse(line);
    }

    /* Log line of the request with this id (bounded wait: the line is written at the end). */
    logFor(requestId, ms = 3000) {
        return this.waitForLog(
            (l) => l.event === "request" && l.request_id === requestId,
            ms,
            `request log for ${requestId}`,
        );
    }

    rss() {
        return this.child.rss();
    }

    /* Sends SIGTERM (once per process) and waits at most ms for the exit. */
    signalTerm() {
        if (!this.termSent && this.child.running) {
            this.termSent = Date.now();
            this.child.termSent = true;
            this.child.proc.kill("SIGTERM");
        }
    }

    /*
     * SIGTERM (unless already sent through signalTerm), then the process must exit 0 within
     * ms. Returns {code, signal, ms}; ms counts from the SIGTERM.
     */
    async stop(ms = 15000) {
        this.signalTerm();
        const t0 = this.termSent || Date.now();
        const r = {
            ...(await withTimeout(this.child.exited, ms, "toolgate to exit after SIGTERM")),
        };
        r.ms = Date.now() - t0;
        if (r.code !== 0)
            throw new Error(
                `toolgate exited with code ${r.code} signal ${r.signal}\n${this.child.output()}`,
            );
        return r;
    }
}

/* ---------- backends ---------- */

/* server-everything's Streamable HTTP transport on a free port (its endpoint is /mcp). */
export async function startEverything() {
    const port = await freePort();
    const child = new Child("server-everything", process.execPath, [EVERYTHING_JS, "streamableHttp"], {
        env: { PORT: String(port) },
        cwd: E2E_DIR,
    });
    try {
        await waitForPort(port, 15000, child);
    } catch (e) {
        await child.kill();
        throw e;
    }
    return { child, port, url: `http://127.0.0.1:${port}/mcp`, stop: () => child.kill() };
}

/*
 * The demo backend (examples/ehr-backend) in json or sse mode; extraArgs are more flags
 * (--jwks-url ...); port reuses a port (a restarted backend), else a free one is picked.
 */
export async function startEhr(mode = "json", extraArgs = [], port = undefined) {
    port = port ?? (await freePort());
    const child = new Child(
        `ehr-backend(${mode})`,
        EHR_BACKEND_BIN,
        ["--listen", `127.0.0.1:${port}`, "--mode", mode, ...extraArgs],
        {},
    );
    try {
        await waitForPort(port, 10000, child);
    } catch (e) {
        await child.kill();
        throw e;
    }
    return {
        child,
        port,
        url: `http://127.0.0.1:${port}/mcp`,
        stop: () => child.terminate(5000).catch(() => child.kill()),
    };
}

export function readConfig(tg) {
    return readFileSync(tg.configPath, "utf8");
}

export { writeFileSync };
