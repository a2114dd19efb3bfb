// DHCP on the uplinks of the router profiles: one client process per uplink
// (busybox udhcpc by default, configurable), supervised: restarted with
// backoff if it dies, stopped when the uplink goes or the profile changes.
//
// The name servers of each lease come back on the client's stdout, which we
// read anyway: the hook script (rootfs/usr/lib/netagent/udhcpc.script) prints
// "netagent-dns IFNAME [ADDR...]" on every lease change. No file, no watcher,
// no process of ours per change; a lease that ends (or a client that stops)
// takes its name servers with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { backoff } from './core/backoff.js';
import { readIp4 } from './core/ipv4.js';
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
  /** Each uplink's name servers, as its last lease named them. */
  private dns = new Map<string, string[]>();
  /** Called when resolvers() changes. */
  onResolvers: (resolvers: string[]) => void = () => {};

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

  /**
   * The name servers of every uplink's lease, uplinks by name, each once.
   * What a client's DNS is sent to (RouterFirewall.setResolvers) and what the
   * net VM's own resolv.conf names (ResolvConf).
   */
  resolvers(): string[] {
    const out: string[] = [];
    for (const name of [...this.dns.keys()].sort()) for (const a of this.dns.get(name)!) if (!out.includes(a)) out.push(a);
    return out;
  }

  private setDns(name: string, addrs: string[]): void {
    const before = this.resolvers().join(' ');
    if (addrs.length) this.dns.set(name, addrs);
    else this.dns.delete(name);
    if (this.resolvers().join(' ') !== before) this.onResolvers(this.resolvers());
  }

  running(ifname: string): boolean {
    return !!this.clients.get(ifname)?.child;
  }

  private startOne(name: string, c: Client): void {
    const argv = this.command.map((a) => a.replaceAll('{ifname}', name));
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    c.child = child;
    const relay = (d: Buffer) => {
      for (const line of d.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        const dns = parseDnsLine(line);
        if (dns && dns.ifname === name) {
          this.log.info({ link: name, dns: dns.servers }, 'DHCP lease name servers');
          if (c.child === child) this.setDns(name, dns.servers);
        } else this.log.info({ link: name, dhcp: line.trim() }, 'dhcp client');
      }
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
      this.setDns(name, []); // no client, no lease
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
    this.setDns(name, []);
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

/** "netagent-dns IFNAME [ADDR...]" from the hook script; IPv4 addresses only, others skipped (pure). */
export function parseDnsLine(line: string): { ifname: string; servers: string[] } | null {
  const f = line.trim().split(/\s+/);
  if (f[0] !== 'netagent-dns' || !f[1]) return null;
  return { ifname: f[1], servers: [...new Set(f.slice(2).filter((a) => readIp4(a).ok))] };
}
