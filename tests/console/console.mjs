#!/usr/bin/env node
// End-to-end test of the web console (/ui) in headless Chromium, against a running host.
//
//   FLOWHOST_CONSOLE_FIXTURE=/path/fixture.json node tests/console/console.mjs
//
// The fixture (written by the Rust harness) names the host, its admin token, where to put
// screenshots, where playwright-core is installed, and runs in known states:
//   { "url", "admin_token", "screenshots", "playwright_core",
//     "runs": { "completed", "compensated", "shipped", "child", "waiting", "sleeping", "compensation_failed" },
//     "completed_order_id", "dead_letter", "workflow", ["payment_wasm"], ["trigger_token"] }
// (payment_wasm: the current payment component, uploaded again to check a 200 "known
// version"; trigger_token: when the host has one, set in Settings and used for the starts.)
// Every check compares the page with what the API says about the same runs. The test fails
// (exit 1, one line per failure) on a failed check, a console error, an uncaught exception in
// the page, or a failed request other than the 4xx answers it provokes on purpose (a request
// cut short by a navigation, net::ERR_ABORTED, is counted and not a failure).
//
// The data-testid contract of the console (host/console/*.js):
//   layout     nav-runs nav-dashboard nav-workflows nav-plugins nav-events nav-settings;
//              token-indicator (data-admin, data-trigger: set|unset); page (the main element,
//              data-page = route name); page-title; crumbs; fatal (a console error, shown)
//   shared     loading; error; needs-admin + try-anyway (no admin token set)
//   settings   settings-admin-token settings-trigger-token settings-save settings-clear
//              settings-saved settings-test settings-test-result settings-reveal
//   runs       runs-filter-workflow runs-filter-status runs-filter-after runs-filter-before
//              runs-filter-field runs-filter-value runs-filter-limit runs-filter-apply
//              runs-filter-reset; runs-search-id runs-search-go runs-search-result;
//              runs-live (checkbox); runs-host (data-state: loading|ready|error, data-query:
//              the filters of the listing shown); runs-table; run-row (data-run-id, data-status,
//              data-workflow) with run-link, run-status, run-error; runs-empty; runs-error (the
//              listing's problem detail); runs-failure; runs-count; runs-older runs-newest;
//              runs-start-toggle start-panel start-form start-workflow start-input start-key
//              start-submit start-result
//   run        run-head run-id run-status (data-status) run-workflow run-version (data-digest)
//              run-plugins run-plugin (data-plugin, data-digest) run-parent run-trace
//              run-created run-updated run-ended run-duration run-error run-missing
//              run-actions run-cancel run-cancel-confirm run-cancel-abort run-retry
//              signal-form signal-name signal-data signal-send action-result
//              tab-timeline tab-journal tab-context; timeline timeline-axis;
//              step (data-step, data-status, data-kind, data-branch, data-child) with
//              step-toggle step-name step-status step-wait step-child step-error
//              step-attempts-count step-compensations step-detail step-attempts
//              (attempt-row) step-output step-context; parallel-group (data-step);
//              branch (data-branch); journal-table journal-row (data-step, data-direction,
//              data-attempt, data-outcome, data-branch); run-input run-context
//   workflows  workflows-table workflow-row (data-name, data-digest) workflow-link
//              workflow-current workflow-versions workflow-pinned workflow-start-run
//              workflows-refresh workflow-push-form workflow-push-name
//              workflow-push-definition workflow-push-submit workflow-push-result
//              (data-status); detail: workflow-name workflow-current (data-digest)
//              workflow-version (data-digest, data-current) version-current-marker
//              version-pinned workflow-definition workflow-rollback (data-digest)
//              workflow-rollback-previous workflow-action-result (data-status) workflow-runs
//              workflow-missing
//   plugins    plugins-table plugin-row (data-name, data-digest) plugin-link plugin-current
//              plugin-versions; detail: plugin-name plugin-current (data-digest)
//              plugin-versions-table plugin-version (data-digest, data-current, data-pinned)
//              plugin-pinned plugin-rollback (data-digest) plugin-rollback-previous
//              plugin-action-result plugin-upload-file plugin-upload-label
//              plugin-upload-submit plugin-upload-result (data-status) plugin-missing
//   events     subscriptions-table subscription-row (data-name, data-kind, data-backlog)
//              subscription-backlog; dead-letters-table dead-letter-row (data-id,
//              data-subscription) dead-letter-event dead-letter-redeliver (data-id)
//              dead-letters-empty dead-letters-result (data-status) dead-letters-older
//              dead-letters-newest dead-letters-count; publish-topic publish-data
//              publish-submit publish-result (data-status) publish-event-id; events-refresh
//   nodes      nodes-table node-row (data-id, data-live, data-runs, data-this) node-lease
//              node-runs nodes-refresh nodes-empty nodes-error
//   dashboard  dashboard (the tiles); each value carries data-value (raw number, empty when
//              unknown): dash-started-rate dash-ended-rate dash-failure-rate
//              dash-failure-basis dash-step-p50 dash-step-p99 dash-step-basis (data-basis:
//              interval|cumulative|none) dash-lag-p50 dash-lag-p99 dash-lag-basis
//              dash-outbox-depth dash-in-flight dash-queued dash-sleeping dash-waiting;
//              dash-status-table dash-rate (data-status, data-value) dash-rate-value;
//              dash-updated dash-error dash-metrics-off dash-reset; the page element carries
//              data-scrapes (scrapes so far)

import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const started = Date.now();
const here = path.dirname(fileURLToPath(import.meta.url));

function die(message) {
  console.log(`console: ${message}`);
  process.exit(1);
}

const fixturePath = process.env.FLOWHOST_CONSOLE_FIXTURE;
if (!fixturePath) die('set FLOWHOST_CONSOLE_FIXTURE to the fixture JSON file');
let fx;
try {
  fx = JSON.parse(fs.readFileSync(fixturePath, 'utf8'));
} catch (error) {
  die(`cannot read the fixture ${fixturePath}: ${error.message}`);
}
for (const key of ['url', 'admin_token', 'screenshots', 'playwright_core', 'runs', 'completed_order_id', 'dead_letter', 'workflow']) {
  if (fx[key] === undefined) die(`the fixture has no "${key}"`);
}
const BASE = fx.url.replace(/\/$/, '');
const ADMIN = fx.admin_token;
const RUNS = fx.runs;
const TERMINAL = new Set(['completed', 'compensated', 'compensation_failed', 'failed', 'cancelled']);
fs.mkdirSync(fx.screenshots, { recursive: true });

let chromium;
try {
  ({ chromium } = createRequire(import.meta.url)(fx.playwright_core));
} catch (error) {
  die(`cannot load playwright-core from ${fx.playwright_core}: ${error.message}`);
}

// --- bookkeeping ------------------------------------------------------------------------

const failures = [];
let passed = 0;
let current = 'setup';
let aborted = 0;

const oneLine = (value) => String(value && value.message ? value.message : value).replace(/\u001b\[[0-9;]*m/g, '').split('\n').map((s) => s.trim()).filter(Boolean).join(' | ').slice(0, 600);

async function check(name, fn) {
  current = name;
  const t0 = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok ${passed} - ${name} (${Date.now() - t0} ms)`);
  } catch (error) {
    failures.push(`${name}: ${oneLine(error)}`);
    console.log(`not ok - ${name}: ${oneLine(error)}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function equal(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

function deepEqual(a, b) {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  return value;
}

/** Polls `fn` until it returns a truthy value; throws `message` (or the last error) after `ms`. */
async function until(fn, ms, message) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new Error(`${message}${last ? ` (${oneLine(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

// --- the API, from node -------------------------------------------------------------------

async function api(method, route, { body, admin = false, raw = false } = {}) {
  const headers = {};
  if (admin) headers.authorization = `Bearer ${ADMIN}`;
  else if (method === 'POST' && fx.trigger_token) headers.authorization = `Bearer ${fx.trigger_token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(BASE + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // text
  }
  if (!raw && response.status >= 400) throw new Error(`${method} ${route}: ${response.status} ${text.slice(0, 200)}`);
  return { status: response.status, data };
}

const getRun = async (id) => (await api('GET', `/v1/runs/${encodeURIComponent(id)}`)).data;

// --- the browser --------------------------------------------------------------------------

const allowed = []; // {method, url: RegExp, status: Set}
function allow(method, url, ...statuses) {
  allowed.push({ method, url, status: new Set(statuses) });
}
const isAllowed = (method, url, status) => allowed.some((a) => (!method || !a.method || a.method === method) && a.url.test(url) && a.status.has(status));

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const watchdog = setTimeout(async () => {
  failures.push(`the test did not finish within 150 s (stuck in: ${current})`);
  await finish();
}, 150_000);

const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
page.setDefaultTimeout(10_000);
page.on('console', (message) => {
  if (message.type() !== 'error') return;
  const text = message.text();
  const url = message.location()?.url || '';
  const status = /status of (\d{3})/.exec(text);
  if (status && isAllowed(null, url, Number(status[1]))) return;
  failures.push(`console error during "${current}": ${oneLine(text)}${url ? ` (${url})` : ''}`);
});
page.on('pageerror', (error) => failures.push(`uncaught exception during "${current}": ${oneLine(error)}`));
page.on('requestfailed', (request) => {
  const reason = request.failure()?.errorText || 'failed';
  if (reason === 'net::ERR_ABORTED') {
    aborted += 1;
    return;
  }
  failures.push(`request failed during "${current}": ${request.method()} ${request.url()} ${reason}`);
});
page.on('response', (response) => {
  const status = response.status();
  if (status < 400) return;
  const method = response.request().method();
  if (isAllowed(method, response.url(), status)) return;
  failures.push(`unexpected ${status} during "${current}": ${method} ${response.url()}`);
});

const tid = (id, extra = '') => `[data-testid="${id}"]${extra}`;
const q = (value) => JSON.stringify(String(value)); // a quoted CSS attribute value
const text = async (selector) => ((await page.locator(selector).first().textContent()) || '').trim();
const attr = (selector, name) => page.locator(selector).first().getAttribute(name);

async function open(hash) {
  await page.goto(`${BASE}/ui#${hash}`);
}

async function shot(name) {
  await page.screenshot({ path: path.join(fx.screenshots, name), fullPage: false });
}

async function runStatusIs(status, ms = 10_000) {
  await page.waitForSelector(`${tid('run-status')}[data-status=${q(status)}]`, { timeout: ms });
}

function localInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

async function rowIds() {
  return page.$$eval(tid('run-row'), (rows) => rows.map((r) => ({ id: r.dataset.runId, status: r.dataset.status, workflow: r.dataset.workflow })));
}

/**
 * Waits until the runs page shows the listing of exactly these filters (`data-query` of
 * runs-host; a filter not named must be unset), loaded or refused.
 */
async function listing(filters) {
  await page.waitForFunction((expected) => {
    const host = document.querySelector('[data-testid="runs-host"]');
    if (!host || (host.dataset.state !== 'ready' && host.dataset.state !== 'error')) return false;
    const shown = new URLSearchParams(host.dataset.query || '');
    const keys = new Set([...shown.keys(), ...Object.keys(expected)]);
    keys.delete('limit');
    return [...keys].every((k) => (shown.get(k) || '') === (expected[k] || ''));
  }, filters);
}

// --- a. settings -------------------------------------------------------------------------

await check('a. settings: the admin token is saved and the header says so', async () => {
  await open('/settings');
  await page.fill(tid('settings-admin-token'), ADMIN);
  if (fx.trigger_token) await page.fill(tid('settings-trigger-token'), fx.trigger_token);
  await page.click(tid('settings-save'));
  await page.waitForSelector(`${tid('settings-saved')}[data-kind="ok"]`);
  assert((await text(tid('settings-saved'))).includes('admin token set'), 'no confirmation of the saved token');
  equal(await attr(tid('token-indicator'), 'data-admin'), 'set', 'the header indicator');
  equal(await attr(tid('token-indicator'), 'data-trigger'), fx.trigger_token ? 'set' : 'unset', 'the header indicator (trigger)');
  const stored = await page.evaluate(() => localStorage.getItem('flowhost.console.adminToken'));
  equal(stored, ADMIN, 'the token in localStorage');
  await page.click(tid('settings-test'));
  await page.waitForSelector(`${tid('settings-test-result')}[data-kind="ok"]`);
  const plugins = (await api('GET', '/v1/plugins', { admin: true })).data.plugins;
  assert((await text(tid('settings-test-result'))).includes(`${plugins.length} plugins`), 'the token check does not list the plugins');
  await shot('settings.png');
});

// --- b. runs -----------------------------------------------------------------------------

const apiRuns = {};
await check('b. runs: the table lists the fixture runs with the statuses the API gives', async () => {
  for (const [key, id] of Object.entries(RUNS)) apiRuns[key] = await getRun(id);
  await open('/runs?limit=500');
  await listing({});
  await page.waitForSelector(tid('runs-table'));
  const rows = await rowIds();
  for (const [key, run] of Object.entries(apiRuns)) {
    const row = rows.find((r) => r.id === run.id);
    assert(row, `the ${key} run ${run.id} is not listed`);
    equal(row.status, run.status, `status of the ${key} run`);
    equal(row.workflow, run.workflow, `workflow of the ${key} run`);
    const chip = await text(`${tid('run-row')}[data-run-id=${q(run.id)}] ${tid('run-status')}`);
    equal(chip, run.status.replace(/_/g, ' '), `status chip of the ${key} run`);
  }
  // newest first, as the API lists them
  const listed = (await api('GET', '/v1/runs?limit=500')).data.runs.map((r) => r.id);
  const shown = rows.map((r) => r.id);
  const common = listed.filter((id) => shown.includes(id));
  assert(deepEqual(common, shown.filter((id) => listed.includes(id))), 'the table is not in the API\'s order (newest first)');
});

await check('b. runs: status=compensated shows the compensated run and not the completed one, and survives a reload', async () => {
  await open('/runs');
  await page.waitForSelector(tid('runs-table'));
  await page.selectOption(tid('runs-filter-status'), 'compensated');
  await page.waitForFunction(() => location.hash.includes('status=compensated'));
  await listing({ status: 'compensated' });
  await page.waitForSelector(`${tid('run-row')}[data-run-id=${q(RUNS.compensated)}]`);
  let rows = await rowIds();
  assert(!rows.some((r) => r.id === RUNS.completed), 'the completed run is listed under status=compensated');
  assert(rows.every((r) => r.status === 'compensated'), `a row of another status: ${rows.map((r) => r.status).join(',')}`);
  await page.reload();
  await listing({ status: 'compensated' });
  await page.waitForSelector(`${tid('run-row')}[data-run-id=${q(RUNS.compensated)}]`);
  equal(await page.inputValue(tid('runs-filter-status')), 'compensated', 'the status filter after a reload');
  rows = await rowIds();
  assert(rows.every((r) => r.status === 'compensated'), 'the filter is lost on reload');
});

await check('b. runs: the workflow filter lists only that workflow', async () => {
  await page.click(tid('runs-filter-reset'));
  await listing({});
  const workflow = apiRuns.shipped.workflow;
  await page.waitForSelector(`${tid('runs-filter-workflow')} option[value=${q(workflow)}]`, { state: 'attached' });
  await page.selectOption(tid('runs-filter-workflow'), workflow);
  await listing({ workflow });
  await page.waitForSelector(`${tid('run-row')}[data-run-id=${q(RUNS.shipped)}]`);
  const rows = await rowIds();
  assert(rows.length > 0 && rows.every((r) => r.workflow === workflow), `rows of other workflows: ${[...new Set(rows.map((r) => r.workflow))]}`);
  const expected = (await api('GET', `/v1/runs?workflow=${encodeURIComponent(workflow)}&limit=50`)).data.runs.map((r) => r.id);
  assert(deepEqual(rows.map((r) => r.id), expected), 'the rows differ from GET /v1/runs?workflow=');
});

await check('b. runs: Older pages on with next_cursor, Newest comes back', async () => {
  await open('/runs?limit=2');
  await listing({});
  await page.waitForSelector(tid('runs-table'));
  const first = (await rowIds()).map((r) => r.id);
  equal(first.length, 2, 'rows on a page of 2');
  await page.click(tid('runs-older'));
  await page.waitForFunction(() => location.hash.includes('cursor='));
  const cursor = new URLSearchParams((await page.evaluate(() => location.hash)).split('?')[1]).get('cursor');
  await listing({ cursor });
  const expected = (await api('GET', `/v1/runs?limit=2&cursor=${encodeURIComponent(cursor)}`)).data.runs.map((r) => r.id);
  const second = (await rowIds()).map((r) => r.id);
  assert(second.length > 0 && deepEqual(second, expected), `the older page ${second} is not the API's ${expected}`);
  assert(!second.some((id) => first.includes(id)), 'the older page repeats the newest');
  await page.click(tid('runs-newest'));
  await listing({});
  await page.waitForFunction(() => !location.hash.includes('cursor='));
});

await check('b. runs: search by id jumps to the run; an unknown id says not found', async () => {
  await open('/runs');
  await page.waitForSelector(tid('runs-table'));
  const missing = `no-such-run-${Date.now()}`;
  allow('GET', new RegExp(`/v1/runs/${missing}$`), 404);
  await page.fill(tid('runs-search-id'), missing);
  await page.click(tid('runs-search-go'));
  await page.waitForSelector(`${tid('runs-search-result')}:not(.hidden)`);
  assert((await text(tid('runs-search-result'))).includes('No run'), 'no "not found" for an unknown id');
  await page.fill(tid('runs-search-id'), RUNS.completed);
  await page.click(tid('runs-search-go'));
  await page.waitForFunction((id) => location.hash === `#/runs/${encodeURIComponent(id)}`, RUNS.completed);
  await page.waitForSelector(tid('run-id'));
  equal(await text(tid('run-id')), RUNS.completed, 'the run page reached');
});

await check('b. runs: context[order_id] finds exactly the completed run', async () => {
  await open('/runs');
  await page.waitForSelector(tid('runs-table'));
  await page.fill(tid('runs-filter-field'), 'order_id');
  await page.fill(tid('runs-filter-value'), fx.completed_order_id);
  await page.click(tid('runs-filter-apply'));
  await listing({ field: 'order_id', value: fx.completed_order_id });
  await page.waitForSelector(`${tid('run-row')}[data-run-id=${q(RUNS.completed)}]`);
  const rows = await rowIds();
  equal(rows.length, 1, 'rows found by order_id');
  equal(rows[0].id, RUNS.completed, 'the run found by order_id');
});

await check('b. runs: created_after tomorrow shows the empty state', async () => {
  await page.click(tid('runs-filter-reset'));
  await listing({});
  await page.waitForSelector(tid('runs-table'));
  await page.fill(tid('runs-filter-after'), localInput(new Date(Date.now() + 86_400_000)));
  await page.click(tid('runs-filter-apply'));
  await page.waitForFunction(() => location.hash.includes('created_after='));
  await page.waitForSelector(tid('runs-empty'));
  assert((await text(tid('runs-empty'))).includes('No runs match'), 'the empty state does not say "No runs match"');
  equal(await page.locator(tid('run-row')).count(), 0, 'rows under a future created_after');
  const after = new URLSearchParams((await page.evaluate(() => location.hash)).split('?')[1]).get('created_after');
  assert(after && after.endsWith('Z') && Date.parse(after) > Date.now(), `created_after is not an RFC 3339 UTC time in the future: ${after}`);
});

await check('b. runs: an undeclared search field shows the server\'s 400 detail', async () => {
  const problem = await api('GET', '/v1/runs?context%5Bpayment_id%5D=x', { raw: true });
  equal(problem.status, 400, 'the API\'s answer to an undeclared field');
  allow('GET', /\/v1\/runs\?.*payment_id/, 400);
  await page.click(tid('runs-filter-reset'));
  await listing({});
  await page.waitForSelector(tid('runs-table'));
  await page.fill(tid('runs-filter-field'), 'payment_id');
  await page.fill(tid('runs-filter-value'), 'x');
  await page.click(tid('runs-filter-apply'));
  await listing({ field: 'payment_id', value: 'x' });
  await page.waitForSelector(`${tid('runs-error')}[data-kind="error"]`);
  const shown = await text(tid('runs-error'));
  assert(shown.includes(problem.data.detail), `the detail is not shown: ${shown}`);
  assert(shown.startsWith('400'), `the status is not shown: ${shown}`);
  await page.click(tid('runs-filter-reset'));
  await listing({});
  await page.waitForSelector(tid('runs-table'));
  await shot('runs.png');
});

// --- c. run pages ----------------------------------------------------------------------------

await check('c. completed run: 5 steps completed in order, pins, version, journal, context after the payment step', async () => {
  const run = await getRun(RUNS.completed);
  const journal = (await api('GET', `/v1/runs/${encodeURIComponent(RUNS.completed)}/journal`)).data;
  await open(`/runs/${encodeURIComponent(RUNS.completed)}`);
  await runStatusIs('completed');
  const steps = await page.$$eval(tid('step'), (els) => els.map((e) => ({ name: e.dataset.step, status: e.dataset.status })));
  equal(steps.length, 5, 'steps shown');
  equal(JSON.stringify(steps.map((s) => s.name)), JSON.stringify(run.steps.map((s) => s.name)), 'step order');
  assert(steps.every((s) => s.status === 'completed'), `steps not completed: ${steps.filter((s) => s.status !== 'completed').map((s) => s.name)}`);
  for (const [name, digest] of Object.entries(run.plugins)) {
    const pin = `${tid('run-plugin')}[data-plugin=${q(name)}]`;
    equal(await attr(pin, 'data-digest'), digest, `pinned digest of ${name}`);
    assert((await text(pin)).includes(digest.slice(0, 12)), `the short digest of ${name} is not shown`);
  }
  assert(Object.keys(run.plugins).length >= 4, 'the API pins fewer plugins than the workflow uses');
  equal(await attr(tid('run-version'), 'data-digest'), run.workflow_version, 'workflow version');
  equal(await text(tid('run-version')), run.workflow_version.slice(0, 12), 'the short workflow version');
  equal(await attr(tid('run-version'), 'href'), `#/workflows/${encodeURIComponent(run.workflow)}`, 'the version\'s link');

  // the step whose output holds the payment's id: found from the API, not assumed
  const payment = run.steps.find((s) => s.output && Object.keys(s.output).some((k) => /payment/.test(k)));
  assert(payment, 'no step of the completed run has a payment key in its output');
  const key = Object.keys(payment.output).find((k) => /payment/.test(k));
  const index = run.steps.indexOf(payment);
  const expected = Object.assign({}, run.input, ...run.steps.slice(0, index + 1).filter((s) => !s.branch && s.output).map((s) => s.output));
  await page.click(`${tid('step')}[data-step=${q(payment.name)}] ${tid('step-toggle')}`);
  const contextText = await text(`${tid('step')}[data-step=${q(payment.name)}] ${tid('step-context')}`);
  const shownContext = JSON.parse(contextText);
  equal(JSON.stringify(shownContext[key]), JSON.stringify(payment.output[key]), `"${key}" in the context after ${payment.name}`);
  assert(deepEqual(shownContext, expected), 'the context after the payment step is not input + outputs so far');
  const attempts = await page.locator(`${tid('step')}[data-step=${q(payment.name)}] ${tid('attempt-row')}`).count();
  equal(attempts, journal.attempts.filter((a) => a.step === payment.name).length, `attempts of ${payment.name}`);
  await page.locator(`${tid('step')}[data-step=${q(payment.name)}]`).scrollIntoViewIfNeeded();
  await shot('run.png');
  const previous = run.steps[index - 1];
  await page.click(`${tid('step')}[data-step=${q(previous.name)}] ${tid('step-toggle')}`);
  const before = JSON.parse(await text(`${tid('step')}[data-step=${q(previous.name)}] ${tid('step-context')}`));
  assert(!(key in before) || key in run.input, `"${key}" is already in the context before ${payment.name}`);
  await page.click(tid('tab-journal'));
  await page.waitForSelector(tid('journal-table'));
  const rows = await page.$$eval(tid('journal-row'), (els) => els.map((e) => `${e.dataset.step}/${e.dataset.direction}/${e.dataset.attempt}/${e.dataset.outcome}`));
  equal(JSON.stringify(rows), JSON.stringify(journal.attempts.map((a) => `${a.step}/${a.direction}/${a.attempt}/${a.outcome}`)), 'the journal tab');
});

await check('c. compensated run: reserve_inventory compensated, process_payment failed with its error', async () => {
  const run = await getRun(RUNS.compensated);
  await open(`/runs/${encodeURIComponent(RUNS.compensated)}`);
  await runStatusIs('compensated');
  equal(await attr(`${tid('step')}[data-step="reserve_inventory"]`, 'data-status'), 'compensated', 'reserve_inventory');
  equal(await attr(`${tid('step')}[data-step="process_payment"]`, 'data-status'), 'failed', 'process_payment');
  const error = run.steps.find((s) => s.name === 'process_payment').error;
  assert(error, 'the API gives no error for process_payment');
  equal(await text(`${tid('step')}[data-step="process_payment"] ${tid('step-error')}`), error, 'the payment step\'s error');
  if (run.error) assert((await text(tid('run-error'))).includes(run.error.message), 'the run\'s error is not shown');
});

await check('c. shipped run: the parallel branches side by side, the ship step links to its child, the child to its parent', async () => {
  const run = await getRun(RUNS.shipped);
  const parallel = run.steps.find((s) => s.kind === 'parallel');
  assert(parallel, 'the API shows no parallel step');
  const branches = [...new Set(run.steps.filter((s) => s.branch).map((s) => s.branch))];
  assert(branches.length >= 2, `the API shows ${branches.length} branches`);
  await open(`/runs/${encodeURIComponent(RUNS.shipped)}`);
  await runStatusIs(run.status);
  const group = `${tid('parallel-group')}[data-step=${q(parallel.name)}]`;
  await page.waitForSelector(group);
  const shown = await page.$$eval(`${group} ${tid('branch')}`, (els) => els.map((e) => e.dataset.branch));
  equal(JSON.stringify(shown), JSON.stringify(branches), 'branches of the parallel step');
  for (const step of run.steps.filter((s) => s.branch)) {
    equal(await attr(`${group} ${tid('branch')}[data-branch=${q(step.branch)}] ${tid('step')}[data-step=${q(step.name)}]`, 'data-status'), step.status, `${step.name} in branch ${step.branch}`);
  }
  const boxes = [];
  for (const b of branches) boxes.push(await page.locator(`${group} ${tid('branch')}[data-branch=${q(b)}]`).boundingBox());
  const [a, c] = boxes;
  assert(a && c, 'a branch has no box');
  assert(a.y < c.y + c.height && c.y < a.y + a.height, `the branches do not share a vertical range: ${JSON.stringify(boxes)}`);
  assert(Math.abs(a.x - c.x) > 50 && (a.x + a.width <= c.x + 1 || c.x + c.width <= a.x + 1), `the branches are not side by side: ${JSON.stringify(boxes)}`);
  const ship = run.steps.find((s) => s.child);
  equal(ship.child, RUNS.child, 'the child run the API names');
  const link = `${tid('step')}[data-step=${q(ship.name)}] ${tid('step-child')}`;
  equal(await text(link), RUNS.child, 'the child link\'s text');
  equal(await attr(link, 'href'), `#/runs/${encodeURIComponent(RUNS.child)}`, 'the child link');
  await shot('run-parallel.png');
  await page.click(link);
  await page.waitForFunction((id) => document.querySelector('[data-testid="run-id"]')?.textContent === id, RUNS.child);
  const child = await getRun(RUNS.child);
  equal(child.parent, RUNS.shipped, 'the child\'s parent in the API');
  equal(await text(tid('run-parent')), RUNS.shipped, 'the parent shown on the child');
  equal(await attr(tid('run-parent'), 'href'), `#/runs/${encodeURIComponent(RUNS.shipped)}`, 'the parent link');
  await runStatusIs(child.status);
});

// --- d. actions ----------------------------------------------------------------------------

await check('d. waiting run: signal "approved" resumes it', async () => {
  const run = await getRun(RUNS.waiting);
  const awaitStep = run.steps.find((s) => s.kind === 'await');
  assert(awaitStep && awaitStep.status === 'waiting', `the run is not parked at an await step: ${awaitStep?.status}`);
  await open(`/runs/${encodeURIComponent(RUNS.waiting)}`);
  await page.waitForSelector(`${tid('step')}[data-step=${q(awaitStep.name)}][data-status="waiting"]`);
  assert((await text(`${tid('step')}[data-step=${q(awaitStep.name)}] ${tid('step-wait')}`)).includes('approved'), 'the wait does not name the signal');
  await page.fill(tid('signal-name'), 'approved');
  await page.fill(tid('signal-data'), '{"ok": true}');
  await page.click(tid('signal-send'));
  await page.waitForSelector(`${tid('action-result')}[data-kind="ok"]`);
  const answer = await text(tid('action-result'));
  assert(answer.startsWith('202') && answer.includes('message'), `the answer: ${answer}`);
  await until(async () => (await getRun(RUNS.waiting)).steps.find((s) => s.name === awaitStep.name).status === 'completed', 15_000, 'the await step never completed (API)');
  await page.waitForSelector(`${tid('step')}[data-step=${q(awaitStep.name)}][data-status="completed"]`, { timeout: 10_000 });
  const final = await until(async () => { const r = await getRun(RUNS.waiting); return TERMINAL.has(r.status) && r; }, 15_000, 'the run never ended (API)');
  await runStatusIs(final.status);
});

await check('d. sleeping run: Cancel cancels it', async () => {
  const run = await getRun(RUNS.sleeping);
  const sleep = run.steps.find((s) => s.kind === 'sleep');
  assert(sleep && sleep.status === 'waiting', `the run is not asleep: ${sleep?.status}`);
  await open(`/runs/${encodeURIComponent(RUNS.sleeping)}`);
  await page.waitForSelector(`${tid('step')}[data-step=${q(sleep.name)}] ${tid('step-wait')}`);
  assert((await text(`${tid('step')}[data-step=${q(sleep.name)}] ${tid('step-wait')}`)).includes('asleep'), 'the sleep is not shown as a wait');
  await page.click(tid('run-cancel'));
  await page.click(tid('run-cancel-confirm'));
  await page.waitForSelector(`${tid('action-result')}[data-kind="ok"]`);
  assert((await text(tid('action-result'))).startsWith('202'), `the answer: ${await text(tid('action-result'))}`);
  await until(async () => (await getRun(RUNS.sleeping)).status === 'cancelled', 15_000, 'the run is not cancelled (API)');
  await runStatusIs('cancelled');
  assert(await page.locator(tid('run-cancel')).isHidden(), 'Cancel is still offered on a cancelled run');
});

await check('d. compensation_failed run: Retry is accepted and the run ends compensated', async () => {
  const run = await getRun(RUNS.compensation_failed);
  equal(run.status, 'compensation_failed', 'the run\'s status before the retry (API)');
  await open(`/runs/${encodeURIComponent(RUNS.compensation_failed)}`);
  await runStatusIs('compensation_failed');
  await page.click(tid('run-retry'));
  await page.waitForSelector(`${tid('action-result')}[data-kind="ok"]`);
  assert((await text(tid('action-result'))).startsWith('202'), `the answer: ${await text(tid('action-result'))}`);
  await page.waitForSelector(`${tid('run-status')}:not([data-status="compensation_failed"])`, { timeout: 10_000 });
  await until(async () => (await getRun(RUNS.compensation_failed)).status === 'compensated', 30_000, 'the run did not become compensated within 30 s (API)');
  await runStatusIs('compensated', 10_000);
});

// --- e. workflows ---------------------------------------------------------------------------

await check('e. workflows: the list shows each workflow\'s current digest; the detail shows the definition', async () => {
  const list = (await api('GET', '/v1/workflows', { admin: true })).data.workflows;
  const w = list.find((x) => x.name === fx.workflow);
  assert(w, `GET /v1/workflows has no ${fx.workflow}`);
  await open('/workflows');
  await page.waitForSelector(tid('workflows-table'));
  for (const item of list) {
    const row = `${tid('workflow-row')}[data-name=${q(item.name)}]`;
    equal(await attr(row, 'data-digest'), item.current || '', `current digest of ${item.name}`);
    equal(await text(`${row} ${tid('workflow-versions')}`), String(item.versions.length), `versions of ${item.name}`);
  }
  equal(await text(`${tid('workflow-row')}[data-name=${q(fx.workflow)}] ${tid('workflow-current')}`), w.current.slice(0, 12), 'the short current digest');
  await page.click(`${tid('workflow-row')}[data-name=${q(fx.workflow)}] ${tid('workflow-link')}`);
  await page.waitForSelector(`${tid('workflow-current')}[data-digest=${q(w.current)}]`);
  const current = w.versions.find((v) => v.current);
  const shown = JSON.parse(await text(`${tid('workflow-version')}[data-digest=${q(w.current)}] ${tid('workflow-definition')}`));
  assert(deepEqual(shown, current.definition), 'the definition shown differs from the API\'s');
  equal(await page.locator(tid('workflow-version')).count(), w.versions.length, 'versions listed');
});

await check('e. workflows: push console_pushed from the form; rolling it back shows the 409 detail', async () => {
  const name = 'console_pushed';
  const before = await api('GET', `/v1/workflows/${name}`, { admin: true, raw: true });
  const fresh = before.status === 404 || (before.status === 200 && !before.data.current);
  await open('/workflows');
  await page.waitForSelector(tid('workflows-table'));
  await page.fill(tid('workflow-push-name'), name);
  await page.fill(tid('workflow-push-definition'), JSON.stringify({ steps: [{ name: 'a', plugin: 'validate_user' }] }, null, 2));
  await page.click(tid('workflow-push-submit'));
  await page.waitForSelector(`${tid('workflow-push-result')}[data-kind="ok"]`);
  const status = await attr(tid('workflow-push-result'), 'data-status');
  if (fresh) equal(status, '201', 'the push\'s status');
  else assert(status === '200' || status === '201', `the push's status: ${status}`);
  const after = (await api('GET', `/v1/workflows/${name}`, { admin: true })).data;
  assert(after.current, 'the API has no current version of console_pushed');
  await page.waitForSelector(`${tid('workflow-row')}[data-name=${q(name)}][data-digest=${q(after.current)}]`);
  await shot('workflows.png');
  await page.click(`${tid('workflow-row')}[data-name=${q(name)}] ${tid('workflow-link')}`);
  await page.waitForSelector(`${tid('workflow-current')}[data-digest=${q(after.current)}]`);
  if (after.versions.length === 1) {
    const problem = await api('POST', `/v1/workflows/${name}/rollback`, { admin: true, raw: true });
    equal(problem.status, 409, 'the API\'s answer to rolling back a single version');
    allow('POST', new RegExp(`/v1/workflows/${name}/rollback$`), 409);
    await page.click(tid('workflow-rollback-previous'));
    await page.waitForSelector(`${tid('workflow-action-result')}[data-kind="error"]`);
    const shown = await text(tid('workflow-action-result'));
    assert(shown.startsWith('409') && shown.includes(problem.data.detail), `the 409 detail is not shown: ${shown}`);
  }
});

// --- f. plugins -------------------------------------------------------------------------------

await check('f. plugins: every plugin with the current digest GET /v1/plugins gives', async () => {
  const list = (await api('GET', '/v1/plugins', { admin: true })).data.plugins;
  const names = list.map((p) => p.name);
  for (const expected of ['validate_user', 'inventory', 'payment', 'order', 'send_confirmation', 'notify']) {
    assert(names.includes(expected), `GET /v1/plugins has no ${expected}`);
  }
  await open('/plugins');
  await page.waitForSelector(tid('plugins-table'));
  equal(await page.locator(tid('plugin-row')).count(), list.length, 'plugins listed');
  for (const p of list) {
    const row = `${tid('plugin-row')}[data-name=${q(p.name)}]`;
    equal(await attr(row, 'data-digest'), p.current?.digest || '', `current digest of ${p.name}`);
    equal(await text(`${row} ${tid('plugin-current')}`), p.current.digest.slice(0, 12), `short digest of ${p.name}`);
    equal(await text(`${row} ${tid('plugin-versions')}`), String(p.versions), `versions of ${p.name}`);
  }
  await shot('plugins.png');
});

await check('f. plugins: payment\'s versions with their pinned runs; uploading the current file answers 200', async () => {
  const detail = (await api('GET', '/v1/plugins/payment', { admin: true })).data;
  await open('/plugins/payment');
  await page.waitForSelector(tid('plugin-versions-table'));
  equal(await attr(tid('plugin-current'), 'data-digest'), detail.current, 'the current digest');
  for (const v of detail.versions) {
    const row = `${tid('plugin-version')}[data-digest=${q(v.digest)}]`;
    equal(await attr(row, 'data-pinned'), String(v.pinned_runs), `pinned runs of ${v.digest.slice(0, 12)}`);
    equal(await attr(row, 'data-current'), String(v.current), `current marker of ${v.digest.slice(0, 12)}`);
    equal(await text(`${row} ${tid('plugin-pinned')}`), String(v.pinned_runs), `pinned runs shown for ${v.digest.slice(0, 12)}`);
  }
  equal(await page.locator(tid('plugin-version')).count(), detail.versions.length, 'versions listed');
  if (fx.payment_wasm && fs.existsSync(fx.payment_wasm)) {
    const sha = createHash('sha256').update(fs.readFileSync(fx.payment_wasm)).digest('hex');
    if (sha === detail.current) {
      await page.setInputFiles(tid('plugin-upload-file'), fx.payment_wasm);
      await page.click(tid('plugin-upload-submit'));
      await page.waitForSelector(`${tid('plugin-upload-result')}[data-kind="ok"]`, { timeout: 30_000 });
      equal(await attr(tid('plugin-upload-result'), 'data-status'), '200', 'the upload\'s status');
      assert((await text(tid('plugin-upload-result'))).includes('known version'), 'the upload does not say "known version"');
      equal((await api('GET', '/v1/plugins/payment', { admin: true })).data.current, detail.current, 'the current payment version after the upload');
    } else {
      console.log('   (upload skipped: fixture.payment_wasm is not the current payment version)');
    }
  }
});

// --- g. events --------------------------------------------------------------------------------

await check('g. events: subscriptions with their backlog; redeliver the dead letter; publish an event', async () => {
  const subs = (await api('GET', '/v1/subscriptions')).data.subscriptions;
  assert(subs.some((s) => s.name === 'notify-customer'), 'GET /v1/subscriptions has no notify-customer');
  await open('/events');
  await page.waitForSelector(tid('subscriptions-table'));
  for (const s of subs) await page.waitForSelector(`${tid('subscription-row')}[data-name=${q(s.name)}]`);
  const backlog = await attr(`${tid('subscription-row')}[data-name="notify-customer"]`, 'data-backlog');
  assert(/^\d+$/.test(backlog || ''), `notify-customer's backlog is not a number: ${backlog}`);
  equal(await text(`${tid('subscription-row')}[data-name="notify-customer"] ${tid('subscription-backlog')}`), backlog, 'the backlog shown');

  const row = `${tid('dead-letter-row')}[data-id=${q(fx.dead_letter)}]`;
  await page.waitForSelector(row);
  equal(await attr(row, 'data-subscription'), 'notify-customer', 'the dead letter\'s subscription');
  await page.click(`${row} ${tid('dead-letter-event')} summary`);
  const event = JSON.parse(await text(`${row} ${tid('dead-letter-event')} pre`));
  assert(event.type && event.id, 'the dead letter\'s event is not shown');
  await page.click(`${row} ${tid('dead-letter-redeliver')}`);
  await page.waitForSelector(`${tid('dead-letters-result')}[data-kind="ok"]`);
  equal(await attr(tid('dead-letters-result'), 'data-status'), '202', 'the redeliver\'s status');
  await page.waitForSelector(row, { state: 'detached' });
  await until(async () => {
    let cursor = '';
    for (let i = 0; i < 50; i += 1) {
      const pageOf = (await api('GET', `/v1/dead-letters?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).data;
      if (pageOf.dead_letters.some((d) => d.id === fx.dead_letter)) return false;
      if (!pageOf.next_cursor) return true;
      cursor = pageOf.next_cursor;
    }
    return true;
  }, 10_000, 'the dead letter is still listed by GET /v1/dead-letters');

  await page.fill(tid('publish-topic'), 'console.test');
  await page.fill(tid('publish-data'), JSON.stringify({ from: 'console', at: Date.now() }));
  await page.click(tid('publish-submit'));
  await page.waitForSelector(tid('publish-event-id'));
  equal(await attr(tid('publish-result'), 'data-status'), '202', 'the publish\'s status');
  assert(/^[0-9A-HJKMNP-TV-Z]{26}$/.test(await text(tid('publish-event-id'))), `the event id is not a ULID: ${await text(tid('publish-event-id'))}`);
  await shot('events.png');
});

// --- start a run from the form (traffic for the dashboard) ---------------------------------------

await check('b. runs: the Start run form starts a run and opens it', async () => {
  await open(`/runs?start=${encodeURIComponent(fx.workflow)}`);
  await page.waitForSelector(`${tid('start-panel')}:not(.hidden)`);
  equal(await page.inputValue(tid('start-workflow')), fx.workflow, 'the prefilled workflow');
  await page.fill(tid('start-input'), '{ not json');
  await page.click(tid('start-submit'));
  await page.waitForSelector(`${tid('start-result')}[data-kind="error"]`);
  assert((await text(tid('start-result'))).includes('not valid JSON'), 'invalid JSON is not refused before sending');
  const input = JSON.parse(JSON.stringify(apiRuns.completed.input));
  input.order_id = `${fx.completed_order_id}-console-${Date.now()}`;
  await page.fill(tid('start-input'), JSON.stringify(input, null, 2));
  await page.fill(tid('start-key'), `console-${Date.now()}`);
  await page.click(tid('start-submit'));
  await page.waitForFunction(() => /^#\/runs\/[^/?]+$/.test(location.hash));
  const id = decodeURIComponent((await page.evaluate(() => location.hash)).slice('#/runs/'.length));
  const run = await getRun(id);
  equal(run.workflow, fx.workflow, 'the started run\'s workflow');
  equal(run.input.order_id, input.order_id, 'the started run\'s input');
  await until(async () => TERMINAL.has((await getRun(id)).status), 20_000, 'the started run never ended');
  await runStatusIs((await getRun(id)).status);
});

// --- h. dashboard -------------------------------------------------------------------------------

await check('h. dashboard: runs/s by status, failure rate, step and outbox-lag quantiles, gauges', async () => {
  const metrics = await fetch(`${BASE}/metrics`);
  if (metrics.status === 404) {
    allow('GET', /\/metrics$/, 404);
    await open('/dashboard');
    await page.waitForSelector(tid('dash-metrics-off'));
    return;
  }
  await open('/dashboard');
  const scrapes = () => page.evaluate(() => Number(document.querySelector('[data-testid="page"]')?.dataset.scrapes || 0));
  await until(async () => (await scrapes()) >= 1, 5_000, 'the dashboard never scraped /metrics');
  // traffic while it watches: one order that completes, one declined (compensated)
  const order = (suffix, amount) => ({ ...apiRuns.completed.input, order_id: `${fx.completed_order_id}-dash-${suffix}-${Date.now()}`, total_amount: amount });
  const ended = await Promise.all([
    api('POST', `/v1/workflows/${encodeURIComponent(fx.workflow)}/runs?wait=30s`, { body: order('ok', 20) }),
    api('POST', `/v1/workflows/${encodeURIComponent(fx.workflow)}/runs?wait=30s`, { body: order('declined', 5000) }),
  ]);
  equal(ended.map((r) => r.data.status).sort().join(','), 'compensated,completed', 'the statuses of the dashboard\'s runs (API)');
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="dash-ended-rate"]')?.dataset.value || 0) > 0, null, { timeout: 8_000 });
  equal(await attr(tid('dash-failure-basis'), 'data-basis'), 'window', 'what the failure rate is over');
  const windowed = Number(await attr(tid('dash-failure-rate'), 'data-value'));
  assert(windowed > 0 && windowed < 1, `the failure rate over a window with one completed and one compensated run: ${windowed}`);
  await until(async () => (await scrapes()) >= 4, 8_000, 'the dashboard stopped scraping');
  const value = async (id) => {
    const raw = await attr(tid(id), 'data-value');
    assert(raw !== null && raw !== '' && Number.isFinite(Number(raw)), `${id} shows no number (${raw}): ${await text(tid(id))}`);
    return Number(raw);
  };
  const startedRate = await value('dash-started-rate');
  assert(startedRate >= 0, 'negative started/s');
  const statuses = await page.$$eval(tid('dash-rate'), (rows) => rows.map((r) => ({ status: r.dataset.status, value: r.dataset.value })));
  assert(statuses.some((s) => s.status === 'completed'), `no rate for completed runs: ${JSON.stringify(statuses)}`);
  assert(statuses.every((s) => s.value !== '' && Number(s.value) >= 0), `a status without a rate: ${JSON.stringify(statuses)}`);
  const failure = await value('dash-failure-rate');
  assert(failure >= 0 && failure <= 1, `failure rate out of range: ${failure}`);
  assert(/%$/.test(await text(tid('dash-failure-rate'))), 'the failure rate is not shown as a %');
  const p50 = await value('dash-step-p50');
  const p99 = await value('dash-step-p99');
  assert(p50 >= 0 && p50 <= p99, `step p50 ${p50} > p99 ${p99}`);
  assert(['interval', 'cumulative'].includes(await attr(tid('dash-step-basis'), 'data-basis')), 'the step quantiles do not say what they are over');
  const lag50 = await value('dash-lag-p50');
  const lag99 = await value('dash-lag-p99');
  assert(lag50 <= lag99, `lag p50 ${lag50} > p99 ${lag99}`);
  for (const id of ['dash-outbox-depth', 'dash-in-flight', 'dash-queued', 'dash-sleeping', 'dash-waiting']) assert((await value(id)) >= 0, `${id} negative`);
  // the parser against the host's own exposition
  const { parse, sumBy } = await import(pathToFileURL(path.join(here, '..', '..', 'host', 'console', 'metrics.js')).href);
  const scrape = parse(await (await fetch(`${BASE}/metrics`)).text());
  equal(scrape.errors.length, 0, 'unreadable lines in /metrics');
  const completed = sumBy(scrape, 'flowhost_runs_ended_total', 'status').get('completed') || 0;
  const shownTotal = Number(await page.$eval(`${tid('dash-rate')}[data-status="completed"] td:last-child`, (td) => td.textContent));
  assert(shownTotal <= completed && shownTotal > 0, `completed runs: the page shows ${shownTotal}, /metrics ${completed}`);
  await shot('dashboard.png');
});

await check('i. nodes: this node, its lease live, with the runs it owns', async () => {
  const listed = (await api('GET', '/v1/nodes')).data;
  equal(listed.nodes.length, 1, 'nodes on the embedded store');
  const me = listed.nodes[0];
  equal(me.id, listed.this, 'the one node is the one that answered');
  await open('/nodes');
  const row = `${tid('node-row')}[data-id=${q(me.id)}]`;
  await page.waitForSelector(row);
  equal(await attr(row, 'data-live'), 'true', 'its lease');
  equal(await attr(row, 'data-this'), 'true', 'marked as this node');
  equal(await text(`${row} ${tid('node-lease')}`), 'live', 'the lease shown');
  equal(await text(`${row} ${tid('node-runs')}`), await attr(row, 'data-runs'), 'the runs shown');
  assert(/^\d+$/.test(await attr(row, 'data-runs')), 'runs owned is a count');
});

await check('metrics.js: label values with escapes and braces, histogram_quantile', async () => {
  const { parse, histogram, quantile, samples } = await import(pathToFileURL(path.join(here, '..', '..', 'host', 'console', 'metrics.js')).href);
  const scrape = parse([
    '# HELP t_seconds A histogram.',
    '# TYPE t_seconds histogram',
    't_seconds_bucket{a="x{y}=\\"z\\",w",le="0.1"} 10',
    't_seconds_bucket{a="x{y}=\\"z\\",w",le="1"} 20',
    't_seconds_bucket{a="x{y}=\\"z\\",w",le="+Inf"} 20',
    't_seconds_sum{a="x{y}=\\"z\\",w"} 5',
    't_seconds_count{a="x{y}=\\"z\\",w"} 20',
    't_seconds_bucket{a="b\\\\n\\n",le="0.1"} 0',
    't_seconds_bucket{a="b\\\\n\\n",le="1"} 0',
    't_seconds_bucket{a="b\\\\n\\n",le="+Inf"} 10',
    '# TYPE g gauge',
    'g 3 1700000000000',
  ].join('\n'));
  const labels = samples(scrape, 't_seconds_bucket').map((s) => s.labels.a);
  equal(labels[0], 'x{y}="z",w', 'a label value with braces, quotes and a comma');
  equal(labels[3], 'b\\n\n', 'a label value with escapes');
  equal(scrape.families.get('t_seconds').samples.length, 8, 'samples of the histogram family');
  const hist = histogram(scrape, 't_seconds');
  equal(hist.count, 20, 'count summed over series');
  // 30 observations: 10 <= 0.1, 10 in (0.1, 1], 10 above 1: p50 at rank 15 -> 0.1 + 0.9 * 5/10
  equal(quantile(0.5, hist.buckets).toFixed(3), '0.550', 'p50');
  equal(quantile(0.99, hist.buckets), 1, 'p99 in the +Inf bucket is the highest finite bound');
  equal(quantile(0.25, hist.buckets).toFixed(4), '0.0750', 'p25 within the first bucket');
});

await finish();

async function finish() {
  clearTimeout(watchdog);
  try {
    await browser.close();
  } catch {
    // gone already
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (aborted) console.log(`   (${aborted} requests cut short by navigations, net::ERR_ABORTED: not failures)`);
  if (failures.length) {
    for (const f of failures) console.log(`FAIL ${f}`);
    console.log(`console: ${passed} checks passed, ${failures.length} failed (${seconds} s)`);
    process.exit(1);
  }
  console.log(`console: ${passed} checks passed (${seconds} s)`);
  process.exit(0);
}
