// What `netagent status` and `netagent events` show a person, from values
// alone: human units, rates between two reports, the event lines (colour
// only when asked), the help of both commands and --watch's usage errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { humanBytes, humanCount, rates, formatStatus, type StatusReport, type InterfaceStatus } from '../../agent/status.js';
import { formatEvent } from '../../agent/events.js';
import { CLI_JS } from './log-records.js';

test('human units: exact counts below 10000, then k/M/G; bytes in KiB/MiB/GiB with 3 digits', () => {
  assert.equal([0, 9999, 10_000, 123_456, 4_560_000, 1_200_000_000].map(humanCount), ['0', '9999', '10.0k', '123k', '4.56M', '1.2G']);
  assert.equal([0.5, 2.25].map(humanCount), ['0.5', '2.3'], 'a slow rate is not rounded to 0');
  assert.equal([0, 1023, 1024, 4000, 10_240, 1_048_576 * 12.3, 2 ** 30].map(humanBytes), ['0 B', '1023 B', '1.0 KiB', '3.91 KiB', '10.0 KiB', '12.3 MiB', '1.0 GiB']);
  assert.is(humanBytes(2n ** 64n - 1n), '16384 PiB', 'a u64 counter at its end still reads');
});

const iface = (ifindex: number, traffic: InterfaceStatus['traffic']): InterfaceStatus => ({
  name: `eth${ifindex}`, ifindex, mac: '52:54:00:00:00:01', role: 'physical', state: 'configured', addresses: [], xdp: null,
  error: null, note: null, why: '', up: true, mtu: 1500, traffic,
});
const t = (vid: number | null, rx: number, rxB: number, tx: number, txB: number, drops: Record<string, string> = {}) =>
  ({ vid, rxPackets: String(rx), rxBytes: String(rxB), txPackets: String(tx), txBytes: String(txB), drops });
const report = (interfaces: InterfaceStatus[]): StatusReport => ({
  profile: 'xdp-forwarder', ready: true, interfaces, version: '0.1.0', pid: 1, uptimeSeconds: 5, xdpMode: 'skb', routerIface: null, counters: {}, lastError: null,
});

test('rates: per second between two reports; none for a link whose counters went back or whose VID changed', () => {
  const a = report([iface(2, t(2, 100, 10_000, 0, 0)), iface(3, t(3, 50, 5000, 0, 0)), iface(4, t(4, 1, 1, 1, 1)), iface(5, null)]);
  const b = report([iface(2, t(2, 300, 30_000, 10, 1000)), iface(3, t(3, 10, 1000, 0, 0)), iface(4, t(9, 5, 5, 5, 5)), iface(5, null)]);
  const r = rates(a, b, 2);
  assert.equal(r.get(2), { rx: { frames: 100, bytes: 10_000 }, tx: { frames: 5, bytes: 500 } });
  assert.is(r.get(3), null);
  assert.is(r.get(4), null);
  assert.is(r.has(5), false);
  const table = formatStatus(b, { rates: r }).split('\n');
  assert.match(table[2]!, /^IFACE +IDX +MAC +ROLE +STATE +VID +RX +TX +RX\/s +TX\/s +ADDRESSES +XDP +NOTE$/);
  assert.match(table[3]!, /^eth2 +2 .* configured +2 +300 \/ 29.3 KiB +10 \/ 1000 B +100\/s 9.77 KiB\/s +5\/s 500 B\/s +- +-$/);
  assert.match(table[4]!, /^eth3 +3 .* configured +3 +10 \/ 1000 B +0 \/ 0 B +- +- +- +-$/);
});

test('drops by reason under the table, only links and reasons that dropped something', () => {
  const out = formatStatus(report([iface(2, t(2, 0, 0, 0, 0, { short: '2', no_router: '0', headroom: '7' })), iface(3, t(3, 0, 0, 0, 0, { short: '0' }))]));
  assert.match(out, /\ndropped frames:\n  eth2: short 2, headroom 7\n/);
  assert.not.match(out, /eth3: short/);
});

test('event lines: local time, kind, link, what happened; colour only when asked', () => {
  const at = new Date(2025, 0, 2, 3, 4, 5, 6);
  const o = { color: false, now: at };
  const time = at.getTime();
  assert.is(formatEvent({ type: 'link', time, ifindex: 2, link: 'eth0', role: 'physical', state: 'configured', why: 'physical attached, up' }, o),
    '03:04:05.006 now    eth0: configured role=physical why="physical attached, up"');
  assert.is(formatEvent({ type: 'transition', time, ifindex: 2, link: 'eth0', from: 'pending', to: 'failed', why: 'attach physical: EBUSY' }, o),
    '03:04:05.006 change eth0: pending -> failed why="attach physical: EBUSY"');
  assert.is(formatEvent({ type: 'repair', time, ifindex: 2, link: 'eth0', actions: ['set up', 'attach physical'] }, o), '03:04:05.006 repair eth0: set up, attach physical');
  assert.is(formatEvent({ type: 'dropped', time, count: 12 }, o), '03:04:05.006 missed 12 events dropped while this watcher was behind (netagent status shows where things stand)');
  assert.is(formatEvent({ type: 'dropped', time, count: 12 }, { color: false, now: new Date(2025, 0, 3) }).slice(0, 25), '2025-01-02 03:04:05.006 m', 'another day: the date too');
  const coloured = formatEvent({ type: 'transition', time, ifindex: 2, link: 'eth0', from: 'pending', to: 'failed', why: 'x' }, { color: true, now: at });
  assert.match(coloured, /\x1b\[31mfailed\x1b\[0m/);
  assert.is(coloured.replace(/\x1b\[[0-9;]*m/g, ''), '03:04:05.006 change eth0: pending -> failed why=x');
});

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI_JS, ...args], { encoding: 'utf8' });

test('help: events and status --watch are described, within 80 columns', () => {
  const top = cli('--help').stdout;
  assert.match(top, /^  netagent events \[--json\] \[--socket PATH\]$/m);
  assert.match(top, /^  netagent status \[--json\] \[--watch \[SECONDS\]\] \[--socket PATH\]$/m);
  for (const c of ['events', 'status']) {
    const h = cli('help', c).stdout;
    for (const l of h.split('\n')) assert.ok(l.length <= 80, `${c} help fits a console: ${l}`);
    for (const o of c === 'events' ? ['--json', '--socket PATH'] : ['--json', '--watch [SECONDS]', '--socket PATH']) assert.match(h, new RegExp(`^  ${o.replace(/[[\]]/g, '\\$&')} `, 'm'));
  }
});

test('--watch usage errors: exit 2 naming the option', () => {
  for (const bad of [['--watch=0'], ['--watch=abc'], ['--watch', '0']]) {
    const r = cli('status', ...bad, '--socket', '/nonexistent/sock');
    assert.is(r.status, 2, `${bad.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /--watch takes a number of seconds from 0.1 to 86400/);
  }
  const extra = cli('events', 'now');
  assert.is(extra.status, 2);
  assert.match(extra.stderr, /events takes no arguments \(got now\)/);
});

test.run();
