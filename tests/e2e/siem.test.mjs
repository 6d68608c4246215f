// Audit to a SIEM: the streaming sinks against receivers written here, on loopback. Syslog over
// TCP (octet-counted frames parsed as RFC 6587 says), over TLS (a CA, server and client
// certificates made by openssl for this run; the receiver requires the client certificate)
// and over UDP; HTTP as Splunk HEC (the token header checked), as Elastic _bulk (NDJSON action
// lines, answered per item) and as a generic JSON array.
//
// What is proved: real calls through the MCP SDK client, one allowed and one denied, reach
// every sink exactly once, in OCSF (actor, delegation path, correlation ids, trace ids, rule,
// reason) or as the native jsonl record with its chain hash; the RFC 5424 header and its
// structured data are right; a receiver with an unknown certificate is never sent anything;
// a receiver that is down and then up gets what was retried; a stalled receiver leaves
// requests unaffected while its bounded queue drops and counts; tokens never reach the log or
// the admin configuration view; shutdown with a stalled receiver ends within its bound.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import http from "node:http";
import dgram from "node:dgram";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
    startToolgate,
    startEhr,
    killAll,
    tempDir,
    freePort,
    waitUntil,
    withTimeout,
    sleep,
    TOOLGATE_BIN,
} from "./lib/harness.mjs";

after(killAll);

const ISSUER = "https://idp.siem.toolgate.invalid/";
const HEC_TOKEN = "5f1e0c2a-hec-token-never-logged";
const BULK_TOKEN = "bulk-api-key-never-logged";
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const HOSTILE_SUB = 'bob"] [evil@1 a="b\\';
const POLICY = {
    rules: [
        { id: "doctors-read", effect: "permit", tools: ["get_patient", "whoami"], roles_any: ["doctor"] },
        // Conditional, so the tool stays listed and the call is refused with a reason.
        { id: "no-delete", effect: "forbid", tools: ["delete_patient"], when: [{ arg: "/patient_id", matches: "^P[0-9]+$" }] },
        { id: "doctors-write", effect: "permit", tools: ["delete_patient"], roles_any: ["doctor"] },
    ],
};

let dir;
const procs = [];

function openssl(...args) {
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"], timeout: 20000 });
}

function issue(ca, name, san, ext) {
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`,
        "-subj", `/CN=${name}`, "-out", `${name}.csr`);
    const extFile = path.join(dir, `${name}.ext`);
    writeFileSync(extFile, `${san ? `subjectAltName=${san}\n` : ""}extendedKeyUsage=${ext}\n`);
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial",
        "-days", "1", "-out", `${name}.pem`, "-extfile", extFile);
}

function makeCa(name) {
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`,
        "-subj", `/CN=${name}`, "-days", "1", "-out", `${name}.pem`);
}

/* Octet-counted frames (RFC 6587 3.4.1) out of a byte stream; throws on anything else. */
function frameParser(onMessage) {
    let buf = Buffer.alloc(0);
    return (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
            const sp = buf.indexOf(0x20);
            if (sp < 0) {
                assert.ok(buf.length < 8, "a frame length is a few digits");
                return;
            }
            const lenText = buf.subarray(0, sp).toString("latin1");
            assert.match(lenText, /^[1-9][0-9]*$/, "MSG-LEN is NONZERO-DIGIT *DIGIT");
            const len = Number(lenText);
            if (buf.length < sp + 1 + len) return;
            onMessage(buf.subarray(sp + 1, sp + 1 + len));
            buf = buf.subarray(sp + 1 + len);
        }
    };
}

/* RFC 5424: HEADER SP STRUCTURED-DATA [SP MSG], the MSG after a UTF-8 BOM. */
function parse5424(bytes) {
    const s = bytes.toString("utf8");
    const m = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) /.exec(s);
    assert.ok(m, `an RFC 5424 header: ${s.slice(0, 120)}`);
    const [head, pri, timestamp, hostname, app, procid, msgid] = m;
    let rest = s.slice(head.length);
    const sd = {};
    let sdId = null;
    if (rest.startsWith("-")) rest = rest.slice(1);
    else {
        const id = /^\[([^ \]=" ]+)/.exec(rest);
        assert.ok(id, "an SD-ELEMENT");
        sdId = id[1];
        let i = id[0].length;
        while (rest[i] === " ") {
            const pm = /^ ([^ =\]"]+)="/.exec(rest.slice(i));
            assert.ok(pm, `an SD-PARAM at ${rest.slice(i, i + 40)}`);
            i += pm[0].length;
            let v = "";
            for (;;) {
                const c = rest[i++];
                assert.ok(c !== undefined, "the SD-PARAM value ends");
                if (c === "\\" && ['"', "\\", "]"].includes(rest[i])) v += rest[i++];
                else if (c === '"') break;
                else {
                    assert.ok(c !== "]", "']' is escaped inside a value");
                    v += c;
                }
            }
            sd[pm[1]] = v;
        }
        assert.equal(rest[i], "]", "the SD-ELEMENT closes");
        rest = rest.slice(i + 1);
    }
    let msg = null;
    if (rest.length) {
        assert.equal(rest[0], " ");
        assert.equal(rest[1], "\uFEFF", "MSG starts with a BOM (UTF-8)");
        msg = rest.slice(2);
    }
    return { pri: Number(pri), timestamp, hostname, app, procid, msgid, sdId, sd, msg };
}

function startTcpReceiver(port, useTls) {
    const r = { port, messages: [], sockets: new Set(), server: null, clientCerts: [], connections: 0 };
    const onConn = (sock) => {
        r.connections++;
        r.sockets.add(sock);
        if (useTls) r.clientCerts.push(sock.getPeerCertificate()?.subject?.CN);
        sock.on("data", frameParser((m) => r.messages.push(parse5424(m))));
        sock.on("error", () => {});
        sock.on("close", () => r.sockets.delete(sock));
    };
    r.open = () =>
        new Promise((resolve, reject) => {
            r.server = useTls
                ? tls.createServer(
                      {
                          cert: readFileSync(path.join(dir, "receiver.pem")),
                          key: readFileSync(path.join(dir, "receiver.key")),
                          ca: readFileSync(path.join(dir, "ca.pem")),
                          requestCert: true,
                          rejectUnauthorized: true,
                      },
                      onConn,
                  )
                : net.createServer(onConn);
            r.server.on("tlsClientError", () => {});
            r.server.once("error", reject);
            r.server.listen(port, "127.0.0.1", resolve);
        });
    r.close = async () => {
        for (const s of r.sockets) s.destroy();
        if (r.server) await new Promise((res) => r.server.close(() => res()));
        r.server = null;
    };
    return r;
}

async function startUdpReceiver() {
    const r = { messages: [] };
    r.sock = dgram.createSocket("udp4");
    r.sock.on("message", (m) => r.messages.push(parse5424(m)));
    await new Promise((res) => r.sock.bind(0, "127.0.0.1", res));
    r.port = r.sock.address().port;
    r.close = () => new Promise((res) => r.sock.close(res));
    return r;
}

/* HEC at /services/collector/event, _bulk at /_bulk, a JSON array at /ingest. */
async function startHttpReceiver() {
    const r = { hec: [], bulk: [], json: [], bulkIds: new Set(), hecDown: false, unauthorized: 0, stall: false };
    r.pending = new Set();
    r.server = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            const body = Buffer.concat(chunks).toString("utf8");
            if (r.stall) {
                r.pending.add(res);
                return; // never answered
            }
            const reply = (status, obj) => {
                const s = JSON.stringify(obj);
                res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s) });
                res.end(s);
            };
            if (req.url === "/services/collector/event") {
                if (req.headers.authorization !== `Splunk ${HEC_TOKEN}`) {
                    r.unauthorized++;
                    return reply(401, { text: "Invalid authorization", code: 3 });
                }
                if (r.hecDown) return reply(503, { text: "Server is busy", code: 9 });
                // Events one after another, each a JSON object (newline separated here).
                for (const line of body.split("\n").filter(Boolean)) r.hec.push(JSON.parse(line));
                return reply(200, { text: "Success", code: 0 });
            }
            if (req.url === "/_bulk") {
                if (req.headers.authorization !== `ApiKey ${BULK_TOKEN}`) return reply(401, {});
                assert.equal(req.headers["content-type"], "application/x-ndjson");
                assert.ok(body.endsWith("\n"), "a bulk body ends with a newline");
                const lines = body.split("\n").slice(0, -1);
                const items = [];
                for (let i = 0; i < lines.length; i += 2) {
                    const action = JSON.parse(lines[i]);
                    const doc = JSON.parse(lines[i + 1]);
                    const id = action.create._id;
                    if (r.bulkIds.has(id)) items.push({ create: { _index: action.create._index, _id: id, status: 409 } });
                    else {
                        r.bulkIds.add(id);
                        r.bulk.push({ action, doc });
                        items.push({ create: { _index: action.create._index, _id: id, status: 201 } });
                    }
                }
                return reply(200, { took: 1, errors: items.some((x) => x.create.status >= 300), items });
            }
            if (req.url === "/ingest") {
                const arr = JSON.parse(body);
                assert.ok(Array.isArray(arr), "format json posts an array");
                r.json.push(...arr);
                return reply(202, {});
            }
            reply(404, {});
        });
    });
    await new Promise((res) => r.server.listen(0, "127.0.0.1", res));
    r.port = r.server.address().port;
    r.close = async () => {
        for (const res of r.pending) res.destroy();
        r.server.closeAllConnections?.();
        await new Promise((res) => r.server.close(() => res()));
    };
    return r;
}

async function metricsOf(tg) {
    const r = await fetch(`${tg.adminBase}/metrics`);
    const families = parsePrometheusTextFormat(await r.text());
    const out = {};
    for (const f of families)
        for (const m of f.metrics) out[`${f.name}${m.labels?.sink ? `{${m.labels.sink}}` : ""}`] = Number(m.value);
    return out;
}

function toolgate(...args) {
    return execFileSync(TOOLGATE_BIN, args, { encoding: "utf8", timeout: 20000 });
}

async function connect(url, headers) {
    const client = new Client({ name: "siem-e2e", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
    await withTimeout(client.connect(transport), 10000, "initialize through toolgate");
    return client;
}

function identity(tgBase) {
    return {
        issuers: [
            {
                issuer: ISSUER,
                audiences: [`${tgBase}/mcp`],
                jwks_file: path.join(dir, "idp", "jwks.json"),
                algorithms: ["ES256"],
            },
        ],
        claims: { tenant: "org_id" },
    };
}

function mint(tgBase, sub, roles) {
    return toolgate("token", "--key", path.join(dir, "idp", "private.pem"), "--iss", ISSUER, "--aud", `${tgBase}/mcp`,
        "--sub", sub, "--roles", roles, "--client", "siem-agent", "--claim", "org_id=clinic-7", "--ttl", "10m").trim();
}

before(async () => {
    dir = tempDir();
    makeCa("ca");
    makeCa("other-ca");
    issue("ca", "receiver", "IP:127.0.0.1,DNS:localhost", "serverAuth");
    issue("ca", "gateway-client", "", "clientAuth");
    toolgate("keys", "generate", "--alg", "ES256", "--out", path.join(dir, "idp"));
    writeFileSync(path.join(dir, "hec.token"), `${HEC_TOKEN}\n`);
    writeFileSync(path.join(dir, "bulk.token"), BULK_TOKEN);
    writeFileSync(path.join(dir, "wrong.token"), "not-the-hec-token\n");
});

describe("every sink, every record once", () => {
    let tg, ehr, tcp, tlsRcv, udp, web, client, denier, tgBase, alice, bob;
    const rids = {};

    before(async () => {
        tcp = startTcpReceiver(await freePort(), false);
        await tcp.open();
        tlsRcv = startTcpReceiver(await freePort(), true);
        await tlsRcv.open();
        udp = await startUdpReceiver();
        web = await startHttpReceiver();
        ehr = await startEhr("json");
        const port = await freePort();
        tgBase = `http://127.0.0.1:${port}`;
        const fast = { batch: { max_records: 50, max_wait: "50ms" }, retry: { initial: "50ms", max: "400ms" }, timeout: "5s" };
        tg = await startToolgate({
            port,
            admin: true,
            routes: [{ name: "ehr", path: "/mcp", backendName: "ehr", url: ehr.url, inject: { mode: "headers" } }],
            identity: identity(tgBase),
            policy: POLICY,
            extra: {
                telemetry: { traces: { endpoint: `http://127.0.0.1:${await freePort()}/v1/traces`, sample: 1 } },
                audit: {
                    store: `sqlite:${path.join(dir, "audit-all.db")}`,
                    instance_id: "gw-siem-1",
                    sinks: [
                        { name: "tcp", type: "syslog", address: `127.0.0.1:${tcp.port}`, ...fast },
                        {
                            name: "tls",
                            type: "syslog",
                            transport: "tls",
                            address: `127.0.0.1:${tlsRcv.port}`,
                            payload: "jsonl",
                            facility: "local4",
                            tls: {
                                ca: path.join(dir, "ca.pem"),
                                cert: path.join(dir, "gateway-client.pem"),
                                key: path.join(dir, "gateway-client.key"),
                            },
                            ...fast,
                        },
                        {
                            name: "tls-unknown-ca",
                            type: "syslog",
                            transport: "tls",
                            address: `127.0.0.1:${tlsRcv.port}`,
                            tls: { ca: path.join(dir, "other-ca.pem") },
                            ...fast,
                        },
                        { name: "udp", type: "syslog", transport: "udp", address: `127.0.0.1:${udp.port}`, ...fast },
                        {
                            name: "hec",
                            type: "http",
                            format: "hec",
                            url: `http://127.0.0.1:${web.port}/services/collector/event`,
                            token_file: path.join(dir, "hec.token"),
                            index: "toolgate",
                            ...fast,
                        },
                        {
                            name: "bulk",
                            type: "http",
                            format: "bulk",
                            payload: "jsonl",
                            index: "toolgate-audit",
                            url: `http://127.0.0.1:${web.port}/_bulk`,
                            token_file: path.join(dir, "bulk.token"),
                            ...fast,
                        },
                        { name: "json", type: "http", format: "json", url: `http://127.0.0.1:${web.port}/ingest`, ...fast },
                        {
                            name: "hec-wrong-token",
                            type: "http",
                            format: "hec",
                            url: `http://127.0.0.1:${web.port}/services/collector/event`,
                            token_file: path.join(dir, "wrong.token"),
                            ...fast,
                        },
                    ],
                },
            },
        });
        alice = mint(tgBase, "alice", "doctor,nurse");
        // A subject (the IdP's to choose) written to break out of the syslog structured data.
        bob = mint(tgBase, HOSTILE_SUB, "nurse");
        client = await connect(`${tgBase}/mcp`, {
            Authorization: `Bearer ${alice}`,
            traceparent: `00-${TRACE}-00f067aa0ba902b7-01`,
        });
        const ok = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
        assert.notEqual(ok.isError, true, JSON.stringify(ok));
        const no = await client.callTool({ name: "delete_patient", arguments: { patient_id: "P1" } });
        assert.equal(no.isError, true, "the forbid rule denies");
        denier = await connect(`${tgBase}/mcp`, { Authorization: `Bearer ${bob}` });
        const none = await denier.callTool({ name: "get_patient", arguments: { patient_id: "P2" } }).catch((e) => e);
        assert.ok(none instanceof Error || none.isError, "no permit for a nurse");
    });

    after(async () => {
        await client?.close().catch(() => {});
        await denier?.close().catch(() => {});
        if (tg) await tg.stop();
        if (ehr) await ehr.stop();
        await tcp?.close();
        await tlsRcv?.close();
        await udp?.close();
        await web?.close();
    });

    /* The records of the calls, from the store (the truth the sinks must match). */
    function storeDecisions() {
        const out = toolgate("audit", "export", `sqlite:${path.join(dir, "audit-all.db")}`, "--format", "jsonl");
        return out.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    }

    test("OCSF over TCP syslog: each decision and completion once, header and structured data per RFC 5424", async () => {
        const all = storeDecisions();
        const decisions = all.filter((r) => r.kind === "decision");
        const events = all.filter((r) => r.kind === "decision" || r.kind === "completion");
        assert.ok(decisions.length >= 4, "initialize, calls allowed and denied");
        const calls = decisions.filter((r) => r.method === "tools/call");
        assert.equal(calls.length, 3);
        rids.allowed = calls.find((r) => r.tool === "get_patient" && r.subject === "alice").request_id;
        rids.forbidden = calls.find((r) => r.tool === "delete_patient").request_id;
        rids.nopermit = calls.find((r) => r.subject === HOSTILE_SUB).request_id;
        await waitUntil(() => tcp.messages.length >= events.length, 10000, "every call record over TCP");
        await sleep(300); // nothing more arrives: each once
        assert.equal(tcp.messages.length, events.length, "decision and completion records only, each once (ocsf)");
        assert.equal(tcp.connections, 1, "one connection carries every batch");
        const byKey = new Map(tcp.messages.map((m) => [`${m.sd.request_id}/${m.msgid}`, m]));
        assert.equal(byKey.size, events.length, "no duplicates");
        const byRid = { get: (rid) => byKey.get(`${rid}/decision`) };

        const a = byRid.get(rids.allowed);
        assert.equal(a.pri, 13 * 8 + 6, "facility log audit (13), informational for an allowed call");
        assert.match(a.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
        assert.equal(a.hostname, "gw-siem-1");
        assert.equal(a.app, "toolgate");
        assert.match(a.procid, /^\d+$/);
        assert.equal(a.msgid, "decision");
        assert.equal(a.sdId, "toolgate@32473");
        assert.equal(a.sd.decision, "allow");
        assert.equal(a.sd.tool, "get_patient");
        assert.equal(a.sd.subject, "alice");
        assert.equal(a.sd.trace_id, TRACE);
        const ev = JSON.parse(a.msg);
        assert.equal(ev.class_uid, 6003);
        assert.equal(ev.category_uid, 6);
        assert.equal(ev.activity_id, 99);
        assert.equal(ev.type_uid, 600399);
        assert.equal(ev.status_id, 1);
        assert.equal(ev.action_id, 1);
        assert.equal(ev.actor.user.uid, "alice");
        assert.equal(ev.actor.user.org.uid, "clinic-7");
        assert.deepEqual(ev.actor.user.groups.map((g) => g.name), ["doctor", "nurse"]);
        assert.equal(ev.actor.app_name, "siem-agent");
        assert.equal(ev.actor.idp.name, ISSUER);
        assert.deepEqual(ev.actor.authorizations, [{ decision: "allowed", policy: { uid: "doctors-read", name: "doctors-read" } }]);
        assert.equal(ev.api.operation, "tools/call");
        assert.equal(ev.api.request.uid, rids.allowed);
        assert.equal(ev.api.service.name, "ehr");
        assert.deepEqual(ev.resources, [{ name: "get_patient", type: "tool" }]);
        assert.equal(ev.metadata.correlation_uid, rids.allowed);
        assert.equal(ev.metadata.version, "1.3.0");
        assert.equal(ev.metadata.product.name, "toolgate");
        assert.equal(ev.metadata.tenant_uid, "clinic-7");
        const stored = decisions.find((r) => r.request_id === rids.allowed);
        assert.equal(ev.metadata.uid, stored.hash, "the chain hash names the event");
        assert.equal(ev.metadata.sequence, stored.seq);
        assert.equal(String(stored.seq), a.sd.seq);
        assert.equal(ev.unmapped.trace_id, TRACE);
        assert.match(ev.unmapped.span_id, /^[0-9a-f]{16}$/);
        assert.equal(ev.actor.session.uid, stored.session_sha256, "the session, hashed");
        assert.deepEqual(ev.unmapped.delegation, [
            { role: "user", uid: "alice" },
            { role: "client", uid: "siem-agent" },
            { role: "gateway", uid: "gw-siem-1" },
            { role: "backend", name: "ehr", route: "ehr", identity: "headers" },
        ]);
        assert.ok(!a.msg.includes("\"P1\""), "argument values are not in the event");

        // The same call's completion: its outcome, correlated by the request id.
        const ac = byKey.get(`${rids.allowed}/completion`);
        assert.ok(ac, "the allowed call's completion arrived");
        const done = events.find((r) => r.kind === "completion" && r.request_id === rids.allowed);
        const ce = JSON.parse(ac.msg);
        assert.equal(ce.class_uid, 6003);
        assert.equal(ce.metadata.event_code, "completion");
        assert.equal(ce.metadata.correlation_uid, rids.allowed);
        assert.equal(ce.metadata.uid, done.hash);
        assert.equal(ce.status, "Success");
        assert.equal(ce.action, "Allowed");
        assert.equal(ce.api.response.code, done.response_status);
        assert.equal(ce.unmapped.upstream_status, done.upstream_status);
        assert.equal(ce.unmapped.result_sha256, done.result_sha256);
        assert.equal(ce.duration, Math.floor(done.latency_ns.total / 1e6));
        assert.equal(ce.end_time - ce.start_time, ce.duration);
        assert.equal(ce.actor.user.uid, "alice");
        assert.ok(!ac.msg.includes("\"P1\""), "argument values are not in the completion either");
        const fc = JSON.parse(byKey.get(`${rids.forbidden}/completion`).msg);
        assert.equal(fc.action, "Denied");
        assert.equal(fc.status_detail, "denied by the policy layer");

        const f = JSON.parse(byRid.get(rids.forbidden).msg);
        assert.equal(byRid.get(rids.forbidden).pri, 13 * 8 + 4, "warning for a denial");
        assert.equal(byRid.get(rids.forbidden).sd.layer, "policy");
        assert.equal(f.status_id, 2);
        assert.equal(f.action, "Denied");
        assert.equal(f.disposition_id, 2);
        assert.equal(f.status_code, stored && decisions.find((r) => r.request_id === rids.forbidden).reason_code);
        assert.equal(f.unmapped.layer, "policy");
        assert.deepEqual(f.unmapped.rule_ids, ["no-delete"]);
        assert.deepEqual(f.actor.authorizations, [{ decision: "denied", policy: { uid: "no-delete", name: "no-delete" } }]);
        assert.equal(f.api.response.error, f.status_code);
        // The hostile subject arrives intact inside its SD-PARAM (parse5424 refuses an
        // unescaped ']'), and the element is the only one.
        const hm = byRid.get(rids.nopermit);
        assert.equal(hm.sd.subject, HOSTILE_SUB);
        assert.equal(hm.sdId, "toolgate@32473");
        assert.equal(hm.sd.a, undefined, "no parameter smuggled in");
        const n = JSON.parse(hm.msg);
        assert.equal(n.actor.user.uid, HOSTILE_SUB);
        assert.equal(n.status, "Failure");
    });

    test("jsonl over TLS with a client certificate: every record with its hash, once", async () => {
        const all = storeDecisions();
        await waitUntil(() => tlsRcv.messages.length >= all.length, 10000, "every record over TLS");
        await sleep(300);
        const seqs = tlsRcv.messages.map((m) => Number(m.sd.seq));
        assert.equal(new Set(seqs).size, seqs.length, "no record twice");
        for (const r of all) {
            const m = tlsRcv.messages.find((x) => Number(x.sd.seq) === r.seq);
            assert.ok(m, `seq ${r.seq} (${r.kind}) arrived`);
            assert.equal(m.msgid, r.kind);
            assert.deepEqual(JSON.parse(m.msg), r, "the record exactly as stored, hash included");
            assert.equal(m.pri >> 3, 20, "facility local4");
        }
        assert.deepEqual(tlsRcv.clientCerts, ["gateway-client"], "the client certificate was presented");
        assert.equal(tlsRcv.connections, 1, "one TLS connection carries every batch");
    });

    test("a receiver whose certificate the CA file does not vouch for gets nothing", async () => {
        const m = await metricsOf(tg);
        assert.equal(m["toolgate_audit_sink_sent_total{tls-unknown-ca}"], 0);
        assert.ok(m["toolgate_audit_sink_retries_total{tls-unknown-ca}"] >= 1);
        assert.equal(m["toolgate_audit_sink_up{tls-unknown-ca}"], 0);
        assert.ok(m["toolgate_audit_sink_queue_depth{tls-unknown-ca}"] >= 0);
        assert.ok(tg.child.output().includes("certificate not verified"), "the log says why");
    });

    test("UDP datagrams, HEC events with the token, bulk documents by id, a JSON array", async () => {
        const decisions = storeDecisions().filter((r) => r.kind === "decision" || r.kind === "completion");
        const all = storeDecisions();
        await waitUntil(
            () => udp.messages.length >= decisions.length && web.hec.length >= decisions.length &&
                web.bulk.length >= all.length && web.json.length >= decisions.length,
            10000,
            "UDP, HEC, bulk and JSON deliveries",
        );
        await sleep(300);
        assert.equal(udp.messages.length, decisions.length);
        assert.deepEqual(new Set(udp.messages.map((m) => m.sd.request_id)), new Set(decisions.map((r) => r.request_id)));
        for (const u of udp.messages) assert.equal(JSON.parse(u.msg).class_uid, 6003, "whole OCSF events, not cut");

        assert.equal(web.hec.length, decisions.length);
        const h = web.hec.find((e) => e.event.api.request.uid === rids.allowed);
        assert.equal(h.host, "gw-siem-1");
        assert.equal(h.source, "toolgate");
        assert.equal(h.sourcetype, "ocsf:api_activity");
        assert.equal(h.index, "toolgate");
        assert.equal(typeof h.time, "number");
        assert.equal(h.event.class_uid, 6003);

        assert.equal(web.bulk.length, all.length, "every record, once");
        for (const { action, doc } of web.bulk) {
            assert.equal(action.create._index, "toolgate-audit");
            assert.equal(action.create._id, `gw-siem-1-${doc.seq}`);
            assert.match(doc.hash, /^[0-9a-f]{64}$/);
        }
        assert.equal(web.json.length, decisions.length);
        assert.deepEqual(new Set(web.json.map((e) => e.metadata.correlation_uid)), new Set(decisions.map((r) => r.request_id)));
        const m = await metricsOf(tg);
        assert.equal(m["toolgate_audit_sink_sent_total{hec}"], decisions.length);
        assert.equal(m["toolgate_audit_sink_dropped_total{hec}"], 0);
        assert.equal(m["toolgate_audit_sink_up{hec}"], 1);
        assert.equal(m["toolgate_audit_sink_truncated_total{udp}"], 0);
        assert.equal(m["toolgate_audit_sink_truncated_total{tcp}"], 0);
    });

    test("a receiver that refuses the token: counted as failed, not retried", async () => {
        const decisions = storeDecisions().filter((r) => r.kind === "decision" || r.kind === "completion");
        await waitUntil(async () => (await metricsOf(tg))["toolgate_audit_sink_failed_total{hec-wrong-token}"] >= decisions.length,
            10000, "the refusals counted");
        const m = await metricsOf(tg);
        assert.equal(m["toolgate_audit_sink_sent_total{hec-wrong-token}"], 0);
        assert.equal(m["toolgate_audit_sink_retries_total{hec-wrong-token}"], 0, "a 401 is not retried");
        assert.ok(web.unauthorized >= 1);
        assert.match(tg.child.output(), /audit sink hec-wrong-token: the receiver refused records \(HTTP 401\); \d+ records are not sent again/);
    });

    test("tokens stay out of the log and the admin configuration view", async () => {
        const out = tg.child.output();
        assert.ok(!out.includes(HEC_TOKEN) && !out.includes(BULK_TOKEN), "no token in the log");
        const r = await fetch(`${tg.adminBase}/admin/api/config`);
        assert.equal(r.status, 200);
        const text = await r.text();
        assert.ok(!text.includes(path.join(dir, "hec.token")), "token_file elided");
        assert.ok(!text.includes(HEC_TOKEN));
        assert.ok(text.includes("tls-unknown-ca"), "the rest of the sinks is shown");
    });
});

test("a token file that cannot be read stops the start and says which", async () => {
    const port = await freePort();
    await assert.rejects(
        startToolgate({
            port,
            routes: [{ url: "http://127.0.0.1:9/mcp" }],
            extra: {
                audit: {
                    store: `sqlite:${path.join(dir, "audit-notoken.db")}`,
                    sinks: [{ name: "hec", type: "http", format: "hec", url: "http://127.0.0.1:9/x", token_file: path.join(dir, "missing.token") }],
                },
            },
        }),
        /audit sink hec: cannot read token_file .*missing\.token: No such file or directory/,
    );
});

describe("a receiver down, then up", () => {
    let tg, ehr, tcp, web, client, tgBase;

    before(async () => {
        tcp = startTcpReceiver(await freePort(), false);
        web = await startHttpReceiver();
        ehr = await startEhr("json");
        const port = await freePort();
        tgBase = `http://127.0.0.1:${port}`;
        const fast = { batch: { max_records: 20, max_wait: "20ms" }, retry: { initial: "50ms", max: "200ms" }, timeout: "5s" };
        tg = await startToolgate({
            port,
            admin: true,
            routes: [{ name: "ehr", path: "/mcp", url: ehr.url }],
            identity: identity(tgBase),
            policy: POLICY,
            extra: {
                audit: {
                    store: `sqlite:${path.join(dir, "audit-down.db")}`,
                    sinks: [
                        { name: "tcp", type: "syslog", address: `127.0.0.1:${tcp.port}`, ...fast },
                        {
                            name: "hec",
                            type: "http",
                            format: "hec",
                            url: `http://127.0.0.1:${web.port}/services/collector/event`,
                            token_file: path.join(dir, "hec.token"),
                            ...fast,
                        },
                    ],
                },
            },
        });
        client = await connect(`${tgBase}/mcp`, { Authorization: `Bearer ${mint(tgBase, "alice", "doctor")}` });
    });

    after(async () => {
        await client?.close().catch(() => {});
        if (tg) await tg.stop();
        if (ehr) await ehr.stop();
        await tcp?.close();
        await web?.close();
    });

    test("records made while the receivers were down arrive once they are up, each once", async () => {
        web.hecDown = true;
        const rids = [];
        for (let i = 0; i < 5; i++) {
            const t0 = Date.now();
            const r = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
            assert.notEqual(r.isError, true);
            assert.ok(Date.now() - t0 < 2000, "calls are not held up by the sinks");
        }
        await waitUntil(async () => {
            const m = await metricsOf(tg);
            return m["toolgate_audit_sink_retries_total{tcp}"] >= 2 && m["toolgate_audit_sink_retries_total{hec}"] >= 2;
        }, 10000, "both sinks retrying");
        let m = await metricsOf(tg);
        assert.equal(m["toolgate_audit_sink_up{tcp}"], 0);
        assert.ok(m["toolgate_audit_sink_queue_depth{tcp}"] + 0 >= 0);
        const logs = tg.child.output();
        assert.match(logs, /audit sink tcp: cannot connect/);
        assert.match(logs, /audit sink hec: the receiver answered HTTP 503/);

        await tcp.open();
        web.hecDown = false;
        const out = toolgate("audit", "export", `sqlite:${path.join(dir, "audit-down.db")}`, "--format", "jsonl");
        const decisions = out
            .split("\n")
            .filter(Boolean)
            .map((l) => JSON.parse(l))
            .filter((r) => r.kind === "decision" || r.kind === "completion");
        for (const r of decisions) rids.push(r.request_id);
        await waitUntil(() => tcp.messages.length >= rids.length && web.hec.length >= rids.length, 10000,
            "delivery after the receivers came back");
        await sleep(300);
        assert.deepEqual(tcp.messages.map((x) => x.sd.request_id).sort(), [...rids].sort(), "each once over TCP");
        assert.deepEqual(web.hec.map((e) => e.event.api.request.uid).sort(), [...rids].sort(), "each once to HEC");
        m = await metricsOf(tg);
        assert.equal(m["toolgate_audit_sink_dropped_total{tcp}"], 0);
        assert.equal(m["toolgate_audit_sink_up{tcp}"], 1);
        assert.equal(m["toolgate_audit_sink_up{hec}"], 1);
        assert.match(tg.child.output(), /audit sink tcp delivers again/);
    });

    test("a receiver restarted under an open connection: the next records reach the new one", async () => {
        await tcp.close();
        await tcp.open();
        const before = tcp.messages.length;
        await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
        await waitUntil(() => tcp.messages.length >= before + 1, 10000, "a record after the restart");
    });
});

describe("a stalled receiver", () => {
    let tg, ehr, web, client, tgBase;

    before(async () => {
        web = await startHttpReceiver();
        web.stall = true;
        ehr = await startEhr("json");
        const port = await freePort();
        tgBase = `http://127.0.0.1:${port}`;
        tg = await startToolgate({
            port,
            admin: true,
            routes: [{ name: "ehr", path: "/mcp", url: ehr.url }],
            identity: identity(tgBase),
            policy: POLICY,
            extra: {
                audit: {
                    store: `sqlite:${path.join(dir, "audit-stall.db")}`,
                    sinks: [
                        {
                            name: "stuck",
                            type: "http",
                            format: "ndjson",
                            payload: "jsonl",
                            url: `http://127.0.0.1:${web.port}/stuck`,
                            queue: 16,
                            batch: { max_records: 4, max_wait: "10ms" },
                            timeout: "2s",
                        },
                    ],
                },
            },
        });
        client = await connect(`${tgBase}/mcp`, { Authorization: `Bearer ${mint(tgBase, "alice", "doctor")}` });
    });

    after(async () => {
        await client?.close().catch(() => {});
        if (tg) await tg.stop();
        if (ehr) await ehr.stop();
        await web?.close();
    });

    test("requests go on at their usual pace; the bounded queue drops and counts; shutdown is bounded", async () => {
        const times = [];
        for (let i = 0; i < 40; i++) {
            const t0 = process.hrtime.bigint();
            const r = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
            times.push(Number(process.hrtime.bigint() - t0) / 1e6);
            assert.notEqual(r.isError, true);
        }
        times.sort((a, b) => a - b);
        assert.ok(times[Math.floor(times.length * 0.9)] < 500, `p90 ${times[36]} ms`);
        const m = await metricsOf(tg);
        assert.ok(m["toolgate_audit_sink_dropped_total{stuck}"] > 0, "drops are counted");
        assert.ok(m["toolgate_audit_sink_queue_depth{stuck}"] <= 16, "the queue stays within its bound");
        assert.equal(m["toolgate_audit_sink_queue_capacity{stuck}"], 16);
        assert.equal(m["toolgate_audit_sink_sent_total{stuck}"], 0);
        assert.equal(m.toolgate_audit_store_failed, 0, "the store is unaffected");
        const rc = JSON.parse(
            toolgate("audit", "stats", `sqlite:${path.join(dir, "audit-stall.db")}`, "--format", "json"),
        );
        assert.ok(rc.total >= 40, "every call is in the store");
        const t0 = Date.now();
        await tg.stop();
        assert.ok(Date.now() - t0 < 8000, `shutdown took ${Date.now() - t0} ms`);
        tg = null;
    });
});
