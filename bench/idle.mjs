#!/usr/bin/env node
// The idle-CPU part of `make bench` alone (bench/lib/controlplane.mjs
// idleCpu: netagent started with N links present, its process group's CPU
// over IDLE_SECONDS (60) once settled: SETTLE_MS (5000) after ready and
// QUIET_MS (2000) without rtnetlink events; QUIET_MS=0 SETTLE_MS=5000
// IDLE_SECONDS=20 is how make bench measured before):
// `node bench/idle.mjs [PROFILE] [N ...]`, default xdp-forwarder with 1000
// links. REPS=3 repeats each measurement (a fresh namespace and agent each
// time). Root, after `make build`; run it alone on the machine (2 cores:
// anything else running shows up in it).
import { readFileSync } from 'node:fs';
import { Sandbox, sh } from './lib/sandbox.mjs';
import { idleCpu, netagentAvailable, ROOT } from './lib/controlplane.mjs';

const [profile = 'xdp-forwarder', ...ns] = process.argv.slice(2);
const links = ns.length ? ns.map(Number) : [1000];
const reps = Number(process.env.REPS ?? 1);
const settleMs = Number(process.env.SETTLE_MS ?? 5000), seconds = Number(process.env.IDLE_SECONDS ?? 60);
const quietMs = Number(process.env.QUIET_MS ?? 2000); // 0: a fixed settleMs (what make bench did before)
if (!netagentAvailable()) throw new Error('idle: build netagent first (make build)');
let commit = '';
try { commit = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).trim(); } catch { /* not a checkout */ }
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.log(`idle CPU: ${profile}, links ${links.join(', ')}, ${reps} rep(s), settle ${settleMs} ms${quietMs ? ` + until ${quietMs} ms without rtnetlink events` : ''}, ${seconds} s each; commit ${commit}, ${new Date().toISOString()}, load ${loadavg()}`);
const sb = new Sandbox();
const all = [];
try {
  for (let r = 0; r < reps; r++) {
    const res = await idleCpu(sb, { profiles: [profile], links, settleMs, quietMs, seconds }, (m) => console.log(m));
    for (const x of res) if (x.error) console.log(`  ${x.links} links: not measured (${x.error})`);
    all.push(...res);
  }
} finally {
  sb.cleanup();
}
for (const n of links) {
  const pcts = all.filter((x) => x.links === n && x.pct !== null).map((x) => x.pct);
  if (pcts.length) console.log(`${profile}, ${n} links: ${pcts.map((p) => p.toFixed(2)).join(' / ')} % of one core (load at end ${loadavg()})`);
}
