// The client's one table of server error codes must be PROTOCOL.md's error table: same codes,
// same "closes" and "retryable" columns.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { CLIENT_ERROR_CODES, EsdbError, SERVER_ERROR_CODES } from '../src/index.js';
import { REPO_ROOT } from './helpers/server.js';

/** The rows of the table under "## Errors": code → {closes, retryable}. */
function protocolErrorTable() {
  const text = readFileSync(join(REPO_ROOT, 'protocol', 'PROTOCOL.md'), 'utf8');
  const section = text.split(/^## /m).find((part) => part.startsWith('Errors\n'));
  assert.ok(section, 'PROTOCOL.md has an "## Errors" section');
  const rows = section.split('\n').filter((line) => line.startsWith('|'));
  const header = rows[0].split('|').map((cell) => cell.trim());
  assert.deepEqual(header.slice(1, 4), ['code', 'closes', 'retryable'], 'error table columns');
  const table = {};
  for (const row of rows.slice(2)) {
    const cells = row.split('|').map((cell) => cell.trim());
    const code = /^`([a-z_]+)`$/.exec(cells[1]);
    assert.ok(code, `error table row names a code: ${row}`);
    const yesNo = (cell) => {
      assert.ok(cell === 'yes' || cell === 'no', `yes or no, got ${cell} in ${row}`);
      return cell === 'yes';
    };
    table[code[1]] = { closes: yesNo(cells[2]), retryable: yesNo(cells[3]) };
  }
  return table;
}

test("the client's error codes are PROTOCOL.md's error table", () => {
  const documented = protocolErrorTable();
  assert.ok(Object.keys(documented).length >= 20, 'the table was parsed');
  assert.deepEqual({ ...SERVER_ERROR_CODES }, documented);
});

test("the client's own codes do not collide with the server's", () => {
  for (const code of Object.keys(CLIENT_ERROR_CODES)) {
    assert.ok(!(code in SERVER_ERROR_CODES), `${code} is a server code too`);
  }
});

test('EsdbError carries code, message and retryability', () => {
  const error = new EsdbError('storage_error', 'disk full', { fromServer: true });
  assert.ok(error instanceof Error);
  assert.equal(error.name, 'EsdbError');
  assert.equal(error.code, 'storage_error');
  assert.equal(error.message, 'disk full');
  assert.equal(error.retryable, true);
  assert.equal(error.closesConnection, false);
  assert.equal(new EsdbError('wrong_expected_version', 'x', { fromServer: true }).retryable, false);
  assert.equal(new EsdbError('shutting_down', 'x', { fromServer: true }).closesConnection, true);
  assert.equal(new EsdbError('connection_lost', 'x').retryable, true);
});
