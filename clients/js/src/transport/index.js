// Opens the transport an address names. The TCP module is loaded only when a TCP address is
// used, so browsers never load Node's net.

import { parseAddress } from './address.js';
import { openWebSocket } from './websocket.js';

/**
 * A byte-stream transport: `write` queues request text, `close` ends it; the handlers get the
 * bytes received and, once, the end.
 * @param {string} address
 * @param {{onData(chunk: Uint8Array | ArrayBuffer | string): void, onClose(error?: Error): void}} handlers
 * @param {{connectTimeoutMs: number, WebSocket?: unknown}} options
 */
export async function openTransport(address, handlers, options) {
  const parsed = parseAddress(address);
  if (parsed.kind === 'ws') return openWebSocket(parsed, handlers, options);
  const { openTcp } = await import('./tcp.js');
  return openTcp(parsed, handlers, options);
}

export { parseAddress };
