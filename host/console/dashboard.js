// #/dashboard: scrapes GET /metrics every 2 s and computes, from successive scrapes, runs
// per second (started, and ended by status), the failure rate, step attempt duration and
// outbox lag quantiles (as histogram_quantile), the outbox depth and the run gauges; each with
// a sparkline of the last 60 points, drawn as inline SVG.

import * as api from './api.js';
import { h, fill, chip, message, header, button, poller, thead } from './ui.js';
import { parse, sum, sumBy, histogram, histogramDelta, quantile, increase } from './metrics.js';

const POINTS = 60;
const INTERVAL = 2000;

/** `0.42/s`. */
const rate = (v) => (v === null || Number.isNaN(v) ? '—' : `${v < 10 ? v.toFixed(2) : v.toFixed(1)}/s`);
/** `1.2 ms`, `0.85 s`. */
function seconds(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  if (v < 0.001) return `${(v * 1e6).toFixed(0)} µs`;
  if (v < 0.01) return `${(v * 1000).toFixed(2)} ms`;
  if (v < 0.1) return `${(v * 1000).toFixed(1)} ms`;
  if (v < 1) return `${(v * 1000).toFixed(0)} ms`;
  return `${v.toFixed(v < 10 ? 2 : 1)} s`;
}
const percent = (v) => (v === null || Number.isNaN(v) ? '—' : `${(v * 100).toFixed(1)}%`);

/** A sparkline of `values` (NaN and null are gaps). */
export function sparkline(values, { cls = '', min = 0 } = {}) {
  const w = 120;
  const hgt = 32;
  const svg = h('svg:svg', { class: ['spark', cls], viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' });
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  if (!finite.length) return svg;
  const max = Math.max(...finite, min + 1e-9);
  const lo = Math.min(min, ...finite);
  const step = w / (Math.max(values.length, 15) - 1);
  const offset = w - step * (values.length - 1);
  const pts = [];
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) return;
    const x = offset + i * step;
    const y = hgt - 2 - ((v - lo) / (max - lo || 1)) * (hgt - 4);
    pts.push([x, y]);
  });
  if (pts.length === 1) pts.unshift([Math.max(0, pts[0][0] - 2), pts[0][1]]);
  const line = pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
  svg.appendChild(h('svg:polygon', { class: 'spark-area', points: `${pts[0][0].toFixed(1)},${hgt} ${line} ${pts[pts.length - 1][0].toFixed(1)},${hgt}` }));
  svg.appendChild(h('svg:polyline', { class: 'spark-line', points: line }));
  return svg;
}

/** The numbers of one scrape the dashboard keeps. */
function summarize(scrape, t) {
  return {
    t,
    started: sum(scrape, 'flowhost_runs_started_total') ?? 0,
    ended: sumBy(scrape, 'flowhost_runs_ended_total', 'status'),
    step: histogram(scrape, 'flowhost_step_attempt_duration_seconds'),
    lag: histogram(scrape, 'flowhost_relay_lag_seconds'),
    depth: sum(scrape, 'flowhost_outbox_depth'),
    inFlight: sum(scrape, 'flowhost_runs_in_flight'),
    queued: sum(scrape, 'flowhost_runs_queued'),
    sleeping: sum(scrape, 'flowhost_runs_sleeping'),
    waiting: sum(scrape, 'flowhost_runs_waiting'),
    families: scrape.families.size,
    errors: scrape.errors.length,
  };
}

const total = (map) => [...map.values()].reduce((a, b) => a + b, 0);
const failed = (map) => [...map.entries()].filter(([s]) => s !== 'completed').reduce((a, [, v]) => a + v, 0);

/**
 * Quantiles of a histogram: over what was observed between the two scrapes when something
 * was, else over every observation so far.
 */
export function quantiles(current, previous) {
  if (!current) return { p50: NaN, p99: NaN, basis: 'none', count: 0 };
  const delta = histogramDelta(current, previous);
  const useDelta = previous && delta && delta.count > 0 && delta !== current;
  const h2 = useDelta ? delta : current;
  return {
    p50: quantile(0.5, h2.buckets),
    p99: quantile(0.99, h2.buckets),
    basis: useDelta ? 'interval' : 'cumulative',
    count: h2.count,
  };
}

// What the dashboard has seen, kept while the console is open so that leaving the page and
// coming back keeps the charts (forgotten after a gap of more than 30 s).
const memory = { kept: [], series: null };

function freshSeries() {
  return { started: [], ended: [], failure: [], stepP99: [], lagP99: [], depth: [], inFlight: [], queued: [], sleeping: [], waiting: [] };
}

export function render(root) {
  let disposed = false;
  let off = false;
  let scrapes = 0; // during this visit
  const last = memory.kept[memory.kept.length - 1];
  if (!memory.series || !last || Date.now() - last.t > 30_000) {
    memory.kept = [];
    memory.series = freshSeries();
  }
  const kept = memory.kept; // summaries, oldest first, at most POINTS
  const series = memory.series;
  const msg = message('dash-error');
  const updated = h('span', { class: 'muted small', testid: 'dash-updated' }, 'waiting for the first scrape…');
  const grid = h('div', { class: 'dash-grid', testid: 'dashboard' });
  const statusTable = h('div', { testid: 'dash-status-host' });

  function tile(title, testid, value, sub, spark, raw) {
    return h('div', { class: 'tile', testid: `${testid}-tile` },
      h('div', { class: 'tile-title' }, title),
      h('div', { class: 'tile-value', testid, dataset: { value: raw === undefined || raw === null || Number.isNaN(raw) ? '' : String(raw) } }, value),
      h('div', { class: 'tile-sub' }, sub),
      spark);
  }

  function basisText(q, interval) {
    if (q.basis === 'interval') return `over ${q.count} new in the last ${interval}`;
    if (q.basis === 'cumulative') return `none new: over all ${q.count} so far`;
    return 'not observed yet';
  }

  function push(name, value) {
    series[name].push(value);
    if (series[name].length > POINTS) series[name].shift();
  }

  function draw() {
    const cur = kept[kept.length - 1];
    const prev = kept.length > 1 ? kept[kept.length - 2] : null;
    const first = kept[0];
    const dt = prev ? (cur.t - prev.t) / 1000 : NaN;
    const interval = prev ? `${dt.toFixed(1)} s` : '';

    // rates over the last interval
    const startedRate = prev ? increase(cur.started, prev.started) / dt : NaN;
    const statuses = new Set([...cur.ended.keys(), ...(prev ? prev.ended.keys() : [])]);
    const byStatus = [...statuses].sort().map((s) => ({
      status: s,
      rate: prev ? increase(cur.ended.get(s) ?? 0, prev.ended.get(s) ?? 0) / dt : NaN,
      total: cur.ended.get(s) ?? 0,
    }));
    const endedRate = prev ? byStatus.reduce((a, b) => a + b.rate, 0) : NaN;

    // failure rate over the window kept (up to 2 minutes); else since the host started
    let failure = NaN;
    let failureBasis = 'no run ended yet';
    let failureKind = 'none';
    const windowEnded = first !== cur ? total(cur.ended) - total(first.ended) : 0;
    if (first !== cur && windowEnded > 0 && total(cur.ended) >= total(first.ended)) {
      failure = (failed(cur.ended) - failed(first.ended)) / windowEnded;
      failureBasis = `of ${windowEnded} ended in the last ${Math.round((cur.t - first.t) / 1000)} s`;
      failureKind = 'window';
    } else if (total(cur.ended) > 0) {
      failure = failed(cur.ended) / total(cur.ended);
      failureBasis = `none ended lately: of all ${total(cur.ended)} since start`;
      failureKind = 'cumulative';
    }

    const step = quantiles(cur.step, prev?.step);
    const lag = quantiles(cur.lag, prev?.lag);

    push('started', startedRate);
    push('ended', endedRate);
    push('failure', failure);
    push('stepP99', step.p99);
    push('lagP99', lag.p99);
    push('depth', cur.depth);
    push('inFlight', cur.inFlight);
    push('queued', cur.queued);
    push('sleeping', cur.sleeping);
    push('waiting', cur.waiting);

    fill(grid,
      tile('Runs started', 'dash-started-rate', rate(startedRate), prev ? `${cur.started} in all` : 'after the next scrape', sparkline(series.started), startedRate),
      tile('Runs ended', 'dash-ended-rate', rate(endedRate), prev ? `${total(cur.ended)} in all` : 'after the next scrape', sparkline(series.ended), endedRate),
      tile('Failure rate', 'dash-failure-rate', percent(failure), h('span', { testid: 'dash-failure-basis', dataset: { basis: failureKind } }, failureBasis), sparkline(series.failure, { cls: 'spark-bad' }), failure),
      tile('Step attempt p50 / p99', 'dash-step', h('span', null, h('span', { testid: 'dash-step-p50', dataset: { value: Number.isNaN(step.p50) ? '' : String(step.p50) } }, seconds(step.p50)), h('span', { class: 'slash' }, ' / '), h('span', { testid: 'dash-step-p99', dataset: { value: Number.isNaN(step.p99) ? '' : String(step.p99) } }, seconds(step.p99))),
        h('span', { testid: 'dash-step-basis', dataset: { basis: step.basis } }, basisText(step, interval)), sparkline(series.stepP99), step.p99),
      tile('Outbox lag p50 / p99', 'dash-lag', h('span', null, h('span', { testid: 'dash-lag-p50', dataset: { value: Number.isNaN(lag.p50) ? '' : String(lag.p50) } }, seconds(lag.p50)), h('span', { class: 'slash' }, ' / '), h('span', { testid: 'dash-lag-p99', dataset: { value: Number.isNaN(lag.p99) ? '' : String(lag.p99) } }, seconds(lag.p99))),
        h('span', { testid: 'dash-lag-basis', dataset: { basis: lag.basis } }, basisText(lag, interval)), sparkline(series.lagP99), lag.p99),
      tile('Outbox depth', 'dash-outbox-depth', cur.depth === null ? '—' : String(cur.depth), 'events not relayed yet', sparkline(series.depth), cur.depth),
      tile('In flight', 'dash-in-flight', String(cur.inFlight ?? '—'), 'runs driven now', sparkline(series.inFlight), cur.inFlight),
      tile('Queued', 'dash-queued', String(cur.queued ?? '—'), 'waiting for a slot', sparkline(series.queued), cur.queued),
      tile('Sleeping', 'dash-sleeping', String(cur.sleeping ?? '—'), 'waiting for a time', sparkline(series.sleeping), cur.sleeping),
      tile('Waiting', 'dash-waiting', String(cur.waiting ?? '—'), 'at an await or on a child', sparkline(series.waiting), cur.waiting));

    fill(statusTable, byStatus.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'grid compact', testid: 'dash-status-table' },
        thead(['Ended as', ['Per second', 'num'], ['Total', 'num']]),
        h('tbody', null, byStatus.map((s) => h('tr', { testid: 'dash-rate', dataset: { status: s.status, value: Number.isNaN(s.rate) ? '' : String(s.rate) } },
          h('td', null, chip(s.status)),
          h('td', { class: 'num', testid: 'dash-rate-value' }, rate(s.rate)),
          h('td', { class: 'num' }, String(s.total)))))))
      : h('div', { class: 'state state-empty', testid: 'dash-status-empty' }, 'No run has ended since the host started'));

    updated.textContent = `scraped ${new Date(cur.t).toLocaleTimeString()}${prev ? ` · interval ${dt.toFixed(2)} s` : ''} · ${cur.families} families${cur.errors ? ` · ${cur.errors} unreadable lines` : ''}`;
  }

  async function scrape() {
    if (off) return;
    try {
      const { text } = await api.metrics();
      if (disposed) return;
      const summary = summarize(parse(text), Date.now());
      kept.push(summary);
      if (kept.length > POINTS) kept.shift();
      msg.clear();
      draw();
      scrapes += 1;
      root.dataset.scrapes = String(scrapes);
    } catch (error) {
      if (disposed) return;
      if (error.status === 404) {
        off = true;
        fill(grid, h('div', { class: 'state state-warn', testid: 'dash-metrics-off' },
          'Metrics are off on this host (GET /metrics answered 404): set telemetry.metrics = true to see this dashboard.'));
        return;
      }
      msg.error(error);
    }
  }

  fill(root,
    header('Dashboard', updated, button('Reset', { testid: 'dash-reset', title: 'Forget the points kept', onclick: () => { kept.length = 0; for (const k of Object.keys(series)) series[k].length = 0; scrape(); } }, 'ghost')),
    msg,
    grid,
    h('section', { class: 'card' }, h('header', { class: 'card-head' }, h('h2', null, 'Runs ended, by status'), h('span', { class: 'muted small' }, 'rates over the last scrape interval')), h('div', { class: 'card-body' }, statusTable)));
  scrape();
  const poll = poller(scrape, INTERVAL);
  return {
    cleanup() {
      disposed = true;
      poll.stop();
      delete root.dataset.scrapes;
    },
  };
}
