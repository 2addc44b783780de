// Server addresses: `tcp://host:port` or `host:port` (TCP, Node only), `ws://host:port/ws` or
// `wss://…` (WebSocket, browsers and Node).

import { invalidArgument } from '../errors.js';

/**
 * @param {string} address
 * @returns {{kind: 'tcp', host: string, port: number, text: string} | {kind: 'ws', url: string, text: string}}
 */
export function parseAddress(address) {
  if (typeof address !== 'string' || address.length === 0) {
    throw invalidArgument(`a server address must be a non-empty string, got ${String(address)}`);
  }
  if (/^wss?:\/\//i.test(address)) {
    let url;
    try {
      url = new URL(address);
    } catch {
      throw invalidArgument(`bad WebSocket address ${address}`);
    }
    return { kind: 'ws', url: url.href, text: address };
  }
  const hostPort = address.replace(/^tcp:\/\//i, '');
  const match = /^(?:\[([^\]]+)\]|([^:\/\s]+)):([0-9]{1,5})$/.exec(hostPort);
  if (match === null || Number(match[3]) > 65535) {
    throw invalidArgument(`bad server address ${address}: use host:port, tcp://host:port or ws://host:port/ws`);
  }
  return { kind: 'tcp', host: match[1] ?? match[2], port: Number(match[3]), text: address };
}
