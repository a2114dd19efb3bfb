// Control-plane benchmark: netagent against the published approach (an
// event-driven script running the published mdev steps), same topology,
// same observer (bench/lib/linkwatch.py), same run.
import { createInterface } from 'node:readline';
import { writeFileSync, readFileSync, openSync, closeSync, existsSync } from 'node:fs';
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
        else if (ev.ev === 'configured' || ev.ev === 'timeout') this.finished.set(ev.name, ev);
        else if (ev.ev === 'overrun') this.overruns += 1;
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

  close() { this.child.stdin.end(); }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
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
  // netagent daemon: readiness is the newline on --notify-fd 3.
  const sock = join(tmp, `${uniq('s')}.sock`);
  const args = ['run', '--pin-dir', pinDir, '--socket', sock, '--notify-fd', '3'];
  if (profile !== 'xdp-forwarder') {
    const cfg = join(tmp, `${uniq('cfg')}.json`);
    writeFileSync(cfg, JSON.stringify({ profile }));
    args.push('--config', cfg);
  }
  const logPath = join(tmp, `netagent-${profile}.log`);
  const logFd = openSync(logPath, 'a');
  const t0 = process.hrtime.bigint();
  const child = sb.spawn(inNs(ns, [join(ROOT, 'bin', 'netagent'), ...args]), { stdio: ['ignore', logFd, logFd, 'pipe'] });
  closeSync(logFd);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`netagent not ready after 30 s (log: ${logPath})`)), 30_000);
    child.once('exit', (c) => { clearTimeout(t); reject(new Error(`netagent exited (${c}) before ready; log:\n${tail(logPath)}`)); });
    child.stdio[3].on('data', (d) => { if (d.includes(10)) { clearTimeout(t); resolve(); } });
  });
  const startMs = Number(process.hrtime.bigint() - t0) / 1e6;
  return { child, startMs, failures: [], pid: child.pid, sock, logPath };
}

function tail(path) {
  try { return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n'); } catch { return '(no log)'; }
}

/**
 * One subject, one profile, fresh namespaces: setup link(s), a series of
 * single hotplug events, then bursts.
 */
export async function runScenario(sb, subject, profile, opts, log) {
  const ns = sb.netns('bcd');
  const peers = sb.netns('bcp');
  const pinDir = sb.bpffs();
  const tmp = sb.tmpdir();
  const prefix = 'h';
  const xdpMode = subject.kind === 'script' && subject.loader === 'xdp-loader' ? 'observe' : 'require';
  const res = { subject: subject.id, profile, label: subject.label, notes: [] };
  let counterLinks = 0;
  const mkName = () => `h${(counterLinks++).toString(36)}`;
  const linkAdd = (name, mac) => `link add name ${name} address ${mac} type veth peer name p${name} netns ${peers}`;

  if (subject.kind === 'script' && subject.loader === 'pinned') {
    // What the script needs on Debian 12: both programs loaded once, the
    // DEVMAP reused explicitly, programs pinned for `ip link set ... pinned`.
    const phys = loadObject(join(opts.pubObjDir, 'pub_physical.o'), { pinRoot: pinDir });
    pin(phys.progFd('physical'), join(pinDir, 'prog_physical'));
    const rout = loadObject(join(opts.pubObjDir, 'pub_router.o'), { reuse: { router_iface: join(pinDir, 'router_iface') } });
    pin(rout.progFd('router'), join(pinDir, 'prog_router'));
    phys.close(); rout.close();
  }

  const watcher = new Watcher(sb, ns, prefix, profile, xdpMode);
  await watcher.ready;
  let subj;
  try {
    subj = await startSubject(sb, subject, { ns, pinDir, profile, tmp, prefix, pubObjDir: opts.pubObjDir });
    res.startMs = subj.startMs;
    await sleep(300);
    if (subject.kind === 'netagent') res.rssIdleKiB = rssKiB(subj.pid);

    // Setup: the router link first (xdp-forwarder), as at boot.
    if (profile === 'xdp-forwarder') {
      const name = mkName();
      ip(ns, ...linkAdd(name, '02:01:00:00:00:01').split(' '));
      await watcher.waitAll([name], 10_000);
      res.routerLinkMs = watcher.latency(name);
      res.routerLinkXdp = watcher.finished.get(name)?.xdp ?? false;
    }
    const kind = profile === 'xdp-forwarder' ? 'physical' : 'client';

    // Series of single hotplug events, one at a time.
    const lat = [];
    let xdpSeen = 0, failed = 0;
    for (let i = 0; i < opts.series; i++) {
      const name = mkName();
      ip(ns, ...linkAdd(name, macFor(kind, counterLinks)).split(' '));
      const ok = await watcher.waitAll([name], 10_000);
      const l = watcher.latency(name);
      if (!ok || l === null) failed += 1; else lat.push(l);
      if (watcher.finished.get(name)?.xdp) xdpSeen += 1;
      if (failed >= 3 && lat.length === 0) {
        // Nothing gets configured: do not spend 10 s per event finding that out again.
        res.notes.push(`the first ${failed} links were never configured; series stopped`);
        throw new Error(`${subject.label}: the first ${failed} links were never seen configured (${profile}); log: ${subj.logPath ? tail(subj.logPath).split('\n').slice(-3).join(' / ') : 'n/a'}`);
      }
      await sleep(5);
    }
    res.series = { n: opts.series, failed, xdpAttached: xdpSeen, ...summarize(lat) };
    log(`  ${subject.id} ${profile}: series p50 ${res.series.p50?.toFixed(2)} ms p99 ${res.series.p99?.toFixed(2)} ms (${failed} failed, XDP on ${xdpSeen}/${opts.series})`);

    // Bursts: N links created at once by one `ip -batch`.
    res.bursts = [];
    for (const n of opts.bursts) {
      const names = [];
      const lines = [];
      for (let i = 0; i < n; i++) { const name = mkName(); names.push(name); lines.push(linkAdd(name, macFor(kind, counterLinks))); }
      const batch = join(tmp, `batch-${n}.txt`);
      writeFileSync(batch, lines.join('\n') + '\n');
      ip(ns, '-batch', batch);
      const ok = await watcher.waitAll(names, opts.burstTimeoutMs);
      const created = names.map((x) => watcher.created.get(x)?.t).filter((x) => x !== undefined);
      const done = names.map((x) => watcher.finished.get(x)).filter((x) => x?.ev === 'configured');
      const first = Math.min(...created), lastCreated = Math.max(...created);
      const lastDone = done.length ? Math.max(...done.map((x) => x.t)) : NaN;
      const b = {
        n, complete: ok && done.length === n, configured: done.length,
        xdpAttached: done.filter((x) => x.xdp).length,
        createSpanMs: (lastCreated - first) / 1e6,
        allConfiguredMs: (lastDone - first) / 1e6,
        perLink: summarize(names.map((x) => watcher.latency(x)).filter((x) => x !== null)),
      };
      res.bursts.push(b);
      log(`  ${subject.id} ${profile}: burst ${n}: all configured after ${b.allConfiguredMs.toFixed(1)} ms (${b.configured}/${n}, creation took ${b.createSpanMs.toFixed(1)} ms)`);
      await sleep(200);
    }
    if (subject.kind === 'netagent') {
      await sleep(500);
      res.rssAfterKiB = rssKiB(subj.pid);
      res.linksAtRss = counterLinks;
    }
    res.failures = subj.failures.length;
    res.failureKinds = [...new Set(subj.failures.map((f) => f.split(' ')[1]))];
    res.overruns = watcher.overruns;
  } finally {
    watcher.close();
    if (subj) await sb.stop(subj.child);
    sb.dropNetns(ns);
    sb.dropNetns(peers);
    sb.dropBpffs(pinDir);
  }
  return res;
}

export const SUBJECTS = [
  { id: 'script-published', kind: 'script', loader: 'xdp-loader', label: 'published script (xdp-loader, as published)', profiles: ['xdp-forwarder'] },
  { id: 'script-working', kind: 'script', loader: 'pinned', label: 'published steps, working loader (ip link ... xdpgeneric pinned)', profiles: ['xdp-forwarder'] },
  { id: 'script', kind: 'script', loader: 'pinned', label: 'published approach (ip addr / ip link / ip route per link)', profiles: ['router-routed'] },
  { id: 'netagent', kind: 'netagent', label: 'netagent', profiles: ['xdp-forwarder', 'router-routed'] },
];

export function netagentAvailable() {
  return existsSync(join(ROOT, 'dist', 'agent', 'cli.js')) && existsSync(join(ROOT, 'build', 'bpf', 'physical.o'));
}
