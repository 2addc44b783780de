// The console's shell: connection, store, the writes switch, and the tabs (`#/<tab>/<arg>`).
//
// Every section reads over one WebSocket opened with `?readonly=1`, so the server refuses its
// writes whatever the page does. Only when the server allows console writes
// (`--console-writes`, learnt from /console/config) and the user turns the switch on does the
// page open a second, writable connection, used for appends and replays alone.

import { arg, EsdbClient, wsUrl } from './client.js';
import { $, describeError, show } from './dom.js';
import * as cluster from './cluster.js';
import * as overview from './overview.js';
import * as psubs from './psubs.js';
import * as snapshots from './snapshots.js';
import * as streams from './streams.js';
import * as tail from './tail.js';

const SECTIONS = { overview, tail, streams, psubs, snapshots, cluster };
/** Pause before reconnecting after the connection dropped, and how often to try. */
const RECONNECT_DELAY_MS = 2_000;
const MAX_RECONNECT_ATTEMPTS = 30;

/** What the sections share. `events` fires `store`, `writes` and `connected`. */
const ctx = {
  config: null,
  info: null,
  store: null,
  /** The read-only connection. */
  client: null,
  /** The writable connection, while writes are on; else null. */
  writer: null,
  events: new EventTarget(),
  /** The tab shown, and its argument (`#/streams/user-1` → `streams`, `user-1`). */
  tab: null,
  navigate(tab, param = '') {
    const hash = `#/${tab}${param ? `/${encodeURIComponent(param)}` : ''}`;
    if (location.hash !== hash) location.hash = hash;
    else route();
  },
};
// For the browser's devtools (and the console's browser test): the live connections.
window.esdbConsole = ctx;

function emit(name) {
  ctx.events.dispatchEvent(new Event(name));
}

function banner(message) {
  const node = $('banner');
  node.textContent = message;
  show(node, Boolean(message));
}

function setStatus(state, text) {
  const badge = $('conn-status');
  badge.dataset.state = state;
  badge.textContent = text;
}

async function connect(attempt = 0) {
  setStatus('connecting', attempt ? `reconnecting (${attempt})…` : 'connecting…');
  try {
    const client = await EsdbClient.connect(wsUrl(false), { onClose: disconnected });
    ctx.client = client;
    ctx.info = client.info;
    if (ctx.store && ctx.store !== client.info.store) await client.request(`USE ${arg(ctx.store)}`);
    ctx.store = ctx.store ?? client.info.store;
    setStatus('connected', 'connected');
    banner('');
    emit('connected');
  } catch (error) {
    if (attempt + 1 >= MAX_RECONNECT_ATTEMPTS) {
      setStatus('closed', 'disconnected');
      banner(`Cannot connect to the server: ${describeError(error)}. Reload the page to retry.`);
      return;
    }
    setTimeout(() => connect(attempt + 1), RECONNECT_DELAY_MS);
  }
}

function disconnected(reason) {
  ctx.client = null;
  setStatus('closed', 'disconnected');
  banner(`Connection lost (${describeError(reason)}); reconnecting…`);
  setWrites(false);
  setTimeout(() => connect(1), RECONNECT_DELAY_MS);
}

function renderMode() {
  const on = ctx.writer !== null;
  const badge = $('mode-badge');
  badge.textContent = on ? 'writes on' : 'read-only';
  badge.dataset.state = on ? 'writes' : 'readonly';
}

async function setWrites(on) {
  const toggle = $('writes-toggle');
  if (!on) {
    ctx.writer?.close();
    ctx.writer = null;
    toggle.checked = false;
  } else if (!ctx.writer) {
    try {
      const writer = await EsdbClient.connect(wsUrl(true), {
        onClose: () => { if (ctx.writer === writer) setWrites(false); },
      });
      if (ctx.store !== writer.info.store) await writer.request(`USE ${arg(ctx.store)}`);
      ctx.writer = writer;
    } catch (error) {
      toggle.checked = false;
      banner(`Could not open a writable connection: ${describeError(error)}`);
    }
  }
  renderMode();
  emit('writes');
}

async function changeStore(store) {
  ctx.store = store;
  try {
    await ctx.client?.request(`USE ${arg(store, 'store')}`);
    await ctx.writer?.request(`USE ${arg(store, 'store')}`);
  } catch (error) {
    banner(`USE ${store} failed: ${describeError(error)}`);
  }
  emit('store');
}

function route() {
  const [, tab = 'overview', ...rest] = location.hash.split('/');
  const name = SECTIONS[tab] ? tab : 'overview';
  const param = rest.length ? decodeURIComponent(rest.join('/')) : '';
  if (ctx.tab !== name) SECTIONS[ctx.tab]?.deactivate?.();
  ctx.tab = name;
  for (const section of document.querySelectorAll('section.tab')) {
    show(section, section.dataset.tab === name);
  }
  for (const link of document.querySelectorAll('#tabs a')) {
    link.classList.toggle('active', link.dataset.tab === name);
  }
  SECTIONS[name].activate?.(param);
}

async function boot() {
  try {
    const response = await fetch('/console/config', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    ctx.config = await response.json();
  } catch (error) {
    banner(`Cannot read /console/config: ${describeError(error)}`);
    return;
  }
  const select = $('store-select');
  for (const store of ctx.config.stores) select.append(new Option(store, store));
  select.value = ctx.config.store;
  ctx.store = ctx.config.store;
  select.addEventListener('change', () => changeStore(select.value));

  const toggle = $('writes-toggle');
  const label = $('writes-label');
  toggle.disabled = !ctx.config.writes;
  label.title = ctx.config.writes
    ? 'allow this page to append events and replay parked events'
    : 'the server does not allow writes from the console (start it with --console-writes)';
  toggle.addEventListener('change', () => setWrites(toggle.checked));
  renderMode();

  for (const section of Object.values(SECTIONS)) section.init(ctx);
  window.addEventListener('hashchange', route);
  await connect();
  route();
}

boot();
