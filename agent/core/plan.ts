// The rule engine: from the configuration and what the kernel has (the
// "world"), compute what every link should look like, and the smallest list
// of actions that gets there. Pure: no I/O, so every profile's rules are
// tested without root. The daemon feeds it the world it observed through
// netlink/libbpf and carries out the actions.
import type { Config, ProfileName } from '../config.js';
import { classifyMac, nameMatches, parseMac, type MacClass } from './mac.js';
import { decodeInterVm, decodeRoutedClient, formatIp4, parseCidr4, peer31 } from './addr.js';

export type XdpProgram = 'physical' | 'router';
export type Role = 'router-link' | 'physical' | 'inter-vm' | 'client-link' | 'loopback' | 'ignored';
export type LinkState = 'configured' | 'pending' | 'failed' | 'ignored';

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
  cidr: string; // IPv4 "a.b.c.d/len"
  /** IFA_PROTO: who added it; ours is config.routeProtocol. */
  proto: number;
}

export interface RouteLite {
  dst: string; // CIDR
  oif: number;
  gateway: string | null;
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
  /** Routes carrying our protocol number (all others are not ours to judge). */
  routes: readonly RouteLite[];
  xdp: ReadonlyMap<number, ObservedXdp>;
  /** router_iface entry 0, null when empty. */
  routerIface: number | null;
  /** Entries of the router's egress allowlist. */
  egress: ReadonlySet<number>;
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
  want: Want;
}

export type Action =
  | { kind: 'link'; ifindex: number; name: string; up?: boolean; promisc?: boolean; mtu?: number }
  | { kind: 'addr-add' | 'addr-del'; ifindex: number; name: string; cidr: string }
  | { kind: 'route-add' | 'route-del'; ifindex: number; name: string; route: RouteLite }
  | { kind: 'xdp-attach'; ifindex: number; name: string; program: XdpProgram }
  | { kind: 'xdp-detach'; ifindex: number; name: string }
  | { kind: 'egress-allow' | 'egress-deny'; ifindex: number; name: string }
  | { kind: 'router-iface'; ifindex: number | null; name: string };

/** What the router profiles need from nftables and sysctl. */
export interface RouterGlobals {
  uplinks: string[];
  clients: string[];
}

export interface Plan {
  links: Map<number, LinkPlan>;
  /** Actions grouped per link (ifindex; 0 for actions not tied to a live link), in order. */
  actions: Map<number, Action[]>;
  /** Router profiles: nftables sets and forwarding; null in other profiles. */
  router: RouterGlobals | null;
  /** DHCP clients wanted: uplink names. */
  dhcp: string[];
}

export const ROUTED_GATEWAY = '169.254.0.1/32';
const MAX_VLAN_IFINDEX = 4095;

const NOTHING: Want = { up: null, promisc: null, mtu: null, xdp: null, addresses: [], routes: [] };

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

/**
 * Classifications per config object, keyed by what they depend on. Every
 * event replans every link; without this, parsing and matching MACs was most
 * of a pass's time with a thousand links (bench/). A new config (a reload) is
 * a new object, so the cache can never answer for an old one.
 */
const classified = new WeakMap<Config, Map<string, Classified>>();

/** Classifies one link under the config: its role, or why it is left alone. */
export function classify(link: ObservedLink, config: Config): Classified {
  let memo = classified.get(config);
  if (!memo) classified.set(config, (memo = new Map()));
  const key = `${link.mac}|${link.name}|${link.kind ?? ''}|${link.loopback ? 1 : 0}`;
  let c = memo.get(key);
  if (!c) {
    if (memo.size > 100_000) memo.clear(); // bounded: names and MACs come and go
    memo.set(key, (c = classifyUncached(link, config)));
  }
  return c;
}

function classifyUncached(link: ObservedLink, config: Config): Classified {
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

function want(p: Partial<Want>): Want {
  return { ...NOTHING, ...p };
}

/**
 * Computes every link's plan and the actions that take the world there.
 * Deterministic: links are visited in ifindex order, so conflicts (two router
 * links, two links claiming one address) are decided the same way every time.
 */
export function plan(config: Config, world: World): Plan {
  const links = new Map<number, LinkPlan>();
  const ordered = [...world.links.values()].sort((a, b) => a.ifindex - b.ifindex);
  const claimed = new Map<string, string>(); // address -> link name that has it

  // The router link: the one already in router_iface if still a candidate, else the lowest ifindex.
  const routerCandidates = config.profile === 'xdp-forwarder'
    ? ordered.filter((l) => { const c = classify(l, config); return c.role === 'router-link' && c.ignoredWhy === null; })
    : [];
  const routerLink = routerCandidates.find((l) => l.ifindex === world.routerIface) ?? routerCandidates[0] ?? null;
  const ctx: RuleContext = { config, routerLink, claimed, defaultRouteTaken: false };

  for (const link of ordered) {
    const c = classify(link, config);
    const v: Verdict = c.ignoredWhy !== null ? { ignored: c.ignoredWhy } : rule(link, c, ctx);
    links.set(link.ifindex, {
      ifindex: link.ifindex,
      name: link.name,
      mac: link.mac,
      role: c.role,
      macClass: c.macClass,
      error: 'error' in v ? v.error : null,
      ignored: 'ignored' in v,
      note: 'ignored' in v ? v.ignored : 'want' in v ? v.note ?? null : null,
      want: 'want' in v ? want(v.want) : NOTHING,
    });
  }

  // The router link's MTU follows the largest physical MTU (tagged frames must fit).
  if (routerLink) {
    const physMtus = [...links.values()]
      .filter((p) => p.role === 'physical' && !p.ignored && p.error === null)
      .map((p) => world.links.get(p.ifindex)!.mtu);
    const rp = links.get(routerLink.ifindex);
    if (rp && rp.error === null && physMtus.length) rp.want.mtu = Math.max(...physMtus);
  }

  // The link router_iface still names was our router link, and we made it
  // promiscuous; if it is no longer (profile switch, a MAC change), undo that.
  const exRouter = world.routerIface !== null && world.routerIface !== routerLink?.ifindex ? links.get(world.routerIface) : undefined;
  if (exRouter && exRouter.want.promisc === null) exRouter.want = { ...exRouter.want, promisc: false };

  return { links, ...diff(config, world, links, routerLink?.ifindex ?? null) };
}

type Verdict = { ignored: string } | { error: string } | { want: Partial<Want>; note?: string | null };

interface RuleContext {
  config: Config;
  routerLink: ObservedLink | null;
  /** address -> name of the link that has it (conflicts go to the lower ifindex). */
  claimed: Map<string, string>;
  defaultRouteTaken: boolean;
}

function claim(ctx: RuleContext, link: ObservedLink, cidr: string): string | null {
  const addr = cidr.split('/')[0]!;
  const holder = ctx.claimed.get(addr);
  if (holder) return `address ${cidr} is already used by ${holder}; two links claim it (check the MACs the host assigned)`;
  ctx.claimed.set(addr, link.name);
  return null;
}

/** The profile's rule for one link that is not ignored: what it should look like, or why it cannot. */
function rule(link: ObservedLink, c: Classified, ctx: RuleContext): Verdict {
  const { config } = ctx;
  const { role, macClass } = c;
  switch (config.profile) {
    case 'xdp-forwarder':
      if (role === 'router-link') {
        const r = ctx.routerLink;
        if (r && r.ifindex !== link.ifindex) {
          return { error: `a second router link: ${r.name} (ifindex ${r.ifindex}) already holds router_iface, which has one entry; remove one of them` };
        }
        return { want: { up: true, promisc: true, xdp: 'router' } };
      }
      if (link.ifindex > MAX_VLAN_IFINDEX || link.ifindex < 1) {
        return { error: `ifindex ${link.ifindex} does not fit a VLAN ID (1..${MAX_VLAN_IFINDEX}), so the forwarder cannot tag its frames; give the NIC a lower ifindex` };
      }
      return { want: { up: true, xdp: 'physical' } };
    case 'router-p2p': {
      if (role !== 'inter-vm') return { want: { up: true }, note: 'uplink' };
      const d = decodeInterVm(parseMac(link.mac)!, config.allowPublicAddresses); // classify() found a MAC class, so it parses
      if (!d.ok) return { error: d.error };
      const conflict = claim(ctx, link, d.cidr);
      if (conflict) return { error: conflict };
      return { want: { up: true, addresses: [d.cidr] } };
    }
    case 'router-routed': {
      if (role !== 'inter-vm') return { want: { up: true }, note: 'uplink' };
      const d = decodeRoutedClient(parseMac(link.mac)!);
      if (!d.ok) return { error: d.error };
      const conflict = claim(ctx, link, d.cidr);
      if (conflict) return { error: conflict };
      return {
        want: { up: true, addresses: [ROUTED_GATEWAY], routes: [{ dst: d.cidr, oif: link.ifindex, gateway: null }] },
        note: `client ${formatIp4(d.addr)}`,
      };
    }
    case 'client': {
      let cidr: string;
      if (macClass === 'inter-vm') {
        const d = decodeInterVm(parseMac(link.mac)!, config.allowPublicAddresses);
        if (!d.ok) return { error: d.error };
        cidr = d.cidr;
      } else {
        const configured = config.clientAddresses[link.mac.toLowerCase()];
        if (!configured) {
          return { error: `no address configured for this 02:00 link; add "clientAddresses": { "${link.mac}": "100.64.x.y/31" } to the config` };
        }
        cidr = configured;
      }
      const conflict = claim(ctx, link, cidr);
      if (conflict) return { error: conflict };
      const c4 = parseCidr4(cidr)!;
      if (c4.len !== 31) return { want: { up: true, addresses: [cidr] }, note: 'no default route: only a /31 names its peer' };
      if (ctx.defaultRouteTaken) return { want: { up: true, addresses: [cidr] } };
      // The peer is the other address of the /31; the first client link carries the default route.
      ctx.defaultRouteTaken = true;
      const gateway = formatIp4(peer31(c4.addr));
      return { want: { up: true, addresses: [cidr], routes: [{ dst: '0.0.0.0/0', oif: link.ifindex, gateway }] }, note: `default via ${gateway}` };
    }
  }
}

function diff(config: Config, world: World, links: Map<number, LinkPlan>, routerIfindex: number | null): Omit<Plan, 'links'> {
  const actions = new Map<number, Action[]>();
  const push = (ifindex: number, a: Action): void => {
    const list = actions.get(ifindex);
    if (list) list.push(a);
    else actions.set(ifindex, [a]);
  };
  const nameOf = (ifindex: number): string => world.links.get(ifindex)?.name ?? `ifindex ${ifindex}`;
  const wantEgress = new Set<number>();
  // Our routes by link, once: a per-link filter would make a pass O(links x routes).
  const routesByOif = new Map<number, RouteLite[]>();
  for (const r of world.routes) {
    const list = routesByOif.get(r.oif);
    if (list) list.push(r);
    else routesByOif.set(r.oif, [r]);
  }
  const uplinks: string[] = [];
  const clients: string[] = [];

  for (const p of links.values()) {
    const link = world.links.get(p.ifindex)!;
    const w = p.want;
    const { ifindex, name } = p;
    const active = !p.ignored && p.error === null;
    if (active && config.profile === 'xdp-forwarder' && p.role === 'physical') wantEgress.add(ifindex);
    if (active && isRouterProfile(config.profile)) {
      if (p.role === 'physical') uplinks.push(name);
      if (p.role === 'inter-vm') clients.push(name);
    }

    // Egress allowlist first, so the return path is ready when frames start to flow.
    if (wantEgress.has(ifindex) && !world.egress.has(ifindex)) push(ifindex, { kind: 'egress-allow', ifindex, name });

    // XDP: attach ours where wanted (replacing anything else), detach ours where not.
    const x = world.xdp.get(ifindex);
    if (w.xdp) {
      const modeOk = !x ? false : config.xdpMode === 'auto' ? x.mode !== 'hw' : x.mode === config.xdpMode;
      if (!x || x.program !== w.xdp || !modeOk) push(ifindex, { kind: 'xdp-attach', ifindex, name, program: w.xdp });
    } else if (x && x.program !== null) {
      push(ifindex, { kind: 'xdp-detach', ifindex, name });
    }

    // Link flags and MTU, in one request.
    const change: { up?: boolean; promisc?: boolean; mtu?: number } = {};
    if (w.promisc !== null && link.promisc !== w.promisc) change.promisc = w.promisc;
    if (w.mtu !== null && link.mtu !== w.mtu) change.mtu = w.mtu;
    if (Object.keys(change).length) push(ifindex, { kind: 'link', ifindex, name, ...change });

    // Addresses: add what is missing; remove ours (by IFA_PROTO) that are no longer wanted.
    const have = world.addrs.get(ifindex) ?? [];
    for (const a of w.addresses) {
      if (!have.some((h) => sameCidr(h.cidr, a))) push(ifindex, { kind: 'addr-add', ifindex, name, cidr: a });
    }
    for (const h of have) {
      if (h.proto === config.routeProtocol && !w.addresses.some((a) => sameCidr(h.cidr, a))) {
        push(ifindex, { kind: 'addr-del', ifindex, name, cidr: h.cidr });
      }
    }

    // Up once XDP, flags and addresses are in place, so traffic starts on a configured link;
    // but before routes: the kernel refuses a route through a link that is down (ENETDOWN).
    if (w.up !== null && link.up !== w.up) push(ifindex, { kind: 'link', ifindex, name, up: w.up });

    // Routes: the same rule, routes of ours are recognised by their protocol number.
    const mine = routesByOif.get(ifindex) ?? [];
    for (const r of w.routes) {
      if (!mine.some((m) => sameRoute(m, r))) push(ifindex, { kind: 'route-add', ifindex, name, route: r });
    }
    for (const m of mine) {
      if (!w.routes.some((r) => sameRoute(m, r))) push(ifindex, { kind: 'route-del', ifindex, name, route: m });
    }
  }

  // router_iface names the chosen router link, or is emptied (physical then drops, and counts it).
  if (world.routerIface !== routerIfindex) {
    const key = routerIfindex ?? 0;
    push(key, { kind: 'router-iface', ifindex: routerIfindex, name: routerIfindex ? nameOf(routerIfindex) : '(none)' });
  }
  // Stale allowlist entries: links that left, or changed role, also while we were not running.
  for (const e of world.egress) {
    if (!wantEgress.has(e)) push(world.links.has(e) ? e : 0, { kind: 'egress-deny', ifindex: e, name: nameOf(e) });
  }
  // Our routes on links that are gone from the world entirely die with the link in the kernel: nothing to do.

  const router = isRouterProfile(config.profile) ? { uplinks: uplinks.sort(), clients: clients.sort() } : null;
  return { actions, router, dhcp: router && config.uplinkDhcp ? [...router.uplinks] : [] };
}

function sameCidr(a: string, b: string): boolean {
  const x = parseCidr4(a), y = parseCidr4(b);
  return !!x && !!y && x.addr === y.addr && x.len === y.len;
}

function sameRoute(a: RouteLite, b: RouteLite): boolean {
  return a.oif === b.oif && sameCidr(a.dst, b.dst) && (a.gateway ?? null) === (b.gateway ?? null);
}

/** A link's state from its plan and the actions still pending for it. */
export function linkState(p: LinkPlan, pendingActions: number, applyError: string | null): LinkState {
  if (p.ignored) return 'ignored';
  if (p.error !== null || applyError !== null) return 'failed';
  return pendingActions > 0 ? 'pending' : 'configured';
}
