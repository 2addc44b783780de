// Overview: counts from /stats, and from /metrics (polled, diffed between scrapes) the append
// rate, append latency and open connections, with sparklines of the recent past.

import { $, clear, formatCount, h, say } from './dom.js';
import { bucketDelta, buckets, parseMetrics, quantile, sum } from './prometheus.js';

/** How often /stats and /metrics are read. */
export const POLL_INTERVAL_MS = 2_000;
/** Points kept per sparkline (two minutes at the default interval). */
export const SPARK_POINTS = 60;

let ctx = null;
let previous = null; // { atMs, events, latencySum, latencyCount, latencyBuckets }
const rateHistory = [];
const latencyHistory = [];
let timer = null;

export function init(context) {
  ctx = context;
  poll();
  timer = setInterval(poll, POLL_INTERVAL_MS);
  ctx.events.addEventListener('store', () => poll());
}

export function activate() {}

export function stop() {
  clearInterval(timer);
}

async function poll() {
  const [stats, metrics] = await Promise.allSettled([
    fetch('/stats', { cache: 'no-store' }).then(ok).then((r) => r.json()),
    fetch('/metrics', { cache: 'no-store' }).then(ok).then((r) => r.text()),
  ]);
  if (stats.status === 'fulfilled') renderStats(stats.value);
  if (metrics.status === 'fulfilled') renderMetrics(parseMetrics(metrics.value));
  const failed = [stats, metrics].filter((r) => r.status === 'rejected');
  say($('ov-updated'),
    failed.length
      ? `update failed: ${failed.map((r) => r.reason.message).join('; ')}`
      : `updated ${new Date().toLocaleTimeString()}, every ${POLL_INTERVAL_MS / 1000} s`,
    failed.length > 0);
}

function ok(response) {
  if (!response.ok) throw new Error(`${response.url}: HTTP ${response.status}`);
  return response;
}

function renderStats(stats) {
  const stores = Object.entries(stats.stores ?? {});
  const current = stats.stores?.[ctx.store] ?? {};
  $('ov-events').textContent = formatCount(current.events);
  $('ov-streams').textContent = formatCount(current.streams);
  $('ov-last-position').textContent = formatCount(current.last_position);
  $('ov-subscriptions').textContent = formatCount(current.subscriptions);
  const tbody = clear($('ov-stores').tBodies[0]);
  for (const [name, s] of stores) {
    tbody.append(h('tr', { class: name === ctx.store ? 'selected' : '' },
      h('td', {}, name),
      h('td', { class: 'num' }, formatCount(s.events)),
      h('td', { class: 'num' }, formatCount(s.streams)),
      h('td', { class: 'num' }, formatCount(s.last_position)),
      h('td', { class: 'num' }, formatCount(s.subscriptions))));
  }
}

function renderMetrics(samples) {
  const tcp = sum(samples, 'esdb_connection_open_connections', { transport: 'tcp' });
  const ws = sum(samples, 'esdb_connection_open_connections', { transport: 'ws' });
  $('ov-connections').textContent = formatCount(tcp + ws);
  $('ov-connections-detail').textContent = `tcp ${tcp} · websocket ${ws}`;

  const now = {
    atMs: performance.now(),
    events: sum(samples, 'esdb_append_events_total'),
    latencySum: sum(samples, 'esdb_append_latency_seconds_sum'),
    latencyCount: sum(samples, 'esdb_append_latency_seconds_count'),
    latencyBuckets: buckets(samples, 'esdb_append_latency_seconds'),
  };
  if (previous && now.events >= previous.events) {
    const seconds = (now.atMs - previous.atMs) / 1000;
    const rate = seconds > 0 ? (now.events - previous.events) / seconds : 0;
    const appends = now.latencyCount - previous.latencyCount;
    const meanMs = appends > 0 ? ((now.latencySum - previous.latencySum) / appends) * 1000 : null;
    const p99 = quantile(0.99, bucketDelta(now.latencyBuckets, previous.latencyBuckets));
    push(rateHistory, rate);
    push(latencyHistory, meanMs ?? 0);
    $('ov-append-rate').textContent = `${rate.toFixed(rate < 10 ? 1 : 0)} /s`;
    $('ov-append-latency').textContent = meanMs === null
      ? 'no appends'
      : `${meanMs.toFixed(2)} ms / ${(p99 * 1000).toFixed(2)} ms`;
    sparkline($('ov-append-rate-spark'), rateHistory);
    sparkline($('ov-append-latency-spark'), latencyHistory);
  }
  previous = now;
}

function push(history, value) {
  history.push(value);
  if (history.length > SPARK_POINTS) history.shift();
}

/** Draws `values` into an SVG of viewBox 300×50, scaled to the largest value. */
function sparkline(svg, values) {
  const width = 300;
  const height = 50;
  const max = Math.max(...values, 1e-9);
  const step = width / (SPARK_POINTS - 1);
  const offset = (SPARK_POINTS - values.length) * step;
  const points = values
    .map((v, i) => `${(offset + i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`)
    .join(' ');
  const ns = 'http://www.w3.org/2000/svg';
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', points);
  line.setAttribute('class', 'spark-line');
  const area = document.createElementNS(ns, 'polygon');
  const first = offset.toFixed(1);
  area.setAttribute('points', `${first},${height} ${points} ${width},${height}`);
  area.setAttribute('class', 'spark-area');
  svg.replaceChildren(area, line);
}
