// Backpressure on SSE relay: a backend produces a large stream as fast as it can while the
// client reads slowly. toolgate must stop reading from the backend instead of buffering, so
// its memory stays bounded; once the client reads at full speed every event arrives intact.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startToolgate, killAll, sleep, withTimeout } from "./lib/harness.mjs";
import { startBackend } from "./lib/backend.mjs";
import { postJson } from "./lib/raw.mjs";

const TOTAL = 96 * 1024 * 1024; // bytes of events the backend produces
const PAD = 1000; // payload bytes per event
const RSS_BOUND = 32 * 1024 * 1024; // toolgate's growth allowed while the client is slow

let tg;
let backend;
let produced = 0; // bytes the backend's socket accepted so far
let nEvents = 0;

function eventText(seq) {
    const msg = {
        jsonrpc: "2.0",
        method: "notifications/message",
        params: { level: "info", data: { seq, pad: String(seq % 10).repeat(PAD) } },
    };
    return `id: ${seq}\nevent: message\ndata: ${JSON.stringify(msg)}\n\n`;
}

before(async () => {
    nEvents = Math.ceil(TOTAL / eventText(0).length);
    backend = await startBackend(async (req, res, body) => {
        const id = JSON.parse(body).id;
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        for (let seq = 0; seq < nEvents; seq++) {
            const t = eventText(seq);
            produced += t.length;
            // Respect the socket: what toolgate does not read stays out of this process too.
            if (!res.write(t)) await new Promise((r) => res.once("drain", r));
            if (res.destroyed) return;
        }
        res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", id, result: { events: nEvents } })}\n\n`);
    });
    tg = await startToolgate({
        routes: [{ url: backend.url }],
        workers: 1,
        limits: process.env.E2E_WRITE_BUFFER ? { write_buffer: process.env.E2E_WRITE_BUFFER } : {},
        // Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default), so RSS
        // follows the bytes relayed rather than the bytes held; a small quarantine keeps RSS a
        // measure of what toolgate holds. (Ignored by binaries built without ASan.)
        env: {
            ASAN_OPTIONS: [process.env.ASAN_OPTIONS, "quarantine_size_mb=4"].filter(Boolean).join(":"),
        },
    });
});

after(async () => {
    try {
        if (tg) await tg.stop();
    } finally {
        if (backend) await backend.close();
        await killAll();
    }
});

/* Incremental decoder: HTTP head, chunked framing, SSE events; checks each event on arrival. */
class StreamChecker {
    constructor() {
        this.state = "head";
        this.pending = Buffer.alloc(0);
        this.chunkLeft = 0;
        this.text = "";
        this.nextSeq = 0;
        this.final = null;
        this.done = false;
        this.bytes = 0;
        this.errors = [];
    }

    feed(buf) {
        this.bytes += buf.length;
        this.pending = this.pending.length ? Buffer.concat([this.pending, buf]) : buf;
        for (;;) {
            if (this.state === "head") {
                const i = this.pending.indexOf("\r\n\r\n");
                if (i < 0) return;
                this.head = this.pending.subarray(0, i).toString("latin1");
                this.pending = this.pending.subarray(i + 4);
                this.state = "size";
            } else if (this.state === "size") {
                const i = this.pending.indexOf("\r\n");
                if (i < 0) return;
                const n = parseInt(this.pending.subarray(0, i).toString("latin1"), 16);
                this.pending = this.pending.subarray(i + 2);
                if (n === 0) {
                    this.done = true;
                    return;
                }
                this.chunkLeft = n;
                this.state = "data";
            } else if (this.state === "data") {
                if (this.pending.length === 0) return;
                const take = Math.min(this.chunkLeft, this.pending.length);
                this.sse(this.pending.subarray(0, take).toString("utf8"));
                this.pending = this.pending.subarray(take);
                this.chunkLeft -= take;
                if (this.chunkLeft === 0) this.state = "crlf";
            } else if (this.state === "crlf") {
                if (this.pending.length < 2) return;
                this.pending = this.pending.subarray(2);
                this.state = "size";
            }
        }
    }

    sse(s) {
        this.text += s;
        let i;
        while ((i = this.text.indexOf("\n\n")) >= 0) {
            const block = this.text.slice(0, i);
            this.text = this.text.slice(i + 2);
            const data = block
                .split("\n")
                .filter((l) => l.startsWith("data: "))
                .map((l) => l.slice(6))
                .join("\n");
            const m = JSON.parse(data);
            if (m.id !== undefined) {
                this.final = m;
                continue;
            }
            const { seq, pad } = m.params.data;
            if (seq !== this.nextSeq || pad !== String(seq % 10).repeat(PAD))
                this.errors.push(`event ${this.nextSeq}: got seq ${seq}, pad ${pad.length} bytes`);
            this.nextSeq = seq + 1;
        }
    }
}

test("slow SSE reader: toolgate's memory stays bounded, then every event arrives intact", async (t) => {
    // Warm up (first request allocations, curl pools) before the baseline.
    const warm = await fetch(`${tg.base}/healthz`);
    await warm.text();
    await sleep(200);
    const base = tg.rss();

    const checker = new StreamChecker();
    const sock = net.connect(tg.port, "127.0.0.1");
    sock.on("error", () => {});
    await withTimeout(new Promise((r) => sock.once("connect", r)), 3000, "connect");
    // Small receive window on the client side keeps the kernel from absorbing the stream.
    sock.setNoDelay(true);
    sock.on("data", (d) => {
        checker.feed(d);
        if (slow) sock.pause();
    });
    let slow = true;
    sock.write(postJson("/mcp", { jsonrpc: "2.0", id: "big", method: "tools/call", params: { name: "dump" } }));

    // Slow phase: one read (at most 64 KiB) every 100 ms for 3 s, sampling toolgate's RSS.
    let peak = base;
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
        sock.resume();
        await sleep(100);
        peak = Math.max(peak, tg.rss());
    }
    const producedWhileSlow = produced;
    const readWhileSlow = checker.bytes;
    const mib = (n) => (n / 1048576).toFixed(1);
    t.diagnostic(
        `slow phase: rss base ${mib(base)} MiB peak ${mib(peak)} MiB; backend wrote ${mib(producedWhileSlow)} MiB; client read ${mib(readWhileSlow)} MiB`,
    );
    assert.match(checker.head || "", /^HTTP\/1\.1 200/);
    assert.ok(readWhileSlow < 8 * 1024 * 1024, `client read ${readWhileSlow} bytes in the slow phase`);
    assert.ok(
        peak - base < RSS_BOUND,
        `toolgate RSS grew by ${((peak - base) / 1048576).toFixed(1)} MiB (base ${(base / 1048576).toFixed(1)} MiB)`,
    );
    // The backend was held back too: it could not push the whole stream into the gateway.
    assert.ok(
        producedWhileSlow < TOTAL / 2,
        `backend wrote ${(producedWhileSlow / 1048576).toFixed(1)} MiB while the client was slow`,
    );

    // Fast phase: read everything.
    slow = false;
    const ended = new Promise((r) => sock.once("end", r));
    const finished = new Promise((resolve) => {
        const iv = setInterval(() => {
            if (checker.done) {
                clearInterval(iv);
                resolve();
            }
        }, 20);
        ended.then(() => {
            clearInterval(iv);
            resolve();
        });
    });
    sock.resume();
    const t1 = Date.now();
    await withTimeout(finished, 90000, "the whole stream");
    t.diagnostic(`fast phase: ${mib(checker.bytes)} MiB in ${Date.now() - t1} ms`);
    sock.destroy();
    assert.deepEqual(checker.errors.slice(0, 5), []);
    assert.equal(checker.nextSeq, nEvents, "every event arrived, in order");
    assert.deepEqual(checker.final, { jsonrpc: "2.0", id: "big", result: { events: nEvents } });
    assert.equal(checker.done, true, "the stream ended with its last chunk");
});
