// resolv.conf, written by the agent when the config says so
// (writeResolvConf, resolvConfPath):
// - client profile: the name server is the client's gateway, the router's
//   end of its link (the net VM sends those queries on to the resolvers its
//   uplink lease named);
// - router profiles: the net VM's own resolv.conf names the uplink leases'
//   resolvers (DhcpSupervisor.resolvers()).
// The file is replaced atomically (a temporary file renamed over it), and
// only when its content would change: a reader never sees half a file, and
// an unchanged lease writes nothing. With nothing to name (no gateway, no
// lease yet) the file is left as it is: a stale server beats none.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { readIp4 } from './core/ipv4.js';
import type { Plan } from './core/plan.js';
import type { Logger } from './log.js';

const HEADER = '# written by netagent (config: writeResolvConf, resolvConfPath)\n';

/** The file's text for these name servers (pure). */
export function renderResolvConf(servers: readonly string[]): string {
  return HEADER + servers.map((s) => `nameserver ${s}\n`).join('');
}

/** Client profile: the gateways of the plan's default routes, each once (pure). */
export function clientNameServers(plan: Pick<Plan, 'links'>): string[] {
  const out: string[] = [];
  for (const p of [...plan.links.values()].sort((a, b) => a.ifindex - b.ifindex)) {
    for (const r of p.want.routes) if (r.dst === '0.0.0.0/0' && r.gateway && !out.includes(r.gateway)) out.push(r.gateway);
  }
  return out;
}

export class ResolvConf {
  private last: string | null = null;
  /** The last failure, until a later write succeeds (a problem for status). */
  lastError: string | null = null;

  constructor(private readonly log: Logger) {}

  /**
   * Makes `path` name exactly `servers` (IPv4 addresses; others skipped).
   * Nothing is written when `path` is null (writeResolvConf off) or there is
   * no server to name. Never throws: failures land in lastError and the log.
   */
  want(path: string | null, servers: readonly string[]): void {
    const good = servers.filter((s) => readIp4(s).ok);
    if (!path || !good.length) {
      this.lastError = null;
      return;
    }
    const text = renderResolvConf(good);
    if (text === this.last) return;
    let current: string | null = null;
    try {
      current = readFileSync(path, 'utf8');
    } catch { /* absent: write it */ }
    if (current !== text) {
      const tmp = join(dirname(path), `.${basename(path)}.netagent-${process.pid}`);
      try {
        writeFileSync(tmp, text, { mode: 0o644 });
        renameSync(tmp, path);
      } catch (e) {
        try { rmSync(tmp, { force: true }); } catch { /* best effort */ }
        this.lastError = `writing the name servers into ${path} failed: ${(e as Error).message}; check that its directory is writable, or set "writeResolvConf": false`;
        this.log.error({ path, servers: good }, this.lastError);
        return;
      }
      this.log.info({ path, servers: good }, 'resolv.conf written');
    }
    this.last = text;
    this.lastError = null;
  }
}
