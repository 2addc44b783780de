// Credentials and TLS against the real server (issue 14): certificates from the server crate's
// test tool examples/gen_certs (rcgen, made at test time), a password hash from `esdb passwd`,
// a token. TLS on the TCP transport (Node's tls.connect options), mutual TLS, and refusals.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Client, connect, EsdbError } from '../src/index.js';
import { esdbBinary, EsdbServer, REPO_ROOT } from './helpers/server.js';

const TOKEN = 'js-token-0123456789abcdef0123456';
const target = resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR || 'target');
const genCerts = join(target, 'debug', 'examples', 'gen_certs');
const skip = existsSync(genCerts) ? false : 'examples/gen_certs is not built (run-tests.sh builds it)';

let dir;
let certs;

function run(binary, args, input) {
  const result = spawnSync(binary, args, { input, encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0) throw new Error(`${binary} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

/** A server with TLS, one user (js/js-pass) and one token, both with every permission. */
async function secureServer(extra = []) {
  const config = join(dir, `esdb-${extra.length}.toml`);
  const hash = run(esdbBinary(), ['passwd'], 'js-pass\n').trim();
  writeFileSync(
    config,
    `[[auth.users]]\nname = "js"\npassword_hash = "${hash}"\npermissions = { default = ["all"] }\n\n` +
      `[[auth.tokens]]\nname = "ci"\ntoken = "${TOKEN}"\npermissions = { default = ["all"] }\n`,
  );
  return EsdbServer.start({
    args: ['--config', config, '--tls-cert', join(certs, 'server.pem'), '--tls-key', join(certs, 'server.key'), ...extra],
  });
}

const trust = (ca = 'ca.pem') => ({ ca: readFileSync(join(certs, ca)), servername: 'localhost' });
const NO_RETRY = { maxRetries: 0, backoffBaseMs: 10, backoffMaxMs: 20, connectTimeoutMs: 5_000 };

/** The promise rejects with an EsdbError whose code (or, for a failed connect, message) names `code`. */
async function rejectsWith(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof EsdbError, `an EsdbError, got ${error}`);
    assert.ok(error.code === code || error.message.includes(code), `${code}: ${error.code} ${error.message}`);
    return true;
  });
}

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'esdb-js-security-'));
  certs = join(dir, 'certs');
  run(genCerts, [certs]);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('TLS and credentials', { skip }, () => {
  let server;
  before(async () => {
    server = await secureServer();
  });
  after(async () => {
    await server?.dispose();
  });

  test('a password over TLS: INFO says auth_required, and appends and reads work', async () => {
    const client = await connect([server.tcpUrl], { user: 'js', password: 'js-pass', tls: trust(), ...NO_RETRY });
    try {
      assert.equal(client.info.auth_required, true);
      assert.equal(client.info.tls_required, true);
      const appended = await client.append('js-1', { eventType: 'Checked', data: { ok: true } }, { expectedVersion: 'no_stream' });
      assert.equal(appended.version, 0);
      const page = await client.readPage('js-1', { from: 0 });
      assert.equal(page.length, 1);
      assert.equal(page[0].eventType, 'Checked');
    } finally {
      client.close();
    }
  });

  test('a token over TLS works like a password', async () => {
    const client = await connect([server.tcpUrl], { token: TOKEN, tls: trust(), ...NO_RETRY });
    try {
      await client.append('js-token', { eventType: 'Checked', data: {} });
    } finally {
      client.close();
    }
  });

  test('a wrong password, a wrong token and no credentials are refused and write nothing', async () => {
    await rejectsWith(connect([server.tcpUrl], { user: 'js', password: 'wrong', tls: trust(), ...NO_RETRY }), 'auth_failed');
    await rejectsWith(connect([server.tcpUrl], { token: 'not-the-token', tls: trust(), ...NO_RETRY }), 'auth_failed');
    // Without credentials the connection opens, and every request is refused.
    const anonymous = await connect([server.tcpUrl], { tls: trust(), ...NO_RETRY }).catch((error) => error);
    if (anonymous instanceof Client) {
      try {
        await rejectsWith(anonymous.append('js-refused', { eventType: 'E', data: {} }), 'auth_required');
      } finally {
        anonymous.close();
      }
    } else {
      assert.ok(anonymous instanceof EsdbError && /auth_(failed|required)/.test(`${anonymous.code} ${anonymous.message}`), `${anonymous}`);
    }
    const client = await connect([server.tcpUrl], { token: TOKEN, tls: trust(), ...NO_RETRY });
    try {
      const version = await client.version('js-refused');
      assert.equal(version, -1, 'nothing was written');
    } finally {
      client.close();
    }
  });

  test('a server certificate from a CA the client does not trust fails the connection', async () => {
    await rejectsWith(connect([server.tcpUrl], { user: 'js', password: 'js-pass', tls: trust('other-ca.pem'), ...NO_RETRY }), 'connection_failed');
  });
});

describe('mutual TLS', { skip }, () => {
  let server;
  before(async () => {
    server = await secureServer(['--tls-client-ca', join(certs, 'ca.pem')]);
  });
  after(async () => {
    await server?.dispose();
  });

  test('the client certificate is required, and one from another CA is refused', async () => {
    const identity = (name) => ({ cert: readFileSync(join(certs, `${name}.pem`)), key: readFileSync(join(certs, `${name}.key`)) });
    const client = await connect([server.tcpUrl], { user: 'js', password: 'js-pass', tls: { ...trust(), ...identity('client') }, ...NO_RETRY });
    try {
      await client.append('js-mtls', { eventType: 'Checked', data: {} });
    } finally {
      client.close();
    }
    await rejectsWith(connect([server.tcpUrl], { user: 'js', password: 'js-pass', tls: trust(), ...NO_RETRY }), 'connection_failed');
    await rejectsWith(
      connect([server.tcpUrl], { user: 'js', password: 'js-pass', tls: { ...trust(), ...identity('rogue') }, ...NO_RETRY }),
      'connection_failed',
    );
  });
});
