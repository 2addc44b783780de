// Catch-up subscriptions against a real server: every selector type, history then live with a
// concurrent writer (no gap, no duplicate), per-subscription backpressure on a shared
// connection, and resuming after the server is killed and restarted.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Client, connect } from '../src/index.js';
import { EsdbServer } from './helpers/server.js';
import { nextEvent, range, take, within } from './helpers/subscriptions.js';

const LIVE_TIMEOUT_MS = 20_000;

describe('selectors', () => {
  let server;
  let client;
  let writer;

  before(async () => {
    server = await EsdbServer.start();
    client = await connect(server.tcpUrl);
    writer = await connect(server.tcpUrl);
    await writer.append('user-1', [
      { eventType: 'UserCreated', data: { country: 'NL' } },
      { eventType: 'UserRenamed', data: { name: 'Ada' } },
    ]); // positions 0, 1
    await writer.append('order-1', { eventType: 'OrderPlaced', data: { country: 'DE' } }); // 2
    await writer.append('user-2', { eventType: 'UserCreated', data: { country: 'DE' } }); // 3
    await writer.append('order-2', { eventType: 'OrderPlaced', data: { country: 'NL', lines: [1, 2] } }); // 4
  });

  after(async () => {
    client?.close();
    writer?.close();
    await server?.dispose();
  });

  /**
   * Subscribes, takes the history (expected positions), checks the switch to live, then
   * appends a non-matching and a matching event and expects exactly the matching one.
   */
  async function check(selector, historyPositions, live) {
    const subscription = await client.subscribe(selector);
    try {
      const history = await take(subscription, historyPositions.length);
      assert.deepEqual(history.map((e) => e.position), historyPositions, JSON.stringify(selector));
      const pending = nextEvent(subscription);
      await within(subscription.live, LIVE_TIMEOUT_MS, 'LIVE');
      assert.equal(subscription.isLive, true);
      await writer.append('unrelated-1', { eventType: 'Unrelated', data: { country: 'XX' } });
      const written = await writer.append(live.stream, { eventType: live.eventType, data: live.data });
      const event = await pending;
      assert.equal(event.position, written.position);
      assert.equal(event.streamId, live.stream);
      assert.deepEqual(event.data, live.data);
    } finally {
      await subscription.unsubscribe();
    }
  }

  test('stream', async () => {
    await check({ stream: 'user-1' }, [0, 1], { stream: 'user-1', eventType: 'UserDeleted', data: {} });
  });

  test('stream $all delivers every event', async () => {
    const subscription = await client.subscribe({ stream: '$all' });
    const events = await take(subscription, 5);
    assert.deepEqual(events.map((e) => e.position), [0, 1, 2, 3, 4]);
    await subscription.unsubscribe();
  });

  test('event_type', async () => {
    await check({ eventType: ['UserCreated', 'OrderPlaced'] }, [0, 2, 3, 4], {
      stream: 'user-3',
      eventType: 'UserCreated',
      data: { country: 'FR' },
    });
  });

  test('event_pattern', async () => {
    await check({ eventPattern: 'order-*' }, [2, 4], { stream: 'order-3', eventType: 'OrderPlaced', data: {} });
  });

  test('event_payload (partial match on the record)', async () => {
    const subscription = await client.subscribe({ eventPayload: { data: { country: 'NL' } } });
    const history = await take(subscription, 2);
    assert.deepEqual(history.map((e) => e.position), [0, 4]);
    const pending = nextEvent(subscription);
    await within(subscription.live, LIVE_TIMEOUT_MS, 'LIVE');
    await writer.append('user-9', { eventType: 'UserCreated', data: { country: 'DE' } });
    const written = await writer.append('user-9', { eventType: 'UserMoved', data: { country: 'NL', city: 'Delft' } });
    assert.equal((await pending).position, written.position);
    await subscription.unsubscribe();
  });

  test('a start position, and start end (only what comes after)', async () => {
    const fromThree = await client.subscribe({ eventType: 'UserCreated' }, { start: 3 });
    assert.equal((await nextEvent(fromThree)).position, 3);
    await fromThree.unsubscribe();
    const fromEnd = await client.subscribe({ eventPattern: 'user-*' }, { start: 'end' });
    const written = await writer.append('user-4', { eventType: 'UserCreated', data: {} });
    assert.equal((await nextEvent(fromEnd)).position, written.position);
    await fromEnd.unsubscribe();
  });

  test('bad selectors are refused with typed errors', async () => {
    await assert.rejects(client.subscribe({ stream: '$nope' }), { code: 'invalid_selector' });
    await assert.rejects(client.subscribe({ type: 'bogus', selector: 'x' }), { code: 'unknown_selector_type' });
    await assert.rejects(client.subscribe({ color: 'red' }), { code: 'invalid_argument' });
    await assert.rejects(client.subscribe({ eventPayload: [1] }), { code: 'invalid_argument' });
    await client.ping();
  });

  test('break out of for await unsubscribes', async () => {
    const subscription = await client.subscribe({ stream: 'user-1' });
    for await (const event of subscription) {
      assert.equal(event.position, 0);
      break;
    }
    const stats = await client.stats();
    assert.equal(stats.stores.default.subscriptions, 0);
    const done = await subscription.next();
    assert.equal(done.done, true);
  });
});

describe('catch-up with a concurrent writer', () => {
  let server;

  before(async () => {
    server = await EsdbServer.start();
  });

  after(async () => {
    await server?.dispose();
  });

  test('history then live, no gap and no duplicate at the switch', async () => {
    const total = 1500;
    const writer = await connect(server.tcpUrl);
    const reader = await connect(server.tcpUrl);
    try {
      // Unrelated traffic interleaved, so matching positions are not simply consecutive.
      const expected = [];
      let written = 0;
      let seed = 7;
      const nextBatchSize = () => {
        seed = (seed * 48271) % 2147483647;
        return 1 + (seed % 25);
      };
      const writeSome = async (until) => {
        while (written < until) {
          const size = Math.min(nextBatchSize(), until - written);
          const events = Array.from({ length: size }, (_, i) => ({ eventType: 'Tick', data: written + i }));
          const result = await writer.append(`cw-${written % 3}`, events);
          for (let i = size - 1; i >= 0; i--) expected.push(result.position - i);
          written += size;
          await writer.append('noise', { eventType: 'Noise', data: written });
        }
      };
      await writeSome(total / 3);
      const subscription = await reader.subscribe({ eventPattern: 'cw-*' });
      const writing = writeSome(total);
      const received = [];
      for await (const event of subscription) {
        received.push(event.position);
        if (received.length === total) break;
      }
      await writing;
      assert.equal(subscription.isLive, true);
      assert.deepEqual(received, expected);
    } finally {
      writer.close();
      reader.close();
    }
  });

  test('a slow consumer slows only its own subscription, and loses nothing', async () => {
    const total = 600;
    const client = await connect(server.tcpUrl);
    const writer = await connect(server.tcpUrl);
    try {
      const bufferSize = 16;
      const fast = await client.subscribe({ eventPattern: 'bp-*' });
      const slow = await client.subscribe({ eventPattern: 'bp-*' }, { bufferSize });
      const positions = [];
      for (let i = 0; i < total; i += 50) {
        const result = await writer.append(
          'bp-1',
          Array.from({ length: 50 }, (_, j) => ({ eventType: 'Tick', data: { i: i + j, pad: 'x'.repeat(200) } })),
        );
        positions.push(...range(result.position - 49, result.position));
      }
      // The fast consumer gets everything, and requests on the shared connection are answered,
      // while the slow one has taken nothing.
      const fastPositions = (await take(fast, total)).map((e) => e.position);
      assert.deepEqual(fastPositions, positions);
      assert.equal(await client.version('bp-1'), total - 1);
      assert.ok(slow.buffered <= bufferSize, `slow buffers ${slow.buffered} > ${bufferSize}`);
      assert.ok(slow.stats.pauses >= 1, 'the slow subscription was paused');
      // Then the slow one catches up: every event, once, in order.
      const slowPositions = (await take(slow, total)).map((e) => e.position);
      assert.deepEqual(slowPositions, positions);
      assert.ok(slow.stats.subscribes >= 2, 'it was subscribed again after the pause');
      await fast.unsubscribe();
      await slow.unsubscribe();
    } finally {
      client.close();
      writer.close();
    }
  });
});

describe('reconnecting', () => {
  test('a catch-up subscription resumes after kill -9 and restart: no gap, no duplicate', async () => {
    const server = await EsdbServer.start();
    const options = { backoffBaseMs: 50, backoffMaxMs: 500, maxRetries: 30 };
    const client = new Client([server.tcpUrl], options);
    const writer = new Client([server.tcpUrl], options);
    let reconnected = 0;
    client.addEventListener('connect', () => {
      reconnected += 1;
    });
    try {
      const expected = [];
      const write = async (from, count) => {
        for (let i = from; i < from + count; i += 10) {
          const result = await writer.append('rc-1', Array.from({ length: 10 }, (_, j) => ({ eventType: 'Tick', data: i + j })));
          expected.push(...range(result.position - 9, result.position));
          await writer.append('other', { eventType: 'Noise', data: i });
        }
      };
      await write(0, 100);
      const subscription = await client.subscribe({ stream: 'rc-1' });
      const before = await take(subscription, 40);
      await server.stop('SIGKILL');
      await server.restart();
      await write(100, 100);
      const rest = await take(subscription, 160);
      const received = [...before, ...rest].map((e) => e.position);
      assert.deepEqual(received, expected);
      assert.ok(reconnected >= 2, 'the client reconnected');
      await subscription.unsubscribe();
    } finally {
      client.close();
      writer.close();
      await server.dispose();
    }
  });
});
