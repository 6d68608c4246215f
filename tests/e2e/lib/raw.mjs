// Raw HTTP/1.1 over node's `net`: the tests write exact bytes and read exact responses, so
// framing (100-continue, chunked, pipelining, connection close) is observable.
import net from "node:net";
import { withTimeout } from "./harness.mjs";

export class RawConn {
    static open(port, ms = 3000) {
        return withTimeout(
            new Promise((resolve, reject) => {
                const s = net.connect(port, "127.0.0.1");
                s.once("connect", () => resolve(new RawConn(s)));
                s.once("error", reject);
            }),
            ms,
            `connect to ${port}`,
        );
    }

    constructor(socket) {
        this.socket = socket;
        this.buf = Buffer.alloc(0);
        this.ended = false; /* the peer closed (FIN or reset) */
        this.error = null;
        this.waiters = new Set();
        socket.on("data", (d) => {
            this.buf = Buffer.concat([this.buf, d]);
            this._wake();
        });
        socket.on("end", () => {
            this.ended = true;
            this._wake();
        });
        socket.on("close", () => {
            this.ended = true;
            this._wake();
        });
        socket.on("error", (e) => {
            this.error = e;
            this.ended = true;
            this._wake();
        });
        this.endedAt = null;
        socket.once("close", () => (this.endedAt = Date.now()));
    }

    _wake() {
        for (const w of [...this.waiters]) w();
    }

    /* Resolves when check() returns non-undefined, re-checking on every event; bounded. */
    _wait(check, ms, what) {
        let waiter;
        const p = new Promise((resolve, reject) => {
            waiter = () => {
                try {
                    const v = check();
                    if (v !== undefined) resolve(v);
                } catch (e) {
                    reject(e);
                }
            };
            this.waiters.add(waiter);
            waiter();
        });
        return withTimeout(p, ms, what).finally(() => this.waiters.delete(waiter));
    }

    write(data) {
        return new Promise((resolve, reject) =>
            this.socket.write(data, (err) => (err ? reject(err) : resolve())),
        );
    }

    /*
     * Reads one response (a 1xx interim response counts as one). Body framing: Content-Length,
     * chunked, or up to the connection's end. `head` true for a response without a body.
     */
    readResponse(ms = 5000, { noBody = false } = {}) {
        return this._wait(
            () => {
                const r = parseResponse(this.buf, this.ended, noBody);
                if (r === null) {
                    if (this.ended)
                        throw new Error(
                            `connection closed before a whole response (have ${this.buf.length} bytes: ${JSON.stringify(this.buf.toString("latin1").slice(0, 200))})`,
                        );
                    return undefined;
                }
                this.buf = this.buf.subarray(r.consumed);
                return r;
            },
            ms,
            "a whole HTTP response",
        );
    }

    /* Resolves once pred(bytes received and not yet consumed, as latin1 text) is true. */
    waitForData(pred, ms = 5000, what = "data") {
        return this._wait(() => (pred(this.buf.toString("latin1")) ? true : undefined), ms, what);
    }

    /* Resolves true once the peer has closed the connection; bounded. */
    waitClosed(ms = 5000) {
        return this._wait(() => (this.ended ? true : undefined), ms, "the connection to close");
    }

    close() {
        this.socket.destroy();
    }
}

function parseHead(text) {
    const lines = text.split("\r\n");
    const m = /^HTTP\/1\.([01]) (\d{3}) ?(.*)$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
    const headers = {};
    const rawHeaders = [];
    for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        if (i <= 0) throw new Error(`bad header line ${JSON.stringify(l)}`);
        const name = l.slice(0, i).trim();
        const value = l.slice(i + 1).trim();
        rawHeaders.push([name, value]);
        const k = name.toLowerCase();
        headers[k] = headers[k] === undefined ? value : `${headers[k]}, ${value}`;
    }
    return { minor: Number(m[1]), status: Number(m[2]), reason: m[3], headers, rawHeaders };
}

/*
 * Parses one response at the front of buf; null when more bytes are needed. Returns
 * {status, headers, rawHeaders, body (Buffer), chunked, cleanEnd, consumed}. For chunked
 * bodies cleanEnd tells whether the terminating zero-size chunk arrived.
 */
export function parseResponse(buf, ended, noBody = false) {
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) return null;
    const head = parseHead(buf.subarray(0, end).toString("latin1"));
    let off = end + 4;
    const r = { ...head, body: Buffer.alloc(0), chunked: false, cleanEnd: true };
    if (noBody || head.status < 200 || head.status === 204 || head.status === 304) {
        r.consumed = off;
        return r;
    }
    const te = head.headers["transfer-encoding"];
    if (te && /chunked/i.test(te)) {
        r.chunked = true;
        const parts = [];
        for (;;) {
            const le = buf.indexOf("\r\n", off);
            if (le < 0) {
                if (!ended) return null;
                r.cleanEnd = false;
                break;
            }
            const size = parseInt(buf.subarray(off, le).toString("latin1"), 16);
            if (Number.isNaN(size)) throw new Error("bad chunk size");
            if (size === 0) {
                const te2 = buf.indexOf("\r\n", le + 2);
                if (te2 < 0) {
                    if (!ended) return null;
                    r.cleanEnd = false;
                    break;
                }
                off = te2 + 2;
                break;
            }
            if (buf.length < le + 2 + size + 2) {
                if (!ended) return null;
                parts.push(buf.subarray(le + 2, Math.min(buf.length, le + 2 + size)));
                r.cleanEnd = false;
                off = buf.length;
                break;
            }
            parts.push(buf.subarray(le + 2, le + 2 + size));
            off = le + 2 + size + 2;
        }
        r.body = Buffer.concat(parts);
        r.consumed = off;
        return r;
    }
    const cl = head.headers["content-length"];
    if (cl !== undefined) {
        const n = Number(cl);
        if (buf.length < off + n) return null;
        r.body = buf.subarray(off, off + n);
        r.consumed = off + n;
        return r;
    }
    if (!ended) return null;
    r.body = buf.subarray(off);
    r.consumed = buf.length;
    return r;
}

/* Builds a request: method, path, headers (object or [name, value] pairs), body. */
export function request(method, path, headers = {}, body = "") {
    const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
    const hasHost = pairs.some(([n]) => n.toLowerCase() === "host");
    let s = `${method} ${path} HTTP/1.1\r\n`;
    if (!hasHost) s += "Host: 127.0.0.1\r\n";
    for (const [n, v] of pairs) s += `${n}: ${v}\r\n`;
    return s + "\r\n" + body;
}

/* A JSON POST to path with Content-Length. */
export function postJson(path, body, extraHeaders = {}) {
    const b = typeof body === "string" ? body : JSON.stringify(body);
    return request(
        "POST",
        path,
        {
            "Content-Type": "application/json",
            Accept: "application/json, text/event-stream",
            "Content-Length": Buffer.byteLength(b),
            ...extraHeaders,
        },
        b,
    );
}

/* One request on a fresh connection: the response and the connection (closed by the caller). */
export async function exchange(port, bytes, ms = 5000) {
    const c = await RawConn.open(port);
    try {
        await c.write(bytes);
        return await c.readResponse(ms);
    } finally {
        c.close();
    }
}

export function jsonBody(res) {
    return JSON.parse(res.body.toString("utf8"));
}

/* Splits an SSE stream's text into events: [{event, id, data}] (data lines joined by \n). */
export function parseSse(text) {
    const events = [];
    for (const block of text.split(/\r?\n\r?\n/)) {
        if (!block.trim()) continue;
        const ev = { event: "message", id: undefined, data: [] };
        let hasData = false;
        for (const line of block.split(/\r?\n/)) {
            if (line.startsWith(":")) continue;
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            let value = i < 0 ? "" : line.slice(i + 1);
            if (value.startsWith(" ")) value = value.slice(1);
            if (field === "data") {
                ev.data.push(value);
                hasData = true;
            } else if (field === "event") ev.event = value;
            else if (field === "id") ev.id = value;
        }
        if (hasData) events.push({ ...ev, data: ev.data.join("\n") });
    }
    return events;
}
