// Connecting to a list of servers: round-robin, failover to the next when one is down, giving
// up after the retry budget, retrying requests lost with a connection (appends exactly once),
// and never retrying the store's own answers.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client, connect, EsdbError } from '../src/index.js';
import { EsdbServer } from './helpers/server.js';
import { range } from './helpers/subscriptions.js';

/** An address where nothing listens: a server's, after it stopped. */
async function deadAddress() {
  const server = await EsdbServer.start();
  const address = server.tcpUrl;
  await server.dispose();
  return address;
}

/** The server's count of `-ERR <code>` sent, from /metrics. */
async function errorsSent(server, code) {
  const text = await (await fetch(`http://${server.httpAddress}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`esdb_error_sent_total{code="${code}"}`));
  assert.ok(line, `metric for ${code} present`);
  return Number(line.split(' ').pop());
}

test('connecting skips a server that is down', async () => {
  const dead = await deadAddress();
  const live = await EsdbServer.start();
  try {
    const client = await connect([dead, live.tcpUrl], { backoffBaseMs: 10 });
    try {
      assert.equal(client.address, live.tcpUrl);
      await client.append('f-1', { eventType: 'T', data: 1 });
      assert.equal(await client.version('f-1'), 0);
    } finally {
      client.close();
    }
  } finally {
    await live.dispose();
  }
});

test('when the connected server stops, calls fail over to the next one', async () => {
  const first = await EsdbServer.start();
  const second = await EsdbServer.start();
  const client = await connect([first.tcpUrl, second.tcpUrl], { backoffBaseMs: 10 });
  const disconnects = [];
  client.addEventListener('disconnect', (event) => disconnects.push(event.detail.address));
  try {
    assert.equal(client.address, first.tcpUrl);
    await client.append('on-first', { eventType: 'T', data: 1 });
    await first.stop();
    // The next call reconnects, to the other server.
    await client.append('on-second', { eventType: 'T', data: 2 });
    assert.equal(client.address, second.tcpUrl);
    assert.deepEqual(disconnects, [first.tcpUrl]);
    assert.equal(await client.exists('on-second'), true);
    assert.equal(await client.exists('on-first'), false, 'the second server has its own data');
  } finally {
    client.close();
    await first.dispose();
    await second.dispose();
  }
});

test('with every server down, it tries round-robin with backoff, then gives up with connection_failed', async () => {
  const deadA = await deadAddress();
  const deadB = await deadAddress();
  const client = new Client([deadA, deadB], { maxRetries: 3, backoffBaseMs: 5, backoffMaxMs: 20 });
  const tried = [];
  const delays = [];
  let connected = 0;
  client.addEventListener('reconnecting', (event) => delays.push(event.detail.delayMs));
  client.addEventListener('connecting', (event) => tried.push(event.detail.address));
  client.addEventListener('connect', () => {
    connected += 1;
  });
  try {
    await assert.rejects(client.ping(), (error) => {
      assert.ok(error instanceof EsdbError);
      assert.equal(error.code, 'connection_failed');
      assert.match(error.message, /after 4 attempts/);
      return true;
    });
    assert.equal(delays.length, 3, 'one backoff before each of the 3 retries');
    assert.ok(delays.every((d, i) => d >= Math.min(20, 5 * 2 ** i) / 2 && d <= Math.min(20, 5 * 2 ** i)), `delays ${delays}`);
    assert.deepEqual(tried, [deadA, deadB, deadA, deadB], 'round-robin over the list');
    assert.equal(connected, 0);
  } finally {
    client.close();
  }
});

test('requests in flight when the server is killed are sent again; appends land exactly once', async () => {
  const server = await EsdbServer.start();
  const client = new Client([server.tcpUrl], { backoffBaseMs: 50, backoffMaxMs: 500, maxRetries: 30 });
  try {
    await client.ping();
    const count = 400;
    let answered = 0;
    const appends = Array.from({ length: count }, (_, i) =>
      client.append('once-1', { eventType: 'N', data: i }).then((result) => {
        answered += 1;
        return result;
      }),
    );
    // Kill the server while the pipeline is being answered, then bring it back.
    await appends[0];
    await server.stop('SIGKILL');
    const answeredBeforeKill = answered;
    await server.restart();
    const results = await Promise.all(appends);
    assert.ok(answeredBeforeKill < count, 'some appends were still unanswered when the server died');
    const events = await client.read('once-1').toArray();
    const data = events.map((e) => e.data).sort((a, b) => a - b);
    assert.deepEqual(data, range(0, count - 1), 'every append once, none twice');
    assert.deepEqual(
      results.map((r) => r.version).sort((a, b) => a - b),
      range(0, count - 1),
    );
  } finally {
    client.close();
    await server.dispose();
  }
});

test("the store's answers are never retried", async () => {
  const server = await EsdbServer.start();
  const client = await connect(server.tcpUrl);
  try {
    await client.append('nr-1', { eventType: 'T', data: 1 });
    const conflictsBefore = await errorsSent(server, 'wrong_expected_version');
    const notFoundBefore = await errorsSent(server, 'stream_not_found');
    await assert.rejects(client.append('nr-1', { eventType: 'T', data: 2 }, { expectedVersion: 5 }), {
      code: 'wrong_expected_version',
    });
    await assert.rejects(client.read('missing').toArray(), { code: 'stream_not_found' });
    await client.ping();
    assert.equal(await errorsSent(server, 'wrong_expected_version'), conflictsBefore + 1);
    assert.equal(await errorsSent(server, 'stream_not_found'), notFoundBefore + 1);
  } finally {
    client.close();
    await server.dispose();
  }
});

test('a retryable answer (store_full) is sent again, at most maxRetries times, then returned', async () => {
  // An 8 MiB store refuses appends of 200 KB after a few (the server keeps 4 MiB of its map
  // free and reserves room for each append before it enters the log): the disk is "full".
  const server = await EsdbServer.start({ args: ['--map-size-mb', '8'] });
  const client = await connect(server.tcpUrl, { maxRetries: 2, backoffBaseMs: 5 });
  try {
    const before = await errorsSent(server, 'store_full');
    let failure = null;
    for (let i = 0; i < 20 && failure === null; i++) {
      try {
        await client.append('full-1', { eventType: 'Big', data: 'x'.repeat(200_000) });
      } catch (error) {
        failure = error;
      }
    }
    assert.ok(failure instanceof EsdbError, 'the store filled up');
    assert.equal(failure.code, 'store_full');
    assert.equal(failure.retryable, true);
    assert.equal(await errorsSent(server, 'store_full'), before + 3, 'sent once and retried twice');
    // Nothing of the failed append was written, and the connection is fine.
    const version = await client.version('full-1');
    assert.equal((await client.read('full-1').toArray()).length, version + 1);
  } finally {
    client.close();
    await server.dispose();
  }
});
