// The command line's conventions: every command and subcommand answers --help on stdout with
// exit 0; a mistake (an unknown option or command) exits 2 with the usage on stderr.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { TOOLGATE_BIN, REPO_DIR, tempDir } from "./lib/harness.mjs";

const run = (...args) => spawnSync(TOOLGATE_BIN, args, { encoding: "utf8", timeout: 20000 });

const COMMANDS = [
    [],
    ["serve"],
    ["check"],
    ["status"],
    ["keys"],
    ["keys", "generate"],
    ["token"],
    ["safety"],
    ["safety", "scan"],
    ["safety", "validate"],
    ["safety", "redact"],
    ["policy"],
    ["policy", "test"],
    ["policy", "explain"],
    ["audit"],
    ["audit", "verify"],
    ["audit", "query"],
    ["audit", "stats"],
    ["audit", "export"],
    ["bench"],
    ...["identity", "safety", "policy", "limits", "routing", "audit"].map((l) => ["bench", l]),
];

test("every command and subcommand answers --help on stdout with exit 0", () => {
    for (const c of COMMANDS) {
        const r = run(...c, "--help");
        assert.equal(r.status, 0, `toolgate ${c.join(" ")} --help: exit ${r.status}, stderr: ${r.stderr}`);
        assert.match(r.stdout, /usage|commands/i, `toolgate ${c.join(" ")} --help prints its usage`);
    }
});

test("a mistake exits 2 with the usage on stderr", () => {
    const cases = [
        ["no-such-command"],
        ["audit", "verify", "--no-such-option"],
        ["audit", "no-such-subcommand"],
        ["policy", "no-such-subcommand"],
        ["policy", "test", "--no-such-option"],
        ["bench", "audit", "--no-such-option"],
        ["bench", "routing", "--no-such-option"],
        ["bench", "policy", "not-a-number"],
        ["bench", "safety", "--no-such-option"],
        ["bench", "safety", "--rounds", "5"],
        ["bench", "safety", "--rounds", "20000"],
        ["bench", "safety", "--file", "x.json", "--rounds", "0"],
        ["status"],
        ["status", "--no-such-option"],
    ];
    for (const c of cases) {
        const r = run(...c);
        assert.equal(r.status, 2, `toolgate ${c.join(" ")}: exit ${r.status}`);
        assert.match(r.stderr, /usage/i, `toolgate ${c.join(" ")} shows the usage on stderr: ${r.stderr}`);
        assert.equal(r.stdout, "", `toolgate ${c.join(" ")} writes nothing on stdout`);
    }
});

test("bench safety --file times the scan of one answer, and names a file it cannot read", () => {
    const answer = path.join(REPO_DIR, "bench", "answers", "get_patient.json");
    const r = run("bench", "safety", "--file", answer, "--rounds", "20");
    assert.equal(r.status, 0, r.stderr);
    /* The answer carries a record number, a birth date and an SSN twice each, at least. */
    const m = /us a scan .*20 rounds\), (\d+) bytes scanned, (\d+) findings/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.ok(Number(m[1]) > 500 && Number(m[2]) >= 6, r.stdout);
    const bad = path.join(tempDir(), "bad.json");
    writeFileSync(bad, '{"a":');
    const b = run("bench", "safety", "--file", bad);
    assert.equal(b.status, 1);
    assert.match(b.stderr, /bad\.json:\d+: /);
    assert.equal(b.stdout, "");
});
