// Test sandbox: network namespaces, links, bpffs mounts and child processes
// made by one test file, with names unique to this run, all removed when the
// file ends, passes or fails (process 'exit' and signal handlers).
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir, constants as osConstants } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (dist/test/lib -> ../../..). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

let counter = 0;
const runTag = (process.pid % 46656).toString(36).padStart(3, '0');

/** A name unique to this run: prefix (<= 6 chars) + pid tag + counter; fits IFNAMSIZ. */
export function uniq(prefix: string): string {
  counter += 1;
  const name = `${prefix.slice(0, 6)}${runTag}${counter.toString(36)}`;
  if (name.length > 15) throw new Error(`uniq: ${name} is longer than IFNAMSIZ-1`);
  return name;
}

/** Runs a command, returns stdout; throws with stderr on failure. */
export function run(cmd: string, args: string[], opts: { input?: string; timeout?: number } = {}): string {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      input: opts.input,
      timeout: opts.timeout ?? 30_000,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

/** Whether a command exits 0 (within timeoutMs): for checks that something is refused or gets through. */
export function succeeds(argv: string[], timeoutMs = 10_000): boolean {
  try {
    run(argv[0]!, argv.slice(1), { timeout: timeoutMs });
    return true;
  } catch {
    return false;
  }
}

/** `ip` inside a namespace (or the root namespace when ns is null). */
export function ip(ns: string | null, ...args: string[]): string {
  return run('ip', ns ? ['-n', ns, ...args] : args);
}

/** `ip -j` parsed. */
export function ipJson<T = any>(ns: string | null, ...args: string[]): T {
  const out = ip(ns, '-j', ...args).trim();
  return (out ? JSON.parse(out) : []) as T;
}

/** argv that runs `argv` inside namespace ns while keeping our mount namespace (bpffs pins stay visible). */
export function inNs(ns: string, argv: string[]): string[] {
  return ['nsenter', `--net=/run/netns/${ns}`, '--', ...argv];
}

export class Sandbox {
  readonly namespaces: string[] = [];
  readonly rootLinks: string[] = [];
  readonly mounts: string[] = [];
  readonly dirs: string[] = [];
  readonly children = new Set<ChildProcess>();
  private cleaned = false;

  constructor() {
    const onExit = () => this.cleanup();
    process.once('exit', onExit);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        this.cleanup();
        process.exit(130);
      });
    }
  }

  /** A new network namespace with lo up. */
  netns(prefix = 'nt'): string {
    const name = uniq(prefix);
    run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    ip(name, 'link', 'set', 'lo', 'up');
    return name;
  }

  /**
   * A veth pair: `a` in nsA, `b` in nsB (null: root namespace), both up
   * unless up=false. Options set the MAC of either end.
   */
  veth(
    nsA: string | null,
    nsB: string | null,
    opts: { a?: string; b?: string; macA?: string; macB?: string; up?: boolean; indexA?: number } = {},
  ): { a: string; b: string } {
    const a = opts.a ?? uniq('va');
    const b = opts.b ?? uniq('vb');
    // Create in the root namespace and move: the only form that works for every ns/null mix.
    const args = ['link', 'add', a];
    if (opts.indexA) args.push('index', String(opts.indexA));
    if (opts.macA) args.push('address', opts.macA);
    args.push('type', 'veth', 'peer', 'name', b);
    if (opts.macB) args.push('address', opts.macB);
    run('ip', args);
    if (nsA) run('ip', ['link', 'set', a, 'netns', nsA]);
    else this.rootLinks.push(a);
    if (nsB) run('ip', ['link', 'set', b, 'netns', nsB]);
    if (opts.up !== false) {
      ip(nsA, 'link', 'set', a, 'up');
      ip(nsB, 'link', 'set', b, 'up');
    }
    return { a, b };
  }

  /** A private bpffs mount (pins made by a test die with it). */
  bpffs(): string {
    const dir = mkdtempSync(join(tmpdir(), 'netagent-pins-'));
    run('mount', ['-t', 'bpf', 'bpf', dir]);
    this.mounts.push(dir);
    return dir;
  }

  /** A temporary directory, removed at cleanup. */
  tempDir(prefix = 'netagent-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.push(dir);
    return dir;
  }

  /** Spawns a child that is killed at cleanup. */
  spawn(argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const c of this.children) {
      try { c.kill('SIGKILL'); } catch { /* already gone */ }
    }
    for (const l of this.rootLinks) {
      try { execFileSync('ip', ['link', 'del', l], { stdio: 'ignore' }); } catch { /* gone with its peer */ }
    }
    for (const ns of this.namespaces) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    for (const d of this.dirs) {
      try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
    }
    for (const m of this.mounts) {
      try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* not mounted */ }
      try { if (existsSync(m)) rmSync(m, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }
}

/**
 * Makes the calling test file run inside a network namespace of its own.
 * Call at the top of a test module: `await ownNetns(import.meta.url)`.
 * The first (outer) process creates the namespace, re-runs the same file in
 * it with nsenter (mount namespace kept, so bpffs pins stay visible), deletes
 * the namespace afterwards and exits with the inner process's status; in the
 * inner process it returns the namespace's name. Everything the inner file
 * does to "the current namespace" is thus private to this run.
 */
export async function ownNetns(metaUrl: string): Promise<string> {
  const inner = process.env.NETAGENT_TEST_NETNS;
  if (inner) return inner;
  const ns = uniq('own');
  run('ip', ['netns', 'add', ns]);
  let status = 1;
  try {
    ip(ns, 'link', 'set', 'lo', 'up');
    // Asynchronous, so that a SIGTERM/SIGINT sent to us (a runner's timeout,
    // Ctrl-C) is passed on to the inner process, which cleans up what it made,
    // and we still delete the namespace afterwards.
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${ns}`, '--', process.execPath, '--enable-source-maps', fileURLToPath(metaUrl), ...process.argv.slice(2)],
      { stdio: 'inherit', env: { ...process.env, NETAGENT_TEST_NETNS: ns } },
    );
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, forward);
    status = await new Promise<number>((resolve) => {
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)));
      child.on('error', () => resolve(1));
    });
  } finally {
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ }
  }
  process.exit(status);
}
