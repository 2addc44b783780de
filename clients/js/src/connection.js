// One live connection to one server: its transport, its decoder, the requests awaiting replies
// (answered in request order), and the subscriptions whose EVENT/UNREADABLE/LIVE frames it
// routes by sid.

import { EsdbError } from './errors.js';
import { Decoder } from './protocol/decoder.js';
import { serverError } from './protocol/replies.js';
import { openTransport } from './transport/index.js';

/**
 * A request as the client tracks it across connections.
 * @typedef {object} Request
 * @property {string} text the encoded request
 * @property {(frame: import('./protocol/decoder.js').Frame) => unknown} parse its reply → value
 * @property {boolean} retry whether it may be sent again after a connection failure
 * @property {number} attempts how often it was sent
 * @property {(value: unknown) => void} resolve
 * @property {(error: Error) => void} reject
 */

export class Connection {
  /**
   * @param {string} address
   * @param {{onReply(connection: Connection, request: Request, frame: object): void,
   *          onPush(connection: Connection, frame: object): void,
   *          onClose(connection: Connection, error: Error): void}} owner
   */
  constructor(address, owner) {
    this.address = address;
    this.owner = owner;
    this.decoder = new Decoder();
    /** @type {Request[]} requests sent, in order, awaiting their replies */
    this.inflight = [];
    this.inflightHead = 0;
    /** subscriptions by sid on this connection */
    this.sids = new Map();
    this.transport = null;
    this.closed = false;
    this.closeError = null;
    this.info = null;
    // Until INFO arrives, frames go to the greeting handler.
    this.greeting = null;
  }

  /** Requests awaiting replies, oldest first. */
  pending() {
    return this.inflight.slice(this.inflightHead);
  }

  /**
   * Opens the transport and waits for INFO.
   * @param {{connectTimeoutMs: number, WebSocket?: unknown}} options
   */
  async open(options) {
    const greeted = new Promise((resolve, reject) => {
      this.greeting = { resolve, reject };
    });
    this.transport = await openTransport(
      this.address,
      { onData: (chunk) => this.#onData(chunk), onClose: (error) => this.#onClose(error) },
      options,
    );
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new EsdbError('connection_lost', `no INFO from ${this.address} within ${options.connectTimeoutMs} ms`)),
        options.connectTimeoutMs,
      );
    });
    try {
      this.info = await Promise.race([greeted, timeout]);
    } catch (error) {
      this.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return this.info;
  }

  /** Sends a request, its reply to go to the owner's onReply; false when already closed. */
  send(request) {
    if (this.closed) return false;
    request.attempts += 1;
    this.inflight.push(request);
    this.transport.write(request.text);
    return true;
  }

  /** Sends text that gets no reply (PONG). */
  sendNoReply(text) {
    if (!this.closed) this.transport.write(text);
  }

  close() {
    this.transport?.close();
  }

  #onData(chunk) {
    if (this.closed) return;
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.#fail(error);
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      try {
        this.#onFrame(frame);
      } catch (error) {
        this.#fail(error);
        return;
      }
    }
  }

  #onFrame(frame) {
    if (this.greeting !== null) {
      const greeting = this.greeting;
      if (frame.op === 'INFO') {
        this.greeting = null;
        let info;
        try {
          info = JSON.parse(frame.rest);
        } catch {
          throw new EsdbError('bad_reply', `INFO is not JSON: ${frame.rest.slice(0, 200)}`);
        }
        greeting.resolve(info);
        return;
      }
      // A server refusing the connection (too_many_connections) sends -ERR instead of INFO.
      this.greeting = null;
      greeting.reject(frame.op === '-ERR' ? serverError(frame) : new EsdbError('bad_reply', `expected INFO, got ${frame.line.slice(0, 200)}`));
      this.close();
      return;
    }
    switch (frame.op) {
      case 'PING':
        this.sendNoReply('PONG\r\n');
        return;
      case 'EVENT':
      case 'UNREADABLE':
      case 'LIVE':
        this.owner.onPush(this, frame);
        return;
      case 'INFO':
        // A server may announce new facts; keep them.
        try {
          this.info = JSON.parse(frame.rest);
        } catch {
          // Ignored: INFO is informational after the greeting.
        }
        return;
      default: {
        if (this.inflightHead >= this.inflight.length) {
          throw new EsdbError('bad_reply', `reply with no request waiting: ${frame.line.slice(0, 200)}`);
        }
        const request = this.inflight[this.inflightHead];
        this.inflight[this.inflightHead] = undefined;
        this.inflightHead += 1;
        if (this.inflightHead > 1024 && this.inflightHead * 2 > this.inflight.length) {
          this.inflight = this.inflight.slice(this.inflightHead);
          this.inflightHead = 0;
        }
        this.owner.onReply(this, request, frame);
      }
    }
  }

  #fail(error) {
    this.closeError = error;
    this.close();
  }

  #onClose(error) {
    if (this.closed) return;
    this.closed = true;
    this.closeError ??= error ?? new EsdbError('connection_lost', `connection to ${this.address} closed`);
    if (this.greeting !== null) {
      const greeting = this.greeting;
      this.greeting = null;
      greeting.reject(
        this.closeError.code === 'connection_lost'
          ? this.closeError
          : new EsdbError('connection_lost', `connection to ${this.address} closed before INFO`, { cause: this.closeError }),
      );
      return;
    }
    this.owner.onClose(this, this.closeError);
  }
}
