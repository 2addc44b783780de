// Persistent subscriptions of the current store (PSUB LIST), with checkpoint, lag and parked
// count; a subscription's parked events (PSUB PARKED), and replaying them (PSUB REPLAY, over
// the writable connection: it changes the subscription's stored state).

import { arg } from './client.js';
import { $, clear, describeError, formatTime, h, say, show } from './dom.js';
import { EventTable, parseRecords, summary } from './events.js';
import { compactText, num, parseJson, str } from './json.js';

/** Parked events asked for per PSUB PARKED request. */
export const PARKED_PAGE = 50;
/** How often the list is read again while the tab is shown (checkpoints and lag move). */
export const REFRESH_INTERVAL_MS = 2_000;

let ctx = null;
let parkedTable = null;
let selected = null; // name of the subscription whose parked events are shown
let parkedCount = 0;
let nextParked = null; // position to continue parked events from
let shownParked = null; // "<name> <count>" of the parked events listed, to reload on change
let timer = null;

export function init(context) {
  ctx = context;
  parkedTable = new EventTable($('parked-table').tBodies[0], $('parked-detail'),
    ['position', 'stream', 'version', 'type', 'time']);
  $('psubs-refresh').addEventListener('click', () => refresh());
  $('parked-more').addEventListener('click', () => loadParked(false));
  $('parked-replay').addEventListener('click', () => replay());
  ctx.events.addEventListener('writes', renderReplay);
  ctx.events.addEventListener('store', () => {
    selected = null;
    shownParked = null;
    show($('parked-panel'), false);
    if (ctx.tab === 'psubs') refresh();
  });
  ctx.events.addEventListener('connected', () => { if (ctx.tab === 'psubs') refresh(); });
}

export function activate(param) {
  if (param) selected = param;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_INTERVAL_MS);
}

export function deactivate() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  const note = $('psubs-note');
  if (!ctx.client) return say(note, 'not connected', true);
  try {
    const [list, stats] = await Promise.all([
      ctx.client.request('PSUB LIST'),
      ctx.client.request('STATS'),
    ]);
    const lastPosition = JSON.parse(stats.body).stores?.[ctx.store]?.last_position ?? -1;
    const subs = parseJson(list.body);
    const tbody = clear($('psubs-table').tBodies[0]);
    for (const sub of subs) tbody.append(row(sub, lastPosition));
    say(note, subs.length
      ? `${subs.length} persistent subscription(s); lag: positions of $all after the checkpoint `
        + `(head ${lastPosition}), at most the events still to deliver`
      : `no persistent subscriptions in store ${ctx.store}`);
    const current = subs.find((sub) => str(sub.get('name')) === selected);
    if (current) openParked(current);
    else {
      shownParked = null;
      show($('parked-panel'), false);
    }
  } catch (error) {
    say(note, describeError(error), true);
  }
}

function row(sub, lastPosition) {
  const name = str(sub.get('name'));
  const checkpoint = num(sub.get('checkpoint'));
  const parked = num(sub.get('parked'));
  const options = sub.get('options');
  const selector = sub.get('selector');
  const lag = Math.max(0, lastPosition + 1 - checkpoint);
  const optionText = options
    ? `start ${compactText(options.get('start'))}, in flight ≤ ${options.get('max_in_flight')}, `
      + `ack ${options.get('ack_timeout_ms')} ms, retries ${options.get('max_retries')}`
    : '';
  const tr = h('tr', { class: `clickable${name === selected ? ' selected' : ''}`, 'data-name': name },
    h('td', { class: 'id' }, name),
    h('td', {}, str(sub.get('type'))),
    h('td', { class: 'id' }, typeof selector === 'string' ? selector : compactText(selector)),
    h('td', { class: 'num' }, String(checkpoint)),
    h('td', { class: 'num lag' }, String(lag)),
    h('td', { class: `num parked${parked > 0 ? ' warn' : ''}` }, String(parked)),
    h('td', { class: 'small' }, optionText),
    h('td', { class: 'time' }, formatTime(num(sub.get('created_epoch_us')))));
  tr.addEventListener('click', () => {
    for (const other of tr.parentNode.rows) other.classList.remove('selected');
    tr.classList.add('selected');
    say($('parked-result'), '');
    location.hash = `#/psubs/${encodeURIComponent(name)}`;
  });
  return tr;
}

/** Shows the parked events of `sub`, read again only when their count changed. */
function openParked(sub) {
  selected = str(sub.get('name'));
  parkedCount = num(sub.get('parked'));
  $('parked-name').textContent = `${selected} (${parkedCount})`;
  show($('parked-panel'), true);
  renderReplay();
  const key = `${selected} ${parkedCount}`;
  if (key === shownParked) return;
  shownParked = key;
  loadParked(true);
}

async function loadParked(fromStart) {
  if (!selected || !ctx.client) return;
  if (fromStart) {
    nextParked = 0;
    parkedTable.reset();
  }
  try {
    const reply = await ctx.client.request(`PSUB PARKED ${arg(selected, 'name')} ${nextParked} ${PARKED_PAGE}`);
    const records = parseRecords(reply.body);
    for (const record of records) parkedTable.tbody.append(parkedTable.row(record));
    if (records.length) nextParked = summary(records[records.length - 1]).position + 1;
    show($('parked-more'), records.length === PARKED_PAGE);
    if (parkedTable.tbody.rows.length === 0) {
      clear($('parked-detail')).append(h('p', { class: 'muted' }, 'No parked events.'));
    }
  } catch (error) {
    say($('parked-result'), describeError(error), true);
  }
}

function renderReplay() {
  const button = $('parked-replay');
  button.disabled = !ctx.writer || parkedCount === 0;
  button.title = ctx.writer ? 'deliver every parked event again'
    : 'replaying changes the subscription: turn on writes (server flag --console-writes)';
}

async function replay() {
  const result = $('parked-result');
  if (!ctx.writer || !selected) return say(result, 'writes are off', true);
  try {
    await ctx.writer.request(`PSUB REPLAY ${arg(selected, 'name')}`);
    say(result, `replayed the parked events of ${selected}`);
    await refresh();
  } catch (error) {
    say(result, describeError(error), true);
  }
}
