// The reference backend for the conformance suite's 2026-07-28 server scenarios
// (@modelcontextprotocol/conformance 0.2.0-alpha.12, `--requirements 2026-07-28`), written on
// the MCP TypeScript SDK v2 (@modelcontextprotocol/server), served from node:http.
//
// One endpoint, both eras, one set of handlers:
//   * 2026-07-28 requests (the per-request `_meta` envelope) go to the SDK's stateless handler
//     (`createMcpHandler`): server/discover, subscriptions/listen, cache fields, resultType, the
//     envelope and header checks and the removed methods' 404 are the SDK's; the handlers here
//     return InputRequiredResult (multi round-trip) where they need input from the client.
//   * 2025-era requests (no envelope) go to a sessionful Streamable HTTP transport, one per
//     session, with the same handlers: the SDK's legacy shim turns an InputRequiredResult into
//     real sampling/elicitation/roots requests to the client and calls the handler again.
//
// Fixtures: the shared scenarios' tools, resources, template, prompts and completion
// (json_schema_2020_12_tool with the 2020-12 keywords, test_custom_headers with an
// x-mcp-header parameter), and the 2026 diagnostic ones: test_missing_capability (-32021
// without `sampling`), test_streaming_elicitation, test_logging_tool (logs only when the
// request sets a log level), test_trigger_tool_change / test_trigger_prompt_change
// (list_changed on listen streams), test_input_required_result_* (elicitation, sampling,
// list_roots, request_state, multiple_inputs, multi_round, tampered_state, capabilities) and
// the prompt test_input_required_result_prompt. requestState is HMAC-sealed (the SDK's codec)
// and bound to the tool and the round, so a modified state is refused with -32602. An unknown
// resource is -32602 with data.uri. Mcp-Param-* headers must match the body (400, -32020).
// Host and Origin must name this server on loopback (DNS rebinding).
//
//   node server-2026.mjs PORT      (listens on 127.0.0.1:PORT, endpoint /mcp)
import http from "node:http";
import { randomBytes, randomUUID } from "node:crypto";
import {
    MissingRequiredClientCapabilityError,
    ProtocolError,
    ProtocolErrorCode,
    ResourceNotFoundError,
    Server,
    WebStandardStreamableHTTPServerTransport,
    createMcpHandler,
    createRequestStateCodec,
    inputRequired,
    inputResponse,
    isLegacyRequest,
} from "@modelcontextprotocol/server";
import { readBody, sendResponse, toRequest } from "../v2-server.mjs";
import { PNG_1X1, WAV_SILENCE } from "./everything-server.mjs";

export const SERVER_NAME = "toolgate-conformance-2026";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const noArgs = { type: "object", properties: {} };
const text = (t) => ({ content: [{ type: "text", text: t }] });

// The list changes when a trigger tool runs: the trigger tools' own descriptions count the
// changes (names and order stay, so scenarios that list tools see the same set).
const changes = { tools: 0, prompts: 0 };

function tools() {
    return [
        { name: "test_simple_text", description: "Returns a simple text response", inputSchema: noArgs },
        { name: "test_image_content", description: "Returns a 1x1 PNG image", inputSchema: noArgs },
        { name: "test_audio_content", description: "Returns a short WAV clip", inputSchema: noArgs },
        { name: "test_embedded_resource", description: "Returns an embedded text resource", inputSchema: noArgs },
        { name: "test_multiple_content_types", description: "Returns text, an image and an embedded resource", inputSchema: noArgs },
        { name: "test_tool_with_logging", description: "Logs three messages while it runs", inputSchema: noArgs },
        { name: "test_error_handling", description: "Always fails with isError", inputSchema: noArgs },
        { name: "test_tool_with_progress", description: "Reports progress 0, 50 and 100 of 100", inputSchema: noArgs },
        {
            name: "test_sampling",
            description: "Asks the client's model for a completion",
            inputSchema: { type: "object", properties: { prompt: { type: "string" } }, required: ["prompt"] },
        },
        {
            name: "test_elicitation",
            description: "Asks the user for a name and an email address",
            inputSchema: { type: "object", properties: { message: { type: "string" } }, required: ["message"] },
        },
        { name: "test_elicitation_sep1034_defaults", description: "Elicitation with a default for every primitive type", inputSchema: noArgs },
        { name: "test_elicitation_sep1330_enums", description: "Elicitation with every enum schema variant", inputSchema: noArgs },
        {
            name: "json_schema_2020_12_tool",
            description: "Tool with JSON Schema 2020-12 features",
            inputSchema: {
                $schema: "https://json-schema.org/draft/2020-12/schema",
                type: "object",
                $defs: {
                    address: { $anchor: "addressDef", type: "object", properties: { street: { type: "string" }, city: { type: "string" } } },
                },
                properties: {
                    name: { type: "string" },
                    address: { $ref: "#/$defs/address" },
                    contactMethod: { type: "string", enum: ["phone", "email"] },
                    phone: { type: "string" },
                    email: { type: "string" },
                },
                allOf: [{ anyOf: [{ required: ["phone"] }, { required: ["email"] }] }],
                if: { properties: { contactMethod: { const: "phone" } }, required: ["contactMethod"] },
                then: { required: ["phone"] },
                else: { required: ["email"] },
                additionalProperties: false,
            },
        },
        {
            name: "test_custom_headers",
            description: "Echoes its region, which clients mirror into the Mcp-Param-Region header",
            inputSchema: { type: "object", properties: { region: { type: "string", "x-mcp-header": "Region" } }, required: ["region"] },
        },
        { name: "test_missing_capability", description: "Needs the client's sampling capability (-32021 without it)", inputSchema: noArgs },
        { name: "test_streaming_elicitation", description: "Asks for input on the call's own response stream", inputSchema: noArgs },
        { name: "test_logging_tool", description: "Logs a message, only to a request that asked for logs", inputSchema: noArgs },
        { name: "test_trigger_tool_change", description: `Changes the tool list (changed ${changes.tools} times)`, inputSchema: noArgs },
        { name: "test_trigger_prompt_change", description: "Changes the prompt list", inputSchema: noArgs },
        { name: "test_input_required_result_elicitation", description: "Asks for the user's name (elicitation)", inputSchema: noArgs },
        { name: "test_input_required_result_sampling", description: "Asks the client's model a question (sampling)", inputSchema: noArgs },
        { name: "test_input_required_result_list_roots", description: "Asks for the client's roots", inputSchema: noArgs },
        { name: "test_input_required_result_request_state", description: "Asks for a confirmation, with request state", inputSchema: noArgs },
        { name: "test_input_required_result_multiple_inputs", description: "Asks for elicitation, sampling and roots at once", inputSchema: noArgs },
        { name: "test_input_required_result_multi_round", description: "Asks in two rounds before it completes", inputSchema: noArgs },
        { name: "test_input_required_result_tampered_state", description: "Refuses a request state that was modified", inputSchema: noArgs },
        { name: "test_input_required_result_capabilities", description: "Asks only for what the client declared", inputSchema: noArgs },
    ];
}

const RESOURCES = [
    { uri: "test://static-text", name: "static-text", description: "A static text resource", mimeType: "text/plain" },
    { uri: "test://static-binary", name: "static-binary", description: "A static binary resource (PNG)", mimeType: "image/png" },
    { uri: "test://watched-resource", name: "watched-resource", description: "A resource clients can subscribe to", mimeType: "text/plain" },
];

const TEMPLATES = [
    { uriTemplate: "test://template/{id}/data", name: "template-data", description: "Data for an id", mimeType: "application/json" },
];

function prompts() {
    return [
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
        { name: "test_input_required_result_prompt", description: `Asks for context before it is built (list changed ${changes.prompts} times)` },
    ];
}

// Sealed request state: HMAC with a per-process key, at most ten minutes old.
const codec = createRequestStateCodec({ key: randomBytes(32), ttlSeconds: 600 });

const ask = {
    name: (message = "What is your name?") =>
        inputRequired.elicit({
            message,
            requestedSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
        }),
    sampling: (question, maxTokens = 100) =>
        inputRequired.createMessage({ messages: [{ role: "user", content: { type: "text", text: question } }], maxTokens }),
    roots: () => inputRequired.listRoots(),
};

/* The client's declared capabilities (the request's envelope in 2026, initialize in 2025). */
function requireCapability(server, name) {
    const caps = server.getClientCapabilities() ?? {};
    if (!caps[name])
        throw new MissingRequiredClientCapabilityError({ requiredCapabilities: { [name]: {} } }, `This tool needs the client capability '${name}'`);
}

/* The verified request state, when it is one this tool minted for this round. */
function stateFor(ctx, tool, round) {
    const s = ctx.mcpReq.requestState();
    return s && typeof s === "object" && s.tool === tool && s.round === round ? s : undefined;
}

function samplingText(view) {
    if (view.kind !== "sampling") return undefined;
    const c = view.result.content;
    return Array.isArray(c) ? c.find((x) => x.type === "text")?.text : c?.type === "text" ? c.text : undefined;
}

async function callTool(server, handler, name, args, ctx) {
    const responses = ctx.mcpReq.inputResponses;
    const view = (key) => inputResponse(responses, key);
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
                    { type: "resource", resource: { uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." } },
                ],
            };
        case "test_multiple_content_types":
            return {
                content: [
                    { type: "text", text: "Multiple content types test:" },
                    { type: "image", data: PNG_1X1, mimeType: "image/png" },
                    {
                        type: "resource",
                        resource: { uri: "test://mixed-content-resource", mimeType: "application/json", text: JSON.stringify({ test: "data", value: 123 }) },
                    },
                ],
            };
        case "test_tool_with_logging":
            for (const [i, msg] of ["Tool execution started", "Tool processing data", "Tool execution completed"].entries()) {
                if (i > 0) await sleep(50);
                await ctx.mcpReq.log("info", msg);
            }
            return text("Tool with logging executed successfully");
        case "test_logging_tool":
            await ctx.mcpReq.log("info", "test_logging_tool ran");
            return text("logged (when the request asked for a log level)");
        case "test_error_handling":
            return { isError: true, content: [{ type: "text", text: "This tool intentionally returns an error for testing" }] };
        case "test_tool_with_progress": {
            const token = ctx.mcpReq._meta?.progressToken;
            for (const progress of [0, 50, 100]) {
                if (token !== undefined)
                    await ctx.mcpReq.notify({ method: "notifications/progress", params: { progressToken: token, progress, total: 100 } });
                if (progress < 100) await sleep(50);
            }
            return text("Tool with progress executed successfully");
        }
        case "test_sampling": {
            const said = samplingText(view("answer"));
            if (said !== undefined) return text(`LLM response: ${said}`);
            requireCapability(server, "sampling");
            return inputRequired({ inputRequests: { answer: ask.sampling(String(args?.prompt ?? "")) } });
        }
        case "test_elicitation": {
            const v = view("response");
            if (v.kind === "elicit") return text(`User response: action=${v.action}, content=${JSON.stringify(v.content ?? {})}`);
            requireCapability(server, "elicitation");
            return inputRequired({
                inputRequests: {
                    response: inputRequired.elicit({
                        message: String(args?.message ?? ""),
                        requestedSchema: {
                            type: "object",
                            properties: {
                                username: { type: "string", description: "User's response" },
                                email: { type: "string", description: "User's email address" },
                            },
                            required: ["username", "email"],
                        },
                    }),
                },
            });
        }
        case "test_elicitation_sep1034_defaults": {
            const v = view("form");
            if (v.kind === "elicit") return text(`Elicitation completed: action=${v.action}, content=${JSON.stringify(v.content ?? {})}`);
            requireCapability(server, "elicitation");
            return inputRequired({
                inputRequests: {
                    form: inputRequired.elicit({
                        message: "Please review the defaults",
                        requestedSchema: {
                            type: "object",
                            properties: {
                                name: { type: "string", default: "John Doe" },
                                age: { type: "integer", default: 30 },
                                score: { type: "number", default: 95.5 },
                                status: { type: "string", enum: ["active", "inactive", "pending"], default: "active" },
                                verified: { type: "boolean", default: true },
                            },
                        },
                    }),
                },
            });
        }
        case "test_elicitation_sep1330_enums": {
            const v = view("choice");
            if (v.kind === "elicit") return text(`Elicitation completed: action=${v.action}, content=${JSON.stringify(v.content ?? {})}`);
            requireCapability(server, "elicitation");
            return inputRequired({
                inputRequests: {
                    choice: inputRequired.elicit({
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
                                legacyEnum: { type: "string", enum: ["opt1", "opt2", "opt3"], enumNames: ["Option One", "Option Two", "Option Three"] },
                                untitledMulti: { type: "array", items: { type: "string", enum: ["option1", "option2", "option3"] } },
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
                    }),
                },
            });
        }
        case "json_schema_2020_12_tool":
            return text(`Received: ${JSON.stringify(args ?? {})}`);
        case "test_custom_headers":
            return text(`region: ${args?.region}`);
        case "test_missing_capability":
            requireCapability(server, "sampling");
            return text("the client declared sampling");
        case "test_streaming_elicitation": {
            const v = view("confirm");
            if (v.kind === "elicit") return text(`Streaming elicitation answered: action=${v.action}`);
            requireCapability(server, "elicitation");
            return inputRequired({
                inputRequests: {
                    confirm: inputRequired.elicit({
                        message: "Continue?",
                        requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
                    }),
                },
            });
        }
        case "test_trigger_tool_change":
            changes.tools++;
            handler.notify.toolsChanged();
            return text(`tool list changed (${changes.tools})`);
        case "test_trigger_prompt_change":
            changes.prompts++;
            handler.notify.promptsChanged();
            return text(`prompt list changed (${changes.prompts})`);
        case "test_input_required_result_elicitation": {
            const v = view("user_name");
            if (v.kind === "elicit" && v.action === "accept" && typeof v.content?.name === "string") return text(`Hello, ${v.content.name}!`);
            requireCapability(server, "elicitation");
            return inputRequired({ inputRequests: { user_name: ask.name() } });
        }
        case "test_input_required_result_sampling": {
            const said = samplingText(view("capital_question"));
            if (said !== undefined) return text(`The model answered: ${said}`);
            requireCapability(server, "sampling");
            return inputRequired({ inputRequests: { capital_question: ask.sampling("What is the capital of France?") } });
        }
        case "test_input_required_result_list_roots": {
            const v = view("client_roots");
            if (v.kind === "roots") return text(`Roots: ${v.roots.map((r) => r.uri).join(", ") || "(none)"}`);
            requireCapability(server, "roots");
            return inputRequired({ inputRequests: { client_roots: ask.roots() } });
        }
        case "test_input_required_result_request_state":
        case "test_input_required_result_tampered_state": {
            const v = view("confirm");
            if (stateFor(ctx, name, 1) && v.kind === "elicit") return text(`state-ok: confirmed=${JSON.stringify(v.content?.ok ?? null)}`);
            requireCapability(server, "elicitation");
            return inputRequired({
                inputRequests: {
                    confirm: inputRequired.elicit({
                        message: "Please confirm",
                        requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
                    }),
                },
                requestState: await codec.mint({ tool: name, round: 1, nonce: randomUUID() }),
            });
        }
        case "test_input_required_result_multiple_inputs": {
            const who = view("user_name");
            const greeting = samplingText(view("greeting"));
            const roots = view("client_roots");
            if (stateFor(ctx, name, 1) && who.kind === "elicit" && greeting !== undefined && roots.kind === "roots")
                return text(`${greeting} ${who.content?.name ?? ""} (${roots.roots.length} roots)`);
            for (const c of ["elicitation", "sampling", "roots"]) requireCapability(server, c);
            return inputRequired({
                inputRequests: { user_name: ask.name(), greeting: ask.sampling("Generate a greeting", 50), client_roots: ask.roots() },
                requestState: await codec.mint({ tool: name, round: 1, nonce: randomUUID() }),
            });
        }
        case "test_input_required_result_multi_round": {
            const step1 = view("step1");
            const step2 = view("step2");
            const s2 = stateFor(ctx, name, 2);
            if (s2 && step2.kind === "elicit" && typeof step2.content?.color === "string")
                return text(`${s2.name} likes ${step2.content.color}`);
            requireCapability(server, "elicitation");
            if (stateFor(ctx, name, 1) && step1.kind === "elicit" && typeof step1.content?.name === "string")
                return inputRequired({
                    inputRequests: {
                        step2: inputRequired.elicit({
                            message: "Step 2: What is your favorite color?",
                            requestedSchema: { type: "object", properties: { color: { type: "string" } }, required: ["color"] },
                        }),
                    },
                    requestState: await codec.mint({ tool: name, round: 2, name: step1.content.name, nonce: randomUUID() }),
                });
            return inputRequired({
                inputRequests: { step1: ask.name("Step 1: What is your name?") },
                requestState: await codec.mint({ tool: name, round: 1, nonce: randomUUID() }),
            });
        }
        case "test_input_required_result_capabilities": {
            const caps = server.getClientCapabilities() ?? {};
            const wanted = {};
            if (caps.sampling) wanted.question = ask.sampling("Say something");
            if (caps.elicitation) wanted.user_name = ask.name();
            if (caps.roots) wanted.client_roots = ask.roots();
            const answered = Object.keys(wanted).every((k) => view(k).kind !== "missing");
            if (Object.keys(wanted).length === 0 || answered) return text(`Asked for: ${Object.keys(wanted).join(", ") || "nothing"}`);
            return inputRequired({ inputRequests: wanted });
        }
        default:
            throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool: ${name}`);
    }
}

function readResource(uri) {
    if (uri === "test://static-text") return { contents: [{ uri, mimeType: "text/plain", text: "This is the content of the static text resource." }] };
    if (uri === "test://static-binary") return { contents: [{ uri, mimeType: "image/png", blob: PNG_1X1 }] };
    if (uri === "test://watched-resource") return { contents: [{ uri, mimeType: "text/plain", text: "The watched resource, unchanged." }] };
    const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (m)
        return {
            contents: [{ uri, mimeType: "application/json", text: JSON.stringify({ id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }) }],
        };
    throw new ResourceNotFoundError(uri, `Resource not found: ${uri}`);
}

function getPrompt(name, args, ctx) {
    const user = (content) => ({ role: "user", content });
    switch (name) {
        case "test_simple_prompt":
            return { messages: [user({ type: "text", text: "This is a simple prompt for testing." })] };
        case "test_prompt_with_arguments":
            return { messages: [user({ type: "text", text: `Prompt with arguments: arg1='${args?.arg1}', arg2='${args?.arg2}'` })] };
        case "test_prompt_with_embedded_resource":
            return {
                messages: [
                    user({
                        type: "resource",
                        resource: { uri: String(args?.resourceUri ?? "test://example-resource"), mimeType: "text/plain", text: "Embedded resource content for testing." },
                    }),
                    user({ type: "text", text: "Please process the embedded resource above." }),
                ],
            };
        case "test_prompt_with_image":
            return {
                messages: [user({ type: "image", data: PNG_1X1, mimeType: "image/png" }), user({ type: "text", text: "Please analyze the image above." })],
            };
        case "test_input_required_result_prompt": {
            const v = inputResponse(ctx.mcpReq.inputResponses, "user_context");
            if (v.kind === "elicit" && typeof v.content?.context === "string")
                return { messages: [user({ type: "text", text: `Answer with this context: ${v.content.context}` })] };
            return inputRequired({
                inputRequests: {
                    user_context: inputRequired.elicit({
                        message: "What context should the prompt use?",
                        requestedSchema: { type: "object", properties: { context: { type: "string" } }, required: ["context"] },
                    }),
                },
            });
        }
        default:
            throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown prompt: ${name}`);
    }
}

function complete(ref, argument) {
    const candidates =
        ref?.type === "ref/prompt"
            ? ({ arg1: ["paris", "park", "party", "test-one", "test-two"], arg2: ["alpha", "beta"] }[argument?.name] ?? [])
            : ["123", "456"];
    const values = candidates.filter((v) => v.startsWith(String(argument?.value ?? "")));
    return { completion: { values, total: values.length, hasMore: false } };
}

/* A server instance with every handler (the SDK calls this per 2026 request, once per 2025 session). */
function newServer(handler) {
    const server = new Server(
        { name: SERVER_NAME, version: "1.0.0" },
        {
            capabilities: {
                tools: { listChanged: true },
                resources: { subscribe: true, listChanged: true },
                prompts: { listChanged: true },
                logging: {},
                completions: {},
            },
            cacheHints: {
                "tools/list": { ttlMs: 0, cacheScope: "private" },
                "prompts/list": { ttlMs: 0, cacheScope: "private" },
                "resources/list": { ttlMs: 60000, cacheScope: "public" },
                "resources/templates/list": { ttlMs: 60000, cacheScope: "public" },
                "resources/read": { ttlMs: 60000, cacheScope: "public" },
                "server/discover": { ttlMs: 0, cacheScope: "private" },
            },
            requestState: { verify: (state, ctx) => codec.verify(state, ctx) },
        },
    );
    server.setRequestHandler("tools/list", async () => ({ tools: tools() }));
    server.setRequestHandler("tools/call", async (req, ctx) => {
        const r = await callTool(server, handler, req.params.name, req.params.arguments, ctx);
        return r.resultType === "input_required" ? r : server.projectCallToolResult(r, undefined);
    });
    server.setRequestHandler("resources/list", async () => ({ resources: RESOURCES }));
    server.setRequestHandler("resources/templates/list", async () => ({ resourceTemplates: TEMPLATES }));
    server.setRequestHandler("resources/read", async (req) => readResource(req.params.uri));
    // 2025 only: the 2026 revision has subscriptions/listen instead (the SDK answers these 404 there).
    server.setRequestHandler("resources/subscribe", async (req) => {
        setTimeout(() => server.sendResourceUpdated({ uri: req.params.uri }).catch(() => {}), 50);
        return {};
    });
    server.setRequestHandler("resources/unsubscribe", async () => ({}));
    server.setRequestHandler("prompts/list", async () => ({ prompts: prompts() }));
    server.setRequestHandler("prompts/get", async (req, ctx) => getPrompt(req.params.name, req.params.arguments, ctx));
    server.setRequestHandler("completion/complete", async (req) => complete(req.params.ref, req.params.argument));
    return server;
}

/* Host (and Origin, when sent) must name this server on a loopback name. */
function hostAllowed(req, port) {
    const names = ["127.0.0.1", "localhost", "[::1]"];
    const host = (req.headers.host || "").toLowerCase();
    if (!names.some((n) => host === `${n}:${port}`)) return false;
    const origin = req.headers.origin;
    return origin === undefined || names.some((n) => origin.toLowerCase() === `http://${n}:${port}`);
}

/*
 * Mcp-Param-* headers of a 2026 tools/call against the body (the SDK checks them for the tools it
 * registers itself; these handlers are its low-level ones): every property the tool marks with
 * x-mcp-header must come as that header when the body has a value, decoded (=?base64?...?=) equal
 * to it. Returns the error message, or undefined when the headers are right.
 */
function paramHeaderProblem(req, msg) {
    if (msg?.method !== "tools/call" || typeof msg.params?.name !== "string") return undefined;
    const tool = tools().find((t) => t.name === msg.params.name);
    for (const [prop, schema] of Object.entries(tool?.inputSchema?.properties ?? {})) {
        const name = schema["x-mcp-header"];
        if (name === undefined) continue;
        const value = msg.params.arguments?.[prop];
        const raw = req.headers[`mcp-param-${name.toLowerCase()}`];
        if (value === undefined || value === null) {
            if (raw !== undefined) return `Mcp-Param-${name} sent without a body value`;
            continue;
        }
        if (raw === undefined) return `Mcp-Param-${name} header missing for body value`;
        const header = String(raw).trim();
        let decoded = header;
        const m = /^=\?base64\?(.*)\?=$/.exec(header);
        if (m) {
            if (!/^[A-Za-z0-9+/]*$/.test(m[1].replace(/={1,2}$/, "")) || m[1].length % 4 !== 0) return `Mcp-Param-${name}: invalid Base64`;
            decoded = Buffer.from(m[1], "base64").toString("utf8");
        } else if (/[\x00-\x08\x0a-\x1f\x7f]/.test(header)) return `Mcp-Param-${name}: invalid characters`;
        if (decoded !== String(value)) return `Header mismatch: Mcp-Param-${name} header value '${decoded}' does not match body value '${value}'`;
    }
    return undefined;
}

function jsonError(res, status, code, message) {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code, message } }));
}

export function startServer2026(port, host = "127.0.0.1") {
    const sessions = new Map(); // 2025 session id -> transport
    let handler;
    handler = createMcpHandler(() => newServer(handler), { legacy: "reject", onerror: () => {} });
    const httpServer = http.createServer(async (req, res) => {
        try {
            if (new URL(req.url, "http://x").pathname !== "/mcp") return jsonError(res, 404, -32601, "Not found");
            if (!hostAllowed(req, port)) return jsonError(res, 403, -32600, "Forbidden: Host or Origin not allowed");
            const body = await readBody(req);
            const request = toRequest(req, body);
            let parsed;
            try {
                parsed = body.length ? JSON.parse(body.toString("utf8")) : undefined;
            } catch {
                parsed = undefined;
            }
            if (!(await isLegacyRequest(request.clone(), parsed))) {
                const problem = paramHeaderProblem(req, parsed);
                if (problem) {
                    res.writeHead(400, { "Content-Type": "application/json" });
                    return res.end(JSON.stringify({ jsonrpc: "2.0", id: parsed.id ?? null, error: { code: -32020, message: problem } }));
                }
                return await sendResponse(res, await handler.fetch(request));
            }
            const sid = req.headers["mcp-session-id"];
            let transport = sid !== undefined ? sessions.get(sid) : undefined;
            if (sid !== undefined && !transport) return jsonError(res, 404, -32001, "Session not found");
            if (!transport) {
                if (req.method !== "POST") return jsonError(res, 400, -32600, "Missing session id");
                transport = new WebStandardStreamableHTTPServerTransport({
                    sessionIdGenerator: () => randomUUID(),
                    onsessioninitialized: (id) => sessions.set(id, transport),
                    onsessionclosed: (id) => sessions.delete(id),
                });
                await newServer(handler).connect(transport);
            }
            await sendResponse(res, await transport.handleRequest(request, { parsedBody: parsed }));
        } catch (e) {
            if (!res.headersSent) jsonError(res, 500, -32603, String(e?.message ?? e));
            else res.end();
        }
    });
    return new Promise((resolve, reject) => {
        httpServer.on("error", reject);
        httpServer.listen(port, host, () =>
            resolve({
                url: `http://${host}:${port}/mcp`,
                close: async () => {
                    for (const t of sessions.values()) await t.close().catch(() => {});
                    await handler.close().catch(() => {});
                    await new Promise((r) => {
                        httpServer.closeAllConnections();
                        httpServer.close(() => r());
                    });
                },
            }),
        );
    });
}

if (import.meta.url === `file://${process.argv[1]}`) {
    const port = Number(process.argv[2] || process.env.PORT);
    if (!Number.isInteger(port) || port <= 0) {
        console.error("usage: server-2026.mjs PORT");
        process.exit(2);
    }
    const s = await startServer2026(port);
    console.log(`listening ${s.url}`);
    const stop = () => s.close().then(() => process.exit(0));
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}
