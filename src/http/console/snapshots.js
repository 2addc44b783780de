// Snapshots of a stream (SNAP LIST), in ascending version order, each opened in full.

import { arg } from './client.js';
import { $, clear, describeError, formatTime, h, say, show } from './dom.js';
import { compactText, JsonObject, num, parseJson, prettyNode } from './json.js';

/** Snapshots asked for per SNAP LIST request (the server's maximum is 1000). */
export const SNAPSHOTS_PAGE = 100;

let ctx = null;
let stream = null;
let nextVersion = 0;

export function init(context) {
  ctx = context;
  $('snapshots-form').addEventListener('submit', (event) => {
    event.preventDefault();
    list($('snapshots-stream').value.trim(), true);
  });
  $('snapshots-more').addEventListener('click', () => list(stream, false));
  ctx.events.addEventListener('store', () => {
    if (stream && ctx.tab === 'snapshots') list(stream, true);
  });
}

export function activate(param) {
  if (param && param !== stream) {
    $('snapshots-stream').value = param;
    list(param, true);
  }
}

async function list(id, fromStart) {
  const note = $('snapshots-note');
  const tbody = $('snapshots-table').tBodies[0];
  if (!ctx.client) return say(note, 'not connected', true);
  if (fromStart) {
    stream = id;
    nextVersion = 0;
    clear(tbody);
    clear($('snapshots-detail')).append(h('p', { class: 'muted' }, 'Select a snapshot to see it.'));
  }
  try {
    const reply = await ctx.client.request(
      `SNAP LIST ${arg(id, 'stream id')} ${nextVersion} ${SNAPSHOTS_PAGE}`);
    const records = parseJson(reply.body);
    for (const record of records) tbody.append(row(record));
    if (records.length) nextVersion = num(records[records.length - 1].get('version')) + 1;
    show($('snapshots-more'), records.length === SNAPSHOTS_PAGE);
    say(note, tbody.rows.length ? `${tbody.rows.length} snapshot(s) of ${id}` : `no snapshots of ${id}`);
  } catch (error) {
    show($('snapshots-more'), false);
    say(note, describeError(error), true);
  }
}

function row(record) {
  const data = record.get('data');
  // The size as stored: an object's own text; other values as they print compactly.
  const dataText = data instanceof JsonObject ? data.source : compactText(data);
  const tr = h('tr', { class: 'clickable' },
    h('td', { class: 'num' }, String(num(record.get('version')))),
    h('td', { class: 'time' }, formatTime(num(record.get('epoch_us')))),
    h('td', { class: 'num' }, String(new TextEncoder().encode(dataText).length)));
  tr.addEventListener('click', () => {
    for (const other of tr.parentNode.rows) other.classList.remove('selected');
    tr.classList.add('selected');
    clear($('snapshots-detail')).append(
      h('div', { class: 'detail-head' }, h('strong', {}, `${record.get('stream_id')}`),
        ` @ version ${num(record.get('version'))}, saved ${formatTime(num(record.get('epoch_us')))} UTC`),
      h('h4', {}, 'data'), prettyNode(data),
      h('h4', {}, 'metadata'), prettyNode(record.get('metadata') ?? null));
  });
  return tr;
}
