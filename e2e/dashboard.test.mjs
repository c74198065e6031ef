// End-to-end tests of the dashboard in real headless Chromium, against the real `agent-os demo`
// (the example projects trading, cortana and image-workflow, and the example workflows).
//
//   node --test --test-concurrency=1 e2e/dashboard.test.mjs
//
// Environment: AGENT_OS_BIN (default target/debug/agent-os), AGENT_OS_E2E_OUT (screenshots,
// default target/e2e), AGENT_OS_E2E_CHROMIUM (default /usr/bin/chromium). Network: 127.0.0.1 only.
//
// The scenarios run in order and share one logged-in browser context; each fails with a message
// naming what it expected. Any console error, script error, failed request or error status of the
// page itself fails the scenario that caused it, unless the scenario expects that very request
// to be refused.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.AGENT_OS_BIN || join(ROOT, 'target', 'debug', 'agent-os');
const OUT = process.env.AGENT_OS_E2E_OUT || join(ROOT, 'target', 'e2e');
const CHROMIUM = process.env.AGENT_OS_E2E_CHROMIUM || '/usr/bin/chromium';

// Generous limits: CI is a loaded 2-core machine.
const START_TIMEOUT = 60_000;
const RUN_TIMEOUT = 60_000;
const WORKFLOW_TIMEOUT = 90_000;
const LIVE_TIMEOUT = 20_000;
const SCENARIO_TIMEOUT = 150_000;

const TERMINAL = new Set(['succeeded', 'failed', 'timed out', 'timed_out', 'cancelled']);

/** Everything the scenarios share. */
const ctx = {
  server: null, // { proc, url, token, home, log }
  browser: null,
  context: null, // logged in
  runId: null, // the run started from the project page
  workflowRunId: null,
};

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined; fails with `what` and the last value. */
async function until(what, probe, { timeout = LIVE_TIMEOUT, every = 250 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = `error: ${e.message.split('\n')[0]}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}${last ? ` (last: ${last})` : ''}`);
    }
    await sleep(every);
  }
}

/** Waits for an element's trimmed text to satisfy `ok`; the failure names the last text seen. */
async function untilText(locator, what, ok, timeout = LIVE_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last = '(no such element)';
  for (;;) {
    const n = await locator.count();
    if (n > 0) {
      const t = ((await locator.first().textContent({ timeout: 5_000 }).catch(() => null)) ?? '').trim();
      last = JSON.stringify(t);
      if (ok(t)) return t;
    }
    if (Date.now() > deadline) throw new Error(`expected ${what} within ${timeout / 1000} s; last seen: ${last}`);
    await sleep(250);
  }
}

/** A call to the JSON API as the admin. */
async function api(method, path, body) {
  const r = await fetch(ctx.server.url + path, {
    method,
    headers: {
      authorization: `Bearer ${ctx.server.token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: r.status, json, text };
}

async function apiOk(method, path, body, want = [200, 201, 204]) {
  const r = await api(method, path, body);
  assert.ok(want.includes(r.status), `${method} ${path}: expected ${want.join(' or ')}, got ${r.status}: ${r.text}`);
  return r.json;
}

/** Waits for a run to end through the API, then returns it. */
async function waitRun(id, timeout = RUN_TIMEOUT) {
  return until(`run ${id} to end`, async () => {
    const run = await apiOk('GET', `/api/v1/runs/${id}/wait?timeout=10s`);
    return ['queued', 'running'].includes(run.status) ? undefined : run;
  }, { timeout, every: 100 });
}

/** Holds the demo's shared `openai` resource, so a run or workflow step needing it waits in line. */
async function holdOpenai() {
  const lease = await apiOk('POST', '/api/v1/resources/openai/leases', { ttl: '90s', wait: '30s', label: 'e2e: hold' });
  let held = true;
  return async () => {
    if (held) {
      held = false;
      await apiOk('DELETE', `/api/v1/resources/openai/leases/${lease.id}`, undefined, [204, 404]);
    }
  };
}

function money(text) {
  const m = text.replace(/,/g, '').match(/-?\d+(\.\d+)?/);
  return m ? Number(m[0]) : NaN;
}

// ---------------------------------------------------------------------------------------------
// Pages: every one is watched for console errors, script errors and failed requests

/**
 * A new page in `context`, watched. `page.allow(fragment)` lets responses, failures and console
 * errors about a URL containing `fragment` pass (a refusal a scenario provokes on purpose);
 * `page.check(what)` fails with every problem seen since the last check.
 */
async function openPage(context = ctx.context) {
  const page = await context.newPage();
  const problems = [];
  const allowed = [];
  const origin = ctx.server.url;
  const isAllowed = (url) => allowed.some((a) => url && url.includes(a));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location()?.url || '';
    if (isAllowed(url)) return;
    problems.push(`console error on ${page.url()}: ${m.text()}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (e) => problems.push(`script error on ${page.url()}: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || 'failed';
    // Leaving a page aborts its open event streams and any live-part fetch still in flight.
    if (why === 'net::ERR_ABORTED' && ['eventsource', 'fetch'].includes(r.resourceType())) return;
    if (isAllowed(r.url())) return;
    problems.push(`request failed: ${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400 || !r.url().startsWith(origin) || isAllowed(r.url())) return;
    problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  page.on('dialog', (d) => d.accept());
  page.allow = (fragment) => allowed.push(fragment);
  page.forget = () => problems.splice(0);
  page.check = (what) => {
    const seen = problems.splice(0);
    assert.deepEqual(seen, [], `${what}: expected no console errors and no failed requests, saw:\n  ${seen.join('\n  ')}`);
  };
  page.markSameDocument = async () => {
    page.navigations = 0;
    await page.evaluate(() => {
      window.__e2eSameDocument = true;
    });
  };
  page.assertSameDocument = async (what) => {
    const marked = await page.evaluate(() => window.__e2eSameDocument === true);
    assert.ok(marked && page.navigations === 0, `${what}: expected the page to update in place, but it was reloaded or left`);
  };
  page.navigations = 0;
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) page.navigations += 1;
  });
  return page;
}

/** Opens `path` and expects 200; a missing page fails with its status. */
async function visit(page, path, what = path) {
  const r = await page.goto(ctx.server.url + path, { waitUntil: 'load' });
  assert.ok(r, `${what}: no response for ${path}`);
  assert.equal(r.status(), 200, `${what}: expected ${path} to answer 200, got ${r.status()}${r.status() === 404 ? ' (is the page there yet?)' : ''}`);
  assert.ok(!new URL(page.url()).pathname.startsWith('/login'), `${what}: expected to be logged in, but ${path} sent the browser to ${page.url()}`);
  return r;
}

async function shot(page, name) {
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}

// ---------------------------------------------------------------------------------------------
// The server and the browser

async function startServer() {
  const home = mkdtempSync(join(tmpdir(), 'agent-os-e2e-'));
  const logPath = join(home, 'server.log');
  const log = openSync(logPath, 'a');
  const env = { ...process.env, NO_COLOR: '1' };
  for (const k of ['AGENT_OS_ADMIN_TOKEN', 'AGENT_OS_URL', 'AGENT_OS_TOKEN', 'AGENT_OS_DATABASE_URL', 'DATABASE_URL', 'AGENT_OS_PUBLIC_URL', 'AGENT_OS_HOME']) {
    delete env[k];
  }
  const proc = spawn(BIN, ['demo', '--home', join(home, 'home'), '--bind', '127.0.0.1:0'], {
    env,
    stdio: ['ignore', 'pipe', log],
  });
  let stdout = '';
  let exited = null;
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d) => {
    stdout += d;
  });
  proc.on('exit', (code, signal) => {
    exited = signal || code;
  });
  proc.on('error', (e) => {
    exited = e.message;
  });
  const server = { proc, home, logPath, url: null, token: null, output: () => stdout };
  ctx.server = server;
  const url = await until('the demo to print its URL', () => {
    if (exited !== null) throw new Error(`${BIN} demo exited (${exited}): ${tail(logPath)}`);
    const m = stdout.match(/ listening on (http:\/\/127\.0\.0\.1:\d+)/);
    return m ? m[1] : undefined;
  }, { timeout: START_TIMEOUT, every: 100 }).catch((e) => {
    throw new Error(`${e.message}\nserver output: ${stdout}\n${tail(logPath)}`);
  });
  server.url = url;
  await until(`${url}/healthz to answer 200`, async () => ((await fetch(url + '/healthz')).status === 200 ? true : undefined), {
    timeout: START_TIMEOUT,
    every: 100,
  });
  const client = JSON.parse(readFileSync(join(home, 'home', 'client.json'), 'utf8'));
  assert.match(client.token || '', /^aosa_/, 'expected the admin token in HOME/client.json under "token"');
  server.token = client.token;
  // The demo registers its projects and writes its workflows after it starts listening.
  await until('the demo to register its example projects and workflows', async () => {
    const projects = await api('GET', '/api/v1/projects');
    const workflows = await api('GET', '/api/v1/workflows');
    const names = JSON.stringify(projects.json ?? '') + JSON.stringify(workflows.json ?? '');
    return ['trading', 'cortana', 'image-workflow', 'market-watch'].every((n) => names.includes(`"${n}"`)) ? true : undefined;
  }, { timeout: START_TIMEOUT });
  return server;
}

function tail(path, n = 40) {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

async function stopServer(server) {
  if (!server?.proc || server.proc.exitCode !== null) return;
  const gone = new Promise((r) => server.proc.once('exit', r));
  server.proc.kill('SIGTERM');
  const t = setTimeout(() => server.proc.kill('SIGKILL'), 15_000);
  await gone;
  clearTimeout(t);
}

before(async () => {
  mkdirSync(OUT, { recursive: true });
  await startServer();
  ctx.browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  ctx.context = await ctx.browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  ctx.context.setDefaultTimeout(30_000);
  ctx.context.setDefaultNavigationTimeout(30_000);
}, { timeout: START_TIMEOUT * 3 });

after(async () => {
  await ctx.browser?.close().catch(() => {});
  await stopServer(ctx.server);
  if (ctx.failed && ctx.server) {
    console.log(`# the server's log ends (all of it: ${ctx.server.logPath}):\n${tail(ctx.server.logPath, 30).replace(/^/gm, '#   ')}`);
  } else if (ctx.server?.home && !process.env.AGENT_OS_E2E_KEEP) {
    rmSync(ctx.server.home, { recursive: true, force: true });
  }
});

/** A scenario: one test with a generous time limit; a failure keeps the server's log for reading. */
function scenario(name, fn) {
  test(name, { timeout: SCENARIO_TIMEOUT }, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      ctx.failed = true;
      throw e;
    }
  });
}

/** A part of a scenario, reported on its own. */
async function sub(t, name, fn) {
  await t.test(name, async () => {
    try {
      await fn();
    } catch (e) {
      ctx.failed = true;
      throw e;
    }
  });
}

/** Fails fast and clearly when scenario 1 did not log in. */
function needLogin() {
  assert.ok(ctx.loggedIn, 'needs the logged-in browser of scenario 1, which failed');
}

// ---------------------------------------------------------------------------------------------
// The scenarios

scenario('1. log in with the admin token and see the example projects', async () => {
  const page = await openPage();
  // A page behind the session sends the browser to log in first.
  await page.goto(ctx.server.url + '/', { waitUntil: 'load' });
  assert.match(new URL(page.url()).pathname, /^\/login/, `expected / without a session to lead to /login, got ${page.url()}`);
  await shot(page, 'login');
  await page.locator('input[name="secret"]').fill(ctx.server.token);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/', { waitUntil: 'load' }),
    page.getByRole('button', { name: 'Log in' }).click(),
  ]);
  const cookies = await ctx.context.cookies(ctx.server.url);
  const session = cookies.find((c) => c.name === 'agentos_session');
  assert.ok(session, 'expected a session cookie after logging in');
  assert.ok(session.httpOnly && session.sameSite === 'Strict', `expected the session cookie HttpOnly and SameSite=Strict, got ${JSON.stringify(session)}`);
  assert.equal(await page.locator('h1').first().textContent(), 'Overview', 'expected to land on the overview');
  for (const name of ['trading', 'cortana', 'image-workflow']) {
    const link = page.locator(`a[href="/projects/${name}"]`);
    assert.ok((await link.count()) > 0, `expected the overview to show the example project ${name} with a link to /projects/${name}`);
  }
  ctx.loggedIn = true;
  page.check('the login and the overview');
  await page.close();
});

scenario('2. start a run from the project page and watch it finish live', async () => {
  needLogin();
  const page = await openPage();
  await visit(page, '/projects/trading', 'the project page');
  const form = page.locator('form.run-task').filter({ has: page.locator('input[name="task"][value="scan_market"]') });
  assert.equal(await form.count(), 1, 'expected one form.run-task for the task scan_market on /projects/trading');
  await form.locator('textarea[name="input"]').fill('{"symbols": ["BTC"]}');
  // The run waits in line for the shared openai resource while the page opens, so the page is
  // seen before the run ends and must follow it without a reload.
  const release = await holdOpenai();
  try {
    await Promise.all([
      page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, { waitUntil: 'load' }),
      form.getByRole('button', { name: 'Run', exact: true }).click(),
    ]);
    ctx.runId = new URL(page.url()).pathname.split('/').pop();
    const first = await untilText(page.locator('#live-run .badge'), 'a status badge in #live-run', (t) => t !== '');
    assert.ok(!TERMINAL.has(first), `expected the new run to be waiting while openai is held, but the page shows "${first}"`);
    await page.markSameDocument();
  } finally {
    await release();
  }
  await untilText(page.locator('#live-run .badge'), 'the run badge to read "succeeded" without a reload', (t) => t === 'succeeded', RUN_TIMEOUT);
  await untilText(page.locator('pre.log'), 'the log to show the task\'s output ("scanning 1 symbols")', (t) => t.includes('scanning 1 symbols'));
  await page.assertSameDocument('the run page');
  const run = await apiOk('GET', `/api/v1/runs/${ctx.runId}`);
  assert.equal(run.status, 'succeeded', `expected the API to report run ${ctx.runId} succeeded`);
  assert.deepEqual(run.input, { symbols: ['BTC'] }, 'expected the run to carry the input typed into the form');
  assert.equal(run.trigger, 'dashboard', 'expected the run to be recorded as started from the dashboard');
  await shot(page, 'run');
  page.check('the project page and the run page');
  await page.close();
});

scenario('3. start a workflow run and follow its steps live', async () => {
  needLogin();
  const page = await openPage();
  await visit(page, '/workflows/market-watch', 'the workflow page');
  const svg = page.locator('svg.dag[role="img"]');
  assert.ok((await svg.count()) > 0, 'expected the workflow page to draw its DAG as svg.dag[role=img]');
  assert.ok(((await svg.first().getAttribute('aria-label')) || '').length > 0, 'expected the DAG to have an aria-label');
  await shot(page, 'workflow');
  const form = page.locator('form.start-workflow');
  assert.equal(await form.count(), 1, 'expected one form.start-workflow on /workflows/market-watch');
  const release = await holdOpenai();
  try {
    await Promise.all([
      page.waitForURL(/\/workflows\/runs\/[0-9a-f-]{36}$/, { waitUntil: 'load' }),
      form.getByRole('button', { name: 'Start run' }).click(),
    ]);
    ctx.workflowRunId = new URL(page.url()).pathname.split('/').pop();
    const first = await untilText(page.locator('#live-run [data-run-status]'), 'the run status in #live-run [data-run-status]', (t) => t !== '');
    assert.ok(!TERMINAL.has(first), `expected the workflow run to be waiting while openai is held, but the page shows "${first}"`);
    await page.markSameDocument();
  } finally {
    await release();
  }
  await untilText(page.locator('#live-run [data-run-status]'), 'the workflow run to read "succeeded" without a reload', (t) => t === 'succeeded', WORKFLOW_TIMEOUT);
  const steps = await until('every step row to show a finished state', async () => {
    const rows = await page.locator('tr[data-step]').evaluateAll((trs) =>
      trs.map((tr) => ({ id: tr.dataset.step, state: (tr.querySelector('.badge')?.textContent || '').trim() })));
    return rows.length > 0 && rows.every((r) => TERMINAL.has(r.state) || r.state === 'skipped') ? rows : undefined;
  });
  const scan = steps.find((s) => s.id === 'scan');
  assert.equal(scan?.state, 'succeeded', `expected the step "scan" to show a succeeded badge; rows: ${JSON.stringify(steps)}`);
  for (const s of steps) {
    assert.ok(['succeeded', 'skipped'].includes(s.state), `expected every step succeeded (or skipped by its condition); rows: ${JSON.stringify(steps)}`);
  }
  await page.assertSameDocument('the workflow run page');
  const wr = await apiOk('GET', `/api/v1/workflows/runs/${ctx.workflowRunId}`);
  assert.equal(wr.status, 'succeeded', 'expected the API to report the workflow run succeeded');
  for (const s of wr.steps) {
    const row = steps.find((r) => r.id === s.step_id);
    assert.equal(row?.state, s.status, `expected the row of step ${s.step_id} to show its state ${s.status}`);
  }
  await shot(page, 'workflow-run');
  page.check('the workflow pages');
  await page.close();
});

scenario('4. a reported cost appears in the totals', async (t) => {
  needLogin();
  const page = await openPage();
  await visit(page, '/costs', 'the costs page');
  const total = page.locator('#cost-total');
  const before = await untilText(total, 'the range total in #cost-total', (t) => !Number.isNaN(money(t)));
  const csv = page.locator('a#cost-csv');
  assert.ok((await csv.count()) === 1 && ((await csv.getAttribute('href')) || '').startsWith('/costs.csv'), 'expected a#cost-csv linking to /costs.csv');
  await page.markSameDocument();
  const stored = await apiOk('POST', '/api/v1/costs', {
    project: 'trading',
    service: 'openai',
    amount: '1.25',
    currency: 'USD',
    idempotency_key: 'e2e-1',
  });
  assert.equal(stored.accepted, 1, `expected the API to accept the cost record, got ${JSON.stringify(stored)}`);
  const grew = (t) => money(t) >= money(before) + 1.25 - 0.005;
  let live = true;
  try {
    await untilText(total, `#cost-total to grow by $1.25 from ${before} without a reload`, grew);
    await page.assertSameDocument('the costs page');
  } catch (e) {
    live = false;
    t.diagnostic(`#cost-total did not change live (${e.message}); checking after a reload`);
    await visit(page, '/costs', 'the costs page, reloaded');
    await untilText(total, `#cost-total to have grown by $1.25 from ${before} after a reload`, grew, 5_000);
  }
  if (!live) t.diagnostic('#cost-total changed only after a reload, not live');
  await shot(page, 'costs');
  page.check('the costs page');
  await page.close();
});

scenario('5. acknowledge the incident a failed run opened', async () => {
  needLogin();
  const started = await apiOk('POST', '/api/v1/runs', { project: 'trading', task: 'scan_market', input: { fail: true } });
  const run = await waitRun(started.id);
  assert.equal(run.status, 'failed', `expected the run with {"fail": true} to fail, it ended ${run.status}`);
  const incident = await until('an open incident about trading/scan_market', async () => {
    const list = await apiOk('GET', '/api/v1/incidents?open=true');
    return list.find((i) => i.subject === 'trading/scan_market' && i.status === 'open');
  }, { timeout: 30_000 });
  const page = await openPage();
  await visit(page, '/incidents', 'the incidents page');
  const row = page.locator(`tr[data-incident="${incident.id}"]`);
  assert.equal(await row.count(), 1, `expected the incidents page to list incident ${incident.id} as tr[data-incident]`);
  const ack = row.getByRole('button', { name: 'Acknowledge' });
  assert.equal(await ack.count(), 1, 'expected an "Acknowledge" button in the open incident\'s row');
  await Promise.all([page.waitForEvent('load'), ack.click()]);
  const status = await page.evaluate(() => document.title);
  assert.ok(!/^(Forbidden|Bad Request|Not Found|Error)/.test(status), `expected the acknowledgement to succeed, got the page "${status}"`);
  const after = page.locator(`tr[data-incident="${incident.id}"]`);
  await untilText(after, 'the incident row to say "Acknowledged by admin"', (t) => t.includes('Acknowledged by admin'), 10_000);
  assert.equal(await after.getByRole('button', { name: 'Acknowledge' }).count(), 0, 'expected no "Acknowledge" button once acknowledged');
  const stored = await apiOk('GET', `/api/v1/incidents/${incident.id}`);
  assert.equal(stored.acked_by, 'admin', `expected the API to record the ack by admin, got ${JSON.stringify(stored.acked_by)}`);
  await shot(page, 'incidents');
  page.check('the incidents page');
  await page.close();
});

scenario('6. a state change without the CSRF token is refused and changes nothing', async () => {
  needLogin();
  // A run that is still going, so cancelling it would be a visible change.
  const started = await apiOk('POST', '/api/v1/runs', { project: 'trading', task: 'rebalance', input: { sleep: 40 } });
  const id = started.id;
  try {
    await until(`run ${id} to start`, async () => {
      const r = await apiOk('GET', `/api/v1/runs/${id}`);
      return r.status === 'running' ? r : undefined;
    }, { timeout: RUN_TIMEOUT });
    const page = await openPage();
    await visit(page, `/runs/${id}`, 'the running run\'s page');
    page.allow(`/runs/${id}/cancel`);
    const cancelForm = page.locator(`form[action="/runs/${id}/cancel"]`);
    assert.equal(await cancelForm.count(), 1, 'expected a cancel form on the running run\'s page');

    // A script on the logged-in page, without the token; then with a wrong one.
    const plain = await page.evaluate((u) => fetch(u, { method: 'POST' }).then((r) => r.status), `/runs/${id}/cancel`);
    assert.equal(plain, 403, `expected POST /runs/${id}/cancel without a CSRF token to be refused with 403, got ${plain}`);
    const forgedHeader = await page.evaluate(
      (u) => fetch(u, { method: 'POST', headers: { 'X-CSRF-Token': 'forged' } }).then((r) => r.status),
      `/runs/${id}/cancel`,
    );
    assert.equal(forgedHeader, 403, `expected a wrong X-CSRF-Token to be refused with 403, got ${forgedHeader}`);

    // The page's own cancel form with its _csrf altered.
    const refused = page.waitForResponse((r) => r.url().endsWith(`/runs/${id}/cancel`) && r.request().method() === 'POST');
    await page.evaluate((action) => {
      const f = document.querySelector(`form[action="${action}"]`);
      f.querySelector('input[name="_csrf"]').value = 'forged-token';
      f.requestSubmit();
    }, `/runs/${id}/cancel`);
    const resp = await refused;
    assert.equal(resp.status(), 403, `expected the form with an altered _csrf to be refused with 403, got ${resp.status()}`);
    await page.waitForLoadState('load');
    const text = await page.locator('body').textContent();
    assert.ok(text.includes('Refused'), `expected the 403 page to say the request was refused, got: ${text.slice(0, 200)}`);
    await shot(page, 'csrf-refused');

    const now = await apiOk('GET', `/api/v1/runs/${id}`);
    assert.ok(now.status === 'running' && !now.cancel_requested, `expected the run untouched (running, no cancel requested), got ${now.status}, cancel_requested=${now.cancel_requested}`);
    page.check('the refused requests');
    await page.close();
  } finally {
    await api('POST', `/api/v1/runs/${id}/cancel`);
  }
  const ended = await waitRun(id);
  assert.equal(ended.status, 'cancelled', `expected the cancel through the API to end the run, it ended ${ended.status}`);
});

scenario('7. keyboard: the first Tab reaches "Skip to content", with a visible focus ring', async () => {
  needLogin();
  const page = await openPage();
  await visit(page, '/', 'the overview');
  await page.locator('body').focus().catch(() => {});
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    return {
      tag: el.tagName,
      text: (el.textContent || '').trim(),
      href: el.getAttribute('href'),
      outline: `${s.outlineStyle} ${s.outlineWidth}`,
      visibleOutline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0,
      onScreen: box.right > 0 && box.bottom > 0 && box.left < window.innerWidth && box.width > 0,
    };
  });
  assert.equal(first.text, 'Skip to content', `expected the first Tab to focus the "Skip to content" link, it focused <${first.tag}> "${first.text}"`);
  assert.equal(first.href, '#main', 'expected "Skip to content" to lead to #main');
  assert.ok(first.visibleOutline, `expected the focused link to have a visible outline, got "${first.outline}"`);
  assert.ok(first.onScreen, 'expected the focused "Skip to content" link to move on screen');
  await shot(page, 'focus-skip-link');
  await page.keyboard.press('Enter');
  const target = await page.evaluate(() => document.activeElement?.id || location.hash);
  assert.ok(target === 'main' || target === '#main', `expected Enter on the skip link to move to #main, got ${target}`);
  // The next control in order also shows where the focus is.
  await page.keyboard.press('Tab');
  const next = await page.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return { tag: document.activeElement.tagName, visible: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0 };
  });
  assert.ok(next.tag !== 'BODY' && next.visible, `expected Tab after the skip link to focus a control with a visible outline, got ${JSON.stringify(next)}`);
  page.check('keyboard navigation');
  await page.close();
});

scenario('8. every page renders cleanly (screenshots in target/e2e)', async (t) => {
  needLogin();
  if (!ctx.runId) {
    const runs = await apiOk('GET', '/api/v1/runs?limit=1');
    ctx.runId = runs.runs[0]?.id;
  }
  if (!ctx.workflowRunId) {
    // Scenario 3 made none: a workflow run started through the API will do for its picture.
    const wr = await api('POST', '/api/v1/workflows/market-watch/runs', {});
    ctx.workflowRunId = wr.json?.id;
    if (ctx.workflowRunId) await until('the workflow run to end', async () => {
      const r = await apiOk('GET', `/api/v1/workflows/runs/${ctx.workflowRunId}`);
      return ['queued', 'running', 'waiting'].includes(r.status) ? undefined : r;
    }, { timeout: WORKFLOW_TIMEOUT });
  }
  const pages = [
    ['overview', '/'],
    ['projects', '/projects'],
    ['project', '/projects/trading'],
    ['run', ctx.runId ? `/runs/${ctx.runId}` : null],
    ['runs', '/runs'],
    ['schedules', '/schedules'],
    ['workflows', '/workflows'],
    ['workflow-run', ctx.workflowRunId ? `/workflows/runs/${ctx.workflowRunId}` : null],
    ['events', '/events'],
    ['costs', '/costs'],
    ['incidents', '/incidents'],
    ['resources', '/resources'],
    ['settings', '/settings'],
  ];
  const page = await openPage();
  for (const [name, path] of pages) {
    await sub(t, `${name} (${path})`, async () => {
      assert.ok(path, `no ${name} to show: an earlier scenario made none`);
      try {
        await visit(page, path, `the ${name} page`);
        const h1 = await page.locator('h1').count();
        assert.ok(h1 >= 1, `expected the ${name} page to have an h1`);
        await shot(page, name);
      } catch (e) {
        page.forget();
        throw e;
      }
      page.check(`the ${name} page`);
    });
  }
  await page.close();

  await sub(t, 'login (logged out)', async () => {
    const anon = await ctx.browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const p = await openPage(anon);
      await p.goto(ctx.server.url + '/login', { waitUntil: 'load' });
      assert.ok((await p.locator('input[name="secret"]').count()) === 1, 'expected the login form with a secret field');
      await shot(p, 'login');
      p.check('the login page');
    } finally {
      await anon.close();
    }
  });

  const state = await ctx.context.storageState();
  await sub(t, "overview at a phone's width (375×800)", async () => {
    const phone = await ctx.browser.newContext({ viewport: { width: 375, height: 800 }, storageState: state, isMobile: true, hasTouch: true });
    try {
      const p = await openPage(phone);
      await visit(p, '/', 'the overview on a phone');
      const width = await p.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 375, `expected the overview to fit a 375 px wide screen without scrolling sideways, it is ${width} px wide`);
      await shot(p, 'overview-phone');
      p.check('the overview on a phone');
    } finally {
      await phone.close();
    }
  });

  await sub(t, "project and schedules pages at a phone's width (390×844)", async () => {
    const phone = await ctx.browser.newContext({ viewport: { width: 390, height: 844 }, storageState: state, isMobile: true, hasTouch: true });
    /** Fails unless every element `selector` finds lies inside the 390 px wide viewport. */
    const inView = async (p, selector, what) => {
      const boxes = await p.locator(selector).evaluateAll((els) => els.map((e) => {
        const r = e.getBoundingClientRect();
        return { left: r.left, right: r.right, width: r.width };
      }));
      assert.ok(boxes.length > 0, `expected ${what} (${selector}) on the page`);
      for (const b of boxes) {
        assert.ok(b.width > 0 && b.left >= 0 && b.right <= 390, `expected ${what} within the 390 px screen, it spans ${Math.round(b.left)}..${Math.round(b.right)} px`);
      }
    };
    try {
      const p = await openPage(phone);
      await visit(p, '/projects/trading', 'the project page on a phone');
      await inView(p, 'table.checks td.check-state', "each check's state");
      await inView(p, 'table.checks td.last-ping', "each check's last ping");
      const current = await p.locator('header.top a[aria-current="page"]').textContent();
      assert.equal(current?.trim(), 'Projects', 'a project page belongs to Projects in the navigation, not Overview');
      const width = await p.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `expected the project page to fit 390 px without scrolling sideways, it is ${width} px wide`);
      await shot(p, 'project-phone');
      await visit(p, '/schedules', 'the schedules page on a phone');
      await inView(p, 'table.schedules td.next-fire', "each schedule's next fire");
      await inView(p, 'table.schedules td.schedule-actions', "each schedule's actions");
      await shot(p, 'schedules-phone');
      await visit(p, '/projects', 'the projects list on a phone');
      await inView(p, 'main table a[href^="/projects/"]', 'each project');
      await shot(p, 'projects-phone');
      p.check('the narrow pages');
    } finally {
      await phone.close();
    }
  });

  await sub(t, 'overview in dark mode', async () => {
    const dark = await ctx.browser.newContext({ viewport: { width: 1280, height: 900 }, storageState: state, colorScheme: 'dark' });
    try {
      const p = await openPage(dark);
      await visit(p, '/', 'the overview in dark mode');
      const { bg, light } = await p.evaluate(() => {
        const c = getComputedStyle(document.body).backgroundColor;
        const [r, g, b] = (c.match(/\d+(\.\d+)?/g) || []).map(Number);
        return { bg: c, light: (r + g + b) / 3 };
      });
      assert.ok(light < 100, `expected a dark background when the system asks for dark mode, got ${bg}`);
      await shot(p, 'overview-dark');
      p.check('the overview in dark mode');
    } finally {
      await dark.close();
    }
  });
});

scenario('9. a refused edit of config.yaml shows on the settings page, and a good one clears it', async () => {
  needLogin();
  const file = join(ctx.server.home, 'home', 'config.yaml');
  const good = readFileSync(file, 'utf8');
  const page = await openPage();
  try {
    writeFileSync(file, 'resources:\n  openai:\n    concurrency: 0\n');
    const refused = await apiOk('POST', '/api/v1/config/reload', {});
    assert.equal(refused.applied, false, `expected the edit to be refused: ${JSON.stringify(refused)}`);
    await visit(page, '/settings', 'the settings page after a refused edit');
    const alert = page.locator('#config-status [role="alert"]');
    assert.equal(await alert.count(), 1, 'expected the refused edit on the settings page');
    const text = await alert.textContent();
    assert.ok(text.includes('resources.openai.concurrency') && text.includes(':3:'), `expected the place of the error, got: ${text}`);
    assert.ok(text.includes('kept'), `expected to be told the settings in force are kept, got: ${text}`);
    await shot(page, 'settings-config-refused');
  } finally {
    writeFileSync(file, good);
  }
  const applied = await apiOk('POST', '/api/v1/config/reload', {});
  assert.equal(applied.applied, true, `expected the original file to be applied again: ${JSON.stringify(applied)}`);
  await visit(page, '/settings', 'the settings page after the fix');
  assert.equal(await page.locator('#config-status [role="alert"]').count(), 0, 'expected no refused edit once the file is valid again');
  page.check('the settings page');
  await page.close();
});

scenario('10. snooze a heartbeat check from its project page, see it quiet, and wake it', async () => {
  needLogin();
  const page = await openPage();
  await visit(page, '/projects/trading', 'the trading project page');
  const row = () => page.locator('table.checks tbody tr', { hasText: 'price-feed' });
  assert.equal(await row().count(), 1, 'expected one row for the price-feed check in table.checks');
  await row().locator('select[name="until"]').selectOption('8h');
  await row().locator('input[name="reason"]').fill('exchange maintenance');
  await Promise.all([page.waitForEvent('load'), row().getByRole('button', { name: 'Snooze', exact: true }).click()]);
  const snoozed = (await apiOk('GET', '/api/v1/checks?project=trading')).find((c) => c.slug === 'price-feed');
  assert.ok(snoozed.snoozed_until, `expected the API to show the snooze, got ${JSON.stringify(snoozed)}`);
  assert.equal(snoozed.snooze_reason, 'exchange maintenance');
  const hours = (Date.parse(snoozed.snoozed_until) - Date.now()) / 3_600_000;
  assert.ok(hours > 7.9 && hours <= 8.01, `expected a snooze of 8 hours, got ${hours.toFixed(3)} h`);
  await untilText(row(), 'the check row to say it is snoozed', (t) => t.includes('snoozed'), 10_000);
  await shot(page, 'project-check-snoozed');
  await Promise.all([page.waitForEvent('load'), row().getByRole('button', { name: 'Unsnooze', exact: true }).click()]);
  const woken = (await apiOk('GET', '/api/v1/checks?project=trading')).find((c) => c.slug === 'price-feed');
  assert.equal(woken.snoozed_until, null, `expected the snooze to be over, got ${JSON.stringify(woken)}`);
  await untilText(row(), 'the check row to offer Snooze again', (t) => !t.includes('snoozed'), 10_000);
  page.check('the project page');
  await page.close();
});
