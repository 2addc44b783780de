// The client's fold against the server's: the cases of protocol/src/aggregate.rs's tests, its
// two properties over random events, and random streams folded both by the real server (AGG)
// and by the client from the events it read.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { aggregate, applyData, connect, finalize, foldl, foldr, initialState } from '../src/index.js';
import { EsdbServer } from './helpers/server.js';

const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);

test('sums of 1, 5 and -2 finalize to 4', () => {
  const raw = foldl({}, [{ n: { $sum: 1 } }, { n: { $sum: 5 } }, { n: { $sum: -2 } }]);
  assert.deepEqual(raw, { n: { $sum: 4 } });
  assert.deepEqual(finalize(raw), { n: 4 });
});

test('a plain initial number is summed onto', () => {
  const raw = foldl({ n: 5 }, [{ n: { $sum: 10 } }]);
  assert.deepEqual(raw, { n: { $sum: 15 } });
  assert.deepEqual(finalize(raw), { n: 15 });
});

test('a sum over a non-number starts from zero', () => {
  assert.deepEqual(foldl({ n: 'five' }, [{ n: { $sum: 2 } }]), { n: { $sum: 2 } });
});

test('overwrite stores the value unwrapped', () => {
  assert.deepEqual(foldl({}, [{ n: { $sum: 3 } }, { n: { $overwrite: { a: 1 } } }]), { n: { a: 1 } });
  assert.deepEqual(finalize(foldl({}, [{ n: { $overwrite: 7 } }, { n: { $sum: 1 } }])), { n: 8 });
});

test('plain values and nested objects replace without merging', () => {
  const raw = foldl({}, [{ user: { name: 'Ada', age: 36 }, tags: [1] }, { user: { name: 'Bob', n: { $sum: 1 } } }]);
  const expected = { user: { name: 'Bob', n: { $sum: 1 } }, tags: [1] };
  assert.deepEqual(raw, expected);
  assert.deepEqual(finalize(raw), expected);
});

test('objects with more than the tag are plain values', () => {
  assert.deepEqual(finalize(foldl({ n: 1 }, [{ n: { $sum: 2, x: 0 } }])), { n: { $sum: 2, x: 0 } });
});

test('a sum of a non-number replaces and finalizes to its inner value', () => {
  const raw = foldl({ n: 1 }, [{ n: { $sum: 'x' } }]);
  assert.deepEqual(raw, { n: { $sum: 'x' } });
  assert.deepEqual(finalize(raw), { n: 'x' });
});

test('foldr goes newest to oldest', () => {
  const events = [{ a: 1, b: 1 }, { a: 2 }];
  assert.deepEqual(foldl({}, events), { a: 2, b: 1 });
  assert.deepEqual(foldr({}, events), { a: 1, b: 1 });
  assert.deepEqual(finalize(foldr({}, [{ s: { $sum: 1 } }, { s: { $sum: 2 } }])), { s: 3 });
});

test('non-object data is skipped', () => {
  assert.deepEqual(foldl({}, [{ a: 1 }, 5, null, [{ a: 2 }], 'a']), { a: 1 });
});

test('the initial state is the snapshot data when it is an object', () => {
  assert.deepEqual(initialState({ a: 1 }), { a: 1 });
  assert.deepEqual(initialState([1]), {});
  assert.deepEqual(initialState(undefined), {});
});

test('integers add exactly and overflow to floats', () => {
  assert.deepEqual(finalize(foldl({ n: U64_MAX - 1n }, [{ n: { $sum: 1 } }])), { n: U64_MAX });
  assert.deepEqual(finalize(foldl({ n: I64_MIN }, [{ n: { $sum: -1 } }])), { n: Number(I64_MIN) - 1 });
  assert.deepEqual(finalize(foldl({ n: 1 }, [{ n: { $sum: 0.5 } }])), { n: 1.5 });
  assert.deepEqual(finalize(foldl({ n: Number.MAX_VALUE }, [{ n: { $sum: Number.MAX_VALUE } }])), { n: null });
  // Beyond 2^53 an exact sum is a bigint, not a rounded number.
  assert.deepEqual(foldl({ n: Number.MAX_SAFE_INTEGER }, [{ n: { $sum: 2 } }]), { n: { $sum: 2n ** 53n + 1n } });
});

test('the fold does not touch its inputs and keeps __proto__ a field', () => {
  const initial = { a: 1 };
  const data = JSON.parse('{"__proto__":{"$sum":2},"a":{"$sum":1}}');
  const state = foldl(initial, [data]);
  assert.deepEqual(initial, { a: 1 });
  assert.equal(Object.getPrototypeOf(state), Object.prototype);
  assert.deepEqual(Object.keys(finalize(state)).sort(), ['__proto__', 'a']);
  assert.equal(finalize(state).a, 2);
});

test('aggregate folds recorded events like AGG', () => {
  const events = [{ data: { n: { $sum: 1 }, who: 'a' } }, { data: { n: { $sum: 2 }, who: 'b' } }];
  assert.deepEqual(aggregate(events), { n: 3, who: 'b' });
  assert.deepEqual(aggregate(events, { order: 'foldr' }), { n: 3, who: 'a' });
  assert.deepEqual(aggregate(events, { raw: true }), { n: { $sum: 3 }, who: 'b' });
  assert.deepEqual(aggregate(events.slice(1), { initial: { n: 10 } }), { n: 12, who: 'b' });
  assert.deepEqual(applyData({}, 'skipped'), {});
});

// ---- properties (as in aggregate.rs, with a seeded generator so failures reproduce) ----

/** mulberry32: a small seeded PRNG. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generator(seed) {
  const random = prng(seed);
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo));
  const pick = (weights) => {
    const total = weights.reduce((sum, [w]) => sum + w, 0);
    let roll = random() * total;
    for (const [w, make] of weights) {
      if ((roll -= w) < 0) return make();
    }
    return weights[weights.length - 1][1]();
  };
  const plain = () =>
    pick([
      [1, () => int(-1000, 1000)],
      [1, () => int(-400, 400) / 4],
      [1, () => 'abc'.slice(0, int(0, 4))],
      [1, () => null],
      [1, () => ({ nested: int(-9, 9) })],
    ]);
  const fieldValue = () =>
    pick([
      [3, () => ({ $sum: int(-1000, 1000) })],
      [1, () => ({ $sum: int(-400, 400) / 4 })],
      [2, plain],
      [1, () => ({ $overwrite: plain() })],
    ]);
  const eventData = () =>
    pick([
      [
        9,
        () => {
          const data = {};
          const fields = int(0, 4);
          for (let i = 0; i < fields; i++) data['abcd'[int(0, 4)]] = fieldValue();
          return data;
        },
      ],
      [1, plain],
    ]);
  const events = (max) => Array.from({ length: int(0, max) }, eventData);
  return { int, events };
}

test('property: folding from a prefix state (raw or finalized) equals folding everything', () => {
  for (let seed = 1; seed <= 500; seed++) {
    const { int, events: make } = generator(seed);
    const events = make(40);
    const split = Math.min(int(0, 41), events.length);
    const whole = finalize(foldl({}, events));
    const rawPrefix = foldl({}, events.slice(0, split));
    assert.deepEqual(finalize(foldl(rawPrefix, events.slice(split))), whole, `seed ${seed} (raw prefix)`);
    assert.deepEqual(finalize(foldl(finalize(rawPrefix), events.slice(split))), whole, `seed ${seed} (finalized prefix)`);
  }
});

test('property: foldr is foldl over the reversed events', () => {
  for (let seed = 1; seed <= 500; seed++) {
    const events = generator(seed).events(20);
    assert.deepEqual(foldr({}, events), foldl({}, [...events].reverse()), `seed ${seed}`);
  }
});

// ---- against the server ----

let server;
let client;

before(async () => {
  server = await EsdbServer.start();
  client = await connect(server.tcpUrl);
});

after(async () => {
  client?.close();
  await server?.dispose();
});

test("the client's fold of read events equals the server's AGG, on random streams", async () => {
  for (let seed = 1; seed <= 40; seed++) {
    const events = generator(seed * 7919).events(30);
    if (events.length === 0) continue;
    const stream = `fold-${seed}`;
    await client.append(
      stream,
      events.map((data) => ({ eventType: 'Changed', data })),
      { expectedVersion: 'no_stream' },
    );
    const read = await client.read(stream).toArray();
    for (const options of [{}, { raw: true }, { order: 'foldr' }, { order: 'foldr', raw: true }]) {
      const server = await client.aggregate(stream, options);
      assert.equal(server.version, events.length - 1);
      assert.deepEqual(aggregate(read, options), server.state, `seed ${seed}, ${JSON.stringify(options)}`);
    }
    // From a raw snapshot of a prefix, as AGG … from_snapshot folds it.
    const split = Math.floor(events.length / 2);
    const prefix = aggregate(read.slice(0, split + 1), { raw: true });
    await client.snapshots.save(stream, split, prefix);
    const fromSnapshot = await client.aggregate(stream, { fromSnapshot: true });
    assert.deepEqual(aggregate(read.slice(split + 1), { initial: prefix }), fromSnapshot.state, `seed ${seed}, from snapshot`);
  }
});
