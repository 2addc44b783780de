// The esdb protocol over the WebSocket transport (`/ws`), as protocol/PROTOCOL.md specifies it:
// the server's messages are one byte stream, decoded here into replies; replies answer requests
// in the order they were sent; EVENT and LIVE frames go to their subscription; PING is answered.

/** Replies whose control line ends in the byte count of a payload that follows. */
const PAYLOAD_REPLIES = new Set([
  'EVENTS', 'STREAMS', 'SNAPSHOTS', 'SNAPSHOT', 'AGG', 'HELP', 'STATS', 'EVENT', 'SUBS', 'SUBINFO',
]);
/** Requests waiting for their reply; the server reads at most 256 ahead, stay well under. */
export const MAX_PENDING_REQUESTS = 128;
/** A reply slower than this fails its request (the reply, if it comes, is then ignored). */
export const REQUEST_TIMEOUT_MS = 20_000;
/** The greeting (INFO) must arrive this soon after the socket opens. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Longest control line the server sends is far below this; more means the stream is lost. */
const MAX_LINE_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A `-ERR <code> '<message>'` from the server, or a failure of the connection itself. */
export class EsdbError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

/**
 * Checks that `value` is one protocol argument: no whitespace, no control characters. Every
 * argument the console sends from user input passes here, so input cannot inject requests.
 */
export function arg(value, what = 'argument') {
  const text = String(value);
  if (text.length === 0) throw new EsdbError('invalid_argument', `${what} is empty`);
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/u.test(text)) {
    throw new EsdbError('invalid_argument', `${what} may not contain spaces or control characters`);
  }
  return text;
}

/** The WebSocket URL of this page's server, read-only unless `writable`. */
export function wsUrl(writable) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws${writable ? '' : '?readonly=1'}`;
}

export class EsdbClient {
  /** Opens a connection and waits for the server's INFO. */
  static connect(url, { onClose } = {}) {
    return new Promise((resolve, reject) => {
      const client = new EsdbClient(url, onClose);
      const timer = setTimeout(() => {
        reject(new EsdbError('timeout', 'no greeting from the server'));
        client.close();
      }, CONNECT_TIMEOUT_MS);
      client.greeted = (info) => { clearTimeout(timer); resolve(client); return info; };
      client.failedToOpen = (error) => { clearTimeout(timer); reject(error); };
    });
  }

  constructor(url, onClose) {
    this.url = url;
    this.onClose = onClose;
    this.info = null;
    this.closed = false;
    this.pending = [];
    this.subscriptions = new Map();
    this.buffer = new Uint8Array(16 * 1024);
    this.length = 0;
    this.socket = new WebSocket(url);
    this.socket.binaryType = 'arraybuffer';
    this.socket.onmessage = (message) => this.received(message.data);
    this.socket.onclose = () => this.ended(new EsdbError('connection_closed', 'the connection closed'));
    this.socket.onerror = () => {};
  }

  /** Sends a request (a control line, and an optional payload) and resolves with its reply. */
  request(line, payload = null) {
    if (this.closed) return Promise.reject(new EsdbError('connection_closed', 'not connected'));
    if (this.pending.length >= MAX_PENDING_REQUESTS) {
      return Promise.reject(new EsdbError('busy', 'too many requests waiting for replies'));
    }
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, done: false };
      entry.timer = setTimeout(() => {
        entry.done = true;
        reject(new EsdbError('timeout', `no reply to ${line.split(' ')[0]} in time`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.push(entry);
      let frame = `${line}\r\n`;
      if (payload !== null) frame = `${line} ${encoder.encode(payload).length}\r\n${payload}\r\n`;
      this.socket.send(frame);
    });
  }

  /**
   * `SUB` (full form) with `options` ({type, selector, start, …}); `handlers.onEvent(frame)` gets
   * each `EVENT`, `handlers.onLive()` the `LIVE`. Resolves on the `+OK`.
   */
  async subscribe(sid, options, handlers) {
    arg(sid, 'sid');
    this.subscriptions.set(sid, handlers);
    try {
      return await this.request(`SUB ${sid}`, JSON.stringify(options));
    } catch (error) {
      this.subscriptions.delete(sid);
      throw error;
    }
  }

  async unsubscribe(sid) {
    this.subscriptions.delete(sid);
    if (!this.closed) await this.request(`UNSUB ${arg(sid, 'sid')}`);
  }

  close() {
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close();
  }

  received(data) {
    const bytes = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data);
    this.append(bytes);
    try {
      this.decodeAll();
    } catch (error) {
      this.ended(error);
      this.close();
    }
  }

  append(bytes) {
    if (this.length + bytes.length > this.buffer.length) {
      let size = this.buffer.length;
      while (size < this.length + bytes.length) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
  }

  /** Decodes every complete frame in the buffer. */
  decodeAll() {
    let start = 0;
    for (;;) {
      const view = this.buffer.subarray(start, this.length);
      const newline = view.indexOf(10);
      if (newline < 0) {
        if (view.length > MAX_LINE_BYTES) throw new EsdbError('bad_reply', 'control line too long');
        break;
      }
      const end = newline > 0 && view[newline - 1] === 13 ? newline - 1 : newline;
      const line = decoder.decode(view.subarray(0, end));
      const space = line.indexOf(' ');
      const kind = space < 0 ? line : line.slice(0, space);
      let consumed = newline + 1;
      let body = null;
      if (PAYLOAD_REPLIES.has(kind)) {
        const size = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (!Number.isSafeInteger(size) || size < 0) throw new EsdbError('bad_reply', line);
        if (view.length < consumed + size + 2) break;
        body = decoder.decode(view.subarray(consumed, consumed + size));
        consumed += size + 2;
      }
      start += consumed;
      this.frame(kind, line, body);
    }
    this.buffer.copyWithin(0, start, this.length);
    this.length -= start;
  }

  frame(kind, line, body) {
    const args = line.split(' ').slice(1);
    switch (kind) {
      case 'INFO':
        this.info = JSON.parse(line.slice(5));
        if (this.greeted) this.greeted(this.info);
        return;
      case 'PING':
        this.socket.send('PONG\r\n');
        return;
      case 'EVENT': {
        const [sid, stream, version, position] = args;
        this.subscriptions.get(sid)?.onEvent?.({
          sid, stream, version: Number(version), position: Number(position), record: body,
        });
        return;
      }
      case 'LIVE':
        this.subscriptions.get(args[0])?.onLive?.();
        return;
      default:
        this.reply(kind, line, args, body);
    }
  }

  reply(kind, line, args, body) {
    const entry = this.pending.shift();
    const error = kind === '-ERR' ? parseError(line) : null;
    if (!entry) {
      // An error that ends the connection (stale_connection, shutting_down) answers nothing.
      if (error) this.lastError = error;
      return;
    }
    clearTimeout(entry.timer);
    if (entry.done) return;
    entry.done = true;
    if (error) entry.reject(error);
    else entry.resolve({ kind, args, body });
  }

  ended(error) {
    if (this.closed) return;
    this.closed = true;
    const reason = this.lastError ?? error;
    for (const entry of this.pending.splice(0)) {
      clearTimeout(entry.timer);
      if (!entry.done) entry.reject(reason);
    }
    for (const handlers of this.subscriptions.values()) handlers.onClose?.(reason);
    this.subscriptions.clear();
    if (!this.info && this.failedToOpen) this.failedToOpen(reason);
    else this.onClose?.(reason);
  }
}

/** `-ERR <code> '<message>'`: the message runs from the first `'` to the last. */
function parseError(line) {
  const rest = line.slice(5);
  const space = rest.indexOf(' ');
  const code = space < 0 ? rest : rest.slice(0, space);
  const first = rest.indexOf("'");
  const last = rest.lastIndexOf("'");
  const message = first >= 0 && last > first ? rest.slice(first + 1, last) : rest.slice(space + 1);
  return new EsdbError(code, message);
}
