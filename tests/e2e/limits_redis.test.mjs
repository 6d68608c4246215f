// Two toolgate instances share one redis-server: one rate limit and one spending budget hold
// across both. Everything runs on loopback ports in a temp dir and is stopped at the end.
//
// Env: TOOLGATE_BIN and EHR_BACKEND_BIN name the binaries (scripts/run-tests.sh sets them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const TOOLGATE = process.env.TOOLGATE_BIN || new URL('../../build/toolgate', import.meta.url).pathname;
const EHR = process.env.EHR_BACKEND_BIN || new URL('../../build/ehr-backend', import.meta.url).pathname;
const ISSUER = 'https://idp.e2e.toolgate.invalid/';

const dir = mkdtempSync(join(tmpdir(), 'toolgate-e2e-limits-'));
const procs = [];
let redisPort, ehrPort, gw = [], tokens = {};

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function start(cmd, args, name) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  p.stderrText = '';
  p.stderr.on('data', (d) => { p.stderrText = (p.stderrText + d).slice(-8192); });
  p.name = name;
  procs.push(p);
  return p;
}

async function waitFor(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch { /* not up yet */ }
    if (Date.now() > end) throw new Error(`${what} did not come up${whyNot()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// What the processes started so far say about a start that failed: whichever exited, and
// everyone's last stderr (toolgate logs why it refused to start, or what it waits for).
function whyNot() {
  return procs.map((p) => `\n  ${p.name}: ${p.exitCode !== null || p.signalCode
    ? `exited (${p.exitCode ?? p.signalCode})` : 'running'}${p.stderrText
    ? `, stderr: ${p.stderrText.slice(-600)}` : ''}`).join('');
}

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

function config(port) {
  return `
server:
  listen: ["127.0.0.1:${port}"]
  public_url: "http://127.0.0.1:${port}"
  workers: 2
  log_level: warn
routes:
  - name: ehr
    path: /mcp
    backends: [{name: ehr, url: "http://127.0.0.1:${ehrPort}/mcp"}]
egress:
  allow: ["127.0.0.1:${ehrPort}"]
  signing_key: ${join(dir, 'egress', 'private.pem')}
identity:
  issuers:
    - issuer: "${ISSUER}"
      audiences: ["http://127.0.0.1:${port}/mcp"]
      jwks_file: ${join(dir, 'keys', 'jwks.json')}
      algorithms: [EdDSA]
policy:
  rules:
    - {id: everyone, effect: permit, tools: ["*"]}
safety:
  # The payment tool needs the card number it is given (cards are redacted by default).
  tools: [{tools: [charge_card], detectors: {credit_card: log}}]
limits:
  store: "redis://127.0.0.1:${redisPort}"
  rate:
    - {name: per-user, per: user, tools: [whoami], limit: 4, window: 1m}
  costs: {default: 0, charge_card: 0.40}
  budgets:
    - {name: daily, per: user, cap: 1.00, period: day}
# The two instances share one pins store, as a deployment's would; not the working directory's
# default file, which other tests' instances use too.
integrity:
  store: "sqlite:${join(dir, 'pins.db')}"
audit:
  store: "sqlite:${join(dir, `audit-${port}.db`)}"
`;
}

before(async () => {
  redisPort = await freePort();
  start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no'], 'redis');
  await waitFor('redis-server', () => tcpOpen(redisPort));
  ehrPort = await freePort();
  start(EHR, ['--listen', `127.0.0.1:${ehrPort}`, '--quiet'], 'ehr-backend');
  await waitFor('ehr-backend', async () => (await fetch(`http://127.0.0.1:${ehrPort}/healthz`)).ok);
  execFileSync(TOOLGATE, ['keys', 'generate', '--alg', 'EdDSA', '--out', join(dir, 'keys')]);
  execFileSync(TOOLGATE, ['keys', 'generate', '--alg', 'EdDSA', '--out', join(dir, 'egress')]);
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const file = join(dir, `toolgate-${i}.yaml`);
    writeFileSync(file, config(port));
    start(TOOLGATE, ['serve', '--config', file], `toolgate-${i}`);
    gw.push(`http://127.0.0.1:${port}`);
  }
  for (const url of gw)
    await waitFor(`toolgate ${url}`, async () => (await fetch(`${url}/healthz`)).ok);
  for (const sub of ['alice', 'bob']) {
    const args = ['token', '--key', join(dir, 'keys', 'private.pem'), '--iss', ISSUER,
      '--sub', sub, '--ttl', '10m'];
    for (const url of gw) args.push('--aud', `${url}/mcp`);
    tokens[sub] = execFileSync(TOOLGATE, args).toString().trim();
  }
});

after(async () => {
  for (const p of procs.reverse()) {
    if (p.exitCode !== null) continue;
    p.kill('SIGTERM');
    const done = new Promise((r) => p.once('exit', r));
    const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(timer);
  }
  rmSync(dir, { recursive: true, force: true });
});

const sessions = new Map();
let nextId = 1;

async function rpc(url, sub, body, session) {
  const headers = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    Authorization: `Bearer ${tokens[sub]}`,
    'MCP-Protocol-Version': '2025-06-18',
  };
  if (session) headers['Mcp-Session-Id'] = session;
  const res = await fetch(`${url}/mcp`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await res.text();
  return { res, json: text ? JSON.parse(text) : null };
}

async function session(url, sub) {
  const key = `${url} ${sub}`;
  if (sessions.has(key)) return sessions.get(key);
  const { res } = await rpc(url, sub, {
    jsonrpc: '2.0', id: nextId++, method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } },
  });
  assert.equal(res.status, 200, 'initialize through toolgate');
  const sid = res.headers.get('mcp-session-id');
  assert.ok(sid);
  await rpc(url, sub, { jsonrpc: '2.0', method: 'notifications/initialized' }, sid);
  sessions.set(key, sid);
  return sid;
}

async function callTool(url, sub, name, args) {
  const sid = await session(url, sub);
  return rpc(url, sub, { jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name, arguments: args } }, sid);
}

test('one rate limit is shared by two instances', async () => {
  const results = [];
  for (let i = 0; i < 6; i++) results.push(await callTool(gw[i % 2], 'alice', 'whoami', {}));
  const allowed = results.filter((r) => !r.json.result?.isError);
  const denied = results.filter((r) => r.json.result?.isError);
  assert.equal(allowed.length, 4, 'the limit admits 4 calls across both gateways');
  assert.equal(denied.length, 2);
  for (const r of allowed) {
    assert.match(r.res.headers.get('ratelimit-policy'), /"per-user";q=4;w=60/);
    assert.match(r.res.headers.get('ratelimit'), /"per-user";r=\d+;t=\d+/);
  }
  const d = denied[0];
  assert.equal(d.res.status, 200);
  const meta = d.json.result._meta['toolgate/decision'];
  assert.equal(meta.layer, 'limits');
  assert.equal(meta.reason, 'limits.rate');
  assert.ok(meta.retry_after_ms > 0 && meta.retry_after_ms <= 15000, `retry_after_ms ${meta.retry_after_ms}`);
  assert.ok(Number(d.res.headers.get('retry-after')) >= 1);
  assert.match(d.res.headers.get('ratelimit'), /"per-user";r=0;/);
  // Another user has their own allowance.
  const other = await callTool(gw[1], 'bob', 'whoami', {});
  assert.ok(!other.json.result.isError);
});

test('one spending budget is shared by two instances, settled at actual cost', async () => {
  const charge = (url) => callTool(url, 'bob', 'charge_card',
    { patient_id: 'P1', amount: 30, card_number: '4242 4242 4242 4242' });
  const pause = () => new Promise((r) => setTimeout(r, 150));
  // Each charge reserves 0.40 and settles at the reported 0.30 (1% of 30).
  const a = await charge(gw[0]);
  assert.ok(!a.json.result.isError, JSON.stringify(a.json));
  assert.equal(a.json.result._meta['toolgate/cost'], 0.3);
  await pause();
  const b = await charge(gw[1]);
  assert.ok(!b.json.result.isError);
  await pause();
  const c = await charge(gw[0]); // 0.60 spent + 0.40 reserved = 1.00: fits exactly
  assert.ok(!c.json.result.isError);
  await pause();
  const d = await charge(gw[1]); // 0.90 spent + 0.40 > 1.00
  assert.ok(d.json.result.isError);
  const meta = d.json.result._meta['toolgate/decision'];
  assert.equal(meta.reason, 'limits.budget');
  assert.equal(meta.rule, 'daily');
  assert.match(d.json.result.content[0].text, /0\.9 of 1 used/);
});

// Sessions are toolgate's own and live in Redis with the limits: one opened on one instance
// is known on the other, only to its user, and ending it on one ends it everywhere.
test('a session opened on one instance works on the other, and ends on both', async () => {
  const { res } = await rpc(gw[0], 'alice', {
    jsonrpc: '2.0', id: nextId++, method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } },
  });
  assert.equal(res.status, 200);
  const sid = res.headers.get('mcp-session-id');
  assert.match(sid, /^[A-Za-z0-9_-]{43}$/);
  const list = { jsonrpc: '2.0', id: nextId++, method: 'tools/list' };
  const other = await rpc(gw[1], 'alice', list, sid);
  assert.equal(other.res.status, 200, JSON.stringify(other.json));
  assert.ok(Array.isArray(other.json.result.tools));
  // Another user presenting it: unknown, on either instance.
  for (const url of gw) {
    const stolen = await rpc(url, 'bob', { ...list, id: nextId++ }, sid);
    assert.equal(stolen.res.status, 404);
    assert.equal(stolen.json.error.message, 'Session not found.');
  }
  // A made-up id: the same answer.
  const made = await rpc(gw[1], 'alice', { ...list, id: nextId++ }, 'A'.repeat(43));
  assert.equal(made.res.status, 404);
  // Ended on the second, gone on the first.
  const del = await fetch(`${gw[1]}/mcp`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${tokens.alice}`, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-06-18' },
  });
  assert.ok(del.status < 300, `DELETE ${del.status}`);
  await new Promise((r) => setTimeout(r, 100));
  const after = await rpc(gw[0], 'alice', { ...list, id: nextId++ }, sid);
  assert.equal(after.res.status, 404);
});
