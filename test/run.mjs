#!/usr/bin/env node
// Runs every test file of every suite, each in its own process (a crash or a
// leaked namespace in one file cannot take the others down), prints their
// output, and ends with one line the CI reader understands:
//   N passed, N failed, N skipped
// Usage: node test/run.mjs [suite-or-file-substring ...]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const distTest = join(root, 'dist', 'test');
// Suites in the order they build on each other: pure code first, VM last.
const ORDER = ['unit', 'bpf', 'netlink', 'agent', 'vm'];

function walk(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.js') ? [p] : [];
  });
}

const filters = process.argv.slice(2).filter(Boolean);
const files = walk(distTest)
  .map((f) => ({ f, suite: relative(distTest, f).split('/')[0] }))
  .filter(({ f }) => filters.length === 0 || filters.some((x) => relative(distTest, f).includes(x)))
  .sort((a, b) => {
    const ia = ORDER.indexOf(a.suite), ib = ORDER.indexOf(b.suite);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.f.localeCompare(b.f);
  });

const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
let passed = 0, failed = 0, skipped = 0;
const failures = [];
const t0 = Date.now();
for (const { f } of files) {
  const name = relative(distTest, f);
  const t = Date.now();
  process.stdout.write(`\n=== ${name}\n`);
  const r = spawnSync(process.execPath, ['--enable-source-maps', f], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
    timeout: Number(process.env.NETAGENT_TEST_FILE_TIMEOUT_MS ?? 20 * 60_000),
    maxBuffer: 256 * 1024 * 1024,
  });
  const out = strip((r.stdout ?? '') + (r.stderr ?? ''));
  process.stdout.write(out);
  const total = Number(/Total:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const ok = Number(/Passed:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const skip = Number(/Skipped:\s+(\d+)/.exec(out)?.[1] ?? 0);
  if (Number.isNaN(total) || Number.isNaN(ok)) {
    // The file died before uvu could summarise: count it as one failure.
    failed += 1;
    failures.push(`${name} (no summary; exit ${r.status ?? r.signal}${r.error ? `, ${r.error.message}` : ''})`);
  } else {
    passed += ok;
    skipped += skip;
    const bad = total - ok - skip;
    failed += bad;
    if (bad > 0 || r.status !== 0) {
      if (bad === 0) failed += 1; // non-zero exit with all passed: something went wrong after the tests
      failures.push(`${name} (${bad} failed, exit ${r.status ?? r.signal})`);
    }
  }
  process.stdout.write(`--- ${name}: ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
}
if (files.length === 0) {
  failed += 1;
  failures.push('no test files found under dist/test (did the build run?)');
}
process.stdout.write(`\nran ${files.length} files in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
if (failures.length) process.stdout.write(`failures:\n${failures.map((x) => `  ${x}`).join('\n')}\n`);
process.stdout.write(`${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(failed > 0 ? 1 : 0);
