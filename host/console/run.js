// #/runs/<id>: one run. Its header (workflow, version, pins, parent, times, error), the
// actions its status allows (cancel, retry, signal), and three tabs: a timeline of its steps
// (parallel branches side by side, waits, child runs, compensation, a bar per step on the
// run's time axis, each step's attempts and the context after it), the raw journal, and its
// input and context. Polled every 2 s until it ends.

import * as api from './api.js';
import {
  h, fill, chip, when, message, loading, failure, button, poller, parseJson, runLink,
  json, duration, absolute, relative, copyButton, TERMINAL, plural, icon, thead,
} from './ui.js';


const ms = (iso) => (iso ? Date.parse(iso) : NaN);

/**
 * The context after the step at `index` of `run.steps`: the run's input merged with the
 * output of every step up to and including it that has no branch (later keys win): the
 * server's own rule.
 */
export function contextAfter(run, index) {
  const context = Object.assign({}, run.input || {});
  run.steps.slice(0, index + 1).forEach((step) => {
    if (!step.branch && step.output && typeof step.output === 'object') Object.assign(context, step.output);
  });
  return context;
}

/** Top-level steps in order; a parallel step carries its branches (name -> steps, in order). */
export function groupSteps(steps) {
  const groups = [];
  steps.forEach((step, index) => {
    if (step.branch && groups.length) {
      const owner = groups[groups.length - 1];
      if (!owner.branches) owner.branches = new Map();
      if (!owner.branches.has(step.branch)) owner.branches.set(step.branch, []);
      owner.branches.get(step.branch).push({ step, index });
    } else {
      groups.push({ step, index, branches: step.kind === 'parallel' ? new Map() : null });
    }
  });
  return groups;
}

export function render(root, { params }) {
  const id = params[0];
  let run = null;
  let journal = null;
  let journalError = null;
  let disposed = false;
  let seq = 0;
  let tab = 'timeline';
  let watchUntil = 0;
  let lastKey = '';
  let lastRender = 0;
  let missing = false;
  const expanded = new Set();

  const head = h('div', { class: 'run-head', testid: 'run-head' });
  const body = h('div', { class: 'run-body' });

  // --- actions -------------------------------------------------------------------------
  const actionMsg = message('action-result');
  const cancelBtn = button('Cancel run', { testid: 'run-cancel', onclick: () => confirmRow.classList.remove('hidden') }, 'danger');
  const confirmRow = h('span', { class: 'confirm hidden', testid: 'run-cancel-confirm-row' },
    'Cancel this run? Completed steps are compensated. ',
    button('Yes, cancel it', { testid: 'run-cancel-confirm', onclick: () => { confirmRow.classList.add('hidden'); act('cancel'); } }, 'danger'),
    button('No', { testid: 'run-cancel-abort', onclick: () => confirmRow.classList.add('hidden') }, 'ghost'));
  const retryBtn = button('Retry compensation', { testid: 'run-retry', onclick: () => act('retry'), title: 'Drive the compensation again, attempts granted anew' }, 'primary');
  const signalName = h('input', { type: 'text', testid: 'signal-name', placeholder: 'signal name', class: 'mono narrow', autocomplete: 'off', spellcheck: 'false' });
  signalName.addEventListener('input', () => { signalName.dataset.touched = '1'; });
  const signalData = h('textarea', { testid: 'signal-data', rows: 2, class: 'code', placeholder: 'JSON data (empty: null)', spellcheck: 'false' });
  const signalSend = button('Send signal', { testid: 'signal-send', type: 'submit' });
  const signalForm = h('form', { class: 'signal-form', testid: 'signal-form', onsubmit: (e) => { e.preventDefault(); act('signal'); } },
    h('span', { class: 'field-label' }, 'Signal'), signalName, signalData, signalSend);
  const actions = h('div', { class: 'actions', testid: 'run-actions' }, cancelBtn, confirmRow, retryBtn, signalForm);
  const actionsBar = h('div', { class: 'actions-bar' }, actions, actionMsg);

  async function act(kind) {
    actionMsg.clear();
    let promise;
    if (kind === 'cancel') promise = api.cancelRun(id);
    else if (kind === 'retry') promise = api.retryRun(id);
    else {
      const name = signalName.value.trim();
      if (!name) {
        actionMsg.show('error', 'Name the signal');
        return;
      }
      const text = signalData.value.trim();
      if (text) {
        const parsed = parseJson(text, 'The signal data');
        if (!parsed.ok) {
          actionMsg.show('error', parsed.error);
          return;
        }
      }
      promise = api.signalRun(id, name, text);
    }
    for (const b of [cancelBtn, retryBtn, signalSend]) b.disabled = true;
    try {
      const { status, data } = await promise;
      const verb = status === 202 ? 'Accepted' : 'OK';
      if (kind === 'signal') actionMsg.show('ok', `${status} ${verb}: signal ${data.signal} is in the run's inbox as message ${data.message_id}`);
      else if (kind === 'cancel') actionMsg.show('ok', `${status} ${verb}: the cancel is durable; the run is ${data.status}`);
      else actionMsg.show('ok', `${status} ${verb}: the compensation is driven again; the run is ${data.status}`);
      if (data && data.steps) applyRun(data);
    } catch (error) {
      actionMsg.error(error);
    } finally {
      for (const b of [cancelBtn, retryBtn, signalSend]) b.disabled = false;
      watchUntil = Date.now() + 15_000;
      load(true);
    }
  }

  function updateActions() {
    const s = run.status;
    const live = s === 'pending' || s === 'running';
    cancelBtn.classList.toggle('hidden', !live);
    if (!live) confirmRow.classList.add('hidden');
    retryBtn.classList.toggle('hidden', !(s === 'failed' || s === 'compensation_failed'));
    signalForm.classList.toggle('hidden', !live);
    actions.classList.toggle('hidden', !live && !(s === 'failed' || s === 'compensation_failed'));
    const awaiting = run.steps.find((st) => st.kind === 'await' && st.status === 'waiting' && /^signal /.test(st.target || ''));
    if (awaiting && !signalName.dataset.touched && !signalName.value) signalName.value = awaiting.target.slice(7);
  }

  // --- tabs ----------------------------------------------------------------------------
  const tabButtons = new Map();
  const tabs = h('div', { class: 'tabs', role: 'tablist' }, [['timeline', 'Timeline'], ['journal', 'Journal'], ['context', 'Input & context']].map(([key, label]) => {
    const b = h('button', { type: 'button', role: 'tab', class: 'tab', testid: `tab-${key}`, onclick: () => { tab = key; renderBody(); } }, label);
    tabButtons.set(key, b);
    return b;
  }));

  // --- header --------------------------------------------------------------------------
  function renderHead() {
    const created = ms(run.created_at);
    const end = run.ended_at ? ms(run.ended_at) : Date.now();
    const meta = [
      ['Workflow', h('a', { href: `#/workflows/${encodeURIComponent(run.workflow)}`, testid: 'run-workflow' }, run.workflow)],
      ['Version', run.workflow_version
        ? h('a', { href: `#/workflows/${encodeURIComponent(run.workflow)}`, testid: 'run-version', title: `definition ${run.workflow_version}`, dataset: { digest: run.workflow_version }, class: 'mono' }, run.workflow_version.slice(0, 12))
        : h('span', { class: 'muted', testid: 'run-version' }, 'unknown')],
      ['Created', when(run.created_at, 'run-created')],
      ['Updated', when(run.updated_at, 'run-updated')],
      ['Ended', when(run.ended_at, 'run-ended')],
      ['Duration', h('span', { testid: 'run-duration' }, `${duration(end - created)}${run.ended_at ? '' : ' so far'}`)],
    ];
    if (run.parent) meta.push(['Parent', runLink(run.parent, { testid: 'run-parent' })]);
    if (run.trace_id) meta.push(['Trace', h('span', { class: 'mono', testid: 'run-trace' }, run.trace_id)]);
    const pins = Object.entries(run.plugins || {});
    fill(head,
      h('div', { class: 'run-title' },
        h('h1', { testid: 'page-title' }, h('span', { class: 'muted' }, 'Run '), h('span', { class: 'mono', testid: 'run-id' }, run.id)),
        copyButton(run.id),
        chip(run.status, 'run-status')),
      h('dl', { class: 'meta' }, meta.map(([k, v]) => h('div', { class: 'meta-item' }, h('dt', null, k), h('dd', null, v)))),
      h('div', { class: 'pins', testid: 'run-plugins' },
        h('span', { class: 'field-label' }, 'Pinned plugins'),
        pins.length ? pins.map(([name, d]) => h('a', { href: `#/plugins/${encodeURIComponent(name)}`, class: 'pin', testid: 'run-plugin', dataset: { plugin: name, digest: d }, title: `${name} ${d}` },
          h('span', null, name), h('span', { class: 'mono' }, d.slice(0, 12)))) : h('span', { class: 'muted' }, 'none')),
      run.error ? h('div', { class: 'run-error', testid: 'run-error' },
        h('span', { class: 'err-label' }, run.status === 'compensation_failed' ? 'Compensation failed' : 'Error'),
        run.error.step ? h('span', { class: 'mono' }, run.error.step) : null,
        h('span', { class: 'err-text' }, run.error.message)) : null,
      actionsBar);
    updateActions();
  }

  // --- timeline ------------------------------------------------------------------------
  function axis() {
    const t0 = ms(run.created_at);
    let t1 = run.ended_at ? ms(run.ended_at) : Date.now();
    for (const s of run.steps) if (s.ended_at) t1 = Math.max(t1, ms(s.ended_at));
    return { t0, t1: Math.max(t1, t0 + 1) };
  }

  function bar(step, { t0, t1 }) {
    const svg = h('svg:svg', { class: 'bar', viewBox: '0 0 1000 10', preserveAspectRatio: 'none', 'aria-hidden': 'true' });
    svg.appendChild(h('svg:rect', { class: 'bar-track', x: 0, y: 4, width: 1000, height: 2 }));
    const start = ms(step.started_at);
    if (!Number.isNaN(start)) {
      const end = step.ended_at ? ms(step.ended_at) : Date.now();
      const x = Math.max(0, Math.min(1000, ((start - t0) / (t1 - t0)) * 1000));
      const x0 = Math.min(x, 996);
      const w = Math.max(4, Math.min(1000 - x0, ((end - start) / (t1 - t0)) * 1000));
      svg.appendChild(h('svg:rect', { class: ['bar-fill', `bar-${step.status}`], x: x0.toFixed(1), y: 1, width: w.toFixed(1), height: 8, rx: 2 }));
    }
    return svg;
  }

  function waitLine(step) {
    if (step.status !== 'waiting' && step.status !== 'running') return null;
    const line = (name, ...text) => h('div', { class: 'wait', testid: 'step-wait' }, icon(name, 'wait-icon'), h('span', null, text));
    if (step.kind === 'sleep' && step.status === 'waiting') {
      return line('sleep', 'asleep', step.due_at ? [' until ', when(step.due_at)] : null);
    }
    if (step.kind === 'await' && step.status === 'waiting') {
      const what = step.target || 'a message';
      return line('await', 'waiting for ', h('b', null, what), step.due_at ? [', times out at ', when(step.due_at)] : null);
    }
    if (step.kind === 'workflow' && step.child) {
      return line('workflow', 'waiting for its child run to end');
    }
    if (step.status === 'waiting') {
      return line('sleep', 'waiting out a retry backoff', step.due_at ? [' until ', when(step.due_at)] : null);
    }
    return null;
  }

  function attemptsOf(name) {
    return (journal?.attempts || []).filter((a) => a.step === name);
  }

  function attemptsTable(list, { withStep = false } = {}) {
    const cols = [withStep ? 'Step' : null, withStep ? 'Branch' : null, 'Direction', ['#', 'num'], 'Started', ['Took', 'num'], 'Outcome', 'Error / note', 'Output'].filter(Boolean);
    return h('div', { class: 'table-wrap' }, h('table', { class: 'grid attempts', testid: withStep ? 'journal-table' : 'step-attempts' },
      thead(cols),
      h('tbody', null, list.map((a) => {
        const notes = [];
        if (a.error) notes.push(h('span', { class: 'err-text', testid: 'attempt-error' }, a.error));
        if (a.due_ms) notes.push(h('span', { class: 'note' }, `due ${absolute(a.due_ms)} (${relative(a.due_ms)})`));
        if (a.message) notes.push(h('span', { class: 'note' }, 'message ', h('span', { class: 'mono' }, a.message)));
        if (a.child) notes.push(h('span', { class: 'note' }, 'child ', runLink(a.child)));
        return h('tr', { testid: withStep ? 'journal-row' : 'attempt-row', dataset: { step: a.step, direction: a.direction, attempt: a.attempt, outcome: a.outcome, branch: a.branch } },
          withStep ? h('td', { class: 'mono' }, a.step) : null,
          withStep ? h('td', { class: 'mono muted' }, a.branch || '') : null,
          h('td', null, h('span', { class: ['dir', `dir-${a.direction}`] }, a.direction)),
          h('td', { class: 'num' }, a.attempt),
          h('td', { title: new Date(a.started_ms).toISOString() }, absolute(a.started_ms, { ms: true })),
          h('td', { class: 'num' }, duration(a.ended_ms - a.started_ms)),
          h('td', null, h('span', { class: ['chip', `chip-out-${a.outcome}`] }, a.outcome)),
          h('td', { class: 'notes' }, notes),
          h('td', null, a.output ? h('details', { class: 'inline-json' }, h('summary', null, plural(Object.keys(a.output).length, 'key')), json(a.output)) : null));
      }))));
  }

  function stepCard(step, index, t) {
    const open = expanded.has(step.name);
    const toggle = h('button', {
      type: 'button', class: 'step-toggle', testid: 'step-toggle', 'aria-expanded': String(open), title: open ? 'Hide attempts and context' : 'Show attempts and context',
      onclick: () => {
        if (expanded.has(step.name)) expanded.delete(step.name);
        else expanded.add(step.name);
        renderBody();
      },
    }, open ? '▾' : '▸');
    const started = ms(step.started_at);
    const took = !Number.isNaN(started) ? (step.ended_at ? ms(step.ended_at) : Date.now()) - started : NaN;
    const counts = [];
    if (step.attempts > 1) counts.push(h('span', { class: 'count', title: 'execute attempts', testid: 'step-attempts-count' }, `×${step.attempts}`));
    if (step.compensation_attempts > 0) counts.push(h('span', { class: 'count count-comp', title: 'compensation attempts', testid: 'step-compensations' }, `↺ ${plural(step.compensation_attempts, 'compensation attempt')}`));
    const card = h('div', {
      class: ['step', `st-${step.status}`, open ? 'open' : ''], testid: 'step',
      dataset: { step: step.name, status: step.status, kind: step.kind || '', branch: step.branch, child: step.child },
    },
      h('div', { class: 'step-row' }, h('div', { class: 'step-line' },
        toggle,
        h('span', { class: ['kind', `kind-${step.kind || 'unknown'}`], title: step.kind || 'unknown kind' }, icon(step.kind || 'unknown')),
        h('span', { class: 'step-name', testid: 'step-name' }, step.name),
        step.target ? h('span', { class: 'step-target' }, step.target) : (step.kind ? h('span', { class: 'step-target' }, step.kind) : null),
        chip(step.status, 'step-status'),
        counts,
        h('span', { class: 'spacer' }),
        h('span', { class: 'step-time small muted' }, step.started_at ? absolute(step.started_at, { ms: true }) : '', Number.isNaN(took) ? '' : ` · ${duration(took)}`)),
      bar(step, t)),
      waitLine(step),
      step.child ? h('div', { class: 'child' }, 'child run ', runLink(step.child, { testid: 'step-child' })) : null,
      step.error ? h('div', { class: 'step-error err-text', testid: 'step-error' }, step.error) : null,
      open ? stepDetail(step, index) : null);
    return card;
  }

  function stepDetail(step, index) {
    const attempts = attemptsOf(step.name);
    return h('div', { class: 'step-detail', testid: 'step-detail' },
      h('h4', null, 'Attempts'),
      journalError ? failure(journalError) : attempts.length ? attemptsTable(attempts) : h('div', { class: 'muted small' }, 'No attempt yet'),
      h('div', { class: 'detail-cols' },
        h('div', null, h('h4', null, 'Output'), step.output ? json(step.output, { testid: 'step-output' }) : h('div', { class: 'muted small' }, 'None yet')),
        h('div', null, h('h4', null, 'Context after this step'), json(contextAfter(run, index), { testid: 'step-context' }))));
  }

  function renderTimeline() {
    const t = axis();
    const groups = groupSteps(run.steps);
    const ticks = h('div', { class: 'axis', testid: 'timeline-axis' },
      h('span', null, absolute(t.t0, { ms: true })),
      h('span', { class: 'muted' }, `${duration(t.t1 - t.t0)}${run.ended_at ? '' : ', so far'}`),
      h('span', null, run.ended_at ? absolute(t.t1, { ms: true }) : 'now'));
    return h('div', { class: 'timeline', testid: 'timeline' }, ticks,
      groups.map((g) => {
        if (!g.branches) return stepCard(g.step, g.index, t);
        return h('div', { class: 'parallel', testid: 'parallel-group', dataset: { step: g.step.name } },
          stepCard(g.step, g.index, t),
          h('div', { class: 'branches', dataset: { count: g.branches.size } },
            [...g.branches.entries()].map(([branch, items]) => h('div', { class: 'branch', testid: 'branch', dataset: { branch } },
              h('div', { class: 'branch-name' }, icon('branch'), h('span', null, 'branch '), h('b', null, branch)),
              items.map(({ step, index }) => stepCard(step, index, t))))));
      }));
  }

  function renderBody() {
    if (!run) return;
    for (const [key, b] of tabButtons) {
      b.classList.toggle('active', key === tab);
      b.setAttribute('aria-selected', String(key === tab));
    }
    if (tab === 'timeline') fill(body, renderTimeline());
    else if (tab === 'journal') {
      fill(body, journalError ? failure(journalError, 'journal-error')
        : !journal ? loading('Loading the journal…')
          : journal.attempts.length ? attemptsTable(journal.attempts, { withStep: true }) : h('div', { class: 'state state-empty' }, 'No attempt yet'));
    } else {
      fill(body, h('div', { class: 'two-col' },
        h('div', null, h('h3', null, 'Input'), json(run.input, { testid: 'run-input' })),
        h('div', null, h('h3', null, 'Context'), json(run.context, { testid: 'run-context' }))));
    }
    lastRender = Date.now();
  }

  function applyRun(data) {
    run = data;
    root.dataset.status = run.status;
    renderHead();
    renderBody();
  }

  async function load(quiet) {
    const mine = ++seq;
    try {
      const [r, j] = await Promise.allSettled([api.getRun(id), api.getJournal(id)]);
      if (disposed || mine !== seq) return;
      if (r.status === 'rejected') throw r.reason;
      journal = j.status === 'fulfilled' ? j.value.data : journal;
      journalError = j.status === 'rejected' ? j.reason : null;
      const key = JSON.stringify([r.value.data, journal]);
      if (!quiet || key !== lastKey || Date.now() - lastRender > 10_000 || !run) {
        lastKey = key;
        run = r.value.data;
        root.dataset.status = run.status;
        if (!head.isConnected) fill(root, head, tabs, body);
        renderHead();
        renderBody();
      }
      root.dataset.state = 'ready';
    } catch (error) {
      if (disposed || mine !== seq) return;
      if (!run) {
        root.dataset.state = 'error';
        missing = error.status === 404;
        fill(root, error.status === 404
          ? h('div', { class: 'state state-error', testid: 'run-missing' }, `No run with id ${id}`)
          : failure(error, 'run-failure'));
      } else {
        actionMsg.show('warn', `Refresh failed: ${error.line || error.message}`);
      }
    }
  }

  fill(root, loading('Loading the run…'));
  root.dataset.state = 'loading';
  load(false);
  const poll = poller(() => {
    if (missing) return null;
    if (!run) return load(false);
    if (!TERMINAL.has(run.status) || Date.now() < watchUntil) return load(true);
    return null;
  }, 2000);

  return {
    cleanup() {
      disposed = true;
      poll.stop();
      delete root.dataset.status;
      delete root.dataset.state;
    },
  };
}

