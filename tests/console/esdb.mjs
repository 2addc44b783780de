// The real esdb server for the browser test: spawned on port 0 with a temporary data directory,
// plus a small protocol client over TCP to write what the console should then show.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** How long the server may take to announce its ports, and a reply to arrive. */
const STARTUP_TIMEOUT_MS = 30_000;
const REPLY_TIMEOUT_MS = 15_000;

/** `ESDB_BIN`, else target/debug/esdb (built with cargo when missing). */
export function esdbBinary() {
  if (process.env.ESDB_BIN) return path.resolve(process.env.ESDB_BIN);
  const binary = path.join(REPO_ROOT, 'target/debug/esdb');
  if (!existsSync(binary)) {
    const build = spawnSync('cargo', ['build', '--bin', 'esdb'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (build.status !== 0) throw new Error('cargo build --bin esdb failed');
  }
  return binary;
}

/** Starts `esdb serve` on port 0; resolves with its addresses and a `stop()`. */
export async function startServer(extraArgs = []) {
  const dir = mkdtempSync(path.join(tmpdir(), 'esdb-console-'));
  const child = spawn(esdbBinary(), [
    'serve', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0',
    '--data-dir', path.join(dir, 'data'), ...extraArgs,
  ], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ESDB_LOG_LEVEL: 'warn' } });
  const addresses = await new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no announce lines: ${text}`)), STARTUP_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`esdb exited (${code}): ${text}`)));
    child.stdout.on('data', (chunk) => {
      text += chunk;
      const tcp = /esdb listening on (\S+)/.exec(text);
      const http = /esdb http on (\S+)/.exec(text);
      if (tcp && http) {
        clearTimeout(timer);
        resolve({ tcp: tcp[1], http: http[1] });
      }
    });
  });
  child.stdout.resume();
  return {
    ...addresses,
    url: `http://${addresses.http}/`,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const PAYLOAD_REPLIES = new Set([
  'EVENTS', 'STREAMS', 'SNAPSHOTS', 'SNAPSHOT', 'AGG', 'HELP', 'STATS', 'EVENT', 'SUBS', 'SUBINFO',
]);

/** A protocol client over TCP: `request()` resolves with the next reply; pushed EVENTs are kept. */
export class TcpClient {
  static async connect(address) {
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const client = new TcpClient(net.connect({ host, port }));
    const info = await client.next();
    if (info.kind !== 'INFO') throw new Error(`expected INFO, got ${info.line}`);
    return client;
  }

  constructor(socket) {
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.events = [];
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.decode();
    });
  }

  decode() {
    for (;;) {
      const newline = this.buffer.indexOf(10);
      if (newline < 0) return;
      const line = this.buffer.subarray(0, newline).toString('utf8').replace(/\r$/, '');
      const kind = line.split(' ')[0];
      let consumed = newline + 1;
      let body = null;
      if (PAYLOAD_REPLIES.has(kind)) {
        const size = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (this.buffer.length < consumed + size + 2) return;
        body = this.buffer.subarray(consumed, consumed + size).toString('utf8');
        consumed += size + 2;
      }
      this.buffer = this.buffer.subarray(consumed);
      const frame = { kind, line, args: line.split(' ').slice(1), body };
      if (kind === 'EVENT' || kind === 'LIVE') this.events.push(frame);
      else if (kind === 'PING') this.socket.write('PONG\r\n');
      else if (this.waiters.length) this.waiters.shift()(frame);
      else this.frames.push(frame);
    }
  }

  next() {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply in time')), REPLY_TIMEOUT_MS);
      this.waiters.push((frame) => { clearTimeout(timer); resolve(frame); });
    });
  }

  /** Sends a line (and a sized payload) and resolves with its reply; -ERR rejects. */
  async request(line, payload = null) {
    const frame = payload === null ? `${line}\r\n` : `${line} ${Buffer.byteLength(payload)}\r\n${payload}\r\n`;
    this.socket.write(frame);
    const reply = await this.next();
    if (reply.kind === '-ERR') throw new Error(reply.line);
    return reply;
  }

  /**
   * Waits (bounded) until an EVENT frame for `sid` arrives, at `position` when given, and
   * takes it out of the received frames.
   */
  async event(sid, position = null, timeoutMs = REPLY_TIMEOUT_MS) {
    const deadline = Date.now() + timeoutMs;
    const wanted = (e) => e.kind === 'EVENT' && e.args[0] === sid
      && (position === null || e.args[3] === String(position));
    while (Date.now() < deadline) {
      const index = this.events.findIndex(wanted);
      if (index >= 0) return this.events.splice(index, 1)[0];
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no EVENT for ${sid} in ${timeoutMs} ms`);
  }

  close() {
    this.socket.destroy();
  }
}
