// Opening an MCP session through toolgate against a test backend: the backend answers
// initialize with its own session id, toolgate gives the client an id of its own. Tests that
// need a session use this instead of making an id up (an id toolgate did not issue is 404).
import assert from "node:assert/strict";
import { echoRpc } from "./backend.mjs";
import { exchange, request } from "./raw.mjs";

// Returns toolgate's session id for a new backend session `backendSid` on `path`.
export async function openSession(port, backend, backendSid, { path = "/mcp", headers = {} } = {}) {
    const previous = backend.handler ?? echoRpc;
    backend.setHandler((req, res, body) => {
        const msg = JSON.parse(body);
        const s = JSON.stringify({
            jsonrpc: "2.0",
            id: msg.id,
            result: { protocolVersion: "2025-06-18", capabilities: {}, serverInfo: { name: "t", version: "1" } },
        });
        res.writeHead(200, {
            "Content-Type": "application/json",
            "Content-Length": Buffer.byteLength(s),
            "Mcp-Session-Id": backendSid,
        });
        res.end(s);
    });
    try {
        const body = JSON.stringify({
            jsonrpc: "2.0",
            id: "init",
            method: "initialize",
            params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "test", version: "1" } },
        });
        const res = await exchange(
            port,
            request("POST", path, { "Content-Type": "application/json", "Content-Length": body.length, ...headers }, body),
        );
        assert.equal(res.status, 200, "initialize through toolgate");
        const sid = res.headers["mcp-session-id"];
        assert.match(sid, /^[A-Za-z0-9_-]{43}$/, "toolgate issues its own session id");
        assert.notEqual(sid, backendSid, "the backend's id is never shown to the client");
        return sid;
    } finally {
        backend.setHandler(previous);
    }
}
