// audit.commit_delay through the real binary: with `durability: commit` an answer waits for
// the group commit of its completion record, and a small commit first waits commit_delay for
// company. So one call at a time with a 100 ms delay takes at least 100 ms a call, while the
// same calls with 0 take less than those delays added up; with `durability: queued` answers
// do not wait for commits at all. Out-of-range values are refused by `check` and `serve`.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { writeFileSync } from "node:fs";
import { startToolgate, startEhr, killAll, tempDir, TOOLGATE_BIN } from "./lib/harness.mjs";
import { post, openSession } from "./lib/mcp-fetch.mjs";

after(killAll);

const CALLS = 5;
const DELAY_MS = 100;

// Opens a session, then makes CALLS tools/call one after another: the ms each answer took.
async function timedCalls(url) {
    const session = await openSession(url, "delay");
    const took = [];
    for (let i = 0; i < CALLS; i++) {
        const t0 = performance.now();
        const r = await post(url, {
            jsonrpc: "2.0",
            id: 10 + i,
            method: "tools/call",
            params: { name: "get_patient", arguments: { patient_id: `P${i + 1}` } },
        }, session);
        took.push(performance.now() - t0);
        assert.equal(r.res.status, 200, r.text);
        assert.ok(JSON.parse(r.text).result, r.text);
    }
    return took;
}

async function gateway(ehr, audit) {
    const db = path.join(tempDir(), "audit.db");
    return startToolgate({
        routes: [{ name: "ehr", url: ehr.url }],
        extra: { audit: { store: `sqlite:${db}`, ...audit } },
    });
}

test("each answer waits for its commit, and a small commit waits commit_delay first", async () => {
    const ehr = await startEhr("json");
    const slow = await gateway(ehr, { durability: "commit", commit_delay: `${DELAY_MS}ms` });
    const delayed = await timedCalls(slow.url);
    await slow.stop();
    for (const ms of delayed)
        assert.ok(ms >= DELAY_MS - 1, `an answer came after ${ms.toFixed(1)} ms, inside the ${DELAY_MS} ms delay`);

    const prompt = await gateway(ehr, { durability: "commit", commit_delay: "0" });
    const atOnce = await timedCalls(prompt.url);
    await prompt.stop();
    const sum = atOnce.reduce((a, b) => a + b, 0);
    assert.ok(sum < CALLS * DELAY_MS, `${CALLS} calls with commit_delay 0 took ${sum.toFixed(1)} ms`);

    // Answers that do not wait for their records do not wait for the delay either.
    const queued = await gateway(ehr, { durability: "queued", commit_delay: `${DELAY_MS}ms` });
    const notHeld = await timedCalls(queued.url);
    await queued.stop();
    const qsum = notHeld.reduce((a, b) => a + b, 0);
    assert.ok(qsum < CALLS * DELAY_MS, `${CALLS} calls with durability queued took ${qsum.toFixed(1)} ms`);
    await ehr.stop();
});

test("a commit_delay out of range or without a unit is refused with the key named", () => {
    const dir = tempDir();
    for (const [value, why] of [
        ["101ms", /audit\.commit_delay: must be between 0 \(commit at once\) and 100ms/],
        ["2s", /audit\.commit_delay: must be between 0 \(commit at once\) and 100ms/],
        ["200", /audit\.commit_delay: "200" is not a duration/],
        ["-1ms", /audit\.commit_delay: "-1ms" is not a duration/],
    ]) {
        const cfg = path.join(dir, "toolgate.yaml");
        writeFileSync(cfg, [
            "server: {listen: [\"127.0.0.1:1\"]}",
            "routes: [{name: ehr, path: /mcp, backends: [{name: b, url: \"http://127.0.0.1:9/mcp\"}]}]",
            "identity: {mode: \"off\"}",
            `audit: {store: "sqlite:${path.join(dir, "a.db")}", commit_delay: "${value}"}`,
            "",
        ].join("\n"));
        for (const cmd of [["check", "--config", cfg], ["serve", "--config", cfg]]) {
            const r = spawnSync(TOOLGATE_BIN, cmd, { encoding: "utf8", timeout: 20000 });
            assert.notEqual(r.status, 0, `${cmd[0]} accepted commit_delay ${value}`);
            assert.match(r.stderr, why, `${cmd[0]} with commit_delay ${value}: ${r.stderr}`);
        }
    }
});
