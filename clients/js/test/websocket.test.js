// The client over WebSocket (the server's /ws) in Node: the same API, replies larger than one
// WebSocket message, and a live subscription fed by a writer on TCP.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Client, connect } from '../src/index.js';
import { EsdbServer } from './helpers/server.js';
import { nextEvent, take, within } from './helpers/subscriptions.js';
import { WebSocketImpl } from './helpers/websocket.js';

let server;
let ws;
let tcp;

before(async () => {
  server = await EsdbServer.start();
  ws = await connect(server.wsUrl, { WebSocket: WebSocketImpl });
  tcp = await connect(server.tcpUrl);
});

after(async () => {
  ws?.close();
  tcp?.close();
  await server?.dispose();
});

test('append, read, conflict and errors over WebSocket', async () => {
  assert.equal(ws.address, server.wsUrl);
  assert.equal(ws.info.proto, 1);
  const appended = await ws.append('w-1', [{ eventType: 'A', data: 'é😀' }, { eventType: 'B', data: 2 }], { expectedVersion: 'no_stream' });
  assert.equal(appended.version, 1);
  await assert.rejects(ws.append('w-1', { eventType: 'C', data: 3 }, { expectedVersion: 0 }), { code: 'wrong_expected_version' });
  const events = await ws.read('w-1').toArray();
  assert.deepEqual(events.map((e) => e.data), ['é😀', 2]);
  assert.equal(await tcp.version('w-1'), 1);
});

test('a reply larger than one WebSocket message is reassembled', async () => {
  const pad = 'x'.repeat(1000);
  await tcp.append('w-big', Array.from({ length: 300 }, (_, i) => ({ eventType: 'Big', data: { i, pad } })));
  const page = await ws.readPage('w-big', { count: 300 });
  assert.equal(page.length, 300);
  assert.deepEqual(page.map((e) => e.data.i), Array.from({ length: 300 }, (_, i) => i));
});

test('a live subscription over WebSocket sees events appended over TCP', async () => {
  const subscription = await ws.subscribe({ stream: 'w-live' });
  const pending = nextEvent(subscription);
  await within(subscription.live, 20_000, 'LIVE');
  const written = await tcp.append('w-live', { eventType: 'Hello', data: { from: 'tcp' } });
  const event = await pending;
  assert.equal(event.position, written.position);
  await tcp.append('w-live', [{ eventType: 'More', data: 1 }, { eventType: 'More', data: 2 }]);
  assert.deepEqual((await take(subscription, 2)).map((e) => e.data), [1, 2]);
  await subscription.unsubscribe();
});

test('without a WebSocket implementation the client says so', async () => {
  if (globalThis.WebSocket !== undefined) return;
  const client = new Client(server.wsUrl);
  await assert.rejects(client.ping(), (error) => error.code === 'unsupported' && /no WebSocket here/.test(error.message));
  client.close();
});
