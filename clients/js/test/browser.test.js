// In a real browser (Debian's chromium, headless, driven by playwright-core): a page imports
// the ESM client from a local static server, subscribes over WebSocket to the server's /ws,
// and shows the events the test appends over TCP. A screenshot is kept in test-artifacts/.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { chromium } from 'playwright-core';

import { connect } from '../src/index.js';
import { EsdbServer } from './helpers/server.js';
import { serveStatic } from './helpers/static-server.js';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ARTIFACTS_DIR = join(PACKAGE_ROOT, 'test-artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const PAGE_TIMEOUT_MS = 30_000;
// Nothing reaches beyond loopback: no updates, no sync, no QUIC, no first-run fetches.
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

test('a browser page subscribes over WebSocket and shows events appended over TCP', async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (run-tests.sh does)`);
  const server = await EsdbServer.start();
  const files = await serveStatic(PACKAGE_ROOT);
  const profile = mkdtempSync(join(tmpdir(), 'esdb-js-chromium-'));
  const writer = await connect(server.tcpUrl);
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 900, height: 420 },
      timeout: PAGE_TIMEOUT_MS,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const history = await writer.append('browser-1', { eventType: 'Opened', data: { owner: 'Ada' } });
    const query = new URLSearchParams({ ws: server.wsUrl, stream: 'browser-1' });
    await page.goto(`${files.url}/test/browser/page.html?${query}`, { timeout: PAGE_TIMEOUT_MS });
    await page.waitForSelector('body[data-state="subscribed"]', { timeout: PAGE_TIMEOUT_MS });

    await writer.append('browser-1', [
      { eventType: 'Deposited', data: { amount: 10 } },
      { eventType: 'Deposited', data: { amount: 5 } },
    ]);
    await writer.append('browser-1', { eventType: 'Renamed', data: { owner: 'Ada Lovelace' } });
    await page.waitForFunction(() => document.querySelectorAll('#events li').length >= 4, null, { timeout: PAGE_TIMEOUT_MS });
    await page.waitForSelector('#status.live', { timeout: PAGE_TIMEOUT_MS });

    const items = await page.$$eval('#events li', (lis) => lis.map((li) => [Number(li.dataset.position), li.textContent]));
    assert.deepEqual(items, [
      [history.position, 'Opened #0: {"owner":"Ada"}'],
      [history.position + 1, 'Deposited #1: {"amount":10}'],
      [history.position + 2, 'Deposited #2: {"amount":5}'],
      [history.position + 3, 'Renamed #3: {"owner":"Ada Lovelace"}'],
    ]);
    assert.match(await page.textContent('#status'), /^live over ws:\/\//);
    assert.deepEqual(pageErrors, []);

    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    const screenshot = join(ARTIFACTS_DIR, 'browser-subscription.png');
    await page.screenshot({ path: screenshot });
    t.diagnostic(`screenshot: ${screenshot}`);
    console.log(`browser test screenshot: ${screenshot}`);
  } finally {
    await context?.close();
    writer.close();
    await files.close();
    await server.dispose();
    rmSync(profile, { recursive: true, force: true });
  }
});
