// The kernel as netagent knows it: links, their IPv4 addresses, the routes
// of ours, the XDP programs attached, router_iface and the egress allowlist.
// Fed by dumps, by events and by the ACKs of our own requests; this is the
// only place it is written. Every write marks the links it touched, so the
// planner replans only those (see core/plan.ts).
import type { LinkMsg, AddrMsg, RouteMsg } from '../netlink/rtnl.js';
import type { Action, ObservedAddr, ObservedLink, ObservedXdp, RouteLite, World, XdpProgram } from '../core/plan.js';
import { sameRoute } from '../core/plan.js';
import { Ledger } from './ledger.js';

/** What a full dump brings: the whole model at once. */
export interface Snapshot {
  links: LinkMsg[];
  addrs: AddrMsg[];
  routes: RouteMsg[];
  /** null when the forwarder is not loaded (then the model keeps what it had). */
  routerIface: number | null | undefined;
  /** ifindex -> VID, as the forwarder's maps hold it. */
  egress: ReadonlyMap<number, number> | undefined;
  /** router_egress entries that are no NIC's own VID: VID -> ifindex. */
  strayEgress?: ReadonlyMap<number, number> | undefined;
}

/** What an action's ACK tells beyond "done" (the XDP attach: which program, in which mode). */
export type ActionResult =
  /** fellBack: native was asked and the driver refused it. */
  | { kind: 'xdp'; id: number; mode: 'skb' | 'native'; program: XdpProgram; fellBack?: boolean }
  /**
   * rx-vlan-offload turned off: whether it was on before (null: unknown, or
   * no such feature); warning: what the driver would not do (status shows it).
   */
  | { kind: 'offload'; was: boolean | null; warning?: string }
  | void;

/** How long an acknowledged change waits for its echo before events are believed again. */
const ECHO_WAIT_MS = 1000;

interface Expected {
  fields: { up?: boolean; promisc?: boolean; mtu?: number; xdp?: Omit<LinkMsg['xdp'], 'hwProgId'> };
  until: number;
}

export type LinkChange = 'appeared' | 'changed' | 'removed' | null;

function sameLink(a: ObservedLink | undefined, b: ObservedLink | undefined): boolean {
  if (!a || !b) return a === b;
  return a.name === b.name && a.mac === b.mac && a.kind === b.kind && a.loopback === b.loopback && a.up === b.up && a.promisc === b.promisc && a.mtu === b.mtu;
}

function sameXdp(a: ObservedXdp | undefined, b: ObservedXdp | undefined): boolean {
  if (!a || !b) return a === b;
  return a.id === b.id && a.mode === b.mode && a.program === b.program;
}

/** Two lists with the same members (order aside). */
function sameSet<T>(a: readonly T[] | undefined, b: readonly T[] | undefined, key: (x: T) => string): boolean {
  const x = a ?? [], y = b ?? [];
  if (x.length !== y.length) return false;
  if (x.length === 0) return true;
  const ks = new Set(x.map(key));
  return y.every((e) => ks.has(key(e)));
}

export class Model {
  private readonly links = new Map<number, LinkMsg>();
  private readonly observed = new Map<number, ObservedLink>();
  private readonly addrs = new Map<number, ObservedAddr[]>();
  private readonly routes = new Map<number, RouteLite[]>();
  private readonly xdp = new Map<number, ObservedXdp>();
  private routerIface: number | null = null;
  private egress = new Map<number, number>();
  private strayEgress = new Map<number, number>();
  private readonly vlanOffloadOff = new Set<number>();
  private readonly vlanOffloadOn = new Set<number>();
  private readonly nativeRefused = new Set<number>();
  /** What the NIC's driver said when rx-vlan-offload could not be turned off, per link. */
  private readonly vlanNotes = new Map<number, string>();
  /** Names of program ids (ours or not); ids are not reused while a program lives. */
  private readonly programs = new Map<number, XdpProgram | null>();
  private dirty = new Set<number>();
  private readonly expected = new Map<number, Expected>();

  /**
   * @param routeProtocol the protocol number that marks routes as ours
   * @param identify which of our programs an id is; undefined when it cannot be told yet
   */
  constructor(
    private routeProtocol: number,
    private readonly identify: (id: number) => XdpProgram | null | undefined,
    /** What we changed and must undo, and earlier route protocols (in memory only unless given a file). */
    readonly ledger: Ledger = new Ledger(null, routeProtocol),
  ) {}

  /**
   * A config reload changed the number marking our routes. The old number
   * stays ours (a former one) until nothing carries it: the planner re-tags
   * or removes what does. The re-dump that follows reads them.
   */
  setRouteProtocol(n: number): void {
    this.ledger.setProtocol(n);
    this.routeProtocol = n;
  }

  private ours(proto: number): boolean {
    return proto === this.routeProtocol || this.ledger.formerProtocols().has(proto);
  }

  // ------------------------------------------------------------ reading

  world(): World {
    return {
      links: this.observed, addrs: this.addrs, routes: this.routes, xdp: this.xdp, routerIface: this.routerIface, egress: this.egress, strayEgress: this.strayEgress,
      vlanOffloadOff: this.vlanOffloadOff, vlanOffloadOn: this.vlanOffloadOn, nativeRefused: this.nativeRefused, originals: this.ledger.originals(), formerProtocols: this.ledger.formerProtocols(),
    };
  }

  link(ifindex: number): LinkMsg | undefined {
    return this.links.get(ifindex);
  }

  allLinks(): IterableIterator<LinkMsg> {
    return this.links.values();
  }

  get size(): number {
    return this.links.size;
  }

  addresses(ifindex: number): readonly ObservedAddr[] {
    return this.addrs.get(ifindex) ?? [];
  }

  /** A driver's refusal that does not make the link fail (status shows it). */
  warning(ifindex: number): string | undefined {
    return this.vlanNotes.get(ifindex);
  }

  xdpOf(ifindex: number): ObservedXdp | undefined {
    return this.xdp.get(ifindex);
  }

  xdpEntries(): IterableIterator<[number, ObservedXdp]> {
    return this.xdp.entries();
  }

  get router(): number | null {
    return this.routerIface;
  }

  /** The links written since the last call (and forgets them). */
  takeDirty(): Set<number> {
    const d = this.dirty;
    this.dirty = new Set();
    return d;
  }

  get hasDirty(): boolean {
    return this.dirty.size > 0;
  }

  // ------------------------------------------------------------ events and dumps

  onLink(type: 'new' | 'del', l: LinkMsg): LinkChange {
    // AF_BRIDGE messages describe a link's bridge-port side (and its DELLINK
    // only means "left the bridge"): not the link itself.
    if (l.family !== 0) return null;
    if (type === 'del') return this.removeLink(l.ifindex) ? 'removed' : null;
    const before = this.links.get(l.ifindex);
    this.setLink(this.withExpected(l));
    return before ? 'changed' : 'appeared';
  }

  onAddr(type: 'new' | 'del', a: AddrMsg): void {
    if (a.family !== 4) return;
    const cidr = `${a.local ?? a.address}/${a.prefixlen}`;
    const list = (this.addrs.get(a.ifindex) ?? []).filter((x) => x.cidr !== cidr);
    if (type === 'new') list.push({ cidr, proto: a.proto ?? 0 });
    this.addrs.set(a.ifindex, list);
    // The kernel flushes the IPv4 routes through a link that loses its last
    // IPv4 address, and sends no RTM_DELROUTE for them.
    if (type === 'del' && list.length === 0) this.routes.delete(a.ifindex);
    this.dirty.add(a.ifindex);
  }

  onRoute(type: 'new' | 'del', r: RouteMsg): void {
    if (r.family !== 4 || !this.ours(r.protocol) || r.oif === null || r.table !== 254) return;
    const lite: RouteLite = { dst: `${r.dst}/${r.dstLen}`, oif: r.oif, gateway: r.gateway, proto: r.protocol };
    if (type === 'new') this.addRoute(lite);
    else this.deleteRoute(lite);
  }

  /**
   * Replaces everything with a dump. Only the links whose state differs from
   * what the model held are marked (with those events had marked before): a
   * periodic re-dump that finds the model right (the common case) replans
   * nothing, which with 1000 links is most of its cost.
   */
  replace(s: Snapshot): void {
    const marked = this.dirty;
    const before = { observed: new Map(this.observed), xdp: new Map(this.xdp), addrs: new Map(this.addrs), routes: new Map(this.routes), egress: this.egress };
    this.dirty = new Set();
    this.expected.clear(); // a dump is read after our ACKs: it is the truth
    this.links.clear();
    this.observed.clear();
    this.xdp.clear();
    this.addrs.clear();
    this.routes.clear();
    for (const l of s.links) if (l.family === 0) this.setLink(l);
    for (const a of s.addrs) this.onAddr('new', a);
    for (const r of s.routes) this.onRoute('new', r);
    if (s.routerIface !== undefined) this.routerIface = s.routerIface;
    if (s.egress !== undefined) this.egress = new Map(s.egress);
    if (s.strayEgress !== undefined) this.strayEgress = new Map(s.strayEgress);
    this.dirty = marked;
    for (const m of [before.observed, this.observed]) {
      for (const i of m.keys()) {
        if (marked.has(i)) continue;
        if (!sameLink(before.observed.get(i), this.observed.get(i)) || !sameXdp(before.xdp.get(i), this.xdp.get(i))
          || !sameSet(before.addrs.get(i), this.addrs.get(i), (a) => `${a.cidr} ${a.proto}`)
          || !sameSet(before.routes.get(i), this.routes.get(i), (r) => `${r.dst} ${r.gateway} ${r.proto}`)) marked.add(i);
      }
    }
    for (const [i, vid] of before.egress) if (this.egress.get(i) !== vid) marked.add(i);
    for (const [i, vid] of this.egress) if (before.egress.get(i) !== vid) marked.add(i);
    this.ledger.keepOnly((i) => this.links.has(i));
    // A former route protocol nothing carries any more is forgotten (it may
    // be a person's own number one day).
    for (const p of [...this.ledger.formerProtocols()]) {
      const carried = [...this.addrs.values()].some((l) => l.some((a) => a.proto === p)) || [...this.routes.values()].some((l) => l.some((r) => r.proto === p));
      if (!carried) this.ledger.dropFormer(p);
    }
  }

  /**
   * What the BPF maps hold, read back (nothing announces a deleted entry):
   * differences from the model mark the links concerned. true when anything differed.
   */
  checkMaps(routerIface: number | null, egress: ReadonlyMap<number, number> | null, strayEgress: ReadonlyMap<number, number> | null = null): boolean {
    let differs = false;
    if (routerIface !== this.routerIface) {
      if (this.routerIface !== null) this.dirty.add(this.routerIface);
      if (routerIface !== null) this.dirty.add(routerIface);
      this.routerIface = routerIface;
      differs = true;
    }
    if (!egress) return differs;
    let egressDiffers = false;
    for (const [e, vid] of egress) if (this.egress.get(e) !== vid) { this.dirty.add(e); egressDiffers = true; }
    for (const e of this.egress.keys()) if (!egress.has(e)) { this.dirty.add(e); egressDiffers = true; }
    if (egressDiffers) this.egress = new Map(egress);
    differs ||= egressDiffers;
    // Entries that are no NIC's own VID: the planner removes them (a pass is due while any is there).
    if (strayEgress && (strayEgress.size || this.strayEgress.size)) {
      this.strayEgress = new Map(strayEgress);
      differs ||= strayEgress.size > 0;
    }
    return differs;
  }

  /** Whether rx-vlan-offload on this NIC is ours (we turned it off): a FEATURE CHANGE event on it is worth a look. */
  offloadWatched(ifindex: number): boolean {
    return (this.vlanOffloadOff.has(ifindex) || this.xdp.get(ifindex)?.program === 'physical') && !this.vlanNotes.has(ifindex);
  }

  /** NICs carrying our `physical` whose rx-vlan-offload this run has not seen (adopted at a restart). */
  offloadUnknown(): Array<{ ifindex: number; name: string }> {
    const out: Array<{ ifindex: number; name: string }> = [];
    for (const [i, x] of this.xdp) {
      if (x.program === 'physical' && !this.vlanOffloadOff.has(i) && !this.vlanOffloadOn.has(i)) out.push({ ifindex: i, name: this.links.get(i)?.name ?? '' });
    }
    return out;
  }

  /** rx-vlan-offload was found off on an adopted NIC. */
  offloadKnownOff(ifindex: number): void {
    this.vlanOffloadOff.add(ifindex);
  }

  /** Someone turned rx-vlan-offload back on (ethtool -K): the planner turns it off again. */
  offloadTurnedOn(ifindex: number): void {
    this.vlanOffloadOff.delete(ifindex);
    this.vlanOffloadOn.add(ifindex);
    this.dirty.add(ifindex);
  }

  /** The forwarder (re)opened: program names can be told now; re-read them. */
  forgetProgramNames(): void {
    this.programs.clear();
    for (const l of this.links.values()) this.setXdpFromLink(l);
  }

  // ------------------------------------------------------------ our own ACKs

  /** Records what an acknowledged action changed, as the kernel will report it. */
  applied(a: Action, result: ActionResult): void {
    switch (a.kind) {
      case 'link': {
        const l = this.links.get(a.ifindex);
        if (!l) return;
        const next = { ...l };
        if (a.up !== undefined) next.up = a.up;
        if (a.promisc !== undefined) next.promisc = a.promisc;
        if (a.mtu !== undefined) next.mtu = a.mtu;
        // What it replaced is noted from the plan (our own event echo may
        // already have updated the model by now).
        if (a.restore) this.ledger.release(a.ifindex, (['up', 'promisc', 'mtu'] as const).filter((k) => a[k] !== undefined));
        else if (a.was) this.ledger.record(a.ifindex, a.was);
        // The ledger is an input of the plan: a restore to the value the link
        // already had changes nothing else, and must still be replanned.
        this.dirty.add(a.ifindex);
        this.expect(a.ifindex, { ...(a.up !== undefined ? { up: a.up } : {}), ...(a.promisc !== undefined ? { promisc: a.promisc } : {}), ...(a.mtu !== undefined ? { mtu: a.mtu } : {}) });
        this.setLink(next);
        return;
      }
      case 'addr-add':
        this.addrs.set(a.ifindex, [...this.addresses(a.ifindex).filter((x) => x.cidr !== a.cidr), { cidr: a.cidr, proto: this.routeProtocol }]);
        this.dirty.add(a.ifindex);
        return;
      case 'addr-del':
        this.addrs.set(a.ifindex, this.addresses(a.ifindex).filter((x) => x.cidr !== a.cidr));
        this.dirty.add(a.ifindex);
        return;
      case 'route-add':
        this.addRoute({ ...a.route, proto: this.routeProtocol });
        return;
      case 'route-del':
        this.deleteRoute(a.route);
        return;
      case 'xdp-attach':
        if (result && result.kind === 'xdp') {
          this.programs.set(result.id, result.program);
          if (result.fellBack) this.nativeRefused.add(a.ifindex);
          this.xdp.set(a.ifindex, { id: result.id, mode: result.mode, program: result.program });
          // The link's own IFLA_XDP view too: a later write of the link (an ACKed "up") must not undo this.
          const native = result.mode === 'native';
          const x = { attached: result.mode, progId: result.id, skbProgId: native ? 0 : result.id, drvProgId: native ? result.id : 0 } as const;
          this.expect(a.ifindex, { xdp: x });
          this.setLinkXdp(a.ifindex, x);
        }
        this.dirty.add(a.ifindex);
        return;
      case 'xdp-detach':
        this.xdp.delete(a.ifindex);
        this.expect(a.ifindex, { xdp: { attached: 'none', progId: 0, skbProgId: 0, drvProgId: 0 } });
        this.setLinkXdp(a.ifindex, { attached: 'none', progId: 0, skbProgId: 0, drvProgId: 0 });
        this.dirty.add(a.ifindex);
        return;
      case 'vlan-offload-off':
        this.vlanOffloadOff.add(a.ifindex);
        this.vlanOffloadOn.delete(a.ifindex);
        if (result && result.kind === 'offload' && result.was) this.ledger.record(a.ifindex, { rxVlanOffload: true });
        if (result && result.kind === 'offload' && result.warning) this.vlanNotes.set(a.ifindex, result.warning);
        else this.vlanNotes.delete(a.ifindex);
        this.dirty.add(a.ifindex);
        return;
      case 'vlan-offload-restore':
        this.vlanOffloadOff.delete(a.ifindex);
        this.vlanOffloadOn.delete(a.ifindex);
        this.vlanNotes.delete(a.ifindex);
        this.ledger.release(a.ifindex, ['rxVlanOffload']);
        this.dirty.add(a.ifindex);
        return;
      case 'egress-allow':
        this.egress.set(a.ifindex, a.vid);
        this.dirty.add(a.ifindex);
        return;
      case 'egress-deny':
        this.egress.delete(a.ifindex);
        this.dirty.add(a.ifindex);
        return;
      case 'egress-stray':
        this.strayEgress.delete(a.vid);
        return;
      case 'router-iface': {
        const before = this.routerIface;
        this.routerIface = a.ifindex;
        if (before !== null) this.dirty.add(before);
        if (a.ifindex !== null) this.dirty.add(a.ifindex);
        return;
      }
    }
  }

  // ------------------------------------------------------------ internals

  private setLink(l: LinkMsg): void {
    // Taking a link down flushes the IPv4 routes through it, without RTM_DELROUTE.
    if (this.links.get(l.ifindex)?.up && !l.up) this.routes.delete(l.ifindex);
    this.links.set(l.ifindex, l);
    const next: ObservedLink = { ifindex: l.ifindex, name: l.name, mac: l.mac, kind: l.kind, loopback: (l.flags & 0x8) !== 0 /* IFF_LOOPBACK */, up: l.up, promisc: l.promisc, mtu: l.mtu };
    if (!sameLink(this.observed.get(l.ifindex), next)) {
      this.observed.set(l.ifindex, next);
      this.dirty.add(l.ifindex);
    }
    this.setXdpFromLink(l);
  }

  /**
   * Our own changes, acknowledged, until the kernel's notification of them
   * (its echo) arrives. The event socket is not the request socket: a
   * notification sent before our change (the link's creation, say) can be
   * read after its ACK, and must not undo what we know; the first event that
   * shows our value is the echo, and every event after it is the truth again.
   */
  private expect(ifindex: number, fields: Expected['fields']): void {
    const e = this.expected.get(ifindex);
    this.expected.set(ifindex, { fields: { ...e?.fields, ...fields }, until: Date.now() + ECHO_WAIT_MS });
  }

  private withExpected(l: LinkMsg): LinkMsg {
    const e = this.expected.get(l.ifindex);
    if (!e) return l;
    if (Date.now() > e.until) {
      this.expected.delete(l.ifindex); // no echo came: the kernel's word is all there is
      return l;
    }
    const out = { ...l };
    const f = e.fields;
    for (const k of ['up', 'promisc', 'mtu'] as const) {
      if (f[k] === undefined) continue;
      if (l[k] === f[k]) delete f[k];
      else (out as Record<string, unknown>)[k] = f[k];
    }
    if (f.xdp) {
      if (l.xdp.skbProgId === f.xdp.skbProgId && l.xdp.drvProgId === f.xdp.drvProgId) delete f.xdp;
      else out.xdp = { ...f.xdp, hwProgId: l.xdp.hwProgId };
    }
    if (!Object.keys(f).length) this.expected.delete(l.ifindex);
    return out;
  }

  private setLinkXdp(ifindex: number, x: Omit<LinkMsg['xdp'], 'hwProgId'>): void {
    const l = this.links.get(ifindex);
    if (l) this.links.set(ifindex, { ...l, xdp: { ...x, hwProgId: l.xdp.hwProgId } });
  }

  private removeLink(ifindex: number): boolean {
    const had = this.links.delete(ifindex);
    this.observed.delete(ifindex);
    this.expected.delete(ifindex);
    this.vlanOffloadOff.delete(ifindex);
    this.vlanOffloadOn.delete(ifindex);
    this.vlanNotes.delete(ifindex);
    this.nativeRefused.delete(ifindex);
    this.ledger.forget(ifindex);
    // The allowlist entry stays until we delete it (a global action for links that are gone).
    this.addrs.delete(ifindex);
    this.xdp.delete(ifindex);
    // The kernel drops routes through a link with it.
    this.routes.delete(ifindex);
    this.dirty.add(ifindex);
    return had;
  }

  private setXdpFromLink(l: LinkMsg): void {
    const id = l.xdp.progId;
    const before = this.xdp.get(l.ifindex);
    if (!id || l.xdp.attached === 'none') {
      if (before) {
        this.xdp.delete(l.ifindex);
        this.dirty.add(l.ifindex);
      }
      return;
    }
    const next: ObservedXdp = { id, mode: l.xdp.attached === 'native' ? 'native' : l.xdp.attached === 'hw' ? 'hw' : 'skb', program: this.programOf(id) };
    if (sameXdp(before, next)) return;
    this.xdp.set(l.ifindex, next);
    this.dirty.add(l.ifindex);
  }

  private programOf(id: number): XdpProgram | null {
    if (this.programs.has(id)) return this.programs.get(id)!;
    const p = this.identify(id);
    if (p === undefined) return null; // cannot tell yet; do not remember
    this.programs.set(id, p);
    return p;
  }

  private addRoute(r: RouteLite): void {
    const list = (this.routes.get(r.oif) ?? []).filter((x) => !sameRoute(x, r));
    list.push(r);
    this.routes.set(r.oif, list);
    this.dirty.add(r.oif);
  }

  private deleteRoute(r: RouteLite): void {
    const list = this.routes.get(r.oif);
    if (!list) return;
    const next = list.filter((x) => !sameRoute(x, r));
    if (next.length) this.routes.set(r.oif, next);
    else this.routes.delete(r.oif);
    this.dirty.add(r.oif);
  }
}
