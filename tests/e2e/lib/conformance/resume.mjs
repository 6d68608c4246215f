// SSE priming and resumption as a 2025-11-25 client sees them, over plain fetch: the suite's
// own `server-sse-polling` scenario sends its tools/call with `MCP-Protocol-Version:
// 2025-03-26`, a version without priming events, so SDK servers (ours included) answer it
// without them; this probe asks in the negotiated version instead.
//
// initialize (2025-11-25) -> POST tools/call test_reconnection: the server sends a priming event
// (an id, `retry`, empty data), closes the stream before the result -> GET with Last-Event-ID:
// the result arrives on the resumed stream.

const ACCEPT = "application/json, text/event-stream";

/* SSE text -> events [{id, retry, event, data}] (blocks without data kept: priming has data ""). */
export function sseEvents(text) {
    const out = [];
    for (const block of text.split(/\r?\n\r?\n/)) {
        if (!block.trim()) continue;
        const ev = { id: undefined, retry: undefined, event: "message", data: undefined };
        for (const line of block.split(/\r?\n/)) {
            if (line.startsWith(":")) continue;
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            let value = i < 0 ? "" : line.slice(i + 1);
            if (value.startsWith(" ")) value = value.slice(1);
            if (field === "data") ev.data = ev.data === undefined ? value : `${ev.data}\n${value}`;
            else if (field === "id") ev.id = value;
            else if (field === "retry") ev.retry = Number(value);
            else if (field === "event") ev.event = value;
        }
        out.push(ev);
    }
    return out;
}

/* Reads an SSE body until done(events) is true, the stream ends, or ms pass. */
async function readEvents(res, done, ms) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let ended = false;
    const timer = setTimeout(() => reader.cancel().catch(() => {}), ms);
    try {
        for (;;) {
            const { value, done: end } = await reader.read();
            if (end) {
                ended = true;
                break;
            }
            text += value;
            const complete = text.slice(0, Math.max(text.lastIndexOf("\n\n"), 0));
            if (done(sseEvents(complete))) break;
        }
    } catch {
        /* cancelled by the bound */
    } finally {
        clearTimeout(timer);
        reader.cancel().catch(() => {});
    }
    return { events: sseEvents(text), ended };
}

/*
 * Runs the probe against url. Resolves a record of what was seen: {initStatus, sessionId,
 * postStatus, postType, postEvents, postEnded, primingFirst, retry, resultOnPost, getStatus,
 * getType, getEvents, resultOnGet, result}.
 */
export async function resumeProbe(url, { headers = {}, ms = 10000 } = {}) {
    const seen = {};
    const h = (extra) => ({ "Content-Type": "application/json", Accept: ACCEPT, ...headers, ...extra });
    const init = await fetch(url, {
        method: "POST",
        headers: h({}),
        body: JSON.stringify({
            jsonrpc: "2.0",
            id: 0,
            method: "initialize",
            params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "resume-probe", version: "1" } },
        }),
        signal: AbortSignal.timeout(ms),
    });
    seen.initStatus = init.status;
    seen.sessionId = init.headers.get("mcp-session-id");
    await init.text();
    const session = { "Mcp-Session-Id": seen.sessionId, "MCP-Protocol-Version": "2025-11-25" };
    const note = await fetch(url, {
        method: "POST",
        headers: h(session),
        body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
        signal: AbortSignal.timeout(ms),
    });
    await note.text();

    const isResult = (e) => {
        try {
            const m = JSON.parse(e.data);
            return m.id === 1 && m.result !== undefined;
        } catch {
            return false;
        }
    };
    const post = await fetch(url, {
        method: "POST",
        headers: h(session),
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "test_reconnection", arguments: {} } }),
        signal: AbortSignal.timeout(ms),
    });
    seen.postStatus = post.status;
    seen.postType = post.headers.get("content-type");
    const p = await readEvents(post, (evs) => evs.some(isResult), ms);
    seen.postEvents = p.events;
    seen.postEnded = p.ended;
    seen.primingFirst = p.events.length > 0 && p.events[0].id !== undefined && (p.events[0].data ?? "") === "";
    seen.retry = p.events.find((e) => e.retry !== undefined)?.retry;
    seen.resultOnPost = p.events.some(isResult);
    const lastId = [...p.events].reverse().find((e) => e.id !== undefined)?.id;
    seen.lastEventId = lastId;
    if (!seen.resultOnPost && lastId !== undefined) {
        const get = await fetch(url, {
            method: "GET",
            headers: { Accept: "text/event-stream", ...headers, ...session, "Last-Event-ID": lastId },
            signal: AbortSignal.timeout(ms),
        });
        seen.getStatus = get.status;
        seen.getType = get.headers.get("content-type");
        if (get.ok && get.body) {
            const g = await readEvents(get, (evs) => evs.some(isResult), ms);
            seen.getEvents = g.events;
            seen.resultOnGet = g.events.some(isResult);
            const r = g.events.find(isResult);
            if (r) seen.result = JSON.parse(r.data).result;
        } else {
            seen.getBody = await get.text();
        }
    }
    await fetch(url, { method: "DELETE", headers: { ...headers, ...session }, signal: AbortSignal.timeout(ms) })
        .then((r) => r.text())
        .catch(() => {});
    return seen;
}
