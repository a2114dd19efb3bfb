// Control-plane benchmark: netagent against the published approach (an
// event-driven script running the published mdev steps), same topology,
// same observer (bench/lib/linkwatch.py), same run.
import { createInterface } from 'node:readline';
import { writeFileSync, readFileSync, openSync, closeSync, existsSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ip, inNs, uniq } from './sandbox.mjs';
import { loadObject, pin } from './libbpf.mjs';
import { summarize } from './stats.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(HERE, '..', '..');

/** Observer events (JSON lines) with waiting by link name. */
class Watcher {
  created = new Map();
  finished = new Map(); // name -> configured/timeout event
  overruns = 0;
  acks = []; // ms from our RTM_NEWLINK request to the kernel's ack (veth pair creation)
  #waiters = [];

  constructor(sb, ns, prefix, profile, xdp) {
    this.child = sb.spawn(inNs(ns, ['python3', join(HERE, 'linkwatch.py'), '--prefix', prefix, '--profile', profile, '--xdp', xdp]));
    this.child.stderr.on('data', (d) => process.stderr.write(`linkwatch: ${d}`));
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (c) => reject(new Error(`linkwatch exited (${c}) before ready`)));
      createInterface({ input: this.child.stdout }).on('line', (line) => {
        const ev = JSON.parse(line);
        if (ev.ev === 'ready') resolve();
        else if (ev.ev === 'created') this.created.set(ev.name, ev);
        else if (ev.ev === 'configured' || ev.ev === 'timeout' || ev.ev === 'error') this.finished.set(ev.name, ev);
        else if (ev.ev === 'overrun') this.overruns += 1;
        else if (ev.ev === 'ack') this.acks.push(ev.ns / 1e6);
        this.#waiters = this.#waiters.filter((w) => !w());
      });
    });
  }

  /** Resolves once every name has finished (configured or timed out), or after timeoutMs. */
  waitAll(names, timeoutMs) {
    return new Promise((resolve) => {
      let timer;
      const check = () => {
        if (names.every((n) => this.finished.has(n))) { clearTimeout(timer); resolve(true); return true; }
        return false;
      };
      if (check()) return;
      timer = setTimeout(() => { this.#waiters = this.#waiters.filter((w) => w !== check); resolve(false); }, timeoutMs);
      this.#waiters.push(check);
    });
  }

  /** Latency (ms) created -> configured of one link, or null. */
  latency(name) {
    const c = this.created.get(name), f = this.finished.get(name);
    if (!c || !f || f.ev !== 'configured') return null;
    return (f.t - c.t) / 1e6;
  }

  /** The watcher creates a veth pair itself and times it from the kernel's ack. */
  add(name, mac, peer, peerNs) { this.child.stdin.write(`add ${name} ${mac} ${peer} ${peerNs}\n`); }

  close() { this.child.stdin.end(); }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ; 100 on every Linux that matters). */
const TICK_NS = 1e9 / 100;

/** On-CPU ns of the live threads of process `pid` (schedstat: ns, exact), or null. */
function liveNs(pid) {
  try {
    let ns = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    return ns;
  } catch { return null; }
}

/**
 * CPU time (ns) a subject has used so far: every process of its process
 * group (the subject and what it forks; sb.spawn makes the group): utime +
 * stime + cutime + cstime from /proc/PID/stat, so children it has reaped
 * (ip, bpftool, nft) count too. The live part comes from schedstat when the
 * kernel has it: utime/stime are in clock ticks (10 ms), too coarse for a
 * few hundred events of a few µs each. Read before and after a batch.
 */
export function groupCpuNs(pgid) {
  let total = 0;
  for (const d of readdirSync('/proc')) {
    if (d.charCodeAt(0) > 57) continue; // not a pid
    let stat;
    try { stat = readFileSync(`/proc/${d}/stat`, 'utf8'); } catch { continue; }
    // Fields after "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) !== pgid) continue;
    const live = liveNs(d);
    total += (live ?? (Number(f[11]) + Number(f[12])) * TICK_NS) + (Number(f[13]) + Number(f[14])) * TICK_NS;
  }
  return total;
}

/** A MAC for link number i of a kind. */
function macFor(kind, i) {
  const hi = (i >> 8) & 0xff, lo = i & 0xff;
  const h = (x) => x.toString(16).padStart(2, '0');
  // physical: locally administered, not 02:01 / 02:00 / 0a:b3:ec; client: 02:01:00:00:AA:BB (100.64.AA.BB)
  return kind === 'physical' ? `52:54:00:${h((i >> 16) & 0xff)}:${h(hi)}:${h(lo)}` : `02:01:00:00:${h(hi + 1)}:${h(lo)}`;
}

/**
 * The subject configures links in namespace `ns`; returns {child, startMs, stop()}.
 */
async function startSubject(sb, subject, ctx) {
  const { ns, pinDir, profile, tmp } = ctx;
  if (subject.kind === 'script') {
    const t0 = process.hrtime.bigint();
    const child = sb.spawn(inNs(ns, ['bash', join(HERE, 'hotplug-script.sh'), profile, subject.loader, pinDir, ctx.pubObjDir, ctx.prefix]));
    const failures = [];
    await new Promise((resolve, reject) => {
      child.once('exit', (c) => reject(new Error(`hotplug script exited (${c})`)));
      createInterface({ input: child.stdout }).on('line', (l) => {
        if (l === 'ready') resolve();
        else if (l.startsWith('failed ')) failures.push(l);
      });
    });
    child.stderr.on('data', () => {});
    return { child, startMs: Number(process.hrtime.bigint() - t0) / 1e6, failures, pid: child.pid };
  }
  // netagent, the C limit and the bare node: readiness is a newline on fd 3.
  let argv, sock;
  if (subject.kind === 'c') {
    argv = profile === 'xdp-forwarder' ? [ctx.climit, profile, pinDir, join(ROOT, 'build', 'bpf'), '3'] : [ctx.climit, profile, '3'];
  } else if (subject.kind === 'node') {
    // The floor for any Node process: start, say ready, stay alive.
    argv = [process.execPath, '-e', "require('fs').writeSync(3, '\\n'); setInterval(() => {}, 1 << 30);"];
  } else {
    sock = join(tmp, `${uniq('s')}.sock`);
    argv = [join(ROOT, 'bin', 'netagent'), 'run', '--pin-dir', pinDir, '--socket', sock, '--notify-fd', '3'];
    if (profile !== 'xdp-forwarder') {
      const cfg = join(tmp, `${uniq('cfg')}.json`);
      writeFileSync(cfg, JSON.stringify({ profile }));
      argv.push('--config', cfg);
    }
  }
  const logPath = join(tmp, `${subject.kind}-${profile}.log`);
  const logFd = openSync(logPath, 'a');
  const t0 = process.hrtime.bigint();
  const child = sb.spawn(inNs(ns, argv), { stdio: ['ignore', logFd, logFd, 'pipe'] });
  closeSync(logFd);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${subject.id} not ready after 30 s (log: ${logPath})`)), 30_000);
    child.once('exit', (c) => { clearTimeout(t); reject(new Error(`${subject.id} exited (${c}) before ready; log:\n${tail(logPath)}`)); });
    child.stdio[3].on('data', (d) => { if (d.includes(10)) { clearTimeout(t); resolve(); } });
  });
  const startMs = Number(process.hrtime.bigint() - t0) / 1e6;
  return { child, startMs, failures: [], pid: child.pid, sock, logPath };
}

/** The `err` of the last JSON log line that has one (pino), else the last line. */
function lastError(path) {
  const lines = tail(path).split('\n').filter(Boolean);
  for (const l of lines.reverse()) {
    try { const j = JSON.parse(l); if (j.err) return `${j.link ? `${j.link}: ` : ''}${typeof j.err === 'string' ? j.err : j.err.message ?? JSON.stringify(j.err)}`; } catch { /* not JSON */ }
  }
  return lines[0] ?? '(empty log)';
}

function tail(path) {
  try { return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n'); } catch { return '(no log)'; }
}

/**
 * One subject on one profile in fresh namespaces: start() (subject, observer,
 * the router link), single() (one hotplug event), burst(n), finish().
 * runProfile() interleaves the subjects of a profile event by event, so a
 * load spike from elsewhere on the machine hits them all alike.
 */
export class Scenario {
  constructor(sb, subject, profile, opts, log) {
    Object.assign(this, { sb, subject, profile, opts, log });
    this.res = { subject: subject.id, profile, label: subject.label, notes: [] };
    this.count = 0;
    this.lat = [];
    this.failed = 0;
    this.xdpSeen = 0;
    this.kind = profile === 'xdp-forwarder' ? 'physical' : 'client';
    this.dead = false;
  }

  mkName() { return `h${(this.count++).toString(36)}`; }
  linkAdd(name, mac) { return `link add name ${name} address ${mac} type veth peer name p${name} netns ${this.peers}`; }

  async start() {
    const { sb, subject, profile, opts } = this;
    this.ns = sb.netns('bcd');
    this.peers = sb.netns('bcp');
    this.pinDir = sb.bpffs();
    this.tmp = sb.tmpdir();
    if (subject.kind === 'script' && subject.loader === 'pinned' && profile === 'xdp-forwarder') {
      // What the script needs on Debian 12: both programs loaded once, the
      // DEVMAP reused explicitly, programs pinned for `ip link set ... pinned`.
      const phys = loadObject(join(opts.pubObjDir, 'pub_physical.o'), { pinRoot: this.pinDir });
      pin(phys.progFd('physical'), join(this.pinDir, 'prog_physical'));
      const rout = loadObject(join(opts.pubObjDir, 'pub_router.o'), { reuse: { router_iface: join(this.pinDir, 'router_iface') } });
      pin(rout.progFd('router'), join(this.pinDir, 'prog_router'));
      phys.close(); rout.close();
    }
    const xdpMode = subject.kind === 'script' && subject.loader === 'xdp-loader' ? 'observe' : 'require';
    this.watcher = new Watcher(sb, this.ns, 'h', profile, xdpMode);
    await this.watcher.ready;
    this.subj = await startSubject(sb, subject, { ns: this.ns, pinDir: this.pinDir, profile, tmp: this.tmp, prefix: 'h', pubObjDir: opts.pubObjDir, climit: opts.climit });
    this.res.startMs = this.subj.startMs;
    await sleep(300);
    if (subject.kind !== 'script') this.res.rssIdleKiB = rssKiB(this.subj.pid);
    // The router link first (xdp-forwarder), as at boot.
    if (profile === 'xdp-forwarder') {
      const name = this.mkName();
      ip(this.ns, ...this.linkAdd(name, '02:01:00:00:00:01').split(' '));
      await this.watcher.waitAll([name], 10_000);
      this.res.routerLinkMs = this.watcher.latency(name);
      this.res.routerLinkXdp = this.watcher.finished.get(name)?.xdp ?? false;
    }
  }

  async single() {
    const { watcher } = this;
    this.cpu0 ??= groupCpuNs(this.subj.pid);
    const name = this.mkName();
    watcher.add(name, macFor(this.kind, this.count), `p${name}`, this.peers);
    const ok = await watcher.waitAll([name], 5_000);
    const l = watcher.latency(name);
    if (!ok || l === null) this.failed += 1; else this.lat.push(l);
    if (l !== null) (this.res.points ??= []).push([this.count - 1, Math.round(l * 1000) / 1000]); // [links present before, ms]
    if (watcher.finished.get(name)?.xdp) this.xdpSeen += 1;
    if (this.failed >= 3 && this.lat.length === 0) {
      // Nothing gets configured: do not spend 10 s per event finding that out again.
      throw new Error(`the first ${this.failed} links were never seen configured${this.subj.logPath ? `; its last error: ${lastError(this.subj.logPath)}` : ''}`);
    }
  }

  /** Closes a series of single events as res[key]; the next series starts afresh. */
  seriesDone(key = 'series') {
    const n = this.lat.length + this.failed;
    const linksBefore = this.count - n;
    // CPU over the whole series (the 20 ms gaps included: an idle subject
    // should use nothing then), per event, in µs.
    const cpuUs = this.cpu0 === undefined || !n ? null : (groupCpuNs(this.subj.pid) - this.cpu0) / n / 1e3;
    this.cpu0 = undefined;
    this.res[key] = { n, failed: this.failed, xdpAttached: this.xdpSeen, linksBefore, ...summarize(this.lat), creationP50: summarize(this.watcher.acks).p50, cpuUs };
    this.log(`  ${this.subject.id} ${this.profile}: ${key === 'series' ? 'series' : `series with ${linksBefore} links present`} p50 ${this.res[key].p50?.toFixed(2)} ms p99 ${this.res[key].p99?.toFixed(2)} ms (${this.failed} failed, XDP on ${this.xdpSeen}/${n}), CPU ${this.res[key].cpuUs?.toFixed(0)} µs per event`);
    this.lat = []; this.failed = 0; this.xdpSeen = 0; this.watcher.acks = [];
  }

  /** N links created at once by one `ip -batch`. */
  async burst(n) {
    const { watcher } = this;
    const names = [], lines = [];
    for (let i = 0; i < n; i++) { const name = this.mkName(); names.push(name); lines.push(this.linkAdd(name, macFor(this.kind, this.count))); }
    const batch = join(this.tmp, `batch-${n}.txt`);
    writeFileSync(batch, lines.join('\n') + '\n');
    // Start = just before `ip -batch` starts (CLOCK_MONOTONIC, like the
    // observer's stamps): the ip process's own start-up is in every subject's
    // number alike, and a late observer cannot shorten the result.
    const cpu0 = groupCpuNs(this.subj.pid);
    const tStart = Number(process.hrtime.bigint());
    ip(this.ns, '-batch', batch);
    const ok = await watcher.waitAll(names, this.opts.burstTimeoutMs);
    // What the subject does right after the last link (ACKs, nft sets, logs) is part of the cost.
    await sleep(150);
    const cpuUs = (groupCpuNs(this.subj.pid) - cpu0) / n / 1e3;
    const created = names.map((x) => watcher.created.get(x)?.t).filter((x) => x !== undefined);
    const done = names.map((x) => watcher.finished.get(x)).filter((x) => x?.ev === 'configured');
    const first = Math.min(...created), lastCreated = Math.max(...created);
    const lastDone = done.length ? Math.max(...done.map((x) => x.t)) : NaN;
    const b = {
      n, complete: ok && done.length === n, configured: done.length,
      xdpAttached: done.filter((x) => x.xdp).length,
      createSpanMs: (lastCreated - first) / 1e6,
      allConfiguredMs: (lastDone - tStart) / 1e6,
      perLink: summarize(names.map((x) => watcher.latency(x)).filter((x) => x !== null)),
      cpuUs,
    };
    (this.res.bursts ??= []).push(b);
    this.log(`  ${this.subject.id} ${this.profile}: burst ${n}: all configured after ${b.allConfiguredMs.toFixed(1)} ms (${b.configured}/${n}, creation took ${b.createSpanMs.toFixed(1)} ms), CPU ${cpuUs.toFixed(0)} µs per link`);
  }

  async finish() {
    const { sb } = this;
    try {
      if (this.subj && this.subject.kind !== 'script' && !this.dead) {
        this.res.rssAfterKiB = rssKiB(this.subj.pid);
        this.res.linksAtRss = this.count;
      }
      if (this.subj) {
        this.res.failures = this.subj.failures.length;
        this.res.failureKinds = [...new Set(this.subj.failures.map((f) => f.split(' ')[1]))];
      }
      if (this.watcher) this.res.overruns = this.watcher.overruns;
    } finally {
      this.watcher?.close();
      if (this.subj) await sb.stop(this.subj.child);
      if (this.ns) { sb.dropNetns(this.ns); sb.dropNetns(this.peers); sb.dropBpffs(this.pinDir); }
    }
    return this.res;
  }
}

/**
 * Pause after each single event: a subject may go on working after its link
 * is configured (nftables sets, logs); that work must not land in the next
 * subject's measurement.
 */
const GAP_MS = 20;

const errMsg = (e) => String(e?.message ?? e).split('\n').slice(0, 6).join(' / ');

/**
 * Every subject of one profile side by side: started together, single
 * events interleaved (A, B, C, A, B, C, ...), bursts one subject after the
 * other per size. A subject that fails is reported and dropped; the others go on.
 */
export async function runProfile(sb, subjects, profile, opts, log) {
  const sc = subjects.map((s) => new Scenario(sb, s, profile, opts, log));
  const fail = (x, e) => { x.dead = true; x.res.error = errMsg(e); log(`  ${x.subject.id} ${profile}: failed: ${x.res.error}`); };
  try {
    for (const x of sc) { try { await x.start(); } catch (e) { fail(x, e); } }
    for (let i = 0; i < opts.series; i++) {
      for (const x of sc) {
        if (x.dead) continue;
        try { await x.single(); } catch (e) { fail(x, e); }
        await sleep(GAP_MS);
      }
    }
    for (const x of sc) if (!x.dead) x.seriesDone();
    for (const n of opts.bursts) {
      for (const x of sc) {
        if (x.dead) continue;
        try { await x.burst(n); } catch (e) { fail(x, e); }
        await sleep(200);
      }
    }
    // Single events again, now with every burst's links present: does the
    // cost of one hotplug grow with the number of links?
    if (opts.loadedSeries) {
      for (let i = 0; i < opts.loadedSeries; i++) {
        for (const x of sc) {
          if (x.dead) continue;
          try { await x.single(); } catch (e) { fail(x, e); }
          await sleep(GAP_MS);
        }
      }
      for (const x of sc) if (!x.dead) x.seriesDone('loaded');
    }
    await sleep(500);
  } finally {
    const out = [];
    for (const x of sc) {
      try { out.push(await x.finish()); } catch (e) { x.res.error ??= errMsg(e); out.push(x.res); }
    }
    sc.results = out;
  }
  return sc.results;
}

export const SUBJECTS = [
  { id: 'script-published', kind: 'script', loader: 'xdp-loader', label: 'published script (xdp-loader, as published)', profiles: ['xdp-forwarder'] },
  { id: 'script-working', kind: 'script', loader: 'pinned', label: 'published steps, working loader (ip link ... xdpgeneric pinned)', profiles: ['xdp-forwarder'] },
  { id: 'script', kind: 'script', loader: 'pinned', label: 'published approach (ip addr / ip link / ip route per link)', profiles: ['router-routed'] },
  { id: 'netagent', kind: 'netagent', label: 'netagent', profiles: ['xdp-forwarder', 'router-routed'] },
  { id: 'climit', kind: 'c', label: 'C limit (bench/climit.c: only the syscalls, pipelined)', profiles: ['xdp-forwarder', 'router-routed'] },
];

/** Not a hotplug subject: the floor for any Node process, for start-up and memory. */
export const NODE_FLOOR = { id: 'node-floor', kind: 'node', label: 'bare node -e (stays alive, nothing else)' };

/**
 * Start → ready and idle RSS, `reps` times each, interleaved, every start
 * in a fresh namespace (and bpffs): netagent and the C limit in the
 * xdp-forwarder profile (both load the XDP objects), the bare node as the
 * floor of a Node process. Ready = the newline on fd 3; RSS = VmRSS 300 ms
 * after ready.
 */
export async function footprint(sb, subjects, opts, log) {
  const out = Object.fromEntries(subjects.map((s) => [s.id, { subject: s.id, label: s.label, startMs: [], rssKiB: [] }]));
  for (let i = 0; i < opts.reps; i++) {
    for (const s of subjects) {
      const ns = sb.netns('bfp'), pinDir = sb.bpffs(), tmp = sb.tmpdir();
      let subj;
      try {
        subj = await startSubject(sb, s, { ns, pinDir, profile: 'xdp-forwarder', tmp, climit: opts.climit });
        await sleep(300);
        out[s.id].startMs.push(subj.startMs);
        out[s.id].rssKiB.push(rssKiB(subj.pid));
      } catch (e) {
        out[s.id].error = errMsg(e);
      } finally {
        if (subj) await sb.stop(subj.child);
        sb.dropNetns(ns); sb.dropBpffs(pinDir);
      }
    }
  }
  const res = Object.values(out).map((r) => ({ ...r, start: summarize(r.startMs), rss: summarize(r.rssKiB.filter((x) => x !== null)) }));
  for (const r of res) log(`  ${r.subject}: start → ready p50 ${r.start.p50?.toFixed(1)} ms, idle RSS p50 ${((r.rss.p50 ?? 0) / 1024).toFixed(1)} MiB${r.error ? ` (error: ${r.error})` : ''}`);
  return res;
}

/**
 * Watches rtnetlink (links, addresses, routes) in `ns`; settled() resolves
 * once at least minMs have passed and nothing was announced for quietMs (at
 * most maxMs), with the ms waited and whether it went quiet.
 */
function quietWatch(sb, ns) {
  const child = sb.spawn(['ip', '-n', ns, 'monitor', 'link', 'address', 'route']);
  let last = Date.now();
  child.stdout.on('data', () => { last = Date.now(); });
  child.stderr.on('data', () => {});
  return {
    async settled({ minMs, quietMs, maxMs }) {
      const t0 = Date.now();
      await sleep(minMs);
      while (Date.now() - last < quietMs && Date.now() - t0 < maxMs) await sleep(100);
      return { ms: Date.now() - t0, quiet: Date.now() - last >= quietMs };
    },
    stop: () => sb.stop(child),
  };
}

/**
 * Idle CPU of netagent with N links present (SPEC "Truth and repair": what has
 * no event is verified on timers; that must stay cheap): per profile and N,
 * start it in a fresh namespace with N links already there (xdp-forwarder:
 * NICs and a router link; router-routed: client links), let it settle, then
 * its process group's CPU over `seconds`, as % of one core. Settled: at
 * least `settleMs` after ready and, with `quietMs`, no rtnetlink event in the
 * namespace for that long (at most `maxSettleMs`): with 1000 links the
 * kernel announces the links once more, ~50 a second, for ~20 s after ready
 * (plain RTM_NEWLINKs at the pace of its rate-limited link-state work),
 * which is start-up, not idle. `seconds` of 60
 * holds exactly one of the agent's full re-dumps (every 60 s), so their cost
 * counts once. `profiles` (default both) picks the profiles;
 * bench/idle.mjs runs this part alone.
 */
export async function idleCpu(sb, opts, log) {
  const out = [];
  for (const profile of opts.profiles ?? ['xdp-forwarder', 'router-routed']) {
    for (const n of opts.links) {
      const ns = sb.netns('bid'), peers = sb.netns('bip'), pinDir = sb.bpffs(), tmp = sb.tmpdir();
      let subj, watch;
      try {
        const kind = profile === 'xdp-forwarder' ? 'physical' : 'client';
        const lines = [];
        if (profile === 'xdp-forwarder') lines.push(`link add name rl address 02:01:00:00:00:01 type veth peer name prl netns ${peers}`);
        for (let i = 0; i < n; i++) lines.push(`link add name i${i} address ${macFor(kind, i + 1)} type veth peer name pi${i} netns ${peers}`);
        const batch = join(tmp, 'links.txt');
        writeFileSync(batch, lines.join('\n') + '\n');
        ip(ns, '-batch', batch);
        watch = opts.quietMs ? quietWatch(sb, ns) : null;
        subj = await startSubject(sb, SUBJECTS.find((x) => x.kind === 'netagent'), { ns, pinDir, profile, tmp });
        const settled = watch
          ? await watch.settled({ minMs: opts.settleMs, quietMs: opts.quietMs, maxMs: opts.maxSettleMs ?? 60_000 })
          : (await sleep(opts.settleMs), { ms: opts.settleMs, quiet: null });
        const c0 = groupCpuNs(subj.pid), t0 = process.hrtime.bigint();
        await sleep(opts.seconds * 1000);
        const pct = ((groupCpuNs(subj.pid) - c0) / Number(process.hrtime.bigint() - t0)) * 100;
        out.push({ profile, links: n, pct, settledMs: settled.ms, quiet: settled.quiet, seconds: opts.seconds });
        const how = settled.quiet === null ? '' : settled.quiet ? `, settled ${(settled.ms / 1000).toFixed(1)} s (events stopped)` : `, still events after ${(settled.ms / 1000).toFixed(1)} s`;
        log(`  netagent ${profile}, ${n} links: idle CPU ${pct.toFixed(2)}% of one core over ${opts.seconds} s${how}`);
      } catch (e) {
        out.push({ profile, links: n, pct: null, error: errMsg(e) });
      } finally {
        if (watch) await watch.stop();
        if (subj) await sb.stop(subj.child);
        sb.dropNetns(ns); sb.dropNetns(peers); sb.dropBpffs(pinDir);
      }
    }
  }
  return out;
}

export function netagentAvailable() {
  return existsSync(join(ROOT, 'dist', 'agent', 'cli.js')) && existsSync(join(ROOT, 'build', 'bpf', 'physical.o'));
}
