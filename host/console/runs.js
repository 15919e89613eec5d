// #/runs: the runs, newest first, with filters kept in the hash (#/runs?status=failed&...),
// paging, a search by id, a search by the workflows' declared search fields, live updates
// and a form to start a run.

import * as api from './api.js';
import {
  h, fill, chip, when, message, loading, empty, failure, header, card, field, button, poller,
  parseJson, go, runLink, RUN_STATUSES, toLocalInput, fromLocalInput, plural,
} from './ui.js';

const LIVE_KEY = 'flowhost.console.live';
const FILTERS = ['workflow', 'status', 'created_after', 'created_before', 'field', 'value', 'limit', 'cursor'];

function readQuery(query) {
  const state = {};
  for (const key of FILTERS) state[key] = query.get(key) || '';
  return state;
}

function liveDefault() {
  try {
    return localStorage.getItem(LIVE_KEY) !== 'off';
  } catch {
    return true;
  }
}

export function render(root, { query }) {
  let state = readQuery(query);
  let disposed = false;
  let seq = 0;
  let lastKey = '';
  let live = liveDefault();
  const seen = new Set();
  let known = null; // workflow names from GET /v1/workflows (admin), when the token allows
  const searchFields = new Set();

  // --- the start form ------------------------------------------------------------------
  const startWorkflow = h('input', { type: 'text', list: 'runs-workflow-names', testid: 'start-workflow', placeholder: 'order_processing', autocomplete: 'off', spellcheck: 'false', required: true });
  const startInput = h('textarea', { testid: 'start-input', rows: 6, class: 'code', spellcheck: 'false' });
  startInput.value = '{\n  \n}';
  const startKey = h('input', { type: 'text', testid: 'start-key', placeholder: 'optional: makes the start idempotent', autocomplete: 'off' });
  const startMsg = message('start-result');
  const startSubmit = button('Start', { testid: 'start-submit', type: 'submit' }, 'primary');
  const startForm = h('form', { class: 'form start-form', testid: 'start-form', onsubmit: (e) => { e.preventDefault(); start(); } },
    h('div', { class: 'form-row' }, field('Workflow', startWorkflow), field('Idempotency key', startKey)),
    field('Input (a JSON object: the run\'s context)', startInput),
    h('div', { class: 'form-actions' }, startSubmit, startMsg));
  const startPanel = card('Start a run', { class: 'start-card hidden', testid: 'start-panel' }, startForm);
  const startToggle = button('Start run', { testid: 'runs-start-toggle', onclick: () => toggleStart() }, 'primary');

  function toggleStart(open) {
    const show = open ?? startPanel.classList.contains('hidden');
    startPanel.classList.toggle('hidden', !show);
    if (show) startWorkflow.focus();
  }

  async function start() {
    startMsg.clear();
    const workflow = startWorkflow.value.trim();
    if (!workflow) {
      startMsg.show('error', 'Name the workflow to start');
      return;
    }
    const text = startInput.value.trim();
    let input;
    if (text) {
      const parsed = parseJson(text, 'The input');
      if (!parsed.ok) {
        startMsg.show('error', parsed.error);
        return;
      }
      if (parsed.value === null || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
        startMsg.show('error', 'The input must be a JSON object');
        return;
      }
      input = parsed.value;
    }
    startSubmit.disabled = true;
    try {
      const { status, data } = await api.startRun(workflow, input ?? {}, startKey.value.trim());
      startMsg.show('ok', `${status} ${status === 202 ? 'Accepted' : 'OK'}: run ${data.id} (${data.status})`);
      go(`/runs/${encodeURIComponent(data.id)}`);
    } catch (error) {
      startMsg.error(error);
    } finally {
      startSubmit.disabled = false;
    }
  }

  // --- filters -------------------------------------------------------------------------
  const names = h('datalist', { id: 'runs-workflow-names' });
  const fieldNames = h('datalist', { id: 'runs-search-fields' });
  const fWorkflow = h('select', { testid: 'runs-filter-workflow', onchange: () => apply() });
  const fStatus = h('select', { testid: 'runs-filter-status', onchange: () => apply() },
    h('option', { value: '' }, 'Any status'), RUN_STATUSES.map((s) => h('option', { value: s }, s.replace(/_/g, ' '))));
  const fAfter = h('input', { type: 'datetime-local', testid: 'runs-filter-after', title: 'Created at or after (your local time)' });
  const fBefore = h('input', { type: 'datetime-local', testid: 'runs-filter-before', title: 'Created before (your local time)' });
  const fField = h('input', { type: 'text', testid: 'runs-filter-field', list: 'runs-search-fields', placeholder: 'order_id', class: 'narrow', autocomplete: 'off', spellcheck: 'false' });
  const fValue = h('input', { type: 'text', testid: 'runs-filter-value', placeholder: 'o-1', class: 'narrow', autocomplete: 'off', spellcheck: 'false' });
  const fLimit = h('select', { testid: 'runs-filter-limit', onchange: () => apply(), title: 'Runs per page' },
    ['25', '50', '100', '200', '500'].map((n) => h('option', { value: n }, `${n} / page`)));
  const filters = h('form', { class: 'filters', testid: 'runs-filters', onsubmit: (e) => { e.preventDefault(); apply(); } },
    field('Workflow', fWorkflow), field('Status', fStatus), field('Created after', fAfter), field('Created before', fBefore),
    h('div', { class: 'field-group' }, field('Search field', fField), h('span', { class: 'eq' }, '='), field('Value', fValue)),
    h('div', { class: 'filter-actions' },
      button('Apply', { type: 'submit', testid: 'runs-filter-apply' }, 'primary'),
      button('Reset', { testid: 'runs-filter-reset', onclick: () => go('/runs', { limit: state.limit }) }, 'ghost')),
    names, fieldNames);

  const idInput = h('input', { type: 'search', testid: 'runs-search-id', placeholder: 'Go to run id…', class: 'mono', autocomplete: 'off', spellcheck: 'false' });
  const idMsg = message('runs-search-result');
  const idForm = h('form', { class: 'id-search', onsubmit: (e) => { e.preventDefault(); findById(); } },
    idInput, button('Go', { type: 'submit', testid: 'runs-search-go' }));

  async function findById() {
    const id = idInput.value.trim();
    idMsg.clear();
    if (!id) return;
    try {
      const { data } = await api.getRun(id);
      go(`/runs/${encodeURIComponent(data.id)}`);
    } catch (error) {
      if (error.status === 404) idMsg.show('warn', `No run with id ${id}`);
      else idMsg.error(error);
    }
  }

  function apply() {
    const q = {
      workflow: fWorkflow.value,
      status: fStatus.value,
      created_after: fromLocalInput(fAfter.value),
      created_before: fromLocalInput(fBefore.value),
      field: fField.value.trim(),
      value: fField.value.trim() ? fValue.value : '',
      limit: fLimit.value === '50' ? '' : fLimit.value,
    };
    if (!go('/runs', q)) load(false); // same filters: load again
  }

  function syncInputs() {
    fillWorkflowOptions();
    fStatus.value = state.status;
    if (fStatus.value !== state.status) fStatus.value = '';
    fAfter.value = toLocalInput(state.created_after);
    fBefore.value = toLocalInput(state.created_before);
    fField.value = state.field;
    fValue.value = state.value;
    fLimit.value = state.limit || '50';
    if (!fLimit.value) fLimit.value = '50';
  }

  function fillWorkflowOptions() {
    const all = new Set([...(known || []), ...seen]);
    if (state.workflow) all.add(state.workflow);
    const sorted = [...all].sort();
    const signature = sorted.join('\n');
    if (fWorkflow.dataset.signature !== signature) {
      fill(fWorkflow, h('option', { value: '' }, 'All workflows'), sorted.map((w) => h('option', { value: w }, w)));
      fill(names, sorted.map((w) => h('option', { value: w })));
      fWorkflow.dataset.signature = signature;
    }
    fWorkflow.value = state.workflow;
  }

  async function loadWorkflows() {
    if (!api.tokens.admin) return;
    try {
      const { data } = await api.workflows();
      known = data.workflows.map((w) => w.name);
      for (const w of data.workflows) {
        const currentVersion = w.versions.find((v) => v.current) || w.versions[0];
        for (const f of currentVersion?.definition?.search || []) searchFields.add(f);
      }
      fill(fieldNames, [...searchFields].sort().map((f) => h('option', { value: f })));
      if (!disposed) fillWorkflowOptions();
    } catch {
      // without a good admin token the select shows the workflows seen in the listing
    }
  }

  // --- the table -----------------------------------------------------------------------
  const liveBox = h('input', { type: 'checkbox', class: 'switch', testid: 'runs-live', checked: live, onchange: () => setLive(liveBox.checked) });
  const liveLabel = h('label', { class: ['live', live ? 'on' : ''], title: 'Refresh every 2 s while this tab is visible' }, liveBox, 'Live');
  const listMsg = message('runs-error');
  const tableHost = h('div', { class: 'table-host', testid: 'runs-host' });
  const status = h('span', { class: 'muted small', testid: 'runs-count' });
  const newest = button('⇤ Newest', { testid: 'runs-newest', onclick: () => go('/runs', { ...currentFilters(), cursor: '' }) }, 'ghost');
  const older = button('Older →', { testid: 'runs-older', onclick: () => older.dataset.cursor && go('/runs', { ...currentFilters(), cursor: older.dataset.cursor }) });
  const pager = h('div', { class: 'pager' }, status, h('span', { class: 'spacer' }), newest, older);

  function currentFilters() {
    const out = {};
    for (const key of FILTERS) if (key !== 'cursor' && state[key]) out[key] = state[key];
    return out;
  }

  function setLive(on) {
    live = on;
    liveLabel.classList.toggle('on', on);
    try {
      localStorage.setItem(LIVE_KEY, on ? 'on' : 'off');
    } catch {
      // not kept
    }
  }

  function stepsBar(run) {
    return h('span', { class: 'stepbar', title: run.steps.map((s) => `${s.name}: ${s.status}`).join('\n') },
      run.steps.filter((s) => !s.branch).map((s) => h('span', { class: ['seg', `seg-${s.status}`] })));
  }

  function currentStep(run) {
    const active = run.steps.find((s) => ['running', 'waiting', 'compensating'].includes(s.status));
    if (active) return active;
    return null;
  }

  function row(run) {
    seen.add(run.workflow);
    const active = currentStep(run);
    const endedOrUpdated = run.ended_at
      ? h('span', { class: 'nowrap', title: 'ended' }, when(run.ended_at))
      : h('span', { class: 'nowrap still', title: 'not ended: last updated' }, when(run.updated_at));
    const tr = h('tr', { testid: 'run-row', dataset: { runId: run.id, status: run.status, workflow: run.workflow }, class: 'clickable' },
      h('td', { class: 'id-cell' }, runLink(run.id, { testid: 'run-link' })),
      h('td', null, h('a', { href: `#/runs?workflow=${encodeURIComponent(run.workflow)}`, class: 'wf', title: `Runs of ${run.workflow}` }, run.workflow)),
      h('td', null, chip(run.status, 'run-status')),
      h('td', { class: 'nowrap' }, stepsBar(run), active ? h('span', { class: 'small muted step-now' }, ` ${active.name}`) : null),
      h('td', { class: 'nowrap' }, when(run.created_at)),
      h('td', { class: 'nowrap' }, endedOrUpdated),
      h('td', { class: 'err-cell', title: run.error ? `${run.error.step}: ${run.error.message}` : '' },
        run.error ? h('span', { class: 'err-text', testid: 'run-error' }, run.error.step ? h('b', null, `${run.error.step}: `) : null, run.error.message) : null));
    tr.addEventListener('click', (event) => {
      if (event.target.closest('a, button')) return;
      go(`/runs/${encodeURIComponent(run.id)}`);
    });
    return tr;
  }

  function renderTable(page) {
    const runs = page.runs || [];
    if (!runs.length) {
      fill(tableHost, empty(describeEmpty(), 'runs-empty'));
    } else {
      fill(tableHost, h('div', { class: 'table-wrap' },
        h('table', { class: 'grid runs-table', testid: 'runs-table' },
          h('thead', null, h('tr', null, ['Run', 'Workflow', 'Status', 'Steps', 'Created', 'Ended / updated', 'Error'].map((c) => h('th', null, c)))),
          h('tbody', null, runs.map(row)))));
    }
    older.disabled = !page.next_cursor;
    older.dataset.cursor = page.next_cursor || '';
    newest.disabled = !state.cursor;
    status.textContent = `${plural(runs.length, 'run')}${state.cursor ? ' (older page)' : ''}${page.next_cursor ? ', more older' : ''} · ${new Date().toLocaleTimeString()}`;
    fillWorkflowOptions();
  }

  function describeEmpty() {
    const parts = [];
    if (state.workflow) parts.push(`workflow ${state.workflow}`);
    if (state.status) parts.push(`status ${state.status}`);
    if (state.created_after) parts.push(`created after ${new Date(state.created_after).toLocaleString()}`);
    if (state.created_before) parts.push(`created before ${new Date(state.created_before).toLocaleString()}`);
    if (state.field) parts.push(`${state.field} = ${state.value}`);
    return parts.length ? `No runs match ${parts.join(', ')}` : 'No runs yet: start one with “Start run”';
  }

  /** The filters of the listing shown, as a query string (`data-query` of the table's host). */
  function signature() {
    return new URLSearchParams(Object.entries(state).filter(([, v]) => v)).toString();
  }

  async function load(quiet) {
    const mine = ++seq;
    if (!quiet) fill(tableHost, loading('Loading runs…'));
    tableHost.dataset.state = 'loading';
    try {
      const { data } = await api.listRuns({ ...state, limit: state.limit || '50' });
      if (disposed || mine !== seq) return;
      const key = JSON.stringify(data);
      if (!quiet || key !== lastKey) renderTable(data);
      else status.textContent = status.textContent.replace(/ · [^·]*$/, ` · ${new Date().toLocaleTimeString()}`);
      lastKey = key;
      listMsg.clear();
      tableHost.dataset.query = signature();
      tableHost.dataset.state = 'ready';
    } catch (error) {
      if (disposed || mine !== seq) return;
      lastKey = '';
      tableHost.dataset.query = signature();
      tableHost.dataset.state = 'error';
      listMsg.error(error);
      if (!quiet) fill(tableHost, failure(error, 'runs-failure'));
    }
  }

  fill(root,
    header('Runs', idForm, liveLabel, startToggle),
    idMsg,
    startPanel,
    h('div', { class: 'toolbar' }, filters),
    listMsg,
    tableHost,
    pager);

  syncInputs();
  const startName = query.get('start');
  if (startName !== null) {
    startWorkflow.value = startName;
    toggleStart(true);
  }
  loadWorkflows();
  load(false);
  const poll = poller(() => (live ? load(true) : null), 2000);

  return {
    cleanup() {
      disposed = true;
      poll.stop();
    },
    update(next) {
      state = readQuery(next);
      syncInputs();
      const startName2 = next.get('start');
      if (startName2 !== null) {
        startWorkflow.value = startName2;
        toggleStart(true);
      }
      lastKey = '';
      load(false);
    },
  };
}

