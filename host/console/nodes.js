// #/nodes: the nodes sharing the store (polled): lease, runs owned, last heartbeat. One node
// on sled; every node of the cluster on PostgreSQL.

import * as api from './api.js';
import {
  h, fill, when, loading, empty, failure, header, card, button, poller, tag, thead,
} from './ui.js';

export function render(root) {
  let disposed = false;
  let key = '';
  const host = h('div', { testid: 'nodes-host' }, loading('Loading nodes…'));

  async function load(quiet) {
    try {
      const { data } = await api.nodes();
      if (disposed) return;
      const next = JSON.stringify(data);
      if (quiet && next === key) return;
      key = next;
      if (!data.nodes.length) {
        fill(host, empty('No node has registered', 'nodes-empty'));
        return;
      }
      fill(host, h('div', { class: 'table-wrap' }, h('table', { class: 'grid', testid: 'nodes-table' },
        thead(['Node', 'Address', 'Version', 'Lease', ['Runs owned', 'num'], 'Last heartbeat', 'Lease ends', 'Started']),
        h('tbody', null, data.nodes.map((n) => h('tr', {
          testid: 'node-row',
          dataset: { id: n.id, live: String(n.live), runs: String(n.runs), this: String(n.this) },
        },
          h('td', { class: 'mono strong' }, n.id, n.this ? h('span', { class: 'muted small' }, ' (this node)') : null),
          h('td', { class: 'mono' }, n.address),
          h('td', { class: 'mono' }, n.version),
          h('td', { testid: 'node-lease' }, tag(n.live ? 'live' : 'expired', n.live ? 'lease-live' : 'lease-expired')),
          h('td', { class: 'num', testid: 'node-runs' }, String(n.runs)),
          h('td', null, when(n.heartbeat_at)),
          h('td', null, when(n.expires_at)),
          h('td', null, when(n.started_at))))))));
    } catch (error) {
      if (!disposed && !quiet) fill(host, failure(error, 'nodes-error'));
    }
  }

  fill(root,
    header('Nodes', button('Refresh', { testid: 'nodes-refresh', onclick: () => load(false) }, 'ghost')),
    card('Nodes sharing the store', { testid: 'nodes' }, host));
  load(false);
  const poll = poller(() => load(true), 2000);
  return {
    cleanup() {
      disposed = true;
      poll.stop();
    },
  };
}
