// A consumer process for the "client killed" test: subscribes persistently, acknowledges the
// first N events it gets, prints their positions as one JSON line, then idles until killed
// (or gives up after a bound, so it never outlives a failed test).

import { connect } from '../../src/index.js';

const [address, name, stream, ackCountText] = process.argv.slice(2);
const ackCount = Number(ackCountText);
const SELF_DESTRUCT_MS = 60_000;
setTimeout(() => process.exit(3), SELF_DESTRUCT_MS).unref();

const client = await connect(address);
const subscription = await client.subscribe({ stream }, { name });
const acked = [];
for await (const event of subscription) {
  if (acked.length < ackCount) {
    if (!(await subscription.ack(event))) throw new Error('ack not taken');
    acked.push(event.position);
    if (acked.length === ackCount) process.stdout.write(`${JSON.stringify({ acked })}\n`);
  }
  // Later events are taken and left unacknowledged: the process dies holding them.
}
