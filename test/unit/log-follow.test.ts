// `netagent log -f`: new records as they come, across rotations (the old
// file read to its end, then the new current), truncation, lines that are not
// records; first on files moved exactly as s6-log moves them, then with the
// real s6-log rotating under it. Waits are bounded waits for output, not
// sleeps that guess how long something takes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Following, realRecords, type Call } from './log-records.js';

const base = mkdtempSync(join(tmpdir(), 'netagent-logf-'));
const followers: Following[] = [];
test.after(() => {
  for (const f of followers) f.stop();
  rmSync(base, { recursive: true, force: true });
});
const follow = (args: string[]) => {
  const f = new Following(args);
  followers.push(f);
  return f;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const numbered = (from: number, to: number, extra: Record<string, unknown> = {}): Call[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ['info', { n: from + i, ...extra }, `record ${from + i}`] as Call);
const R = realRecords(numbered(1, 12));
const rec = (n: number) => `${R[n - 1]}\n`;
const shown = (lines: string[]) => lines.map((l) => /record (\d+) n=\d+$/.exec(l)?.[1] ?? l);

// s6-log's rotation: current -> previous, a new empty current, previous
// linked to @<TAI64N>.s and unlinked (strace of s6-log 2.11).
let label = 0x6b0fadb91a763329n;
function rotate(dir: string): void {
  renameSync(join(dir, 'current'), join(dir, 'previous'));
  writeFileSync(join(dir, 'current'), '');
  const archived = join(dir, `@4000${(label++).toString(16).padStart(20, '0')}.s`);
  renameSync(join(dir, 'previous'), archived);
}

test('-f: the last N, then appended records, across rotations (one and two at once), garbage and truncation', async () => {
  const dir = join(base, 'sim');
  mkdirSync(dir);
  writeFileSync(join(dir, 'current'), rec(1) + rec(2) + rec(3));
  const f = follow(['--dir', dir, '-n', '2']);
  assert.equal(shown(await f.waitLines(2)), ['2', '3']);

  appendFileSync(join(dir, 'current'), rec(4));
  assert.equal(shown(await f.waitLines(3)).slice(2), ['4']);

  // Written just before the rotation: read from the old file after its rename.
  appendFileSync(join(dir, 'current'), rec(5));
  rotate(dir);
  appendFileSync(join(dir, 'current'), rec(6));
  assert.equal(shown(await f.waitLines(5)).slice(3), ['5', '6']);

  // Two rotations before the follower looks: the file in between is read from the archive.
  appendFileSync(join(dir, 'current'), rec(7));
  rotate(dir);
  appendFileSync(join(dir, 'current'), rec(8));
  rotate(dir);
  appendFileSync(join(dir, 'current'), rec(9));
  assert.equal(shown(await f.waitLines(8)).slice(5), ['7', '8', '9']);

  appendFileSync(join(dir, 'current'), 'netagent/finish: netagent exited 1\n{"level":30,"cut\n');
  assert.equal(shown(await f.waitLines(10)).slice(8), ['netagent/finish: netagent exited 1', '{"level":30,"cut']);

  // A half-written line waits for its newline.
  appendFileSync(join(dir, 'current'), R[9]!.slice(0, 20));
  await sleep(400);
  assert.is(f.lines.length, 10);
  appendFileSync(join(dir, 'current'), `${R[9]!.slice(20)}\n`);
  assert.equal(shown(await f.waitLines(11)).slice(10), ['10']);

  // Truncated in place: read again from its start.
  truncateSync(join(dir, 'current'), 0);
  const t = Date.now();
  while (!/truncated/.test(f.err) && Date.now() - t < 5000) await sleep(50);
  assert.match(f.err, /current was truncated; reading it from its start/);
  appendFileSync(join(dir, 'current'), rec(11));
  assert.equal(shown(await f.waitLines(12)).slice(11), ['11']);

  await sleep(400);
  assert.equal(shown(f.lines), ['2', '3', '4', '5', '6', '7', '8', '9', 'netagent/finish: netagent exited 1', '{"level":30,"cut', '10', '11'], 'each line once, in order');
  for (const l of f.lines.filter((x) => /^\d/.test(x))) assert.match(l, /^\d\d:\d\d:\d\d\.\d{3} info  record/);
});

test('-f waits for a log that is not there yet, and filters what follows', async () => {
  const dir = join(base, 'late');
  const f = follow(['--dir', dir, '--level', 'warn', '--link', 'eth1']);
  const t = Date.now();
  while (!/waiting/.test(f.err) && Date.now() - t < 5000) await sleep(50);
  assert.match(f.err, /no .*late\/current yet; waiting for it/);
  mkdirSync(dir);
  const recs = realRecords([
    ['warn', { link: 'eth0' }, 'not this link'],
    ['info', { link: 'eth1' }, 'below warn'],
    ['error', { link: 'eth1', err: 'EEXIST', attempt: 1, retryInMs: 100 }, 'could not configure eth1'],
    ['warn', { link: 'eth1' }, 'DHCP client ended; restarting later'],
  ]);
  writeFileSync(join(dir, 'current'), recs.join('\n') + '\nnot a record\n');
  const out = await f.waitLines(2);
  await sleep(400);
  assert.is(out.length, 2, out.join('\n'));
  assert.match(out[0]!, /error eth1: could not configure eth1 err=EEXIST attempt=1 retryInMs=100$/);
  assert.match(out[1]!, /warn  eth1: DHCP client ended; restarting later$/);
});

const haveS6Log = spawnSync('sh', ['-c', 'command -v s6-log']).status === 0;

test('-f -n all --json under the real s6-log rotating every 4 KB: every record once, in order', async () => {
  if (!haveS6Log) {
    console.log('  (skipped: no s6-log; make deps installs s6)');
    return;
  }
  const dir = join(base, 's6');
  const N = 300;
  const records = realRecords(numbered(1, N, { link: 'eth0', pad: 'x'.repeat(60) }));
  const s6log = spawn('s6-log', ['-b', 'n40', 's4096', dir], { stdio: ['pipe', 'ignore', 'inherit'] });
  try {
    let f: Following | undefined;
    for (let i = 0; i < N; i += 25) {
      s6log.stdin!.write(records.slice(i, i + 25).join('\n') + '\n');
      await sleep(20);
      // Start following while s6-log writes and rotates: what was before is
      // read from the files, what comes after as it comes.
      if (i === 100) f = follow(['--dir', dir, '-n', 'all', '--json']);
    }
    const out = await f!.waitLines(N, 15_000);
    await sleep(400);
    const archived = readdirSync(dir).filter((n) => /^@[0-9a-f]{24}\.s$/.test(n));
    assert.ok(archived.length >= 8, `s6-log rotated ${archived.length} times`);
    assert.is(out.length, N);
    assert.equal(out, records);
  } finally {
    s6log.stdin!.end();
    await new Promise((r) => { s6log.once('exit', r); setTimeout(r, 5000); });
    s6log.kill();
  }
});

test.run();
