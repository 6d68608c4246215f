// Plain JSON-RPC over HTTP to toolgate with fetch, for tests that time or count calls
// themselves: one POST with the session's headers, and a session opened the way a client does
// (initialize, then notifications/initialized).
import assert from "node:assert/strict";

const HEADERS = { "Content-Type": "application/json", Accept: "application/json, text/event-stream" };

// POSTs body (an object) to url; resolves once the whole answer has arrived.
export async function post(url, body, session) {
    const headers = { ...HEADERS };
    if (session) {
        headers["Mcp-Session-Id"] = session;
        headers["MCP-Protocol-Version"] = "2025-06-18";
    }
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    const text = await res.text();
    return { res, text };
}

// Opens an MCP session through url; returns its id.
export async function openSession(url, clientName = "e2e") {
    const { res } = await post(url, {
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: clientName, version: "1" } },
    });
    assert.equal(res.status, 200);
    const session = res.headers.get("mcp-session-id");
    await post(url, { jsonrpc: "2.0", method: "notifications/initialized" }, session);
    return session;
}
