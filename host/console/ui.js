// Shared pieces of the console's pages: an element builder, status chips, times, JSON,
// messages and a poller. No inline styles anywhere: everything is a class of style.css.

import { errorLine } from './api.js';

/**
 * An element: `h('a', {href, class, testid, onclick, dataset}, ...children)`. Children are
 * nodes, strings (as text) or arrays of those; null, undefined and false are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
      else if (key === 'testid') el.setAttribute('data-testid', value);
      else if (key === 'dataset') for (const [k, v] of Object.entries(value)) { if (v !== undefined && v !== null) el.dataset[k] = String(v); }
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'value' && 'value' in el) el.value = value;
      else if (key === 'checked' || key === 'selected' || key === 'disabled' || key === 'open') el[key] = Boolean(value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces `el`'s children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Every run status, in lifecycle order. */
export const RUN_STATUSES = [
  'pending', 'running', 'completed', 'compensating', 'compensated', 'compensation_failed', 'failed', 'cancelled',
];

/** Statuses a run does not leave by itself. */
export const TERMINAL = new Set(['completed', 'compensated', 'compensation_failed', 'failed', 'cancelled']);

/** A coloured status chip. */
export function chip(status, testid) {
  const value = status || 'unknown';
  return h('span', { class: ['chip', `chip-${value}`], testid, dataset: { status: value } }, value.replace(/_/g, ' '));
}

/** A small neutral tag. */
export const tag = (text, cls) => h('span', { class: ['tag', cls] }, text);

/** The first 12 hex digits of a SHA-256. */
export const short = (digest) => (digest ? String(digest).slice(0, 12) : '');

/** A short digest in monospace (the full one in `data-digest` and the tooltip). */
export function digest(value, attrs = {}) {
  return h('span', { class: 'mono digest', title: value || '', dataset: { digest: value || '' }, ...attrs }, short(value) || '—');
}

/** `n` with its unit, singular or plural. */
export const plural = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;

function pad(n, width = 2) {
  return String(n).padStart(width, '0');
}

/** The local time of `date`: `21:45:53`, with the date when it is not today. */
export function absolute(date, { ms = false } = {}) {
  const d = date instanceof Date ? date : new Date(date);
  if (Number.isNaN(d.getTime())) return '';
  const now = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${ms ? `.${pad(d.getMilliseconds(), 3)}` : ''}`;
  const sameDay = d.toDateString() === now.toDateString();
  return sameDay ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** `3m ago`, `in 59m`, `just now`. */
export function relative(date, now = Date.now()) {
  const t = date instanceof Date ? date.getTime() : new Date(date).getTime();
  if (Number.isNaN(t)) return '';
  const delta = t - now;
  const abs = Math.abs(delta);
  if (abs < 1500) return 'just now';
  let text;
  if (abs < 60_000) text = `${Math.round(abs / 1000)}s`;
  else if (abs < 3_600_000) text = `${Math.floor(abs / 60_000)}m`;
  else if (abs < 86_400_000) text = `${Math.floor(abs / 3_600_000)}h ${Math.floor((abs % 3_600_000) / 60_000)}m`;
  else text = `${Math.floor(abs / 86_400_000)}d ${Math.floor((abs % 86_400_000) / 3_600_000)}h`;
  return delta < 0 ? `${text} ago` : `in ${text}`;
}

/** A time: absolute and relative, the ISO form in the tooltip. */
export function when(value, testid) {
  if (!value) return h('span', { class: 'muted', testid }, '—');
  const d = new Date(typeof value === 'number' ? value : value);
  return h('time', { class: 'when', datetime: d.toISOString(), title: d.toISOString(), testid },
    h('span', { class: 'abs' }, absolute(d)), ' ', h('span', { class: 'rel' }, relative(d)));
}

/** `850 ms`, `1.25 s`, `3m 4s`, `2h 5m`. */
export function duration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '';
  if (ms < 1) return '<1 ms';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m ${Math.round((ms % 60_000) / 1000)}s`;
  return `${Math.floor(ms / 3_600_000)}h ${Math.round((ms % 3_600_000) / 60_000)}m`;
}

/** `136 KiB`. */
export function bytes(n) {
  if (n === undefined || n === null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Pretty JSON, its keys, strings and numbers coloured by class. */
export function json(value, attrs = {}) {
  const text = JSON.stringify(value, null, 2) ?? 'undefined';
  const pre = h('pre', { class: 'json', ...attrs });
  const token = /("(?:[^"\\]|\\.)*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const match of text.matchAll(token)) {
    if (match.index > last) pre.appendChild(document.createTextNode(text.slice(last, match.index)));
    if (match[1] && match[2]) {
      pre.appendChild(h('span', { class: 'j-key' }, match[1]));
      pre.appendChild(document.createTextNode(match[2]));
    } else if (match[1]) pre.appendChild(h('span', { class: 'j-str' }, match[1]));
    else if (match[3]) pre.appendChild(h('span', { class: 'j-lit' }, match[3]));
    else pre.appendChild(h('span', { class: 'j-num' }, match[4]));
    last = match.index + match[0].length;
  }
  if (last < text.length) pre.appendChild(document.createTextNode(text.slice(last)));
  return pre;
}

/** A message line: `kind` is 'ok', 'error', 'info' or 'warn'; hidden when `text` is empty. */
export function message(testid) {
  const el = h('div', { class: 'msg hidden', testid, role: 'status' });
  el.show = (kind, text) => {
    el.className = `msg msg-${kind}`;
    el.dataset.kind = kind;
    el.textContent = text;
  };
  el.error = (error) => el.show('error', errorLine(error));
  el.clear = () => {
    el.className = 'msg hidden';
    delete el.dataset.kind;
    el.textContent = '';
  };
  return el;
}

/** A loading placeholder. */
export const loading = (what = 'Loading…', testid = 'loading') => h('div', { class: 'state state-loading', testid }, h('span', { class: 'spinner' }), what);

/** An empty state. */
export const empty = (text, testid) => h('div', { class: 'state state-empty', testid }, text);

/** An error state for a whole panel. */
export const failure = (error, testid = 'error') => h('div', { class: 'state state-error', testid }, errorLine(error));

/** A page header: title, then anything on the right. */
export function header(title, ...right) {
  return h('div', { class: 'page-head' }, h('h1', { testid: 'page-title' }, title), h('div', { class: 'page-tools' }, right));
}

/** A card: a titled panel. */
export function card(title, attrs = {}, ...children) {
  return h('section', { class: ['card', attrs.class], testid: attrs.testid },
    title ? h('header', { class: 'card-head' }, h('h2', null, title), attrs.tools || null) : null,
    h('div', { class: 'card-body' }, children));
}

/** A label and its field. */
export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), input, hint ? h('span', { class: 'field-hint' }, hint) : null);
}

/** A button; `kind`: 'primary', 'danger', 'ghost' or none. */
export function button(text, attrs = {}, kind) {
  const { class: cls, ...rest } = attrs;
  return h('button', { type: 'button', ...rest, class: ['btn', kind && `btn-${kind}`, cls] }, text);
}

/**
 * Runs `tick` every `ms` while the page is visible, never two at once; `stop()` ends it.
 * A tick that throws is reported to `onError` and the poll goes on.
 */
export function poller(tick, ms, onError) {
  let timer = null;
  let busy = false;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    if (document.visibilityState === 'visible' && !busy) {
      busy = true;
      try {
        await tick();
      } catch (error) {
        if (onError) onError(error);
      } finally {
        busy = false;
      }
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  const onVisible = () => {
    if (document.visibilityState === 'visible' && !stopped && !busy) {
      if (timer) clearTimeout(timer);
      run();
    }
  };
  document.addEventListener('visibilitychange', onVisible);
  timer = setTimeout(run, ms);
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
    },
  };
}

/** Parses JSON text; an error says where it broke. */
export function parseJson(text, what = 'JSON') {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: `${what} is not valid JSON: ${error.message}` };
  }
}

/** `#/path?query` of the current location. */
export function currentRoute() {
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const [path, search = ''] = raw.split('?');
  return { path: path || '/runs', query: new URLSearchParams(search) };
}

/** Goes to `#path` with `query` (an object or URLSearchParams); `replace` keeps history short. */
export function go(path, query, { replace = false } = {}) {
  let search = '';
  if (query) {
    const params = query instanceof URLSearchParams ? query : new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ''));
    search = params.toString();
  }
  const hash = `#${path}${search ? `?${search}` : ''}`;
  if (location.hash === hash) return false;
  if (replace) {
    history.replaceState(null, '', hash);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
  return true;
}

/** A link to a run. */
export const runLink = (id, attrs = {}) => h('a', { href: `#/runs/${encodeURIComponent(id)}`, class: 'mono', title: id, ...attrs }, id);

const ICONS = {
  copy: ['M5.5 5.5h7v7h-7z', 'M3.5 10.5v-7h7'],
  check: ['M3 8.5l3 3 7-7'],
  plugin: ['M8 2.5l5.5 5.5-5.5 5.5-5.5-5.5z'],
  sleep: ['M8 2.5a5.5 5.5 0 1 0 0 11a5.5 5.5 0 1 0 0-11', 'M8 5v3.2l2.2 1.4'],
  await: ['M2.5 4.5h11v7h-11z', 'M2.5 4.5l5.5 4 5.5-4'],
  parallel: ['M2 8h3.5', 'M5.5 8c1.5 0 2-4 4-4h4', 'M5.5 8c1.5 0 2 4 4 4h4'],
  workflow: ['M4 2.5v5a2 2 0 0 0 2 2h7', 'M10.5 7l2.5 2.5-2.5 2.5'],
  branch: ['M4.5 2.5v11', 'M4.5 9c0-2.5 7-2 7-5.5'],
  unknown: ['M8 7.5v.01'],
};

/** A small line icon (SVG, so that no font is needed). */
export function icon(name, cls) {
  const svg = h('svg:svg', { class: ['icon', cls], viewBox: '0 0 16 16', 'aria-hidden': 'true' });
  for (const d of ICONS[name] || ICONS.unknown) svg.appendChild(h('svg:path', { d }));
  return svg;
}

/** Copies `text` to the clipboard, quietly. */
export function copyButton(text) {
  const btn = h('button', {
    type: 'button', class: 'btn btn-icon', title: 'Copy', 'aria-label': 'Copy',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        fill(btn, icon('check'));
      } catch {
        btn.title = 'Copy failed: select the text instead';
      }
      setTimeout(() => fill(btn, icon('copy')), 1200);
    },
  }, icon('copy'));
  return btn;
}

/** A table head: each column a label, or [label, 'num'] for a right-aligned one. */
export function thead(columns) {
  return h('thead', null, h('tr', null, columns.map((c) => (Array.isArray(c) ? h('th', { class: c[1] }, c[0]) : h('th', null, c)))));
}

/** `<input type=datetime-local>` value (local time) of an RFC 3339 time, and back. */
export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}
