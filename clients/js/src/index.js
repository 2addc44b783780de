// esdb client: the public API. One ESM module tree, no dependencies, no build step.
//   import { connect } from 'esdb-client';
//   const client = await connect(['127.0.0.1:4350']);            // Node, TCP
//   const client = await connect(['ws://127.0.0.1:8350/ws']);    // browser or Node, WebSocket

import { Client } from './client.js';

/** Connects to the first reachable server of `servers` (one address or a list). */
export function connect(servers, options) {
  return Client.connect(servers, options);
}

export { Client, CLIENT_VERSION, MAX_LEARNED_SERVERS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_READ_PAGE_SIZE } from './client.js';
export { Subscription, DEFAULT_SUBSCRIPTION_BUFFER_EVENTS } from './subscription.js';
export { EsdbError, UnreadableEventError, SERVER_ERROR_CODES, CLIENT_ERROR_CODES } from './errors.js';
export { Decoder, Frame } from './protocol/decoder.js';
export { Encoder, Limits, utf8Length } from './protocol/encoder.js';
export { backoffDelayMs, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_MAX_RETRIES } from './backoff.js';
export { aggregate, applyData, finalize, foldl, foldr, initialState, SUM_TAG, OVERWRITE_TAG } from './aggregate.js';
export { uuidv7 } from './uuid.js';
