// The Prometheus text format of `/metrics`, read well enough for the overview: samples with
// their labels, sums over label sets, and quantiles from histogram buckets.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample: `[{name, labels: {…}, value}]`. Comments and malformed lines are skipped. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const found = SAMPLE.exec(line);
    if (!found) continue;
    const labels = {};
    for (const [, key, value] of (found[2] ?? '').matchAll(LABEL)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    const value = Number(found[3] === '+Inf' ? Infinity : found[3]);
    samples.push({ name: found[1], labels, value });
  }
  return samples;
}

/** The sum of `name`'s samples whose labels include `match`. */
export function sum(samples, name, match = {}) {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0);
}

/** A histogram's cumulative buckets summed over its label sets: `[[le, count]]`, ascending. */
export function buckets(samples, name) {
  const byBound = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + s.value);
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0]);
}

/** `after − before`, bucket by bucket (the observations between two scrapes). */
export function bucketDelta(after, before) {
  const earlier = new Map(before);
  return after.map(([le, count]) => [le, count - (earlier.get(le) ?? 0)]);
}

/**
 * The `q` quantile of cumulative `buckets`, interpolated linearly inside its bucket (as
 * PromQL's histogram_quantile); null without observations. Beyond the last finite bound it
 * answers that bound.
 */
export function quantile(q, cumulative) {
  const total = cumulative.length ? cumulative[cumulative.length - 1][1] : 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of cumulative) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      const inBucket = count - lowerCount;
      return inBucket > 0 ? lowerBound + ((le - lowerBound) * (rank - lowerCount)) / inBucket : le;
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}
