// The hand-written declarations (src/index.d.ts) compile, and a usage file type-checks
// against them, with the TypeScript compiler (a devDependency).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

test('index.d.ts and a usage file type-check', () => {
  const result = spawnSync(
    process.execPath,
    [
      tsc,
      '--noEmit',
      '--strict',
      '--target', 'es2022',
      '--module', 'nodenext',
      '--moduleResolution', 'nodenext',
      '--lib', 'es2022,dom',
      // lib.dom.d.ts is big and not ours to check; index.d.ts still is.
      '--skipDefaultLibCheck',
      join(root, 'src', 'index.d.ts'),
      join(root, 'test', 'types', 'usage.ts'),
    ],
    { cwd: root, encoding: 'utf8' },
  );
  assert.equal(result.status, 0, `tsc failed:\n${result.stdout}${result.stderr}`);
});
