// Against three real esdb processes forming a cluster on loopback: a client given one node's
// address learns the others from its INFO (cluster.client_urls) and keeps appending, with exact
// expected versions, after that node is killed with SIGKILL.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';

import { connect } from '../src/index.js';
import { EsdbServer, eventually } from './helpers/server.js';
import { uuidv7 } from '../src/uuid.js';

const SECRET = 'a js test cluster secret of 32 b';
const LEADER_WAIT_MS = 20_000;

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startCluster(size) {
  const raft = new Map();
  for (let id = 1; id <= size; id += 1) raft.set(id, await freePort());
  const peers = [...raft].map(([id, port]) => `${id}=127.0.0.1:${port}`).join(',');
  const nodes = new Map();
  for (const [id, port] of raft) {
    const args = ['--node-id', String(id), '--raft', `127.0.0.1:${port}`, '--peers', peers, '--cluster-secret', SECRET];
    nodes.set(id, await EsdbServer.start({ args }));
  }
  return nodes;
}

/** Waits until `node` knows a leader and its greeting names `size` client addresses; the leader's id. */
async function leaderNamingAll(node, size) {
  return eventually(
    async () => {
      const probe = await connect(node.tcpUrl, { backoffBaseMs: 10 });
      try {
        const leader = probe.info.raft?.default?.leader_id;
        const urls = Object.keys(probe.info.cluster?.client_urls ?? {});
        return leader !== null && leader !== undefined && urls.length === size ? leader : null;
      } finally {
        probe.close();
      }
    },
    { timeoutMs: LEADER_WAIT_MS, intervalMs: 100, what: `a leader and ${size} client addresses` },
  );
}

test('a client given one node fails over to the members its INFO names', async () => {
  const nodes = await startCluster(3);
  try {
    const leader = await leaderNamingAll(nodes.get(1), 3);
    await leaderNamingAll(nodes.get(leader), 3);
    const only = nodes.get(leader);
    const client = await connect(only.tcpUrl, { backoffBaseMs: 20, maxRetries: 20 });
    const sent = [];
    try {
      assert.equal(client.servers.length, 3, 'learned from INFO');
      assert.equal(client.servers[0], only.tcpUrl, 'the given address stays first');
      for (let n = 0; n < 30; n += 1) {
        if (n === 10) await only.stop('SIGKILL');
        const eventId = uuidv7();
        sent.push(eventId);
        // Retried by the client after the kill (same event id, exact version): applied once.
        const result = await client.append(
          'counter',
          { eventType: 'Counted', data: { n }, eventId },
          { expectedVersion: n === 0 ? 'no_stream' : n - 1 },
        );
        assert.equal(result.version, n);
      }
      assert.notEqual(client.address, only.tcpUrl, 'moved off the killed node');
    } finally {
      client.close();
    }
    const survivor = [...nodes].find(([id]) => id !== leader)[1];
    const reader = await connect(survivor.tcpUrl);
    try {
      const stored = (await reader.read('counter', { from: 0 }).toArray()).map((event) => event.eventId);
      assert.deepEqual(stored, sent, 'every append once, in order');
    } finally {
      reader.close();
    }
  } finally {
    for (const node of nodes.values()) await node.dispose();
  }
});
