// Helpers for consuming subscriptions in tests, every wait bounded.

/** How long a test waits for an event it expects. */
export const EVENT_TIMEOUT_MS = 20_000;

/** The next event of `subscription`, or an error after `timeoutMs`. */
export async function nextEvent(subscription, timeoutMs = EVENT_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no event within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const result = await Promise.race([subscription.next(), timeout]);
    if (result.done) throw new Error('the subscription ended');
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}

/** The next `count` events. */
export async function take(subscription, count, timeoutMs = EVENT_TIMEOUT_MS) {
  const events = [];
  while (events.length < count) events.push(await nextEvent(subscription, timeoutMs));
  return events;
}

/** Resolves with `promise`, or rejects after `timeoutMs`. */
export async function within(promise, timeoutMs, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Positions from `first` to `last` inclusive. */
export function range(first, last) {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}
