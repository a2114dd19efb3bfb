// BPF_PROG_TEST_RUN through Forwarder.testRun: what `physical` and `router`
// do to single frames, every length, and thousands of random frames, with
// the counters read back. Runs in a network namespace of its own, with a
// private bpffs for the pins.
//
// Found on kernel 6.18: the kernel refuses XDP test frames shorter than
// ETH_HLEN (14 bytes) with EINVAL before the program runs, so the programs'
// own "shorter than an Ethernet header" drops cannot be reached this way.
// What can be: `router`'s short-frame drop for 14..17-byte frames that carry
// a VLAN TPID but have no room for the TCI and the inner ethertype.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { Forwarder, COUNTER_NAMES, type XdpProgram } from '../../agent/bpf/forwarder.js';
import { BpfError } from '../../agent/bpf/errors.js';
import { silentLogger } from '../../agent/log.js';
import { Sandbox, ROOT, ipJson, ownNetns } from '../lib/sandbox.js';
import {
  ethFrame, withTag, withoutTag, hex, prng, randomBytes, expectPhysical,
  ETH_P_8021Q, ETH_P_8021AD, type Expected,
} from '../lib/frames.js';

await ownNetns(import.meta.url);

const sb = new Sandbox();
const pinDir = sb.bpffs();
const fw = Forwarder.open({ bpfDir: join(ROOT, 'build', 'bpf'), pinDir, log: silentLogger });
const ifindex = (name: string): number => ipJson(null, 'link', 'show', name)[0].ifindex as number;

// Two ordinary veth pairs ("NICs" and a router link) and one end with ifindex 5000 (> 4095).
const nic = sb.veth(null, null);
const rl = sb.veth(null, null);
const big = sb.veth(null, null, { indexA: 5000 });
const NIC = ifindex(nic.a), NIC2 = ifindex(nic.b), RL = ifindex(rl.a), BIG = ifindex(big.a);

function delta(before: Record<string, bigint>): Record<string, number> {
  const after = fw.counters();
  const out: Record<string, number> = {};
  for (const k of COUNTER_NAMES) if (after[k] !== before[k]) out[k] = Number(after[k]! - before[k]!);
  return out;
}

/** physical with VIDs from the map (vids: ifindex -> VID; a NIC without one is dropped). */
function expectPhys(frame: Buffer, ingress: number, vids: ReadonlyMap<number, number>, routerSet: boolean): Expected {
  const vid = vids.get(ingress);
  if (vid === undefined) return { verdict: 'drop', counter: 'physical_drop_no_vid' };
  return expectPhysical(frame, vid, routerSet);
}

/** router with VIDs mapped to NICs (egress: VID -> ifindex); a VID leading back to the ingress link is dropped. */
function expectRouterV(frame: Buffer, ingress: number, egress: ReadonlyMap<number, number>): Expected {
  const tpid = frame.readUInt16BE(12);
  if (tpid !== ETH_P_8021Q && tpid !== ETH_P_8021AD) return { verdict: 'drop', counter: 'router_drop_untagged' };
  if (frame.length < 18) return { verdict: 'drop', counter: 'router_drop_short' };
  const tci = frame.readUInt16BE(14);
  if (tci & 0xf000) return { verdict: 'drop', counter: 'router_drop_pcp_dei' };
  const target = egress.get(tci & 0xfff);
  if (target === undefined) return { verdict: 'drop', counter: 'router_drop_vid_unknown' };
  if (target === ingress) return { verdict: 'drop', counter: 'router_drop_vid_self' };
  return { verdict: 'redirect', counter: 'router_forwarded', out: withoutTag(frame) };
}

function check(program: XdpProgram, frame: Buffer, ingress: number, exp: Expected, what: string): void {
  const r = fw.testRun(program, frame, { ingressIfindex: ingress });
  assert.is(r.verdict, exp.verdict, `${what}: verdict`);
  if (exp.out) assert.is(hex(r.data), hex(exp.out), `${what}: output frame`);
}

test.before.each(() => {
  fw.setRouterIface(null);
  for (const i of fw.nicVids().keys()) fw.clearNic(i);
  for (const [vid, i] of fw.vidEgress()) assert.unreachable(`VID ${vid} -> ${i} left after clearNic`);
});

test.after(() => {
  fw.close();
  Forwarder.removePins(pinDir);
  sb.cleanup();
});

test('setup: the big veth really has ifindex 5000', () => {
  assert.is(BIG, 5000);
});

test('physical pushes one 802.1Q tag with VID = ingress ifindex, rest byte-identical', () => {
  fw.setRouterIface(RL);
  for (const i of [NIC, NIC2, 1]) fw.allowEgress(i);
  assert.is(fw.routerIface(), RL);
  for (const ingress of [NIC, NIC2, 1]) {
    const frame = ethFrame({ payload: randomBytes(prng(ingress), 50) });
    const before = fw.counters();
    const r = fw.testRun('physical', frame, { ingressIfindex: ingress });
    assert.is(r.verdict, 'redirect');
    assert.is(r.data.length, frame.length + 4);
    assert.is(r.data.readUInt16BE(12), ETH_P_8021Q);
    assert.is(r.data.readUInt16BE(14), ingress, 'TCI = VID = ifindex, PCP/DEI 0');
    assert.is(hex(r.data), hex(withTag(frame, ingress)));
    assert.equal(delta(before), { physical_forwarded: 1 });
  }
  // Without ctx the kernel runs the frame as if it came in on lo (ifindex 1).
  const r = fw.testRun('physical', ethFrame());
  assert.is(r.data.readUInt16BE(14), 1);
});

test('physical drops (and counts) when router_iface is empty: no XDP_ABORTED', () => {
  fw.setNicVid(NIC, NIC);
  const before = fw.counters();
  const r = fw.testRun('physical', ethFrame(), { ingressIfindex: NIC });
  assert.is(r.verdict, 'drop');
  assert.equal(delta(before), { physical_drop_no_router: 1 });
});

test('physical drops (and counts) frames from a NIC without a VID, ifindex above 4095 or not', () => {
  fw.setRouterIface(RL);
  for (const ingress of [BIG, NIC]) {
    const before = fw.counters();
    const r = fw.testRun('physical', ethFrame(), { ingressIfindex: ingress });
    assert.is(r.verdict, 'drop');
    assert.equal(delta(before), { physical_drop_no_vid: 1 });
  }
  assert.throws(() => fw.allowEgress(BIG), (e: BpfError) => e.code === 'ERANGE' && /setNicVid/.test(e.hint ?? ''));
});

test('a NIC at ifindex 5000 with VID 4000: tagged 4000 one way, VID 4000 reaches it the other; both maps agree', () => {
  fw.setRouterIface(RL);
  fw.setNicVid(BIG, 4000);
  assert.equal([...fw.nicVids()], [[BIG, 4000]]);
  assert.equal([...fw.vidEgress()], [[4000, BIG]]);
  assert.equal(fw.egress(), [BIG]);
  const frame = ethFrame({ payload: 60 });
  const r = fw.testRun('physical', frame, { ingressIfindex: BIG });
  assert.is(r.verdict, 'redirect');
  assert.is(hex(r.data), hex(withTag(frame, 4000)));
  const back = fw.testRun('router', withTag(frame, 4000), { ingressIfindex: RL });
  assert.is(back.verdict, 'redirect');
  assert.is(hex(back.data), hex(frame));
  // The ifindex itself means nothing to router now:
  const before = fw.counters();
  assert.is(fw.testRun('router', withTag(frame, BIG & 0xfff), { ingressIfindex: RL }).verdict, 'drop');
  assert.equal(delta(before), { router_drop_vid_unknown: 1 });
});

test('setNicVid: VIDs 0 and 4095 refused, a VID held by another NIC refused, moving a VID leaves no stale entry', () => {
  for (const bad of [0, 4095, 4096, -1, 1.5]) assert.throws(() => fw.setNicVid(NIC, bad), (e: BpfError) => e.code === 'ERANGE', `VID ${bad}`);
  fw.setNicVid(NIC, 100);
  assert.throws(() => fw.setNicVid(NIC2, 100), (e: BpfError) => e.code === 'EEXIST' && e.hint!.includes(`clearNic(${NIC})`));
  fw.setNicVid(NIC, 100); // idempotent
  fw.setNicVid(NIC, 200);
  assert.equal([...fw.nicVids()], [[NIC, 200]]);
  assert.equal([...fw.vidEgress()], [[200, NIC]], 'VID 100 is gone');
  fw.setNicVid(NIC2, 100); // free again
  assert.is(fw.clearNic(NIC), true);
  assert.is(fw.clearNic(NIC), false);
  assert.equal([...fw.vidEgress()], [[100, NIC2]]);
  assert.throws(() => fw.setNicVid(999_999, 300), (e: BpfError) => /no such link/.test(e.hint ?? ''));
  assert.equal([...fw.nicVids()], [[NIC2, 100]], 'a failed setNicVid leaves nothing behind');
});

test('the kernel refuses test frames under 14 bytes (EINVAL) before the program runs', () => {
  fw.setRouterIface(RL);
  for (let len = 0; len < 14; len++) {
    for (const p of ['physical', 'router'] as const) {
      const before = fw.counters();
      try {
        fw.testRun(p, Buffer.alloc(len), { ingressIfindex: NIC });
        assert.unreachable(`${p} ran a ${len}-byte frame`);
      } catch (e) {
        assert.instance(e, BpfError);
        assert.is((e as BpfError).code, 'EINVAL');
        assert.is((e as BpfError).call, 'bpf_prog_test_run_opts');
      }
      assert.equal(delta(before), {}, 'nothing counted');
    }
  }
});

test('router pops one 0x8100 or 0x88a8 tag and redirects to an allowed VID', () => {
  fw.allowEgress(NIC);
  assert.equal(fw.egress(), [NIC]);
  for (const tpid of [ETH_P_8021Q, ETH_P_8021AD]) {
    const inner = ethFrame({ payload: randomBytes(prng(tpid), 60) });
    const before = fw.counters();
    const r = fw.testRun('router', withTag(inner, NIC, tpid), { ingressIfindex: RL });
    assert.is(r.verdict, 'redirect');
    assert.is(hex(r.data), hex(inner), 'exactly the untagged frame');
    assert.equal(delta(before), { router_forwarded: 1 });
  }
  // QinQ: only the outer tag goes.
  const inner = withTag(ethFrame(), 7, ETH_P_8021Q);
  const r = fw.testRun('router', withTag(inner, NIC, ETH_P_8021AD), { ingressIfindex: RL });
  assert.is(r.verdict, 'redirect');
  assert.is(hex(r.data), hex(inner));
});

test('router drops and counts: untagged, unknown VID, VID 0, its own link, PCP/DEI set, short tagged', () => {
  fw.allowEgress(NIC);
  fw.allowEgress(RL); // even if the router link were allowed, a VID naming it is dropped
  const cases: [string, Buffer, string][] = [
    ['untagged', ethFrame(), 'router_drop_untagged'],
    ['unknown VID', withTag(ethFrame(), NIC2), 'router_drop_vid_unknown'],
    ['VID 0', withTag(ethFrame(), 0), 'router_drop_vid_unknown'],
    ['VID 4095', withTag(ethFrame(), 4095), 'router_drop_vid_unknown'],
    ['VID = router link', withTag(ethFrame(), RL), 'router_drop_vid_self'],
    ['PCP set', withTag(ethFrame(), 0x2000 | NIC), 'router_drop_pcp_dei'],
    ['DEI set', withTag(ethFrame(), 0x1000 | NIC), 'router_drop_pcp_dei'],
    ['PCP set, 88a8', withTag(ethFrame(), 0xe000 | NIC, ETH_P_8021AD), 'router_drop_pcp_dei'],
  ];
  for (let len = 14; len < 18; len++) {
    const f = Buffer.alloc(len, 0xee);
    f.writeUInt16BE(ETH_P_8021Q, 12);
    cases.push([`${len}-byte tagged`, f, 'router_drop_short']);
  }
  for (const [what, frame, counter] of cases) {
    const before = fw.counters();
    const r = fw.testRun('router', frame, { ingressIfindex: RL });
    assert.is(r.verdict, 'drop', what);
    assert.is(hex(r.data), hex(frame), `${what}: frame untouched`);
    assert.equal(delta(before), { [counter]: 1 }, what);
  }
  fw.disallowEgress(NIC);
  const before = fw.counters();
  assert.is(fw.testRun('router', withTag(ethFrame(), NIC), { ingressIfindex: RL }).verdict, 'drop', 'disallowed again');
  assert.equal(delta(before), { router_drop_vid_unknown: 1 });
});

test('every length 14..1518 through both programs: verdict and output as specified, never aborted', () => {
  fw.setRouterIface(RL);
  fw.allowEgress(NIC);
  const vids = new Map([[NIC, NIC]]);
  const rand = prng(1518);
  const before = fw.counters();
  let runs = 0;
  for (let len = 14; len <= 1518; len++) {
    const plain = randomBytes(rand, len);
    check('physical', plain, NIC, expectPhys(plain, NIC, vids, true), `physical len ${len}`);
    // For router: the same bytes with the TPID forced at offset 12 and a VID that is allowed.
    const tagged = Buffer.from(plain);
    tagged.writeUInt16BE(len % 2 ? ETH_P_8021Q : ETH_P_8021AD, 12);
    if (len >= 16) tagged.writeUInt16BE(NIC, 14);
    check('router', tagged, RL, expectRouterV(tagged, RL, vids), `router tagged len ${len}`);
    check('router', plain, RL, expectRouterV(plain, RL, vids), `router random len ${len}`);
    runs += 3;
  }
  const d = delta(before);
  assert.is(Object.values(d).reduce((a, b) => a + b, 0), runs, 'every run counted exactly once');
  assert.is(d.physical_forwarded, 1518 - 14 + 1);
});

test('4000 random frames (seeded) against the reference model, counters included', () => {
  const rand = prng(0x5eed);
  const ingresses = [NIC, NIC2, RL, BIG, 1];
  // NIC keeps its ifindex, NIC2 and BIG get other VIDs, RL and lo have none.
  const vids = new Map([[NIC, NIC], [NIC2, 7], [BIG, 4094]]);
  for (const [i, v] of vids) fw.setNicVid(i, v);
  const egress = new Map([...vids].map(([i, v]) => [v, i]));
  const expectCounts: Record<string, number> = {};
  type Want = { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number; drops: Record<string, number> };
  const links = new Map<number, Want>();
  const link = (i: number): Want => {
    if (!links.has(i)) links.set(i, { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, drops: {} });
    return links.get(i)!;
  };
  fw.setRouterIface(RL);
  fw.setRouterIface(NIC); // another router link: slot 0 starts again at zero when RL comes back
  fw.setRouterIface(RL);
  const before = fw.counters();
  let routerSet = false;
  for (let n = 0; n < 4000; n++) {
    if (n % 500 === 0) {
      routerSet = !routerSet;
      fw.setRouterIface(routerSet ? RL : null);
    }
    const len = 14 + Math.floor(rand() * rand() * (1518 - 14 + 1));
    const frame = randomBytes(rand, len);
    // Half the frames get a plausible tag so router's deeper checks are reached.
    if (rand() < 0.5 && len >= 18) {
      frame.writeUInt16BE(rand() < 0.5 ? ETH_P_8021Q : ETH_P_8021AD, 12);
      const pick = rand();
      const vid = pick < 0.3 ? NIC : pick < 0.45 ? 7 : pick < 0.6 ? 4094 : pick < 0.7 ? NIC2 : Math.floor(rand() * 4096);
      frame.writeUInt16BE((rand() < 0.8 ? 0 : Math.floor(rand() * 16) << 12) | vid, 14);
    }
    const ingress = ingresses[Math.floor(rand() * ingresses.length)]!;
    const program: XdpProgram = rand() < 0.5 ? 'physical' : 'router';
    const exp = program === 'physical' ? expectPhys(frame, ingress, vids, routerSet) : expectRouterV(frame, ingress, egress);
    const r = fw.testRun(program, frame, { ingressIfindex: ingress });
    assert.is.not(r.verdict, 'aborted');
    assert.is(r.verdict, exp.verdict, `frame ${n} (${program}, ingress ${ingress}, ${len} bytes)`);
    assert.is(hex(r.data), hex(exp.out ?? frame), `frame ${n}: output`);
    expectCounts[exp.counter] = (expectCounts[exp.counter] ?? 0) + 1;
    // Per link: rx on the link whose program ran (a NIC by its VID, the router slot), tx where it was sent.
    const rxLink = program === 'router' ? RL : vids.has(ingress) ? ingress : null;
    if (rxLink !== null) {
      const l = link(rxLink);
      l.rxPackets++; l.rxBytes += len;
      if (exp.verdict === 'drop') l.drops[exp.counter.replace(/^(physical|router)_drop_/, '')] = (l.drops[exp.counter.replace(/^(physical|router)_drop_/, '')] ?? 0) + 1;
    }
    if (exp.verdict === 'redirect') {
      const l = link(program === 'physical' ? RL : egress.get(frame.readUInt16BE(14) & 0xfff)!);
      l.txPackets++; l.txBytes += program === 'physical' ? len + 4 : len - 4;
    }
  }
  assert.equal(delta(before), expectCounts);
  fw.setRouterIface(RL); // after a clear, the router link's counters continue
  const got = fw.nicCounters();
  assert.equal([...got.keys()].sort((a, b) => a - b), [NIC, NIC2, RL, BIG].sort((a, b) => a - b));
  for (const [ifindex, want] of links) {
    const c = got.get(ifindex)!;
    assert.is(c.role, ifindex === RL ? 'router' : 'nic');
    assert.is(c.vid, ifindex === RL ? null : vids.get(ifindex));
    const drops = Object.fromEntries(Object.entries(c.drops).filter(([, v]) => v > 0n).map(([k, v]) => [k, Number(v)]));
    assert.equal({ rxPackets: Number(c.rxPackets), rxBytes: Number(c.rxBytes), txPackets: Number(c.txPackets), txBytes: Number(c.txBytes), drops }, want, `link ${ifindex}`);
  }
  console.log(`random frames by outcome: ${JSON.stringify(expectCounts)}`);
});

test('figures: ns per 64-byte frame (repeat 100000), plain and live', () => {
  fw.setRouterIface(RL);
  fw.allowEgress(NIC);
  const frame = ethFrame({ payload: 50 });
  const tagged = withTag(ethFrame({ payload: 46 }), NIC);
  const figures: Record<string, number> = {};
  figures.physical = fw.testRun('physical', frame, { ingressIfindex: NIC, repeat: 100_000 }).durationNs;
  figures.router = fw.testRun('router', tagged, { ingressIfindex: RL, repeat: 100_000 }).durationNs;
  // Live frames: the redirects really happen (to the veth ends, whose peers drop them).
  // Live mode initialises a page's data once and then recycles the page
  // with only the pointers reset (kernel 6.18 test_run.c), so a program that
  // rewrites the frame sees its own output again on later runs. `router`
  // moves the 12 MAC bytes 4 bytes forward, so a frame whose first 16 bytes
  // are (TPID, TCI) four times is a fixed point: every run sees the same tag.
  const unit = Buffer.alloc(4);
  unit.writeUInt16BE(ETH_P_8021Q, 0);
  unit.writeUInt16BE(NIC, 2);
  const stable = Buffer.concat([unit, unit, unit, unit, Buffer.alloc(46, 0x5a)]);
  const before = fw.counters();
  figures.physical_live = fw.testRun('physical', frame, { ingressIfindex: NIC, repeat: 100_000, live: true }).durationNs;
  figures.router_live = fw.testRun('router', stable, { ingressIfindex: RL, repeat: 100_000, live: true }).durationNs;
  assert.equal(delta(before), { physical_forwarded: 100_000, router_forwarded: 100_000 });
  console.log(`prog_test_run ns/frame: ${JSON.stringify(figures)}`);
  for (const v of Object.values(figures)) assert.ok(v > 0);
});

test.run();
