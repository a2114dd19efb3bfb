// Everything a benchmark run creates (namespaces, bpffs mounts, process
// groups, temp dirs) is registered here and removed at the end of the run,
// on Ctrl-C, on SIGTERM and on a crash.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const setnsC = libc.func('int setns(int fd, int nstype)');
const closeC = libc.func('int close(int fd)');
const CLONE_NEWNET = 0x40000000;

const tag = (process.pid % 46656).toString(36).padStart(3, '0');
let counter = 0;
/** A name unique to this run that fits IFNAMSIZ (prefix <= 7 chars). */
export function uniq(prefix) {
  counter += 1;
  return `${prefix.slice(0, 7)}${tag}${counter.toString(36)}`;
}

export function sh(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000, ...opts });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.toString().trim() || e.message}`);
  }
}

export const ip = (ns, ...args) => sh('ip', ns ? ['-n', ns, ...args] : args);
export const ipJson = (ns, ...args) => {
  const out = ip(ns, '-j', ...args).trim();
  return out ? JSON.parse(out) : [];
};
export const ifindex = (ns, dev) => ipJson(ns, 'link', 'show', 'dev', dev)[0].ifindex;
export const inNs = (ns, argv) => ['nsenter', `--net=/run/netns/${ns}`, '--', ...argv];

export class Sandbox {
  namespaces = [];
  mounts = [];
  dirs = [];
  groups = new Set();
  #rootNs = openSync('/proc/self/ns/net', 'r');
  #done = false;

  constructor() {
    process.once('exit', () => this.cleanup());
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
      process.once(sig, () => { console.error(`\nbench: ${sig}, cleaning up`); this.cleanup(); process.exit(130); });
    }
  }

  netns(prefix = 'bn') {
    const name = uniq(prefix);
    sh('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    ip(name, 'link', 'set', 'lo', 'up');
    return name;
  }

  /** Deletes a namespace early (its links and the XDP programs on them go with it). */
  dropNetns(name) {
    this.enterRoot();
    try { sh('ip', ['netns', 'del', name]); } catch { /* gone */ }
    this.namespaces = this.namespaces.filter((n) => n !== name);
  }

  bpffs() {
    const dir = mkdtempSync(join(tmpdir(), 'netagent-bench-pins-'));
    sh('mount', ['-t', 'bpf', 'bpf', dir]);
    this.mounts.push(dir);
    return dir;
  }

  dropBpffs(dir) {
    try { sh('umount', ['-l', dir]); rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
    this.mounts = this.mounts.filter((m) => m !== dir);
  }

  tmpdir() {
    const d = mkdtempSync(join(tmpdir(), 'netagent-bench-'));
    this.dirs.push(d);
    return d;
  }

  /** Spawns argv in a process group of its own; the group is killed at cleanup. */
  spawn(argv, opts = {}) {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true, ...opts });
    this.groups.add(child.pid);
    child.once('exit', () => this.groups.delete(child.pid));
    return child;
  }

  /** SIGTERM the group, then SIGKILL after graceMs if the leader is still there. */
  async stop(child, graceMs = 3000) {
    if (child.exitCode !== null || child.signalCode !== null) { this.#killGroup(child.pid, 'SIGKILL'); return; }
    const gone = new Promise((r) => child.once('exit', r));
    this.#killGroup(child.pid, 'SIGTERM');
    const t = setTimeout(() => this.#killGroup(child.pid, 'SIGKILL'), graceMs);
    await gone;
    clearTimeout(t);
    this.#killGroup(child.pid, 'SIGKILL'); // leftovers of the group (ip monitor, ...)
    this.groups.delete(child.pid);
  }

  #killGroup(pid, sig) {
    try { process.kill(-pid, sig); } catch { /* gone */ }
  }

  /** Moves this thread (node's main thread) into namespace ns; libbpf and spawned children follow. */
  enter(ns) {
    const fd = openSync(`/run/netns/${ns}`, 'r');
    const r = setnsC(fd, CLONE_NEWNET);
    closeC(fd);
    if (r) throw new Error(`setns(${ns}) failed`);
  }

  enterRoot() {
    if (setnsC(this.#rootNs, CLONE_NEWNET)) throw new Error('setns(root) failed');
  }

  cleanup() {
    if (this.#done) return;
    this.#done = true;
    try { this.enterRoot(); } catch { /* keep going */ }
    for (const pid of this.groups) this.#killGroup(pid, 'SIGKILL');
    for (const ns of this.namespaces) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ }
    }
    for (const m of this.mounts) {
      try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* not mounted */ }
      try { if (existsSync(m)) rmSync(m, { recursive: true, force: true }); } catch { /* best effort */ }
    }
    for (const d of this.dirs) {
      try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }
}
