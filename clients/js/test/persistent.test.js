// Persistent subscriptions against a real server: ack and nack (retry, skip, park), PSUB
// management, and resuming from the checkpoint after the client process is killed and after
// the server is killed with kill -9 and restarted on the same data dir.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { Client, connect } from '../src/index.js';
import { EsdbServer, eventually } from './helpers/server.js';
import { nextEvent, take, within } from './helpers/subscriptions.js';

const here = dirname(fileURLToPath(import.meta.url));

async function seed(client, stream, count) {
  const result = await client.append(
    stream,
    Array.from({ length: count }, (_, i) => ({ eventType: 'Job', data: { i } })),
    { expectedVersion: 'no_stream' },
  );
  return Array.from({ length: count }, (_, i) => result.position - count + 1 + i);
}

/** Waits until the subscription's stored checkpoint has reached `position`. */
async function checkpointReaches(client, name, position) {
  await eventually(async () => (await client.persistent.get(name)).checkpoint >= position, {
    what: `checkpoint of ${name} to reach ${position}`,
  });
}

describe('ack, nack and PSUB', () => {
  let server;
  let client;

  before(async () => {
    server = await EsdbServer.start();
    client = await connect(server.tcpUrl);
  });

  after(async () => {
    client?.close();
    await server?.dispose();
  });

  test('ack, nack retry/skip/park, parked, replay', async () => {
    const positions = await seed(client, 'jobs-1', 5);
    const subscription = await client.subscribe({ stream: 'jobs-1' }, { name: 'workers', maxRetries: 3 });
    assert.equal(subscription.persistent, true);
    const first = await take(subscription, 5);
    assert.deepEqual(first.map((e) => e.position), positions);
    assert.equal(await subscription.ack(first[0], first[1]), true);
    assert.equal(await subscription.nack('retry', first[2]), true);
    const retried = await nextEvent(subscription);
    assert.equal(retried.position, positions[2]);
    assert.equal(await subscription.ack(retried), true);
    assert.equal(await subscription.nack('skip', first[3].position), true);
    assert.equal(await subscription.nack('park', first[4]), true);

    // Parking is applied by the subscription's group after NACK's +OK, so wait for it.
    await eventually(async () => (await client.persistent.get('workers')).parked === 1, { what: 'the event parked' });
    const info = await client.persistent.get('workers');
    assert.equal(info.name, 'workers');
    assert.equal(info.type, 'stream');
    assert.equal(info.selector, 'jobs-1');
    assert.equal(info.options.maxRetries, 3);
    assert.equal(info.options.maxInFlight, 100);
    assert.equal(info.parked, 1);
    const parked = await client.persistent.parked('workers');
    assert.deepEqual(parked.map((e) => e.position), [positions[4]]);
    assert.deepEqual(parked[0].data, { i: 4 });

    await client.persistent.replay('workers');
    const replayed = await nextEvent(subscription);
    assert.equal(replayed.position, positions[4]);
    assert.equal(await subscription.ack(replayed), true);
    await checkpointReaches(client, 'workers', positions[4] + 1);
    await eventually(async () => (await client.persistent.get('workers')).parked === 0, { what: 'no event parked' });

    assert.equal(await client.persistent.exists('workers'), true);
    const list = await client.persistent.list();
    assert.deepEqual(list.map((s) => s.name), ['workers']);
    await assert.rejects(subscription.nack('later', first[0]), { code: 'invalid_argument' });
    await subscription.unsubscribe();
    await assert.rejects(client.persistent.delete('workers', { type: 'event_type' }), { code: 'subscription_not_found' });
    await client.persistent.delete('workers', { type: 'stream' });
    assert.equal(await client.persistent.exists('workers'), false);
    await assert.rejects(client.persistent.get('workers'), { code: 'subscription_not_found' });
  });

  test('a retried event is parked after max_retries', async () => {
    const [position] = await seed(client, 'jobs-2', 1);
    const subscription = await client.subscribe({ stream: 'jobs-2' }, { name: 'flaky', maxRetries: 1 });
    assert.equal((await nextEvent(subscription)).position, position);
    await subscription.nack('retry', position);
    assert.equal((await nextEvent(subscription)).position, position);
    await subscription.nack('retry', position);
    await eventually(async () => (await client.persistent.get('flaky')).parked === 1, { what: 'the event parked' });
    await subscription.unsubscribe();
    await client.persistent.delete('flaky');
  });

  test('autoAck acknowledges an event when the consumer takes the next', async () => {
    const positions = await seed(client, 'jobs-3', 3);
    const subscription = await client.subscribe({ stream: 'jobs-3' }, { name: 'auto', autoAck: true });
    const seen = [];
    for await (const event of subscription) {
      seen.push(event.position);
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, positions);
    // The first two were acknowledged by taking the next; the third was not.
    await checkpointReaches(client, 'auto', positions[1] + 1);
    const again = await client.subscribe({ stream: 'jobs-3' }, { name: 'auto' });
    assert.equal((await nextEvent(again)).position, positions[2]);
    await again.unsubscribe();
  });

  test('acknowledgements made right before unsubscribing are kept', async () => {
    // The server may apply an UNSUB ahead of ACKs pipelined before it; the client waits.
    for (let round = 0; round < 15; round++) {
      const positions = await seed(client, `jobs-4-${round}`, 2);
      const subscription = await client.subscribe({ stream: `jobs-4-${round}` }, { name: `quick-${round}` });
      const events = await take(subscription, 2);
      // Two ACK lines (two ticks), then the UNSUB, all in one write.
      const first = subscription.ack(events[0]);
      await null;
      const second = subscription.ack(events[1]);
      await subscription.unsubscribe();
      assert.deepEqual(await Promise.all([first, second]), [true, true]);
      await checkpointReaches(client, `quick-${round}`, positions[1] + 1);
    }
  });

  test('catch-up subscriptions cannot ack', async () => {
    const subscription = await client.subscribe({ stream: 'jobs-1' });
    await assert.rejects(subscription.ack(0), { code: 'invalid_argument' });
    await subscription.unsubscribe();
  });
});

describe('resuming from the checkpoint', () => {
  test('after the client process is killed', async () => {
    const server = await EsdbServer.start();
    const client = await connect(server.tcpUrl);
    const child = spawn(process.execPath, [join(here, 'helpers', 'persistent-consumer.js'), server.tcpUrl, 'billing', 'inv-1', '4'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const positions = await seed(client, 'inv-1', 10);
      const line = await within(
        new Promise((resolve) => {
          let out = '';
          child.stdout.on('data', (chunk) => {
            out += chunk;
            if (out.includes('\n')) resolve(out.split('\n')[0]);
          });
        }),
        20_000,
        'the consumer acknowledging',
      );
      assert.deepEqual(JSON.parse(line).acked, positions.slice(0, 4));
      await checkpointReaches(client, 'billing', positions[4]);
      child.kill('SIGKILL');
      await exited;
      const resumed = await client.subscribe({ stream: 'inv-1' }, { name: 'billing' });
      const rest = await take(resumed, 6);
      assert.deepEqual(rest.map((e) => e.position), positions.slice(4));
      await resumed.ack(rest);
      await resumed.unsubscribe();
    } finally {
      child.kill('SIGKILL');
      client.close();
      await server.dispose();
    }
  });

  test('after the server is killed with kill -9 and restarted on the same data dir', async () => {
    const server = await EsdbServer.start();
    const client = new Client([server.tcpUrl], { backoffBaseMs: 50, backoffMaxMs: 500, maxRetries: 30 });
    try {
      const positions = await seed(client, 'ship-1', 10);
      const subscription = await client.subscribe({ stream: 'ship-1' }, { name: 'shipping' });
      const first = await take(subscription, 4);
      assert.deepEqual(first.map((e) => e.position), positions.slice(0, 4));
      assert.equal(await subscription.ack(first), true);
      await checkpointReaches(client, 'shipping', positions[4]);
      await server.stop('SIGKILL');
      await server.restart();
      // The client reconnects by itself and the server resumes the subscription from its
      // checkpoint: what was acknowledged does not come again, nothing is skipped.
      const rest = await take(subscription, 6);
      assert.deepEqual(rest.map((e) => e.position), positions.slice(4));
      assert.equal(await subscription.ack(rest), true);
      await checkpointReaches(client, 'shipping', positions[9] + 1);
      await subscription.unsubscribe();
    } finally {
      client.close();
      await server.dispose();
    }
  });
});
