// nftables for the router profiles: one table of ours (family inet), with
// named sets of uplink and client interface names, replaced atomically in a
// single transaction, through libnftables in-process (agent/libnftables.ts:
// no `nft` process per change). Client isolation follows vmsilo's rule:
// forwarded traffic from one client link to another is dropped, replies to
// connections a client opened are allowed, client traffic leaving through an
// uplink is masqueraded. The forward chain fails closed (policy drop): a
// client link that is up before its name reaches the set forwards nothing,
// rather than everything. The table is ours alone: nothing else is touched.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Nftables, NftUnavailableError } from './libnftables.js';
import { NftWatch, type ForeignChange } from './nftwatch.js';
import { Conntrack } from './conntrack.js';
import { readIp4 } from './core/ipv4.js';
import type { Logger } from './log.js';
import type { RouterGlobals } from './core/plan.js';

/** The per-client counter sets (element counters: one per client and set, counted where a lookup matches). */
export const COUNTER_SETS = ['tx', 'rx', 'spoofed', 'to_client', 'to_netvm'] as const;
type SetName = 'uplinks' | 'clients' | 'sources' | 'gateways' | 'dns' | (typeof COUNTER_SETS)[number];

/** The elements of every set and map of our table, as nft text ('"vm1"', '"vm1" . 100.64.0.3', '53 : 192.0.2.53'). */
export function setElements(g: RouterGlobals, resolvers: readonly string[] = []): Record<SetName, string[]> {
  const q = (n: string) => JSON.stringify(n);
  const clients = safeNames(g.clients);
  const known = new Set(clients);
  const peers = g.peers.filter((p) => known.has(p.name) && isIp4(p.address) && isIp4(p.gateway));
  const out = {
    uplinks: safeNames(g.uplinks).map(q),
    clients: clients.map(q),
    sources: peers.map((p) => `${q(p.name)} . ${p.address}`),
    gateways: peers.map((p) => `${q(p.name)} . ${p.gateway}`),
    // One resolver: a DNAT names one target (see README, "Router firewall").
    dns: resolvers.filter(isIp4).slice(0, 1).map((r) => `53 : ${r}`),
  } as Record<SetName, string[]>;
  for (const c of COUNTER_SETS) out[c] = clients.map(q);
  return out;
}

/**
 * The ruleset text for our table (pure; tested without root). Every part that
 * changes as links come and go (or as the DHCP lease names another resolver)
 * is a set or map element, so that a change is an element delta, never a rule
 * change. The chains, in packet order:
 *   antispoof (prerouting, priority raw: before conntrack, so a spoofed
 *     packet makes no connection entry): a client link forwards only its own
 *     source address; DHCP from 0.0.0.0 passes; IPv6 from clients is dropped.
 *   dns_dnat (prerouting, dstnat): DNS to a client's gateway goes to the
 *     uplink's resolver.
 *   input: from a client, ICMP echo, DHCP and DNS to its gateway; from an
 *     uplink, replies and DHCP; the rest dropped and counted.
 *   forward (policy drop: fails closed while sets fill): replies, and client
 *     to uplink; client to client dropped and counted.
 *   postrouting: client traffic out of an uplink is masqueraded.
 */
export function renderRuleset(table: string, g: RouterGlobals, resolvers: readonly string[] = [], els = setElements(g, resolvers)): string {
  const elements = (name: SetName) => (els[name].length ? `    elements = { ${els[name].join(', ')} }\n` : '');
  const set = (name: SetName, type: string, extra = '') => `  set ${name} {\n    type ${type}\n${extra}${elements(name)}  }\n`;
  return (
    // "add" then "delete" makes the delete succeed whether or not the table existed;
    // the whole file is one transaction, so there is never a moment without rules.
    `add table inet ${table}\ndelete table inet ${table}\n` +
    `table inet ${table} {\n` +
    set('uplinks', 'ifname') +
    set('clients', 'ifname') +
    set('sources', 'ifname . ipv4_addr') +
    set('gateways', 'ifname . ipv4_addr') +
    `  map dns {\n    type inet_service : ipv4_addr\n${elements('dns')}  }\n` +
    COUNTER_SETS.map((c) => set(c, 'ifname', '    counter\n')).join('') +
    `  chain antispoof {\n    type filter hook prerouting priority raw; policy accept;\n` +
    `    iifname != @clients accept\n` +
    `    meta nfproto != ipv4 counter drop comment "IPv4 only: nothing else from a client"\n` +
    `    iifname . ip saddr @sources accept\n` +
    `    ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept comment "DHCP before an address"\n` +
    `    iifname @spoofed drop comment "not the client's own source address"\n    drop\n  }\n` +
    `  chain dns_dnat {\n    type nat hook prerouting priority dstnat; policy accept;\n` +
    `    iifname . ip daddr @gateways meta l4proto { tcp, udp } dnat ip to th dport map @dns comment "DNS on the gateway goes to the uplink's resolver"\n  }\n` +
    `  chain input {\n    type filter hook input priority filter; policy accept;\n` +
    `    iifname @clients jump client_in\n    iifname @uplinks jump uplink_in\n  }\n` +
    `  chain client_in {\n    ct state established,related accept\n    icmp type echo-request accept\n` +
    `    udp sport 68 udp dport 67 accept comment "DHCP"\n` +
    `    iifname . ip daddr @gateways meta l4proto { tcp, udp } th dport 53 accept comment "DNS on the gateway while no resolver is known: refused at once"\n` +
    `    iifname @to_netvm drop comment "nothing else reaches the net VM"\n    drop\n  }\n` +
    `  chain uplink_in {\n    ct state established,related accept\n    udp sport 67 udp dport 68 accept comment "DHCP"\n` +
    `    counter drop comment "nothing else reaches the net VM from an uplink"\n  }\n` +
    `  chain forward {\n    type filter hook forward priority filter; policy drop;\n` +
    `    ct state established,related jump accounted\n` +
    `    iifname @clients oifname @uplinks jump accounted\n` +
    `    iifname @clients oifname @clients iifname @to_client drop comment "clients are kept apart"\n` +
    `    counter comment "clients are kept apart: nothing else is forwarded"\n  }\n` +
    `  chain accounted {\n    iifname @tx\n    oifname @rx\n    accept\n  }\n` +
    `  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n` +
    `    iifname @clients oifname @uplinks counter masquerade\n  }\n` +
    `}\n`
  );
}

export type AppliedSets = Record<SetName, Set<string>>;

/** The commands that turn the applied elements into the wanted ones ('' when equal); deletions first. */
export function setDelta(table: string, have: AppliedSets, want: Record<SetName, string[]>): string {
  const dels: string[] = [];
  const adds: string[] = [];
  for (const name of Object.keys(want) as SetName[]) {
    const next = new Set(want[name]);
    const add = [...next].filter((x) => !have[name]?.has(x));
    const del = [...(have[name] ?? [])].filter((x) => !next.has(x));
    // A map element is deleted by its key alone.
    const key = (x: string) => (name === 'dns' ? x.split(' : ')[0]! : x);
    if (del.length) dels.push(`delete element inet ${table} ${name} { ${del.map(key).join(', ')} }`);
    if (add.length) adds.push(`add element inet ${table} ${name} { ${add.join(', ')} }`);
  }
  const lines = [...dels, ...adds];
  return lines.join('\n') + (lines.length ? '\n' : '');
}

function toSets(els: Record<SetName, string[]>): AppliedSets {
  return Object.fromEntries(Object.entries(els).map(([k, v]) => [k, new Set(v)])) as AppliedSets;
}

/** Interface names nft's quoting can carry; others are left out (and forward nothing: fail closed). */
function safeNames(items: string[]): string[] {
  return items.filter((i) => /^[A-Za-z0-9_.@:+-]{1,15}$/.test(i));
}

function isIp4(s: string): boolean {
  const r = readIp4(s);
  return r.ok;
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

/** A client's traffic through the router and what was dropped from it, by reason. */
export interface ClientCounters {
  /** Forwarded from the client (to an uplink, DNS included). */
  tx: { packets: number; bytes: number };
  /** Forwarded to the client (replies). */
  rx: { packets: number; bytes: number };
  /** Dropped packets by reason: a source address not the client's own; towards another client; towards the net VM itself. */
  dropped: { spoofed: number; toClient: number; toNetVm: number };
}

export interface FirewallOptions {
  /** How often what nobody announces is checked (IPv4 forwarding; the table, when notifications cannot be had). */
  verifyMs?: number;
  /** Delete a client's connection-tracking entries when its link goes. */
  purgeConntrack?: boolean;
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
 *
 * Truth and repair: nftables announces every change (NftWatch); a change to
 * our table by another program (`nft flush ruleset`, a deleted element)
 * reloads the table whole at once. IPv4 forwarding is announced to nobody we
 * listen to: it is read every `verifyMs` (2 s) and turned back on. While
 * either is being repaired, lastError says what happened.
 */
export class RouterFirewall {
  /** Our table is loaded as `sets` says (false: the next apply loads it whole). */
  private loaded = false;
  /** remove() ran and nothing was loaded since. */
  private removed = false;
  /** Set and map elements as last applied (for deltas). */
  private sets: AppliedSets | null = null;
  /** The clients as last applied: name -> address (for the conntrack purge). */
  private peers = new Map<string, string>();
  private forwarding: boolean | null = null;
  private desired: RouterGlobals | null = null;
  private resolvers: string[] = [];
  private worker: Promise<void> | null = null;
  private watch: NftWatch | null = null;
  private watchTried = false;
  private timer: NodeJS.Timeout | null = null;
  private conntrack: Conntrack | null = null;
  private lastCounters = new Map<string, ClientCounters>();
  private countersAt = 0;
  private counterRead: Promise<void> | null = null;
  /** The last failure, until a later apply succeeds. */
  lastError: string | null = null;
  private readonly verifyMs: number;
  private readonly purge: boolean;

  constructor(
    private readonly table: string,
    private readonly log: Logger,
    private readonly onError: (e: Error) => void = () => {},
    opts: FirewallOptions = {},
  ) {
    this.verifyMs = opts.verifyMs ?? 2000;
    this.purge = opts.purgeConntrack ?? true;
  }

  want(g: RouterGlobals | null): void {
    this.desired = g;
    if (!this.worker) this.worker = this.drain().finally(() => (this.worker = null));
  }

  /**
   * The resolvers the uplinks' DHCP leases named (DhcpSupervisor.resolvers()):
   * DNS to a client's gateway is sent to the first one.
   */
  setResolvers(resolvers: readonly string[]): void {
    if (resolvers.join(' ') === this.resolvers.join(' ')) return;
    this.resolvers = [...resolvers];
    this.log.info({ resolvers: this.resolvers }, 'DNS resolvers for clients changed');
    if (this.desired) this.want(this.desired);
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
      const resolvers = this.resolvers;
      try {
        await this.apply(g);
        this.lastError = null;
      } catch (e) {
        this.lastError = (e as Error).message;
        this.onError(e as Error);
        return;
      }
      if (this.desired === g && this.resolvers === resolvers) return; // nothing newer arrived meanwhile
    }
  }

  async apply(g: RouterGlobals | null): Promise<void> {
    if (g) {
      const els = setElements(g, this.resolvers);
      // Once our table is in place, a link coming or going only changes set
      // elements: send just that (with 1000 clients a delta costs about half
      // a millisecond, the whole table ~90 ms). If the delta fails (the table
      // was changed or deleted behind our back), reload the table whole.
      const delta = this.loaded && this.sets ? setDelta(this.table, this.sets, els) : null;
      if (delta !== '') {
        const attempted = `loading table inet ${this.table}`;
        const nft = library(attempted);
        let incremental = false;
        if (delta !== null) {
          const r = await nft.run(delta);
          incremental = r.ok;
          if (!r.ok) this.log.warn({ table: this.table, err: oneLine(r.error) }, 'nftables set update refused; reloading the whole table');
        }
        if (!incremental) {
          const full = await nft.run(renderRuleset(this.table, g, this.resolvers, els));
          if (!full.ok) {
            this.loaded = false;
            throw new NftError(attempted, oneLine(full.error) || `libnftables returned ${full.rc}`);
          }
        }
        this.loaded = true;
        this.removed = false;
        this.sets = toSets(els);
        this.log.info({ uplinks: g.uplinks.length, clients: g.clients.length, incremental }, 'nftables table updated');
        this.startWatching(nft);
      }
      await this.setForwarding(true);
      await this.purgeGone(g);
    } else if (!this.removed) {
      await this.remove();
    }
  }

  /** Removes our table (profile switch away from a router profile, or a stale table from an earlier run). */
  async remove(): Promise<void> {
    this.stopWatching();
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
    this.loaded = false;
    this.removed = true;
    this.sets = null;
    this.peers.clear();
    // Forwarding was on because we turned it on: leave no router behind.
    if (this.forwarding) await this.setForwarding(false);
  }

  /** Stops watching (the table stays). */
  close(): void {
    this.stopWatching();
    this.conntrack?.close();
    this.conntrack = null;
  }

  /**
   * Each client's counters, by link name, as last read; starts a new reading
   * when the last is older than a second. A reading is one in-process
   * `list sets` (JSON) on libnftables' worker thread: ~80 ms of CPU with 1000
   * clients, too much for the event loop, and only spent when someone asks
   * (`status`), never on a timer.
   */
  clientCounters(): Map<string, ClientCounters> {
    if (this.loaded && !this.counterRead && Date.now() - this.countersAt > 1000) {
      this.counterRead = this.readCounters().catch(() => this.lastCounters).finally(() => (this.counterRead = null)).then(() => {});
    }
    return this.lastCounters;
  }

  /** Reads the counters now (off the event loop) and returns them. */
  async readCounters(): Promise<Map<string, ClientCounters>> {
    if (!this.loaded) return (this.lastCounters = new Map());
    const r = await Nftables.get().run(`list sets table inet ${this.table}`, { json: true });
    if (r.ok) {
      this.lastCounters = parseCounters(r.output);
      this.countersAt = Date.now();
    }
    return this.lastCounters;
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

  /** Deletes the connection-tracking entries of clients that left (or whose address changed). */
  private async purgeGone(g: RouterGlobals): Promise<void> {
    const next = new Map(g.peers.map((p) => [p.name, p.address]));
    const still = new Set(next.values());
    const gone = [...this.peers].filter(([name, addr]) => next.get(name) !== addr && !still.has(addr));
    this.peers = next;
    if (!this.purge || !gone.length) return;
    this.conntrack ??= new Conntrack(this.log);
    await Promise.all(gone.map(async ([name, address]) => {
      try {
        await this.conntrack!.purgeSource(address);
        this.log.info({ link: name, address }, 'client gone: its connection-tracking entries deleted');
      } catch (e) {
        // Not fatal: the entries time out on their own.
        this.log.warn({ link: name, address, err: (e as Error).message }, 'could not delete the connection-tracking entries of a client that left');
      }
    }));
  }

  // ------------------------------------------------------------ truth and repair

  private startWatching(nft: Nftables): void {
    if (!this.watchTried) {
      this.watchTried = true;
      try {
        this.watch = new NftWatch(this.table, () => nft.portId, this.log, (changes) => this.foreignChange(changes), () => this.repair('nftables notifications were lost (ENOBUFS); reloading our table'));
      } catch (e) {
        this.log.warn({ err: (e as Error).message, everyMs: this.verifyMs }, 'no nftables notifications: checking our table on a timer instead');
      }
    }
    if (!this.timer && this.verifyMs > 0) {
      this.timer = setInterval(() => this.verify(), this.verifyMs);
      this.timer.unref();
    }
  }

  private stopWatching(): void {
    this.watch?.close();
    this.watch = null;
    this.watchTried = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private foreignChange(changes: ForeignChange[]): void {
    if (!this.loaded) return; // being (re)loaded already
    const who = [...new Set(changes.map((c) => c.portId))].join(', ');
    const what = [...new Set(changes.map((c) => c.what))].join(', ');
    this.repair(`nftables table inet ${this.table} was changed by another program (${what}; netlink port ${who}); restoring it`);
  }

  private repair(why: string): void {
    this.log.warn({ table: this.table }, why);
    this.lastError = why;
    this.loaded = false; // the next apply loads the table whole
    if (this.desired) this.want(this.desired);
  }

  /** What nobody announces: IPv4 forwarding (and our table, without notifications). Cheap: one small read. */
  private verify(): void {
    if (this.worker || !this.desired) return;
    if (this.forwarding) {
      let v = '';
      try {
        v = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
      } catch { /* no /proc: nothing to check */ }
      if (v === '0') {
        this.forwarding = null;
        this.lastError = 'IPv4 forwarding was turned off by someone else (net.ipv4.ip_forward = 0); turning it on again';
        this.log.warn(this.lastError);
        this.want(this.desired);
        return;
      }
    }
    if (!this.watch && this.loaded) {
      const r = Nftables.get().runSyncIfIdle(`list chain inet ${this.table} forward`);
      if (r && !r.ok) this.repair(`nftables table inet ${this.table} is gone or damaged (${oneLine(r.error)}); restoring it`);
    }
  }
}

/** Per-client counters from `list sets` JSON output (pure; tested without root). */
export function parseCounters(json: string): Map<string, ClientCounters> {
  const out = new Map<string, ClientCounters>();
  const get = (name: string) => {
    let c = out.get(name);
    if (!c) out.set(name, (c = { tx: { packets: 0, bytes: 0 }, rx: { packets: 0, bytes: 0 }, dropped: { spoofed: 0, toClient: 0, toNetVm: 0 } }));
    return c;
  };
  type Elem = { elem?: { val?: unknown; counter?: { packets: number; bytes: number } } };
  const doc = JSON.parse(json) as { nftables?: Array<{ set?: { name: string; elem?: Elem[] } }> };
  for (const o of doc.nftables ?? []) {
    const set = o.set;
    if (!set || !(COUNTER_SETS as readonly string[]).includes(set.name)) continue;
    for (const e of set.elem ?? []) {
      const name = e.elem?.val;
      const k = e.elem?.counter;
      if (typeof name !== 'string' || !k) continue;
      const c = get(name);
      switch (set.name) {
        case 'tx': c.tx = { packets: k.packets, bytes: k.bytes }; break;
        case 'rx': c.rx = { packets: k.packets, bytes: k.bytes }; break;
        case 'spoofed': c.dropped.spoofed = k.packets; break;
        case 'to_client': c.dropped.toClient = k.packets; break;
        case 'to_netvm': c.dropped.toNetVm = k.packets; break;
      }
    }
  }
  return out;
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
