// #/events: the subscriptions with their backlog (polled), the dead letters with paging and
// a redeliver button each, and a form to publish an event.

import * as api from './api.js';
import {
  h, fill, when, message, loading, empty, failure, header, card, field, button, poller, parseJson, json, tag, plural, thead,
} from './ui.js';

export function render(root) {
  let disposed = false;
  let subsKey = '';
  let cursor = '';

  // --- subscriptions -------------------------------------------------------------------
  const subsHost = h('div', { testid: 'subscriptions-host' }, loading('Loading subscriptions…'));

  async function loadSubscriptions(quiet) {
    try {
      const { data } = await api.subscriptions();
      if (disposed) return;
      const key = JSON.stringify(data);
      if (quiet && key === subsKey) return;
      subsKey = key;
      if (!data.subscriptions.length) {
        fill(subsHost, empty('No subscription', 'subscriptions-empty'));
        return;
      }
      fill(subsHost, h('div', { class: 'table-wrap' }, h('table', { class: 'grid', testid: 'subscriptions-table' },
        thead(['Subscription', 'Topic', 'Kind', 'Target', ['Attempts', 'num'], ['Concurrency', 'num'], ['Backlog', 'num']]),
        h('tbody', null, data.subscriptions.map((s) => h('tr', { testid: 'subscription-row', dataset: { name: s.name, kind: s.kind, backlog: s.backlog ?? '' } },
          h('td', { class: 'mono strong' }, s.name),
          h('td', { class: 'mono' }, s.topic),
          h('td', null, tag(s.kind, `kind-tag-${s.kind}`)),
          h('td', null, s.target
            ? h('a', { href: s.kind === 'handler' ? `#/plugins/${encodeURIComponent(s.target)}` : `#/workflows/${encodeURIComponent(s.target)}`, class: 'mono' }, s.target)
            : h('span', { class: 'muted' }, 'waiting runs')),
          h('td', { class: 'num' }, s.attempts),
          h('td', { class: 'num' }, s.concurrency),
          h('td', { class: 'num', testid: 'subscription-backlog' }, s.backlog !== null && s.backlog !== undefined
            ? h('span', { class: s.backlog > 0 ? 'backlog-busy' : '' }, String(s.backlog))
            : h('span', { class: 'err-text', title: s.backlog_error || '' }, `unknown: ${s.backlog_error || 'the transport did not say'}`))))))));
    } catch (error) {
      if (!disposed && !quiet) fill(subsHost, failure(error, 'subscriptions-error'));
    }
  }

  // --- dead letters --------------------------------------------------------------------
  const dlHost = h('div', { testid: 'dead-letters-host' });
  const dlMsg = message('dead-letters-result');
  const newer = button('⇤ Newest', { testid: 'dead-letters-newest', onclick: () => { cursor = ''; loadDeadLetters(); } }, 'ghost');
  const older = button('Older →', { testid: 'dead-letters-older', onclick: () => { cursor = older.dataset.cursor; loadDeadLetters(); } });
  const dlInfo = h('span', { class: 'muted small', testid: 'dead-letters-count' });

  async function redeliver(letter, rowEl, btn) {
    dlMsg.clear();
    btn.disabled = true;
    try {
      const { status } = await api.redeliver(letter.id);
      dlMsg.dataset.status = String(status);
      dlMsg.show('ok', `${status} Accepted: dead letter ${letter.id} is queued again for ${letter.subscription} with fresh attempts`);
      const body = rowEl.parentElement;
      rowEl.remove();
      if (body) dlInfo.textContent = `${plural(body.children.length, 'dead letter')} on this page`;
      setTimeout(() => { if (!disposed) loadDeadLetters(true); }, 300);
    } catch (error) {
      dlMsg.dataset.status = String(error.status || 0);
      dlMsg.error(error);
      btn.disabled = false;
    }
  }

  async function loadDeadLetters(quiet) {
    if (!quiet) fill(dlHost, loading('Loading dead letters…'));
    try {
      const { data } = await api.deadLetters(cursor);
      if (disposed) return;
      older.disabled = !data.next_cursor;
      older.dataset.cursor = data.next_cursor || '';
      newer.disabled = !cursor;
      dlInfo.textContent = `${plural(data.dead_letters.length, 'dead letter')} on this page${data.next_cursor ? ', more older' : ''}`;
      if (!data.dead_letters.length) {
        fill(dlHost, empty(cursor ? 'No older dead letter' : 'No dead letter: every delivery succeeded or is still being retried', 'dead-letters-empty'));
        return;
      }
      fill(dlHost, h('div', { class: 'table-wrap' }, h('table', { class: 'grid', testid: 'dead-letters-table' },
        thead(['Dead letter', 'Subscription', 'Event', ['Attempts', 'num'], 'Error', 'Given up', '']),
        h('tbody', null, data.dead_letters.map((d) => {
          const btn = button('Redeliver', { testid: 'dead-letter-redeliver', dataset: { id: d.id } }, 'primary');
          const tr = h('tr', { testid: 'dead-letter-row', dataset: { id: d.id, subscription: d.subscription } },
            h('td', { class: 'mono nowrap' }, d.id),
            h('td', { class: 'mono nowrap' }, d.subscription),
            h('td', null, h('details', { class: 'inline-json', testid: 'dead-letter-event' },
              h('summary', null, h('span', { class: 'mono strong' }, d.event?.type || '?')),
              json(d.event)),
            h('span', { class: 'mono muted small dl-event', title: 'event id' }, d.event?.id || '')),
            h('td', { class: 'num' }, d.attempts),
            h('td', { class: 'err-cell' }, h('span', { class: 'err-text', title: d.error }, d.error)),
            h('td', null, when(d.dead_at)),
            h('td', null, btn));
          btn.addEventListener('click', () => redeliver(d, tr, btn));
          return tr;
        })))));
    } catch (error) {
      if (!disposed) fill(dlHost, failure(error, 'dead-letters-error'));
    }
  }

  // --- publish -------------------------------------------------------------------------
  const topic = h('input', { type: 'text', testid: 'publish-topic', placeholder: 'order.placed', class: 'mono', autocomplete: 'off', spellcheck: 'false', required: true });
  const data = h('textarea', { testid: 'publish-data', rows: 1, class: 'code', spellcheck: 'false' });
  data.value = '{}';
  const pubMsg = message('publish-result');
  const pubBtn = button('Publish', { type: 'submit', testid: 'publish-submit' }, 'primary');
  const publishForm = h('form', {
    class: 'form',
    onsubmit: async (event) => {
      event.preventDefault();
      pubMsg.clear();
      const t = topic.value.trim();
      if (!t) {
        pubMsg.show('error', 'Name the topic');
        return;
      }
      const parsed = parseJson(data.value, 'The data');
      if (!parsed.ok) {
        pubMsg.show('error', parsed.error);
        return;
      }
      pubBtn.disabled = true;
      try {
        const { status, data: answer } = await api.publish(t, data.value);
        pubMsg.dataset.status = String(status);
        fill(pubMsg, `${status} Accepted: event `, h('span', { class: 'mono', testid: 'publish-event-id' }, answer.id), ` on ${answer.topic} is durable`);
        pubMsg.className = 'msg msg-ok';
        setTimeout(() => { if (!disposed) loadSubscriptions(true); }, 300);
      } catch (error) {
        pubMsg.dataset.status = String(error.status || 0);
        pubMsg.error(error);
      } finally {
        pubBtn.disabled = false;
      }
    },
  }, h('div', { class: 'publish-row' }, field('Topic', topic), field('Data (JSON)', data), pubBtn), pubMsg);

  fill(root,
    header('Events', button('Refresh', { testid: 'events-refresh', onclick: () => { loadSubscriptions(false); loadDeadLetters(); } }, 'ghost')),
    card('Subscriptions', { testid: 'subscriptions' }, subsHost),
    card('Publish an event', { testid: 'publish' }, publishForm),
    card('Dead letters', { testid: 'dead-letters', tools: h('div', { class: 'pager' }, dlInfo, newer, older) }, dlMsg, dlHost));
  loadSubscriptions(false);
  loadDeadLetters();
  const poll = poller(() => loadSubscriptions(true), 2000);
  return {
    cleanup() {
      disposed = true;
      poll.stop();
    },
  };
}
