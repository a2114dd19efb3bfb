// Restart semantics: a second process (an agent restart) reuses the pinned
// maps, adopts the programs already attached instead of stacking copies,
// replaces what is not exactly ours, and detach leaves nothing behind.
// Also: auto/native/skb modes, and the load + attach figures.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { Forwarder, type AttachResult, type XdpProgram, type XdpModeSetting } from '../../agent/bpf/forwarder.js';
import { silentLogger } from '../../agent/log.js';
import { Sandbox, ROOT, ipJson, ownNetns, run } from '../lib/sandbox.js';
import { ethFrame } from '../lib/frames.js';
import * as bpf from '../../agent/bpf/libbpf.js';

await ownNetns(import.meta.url);

// No IPv6 chatter (DAD, router solicitations, MLD) between the veths: the
// programs are attached for real, and such frames would land in the counters.
for (const k of ['all', 'default']) run('sysctl', ['-qw', `net.ipv6.conf.${k}.disable_ipv6=1`]);
const sb = new Sandbox();
const pinDir = sb.bpffs();
const bpfDir = join(ROOT, 'build', 'bpf');
const nicPair = sb.veth(null, null);
const rlPair = sb.veth(null, null);
const ifindex = (name: string): number => ipJson(null, 'link', 'show', name)[0].ifindex as number;
const NIC = { ifindex: ifindex(nicPair.a), name: nicPair.a };
const RL = { ifindex: ifindex(rlPair.a), name: rlPair.a };
const LO = { ifindex: 1, name: 'lo' };
const figures: Record<string, number> = {};

let fw: Forwarder;

/** XDP state of a link per `ip -j link` (mode: 0 none, 1 drv, 2 skb) and per `bpftool net`. */
function xdpOf(name: string): { mode: number; ids: number[] } {
  const l = ipJson(null, 'link', 'show', 'dev', name)[0];
  const net = JSON.parse(run('bpftool', ['-j', 'net', 'show', 'dev', name]))[0] as { xdp: { id: number }[] };
  return { mode: l.xdp?.mode ?? 0, ids: net.xdp.map((x) => x.id) };
}

function pinnedMapId(name: string): number {
  return JSON.parse(run('bpftool', ['-j', 'map', 'show', 'pinned', join(pinDir, name)])).id as number;
}

interface ChildOp { attach?: { link: { ifindex: number; name: string }; program: XdpProgram; mode: XdpModeSetting }; testRun?: XdpProgram }
interface ChildOut {
  openMs: number; attachMs: number[]; mapIds: Record<string, number>; loaded: Record<XdpProgram, { id: number; tag: string }>;
  routerIface: number | null; egress: number[]; results: AttachResult[];
}

/** A second agent process: opens a Forwarder on the same pins and runs `ops`. */
function child(ops: ChildOp[]): ChildOut {
  const script = `
    const [fwPath, logPath, bpfDir, pinDir, opsJson] = process.argv.slice(1);
    const { Forwarder } = await import(fwPath);
    const { silentLogger } = await import(logPath);
    let t = performance.now();
    const fw = Forwarder.open({ bpfDir, pinDir, log: silentLogger });
    const openMs = performance.now() - t;
    const results = [], attachMs = [];
    for (const op of JSON.parse(opsJson)) {
      if (op.attach) { t = performance.now(); results.push(fw.attach(op.attach.link, op.attach.program, op.attach.mode)); attachMs.push(performance.now() - t); }
      if (op.testRun) fw.testRun(op.testRun, Buffer.alloc(64));
    }
    console.log(JSON.stringify({ openMs, attachMs, mapIds: fw.mapIds(), loaded: fw.loaded(), routerIface: fw.routerIface(), egress: fw.egress(), results }));
    fw.close();`;
  const out = run(process.execPath, [
    '--input-type=module', '-e', script,
    join(ROOT, 'dist', 'agent', 'bpf', 'forwarder.js'), join(ROOT, 'dist', 'agent', 'log.js'), bpfDir, pinDir, JSON.stringify(ops),
  ]);
  return JSON.parse(out) as ChildOut;
}

test.after(() => {
  for (const l of [NIC, RL, LO]) {
    try { fw?.detach(l); } catch { /* gone */ }
  }
  fw?.close();
  Forwarder.removePins(pinDir);
  sb.cleanup();
});

test('first agent: load (no pins yet) and attach', () => {
  let t = performance.now();
  fw = Forwarder.open({ bpfDir, pinDir, log: silentLogger });
  figures.open_cold_ms = performance.now() - t;
  t = performance.now();
  const a = fw.attach(NIC, 'physical', 'skb');
  figures.attach_ms = performance.now() - t;
  const b = fw.attach(RL, 'router', 'skb');
  assert.equal(a, { program: 'physical', mode: 'skb', id: fw.loaded().physical.id, adopted: false });
  assert.equal(b, { program: 'router', mode: 'skb', id: fw.loaded().router.id, adopted: false });
  fw.setRouterIface(RL.ifindex);
  fw.allowEgress(NIC.ifindex);
  const ids = fw.mapIds();
  assert.is(pinnedMapId('router_iface'), ids.routerIface);
  assert.is(pinnedMapId('router_egress'), ids.egress);
  assert.is(pinnedMapId('xdp_stats'), ids.stats);
});

test('libbpf 1.1.2 on its own refuses the pinned DEVMAP (why Forwarder reuses pins explicitly)', () => {
  const obj = bpf.objectOpenFile(join(bpfDir, 'router.o'), { pinRootPath: pinDir });
  try {
    bpf.objectLoad(obj, 'router.o');
    assert.unreachable('libbpf reused the pinned DEVMAP by itself: this libbpf has the fix (>= 1.7?)');
  } catch (e) {
    assert.instance(e, bpf.BpfError);
    assert.is((e as bpf.BpfError).code, 'EINVAL');
  } finally {
    bpf.objectClose(obj);
  }
});

test('second process: same pinned maps, shared contents, adopts without stacking', () => {
  const before = fw.counters();
  const c = child([
    { attach: { link: NIC, program: 'physical', mode: 'skb' } },
    { attach: { link: RL, program: 'router', mode: 'skb' } },
    { testRun: 'router' },
  ]);
  figures.open_warm_ms = c.openMs;
  figures.adopt_ms = c.attachMs[0]!;
  assert.equal(c.mapIds, fw.mapIds(), 'the same map ids');
  assert.is(c.routerIface, RL.ifindex, 'router_iface written by the first process is visible');
  assert.equal(c.egress, [NIC.ifindex]);
  assert.is.not(c.loaded.physical.id, fw.loaded().physical.id, 'the child loaded its own copy...');
  assert.is(c.loaded.physical.tag, fw.loaded().physical.tag, '...with the same tag');
  assert.equal(c.results, [
    { program: 'physical', mode: 'skb', id: fw.loaded().physical.id, adopted: true },
    { program: 'router', mode: 'skb', id: fw.loaded().router.id, adopted: true },
  ]);
  assert.equal(xdpOf(NIC.name), { mode: 2, ids: [fw.loaded().physical.id] }, 'one program on the NIC, the original');
  assert.equal(xdpOf(RL.name), { mode: 2, ids: [fw.loaded().router.id] });
  assert.is(fw.counters().router_drop_untagged - before.router_drop_untagged!, 1n, 'the child counted into the shared xdp_stats');
});

test('a different program on the link is replaced atomically; ours comes back the same way', () => {
  const r = fw.attach(NIC, 'router', 'skb');
  assert.equal(r, { program: 'router', mode: 'skb', id: fw.loaded().router.id, adopted: false });
  assert.equal(xdpOf(NIC.name).ids, [fw.loaded().router.id]);
  assert.is(fw.attach(NIC, 'physical', 'skb').adopted, false);
  assert.equal(xdpOf(NIC.name).ids, [fw.loaded().physical.id]);
});

test('switching modes: native replaces skb (never both), auto adopts what is there', () => {
  const t = performance.now();
  const n = fw.attach(NIC, 'physical', 'native');
  figures.switch_to_native_ms = performance.now() - t;
  assert.equal(n, { program: 'physical', mode: 'native', id: fw.loaded().physical.id, adopted: false });
  assert.equal(xdpOf(NIC.name), { mode: 1, ids: [fw.loaded().physical.id] }, 'veth has native XDP; only one program');
  assert.equal(fw.query(NIC.ifindex), { id: n.id, mode: 'native', name: 'physical', tag: fw.loaded().physical.tag, program: 'physical' });
  assert.is(fw.attach(NIC, 'physical', 'auto').adopted, true);
  assert.is(fw.attach(NIC, 'physical', 'native').adopted, true);
  const s = fw.attach(NIC, 'physical', 'skb');
  assert.equal([s.mode, s.adopted], ['skb', false]);
  assert.equal(xdpOf(NIC.name), { mode: 2, ids: [fw.loaded().physical.id] });
  assert.equal([fw.attach(NIC, 'physical', 'auto').mode, fw.attach(NIC, 'physical', 'auto').adopted], ['skb', true]);
});

test('auto falls back to skb where the driver has no native XDP (lo); native there is a clear error', () => {
  const r = fw.attach(LO, 'physical', 'auto');
  assert.equal([r.mode, r.adopted], ['skb', false]);
  try {
    fw.detach(LO);
    fw.attach(LO, 'physical', 'native');
    assert.unreachable('native XDP on lo');
  } catch (e) {
    const err = e as { call?: string; code?: string; hint?: string; message: string };
    assert.is(err.call, 'bpf_xdp_attach');
    assert.is(err.code, 'EOPNOTSUPP');
    assert.match(err.message, /lo \(ifindex 1\)/);
    assert.match(err.hint ?? '', /use xdpMode skb or auto/);
  }
  assert.is(fw.detach(LO), false, 'nothing attached after the failed native attach');
});

test('a program of ours bound to other (removed) pins is replaced, not adopted', () => {
  const oldId = fw.loaded().physical.id;
  const oldMaps = fw.mapIds();
  Forwarder.removePins(pinDir);
  const fresh = Forwarder.open({ bpfDir, pinDir, log: silentLogger });
  try {
    assert.is.not(fresh.mapIds().routerIface, oldMaps.routerIface, 'new pins, new maps');
    const r = fresh.attach(NIC, 'physical', 'skb');
    assert.is(r.adopted, false);
    assert.is.not(r.id, oldId);
    assert.equal(xdpOf(NIC.name).ids, [fresh.loaded().physical.id]);
  } finally {
    fresh.close();
  }
});

test('detach removes everything, any mode; a second detach finds nothing', () => {
  assert.is(fw.detach(NIC), true);
  assert.is(fw.detach(RL), true);
  assert.equal(xdpOf(NIC.name), { mode: 0, ids: [] });
  assert.equal(xdpOf(RL.name), { mode: 0, ids: [] });
  assert.is(fw.detach(NIC), false);
  assert.is(fw.query(NIC.ifindex), null);
  // The first Forwarder's programs still run (its fds hold them) with its own, now unpinned, maps.
  assert.is(fw.routerIface(), RL.ifindex);
  assert.is(fw.testRun('physical', ethFrame(), { ingressIfindex: NIC.ifindex }).verdict, 'redirect');
});

test('figures', () => {
  console.log(`load/attach ms: ${JSON.stringify(Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, Math.round(v * 100) / 100])))}`);
});

test.run();
