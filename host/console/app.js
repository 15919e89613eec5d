// The console: the layout (left nav, header with the token indicator) and a hash router
// (#/runs, #/runs/<id>, #/workflows[/<name>], #/plugins[/<name>], #/events, #/nodes,
// #/dashboard, #/settings). Each page module exports `render(root, {params, query})`, which returns
// `{cleanup, update}`: `cleanup` stops its timers when the page goes, `update(query)` takes a
// new query of the same route without rebuilding the page (filters in the hash).

import { tokens, errorLine, healthz } from './api.js';
import { h, fill, currentRoute, failure } from './ui.js';
import * as runs from './runs.js';
import * as run from './run.js';
import * as workflows from './workflows.js';
import * as plugins from './plugins.js';
import * as events from './events.js';
import * as nodes from './nodes.js';
import * as dashboard from './dashboard.js';
import * as settings from './settings.js';

const ROUTES = [
  { name: 'run', pattern: /^\/runs\/(.+)$/, page: run, nav: 'runs', title: 'Run' },
  { name: 'runs', pattern: /^\/runs\/?$/, page: runs, nav: 'runs', title: 'Runs' },
  { name: 'workflow', pattern: /^\/workflows\/(.+)$/, page: workflows, nav: 'workflows', title: 'Workflow', detail: true },
  { name: 'workflows', pattern: /^\/workflows\/?$/, page: workflows, nav: 'workflows', title: 'Workflows' },
  { name: 'plugin', pattern: /^\/plugins\/(.+)$/, page: plugins, nav: 'plugins', title: 'Plugin', detail: true },
  { name: 'plugins', pattern: /^\/plugins\/?$/, page: plugins, nav: 'plugins', title: 'Plugins' },
  { name: 'events', pattern: /^\/events\/?$/, page: events, nav: 'events', title: 'Events' },
  { name: 'nodes', pattern: /^\/nodes\/?$/, page: nodes, nav: 'nodes', title: 'Nodes' },
  { name: 'dashboard', pattern: /^\/dashboard\/?$/, page: dashboard, nav: 'dashboard', title: 'Dashboard' },
  { name: 'settings', pattern: /^\/settings\/?$/, page: settings, nav: 'settings', title: 'Settings' },
];

const NAV = [
  { id: 'runs', label: 'Runs', icon: '▤' },
  { id: 'dashboard', label: 'Dashboard', icon: '◔' },
  { id: 'workflows', label: 'Workflows', icon: '⇶' },
  { id: 'plugins', label: 'Plugins', icon: '⬡' },
  { id: 'events', label: 'Events', icon: '⇄' },
  { id: 'nodes', label: 'Nodes', icon: '⊞' },
  { id: 'settings', label: 'Settings', icon: '⚙' },
];

let current = null; // {route, key, handle}
let main;
let indicator;
let navLinks = new Map();

function layout() {
  const app = document.getElementById('app');
  const nav = h('nav', { class: 'nav', 'aria-label': 'Main' },
    h('a', { class: 'brand', href: '#/runs', title: 'flowhost console' },
      h('img', { src: '/ui/favicon.svg', alt: '', class: 'brand-mark', width: 22, height: 22 }),
      h('span', { class: 'brand-name' }, 'flowhost')),
    h('ul', null, NAV.map((item) => {
      const link = h('a', { href: `#/${item.id}`, testid: `nav-${item.id}`, class: 'nav-link' },
        h('span', { class: 'nav-icon', 'aria-hidden': 'true' }, item.icon), h('span', null, item.label));
      navLinks.set(item.id, link);
      return h('li', null, link);
    })),
    h('div', { class: 'nav-foot' },
      h('div', { testid: 'host-version', class: 'host-version' }),
      h('a', { href: '/openapi.json', target: '_blank', rel: 'noopener' }, 'OpenAPI'), ' · ', h('a', { href: '/readyz', target: '_blank', rel: 'noopener' }, 'readyz')));
  indicator = h('a', { href: '#/settings', class: 'tokens', testid: 'token-indicator' });
  const top = h('header', { class: 'top' }, h('div', { class: 'crumbs', testid: 'crumbs' }), indicator);
  main = h('main', { class: 'main', testid: 'page', id: 'main' });
  fill(app, nav, h('div', { class: 'content' }, top, main));
  renderIndicator();
}

function renderIndicator() {
  const admin = Boolean(tokens.admin);
  const trigger = Boolean(tokens.trigger);
  indicator.dataset.admin = admin ? 'set' : 'unset';
  indicator.dataset.trigger = trigger ? 'set' : 'unset';
  indicator.title = 'Tokens are kept in this browser (localStorage); change them in Settings';
  fill(indicator,
    h('span', { class: ['tok', admin ? 'tok-on' : 'tok-off'] }, h('span', { class: 'dot' }), admin ? 'admin token' : 'no admin token'),
    h('span', { class: ['tok', trigger ? 'tok-on' : 'tok-off'] }, h('span', { class: 'dot' }), trigger ? 'trigger token' : 'no trigger token'));
}

function crumbs(route, params) {
  const el = document.querySelector('[data-testid="crumbs"]');
  const parts = [h('a', { href: `#/${route.nav}` }, NAV.find((n) => n.id === route.nav)?.label || route.title)];
  if (params[0]) parts.push(h('span', { class: 'sep' }, '/'), h('span', { class: 'mono' }, params[0]));
  fill(el, parts);
  document.title = params[0] ? `${params[0]} · ${route.title} · flowhost` : `${route.title} · flowhost`;
}

function resolve() {
  const { path, query } = currentRoute();
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (m) {
      let params = m.slice(1);
      try {
        params = params.map((p) => decodeURIComponent(p));
      } catch {
        // keep it raw
      }
      return { route, params, query, key: `${route.name}:${params.join('/')}` };
    }
  }
  return null;
}

function navigate() {
  const found = resolve();
  if (!found) {
    location.replace('#/runs');
    return;
  }
  const { route, params, query, key } = found;
  for (const [id, link] of navLinks) link.classList.toggle('active', id === route.nav);
  if (current && current.key === key && current.handle && typeof current.handle.update === 'function') {
    try {
      current.handle.update(query);
    } catch (error) {
      report(error);
    }
    return;
  }
  if (current && current.handle && typeof current.handle.cleanup === 'function') {
    try {
      current.handle.cleanup();
    } catch (error) {
      report(error);
    }
  }
  crumbs(route, params);
  main.replaceChildren();
  main.dataset.page = route.name;
  main.scrollTop = 0;
  let handle = null;
  try {
    handle = route.page.render(main, { params, query, route: route.name, detail: Boolean(route.detail) }) || null;
  } catch (error) {
    report(error);
    fill(main, failure(error));
  }
  current = { key, handle };
}

function report(error) {
  // Shown, never thrown: the console keeps working.
  const bar = document.querySelector('[data-testid="fatal"]') || document.body.appendChild(h('div', { class: 'fatal', testid: 'fatal' }));
  bar.textContent = `Console error: ${errorLine(error)}`;
}

// Reported on the page too (the browser still logs it, so that nothing hides a bug).
window.addEventListener('unhandledrejection', (event) => report(event.reason));
window.addEventListener('error', (event) => report(event.error || event.message));

window.addEventListener('hashchange', navigate);
window.addEventListener('flowhost:tokens', renderIndicator);
window.addEventListener('storage', renderIndicator);

async function hostVersion() {
  try {
    const { data } = await healthz();
    const el = document.querySelector('[data-testid="host-version"]');
    if (el && data && data.version) el.textContent = `flowhost ${data.version}`;
  } catch {
    // the pages say what is wrong
  }
}

layout();
navigate();
hostVersion();
