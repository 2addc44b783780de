// Stored records that break the protocol's JSON rules (as an older server or a damaged disk may
// have left them), seeded with the server crate's test tool while no server runs: an
// eventPayload catch-up subscription rejects next() with an UnreadableEventError in their place
// and goes on (also across a server restart, and over a read-only WebSocket), a persistent one
// parks them with parkedReason, AGG answers unreadable_event, and plain reads return them as
// stored. Read-only WebSockets refuse writes with read_only and stay open.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { connect, EsdbError, UnreadableEventError } from '../src/index.js';
import { EsdbServer, eventually, seedUnreadable, seedUnreadableBinary } from './helpers/server.js';
import { EVENT_TIMEOUT_MS, nextEvent } from './helpers/subscriptions.js';
import { WebSocketImpl } from './helpers/websocket.js';

// Stream `acct`, positions 0 to 4: readable, out-of-range number, lone surrogate, readable,
// nesting past the limit. The last one is unreadable, so resuming after it is tested.
const SEEDED = [
  '{"x":1,"n":0}',
  '{"x":1,"n":1e400}',
  '{"x":1,"s":"\\ud800"}',
  '{"x":1,"n":3}',
  `{"x":1,"d":${'['.repeat(200)}${']'.repeat(200)}}`,
];
const EXPECTED = ['event 0', 'unreadable 1', 'unreadable 2', 'event 3', 'unreadable 4'];
const PAYLOAD = { eventPayload: { data: { x: 1 } } };

const skip = seedUnreadableBinary() === null
  ? 'target/debug/examples/seed_unreadable is not built (cargo build --example seed_unreadable; run-tests.sh and scripts/test.sh build it)'
  : false;

/** The next event, or the UnreadableEventError next() rejected with in its place. */
async function nextItem(subscription) {
  try {
    return await nextEvent(subscription);
  } catch (error) {
    if (error instanceof UnreadableEventError) return error;
    throw error;
  }
}

function describeItem(item) {
  return item instanceof UnreadableEventError ? `unreadable ${item.position}` : `event ${item.position}`;
}

function checkUnreadable(item, position) {
  assert.ok(item instanceof UnreadableEventError, describeItem(item));
  assert.ok(item instanceof EsdbError);
  assert.equal(item.code, 'unreadable_event');
  assert.equal(item.fromServer, true);
  assert.equal(item.retryable, false);
  assert.equal(item.closesConnection, false);
  assert.deepEqual([item.streamId, item.version, item.position], ['acct', position, position]);
  assert.match(item.reason, new RegExp(`position ${position}\\b`));
}

describe('unreadable records', { skip }, () => {
  let dataDir;
  let server;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'esdb-js-unreadable-'));
    seedUnreadable(dataDir, 'acct', SEEDED);
    server = await EsdbServer.start({ dataDir });
  });

  after(async () => {
    await server?.dispose();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  test('a catch-up subscription rejects in place of each unreadable event, goes on, and resumes after it', async () => {
    const client = await connect(server.tcpUrl, { backoffBaseMs: 20, backoffMaxMs: 200 });
    const subscription = await client.subscribe(PAYLOAD);
    try {
      const items = [];
      for (let i = 0; i < SEEDED.length; i++) items.push(await nextItem(subscription));
      assert.deepEqual(items.map(describeItem), EXPECTED);
      for (const position of [1, 2, 4]) checkUnreadable(items[position], position);
      assert.equal(subscription.stats.unreadable, 3);
      assert.equal(subscription.stats.delivered, 2);

      // After kill -9 and a restart it subscribes again after the last unreadable event (4),
      // so that one is not reported twice.
      await server.stop('SIGKILL');
      await server.restart();
      const written = await client.append('acct', { eventType: 'T', data: { x: 1, n: 5 } });
      const event = await nextEvent(subscription);
      assert.equal(event.position, written.position);
      assert.deepEqual(event.data, { x: 1, n: 5 });
    } finally {
      await subscription.unsubscribe();
      client.close();
    }
  });

  test('for await ends with the error; iterating the subscription again goes on after it', async () => {
    const client = await connect(server.tcpUrl);
    const subscription = await client.subscribe(PAYLOAD);
    // for await waits without a timeout: unsubscribing ends it, should events not come.
    const watchdog = setTimeout(() => subscription.unsubscribe(), EVENT_TIMEOUT_MS);
    try {
      const seen = [];
      while (seen.length < EXPECTED.length) {
        try {
          for await (const event of subscription) {
            seen.push(`event ${event.position}`);
            if (seen.length === EXPECTED.length) break;
          }
          if (seen.length < EXPECTED.length) assert.fail(`the subscription ended after ${seen.length} items`);
        } catch (error) {
          if (!(error instanceof UnreadableEventError)) throw error;
          seen.push(`unreadable ${error.position}`);
        }
      }
      assert.deepEqual(seen, EXPECTED);
    } finally {
      clearTimeout(watchdog);
      await subscription.unsubscribe();
      client.close();
    }
  });

  test('over a read-only WebSocket: catch-up reports them too, and writes are refused with read_only', async () => {
    const client = await connect(`${server.wsUrl}?readonly=1`, { WebSocket: WebSocketImpl });
    const subscription = await client.subscribe(PAYLOAD);
    try {
      const items = [];
      for (let i = 0; i < SEEDED.length; i++) items.push(await nextItem(subscription));
      assert.deepEqual(items.map(describeItem), EXPECTED);
      await assert.rejects(client.append('acct', { eventType: 'T', data: { x: 1 } }), (error) => {
        assert.ok(error instanceof EsdbError);
        assert.equal(error.code, 'read_only');
        assert.equal(error.fromServer, true);
        assert.equal(error.retryable, false);
        assert.equal(error.closesConnection, false);
        return true;
      });
      await assert.rejects(client.subscribe(PAYLOAD, { name: 'not-here' }), { code: 'read_only' });
      // The connection stays open and reads work.
      assert.equal((await client.readPage('acct', { count: 1 })).length, 1);
    } finally {
      await subscription.unsubscribe();
      client.close();
    }
  });

  test('a persistent subscription parks them, and PSUB PARKED shows parkedReason', async () => {
    const client = await connect(server.tcpUrl);
    const subscription = await client.subscribe(PAYLOAD, { name: 'worker' });
    try {
      // 0 and 3 were seeded; the first test appended 5.
      const delivered = [await nextEvent(subscription), await nextEvent(subscription), await nextEvent(subscription)];
      assert.deepEqual(delivered.map((event) => event.position), [0, 3, 5]);
      assert.equal(await subscription.ack(...delivered), true);
      const parked = await eventually(
        async () => {
          const events = await client.persistent.parked('worker');
          return events.length === 3 ? events : null;
        },
        { what: 'three parked events' },
      );
      assert.deepEqual(parked.map((event) => event.position), [1, 2, 4]);
      for (const event of parked) {
        assert.equal(event.streamId, 'acct');
        assert.equal(event.eventType, 'Seeded');
        assert.ok(event.parkedReason.startsWith(`unreadable: record at position ${event.position}`), event.parkedReason);
      }
      assert.equal((await client.persistent.get('worker')).parked, 3);
    } finally {
      await subscription.unsubscribe();
      client.close();
    }
  });

  test('AGG answers unreadable_event; plain reads return the records as stored', async () => {
    const client = await connect(server.tcpUrl);
    try {
      await assert.rejects(client.aggregate('acct'), (error) => {
        assert.equal(error.code, 'unreadable_event');
        assert.equal(error.fromServer, true);
        assert.match(error.message, /position 1\b/);
        return true;
      });
      const events = await client.readPage('acct', { count: 5 });
      assert.deepEqual(events.map((event) => event.version), [0, 1, 2, 3, 4]);
      assert.equal(events[1].data.n, Infinity, 'JSON.parse reads 1e400 as Infinity');
      assert.equal(events[2].data.s, '\ud800');
      assert.ok(events.every((event) => event.parkedReason === undefined));
    } finally {
      client.close();
    }
  });
});

test('the raft object of INFO and STATS comes through as sent', async () => {
  const server = await EsdbServer.start({ args: ['--store', 'default', '--store', 'audit'] });
  const client = await connect(server.tcpUrl);
  try {
    await client.append('s', { eventType: 'T', data: 1 });
    assert.deepEqual(Object.keys(client.info.raft).sort(), ['audit', 'default']);
    const raft = (await client.stats()).stores.default.raft;
    assert.equal(raft.state, 'leader');
    assert.equal(raft.leader_id, raft.node_id);
    assert.ok(raft.applied_index >= 1 && raft.last_log_index >= raft.applied_index, JSON.stringify(raft));
  } finally {
    client.close();
    await server.dispose();
  }
});
