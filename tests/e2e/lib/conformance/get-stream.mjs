// Server-to-client traffic on the standalone GET stream, which the suite's scenarios do not
// exercise (their sampling and elicitation requests ride on the call's own POST stream): with
// the SDK 1.x client against the reference server's extra tools, a sampling request and an
// elicitation request not tied to any client request, a tools/list_changed notification, and
// the notifications/resources/updated that follows a subscription.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ResourceUpdatedNotificationSchema,
    ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { waitUntil, withTimeout } from "../harness.mjs";

/* Resolves what the client saw: {sampling, elicitation, listChanged, updated, results}. */
export async function getStreamProbe(url, { headers = {}, ms = 10000 } = {}) {
    const seen = { sampling: 0, elicitation: 0, listChanged: 0, updated: [], results: {} };
    const client = new Client({ name: "get-stream-probe", version: "1" }, { capabilities: { sampling: {}, elicitation: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, async () => {
        seen.sampling++;
        return { role: "assistant", content: { type: "text", text: "hi" }, model: "probe-model", stopReason: "endTurn" };
    });
    client.setRequestHandler(ElicitRequestSchema, async () => {
        seen.elicitation++;
        return { action: "accept", content: { name: "Ann" } };
    });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => seen.listChanged++);
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => seen.updated.push(n.params.uri));
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
    await withTimeout(client.connect(transport), ms, "connect");
    try {
        for (const name of ["test_sampling_on_get_stream", "test_elicitation_on_get_stream", "test_list_changed"]) {
            const r = await client
                .callTool({ name, arguments: {} }, undefined, { timeout: ms })
                .then((v) => v.content?.[0]?.text, (e) => `error: ${e.message}`);
            seen.results[name] = r;
        }
        await waitUntil(() => seen.listChanged > 0, ms, "tools/list_changed").catch(() => {});
        await client.subscribeResource({ uri: "test://watched-resource" }, { timeout: ms });
        await waitUntil(() => seen.updated.length > 0, ms, "resources/updated").catch(() => {});
    } finally {
        await client.close().catch(() => {});
    }
    return seen;
}
