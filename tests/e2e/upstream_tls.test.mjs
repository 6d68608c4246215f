// TLS to backends: the backend's certificate is always verified (against the system's CA store,
// or the route's `tls.ca_file`), and a client certificate is presented when configured. The CA,
// the backend's certificate and the client's are made by the test (openssl), for this run only.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { startToolgate, killAll, freePort, tempDir } from "./lib/harness.mjs";

let dir, caFile, clientCert, clientKey, port, server, seen;

function openssl(...args) {
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"], timeout: 20000 });
}

// A CA, a certificate it signs for `name` (with SANs), and its key.
function issue(name, san, ext) {
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-subj", `/CN=${name}`, "-out", `${name}.csr`);
    const extFile = path.join(dir, `${name}.ext`);
    execFileSync("sh", ["-c", `printf '%s\\n' "${san ? `subjectAltName=${san}` : ""}" "extendedKeyUsage=${ext}" > ${extFile}`]);
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-out", `${name}.pem`, "-extfile", extFile);
}

before(async () => {
    dir = tempDir();
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-subj", "/CN=toolgate e2e test CA", "-days", "1", "-out", "ca.pem");
    issue("backend", "IP:127.0.0.1,DNS:localhost", "serverAuth");
    issue("gateway-client", "", "clientAuth");
    caFile = path.join(dir, "ca.pem");
    clientCert = path.join(dir, "gateway-client.pem");
    clientKey = path.join(dir, "gateway-client.key");
    port = await freePort();
    server = https.createServer(
        {
            cert: readFileSync(path.join(dir, "backend.pem")),
            key: readFileSync(path.join(dir, "backend.key")),
            ca: readFileSync(caFile),
            requestCert: true,
            rejectUnauthorized: false, // each request decides below
        },
        (req, res) => {
            let body = "";
            req.on("data", (c) => (body += c));
            req.on("end", () => {
                const peer = req.socket.getPeerCertificate();
                seen = { authorized: req.socket.authorized, cn: peer?.subject?.CN ?? null, path: req.url };
                if (req.url.startsWith("/mtls") && !req.socket.authorized) {
                    res.writeHead(403);
                    return res.end();
                }
                const msg = JSON.parse(body);
                const s = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { tools: [] } });
                res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s) });
                res.end(s);
            });
        },
    );
    await new Promise((r) => server.listen(port, "127.0.0.1", r));
});

after(async () => {
    server?.close();
    await killAll();
});

const list = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });

async function call(tg, p) {
    const res = await fetch(`${tg.base}${p}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
        body: list,
        signal: AbortSignal.timeout(10000),
    });
    return { status: res.status, body: await res.text() };
}

describe("TLS to backends", () => {
    test("verified always: a certificate of an unknown CA is refused; with tls.ca_file it is trusted", async () => {
        const tg = await startToolgate({
            routes: [
                { name: "plain", path: "/plain", backends: [{ name: "b1", url: `https://127.0.0.1:${port}/plain` }] },
                { name: "ca", path: "/ca", backends: [{ name: "b2", url: `https://127.0.0.1:${port}/ca`, tls: { ca_file: caFile } }] },
            ],
        });
        try {
            seen = null;
            const refused = await call(tg, "/plain");
            assert.equal(refused.status, 502, refused.body);
            assert.equal(seen, null, "no request was sent over an unverified connection");
            const ok = await call(tg, "/ca");
            assert.equal(ok.status, 200, ok.body);
            assert.equal(seen.path, "/ca");
            assert.equal(seen.authorized, false, "no client certificate unless configured");
        } finally {
            await tg.stop();
        }
    });

    test("a client certificate is presented when configured; without it an mTLS backend refuses", async () => {
        const tg = await startToolgate({
            routes: [
                { name: "nocert", path: "/nocert", backends: [{ name: "b3", url: `https://127.0.0.1:${port}/mtls-a`, tls: { ca_file: caFile } }] },
                {
                    name: "cert",
                    path: "/cert",
                    backends: [{ name: "b4", url: `https://127.0.0.1:${port}/mtls-b`, tls: { ca_file: caFile, cert_file: clientCert, key_file: clientKey } }],
                },
            ],
        });
        try {
            const without = await call(tg, "/nocert");
            assert.equal(without.status, 403, without.body);
            const withCert = await call(tg, "/cert");
            assert.equal(withCert.status, 200, withCert.body);
            assert.equal(seen.authorized, true);
            assert.equal(seen.cn, "gateway-client");
        } finally {
            await tg.stop();
        }
    });

    test("configuration mistakes are refused at load: half a client certificate, tls on an http endpoint", async () => {
        await assert.rejects(
            startToolgate({ routes: [{ backends: [{ name: "x", url: `https://127.0.0.1:${port}/x`, tls: { cert_file: clientCert } }] }] }),
            /both cert_file and key_file/,
        );
        await assert.rejects(
            startToolgate({ routes: [{ backends: [{ name: "y", url: `http://127.0.0.1:${port}/y`, tls: { ca_file: caFile } }] }] }),
            /https endpoints only/,
        );
    });
});
