// The web console in a real browser (Debian's headless chromium, driven by playwright-core)
// against the real esdb binary: what is written over TCP must show up in the page; the page
// must not be able to write unless the server allows it and the user switches writes on.
//
// Screenshots of each step go to tests/console/artifacts/ (gitignored). With
// CONSOLE_DOCS_SCREENSHOT=1 the stream browser's is also copied to docs/console.png.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { REPO_ROOT, startServer, TcpClient } from './esdb.mjs';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Containers often have a small /dev/shm.
  '--disable-dev-shm-usage',
];
/** Longest wait for something to appear in the page; a wait, never a timing assertion. */
const WAIT_MS = 15_000;

mkdirSync(ARTIFACTS, { recursive: true });

let browser;

before(async () => {
  // playwright's launch() gives every run a fresh temporary profile (--user-data-dir).
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, timeout: 60_000 });
});

after(async () => {
  await browser?.close();
});

async function openConsole(server, hash = '') {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.errors = errors;
  await page.goto(`${server.url}${hash}`);
  await page.locator('#conn-status[data-state="connected"]').waitFor();
  return page;
}

async function shot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** Waits until `selector`'s text satisfies `predicate` (bounded by WAIT_MS). */
async function waitForText(page, selector, predicate, what) {
  const locator = page.locator(selector);
  const deadline = Date.now() + WAIT_MS;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.textContent().catch(() => '')) ?? '';
    if (predicate(text)) return text;
    await page.waitForTimeout(100);
  }
  assert.fail(`${what}: ${selector} still reads ${JSON.stringify(text)}`);
}

function events(type, count, data) {
  return JSON.stringify(Array.from({ length: count }, (_, i) => ({
    event_type: type, data: data(i), metadata: { source: 'console-test', i },
  })));
}

describe('console on a server without --console-writes', () => {
  let server;
  let tcp;
  let page;

  before(async () => {
    server = await startServer();
    tcp = await TcpClient.connect(server.tcp);
    // Numbers JavaScript would round, to check they are shown as stored.
    const orders = JSON.stringify(Array.from({ length: 120 }, (_, i) => ({
      event_type: i % 2 ? 'OrderShipped' : 'OrderPlaced',
      data: { n: i, big: '__BIG__', price: '__PRICE__' },
      metadata: { by: 'console-test' },
    }))).replaceAll('"__BIG__"', '12345678901234567890').replaceAll('"__PRICE__"', '1.10');
    await tcp.request('APPEND orders-1 no_stream', orders);
    await tcp.request('APPEND orders-2 no_stream', events('OrderPlaced', 3, (i) => ({ n: i })));
    await tcp.request('APPEND other-1 no_stream', events('Other', 1, () => ({})));
    page = await openConsole(server);
  });

  after(async () => {
    tcp?.close();
    await page?.close();
    await server?.stop();
  });

  test('the overview shows the counts of /stats', async () => {
    await waitForText(page, '#ov-events', (t) => t === '124', 'event count');
    await waitForText(page, '#ov-streams', (t) => t === '3', 'stream count');
    await waitForText(page, '#ov-append-rate', (t) => /\/s$/.test(t), 'append rate');
    await shot(page, '01-overview');
  });

  test('the live tail shows an event appended over TCP, pauses, and keeps a bounded number of rows', async () => {
    await page.goto(`${server.url}#/tail`);
    await page.click('#tail-start-button');
    await page.locator('#tail-status[data-state="live"]').waitFor();
    await tcp.request('APPEND tail-1 any', JSON.stringify({ event_type: 'Greeted', data: { msg: 'hello from tcp' } }));
    const row = page.locator('#tail-table tbody tr', { hasText: 'tail-1' });
    await row.first().waitFor();
    await row.first().click();
    await waitForText(page, '#tail-detail', (t) => t.includes('hello from tcp'), 'tail detail');
    await shot(page, '02-tail');

    await page.click('#tail-pause');
    await tcp.request('APPEND tail-2 any', JSON.stringify({ event_type: 'Greeted', data: { msg: 'while paused' } }));
    await waitForText(page, '#tail-count', (t) => t.includes('1 waiting'), 'paused buffer');
    assert.equal(await page.locator('#tail-table tbody tr', { hasText: 'tail-2' }).count(), 0,
      'a paused tail draws nothing new');
    await page.click('#tail-pause');
    await page.locator('#tail-table tbody tr', { hasText: 'tail-2' }).first().waitFor();

    // More events than the tail keeps: it shows only the newest MAX_TAIL_ROWS (500).
    await tcp.request('APPEND burst-1 any', events('Burst', 600, (i) => ({ i })));
    await waitForText(page, '#tail-count', (t) => t.startsWith('602 received'), 'burst received');
    await waitForText(page, '#tail-count', (t) => t.includes('500 shown'), 'rows bounded');
    assert.equal(await page.locator('#tail-table tbody tr').count(), 500);
    const newest = await page.locator('#tail-table tbody tr').first().textContent();
    assert.match(newest, /burst-1\s*599/, 'newest first');
    await page.click('#tail-stop');
    await page.locator('#tail-status[data-state="idle"]').waitFor();
  });

  test('the stream browser finds streams by prefix, pages a stream both ways and opens an event', async () => {
    await page.goto(`${server.url}#/streams`);
    await page.fill('#streams-prefix', 'orders');
    await page.click('#streams-search button[type="submit"]');
    await waitForText(page, '#streams-results', (t) => t === 'orders-1orders-2', 'prefix search');
    await page.fill('#streams-prefix', 'orders-1');
    await page.click('#streams-search button[type="submit"]');
    await waitForText(page, '#streams-results', (t) => t === 'orders-1', 'exact id is found too');
    await page.click('#streams-results a');

    const versions = async () => page.locator('#stream-table tbody tr').evaluateAll(
      (rows) => rows.map((row) => Number(row.dataset.version)));
    const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    await waitForText(page, '#stream-info', (t) => t.startsWith('versions 70–119'), 'latest page');
    assert.deepEqual(await versions(), range(70, 119));
    assert.ok(await page.locator('#stream-newer').isDisabled(), 'nothing newer than the latest');
    await page.click('#stream-older');
    await waitForText(page, '#stream-info', (t) => t.startsWith('versions 20–69'), 'older page');
    assert.deepEqual(await versions(), range(20, 69));
    await page.click('#stream-older');
    await waitForText(page, '#stream-info', (t) => t.startsWith('versions 0–19'), 'oldest page');
    assert.deepEqual(await versions(), range(0, 19));
    assert.ok(await page.locator('#stream-older').isDisabled(), 'nothing older than version 0');
    await page.click('#stream-newer');
    await waitForText(page, '#stream-info', (t) => t.startsWith('versions 20–69'), 'newer page');
    await page.click('#stream-latest');
    await waitForText(page, '#stream-info', (t) => t.startsWith('versions 70–119'), 'latest again');

    await page.locator('#stream-table tbody tr[data-version="75"]').click();
    const detail = await waitForText(page, '#stream-detail', (t) => t.includes('"n": 75'), 'event detail');
    assert.ok(detail.includes('OrderShipped'), detail);
    assert.ok(detail.includes('12345678901234567890'), 'big integers shown as stored');
    assert.ok(detail.includes('1.10'), 'decimals shown as stored');
    assert.ok(detail.includes('"by": "console-test"'), 'metadata shown');
    assert.match(detail, /position\s*75/);
    assert.match(detail, /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}/, 'time shown');
    const file = await shot(page, '03-stream-browser');
    if (process.env.CONSOLE_DOCS_SCREENSHOT === '1') copyFileSync(file, path.join(REPO_ROOT, 'docs/console.png'));
  });

  test('writes are off: no switch, no append button, and the server refuses the page\'s append', async () => {
    assert.ok(await page.locator('#writes-toggle').isDisabled(), 'writes switch disabled');
    assert.equal(await page.locator('#mode-badge').textContent(), 'read-only');
    await page.click('#append-panel summary');
    assert.ok(await page.locator('#append-submit').isDisabled(), 'append button disabled');
    await waitForText(page, '#append-result', (t) => t.includes('--console-writes'), 'explains why');
    await shot(page, '04-read-only');
    // The page's own connection, used as a script on the page would: the server says no.
    const refused = await page.evaluate(async () => {
      try {
        await window.esdbConsole.client.request(
          'APPEND sneaky-1 any {"event_type":"Sneaky","data":{}}');
        return 'appended';
      } catch (error) {
        return error.code;
      }
    });
    assert.equal(refused, 'read_only');
    await assert.rejects(tcp.request('READ sneaky-1 0 10'), /stream_not_found/);
    // The connection is still usable for reads.
    const still = await page.evaluate(async () => (await window.esdbConsole.client.request('VERSION orders-1')).args[1]);
    assert.equal(still, '119');
  });

  test('persistent subscriptions show checkpoint, lag and parked events; replay needs writes', async () => {
    const consumer = await TcpClient.connect(server.tcp);
    await consumer.request('SUB p1 stream orders-2 billing');
    const first = await consumer.event('p1');
    await consumer.request(`NACK p1 park ${first.args[3]}`);
    await page.goto(`${server.url}#/psubs`);
    const row = page.locator('#psubs-table tbody tr[data-name="billing"]');
    await row.waitFor();
    await waitForText(page, '#psubs-table tbody tr[data-name="billing"] td.parked', (t) => t === '1', 'parked count');
    const lag = Number(await row.locator('td.lag').textContent());
    assert.ok(lag > 0, `lag ${lag}`);
    await row.click();
    await page.locator('#parked-table tbody tr').first().waitFor();
    assert.equal(await page.locator('#parked-table tbody tr').count(), 1);
    await page.locator('#parked-table tbody tr').first().click();
    await waitForText(page, '#parked-detail', (t) => t.includes('orders-2'), 'parked event detail');
    assert.ok(await page.locator('#parked-replay').isDisabled(), 'replay needs writes');
    await shot(page, '05-persistent-subscriptions');
    consumer.close();
  });

  test('snapshots of a stream are listed and opened', async () => {
    await tcp.request('SNAP SAVE orders-1 5 {"data":{"total":5}}');
    await tcp.request('SNAP SAVE orders-1 9 {"data":{"total":9},"metadata":{"by":"test"}}');
    await page.goto(`${server.url}#/snapshots/orders-1`);
    await waitForText(page, '#snapshots-note', (t) => t.startsWith('2 snapshot(s)'), 'snapshot list');
    await page.locator('#snapshots-table tbody tr').nth(1).click();
    const detail = await waitForText(page, '#snapshots-detail', (t) => t.includes('"total": 9'), 'snapshot');
    assert.ok(detail.includes('version 9'), detail);
    await shot(page, '06-snapshots');
  });

  test('the cluster page says single node', async () => {
    await page.goto(`${server.url}#/cluster`);
    await waitForText(page, '#cluster-mode', (t) => t === 'single node', 'cluster mode');
    await waitForText(page, '#cluster-node', (t) => t.includes('server id'), 'node facts');
    await shot(page, '07-cluster');
    assert.deepEqual(page.errors, [], 'no script errors');
  });
});

describe('console on a server with --console-writes', () => {
  let server;
  let tcp;
  let page;

  before(async () => {
    server = await startServer(['--console-writes']);
    tcp = await TcpClient.connect(server.tcp);
    await tcp.request('APPEND jobs-1 no_stream', events('JobQueued', 2, (i) => ({ job: i })));
    page = await openConsole(server, '#/streams/jobs-1');
  });

  after(async () => {
    tcp?.close();
    await page?.close();
    await server?.stop();
  });

  test('appending needs the switch; with it on, the event is written and shown', async () => {
    await waitForText(page, '#stream-info', (t) => t.startsWith('versions 0–1'), 'stream loaded');
    await page.click('#append-panel summary');
    assert.ok(await page.locator('#append-submit').isDisabled(), 'off until switched on');
    assert.ok(!(await page.locator('#writes-toggle').isDisabled()), 'switch offered');
    await page.check('#writes-toggle');
    await page.locator('#mode-badge[data-state="writes"]').waitFor();
    await page.fill('#append-expected', '1');
    await page.fill('#append-type', 'JobDone');
    await page.fill('#append-data', '{"job": 1, "ok": true}');
    await page.fill('#append-metadata', '{"by": "console"}');
    await page.click('#append-submit');
    await waitForText(page, '#append-result', (t) => t.startsWith('appended: jobs-1 version 2'), 'append result');
    await waitForText(page, '#stream-info', (t) => t.startsWith('versions 0–2'), 'page reloaded');
    const read = await tcp.request('READ jobs-1 2 1');
    const [record] = JSON.parse(read.body);
    assert.equal(record.event_type, 'JobDone');
    assert.deepEqual(record.data, { job: 1, ok: true });
    assert.deepEqual(record.metadata, { by: 'console' });
    await shot(page, '08-append');

    // A wrong expected version comes back as the server's error.
    await page.fill('#append-expected', '0');
    await page.click('#append-submit');
    await waitForText(page, '#append-result', (t) => t.startsWith('wrong_expected_version'), 'conflict');

    // Switched off again, the button is off and the reads still work read-only.
    await page.uncheck('#writes-toggle');
    await page.locator('#mode-badge[data-state="readonly"]').waitFor();
    assert.ok(await page.locator('#append-submit').isDisabled());
  });

  test('parked events are replayed from the console when writes are on', async () => {
    const consumer = await TcpClient.connect(server.tcp);
    await consumer.request('SUB p1 stream jobs-1 workers');
    const first = await consumer.event('p1');
    await consumer.request(`NACK p1 park ${first.args[3]}`);
    await page.goto(`${server.url}#/psubs/workers`);
    await waitForText(page, '#psubs-table tbody tr[data-name="workers"] td.parked', (t) => t === '1', 'parked');
    await page.locator('#parked-table tbody tr').first().waitFor();
    await page.check('#writes-toggle');
    await page.locator('#mode-badge[data-state="writes"]').waitFor();
    await page.click('#parked-replay');
    await waitForText(page, '#parked-result', (t) => t.startsWith('replayed'), 'replay result');
    // The consumer gets the parked event again; once it acknowledges it, nothing is parked.
    const again = await consumer.event('p1', first.args[3]);
    await consumer.request(`ACK p1 ${again.args[3]}`);
    await waitForText(page, '#psubs-table tbody tr[data-name="workers"] td.parked', (t) => t === '0', 'none parked');
    await shot(page, '09-replayed');
    consumer.close();
    assert.deepEqual(page.errors, [], 'no script errors');
  });
});
