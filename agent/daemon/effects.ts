// The effects: each action the planner asks for, carried out through its one
// way in (netlink for links, addresses and routes; libbpf for XDP programs and
// maps; nftables and the DHCP supervisor for the router profiles). Netlink
// requests go out on one socket as soon as they are started, so a link's
// requests are sent together and the kernel keeps their order; libbpf calls
// are synchronous and so happen in order too.
import type { Logger } from '../log.js';
import type { Config, Paths } from '../config.js';
import type { Action, Plan, XdpProgram } from '../core/plan.js';
import { backoff } from '../core/backoff.js';
import type { Rtnl } from '../netlink/rtnl.js';
import { Forwarder, type LinkCounters, type XdpState } from '../bpf/forwarder.js';
import { BpfError } from '../bpf/errors.js';
import { RouterFirewall } from '../nft.js';
import { DhcpSupervisor } from '../dhcp.js';
import { EthtoolError, rxVlanOffload, setRxVlanOffload } from '../ethtool.js';
import { ResolvConf, clientNameServers } from '../resolvconf.js';
import type { Effects } from './reconciler.js';
import { errText } from './reconciler.js';
import type { ActionResult, Model, Snapshot } from './model.js';

const FORWARDER_BACKOFF = { baseMs: 1000, maxMs: 60_000 };

export class KernelEffects implements Effects {
  private forwarder: Forwarder | null = null;
  private forwarderFailure: { error: string; retryAt: number; attempts: number } | null = null;
  /** Set when the forwarder (re)opened: the model must re-read router_iface, the allowlist and program names. */
  private reopened = false;
  firewall: RouterFirewall;
  readonly dhcp: DhcpSupervisor;
  readonly resolvConf: ResolvConf;
  private lastDhcp = '';
  private lastPlan: Plan | null = null;
  /** The router sets last handed to the firewall (undefined: none yet, or a new firewall). */
  private lastRouter: Plan['router'] | undefined = undefined;

  constructor(
    private config: Config,
    private readonly paths: Paths,
    private readonly rtnl: Rtnl,
    private readonly log: Logger,
    /** Called when something beside the loop fails and wants a retry in ms. */
    private readonly retry: (ms: number) => void,
  ) {
    this.firewall = this.makeFirewall(config.nftTable);
    this.dhcp = new DhcpSupervisor(config.dhcpCommand, log);
    this.resolvConf = new ResolvConf(log);
    this.dhcp.onResolvers = (r) => {
      this.firewall.setResolvers(r);
      this.syncResolvConf();
    };
  }

  /** resolv.conf: the client's gateway (client profile) or the uplink leases' resolvers (router profiles). */
  private syncResolvConf(): void {
    const path = this.config.writeResolvConf ? this.config.resolvConfPath : null;
    const servers = this.config.profile === 'client' ? (this.lastPlan ? clientNameServers(this.lastPlan) : []) : this.dhcp.resolvers();
    this.resolvConf.want(path, servers);
  }

  /** The model this works for: it tells which of our programs an XDP id is, and what netlink knows per link. */
  model: Model | null = null;

  setConfig(next: Config): void {
    const prev = this.config;
    this.config = next;
    if (prev.nftTable !== next.nftTable) {
      void this.firewall.remove().catch((e) => this.log.warn({ err: errText(e) }, 'could not remove the old nftables table'));
      this.firewall.close();
      this.firewall = this.makeFirewall(next.nftTable);
      this.lastRouter = undefined;
      this.firewall.setResolvers(this.dhcp.resolvers());
    }
    this.dhcp.setCommand(next.dhcpCommand);
  }

  // ------------------------------------------------------------ Effects

  async snapshot(): Promise<Snapshot> {
    const [links, addrs, routes] = await Promise.all([this.rtnl.dumpLinks(), this.rtnl.dumpAddresses(4), this.rtnl.dumpRoutes(4)]);
    const f = this.forwarder;
    const vids = f ? f.vidPairs() : undefined;
    return { links, addrs, routes, routerIface: f ? f.routerIface() : undefined, egress: vids?.agreed, strayEgress: vids?.strayEgress };
  }

  prepare(): boolean {
    const f = this.forwarderFailure;
    if (!this.forwarder && f && Date.now() >= f.retryAt) this.openForwarder();
    const reopened = this.reopened;
    this.reopened = false;
    if (reopened) this.model?.forgetProgramNames();
    return reopened;
  }

  execute(a: Action): Promise<ActionResult> {
    switch (a.kind) {
      case 'link': {
        const change: { up?: boolean; promisc?: boolean; mtu?: number } = {};
        if (a.up !== undefined) change.up = a.up;
        if (a.promisc !== undefined) change.promisc = a.promisc;
        if (a.mtu !== undefined) change.mtu = a.mtu;
        return this.rtnl.setLink(a.ifindex, change);
      }
      case 'addr-add':
        return this.rtnl.addAddress(a.ifindex, a.cidr, { replace: true, proto: this.config.routeProtocol });
      case 'addr-del':
        return ignoring(['EADDRNOTAVAIL', 'ENODEV'], this.rtnl.deleteAddress(a.ifindex, a.cidr));
      case 'route-add': {
        // Exclusive: a route someone else put there (a person's default
        // route, a hand-made host route) is never replaced; EEXIST says so.
        const r = a.route;
        return this.rtnl.addRoute({ dst: r.dst, oif: r.oif, ...(r.gateway ? { gateway: r.gateway } : { scope: 'link' as const }), protocol: this.config.routeProtocol }).catch((e: Error & { code?: string }) => {
          if (e.code !== 'EEXIST') throw e;
          throw Object.assign(new Error(`a route to ${r.dst} that is not ours is in the way (ip route show ${r.dst}); netagent never replaces it: remove it, or leave this link to its owner (ignoreInterfaces)`), { code: 'EEXIST' });
        });
      }
      case 'route-del': {
        const r = a.route;
        // With the number it carries (an earlier routeProtocol's, when re-tagging).
        return ignoring(['ESRCH', 'ENODEV'], this.rtnl.deleteRoute({ dst: r.dst, oif: r.oif, ...(r.gateway ? { gateway: r.gateway } : {}), protocol: r.proto ?? this.config.routeProtocol }));
      }
      // libbpf: synchronous; a failure throws here, before anything after it is started.
      case 'xdp-attach': {
        const f = this.need();
        const link = { ifindex: a.ifindex, name: a.name };
        const state = this.xdpStateOf(a.ifindex);
        const done = (res: { id: number; mode: 'skb' | 'native'; adopted: boolean }, fellBack = false): ActionResult => {
          if (res.adopted) this.log.info({ link: a.name, program: a.program, id: res.id }, 'adopted the XDP program already attached');
          return { kind: 'xdp', id: res.id, mode: res.mode, program: a.program, fellBack };
        };
        // xdpMode auto: native where the driver can; skb when it refuses (then the planner moves every forwarder link to skb).
        const attach = (mode: 'skb' | 'native', st?: XdpState): ActionResult => {
          try {
            return done(f.attach(link, a.program, mode, st));
          } catch (e) {
            if (!(a.fallback && mode === 'native' && e instanceof BpfError && Forwarder.nativeUnsupported(e.code))) throw e;
            this.log.info({ link: a.name, program: a.program, err: e.message }, 'native XDP refused; falling back to skb mode');
            return done(f.attach(link, a.program, 'skb'), true);
          }
        };
        const fresh = f.freshAttachRequest(a.program, a.mode, state);
        if (!fresh) return Promise.resolve(attach(a.mode, state));
        // A new link: the attach goes out on our netlink socket like any other
        // request. Anything unexpected (a program appeared meanwhile, a driver
        // without native XDP) is left to attach(), which asks the kernel what
        // is there and handles every case.
        return this.rtnl.setLink(a.ifindex, { xdp: { fd: fresh.fd, flags: fresh.flags } }).then(
          () => done(fresh.result),
          (e: Error & { code?: string }) => {
            if (e.code === 'ENODEV') throw e;
            if (a.fallback && a.mode === 'native' && Forwarder.nativeUnsupported(e.code)) {
              this.log.info({ link: a.name, program: a.program, err: e.message }, 'native XDP refused; falling back to skb mode');
              return done(f.attach(link, a.program, 'skb'), true);
            }
            if (e.code === 'EBUSY' || e.code === 'EEXIST') return attach(a.mode);
            throw new Error(`attach ${a.program} (${a.mode} mode) to ${a.name}: ${e.message}${e.code === 'EOPNOTSUPP' && a.mode === 'native' ? '; the driver lacks native XDP: use xdpMode skb or auto' : ''}`);
          },
        );
      }
      case 'vlan-offload-off':
        try {
          // What it was is noted (daemon/ledger.ts), to be put back when the NIC stops carrying `physical`.
          return Promise.resolve({ kind: 'offload', was: setRxVlanOffload(a.name, false) });
        } catch (e) {
          if (e instanceof EthtoolError && (e.reason === 'fixed' || e.reason === 'refused')) {
            // Untagged LANs still work: a warning on the link, not a failure.
            this.log.warn({ link: a.name, err: e.message }, `${a.name}: rx-vlan-offload stays on`);
            return Promise.resolve({ kind: 'offload', was: null, warning: e.message });
          }
          if (e instanceof EthtoolError && e.code === 'ENODEV') return linkGone(e);
          throw e;
        }
      case 'vlan-offload-restore':
        try {
          setRxVlanOffload(a.name, true);
        } catch (e) {
          if (e instanceof EthtoolError && e.code === 'ENODEV') return linkGone(e);
          // Not ours to insist on: the NIC is no longer ours to set.
          this.log.warn({ link: a.name, err: errText(e) }, `${a.name}: could not turn rx-vlan-offload back on`);
        }
        return Promise.resolve();
      case 'xdp-detach': this.need().detach({ ifindex: a.ifindex, name: a.name }); return Promise.resolve();
      case 'egress-allow':
        try {
          this.need().setNicVid(a.ifindex, a.vid);
        } catch (e) {
          // The NIC vanished since the plan (a mass unplug): a devmap entry
          // cannot name a link that is gone. Not a failure: its DELLINK follows.
          if (e instanceof BpfError && e.hint?.startsWith('no such link')) return linkGone(e);
          throw e;
        }
        return Promise.resolve();
      case 'egress-deny': this.need().clearNic(a.ifindex); return Promise.resolve();
      case 'egress-stray': this.need().removeStrayEgress(a.vid, a.ifindex); return Promise.resolve();
      case 'router-iface': this.need().setRouterIface(a.ifindex); return Promise.resolve();
    }
  }

  /** Whether the NIC strips VLAN tags now (false when it cannot be told: the link is gone). */
  offloadIsOn(name: string): boolean {
    try {
      return rxVlanOffload(name) === true;
    } catch {
      return false;
    }
  }

  readMaps(withVids: boolean): ReturnType<Effects['readMaps']> {
    const f = this.forwarder;
    if (!f) return null;
    if (!withVids) return { routerIface: f.routerIface() };
    const vids = f.vidPairs();
    return { routerIface: f.routerIface(), egress: vids.agreed, strayEgress: vids.strayEgress };
  }

  routerSets(p: Plan): void {
    // Router profiles: nftables sets and DHCP follow the links that are configured.
    const dhcp = p.dhcp.join('\0');
    if (dhcp !== this.lastDhcp) {
      this.dhcp.sync(p.dhcp);
      this.lastDhcp = dhcp;
    }
    // The planner hands out the same object while the sets are unchanged: a
    // pass that changed no set costs the firewall nothing (with 1400 clients,
    // recomputing them was milliseconds per pass). A failed apply is asked again.
    if (p.router !== this.lastRouter || this.firewall.lastError) {
      this.firewall.want(p.router);
      this.lastRouter = p.router;
    }
    this.lastPlan = p;
    this.syncResolvConf();
  }

  // ------------------------------------------------------------ the forwarder

  openForwarder(): void {
    try {
      this.forwarder = Forwarder.open({ bpfDir: this.paths.bpfDir, pinDir: this.paths.pinDir, log: this.log });
      this.forwarderFailure = null;
      this.reopened = true;
    } catch (e) {
      const attempts = (this.forwarderFailure?.attempts ?? 0) + 1;
      const delay = backoff(attempts, FORWARDER_BACKOFF);
      this.forwarderFailure = { error: errText(e), retryAt: Date.now() + delay, attempts };
      const details = { err: errText(e), bpfDir: this.paths.bpfDir, pinDir: this.paths.pinDir, retryInMs: delay };
      if (this.config.profile === 'xdp-forwarder') {
        this.log.error(details, 'cannot load the XDP forwarder; links that need it stay failed until it loads');
      } else if (attempts === 1) {
        // Other profiles only need it to remove programs an earlier profile left: say so once, quietly.
        this.log.info(details, `XDP forwarder not loaded (profile ${this.config.profile} does not need it)`);
      }
      this.retry(delay);
    }
  }

  /** Which of our programs an id is; undefined while the forwarder cannot tell. */
  identify(id: number): XdpProgram | null | undefined {
    if (!this.forwarder) return undefined;
    try {
      return this.forwarder.identify(id)?.program ?? null;
    } catch (e) {
      this.log.debug({ err: errText(e), id }, 'could not identify XDP program');
      return undefined;
    }
  }

  /** Why the forwarder is not loaded (only a problem in the profile that needs it). */
  forwarderProblem(): string | null {
    return this.config.profile === 'xdp-forwarder' && this.forwarderFailure ? `XDP forwarder: ${this.forwarderFailure.error}` : null;
  }

  counters(): Record<string, string> {
    try {
      if (this.forwarder) return Object.fromEntries(Object.entries(this.forwarder.counters()).map(([k, v]) => [k, v.toString()]));
    } catch { /* counters are a nicety */ }
    return {};
  }

  /** Per-link traffic counters of the XDP programs (NICs by ifindex, and the router link); empty without the forwarder. */
  nicCounters(): Map<number, LinkCounters> {
    try {
      if (this.forwarder) return this.forwarder.nicCounters();
    } catch { /* counters are a nicety */ }
    return new Map();
  }

  /** Each NIC's VLAN ID as the nic_vid map holds it; empty without the forwarder. */
  nicVids(): Map<number, number> {
    try {
      if (this.forwarder) return this.forwarder.nicVids();
    } catch { /* a nicety */ }
    return new Map();
  }

  /** On exit with detachOnExit: our programs off every link. */
  detachAll(links: Iterable<{ ifindex: number; name: string }>): void {
    if (!this.forwarder) return;
    for (const link of links) {
      try {
        this.forwarder.detach(link);
        this.log.info({ link: link.name }, 'XDP program detached (detachOnExit)');
      } catch (e) {
        this.log.warn({ link: link.name, err: errText(e) }, 'could not detach on exit');
      }
    }
  }

  async close(): Promise<void> {
    await this.firewall.settled();
    this.firewall.close();
    this.dhcp.stopAll();
    this.forwarder?.close();
  }

  private need(): Forwarder {
    if (this.forwarder) return this.forwarder;
    throw new Error(`the XDP forwarder is not loaded: ${this.forwarderFailure?.error ?? 'not opened yet'}`);
  }

  /** Per-mode program ids, as netlink last told us (saves the forwarder a netlink dump per attach). */
  private xdpStateOf(ifindex: number): XdpState | undefined {
    const x = this.model?.link(ifindex)?.xdp;
    return x ? { skbProgId: x.skbProgId, drvProgId: x.drvProgId, hwProgId: x.hwProgId } : undefined;
  }

  private makeFirewall(table: string): RouterFirewall {
    return new RouterFirewall(table, this.log, (e) => {
      this.log.error({ err: errText(e) }, 'router firewall: retrying in 5 s; meanwhile client links forward nothing');
      this.retry(5000);
    });
  }
}

/** A failure that only means the link went away meanwhile: the reconciler treats ENODEV as that, not as a failure. */
function linkGone(e: Error): Promise<never> {
  return Promise.reject(Object.assign(new Error(e.message), { code: 'ENODEV' }));
}

async function ignoring(codes: string[], p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (!codes.includes((e as { code?: string }).code ?? '')) throw e;
  }
}
