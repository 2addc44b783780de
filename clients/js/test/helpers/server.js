// Starts a real esdb server for a test: ESDB_BIN, else target/debug/esdb under the repo root
// (built with cargo if missing), on port 0 with a temp data dir; the real ports come from the
// announce lines it prints.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '../../../..');
/** How long a server may take to print its announce lines. */
const START_TIMEOUT_MS = 30_000;
/** How long a stopped server may take to exit. */
const STOP_TIMEOUT_MS = 15_000;

let binary = null;

/** The server binary, built once if needed. */
export function esdbBinary() {
  if (binary !== null) return binary;
  if (process.env.ESDB_BIN) {
    binary = resolve(process.env.ESDB_BIN);
    if (!existsSync(binary)) throw new Error(`ESDB_BIN=${process.env.ESDB_BIN} does not exist`);
    return binary;
  }
  const built = join(REPO_ROOT, 'target', 'debug', 'esdb');
  if (!existsSync(built)) {
    const result = spawnSync('cargo', ['build', '--bin', 'esdb'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (result.status !== 0) throw new Error('cargo build --bin esdb failed');
  }
  binary = built;
  return binary;
}

/**
 * The server crate's test tool `examples/seed_unreadable` (run-tests.sh builds it when
 * missing), or null when it is not built.
 */
export function seedUnreadableBinary() {
  const target = resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR || 'target');
  const path = join(target, 'debug', 'examples', 'seed_unreadable');
  return existsSync(path) ? path : null;
}

/**
 * Appends events of type `Seeded` with these data (JSON text the protocol would refuse, as an
 * older server might have stored it) to `stream` of store `default` in `dataDir`, while no
 * server runs on it.
 */
export function seedUnreadable(dataDir, stream, datas) {
  const tool = seedUnreadableBinary();
  if (tool === null) throw new Error('examples/seed_unreadable is not built');
  const result = spawnSync(tool, [dataDir, 'default', stream, ...datas], { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0) throw new Error(`seed_unreadable failed (${result.status}): ${result.stderr}`);
}

const ANNOUNCE_TCP = /^esdb listening on (\S+) /;
const ANNOUNCE_HTTP = /^esdb http on (\S+) /;

export class EsdbServer {
  /**
   * @param {{args?: string[], dataDir?: string, listen?: string, http?: string}} [options]
   */
  static async start(options = {}) {
    const server = new EsdbServer(options);
    await server.#spawn();
    return server;
  }

  constructor({ args = [], dataDir, listen = '127.0.0.1:0', http = '127.0.0.1:0' }) {
    this.args = args;
    this.ownsDataDir = dataDir === undefined;
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), 'esdb-js-'));
    this.listen = listen;
    this.http = http;
    this.process = null;
    this.exited = null;
    /** host:port of the protocol listener */
    this.tcp = null;
    /** host:port of the HTTP listener */
    this.httpAddress = null;
    this.output = '';
  }

  get tcpUrl() {
    return `tcp://${this.tcp}`;
  }

  get wsUrl() {
    return `ws://${this.httpAddress}/ws`;
  }

  async #spawn() {
    const args = ['serve', '--listen', this.listen, '--http', this.http, '--data-dir', this.dataDir, ...this.args];
    const child = spawn(esdbBinary(), args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ESDB_LOG_LEVEL: process.env.ESDB_LOG_LEVEL ?? 'warn' },
    });
    this.process = child;
    this.exited = new Promise((resolveExit) => child.once('exit', (code, signal) => resolveExit({ code, signal })));
    await new Promise((resolveStart, reject) => {
      let pending = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`esdb did not announce its ports within ${START_TIMEOUT_MS} ms:\n${this.output}`));
      }, START_TIMEOUT_MS);
      const onLine = (line) => {
        const tcp = ANNOUNCE_TCP.exec(line);
        if (tcp) this.tcp = tcp[1];
        const http = ANNOUNCE_HTTP.exec(line);
        if (http) this.httpAddress = http[1];
        if (this.tcp !== null && this.httpAddress !== null) {
          clearTimeout(timer);
          resolveStart();
        }
      };
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk) => {
        this.output += chunk;
        pending += chunk;
        let newline;
        while ((newline = pending.indexOf('\n')) >= 0) {
          onLine(pending.slice(0, newline));
          pending = pending.slice(newline + 1);
        }
      });
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk) => {
        this.output += chunk;
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`esdb exited (${code ?? signal}) before announcing its ports:\n${this.output}`));
      });
    });
    // Keep the same ports across a restart on the same data dir.
    this.listen = this.tcp;
    this.http = this.httpAddress;
  }

  /** Stops it: SIGTERM (clean shutdown) or SIGKILL (a crash). */
  async stop(signal = 'SIGTERM') {
    if (this.process === null) return;
    const child = this.process;
    this.process = null;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  /** Starts it again on the same data dir and ports (after stop). */
  async restart() {
    await this.stop();
    await this.#spawn();
  }

  /** Stops it and removes its data dir. */
  async dispose() {
    await this.stop();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Polls `check` until it returns a truthy value, at most `timeoutMs`. */
export async function eventually(check, { timeoutMs = 15_000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
