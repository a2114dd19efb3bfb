#!/usr/bin/env node
// The cost of reading the VID maps back (Forwarder.egressVids(): nic_vid and
// router_egress in full), which the reconciler does every few seconds with
// every NIC's entries present: `node bench/vidmaps.mjs [NICS] [CALLS]`
// (default 1000 NICs, 300 calls; root, after `make build`). NICs are veths
// (peers alongside) in a namespace of the run's own, the maps live in a private bpffs;
// everything is removed at the end. Prints µs per call (wall, and CPU of
// this process) for egressVids() and each map alone.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Sandbox, ip, ipJson } from './lib/sandbox.mjs';
import { ROOT } from './lib/controlplane.mjs';

const NICS = Number(process.argv[2] ?? 1000);
const CALLS = Number(process.argv[3] ?? 300);
if (!(NICS >= 1 && NICS <= 4094)) throw new Error('NICS: 1..4094 (one VID each)');

const { Forwarder } = await import(join(ROOT, 'dist', 'agent', 'bpf', 'forwarder.js'));
const { silentLogger } = await import(join(ROOT, 'dist', 'agent', 'log.js'));

function time(fn, calls) {
  for (let i = 0; i < Math.min(20, calls); i++) fn(); // warm up (JIT, koffi)
  const walls = [];
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) {
    const t = process.hrtime.bigint();
    fn();
    walls.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  const wallTotal = Number(process.hrtime.bigint() - t0) / 1e3;
  const c = process.cpuUsage(c0);
  walls.sort((a, b) => a - b);
  return { p50: walls[walls.length >> 1], min: walls[0], mean: wallTotal / calls, cpu: (c.user + c.system) / calls, sys: c.system / calls };
}

const sb = new Sandbox();
let fw;
try {
  const ns = sb.netns('bvm');
  const tmp = sb.tmpdir();
  const batch = join(tmp, 'links.txt');
  writeFileSync(batch, Array.from({ length: NICS }, (_, i) => `link add name d${i} type veth peer name e${i}`).join('\n') + '\n');
  ip(ns, '-batch', batch);
  const nics = ipJson(ns, 'link', 'show').filter((l) => /^d\d+$/.test(l.ifname)).map((l) => l.ifindex).sort((a, b) => a - b);
  sb.enter(ns);
  const pinDir = sb.bpffs();
  fw = Forwarder.open({ bpfDir: join(ROOT, 'build', 'bpf'), pinDir, log: silentLogger });
  nics.forEach((ifindex, i) => fw.setNicVid(ifindex, i + 1));
  const got = fw.egressVids();
  if (got.size !== NICS) throw new Error(`egressVids() has ${got.size} entries, expected ${NICS}`);
  console.log(`${NICS} NICs (nic_vid and router_egress with ${NICS} entries each), ${CALLS} calls each`);
  const row = (name, r) => console.log(`  ${name.padEnd(14)} p50 ${r.p50.toFixed(0).padStart(6)} µs  min ${r.min.toFixed(0).padStart(6)} µs  mean ${r.mean.toFixed(0).padStart(6)} µs  CPU ${r.cpu.toFixed(0).padStart(6)} µs/call (sys ${r.sys.toFixed(0)})`);
  row('egressVids()', time(() => fw.egressVids(), CALLS));
  row('nicVids()', time(() => fw.nicVids(), CALLS));
  row('vidEgress()', time(() => fw.vidEgress(), CALLS));
} finally {
  try { fw?.close(); } catch { /* keep cleaning */ }
  sb.cleanup();
}
