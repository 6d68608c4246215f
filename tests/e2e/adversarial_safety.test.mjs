// The safety layer's closed world, attacked through the real binary: toolgate in front of a
// hostile backend. Class 6: values nobody scanned (numbers, _meta, annotations, resource
// links, loggers, progress tokens, initialize, member names, base64 text, digits of other
// scripts, invisible characters between digits, dotted separators) must be found in both
// directions. Class 7: a weaker detector must not win over a stricter one that overlaps it.
// Class 8: a weak shape whose context is a label in a sibling member ({"type": "ssn", "value":
// "134677626"}) is found; labels that name no type, or sit anywhere but beside it, give none.
// For the client's side, every case says whether anything reached the backend and what; for
// the backend's side, what the client got.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startToolgate, killAll, freePort } from "./lib/harness.mjs";

let tg, backend;
const seen = []; // what the backend received: {method, body, msg}
let script = null; // the backend's answer for the current test: (msg, res) => handled?

function send(res, status, obj, headers = {}) {
    const s = obj === null ? "" : JSON.stringify(obj);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(s), ...headers });
    res.end(s);
}

function sse(res, messages) {
    res.writeHead(200, { "Content-Type": "text/event-stream" });
    res.end(messages.map((m) => `data: ${JSON.stringify(m)}\n\n`).join(""));
}

function defaultAnswer(msg, res) {
    if (!msg || msg.id === undefined) return send(res, 202, null);
    if (msg.method === "initialize") {
        return send(
            res,
            200,
            { jsonrpc: "2.0", id: msg.id, result: { protocolVersion: "2025-06-18", capabilities: { tools: {} }, serverInfo: { name: "hostile", version: "1" } } },
            { "Mcp-Session-Id": `backend-session-${seen.length}` },
        );
    }
    return send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "ok" }] } });
}

before(async () => {
    const backendPort = await freePort();
    backend = http.createServer((req, res) => {
        let body = "";
        req.on("data", (d) => (body += d));
        req.on("end", () => {
            let msg = null;
            try {
                msg = body ? JSON.parse(body) : null;
            } catch {
                /* not JSON */
            }
            seen.push({ method: req.method, body, msg });
            if (script && script(msg, res)) return;
            defaultAnswer(msg, res);
        });
    });
    await new Promise((r) => backend.listen(backendPort, "127.0.0.1", r));
    tg = await startToolgate({
        routes: [{ name: "mcp", path: "/mcp", url: `http://127.0.0.1:${backendPort}/mcp` }],
        extra: {
            safety: {
                custom: [
                    // Overlaps the built-in MRN detector (redact): must win, in both directions.
                    { name: "record", pattern: "MRN-[0-9]{8}", action: { request: "block", response: "block" } },
                    // Inside e-mail addresses (log): must win.
                    { name: "staff", pattern: "EMP-[0-9]{4}", action: "block" },
                    // Longer than the card inside it, and only logged: the card must still redact.
                    { name: "ref", pattern: "ref [0-9 ]{19}", action: "log" },
                ],
            },
        },
    });
});

after(async () => {
    try {
        if (tg) await tg.stop();
    } finally {
        if (backend) await new Promise((r) => backend.close(r));
        await killAll();
    }
});

let nextId = 1;
async function post(body) {
    const mark = seen.length;
    const res = await fetch(`${tg.base}/mcp`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18" },
        body: typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
        json = text && !text.startsWith("data:") && !text.startsWith("id:") ? JSON.parse(text) : null;
    } catch {
        /* SSE or empty */
    }
    return { res, text, json, reached: seen.slice(mark) };
}

const call = (args, extra = {}) => ({ jsonrpc: "2.0", id: nextId++, method: "tools/call", params: { name: "note", arguments: args, ...extra } });
const b64 = (s) => Buffer.from(s, "utf8").toString("base64");
const b64url = (s) => Buffer.from(s, "utf8").toString("base64url");

function assertBlocked(r, type, what) {
    assert.equal(r.reached.length, 0, `${what}: must not reach the backend`);
    const code = r.json?.result?._meta?.["toolgate/decision"]?.reason_code ?? r.json?.error?.data?.reason_code;
    const denied = (r.json && (r.json.error || r.json.result?.isError)) || r.res.status >= 400;
    assert.ok(denied, `${what}: expected a denial, got ${r.res.status} ${r.text.slice(0, 300)}`);
    if (type) assert.ok(r.text.includes(`pii.${type}`) || code === `pii.${type}`, `${what}: not pii.${type}: ${r.text.slice(0, 300)}`);
}

// What the backend got must not hold the value in any form we sent it in.
function assertForwardedWithout(r, values, what) {
    assert.equal(r.reached.length, 1, `${what}: must reach the backend`);
    const body = r.reached[0].body;
    for (const v of values) assert.ok(!body.includes(v), `${what}: forwarded ${v}: ${body.slice(0, 300)}`);
    return r.reached[0].msg;
}

// "134-67-7626" in other scripts and with invisible characters between its digits.
const DIGITS = {
    "arabic-indic": 0x660,
    "extended arabic-indic": 0x6f0,
    nko: 0x7c0,
    devanagari: 0x966,
    bengali: 0x9e6,
    gurmukhi: 0xa66,
    gujarati: 0xae6,
    oriya: 0xb66,
    tamil: 0xbe6,
    telugu: 0xc66,
    kannada: 0xce6,
    malayalam: 0xd66,
    thai: 0xe50,
    lao: 0xed0,
    tibetan: 0xf20,
    myanmar: 0x1040,
    khmer: 0x17e0,
    mongolian: 0x1810,
    fullwidth: 0xff10,
    "mathematical bold": 0x1d7ce,
    "mathematical monospace": 0x1d7f6,
    adlam: 0x1e950,
    "segmented digits": 0x1fbf0,
};
const inScript = (s, zero) => [...s].map((c) => (c >= "0" && c <= "9" ? String.fromCodePoint(zero + Number(c)) : c)).join("");
const INVISIBLE = [
    "\u2063", "\u034f", "\ufe0f", "\u180e", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\u2061",
    "\u2062", "\u2064", "\ufeff", "\u00ad", "\ufe00", "\u{e0100}", "\u{e0041}", "\u202e", "\u2066", "\u061c",
    "\u3164", "\u115f", "\ufe0f\u20e3",
];
const spread = (s, z) => [...s].join(z);

describe("class 6: values nobody scanned, on the way in", () => {
    test("numbers: a card or an SSN written as a JSON number", async () => {
        for (const raw of ["4111111111111111", "4111111111111111.0", "4.111111111111111e15", "5555555555554444", "378282246310005"]) {
            const r = await post(`{"jsonrpc":"2.0","id":${nextId++},"method":"tools/call","params":{"name":"note","arguments":{"card":${raw},"list":[1,${raw}]}}}`);
            const msg = assertForwardedWithout(r, [raw.slice(0, 8)], raw);
            assert.equal(msg.params.arguments.card, "[REDACTED:CREDIT_CARD]", raw);
            assert.equal(msg.params.arguments.list[1], "[REDACTED:CREDIT_CARD]", raw);
        }
        for (const args of [{ ssn: 134677626 }, { patient: { socialSecurityNumber: 536228411 } }, { ssn: [134677626] }]) {
            assertBlocked(await post(call(args)), "ssn", JSON.stringify(args));
        }
    });

    test("the whole message: _meta, progress tokens, initialize, notifications, cursors, member names", async () => {
        const SSN = "SSN 134-67-7626";
        const cases = [
            call({}, { _meta: { progressToken: SSN } }),
            call({}, { _meta: { "x-trace": { note: SSN } } }),
            { jsonrpc: "2.0", id: nextId++, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: SSN, version: "1" } } },
            { jsonrpc: "2.0", id: nextId++, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: { experimental: { [SSN]: {} } }, clientInfo: { name: "c", version: "1" } } },
            { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 1, reason: SSN } },
            { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 134677626, progress: 1, message: "x", _meta: { ssn: 134677626 } } },
            { jsonrpc: "2.0", id: nextId++, method: "tools/list", params: { cursor: SSN } },
            { jsonrpc: "2.0", id: nextId++, method: "ping", params: { _meta: { note: SSN } } },
            call({ "134-67-7626": "x" }),
            call({ nested: [{ deeper: { "ssn 134-67-7626": 1 } }] }),
        ];
        for (const body of cases) assertBlocked(await post(body), "ssn", JSON.stringify(body));
        // What redacts is rewritten wherever it is.
        const r = await post(call({ q: "x" }, { _meta: { progressToken: "4111 1111 1111 1111" } }));
        const msg = assertForwardedWithout(r, ["4111"], "progress token");
        assert.equal(msg.params._meta.progressToken, "[REDACTED:CREDIT_CARD]");
    });

    test("base64 that decodes to text is read as that text", async () => {
        for (const enc of [b64("SSN 134-67-7626"), b64url("SSN 134-67-7626 ??"), `data:text/plain;base64,${b64("SSN 134-67-7626")}`, b64("note\nssn: 134-67-7626\n").replace(/(.{8})/g, "$1\n")]) {
            assertBlocked(await post(call({ doc: { blob: enc } })), "ssn", enc);
            assertBlocked(await post(call({ anything: enc })), "ssn", enc);
        }
        const text = "patient card 4111 1111 1111 1111 exp 12/27 ??>>";
        for (const [enc, dec] of [
            [b64(text), (s) => Buffer.from(s, "base64").toString()],
            [b64url(text), (s) => Buffer.from(s, "base64url").toString()],
        ]) {
            const r = await post(call({ doc: { blob: enc } }));
            const msg = assertForwardedWithout(r, [enc], "base64 card");
            assert.equal(dec(msg.params.arguments.doc.blob), "patient card [REDACTED:CREDIT_CARD] exp 12/27 ??>>");
        }
        // Base64 of benign text and binary data are forwarded byte for byte.
        for (const blob of [b64("hello world, nothing to see here"), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3, 0x31, 0x33, 0x34]).toString("base64")]) {
            const r = await post(call({ blob }));
            assert.equal(r.reached.length, 1);
            assert.equal(r.reached[0].msg.params.arguments.blob, blob);
        }
    });

    test("digits of every script and invisible characters between digits", async () => {
        for (const [script, zero] of Object.entries(DIGITS)) {
            const ssn = inScript("134-67-7626", zero);
            assertBlocked(await post(call({ note: `SSN ${ssn} ok` })), "ssn", script);
            assertBlocked(await post(call({ ssn: inScript("134677626", zero) })), "ssn", `${script}, bare`);
            const card = inScript("4111 1111 1111 1111", zero);
            const r = await post(call({ note: `card ${card} ok` }));
            const msg = assertForwardedWithout(r, [card], `${script} card`);
            assert.equal(msg.params.arguments.note, "card [REDACTED:CREDIT_CARD] ok", script);
        }
        for (const z of INVISIBLE) {
            const what = `U+${z.codePointAt(0).toString(16)}`;
            assertBlocked(await post(call({ note: `SSN ${spread("134-67-7626", z)}` })), "ssn", what);
            const r = await post(call({ note: `pay ${spread("4111111111111111", z)} now` }));
            const msg = assertForwardedWithout(r, [spread("4111111111111111", z)], what);
            assert.equal(msg.params.arguments.note, "pay [REDACTED:CREDIT_CARD] now", what);
        }
        // Benign text in other scripts and with invisible characters passes as it is.
        const benign = { a: "صفحة ٤٢ من ١٠٠", b: "पृष्ठ ४२, वर्ष २०२४", c: "第４２页", d: `page\u200b 4\u20632 of 1\ufe0f00`, e: "١٢٣" };
        const r = await post(call(benign));
        assert.equal(r.reached.length, 1);
        assert.deepEqual(r.reached[0].msg.params.arguments, benign);
    });

    test("separators: dots, Unicode dashes and full stops", async () => {
        for (const ssn of ["536.22.8411", "536\uff0e22\uff0e8411", "536\u202422\u20248411", "536\u201022\u20118411", "536\u221222\u22128411", "536\u2e3a22\u30a08411", "912.70.1234"]) {
            assertBlocked(await post(call({ n: `id ${ssn}` })), null, ssn);
        }
        for (const card of ["4111.1111.1111.1111", "3782.822463.10005", "5555\u20105555\u20105555\u20104444"]) {
            const r = await post(call({ n: `card ${card}` }));
            const msg = assertForwardedWithout(r, [card], card);
            assert.equal(msg.params.arguments.n, "card [REDACTED:CREDIT_CARD]");
        }
        // Versions, decimals, dates and mixed separators are not numbers of anyone.
        const benign = { a: "v536.22.8411", b: "1.536.22.8411", c: 0.5555555555554444, d: "12.4111111111111111", e: "15.03.2024", f: "536.22-8411", g: 42, h: 1700000000000 };
        const r = await post(call(benign));
        assert.equal(r.reached.length, 1);
        assert.deepEqual(r.reached[0].msg.params.arguments, benign);
    });

    test("the id and the target cannot be rewritten: a redaction there blocks", async () => {
        for (const body of [
            { jsonrpc: "2.0", id: "4111111111111111", method: "ping" },
            `{"jsonrpc":"2.0","id":4111111111111111,"method":"ping"}`,
            { jsonrpc: "2.0", id: nextId++, method: "tools/call", params: { name: "pay-4111111111111111", arguments: {} } },
            { jsonrpc: "2.0", id: nextId++, method: "resources/read", params: { uri: "file:///cards/4111111111111111" } },
        ]) {
            assertBlocked(await post(body), "credit_card", JSON.stringify(body));
        }
    });
});

describe("class 6: values nobody scanned, on the way out", () => {
    const SSN = "SSN 134-67-7626";
    const answers = (id) => [
        { result: { content: [{ type: "text", text: "ok" }], _meta: { note: SSN } } },
        { result: { content: [{ type: "text", text: "ok", annotations: { audience: ["user"], "x-note": SSN } }] } },
        { result: { content: [{ type: "resource_link", uri: "file:///r", name: SSN }] } },
        { result: { content: [{ type: "resource_link", uri: "file:///r", name: "r", description: SSN, title: SSN }] } },
        { result: { content: [{ type: "resource", resource: { uri: "file:///r", mimeType: "application/octet-stream", blob: b64(SSN) } }] } },
        { result: { content: [{ type: "image", mimeType: "image/png", data: b64url(`${SSN} ??`) }] } },
        { result: { content: [], structuredContent: { ssn: 134677626, card: 4111111111111111 } } },
        { result: { content: [], structuredContent: { [SSN]: true } } },
        { result: { content: [{ type: "text", text: `SSN ${inScript("134-67-7626", 0x966)}` }] } },
        { result: { content: [{ type: "text", text: `SSN ${spread("134-67-7626", "\u2063")}` }] } },
        { result: { content: [{ type: "text", text: "SSN 536.22.8411" }] } },
        { error: { code: -32000, message: "failed", data: { rows: [{ who: SSN }] } } },
    ].map((a) => ({ jsonrpc: "2.0", id, ...a }));

    test("results: _meta, annotations, resource links, blobs, image data, numbers, names, scripts", async () => {
        for (let i = 0; i < answers(0).length; i++) {
            script = (msg, res) => {
                if (msg?.method !== "tools/call") return false;
                send(res, 200, answers(msg.id)[i]);
                return true;
            };
            try {
                const r = await post(call({ q: "x" }));
                assert.equal(r.res.status, 200);
                const text = r.text;
                for (const leak of ["7626", "8411", "4111111111111111", b64(SSN), "\u096d\u096c\u0968\u096c"]) {
                    assert.ok(!text.includes(leak), `answer ${i}: ${leak} reached the client: ${text}`);
                }
                // Nothing decodes back to it either.
                const blob = r.json?.result?.content?.[0]?.resource?.blob ?? r.json?.result?.content?.[0]?.data;
                if (blob) assert.ok(!Buffer.from(blob, "base64").toString().includes("7626"), `answer ${i}: the blob still holds it`);
            } finally {
                script = null;
            }
        }
    });

    test("server messages on the stream: log loggers, progress tokens, sampling requests", async () => {
        script = (msg, res) => {
            if (msg?.method !== "tools/call") return false;
            sse(res, [
                { jsonrpc: "2.0", method: "notifications/message", params: { level: "info", logger: SSN, data: "x" } },
                { jsonrpc: "2.0", method: "notifications/message", params: { level: "info", logger: "l", data: { deep: [SSN] } } },
                { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: SSN, progress: 1 } },
                { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 4111111111111111, progress: 2 } },
                { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 3, _meta: { n: SSN } } },
                { jsonrpc: "2.0", id: 900, method: "sampling/createMessage", params: { messages: [{ role: "user", content: { type: "text", text: SSN } }], systemPrompt: SSN, maxTokens: 5 } },
                { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "done" }] } },
            ]);
            return true;
        };
        try {
            const r = await post(call({ q: "x" }));
            assert.equal(r.res.status, 200);
            assert.ok(!r.text.includes("7626") && !r.text.includes("4111111111111111"), r.text);
            assert.ok(r.text.includes("[REDACTED:SSN]") && r.text.includes("[REDACTED:CREDIT_CARD]"));
            assert.ok(r.text.includes("done"));
        } finally {
            script = null;
        }
    });

    test("an answer whose id holds a card is withheld without echoing the id", async () => {
        script = (msg, res) => {
            if (msg?.method !== "tools/call") return false;
            sse(res, [
                { jsonrpc: "2.0", id: "4111111111111111", result: { content: [] } },
                { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "done" }] } },
            ]);
            return true;
        };
        try {
            const r = await post(call({ q: "x" }));
            assert.ok(!r.text.includes("4111111111111111"), r.text);
            assert.ok(r.text.includes("done"));
        } finally {
            script = null;
        }
    });
});

describe("class 7: a weaker detector does not win", () => {
    test("a custom detector that blocks wins over the built-in one that redacts, in both directions", async () => {
        for (const v of ["MRN-00412345", "see MRN-00412345 today", "mrn: MRN-00412345", b64("MRN-00412345")]) {
            assertBlocked(await post(call({ note: v })), "record", v);
            assertBlocked(await post(call({ [v]: 1 })), "record", `${v} as a name`);
        }
        script = (msg, res) => {
            if (msg?.method !== "tools/call") return false;
            send(res, 200, { jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "chart MRN-00412345" }], structuredContent: { mrn: "MRN-00412345" } } });
            return true;
        };
        try {
            const r = await post(call({ q: "x" }));
            assert.ok(!r.text.includes("00412345"), r.text);
            assert.equal(r.json.error?.code, -32003, r.text);
            assert.match(r.json.error.message, /medical|record|sensitive/i);
        } finally {
            script = null;
        }
    });

    test("off and log detectors hide nothing; the strictest of many findings decides", async () => {
        // The badge inside an e-mail address (which only logs) blocks.
        for (const v of ["EMP-1234@example.com", "mail EMP-1234@example.com now"]) assertBlocked(await post(call({ to: v })), "staff", v);
        // A logged span around a card: the card is still redacted.
        const r = await post(call({ n: "ref 4111 1111 1111 1111" }));
        assertForwardedWithout(r, ["4111"], "card in a logged span");
        // Hundreds of logged e-mails before what blocks.
        for (const n of [300, 5000]) {
            const many = Array.from({ length: n }, (_, i) => `u${i}@example.com`).join(" ");
            assertBlocked(await post(call({ note: `${many} SSN 134-67-7626` })), "ssn", `${n} e-mails then an SSN`);
            assertBlocked(await post(call({ note: `${many} EMP-1234` })), "staff", `${n} e-mails then a badge`);
        }
        // One value redacts, another blocks: the call blocks.
        assertBlocked(await post(call({ a: "4111 1111 1111 1111", b: "134-67-7626" })), "ssn", "redact and block");
    });
});

describe("class 8: a label beside the value is its context", () => {
    test("on the way in: a sibling's label names the type; other labels and other places do not", async () => {
        for (const args of [
            { type: "ssn", value: "134677626" },
            { value: "134677626", type: "SSN" },
            { field: "Social Security Number", value: "134 67 7626" },
            { kind: "ssn", value: 134677626 },
            { rows: [{ name: "mrn", value: "00412345" }, { name: "ssn", value: "134677626" }] },
            { type: "ssn", values: ["219099991", "134677626"] },
            { kind: "\uff53\uff53\uff4e", id: "134677626" },
            // A FHIR identifier: the system's last path segment is the label.
            { identifier: [{ system: "http://hl7.org/fhir/sid/us-ssn", value: "134677626" }] },
        ]) {
            assertBlocked(await post(call(args)), "ssn", JSON.stringify(args));
        }
        // A medical record number only redacts: the rest of the call goes on.
        const r = await post(call({ kind: "Medical Record", id: "00412345", note: "follow up" }));
        const msg = assertForwardedWithout(r, ["00412345"], "mrn beside its label");
        assert.deepEqual(msg.params.arguments, { kind: "Medical Record", id: "[REDACTED:MRN]", note: "follow up" });
        // Labels naming no type, labels elsewhere, sentences and near-words give no context.
        const benign = [
            { type: "order", value: "134677626" },
            { type: "ssnx", value: "134677626" },
            { ward: "newborns", value: "1984-03-05" },
            { type: "ssn", inner: { value: "134677626" } },
            { meta: { type: "ssn" }, value: "134677626" },
            { list: [{ type: "ssn" }, { value: "134677626" }] },
            { labels: ["ssn"], value: "134677626" },
            { note: "call me about my ssn tomorrow", id: "134677626" },
            { a: "ssn 1", value: "134677626" },
            // A label says what a value-holding member is, not what the others are.
            { type: "integer", description: "Driver ID", minimum: 100000, maximum: 99999999 },
            { role: "driver", zip: "94110", employee_id: "12345678" },
            { type: "ssn", ticket: "134677626" },
            // What toolgate wrote in an earlier answer, sent back by the model.
            { a: "[REDACTED:SSN]", value: "134677626" },
            { t: "tools/call", value: "134677626" },
        ];
        for (const args of benign) {
            const b = await post(call(args));
            assert.equal(b.reached.length, 1, JSON.stringify(args));
            assert.deepEqual(b.reached[0].msg.params.arguments, args, JSON.stringify(args));
        }
    });

    test("on the way out: a labelled value is redacted in the answer; an unlabelled one is not", async () => {
        script = (msg, res) => {
            if (msg?.method !== "tools/call") return false;
            send(res, 200, {
                jsonrpc: "2.0",
                id: msg.id,
                result: {
                    content: [{ type: "text", text: "fields" }],
                    structuredContent: {
                        fields: [
                            { label: "SSN", value: "134677626" },
                            { label: "Date of birth", value: "1966-04-08" },
                            { label: "Order", value: "555123456" },
                            { a: "134-67-7626", value: "219099991" },
                            { description: "Driver ID", minimum: 1000000, maximum: 9999999 },
                            { system: "http://hl7.org/fhir/sid/us-ssn", value: "219099991" },
                        ],
                    },
                },
            });
            return true;
        };
        try {
            const r = await post(call({ q: "x" }));
            assert.equal(r.res.status, 200, r.text);
            assert.ok(!r.text.includes("134677626") && !r.text.includes("1966-04-08"), r.text);
            const f = r.json.result.structuredContent.fields;
            assert.deepEqual(f[0], { label: "SSN", value: "[REDACTED:SSN]" });
            assert.deepEqual(f[1], { label: "Date of birth", value: "[REDACTED:DOB]" });
            assert.deepEqual(f[2], { label: "Order", value: "555123456" });
            // What toolgate writes in place of the first is not read as a label for the second.
            assert.deepEqual(f[3], { a: "[REDACTED:SSN]", value: "219099991" });
            // A schema's limits beside a description stay numbers.
            assert.deepEqual(f[4], { description: "Driver ID", minimum: 1000000, maximum: 9999999 });
            assert.deepEqual(f[5], { system: "http://hl7.org/fhir/sid/us-ssn", value: "[REDACTED:SSN]" });
        } finally {
            script = null;
        }
    });
});
