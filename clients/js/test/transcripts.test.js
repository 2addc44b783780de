// Replays every golden transcript in protocol/transcripts/ (format: its README.md) against a
// fresh real server, decoding the server's output with the client's Decoder: over TCP with each
// step written whole, over TCP a byte at a time (sent and decoded), and over WebSocket.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';

import { Decoder } from '../src/index.js';
import { EsdbServer, REPO_ROOT } from './helpers/server.js';
import { WebSocketImpl } from './helpers/websocket.js';

const TRANSCRIPTS_DIR = join(REPO_ROOT, 'protocol', 'transcripts');
/** How long one expected line may take to arrive. */
const LINE_TIMEOUT_MS = 20_000;

/** Parses a transcript into server args and steps of lines sent then lines expected. */
export function parseTranscript(text) {
  const serverArgs = [];
  const steps = [];
  let current = { send: [], expect: [] };
  for (const line of text.split('\n').map((l) => l.replace(/\r$/, ''))) {
    if (line.startsWith('#! server-args:')) {
      serverArgs.push(...line.slice('#! server-args:'.length).split(/\s+/).filter(Boolean));
    } else if (line.startsWith('C: ')) {
      if (current.expect.length > 0) {
        steps.push(current);
        current = { send: [], expect: [] };
      }
      current.send.push(line.slice(3));
    } else if (line.startsWith('S: ')) {
      current.expect.push(line.slice(3));
    } else {
      assert.ok(line === '' || line.startsWith('#'), `transcript line must start with C: , S: or #: ${JSON.stringify(line)}`);
    }
  }
  if (current.send.length > 0 || current.expect.length > 0) steps.push(current);
  return { serverArgs, steps };
}

/** The bytes a step sends: each line plus CRLF, `<#>` replaced by the next line's byte length. */
export function stepBytes(step) {
  const parts = step.send.map((line, index) => {
    if (!line.includes('<#>')) return line;
    const next = step.send[index + 1];
    assert.ok(next !== undefined, '<#> needs a following C: line');
    return line.replaceAll('<#>', String(Buffer.byteLength(next, 'utf8')));
  });
  return Buffer.from(parts.map((p) => `${p}\r\n`).join(''), 'utf8');
}

const PLACEHOLDERS = [
  ['<any>', '.*'],
  ['<uuid>', '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'],
  ['<int>', '-?[0-9]+'],
];

/** An expected line as an anchored regular expression. */
export function pattern(expected) {
  let source = '^';
  let rest = expected;
  outer: while (rest.length > 0) {
    for (const [name, replacement] of PLACEHOLDERS) {
      if (rest.startsWith(name)) {
        source += replacement;
        rest = rest.slice(name.length);
        continue outer;
      }
    }
    const char = String.fromCodePoint(rest.codePointAt(0));
    source += char.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    rest = rest.slice(char.length);
  }
  return new RegExp(`${source}$`, 'su');
}

/**
 * Turns decoded frames into transcript lines: the control line, then a sized body split on
 * line breaks. `next()` resolves with a line, or null once the server closed.
 */
class LineReader {
  constructor({ byteAtATime }) {
    this.decoder = new Decoder();
    this.byteAtATime = byteAtATime;
    this.lines = [];
    this.closed = false;
    this.wake = null;
  }

  feed(chunk) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : new Uint8Array(chunk);
    const pieces = this.byteAtATime ? Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)) : [bytes];
    for (const piece of pieces) {
      for (const frame of this.decoder.push(piece)) {
        this.lines.push(frame.line);
        if (frame.body !== null) {
          for (const line of frame.bodyText().split('\n')) this.lines.push(line.replace(/\r$/, ''));
        }
      }
    }
    this.#notify();
  }

  end() {
    this.closed = true;
    this.#notify();
  }

  #notify() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async next() {
    const deadline = Date.now() + LINE_TIMEOUT_MS;
    while (this.lines.length === 0) {
      if (this.closed) {
        assert.equal(this.decoder.buffered, 0, 'partial reply at close');
        return null;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no line from the server within ${LINE_TIMEOUT_MS} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.lines.shift();
  }
}

async function openTcp(server, reader) {
  const socket = net.connect({ host: server.tcp.split(':')[0], port: Number(server.tcp.split(':')[1]) });
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('data', (chunk) => reader.feed(chunk));
  socket.on('close', () => reader.end());
  socket.on('error', () => {});
  return {
    async write(bytes, byteAtATime) {
      if (socket.destroyed) throw new Error('socket closed');
      if (!byteAtATime) {
        socket.write(bytes);
        return;
      }
      for (let i = 0; i < bytes.length; i++) {
        if (socket.destroyed) throw new Error('socket closed');
        await new Promise((resolve) => socket.write(bytes.subarray(i, i + 1), resolve));
      }
    },
    close: () => socket.destroy(),
  };
}

async function openWs(server, reader) {
  const ws = new WebSocketImpl(server.wsUrl);
  ws.binaryType = 'arraybuffer';
  // Set before the open event: the greeting may be dispatched in the same tick as it.
  ws.onmessage = (event) => reader.feed(event.data);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot open ${server.wsUrl}`));
  });
  ws.onclose = () => reader.end();
  return {
    async write(bytes) {
      if (ws.readyState !== 1) throw new Error('websocket closed');
      ws.send(bytes.toString('utf8'));
    },
    close: () => ws.close(),
  };
}

async function replay(name, mode) {
  const { serverArgs, steps } = parseTranscript(readFileSync(join(TRANSCRIPTS_DIR, name), 'utf8'));
  // `{transcripts}` in a flag is the transcripts directory (a config file shipped beside them).
  const args = serverArgs.map((arg) => arg.replaceAll('{transcripts}', TRANSCRIPTS_DIR));
  const server = await EsdbServer.start({ args });
  const byteAtATime = mode === 'tcp-bytes';
  const reader = new LineReader({ byteAtATime });
  const connection = mode === 'ws' ? await openWs(server, reader) : await openTcp(server, reader);
  try {
    for (const step of steps) {
      const bytes = stepBytes(step);
      // A step after which the server closes is sent whole: bytes still arriving after the
      // server closed make its kernel reset the connection, which can discard the -ERR
      // before it is read. (The decoder still takes it a byte at a time.)
      const oneByteWrites = byteAtATime && !step.expect.includes('<closed>');
      if (bytes.length > 0) {
        try {
          await connection.write(bytes, oneByteWrites);
        } catch (error) {
          // A server that closes on a fatal error may do so before the rest of the step is sent.
          assert.ok(step.expect.includes('<closed>'), `${name}: ${error.message}`);
        }
      }
      for (const expected of step.expect) {
        const actual = await reader.next();
        if (expected === '<closed>') {
          assert.equal(actual, null, `${name}: expected the server to close the connection`);
          continue;
        }
        assert.notEqual(actual, null, `${name}: connection closed; expected ${expected} after sending ${JSON.stringify(step.send)}`);
        assert.match(actual, pattern(expected), `${name} (${mode}): after sending ${JSON.stringify(step.send)}`);
      }
    }
  } finally {
    connection.close();
    await server.dispose();
  }
}

const transcripts = readdirSync(TRANSCRIPTS_DIR)
  .filter((file) => file.endsWith('.txt'))
  .sort();

test('the transcripts are there', () => {
  assert.ok(transcripts.length >= 14, `expected the golden transcripts in ${TRANSCRIPTS_DIR}, found ${transcripts.length}`);
});

for (const mode of ['tcp', 'tcp-bytes', 'ws']) {
  test(`every transcript replays (${mode})`, async (t) => {
    for (const name of transcripts) {
      await t.test(name, () => replay(name, mode));
    }
  });
}

test('patterns match only what they say', () => {
  assert.match('APPENDED s 12 0', pattern('APPENDED s <int> 0'));
  assert.doesNotMatch('APPENDED s x 0', pattern('APPENDED s <int> 0'));
  assert.match('a.b', pattern('a.b'));
  assert.doesNotMatch('axb', pattern('a.b'));
  assert.match('[{"id":"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d"}]', pattern('[{"id":"<uuid>"}]'));
  assert.doesNotMatch('[{"id":"6F1C1A5E-8f55-4e2a-9a4a-0d5f7b1f2c3d"}]', pattern('[{"id":"<uuid>"}]'));
});
