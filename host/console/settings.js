// #/settings: the tokens the console sends, kept in this browser's localStorage, and a check
// of each against the host.

import * as api from './api.js';
import { h, fill, message, header, card, field, button } from './ui.js';

export function render(root) {
  const admin = h('input', { type: 'password', testid: 'settings-admin-token', autocomplete: 'off', spellcheck: 'false', class: 'mono', placeholder: 'FLOWHOST_ADMIN_TOKEN' });
  const trigger = h('input', { type: 'password', testid: 'settings-trigger-token', autocomplete: 'off', spellcheck: 'false', class: 'mono', placeholder: 'FLOWHOST_TRIGGER_TOKEN (optional)' });
  admin.value = api.tokens.admin;
  trigger.value = api.tokens.trigger;
  const saved = message('settings-saved');
  const checked = message('settings-test-result');
  const reveal = h('input', {
    type: 'checkbox', testid: 'settings-reveal',
    onchange: () => { admin.type = reveal.checked ? 'text' : 'password'; trigger.type = reveal.checked ? 'text' : 'password'; },
  });

  function save() {
    api.tokens.set({ admin: admin.value, trigger: trigger.value });
    const parts = [api.tokens.admin ? 'admin token set' : 'no admin token', api.tokens.trigger ? 'trigger token set' : 'no trigger token'];
    saved.show('ok', `Saved in this browser: ${parts.join(', ')}`);
  }

  async function check() {
    checked.clear();
    if (!api.tokens.admin) {
      checked.show('warn', 'No admin token saved: the Workflows and Plugins pages need one');
      return;
    }
    try {
      const { data } = await api.plugins();
      checked.show('ok', `The admin token works: ${data.plugins.length} plugins listed`);
    } catch (error) {
      checked.error(error);
    }
  }

  const form = h('form', { class: 'form settings', testid: 'settings-form', onsubmit: (e) => { e.preventDefault(); save(); } },
    field('Admin token', admin, 'Sent as Authorization: Bearer on /v1/plugins and /v1/workflows.'),
    field('Trigger token', trigger, 'Sent, when set, on the routes that make plugins run: start, retry, cancel and signal runs; publish events; redeliver dead letters. Reads need no token.'),
    h('label', { class: 'check' }, reveal, ' Show the tokens'),
    h('div', { class: 'form-actions' },
      button('Save', { type: 'submit', testid: 'settings-save' }, 'primary'),
      button('Check admin token', { testid: 'settings-test', onclick: () => check() }),
      button('Forget both', { testid: 'settings-clear', onclick: () => { admin.value = ''; trigger.value = ''; save(); } }, 'ghost'),
      saved),
    checked);

  fill(root,
    header('Settings'),
    card('Tokens', { testid: 'settings-tokens' }, form,
      h('p', { class: 'muted small' }, 'Tokens stay in this browser (localStorage) and go only to this host. Anyone with access to this browser profile can read them.')),
    card('About', {}, h('p', { class: 'small' }, 'The console uses only the public HTTP API of this host (', h('a', { href: '/openapi.json', target: '_blank', rel: 'noopener' }, 'OpenAPI document'), ').')));
  return null;
}
