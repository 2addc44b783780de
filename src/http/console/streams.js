// Stream browser: stream ids by prefix (STREAMS, EXISTS), a stream paged forward and backward
// (READ), each event opened in full; and, when writes are on, an append form (over the
// writable connection: the read-only one would be refused).

import { arg } from './client.js';
import { $, clear, describeError, h, say, show } from './dom.js';
import { EventTable, parseRecords, summary } from './events.js';
import { JsonObject, parseJson } from './json.js';

/** Stream ids asked for per STREAMS request. */
export const STREAMS_PAGE = 100;

let ctx = null;
let table = null;
let stream = null; // the stream shown
let page = []; // its records on the page, ascending versions
let currentVersion = -1; // the stream's current version when the page was read
let lastSearch = null; // { prefix, after } for "more"

export function init(context) {
  ctx = context;
  table = new EventTable($('stream-table').tBodies[0], $('stream-detail'),
    ['version', 'position', 'type', 'time', 'eventId']);
  $('streams-search').addEventListener('submit', (event) => {
    event.preventDefault();
    search($('streams-prefix').value.trim());
  });
  $('streams-more').addEventListener('click', () => more());
  $('stream-first').addEventListener('click', () => load(0, 'forward'));
  $('stream-latest').addEventListener('click', () => load('end', 'backward'));
  $('stream-older').addEventListener('click', () => {
    if (page.length) load(summary(page[0]).version - 1, 'backward');
  });
  $('stream-newer').addEventListener('click', () => {
    if (page.length) load(summary(page[page.length - 1]).version + 1, 'forward');
  });
  $('stream-page-size').addEventListener('change', () => { if (stream) load('end', 'backward'); });
  $('append-form').addEventListener('submit', (event) => {
    event.preventDefault();
    append();
  });
  ctx.events.addEventListener('writes', renderWrites);
  ctx.events.addEventListener('store', () => {
    stream = null;
    renderStream();
    if (ctx.tab === 'streams') search($('streams-prefix').value.trim());
  });
  ctx.events.addEventListener('connected', () => {
    if (ctx.tab === 'streams' && lastSearch === null) search('');
  });
  renderWrites();
}

export function activate(param) {
  if (ctx.client && lastSearch === null) search($('streams-prefix').value.trim());
  if (param && param !== stream) open(param);
}

function pageSize() {
  return Number($('stream-page-size').value);
}

async function search(prefix) {
  const results = clear($('streams-results'));
  const note = $('streams-note');
  show($('streams-more'), false);
  lastSearch = { prefix, after: null };
  if (!ctx.client) return say(note, 'not connected', true);
  try {
    const requests = [ctx.client.request(`STREAMS ${prefix ? arg(prefix, 'prefix') : '-'} ${STREAMS_PAGE}`)];
    // STREAMS lists ids *after* the one given, so the prefix itself, if a stream, is asked apart.
    if (prefix) requests.push(ctx.client.request(`EXISTS ${prefix}`));
    const [listed, exists] = await Promise.all(requests);
    const ids = JSON.parse(listed.body);
    const matching = [];
    if (exists && exists.args[1] === '1') matching.push(prefix);
    let ended = false;
    for (const id of ids) {
      // Ids come in byte order, so those with the prefix are contiguous.
      if (!id.startsWith(prefix)) { ended = true; break; }
      matching.push(id);
    }
    addResults(results, matching);
    const mayHaveMore = !ended && ids.length === STREAMS_PAGE;
    lastSearch.after = ids[ids.length - 1] ?? null;
    show($('streams-more'), mayHaveMore);
    say(note, matching.length ? `${results.children.length} stream(s)${mayHaveMore ? ', more…' : ''}`
      : prefix ? `no stream id starts with “${prefix}”` : 'no streams yet');
  } catch (error) {
    say(note, describeError(error), true);
  }
}

async function more() {
  if (!lastSearch?.after || !ctx.client) return;
  const { prefix } = lastSearch;
  try {
    const listed = await ctx.client.request(`STREAMS ${arg(lastSearch.after)} ${STREAMS_PAGE}`);
    const ids = JSON.parse(listed.body);
    const matching = [];
    let ended = false;
    for (const id of ids) {
      if (!id.startsWith(prefix)) { ended = true; break; }
      matching.push(id);
    }
    addResults($('streams-results'), matching);
    lastSearch.after = ids[ids.length - 1] ?? null;
    show($('streams-more'), !ended && ids.length === STREAMS_PAGE);
    say($('streams-note'), `${$('streams-results').children.length} stream(s)`);
  } catch (error) {
    say($('streams-note'), describeError(error), true);
  }
}

function addResults(list, ids) {
  for (const id of ids) {
    list.append(h('li', {},
      h('a', { href: `#/streams/${encodeURIComponent(id)}`, class: id === stream ? 'selected' : '' }, id)));
  }
}

function open(id) {
  stream = id;
  $('append-stream').value = id;
  for (const link of document.querySelectorAll('#streams-results a')) {
    link.classList.toggle('selected', link.textContent === id);
  }
  load('end', 'backward');
}

/** Reads a page of the stream from `from` (a version or `end`) in `direction`. */
async function load(from, direction) {
  if (!stream) return;
  const info = $('stream-info');
  if (!ctx.client) return say(info, 'not connected', true);
  try {
    const id = arg(stream, 'stream id');
    const [read, version] = await Promise.all([
      ctx.client.request(`READ ${id} ${from} ${pageSize()} ${direction}`),
      ctx.client.request(`VERSION ${id}`),
    ]);
    currentVersion = Number(version.args[1]);
    const records = parseRecords(read.body);
    if (direction === 'backward') records.reverse();
    if (records.length === 0 && page.length && from !== 'end' && from !== 0) {
      say(info, direction === 'backward' ? 'no older events' : 'no newer events');
      renderButtons();
      return;
    }
    page = records;
    table.reset();
    table.set(records);
    renderStream();
  } catch (error) {
    page = [];
    table.reset(describeError(error));
    currentVersion = -1;
    renderStream();
    say(info, describeError(error), true);
  }
}

function renderStream() {
  const title = $('stream-title');
  title.textContent = stream ?? 'no stream selected';
  title.classList.toggle('muted', !stream);
  const link = $('stream-snapshots-link');
  show(link, Boolean(stream));
  if (stream) link.href = `#/snapshots/${encodeURIComponent(stream)}`;
  if (!stream) {
    page = [];
    table.reset();
  }
  if (stream && page.length) {
    const first = summary(page[0]).version;
    const last = summary(page[page.length - 1]).version;
    say($('stream-info'), `versions ${first}–${last} of ${currentVersion + 1} (current version ${currentVersion})`);
  } else if (stream) {
    say($('stream-info'), 'no events');
  } else {
    say($('stream-info'), '');
  }
  renderButtons();
}

function renderButtons() {
  const first = page.length ? summary(page[0]).version : null;
  const last = page.length ? summary(page[page.length - 1]).version : null;
  $('stream-first').disabled = !stream;
  $('stream-latest').disabled = !stream;
  $('stream-older').disabled = first === null || first <= 0;
  $('stream-newer').disabled = last === null || last >= currentVersion;
}

function renderWrites() {
  const on = ctx.writer !== null;
  $('append-submit').disabled = !on;
  const mode = $('append-mode');
  mode.textContent = on ? 'writes on' : 'read-only';
  mode.dataset.state = on ? 'writes' : 'readonly';
  say($('append-result'), on ? ''
    : ctx.config?.writes ? 'turn on “writes” at the top to append'
      : 'read-only: the server was started without --console-writes');
}

async function append() {
  const result = $('append-result');
  const writer = ctx.writer;
  if (!writer) return say(result, 'writes are off', true);
  try {
    const target = arg($('append-stream').value.trim(), 'stream');
    const expected = arg($('append-expected').value.trim() || 'any', 'expected version');
    const type = arg($('append-type').value.trim(), 'event type');
    const dataText = $('append-data').value.trim();
    const metadataText = $('append-metadata').value.trim();
    // Checked here for a clear message; sent as typed, so the server stores these bytes.
    parseJson(dataText);
    let payload = `{"event_type":${JSON.stringify(type)},"data":${dataText}`;
    if (metadataText) {
      if (!(parseJson(metadataText) instanceof JsonObject)) {
        throw new Error('metadata must be a JSON object');
      }
      payload += `,"metadata":${metadataText}`;
    }
    payload += '}';
    const reply = await writer.request(`APPEND ${target} ${expected}`, payload);
    const [appendedStream, version, position] = reply.args;
    say(result, `appended: ${appendedStream} version ${version}, position ${position}`);
    if (appendedStream === stream) load('end', 'backward');
  } catch (error) {
    say(result, describeError(error), true);
  }
}
