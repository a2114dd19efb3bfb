// `netagent log` (the command, as a person types it) on an s6-log directory
// written with real records: -n, --link, --level, --json, archives and
// current in order, lines that are not records; and the help of every command.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_JS, logCli, realRecords, TYPICAL, type Call } from './log-records.js';

const dir = mkdtempSync(join(tmpdir(), 'netagent-logcli-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

// Two archived files and current, as s6-log leaves them; 30 numbered records
// spread over them, with the typical records and some garbage in current.
const numbered = (from: number, to: number): Call[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ['info', { link: `eth${(from + i) % 3}`, n: from + i }, `record ${from + i}`] as Call);
const GARBAGE = ['netagent/finish: netagent exited 1', '{"level":30,"msg":"cut in the mid'];
writeFileSync(join(dir, '@400000006b0fadb91a763329.s'), realRecords(numbered(1, 10)).join('\n') + '\n');
writeFileSync(join(dir, '@400000006b0fadb91a87527c.u'), realRecords(numbered(11, 20)).join('\n') + '\n');
writeFileSync(join(dir, 'current'), [...realRecords(numbered(21, 30)), ...GARBAGE, ...realRecords(TYPICAL)].join('\n') + '\n');
writeFileSync(join(dir, 'lock'), '');
writeFileSync(join(dir, 'state'), '');

const lines = (s: string) => s.split('\n').filter(Boolean);
const TIME = /^\d\d:\d\d:\d\d\.\d{3} (trace|debug|info |warn |error|fatal) /;

test('default: the last 20 records, readable, oldest first', () => {
  const r = logCli(['--dir', dir]);
  assert.is(r.code, 0, r.err);
  const out = lines(r.out);
  assert.is(out.length, 20);
  assert.match(out[0]!, /record 24 n=24$/);
  assert.match(out[6]!, /record 30 n=30$/);
  assert.is(out[7], GARBAGE[0]);
  assert.is(out[8], GARBAGE[1]);
  assert.match(out[9]!, /netagent starting/);
  assert.match(out[19]!, /coldplug done: ready ms=812 links=4$/);
  for (const l of out) if (!GARBAGE.includes(l)) assert.match(l, TIME, l);
  assert.not.match(r.out, /\x1b\[/, 'no colour into a pipe');
});

test('-n N reaches back through the archived files in order; -n all; -n 0', () => {
  const out = lines(logCli(['--dir', dir, '-n', '35']).out);
  assert.is(out.length, 35);
  assert.match(out[0]!, /record 9 n=9$/);
  assert.match(out[1]!, /record 10 n=10$/);
  assert.match(out[2]!, /record 11 n=11$/);
  const all = lines(logCli(['--dir', dir, '-n', 'all']).out);
  assert.is(all.length, 30 + GARBAGE.length + TYPICAL.length);
  assert.equal(all.slice(0, 30).map((l) => Number(/record (\d+) n=\d+$/.exec(l)?.[1])), Array.from({ length: 30 }, (_, i) => i + 1));
  assert.equal(lines(logCli(['--dir', dir, '-n5']).out), all.slice(-5));
  assert.equal(lines(logCli(['--dir', dir, '--lines=5']).out), all.slice(-5));
  assert.is(logCli(['--dir', dir, '-n', '0']).out, '');
});

test('--link: only that link, counted after the filter', () => {
  const out = lines(logCli(['--dir', dir, '--link', 'eth1', '-n', '6']).out);
  assert.is(out.length, 6);
  for (const l of out) assert.match(l, / eth1: /);
  assert.match(out[0]!, /record 25 n=25$/);
  assert.match(out[5]!, /netlink message bytes=52$/);
  assert.is(logCli(['--dir', dir, '--link', 'nosuch']).out, '');
});

test('--level: that level and above; text lines kept (they may be the crash)', () => {
  const out = lines(logCli(['--dir', dir, '--level', 'warn', '-n', 'all']).out);
  assert.equal(out.map((l) => TIME.exec(l)?.[1]?.trim() ?? l), [...GARBAGE, 'error', 'warn', 'error', 'fatal']);
  const r = logCli(['--dir', dir, '--level', 'loud']);
  assert.is(r.code, 2);
  assert.match(r.err, /--level must be one of trace, debug, info, warn, error, fatal \(got "loud"\)/);
});

test('--json: the records unchanged, filtered, no text lines', () => {
  const written = lines(['@400000006b0fadb91a763329.s', '@400000006b0fadb91a87527c.u', 'current'].map((f) => readFileSync(join(dir, f), 'utf8')).join(''));
  const records = written.filter((l) => !GARBAGE.includes(l));
  const eth1 = records.filter((l) => { const r = JSON.parse(l); return r.link === 'eth1' && r.level >= 30; });
  assert.is(eth1.length, 10 + 3, 'records 1, 4, .., 28 and three typical ones of eth1 at info or above');
  assert.equal(lines(logCli(['--dir', dir, '--json', '--link', 'eth1', '--level', 'info', '-n', 'all']).out), eth1);
  assert.equal(lines(logCli(['--dir', dir, '--json', '--link', 'eth1', '--level', 'info']).out), eth1, 'all 13: fewer than 20');
  assert.equal(lines(logCli(['--dir', dir, '--json', '-n', 'all']).out), records, 'every record as written; text lines left out');
  assert.equal(lines(logCli(['--dir', dir, '--json', '-n', '3']).out), records.slice(-3));
});

test('NETAGENT_LOG_DIR names the directory; a missing one is exit 1 with a reason', () => {
  assert.is(lines(logCli(['-n', '1'], { NETAGENT_LOG_DIR: dir }).out).length, 1);
  const r = logCli(['--dir', join(dir, 'nope')]);
  assert.is(r.code, 1);
  assert.match(r.err, /netagent log: cannot read the log in .*nope: no such directory/);
  assert.is(r.out, '');
});

test('usage errors: exit 2, naming the option and where the help is', () => {
  for (const [args, re, last] of [[['-x'], /unknown option -x/], [['--bogus'], /unknown option --bogus/], [['-n', 'many'], /-n must be a number/], [['-n'], /-n needs a value/, true], [['extra'], /log takes no arguments/]] as Array<[string[], RegExp, boolean?]>) {
    const r = logCli(last ? ['--dir', dir, ...args] : [...args, '--dir', dir]);
    assert.is(r.code, 2, args.join(' '));
    assert.match(r.err, re);
    assert.match(r.err, /see netagent log --help/);
  }
});

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI_JS, ...args], { encoding: 'utf8' });

test('--help lists every command; COMMAND --help and help COMMAND describe every option', () => {
  const top = cli('--help');
  assert.is(top.status, 0);
  for (const l of top.stdout.split('\n')) assert.ok(l.length <= 80, `help fits a console: ${l}`);
  for (const c of ['run', 'status', 'log', 'help']) assert.match(top.stdout, new RegExp(`^  netagent ${c} `, 'm'));
  const options: Record<string, string[]> = {
    run: ['--config', '--socket', '--bpf-dir', '--pin-dir', '--notify-fd'],
    status: ['--json', '--socket'],
    log: ['-n, --lines', '-f, --follow', '--link', '--level', '--json', '--dir'],
  };
  for (const [c, opts] of Object.entries(options)) {
    const a = cli(c, '--help'), b = cli('help', c), h = cli(c, '-h');
    assert.is(a.status, 0);
    assert.is(a.stdout, b.stdout);
    assert.is(a.stdout, h.stdout);
    assert.match(a.stdout, new RegExp(`^usage: netagent ${c}`));
    for (const o of opts) assert.match(a.stdout, new RegExp(`^  ${o} `, 'm'), `${c}: ${o}`);
    for (const l of a.stdout.split('\n')) assert.ok(l.length <= 80, `${c} help fits a console: ${l}`);
  }
  assert.match(cli('help', 'log').stdout, /default 20/);
  const bad = cli('help', 'nope');
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /no command "nope" \(commands: run, status, events, log\)/);
});

test.run();
