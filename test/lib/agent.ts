// Runs the real agent (bin/netagent run) inside a test namespace, with its own
// pin directory (private bpffs), control socket and config file; waits for
// s6-style readiness on fd 3; asks `bin/netagent status --json`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, inNs, type Sandbox } from './sandbox.js';

export interface AgentStatus {
  profile: string;
  ready: boolean;
  interfaces: Array<{
    name: string; ifindex: number; mac: string; role: string; state: string; addresses: string[];
    xdp: { program: string; mode: string; id: number } | null; error: string | null;
  }>;
  [k: string]: unknown;
}

export class AgentProc {
  child: ChildProcess | null = null;
  private logFile = '';
  readonly dir: string;
  readonly socket: string;
  readonly config: string;

  constructor(readonly sb: Sandbox, readonly ns: string | null, readonly pinDir: string, opts: { dir?: string } = {}) {
    this.dir = opts.dir ?? sb.tempDir('netagent-run-');
    this.socket = join(this.dir, 'control.sock');
    this.config = join(this.dir, 'config.json');
  }

  writeConfig(cfg: Record<string, unknown>): void {
    writeFileSync(this.config, JSON.stringify(cfg, null, 2));
  }

  /** Starts the agent and resolves when it signals readiness (ms from spawn to ready). */
  start(timeoutMs = 30_000): Promise<number> {
    const argv = [join(ROOT, 'bin', 'netagent'), 'run', '--config', this.config, '--socket', this.socket, '--pin-dir', this.pinDir, '--notify-fd', '3'];
    const full = this.ns ? inNs(this.ns, argv) : argv;
    const t0 = performance.now();
    // The log goes to a file, not a pipe: the agent writes it synchronously, so
    // reading the file shows every line written so far, whatever this process's
    // event loop was busy with (pipe data would wait for our loop to poll it).
    this.logFile = join(this.dir, `agent-${Date.now()}-${Math.random().toString(36).slice(2, 6)}.log`);
    const out = openSync(this.logFile, 'a');
    const child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', out, out, 'pipe'], env: { ...process.env, NETAGENT_LOG_LEVEL: process.env.NETAGENT_LOG_LEVEL ?? 'info' } });
    closeSync(out);
    this.sb.children.add(child);
    this.child = child;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent not ready within ${timeoutMs} ms; logs:\n${this.logs.slice(-30).join('\n')}`)), timeoutMs);
      const notify = child.stdio[3] as NodeJS.ReadableStream;
      notify.on('data', (d: Buffer) => {
        if (d.includes(10)) {
          clearTimeout(timer);
          // A running agent must not keep the test process alive: a test that
          // fails before stop() would otherwise hang its file until the
          // runner's timeout (the Sandbox kills it at exit). stop() refs it again.
          child.unref();
          (notify as unknown as { unref?: () => void }).unref?.();
          resolve(performance.now() - t0);
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`agent exited (${sig ?? code}) before ready; logs:\n${this.logs.slice(-30).join('\n')}`));
      });
    });
  }

  /** Every log line the agent has written so far. */
  get logs(): string[] {
    if (!this.logFile) return [];
    return readFileSync(this.logFile, 'utf8').split('\n').filter(Boolean);
  }

  /** `netagent status --json` as a person would run it (in the agent's namespace). */
  status(): AgentStatus {
    const r = this.statusRaw(['--json']);
    if (r.status !== 0) throw new Error(`netagent status failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout) as AgentStatus;
  }

  statusRaw(args: string[] = []): { status: number | null; stdout: string; stderr: string } {
    const argv = [join(ROOT, 'bin', 'netagent'), 'status', '--socket', this.socket, ...args];
    const full = this.ns ? inNs(this.ns, argv) : argv;
    const r = spawnSync(full[0]!, full.slice(1), { encoding: 'utf8', timeout: 15_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  iface(name: string) {
    return this.status().interfaces.find((i) => i.name === name);
  }

  /** Polls until pred(status) holds; returns ms waited. */
  async waitFor(pred: (s: AgentStatus) => boolean, what: string, timeoutMs = 15_000): Promise<number> {
    const t0 = performance.now();
    let last: AgentStatus | null = null;
    while (performance.now() - t0 < timeoutMs) {
      try {
        last = this.status();
        if (pred(last)) return performance.now() - t0;
      } catch { /* not up yet */ }
      await sleep(25);
    }
    throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(last?.interfaces.map((i) => [i.name, i.role, i.state, i.addresses, i.xdp?.program, i.error]))}\nlogs:\n${this.logs.slice(-20).join('\n')}`);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return c?.exitCode ?? null;
    return new Promise((resolve) => {
      c.ref();
      c.once('exit', (code) => resolve(code));
      c.kill(signal);
    });
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PKT = join(ROOT, 'test', 'lib', 'pkt.py');

/**
 * Captures 0x88b5 frames on `taps` (1.5 s) while `frame` (hex, tags
 * included) is sent from `from`; what each tap saw, as hex (test/lib/pkt.py).
 */
export async function exchange(sb: Sandbox, from: { ns: string; ifname: string }, frame: string, taps: Array<{ ns: string; ifname: string }>): Promise<string[][]> {
  const procs = taps.map((t) => {
    const child = sb.spawn(inNs(t.ns, ['python3', PKT, 'capture', t.ifname, '1500', '0x88b5']));
    let out = '';
    const ready = new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.startsWith('ready\n')) resolve(); }));
    const done = new Promise<string[]>((resolve) => child.once('exit', () => resolve(out.split('\n').slice(1).filter(Boolean))));
    return { ready, done };
  });
  await Promise.all(procs.map((p) => p.ready));
  const send = spawnSync('nsenter', [`--net=/run/netns/${from.ns}`, '--', 'python3', PKT, 'send', from.ifname, frame], { encoding: 'utf8' });
  if (send.status !== 0) throw new Error(`pkt.py send on ${from.ifname}: ${send.stderr}`);
  return Promise.all(procs.map((p) => p.done));
}
