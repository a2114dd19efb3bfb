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

interface NftJson { nftables: Array<{ table?: { name: string; handle: number }; set?: { name: string; elem?: string[] }; chain?: { name: string; policy?: string } }> }
const list = (): NftJson => JSON.parse(run('nft', ['-j', 'list', 'table', 'inet', TABLE]));
const members = (set: string): string[] => [...(list().nftables.find((o) => o.set?.name === set)?.set?.elem ?? [])].sort();
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
  assert.ok(lines.some((l) => l.msg === 'nftables set update refused; reloading the whole table'));
  assert.equal(updates().map((u) => u.incremental), [false]);
});

test('programs the agent starts do not inherit the netlink socket of libnftables', () => {
  const fds = run('sh', ['-c', 'for f in /proc/$$/fd/*; do echo "${f##*/} $(readlink "$f")"; done']).trim().split('\n');
  assert.equal(fds.filter((l) => /^\d+ socket:/.test(l) && Number(l.split(' ')[0]) > 2), []);
});

test('remove(): our table gone, forwarding off; removing again is not an error', async () => {
  await fw.remove();
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
