// Real frames through real XDP (generic/skb mode) on veths: this process is
// the "net VM" (a namespace of its own); two "LAN" namespaces hang off two
// physical veths, and a "router" namespace off the router link
// (MAC 02:01:00:00:00:01). Frames are sent and captured with AF_PACKET
// (test/lib/pkt.py; captures last 1.5 s: the sender is a python process
// that starts late on a loaded machine); all test frames use ethertype 0x88b5 and captures
// filter on it, and IPv6 is off everywhere, so link-up chatter cannot count.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { Forwarder, COUNTER_NAMES, type LinkCounters } from '../../agent/bpf/forwarder.js';
import { chooseVid } from '../../agent/core/vid.js';
import { silentLogger } from '../../agent/log.js';
import { Sandbox, ROOT, ipJson, inNs, ownNetns, run } from '../lib/sandbox.js';
import { ethFrame, withTag, hex, prng, randomBytes, ETH_P_8021AD, ETH_P_TEST } from '../lib/frames.js';

const NETVM = await ownNetns(import.meta.url);

const PKT = join(ROOT, 'test', 'lib', 'pkt.py');
const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const sb = new Sandbox();
const pinDir = sb.bpffs();

const noIpv6 = ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
run(noIpv6[0]!, noIpv6.slice(1));
const lan1 = sb.netns('lan'), lan2 = sb.netns('lan'), lan3 = sb.netns('lan'), rtr = sb.netns('rtr');
for (const ns of [lan1, lan2, lan3, rtr]) run('nsenter', inNs(ns, noIpv6).slice(1));

const p1 = sb.veth(null, lan1, { macB: '02:aa:00:00:00:01' });
const p2 = sb.veth(null, lan2, { macB: '02:aa:00:00:00:02' });
// A NIC whose ifindex does not fit a VLAN ID (a long-lived VM after ~4000 hotplugs).
const p3 = sb.veth(null, lan3, { indexA: 5000, macB: '02:aa:00:00:00:03' });
const rl = sb.veth(null, rtr, { macA: '02:01:00:00:00:01', macB: '02:bb:00:00:00:01' });
const ifindex = (name: string): number => ipJson(null, 'link', 'show', name)[0].ifindex as number;
const P1 = ifindex(p1.a), P2 = ifindex(p2.a), P3 = ifindex(p3.a), RL = ifindex(rl.a);

const fw = Forwarder.open({ bpfDir: join(ROOT, 'build', 'bpf'), pinDir, log: silentLogger });

interface Tap { ns: string; ifname: string }
const LAN3: Tap = { ns: lan3, ifname: p3.b };
const LAN1: Tap = { ns: lan1, ifname: p1.b }, LAN2: Tap = { ns: lan2, ifname: p2.b }, ROUTER: Tap = { ns: rtr, ifname: rl.b };

/** Starts captures on every tap, sends `frames` from `from`, returns what each tap saw (0x88b5 frames only). */
async function exchange(from: Tap, frames: Buffer[], taps: Tap[], ms = 1500): Promise<string[][]> {
  const procs = taps.map((t) => {
    const child = sb.spawn(inNs(t.ns, [PY, PKT, 'capture', t.ifname, String(ms), `0x${ETH_P_TEST.toString(16)}`]));
    let out = '';
    let err = '';
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n')) resolve();
      });
      child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      child.once('exit', (code) => reject(new Error(`capture on ${t.ifname} exited ${code}: ${err}`)));
    });
    const done = new Promise<string[]>((resolve, reject) => {
      child.once('exit', (code) => (code === 0 ? resolve(out.split('\n').slice(1).filter(Boolean)) : reject(new Error(`capture on ${t.ifname} exited ${code}: ${err}`))));
    });
    return { ready, done };
  });
  await Promise.all(procs.map((p) => p.ready));
  run('nsenter', inNs(from.ns, [PY, PKT, 'send', from.ifname, ...frames.map(hex)]).slice(1));
  return Promise.all(procs.map((p) => p.done));
}

function delta(before: Record<string, bigint>): Record<string, number> {
  const after = fw.counters();
  const out: Record<string, number> = {};
  for (const k of COUNTER_NAMES) if (after[k] !== before[k]) out[k] = Number(after[k]! - before[k]!);
  return out;
}

test.after(() => {
  for (const l of [{ ifindex: P1, name: p1.a }, { ifindex: P2, name: p2.a }, { ifindex: P3, name: p3.a }, { ifindex: RL, name: rl.a }]) {
    try { fw.detach(l); } catch { /* link already gone */ }
  }
  fw.close();
  Forwarder.removePins(pinDir);
  sb.cleanup();
});

test('setup: physical on both NICs, router on the router link (skb mode), maps filled', () => {
  assert.is(fw.attach({ ifindex: P1, name: p1.a }, 'physical', 'skb').mode, 'skb');
  assert.is(fw.attach({ ifindex: P2, name: p2.a }, 'physical', 'skb').mode, 'skb');
  assert.is(fw.attach({ ifindex: RL, name: rl.a }, 'router', 'skb').mode, 'skb');
  fw.setRouterIface(RL);
  fw.allowEgress(P1);
  fw.allowEgress(P2);
  assert.equal(fw.egress(), [P1, P2].sort((a, b) => a - b));
  const links = ipJson(null, 'link', 'show');
  for (const [name, prog] of [[p1.a, 'physical'], [p2.a, 'physical'], [rl.a, 'router']] as const) {
    const l = links.find((x: { ifname: string }) => x.ifname === name);
    assert.is(l?.xdp?.mode, 2, `${name}: generic XDP (XDP_ATTACHED_SKB) per ip -j link`);
    assert.is(fw.query(l.ifindex)?.program, prog);
  }
  assert.ok(NETVM.length > 0);
});

test('frames from each LAN reach the router tagged with that NIC\'s ifindex, otherwise byte-identical', async () => {
  const rand = prng(7);
  for (const [lan, vid, other] of [[LAN1, P1, LAN2], [LAN2, P2, LAN1]] as const) {
    const frames = [60, 61, 200, 1514].map((len) =>
      ethFrame({ dst: '02:01:00:00:00:01', src: lan === LAN1 ? '02:aa:00:00:00:01' : '02:aa:00:00:00:02', payload: randomBytes(rand, len - 14) }));
    const before = fw.counters();
    const [atRouter, atOther] = await exchange(lan, frames, [ROUTER, other]);
    assert.equal(atRouter, frames.map((f) => hex(withTag(f, vid))), `router sees VID ${vid}`);
    assert.equal(atOther, [], 'nothing leaks to the other LAN');
    assert.equal(delta(before), { physical_forwarded: frames.length });
  }
});

test('tagged frames from the router arrive untagged on exactly the LAN their VID names', async () => {
  const rand = prng(8);
  for (const [vid, target, other] of [[P1, LAN1, LAN2], [P2, LAN2, LAN1]] as const) {
    const inner = [60, 500, 1514].map((len) => ethFrame({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:bb:00:00:00:01', payload: randomBytes(rand, len - 14) }));
    const frames = inner.map((f, i) => withTag(f, vid, i === 1 ? ETH_P_8021AD : undefined));
    const before = fw.counters();
    const [atTarget, atOther, atRouter] = await exchange(ROUTER, frames, [target, other, ROUTER]);
    assert.equal(atTarget, inner.map(hex), `LAN for VID ${vid} gets the untagged frames`);
    assert.equal(atOther, [], 'the other LAN gets nothing');
    assert.equal(atRouter, [], 'nothing comes back to the router');
    assert.equal(delta(before), { router_forwarded: frames.length });
  }
});

test('frames for an unknown VID, the router link itself, with PCP set, or untagged arrive nowhere', async () => {
  const f = ethFrame({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:bb:00:00:00:01', payload: 46 });
  const frames = [withTag(f, 4000), withTag(f, RL), withTag(f, 0x2000 | P1), f];
  const before = fw.counters();
  const seen = await exchange(ROUTER, frames, [LAN1, LAN2, ROUTER]);
  assert.equal(seen, [[], [], []]);
  // The router link's ifindex is no VID of a NIC: unknown like any other.
  assert.equal(delta(before), { router_drop_vid_unknown: 2, router_drop_pcp_dei: 1, router_drop_untagged: 1 });
});

test('a NIC removed from the allowlist gets nothing; with router_iface cleared LAN frames go nowhere', async () => {
  fw.disallowEgress(P2);
  const f = ethFrame({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:bb:00:00:00:01', payload: 46 });
  let seen = await exchange(ROUTER, [withTag(f, P2)], [LAN1, LAN2]);
  assert.equal(seen, [[], []]);
  fw.allowEgress(P2);

  fw.setRouterIface(null);
  const before = fw.counters();
  seen = await exchange(LAN1, [ethFrame({ payload: 46 })], [ROUTER, LAN2]);
  assert.equal(seen, [[], []]);
  assert.equal(delta(before), { physical_drop_no_router: 1 });
  fw.setRouterIface(RL);
});

/** A link's counters as plain numbers (drops: only those > 0). */
function plain(c: LinkCounters | undefined): Record<string, unknown> {
  if (!c) return {};
  const drops = Object.fromEntries(Object.entries(c.drops).filter(([, v]) => v > 0n).map(([k, v]) => [k, Number(v)]));
  return { rx: [Number(c.rxPackets), Number(c.rxBytes)], tx: [Number(c.txPackets), Number(c.txBytes)], drops };
}
const sum = (fs: Buffer[]): number => fs.reduce((a, f) => a + f.length, 0);

test('a NIC at ifindex 5000 gets a free VID; frames cross both ways with that tag; its counters match what was sent', async () => {
  assert.is(P3, 5000);
  assert.is(fw.attach({ ifindex: P3, name: p3.a }, 'physical', 'skb').mode, 'skb');
  const choice = chooseVid({ ifindex: P3, name: p3.a, mac: null }, fw.nicVids());
  assert.equal(choice, { vid: 4094, why: 'free' }, 'the highest free VID: not the preferred uplink by accident');
  fw.setNicVid(P3, 4094);
  assert.equal(plain(fw.nicCounters().get(P3)), { rx: [0, 0], tx: [0, 0], drops: {} }, 'a new VID starts at zero');

  const rand = prng(9);
  const up = [60, 333, 1514].map((len) => ethFrame({ dst: '02:01:00:00:00:01', src: '02:aa:00:00:00:03', payload: randomBytes(rand, len - 14) }));
  const rlBefore = fw.nicCounters().get(RL)!;
  let [atRouter, atOther] = await exchange(LAN3, up, [ROUTER, LAN1]);
  assert.equal(atRouter, up.map((f) => hex(withTag(f, 4094))), 'the router sees VID 4094');
  assert.equal(atOther, []);

  const down = [60, 1514].map((len) => ethFrame({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:bb:00:00:00:01', payload: randomBytes(rand, len - 14) }));
  [atOther, atRouter] = await exchange(ROUTER, down.map((f) => withTag(f, 4094)), [LAN3, LAN1]);
  assert.equal(atOther, down.map(hex), 'VID 4094 reaches the NIC at 5000, untagged');
  assert.equal(atRouter, [], 'and nothing else');

  assert.equal(plain(fw.nicCounters().get(P3)), { rx: [up.length, sum(up)], tx: [down.length, sum(down)], drops: {} });
  const rl = fw.nicCounters().get(RL)!;
  assert.is(rl.role, 'router');
  assert.is(Number(rl.txPackets - rlBefore.txPackets), up.length, 'router link tx: the frames physical sent it');
  assert.is(Number(rl.txBytes - rlBefore.txBytes), sum(up) + 4 * up.length, 'tagged bytes');
  assert.is(Number(rl.rxPackets - rlBefore.rxPackets), down.length);
  assert.is(Number(rl.rxBytes - rlBefore.rxBytes), sum(down) + 4 * down.length);
});

test('a pinned VID (by name): the NIC moves to it both ways; its old VID then reaches nothing and is counted', async () => {
  const pins = { [p2.a]: 10 };
  const choice = chooseVid({ ifindex: P2, name: p2.a, mac: null }, fw.nicVids(), pins);
  assert.equal(choice, { vid: 10, why: 'pin' });
  fw.setNicVid(P2, 10);
  assert.is(fw.nicVids().get(P2), 10);
  assert.is(fw.vidEgress().get(10), P2);
  assert.not.ok(fw.vidEgress().has(P2), 'the old VID (= ifindex) is gone');

  const up = [ethFrame({ dst: '02:01:00:00:00:01', src: '02:aa:00:00:00:02', payload: 100 })];
  const [atRouter] = await exchange(LAN2, up, [ROUTER]);
  assert.equal(atRouter, up.map((f) => hex(withTag(f, 10))));

  const inner = ethFrame({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:bb:00:00:00:01', payload: 46 });
  const rlBefore = fw.nicCounters().get(RL)!;
  const before = fw.counters();
  const seen = await exchange(ROUTER, [withTag(inner, 10), withTag(inner, P2), withTag(inner, 3000)], [LAN2, LAN1, LAN3]);
  assert.equal(seen, [[hex(inner)], [], []], 'VID 10 reaches LAN2; the old VID and an unmapped one reach nobody');
  assert.equal(delta(before), { router_forwarded: 1, router_drop_vid_unknown: 2 });
  const rl = fw.nicCounters().get(RL)!;
  assert.is(Number(rl.drops.vid_unknown - rlBefore.drops.vid_unknown), 2, 'counted on the router link');
  assert.is(Number(rl.rxPackets - rlBefore.rxPackets), 3);
  assert.equal(plain(fw.nicCounters().get(P2)), { rx: [1, sum(up)], tx: [1, inner.length], drops: {} });
});

test('a NIC whose VID is cleared gets nothing and sends nothing (dropped as no_vid)', async () => {
  assert.is(fw.clearNic(P3), true);
  assert.not.ok(fw.nicCounters().has(P3));
  const before = fw.counters();
  const seen = await exchange(LAN3, [ethFrame({ payload: 46 })], [ROUTER]);
  assert.equal(seen, [[]]);
  assert.equal(delta(before), { physical_drop_no_vid: 1 });
});

test.run();
