// nftables for the router profiles: one table of ours (family inet), with
// named sets of uplink and client interface names, replaced atomically in a
// single `nft -f -` transaction. Client isolation follows vmsilo's rule:
// forwarded traffic from one client link to another is dropped, replies to
// connections a client opened are allowed, client traffic leaving through an
// uplink is masqueraded. The forward chain fails closed (policy drop): a
// client link that is up before its name reaches the set forwards nothing,
// rather than everything. The table is ours alone: nothing else is touched.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import type { Logger } from './log.js';
import type { RouterGlobals } from './core/plan.js';

/** The ruleset text for our table (pure; tested without root). */
export function renderRuleset(table: string, g: RouterGlobals): string {
  const set = (name: string, all: string[], items = safeNames(all)) =>
    `  set ${name} {\n    type ifname\n${items.length ? `    elements = { ${items.map((i) => JSON.stringify(i)).join(', ')} }\n` : ''}  }\n`;
  return (
    // "add" then "delete" makes the delete succeed whether or not the table existed;
    // the whole file is one transaction, so there is never a moment without rules.
    `add table inet ${table}\ndelete table inet ${table}\n` +
    `table inet ${table} {\n` +
    set('uplinks', g.uplinks) +
    set('clients', g.clients) +
    `  chain forward {\n    type filter hook forward priority filter; policy drop;\n` +
    `    ct state established,related accept\n` +
    `    iifname @clients oifname @uplinks accept\n` +
    `    counter comment "clients are kept apart: nothing else is forwarded"\n  }\n` +
    `  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n` +
    `    iifname @clients oifname @uplinks counter masquerade\n  }\n` +
    `}\n`
  );
}

/** The commands that turn the applied set members into the wanted ones ('' when equal). */
export function setDelta(table: string, have: { uplinks: Set<string>; clients: Set<string> }, want: RouterGlobals): string {
  const lines: string[] = [];
  for (const name of ['uplinks', 'clients'] as const) {
    const next = new Set(safeNames(want[name]));
    const add = [...next].filter((x) => !have[name].has(x));
    const del = [...have[name]].filter((x) => !next.has(x));
    const list = (xs: string[]) => xs.map((x) => JSON.stringify(x)).join(', ');
    if (del.length) lines.push(`delete element inet ${table} ${name} { ${list(del)} }`);
    if (add.length) lines.push(`add element inet ${table} ${name} { ${list(add)} }`);
  }
  return lines.join('\n') + (lines.length ? '\n' : '');
}

/** Interface names nft's quoting can carry; others are left out (and forward nothing: fail closed). */
function safeNames(items: string[]): string[] {
  return items.filter((i) => /^[A-Za-z0-9_.@:+-]{1,15}$/.test(i));
}

export class NftError extends Error {
  constructor(readonly attempted: string, readonly detail: string) {
    super(`nftables: ${attempted} failed: ${detail}; check that the nft binary and the nf_tables modules are present (nft list ruleset)`);
    this.name = 'NftError';
  }
}

function nft(args: string[], input: string | null): Promise<{ code: number; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn('nft', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '', stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => resolve({ code: -1, stderr: e.message, stdout }));
    child.on('close', (code) => resolve({ code: code ?? -1, stderr, stdout }));
    child.stdin.on('error', () => { /* nft gone: reported through close */ });
    child.stdin.end(input ?? '');
  });
}

/**
 * Keeps the router profile's table and IPv4 forwarding in the wanted state;
 * skips work when nothing changed. `want()` returns at once: nft runs in the
 * background, one transaction at a time, always with the latest wish, so a
 * burst of links costs a few nft runs, and configuring links never waits for
 * nft (the forward chain fails closed meanwhile).
 */
export class RouterFirewall {
  private applied: string | null = null;
  /** Set members as last applied (for deltas). */
  private sets: { uplinks: Set<string>; clients: Set<string> } | null = null;
  private forwarding: boolean | null = null;
  private desired: RouterGlobals | null = null;
  private worker: Promise<void> | null = null;
  /** The last failure, until a later apply succeeds. */
  lastError: string | null = null;

  constructor(private readonly table: string, private readonly log: Logger, private readonly onError: (e: Error) => void = () => {}) {}

  want(g: RouterGlobals | null): void {
    this.desired = g;
    if (!this.worker) this.worker = this.drain().finally(() => (this.worker = null));
  }

  /** Resolves once everything wanted so far is applied (or has failed). */
  async settled(): Promise<void> {
    while (this.worker) await this.worker;
  }

  private async drain(): Promise<void> {
    for (;;) {
      const g = this.desired;
      try {
        await this.apply(g);
        this.lastError = null;
      } catch (e) {
        this.lastError = (e as Error).message;
        this.onError(e as Error);
        return;
      }
      if (this.desired === g) return; // nothing newer arrived meanwhile
    }
  }

  async apply(g: RouterGlobals | null): Promise<void> {
    if (g) {
      const text = renderRuleset(this.table, g);
      if (text !== this.applied) {
        // Once our table is in place, a link coming or going only changes set
        // members: send just that (a whole-table reload with a thousand clients
        // costs the kernel ~20 ms, an element change ~1 ms). If the table was
        // changed behind our back and the delta fails, reload it whole.
        const delta = this.applied && this.sets ? setDelta(this.table, this.sets, g) : null;
        const r = delta !== null ? await nft(['-f', '-'], delta) : null;
        if (!r || r.code !== 0) {
          const full = await nft(['-f', '-'], text);
          if (full.code !== 0) {
            this.applied = null;
            throw new NftError(`loading table inet ${this.table}`, full.stderr.trim() || `exit ${full.code}`);
          }
        }
        this.applied = text;
        this.sets = { uplinks: new Set(g.uplinks), clients: new Set(g.clients) };
        this.log.info({ uplinks: g.uplinks.length, clients: g.clients.length, incremental: !!r && r.code === 0 }, 'nftables table updated');
      }
      await this.setForwarding(true);
    } else if (this.applied !== '') {
      await this.remove();
    }
  }

  /** Removes our table (profile switch away from a router profile, or a stale table from an earlier run). */
  async remove(): Promise<void> {
    const r = await nft(['delete', 'table', 'inet', this.table], null);
    // No nft at all means no table of ours either (a client VM may ship without it).
    if (r.code !== 0 && !/No such file|does not exist|ENOENT/i.test(r.stderr)) {
      throw new NftError(`deleting table inet ${this.table}`, r.stderr.trim());
    }
    if (r.code === 0) this.log.info({ table: this.table }, 'nftables table removed');
    this.applied = '';
    this.sets = null;
    // Forwarding was on because we turned it on: leave no router behind.
    if (this.forwarding) await this.setForwarding(false);
  }

  private async setForwarding(on: boolean): Promise<void> {
    if (this.forwarding === on) return;
    await writeFile('/proc/sys/net/ipv4/ip_forward', on ? '1\n' : '0\n');
    this.forwarding = on;
  }
}
