// The agent: watches rtnetlink, keeps a model of what the kernel has, and
// reconciles it with what the rule engine wants. One reconcile loop, fed by
// events (hotplug), the start-up dump (coldplug), ENOBUFS (re-dump) and a
// slow periodic resync; every pass is idempotent, so running it again never
// does anything twice. Links go through explicit states (pending, configured,
// failed, ignored), as in systemd-networkd.
import { closeSync, writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from './log.js';
import { loadConfig, type Config, type Paths } from './config.js';
import { plan, linkState, type Action, type ObservedAddr, type ObservedLink, type ObservedXdp, type Plan, type RouteLite, type World, type XdpProgram } from './core/plan.js';
import { Rtnl, RtnlEvents, type AddrMsg, type LinkMsg, type RouteMsg } from './netlink/rtnl.js';
import { Forwarder, type XdpState } from './bpf/forwarder.js';
import { RouterFirewall } from './nft.js';
import { DhcpSupervisor } from './dhcp.js';
import { ControlServer, type InterfaceStatus, type StatusReport } from './status.js';
import { VERSION } from './version.js';

export interface DaemonOptions {
  paths: Paths;
  notifyFd: number | null;
  log: Logger;
}

interface Failure {
  error: string;
  attempts: number;
  retryAt: number;
}

/** How many links are configured at once (each link's own actions stay in order). */
const LINK_CONCURRENCY = 32;

export class Daemon {
  private config!: Config;
  private rtnl!: Rtnl;
  private events!: RtnlEvents;
  private forwarder: Forwarder | null = null;
  private forwarderError: { error: string; retryAt: number; attempts: number } | null = null;
  private firewall!: RouterFirewall;
  private dhcp!: DhcpSupervisor;
  private control!: ControlServer;
  private watcher: FSWatcher | null = null;

  // The model: what the kernel has, as far as we know.
  private links = new Map<number, LinkMsg>();
  private addrs = new Map<number, ObservedAddr[]>();
  private routes: RouteLite[] = [];
  private xdp = new Map<number, ObservedXdp>();
  private routerIface: number | null = null;
  private egress = new Set<number>();
  private progNames = new Map<number, XdpProgram | null>();

  private lastPlan: Plan | null = null;
  private pending = new Map<number, number>();
  private failures = new Map<number, Failure>();
  private lastError: string | null = null;

  private ready = false;
  private startedAt = Date.now();
  private dirty = false;
  private loop: Promise<void> | null = null;
  private dumping = false;
  private needDump = false;
  private buffered: Array<() => void> = [];
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDue = 0;
  private planErrors = new Map<number, string>();
  private resyncTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly opts: DaemonOptions) {}

  private get log(): Logger {
    return this.opts.log;
  }

  async start(): Promise<void> {
    const t0 = performance.now();
    const { config, fromFile } = loadConfig(this.opts.paths.config);
    this.config = config;
    this.applyLogLevel();
    this.log.info({ version: VERSION, profile: config.profile, xdpMode: config.xdpMode, config: fromFile ? this.opts.paths.config : '(defaults)', paths: this.opts.paths }, 'netagent starting');

    this.firewall = this.makeFirewall(config.nftTable);
    this.dhcp = new DhcpSupervisor(config.dhcpCommand, this.log);
    // First, so that a second agent started by mistake stops here, before touching anything.
    this.control = new ControlServer(this.opts.paths.socket, () => this.report(), this.log);
    await this.control.listen();
    this.rtnl = Rtnl.open({ timeoutMs: config.requestTimeoutMs, log: this.log });
    // Subscribe before dumping, so nothing that happens during the dump is missed.
    this.events = RtnlEvents.open({ groups: ['link', 'ipv4-ifaddr', 'ipv4-route'], rcvbufBytes: config.eventBufferBytes, log: this.log });
    this.events.on('link', (ev: { type: 'new' | 'del'; link: LinkMsg }) => this.onEvent(() => this.onLink(ev.type, ev.link)));
    this.events.on('addr', (ev: { type: 'new' | 'del'; addr: AddrMsg }) => this.onEvent(() => this.onAddr(ev.type, ev.addr)));
    this.events.on('route', (ev: { type: 'new' | 'del'; route: RouteMsg }) => this.onEvent(() => this.onRoute(ev.type, ev.route)));
    this.events.on('overflow', () => {
      this.log.warn('netlink event socket overflowed (ENOBUFS): events were lost; re-dumping and reconciling');
      this.requestDump();
    });
    this.events.on('error', (e: Error) => this.log.error({ err: e }, 'netlink event socket error'));

    this.openForwarder();

    await this.dump();
    await this.reconcileNow();
    await this.firewall.settled(); // ready means isolated too
    this.ready = true;
    this.notifyReady();
    this.log.info({ ms: Math.round(performance.now() - t0), links: this.links.size }, 'coldplug done: ready');

    if (config.resyncIntervalMs > 0) this.armResync();
    this.watchConfig();
  }

  // ---------------------------------------------------------------- events

  /** Events that arrive while a dump is being read are applied after it, in order. */
  private onEvent(apply: () => void): void {
    if (this.stopped) return;
    if (this.dumping) this.buffered.push(apply);
    else {
      apply();
      this.schedule();
    }
  }

  private onLink(type: 'new' | 'del', l: LinkMsg): void {
    // AF_BRIDGE messages describe a link's bridge-port side (and its DELLINK
    // only means "left the bridge"): not the link itself.
    if (l.family !== 0) return;
    if (type === 'del') {
      const gone = this.links.get(l.ifindex);
      this.links.delete(l.ifindex);
      this.addrs.delete(l.ifindex);
      this.xdp.delete(l.ifindex);
      this.routes = this.routes.filter((r) => r.oif !== l.ifindex);
      this.failures.delete(l.ifindex);
      this.pending.delete(l.ifindex);
      if (gone) this.log.info({ link: l.name, ifindex: l.ifindex }, 'link removed');
      return;
    }
    if (!this.links.has(l.ifindex)) this.log.info({ link: l.name, ifindex: l.ifindex, mac: l.mac }, 'link appeared');
    const before = this.links.get(l.ifindex);
    if (before && before.mac !== l.mac) this.failures.delete(l.ifindex); // a new MAC is a new chance
    this.links.set(l.ifindex, l);
    this.setXdpFromLink(l);
  }

  private onAddr(type: 'new' | 'del', a: AddrMsg): void {
    if (a.family !== 4) return;
    const cidr = `${a.local ?? a.address}/${a.prefixlen}`;
    const list = (this.addrs.get(a.ifindex) ?? []).filter((x) => x.cidr !== cidr);
    if (type === 'new') list.push({ cidr, proto: a.proto ?? 0 });
    this.addrs.set(a.ifindex, list);
  }

  private onRoute(type: 'new' | 'del', r: RouteMsg): void {
    if (!this.isOurRoute(r)) return;
    const lite = toLite(r);
    this.routes = this.routes.filter((x) => !sameLite(x, lite));
    if (type === 'new') this.routes.push(lite);
  }

  private isOurRoute(r: RouteMsg): boolean {
    return r.family === 4 && r.protocol === this.config.routeProtocol && r.oif !== null && r.table === 254;
  }

  private setXdpFromLink(l: LinkMsg): void {
    const id = l.xdp.progId;
    if (!id || l.xdp.attached === 'none') {
      this.xdp.delete(l.ifindex);
      return;
    }
    const mode = l.xdp.attached === 'native' ? 'native' : l.xdp.attached === 'hw' ? 'hw' : 'skb';
    this.xdp.set(l.ifindex, { id, mode, program: this.programOf(id) });
  }

  /** Which of our programs a prog id is (name and tag), cached: ids are not reused while the program lives. */
  private programOf(id: number): XdpProgram | null {
    if (this.progNames.has(id)) return this.progNames.get(id)!;
    if (!this.forwarder) return null; // cannot tell yet; do not cache
    let program: XdpProgram | null = null;
    try {
      program = this.forwarder.identify(id)?.program ?? null;
    } catch (e) {
      this.log.debug({ err: errText(e), id }, 'could not identify XDP program');
      return null;
    }
    this.progNames.set(id, program);
    return program;
  }

  /** Per-mode program ids, as netlink last told us (saves the forwarder a netlink dump per attach). */
  private xdpStateOf(ifindex: number): XdpState | undefined {
    const x = this.links.get(ifindex)?.xdp;
    return x ? { skbProgId: x.skbProgId, drvProgId: x.drvProgId, hwProgId: x.hwProgId } : undefined;
  }

  // ---------------------------------------------------------------- dumps

  private requestDump(): void {
    this.needDump = true;
    this.schedule();
  }

  /** Rebuilds the whole model from the kernel. Events meanwhile are buffered and replayed after. */
  private async dump(): Promise<void> {
    this.dumping = true;
    this.needDump = false;
    try {
      const [links, addrs, routes] = await Promise.all([this.rtnl.dumpLinks(), this.rtnl.dumpAddresses(4), this.rtnl.dumpRoutes(4)]);
      this.links = new Map(links.map((l) => [l.ifindex, l]));
      this.xdp = new Map();
      for (const l of links) this.setXdpFromLink(l);
      this.addrs = new Map();
      for (const a of addrs) this.onAddr('new', a);
      this.routes = routes.filter((r) => this.isOurRoute(r)).map(toLite);
      for (const i of [...this.failures.keys()]) if (!this.links.has(i)) this.failures.delete(i);
      if (this.forwarder) {
        this.routerIface = this.forwarder.routerIface();
        this.egress = new Set(this.forwarder.egress());
      }
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

  // ---------------------------------------------------------------- reconcile

  /** Coalesces: many events in one tick make one reconcile pass. */
  private schedule(): void {
    this.dirty = true;
    if (!this.loop && !this.stopped) {
      this.loop = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.runLoop());
    }
  }

  private async runLoop(): Promise<void> {
    try {
      while ((this.dirty || this.needDump) && !this.stopped) {
        this.dirty = false;
        try {
          if (this.needDump) await this.dump();
          await this.reconcileOnce();
        } catch (e) {
          this.lastError = errText(e);
          this.log.error({ err: e }, 'reconcile pass failed; retrying on the next event or resync');
          this.armRetry(1000);
        }
      }
    } finally {
      this.loop = null;
    }
  }

  /** Runs passes until nothing is left to do (used for coldplug, so "ready" means configured). */
  private async reconcileNow(): Promise<void> {
    this.schedule();
    // Always through the one loop: never two passes at once.
    while (this.loop) await this.loop;
  }

  private world(): World {
    const links = new Map<number, ObservedLink>();
    for (const l of this.links.values()) {
      links.set(l.ifindex, { ifindex: l.ifindex, name: l.name, mac: l.mac, kind: l.kind, loopback: (l.flags & 0x8) !== 0, up: l.up, promisc: l.promisc, mtu: l.mtu });
    }
    return { links, addrs: this.addrs, routes: this.routes, xdp: this.xdp, routerIface: this.routerIface, egress: this.egress };
  }

  private async reconcileOnce(): Promise<void> {
    if (!this.forwarder && this.forwarderError && Date.now() >= this.forwarderError.retryAt) this.openForwarder();
    const p = plan(this.config, this.world());
    this.lastPlan = p;
    this.pending = new Map([...p.actions].map(([i, a]) => [i, a.length]));
    // A failure with nothing left to do is over (fixed by hand, or the link went away).
    for (const ifindex of [...this.failures.keys()]) {
      if (!p.actions.has(ifindex)) {
        this.failures.delete(ifindex);
        if (this.links.has(ifindex)) this.log.info({ link: this.links.get(ifindex)!.name, ifindex }, 'link recovered');
      }
    }
    this.logPlanErrors(p);
    const now = Date.now();
    const work = [...p.actions].filter(([ifindex]) => {
      const f = this.failures.get(ifindex);
      return !f || now >= f.retryAt;
    });
    let i = 0;
    const worker = async () => {
      while (i < work.length && !this.stopped) {
        const [ifindex, actions] = work[i++]!;
        await this.applyLink(ifindex, actions);
      }
    };
    await Promise.all(Array.from({ length: Math.min(LINK_CONCURRENCY, work.length) }, worker));

    // Router profiles: nftables sets and DHCP follow the links that are configured.
    this.dhcp.sync(p.dhcp);
    this.firewall.want(p.router);
    const waiting = [...this.failures.values()].map((f) => f.retryAt - Date.now());
    if (waiting.length) this.armRetry(Math.max(50, Math.min(...waiting)));
  }

  private async applyLink(ifindex: number, actions: Action[]): Promise<void> {
    let done = 0;
    for (const a of actions) {
      try {
        await this.execute(a);
        done += 1;
        this.pending.set(ifindex, actions.length - done);
      } catch (e) {
        if (((e as { code?: string }).code === 'ENODEV' || !this.links.has(ifindex)) && ifindex !== 0) {
          // The link went away under us (a removal sends RTM_NEWLINK "down"
          // just before RTM_DELLINK, and we may be acting on the first): not
          // a failure; the DELLINK event that follows cleans up.
          this.log.debug({ link: a.name, ifindex, action: a.kind }, 'link vanished while being configured');
          return;
        }
        const f = this.failures.get(ifindex);
        const attempts = (f?.attempts ?? 0) + 1;
        const delay = Math.min(60_000, 500 * 2 ** Math.min(attempts - 1, 7));
        const error = errText(e);
        this.failures.set(ifindex, { error, attempts, retryAt: Date.now() + delay });
        this.lastError = `${a.name}: ${error}`;
        this.log.error({ link: a.name, ifindex: a.ifindex, action: a.kind, err: error, attempt: attempts, retryInMs: delay }, `could not configure ${a.name}`);
        return;
      }
    }
    if (this.failures.delete(ifindex)) this.log.info({ link: actions[0]?.name, ifindex }, 'link recovered');
    if (ifindex !== 0 && actions.length) {
      const lp = this.lastPlan?.links.get(ifindex);
      this.log.info({ link: actions[0]!.name, ifindex, role: lp?.role, actions: actions.map(describe) }, 'link configured');
    }
  }

  /** Carries out one action and updates the model the way the kernel will report it. */
  private async execute(a: Action): Promise<void> {
    switch (a.kind) {
      case 'link': {
        const change: { up?: boolean; promisc?: boolean; mtu?: number } = {};
        if (a.up !== undefined) change.up = a.up;
        if (a.promisc !== undefined) change.promisc = a.promisc;
        if (a.mtu !== undefined) change.mtu = a.mtu;
        await this.rtnl.setLink(a.ifindex, change);
        const l = this.links.get(a.ifindex);
        if (l) this.links.set(a.ifindex, { ...l, ...change });
        return;
      }
      case 'addr-add':
        await this.rtnl.addAddress(a.ifindex, a.cidr, { replace: true, proto: this.config.routeProtocol });
        this.addrs.set(a.ifindex, [...(this.addrs.get(a.ifindex) ?? []).filter((x) => x.cidr !== a.cidr), { cidr: a.cidr, proto: this.config.routeProtocol }]);
        return;
      case 'addr-del':
        await ignoring(['EADDRNOTAVAIL', 'ENODEV'], this.rtnl.deleteAddress(a.ifindex, a.cidr));
        this.addrs.set(a.ifindex, (this.addrs.get(a.ifindex) ?? []).filter((x) => x.cidr !== a.cidr));
        return;
      case 'route-add': {
        const r = a.route;
        await this.rtnl.addRoute({ dst: r.dst, oif: r.oif, ...(r.gateway ? { gateway: r.gateway } : { scope: 'link' as const }), protocol: this.config.routeProtocol }, { replace: true });
        this.routes = [...this.routes.filter((x) => !sameLite(x, r)), r];
        return;
      }
      case 'route-del': {
        const r = a.route;
        await ignoring(['ESRCH', 'ENODEV'], this.rtnl.deleteRoute({ dst: r.dst, oif: r.oif, ...(r.gateway ? { gateway: r.gateway } : {}), protocol: this.config.routeProtocol }));
        this.routes = this.routes.filter((x) => !sameLite(x, r));
        return;
      }
      case 'xdp-attach': {
        const res = this.needForwarder().attach({ ifindex: a.ifindex, name: a.name }, a.program, this.config.xdpMode, this.xdpStateOf(a.ifindex));
        this.progNames.set(res.id, a.program);
        this.xdp.set(a.ifindex, { id: res.id, mode: res.mode, program: a.program });
        if (res.adopted) this.log.info({ link: a.name, program: a.program, id: res.id }, 'adopted the XDP program already attached');
        return;
      }
      case 'xdp-detach':
        this.needForwarder().detach({ ifindex: a.ifindex, name: a.name });
        this.xdp.delete(a.ifindex);
        return;
      case 'egress-allow':
        this.needForwarder().allowEgress(a.ifindex);
        this.egress.add(a.ifindex);
        return;
      case 'egress-deny':
        this.needForwarder().disallowEgress(a.ifindex);
        this.egress.delete(a.ifindex);
        return;
      case 'router-iface':
        this.needForwarder().setRouterIface(a.ifindex);
        this.routerIface = a.ifindex;
        return;
    }
  }

  private makeFirewall(table: string): RouterFirewall {
    return new RouterFirewall(table, this.log, (e) => {
      this.lastError = errText(e);
      this.log.error({ err: errText(e) }, 'router firewall: retrying in 5 s; meanwhile client links forward nothing');
      this.armRetry(5000);
    });
  }

  // ---------------------------------------------------------------- forwarder

  private openForwarder(): void {
    try {
      this.forwarder = Forwarder.open({ bpfDir: this.opts.paths.bpfDir, pinDir: this.opts.paths.pinDir, log: this.log });
      this.forwarderError = null;
      this.routerIface = this.forwarder.routerIface();
      this.egress = new Set(this.forwarder.egress());
      this.progNames.clear(); // names of ids seen before we could tell
      for (const l of this.links.values()) this.setXdpFromLink(l);
    } catch (e) {
      const attempts = (this.forwarderError?.attempts ?? 0) + 1;
      const delay = Math.min(60_000, 1000 * 2 ** Math.min(attempts - 1, 6));
      this.forwarderError = { error: errText(e), retryAt: Date.now() + delay, attempts };
      const details = { err: errText(e), bpfDir: this.opts.paths.bpfDir, pinDir: this.opts.paths.pinDir, retryInMs: delay };
      if (this.config.profile === 'xdp-forwarder') {
        this.lastError = `XDP forwarder: ${errText(e)}`;
        this.log.error(details, 'cannot load the XDP forwarder; links that need it stay failed until it loads');
      } else if (attempts === 1) {
        // Other profiles only need it to remove programs an earlier profile left: say so once, quietly.
        this.log.info(details, `XDP forwarder not loaded (profile ${this.config.profile} does not need it)`);
      }
      this.armRetry(delay);
    }
  }

  private needForwarder(): Forwarder {
    if (this.forwarder) return this.forwarder;
    throw new Error(`the XDP forwarder is not loaded: ${this.forwarderError?.error ?? 'not opened yet'}`);
  }

  // ---------------------------------------------------------------- timers, config

  /** One retry timer; a sooner retry replaces a later one. */
  private armRetry(ms: number): void {
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

  /** Logs a link the rules refuse (bad MAC, second router link, ...) once, and again when the reason changes. */
  private logPlanErrors(p: Plan): void {
    for (const [ifindex, lp] of p.links) {
      const before = this.planErrors.get(ifindex);
      if (lp.error && lp.error !== before) {
        this.log.error({ link: lp.name, ifindex, mac: lp.mac, role: lp.role, err: lp.error }, `${lp.name} cannot be configured`);
      }
      if (lp.error) this.planErrors.set(ifindex, lp.error);
      else this.planErrors.delete(ifindex);
    }
    for (const ifindex of [...this.planErrors.keys()]) if (!p.links.has(ifindex)) this.planErrors.delete(ifindex);
  }

  private armResync(): void {
    this.resyncTimer = setInterval(() => this.requestDump(), this.config.resyncIntervalMs);
    this.resyncTimer.unref();
  }

  private watchConfig(): void {
    const file = this.opts.paths.config;
    // Watch the directory: the file may not exist yet, and editors replace files by rename.
    this.watcher = watch(dirname(file), { ignoreInitial: true, depth: 0, awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 25 } });
    const onChange = (path: string) => {
      if (basename(path) === basename(file)) this.reloadConfig();
    };
    this.watcher.on('add', onChange).on('change', onChange).on('unlink', onChange);
    this.watcher.on('error', (e) => this.log.warn({ err: e, file }, 'cannot watch the config file; edits need a restart'));
  }

  private reloadConfig(): void {
    let next: Config;
    try {
      next = loadConfig(this.opts.paths.config).config;
    } catch (e) {
      this.lastError = errText(e);
      this.log.error({ err: errText(e) }, 'config change refused; keeping the last good config');
      return;
    }
    if (JSON.stringify(next) === JSON.stringify(this.config)) return;
    const prev = this.config;
    this.config = next;
    this.applyLogLevel();
    if (prev.nftTable !== next.nftTable) {
      void this.firewall.remove().catch((e) => this.log.warn({ err: errText(e) }, 'could not remove the old nftables table'));
      this.firewall = this.makeFirewall(next.nftTable);
    }
    this.dhcp.setCommand(next.dhcpCommand);
    if (prev.eventBufferBytes !== next.eventBufferBytes) this.log.warn('eventBufferBytes changes take effect at the next start');
    if (prev.resyncIntervalMs !== next.resyncIntervalMs) {
      if (this.resyncTimer) clearInterval(this.resyncTimer);
      if (next.resyncIntervalMs > 0) this.armResync();
    }
    this.failures.clear();
    this.lastError = null;
    this.log.info({ profile: next.profile, xdpMode: next.xdpMode }, 'config reloaded; reconciling');
    this.requestDump(); // the routes of ours depend on routeProtocol: re-read everything
  }

  /** NETAGENT_LOG_LEVEL, when set, wins over the config file (a person debugging at the console). */
  private applyLogLevel(): void {
    this.log.level = process.env.NETAGENT_LOG_LEVEL || this.config.logLevel;
  }

  private notifyReady(): void {
    const fd = this.opts.notifyFd;
    if (fd === null) return;
    try {
      writeSync(fd, '\n');
      closeSync(fd);
    } catch (e) {
      this.log.warn({ err: errText(e), fd }, 'could not write the readiness notification');
    }
  }

  // ---------------------------------------------------------------- status

  report(): StatusReport {
    const p = this.lastPlan;
    const interfaces: InterfaceStatus[] = [...this.links.values()]
      .sort((a, b) => a.ifindex - b.ifindex)
      .map((l) => {
        const lp = p?.links.get(l.ifindex);
        const failure = this.failures.get(l.ifindex);
        const x = this.xdp.get(l.ifindex);
        const dhcpProblem = lp?.note === 'uplink' ? this.dhcp.problem(l.name) : null;
        return {
          name: l.name,
          ifindex: l.ifindex,
          mac: l.mac,
          role: lp?.role ?? 'ignored',
          state: lp ? linkState(lp, this.pending.get(l.ifindex) ?? 0, failure?.error ?? null) : 'pending',
          addresses: (this.addrs.get(l.ifindex) ?? []).map((a) => a.cidr),
          xdp: x && x.program && x.mode !== 'hw' ? { program: x.program, mode: x.mode, id: x.id } : null,
          error: lp?.error ?? failure?.error ?? null,
          note: dhcpProblem ?? lp?.note ?? null,
          up: l.up,
          mtu: l.mtu,
        };
      });
    let counters: Record<string, string> = {};
    try {
      if (this.forwarder) counters = Object.fromEntries(Object.entries(this.forwarder.counters()).map(([k, v]) => [k, v.toString()]));
    } catch { /* counters are a nicety */ }
    return {
      profile: this.config.profile,
      ready: this.ready,
      interfaces,
      version: VERSION,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      xdpMode: this.config.xdpMode,
      routerIface: this.routerIface,
      counters,
      lastError: this.firewall.lastError ?? (this.config.profile === 'xdp-forwarder' ? this.forwarderError?.error : undefined) ?? this.lastError,
    };
  }

  // ---------------------------------------------------------------- shutdown

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.watcher?.close();
    this.events?.close();
    if (this.loop) await this.loop.catch(() => undefined);
    await this.firewall?.settled();
    this.dhcp?.stopAll();
    if (this.config?.detachOnExit && this.forwarder) {
      for (const [ifindex, x] of this.xdp) {
        if (!x.program) continue;
        const name = this.links.get(ifindex)?.name ?? String(ifindex);
        try {
          this.forwarder.detach({ ifindex, name });
          this.log.info({ link: name, program: x.program }, 'XDP program detached (detachOnExit)');
        } catch (e) {
          this.log.warn({ link: name, err: errText(e) }, 'could not detach on exit');
        }
      }
    }
    this.forwarder?.close();
    this.rtnl?.close();
    await this.control?.close();
    this.log.info({ detached: !!this.config?.detachOnExit }, 'netagent stopped');
  }
}

function toLite(r: RouteMsg): RouteLite {
  return { dst: `${r.dst}/${r.dstLen}`, oif: r.oif!, gateway: r.gateway };
}

function sameLite(a: RouteLite, b: RouteLite): boolean {
  return a.dst === b.dst && a.oif === b.oif && a.gateway === b.gateway;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function ignoring(codes: string[], p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (!codes.includes((e as { code?: string }).code ?? '')) throw e;
  }
}

function describe(a: Action): string {
  switch (a.kind) {
    case 'link': return `set${a.up !== undefined ? (a.up ? ' up' : ' down') : ''}${a.promisc !== undefined ? ` promisc ${a.promisc ? 'on' : 'off'}` : ''}${a.mtu !== undefined ? ` mtu ${a.mtu}` : ''}`;
    case 'addr-add': return `add ${a.cidr}`;
    case 'addr-del': return `del ${a.cidr}`;
    case 'route-add': return `route ${a.route.dst}${a.route.gateway ? ` via ${a.route.gateway}` : ''}`;
    case 'route-del': return `del route ${a.route.dst}`;
    case 'xdp-attach': return `attach ${a.program}`;
    case 'xdp-detach': return 'detach xdp';
    case 'egress-allow': return 'allow egress';
    case 'egress-deny': return 'deny egress';
    case 'router-iface': return `router_iface ${a.ifindex ?? 'cleared'}`;
  }
}
