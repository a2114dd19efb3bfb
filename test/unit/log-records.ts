// Real agent log records for the `netagent log` tests: a child process logs
// through agent/log.ts's makeLogger (pino, as the daemon configures it) and
// its stdout is what s6-log would have stored. A child, because the logger
// writes to fd 1, where this process's test report goes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const LOG_JS = fileURLToPath(new URL('../../agent/log.js', import.meta.url));
export const CLI_JS = fileURLToPath(new URL('../../agent/cli.js', import.meta.url));

/** [level, fields, message]; a field {$error: message, code?} becomes a real Error (pino's err serializer). */
export type Call = [level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal', fields: Record<string, unknown>, msg: string];

const CHILD = `
import { makeLogger } from ${JSON.stringify(LOG_JS)};
const log = makeLogger();
for (const [level, fields, msg] of JSON.parse(process.env.CALLS)) {
  for (const [k, v] of Object.entries(fields)) if (v && typeof v === 'object' && '$error' in v) fields[k] = Object.assign(new Error(v.$error), v.code ? { code: v.code } : {});
  log[level](fields, msg);
}`;

/** The JSON lines makeLogger writes for these calls (level trace: all of them). */
export function realRecords(calls: Call[]): string[] {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], {
    encoding: 'utf8',
    env: { ...process.env, CALLS: JSON.stringify(calls), NETAGENT_LOG_LEVEL: 'trace' },
  });
  if (r.status !== 0) throw new Error(`logging child failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}

/** What the agent logs in a typical start, one of each kind of record. */
export const TYPICAL: Call[] = [
  ['info', { version: '0.1.0', profile: 'router-p2p', xdpMode: 'skb', config: '/etc/netagent/config.json' }, 'netagent starting'],
  ['info', { link: 'eth0', ifindex: 2, mac: '52:54:00:12:34:01' }, 'link appeared'],
  ['debug', { link: 'eth0', program: 'physical', id: 41, mode: 'skb' }, 'xdp program adopted'],
  ['info', { link: 'eth0', ifindex: 2, role: 'uplink', actions: ['set up', 'add 10.0.2.15/24'] }, 'link configured'],
  ['error', { link: 'eth1', ifindex: 3, action: 'addr-add', err: 'RTM_NEWADDR eth1 100.64.0.1/31: File exists (EEXIST)', attempt: 2, retryInMs: 400 }, 'could not configure eth1'],
  ['warn', { link: 'eth1', code: 1, signal: null, retryInMs: 2000, error: null }, 'DHCP client ended; restarting later'],
  ['error', { err: { $error: 'recvmsg failed', code: 'ENOBUFS' } }, 'netlink event socket error'],
  ['info', { link: 'eth1', from: 'failed', to: 'configured', why: 'retry succeeded' }, 'link state'],
  ['trace', { link: 'eth1', bytes: 52 }, 'netlink message'],
  ['fatal', { err: 'config.json: profile must be one of ...' }, 'netagent could not start'],
  ['info', { ms: 812, links: 4 }, 'coldplug done: ready'],
];

/** `netagent log ARGS` run to its end: stdout, stderr, exit code. */
export function logCli(args: string[], env: Record<string, string> = {}): { out: string; err: string; code: number | null } {
  const r = spawnSync(process.execPath, [CLI_JS, 'log', ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '', ...env }, timeout: 20_000 });
  return { out: r.stdout, err: r.stderr, code: r.status };
}

/** `netagent log -f ARGS` running: the lines it printed so far, and a bounded wait for more. */
export class Following {
  readonly proc: ChildProcess;
  lines: string[] = [];
  err = '';
  private buf = '';
  private waiters: Array<() => void> = [];
  constructor(args: string[]) {
    this.proc = spawn(process.execPath, [CLI_JS, 'log', '-f', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (d: string) => {
      const parts = (this.buf + d).split('\n');
      this.buf = parts.pop()!;
      this.lines.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (d: string) => { this.err += d; });
  }

  /** Waits (at most timeoutMs) until `n` lines have been printed; returns them all. */
  async waitLines(n: number, timeoutMs = 5000): Promise<string[]> {
    const end = Date.now() + timeoutMs;
    while (this.lines.length < n) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`netagent log -f printed ${this.lines.length} lines in ${timeoutMs} ms, expected ${n}:\n${this.lines.join('\n')}\nstderr: ${this.err}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 100));
        this.waiters.push(() => { clearTimeout(t); r(); });
      });
    }
    return this.lines;
  }

  stop(): void {
    this.proc.kill('SIGTERM');
  }
}
