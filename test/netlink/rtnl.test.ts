// Rtnl against the real kernel, in a namespace of this file's own: what it
// dumps is what `ip` sees, what it changes `ip` sees changed, and the kernel's
// refusals come back as NetlinkError with errno name, ext-ack and request.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandbox, ownNetns, ip, ipJson, run, uniq } from '../lib/sandbox.js';
import { NetlinkError, Rtnl, type LinkMsg } from '../../agent/netlink/rtnl.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();
const rtnl = Rtnl.open();

interface IpLink {
  ifindex: number; ifname: string; address?: string; mtu: number; operstate: string; flags: string[];
  master?: string; linkinfo?: { info_kind?: string }; promiscuity?: number;
}
interface IpAddrInfo { family: string; local: string; address?: string; prefixlen: number; label?: string }
interface IpRoute { dst: string; dev?: string; gateway?: string; protocol?: string; scope?: string; metric?: number; table?: string }

const ifindex = (name: string): number => ipJson<IpLink[]>(null, 'link', 'show', 'dev', name)[0]!.ifindex;
const addrs = (dev: string): string[] =>
  (ipJson<Array<{ addr_info: IpAddrInfo[] }>>(null, 'addr', 'show', 'dev', dev)[0]?.addr_info ?? [])
    .filter((a) => a.family === 'inet' || !a.local.startsWith('fe80:'))
    .map((a) => `${a.local}${a.address ? ` peer ${a.address}` : ''}/${a.prefixlen}`)
    .sort();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejects(p: Promise<unknown>): Promise<NetlinkError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, NetlinkError);
    return e as NetlinkError;
  }
  assert.unreachable('expected the request to be refused');
  throw new Error('unreachable');
}

// Links for the whole file: a bridge with a veth enslaved, a second pair down.
const br = uniq('br');
ip(null, 'link', 'add', br, 'type', 'bridge');
sb.rootLinks.push(br);
const v = sb.veth(null, null, { macA: '02:01:00:00:00:0a' });
const w = sb.veth(null, null, { macA: '0A:B3:EC:40:00:02', up: false });
ip(null, 'link', 'set', v.b, 'master', br);
ip(null, 'link', 'set', v.a, 'promisc', 'on', 'mtu', '1400');

test('dumpLinks matches ip -d link, field by field', async () => {
  const mine = await rtnl.dumpLinks();
  const theirs = ipJson<IpLink[]>(null, '-d', 'link', 'show');
  assert.is(mine.length, theirs.length);
  const byIndex = new Map(mine.map((l) => [l.ifindex, l]));
  const nameToIndex = new Map(theirs.map((l) => [l.ifname, l.ifindex]));
  for (const t of theirs) {
    const m = byIndex.get(t.ifindex);
    assert.ok(m, `link ${t.ifname} dumped`);
    assert.is(m!.name, t.ifname);
    assert.is(m!.mac, t.address ?? '');
    assert.is(m!.mtu, t.mtu);
    assert.is(m!.operstate, t.operstate);
    assert.is(m!.up, t.flags.includes('UP'), `${t.ifname} up`);
    assert.is(m!.promisc, t.flags.includes('PROMISC'), `${t.ifname} promisc`);
    assert.is(m!.running, t.flags.includes('LOWER_UP') && m!.up, `${t.ifname} running`);
    assert.is(m!.kind, t.linkinfo?.info_kind ?? null, `${t.ifname} kind`);
    assert.is(m!.master, t.master ? nameToIndex.get(t.master)! : null, `${t.ifname} master`);
    assert.is(m!.xdp.attached, 'none');
  }
  const wa = mine.find((l) => l.name === w.a)!;
  assert.is(wa.mac, '0a:b3:ec:40:00:02', 'MAC in lowercase');
  assert.is(wa.up, false);
});

test('getLink returns the link, or null when there is no such ifindex', async () => {
  const idx = ifindex(v.a);
  const l = (await rtnl.getLink(idx)) as LinkMsg;
  assert.is(l.name, v.a);
  assert.is(l.mtu, 1400);
  assert.is(l.promisc, true);
  assert.is(await rtnl.getLink(0x7ffffff0), null);
});

test('addresses: add, add again (EEXIST with ext-ack), replace, peer, dump, delete', async () => {
  const idx = ifindex(v.a);
  await rtnl.addAddress(idx, '100.64.0.2/31');
  assert.equal(addrs(v.a), ['100.64.0.2/31']);
  const e = await rejects(rtnl.addAddress(idx, '100.64.0.2/31'));
  assert.is(e.code, 'EEXIST');
  assert.is(e.errno, 17);
  assert.is(e.request, `RTM_NEWADDR 100.64.0.2/31 dev ${idx}`);
  assert.match(e.message, /^RTM_NEWADDR 100\.64\.0\.2\/31 dev \d+: EEXIST/);
  if (e.extack !== null) assert.match(e.message, e.extack); // the kernel's own words, when it has some
  console.log(`  EEXIST message: ${e.message}`);
  await rtnl.addAddress(idx, '100.64.0.2/31', { replace: true });
  assert.equal(addrs(v.a), ['100.64.0.2/31']);
  await rtnl.addAddress(idx, '169.254.0.1/32', { peer: '100.64.7.8' });
  await rtnl.addAddress(idx, '2001:db8::2/64');
  assert.equal(addrs(v.a), ['100.64.0.2/31', '169.254.0.1 peer 100.64.7.8/32', '2001:db8::2/64']);

  const dumped = (await rtnl.dumpAddresses()).filter((a) => a.ifindex === idx && !a.address.startsWith('fe80:'));
  const shown = dumped.map((a) => `${a.local ?? a.address}${a.local && a.local !== a.address ? ` peer ${a.address}` : ''}/${a.prefixlen}`).sort();
  assert.equal(shown, addrs(v.a));
  assert.ok(dumped.every((a) => a.family === 4 ? a.label === v.a : a.label === null));
  assert.ok((await rtnl.dumpAddresses(6)).every((a) => a.family === 6));
  assert.ok((await rtnl.dumpAddresses(4)).some((a) => a.address === '100.64.0.2' && a.prefixlen === 31));

  await rtnl.deleteAddress(idx, '100.64.0.2/31');
  await rtnl.deleteAddress(idx, '169.254.0.1/32');
  await rtnl.deleteAddress(idx, '2001:db8::2/64');
  assert.equal(addrs(v.a), []);
  const gone = await rejects(rtnl.deleteAddress(idx, '100.64.0.2/31'));
  assert.is(gone.code, 'EADDRNOTAVAIL');
});

test('an address carries the protocol tag it was added with (IFA_PROTO)', async () => {
  const idx = ifindex(v.a);
  await rtnl.addAddress(idx, '100.64.0.4/31', { proto: 99 });
  ip(null, 'addr', 'add', '100.64.0.6/31', 'dev', v.a);
  const mine = (await rtnl.dumpAddresses(4)).filter((a) => a.ifindex === idx);
  assert.is(mine.find((a) => a.local === '100.64.0.4')?.proto, 99);
  const other = mine.find((a) => a.local === '100.64.0.6')!;
  assert.ok(other.proto === null || other.proto === 0, 'no tag on an address ip(8) added');
  const bad = await rejects(rtnl.addAddress(idx, '100.64.0.8/31', { proto: 300 }));
  assert.is(bad.code, 'EINVAL');
  await rtnl.deleteAddress(idx, '100.64.0.4/31');
  await rtnl.deleteAddress(idx, '100.64.0.6/31');
});

test('XDP programs attached with ip are reported with their mode and id', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'netagent-xdp-'));
  try {
    writeFileSync(join(dir, 'pass.c'), [
      '#include <linux/bpf.h>',
      '__attribute__((section("xdp"), used)) int pass(struct xdp_md *ctx) { return XDP_PASS; }',
      'char _license[] __attribute__((section("license"), used)) = "GPL";',
    ].join('\n'));
    run('clang', ['-O2', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', join(dir, 'pass.c'), '-o', join(dir, 'pass.o')]);
    const idx = ifindex(v.a);
    const progId = () => ipJson<Array<{ xdp?: { prog?: { id: number } } }>>(null, 'link', 'show', 'dev', v.a)[0]!.xdp!.prog!.id;
    for (const [flag, mode] of [['xdpgeneric', 'skb'], ['xdpdrv', 'native']] as const) {
      ip(null, 'link', 'set', 'dev', v.a, flag, 'obj', join(dir, 'pass.o'), 'sec', 'xdp');
      const id = progId();
      const l = (await rtnl.getLink(idx))!;
      assert.is(l.xdp.attached, mode);
      assert.is(l.xdp.progId, id);
      assert.is(mode === 'skb' ? l.xdp.skbProgId : l.xdp.drvProgId, id);
      const d = (await rtnl.dumpLinks()).find((x) => x.ifindex === idx)!;
      assert.equal(d.xdp, l.xdp);
      ip(null, 'link', 'set', 'dev', v.a, flag, 'off');
    }
    assert.equal((await rtnl.getLink(idx))!.xdp, { attached: 'none', progId: 0, skbProgId: 0, drvProgId: 0, hwProgId: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a nonexistent ifindex gives ENODEV with a readable message', async () => {
  const e = await rejects(rtnl.addAddress(999_999, '100.64.0.9/31'));
  assert.is(e.code, 'ENODEV');
  assert.match(e.message, 'RTM_NEWADDR 100.64.0.9/31 dev 999999: ENODEV (no such device)');
  const s = await rejects(rtnl.setLink(999_999, { up: true }));
  assert.is(s.code, 'ENODEV');
  assert.match(s.message, 'RTM_SETLINK dev 999999 up: ENODEV');
  // Bad input never reaches the kernel and is refused the same way.
  const neg = await rejects(rtnl.setLink(-5.5, { up: true }));
  assert.is(neg.code, 'EINVAL');
  assert.match(neg.message, 'RTM_SETLINK dev -5.5 up: EINVAL (ifindex -5.5 is not a positive 32-bit integer)');
  const huge = await rejects(rtnl.setLink(1, { mtu: 2 ** 40 }));
  assert.is(huge.code, 'EINVAL');
  const bad = await rejects(rtnl.addAddress(1, '100.64.0.300/31'));
  assert.is(bad.code, 'EINVAL');
  assert.match(bad.message, /not an IPv4 or IPv6 address/);
});

test('routes: on-link, via gateway, other table, replace, IPv6, dump, delete', async () => {
  const idx = ifindex(v.a);
  await rtnl.addAddress(idx, '10.0.0.1/24');
  await rtnl.addRoute({ dst: '100.64.1.2/32', oif: idx });
  await rtnl.addRoute({ dst: '10.2.0.0/16', oif: idx, gateway: '10.0.0.254', priority: 50 });
  await rtnl.addRoute({ dst: '0.0.0.0/0', oif: idx, gateway: '10.0.0.254', table: 100, protocol: 99 });
  await rtnl.addRoute({ dst: '2001:db8:1::/64', oif: idx });

  const main = ipJson<IpRoute[]>(null, 'route', 'show', 'dev', v.a);
  const host = main.find((r) => r.dst === '100.64.1.2')!;
  assert.ok(host, 'host route present');
  assert.is(host.scope, 'link');
  assert.is(host.protocol, 'static');
  const via = main.find((r) => r.dst === '10.2.0.0/16')!;
  assert.is(via.gateway, '10.0.0.254');
  assert.is(via.metric, 50);
  const t100 = ipJson<IpRoute[]>(null, 'route', 'show', 'table', '100');
  assert.equal(t100.map((r) => [r.dst, r.gateway, r.dev]), [['default', '10.0.0.254', v.a]]);
  assert.ok(ipJson<IpRoute[]>(null, '-6', 'route', 'show', 'dev', v.a).some((r) => r.dst === '2001:db8:1::/64'));

  const e = await rejects(rtnl.addRoute({ dst: '100.64.1.2/32', oif: idx }));
  assert.is(e.code, 'EEXIST');
  assert.match(e.request, `RTM_NEWROUTE 100.64.1.2/32 dev ${idx}`);
  await rtnl.addRoute({ dst: '100.64.1.2/32', oif: idx, priority: 0 }, { replace: true });

  const dumped = await rtnl.dumpRoutes(4);
  const d = dumped.find((r) => r.dst === '10.2.0.0' && r.dstLen === 16)!;
  assert.equal(
    { oif: d.oif, gateway: d.gateway, table: d.table, protocol: d.protocol, priority: d.priority, family: d.family },
    { oif: idx, gateway: '10.0.0.254', table: 254, protocol: 4, priority: 50, family: 4 },
  );
  const def = dumped.find((r) => r.table === 100)!;
  assert.equal([def.dst, def.dstLen, def.protocol], ['0.0.0.0', 0, 99]);
  assert.ok(dumped.every((r) => r.family === 4));
  assert.ok((await rtnl.dumpRoutes(6)).some((r) => r.dst === '2001:db8:1::' && r.dstLen === 64 && r.oif === idx));

  await rtnl.deleteRoute({ dst: '100.64.1.2/32', oif: idx });
  await rtnl.deleteRoute({ dst: '10.2.0.0/16', oif: idx, gateway: '10.0.0.254' });
  await rtnl.deleteRoute({ dst: '0.0.0.0/0', oif: idx, table: 100 });
  await rtnl.deleteRoute({ dst: '2001:db8:1::/64', oif: idx });
  const left = ipJson<IpRoute[]>(null, 'route', 'show', 'dev', v.a).map((r) => r.dst);
  assert.equal(left, ['10.0.0.0/24']);
  assert.equal(ipJson<IpRoute[]>(null, 'route', 'show', 'table', '100'), []);
  const gone = await rejects(rtnl.deleteRoute({ dst: '100.64.1.2/32', oif: idx }));
  assert.is(gone.code, 'ESRCH');
  await rtnl.deleteAddress(idx, '10.0.0.1/24');
});

test('setLink: up, promisc, mtu; a bad mtu is refused with the kernel\'s reason', async () => {
  const idx = ifindex(w.a);
  await rtnl.setLink(idx, { up: true, promisc: true, mtu: 9000 });
  let l = ipJson<IpLink[]>(null, 'link', 'show', 'dev', w.a)[0]!;
  assert.ok(l.flags.includes('UP'));
  assert.ok(l.flags.includes('PROMISC'));
  assert.is(l.mtu, 9000);
  await rtnl.setLink(idx, { promisc: false });
  l = ipJson<IpLink[]>(null, 'link', 'show', 'dev', w.a)[0]!;
  assert.ok(l.flags.includes('UP'), 'up untouched by a promisc change');
  assert.not.ok(l.flags.includes('PROMISC'));
  await rtnl.setLink(idx, { up: false, mtu: 1500 });
  l = ipJson<IpLink[]>(null, 'link', 'show', 'dev', w.a)[0]!;
  assert.not.ok(l.flags.includes('UP'));
  assert.is(l.mtu, 1500);
  const e = await rejects(rtnl.setLink(idx, { mtu: 10 }));
  assert.is(e.code, 'EINVAL');
  assert.ok(e.extack, 'the kernel says why');
  assert.match(e.message, e.extack!);
});

test('500 concurrent requests complete, never more than maxInFlight outstanding', async () => {
  const r = Rtnl.open({ maxInFlight: 16 });
  const idx = ifindex(w.a);
  let maxSeen = 0;
  const ps: Promise<void>[] = [];
  for (let i = 0; i < 500; i++) {
    ps.push(r.addAddress(idx, `10.77.${i >> 8}.${i & 0xff}/32`));
    maxSeen = Math.max(maxSeen, r.stats().inFlight);
  }
  assert.equal([r.stats().inFlight, r.stats().queued], [16, 484]);
  const sampler = setInterval(() => { maxSeen = Math.max(maxSeen, r.stats().inFlight); }, 0);
  await Promise.all(ps);
  clearInterval(sampler);
  assert.is(maxSeen, 16);
  assert.is(addrs(w.a).length, 500);
  // Dumps asked for at once run one after the other (the kernel allows one per socket).
  const dumps = await Promise.all([r.dumpAddresses(4), r.dumpLinks(), r.dumpAddresses(4), r.dumpRoutes(), r.dumpLinks()]);
  assert.is(dumps[0].filter((a) => a.ifindex === idx).length, 500);
  assert.equal(dumps[0], dumps[2]);
  await Promise.all(Array.from({ length: 500 }, (_, i) => r.deleteAddress(idx, `10.77.${i >> 8}.${i & 0xff}/32`)));
  assert.is(addrs(w.a).length, 0);
  r.close();
});

test('the request socket hears only answers, never multicast notifications', async () => {
  const r = Rtnl.open();
  await r.getLink(1);
  const before = r.stats().received;
  const a = uniq('mc');
  ip(null, 'link', 'add', a, 'type', 'veth', 'peer', 'name', `${a}p`);
  ip(null, 'link', 'del', a);
  await sleep(100);
  assert.is(r.stats().received, before);
  r.close();
});

test('a request with no answer in time rejects, naming it; the client keeps working', async () => {
  const r = Rtnl.open({ timeoutMs: 20 });
  const idx = ifindex(v.a);
  // Send from the loop's check phase and then hold the loop: the next turn
  // runs expired timers before it polls the socket, so the answer is late.
  await new Promise((res) => setImmediate(res));
  const p = r.getLink(idx);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  const e = await rejects(p);
  assert.is(e.code, 'ETIMEDOUT');
  assert.match(e.message, `RTM_GETLINK dev ${idx}: ETIMEDOUT (no answer from the kernel within 20 ms)`);
  // The late answer is dropped; the next request gets its own.
  const l = await r.getLink(idx);
  assert.is(l?.name, v.a);
  r.close();
  const closed = await rejects(r.getLink(idx));
  assert.match(closed.message, /closed/);
});

test('a dump that timed out does not make the next one fail with EBUSY', async () => {
  // Enough links for a dump of several datagrams: the kernel runs it as we read.
  const pfx = uniq('to');
  run('ip', ['-batch', '-'], { input: Array.from({ length: 150 }, (_, i) => `link add ${pfx}a${i} type veth peer name ${pfx}b${i}`).join('\n') });
  const r = Rtnl.open({ timeoutMs: 300 });
  try {
    const expected = ipJson<IpLink[]>(null, 'link', 'show').length;
    await new Promise((res) => setImmediate(res));
    const first = r.dumpLinks();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400);
    assert.is((await rejects(first)).code, 'ETIMEDOUT');
    // The kernel is still in the middle of the first dump on this socket.
    const second = await r.dumpLinks().then((l) => l.length, (e: Error) => e.message);
    assert.is(second, expected);
  } finally {
    r.close();
    run('ip', ['-batch', '-'], { input: Array.from({ length: 150 }, (_, i) => `link del ${pfx}a${i}`).join('\n') });
  }
});

test('close() rejects queued and outstanding requests', async () => {
  const r = Rtnl.open({ maxInFlight: 1 });
  const ps = [r.dumpLinks(), r.dumpLinks(), r.getLink(1)].map((p) => p.then(() => 'ok', (e: NetlinkError) => e.code));
  r.close();
  assert.equal(await Promise.all(ps), ['ECANCELED', 'ECANCELED', 'ECANCELED']);
});

test('dumps while links come and go are consistent (interrupted dumps are retried)', async () => {
  // A child process adds and deletes a batch of links in a loop while we dump.
  // Enough links that a dump takes several datagrams, so changes can land in between.
  const many = uniq('st');
  run('ip', ['-batch', '-'], { input: Array.from({ length: 200 }, (_, i) => `link add ${many}a${i} type veth peer name ${many}b${i}`).join('\n') });
  const pfx = uniq('ch');
  const script = `for i in $(seq 1 400); do echo "link add ${pfx}$((i % 40))a type veth peer name ${pfx}$((i % 40))b"; echo "link del ${pfx}$((i % 40))a"; done`;
  const churn = spawn('bash', ['-c', `while :; do ${script} | ip -force -batch - 2>/dev/null; done`], { stdio: 'ignore', detached: true });
  sb.children.add(churn);
  try {
    await sleep(50);
    for (let i = 0; i < 30; i++) {
      const links = await rtnl.dumpLinks();
      const names = links.map((l) => l.name);
      assert.is(new Set(names).size, names.length, 'no link twice');
      assert.ok(names.includes(v.a) && names.includes(w.a) && names.includes('lo'), 'stable links always there');
      assert.is(names.filter((n) => n.startsWith(many)).length, 400, 'every stable link, once');
    }
  } finally {
    try { process.kill(-churn.pid!, 'SIGKILL'); } catch { /* gone */ }
  }
  console.log(`  dump retries under churn: ${rtnl.stats().dumpRetries}`);
  await sleep(100);
  run('bash', ['-c', `for l in $(ip -o link | grep -o '${pfx}[0-9]*a'); do ip link del $l; done; true`]);
  run('ip', ['-batch', '-'], { input: Array.from({ length: 200 }, (_, i) => `link del ${many}a${i}`).join('\n') });
});

test('figures: dump of 1000 links; 1000 sequential addAddress', async () => {
  const pfx = uniq('k');
  const batch = Array.from({ length: 500 }, (_, i) => `link add ${pfx}a${i} type veth peer name ${pfx}b${i}`).join('\n');
  run('ip', ['-batch', '-'], { input: batch });
  const expected = ipJson<IpLink[]>(null, 'link', 'show').length;
  assert.ok(expected >= 1000);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    const links = await rtnl.dumpLinks();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);
    assert.is(links.length, expected);
  }
  const idx = ifindex(w.a);
  const t = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) await rtnl.addAddress(idx, `10.88.${i >> 8}.${i & 0xff}/32`);
  const seq = Number(process.hrtime.bigint() - t) / 1e6;
  assert.is(addrs(w.a).length, 1000);
  console.log(`  FIGURES: dumpLinks of ${expected} links: ${best.toFixed(1)} ms (best of 5); 1000 sequential addAddress: ${seq.toFixed(0)} ms`);
  run('ip', ['-batch', '-'], { input: Array.from({ length: 500 }, (_, i) => `link del ${pfx}a${i}`).join('\n') });
});

test.after(() => rtnl.close());
test.run();
