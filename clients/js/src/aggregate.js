// The aggregator (PROTOCOL.md, "Aggregation"): the same fold the server runs for AGG, so an
// application can fold events it read or received itself. A port of protocol/src/aggregate.rs.
//
// Each event's `data` should be an object; any other `data` is skipped. Each top-level field:
// - `{"$sum": n}` (n a number) stores `{"$sum": current + n}`, `current` being the number in a
//   previous `{"$sum": x}`, a plain number, or 0 for anything else;
// - `{"$overwrite": v}` stores `v`, unwrapped;
// - any other value replaces the field (no deep merge; tags inside nested objects are data).
// `finalize` replaces each top-level tagged value by the value inside it.
//
// Numbers: two integers add exactly when the sum fits in 64 bits (signed or unsigned), as on
// the server; in JavaScript an integer is a safe-integer number or a bigint, and an exact sum
// beyond the safe range is returned as a bigint. Otherwise they add as doubles, and a sum too
// large for a double becomes null, which a later $sum counts as 0.

export const SUM_TAG = '$sum';
export const OVERWRITE_TAG = '$overwrite';

const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isNumber(value) {
  return typeof value === 'number' || typeof value === 'bigint';
}

/** The tag and inner value of a tagged value, or null for a plain value. */
function tagged(value) {
  if (!isObject(value)) return null;
  const keys = Object.keys(value);
  if (keys.length !== 1) return null;
  const [key] = keys;
  if (key === SUM_TAG || key === OVERWRITE_TAG) return { tag: key, inner: value[key] };
  return null;
}

// Assignment to `__proto__` would set the prototype instead of a field.
function setField(state, field, value) {
  if (field === '__proto__') {
    Object.defineProperty(state, field, { value, enumerable: true, writable: true, configurable: true });
  } else {
    state[field] = value;
  }
}

function sumValue(value) {
  const out = {};
  setField(out, SUM_TAG, value);
  return out;
}

/** The number a $sum adds to: a plain number, or the number inside a previous sum. */
function sumOperand(value) {
  if (isNumber(value)) return value;
  const tag = tagged(value);
  if (tag !== null && tag.tag === SUM_TAG && isNumber(tag.inner)) return tag.inner;
  return null;
}

function asInteger(n) {
  if (typeof n === 'bigint') return n;
  return Number.isSafeInteger(n) ? BigInt(n) : null;
}

/** `current + n` (`current` null = 0), exact for integers that fit 64 bits, else as a double. */
function add(current, n) {
  if (current === null) return n;
  const a = asInteger(current);
  const b = asInteger(n);
  if (a !== null && b !== null) {
    const sum = a + b;
    if (sum >= I64_MIN && sum <= U64_MAX) {
      const small = Number(sum);
      return Number.isSafeInteger(small) ? small : sum;
    }
  }
  const sum = Number(current) + Number(n);
  return Number.isFinite(sum) ? sum : null;
}

/** The state a fold starts from: a snapshot's data when it is an object, else `{}`. */
export function initialState(snapshotData) {
  return isObject(snapshotData) ? { ...snapshotData } : {};
}

/** Applies one event's data to `state` in place (skipped unless data is an object). */
export function applyData(state, data) {
  if (!isObject(data)) return state;
  for (const field of Object.keys(data)) {
    const value = data[field];
    const tag = tagged(value);
    let next;
    if (tag !== null && tag.tag === SUM_TAG && isNumber(tag.inner)) {
      const current = Object.hasOwn(state, field) ? sumOperand(state[field]) : null;
      next = sumValue(add(current, tag.inner));
    } else if (tag !== null && tag.tag === OVERWRITE_TAG) {
      next = tag.inner;
    } else {
      // `{"$sum": <not a number>}` and every plain value replace the field.
      next = value;
    }
    setField(state, field, next);
  }
  return state;
}

/** Folds event data oldest to newest, starting from (a copy of) `state`. */
export function foldl(state, datas) {
  const out = initialState(state);
  for (const data of datas) applyData(out, data);
  return out;
}

/** Folds event data (given oldest first) newest to oldest, starting from (a copy of) `state`. */
export function foldr(state, datas) {
  return foldl(state, [...datas].reverse());
}

/** Replaces each top-level tagged value of the state by the value inside it. */
export function finalize(state) {
  const out = {};
  for (const field of Object.keys(state)) {
    const tag = tagged(state[field]);
    setField(out, field, tag === null ? state[field] : tag.inner);
  }
  return out;
}

/**
 * Folds recorded events (objects with `data`, as reads and subscriptions return them) as AGG
 * does: `order` 'foldl' (default) or 'foldr', from `initial` (a snapshot's data; default {}),
 * finalized unless `raw`.
 */
export function aggregate(events, { order = 'foldl', initial, raw = false } = {}) {
  if (order !== 'foldl' && order !== 'foldr') throw new TypeError(`order must be 'foldl' or 'foldr', got ${order}`);
  const datas = Array.from(events, (event) => event.data);
  const state = order === 'foldl' ? foldl(initial, datas) : foldr(initial, datas);
  return raw ? state : finalize(state);
}
