// #/plugins and #/plugins/<name> (admin token): the configured plugins, their versions and
// pins; upload a new version (a .wasm component), roll back.

import * as api from './api.js';
import {
  h, fill, when, message, loading, empty, failure, header, card, field, button, digest, tag, bytes, plural, chip, thead,
} from './ui.js';
import { needsAdmin } from './workflows.js';

function renderList(root) {
  let disposed = false;
  const host = h('div', { testid: 'plugins-host' });

  async function load(force) {
    if (!api.tokens.admin && !force) {
      fill(host, needsAdmin('The plugin routes', () => load(true)));
      return;
    }
    fill(host, loading('Loading plugins…'));
    try {
      const { data } = await api.plugins();
      if (disposed) return;
      if (!data.plugins.length) {
        fill(host, empty('No plugin is configured', 'plugins-empty'));
        return;
      }
      fill(host, h('div', { class: 'table-wrap' }, h('table', { class: 'grid', testid: 'plugins-table' },
        thead(['Plugin', 'Used as', 'Current version', 'Label', ['Size', 'num'], 'Registered', ['Pinned runs', 'num'], ['Versions', 'num']]),
        h('tbody', null, data.plugins.map((p) => {
          const c = p.current;
          return h('tr', { testid: 'plugin-row', dataset: { name: p.name, digest: c?.digest || '' } },
            h('td', null, h('a', { href: `#/plugins/${encodeURIComponent(p.name)}`, class: 'strong', testid: 'plugin-link' }, p.name)),
            h('td', null, p.used_as.map((w) => tag(w))),
            h('td', null, c ? digest(c.digest, { testid: 'plugin-current' }) : h('span', { class: 'muted' }, 'none')),
            h('td', { class: 'mono' }, c?.version || h('span', { class: 'muted' }, '—')),
            h('td', { class: 'num' }, c ? bytes(c.size) : ''),
            h('td', null, c ? when(c.registered_at) : ''),
            h('td', { class: 'num' }, c?.pinned_runs ?? ''),
            h('td', { class: 'num', testid: 'plugin-versions' }, p.versions));
        })))));
    } catch (error) {
      if (!disposed) fill(host, failure(error, 'plugins-error'));
    }
  }

  fill(root, header('Plugins', button('Refresh', { testid: 'plugins-refresh', onclick: () => load() }, 'ghost')), host);
  load();
  return { cleanup() { disposed = true; } };
}

function renderDetail(root, name) {
  let disposed = false;
  const host = h('div', { testid: 'plugin-host' });
  const result = message('plugin-action-result');

  async function rollback(to) {
    result.clear();
    try {
      const { status, data } = await api.rollbackPlugin(name, to);
      result.dataset.status = String(status);
      result.show('ok', `${status} OK: version ${data.digest.slice(0, 12)}${data.version ? ` (${data.version})` : ''} is current${data.changed ? '' : ' (it already was)'}`);
      load();
    } catch (error) {
      result.dataset.status = String(error.status || 0);
      result.error(error);
    }
  }

  // upload
  const file = h('input', { type: 'file', accept: '.wasm,application/wasm', testid: 'plugin-upload-file' });
  const label = h('input', { type: 'text', placeholder: '1.4.2 (optional)', testid: 'plugin-upload-label', class: 'narrow', autocomplete: 'off' });
  const uploadMsg = message('plugin-upload-result');
  const submit = button('Upload and make current', { type: 'submit', testid: 'plugin-upload-submit' }, 'primary');
  const upload = h('form', {
    class: 'form upload',
    onsubmit: async (event) => {
      event.preventDefault();
      uploadMsg.clear();
      const chosen = file.files && file.files[0];
      if (!chosen) {
        uploadMsg.show('error', 'Choose a .wasm component first');
        return;
      }
      submit.disabled = true;
      uploadMsg.show('info', `Uploading ${chosen.name} (${bytes(chosen.size)})… the host validates and compiles it`);
      try {
        const { status, data } = await api.pushPlugin(name, chosen, label.value.trim());
        uploadMsg.dataset.status = String(status);
        uploadMsg.show('ok', `${status} ${status === 201 ? 'Created: a new version' : 'OK: a known version'} ${data.digest.slice(0, 12)}${data.version ? ` (${data.version})` : ''} is current${data.changed ? '' : ' (it already was)'}`);
        load();
      } catch (error) {
        uploadMsg.dataset.status = String(error.status || 0);
        uploadMsg.error(error);
      } finally {
        submit.disabled = false;
      }
    },
  }, h('div', { class: 'form-row' }, field('Component (.wasm)', file), field('Version label', label)), h('div', { class: 'form-actions' }, submit, uploadMsg));

  async function load(force) {
    if (!api.tokens.admin && !force) {
      fill(host, needsAdmin('The plugin routes', () => load(true)));
      return;
    }
    if (!host.firstChild) fill(host, loading('Loading the plugin…'));
    try {
      const { data } = await api.plugin(name);
      if (disposed) return;
      fill(host,
        h('div', { class: 'summary-line' },
          h('span', { class: 'field-label' }, 'Current'),
          h('span', { class: 'mono', testid: 'plugin-current', dataset: { digest: data.current } }, data.current),
          h('span', { class: 'muted' }, ' · used as '), data.used_as.map((w) => tag(w)),
          h('span', { class: 'muted' }, ` · ${plural(data.versions.length, 'version')}`)),
        h('div', { class: 'table-wrap' }, h('table', { class: 'grid', testid: 'plugin-versions-table' },
          thead(['Digest', '', 'Label', 'Worlds', ['Size', 'num'], 'Registered', 'Source', 'Grants', ['Pinned runs', 'num'], '']),
          h('tbody', null, data.versions.map((v) => h('tr', {
            testid: 'plugin-version', class: v.current ? 'row-current' : '', dataset: { digest: v.digest, current: String(v.current), pinned: v.pinned_runs ?? '' },
          },
            h('td', null, digest(v.digest)),
            h('td', null, v.current ? h('span', { class: 'chip chip-completed', testid: 'version-current-marker' }, 'current') : null),
            h('td', { class: 'mono' }, v.version || h('span', { class: 'muted' }, '—')),
            h('td', null, v.worlds.map((w) => tag(w))),
            h('td', { class: 'num' }, bytes(v.size)),
            h('td', null, when(v.registered_at)),
            h('td', null, tag(v.source)),
            h('td', { class: 'small' }, grants(v.grants)),
            h('td', { class: 'num', testid: 'plugin-pinned' }, v.pinned_runs ?? ''),
            h('td', { class: 'row-actions' }, v.current ? null : button('Roll back to this', { testid: 'plugin-rollback', dataset: { digest: v.digest }, onclick: () => rollback(v.digest) }, 'ghost'))))))));
    } catch (error) {
      if (disposed) return;
      fill(host, error.status === 404 ? h('div', { class: 'state state-error', testid: 'plugin-missing' }, `No plugin named ${name}`) : failure(error, 'plugin-error'));
    }
  }

  function grants(g) {
    if (!g) return '';
    const parts = [];
    if (g.services?.length) parts.push(h('div', null, h('span', { class: 'muted' }, 'services '), g.services.join(', ')));
    if (g.publish?.length) parts.push(h('div', null, h('span', { class: 'muted' }, 'publish '), h('span', { class: 'mono' }, g.publish.join(', '))));
    if (g.cache_namespace) parts.push(h('div', null, h('span', { class: 'muted' }, 'cache '), g.cache_namespace));
    return parts.length ? parts : chip('none');
  }

  fill(root,
    header(h('span', null, h('span', { class: 'muted' }, 'Plugin '), h('span', { class: 'mono', testid: 'plugin-name' }, name)),
      button('Roll back to previous', { testid: 'plugin-rollback-previous', onclick: () => rollback() })),
    result, host,
    card('Upload a new version', { testid: 'plugin-upload' }, upload));
  load();
  return { cleanup() { disposed = true; } };
}

export function render(root, { params, route }) {
  if (route === 'plugin') return renderDetail(root, params[0]);
  return renderList(root);
}
