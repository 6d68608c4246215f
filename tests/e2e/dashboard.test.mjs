// The dashboard at /ui in a real browser (Debian's chromium driven by playwright-core): the
// page asks for the admin token, sends it as a bearer header, shows a denied tools/call made
// through the gateway with the MCP SDK client live in its feed, and renders its panels with
// numbers. A screenshot is saved under build/ and its path printed.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startToolgate, startEhr, killAll, tempDir, withTimeout, REPO_DIR } from "./lib/harness.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const TOKEN = "e2e-dashboard-token-0123456789abcdef";
const POLICY = { rules: [{ id: "read-only", effect: "permit", tools: ["get_patient"] }] };

describe("dashboard in a browser", { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (scripts/install-deps.sh)` }, () => {
    let ehr, tg, browser;

    before(async () => {
        const dir = tempDir();
        writeFileSync(path.join(dir, "token"), TOKEN);
        ehr = await startEhr("json");
        tg = await startToolgate({
            routes: [{ url: ehr.url, name: "ehr" }],
            policy: POLICY,
            admin: { token_file: path.join(dir, "token") },
            extra: { limits: { costs: { default: 0.5 }, ledger: "none", budgets: [{ name: "user-daily", per: "user", cap: 5, period: "day" }] } },
        });
        browser = await withTimeout(
            chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] }),
            30000,
            "chromium to start",
        );
    });

    after(async () => {
        if (browser) await browser.close().catch(() => {});
        await killAll();
    });

    test("asks for the token, shows a denied call live, renders the panels", async () => {
        const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
        const errors = [];
        page.on("pageerror", (e) => errors.push(String(e)));
        page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
        await page.goto(`${tg.adminBase}/ui`);
        await page.waitForSelector("#login:not(.hidden)", { timeout: 10000 });
        await page.fill("#token", TOKEN);
        await page.click("#login-form button");
        await page.waitForSelector("#panels:not(.hidden)", { timeout: 10000 });
        // The page's first probe got 401 before the token was known, as it should; the
        // browser logs that as a failed load. From here on nothing may fail.
        assert.ok(errors.every((e) => /status of 401/.test(e)), errors.join("\n"));
        errors.length = 0;
        await page.waitForFunction(() => /live/.test(document.getElementById("feed-state").textContent), null, { timeout: 10000 });

        const client = new Client({ name: "toolgate-e2e", version: "1.0.0" });
        await withTimeout(client.connect(new StreamableHTTPClientTransport(new URL(tg.url))), 10000, "initialize");
        try {
            const ok = await client.callTool({ name: "get_patient", arguments: { patient_id: "P1" } });
            assert.ok(!ok.isError);
            await assert.rejects(client.callTool({ name: "delete_patient", arguments: { patient_id: "P1" } }), /-32602/);
        } finally {
            await client.close();
        }

        // The denial appears in the live feed without a reload.
        const row = await page.waitForSelector('#feed tbody tr[data-decision="deny"]', { timeout: 10000 });
        const text = await row.textContent();
        assert.match(text, /delete_patient/);
        assert.match(text, /policy/);
        assert.match(text, /denied/);
        assert.ok(await page.isHidden("#feed-empty"));

        // The panels fill from the API (refreshed every 5s): totals count the calls.
        await page.waitForFunction(
            () => Number(document.querySelector('[data-total="calls"] b')?.textContent) >= 2 &&
                Number(document.querySelector('[data-total="denied"] b')?.textContent) >= 1,
            null,
            { timeout: 15000 },
        );
        assert.ok((await page.$$("#series svg rect")).length >= 1, "the time chart has bars");
        const reasons = await page.textContent("#reasons");
        assert.match(reasons, /policy: policy\.hidden/);
        assert.match(await page.textContent("#tools"), /get_patient/);
        assert.match(await page.textContent("#limits"), /rate-limited calls/);
        // The EHR backend answers with patient data: the safety layer finds PII in its responses.
        assert.match(await page.textContent("#pii"), /ssn\s*\d+ found/);
        assert.match(await page.textContent("#audit"), /records committed/);
        // Every definition was pinned on first sight: nothing awaits review.
        assert.match(await page.textContent("#integrity-empty"), /No definition awaits a decision/);
        assert.ok(await page.isVisible("#integrity-empty"));
        await page.waitForFunction(() => document.querySelector('[data-budget="user-daily"] .row'), null, { timeout: 15000 });
        assert.match(await page.textContent("#spend"), /user-daily/);
        await page.click("#verify");
        await page.waitForFunction(() => /intact/.test(document.getElementById("audit").textContent), null, { timeout: 15000 });
        assert.doesNotMatch(await page.textContent("#audit"), /NOT intact/);

        const out = path.join(REPO_DIR, "build", "e2e");
        mkdirSync(out, { recursive: true });
        const shot = path.join(out, "dashboard.png");
        await page.screenshot({ path: shot, fullPage: true });
        console.log(`dashboard screenshot: ${shot}`);
        assert.deepEqual(errors, [], "no script errors or CSP violations in the page");
    });
});
