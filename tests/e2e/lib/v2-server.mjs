// A backend written on the MCP TypeScript SDK v2 (@modelcontextprotocol/server), served from
// node:http: 2025-era requests (those without the 2026-07-28 per-request envelope) go to a
// sessionful Streamable HTTP transport, one per session; 2026-07-28 requests to the SDK's
// stateless handler. The same tools, resources and prompts back both eras.
//
//   node v2-server.mjs PORT      (listens on 127.0.0.1:PORT, endpoint /mcp)
import http from "node:http";
import { randomUUID } from "node:crypto";
import {
    McpServer,
    WebStandardStreamableHTTPServerTransport,
    createMcpHandler,
    fromJsonSchema,
    isLegacyRequest,
} from "@modelcontextprotocol/server";

const noArgs = fromJsonSchema({ type: "object", properties: {} });

function newServer() {
    const server = new McpServer(
        { name: "toolgate-e2e-v2", version: "2.0.0" },
        { capabilities: { tools: {}, resources: {}, prompts: {} } },
    );
    server.registerTool(
        "echo",
        {
            description: "Echoes its message",
            inputSchema: fromJsonSchema({
                type: "object",
                properties: { message: { type: "string" } },
                required: ["message"],
            }),
        },
        async ({ message }) => ({ content: [{ type: "text", text: `v2 echo: ${message}` }] }),
    );
    server.registerTool(
        "add",
        {
            description: "Adds two numbers",
            inputSchema: fromJsonSchema({
                type: "object",
                properties: { a: { type: "number" }, b: { type: "number" } },
                required: ["a", "b"],
            }),
        },
        async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }], structuredContent: { sum: a + b } }),
    );
    server.registerTool("admin_reset", { description: "Resets everything", inputSchema: noArgs }, async () => ({
        content: [{ type: "text", text: "everything was reset" }],
    }));
    server.registerResource(
        "greeting",
        "v2://greeting",
        { description: "A greeting", mimeType: "text/plain" },
        async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "hello from the v2 server" }] }),
    );
    server.registerPrompt(
        "greet",
        {
            description: "Greets someone",
            argsSchema: fromJsonSchema({ type: "object", properties: { name: { type: "string" } }, required: ["name"] }),
        },
        async ({ name }) => ({ messages: [{ role: "user", content: { type: "text", text: `Say hello to ${name}` } }] }),
    );
    return server;
}

export function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => resolve(Buffer.concat(chunks)));
        req.on("error", reject);
    });
}

export function toRequest(req, body) {
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
        if (Array.isArray(v)) for (const x of v) headers.append(k, x);
        else if (v !== undefined) headers.set(k, v);
    }
    const hasBody = req.method !== "GET" && req.method !== "HEAD" && req.method !== "DELETE";
    return new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers,
        body: hasBody ? body : undefined,
    });
}

/* Writes a web Response to a node response, streaming its body (SSE) as it comes. */
export async function sendResponse(res, response) {
    const headers = {};
    response.headers.forEach((v, k) => (headers[k] = v));
    res.writeHead(response.status, headers);
    if (!response.body) return res.end();
    res.flushHeaders();
    const reader = response.body.getReader();
    res.on("close", () => reader.cancel().catch(() => {}));
    try {
        for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            res.write(value);
        }
    } catch {
        /* the client went away */
    }
    res.end();
}

export function startV2Server(port, host = "127.0.0.1") {
    const sessions = new Map(); // session id -> transport
    const modern = createMcpHandler(() => newServer(), { legacy: "reject" });
    const httpServer = http.createServer(async (req, res) => {
        try {
            if (new URL(req.url, "http://x").pathname !== "/mcp") {
                res.writeHead(404);
                return res.end();
            }
            const body = await readBody(req);
            const request = toRequest(req, body);
            let parsed;
            try {
                parsed = body.length ? JSON.parse(body.toString("utf8")) : undefined;
            } catch {
                parsed = undefined;
            }
            if (!(await isLegacyRequest(request.clone(), parsed)))
                return await sendResponse(res, await modern.fetch(request));
            const sid = req.headers["mcp-session-id"];
            let transport = sid !== undefined ? sessions.get(sid) : undefined;
            if (sid !== undefined && !transport) {
                res.writeHead(404, { "Content-Type": "application/json" });
                return res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } }));
            }
            if (!transport) {
                transport = new WebStandardStreamableHTTPServerTransport({
                    sessionIdGenerator: () => randomUUID(),
                    onsessioninitialized: (id) => sessions.set(id, transport),
                    onsessionclosed: (id) => sessions.delete(id),
                });
                await newServer().connect(transport);
            }
            await sendResponse(res, await transport.handleRequest(request, { parsedBody: parsed }));
        } catch (e) {
            if (!res.headersSent) {
                res.writeHead(500, { "Content-Type": "application/json" });
                res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32603, message: String(e?.message ?? e) } }));
            } else res.end();
        }
    });
    return new Promise((resolve, reject) => {
        httpServer.on("error", reject);
        httpServer.listen(port, host, () =>
            resolve({
                url: `http://${host}:${port}/mcp`,
                close: () =>
                    new Promise((r) => {
                        httpServer.closeAllConnections();
                        httpServer.close(() => r());
                    }),
            }),
        );
    });
}

if (import.meta.url === `file://${process.argv[1]}`) {
    const port = Number(process.argv[2] || process.env.PORT);
    if (!Number.isInteger(port) || port <= 0) {
        console.error("usage: v2-server.mjs PORT");
        process.exit(2);
    }
    const s = await startV2Server(port);
    console.log(`listening ${s.url}`);
    const stop = () => s.close().then(() => process.exit(0));
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}
