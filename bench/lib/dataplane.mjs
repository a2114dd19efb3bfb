// Data-plane benchmark: the XDP forwarder (netagent's programs, and the
// published design's programs as stand-ins) against a Linux bridge moving
// the same frames between the same kind of veths, in the same run.
//
// Topology (fresh namespaces per measurement set):
//   gen/sink ns G: g0 ──veth── p0 :DUT ns D: r0 (02:01:..) ──veth── rr0 : gen/sink ns R
// physical→router: frames leave g0, enter p0, must come out of rr0.
// router→physical: frames leave rr0 (802.1Q-tagged with p0's ifindex for the
// XDP forwarder, untagged for the bridge), enter r0, must come out of g0.
// Receivers g0 and rr0 run an XDP program that counts and drops (native), so
// every path ends the same way.
//
// Two ways of feeding frames:
//   wire:     BPF_PROG_TEST_RUN with live frames of a one-line XDP_TX program
//             on g0 / rr0: real frames cross the veth into the DUT, where the
//             forwarder runs attached (skb or native mode) or the bridge runs.
//   injected: BPF_PROG_TEST_RUN with live frames of the DUT program itself at
//             p0 / r0 (the bridge: an XDP_PASS program, so the frame enters
//             the stack and the bridge). The kernel's per-frame duration is
//             then "program + redirect + delivery to the peer's queue".
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ip, ifindex, sh, inNs } from './sandbox.mjs';
import { loadObject, testRun, xdpAttach, percpuSum, updateU32, updateBytes, progFdById, closeFd } from './libbpf.mjs';
import { ROOT } from './controlplane.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function possibleCpus() {
  const s = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  return s.split(',').reduce((n, part) => {
    const [a, b] = part.split('-').map(Number);
    return n + (b === undefined ? 1 : b - a + 1);
  }, 0);
}
const NCPU = possibleCpus();

const MAC = { g0: '02:00:00:00:00:0a', rr0: '02:00:00:00:00:0b', r0: '02:01:00:00:00:01', p0: '52:54:00:00:00:0c' };
const macBytes = (m) => Buffer.from(m.replaceAll(':', ''), 'hex');

/** An Ethernet frame of `size` bytes (no FCS), ethertype 0x88b5 (local experimental: no GRO handler, no stack protocol). */
function frame(size, dst, src, vid = null) {
  const f = Buffer.alloc(vid === null ? size : size + 4);
  macBytes(dst).copy(f, 0);
  macBytes(src).copy(f, 6);
  let o = 12;
  if (vid !== null) { f.writeUInt16BE(0x8100, 12); f.writeUInt16BE(vid, 14); o = 16; }
  f.writeUInt16BE(0x88b5, o);
  for (let i = o + 2; i < f.length; i++) f[i] = i & 0xff;
  return f;
}

function topology(sb) {
  const G = sb.netns('bdg'), D = sb.netns('bdd'), R = sb.netns('bdr');
  for (const ns of [G, D, R]) {
    // No IPv6 autoconfiguration chatter on the measured links.
    const [cmd, ...args] = inNs(ns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    sh(cmd, args);
  }
  sh('ip', ['link', 'add', 'g0', 'netns', G, 'address', MAC.g0, 'type', 'veth', 'peer', 'name', 'p0', 'netns', D, 'address', MAC.p0]);
  sh('ip', ['link', 'add', 'rr0', 'netns', R, 'address', MAC.rr0, 'type', 'veth', 'peer', 'name', 'r0', 'netns', D, 'address', MAC.r0]);
  for (const [ns, dev] of [[G, 'g0'], [D, 'p0'], [D, 'r0'], [R, 'rr0']]) ip(ns, 'link', 'set', dev, 'up');
  return { G, D, R, idx: { g0: ifindex(G, 'g0'), p0: ifindex(D, 'p0'), r0: ifindex(D, 'r0'), rr0: ifindex(R, 'rr0') } };
}

function gro(ns, dev) {
  const [cmd, ...args] = inNs(ns, ['ethtool', '-K', dev, 'gro', 'on']);
  sh(cmd, args);
}

/**
 * Counting sinks on g0 and rr0 (native XDP), the generator and the injector
 * (each its own instance of bench/bpf/tools.o, so each has its own maps).
 */
function tools(sb, t, objDir) {
  const obj = join(objDir, 'tools.o');
  const sinkG = loadObject(obj), sinkR = loadObject(obj), gen = loadObject(obj), inj = loadObject(obj);
  sb.enter(t.G); xdpAttach(t.idx.g0, sinkG.progFd('sink'), 'native');
  sb.enter(t.R); xdpAttach(t.idx.rr0, sinkR.progFd('sink'), 'native');
  sb.enterRoot();
  const template = (o, f) => updateBytes(o.mapFd('tmpl'), 0, f.subarray(0, 18));
  return {
    atRouter: () => percpuSum(sinkR.mapFd('sink_count'), NCPU),
    atPhysical: () => percpuSum(sinkG.mapFd('sink_count'), NCPU),
    /** Live run of `gen` with ingress `ifindex` in namespace ns. */
    generate(ns, ifindex, f, repeat) {
      template(gen, f);
      sb.enter(ns);
      try { return testRun(gen.progFd('gen'), f, { ingressIfindex: ifindex, repeat, live: true }); } finally { sb.enterRoot(); }
    },
    /** Live run of `inj` -> targetFd (the program under test) with ingress ifindex in ns. */
    inject(ns, ifindex, targetFd, f, repeat) {
      template(inj, f);
      updateU32(inj.mapFd('inj_target'), 0, targetFd);
      sb.enter(ns);
      try { return testRun(inj.progFd('inj'), f, { ingressIfindex: ifindex, repeat, live: true }); } finally { sb.enterRoot(); }
    },
    passFd: inj.progFd('pass'),
    dropFd: inj.progFd('drop'),
    close() { for (const o of [sinkG, sinkR, gen, inj]) o.close(); },
  };
}

/**
 * Sets up the device under test in ns D. Returns {run(dir, frame, repeat)}
 * for injected runs (null-safe for the bridge: pass program).
 */
async function dut(sb, kind, mode, t, tl, opts) {
  const { D, idx } = t;
  if (kind === 'bridge') {
    ip(D, 'link', 'add', 'br0', 'type', 'bridge');
    ip(D, 'link', 'set', 'p0', 'master', 'br0');
    ip(D, 'link', 'set', 'r0', 'master', 'br0');
    ip(D, 'link', 'set', 'br0', 'up');
    // Static FDB: no flooding, no learning effects; STP is off by default.
    sh('bridge', ['-n', D, 'fdb', 'replace', MAC.rr0, 'dev', 'r0', 'master', 'static']);
    sh('bridge', ['-n', D, 'fdb', 'replace', MAC.g0, 'dev', 'p0', 'master', 'static']);
    gro(D, 'p0'); gro(D, 'r0');
    await sleep(100);
    return {
      inject: (dir, f, repeat) => tl.inject(D, dir === 'p2r' ? idx.p0 : idx.r0, tl.passFd, f, repeat),
      close() {},
    };
  }
  if (mode === 'skb') { gro(D, 'p0'); gro(D, 'r0'); } // veth takes XDP frames from its peer only with GRO or a native program
  sb.enter(D);
  try {
    if (kind === 'netagent') {
      const { Forwarder } = await import(join(ROOT, 'dist', 'agent', 'bpf', 'forwarder.js'));
      const { silentLogger } = await import(join(ROOT, 'dist', 'agent', 'log.js'));
      const fw = Forwarder.open({ bpfDir: opts.netagentBpfDir, pinDir: opts.pinDir, log: silentLogger });
      fw.attach({ ifindex: idx.p0, name: 'p0' }, 'physical', mode);
      fw.attach({ ifindex: idx.r0, name: 'r0' }, 'router', mode);
      fw.setRouterIface(idx.r0);
      fw.allowEgress(idx.p0);
      const ids = fw.loaded();
      const fds = { physical: progFdById(ids.physical.id), router: progFdById(ids.router.id) };
      return {
        inject: (dir, f, repeat) => tl.inject(D, dir === 'p2r' ? idx.p0 : idx.r0, dir === 'p2r' ? fds.physical : fds.router, f, repeat),
        counters: () => fw.counters(),
        close() { closeFd(fds.physical); closeFd(fds.router); fw.close(); },
      };
    }
    // published-design stand-ins, loaded the way that works on libbpf 1.1.2
    const phys = loadObject(join(opts.objDir, 'pub_physical.o'), { pinRoot: opts.pinDir });
    const rout = loadObject(join(opts.objDir, 'pub_router.o'), { reuse: { router_iface: join(opts.pinDir, 'router_iface') } });
    xdpAttach(idx.p0, phys.progFd('physical'), mode);
    xdpAttach(idx.r0, rout.progFd('router'), mode);
    updateU32(phys.mapFd('router_iface'), 0, idx.r0);
    return {
      inject: (dir, f, repeat) => tl.inject(D, dir === 'p2r' ? idx.p0 : idx.r0, dir === 'p2r' ? phys.progFd('physical') : rout.progFd('router'), f, repeat),
      close() { phys.close(); rout.close(); },
    };
  } finally {
    sb.enterRoot();
  }
}

async function settle(read) {
  let last = read();
  for (let i = 0; i < 50; i++) {
    await sleep(10);
    const now = read();
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** One measured run: frames counted at the sink over the wall time of the run. */
async function once(runOnce, sinkRead, repeat) {
  const before = await settle(sinkRead);
  const r = runOnce(repeat);
  const delivered = (await settle(sinkRead)) - before;
  return {
    repeat, wallNs: r.wallNs, kernelNsPerFrame: r.durationNs,
    offeredPps: repeat / (r.wallNs / 1e9), deliveredPps: delivered / (r.wallNs / 1e9), delivered,
  };
}

/** Repeat count for about targetSec per run, from a short calibration run. */
async function calibrate(runOnce, sinkRead, targetSec) {
  const cal = await once(runOnce, sinkRead, 20_000);
  return Math.max(50_000, Math.min(50_000_000, Math.round(20_000 / (cal.wallNs / 1e9) * targetSec)));
}

function median(runs) {
  const sorted = [...runs].sort((a, b) => a.deliveredPps - b.deliveredPps);
  const med = sorted[Math.floor(sorted.length / 2)];
  const ns = [...runs].map((r) => r.kernelNsPerFrame).sort((a, b) => a - b);
  return { ...med, kernelNsPerFrame: ns[Math.floor(ns.length / 2)], runs: runs.map((x) => Math.round(x.deliveredPps)) };
}

const DIRS = { p2r: 'physical→router', r2p: 'router→physical' };

/** Fills the maps of a separately loaded physical/router object the way the agent would (VID = ifindex). */
function fillMaps(o, idx) {
  const has = (name) => { try { return o.mapFd(name); } catch { return null; } };
  updateU32(o.mapFd('router_iface'), 0, idx.r0);
  updateU32(o.mapFd('router_egress'), idx.p0, idx.p0);
  const nv = has('nic_vid');
  if (nv !== null) updateU32(nv, idx.p0, idx.p0);
}

/**
 * Program cost: each program alone in a live BPF_PROG_TEST_RUN at its own
 * link (physical at p0, router at r0), so the kernel's ns/frame is "program
 * + redirect + delivery to the peer's counting sink", against the limit: an
 * XDP program that only redirects (bench/bpf/redirect.c) on the same link
 * to the same target. Also netagent's programs built without their
 * per-link counters (bench/bpf/nolinkstats_*.c), for what the counters
 * cost, and, if BENCH_EXTRA_BPF names a directory with physical.o and
 * router.o (e.g. an earlier netagent), those. Variants interleave run by
 * run; every run must deliver every frame (else a drop would look fast).
 *
 * Live mode recycles a page without rewriting it, so `router`, which moves
 * the MACs 4 bytes forward, sees its own output next time: the router frame
 * is a fixed point, its first 16 bytes (TPID, TCI) four times.
 */
export async function programCost(sb, opts, log) {
  const t = topology(sb);
  const tl = tools(sb, t, opts.objDir);
  const pins = [];
  const bpffs = () => { const d = sb.bpffs(); pins.push(d); return d; };
  const objs = [];
  const rows = [];
  let fw = null;
  try {
    sb.enter(t.D);
    const variants = [];
    const loadPair = (name, phys, rout) => {
      const p = loadObject(phys, { pinRoot: bpffs() }), r = loadObject(rout, { pinRoot: bpffs() });
      objs.push(p, r);
      fillMaps(p, t.idx); fillMaps(r, t.idx);
      variants.push({ name, p2r: p.progFd('physical'), r2p: r.progFd('router') });
    };
    if (opts.netagentBpfDir) {
      const { Forwarder } = await import(join(ROOT, 'dist', 'agent', 'bpf', 'forwarder.js'));
      const { silentLogger } = await import(join(ROOT, 'dist', 'agent', 'log.js'));
      fw = Forwarder.open({ bpfDir: opts.netagentBpfDir, pinDir: bpffs(), log: silentLogger });
      fw.setRouterIface(t.idx.r0);
      fw.setNicVid(t.idx.p0, t.idx.p0);
      const ids = fw.loaded();
      const fds = { p2r: progFdById(ids.physical.id), r2p: progFdById(ids.router.id) };
      objs.push({ close() { closeFd(fds.p2r); closeFd(fds.r2p); } });
      variants.push({ name: 'netagent', ...fds });
      loadPair('netagent without link counters', join(opts.objDir, 'nolinkstats_physical.o'), join(opts.objDir, 'nolinkstats_router.o'));
    }
    if (process.env.BENCH_EXTRA_BPF) {
      loadPair(`extra (${process.env.BENCH_EXTRA_BPF})`, join(process.env.BENCH_EXTRA_BPF, 'physical.o'), join(process.env.BENCH_EXTRA_BPF, 'router.o'));
    }
    const toR = loadObject(join(opts.objDir, 'redirect.o')), toP = loadObject(join(opts.objDir, 'redirect.o'));
    objs.push(toR, toP);
    updateU32(toR.mapFd('target'), 0, t.idx.r0);
    updateU32(toP.mapFd('target'), 0, t.idx.p0);
    variants.push({ name: 'redirect only (limit)', p2r: toR.progFd('redirect'), r2p: toP.progFd('redirect') });
    sb.enterRoot();

    const repeat = process.env.QUICK === '1' ? 100_000 : 300_000;
    const reps = Math.max(5, opts.reps);
    for (const size of opts.sizes) {
      for (const dir of ['p2r', 'r2p']) {
        let f;
        if (dir === 'p2r') f = frame(size, MAC.rr0, MAC.g0);
        else {
          const unit = Buffer.alloc(4);
          unit.writeUInt16BE(0x8100, 0);
          unit.writeUInt16BE(t.idx.p0, 2);
          f = Buffer.concat([unit, unit, unit, unit, Buffer.alloc(size + 4 - 16, 0x5a)]);
        }
        const sinkRead = dir === 'p2r' ? tl.atRouter : tl.atPhysical;
        const ingress = dir === 'p2r' ? t.idx.p0 : t.idx.r0;
        const runs = new Map(variants.map((v) => [v.name, []]));
        for (let rep = 0; rep < reps; rep++) {
          for (const v of variants) {
            const r = await once((n) => {
              sb.enter(t.D);
              try { return testRun(v[dir], f, { ingressIfindex: ingress, repeat: n, live: true }); } finally { sb.enterRoot(); }
            }, sinkRead, repeat);
            if (r.delivered !== repeat) throw new Error(`program cost: ${v.name} ${DIRS[dir]} delivered ${r.delivered} of ${repeat} frames`);
            runs.get(v.name).push(r.kernelNsPerFrame);
          }
        }
        const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
        const limit = med(runs.get('redirect only (limit)'));
        for (const v of variants) {
          const ns = med(runs.get(v.name));
          rows.push({ variant: v.name, size, dir, nsPerFrame: ns, vsLimit: ns / limit, runs: runs.get(v.name) });
          log(`  program cost ${v.name} ${size} B ${DIRS[dir]}: ${ns} ns/frame (${(ns / limit).toFixed(2)}x the redirect-only limit)`);
        }
      }
    }
  } finally {
    sb.enterRoot();
    for (const o of objs) { try { o.close(); } catch { /* best effort */ } }
    try { fw?.close(); } catch { /* best effort */ }
    try { tl.close(); } catch { /* best effort */ }
    sb.dropNetns(t.G); sb.dropNetns(t.D); sb.dropNetns(t.R);
    for (const d of pins) sb.dropBpffs(d);
  }
  return rows;
}

/**
 * Every forwarder (netagent skb/native, published skb/native, bridge) gets
 * a topology of its own, all set up first; then, per frame size and
 * direction, the runs are interleaved (A, B, C, ..., A, B, C, ...) so that
 * load from elsewhere hits every forwarder alike.
 */
export async function runDataPlane(sb, opts, log) {
  const out = { wire: [], injected: [], notes: [] };
  const kinds = [];
  if (opts.netagentBpfDir) kinds.push('netagent'); else out.notes.push('netagent BPF objects missing: only the published stand-ins and the bridge were measured');
  kinds.push('published', 'bridge');
  const setups = [];
  try {
    for (const kind of kinds) {
      for (const mode of kind === 'bridge' ? ['stack'] : ['skb', 'native']) {
        const t = topology(sb);
        const pinDir = sb.bpffs();
        const setup = { kind, mode, t, pinDir };
        setups.push(setup);
        setup.tl = tools(sb, t, opts.objDir);
        setup.d = await dut(sb, kind, mode === 'stack' ? null : mode, t, setup.tl, { ...opts, pinDir });
      }
    }
    for (const size of opts.sizes) {
      for (const dir of ['p2r', 'r2p']) {
        const jobs = [];
        for (const x of setups) {
          const { t, tl, d, kind, mode } = x;
          const tagged = kind !== 'bridge' && dir === 'r2p';
          const f = dir === 'p2r' ? frame(size, MAC.rr0, MAC.g0) : frame(size, MAC.g0, MAC.rr0, tagged ? t.idx.p0 : null);
          const sinkRead = dir === 'p2r' ? tl.atRouter : tl.atPhysical;
          const genNs = dir === 'p2r' ? t.G : t.R;
          const genIf = dir === 'p2r' ? t.idx.g0 : t.idx.rr0;
          jobs.push({ x, what: 'wire', sinkRead, run: (repeat) => tl.generate(genNs, genIf, f, repeat), runs: [] });
          // Injected: once per forwarder (the attach mode does not matter there).
          if (mode !== 'skb') jobs.push({ x, what: 'injected', sinkRead, run: (repeat) => d.inject(dir, f, repeat), runs: [] });
        }
        for (const j of jobs) j.repeat = await calibrate(j.run, j.sinkRead, opts.targetSec);
        for (let rep = 0; rep < opts.reps; rep++) {
          for (const j of jobs) j.runs.push(await once(j.run, j.sinkRead, j.repeat));
        }
        for (const j of jobs) {
          const m = median(j.runs);
          const { kind, mode } = j.x;
          if (j.what === 'wire') {
            out.wire.push({ dut: kind, mode, size, dir, ...m });
            log(`  wire ${kind}/${mode} ${size} B ${DIRS[dir]}: ${(m.deliveredPps / 1e6).toFixed(3)} Mpps delivered (offered ${(m.offeredPps / 1e6).toFixed(3)})`);
          } else {
            out.injected.push({ dut: kind, size, dir, ...m });
            log(`  injected ${kind} ${size} B ${DIRS[dir]}: ${m.kernelNsPerFrame} ns/frame (kernel), ${(m.deliveredPps / 1e6).toFixed(3)} Mpps delivered`);
          }
        }
      }
    }
    const br = setups.find((x) => x.kind === 'bridge');
    if (br) {
      // The injector's own cost (restore 18 bytes + tail call), to read the injected rows against.
      const r = br.tl.inject(br.t.D, br.t.idx.p0, br.tl.dropFd, frame(64, MAC.rr0, MAC.g0), 1_000_000);
      out.injectorNs = r.durationNs;
      log(`  injector alone (restore + tail call + XDP_DROP): ${r.durationNs} ns/frame`);
    }
    out.programCost = await programCost(sb, opts, log);
    for (const r of out.programCost.filter((x) => x.variant !== 'redirect only (limit)')) {
      out.notes.push(`program cost, ${r.variant}, ${r.size} B ${DIRS[r.dir]}: ${r.nsPerFrame} ns/frame = ${r.vsLimit.toFixed(2)}x a redirect-only XDP program (live BPF_PROG_TEST_RUN, median of ${r.runs.length})`);
    }
    for (const x of setups) {
      if (x.d?.counters) out.notes.push(`netagent's own counters after the ${x.mode}-mode runs: ${JSON.stringify(Object.fromEntries(Object.entries(x.d.counters()).filter(([, v]) => v > 0n).map(([k, v]) => [k, Number(v)])))}`);
    }
  } finally {
    sb.enterRoot();
    for (const x of setups) {
      try { x.d?.close(); } catch { /* best effort */ }
      try { x.tl?.close(); } catch { /* best effort */ }
      sb.dropNetns(x.t.G); sb.dropNetns(x.t.D); sb.dropNetns(x.t.R);
      sb.dropBpffs(x.pinDir);
    }
  }
  return out;
}
