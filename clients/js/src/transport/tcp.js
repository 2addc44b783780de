// TCP transport (Node): one socket. Requests written in the same tick go out in one write, so
// pipelined calls share segments.

import { EsdbError } from '../errors.js';

/**
 * @param {{host: string, port: number, text: string}} address
 * @param {{onData(chunk: Uint8Array): void, onClose(error?: Error): void}} handlers
 * @param {{connectTimeoutMs: number, tls?: object}} options `tls`: options of Node's
 *   `tls.connect` (`ca`, `cert`, `key`, `servername`) for a server started with --tls-cert.
 */
export async function openTcp(address, handlers, { connectTimeoutMs, tls }) {
  let net;
  try {
    net = await import('node:net');
  } catch (error) {
    throw new EsdbError('unsupported', `TCP needs Node's net module; in a browser use a ws:// address`, { cause: error });
  }
  const socket = tls
    ? (await import('node:tls')).connect({ host: address.host, port: address.port, servername: address.host, ...tls })
    : net.connect({ host: address.host, port: address.port });
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new EsdbError('connection_lost', `connecting to ${address.text} timed out after ${connectTimeoutMs} ms`));
    }, connectTimeoutMs);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve();
    });
    const onError = (error) => {
      clearTimeout(timer);
      reject(new EsdbError('connection_lost', `cannot connect to ${address.text}: ${error.message}`, { cause: error }));
    };
    socket.once('error', onError);
  });
  let failure;
  socket.on('error', (error) => {
    failure = error;
  });
  socket.on('data', (chunk) => handlers.onData(chunk));
  socket.on('close', () => handlers.onClose(failure));
  let outbox = [];
  const flush = () => {
    const text = outbox.length === 1 ? outbox[0] : outbox.join('');
    outbox = [];
    if (!socket.destroyed) socket.write(text);
  };
  return {
    kind: 'tcp',
    write(text) {
      if (outbox.length === 0) queueMicrotask(flush);
      outbox.push(text);
    },
    close() {
      socket.destroy();
    },
  };
}
