// A small HTTP backend inside the test process: records every request it receives (method,
// path, raw header pairs, body) and answers through a handler the test can replace.
import http from "node:http";
import net from "node:net";
import { freePort, withTimeout } from "./harness.mjs";

/* The default answer: a JSON-RPC result per request, echoing the method; 202 for the rest. */
export function echoRpc(req, res, body) {
    let msg;
    try {
        msg = JSON.parse(body);
    } catch {
        res.writeHead(400, { "Content-Type": "application/json" });
        res.end('{"error":"backend got invalid json"}');
        return;
    }
    const answer = (m) =>
        m && m.id !== undefined && m.method
            ? { jsonrpc: "2.0", id: m.id, result: { echo: m.method, params: m.params ?? null } }
            : null;
    const out = Array.isArray(msg) ? msg.map(answer).filter(Boolean) : answer(msg);
    if (out === null || (Array.isArray(out) && out.length === 0)) {
        res.writeHead(202);
        res.end();
        return;
    }
    const s = JSON.stringify(out);
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s) });
    res.end(s);
}

export async function startBackend(handler = echoRpc) {
    const port = await freePort();
    const received = [];
    const sockets = new Set();
    const state = { handler };
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            const body = Buffer.concat(chunks).toString("utf8");
            const rec = {
                method: req.method,
                url: req.url,
                rawHeaders: pairs(req.rawHeaders),
                headers: req.headers,
                body,
                at: Date.now(),
            };
            received.push(rec);
            Promise.resolve(state.handler(req, res, body, rec)).catch((e) => {
                if (!res.headersSent) res.writeHead(500);
                res.end(String(e));
            });
        });
    });
    server.keepAliveTimeout = 30000;
    server.on("connection", (s) => {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", resolve);
    });
    return {
        port,
        url: `http://127.0.0.1:${port}/mcp`,
        received,
        sockets,
        setHandler(h) {
            state.handler = h;
        },
        get handler() {
            return state.handler;
        },
        async close() {
            for (const s of sockets) s.destroy();
            await withTimeout(new Promise((r) => server.close(r)), 3000, "backend close").catch(
                () => {},
            );
        },
    };
}

function pairs(raw) {
    const out = [];
    for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
    return out;
}

/*
 * A raw TCP backend: onConnection(socket, firstRequestText) runs once per connection after the
 * request head (and Content-Length body) arrived. For answers node's http module would refuse
 * to write (a connection cut mid-stream, never answering).
 */
export async function startRawBackend(onConnection) {
    const port = await freePort();
    const sockets = new Set();
    const server = net.createServer((s) => {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
        s.on("error", () => {});
        let buf = "";
        let done = false;
        s.on("data", (d) => {
            if (done) return;
            buf += d.toString("latin1");
            const he = buf.indexOf("\r\n\r\n");
            if (he < 0) return;
            const m = /content-length:\s*(\d+)/i.exec(buf.slice(0, he));
            const need = he + 4 + (m ? Number(m[1]) : 0);
            if (buf.length < need) return;
            done = true;
            onConnection(s, buf.slice(0, need));
        });
    });
    await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", resolve);
    });
    return {
        port,
        url: `http://127.0.0.1:${port}/mcp`,
        sockets,
        async close() {
            for (const s of sockets) s.destroy();
            await withTimeout(new Promise((r) => server.close(r)), 3000, "raw backend close").catch(
                () => {},
            );
        },
    };
}

/* The text of one SSE event carrying a JSON-RPC message. */
export function sseEvent(msg, id) {
    return `${id !== undefined ? `id: ${id}\n` : ""}event: message\ndata: ${JSON.stringify(msg)}\n\n`;
}
