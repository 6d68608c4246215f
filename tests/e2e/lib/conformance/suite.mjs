// Running the MCP conformance suite (@modelcontextprotocol/conformance) from the tests: its
// server scenarios one process each, bounded in time, results read from its checks.json; a
// loopback shim that adds a bearer token (the suite sends none); and toolgate configured with
// real keys in front of a backend for the suite to reach through the shim.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { E2E_DIR, PERMIT_ALL, Child, freePort, waitForPort } from "../harness.mjs";
import { startIdentityGateway } from "../identity-gateway.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
// The suite in two releases: 0.1.16 (the 2025 revisions) and 0.2.0-alpha.12, installed as
// `conformance-2026` (2026-07-28 and its frozen requirement sets). Every function below takes
// the release as `cli` (default 0.1.16).
export const CLI = path.join(E2E_DIR, "node_modules/@modelcontextprotocol/conformance/dist/index.js");
export const CLI_2026 = path.join(E2E_DIR, "node_modules/conformance-2026/dist/index.js");
// Node 20 lacks fs.globSync, which the suite's build imports: see register.mjs.
const nodeArgs = (cli) => ["--import", path.join(here, "register.mjs"), cli];

/* Runs the suite's CLI with args; resolves {code, signal, stdout, stderr, timedOut}. */
function runCli(args, ms, cli = CLI) {
    return new Promise((resolve) => {
        const p = spawn(process.execPath, [...nodeArgs(cli), ...args], {
            cwd: E2E_DIR,
            stdio: ["ignore", "pipe", "pipe"],
            env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" },
        });
        let stdout = "";
        let stderr = "";
        let timedOut = false;
        p.stdout.setEncoding("utf8").on("data", (s) => (stdout += s));
        p.stderr.setEncoding("utf8").on("data", (s) => (stderr += s));
        const timer = setTimeout(() => {
            timedOut = true;
            p.kill("SIGKILL");
        }, ms);
        p.on("exit", (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr, timedOut });
        });
    });
}

/* Every server scenario the suite has ("all" suite: active and pending), from `list --server`. */
export async function listServerScenarios({ cli = CLI, specVersion } = {}) {
    const r = await runCli(["list", "--server", ...(specVersion ? ["--spec-version", specVersion] : [])], 30000, cli);
    if (r.code !== 0) throw new Error(`conformance list failed (${r.code})\n${r.stdout}\n${r.stderr}`);
    return r.stdout
        .split("\n")
        .map((l) => /^\s+- (\S+)/.exec(l)?.[1])
        .filter(Boolean);
}

/*
 * One scenario against url in its own process, killed after ms. Resolves {scenario, checks,
 * output}: checks as the suite wrote them (each {id, name, status, errorMessage, ...}); a run
 * that wrote none (crash, timeout) gives one FAILURE check saying so.
 */
export async function runScenario(url, scenario, ms = 60000, { cli = CLI, specVersion } = {}) {
    const out = mkdtempSync(path.join(os.tmpdir(), "toolgate-conformance-"));
    try {
        const args = ["server", "--url", url, "--scenario", scenario, "-o", out];
        // The 2026 release runs a scenario at the wire of the revision named (and its own timeout).
        if (specVersion) args.push("--spec-version", specVersion, "--timeout", String(ms));
        const r = await runCli(args, ms + (specVersion ? 5000 : 0), cli);
        const dirs = readdirSync(out).filter((d) => existsSync(path.join(out, d, "checks.json")));
        const output = `${r.stdout}\n${r.stderr}`;
        if (dirs.length !== 1)
            return {
                scenario,
                output,
                checks: [
                    {
                        id: scenario,
                        name: scenario,
                        status: "FAILURE",
                        errorMessage: r.timedOut
                            ? `scenario did not finish within ${ms} ms`
                            : `no results (exit ${r.code}, signal ${r.signal})`,
                    },
                ],
            };
        const checks = JSON.parse(readFileSync(path.join(out, dirs[0], "checks.json"), "utf8"));
        return { scenario, checks, output };
    } finally {
        rmSync(out, { recursive: true, force: true });
    }
}

const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/;

/* checks.json of every scenario the suite wrote under out, by scenario name. */
function readResults(out) {
    const byName = new Map();
    for (const d of readdirSync(out)) {
        const m = RESULT_DIR.exec(d);
        // A scenario killed while it ran has its directory but no checks.json.
        if (m && existsSync(path.join(out, d, "checks.json"))) byName.set(m[1], JSON.parse(readFileSync(path.join(out, d, "checks.json"), "utf8")));
    }
    return byName;
}

/*
 * Every scenario against url: the suite's own run of all of them in one process (quick), with
 * a watchdog per scenario: when one has not finished within ms the process is killed, that
 * scenario fails with "did not finish", and the ones left run in processes of their own, three
 * at a time, each bounded by ms too. Results in the order of `scenarios`.
 *
 * By default the run is 0.1.16's "all" suite. With {cli: CLI_2026, requirements: revision} it is
 * the 2026 release's frozen requirement set for that revision (`--requirements`, scored and not
 * scored scenarios alike, each also bounded by the suite's own `--timeout ms`); the scenarios left
 * after a kill then run at that revision's wire (`--spec-version`).
 */
export async function runSuite(url, scenarios, ms = 60000, { cli = CLI, requirements } = {}) {
    const out = mkdtempSync(path.join(os.tmpdir(), "toolgate-conformance-"));
    const stuck = new Map(); // scenario -> message
    let output = "";
    const select = requirements ? ["--requirements", requirements, "--timeout", String(ms)] : ["--suite", "all"];
    try {
        await new Promise((resolve) => {
            const p = spawn(process.execPath, [...nodeArgs(cli), "server", "--url", url, ...select, "-o", out], {
                cwd: E2E_DIR,
                stdio: ["ignore", "pipe", "pipe"],
                env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" },
            });
            let current;
            let timer;
            const arm = () => {
                clearTimeout(timer);
                timer = setTimeout(() => {
                    if (current) stuck.set(current, `scenario did not finish within ${ms} ms`);
                    p.kill("SIGKILL");
                }, ms);
            };
            arm();
            let rest = "";
            p.stdout.setEncoding("utf8").on("data", (s) => {
                output += s;
                rest += s;
                let i;
                while ((i = rest.indexOf("\n")) >= 0) {
                    const m = /^=== Running scenario: (\S+) ===/.exec(rest.slice(0, i));
                    rest = rest.slice(i + 1);
                    if (m) {
                        current = m[1];
                        arm();
                    }
                }
            });
            p.stderr.setEncoding("utf8").on("data", (s) => (output += s));
            p.on("exit", () => {
                clearTimeout(timer);
                resolve();
            });
        });
        const got = readResults(out);
        const results = scenarios.map((scenario) =>
            got.has(scenario)
                ? { scenario, checks: got.get(scenario) }
                : stuck.has(scenario)
                  ? { scenario, checks: [{ id: scenario, name: scenario, status: "FAILURE", errorMessage: stuck.get(scenario) }] }
                  : undefined,
        );
        // Those left after a kill: one process each, a few at a time (a stuck one mostly waits).
        const left = results.map((r, i) => (r ? -1 : i)).filter((i) => i >= 0);
        const worker = async () => {
            while (left.length > 0) {
                const i = left.shift();
                results[i] = await runScenario(url, scenarios[i], ms, requirements ? { cli, specVersion: requirements } : { cli });
            }
        };
        await Promise.all(Array.from({ length: Math.min(3, left.length) }, worker));
        return { results, output };
    } finally {
        rmSync(out, { recursive: true, force: true });
    }
}

/*
 * A frozen requirement set of the 2026 release (`requirements/<revision>.yaml`), its server leg:
 * {scored: the scenarios conformance to the revision requires, notScored: [{scenario, reason}]
 * (run and reported, never counted)}. The file is a plain two-level YAML list; read line by line.
 */
export function requirementSet(revision) {
    const file = path.join(path.dirname(path.dirname(CLI_2026)), "requirements", `${revision}.yaml`);
    const scored = [];
    const notScored = [];
    let section;
    let entry;
    for (const line of readFileSync(file, "utf8").split("\n")) {
        if (/^\S/.test(line) && !line.startsWith("#")) {
            section = line.replace(/:.*$/, "");
            continue;
        }
        const item = /^ {2}- (.+)$/.exec(line);
        if (section === "server" && item) scored.push(item[1].trim());
        if (section !== "not_scored") continue;
        const start = /^ {2}- scenario: (\S+)/.exec(line);
        if (start) notScored.push((entry = { scenario: start[1] }));
        const field = /^ {4}(leg|reason): (\S+)/.exec(line);
        if (field && entry) entry[field[1]] = field[2];
    }
    return { scored, notScored: notScored.filter((e) => e.leg === "server").map(({ scenario, reason }) => ({ scenario, reason })) };
}

/* Totals as the suite counts them: SUCCESS and FAILURE checks (INFO/WARNING not scored). */
export function score(results) {
    let passed = 0;
    let failed = 0;
    let warnings = 0;
    for (const r of results)
        for (const c of r.checks) {
            if (c.status === "SUCCESS") passed++;
            else if (c.status === "FAILURE") failed++;
            else if (c.status === "WARNING") warnings++;
        }
    return { passed, failed, warnings };
}

export const failedChecks = (r) => r.checks.filter((c) => c.status === "FAILURE");
export const warnedChecks = (r) => r.checks.filter((c) => c.status === "WARNING");

/* One line per failed (and warned) check: scenario, check id, message. */
export function describeFailures(results, { warnings = false } = {}) {
    const lines = [];
    for (const r of results)
        for (const c of [...failedChecks(r), ...(warnings ? warnedChecks(r) : [])])
            lines.push(`${r.scenario} / ${c.id} [${c.status}]: ${c.errorMessage ?? c.description ?? ""}`);
    return lines.join("\n");
}

/*
 * The reference server (everything-server.mjs, or with {era: 2026} server-2026.mjs, the SDK v2
 * backend for the 2026-07-28 scenarios) as a child process on a free loopback port.
 */
export async function startReferenceServer({ era } = {}) {
    const port = await freePort();
    const [name, file] = era === 2026 ? ["conformance-2026", "server-2026.mjs"] : ["conformance-everything", "everything-server.mjs"];
    const child = new Child(name, process.execPath, [path.join(here, file), String(port)], {
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
 * A loopback HTTP front that relays every request, streaming both ways, to targetPort: with
 * token, `Authorization: Bearer <token>` is added (the suite sends none); everything else
 * (Host, Origin, the body, every header) goes on as the client sent it, so toolgate sees the
 * client's own request. Two options make it a different client on the wire:
 *   initVersion: the protocolVersion an initialize request offers is replaced by this one
 *     (the suite's client offers 2025-11-25 only; a server that answers with an older revision
 *     it supports makes the client speak that revision for the session);
 *   mapHost: Host and Origin naming the shim itself are rewritten to name the target (for a
 *     target that checks them against its own address); others (a rebinding probe's) stay.
 */
export async function startTokenShim({ port, targetPort, token, initVersion, mapHost = false }) {
    port = port ?? (await freePort());
    const self = `127.0.0.1:${port}`;
    const target = `127.0.0.1:${targetPort}`;
    const sockets = new Set();
    const relay = (req, res, body) => {
        const headers = {};
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
            const k = req.rawHeaders[i];
            let v = req.rawHeaders[i + 1];
            const lk = k.toLowerCase();
            if (lk === "authorization" && token) continue;
            if (body && lk === "content-length") v = String(body.length);
            if (mapHost && lk === "host" && v === self) v = target;
            if (mapHost && lk === "origin" && v === `http://${self}`) v = `http://${target}`;
            headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
        }
        if (token) headers.Authorization = `Bearer ${token}`;
        const up = http.request({ host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers, agent: false });
        up.on("response", (ur) => {
            res.writeHead(ur.statusCode, ur.statusMessage, ur.rawHeaders);
            res.flushHeaders();
            ur.on("data", (c) => res.write(c));
            ur.on("end", () => res.end());
            ur.on("error", () => res.destroy());
        });
        up.on("error", (e) => {
            if (!res.headersSent) {
                res.writeHead(502, { "Content-Type": "text/plain" });
                res.end(`shim: ${e.message}`);
            } else res.destroy();
        });
        res.on("close", () => {
            if (!res.writableFinished) up.destroy();
        });
        if (body) up.end(body);
        else req.pipe(up);
    };
    const server = http.createServer((req, res) => {
        if (!initVersion || req.method !== "POST") return relay(req, res);
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            let body = Buffer.concat(chunks);
            try {
                const msg = JSON.parse(body.toString("utf8"));
                if (msg && msg.method === "initialize" && msg.params) {
                    msg.params.protocolVersion = initVersion;
                    body = Buffer.from(JSON.stringify(msg));
                }
            } catch {
                /* not JSON: relayed as it is */
            }
            relay(req, res, body);
        });
    });
    server.on("connection", (s) => {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
        server.on("error", reject);
        server.listen(port, "127.0.0.1", resolve);
    });
    return {
        port,
        url: `http://127.0.0.1:${port}/mcp`,
        close: () =>
            new Promise((r) => {
                for (const s of sockets) s.destroy();
                server.close(() => r());
            }),
    };
}

/*
 * toolgate with real identity in front of backendUrl, reached through a token shim: the token
 * is minted for audience <shim>/mcp, and the shim's origin (the address clients use) is
 * toolgate's public_url and allowed origin. Resolves {tg, shim, url (the shim's /mcp), token,
 * mint, auditDb}.
 */
export async function startGatewayWithShim(backendUrl, { policy = PERMIT_ALL, initVersion, integrity } = {}) {
    const shimPort = await freePort();
    const gw = await startIdentityGateway({ routes: [{ url: backendUrl }], policy, front: `http://127.0.0.1:${shimPort}`, integrity });
    const token = gw.mint({ sub: "conformance-user" });
    const shim = await startTokenShim({ port: shimPort, targetPort: gw.tg.port, token, initVersion });
    return { ...gw, shim, url: shim.url, token };
}
