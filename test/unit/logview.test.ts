// The formatter of `netagent log` on records pino really wrote (through
// agent/log.ts), and on lines that are not records.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatLine, formatRecord, formatTime, parseLevel, parseLogLine, passes, type LogRecord } from '../../agent/logview.js';
import { realRecords, TYPICAL } from './log-records.js';

// A zone with an offset, so local time is not UTC by accident.
process.env.TZ = 'Europe/Berlin';

const lines = realRecords(TYPICAL);
const now = new Date();
const plain = (l: string) => formatLine(parseLogLine(l), { color: false, now });
const T = '\\d\\d:\\d\\d:\\d\\d\\.\\d{3}';

test('real records: one short line each, time, level word, link, message, the fields that matter', () => {
  assert.is(lines.length, TYPICAL.length);
  const out = lines.map(plain);
  const want = [
    `^${T} info  netagent starting version=0.1.0 profile=router-p2p xdpMode=skb config=/etc/netagent/config.json$`,
    `^${T} info  eth0: link appeared ifindex=2 mac=52:54:00:12:34:01$`,
    `^${T} debug eth0: xdp program adopted program=physical id=41 mode=skb$`,
    `^${T} info  eth0: link configured ifindex=2 role=uplink actions=\\[set up, add 10.0.2.15/24\\]$`,
    // what went wrong and what happens next come first
    `^${T} error eth1: could not configure eth1 err="RTM_NEWADDR eth1 100.64.0.1/31: File exists \\(EEXIST\\)" action=addr-add attempt=2 retryInMs=400 ifindex=3$`,
    // null fields say nothing
    `^${T} warn  eth1: DHCP client ended; restarting later retryInMs=2000 code=1$`,
    // an Error (pino's serializer: type, message, stack, code): message and code, no stack
    `^${T} error netlink event socket error err="recvmsg failed \\(ENOBUFS\\)"$`,
    // a state transition reads as one
    `^${T} info  eth1: link state failed -> configured why="retry succeeded"$`,
    `^${T} trace eth1: netlink message bytes=52$`,
    `^${T} fatal netagent could not start err="config.json: profile must be one of ..."$`,
    `^${T} info  coldplug done: ready ms=812 links=4$`,
  ];
  want.forEach((re, i) => assert.match(out[i]!, new RegExp(re), `line ${i}: ${out[i]}`));
  for (const l of out) {
    assert.not.match(l, /[{}]"|"level"|"time"|"msg"|"name"/, `no JSON left: ${l}`);
    assert.not.match(l, /\n|at file:/, `one line, no stack: ${l}`);
  }
});

test("the time is the record's, in local time; the date shows when it is not today", () => {
  const rec = JSON.parse(lines[1]!) as LogRecord;
  const t = new Date(rec.time as string);
  const hms = [t.getHours(), t.getMinutes(), t.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':') + '.' + String(t.getMilliseconds()).padStart(3, '0');
  assert.ok(plain(lines[1]!).startsWith(`${hms} `));
  // 23:59:58.250 UTC is 00:59:58.250 on the next day in Berlin (winter).
  const iso = '2024-03-05T23:59:58.250Z';
  assert.is(formatTime(iso, new Date('2024-03-06T10:00:00Z')), '00:59:58.250');
  assert.is(formatTime(iso, new Date('2024-03-07T10:00:00Z')), '2024-03-06 00:59:58.250');
  assert.is(formatTime(iso, new Date('2024-03-05T12:00:00Z')), '2024-03-06 00:59:58.250');
  assert.is(formatTime(Date.parse(iso), new Date('2024-03-06T10:00:00Z')), '00:59:58.250', 'epoch ms (pino default) too');
  assert.is(formatTime('yesterday-ish', now), 'yesterday-ish', 'an unreadable time is shown as it is');
});

test('colour: the same words with ANSI codes; level coloured (error red)', () => {
  for (const l of lines) {
    const rec = parseLogLine(l);
    const coloured = formatLine(rec, { color: true, now });
    assert.match(coloured, /\x1b\[/);
    assert.is(coloured.replace(/\x1b\[[0-9;]*m/g, ''), formatLine(rec, { color: false, now }));
  }
  assert.match(formatLine(parseLogLine(lines[4]!), { color: true, now }), '\x1b[31merror\x1b[0m');
});

test('lines that are not records are kept as they are, never an exception', () => {
  const garbage = ['', 'netagent/finish: netagent exited 1 (signal 9)', '{broken', '{"level":"info"}', '[1,2,3]', 'null', '42', '{"msg":"no level"}',
    '    at Daemon.start (file:///usr/lib/netagent/dist/agent/daemon.js:12:3)', '\u0000\u0001\uffff', '@4000000065a1b2c3 short label'];
  for (const g of garbage) {
    const l = parseLogLine(g);
    assert.is(l.kind, 'text', g);
    assert.is(formatLine(l, { color: true, now }), g);
  }
});

test('an s6-log timestamp prefix (TAI64N with "t", ISO 8601 with "T") before a record is skipped', () => {
  for (const prefix of ['@400000006b0fadb91a763329 ', '2026-12-02T05:33:01.123456789  ']) {
    const l = parseLogLine(prefix + lines[1]!);
    assert.is(l.kind, 'record');
    assert.is(l.kind === 'record' && l.json, lines[1]);
    assert.is(formatLine(l, { color: false, now }), plain(lines[1]!));
  }
  const text = parseLogLine('@400000006b0fadb91a763329 netagent/run: cannot mount bpffs');
  assert.is(formatLine(text, { color: false, now }), '@400000006b0fadb91a763329 netagent/run: cannot mount bpffs');
});

test('filters: --link keeps that link only (no text lines), --level a minimum (text lines kept)', () => {
  const parsed = lines.map(parseLogLine);
  const text = parseLogLine('netagent/finish: netagent exited 1');
  const eth1 = parsed.filter((l) => passes(l, { link: 'eth1' }));
  assert.is(eth1.length, 4);
  assert.ok(!passes(text, { link: 'eth1' }));
  const warn = parsed.filter((l) => passes(l, { minLevel: parseLevel('WARN')! }));
  assert.equal(warn.map((l) => l.kind === 'record' && l.rec.level), [50, 40, 50, 60]);
  assert.ok(passes(text, { minLevel: 60 }));
  assert.equal(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'loud'].map(parseLevel), [10, 20, 30, 40, 50, 60, null]);
});

test('odd but valid records: no msg, a number link, a long nested value', () => {
  const r = formatRecord({ level: 35, time: '2024-03-05T23:59:58.250Z', link: 7, paths: { config: '/x y', pins: ['a', 'b'] } }, { color: false, now: new Date('2024-03-06T10:00:00Z') });
  assert.is(r, '00:59:58.250 L35   7: paths={config="/x y" pins=[a, b]}');
});

test.run();
