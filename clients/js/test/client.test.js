// The client's request/reply API against a real server over TCP: appends (every expected
// version form, batches, idempotent retries), reads and paging, streams, delete, snapshots,
// AGG, STATS, USE, HELP, pipelining, and typed errors.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { connect, EsdbError } from '../src/index.js';
import { EsdbServer } from './helpers/server.js';

let server;
let client;

before(async () => {
  server = await EsdbServer.start({ args: ['--store', 'default', '--store', 'audit'] });
  client = await connect([server.tcpUrl], { name: 'client-test' });
});

after(async () => {
  client?.close();
  await server?.dispose();
});

async function rejects(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof EsdbError, `an EsdbError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

describe('append', () => {
  test('every expected version form, and a conflict names both versions', async () => {
    await rejects(client.append('acct-1', { eventType: 'Opened', data: {} }, { expectedVersion: 'exists' }), 'wrong_expected_version');
    const first = await client.append('acct-1', { eventType: 'Opened', data: { owner: 'Ada' } }, { expectedVersion: 'no_stream' });
    assert.deepEqual({ streamId: first.streamId, version: first.version }, { streamId: 'acct-1', version: 0 });
    const second = await client.append('acct-1', { eventType: 'Deposited', data: { n: 1 } }, { expectedVersion: 0 });
    assert.equal(second.version, 1);
    assert.equal(second.position, first.position + 1);
    await client.append('acct-1', { eventType: 'Deposited', data: { n: 2 } }, { expectedVersion: 'exists' });
    await client.append('acct-1', { eventType: 'Deposited', data: { n: 3 } });
    const conflict = client.append('acct-1', { eventType: 'Deposited', data: {} }, { expectedVersion: 1 });
    await assert.rejects(conflict, (error) => {
      assert.equal(error.code, 'wrong_expected_version');
      assert.equal(error.fromServer, true);
      assert.equal(error.retryable, false);
      assert.match(error.message, /expected version 1, actual 3/);
      return true;
    });
    await rejects(client.append('acct-1', { eventType: 'X', data: {} }, { expectedVersion: 'no_stream' }), 'wrong_expected_version');
    assert.equal(await client.version('acct-1'), 3);
  });

  test('a batch is atomic and gets consecutive versions and one timestamp', async () => {
    const result = await client.append(
      'batch-1',
      [
        { eventType: 'A', data: 1, metadata: { by: 'test' } },
        { eventType: 'B', data: [1, 2] },
        { eventType: 'C', data: null },
      ],
      { expectedVersion: 'no_stream' },
    );
    assert.equal(result.version, 2);
    const events = await client.read('batch-1').toArray();
    assert.deepEqual(events.map((e) => [e.version, e.eventType, e.data]), [
      [0, 'A', 1],
      [1, 'B', [1, 2]],
      [2, 'C', null],
    ]);
    assert.deepEqual(events[0].metadata, { by: 'test' });
    assert.deepEqual(events[1].metadata, {});
    assert.equal(new Set(events.map((e) => e.epochUs)).size, 1);
    assert.deepEqual(
      events.map((e) => e.position),
      [result.position - 2, result.position - 1, result.position],
    );
    // A batch that conflicts writes nothing.
    await rejects(client.append('batch-1', [{ eventType: 'D', data: 0 }, { eventType: 'E', data: 0 }], { expectedVersion: 0 }), 'wrong_expected_version');
    assert.equal(await client.version('batch-1'), 2);
  });

  test('event ids make a repeated append idempotent; reusing one elsewhere is refused', async () => {
    const events = [
      { eventType: 'Charged', data: { cents: 100 }, eventId: '6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d' },
      { eventType: 'Settled', data: {}, eventId: '0b9d2f4e-3c1a-4d5b-8e6f-7a8b9c0d1e2f' },
    ];
    const first = await client.append('pay-1', events, { expectedVersion: 'no_stream' });
    const again = await client.append('pay-1', events, { expectedVersion: 'no_stream' });
    assert.deepEqual(again, first);
    assert.equal(await client.version('pay-1'), 1);
    const read = await client.read('pay-1').toArray();
    assert.deepEqual(read.map((e) => e.eventId), events.map((e) => e.eventId));
    await rejects(client.append('pay-2', { eventType: 'Charged', data: {}, eventId: events[0].eventId }), 'duplicate_event_id');
  });

  test('the client gives events without an id a UUID v7', async () => {
    await client.append('ids-1', [{ eventType: 'A', data: 1 }, { eventType: 'A', data: 2 }]);
    const ids = (await client.read('ids-1').toArray()).map((e) => e.eventId);
    for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(ids[0], ids[1]);
  });

  test('bad events are refused before sending, with invalid_argument', async () => {
    await rejects(client.append('s', { type: 'Oops', data: 1 }), 'invalid_argument');
    await rejects(client.append('s', { eventType: 'A' }), 'invalid_argument');
    await rejects(client.append('s', { eventType: 'A', data: 1, metadata: [] }), 'invalid_argument');
    await rejects(client.append('s', []), 'invalid_argument');
    await rejects(client.append('bad stream', { eventType: 'A', data: 1 }), 'invalid_argument');
    await rejects(client.append('s', { eventType: 'A', data: 1 }, { expectedVersion: -3 }), 'invalid_argument');
    // The server's own checks come back typed too.
    await rejects(client.append('$all', { eventType: 'A', data: 1 }), 'invalid_argument');
    await rejects(client.append('s', { eventType: 'A', data: 1, eventId: 'not-a-uuid' }), 'invalid_argument');
    await rejects(client.append('s', { eventType: 'A', data: 'x'.repeat(1_100_000) }), 'payload_too_large');
    // The connection survived all of it.
    await client.ping();
  });
});

describe('read', () => {
  before(async () => {
    await client.append(
      'page-1',
      Array.from({ length: 25 }, (_, i) => ({ eventType: i % 2 === 0 ? 'Even' : 'Odd', data: i })),
      { expectedVersion: 'no_stream' },
    );
  });

  test('forward and backward, paged, as async iterators', async () => {
    const forward = [];
    for await (const event of client.read('page-1', { pageSize: 4 })) forward.push(event.data);
    assert.deepEqual(forward, Array.from({ length: 25 }, (_, i) => i));
    const backward = await client.read('page-1', { direction: 'backward', pageSize: 7 }).toArray();
    assert.deepEqual(backward.map((e) => e.data), Array.from({ length: 25 }, (_, i) => 24 - i));
    const middle = await client.read('page-1', { from: 10, limit: 5, pageSize: 2 }).toArray();
    assert.deepEqual(middle.map((e) => e.version), [10, 11, 12, 13, 14]);
    const fromEnd = await client.read('page-1', { from: 'end', direction: 'backward', limit: 2 }).toArray();
    assert.deepEqual(fromEnd.map((e) => e.version), [24, 23]);
    const page = await client.readPage('page-1', { from: 20, count: 100 });
    assert.deepEqual(page.map((e) => e.version), [20, 21, 22, 23, 24]);
    assert.deepEqual(await client.readPage('page-1', { from: 99 }), []);
  });

  test('errors of reads are typed', async () => {
    await rejects(client.read('never-written').toArray(), 'stream_not_found');
    await rejects(client.readPage('never-written'), 'stream_not_found');
    assert.throws(() => client.read('page-1', { pageSize: 0 }), { code: 'invalid_argument' });
  });

  test('$all in commit order, forward and backward', async () => {
    const all = await client.readAll({ pageSize: 10 }).toArray();
    assert.ok(all.length >= 25);
    assert.deepEqual(all.map((e) => e.position), Array.from({ length: all.length }, (_, i) => i));
    const last = await client.readAll({ direction: 'backward', limit: 3 }).toArray();
    assert.deepEqual(last.map((e) => e.position), [all.length - 1, all.length - 2, all.length - 3]);
  });

  test('by event types, paged', async () => {
    const odd = await client.readTypes(['Odd'], { pageSize: 3 }).toArray();
    assert.deepEqual(odd.map((e) => e.data), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]);
    const both = await client.readTypes(['Odd', 'Even'], { from: odd[5].position }).toArray();
    assert.equal(both[0].data, 11);
    assert.equal(both.length, 14);
    const single = await client.readTypesPage('Even', { count: 2 });
    assert.deepEqual(single.map((e) => e.data), [0, 2]);
  });
});

describe('streams, version, exists, delete', () => {
  test('list, page, delete and recreate', async () => {
    await client.append('ls-b', { eventType: 'T', data: 1 });
    await client.append('ls-a', { eventType: 'T', data: 1 });
    await client.append('ls-c', { eventType: 'T', data: 1 });
    const all = await client.streams().toArray();
    assert.deepEqual(all, [...all].sort());
    assert.ok(['ls-a', 'ls-b', 'ls-c'].every((id) => all.includes(id)));
    const paged = await client.streams({ pageSize: 2 }).toArray();
    assert.deepEqual(paged, all);
    assert.deepEqual(await client.streamsPage({ after: 'ls-a', count: 2 }), ['ls-b', 'ls-c']);

    assert.equal(await client.exists('ls-b'), true);
    await rejects(client.delete('ls-b', { expectedVersion: 5 }), 'wrong_expected_version');
    await client.delete('ls-b', { expectedVersion: 0 });
    assert.equal(await client.exists('ls-b'), false);
    assert.equal(await client.version('ls-b'), -1);
    await rejects(client.read('ls-b').toArray(), 'stream_deleted');
    assert.ok(!(await client.streams().toArray()).includes('ls-b'));
    await client.delete('ls-b');
    const recreated = await client.append('ls-b', { eventType: 'T', data: 2 }, { expectedVersion: 'no_stream' });
    assert.equal(recreated.version, 1);
    assert.deepEqual((await client.read('ls-b').toArray()).map((e) => e.data), [2]);
    assert.equal(await client.exists('nobody'), false);
    assert.equal(await client.version('nobody'), -1);
  });
});

describe('snapshots and AGG', () => {
  test('save, load, loadAt, list, exists, delete, retention', async () => {
    await client.append(
      'snap-1',
      [
        { eventType: 'Opened', data: { owner: 'Ada', balance: { $sum: 10 } } },
        { eventType: 'Deposited', data: { balance: { $sum: 5 } } },
        { eventType: 'Withdrawn', data: { balance: { $sum: -3 } } },
      ],
      { expectedVersion: 'no_stream' },
    );
    await rejects(client.snapshots.load('snap-1'), 'snapshot_not_found');
    assert.equal(await client.snapshots.exists('snap-1'), false);
    assert.deepEqual(await client.snapshots.list('snap-1'), []);

    const raw = await client.aggregate('snap-1', { raw: true });
    assert.deepEqual(raw, { streamId: 'snap-1', version: 2, state: { balance: { $sum: 12 }, owner: 'Ada' } });
    await client.snapshots.save('snap-1', 0, { owner: 'Ada', balance: { $sum: 10 } });
    await client.snapshots.save('snap-1', raw.version, raw.state, { metadata: { by: 'test' } });
    const latest = await client.snapshots.load('snap-1');
    assert.equal(latest.streamId, 'snap-1');
    assert.equal(latest.version, 2);
    assert.deepEqual(latest.data, raw.state);
    assert.deepEqual(latest.metadata, { by: 'test' });
    assert.ok(Number.isSafeInteger(latest.epochUs));
    assert.equal((await client.snapshots.loadAt('snap-1', 0)).version, 0);
    await rejects(client.snapshots.loadAt('snap-1', 1), 'snapshot_not_found');
    assert.equal(await client.snapshots.exists('snap-1', 0), true);
    assert.equal(await client.snapshots.exists('snap-1', 1), false);
    assert.deepEqual((await client.snapshots.list('snap-1')).map((s) => s.version), [0, 2]);
    assert.deepEqual((await client.snapshots.list('snap-1', { from: 1 })).map((s) => s.version), [2]);
    await rejects(client.snapshots.save('snap-1', 9, {}), 'invalid_argument');
    await rejects(client.snapshots.save('nobody', 0, {}), 'stream_not_found');

    await client.append('snap-1', { eventType: 'Deposited', data: { balance: { $sum: 100 } } });
    assert.deepEqual((await client.aggregate('snap-1', { fromSnapshot: true })).state, { balance: 112, owner: 'Ada' });
    assert.deepEqual((await client.aggregate('snap-1')).state, { balance: 112, owner: 'Ada' });
    assert.equal((await client.aggregate('snap-1', { order: 'foldr' })).version, 3);

    await client.snapshots.save('snap-1', 3, { balance: 112, owner: 'Ada' }, { keep: 1 });
    assert.deepEqual((await client.snapshots.list('snap-1')).map((s) => s.version), [3]);
    await client.snapshots.delete('snap-1', 3);
    await client.snapshots.delete('snap-1', 3);
    assert.equal(await client.snapshots.exists('snap-1'), false);
    await client.snapshots.save('snap-1', 1, { any: 'thing' });
    await client.snapshots.delete('snap-1');
    assert.deepEqual(await client.snapshots.list('snap-1'), []);
    await rejects(client.aggregate('nobody'), 'stream_not_found');
    await assert.rejects(client.aggregate('snap-1', { order: 'sideways' }), { code: 'invalid_argument' });
  });
});

describe('session', () => {
  test('USE switches stores; STATS counts per store; HELP answers', async () => {
    const other = await connect(server.tcpUrl);
    try {
      await other.use('audit');
      assert.equal(other.store, 'audit');
      await other.append('in-audit', { eventType: 'T', data: 1 }, { expectedVersion: 'no_stream' });
      assert.equal(await other.exists('in-audit'), true);
      assert.equal(await client.exists('in-audit'), false);
      await rejects(other.use('missing'), 'store_not_found');
      assert.equal(other.store, 'audit');
      const stats = await other.stats();
      assert.equal(stats.stores.audit.events, 1);
      assert.equal(stats.stores.audit.last_position, 0);
      assert.ok(stats.stores.default.events > 0);
      assert.match(await other.help(), /esdb commands/);
    } finally {
      other.close();
    }
    const inAudit = await connect(server.tcpUrl, { store: 'audit' });
    try {
      assert.equal(await inAudit.exists('in-audit'), true);
    } finally {
      inAudit.close();
    }
    await assert.rejects(connect(server.tcpUrl, { store: 'nope' }), { code: 'store_not_found' });
  });

  test('INFO is kept, with its limits', () => {
    assert.equal(client.info.proto, 1);
    assert.equal(client.limits.maxPayloadBytes, client.info.max_payload);
    assert.equal(client.address, server.tcpUrl);
  });
});

describe('pipelining', () => {
  test('concurrent calls share the connection and each gets its own reply, in order', async () => {
    const count = 300;
    const appends = Array.from({ length: count }, (_, i) =>
      client.append('pipe-1', { eventType: 'N', data: i }, { expectedVersion: i === 0 ? 'no_stream' : i - 1 }),
    );
    // Reads and a conflicting append mixed into the same pipeline.
    const version = client.version('pipe-1');
    const conflict = client.append('pipe-1', { eventType: 'N', data: -1 }, { expectedVersion: 0 });
    const results = await Promise.all(appends);
    assert.deepEqual(results.map((r) => r.version), Array.from({ length: count }, (_, i) => i));
    // Request order is effect order: VERSION sees every append sent before it.
    assert.equal(await version, count - 1);
    await rejects(conflict, 'wrong_expected_version');
    const read = await client.read('pipe-1').toArray();
    assert.deepEqual(read.map((e) => e.data), Array.from({ length: count }, (_, i) => i));
  });

  test('closing the client fails what is pending with client_closed', async () => {
    const other = await connect(server.tcpUrl);
    const pending = other.read('page-1').toArray();
    other.close();
    await rejects(pending, 'client_closed');
    await rejects(other.version('page-1'), 'client_closed');
  });
});

describe('keepalive', () => {
  test("the client answers the server's PINGs, so an idle connection stays open", async () => {
    // With these flags a client that did not answer would be closed after about 200 ms.
    const pinging = await EsdbServer.start({ args: ['--ping-interval-ms', '100', '--max-pings-out', '1'] });
    const idle = await connect(pinging.tcpUrl, { name: 'idle client ünï' });
    try {
      let disconnects = 0;
      idle.addEventListener('disconnect', () => {
        disconnects += 1;
      });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await idle.ping();
      assert.equal(disconnects, 0);
    } finally {
      idle.close();
      await pinging.dispose();
    }
  });
});
