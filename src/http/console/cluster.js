// Cluster members: a placeholder until esdb runs as a cluster. It shows this node, and any
// cluster facts the server adds to INFO or /stats later (a `cluster` or `raft` field) as is.

import { $, clear, h } from './dom.js';
import { prettyNode } from './json.js';

let ctx = null;

export function init(context) {
  ctx = context;
  ctx.events.addEventListener('connected', render);
}

export function activate() {
  render();
  refreshStats();
}

function render() {
  const info = ctx.info ?? {};
  const mode = ctx.config?.cluster?.mode ?? 'single_node';
  $('cluster-mode').textContent = mode === 'single_node' ? 'single node' : mode;
  const rows = [
    ['server id', info.server_id],
    ['version', info.version ?? ctx.config?.version],
    ['protocol', info.proto],
    ['http address', location.host],
    ['stores', (info.stores ?? ctx.config?.stores ?? []).join(', ')],
    ['connection store', ctx.store],
  ];
  const tbody = clear($('cluster-node').tBodies[0]);
  for (const [name, value] of rows) {
    tbody.append(h('tr', {}, h('th', {}, name), h('td', {}, value === undefined ? '–' : String(value))));
  }
  renderExtra('INFO', info);
}

async function refreshStats() {
  try {
    const response = await fetch('/stats', { cache: 'no-store' });
    if (response.ok) renderExtra('/stats', await response.json());
  } catch {
    // The overview reports /stats failures.
  }
}

function renderExtra(source, object) {
  const extra = $('cluster-extra');
  for (const key of ['cluster', 'raft']) {
    if (object && object[key] !== undefined) {
      clear(extra).append(h('h3', {}, `${key} (from ${source})`), prettyNode(object[key]));
    }
  }
}
