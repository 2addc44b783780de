// appendMulti (several streams, conditions) and readTagsPage against a real server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { connect } from '../src/index.js';
import { EsdbServer } from './helpers/server.js';

let server;
let client;

before(async () => {
  server = await EsdbServer.start();
  client = await connect([server.tcpUrl], { name: 'multi-test' });
});

after(async () => {
  client?.close();
  await server?.dispose();
});

test('appendMulti with tags and a condition', async () => {
  const results = await client.appendMulti([
    { stream: 'course-c1', expectedVersion: 'no_stream', events: [{ eventType: 'CourseDefined', data: { capacity: 1 }, tags: ['course:c1'] }] },
    { stream: 'student-s1', expectedVersion: 'no_stream', events: [{ eventType: 'StudentRegistered', data: {}, tags: ['student:s1'] }] },
  ]);
  assert.deepEqual(results.map((r) => [r.streamId, r.firstPosition, r.lastPosition]), [
    ['course-c1', 0, 0],
    ['student-s1', 1, 1],
  ]);
  const boundary = await client.readTagsPage(['course:c1']);
  assert.deepEqual(boundary.map((e) => e.tags), [['course:c1']]);
  const condition = { query: [{ types: ['StudentSubscribed'], tags: ['course:c1'] }], after: boundary.at(-1).position };
  const subscribe = (student) => [
    { stream: 'course-c1', events: [{ eventType: 'StudentSubscribed', data: { student }, tags: ['course:c1'] }] },
  ];
  const won = await client.appendMulti(subscribe('s1'), { condition });
  assert.equal(won[0].firstPosition, 2);
  await assert.rejects(client.appendMulti(subscribe('s2'), { condition }), (error) => {
    assert.equal(error.code, 'condition_failed');
    assert.match(error.message, /position 2 /);
    return true;
  });
});
