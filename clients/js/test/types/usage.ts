// Compiled (not run) by types.test.js against src/index.d.ts: the README's usage must type-check.
import { connect, EsdbError, UnreadableEventError, aggregate, type RecordedEvent } from '../../src/index.js';

interface Opened { owner: string }

export async function example(): Promise<void> {
  const client = await connect(['127.0.0.1:4350', 'ws://127.0.0.1:8350/ws'], { name: 'types', maxRetries: 3 });
  const result = await client.append('acct-1', { eventType: 'Opened', data: { owner: 'Ada' } }, { expectedVersion: 'no_stream' });
  const version: number = result.version;
  for await (const event of client.read<Opened>('acct-1', { pageSize: 100 })) {
    const owner: string = event.data.owner;
    void owner;
  }
  const all: RecordedEvent[] = await client.readAll({ direction: 'backward', limit: 10 }).toArray();
  const subscription = await client.subscribe({ eventType: ['Opened', 'Closed'] }, { start: 'end' });
  await subscription.live;
  for await (const event of subscription) {
    if (event.position > version) break;
  }
  const payments = await client.subscribe({ eventPayload: { data: { currency: 'EUR' } } });
  for (;;) {
    try {
      for await (const event of payments) console.log(event.data);
      break;
    } catch (error) {
      if (!(error instanceof UnreadableEventError)) throw error;
      const where: string = `${error.streamId}@${error.version} (position ${error.position})`;
      console.log('unreadable', where, error.reason, error.code === 'unreadable_event');
    }
  }
  const stats = await client.stats();
  const leader: number | null | undefined = stats.stores.default.raft?.leader_id;
  const term: number | undefined = client.info?.raft?.default.term;
  void leader;
  void term;
  const workers = await client.subscribe({ stream: 'jobs' }, { name: 'workers', maxInFlight: 10 });
  for await (const job of workers) {
    const ok: boolean = await workers.ack(job);
    if (!ok) await workers.nack('park', job.position);
  }
  const snapshot = await client.snapshots.load('acct-1');
  const state = aggregate(all, { initial: snapshot.data, raw: true });
  await client.snapshots.save('acct-1', snapshot.version, state, { keep: 3 });
  const parked: RecordedEvent[] = await client.persistent.parked('workers');
  const reasons: Array<string | undefined> = parked.map((event) => event.parkedReason);
  void reasons;
  const info = await client.persistent.get('workers');
  const checkpoint: number = info.checkpoint;
  void checkpoint;
  try {
    await client.delete('acct-1', { expectedVersion: 7 });
  } catch (error) {
    if (error instanceof EsdbError && error.code === 'wrong_expected_version') console.log(error.message);
  }
  client.addEventListener('disconnect', () => console.log('lost', client.address));
  client.close();
}
