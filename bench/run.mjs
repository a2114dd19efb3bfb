#!/usr/bin/env node
// netagent benchmarks against the published approach, side by side in one
// run: `make bench` (or `node bench/run.mjs`; QUICK=1 for a short run).
// Results: bench/results/<timestamp>/{results.md,results.json,*.svg} and
// bench/results/latest.md. Needs root; everything it creates (namespaces,
// bpffs mounts, processes) is removed at the end, on Ctrl-C and on failure.
import { mkdirSync, writeFileSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { join, basename } from 'node:path';
import { cpus, totalmem, release } from 'node:os';
import { Sandbox, sh } from './lib/sandbox.mjs';
import { runProfile, footprint, idleCpu, SUBJECTS, NODE_FLOOR, netagentAvailable, ROOT } from './lib/controlplane.mjs';
import { runDataPlane } from './lib/dataplane.mjs';
import { barChart, scatterChart, table, fmt, ratio } from './lib/report.mjs';
import { summarize } from './lib/stats.mjs';

/** A net VM has a handful of links: the headline also shows the first events, with at most this many present. */
const FEW = 20;

const QUICK = process.env.QUICK === '1';
const CONFIG = QUICK
  ? { series: 40, bursts: [10, 100], loadedSeries: 20, burstTimeoutMs: 60_000, sizes: [64, 1500], targetSec: 0.15, reps: 1, startReps: 2 }
  : { series: 300, bursts: [10, 100, 1000], loadedSeries: 100, burstTimeoutMs: 120_000, sizes: [64, 1500], targetSec: 0.25, reps: 7, startReps: 7 };

const t0 = Date.now();
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const loadStart = loadavg();
const log = (m) => console.log(m);
const BENCH = join(ROOT, 'bench');

function preflight() {
  if (process.getuid() !== 0) throw new Error('bench: run as root (namespaces, XDP, bpffs)');
  for (const tool of ['ip', 'bridge', 'bpftool', 'xdp-loader', 'ethtool', 'nsenter', 'clang', 'cc', 'python3']) {
    try { sh('sh', ['-c', `command -v ${tool}`]); } catch { throw new Error(`bench: ${tool} is missing (make deps)`); }
  }
}

function compileBenchBpf(sb) {
  const out = sb.tmpdir();
  const multiarch = (() => { try { return sh('gcc', ['-print-multiarch']).trim(); } catch { return 'x86_64-linux-gnu'; } })();
  for (const f of readdirSync(join(BENCH, 'bpf')).filter((x) => x.endsWith('.c'))) {
    sh('clang', ['-O2', '-g', '-target', 'bpf', '-Wall', '-Werror', `-I/usr/include/${multiarch}`, `-I${join(BENCH, 'bpf')}`, '-c', join(BENCH, 'bpf', f), '-o', join(out, f.replace(/\.c$/, '.o'))]);
  }
  return out;
}

/** The C limit (bench/climit.c), built against Debian's libbpf-dev into the run's temp dir. */
function compileClimit(sb) {
  const out = join(sb.tmpdir(), 'climit');
  sh('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, join(BENCH, 'climit.c'), '-lbpf']);
  return out;
}

function machine() {
  const mem = Math.round(totalmem() / 2 ** 30);
  const cpu = cpus()[0]?.model ?? 'unknown';
  let distro = '';
  try { distro = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? ''; } catch { /* none */ }
  const pkg = (p) => { try { return sh('dpkg-query', ['-W', '-f=${Version}', p]).trim(); } catch { return '?'; } };
  let commit = '';
  try { commit = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).trim(); } catch { /* not a checkout */ }
  return {
    nproc: cpus().length, cpu, kernel: release(), memoryGiB: mem, node: process.version, distro,
    libbpf: pkg('libbpf1'), xdpTools: pkg('xdp-tools'), iproute2: pkg('iproute2'), commit,
  };
}

async function controlPlane(sb, pubObjDir, climit, notes) {
  const results = [];
  const haveAgent = netagentAvailable();
  if (!haveAgent) notes.push('netagent is not built (dist/agent/cli.js or build/bpf missing): control plane measured for the baselines only.');
  for (const profile of ['xdp-forwarder', 'router-routed']) {
    // The C limit loads netagent's BPF objects (build/bpf) in xdp-forwarder.
    const subjects = SUBJECTS.filter((s) => s.profiles.includes(profile) && (s.kind !== 'netagent' || haveAgent) && (s.kind !== 'c' || haveAgent || profile !== 'xdp-forwarder'));
    log(`control plane, profile ${profile}: ${subjects.map((s) => s.id).join(', ')} side by side`);
    const res = await runProfile(sb, subjects, profile, { ...CONFIG, pubObjDir, climit }, log);
    for (const r of res) if (r.error) notes.push(`${r.label} (${profile}) could not be measured: ${r.error}`);
    results.push(...res);
    // The kernel tears the dropped namespaces down in the background (a few
    // hundred ms for thousands of veths, under the RTNL lock): let it finish
    // before the next measurement.
    await new Promise((r) => setTimeout(r, 1500));
  }
  return results;
}

function cpMarkdown(cp) {
  const ms = (v) => (v === null || v === undefined ? 'n/a' : `${fmt(v)} ms`);
  const rows = cp.map((r) => {
    if (r.error) return [r.profile, r.label, 'failed', '', '', '', '', '', '', '', '', '', '', '', '', ''];
    const b = (n) => {
      const x = r.bursts?.find((y) => y.n === n);
      return x ? `${ms(x.allConfiguredMs)}${x.complete ? '' : ` (${x.configured}/${n})`}` : 'n/a';
    };
    const xdp = r.profile === 'xdp-forwarder' ? `${r.series.xdpAttached}/${r.series.n}` : '–';
    const loaded = r.loaded ? `${ms(r.loaded.p50)} / ${ms(r.loaded.p99)}` : 'n/a';
    const big = r.bursts?.at(-1);
    return [r.profile, r.label, r.startMs && !r.subject.startsWith('script') ? ms(r.startMs) : '–', r.routerLinkMs ? `${ms(r.routerLinkMs)}${r.routerLinkXdp ? '' : ' (no XDP)'}` : '–', ms(r.series.p50), ms(r.series.p90), ms(r.series.p99), xdp, b(10), b(100), b(1000), loaded,
      r.rssIdleKiB ? `${(r.rssIdleKiB / 1024).toFixed(1)} MiB` : '–',
      r.rssAfterKiB ? `${(r.rssAfterKiB / 1024).toFixed(1)} MiB (${r.linksAtRss} links)` : '–',
      `${us(r.series.cpuUs)} / ${us(r.loaded?.cpuUs)}`, big ? `${us(big.cpuUs)} (N = ${big.n})` : 'n/a'];
  });
  return table(['profile', 'subject', 'start→ready', 'router link', 'hotplug p50', 'p90', 'p99', 'XDP attached', 'all of 10', 'all of 100', 'all of 1000', `hotplug p50 / p99 with ${cp.find((r) => r.loaded)?.loaded.linksBefore ?? '…'} links present`, 'RSS idle', 'RSS after bursts', `CPU per hotplug (series / with ${cp.find((r) => r.loaded)?.loaded.linksBefore ?? '…'} links present)`, 'CPU per link, largest burst'], rows);
}

const us = (v) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : `${fmt(v)} µs`);
const mib = (kib) => (kib ? `${(kib / 1024).toFixed(1)} MiB` : 'n/a');
/** a / b as "12×" / "0.41×", or n/a. */
const times = (a, b) => {
  const v = ratio(a, b);
  return v === null ? 'n/a' : `${v >= 10 ? v.toFixed(0) : v.toPrecision(2)}×`;
};

/**
 * netagent against the physical limit (the C agent) and against the
 * published approach, per measure: the ratios are netagent / C (how many
 * times the limit's time, CPU or memory netagent needs) and netagent /
 * script (below 1×: netagent needs less).
 */
function limitMarkdown(cp, fp) {
  const get = (subject, profile) => cp.find((r) => r.subject === subject && r.profile === profile && !r.error);
  const rows = [];
  for (const profile of ['xdp-forwarder', 'router-routed']) {
    const a = get('netagent', profile), c = get('climit', profile), s = get(profile === 'xdp-forwarder' ? 'script-working' : 'script', profile);
    if (!a) continue;
    const few = (r) => summarize((r?.points ?? []).filter(([n]) => n <= FEW).map(([, v]) => v)).p50;
    const burst = (r, n) => r?.bursts?.find((b) => b.n === n && b.complete);
    const loadedN = a.loaded?.linksBefore ?? '…';
    const measures = [
      [`hotplug → configured, p50, at most ${FEW} links present`, few, ms],
      ['hotplug → configured, p50 over the series', (r) => r?.series.p50, ms],
      ['hotplug → configured, p99 over the series', (r) => r?.series.p99, ms],
      [`hotplug → configured, p50, with ${loadedN} links present`, (r) => r?.loaded?.p50, ms],
      [`hotplug → configured, p99, with ${loadedN} links present`, (r) => r?.loaded?.p99, ms],
      ...CONFIG.bursts.map((n) => [`${n} links at once, all configured`, (r) => burst(r, n)?.allConfiguredMs, ms]),
      ['CPU per hotplug (series)', (r) => r?.series.cpuUs, us],
      [`CPU per hotplug, with ${loadedN} links present`, (r) => r?.loaded?.cpuUs, us],
      ...CONFIG.bursts.slice(-1).map((n) => [`CPU per link, ${n} links at once`, (r) => burst(r, n)?.cpuUs ?? r?.bursts?.find((b) => b.n === n)?.cpuUs, us]),
      ['start → ready (this run, one start)', (r) => (r?.subject.startsWith('script') ? null : r?.startMs), ms],
      ['RSS idle', (r) => r?.rssIdleKiB, mib],
      ['RSS after the bursts', (r) => r?.rssAfterKiB, mib],
    ];
    for (const [name, f, show] of measures) {
      const va = f(a), vc = f(c), vs = f(s);
      rows.push([profile, name, show(va), show(vc), show(vs), times(va, vc), times(va, vs)]);
    }
  }
  const main = table(['profile', 'measure', 'netagent', 'C limit', 'published approach', 'netagent / C', 'netagent / script'], rows);
  if (!fp) return main;
  const fa = fp.find((r) => r.subject === 'netagent'), fc = fp.find((r) => r.subject === 'climit'), fn = fp.find((r) => r.subject === 'node-floor');
  const frow = (r) => [r.label, `${ms(r.start.p50)} (${ms(r.start.min)} – ${ms(r.start.max)})`, mib(r.rss.p50), times(fa?.start.p50, r.start.p50), times(fa?.rss.p50, r.rss.p50)];
  const foot = table(['process', 'start → ready, p50 (min – max)', 'idle RSS, p50', 'netagent / this (start)', 'netagent / this (RSS)'], [fa, fc, fn].filter(Boolean).map(frow));
  return `${main}

Start-up and memory, ${fa?.startMs.length ?? 0} starts each in a fresh namespace (xdp-forwarder: netagent and the C limit both load the XDP objects; a bare \`node -e\` that only stays alive is the floor of any Node process):

${foot}`;
}
const ms = (v) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : `${fmt(v)} ms`);

function dpMarkdown(dp) {
  const dir = { p2r: 'physical→router', r2p: 'router→physical' };
  const wire = table(['path', 'frame', 'forwarder', 'mode', 'delivered Mpps', 'runs (pps)'],
    dp.wire.map((w) => [dir[w.dir], `${w.size} B`, w.dut, w.mode === 'stack' ? 'Linux bridge' : w.mode, fmt(w.deliveredPps / 1e6), w.runs.join(', ')]));
  const inj = table(['path', 'frame', 'forwarder', 'kernel ns/frame', 'delivered Mpps'],
    dp.injected.map((w) => [dir[w.dir], `${w.size} B`, w.dut === 'bridge' ? 'Linux bridge (XDP_PASS → stack)' : w.dut, String(w.kernelNsPerFrame), fmt(w.deliveredPps / 1e6)]));
  return { wire, inj };
}

function headline(cp, dp) {
  const lines = [];
  const get = (subject, profile) => cp.find((r) => r.subject === subject && r.profile === profile && !r.error);
  const agentX = get('netagent', 'xdp-forwarder'), agentR = get('netagent', 'router-routed');
  const pub = get('script-published', 'xdp-forwarder'), work = get('script-working', 'xdp-forwarder'), scr = get('script', 'router-routed');
  const burst = (r, n) => r?.bursts?.find((b) => b.n === n && b.complete)?.allConfiguredMs;
  const behind = [];
  const x = (v) => {
    if (!v) return 'n/a';
    if (v < 1) behind.push(v);
    return `${v >= 10 ? v.toFixed(0) : v.toFixed(v < 1 ? 2 : 1)}×${v < 1 ? ' **(behind)**' : ''}`;
  };
  const few = (r) => summarize((r?.points ?? []).filter(([n]) => n <= FEW).map(([, ms]) => ms)).p50;
  if (agentX && work && few(agentX) && few(work)) {
    lines.push(`| hotplug → configured, p50, at most ${FEW} links present (xdp-forwarder) | ${fmt(few(agentX))} ms | ${fmt(few(work))} ms (working loader) | ${x(ratio(few(work), few(agentX)))} |`);
  }
  if (agentX && work) {
    lines.push(`| hotplug → configured, p50 over the whole series (xdp-forwarder) | ${fmt(agentX.series.p50)} ms | ${fmt(work.series.p50)} ms (working loader) | ${x(ratio(work.series.p50, agentX.series.p50))} |`);
    lines.push(`| hotplug → configured, p99 over the whole series (xdp-forwarder) | ${fmt(agentX.series.p99)} ms | ${fmt(work.series.p99)} ms (working loader) | ${x(ratio(work.series.p99, agentX.series.p99))} |`);
  }
  if (agentX?.loaded && work?.loaded) lines.push(`| hotplug → configured, p50, with ${agentX.loaded.linksBefore} links present (xdp-forwarder) | ${fmt(agentX.loaded.p50)} ms | ${fmt(work.loaded.p50)} ms (working loader) | ${x(ratio(work.loaded.p50, agentX.loaded.p50))} |`);
  if (agentX && pub) lines.push(`| hotplug, p50, vs the script as published (its XDP attach fails) | ${fmt(agentX.series.p50)} ms | ${fmt(pub.series.p50)} ms (XDP on ${pub.series.xdpAttached}/${pub.series.n}) | ${x(ratio(pub.series.p50, agentX.series.p50))} |`);
  for (const n of CONFIG.bursts) {
    if (agentX && work) lines.push(`| ${n} links at once, all configured (xdp-forwarder) | ${fmt(burst(agentX, n))} ms | ${fmt(burst(work, n))} ms | ${x(ratio(burst(work, n), burst(agentX, n)))} |`);
  }
  if (agentR && scr) {
    if (few(agentR) && few(scr)) lines.push(`| hotplug → configured, p50, at most ${FEW} links present (router-routed) | ${fmt(few(agentR))} ms | ${fmt(few(scr))} ms | ${x(ratio(few(scr), few(agentR)))} |`);
    lines.push(`| hotplug → configured, p50 (router-routed) | ${fmt(agentR.series.p50)} ms | ${fmt(scr.series.p50)} ms | ${x(ratio(scr.series.p50, agentR.series.p50))} |`);
    if (agentR.loaded && scr.loaded) lines.push(`| hotplug → configured, p50, with ${agentR.loaded.linksBefore} links present (router-routed) | ${fmt(agentR.loaded.p50)} ms | ${fmt(scr.loaded.p50)} ms | ${x(ratio(scr.loaded.p50, agentR.loaded.p50))} |`);
    const n = CONFIG.bursts.at(-1);
    lines.push(`| ${n} links at once (router-routed) | ${fmt(burst(agentR, n))} ms | ${fmt(burst(scr, n))} ms | ${x(ratio(burst(scr, n), burst(agentR, n)))} |`);
  }
  const cpLines = lines.splice(0);
  const w = (dut, mode, size, d) => dp?.wire.find((r) => r.dut === dut && r.mode === mode && r.size === size && r.dir === d)?.deliveredPps;
  const inj = (dut, size, d) => dp?.injected.find((r) => r.dut === dut && r.size === size && r.dir === d)?.kernelNsPerFrame;
  const xdpDut = dp?.wire.some((r) => r.dut === 'netagent') ? 'netagent' : 'published';
  for (const size of CONFIG.sizes) {
    for (const d of ['p2r', 'r2p']) {
      const name = d === 'p2r' ? 'physical→router' : 'router→physical';
      for (const mode of ['native', 'skb']) {
        const a = w(xdpDut, mode, size, d), b = w('bridge', 'stack', size, d);
        if (a && b) lines.push(`| ${name}, ${size} B, XDP ${mode} vs bridge (Mpps) | ${fmt(a / 1e6)} | ${fmt(b / 1e6)} | ${x(ratio(a, b))} |`);
      }
      const ia = inj(xdpDut, size, d), ib = inj('bridge', size, d);
      if (ia && ib) lines.push(`| ${name}, ${size} B, ns per frame (live test run) | ${ia} ns | ${ib} ns | ${x(ratio(ib, ia))} |`);
    }
  }
  return { cp: cpLines, dp: lines, xdpDut, behind: behind.length };
}

function charts(cp, dp) {
  const out = {};
  const ok = cp.filter((r) => !r.error);
  out['hotplug-latency.svg'] = barChart({
    title: 'Hotplug: link created → configured (netlink observer)',
    unit: 'milliseconds, lower is better',
    groups: ok.map((r) => ({ label: `${r.subject} (${r.profile})`, bars: [{ series: 'p50', value: r.series.p50 }, { series: 'p90', value: r.series.p90 }, { series: 'p99', value: r.series.p99 }, { series: 'p50 with the burst links present', value: r.loaded?.p50 ?? null }] })),
    note: `${CONFIG.series} single-link events per subject, then ${CONFIG.loadedSeries} more once ${CONFIG.bursts.reduce((a, b) => a + b, 0)} burst links exist`,
  });
  for (const profile of ['xdp-forwarder', 'router-routed']) {
    const rs = ok.filter((r) => r.profile === profile && r.points?.length);
    if (!rs.length) continue;
    out[`hotplug-vs-links-${profile}.svg`] = scatterChart({
      title: `Hotplug latency against links already present (${profile})`,
      xLabel: 'links present when the new one appears', yLabel: 'milliseconds, link created → configured',
      series: rs.map((r) => ({ name: r.subject, points: r.points })),
      note: 'left: the single-event series; right: the same after the bursts. Open circles: clipped at the top.',
    });
  }
  out['burst.svg'] = barChart({
    title: 'N links created at once (one ip -batch): start → last one configured',
    unit: 'milliseconds, lower is better',
    groups: CONFIG.bursts.map((n) => ({ label: `N = ${n}`, bars: ok.map((r) => ({ series: `${r.subject} (${r.profile})`, value: r.bursts?.find((b) => b.n === n && b.complete)?.allConfiguredMs ?? null })) })),
  });
  out['cpu.svg'] = barChart({
    title: 'CPU per hotplug (the subject and everything it forks, from /proc)',
    unit: 'microseconds of CPU per link, lower is better',
    groups: ok.map((r) => ({ label: `${r.subject} (${r.profile})`, bars: [{ series: 'single events', value: r.series.cpuUs ?? null }, { series: 'single events with the burst links present', value: r.loaded?.cpuUs ?? null }, { series: `per link, ${CONFIG.bursts.at(-1)} at once`, value: r.bursts?.find((b) => b.n === CONFIG.bursts.at(-1))?.cpuUs ?? null }] })),
  });
  if (dp) {
    const dir = { p2r: 'phys→router', r2p: 'router→phys' };
    const keys = [...new Set(dp.wire.map((w) => `${w.dut}/${w.mode}`))];
    out['dataplane.svg'] = barChart({
      title: 'Frames forwarded between veths (wire: generator → DUT → counting sink)',
      unit: 'million frames per second delivered, higher is better',
      groups: CONFIG.sizes.flatMap((size) => ['p2r', 'r2p'].map((d) => ({
        label: `${dir[d]}, ${size} B`,
        bars: keys.map((k) => ({ series: k === 'bridge/stack' ? 'Linux bridge' : `XDP ${k}`, value: (dp.wire.find((w) => `${w.dut}/${w.mode}` === k && w.size === size && w.dir === d)?.deliveredPps ?? 0) / 1e6 })),
      }))),
      note: 'generator, DUT and sink share the same 2 CPUs; compare within this run only',
    });
    out['ns-per-frame.svg'] = barChart({
      title: 'Cost per frame at the DUT ingress (BPF_PROG_TEST_RUN, live frames)',
      unit: 'nanoseconds per frame as the kernel reports, lower is better',
      groups: CONFIG.sizes.flatMap((size) => ['p2r', 'r2p'].map((d) => ({
        label: `${dir[d]}, ${size} B`,
        bars: [...new Set(dp.injected.map((w) => w.dut))].map((k) => ({ series: k === 'bridge' ? 'Linux bridge (XDP_PASS → stack)' : `XDP ${k}`, value: dp.injected.find((w) => w.dut === k && w.size === size && w.dir === d)?.kernelNsPerFrame ?? null })),
      }))),
    });
  }
  return out;
}

async function main() {
  preflight();
  const sb = new Sandbox();
  const notes = [];
  const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, 'Z');
  const outDir = join(BENCH, 'results', `${stamp}${QUICK ? '-quick' : ''}`);
  let cp = [], dp = null, fp = null;
  try {
    const objDir = compileBenchBpf(sb);
    const climit = compileClimit(sb);
    log(`bench: ${QUICK ? 'QUICK run' : 'full run'}, results in ${outDir}`);
    if (netagentAvailable()) {
      log(`start → ready and idle RSS, ${CONFIG.startReps} starts each`);
      fp = await footprint(sb, [...SUBJECTS.filter((s) => s.kind === 'netagent' || s.kind === 'c'), NODE_FLOOR], { reps: CONFIG.startReps, climit }, log);
    }
    cp = await controlPlane(sb, objDir, climit, notes);
    if (netagentAvailable()) {
      log('idle CPU with links present');
      // Settled = no rtnetlink event for 2 s (with 1000 links the kernel's linkwatch
      // announces them once more for ~20 s after ready); 60 s = one full re-dump.
      const idle = await idleCpu(sb, QUICK
        ? { links: [20], settleMs: 2000, quietMs: 2000, maxSettleMs: 30_000, seconds: 5 }
        : { links: [20, 1000], settleMs: 5000, quietMs: 2000, maxSettleMs: 60_000, seconds: 60 }, log);
      for (const r of idle) {
        notes.push(r.pct === null
          ? `idle CPU, netagent ${r.profile} with ${r.links} links: not measured (${r.error})`
          : `idle CPU, netagent ${r.profile} with ${r.links} links present: ${r.pct.toFixed(2)}% of one core over ${r.seconds} s once no rtnetlink event came for 2 s (${r.quiet ? `after ${(r.settledMs / 1000).toFixed(0)} s` : `not quiet after ${(r.settledMs / 1000).toFixed(0)} s`}; target: under 0.5%; the 2 s / 4 s read-backs of what has no event${r.seconds >= 60 ? ' and one 60 s full re-dump' : ''})`);
      }
    }
    log('data plane');
    try {
      const bpfDir = join(ROOT, 'build', 'bpf');
      const haveFw = existsSync(join(ROOT, 'dist', 'agent', 'bpf', 'forwarder.js')) && existsSync(join(bpfDir, 'physical.o'));
      dp = await runDataPlane(sb, { ...CONFIG, objDir, netagentBpfDir: haveFw ? bpfDir : null }, log);
      notes.push(...dp.notes);
    } catch (e) {
      log(`  data plane failed: ${e.stack ?? e}`);
      notes.push(`data plane could not be measured: ${String(e.message ?? e).split('\n')[0]}`);
    }
  } finally {
    sb.cleanup();
  }
  const m = machine();
  m.loadavg = { start: loadStart, end: loadavg() };
  const data = { machine: m, config: CONFIG, quick: QUICK, seconds: Math.round((Date.now() - t0) / 1000), controlPlane: cp, footprint: fp, dataPlane: dp, notes };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'results.json'), JSON.stringify(data, null, 2) + '\n');
  render(outDir, data);
}

/**
 * Writes the charts, results.md and latest(.md) of a run from its data;
 * `node bench/run.mjs --render DIR` redoes it from DIR/results.json.
 */
function render(outDir, data) {
  const { machine: m, controlPlane: cp, dataPlane: dp, notes, quick, footprint: fp } = data;
  Object.assign(CONFIG, data.config);
  const stamp = outDir.split('/').pop().replace(/-quick$/, '');
  const secs = data.seconds;
  const h = headline(cp, dp);
  const svgs = charts(cp, dp);
  for (const [name, svg] of Object.entries(svgs)) writeFileSync(join(outDir, name), svg);
  const md = (linkPrefix) => {
    const dpT = dp ? dpMarkdown(dp) : null;
    return `# netagent benchmark ${quick ? '(QUICK run: fewer events, shorter runs) ' : ''}— ${stamp}

Machine: ${m.nproc} CPUs (${m.cpu}), ${m.memoryGiB} GiB, kernel ${m.kernel}, ${m.distro}, node ${m.node},
libbpf ${m.libbpf}, xdp-tools ${m.xdpTools}, iproute2 ${m.iproute2}; commit ${m.commit}. Whole run: ${secs} s.
Load average (1, 5, 15 min) at start ${m.loadavg.start}, at end ${m.loadavg.end}: anything else running on
the machine adds noise, which is why every comparison here is made within one run, with the subjects interleaved.

## Headline ratios

Control plane (× = how many times faster netagent is; below 1× it is slower, marked **(behind)**):

| measure | netagent | published approach | netagent advantage |
| --- | --- | --- | --- |
${h.cp.join('\n') || '| (netagent not measured) | | | |'}

${cp.some((r) => r.subject === 'climit' && !r.error) ? `Against the physical limit: **C limit** = \`bench/climit.c\`, a minimal C agent that makes only
the system calls a new link needs (xdp-forwarder: one \`bpf()\` map update and one RTM_NEWLINK
carrying up, promiscuous and the XDP program, netagent's own objects; router-routed: RTM_NEWADDR,
RTM_NEWLINK up, RTM_NEWROUTE), pipelined (all waiting events read, all requests sent, then the
ACKs read). No config, no state, no logs, no nftables: the floor, not a competitor. "published
approach" is the working loader in xdp-forwarder. CPU = utime + stime of the subject's process
group, reaped children included (cutime + cstime), from /proc before and after each batch, per link.

${limitMarkdown(cp, fp)}

` : ''}Data plane (XDP = ${h.xdpDut === 'netagent' ? "netagent's programs" : "the published design's programs (netagent's were not available)"}):

| measure | XDP | Linux bridge | XDP advantage |
| --- | --- | --- | --- |
${h.dp.join('\n') || '| (not measured) | | | |'}

## Control plane

The same observer (a process of ours on rtnetlink in the namespace under test,
\`bench/lib/linkwatch.py\`) creates each single link itself (RTM_NEWLINK, a veth
pair whose peer goes to another namespace), timing it from the moment it sends
the request (so the kernel's own creation time, median
${fmt(cp.find((r) => r.series?.creationP50)?.series.creationP50)} ms, is part of every latency), and timestamps
when the link is configured: up, promiscuous for the router link, an XDP program attached
(xdp-forwarder; XDP attach sends no netlink event, so once the rest holds the
observer polls RTM_GETLINK every 0.5 ms), or up + 169.254.0.1/32 + the host
route 100.64.AA.BB/32 (router-routed). Links are veth pairs created in the
namespace under test (the peer elsewhere). xdp-forwarder: the router link
first, then ${CONFIG.series} physical NICs one at a time, then bursts made by one
\`ip -batch\` (timed from just before \`ip -batch\` starts to the last link
configured).
Then ${CONFIG.loadedSeries} more single events with all those links present, to see whether
one hotplug gets dearer as links accumulate.
router-routed: client links (02:01:00:00:AA:BB). The subjects of a profile run
side by side, each in namespaces of its own, single events interleaved
(A, B, C, A, B, C, …), so load from elsewhere hits them alike.

Subjects: **published script** = \`ip monitor link\` feeding a shell loop that
runs, per link, what the published mdev script runs (\`xdp-loader load -m skb
-p PIN DEV OBJ\`, \`ip link set promisc on\`, set-router-iface via \`bpftool map
update pinned …/router_iface\`, \`ip link set up\`; router profiles: \`ip addr
add\`, \`ip link set up\`, \`ip route add\`). With Debian 12's xdp-tools
(libbpf ${m.libbpf}) \`xdp-loader\` fails for every object after the first
(the pinned-DEVMAP bug: EINVAL), so the published script never gets XDP onto a
physical NIC: its row times what it can do (the failing loader plus the \`ip\`
steps). **working loader** = the same steps with the programs loaded once and
attached per link by \`ip link set DEV xdpgeneric pinned …\`: what the script
needs to work here, and the fair comparison.

${cpMarkdown(cp)}

${linkPrefix ? `![hotplug latency](${linkPrefix}hotplug-latency.svg)\n\n![bursts](${linkPrefix}burst.svg)\n\n![CPU per hotplug](${linkPrefix}cpu.svg)\n\n${['xdp-forwarder', 'router-routed'].filter((p) => existsSync(join(outDir, `hotplug-vs-links-${p}.svg`))).map((p) => `![hotplug latency against links present, ${p}](${linkPrefix}hotplug-vs-links-${p}.svg)`).join('\n\n')}` : ''}

## Data plane

${dp ? `Topology: \`g0 ─veth─ p0 [DUT namespace] r0 ─veth─ rr0\`; p0 is the physical
NIC, r0 the router link (02:01:…). physical→router: frames enter p0 and must
leave rr0; router→physical: frames enter r0 (802.1Q-tagged with p0's ifindex for
XDP, untagged for the bridge) and must leave g0. The receivers g0 and rr0 run an
XDP program that counts and drops. No pktgen on this kernel, so:

- **wire**: a one-line XDP_TX program run with \`BPF_PROG_TEST_RUN\` +
  \`BPF_F_TEST_XDP_LIVE_FRAMES\` on g0/rr0 puts real frames on the veth; the
  DUT processes them as received frames: XDP attached in skb (generic) or native
  mode, or a Linux bridge (br0 with p0 and r0, static FDB). For skb mode and the
  bridge, GRO is on at p0/r0 (a veth only accepts its peer's XDP frames with GRO
  or a native program). "Delivered Mpps" = frames counted at the sink / wall
  time of the generator run. A veth schedules its peer's receive processing on
  the sending CPU, so generator, DUT and sink all run on the generator's CPU
  (in its softirq): each number is one CPU doing all three, the DUT paces the
  generator (offered = delivered, nothing dropped), and the ratios between
  rows are the point, not the absolute values. Median of ${CONFIG.reps} run(s);
  all runs listed.
- **injected**: the DUT's program itself is run with live frames at p0/r0 (for
  the bridge: an XDP_PASS program, so each frame enters the stack at p0/r0 and
  the bridge forwards it). "kernel ns/frame" is the test run's own duration per
  repetition: program + redirect + hand-over to the peer (bridge: skb
  allocation + bridge + veth transmit). Every row includes the same small
  overhead of our injector (it restores the 18 header bytes that a live run
  leaves modified and tail-calls the program under test): the injector alone,
  tail-calling an XDP_DROP program, costs ${dp.injectorNs ?? 'n/a'} ns per frame.

Wire:

${dpT.wire}

Injected:

${dpT.inj}

${linkPrefix ? `![data plane](${linkPrefix}dataplane.svg)\n\n![ns per frame](${linkPrefix}ns-per-frame.svg)` : ''}` : 'Not measured (see notes).'}

## Notes

${notes.length ? notes.map((n) => `- ${n}`).join('\n') : '- none'}
`;
  };
  writeFileSync(join(outDir, 'results.md'), md('./'));
  const rel = basename(outDir);
  // A QUICK run does not replace the last full run's summary.
  const latest = quick ? 'latest-quick.md' : 'latest.md';
  writeFileSync(join(BENCH, 'results', latest), md(`${rel}/`));
  log(`bench: the run took ${secs} s; wrote ${join(outDir, 'results.md')}, bench/results/${latest}`);
}


if (process.argv[2] === '--render') {
  // Re-render a finished run (charts, Markdown) from its results.json.
  const dir = process.argv[3];
  render(dir, JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')));
} else {
  main().catch((e) => { console.error(e.stack ?? e); process.exitCode = 1; });
}
