// toolgate dashboard: reads the admin API of the listener that served it. No third-party
// code; every value from the API is put in the page as text, never as markup.
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';
const LAYER_COLORS = { identity: '#8e24aa', safety: '#d81b60', policy: '#c62828', limits: '#ef6c00',
  routing: '#6d4c41', audit: '#455a64', protocol: '#757575', error: '#f9a825' };
const MAX_FEED_ROWS = 100;
let token = sessionStorage.getItem('toolgate-admin-token') || '';
let lastSeq = 0;
let feedRows = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function headers() { return token ? { Authorization: 'Bearer ' + token } : {}; }
function money(micro) { return micro ? (micro / 1e6).toFixed(micro % 10000 ? 4 : 2) : '0'; }
function ms(us) { return us >= 1000 ? (us / 1000).toFixed(1) + ' ms' : us + ' µs'; }

class Unauthorized extends Error {}

async function api(path) {
  const r = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (r.status === 401 || r.status === 403) throw new Unauthorized(String(r.status));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

function showLogin(message) {
  document.getElementById('panels').classList.add('hidden');
  document.getElementById('login').classList.remove('hidden');
  document.getElementById('login-error').textContent = message || '';
  setStatus('token needed', 'bad');
}

function setStatus(text, cls) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.className = 'status ' + (cls || '');
}

// ---- live feed ----

function addFeedRow(ev) {
  const body = document.querySelector('#feed tbody');
  const tr = el('tr', { 'data-seq': ev.seq, 'data-decision': ev.decision });
  tr.appendChild(el('td', {}, new Date(ev.time_ms).toLocaleTimeString()));
  const td = el('td');
  td.appendChild(el('span', { class: 'badge ' + ev.decision }, ev.decision === 'allow' ? 'allowed' : ev.decision === 'deny' ? 'denied' : 'error'));
  tr.appendChild(td);
  tr.appendChild(el('td', {}, ev.user || '(anonymous)'));
  tr.appendChild(el('td', { class: 'tool' }, ev.tool || ev.method || '-'));
  tr.appendChild(el('td', {}, ev.route));
  tr.appendChild(el('td', {}, ev.layer || '-'));
  const reason = el('td', { class: 'reason' }, ev.reason || '-');
  if (ev.rule) reason.title = 'rule: ' + ev.rule;
  tr.appendChild(reason);
  tr.appendChild(el('td', { class: 'num' }, money(ev.cost_micro)));
  tr.appendChild(el('td', { class: 'num' }, ms(ev.latency_us)));
  body.insertBefore(tr, body.firstChild);
  if (++feedRows > MAX_FEED_ROWS) { body.removeChild(body.lastChild); feedRows--; }
  document.getElementById('feed-empty').classList.add('hidden');
}

// EventSource cannot send an Authorization header, so the stream is read with fetch.
async function runFeed() {
  const state = document.getElementById('feed-state');
  for (;;) {
    try {
      const r = await fetch('/admin/api/events?after=' + lastSeq, { headers: headers(), cache: 'no-store' });
      if (r.status === 401 || r.status === 403) { showLogin('The token was refused.'); return; }
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      state.textContent = 'live: connected to the gateway\u2019s decision feed';
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = 'message', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) type = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (type === 'decision' && data) {
            const ev = JSON.parse(data);
            lastSeq = ev.seq;
            addFeedRow(ev);
          } else if (type === 'skipped' && data) {
            state.textContent = 'live (' + JSON.parse(data).skipped + ' older calls were skipped to keep up)';
          }
        }
      }
      state.textContent = 'the feed ended; reconnecting…';
    } catch (e) {
      state.textContent = 'the live feed is not reachable (' + e.message + '); retrying…';
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

// ---- panels ----

function bars(container, items, opts) {
  clear(container);
  if (!items.length) { container.appendChild(el('p', { class: 'empty' }, opts.empty)); return; }
  const max = Math.max(1, ...items.map((i) => i.value));
  for (const item of items) {
    const row = el('div', { class: 'row' });
    const name = el('div', { class: 'name' }, item.name);
    name.title = item.name;
    row.appendChild(name);
    const track = el('div', { class: 'track' });
    const fill = el('div', { class: 'fill ' + (item.cls || '') });
    fill.style.width = Math.min(100, (item.share !== undefined ? item.share : item.value / max) * 100) + '%';
    track.appendChild(fill);
    row.appendChild(track);
    row.appendChild(el('div', { class: 'num' }, item.label !== undefined ? item.label : item.value));
    container.appendChild(row);
  }
}

function drawSeries(summary) {
  const box = document.getElementById('series');
  const legend = document.getElementById('series-legend');
  clear(box); clear(legend);
  const points = summary.series.points;
  const layers = new Set();
  for (const p of points) for (const l of Object.keys(p.denied)) layers.add(l);
  const totals = points.map((p) => p.allowed + Object.values(p.denied).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  if (!summary.totals.calls) {
    box.appendChild(el('p', { class: 'empty' }, 'No calls in the last hour: the audit log has no decision records for this period.'));
    return;
  }
  const W = 600, H = 160, pad = 24, bw = (W - pad) / points.length;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H + 16}`, role: 'img', 'aria-label': 'calls per time slot, allowed and denied by layer' });
  s.appendChild(svg('line', { x1: pad, y1: H, x2: W, y2: H, stroke: '#aab4c0' }));
  const maxLabel = svg('text', { x: 0, y: 10, 'font-size': 10, fill: '#5d6b7a' });
  maxLabel.textContent = String(max);
  s.appendChild(maxLabel);
  points.forEach((p, i) => {
    let y = H;
    const stack = [['allowed', p.allowed, '#2e7d32']];
    for (const l of layers) stack.push([l, p.denied[l] || 0, LAYER_COLORS[l] || '#c62828']);
    for (const [name, n, color] of stack) {
      if (!n) continue;
      const h = (n / max) * (H - 12);
      y -= h;
      const r = svg('rect', { x: pad + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: color });
      const t = svg('title');
      t.textContent = `${new Date(p.start_ms).toLocaleTimeString()}: ${n} ${name === 'allowed' ? 'allowed' : 'denied by ' + name}`;
      r.appendChild(t);
      s.appendChild(r);
    }
  });
  const t0 = svg('text', { x: pad, y: H + 14, 'font-size': 10, fill: '#5d6b7a' });
  t0.textContent = new Date(summary.since_ms).toLocaleTimeString();
  const t1 = svg('text', { x: W - 50, y: H + 14, 'font-size': 10, fill: '#5d6b7a' });
  t1.textContent = 'now';
  s.appendChild(t0); s.appendChild(t1);
  box.appendChild(s);
  const add = (name, color) => { const sp = el('span'); const i = el('i'); i.style.background = color; sp.appendChild(i); sp.appendChild(document.createTextNode(name)); legend.appendChild(sp); };
  add('allowed', '#2e7d32');
  for (const l of layers) add('denied by ' + l, LAYER_COLORS[l] || '#c62828');
}

function drawSummary(sm) {
  const totals = document.getElementById('totals');
  clear(totals);
  for (const [k, label] of [['calls', 'calls'], ['allowed', 'allowed'], ['denied', 'denied'], ['errors', 'errors']]) {
    const d = el('div', { 'data-total': k });
    d.appendChild(el('b', {}, sm.totals[k]));
    d.appendChild(document.createTextNode(label));
    totals.appendChild(d);
  }
  drawSeries(sm);
  bars(document.getElementById('pii'), sm.pii_by_type.map((p) => ({ name: p.type, value: p.count, label: p.count + ' found' })),
    { empty: 'No PII or secrets found in the last hour (the safety layer reports each finding by type; values are never kept).' });
  const lim = sm.limits_events;
  bars(document.getElementById('limits'), [
    { name: 'rate-limited calls', value: lim.rate_limited, cls: 'warn' },
    { name: 'over budget', value: lim.budget_exceeded, cls: 'over' },
    { name: 'loops denied', value: lim.loop_denied, cls: 'over' },
    { name: 'loops warned', value: lim.loop_warned, cls: 'warn' },
  ], { empty: '' });
  bars(document.getElementById('reasons'), sm.denials_by_reason.slice(0, 10).map((r) => ({ name: `${r.layer}: ${r.reason}`, value: r.count, cls: 'over' })),
    { empty: 'No denials in the last hour.' });
  bars(document.getElementById('tools'), sm.top_tools.map((t) => ({ name: t.tool, value: t.count, label: `${t.count}${t.denied ? ' (' + t.denied + ' denied)' : ''}` })),
    { empty: 'No tool calls in the last hour.' });
}

function drawSpend(sp) {
  const box = document.getElementById('spend');
  clear(box);
  if (!sp.configured || !sp.budgets.length) {
    box.appendChild(el('p', { class: 'empty' }, sp.configured ? 'No budgets are configured (limits.budgets), so nothing is tracked.' : 'There is no limits section in the configuration: no spend is budgeted.'));
    return;
  }
  for (const b of sp.budgets) {
    box.appendChild(el('h3', { class: 'hint' }, `${b.name}: ${b.cap} per ${b.per} per ${b.period}`));
    const div = el('div', { 'data-budget': b.name });
    box.appendChild(div);
    bars(div, b.spenders.map((s) => ({ name: s.name, value: s.spent, share: s.used, label: `${s.spent} / ${b.cap}`, cls: s.used >= 1 ? 'over' : s.used >= 0.8 ? 'warn' : '' })),
      { empty: b.note || 'Nobody has spent against this budget since the gateway started.' });
  }
}

function drawAudit(a) {
  const box = document.getElementById('audit');
  clear(box);
  const kv = el('div', { class: 'kv' });
  const add = (k, v, cls) => { kv.appendChild(el('div', { class: 'k' }, k)); kv.appendChild(el('div', cls ? { class: cls } : {}, v)); };
  const v = a.verify || {};
  add('verification', v.state === 'intact' ? 'intact' : v.state === 'not_intact' ? 'NOT intact' : 'not run yet',
    v.state === 'intact' ? 'intact' : v.state === 'not_intact' ? 'broken' : '');
  if (v.time) add('verified at', new Date(v.time).toLocaleString() + ` (${v.records} records)`);
  if (v.problem) add('problem', v.problem, 'broken');
  add('writer', a.writer.failed ? 'FAILED: requests are refused' : a.writer.running ? 'running' : 'stopped', a.writer.failed ? 'broken' : '');
  add('records committed', a.writer.committed);
  add('queued', `${a.writer.queued} of ${a.writer.capacity}`);
  if (a.head) add('last record', `#${a.head.seq} (${a.head.kind}) at ${new Date(a.head.time).toLocaleTimeString()}`);
  else add('last record', a.note || 'none yet');
  if (a.last_checkpoint) add('last signed checkpoint', `#${a.last_checkpoint.seq} at ${new Date(a.last_checkpoint.time).toLocaleTimeString()}`);
  box.appendChild(kv);
}

// ---- approvals ----

// With approvers: token a decision also carries the approver's own access token. It lives only in
// the field of this page (never in storage) and is sent only with a decision.
let approversByToken = false;

async function decideApproval(id, decision) {
  const extra = {};
  if (approversByToken) {
    const own = document.getElementById('approver-token').value.trim();
    if (!own) {
      setStatus(`${id}: enter your own access token to decide`, 'bad');
      return;
    }
    extra['X-Approver-Token'] = own;
  }
  const r = await fetch('/admin/api/approvals/' + encodeURIComponent(id), {
    method: 'POST', headers: { ...headers(), ...extra, 'Content-Type': 'application/json' },
    body: JSON.stringify({ decision }), cache: 'no-store' });
  const body = await r.json().catch(() => ({}));
  setStatus(r.ok ? `${id}: ${decision === 'approve' ? 'approved' : 'denied'}` : `${id}: ${body.error || r.status}`, r.ok ? 'ok' : 'bad');
  drawApprovals(await api('/admin/api/approvals'));
}

function drawApprovals(a) {
  const body = document.querySelector('#approvals tbody');
  clear(body);
  const list = (a && a.approvals) || [];
  approversByToken = !!a && a.approvers === 'token';
  document.getElementById('approver').classList.toggle('hidden', !approversByToken);
  document.getElementById('approvals-hint').textContent = approversByToken
    ? 'rules with approval by a role; a person holding the role decides with their own token'
    : 'rules with approval by a role; the holder of this token approves';
  document.getElementById('approvals-empty').classList.toggle('hidden', list.length > 0);
  for (const p of list) {
    const tr = el('tr', { 'data-id': p.id });
    for (const v of [p.id, p.user, p.tool, p.arguments, p.role, p.rule, p.waiting ? 'yes' : 'no'])
      tr.appendChild(el('td', {}, v));
    const td = el('td');
    for (const [label, decision] of [['Approve', 'approve'], ['Deny', 'deny']]) {
      const b = el('button', { type: 'button', class: 'decide-' + decision }, label);
      b.addEventListener('click', () => decideApproval(p.id, decision).catch((e) => setStatus(e.message, 'bad')));
      td.appendChild(b);
    }
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

// ---- tool integrity ----

async function decidePin(p, decision) {
  // The hash listed is the one shown: a definition changed since is refused (409).
  const r = await fetch('/admin/api/integrity/' + encodeURIComponent(p.id), {
    method: 'POST', headers: { ...headers(), 'Content-Type': 'application/json' },
    body: JSON.stringify({ decision, hash: p.seen_hash }), cache: 'no-store' });
  const body = await r.json().catch(() => ({}));
  setStatus(r.ok ? `${p.kind} ${p.name}: ${decision === 'approve' ? 'approved' : 'rejected'}` : `${p.kind} ${p.name}: ${body.error || r.status}`, r.ok ? 'ok' : 'bad');
  drawIntegrity(await api('/admin/api/integrity?state=pending'));
}

function drawIntegrity(a) {
  const body = document.querySelector('#integrity tbody');
  clear(body);
  const list = (a && a.pins) || [];
  document.getElementById('integrity-empty').classList.toggle('hidden', list.length > 0);
  document.getElementById('integrity-empty').textContent =
    a === null ? 'The pin store cannot be read now.' : 'No definition awaits a decision.';
  for (const p of list) {
    const tr = el('tr', { 'data-id': p.id, 'data-name': p.name });
    for (const v of [p.kind, p.name, p.backend, p.reason, p.state, (p.seen_hash || '').slice(0, 12),
      (p.approved_hash || '—').slice(0, 12)])
      tr.appendChild(el('td', {}, v));
    const td = el('td');
    for (const [label, decision] of [['Approve', 'approve'], ['Reject', 'reject']]) {
      const b = el('button', { type: 'button', class: 'decide-' + decision }, label);
      b.addEventListener('click', () => decidePin(p, decision).catch((e) => setStatus(e.message, 'bad')));
      td.appendChild(b);
    }
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

async function refresh() {
  try {
    const [status, summary, spend, audit, approvals, pins] = await Promise.all([
      api('/admin/status'), api('/admin/api/summary'), api('/admin/api/spend'), api('/admin/api/audit'),
      api('/admin/api/approvals'),
      api('/admin/api/integrity?state=pending').catch((e) => { if (e instanceof Unauthorized) throw e; return null; })]);
    drawApprovals(approvals);
    drawIntegrity(pins);
    setStatus(`${status.status} · v${status.version} · up ${status.uptime_s}s`, status.status === 'ready' ? 'ok' : 'bad');
    drawSummary(summary);
    drawSpend(spend);
    drawAudit(audit);
    document.getElementById('footer').textContent = `configuration ${status.config.sha256.slice(0, 12)} · updated ${new Date().toLocaleTimeString()}`;
    document.body.setAttribute('data-loaded', '1');
  } catch (e) {
    if (e instanceof Unauthorized) { showLogin(token ? 'The token was refused.' : ''); return false; }
    setStatus('admin API error: ' + e.message, 'bad');
  }
  return true;
}

let started = false;
async function start() {
  try {
    await api('/admin/status');
  } catch (e) {
    if (e instanceof Unauthorized) { showLogin(token ? 'The token was refused.' : ''); return; }
  }
  document.getElementById('login').classList.add('hidden');
  if (started) { refresh(); return; }
  started = true;
  document.getElementById('panels').classList.remove('hidden');
  runFeed();
  if (await refresh()) setInterval(refresh, 5000);
}

document.getElementById('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token = document.getElementById('token').value.trim();
  sessionStorage.setItem('toolgate-admin-token', token);
  start();
});
document.getElementById('verify').addEventListener('click', async () => {
  try { drawAudit(await api('/admin/api/audit?verify=1')); } catch (e) { setStatus('verify failed: ' + e.message, 'bad'); }
});
start();
