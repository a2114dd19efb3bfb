// nftables for the router profiles: one table of ours (family inet), with
// named sets of uplink and client interface names, replaced atomically in a
// single transaction, through libnftables in-process (agent/libnftables.ts:
// no `nft` process per change). Client isolation follows vmsilo's rule:
// forwarded traffic from one client link to another is dropped, replies to
// connections a client opened are allowed, client traffic leaving through an
// uplink is masqueraded. The forward chain fails closed (policy drop): a
// client link that is up before its name reaches the set forwards nothing,
// rather than everything. The table is ours alone: nothing else is touched.
import { writeFile } from 'node:fs/promises';
import { Nftables, NftUnavailableError } from './libnftables.js';
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
  constructor(readonly attempted: string, readonly detail: string, readonly hint = hintFor(detail)) {
    super(`nftables: ${attempted} failed: ${detail}; ${hint}`);
    this.name = 'NftError';
  }
}

/** What to do about a refusal, from libnftables' message. */
function hintFor(detail: string): string {
  if (/syntax error/.test(detail)) return 'the ruleset text netagent wrote is wrong (the table name comes from nftTable in the config): report this message';
  if (/Operation not permitted/.test(detail)) return 'run as root (needs CAP_NET_ADMIN)';
  if (/not supported|No such file or directory/.test(detail)) {
    return 'check that the kernel has nf_tables, nft_ct, nft_masq and nf_nat (modprobe them; nft list ruleset shows what the kernel holds)';
  }
  return 'nft list ruleset shows what the kernel holds';
}

/** The process's libnftables context, or an NftError saying what to install or load. */
function library(attempted: string): Nftables {
  try {
    return Nftables.get();
  } catch (e) {
    if (e instanceof NftUnavailableError) throw new NftError(attempted, e.detail, e.hint);
    throw e;
  }
}

/**
 * Keeps the router profile's table and IPv4 forwarding in the wanted state;
 * skips work when nothing changed. `want()` returns at once: the change runs
 * in the background (on a worker thread, see libnftables.ts), one transaction
 * at a time, always with the latest wish: every want() that arrives while one
 * transaction runs (or within the same turn of the event loop) is folded into
 * the next one, so a burst of links costs one or two transactions, and
 * configuring links never waits for nftables (the forward chain fails closed
 * meanwhile).
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
    // Let the rest of this turn's wishes (a burst of link events handled
    // together) arrive before the first transaction, so they share it.
    await new Promise((resolve) => setImmediate(resolve));
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
        const attempted = `loading table inet ${this.table}`;
        const nft = library(attempted);
        // Once our table is in place, a link coming or going only changes set
        // members: send just that (with 1400 clients a delta costs 0.2 ms, a
        // whole table ~6 ms). If the delta fails (the table was changed or
        // deleted behind our back), reload the table whole.
        const delta = this.applied && this.sets ? setDelta(this.table, this.sets, g) : null;
        let incremental = false;
        if (delta === '') incremental = true; // same members, another order
        else if (delta !== null) {
          const r = await nft.run(delta);
          incremental = r.ok;
          if (!r.ok) this.log.warn({ table: this.table, err: oneLine(r.error) }, 'nftables set update refused; reloading the whole table');
        }
        if (!incremental) {
          const full = await nft.run(text);
          if (!full.ok) {
            this.applied = null;
            throw new NftError(attempted, oneLine(full.error) || `libnftables returned ${full.rc}`);
          }
        }
        this.applied = text;
        this.sets = { uplinks: new Set(safeNames(g.uplinks)), clients: new Set(safeNames(g.clients)) };
        this.log.info({ uplinks: g.uplinks.length, clients: g.clients.length, incremental }, 'nftables table updated');
      }
      await this.setForwarding(true);
    } else if (this.applied !== '') {
      await this.remove();
    }
  }

  /** Removes our table (profile switch away from a router profile, or a stale table from an earlier run). */
  async remove(): Promise<void> {
    const attempted = `deleting table inet ${this.table}`;
    let nft: Nftables | null;
    try {
      nft = library(attempted);
    } catch (e) {
      // No libnftables, or no nf_tables in the kernel, means no table of ours
      // either (a client VM may ship without them).
      if (!(e instanceof NftError)) throw e;
      this.log.debug({ table: this.table, err: e.message }, 'nftables unavailable: no table to remove');
      nft = null;
    }
    const r = nft ? await nft.run(`delete table inet ${this.table}`) : null;
    if (r && !r.ok && !/No such file or directory/.test(r.error)) throw new NftError(attempted, oneLine(r.error) || `libnftables returned ${r.rc}`);
    if (r?.ok) this.log.info({ table: this.table }, 'nftables table removed');
    this.applied = '';
    this.sets = null;
    // Forwarding was on because we turned it on: leave no router behind.
    if (this.forwarding) await this.setForwarding(false);
  }

  private async setForwarding(on: boolean): Promise<void> {
    if (this.forwarding === on) return;
    try {
      await writeFile('/proc/sys/net/ipv4/ip_forward', on ? '1\n' : '0\n');
    } catch (e) {
      throw new Error(`turning IPv4 forwarding ${on ? 'on' : 'off'} (/proc/sys/net/ipv4/ip_forward) failed: ${(e as Error).message}; run as root with /proc mounted read-write`);
    }
    this.forwarding = on;
  }
}

/**
 * libnftables' message as one line for the log and `status`: the first error
 * and the offending command (without the caret line under it, cut short: a
 * whole-table command lists every client), and how many errors followed.
 */
function oneLine(msg: string): string {
  const ls = msg.split('\n').map((l) => l.trim()).filter((l) => l && !/^[\^~ ]+$/.test(l));
  const next = ls.findIndex((l, i) => i > 0 && l.startsWith('Error:'));
  const first = (next < 0 ? ls : ls.slice(0, next)).map((l) => (l.length > 200 ? `${l.slice(0, 200)}...` : l));
  const more = next < 0 ? 0 : ls.slice(next).filter((l) => l.startsWith('Error:')).length;
  return first.join(' | ') + (more ? ` (and ${more} more error${more > 1 ? 's' : ''})` : '');
}
