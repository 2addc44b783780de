// Live tail: a catch-up subscription (SUB, never persistent, so nothing is stored on the
// server) on `$all`, a stream, event types or a stream pattern, shown newest first. The page
// keeps at most MAX_TAIL_ROWS rows; while paused, events wait in a buffer of the same bound
// (the oldest are dropped and counted).

import { arg } from './client.js';
import { $, describeError, say } from './dom.js';
import { EventTable, parseRecords } from './events.js';

export const MAX_TAIL_ROWS = 500;

let ctx = null;
let table = null;
let sid = null;
let sidCounter = 0;
let paused = false;
let live = false; // the subscription has sent LIVE
let incoming = []; // records received, not yet drawn
let dropped = 0; // events dropped from the pause buffer
let received = 0;
let drawScheduled = false;

export function init(context) {
  ctx = context;
  table = new EventTable($('tail-table').tBodies[0], $('tail-detail'),
    ['time', 'position', 'stream', 'version', 'type']);
  $('tail-form').addEventListener('submit', (event) => {
    event.preventDefault();
    start();
  });
  $('tail-stop').addEventListener('click', () => stop('stopped'));
  $('tail-pause').addEventListener('click', () => setPaused(!paused));
  $('tail-clear').addEventListener('click', () => {
    incoming = [];
    dropped = 0;
    received = 0;
    table.reset();
    renderCount();
  });
  $('tail-type').addEventListener('change', () => {
    const placeholder = { stream: '$all', event_type: 'UserCreated,OrderPlaced', event_pattern: 'user-*' };
    $('tail-selector').value = placeholder[$('tail-type').value];
  });
  ctx.events.addEventListener('store', () => { if (sid) stop('stopped: store changed'); });
}

export function activate(param) {
  if (param && !sid) {
    $('tail-type').value = 'stream';
    $('tail-selector').value = param;
  }
}

function status(state, text) {
  const badge = $('tail-status');
  badge.dataset.state = state;
  badge.textContent = text;
}

async function start() {
  if (sid) await stop('restarting');
  const client = ctx.client;
  if (!client) {
    status('error', 'not connected');
    return;
  }
  const type = $('tail-type').value;
  let selector;
  try {
    selector = arg($('tail-selector').value.trim(), 'selector');
  } catch (error) {
    status('error', describeError(error));
    return;
  }
  sidCounter += 1;
  const mySid = `tail-${sidCounter}`;
  sid = mySid;
  paused = false;
  live = false;
  status('catching-up', 'catching up…');
  setButtons(true);
  try {
    await client.subscribe(mySid, { type, selector, start: $('tail-start').value }, {
      onEvent: (frame) => received1(frame),
      onLive: () => {
        if (sid !== mySid) return;
        live = true;
        if (!paused) status('live', 'live');
      },
      onClose: () => { if (sid === mySid) { sid = null; setButtons(false); status('error', 'connection closed'); } },
    });
  } catch (error) {
    if (sid === mySid) sid = null;
    setButtons(false);
    status('error', describeError(error));
  }
}

async function stop(text) {
  const mySid = sid;
  sid = null;
  setButtons(false);
  status('idle', text);
  if (mySid && ctx.client) {
    try {
      await ctx.client.unsubscribe(mySid);
    } catch (error) {
      status('error', describeError(error));
    }
  }
}

function setButtons(running) {
  $('tail-stop').disabled = !running;
  $('tail-pause').disabled = !running;
  $('tail-pause').textContent = 'Pause';
  $('tail-start-button').textContent = running ? 'Restart' : 'Start';
}

function setPaused(on) {
  paused = on;
  $('tail-pause').textContent = on ? 'Resume' : 'Pause';
  if (on) status('paused', 'paused');
  else {
    status(live ? 'live' : 'catching-up', live ? 'live' : 'catching up…');
    scheduleDraw();
  }
}

function received1(frame) {
  received += 1;
  incoming.push(frame.record);
  if (incoming.length > MAX_TAIL_ROWS) {
    const excess = incoming.length - MAX_TAIL_ROWS;
    incoming.splice(0, excess);
    if (paused) dropped += excess;
  }
  if (paused) renderCount();
  else scheduleDraw();
}

// Events may arrive by the thousand (a tail from the beginning): draw once per frame.
function scheduleDraw() {
  if (drawScheduled) return;
  drawScheduled = true;
  requestAnimationFrame(() => {
    drawScheduled = false;
    if (paused) return;
    const batch = incoming;
    incoming = [];
    const records = [];
    for (const body of batch) {
      try {
        records.push(...parseRecords(body));
      } catch (error) {
        status('error', `bad event: ${error.message}`);
      }
    }
    table.prepend(records, MAX_TAIL_ROWS);
    renderCount();
  });
}

function renderCount() {
  const shown = table.tbody.rows.length;
  const waiting = paused ? `, ${incoming.length} waiting` : '';
  const lost = dropped ? `, ${dropped} not kept while paused` : '';
  say($('tail-count'), `${received} received, ${shown} shown (at most ${MAX_TAIL_ROWS})${waiting}${lost}`);
}
