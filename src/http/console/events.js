// Event records (PROTOCOL.md, "The event record") as table rows and as a detail panel; shared by
// the live tail, the stream browser and the parked events of a persistent subscription.

import { clear, formatTime, h } from './dom.js';
import { num, parseJson, prettyNode, str } from './json.js';

/** The records of an `EVENTS` body (a JSON array), or one record of an `EVENT` frame. */
export function parseRecords(body) {
  const parsed = parseJson(body);
  return Array.isArray(parsed) ? parsed : [parsed];
}

/** The fields shown in tables. */
export function summary(record) {
  return {
    eventId: str(record.get('event_id')),
    type: str(record.get('event_type')),
    stream: str(record.get('stream_id')),
    version: num(record.get('version')),
    position: num(record.get('position')),
    epochUs: num(record.get('epoch_us')),
  };
}

const CELLS = {
  time: (s) => h('td', { class: 'time' }, formatTime(s.epochUs)),
  position: (s) => h('td', { class: 'num' }, String(s.position)),
  stream: (s) => h('td', { class: 'id' }, s.stream),
  version: (s) => h('td', { class: 'num' }, String(s.version)),
  type: (s) => h('td', { class: 'type' }, s.type),
  eventId: (s) => h('td', { class: 'id small' }, s.eventId),
};

/**
 * A table body of events, each row opening the event in `detail` when clicked. `columns` name
 * cells of `CELLS`, in order.
 */
export class EventTable {
  constructor(tbody, detail, columns) {
    this.tbody = tbody;
    this.detail = detail;
    this.columns = columns;
    this.selected = null;
  }

  row(record) {
    const s = summary(record);
    const tr = h('tr', { class: 'clickable', 'data-position': s.position, 'data-version': s.version },
      this.columns.map((column) => CELLS[column](s)));
    tr.addEventListener('click', () => this.open(tr, record));
    return tr;
  }

  /** Replaces the rows. */
  set(records) {
    clear(this.tbody).append(...records.map((record) => this.row(record)));
  }

  /** Adds rows at the top, newest first, keeping at most `maxRows`. */
  prepend(records, maxRows) {
    const rows = records.map((record) => this.row(record)).reverse();
    this.tbody.prepend(...rows);
    while (this.tbody.rows.length > maxRows) this.tbody.lastElementChild.remove();
  }

  open(tr, record) {
    this.selected?.classList.remove('selected');
    this.selected = tr;
    tr.classList.add('selected');
    renderEvent(this.detail, record);
  }

  reset(message = 'Select an event to see it.') {
    clear(this.tbody);
    this.selected = null;
    clear(this.detail).append(h('p', { class: 'muted' }, message));
  }
}

/** One event in full: its fields, data and metadata pretty-printed, and the raw record. */
export function renderEvent(container, record) {
  const s = summary(record);
  const field = (name, value) => h('tr', {}, h('th', {}, name), h('td', {}, value));
  clear(container).append(
    h('div', { class: 'detail-head' },
      h('strong', {}, s.type), ' in ',
      h('a', { href: `#/streams/${encodeURIComponent(s.stream)}` }, s.stream),
      ` @ ${s.version}`),
    h('table', { class: 'kv' }, h('tbody', {},
      field('event_id', s.eventId),
      field('event_type', s.type),
      field('stream_id', s.stream),
      field('version', String(s.version)),
      field('position', String(s.position)),
      field('time (UTC)', `${formatTime(s.epochUs)}  (epoch_us ${s.epochUs})`))),
    h('h4', {}, 'data'),
    prettyNode(record.get('data')),
    h('h4', {}, 'metadata'),
    prettyNode(record.get('metadata') ?? null),
    h('details', {}, h('summary', {}, 'record as sent by the server'),
      h('pre', { class: 'json raw' }, record.source)),
  );
  container.classList.add('has-event');
}
