// The rule engine: from the configuration and what the kernel has (the
// "world"), compute what every link should look like, and the smallest list
// of actions that gets there. Pure: no I/O, so every profile's rules are
// tested without root.
//
// Incremental: a Planner keeps every link's plan and actions, and the
// decisions that span links (which link is the router link, the router
// link's MTU, who wins an address two links claim, which client link carries
// the default route, the nftables sets) in small indexes. A pass is told which
// links' inputs changed; it replans those, re-decides what spans links from
// the indexes, and replans only the links a changed decision touches. So an
// event costs the same with 20 links as with 1400. `plan()` is the same code
// run over every link; a property test checks that both always agree.
import type { Config } from '../config.js';
import { classifyMac, nameMatches, parseMac, type MacClass } from './mac.js';
import { decodeInterVm, decodeRoutedClient } from './addr.js';
import { formatCidr4, formatIp4, parseCidr4, peer31 } from './ipv4.js';
import { isVid, pickVid, pinFor } from './vid.js';
import type { LinkState, ProfileName, Role, XdpMode, XdpProgram } from './vocab.js';

export type { LinkState, Role, XdpProgram } from './vocab.js';

/** A link as the kernel reports it (the subset the rules need). */
export interface ObservedLink {
  ifindex: number;
  name: string;
  mac: string;
  kind: string | null;
  loopback: boolean;
  up: boolean;
  promisc: boolean;
  mtu: number;
}

export interface ObservedAddr {
  cidr: string; // IPv4 "a.b.c.d/len", canonical (as the codec formats it)
  /** IFA_PROTO: who added it; ours is config.routeProtocol. */
  proto: number;
}

export interface RouteLite {
  dst: string; // CIDR, canonical
  oif: number;
  gateway: string | null;
  /** rtm_protocol, for routes read from the kernel (ours: routeProtocol, or a former one). */
  proto?: number;
}

/** A link's values before netagent first changed them (absent: never changed); see daemon/ledger.ts. */
export interface Originals {
  up?: boolean;
  promisc?: boolean;
  mtu?: number;
  /** rx-vlan-offload was on before we turned it off. */
  rxVlanOffload?: boolean;
}

/** The XDP program attached to a link, as libbpf reports it. */
export interface ObservedXdp {
  id: number;
  mode: 'skb' | 'native' | 'hw';
  /** Which of our programs it is (by name), null when it is not ours. */
  program: XdpProgram | null;
}

export interface World {
  links: ReadonlyMap<number, ObservedLink>;
  /** IPv4 addresses per ifindex. */
  addrs: ReadonlyMap<number, readonly ObservedAddr[]>;
  /** Routes carrying our protocol number, per outgoing link (all others are not ours to judge). */
  routes: ReadonlyMap<number, readonly RouteLite[]>;
  xdp: ReadonlyMap<number, ObservedXdp>;
  /** router_iface entry 0, null when empty. */
  routerIface: number | null;
  /** NICs in the forwarder's VID maps (nic_vid and router_egress agree): ifindex -> VLAN ID. */
  egress: ReadonlyMap<number, number>;
  /** router_egress entries that are no NIC's own VID (added by hand, or left by an older layout): VID -> ifindex. */
  strayEgress: ReadonlyMap<number, number>;
  /** NICs whose rx-vlan-offload we turned off (or found that it cannot be). Nothing announces a change. */
  vlanOffloadOff: ReadonlySet<number>;
  /** NICs on which someone turned rx-vlan-offload back on (the kernel's FEATURE CHANGE event, then a look): off again. */
  vlanOffloadOn: ReadonlySet<number>;
  /** Links whose driver refused native XDP (xdpMode auto then keeps every forwarder link in skb). */
  nativeRefused: ReadonlySet<number>;
  /** What we changed on each link, as it was before (restored when the link stops being ours to set). */
  originals: ReadonlyMap<number, Originals>;
  /** Route protocols of earlier configs: addresses and routes carrying one are ours too (re-tagged or removed). */
  formerProtocols: ReadonlySet<number>;
}

export interface Want {
  up: boolean | null; // null: not ours to decide
  promisc: boolean | null;
  mtu: number | null;
  xdp: XdpProgram | null;
  addresses: string[];
  routes: RouteLite[];
}

export interface LinkPlan {
  ifindex: number;
  name: string;
  mac: string;
  role: Role;
  /** What the MAC said, for status and logs. */
  macClass: MacClass;
  /** Why the link cannot be configured (state failed), or why it is ignored. */
  error: string | null;
  ignored: boolean;
  note: string | null;
  /** A router profile's uplink (masqueraded, DHCP). */
  uplink: boolean;
  want: Want;
}

export type Action =
  /**
   * was: the values it replaces, as planned against (noted in daemon/ledger.ts
   * when acknowledged, unless noted already); restore: puts those back.
   */
  | { kind: 'link'; ifindex: number; name: string; up?: boolean; promisc?: boolean; mtu?: number; was?: Originals; restore?: true }
  | { kind: 'addr-add' | 'addr-del'; ifindex: number; name: string; cidr: string }
  | { kind: 'route-add' | 'route-del'; ifindex: number; name: string; route: RouteLite }
  /** mode: the one every forwarder link shares; fallback: skb if the driver refuses native (xdpMode auto). */
  | { kind: 'xdp-attach'; ifindex: number; name: string; program: XdpProgram; mode: XdpMode; fallback: boolean }
  | { kind: 'xdp-detach'; ifindex: number; name: string }
  | { kind: 'vlan-offload-off'; ifindex: number; name: string }
  /** rx-vlan-offload back on: it was on before we turned it off, and the NIC no longer carries `physical`. */
  | { kind: 'vlan-offload-restore'; ifindex: number; name: string }
  /** The NIC's VLAN ID, both ways (nic_vid for `physical`, router_egress for `router`, which is the allowlist). */
  | { kind: 'egress-allow'; ifindex: number; name: string; vid: number }
  | { kind: 'egress-deny'; ifindex: number; name: string }
  /** A router_egress entry that is no NIC's own VID: it would let `router` send out of that link. */
  | { kind: 'egress-stray'; ifindex: number; name: string; vid: number }
  | { kind: 'router-iface'; ifindex: number | null; name: string };

/** A client VM behind a router profile's client link. */
export interface RouterClient {
  /** The client link's name. */
  name: string;
  /** The client's own address: the only source address its link forwards. */
  address: string;
  /** The router's end of the link: the client's gateway and name server. */
  gateway: string;
}

/** What the router profiles need from nftables and sysctl. */
export interface RouterGlobals {
  uplinks: string[];
  clients: string[];
  /** The clients with their addresses, by link name. */
  peers: RouterClient[];
}

export interface Plan {
  /** Every link's plan (the planner's own map: read, never write). */
  links: ReadonlyMap<number, LinkPlan>;
  /** Actions per live link, in order; links with nothing to do are absent. */
  actions: ReadonlyMap<number, readonly Action[]>;
  /** Actions on shared state not tied to a live link: router_iface, allowlist entries of gone links. */
  globals: Action[];
  /** Router profiles: nftables sets and forwarding; null in other profiles. */
  router: RouterGlobals | null;
  /** DHCP clients wanted: uplink names. */
  dhcp: string[];
  /** The links whose plan or actions this pass recomputed (all of them for a full plan). */
  replanned: ReadonlySet<number>;
}

export const ROUTED_GATEWAY = '169.254.0.1/32';
/** One 802.1Q tag. */
export const VLAN_HLEN = 4;

const NOTHING: Want = Object.freeze({ up: null, promisc: null, mtu: null, xdp: null, addresses: [], routes: [] }) as Want;

/** Roles each profile gives to each MAC class; absent: ignored in that profile. */
const PROFILE_ROLES: Record<ProfileName, Partial<Record<MacClass, Role>>> = {
  'xdp-forwarder': { 'router-link': 'router-link', physical: 'physical' },
  'router-p2p': { 'inter-vm': 'inter-vm', physical: 'physical' },
  'router-routed': { 'router-link': 'inter-vm', physical: 'physical' },
  client: { 'inter-vm': 'client-link', 'client-link': 'client-link' },
};

export function isRouterProfile(p: ProfileName): boolean {
  return p === 'router-p2p' || p === 'router-routed';
}

type Classified = { role: Role; macClass: MacClass; ignoredWhy: string | null };

/** Classifies one link under the config: its role, or why it is left alone. */
export function classify(link: ObservedLink, config: Config): Classified {
  const macClass = classifyMac(link.mac, config.macPrefixes);
  if (link.loopback || link.name === 'lo' || macClass === 'loopback') {
    return { role: 'loopback', macClass: 'loopback', ignoredWhy: 'loopback is never touched' };
  }
  if (nameMatches(link.name, config.ignoreInterfaces)) {
    return { role: 'ignored', macClass, ignoredWhy: 'listed in ignoreInterfaces' };
  }
  if (macClass === 'none') return { role: 'ignored', macClass, ignoredWhy: 'no Ethernet address' };
  if (macClass === 'physical' && link.kind && config.ignoreKinds.includes(link.kind)) {
    return { role: 'ignored', macClass, ignoredWhy: `a ${link.kind} device, not a NIC (ignoreKinds)` };
  }
  const role = PROFILE_ROLES[config.profile][macClass];
  if (!role) {
    const asRole: Role = macClass === 'router-link' || macClass === 'inter-vm' || macClass === 'client-link' || macClass === 'physical' ? macClass : 'ignored';
    return { role: asRole, macClass, ignoredWhy: `profile ${config.profile} does not use ${macClass} links` };
  }
  return { role, macClass, ignoredWhy: null };
}

/**
 * What a link's own properties (MAC, name, kind, MTU) and the config say about
 * it, before anything that spans links is decided. Recomputed only when one
 * of those properties changes.
 */
interface Intrinsic {
  /** The properties it was computed from (compared by value to see a change). */
  key: string;
  name: string;
  mac: string;
  mtu: number;
  c: Classified;
  /** How the link takes part in decisions that span links. */
  part: 'none' | 'router-candidate' | 'physical' | 'uplink' | 'claimant';
  /** Refused on its own (bad MAC, ifindex too large, nothing configured). */
  error: string | null;
  /** The address it claims (conflicts go to the lowest ifindex). */
  claim: string | null;
  want: Want;
  note: string | null;
  /** client profile: the /31 peer, if this link may carry the default route. */
  gateway: string | null;
  /** Router profiles: the client VM behind this link (its address and gateway). */
  peer: { address: string; gateway: string } | null;
  /** A software device (veth, ...: it has a link kind): native XDP redirects into it need XDP on its peer. */
  soft: boolean;
  /** xdp-forwarder: the VID the config pins for this NIC (vidPins), else null. */
  vidPin: number | null;
}

function linkKey(l: ObservedLink): string {
  return `${l.mac}|${l.name}|${l.kind ?? ''}|${l.loopback ? 1 : 0}|${l.mtu}`;
}

function intrinsic(link: ObservedLink, config: Config): Intrinsic {
  const c = classify(link, config);
  const base: Intrinsic = { key: linkKey(link), name: link.name, mac: link.mac, mtu: link.mtu, c, part: 'none', error: null, claim: null, want: NOTHING, note: null, gateway: null, peer: null, soft: link.kind !== null, vidPin: null };
  if (c.ignoredWhy !== null) return { ...base, note: c.ignoredWhy };
  const fail = (error: string): Intrinsic => ({ ...base, error });
  const mac = parseMac(link.mac)!; // classify() found a MAC class, so it parses
  switch (config.profile) {
    case 'xdp-forwarder':
      if (c.role === 'router-link') return { ...base, part: 'router-candidate', want: { ...NOTHING, up: true, promisc: true, xdp: 'router' } };
      // Its VLAN ID is decided with the others' (decide()): the ifindex by default, else a pin or a free one.
      return { ...base, part: 'physical', want: { ...NOTHING, up: true, xdp: 'physical' }, vidPin: pinFor({ ifindex: link.ifindex, name: link.name, mac: link.mac }, config.vidPins)?.vid ?? null };
    case 'router-p2p': {
      if (c.role !== 'inter-vm') return { ...base, part: 'uplink', want: { ...NOTHING, up: true }, note: 'uplink' };
      const d = decodeInterVm(mac, config.allowPublicAddresses);
      if (!d.ok) return fail(d.error);
      // In a /31 the router has one end, the client the other.
      const peer = { address: formatIp4(peer31(d.addr)), gateway: formatIp4(d.addr) };
      // The claim is the whole /31: 0a:b3:ec:40:00:02 and :03 would put one
      // link's two ends on two links (the same client twice).
      return { ...base, part: 'claimant', claim: `${formatIp4((d.addr & ~1) >>> 0)}/31`, want: { ...NOTHING, up: true, addresses: [d.cidr] }, peer };
    }
    case 'router-routed': {
      if (c.role !== 'inter-vm') return { ...base, part: 'uplink', want: { ...NOTHING, up: true }, note: 'uplink' };
      const d = decodeRoutedClient(mac);
      if (!d.ok) return fail(d.error);
      return {
        ...base,
        part: 'claimant',
        claim: formatIp4(d.addr),
        want: { ...NOTHING, up: true, addresses: [ROUTED_GATEWAY], routes: [{ dst: d.cidr, oif: link.ifindex, gateway: null }] },
        note: `client ${formatIp4(d.addr)}`,
        peer: { address: formatIp4(d.addr), gateway: ROUTED_GATEWAY.split('/')[0]! },
      };
    }
    case 'client': {
      let cidr: string;
      if (c.macClass === 'inter-vm') {
        const d = decodeInterVm(mac, config.allowPublicAddresses);
        if (!d.ok) return fail(d.error);
        cidr = d.cidr;
      } else {
        const configured = config.clientAddresses[link.mac.toLowerCase()];
        if (!configured) {
          return fail(`no address configured for this 02:00 link; add "clientAddresses": { "${link.mac}": "100.64.x.y/31" } to the config`);
        }
        cidr = configured;
      }
      const c4 = parseCidr4(cidr)!; // decoded, or validated by the config
      const canonical = formatCidr4(c4);
      const want = { ...NOTHING, up: true, addresses: [canonical] };
      if (c4.len !== 31) return { ...base, part: 'claimant', claim: formatIp4(c4.addr), want, note: 'no default route: only a /31 names its peer' };
      return { ...base, part: 'claimant', claim: formatIp4(c4.addr), want, gateway: formatIp4(peer31(c4.addr)) };
    }
  }
}

/** The smallest member of a set (sets here hold a handful of ifindexes). */
function minOf(s: ReadonlySet<number> | undefined): number | null {
  let m: number | null = null;
  if (s) for (const x of s) if (m === null || x < m) m = x;
  return m;
}

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s) s.add(v);
  else m.set(k, new Set([v]));
}

function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/**
 * Computes every link's plan and the actions that take the world there, from
 * scratch. Deterministic: conflicts (two router links, two links claiming one
 * address) go to the lowest ifindex, or to the link already in router_iface.
 */
export function plan(config: Config, world: World): Plan {
  return new Planner(config).update(world, null);
}

export class Planner {
  private readonly plans = new Map<number, LinkPlan>();
  private readonly actions = new Map<number, Action[]>();
  private readonly intrinsics = new Map<number, Intrinsic>();

  // Indexes of what spans links, kept as links come, change and go.
  private readonly routerCandidates = new Set<number>();
  private readonly physicalMtus = new Map<number, number>(); // active physical NIC -> MTU (xdp-forwarder)
  private readonly claims = new Map<string, Set<number>>(); // address -> links claiming it
  private readonly gatewayCandidates = new Set<number>(); // client links with a /31
  private readonly forwarders = new Set<number>(); // links that get an XDP program
  private readonly softForwarders = new Set<number>(); // ... that are software devices
  private readonly uplinks = new Map<number, string>();
  private readonly clients = new Map<number, RouterClient>();

  // The decisions of the last pass.
  private routerLink: number | null = null;
  private routerMtu: number | null = null;
  private readonly claimWinners = new Map<string, number>();
  private defaultHolder: number | null = null;
  /** Each active NIC's VLAN ID (xdp-forwarder). */
  private readonly vids = new Map<number, number>();
  /** NICs that could not get a VID (all 4094 taken), with the reason. */
  private readonly vidErrors = new Map<number, string>();
  /** VID -> the NIC that has it (decided). */
  private readonly vidOwner = new Map<number, number>();
  /** NICs whose VID is not (yet) what the maps hold: decided again every pass. */
  private readonly vidPending = new Set<number>();
  /** NICs with a pin: decided again every pass (their pin may free up). */
  private readonly pinnedNics = new Set<number>();
  private readonly reservedVids: ReadonlySet<number>;
  /** The XDP mode every forwarder link shares (xdpMode auto: native only where all of them can). */
  private xdpMode: XdpMode = 'skb';
  private lastRouterIface: number | null | undefined = undefined;
  private router: RouterGlobals | null = null;
  private setsChanged = true;

  constructor(readonly config: Config) {
    this.reservedVids = new Set(Object.values(config.vidPins).filter(isVid));
  }

  /**
   * Brings the plan up to date with the world. `changed`: the links whose
   * observed state (link, addresses, routes, XDP, allowlist entry) changed
   * since the last call, or null for all of them.
   */
  update(world: World, changed: Iterable<number> | null): Plan {
    const touched = new Set<number>();
    const claimsTouched = new Set<string>();
    const all = changed === null;
    const seeds = all ? new Set([...world.links.keys(), ...this.intrinsics.keys()]) : new Set(changed);

    for (const ifindex of seeds) {
      touched.add(ifindex);
      const link = world.links.get(ifindex);
      const before = this.intrinsics.get(ifindex);
      if (!link) {
        if (before) this.unindex(ifindex, before, claimsTouched);
        this.intrinsics.delete(ifindex);
        this.plans.delete(ifindex);
        this.actions.delete(ifindex);
        continue;
      }
      if (before && before.key === linkKey(link)) continue;
      if (before) this.unindex(ifindex, before, claimsTouched);
      const next = intrinsic(link, this.config);
      this.intrinsics.set(ifindex, next);
      this.index(ifindex, next, claimsTouched);
      // Names appear in the errors of the others in a conflict: replan the group.
      if (next.part === 'router-candidate' || before?.part === 'router-candidate') for (const i of this.routerCandidates) touched.add(i);
      for (const addr of [before?.claim, next.claim]) if (addr) for (const i of this.claims.get(addr) ?? []) touched.add(i);
    }

    this.decide(world, touched, claimsTouched);

    for (const ifindex of touched) {
      const link = world.links.get(ifindex);
      const i = this.intrinsics.get(ifindex);
      if (!link || !i) continue;
      const p = this.linkPlan(link, i, world);
      this.plans.set(ifindex, p);
      this.setMembership(p, i);
      const acts = this.diff(link, p, world);
      if (acts.length) this.actions.set(ifindex, acts);
      else this.actions.delete(ifindex);
    }

    if (this.setsChanged) {
      this.router = isRouterProfile(this.config.profile)
        ? (() => {
          const peers = [...this.clients.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
          return { uplinks: [...this.uplinks.values()].sort(), clients: peers.map((c) => c.name), peers };
        })()
        : null;
      this.setsChanged = false;
    }

    return {
      links: this.plans,
      actions: this.actions,
      globals: this.globals(world),
      router: this.router,
      dhcp: this.router && this.config.uplinkDhcp ? [...this.router.uplinks] : [],
      replanned: touched,
    };
  }

  private index(ifindex: number, i: Intrinsic, claimsTouched: Set<string>): void {
    if (i.part === 'router-candidate' || i.part === 'physical') {
      this.forwarders.add(ifindex);
      if (i.soft) this.softForwarders.add(ifindex);
    }
    if (i.part === 'router-candidate') this.routerCandidates.add(ifindex);
    if (i.part === 'physical') this.physicalMtus.set(ifindex, i.mtu);
    if (i.vidPin !== null) this.pinnedNics.add(ifindex);
    if (i.claim) {
      addTo(this.claims, i.claim, ifindex);
      claimsTouched.add(i.claim);
    }
    if (i.gateway) this.gatewayCandidates.add(ifindex);
  }

  private unindex(ifindex: number, i: Intrinsic, claimsTouched: Set<string>): void {
    this.forwarders.delete(ifindex);
    this.softForwarders.delete(ifindex);
    this.pinnedNics.delete(ifindex);
    this.vidPending.delete(ifindex);
    this.vidErrors.delete(ifindex);
    this.releaseVid(ifindex);
    this.routerCandidates.delete(ifindex);
    this.physicalMtus.delete(ifindex);
    if (i.claim) {
      removeFrom(this.claims, i.claim, ifindex);
      claimsTouched.add(i.claim);
    }
    this.gatewayCandidates.delete(ifindex);
    if (this.uplinks.delete(ifindex)) this.setsChanged = true;
    if (this.clients.delete(ifindex)) this.setsChanged = true;
  }

  /** Re-decides what spans links; the links a changed decision concerns are added to `touched`. */
  private decide(world: World, touched: Set<number>, claimsTouched: Set<string>): void {
    const mark = (...xs: Array<number | null | undefined>) => {
      for (const x of xs) if (x !== null && x !== undefined) touched.add(x);
    };
    // The router link: the one already in router_iface if still a candidate, else the lowest ifindex.
    const routerLink = world.routerIface !== null && this.routerCandidates.has(world.routerIface) ? world.routerIface : minOf(this.routerCandidates);
    if (routerLink !== this.routerLink) {
      mark(this.routerLink, routerLink);
      for (const i of this.routerCandidates) touched.add(i);
      this.routerLink = routerLink;
    }
    // The link router_iface names is the ex-router link when it is not the router link (promiscuous mode to undo).
    if (world.routerIface !== this.lastRouterIface) {
      mark(this.lastRouterIface, world.routerIface);
      this.lastRouterIface = world.routerIface;
    }
    // The router link's MTU: the largest physical MTU + 4, so a frame that
    // carries a LAN's own tag still fits once ours is pushed outside it.
    let mtu: number | null = null;
    for (const m of this.physicalMtus.values()) if (mtu === null || m + VLAN_HLEN > mtu) mtu = m + VLAN_HLEN;
    if (mtu !== this.routerMtu) {
      mark(routerLink);
      this.routerMtu = mtu;
    }
    // Each address goes to the lowest ifindex claiming it.
    for (const addr of claimsTouched) {
      const winner = minOf(this.claims.get(addr));
      const before = this.claimWinners.get(addr);
      if (winner === before) continue;
      mark(before, winner);
      for (const i of this.claims.get(addr) ?? []) touched.add(i);
      if (winner === null) this.claimWinners.delete(addr);
      else this.claimWinners.set(addr, winner);
    }
    // The XDP mode all forwarder links share: a native redirect into a link
    // whose program runs in skb mode (or into a veth without XDP on its peer)
    // is dropped silently, so xdpMode auto is native only when every one of
    // them is hardware (no link kind) and none refused native.
    let mode: XdpMode = this.config.xdpMode === 'auto' ? 'native' : this.config.xdpMode;
    if (this.config.xdpMode === 'auto') {
      if (this.softForwarders.size) mode = 'skb';
      else for (const r of world.nativeRefused) if (this.forwarders.has(r)) { mode = 'skb'; break; }
    }
    if (mode !== this.xdpMode) {
      for (const i of this.forwarders) touched.add(i);
      this.xdpMode = mode;
    }
    this.decideVids(world, touched);
    // client profile: the lowest client link with a /31 (and its address) carries the default route.
    let holder: number | null = null;
    for (const i of this.gatewayCandidates) {
      const claim = this.intrinsics.get(i)!.claim!;
      if (this.claimWinners.get(claim) === i && (holder === null || i < holder)) holder = i;
    }
    if (holder !== this.defaultHolder) {
      mark(this.defaultHolder, holder);
      this.defaultHolder = holder;
    }
  }

  /**
   * VLAN IDs, one per active NIC, never shared, never 0 or 4095. A NIC keeps
   * the VID the maps hold for it (stable while it exists, across restarts)
   * unless a pin reserves it for another; the others, in ifindex order, get
   * their pin if free, else their ifindex, else the highest free VID
   * (core/vid.ts pickVid: the rules for one NIC). A function of the world
   * and the NICs, so incremental and fresh planning agree; but only the NICs
   * that changed, those whose VID is not in the maps yet, and pinned ones are
   * looked at, so a hotplug costs the same with 1400 NICs as with 2.
   */
  private decideVids(world: World, touched: Set<number>): void {
    if (this.config.profile !== 'xdp-forwarder') return;
    const cand = new Set<number>(this.vidPending);
    for (const i of touched) if (this.physicalMtus.has(i)) cand.add(i);
    for (const i of this.pinnedNics) cand.add(i);
    const before = new Map<number, number | undefined>();
    for (const i of cand) {
      before.set(i, this.vids.get(i));
      this.releaseVid(i);
    }
    const pending: number[] = [];
    for (const i of cand) {
      const cur = world.egress.get(i);
      const pin = this.intrinsics.get(i)!.vidPin;
      const ok = cur !== undefined && isVid(cur) && !this.vidOwner.has(cur)
        && (!this.reservedVids.has(cur) || pin === cur)
        && (pin === null || pin === cur || !this.pinFree(pin, world, i));
      if (ok) this.assignVid(i, cur);
      else pending.push(i);
    }
    pending.sort((x, y) => x - y);
    for (const i of pending) {
      // A pending NIC has no VID of its own in the maps to keep (that was the pass above).
      const vid = pickVid({ ifindex: i, pin: this.intrinsics.get(i)!.vidPin }, (v) => this.vidOwner.get(v), this.reservedVids)?.vid ?? null;
      const had = this.vidErrors.has(i);
      if (vid !== null) {
        this.assignVid(i, vid);
        this.vidErrors.delete(i);
      } else {
        this.vidErrors.set(i, `no free VLAN ID left for ${this.intrinsics.get(i)!.name} (1..4094 all taken); remove a NIC or pin VIDs (vidPins)`);
      }
      if (had !== this.vidErrors.has(i)) touched.add(i);
    }
    this.vidPending.clear();
    for (const i of cand) {
      const v = this.vids.get(i);
      if (v !== before.get(i)) touched.add(i);
      if (v === undefined || world.egress.get(i) !== v) this.vidPending.add(i);
    }
  }

  private assignVid(ifindex: number, vid: number): void {
    this.vids.set(ifindex, vid);
    this.vidOwner.set(vid, ifindex);
  }

  private releaseVid(ifindex: number): void {
    const v = this.vids.get(ifindex);
    if (v === undefined) return;
    this.vids.delete(ifindex);
    if (this.vidOwner.get(v) === ifindex) this.vidOwner.delete(v);
  }

  /** Whether a pinned VID is free for `ifindex`: no other NIC holds it in the maps (pinned NICs are few). */
  private pinFree(vid: number, world: World, ifindex: number): boolean {
    for (const [i, v] of world.egress) if (v === vid && i !== ifindex && this.physicalMtus.has(i)) return false;
    return true;
  }

  private linkPlan(link: ObservedLink, i: Intrinsic, world: World): LinkPlan {
    const { ifindex } = link;
    let error = i.error;
    let want = i.want;
    let note = i.note;
    if (error === null && i.c.ignoredWhy === null) {
      if (i.part === 'router-candidate') {
        if (this.routerLink !== ifindex) {
          const r = this.routerLink!;
          error = `a second router link: ${world.links.get(r)?.name ?? r} (ifindex ${r}) already holds router_iface, which has one entry; remove one of them`;
        } else if (this.routerMtu !== null) {
          want = { ...want, mtu: this.routerMtu };
        }
      }
      if (i.part === 'physical' && this.vidErrors.has(ifindex)) error = this.vidErrors.get(ifindex)!;
      if (i.claim) {
        const holder = this.claimWinners.get(i.claim)!;
        if (holder !== ifindex) {
          const cidr = i.want.routes[0]?.dst ?? i.want.addresses[0];
          error = i.claim.includes('/')
            ? `${cidr} overlaps the /31 ${i.claim} of ${world.links.get(holder)?.name ?? holder}; two links claim one client (check the MACs the host assigned)`
            : `address ${cidr} is already used by ${world.links.get(holder)?.name ?? holder}; two links claim it (check the MACs the host assigned)`;
        }
      }
      if (error === null && i.gateway && this.defaultHolder === ifindex) {
        want = { ...want, routes: [{ dst: '0.0.0.0/0', oif: ifindex, gateway: i.gateway }] };
        note = `default via ${i.gateway}`;
      }
    }
    if (error !== null) want = NOTHING;
    const ignored = i.c.ignoredWhy !== null;
    return {
      ifindex,
      name: link.name,
      mac: link.mac,
      role: i.c.role,
      macClass: i.c.macClass,
      error,
      ignored,
      note: error !== null ? null : note,
      uplink: error === null && !ignored && i.part === 'uplink',
      want,
    };
  }

  private setMembership(p: LinkPlan, i: Intrinsic): void {
    if (!isRouterProfile(this.config.profile)) return;
    const active = !p.ignored && p.error === null;
    const uplink = active && p.role === 'physical';
    if (uplink && this.uplinks.get(p.ifindex) !== p.name) {
      this.uplinks.set(p.ifindex, p.name);
      this.setsChanged = true;
    } else if (!uplink && this.uplinks.delete(p.ifindex)) {
      this.setsChanged = true;
    }
    const client = active && p.role === 'inter-vm' && i.peer ? { name: p.name, ...i.peer } : null;
    const had = this.clients.get(p.ifindex);
    if (client && (!had || had.name !== client.name || had.address !== client.address || had.gateway !== client.gateway)) {
      this.clients.set(p.ifindex, client);
      this.setsChanged = true;
    } else if (!client && this.clients.delete(p.ifindex)) {
      this.setsChanged = true;
    }
  }

  private wantsEgress(p: LinkPlan | undefined): boolean {
    return !!p && this.config.profile === 'xdp-forwarder' && p.role === 'physical' && !p.ignored && p.error === null;
  }

  /** The actions that take one link from what the kernel has to its plan, in order. */
  private diff(link: ObservedLink, p: LinkPlan, world: World): Action[] {
    const acts: Action[] = [];
    const { ifindex, name } = p;
    const w = p.want;
    const egress = this.wantsEgress(p);
    const x = world.xdp.get(ifindex);

    // The allowlist first: a NIC that is to carry `physical` but does not
    // (another tool took it while we were away, or it never got it), or that
    // is no longer a NIC of ours, loses its entry before anything that may
    // fail and stop the batch: the router must not send out of it meanwhile.
    const unattached = egress && x?.program !== 'physical';
    const vid = egress ? this.vids.get(ifindex) : undefined;
    if ((unattached || vid === undefined) && world.egress.has(ifindex)) acts.push({ kind: 'egress-deny', ifindex, name });

    // A NIC that strips VLAN tags on receive hands `physical` the frame
    // without the LAN's tag, and the kernel puts it back outside ours: off
    // before `physical` forwards anything.
    // A NIC that already carries our `physical` (an agent restart adopting
    // it) had it turned off before that attach (the daemon looks once at
    // start, and on every FEATURE CHANGE event: vlanOffloadOn).
    if (w.xdp === 'physical' && (world.vlanOffloadOn.has(ifindex) || (!world.vlanOffloadOff.has(ifindex) && x?.program !== 'physical'))) acts.push({ kind: 'vlan-offload-off', ifindex, name });

    // XDP: attach ours where wanted (replacing anything else), detach ours where not.
    if (w.xdp) {
      if (!x || x.program !== w.xdp || x.mode !== this.xdpMode) {
        acts.push({ kind: 'xdp-attach', ifindex, name, program: w.xdp, mode: this.xdpMode, fallback: this.config.xdpMode === 'auto' });
      }
    } else if (x && x.program !== null) {
      acts.push({ kind: 'xdp-detach', ifindex, name });
    }
    // What we changed and no longer set goes back to what it was (daemon/ledger.ts).
    const o = world.originals.get(ifindex);
    if (w.xdp !== 'physical' && o?.rxVlanOffload !== undefined) acts.push({ kind: 'vlan-offload-restore', ifindex, name });
    // One link value: set when wanted and different (noting what it replaces),
    // else restored once if we changed it (the restore's ACK forgets the
    // original, so a later change by someone else is left alone).
    const value = <K extends 'up' | 'promisc' | 'mtu'>(k: K): void => {
      const want = w[k] as ObservedLink[K] | null;
      if (want !== null) {
        if (link[k] !== want) acts.push({ kind: 'link', ifindex, name, [k]: want, was: { [k]: link[k] } });
      } else if (o?.[k] !== undefined) {
        acts.push({ kind: 'link', ifindex, name, [k]: o[k], restore: true });
      }
    };

    // The allowlist entry only once `physical` is attached (an attach that
    // fails stops the link's actions there), so the router can never send out
    // of a NIC we do not forward for.
    if (vid !== undefined && (unattached || world.egress.get(ifindex) !== vid)) acts.push({ kind: 'egress-allow', ifindex, name, vid });

    // Promiscuous mode, then the MTU in a request of its own: a link that
    // refuses the MTU (a router link under a host-given MTU) still gets the
    // rest, and only frames too large for it suffer.
    value('promisc');
    value('mtu');

    // Addresses: add what is missing; remove ours (by IFA_PROTO) that are no longer wanted.
    // Both sides are canonical strings (the codec formats, the rules format), so they compare as text.
    // One of ours that carries an earlier routeProtocol is re-tagged (an add
    // that replaces it: the address never goes away, nor the routes through it).
    const cur = this.config.routeProtocol;
    const former = world.formerProtocols;
    const have = world.addrs.get(ifindex) ?? [];
    for (const a of w.addresses) {
      const h = have.find((x) => x.cidr === a);
      if (!h || (h.proto !== cur && former.has(h.proto))) acts.push({ kind: 'addr-add', ifindex, name, cidr: a });
    }
    for (const h of have) {
      if ((h.proto === cur || former.has(h.proto)) && !w.addresses.includes(h.cidr)) acts.push({ kind: 'addr-del', ifindex, name, cidr: h.cidr });
    }

    // Up once XDP, flags and addresses are in place, so traffic starts on a configured link;
    // but before routes: the kernel refuses a route through a link that is down (ENETDOWN).
    value('up');

    // Routes: the same rule, routes of ours are recognised by their protocol
    // number. Stale ones of ours go first: adds are exclusive (never replacing
    // a route someone else put there), so ours must not be in the way.
    // One that carries an earlier routeProtocol is deleted and added again
    // with the current one (two routes to one destination cannot coexist;
    // both requests go out together).
    const mine = world.routes.get(ifindex) ?? [];
    const current = (m: RouteLite) => (m.proto ?? cur) === cur;
    for (const m of mine) {
      if (!current(m) || !w.routes.some((r) => sameRoute(m, r))) acts.push({ kind: 'route-del', ifindex, name, route: m });
    }
    for (const r of w.routes) {
      if (!mine.some((m) => current(m) && sameRoute(m, r))) acts.push({ kind: 'route-add', ifindex, name, route: r });
    }
    return acts;
  }

  /** Shared state: router_iface, and allowlist entries of links that are gone. Small: one entry per NIC at most. */
  private globals(world: World): Action[] {
    const out: Action[] = [];
    // router_iface names the chosen router link, or is emptied (physical then drops, and counts it).
    if (world.routerIface !== this.routerLink) {
      const r = this.routerLink;
      out.push({ kind: 'router-iface', ifindex: r, name: r !== null ? world.links.get(r)?.name ?? `ifindex ${r}` : '(none)' });
    }
    for (const e of world.egress.keys()) {
      if (!world.links.has(e)) out.push({ kind: 'egress-deny', ifindex: e, name: `ifindex ${e}` });
    }
    for (const [vid, ifindex] of world.strayEgress) {
      out.push({ kind: 'egress-stray', ifindex, vid, name: world.links.get(ifindex)?.name ?? `ifindex ${ifindex}` });
    }
    return out;
  }
}

export function sameRoute(a: RouteLite, b: RouteLite): boolean {
  return a.oif === b.oif && a.dst === b.dst && (a.gateway ?? null) === (b.gateway ?? null);
}

/** A link's state from its plan, the actions still pending for it, and the last failure applying them. */
export function linkState(p: LinkPlan, pendingActions: number, applyError: string | null): LinkState {
  if (p.ignored) return 'ignored';
  if (p.error !== null || applyError !== null) return 'failed';
  return pendingActions > 0 ? 'pending' : 'configured';
}
