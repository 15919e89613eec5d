// #/workflows and #/workflows/<name> (admin token): the workflows with their versions, a
// form to push a definition (JSON), rollback to the previous version or to any version.

import * as api from './api.js';
import {
  h, fill, chip, when, message, loading, empty, failure, header, card, field, button, parseJson,
  digest, json, tag, plural, thead,
} from './ui.js';

const EXAMPLE = '{\n  "steps": [\n    { "name": "a", "plugin": "validate_user" }\n  ]\n}';

/** A hint shown instead of a request when no admin token is set. */
export function needsAdmin(what, retry) {
  return h('div', { class: 'state state-warn', testid: 'needs-admin' },
    h('div', null, `${what} need${what.endsWith('s') ? '' : 's'} the admin token: `, h('a', { href: '#/settings' }, 'set it in Settings'), '.'),
    retry ? button('Try anyway', { testid: 'try-anyway', onclick: retry }, 'ghost') : null);
}

function pushForm({ name, initial, onDone }) {
  const nameInput = name === undefined
    ? h('input', { type: 'text', testid: 'workflow-push-name', placeholder: 'workflow name', class: 'mono', autocomplete: 'off', spellcheck: 'false', required: true })
    : null;
  const text = h('textarea', { testid: 'workflow-push-definition', rows: 10, class: 'code', spellcheck: 'false', placeholder: EXAMPLE });
  text.value = initial || '';
  const result = message('workflow-push-result');
  const submit = button('Push', { type: 'submit', testid: 'workflow-push-submit' }, 'primary');
  const form = h('form', {
    class: 'form', testid: 'workflow-push-form',
    onsubmit: async (event) => {
      event.preventDefault();
      result.clear();
      const target = name ?? nameInput.value.trim();
      if (!target) {
        result.show('error', 'Name the workflow');
        return;
      }
      const parsed = parseJson(text.value, 'The definition');
      if (!parsed.ok) {
        result.show('error', parsed.error);
        return;
      }
      submit.disabled = true;
      try {
        const { status, data } = await api.pushWorkflow(target, text.value);
        result.show('ok', `${status} ${status === 201 ? 'Created' : 'OK'}: ${data.name} version ${data.digest.slice(0, 12)} is current${data.new ? ' (a new version)' : ' (a known version)'}${data.changed ? '' : ', unchanged'}`);
        result.dataset.status = String(status);
        if (onDone) onDone(data);
      } catch (error) {
        result.dataset.status = String(error.status || 0);
        result.error(error);
      } finally {
        submit.disabled = false;
      }
    },
  },
  nameInput ? field('Name', nameInput, 'a new name creates the workflow') : null,
  field('Definition (JSON, the schema of a [workflows.<name>] table)', text, h('a', { href: '/v1/schemas/workflow.json', target: '_blank', rel: 'noopener' }, 'JSON Schema')),
  h('div', { class: 'form-actions' }, submit, result));
  return form;
}

function renderList(root) {
  let disposed = false;
  const host = h('div', { testid: 'workflows-host' });
  const refresh = button('Refresh', { testid: 'workflows-refresh', onclick: () => load() }, 'ghost');

  async function load(force) {
    if (!api.tokens.admin && !force) {
      fill(host, needsAdmin('The workflow routes', () => load(true)));
      return;
    }
    fill(host, loading('Loading workflows…'));
    try {
      const { data } = await api.workflows();
      if (disposed) return;
      const list = data.workflows;
      if (!list.length) {
        fill(host, empty('No workflow has a version yet', 'workflows-empty'));
        return;
      }
      fill(host, h('div', { class: 'table-wrap' }, h('table', { class: 'grid', testid: 'workflows-table' },
        thead(['Workflow', 'Current version', ['Versions', 'num'], ['Pinned runs', 'num'], 'Registered', 'Source', '']),
        h('tbody', null, list.map((w) => {
          const current = w.versions.find((v) => v.current);
          const pinned = w.versions.reduce((acc, v) => acc + (v.pinned_runs || 0), 0);
          const steps = current?.definition?.steps?.length;
          return h('tr', { testid: 'workflow-row', dataset: { name: w.name, digest: w.current || '' } },
            h('td', null, h('a', { href: `#/workflows/${encodeURIComponent(w.name)}`, testid: 'workflow-link', class: 'strong' }, w.name),
              steps !== undefined ? h('span', { class: 'muted small' }, ` · ${plural(steps, 'step')}`) : null,
              current?.definition?.schedule ? tag(`cron ${current.definition.schedule}`, 'tag-cron') : null,
              current?.definition?.trigger ? tag(`on ${current.definition.trigger}`, 'tag-trigger') : null),
            h('td', null, w.current ? digest(w.current, { testid: 'workflow-current' }) : chip('retired')),
            h('td', { class: 'num', testid: 'workflow-versions' }, w.versions.length),
            h('td', { class: 'num', testid: 'workflow-pinned' }, pinned),
            h('td', null, current ? when(current.registered_at) : ''),
            h('td', null, current ? tag(current.source) : ''),
            h('td', { class: 'row-actions' },
              h('a', { href: `#/runs?workflow=${encodeURIComponent(w.name)}` }, 'Runs'),
              w.current ? h('a', { href: `#/runs?start=${encodeURIComponent(w.name)}`, testid: 'workflow-start-run' }, 'Start run') : null));
        })))));
    } catch (error) {
      if (!disposed) fill(host, failure(error, 'workflows-error'));
    }
  }

  fill(root,
    header('Workflows', refresh),
    host,
    card('Push a definition', { testid: 'workflow-push' }, pushForm({ initial: '', onDone: () => load() })));
  load();
  return { cleanup() { disposed = true; } };
}

function renderDetail(root, name) {
  let disposed = false;
  const host = h('div', { testid: 'workflow-host' });
  const result = message('workflow-action-result');
  const previous = button('Roll back to previous', { testid: 'workflow-rollback-previous', onclick: () => rollback() });
  const tools = [
    h('a', { class: 'btn btn-ghost', href: `#/runs?workflow=${encodeURIComponent(name)}`, testid: 'workflow-runs' }, 'Runs'),
    h('a', { class: 'btn btn-primary', href: `#/runs?start=${encodeURIComponent(name)}`, testid: 'workflow-start-run' }, 'Start run'),
    previous,
  ];
  let formHost = h('div');

  async function rollback(to) {
    result.clear();
    try {
      const { status, data } = await api.rollbackWorkflow(name, to);
      result.show('ok', `${status} OK: version ${data.digest.slice(0, 12)} is current${data.changed ? '' : ' (it already was)'}`);
      result.dataset.status = String(status);
      load();
    } catch (error) {
      result.dataset.status = String(error.status || 0);
      result.error(error);
    }
  }

  async function load(force) {
    if (!api.tokens.admin && !force) {
      fill(host, needsAdmin('The workflow routes', () => load(true)));
      return;
    }
    if (!host.firstChild) fill(host, loading('Loading the workflow…'));
    try {
      const { data } = await api.workflow(name);
      if (disposed) return;
      const current = data.versions.find((v) => v.current);
      fill(host,
        h('div', { class: 'summary-line' },
          h('span', { class: 'field-label' }, 'Current'),
          data.current ? h('span', { class: 'mono', testid: 'workflow-current', dataset: { digest: data.current } }, data.current) : chip('retired'),
          h('span', { class: 'muted' }, ` · ${plural(data.versions.length, 'version')}`)),
        h('div', { class: 'versions' }, data.versions.map((v) => h('section', {
          class: ['version', v.current ? 'version-current' : ''], testid: 'workflow-version', dataset: { digest: v.digest, current: String(v.current) },
        },
          h('div', { class: 'version-head' },
            digest(v.digest, { class: 'mono digest strong' }),
            v.current ? h('span', { class: 'chip chip-completed', testid: 'version-current-marker' }, 'current') : null,
            tag(v.source),
            h('span', { class: 'muted small' }, 'registered '), when(v.registered_at),
            h('span', { class: 'small', testid: 'version-pinned' }, `${plural(v.pinned_runs, 'pinned run')}`),
            h('span', { class: 'spacer' }),
            v.current ? null : button('Roll back to this', { testid: 'workflow-rollback', dataset: { digest: v.digest }, onclick: () => rollback(v.digest) }, 'ghost')),
          h('details', { class: 'definition', open: v.current },
            h('summary', null, `Definition · ${plural(v.definition?.steps?.length ?? 0, 'step')}`),
            json(v.definition, { testid: 'workflow-definition' }))))));
      if (!formHost.firstChild && current) {
        fill(formHost, card('Push a new version', { testid: 'workflow-push' },
          pushForm({ name, initial: JSON.stringify(current.definition, null, 2), onDone: () => load() })));
      }
    } catch (error) {
      if (disposed) return;
      fill(host, error.status === 404 ? h('div', { class: 'state state-error', testid: 'workflow-missing' }, `No workflow named ${name}`) : failure(error, 'workflow-error'));
    }
  }

  fill(root, header(h('span', null, h('span', { class: 'muted' }, 'Workflow '), h('span', { class: 'mono', testid: 'workflow-name' }, name)), tools), result, host, formHost);
  load();
  return { cleanup() { disposed = true; } };
}

export function render(root, { params, route }) {
  if (route === 'workflow') return renderDetail(root, params[0]);
  return renderList(root);
}

