// The reconcile loop. Events (hotplug), dumps (coldplug, ENOBUFS, the slow
// resync) and our own ACKs write the model; one loop coalesces them: a pass
// hands the planner the links that changed, carries out the actions it
// returns through Effects, and records each link's state. Passes never
// overlap; every pass is idempotent, so running one again does nothing twice.
//
// A link's actions go out together (Effects keeps their order), many links at
// once. A link whose actions fail is `failed` with the reason and retried with
// backoff; every other link carries on. Each link's state (pending,
// configured, failed, ignored) is explicit, and every transition is logged
// with its reason, as systemd-networkd's link_set_state does.
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { Config } from '../config.js';
import { Planner, linkState, type Action, type LinkPlan, type LinkState, type Plan } from '../core/plan.js';
import { backoff } from '../core/backoff.js';
import type { Model, ActionResult, Snapshot } from './model.js';

/** The effects a pass needs; the real ones are netlink, libbpf, nftables and DHCP (effects.ts). */
export interface Effects {
  /** A full dump of what the model holds. */
  snapshot(): Promise<Snapshot>;
  /**
   * Starts one action and resolves with its ACK. Effects send a link's
   * actions in the order they are started, so a pass starts them all at once.
   */
  execute(a: Action): Promise<ActionResult>;
  /** Checks shared prerequisites before a pass (e.g. retries loading the XDP forwarder); true when the model must be re-read. */
  prepare(): boolean;
  /** The router profiles' nftables sets and the DHCP clients; applied beside the loop. */
  routerSets(p: Plan): void;
  /**
   * What the BPF maps hold now (null without the forwarder): read back, since
   * nothing announces a change. withVids: also the VID maps (one batch read
   * of nic_vid, a walk of router_egress; router_iface is one lookup):
   * egress, the NICs whose two entries agree; strayEgress, router_egress
   * entries that are no NIC's own VID (VID -> ifindex).
   */
  readMaps(withVids: boolean): { routerIface: number | null; egress?: ReadonlyMap<number, number>; strayEgress?: ReadonlyMap<number, number> } | null;
}

export interface LinkStatus {
  state: LinkState;
  /** Why it is in that state: the error, what is outstanding, or why it is ignored. */
  why: string;
  since: number;
}

/** Actions carried out on a link that was configured: something changed it behind our back, and we put it back. */
export interface Repair {
  ifindex: number;
  link: string;
  actions: string[];
}

export interface Transition {
  ifindex: number;
  link: string;
  from: LinkState | 'new';
  to: LinkState | 'removed';
  why: string;
}

interface Failure {
  error: string;
  action: string;
  attempts: number;
  retryAt: number;
}

/** How many links are configured at once (each link's own actions stay in order). */
const LINK_CONCURRENCY = 32;
const LINK_BACKOFF = { baseMs: 500, maxMs: 60_000 };

export class Reconciler extends EventEmitter {
  private planner: Planner;
  private plan: Plan | null = null;
  private readonly states = new Map<number, LinkStatus>();
  private readonly failures = new Map<number, Failure>();
  /** Failures of actions on shared state, by what they were for. */
  private readonly globalFailures = new Map<string, Failure>();
  /** Actions in flight per link (their state is pending meanwhile). */
  private readonly inFlight = new Map<number, readonly Action[]>();
  private readonly planErrors = new Map<number, string>();
  private globalError: string | null = null;

  private dirty = false;
  private full = true;
  private needDump = false;
  private dumping = false;
  private buffered: Array<() => void> = [];
  private loop: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDue = 0;
  private stopped = false;
  private verifyTicks = 0;

  constructor(private readonly model: Model, private readonly effects: Effects, config: Config, private readonly log: Logger) {
    super();
    this.planner = new Planner(config);
  }

  /** A new config: the next pass plans every link afresh under it, after a re-dump. */
  setConfig(config: Config): void {
    this.planner = new Planner(config);
    this.failures.clear();
    this.full = true;
    this.requestDump();
  }

  // ------------------------------------------------------------ feeding

  /** Events that arrive while a dump is being read are applied after it, in order. */
  event(apply: () => void): void {
    if (this.stopped) return;
    if (this.dumping) this.buffered.push(apply);
    else {
      apply();
      this.schedule();
    }
  }

  requestDump(): void {
    this.needDump = true;
    this.schedule();
  }

  /** Runs passes until nothing is left to do (coldplug: "ready" means configured). */
  async settle(): Promise<void> {
    this.schedule();
    while (this.loop) await this.loop;
  }

  /** Coalesces: many events in one tick make one pass. */
  schedule(): void {
    this.dirty = true;
    if (!this.loop && !this.stopped) {
      this.loop = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.run());
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.loop) await this.loop.catch(() => undefined);
  }

  /**
   * Compares what has no event with the model: the BPF maps (an entry
   * deleted, changed or added with bpftool). Cheap: one lookup every 2 s, the
   * VID maps every 4 s. A difference is repaired by the pass it schedules.
   */
  verify(): void {
    if (this.stopped || this.dumping || this.loop) return; // a pass is under way: verify next time
    // router_iface every time (one lookup); the VID maps every other time (a
    // batch read of nic_vid and a walk of router_egress, which has no batch
    // lookup: ~5 ms with 1000 NICs).
    this.verifyTicks += 1;
    let maps: ReturnType<Effects['readMaps']>;
    try {
      maps = this.effects.readMaps(this.verifyTicks % 2 === 0);
    } catch (e) {
      this.log.debug({ err: errText(e) }, 'could not read the BPF maps back');
      return;
    }
    if (maps && this.model.checkMaps(maps.routerIface, maps.egress ?? null, maps.strayEgress ?? null)) {
      this.log.warn({ routerIface: maps.routerIface }, 'the BPF maps differ from what netagent wrote (changed behind its back): repairing');
      this.schedule();
    }
  }

  // ------------------------------------------------------------ reading

  current(): Plan | null {
    return this.plan;
  }

  status(ifindex: number): LinkStatus | undefined {
    return this.states.get(ifindex);
  }

  /** Problems not tied to one link (a dump that failed, router_iface not written), while they last. */
  errors(): string[] {
    const out = this.globalError ? [this.globalError] : [];
    for (const f of this.globalFailures.values()) out.push(`${f.action}: ${f.error}`);
    return out;
  }

  /** Failed or pending links' reasons, in ifindex order (status's last error). */
  linkProblems(): Array<{ ifindex: number; why: string }> {
    const out: Array<{ ifindex: number; why: string }> = [];
    for (const [ifindex, s] of this.states) if (s.state === 'failed') out.push({ ifindex, why: s.why });
    return out.sort((a, b) => a.ifindex - b.ifindex);
  }

  // ------------------------------------------------------------ the loop

  private async run(): Promise<void> {
    try {
      while ((this.dirty || this.needDump || this.model.hasDirty) && !this.stopped) {
        this.dirty = false;
        try {
          if (this.effects.prepare()) this.needDump = true;
          if (this.needDump) await this.dump();
          await this.pass();
          this.globalError = null;
        } catch (e) {
          this.globalError = errText(e);
          this.log.error({ err: this.globalError }, 'reconcile pass failed; retrying in 1 s');
          this.armRetry(1000);
          break;
        }
      }
    } finally {
      this.loop = null;
    }
  }

  /** Rebuilds the whole model from the kernel. Events meanwhile are buffered and replayed after. */
  private async dump(): Promise<void> {
    this.dumping = true;
    this.needDump = false;
    try {
      this.model.replace(await this.effects.snapshot());
      for (const i of [...this.failures.keys()]) if (!this.model.link(i)) this.failures.delete(i);
    } catch (e) {
      this.needDump = true; // the model still lacks what was lost: try again
      throw e;
    } finally {
      this.dumping = false;
      const replay = this.buffered;
      this.buffered = [];
      for (const apply of replay) apply();
    }
  }

  private async pass(): Promise<void> {
    const changed = this.model.takeDirty();
    const p = this.planner.update(this.model.world(), this.full ? null : changed);
    this.full = false;
    this.plan = p;
    const now = Date.now();
    const work: Array<[number, readonly Action[]]> = [];
    const review = new Set<number>([...p.replanned, ...changed]);
    for (const [ifindex, actions] of p.actions) {
      const f = this.failures.get(ifindex);
      if (!f || now >= f.retryAt) work.push([ifindex, actions]);
    }
    // A failure with nothing left to do is over (fixed by hand, or the link went away).
    for (const ifindex of [...this.failures.keys()]) {
      if (!p.actions.has(ifindex)) {
        this.failures.delete(ifindex);
        review.add(ifindex);
      }
    }
    this.logPlanErrors(p);
    // Stray allowlist entries go before any NIC is given a VID: a stray may
    // hold the VID a new NIC is about to get.
    for (const a of p.globals) if (a.kind === 'egress-stray') await this.applyGlobal(a);
    for (const [ifindex, actions] of work) {
      this.inFlight.set(ifindex, actions);
      review.add(ifindex);
      if (this.states.get(ifindex)?.state === 'configured') {
        this.emit('repair', { ifindex, link: actions[0]?.name ?? this.nameOf(ifindex, undefined), actions: actions.map(describe) } satisfies Repair);
      }
    }

    // Each worker sends its link's requests before its first await, so the
    // first LINK_CONCURRENCY links' requests are out before anything is logged.
    let next = 0;
    const worker = async () => {
      while (next < work.length && !this.stopped) {
        const [ifindex, actions] = work[next++]!;
        await this.applyLink(ifindex, actions);
      }
    };
    const working = Promise.all(Array.from({ length: Math.min(LINK_CONCURRENCY, work.length) }, worker));
    this.review(review, 'planned');
    await working;
    for (const a of p.globals) if (a.kind !== 'egress-stray') await this.applyGlobal(a);
    for (const key of [...this.globalFailures.keys()]) {
      if (!p.globals.some((a) => globalKey(a) === key)) this.globalFailures.delete(key);
    }
    this.effects.routerSets(p);

    // Links whose actions all went through are configured once the next pass
    // finds nothing to do (the ACKs marked them); those that failed say so now.
    this.review(work.map(([i]) => i).filter((i) => this.failures.has(i)), 'applied');
    const waiting = [...this.failures.values(), ...this.globalFailures.values()].map((f) => f.retryAt - Date.now());
    if (waiting.length) this.armRetry(Math.max(50, Math.min(...waiting)));
  }

  /**
   * Sends a link's actions together; the first failure makes the link
   * `failed`. A synchronous effect (libbpf) that throws stops the batch there
   * (no allowlist entry without the program, no "up" without it); netlink
   * requests already sent run on their own in the kernel, and the model
   * learns of those that succeeded.
   */
  private async applyLink(ifindex: number, actions: readonly Action[]): Promise<void> {
    const started: Array<Promise<ActionResult>> = [];
    let stopped: unknown = undefined;
    for (const a of actions) {
      try {
        const p = this.effects.execute(a);
        started.push(p);
        // Nothing after an XDP attach goes out until it is acknowledged: no
        // allowlist entry, no "up" for a NIC that does not forward.
        if (a.kind === 'xdp-attach') {
          try {
            await p;
          } catch (e) {
            stopped = e;
            started.pop();
            break;
          }
        }
      } catch (e) {
        stopped = e;
        break;
      }
    }
    const results = await Promise.allSettled(started);
    this.inFlight.delete(ifindex);
    let failed: { a: Action; e: unknown } | null = null;
    for (let k = 0; k < results.length; k++) {
      const r = results[k]!;
      if (r.status === 'fulfilled') this.model.applied(actions[k]!, r.value);
      else if (!failed) failed = { a: actions[k]!, e: r.reason };
    }
    if (!failed && stopped !== undefined) failed = { a: actions[results.length]!, e: stopped };
    if (!failed) return;
    const { a, e } = failed;
    if ((e as { code?: string }).code === 'ENODEV' || !this.model.link(ifindex)) {
      // The link went away under us (a removal sends RTM_NEWLINK "down"
      // just before RTM_DELLINK, and we may be acting on the first): not a
      // failure; the DELLINK event that follows cleans up.
      this.log.debug({ link: a.name, ifindex, action: a.kind }, 'link vanished while being configured');
      return;
    }
    const f = this.failures.get(ifindex);
    const attempts = (f?.attempts ?? 0) + 1;
    const delay = backoff(attempts, LINK_BACKOFF);
    const error = errText(e);
    this.failures.set(ifindex, { error, action: describe(a), attempts, retryAt: Date.now() + delay });
    this.log.error({ link: a.name, ifindex, action: describe(a), err: error, attempt: attempts, retryInMs: delay }, `could not configure ${a.name}: ${describe(a)} failed`);
  }

  /** Shared state (router_iface, allowlist entries of gone links): a failure is retried with backoff and shown in status. */
  private async applyGlobal(a: Action): Promise<void> {
    const key = globalKey(a);
    const f = this.globalFailures.get(key);
    if (f && Date.now() < f.retryAt) return;
    try {
      this.model.applied(a, await this.effects.execute(a));
      this.globalFailures.delete(key);
    } catch (e) {
      const attempts = (f?.attempts ?? 0) + 1;
      const delay = backoff(attempts, LINK_BACKOFF);
      const error = errText(e);
      this.globalFailures.set(key, { error, action: describe(a), attempts, retryAt: Date.now() + delay });
      this.log.error({ link: a.name, action: describe(a), err: error, attempt: attempts, retryInMs: delay }, `could not ${describe(a)}`);
      if (a.kind === 'router-iface' && a.ifindex !== null) this.review([a.ifindex], 'applied');
    }
  }

  // ------------------------------------------------------------ states

  /** Derives the state of the given links and logs every transition. */
  private review(ifindexes: Iterable<number>, phase: 'planned' | 'applied'): void {
    const p = this.plan;
    for (const ifindex of ifindexes) {
      const lp = p?.links.get(ifindex);
      const before = this.states.get(ifindex);
      if (!lp || !this.model.link(ifindex)) {
        if (before) {
          this.states.delete(ifindex);
          this.transition({ ifindex, link: this.nameOf(ifindex, lp), from: before.state, to: 'removed', why: 'the link is gone' });
        }
        continue;
      }
      const next = this.stateOf(lp, phase);
      if (before && before.state === next.state && before.why === next.why) continue;
      this.states.set(ifindex, { ...next, since: before && before.state === next.state ? before.since : Date.now() });
      if (!before || before.state !== next.state) {
        this.transition({ ifindex, link: lp.name, from: before?.state ?? 'new', to: next.state, why: next.why });
      }
    }
  }

  /** The state (core/plan.ts linkState: the one rule) and why, from the plan, failures and what is outstanding. */
  private stateOf(lp: LinkPlan, phase: 'planned' | 'applied'): { state: LinkState; why: string } {
    // The router link is not configured until router_iface names it.
    const routerIfaceDue = lp.want.xdp === 'router' && this.model.router !== lp.ifindex;
    const f = this.failures.get(lp.ifindex) ?? (routerIfaceDue ? this.globalFailures.get('router-iface') : undefined);
    const failure = f ? `${f.action}: ${f.error} (attempt ${f.attempts}; retrying with backoff)` : null;
    const outstanding = (this.inFlight.get(lp.ifindex) ?? this.plan?.actions.get(lp.ifindex) ?? []).map(describe);
    if (routerIfaceDue) outstanding.push(`router_iface ${lp.ifindex}`);
    const state = linkState(lp, outstanding.length, failure);
    switch (state) {
      // Not ours to configure, but what we changed on it is put back: a restore that fails says so.
      case 'ignored': return { state, why: `${lp.note ?? 'not ours to configure'}${failure ? `; ${failure}` : ''}` };
      case 'failed': return { state, why: lp.error ?? failure! };
      case 'pending': return { state, why: `${phase === 'planned' ? 'applying' : 'to do'}: ${outstanding.join(', ')}` };
      case 'configured': return { state, why: describeWant(lp) };
    }
  }

  private transition(t: Transition): void {
    const level = t.to === 'failed' ? 'warn' : 'info';
    this.log[level]({ link: t.link, ifindex: t.ifindex, from: t.from, to: t.to, why: t.why }, 'link state');
    this.emit('transition', t);
  }

  private nameOf(ifindex: number, lp: LinkPlan | undefined): string {
    return lp?.name ?? this.model.link(ifindex)?.name ?? `ifindex ${ifindex}`;
  }

  /** Logs a link the rules refuse (bad MAC, second router link, ...) once, and again when the reason changes. */
  private logPlanErrors(p: Plan): void {
    for (const ifindex of p.replanned) {
      const lp = p.links.get(ifindex);
      const before = this.planErrors.get(ifindex);
      if (lp?.error && lp.error !== before) {
        this.log.error({ link: lp.name, ifindex, mac: lp.mac, role: lp.role, err: lp.error }, `${lp.name} cannot be configured`);
      }
      if (lp?.error) this.planErrors.set(ifindex, lp.error);
      else this.planErrors.delete(ifindex);
    }
  }

  // ------------------------------------------------------------ timers

  /** One retry timer; a sooner retry replaces a later one. */
  armRetry(ms: number): void {
    if (this.stopped) return;
    const due = Date.now() + ms;
    if (this.retryTimer && this.retryDue <= due) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryDue = due;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.schedule();
    }, ms);
  }
}

function globalKey(a: Action): string {
  return a.kind === 'router-iface' ? 'router-iface' : a.kind === 'egress-stray' ? `${a.kind} ${a.vid}` : `${a.kind} ${a.ifindex}`;
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One action in a few words, for logs and status. */
export function describe(a: Action): string {
  switch (a.kind) {
    case 'link': return `${a.restore ? 'restore' : 'set'}${a.up !== undefined ? (a.up ? ' up' : ' down') : ''}${a.promisc !== undefined ? ` promisc ${a.promisc ? 'on' : 'off'}` : ''}${a.mtu !== undefined ? ` mtu ${a.mtu}` : ''}`;
    case 'addr-add': return `add ${a.cidr}`;
    case 'addr-del': return `del ${a.cidr}`;
    case 'route-add': return `route ${a.route.dst}${a.route.gateway ? ` via ${a.route.gateway}` : ''}`;
    case 'route-del': return `del route ${a.route.dst}`;
    case 'xdp-attach': return `attach ${a.program}`;
    case 'xdp-detach': return 'detach xdp';
    case 'vlan-offload-off': return 'rx-vlan-offload off';
    case 'vlan-offload-restore': return 'restore rx-vlan-offload on';
    case 'egress-allow': return `VID ${a.vid}`;
    case 'egress-deny': return 'deny egress';
    case 'egress-stray': return `remove stray router_egress[${a.vid}] -> ifindex ${a.ifindex}`;
    case 'router-iface': return `router_iface ${a.ifindex ?? 'cleared'}`;
  }
}

function describeWant(lp: LinkPlan): string {
  const w = lp.want;
  const parts: string[] = [];
  if (w.xdp) parts.push(`${w.xdp} attached`);
  if (w.promisc) parts.push('promisc');
  if (w.mtu !== null) parts.push(`mtu ${w.mtu}`);
  if (w.addresses.length) parts.push(w.addresses.join(' '));
  for (const r of w.routes) parts.push(`route ${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}`);
  if (w.up) parts.push('up');
  return parts.length ? parts.join(', ') : 'nothing to do';
}
