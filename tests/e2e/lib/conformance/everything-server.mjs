// The reference server for the MCP conformance suite's server scenarios, written on the
// official SDK 1.x (low-level Server, Streamable HTTP, one transport per session): every tool,
// resource, prompt and behaviour the scenarios check, with the names and shapes they expect.
//
//   node everything-server.mjs PORT      (listens on 127.0.0.1:PORT, endpoint /mcp)
//
// Behaviours beyond plain answers: log and progress notifications sent during a call on the
// call's own stream; sampling and elicitation requests sent to the client during a call;
// resumable SSE (an event store, priming events with `retry`, a tool that closes its stream
// mid-call so the client resumes with Last-Event-ID); Host/Origin checked against loopback
// names (DNS rebinding: 403).
import http from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
    CallToolRequestSchema,
    CompleteRequestSchema,
    CreateMessageResultSchema,
    ElicitResultSchema,
    GetPromptRequestSchema,
    ListPromptsRequestSchema,
    ListResourcesRequestSchema,
    ListResourceTemplatesRequestSchema,
    ListToolsRequestSchema,
    McpError,
    ErrorCode,
    ReadResourceRequestSchema,
    SubscribeRequestSchema,
    UnsubscribeRequestSchema,
    isInitializeRequest,
} from "@modelcontextprotocol/sdk/types.js";

// A 1x1 red PNG and a minimal WAV (44-byte header, two silent 16-bit samples).
export const PNG_1X1 =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
export const WAV_SILENCE = Buffer.concat([
    Buffer.from("RIFF", "ascii"),
    Buffer.from([40, 0, 0, 0]),
    Buffer.from("WAVEfmt ", "ascii"),
    Buffer.from([16, 0, 0, 0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]),
    Buffer.from("data", "ascii"),
    Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]),
]).toString("base64");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const noArgs = { type: "object", properties: {}, required: [] };

const TOOLS = [
    { name: "test_simple_text", description: "Returns a simple text response", inputSchema: noArgs },
    { name: "test_image_content", description: "Returns a 1x1 PNG image", inputSchema: noArgs },
    { name: "test_audio_content", description: "Returns a short WAV clip", inputSchema: noArgs },
    { name: "test_embedded_resource", description: "Returns an embedded text resource", inputSchema: noArgs },
    {
        name: "test_multiple_content_types",
        description: "Returns text, an image and an embedded resource",
        inputSchema: noArgs,
    },
    {
        name: "test_tool_with_logging",
        description: "Sends three log notifications while it runs",
        inputSchema: noArgs,
    },
    { name: "test_error_handling", description: "Always fails with isError", inputSchema: noArgs },
    {
        name: "test_tool_with_progress",
        description: "Reports progress 0, 50 and 100 of 100",
        inputSchema: noArgs,
    },
    {
        name: "test_sampling",
        description: "Asks the client's model for a completion",
        inputSchema: {
            type: "object",
            properties: { prompt: { type: "string", description: "The prompt to send to the LLM" } },
            required: ["prompt"],
        },
    },
    {
        name: "test_elicitation",
        description: "Asks the user for a name and an email address",
        inputSchema: {
            type: "object",
            properties: { message: { type: "string", description: "The message to show the user" } },
            required: ["message"],
        },
    },
    {
        name: "test_elicitation_sep1034_defaults",
        description: "Elicitation whose schema has a default for every primitive type",
        inputSchema: noArgs,
    },
    {
        name: "test_elicitation_sep1330_enums",
        description: "Elicitation with every enum schema variant",
        inputSchema: noArgs,
    },
    {
        name: "json_schema_2020_12_tool",
        description: "Tool with JSON Schema 2020-12 features",
        inputSchema: {
            $schema: "https://json-schema.org/draft/2020-12/schema",
            type: "object",
            $defs: {
                address: {
                    type: "object",
                    properties: { street: { type: "string" }, city: { type: "string" } },
                },
            },
            properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
            additionalProperties: false,
        },
    },
    // Beyond the suite: server requests and notifications that travel on the standalone GET
    // stream (not tied to the call's own stream).
    {
        name: "test_sampling_on_get_stream",
        description: "Asks the client's model for a completion over the GET stream",
        inputSchema: noArgs,
    },
    {
        name: "test_elicitation_on_get_stream",
        description: "Asks the user for a name over the GET stream",
        inputSchema: noArgs,
    },
    {
        name: "test_list_changed",
        description: "Announces a changed tool list over the GET stream",
        inputSchema: noArgs,
    },
    {
        name: "test_reconnection",
        description: "Closes its SSE stream before answering, so the client resumes with Last-Event-ID",
        inputSchema: noArgs,
    },
];

const RESOURCES = [
    {
        uri: "test://static-text",
        name: "static-text",
        description: "A static text resource",
        mimeType: "text/plain",
    },
    {
        uri: "test://static-binary",
        name: "static-binary",
        description: "A static binary resource (PNG)",
        mimeType: "image/png",
    },
    {
        uri: "test://watched-resource",
        name: "watched-resource",
        description: "A resource clients can subscribe to",
        mimeType: "text/plain",
    },
];

const PROMPTS = [
    { name: "test_simple_prompt", description: "A prompt without arguments" },
    {
        name: "test_prompt_with_arguments",
        description: "A prompt with two required arguments",
        arguments: [
            { name: "arg1", description: "First test argument", required: true },
            { name: "arg2", description: "Second test argument", required: true },
        ],
    },
    {
        name: "test_prompt_with_embedded_resource",
        description: "A prompt that embeds a resource",
        arguments: [{ name: "resourceUri", description: "URI of the resource to embed", required: true }],
    },
    { name: "test_prompt_with_image", description: "A prompt with an image" },
];

const text = (t) => ({ content: [{ type: "text", text: t }] });

/*
 * The session's standalone GET stream: the SDK's server transport drops what it sends there
 * while no GET is open, and a client opens its GET only after initialize, racing its first
 * call. The tools that speak on that stream wait for it first (bounded: past the bound they
 * send anyway, and the probe sees what was lost).
 */
class StandaloneStream {
    constructor() {
        this.open = false;
        this.waiters = [];
    }
    opened() {
        this.open = true;
        for (const w of this.waiters.splice(0)) w();
    }
    closed() {
        this.open = false;
    }
    ready(ms = 5000) {
        if (this.open) return Promise.resolve();
        return new Promise((resolve) => {
            const done = () => {
                clearTimeout(timer);
                resolve();
            };
            const timer = setTimeout(() => {
                this.waiters = this.waiters.filter((w) => w !== done);
                resolve();
            }, ms);
            this.waiters.push(done);
        });
    }
}

async function callTool(server, name, args, extra, standalone) {
    switch (name) {
        case "test_simple_text":
            return text("This is a simple text response for testing.");
        case "test_image_content":
            return { content: [{ type: "image", data: PNG_1X1, mimeType: "image/png" }] };
        case "test_audio_content":
            return { content: [{ type: "audio", data: WAV_SILENCE, mimeType: "audio/wav" }] };
        case "test_embedded_resource":
            return {
                content: [
                    {
                        type: "resource",
                        resource: {
                            uri: "test://embedded-resource",
                            mimeType: "text/plain",
                            text: "This is an embedded resource content.",
                        },
                    },
                ],
            };
        case "test_multiple_content_types":
            return {
                content: [
                    { type: "text", text: "Multiple content types test:" },
                    { type: "image", data: PNG_1X1, mimeType: "image/png" },
                    {
                        type: "resource",
                        resource: {
                            uri: "test://mixed-content-resource",
                            mimeType: "application/json",
                            text: JSON.stringify({ test: "data", value: 123 }),
                        },
                    },
                ],
            };
        case "test_tool_with_logging": {
            const log = (data) =>
                extra.sendNotification({ method: "notifications/message", params: { level: "info", data } });
            await log("Tool execution started");
            await sleep(50);
            await log("Tool processing data");
            await sleep(50);
            await log("Tool execution completed");
            return text("Tool with logging executed successfully");
        }
        case "test_error_handling":
            return { isError: true, content: [{ type: "text", text: "This tool intentionally returns an error for testing" }] };
        case "test_tool_with_progress": {
            const token = extra._meta?.progressToken;
            for (const progress of [0, 50, 100]) {
                if (token !== undefined)
                    await extra.sendNotification({
                        method: "notifications/progress",
                        params: { progressToken: token, progress, total: 100 },
                    });
                if (progress < 100) await sleep(50);
            }
            return text("Tool with progress executed successfully");
        }
        case "test_sampling": {
            const r = await extra.sendRequest(
                {
                    method: "sampling/createMessage",
                    params: {
                        messages: [{ role: "user", content: { type: "text", text: String(args?.prompt ?? "") } }],
                        maxTokens: 100,
                    },
                },
                CreateMessageResultSchema,
            );
            const said = r.content?.type === "text" ? r.content.text : JSON.stringify(r.content);
            return text(`LLM response: ${said}`);
        }
        case "test_elicitation": {
            const r = await extra.sendRequest(
                {
                    method: "elicitation/create",
                    params: {
                        message: String(args?.message ?? ""),
                        requestedSchema: {
                            type: "object",
                            properties: {
                                username: { type: "string", description: "User's response" },
                                email: { type: "string", description: "User's email address" },
                            },
                            required: ["username", "email"],
                        },
                    },
                },
                ElicitResultSchema,
            );
            return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
        }
        case "test_elicitation_sep1034_defaults": {
            const r = await extra.sendRequest(
                {
                    method: "elicitation/create",
                    params: {
                        message: "Please review the defaults",
                        requestedSchema: {
                            type: "object",
                            properties: {
                                name: { type: "string", default: "John Doe" },
                                age: { type: "integer", default: 30 },
                                score: { type: "number", default: 95.5 },
                                status: {
                                    type: "string",
                                    enum: ["active", "inactive", "pending"],
                                    default: "active",
                                },
                                verified: { type: "boolean", default: true },
                            },
                        },
                    },
                },
                ElicitResultSchema,
            );
            return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
        }
        case "test_elicitation_sep1330_enums": {
            const r = await extra.sendRequest(
                {
                    method: "elicitation/create",
                    params: {
                        message: "Please choose",
                        requestedSchema: {
                            type: "object",
                            properties: {
                                untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
                                titledSingle: {
                                    type: "string",
                                    oneOf: [
                                        { const: "value1", title: "First Option" },
                                        { const: "value2", title: "Second Option" },
                                        { const: "value3", title: "Third Option" },
                                    ],
                                },
                                legacyEnum: {
                                    type: "string",
                                    enum: ["opt1", "opt2", "opt3"],
                                    enumNames: ["Option One", "Option Two", "Option Three"],
                                },
                                untitledMulti: {
                                    type: "array",
                                    items: { type: "string", enum: ["option1", "option2", "option3"] },
                                },
                                titledMulti: {
                                    type: "array",
                                    items: {
                                        anyOf: [
                                            { const: "value1", title: "First Choice" },
                                            { const: "value2", title: "Second Choice" },
                                            { const: "value3", title: "Third Choice" },
                                        ],
                                    },
                                },
                            },
                        },
                    },
                },
                ElicitResultSchema,
            );
            return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
        }
        case "test_sampling_on_get_stream": {
            await standalone.ready();
            const r = await server.createMessage({
                messages: [{ role: "user", content: { type: "text", text: "Say something" } }],
                maxTokens: 50,
            });
            return text(`LLM response: ${r.content?.type === "text" ? r.content.text : ""}`);
        }
        case "test_elicitation_on_get_stream": {
            await standalone.ready();
            const r = await server.elicitInput({
                message: "Your name?",
                requestedSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
            });
            return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
        }
        case "test_list_changed":
            await standalone.ready();
            await server.sendToolListChanged();
            return text("announced");
        case "json_schema_2020_12_tool":
            return text(`Received: ${JSON.stringify(args ?? {})}`);
        case "test_reconnection":
            // Only offered by the transport when the client can resume (event store, 2025-11-25).
            if (extra.closeSSEStream) {
                await sleep(50);
                extra.closeSSEStream();
                await sleep(150);
            }
            return text("Reconnection test completed successfully");
        default:
            throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
    }
}

function readResource(uri) {
    if (uri === "test://static-text")
        return { contents: [{ uri, mimeType: "text/plain", text: "This is the content of the static text resource." }] };
    if (uri === "test://static-binary") return { contents: [{ uri, mimeType: "image/png", blob: PNG_1X1 }] };
    if (uri === "test://watched-resource")
        return { contents: [{ uri, mimeType: "text/plain", text: "The watched resource, unchanged." }] };
    const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (m)
        return {
            contents: [
                {
                    uri,
                    mimeType: "application/json",
                    text: JSON.stringify({ id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }),
                },
            ],
        };
    throw new McpError(ErrorCode.InvalidParams, `Resource not found: ${uri}`);
}

function getPrompt(name, args) {
    const user = (content) => ({ role: "user", content });
    switch (name) {
        case "test_simple_prompt":
            return { messages: [user({ type: "text", text: "This is a simple prompt for testing." })] };
        case "test_prompt_with_arguments":
            return {
                messages: [
                    user({ type: "text", text: `Prompt with arguments: arg1='${args?.arg1}', arg2='${args?.arg2}'` }),
                ],
            };
        case "test_prompt_with_embedded_resource":
            return {
                messages: [
                    user({
                        type: "resource",
                        resource: {
                            uri: String(args?.resourceUri ?? "test://example-resource"),
                            mimeType: "text/plain",
                            text: "Embedded resource content for testing.",
                        },
                    }),
                    user({ type: "text", text: "Please process the embedded resource above." }),
                ],
            };
        case "test_prompt_with_image":
            return {
                messages: [
                    user({ type: "image", data: PNG_1X1, mimeType: "image/png" }),
                    user({ type: "text", text: "Please analyze the image above." }),
                ],
            };
        default:
            throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${name}`);
    }
}

function complete(ref, argument) {
    const candidates =
        ref?.type === "ref/prompt"
            ? { arg1: ["paris", "park", "party", "test-one", "test-two"], arg2: ["alpha", "beta"] }[argument?.name] ?? []
            : ["123", "456"];
    const values = candidates.filter((v) => v.startsWith(String(argument?.value ?? "")));
    return { completion: { values, total: values.length, hasMore: false } };
}

function newServer(subscriptions, standalone) {
    const server = new Server(
        { name: "toolgate-conformance-everything", version: "1.0.0" },
        {
            capabilities: {
                tools: { listChanged: true },
                resources: { subscribe: true },
                prompts: {},
                logging: {},
                completions: {},
            },
        },
    );
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }));
    server.setRequestHandler(CallToolRequestSchema, (req, extra) =>
        callTool(server, req.params.name, req.params.arguments, extra, standalone),
    );
    server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: RESOURCES }));
    server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
        resourceTemplates: [
            {
                uriTemplate: "test://template/{id}/data",
                name: "template-data",
                description: "Data for an id",
                mimeType: "application/json",
            },
        ],
    }));
    server.setRequestHandler(ReadResourceRequestSchema, async (req) => readResource(req.params.uri));
    server.setRequestHandler(SubscribeRequestSchema, async (req) => {
        subscriptions.add(req.params.uri);
        // The subscribed resource "changes" at once: the update goes out on the GET stream.
        setTimeout(async () => {
            await standalone.ready();
            if (subscriptions.has(req.params.uri)) server.sendResourceUpdated({ uri: req.params.uri }).catch(() => {});
        }, 50);
        return {};
    });
    server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
        subscriptions.delete(req.params.uri);
        return {};
    });
    server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));
    server.setRequestHandler(GetPromptRequestSchema, async (req) => getPrompt(req.params.name, req.params.arguments));
    server.setRequestHandler(CompleteRequestSchema, async (req) => complete(req.params.ref, req.params.argument));
    return server;
}

/* Events kept per stream so a client can resume a stream it lost (Last-Event-ID). */
class MemoryEventStore {
    constructor() {
        this.events = []; // {id, streamId, message}
        this.next = 0;
    }
    async storeEvent(streamId, message) {
        const id = `${streamId}_${++this.next}`;
        this.events.push({ id, streamId, message });
        return id;
    }
    async getStreamIdForEventId(eventId) {
        return this.events.find((e) => e.id === eventId)?.streamId;
    }
    async replayEventsAfter(lastEventId, { send }) {
        const at = this.events.findIndex((e) => e.id === lastEventId);
        if (at < 0) return "";
        const { streamId } = this.events[at];
        for (const e of this.events.slice(at + 1))
            if (e.streamId === streamId && Object.keys(e.message).length > 0) await send(e.id, e.message);
        return streamId;
    }
}

/* Loopback names only, on our own port (DNS rebinding protection). */
function hostAllowed(req, port) {
    const names = ["127.0.0.1", "localhost", "[::1]"];
    const host = (req.headers.host || "").toLowerCase();
    if (!names.some((n) => host === `${n}:${port}`)) return false;
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    return names.some((n) => origin.toLowerCase() === `http://${n}:${port}`);
}

function jsonError(res, status, code, message) {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }));
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
    });
}

export function startEverythingServer(port, host = "127.0.0.1") {
    const sessions = new Map(); // session id -> {transport, server, standalone}
    const httpServer = http.createServer(async (req, res) => {
        try {
            const url = new URL(req.url, "http://x");
            if (url.pathname !== "/mcp") return jsonError(res, 404, -32000, "Not found");
            if (!hostAllowed(req, port)) return jsonError(res, 403, -32000, "Forbidden: Host or Origin not allowed");
            const sid = req.headers["mcp-session-id"];
            if (req.method === "POST") {
                const raw = await readBody(req);
                let body;
                try {
                    body = JSON.parse(raw);
                } catch {
                    return jsonError(res, 400, -32700, "Parse error");
                }
                if (sid !== undefined) {
                    const s = sessions.get(sid);
                    if (!s) return jsonError(res, 404, -32001, "Session not found");
                    return await s.transport.handleRequest(req, res, body);
                }
                if (!isInitializeRequest(body)) return jsonError(res, 400, -32000, "Missing session id");
                const subscriptions = new Set();
                const standalone = new StandaloneStream();
                const server = newServer(subscriptions, standalone);
                const transport = new StreamableHTTPServerTransport({
                    sessionIdGenerator: () => randomUUID(),
                    eventStore: new MemoryEventStore(),
                    retryInterval: 500,
                    onsessioninitialized: (id) => sessions.set(id, { transport, server, standalone }),
                    onsessionclosed: (id) => sessions.delete(id),
                });
                transport.onclose = () => {
                    if (transport.sessionId) sessions.delete(transport.sessionId);
                };
                await server.connect(transport);
                return await transport.handleRequest(req, res, body);
            }
            if (req.method === "GET" || req.method === "DELETE") {
                const s = sid !== undefined ? sessions.get(sid) : undefined;
                if (!s) return jsonError(res, sid === undefined ? 400 : 404, -32001, "Session not found");
                // A GET without Last-Event-ID answered 200 is the session's standalone stream; the
                // transport has taken it by the time it writes the head (and holds the request
                // until the stream ends).
                if (req.method === "GET" && req.headers["last-event-id"] === undefined) {
                    const writeHead = res.writeHead;
                    res.writeHead = function (...a) {
                        const r = writeHead.apply(this, a);
                        if (this.statusCode === 200) {
                            s.standalone.opened();
                            this.on("close", () => s.standalone.closed());
                        }
                        return r;
                    };
                }
                return await s.transport.handleRequest(req, res);
            }
            res.writeHead(405, { Allow: "GET, POST, DELETE" });
            res.end();
        } catch (e) {
            if (!res.headersSent) jsonError(res, 500, -32603, `Internal error: ${e.message}`);
            else res.end();
        }
    });
    return new Promise((resolve, reject) => {
        httpServer.on("error", reject);
        httpServer.listen(port, host, () =>
            resolve({
                url: `http://${host}:${port}/mcp`,
                close: () =>
                    new Promise((r) => {
                        for (const { transport } of sessions.values()) transport.close().catch(() => {});
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
        console.error("usage: everything-server.mjs PORT");
        process.exit(2);
    }
    const s = await startEverythingServer(port);
    console.log(`listening ${s.url}`);
    const stop = () => s.close().then(() => process.exit(0));
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}
