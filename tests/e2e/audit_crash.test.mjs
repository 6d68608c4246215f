// The audit log survives a crash: toolgate is killed with SIGKILL in the middle of a load of
// tool calls, and then, on the store exactly as the crash left it (no restart):
// - `toolgate audit verify` (no --live) finds the chain intact, ending at a signed checkpoint
//   that is not a closing one: every commit is sealed with a checkpoint;
// - every call whose answer reached a client has both its decision and its completion record
//   (answers are released only once their completion record is committed), and they lie
//   before the final checkpoint, so they are signed;
// - `--closed` refuses it (no clean stop), until a restart records the unclean stop and a
//   clean stop closes the chain.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { startToolgate, startEhr, killAll, tempDir, sleep, TOOLGATE_BIN } from "./lib/harness.mjs";
import { post, openSession } from "./lib/mcp-fetch.mjs";

after(killAll);

test("kill -9 under load: the store as left verifies, and every answered call is recorded and signed", async () => {
    const dir = tempDir();
    const db = path.join(dir, "audit.db");
    const ehr = await startEhr("json");
    const opts = {
        routes: [{ name: "ehr", url: ehr.url }],
        workers: 2,
        extra: { audit: { store: `sqlite:${db}`, durability: "commit" } },
    };
    let tg = await startToolgate(opts);
    const session = await openSession(tg.url, "crash");

    // Eight clients call tools as fast as they can; each answer that arrives whole is noted.
    const answered = new Set();
    let lastAnswered = null;
    let stop = false;
    const clients = [];
    for (let c = 0; c < 8; c++) {
        clients.push((async () => {
            for (let i = 0; !stop && i < 100000; i++) {
                try {
                    const { res } = await post(tg.url, {
                        jsonrpc: "2.0",
                        id: i,
                        method: "tools/call",
                        params: { name: "get_patient", arguments: { patient_id: `P${(i % 900) + 1}` } },
                    }, session);
                    if (res.status === 200) {
                        lastAnswered = res.headers.get("x-request-id");
                        answered.add(lastAnswered);
                    }
                } catch {
                    return; // the gateway is gone
                }
            }
        })());
    }
    await sleep(1500);
    assert.ok(answered.size > 50, `load ran (${answered.size} answers)`);
    await tg.child.kill(); // SIGKILL, in the middle of the load
    stop = true;
    await Promise.all(clients);
    const latest = lastAnswered;

    // The store as the crash left it, before anything opens it for writing.
    const pub = `${db}.ed25519.pem.pub`;
    const verify = (...flags) =>
        spawnSync(TOOLGATE_BIN, ["audit", "verify", `sqlite:${db}`, "--pubkey", pub, ...flags], {
            encoding: "utf8",
            timeout: 60000,
        });
    let v = verify();
    assert.equal(v.status, 0, `audit verify right after SIGKILL: ${v.stdout}\n${v.stderr}`);
    assert.match(v.stdout, /ends at a signed checkpoint that is not a closing one/);
    assert.doesNotMatch(v.stdout, /unsigned/);
    v = verify("--closed");
    assert.equal(v.status, 1, `--closed after SIGKILL: ${v.stdout}\n${v.stderr}`);
    assert.match(v.stdout + v.stderr, /not a closing one/);

    // Every answer that reached a client has its decision and completion records, signed.
    const rows = execFileSync(
        "sqlite3",
        ["-readonly", db, "SELECT seq || ' ' || kind || ' ' || coalesce(request_id, '-') FROM audit_records ORDER BY seq"],
        { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
    );
    const kinds = new Map();
    let lastSeq = 0;
    let lastKind = "";
    let lastCheckpoint = 0;
    for (const line of rows.split("\n")) {
        const [seq, kind, id] = line.split(" ");
        if (!seq) continue;
        lastSeq = Number(seq);
        lastKind = kind;
        if (kind === "checkpoint") lastCheckpoint = lastSeq;
        if (id === "-") continue;
        if (!kinds.has(id)) kinds.set(id, new Map());
        kinds.get(id).set(kind, lastSeq);
    }
    assert.equal(lastKind, "checkpoint", "the crashed store ends at a checkpoint");
    assert.equal(lastCheckpoint, lastSeq);
    let missing = 0;
    let unsigned = 0;
    for (const id of answered) {
        const k = kinds.get(id);
        if (!k || !k.has("decision") || !k.has("completion")) missing++;
        else if (k.get("completion") >= lastCheckpoint) unsigned++;
    }
    assert.equal(missing, 0, `${missing} of ${answered.size} answered calls lack a record`);
    assert.equal(unsigned, 0, `${unsigned} answered calls lie after the final checkpoint`);
    const latestCompletion = kinds.get(latest)?.get("completion");
    assert.ok(
        latestCompletion !== undefined && latestCompletion < lastCheckpoint,
        `the latest acknowledged completion (seq ${latestCompletion}) lies before the final checkpoint (seq ${lastCheckpoint})`,
    );

    // Start again on the same store; it picks up the chain and records the restart.
    tg = await startToolgate({ ...opts, port: undefined });
    const s2 = await openSession(tg.url, "crash");
    const { res } = await post(tg.url, {
        jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "get_patient", arguments: { patient_id: "P7" } },
    }, s2);
    assert.equal(res.status, 200);
    await tg.stop();
    await ehr.stop();

    v = verify("--closed");
    assert.equal(v.status, 0, `audit verify --closed after a clean restart: ${v.stdout}\n${v.stderr}`);
    assert.match(v.stdout + v.stderr, /unclean/i, "the crash is visible in the log");
    assert.match(v.stdout, /ends at a closing checkpoint/);
});
