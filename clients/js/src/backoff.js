// Reconnect delays: exponential backoff with jitter, so that clients of a restarted server do
// not all come back at the same instant.

/** Defaults for reconnecting (PROTOCOL.md leaves them to clients; these follow issue 12). */
export const DEFAULT_BACKOFF_BASE_MS = 100;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
export const DEFAULT_MAX_RETRIES = 10;

/**
 * The delay before retry number `retry` (1 for the first retry): the exponential cap
 * `min(maxMs, baseMs * 2^(retry-1))`, "equal jitter": half of it fixed, half random.
 * @param {number} retry
 * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [options]
 */
export function backoffDelayMs(retry, { baseMs = DEFAULT_BACKOFF_BASE_MS, maxMs = DEFAULT_BACKOFF_MAX_MS, random = Math.random } = {}) {
  const exponent = Math.min(Math.max(retry - 1, 0), 52);
  const cap = Math.min(maxMs, baseMs * 2 ** exponent);
  return cap / 2 + random() * (cap / 2);
}
