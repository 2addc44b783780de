// WebSocket transport (browsers; Node with a WebSocket implementation): each request goes out
// as one Text message; incoming messages are parts of the reply byte stream, split anywhere.

import { EsdbError } from '../errors.js';

/**
 * @param {{url: string, text: string}} address
 * @param {{onData(chunk: Uint8Array | ArrayBuffer | string): void, onClose(error?: Error): void}} handlers
 * @param {{connectTimeoutMs: number, WebSocket?: typeof WebSocket}} options
 */
export async function openWebSocket(address, handlers, { connectTimeoutMs, WebSocket: Impl = globalThis.WebSocket }) {
  if (typeof Impl !== 'function') {
    throw new EsdbError(
      'unsupported',
      'no WebSocket here: pass options.WebSocket (e.g. from the ws package), or use a TCP address in Node',
    );
  }
  let socket;
  try {
    socket = new Impl(address.url);
  } catch (error) {
    throw new EsdbError('connection_lost', `cannot open ${address.text}: ${error.message}`, { cause: error });
  }
  socket.binaryType = 'arraybuffer';
  // Set before the open event: the greeting may be dispatched in the same tick as it.
  socket.onmessage = (event) => handlers.onData(event.data);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new EsdbError('connection_lost', `connecting to ${address.text} timed out after ${connectTimeoutMs} ms`));
    }, connectTimeoutMs);
    socket.onopen = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.onerror = () => {};
    socket.onclose = (event) => {
      clearTimeout(timer);
      reject(new EsdbError('connection_lost', `cannot connect to ${address.text} (WebSocket closed, code ${event?.code})`));
    };
  });
  socket.onclose = (event) =>
    handlers.onClose(new EsdbError('connection_lost', `WebSocket ${address.text} closed (code ${event?.code})`));
  return {
    kind: 'ws',
    write(text) {
      if (socket.readyState === 1) socket.send(text);
    },
    close() {
      socket.close();
    },
  };
}
