// MCP 2026-07-28 with the official conformance suite's frozen requirement sets
// (@modelcontextprotocol/conformance 0.2.0-alpha.12, installed as `conformance-2026`,
// `server --requirements <revision>`), against the SDK v2 reference backend in
// lib/conformance/server-2026.mjs, which serves both eras on one endpoint:
//
//   * 2026-07-28 (a) directly against the backend: every scored check passes; (b) through
//     toolgate in front of it (a route to the backend, real identity, a permit-all policy, the
//     token shim of the 0.1.16 test adding a bearer JWT and relaying everything else): per
//     scored scenario every check has the status it has directly, but for the named known gaps,
//     which must still fail (none are named: the gateway serves the revision as it is).
//   * 2025-11-25, the same backend (its 2025 path, sessionful): directly, every scored check
//     passes; through toolgate, every check as directly.
//
// The scenarios a set runs but does not score (the tasks extension, pending ones) are reported
// in the diagnostics, not compared. Each scenario is bounded (the suite's `--timeout` and a
// watchdog that kills a stuck run); everything listens on loopback.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { killAll, withTimeout } from "./lib/harness.mjs";
import {
    CLI_2026,
    describeFailures,
    requirementSet,
    runSuite,
    score,
    startGatewayWithShim,
    startReferenceServer,
} from "./lib/conformance/suite.mjs";

/*
 * What fails through toolgate only, per revision: each {scenario, check, why}, `check` one of
 * the suite's check ids in that scenario or "*" for the whole scenario.
 */
const KNOWN_GAPS = {
    "2026-07-28": [],
    "2025-11-25": [],
};

// Until toolgate serves 2026-07-28 (it answers such a request 400, unsupported
// MCP-Protocol-Version), the comparison through toolgate at that revision is reported, not
// enforced. Remove this once it does: the test then holds the gateway to the direct run.

// Every scenario finishes in well under a second here; the bound is for a hang.
const SCENARIO_MS = 20000;

let backend;
let gateway;

before(async () => {
    backend = await startReferenceServer({ era: 2026 });
    // The reference server rewrites its definitions on every list change (a counter in the
    // descriptions), which tool pinning quarantines as it should; the conformance comparison
    // needs the lists as the backend gives them, so pinning only warns here.
    gateway = await startGatewayWithShim(backend.url, { integrity: { mode: "warn" } });
});

after(async () => {
    try {
        if (gateway) {
            await gateway.shim.close();
            await gateway.tg.stop();
        }
    } finally {
        await killAll();
    }
});

const isGap = (gaps, scenario, id) => gaps.some((g) => g.scenario === scenario && (g.check === "*" || g.check === id));

/* Per scored scenario, its checks but INFO as sorted "id: STATUS" lines, known gaps left out. */
function verdicts(results, scored, gaps) {
    return new Map(
        results
            .filter((r) => scored.includes(r.scenario))
            .map((r) => [
                r.scenario,
                r.checks
                    .filter((c) => c.status !== "INFO" && !isGap(gaps, r.scenario, c.id))
                    .map((c) => `${c.id}: ${c.status}`)
                    .sort(),
            ]),
    );
}

/* The run's results split into the scored scenarios and the others. */
function split(results, set) {
    return {
        scored: results.filter((r) => set.scored.includes(r.scenario)),
        other: results.filter((r) => !set.scored.includes(r.scenario)),
    };
}

/* One line per scenario the set runs unscored: name (reason), its score. */
function unscoredSummary(results, set) {
    return set.notScored
        .map(({ scenario, reason }) => {
            const r = results.find((x) => x.scenario === scenario);
            const s = r ? score([r]) : undefined;
            return `${scenario} (${reason}): ${s ? `${s.passed} passed, ${s.failed} failed` : "not run"}`;
        })
        .join("; ");
}

/*
 * The run through toolgate against the direct one, scored scenarios only: each scores the same
 * but for the known gaps, each of which must still fail. Throws with every difference, each
 * failed check and its message, and toolgate's last log lines.
 */
function assertSameButGaps(direct, through, set, gaps, tg) {
    const want = verdicts(direct, set.scored, gaps);
    const got = verdicts(through, set.scored, gaps);
    const problems = [];
    for (const [scenario, lines] of want) {
        const other = got.get(scenario) ?? [];
        if (JSON.stringify(other) !== JSON.stringify(lines))
            problems.push(`${scenario}: directly [${lines.join(", ")}], through toolgate [${other.join(", ")}]`);
    }
    assert.deepEqual(
        problems,
        [],
        `scored scenarios that differ through toolgate:\n${problems.join("\n")}\n` +
            `failed checks through toolgate:\n${describeFailures(split(through, set).scored)}\n` +
            `--- toolgate (last lines)\n${tg.child.stderrLines.slice(-40).join("\n")}`,
    );
    for (const g of gaps) {
        const r = through.find((x) => x.scenario === g.scenario);
        assert.ok(r, `known gap ${g.scenario} names a scenario of the set`);
        const failing = r.checks.filter((c) => c.status === "FAILURE" && (g.check === "*" || c.id === g.check));
        assert.ok(failing.length > 0, `known gap ${g.scenario} / ${g.check} passes through toolgate now: remove it from KNOWN_GAPS`);
    }
}

/* The whole set (scored and not) against url, bounded per scenario and as a whole. */
async function runSet(url, revision, set, what) {
    const scenarios = [...set.scored, ...set.notScored.map((e) => e.scenario)];
    const run = await withTimeout(
        runSuite(url, scenarios, SCENARIO_MS, { cli: CLI_2026, requirements: revision }),
        scenarios.length * SCENARIO_MS,
        what,
    );
    return run;
}

for (const revision of ["2026-07-28", "2025-11-25"]) {
    describe(`conformance requirements ${revision}, server leg`, { timeout: 10 * 60000 }, () => {
        const set = requirementSet(revision);
        let direct;

        test("the frozen set names its scenarios", () => {
            const must = revision === "2026-07-28"
                ? ["server-stateless", "caching", "sep-2164-resource-not-found", "input-required-result-tampered-state", "dns-rebinding-protection"]
                : ["server-initialize", "tools-call-sampling", "tools-call-elicitation", "resources-subscribe", "dns-rebinding-protection"];
            for (const s of must) assert.ok(set.scored.includes(s), `${s} in ${set.scored.join(", ")}`);
        });

        test("directly against the SDK v2 backend: every scored check passes", async (t) => {
            const run = await runSet(backend.url, revision, set, `direct run at ${revision}`);
            direct = run.results;
            const { scored } = split(direct, set);
            const s = score(scored);
            assert.equal(s.failed, 0, `failed checks:\n${describeFailures(scored)}\n--- suite output\n${run.output}`);
            for (const r of scored) assert.ok(r.checks.some((c) => c.status === "SUCCESS"), `${r.scenario} produced passing checks`);
            assert.equal(scored.length, set.scored.length, "every scored scenario ran");
            t.diagnostic(`direct at ${revision}: ${scored.length} scored scenarios, ${s.passed} passed, ${s.failed} failed, ${s.warnings} warnings`);
            t.diagnostic(`not scored: ${unscoredSummary(direct, set)}`);
        });

        test(
            "through toolgate: every scored check as directly but for the known gaps",
            {},
            async (t) => {
                assert.ok(direct, "the direct run happened");
                const run = await runSet(gateway.url, revision, set, `run through toolgate at ${revision}`);
                const through = run.results;
                const a = score(split(direct, set).scored);
                const b = score(split(through, set).scored);
                t.diagnostic(`through toolgate at ${revision}: ${b.passed} passed, ${b.failed} failed, ${b.warnings} warnings (directly ${a.passed} passed)`);
                t.diagnostic(`not scored: ${unscoredSummary(through, set)}`);
                assertSameButGaps(direct, through, set, KNOWN_GAPS[revision], gateway.tg);
                if (KNOWN_GAPS[revision].length === 0) assert.deepEqual(b, a, "the same score both ways");
            },
        );
    });
}
