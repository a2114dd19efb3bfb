// RouterFirewall against the real kernel, through libnftables in this very
// process, in a network namespace of this file's own (ownNetns re-runs the
// file under nsenter, so the library's netlink socket and ip_forward are the
// namespace's): the sets hold exactly what was wanted, changes after the
// first are deltas, a burst is one transaction, a table deleted behind our
// back comes back whole, remove() leaves nothing behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Writable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { join } from 'node:path';
import { ownNetns, run, ROOT } from '../lib/sandbox.js';
import { RouterFirewall } from '../../agent/nft.js';

await ownNetns(import.meta.url);

const TABLE = 'nattest';
const lines: Array<{ msg: string; incremental?: boolean }> = [];
const log = pino({ level: 'info' }, new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } }));
const updates = () => lines.filter((l) => l.msg === 'nftables table updated');
const errors: Error[] = [];
const fw = new RouterFirewall(TABLE, log, (e) => errors.push(e));

interface NftJson { nftables: Array<{ table?: { name: string; handle: number }; set?: { name: string; elem?: unknown[] }; chain?: { name: string; policy?: string } }> }
const list = (): NftJson => JSON.parse(run('nft', ['-j', 'list', 'table', 'inet', TABLE]));
const members = (set: string): string[] => [...(list().nftables.find((o) => o.set?.name === set)?.set?.elem ?? [])].map((e) => (typeof e === 'string' ? e : JSON.stringify(e))).sort();
const tableHandle = (): number => list().nftables.find((o) => o.table)!.table!.handle;
const forwarding = () => readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
const names = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `vm${from + i}`);

test('first want(): the whole table, sets exactly as wanted, forward chain failing closed, forwarding on', async () => {
  fw.want({ peers: [], uplinks: ['eth0'], clients: names(1400) });
  await fw.settled();
  assert.is(fw.lastError, null);
  assert.equal(members('uplinks'), ['eth0']);
  assert.equal(members('clients'), names(1400).sort());
  assert.is(list().nftables.find((o) => o.chain?.name === 'forward')!.chain!.policy, 'drop');
  assert.is(forwarding(), '1');
  assert.equal(updates().map((u) => u.incremental), [false]);
});

test('later changes are set deltas: members exact, the table itself untouched', async () => {
  const handle = tableHandle();
  lines.length = 0;
  const clients = [...names(1000, 0), ...names(3, 5000)]; // 400 gone, 3 new
  fw.want({ peers: [], uplinks: ['eth0', 'eth1'], clients });
  await fw.settled();
  assert.is(fw.lastError, null);
  assert.equal(members('uplinks'), ['eth0', 'eth1']);
  assert.equal(members('clients'), clients.sort());
  assert.is(tableHandle(), handle, 'the same table (a whole reload would have made a new one)');
  assert.equal(updates().map((u) => u.incremental), [true]);
});

test('a burst of want() calls is one transaction with the last wish', async () => {
  lines.length = 0;
  const base = names(1000, 0);
  for (let i = 0; i < 30; i++) fw.want({ peers: [], uplinks: ['eth0'], clients: [...base, ...names(i + 1, 7000)] });
  await fw.settled();
  assert.equal(updates().map((u) => u.incremental), [true]);
  assert.equal(members('clients'), [...base, ...names(30, 7000)].sort());
  assert.equal(members('uplinks'), ['eth0']);
});

test('a table deleted behind our back is reloaded whole on the next want()', async () => {
  run('nft', ['delete', 'table', 'inet', TABLE]);
  lines.length = 0;
  const clients = names(5, 9000);
  fw.want({ peers: [], uplinks: ['eth0'], clients });
  await fw.settled();
  assert.is(fw.lastError, null);
  assert.equal(members('clients'), clients.sort());
  assert.equal(members('uplinks'), ['eth0']);
  // Reloaded whole either way: the deletion's notification may come first
  // (the watcher's repair), or the delta is refused first.
  assert.ok(lines.some((l) => l.msg === 'nftables set update refused; reloading the whole table' || /changed by another program/.test(l.msg)), JSON.stringify(lines.map((l) => l.msg)));
  assert.ok(updates().some((u) => u.incremental === false), 'a whole load');
});

const peer = (i: number) => ({ name: `vm${i}`, address: `100.64.${(2 * i + 1) >> 8 & 255}.${(2 * i + 1) & 255}`, gateway: `100.64.${(2 * i) >> 8 & 255}.${(2 * i) & 255}` });
const routerOf = (ids: number[], resolvers?: string[]) => {
  if (resolvers) fw.setResolvers(resolvers);
  const peers = ids.map(peer);
  return { uplinks: ['eth0'], clients: peers.map((p) => p.name), peers };
};
const until = async (what: string, ok: () => boolean, ms: number): Promise<number> => {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) assert.unreachable(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
};

test('1000 clients: addresses, gateways and counters per client; a hotplug is one small element delta', async () => {
  const ids = Array.from({ length: 1000 }, (_, i) => i + 1);
  let t0 = performance.now();
  fw.want(routerOf(ids, ['192.0.2.53']));
  await fw.settled();
  const whole = performance.now() - t0;
  assert.is(fw.lastError, null);
  assert.is(members('sources').length, 1000);
  assert.ok(run('nft', ['list', 'map', 'inet', TABLE, 'dns']).includes('53 : 192.0.2.53'));
  const samples: number[] = [];
  lines.length = 0;
  for (let i = 0; i < 10; i++) {
    t0 = performance.now();
    fw.want(routerOf([...ids, 2000 + i]));
    await fw.settled();
    samples.push(performance.now() - t0);
  }
  await new Promise((r) => setTimeout(r, 200)); // the notifications of our own transactions
  assert.equal(lines.filter((l) => /another program/.test(l.msg)).map((l) => l.msg), [], 'our own changes are not taken for another program\'s (no reload)');
  samples.sort((a, b) => a - b);
  console.log(`  nft: whole table with 1000 clients ${whole.toFixed(1)} ms; one client hotplug (delta of 8 sets, want() to settled) median ${samples[5]!.toFixed(2)} ms`);
  t0 = performance.now();
  const c = await fw.readCounters();
  console.log(`  nft: reading the counters of 1001 clients (worker thread) ${(performance.now() - t0).toFixed(1)} ms`);
  assert.is(c.size, 1001, `counters read: ${c.size}; last log records: ${JSON.stringify(lines.slice(-4))}`);
  assert.is(fw.clientCounters(), c, 'the last reading, at once');
  assert.equal(c.get('vm1'), { tx: { packets: 0, bytes: 0 }, rx: { packets: 0, bytes: 0 }, dropped: { spoofed: 0, toClient: 0, toNetVm: 0 } });
  fw.want(routerOf(ids));
  await fw.settled();
});

test('truth and repair: `nft flush ruleset` and a deleted element are undone within 2 s, from the notifications', async () => {
  for (const [what, act, back] of [
    ['flush ruleset', () => run('nft', ['flush', 'ruleset']), () => /vm7"/.test(safeList())],
    ['delete element', () => run('nft', ['delete', 'element', 'inet', TABLE, 'sources', '{ "vm7" . 100.64.0.15 }']), () => members('sources').includes(JSON.stringify({ concat: ['vm7', '100.64.0.15'] }))],
  ] as const) {
    lines.length = 0;
    act();
    const ms = await until(`table back after ${what}`, back, 2000);
    console.log(`  repaired after ${what} in ${ms} ms`);
    assert.ok(lines.some((l) => /was changed by another program/.test(l.msg)), `said why (${what}): ${JSON.stringify(lines)}`);
    await fw.settled();
    assert.is(fw.lastError, null);
  }
});
const safeList = () => { try { return run('nft', ['list', 'table', 'inet', TABLE]); } catch { return ''; } };

test('truth and repair: IPv4 forwarding turned off is back within 5 s (checked every 2 s)', async () => {
  run('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
  const ms = await until('forwarding back on', () => forwarding() === '1', 5000);
  console.log(`  ip_forward repaired in ${ms} ms`);
});

test('a client that leaves takes its connection-tracking entries with it (ctnetlink, in-process)', async () => {
  // A connection whose original source is vm3's address, on lo.
  run('ip', ['addr', 'add', '100.64.0.7/32', 'dev', 'lo']);
  run('ping', ['-c', '1', '-W', '1', '-I', '100.64.0.7', '127.0.0.1']);
  run('ping', ['-c', '1', '-W', '1', '-I', '127.0.0.1', '127.0.0.1']);
  const ct = () => readFileSync('/proc/net/nf_conntrack', 'utf8');
  assert.match(ct(), /src=100\.64\.0\.7 /);
  fw.want(routerOf([1, 2, 4, 5]));
  await fw.settled();
  assert.not.match(ct(), /src=100\.64\.0\.7 /);
  assert.match(ct(), /src=127\.0\.0\.1 /, 'other entries stay');
  run('ip', ['addr', 'del', '100.64.0.7/32', 'dev', 'lo']);
});

test('programs the agent starts do not inherit the netlink socket of libnftables', () => {
  const fds = run('sh', ['-c', 'for f in /proc/$$/fd/*; do echo "${f##*/} $(readlink "$f")"; done']).trim().split('\n');
  assert.equal(fds.filter((l) => /^\d+ socket:/.test(l) && Number(l.split(' ')[0]) > 2), []);
});

test('remove(): our table gone, forwarding off; removing again is not an error', async () => {
  await fw.remove();
  fw.close();
  assert.not.match(run('nft', ['list', 'tables']), new RegExp(`\\b${TABLE}\\b`));
  assert.is(forwarding(), '0');
  await fw.remove();
  assert.equal(errors, []);
});

test('a refused load names what was attempted and what the kernel said', async () => {
  const bad = new RouterFirewall('no such', log, (e) => errors.push(e)); // a space: not a table name
  bad.want({ peers: [], uplinks: ['eth0'], clients: ['vm1'] });
  await bad.settled();
  assert.match(bad.lastError ?? '', /^nftables: loading table inet no such failed: Error: syntax error/);
  assert.is(errors.length, 1);
  assert.is(errors[0]!.name, 'NftError');
});

test('without libnftables: want() fails saying what to install; remove() has nothing to remove', () => {
  // A private mount namespace in which the library is an empty file, so dlopen fails.
  const lib = run('sh', ['-c', 'ldconfig -p | awk \'/libnftables\\.so\\.1 .*x86-64/ { print $NF; exit }\'']).trim();
  assert.ok(lib, 'libnftables.so.1 found by ldconfig');
  const script = `
    const { RouterFirewall } = await import(${JSON.stringify(join(ROOT, 'dist/agent/nft.js'))});
    const { silentLogger } = await import(${JSON.stringify(join(ROOT, 'dist/agent/log.js'))});
    const fw = new RouterFirewall('${TABLE}', silentLogger);
    await fw.remove();
    fw.want({ peers: [], uplinks: ['eth0'], clients: ['vm1'] });
    await fw.settled();
    console.log(fw.lastError);`;
  const out = run('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c',
    `mount --bind /dev/null ${lib} && exec ${process.execPath} --input-type=module -e "$0"`, script]);
  assert.match(out, /^nftables: loading table inet nattest failed: cannot load libnftables\.so\.1 .*install the libnftables1 package/);
});

test.run();
