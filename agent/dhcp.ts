// DHCP on the uplinks of the router profiles: one client process per uplink
// (busybox udhcpc by default, configurable), supervised: restarted with
// backoff if it dies, stopped when the uplink goes or the profile changes.
import { spawn, type ChildProcess } from 'node:child_process';
import { backoff } from './core/backoff.js';
import type { Logger } from './log.js';

/** Restart delays of a DHCP client that died: 1 s, 2 s, 4 s, ... up to a minute. */
const RESTART_BACKOFF = { baseMs: 1000, maxMs: 60_000 };

interface Client {
  child: ChildProcess | null;
  timer: NodeJS.Timeout | null;
  failures: number;
  lastError: string | null;
}

export class DhcpSupervisor {
  private clients = new Map<string, Client>();
  private stopping = false;

  constructor(private command: string[], private readonly log: Logger) {}

  setCommand(command: string[]): void {
    if (command.join('\0') === this.command.join('\0')) return;
    this.command = command;
    const names = [...this.clients.keys()];
    this.sync([]); // restart every client with the new command
    this.sync(names);
  }

  /** Makes the set of supervised uplinks exactly `ifnames`. */
  sync(ifnames: string[]): void {
    for (const name of [...this.clients.keys()]) if (!ifnames.includes(name)) this.stopOne(name);
    for (const name of ifnames) if (!this.clients.has(name)) {
      const c: Client = { child: null, timer: null, failures: 0, lastError: null };
      this.clients.set(name, c);
      this.startOne(name, c);
    }
  }

  /** For status: the DHCP client's trouble on this uplink, if any. */
  problem(ifname: string): string | null {
    return this.clients.get(ifname)?.lastError ?? null;
  }

  running(ifname: string): boolean {
    return !!this.clients.get(ifname)?.child;
  }

  private startOne(name: string, c: Client): void {
    const argv = this.command.map((a) => a.replaceAll('{ifname}', name));
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    c.child = child;
    const relay = (d: Buffer) => {
      for (const line of d.toString('utf8').split('\n')) if (line.trim()) this.log.info({ link: name, dhcp: line.trim() }, 'dhcp client');
    };
    child.stdout?.on('data', relay);
    child.stderr?.on('data', relay);
    child.on('error', (e: NodeJS.ErrnoException) => {
      c.lastError = e.code === 'ENOENT'
        ? `DHCP client ${argv[0]} not found; install it or set "dhcpCommand" (or "uplinkDhcp": false)`
        : `DHCP client ${argv[0]} failed to start: ${e.message}`;
    });
    child.on('close', (code, signal) => {
      if (c.child !== child) return;
      c.child = null;
      if (this.stopping || !this.clients.has(name)) return;
      c.failures += 1;
      c.lastError ??= `DHCP client exited (${signal ?? `code ${code}`})`;
      const delay = backoff(c.failures, RESTART_BACKOFF);
      this.log.warn({ link: name, code, signal, retryInMs: delay, error: c.lastError }, 'DHCP client ended; restarting later');
      c.timer = setTimeout(() => {
        c.timer = null;
        c.lastError = null;
        if (this.clients.get(name) === c) this.startOne(name, c);
      }, delay);
      c.timer.unref();
    });
    this.log.info({ link: name, argv }, 'DHCP client started');
  }

  private stopOne(name: string): void {
    const c = this.clients.get(name);
    this.clients.delete(name);
    if (!c) return;
    if (c.timer) clearTimeout(c.timer);
    if (c.child) {
      c.child.kill('SIGTERM');
      this.log.info({ link: name }, 'DHCP client stopped');
    }
  }

  stopAll(): void {
    this.stopping = true;
    for (const name of [...this.clients.keys()]) this.stopOne(name);
  }
}
