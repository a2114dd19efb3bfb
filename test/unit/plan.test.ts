import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig, type Config } from '../../agent/config.js';
import { plan, linkState, type ObservedLink, type World, type ObservedAddr, type RouteLite, type ObservedXdp, type Action, type Originals } from '../../agent/core/plan.js';

function cfg(extra: Record<string, unknown> = {}): Config {
  const r = parseConfig(extra);
  if (!r.config) throw new Error(r.problems.join('; '));
  return r.config;
}

let nextIndex = 1;
function link(mac: string, extra: Partial<ObservedLink> = {}): ObservedLink {
  const ifindex = extra.ifindex ?? ++nextIndex;
  return { ifindex, name: `if${ifindex}`, mac, kind: null, loopback: false, up: false, promisc: false, mtu: 1500, ...extra };
}

function byOif(routes: RouteLite[]): Map<number, RouteLite[]> {
  const m = new Map<number, RouteLite[]>();
  for (const r of routes) m.set(r.oif, [...(m.get(r.oif) ?? []), r]);
  return m;
}

/** A world; rx-vlan-offload counts as already off on every link unless given. */
function world(links: ObservedLink[], extra: Partial<{ addrs: Map<number, ObservedAddr[]>; routes: RouteLite[]; xdp: Map<number, ObservedXdp>; routerIface: number | null; egress: Set<number>; vlanOffloadOff: Set<number>; originals: Map<number, Originals>; formerProtocols: Set<number> }> = {}): World {
  return {
    links: new Map(links.map((l) => [l.ifindex, l])),
    addrs: extra.addrs ?? new Map(),
    routes: byOif(extra.routes ?? []),
    xdp: extra.xdp ?? new Map(),
    routerIface: extra.routerIface ?? null,
    egress: new Map([...(extra.egress ?? [])].map((i) => [i, i])), // VID = ifindex, as the published design

    vlanOffloadOff: extra.vlanOffloadOff ?? new Set(links.map((l) => l.ifindex)),
    vlanOffloadOn: new Set(),
    strayEgress: new Map(),
    nativeRefused: new Set(),
    originals: extra.originals ?? new Map(),
    formerProtocols: extra.formerProtocols ?? new Set(),
  };
}

const kinds = (as: readonly Action[] | undefined) => (as ?? []).map((a) => a.kind + ('up' in a && a.up !== undefined ? `:up=${a.up}` : '') + ('promisc' in a && a.promisc !== undefined ? ':promisc' : '') + ('mtu' in a && a.mtu !== undefined ? `:mtu=${a.mtu}` : ''));

const lo = link('00:00:00:00:00:00', { ifindex: 1, name: 'lo', loopback: true, up: true });

test('xdp-forwarder: physical gets `physical` and the allowlist, the router link `router`, promisc, router_iface; up last', () => {
  const phys = link('52:54:00:00:00:10', { ifindex: 2, name: 'eth0', mtu: 9000 });
  const rl = link('02:01:00:00:00:01', { ifindex: 3, name: 'eth1' });
  const p = plan(cfg(), world([lo, phys, rl], { vlanOffloadOff: new Set() }));
  assert.is(p.links.get(1)!.role, 'loopback');
  assert.ok(p.links.get(1)!.ignored);
  assert.is(p.actions.get(1), undefined, 'loopback is never touched');
  assert.is(p.links.get(2)!.role, 'physical');
  assert.equal(kinds(p.actions.get(2)), ['vlan-offload-off', 'xdp-attach', 'egress-allow', 'link:up=true'], 'tag stripping off first; allowlisted only once physical is attached');
  assert.is(p.links.get(3)!.role, 'router-link');
  assert.equal(kinds(p.actions.get(3)), ['xdp-attach', 'link:promisc', 'link:mtu=9004', 'link:up=true'], 'MTU in a request of its own: largest NIC MTU + one tag');
  assert.equal(kinds(p.globals), ['router-iface'], 'router_iface is shared state, written once the link is done');
  const attach = p.actions.get(3)!.find((a) => a.kind === 'xdp-attach');
  assert.equal(attach && 'program' in attach && attach.program, 'router');
  assert.is(p.router, null, 'no nftables in this profile');
  assert.equal(p.links.get(2)!.want.addresses, [], 'no IPv4 addresses in this profile');
});

test('xdp-forwarder: a configured world needs nothing (idempotent)', () => {
  const phys = link('52:54:00:00:00:10', { ifindex: 2, name: 'eth0', up: true });
  const rl = link('02:01:00:00:00:01', { ifindex: 3, name: 'eth1', up: true, promisc: true, mtu: 1504 });
  const w = world([lo, phys, rl], {
    xdp: new Map<number, ObservedXdp>([[2, { id: 10, mode: 'skb', program: 'physical' }], [3, { id: 11, mode: 'skb', program: 'router' }]]),
    routerIface: 3,
    egress: new Set([2]),
  });
  const p = plan(cfg(), w);
  assert.is(p.actions.size, 0);
  assert.is(linkState(p.links.get(2)!, 0, null), 'configured');
  assert.is(linkState(p.links.get(1)!, 0, null), 'ignored');
});

test('xdp-forwarder: a program in the wrong mode, or someone else\'s, is replaced; auto is native only where every forwarder link can be', () => {
  const phys = link('52:54:00:00:00:10', { ifindex: 2, up: true });
  const w = world([phys], { xdp: new Map<number, ObservedXdp>([[2, { id: 10, mode: 'native', program: 'physical' }]]), egress: new Set([2]) });
  assert.equal(kinds(plan(cfg(), w).actions.get(2)), ['xdp-attach']);
  assert.is(plan(cfg({ xdpMode: 'auto' }), w).actions.size, 0, 'auto: a hardware NIC stays native');
  assert.is(plan(cfg({ xdpMode: 'native' }), w).actions.size, 0);
  // A veth among the forwarder links: a native redirect into it needs XDP on its peer, so auto puts every link in skb.
  const veth = link('02:01:00:00:00:01', { ifindex: 3, up: true, promisc: true, kind: 'veth' });
  const mixed = plan(cfg({ xdpMode: 'auto' }), world([phys, veth], { xdp: new Map<number, ObservedXdp>([[2, { id: 10, mode: 'native', program: 'physical' }]]), egress: new Set([2]), routerIface: 3 }));
  const attach = mixed.actions.get(2)!.find((a) => a.kind === 'xdp-attach');
  assert.equal(attach && 'mode' in attach && [attach.mode, attach.fallback], ['skb', true], 'the NIC moves to skb too');
  // Someone else's program on a NIC with an entry of ours: out of the allowlist until ours is attached again.
  const foreign = world([phys], { xdp: new Map<number, ObservedXdp>([[2, { id: 9, mode: 'skb', program: null }]]), egress: new Set([2]) });
  assert.equal(kinds(plan(cfg(), foreign).actions.get(2)), ['egress-deny', 'xdp-attach', 'egress-allow']);
});

test('xdp-forwarder: a NIC above ifindex 4095 gets a free VID (the highest), a pinned one its pin; VID = ifindex otherwise', () => {
  const big = link('52:54:00:00:00:11', { ifindex: 5000, name: 'big0' });
  const ok = link('52:54:00:00:00:12', { ifindex: 7, name: 'ok0' });
  const wired = link('52:54:00:00:00:13', { ifindex: 8, name: 'eth9' });
  const p = plan(cfg({ vidPins: { 'eth*': 10 } }), world([big, ok, wired]));
  const vidOf = (i: number) => (p.actions.get(i)!.find((a) => a.kind === 'egress-allow') as { vid: number }).vid;
  assert.is(p.links.get(5000)!.error, null);
  assert.is(vidOf(5000), 4094);
  assert.is(vidOf(7), 7);
  assert.is(vidOf(8), 10, 'pinned');
  // Kept while the NIC exists: the maps' VID stays, even when the ifindex would be free now.
  const attached = new Map<number, ObservedXdp>([[7, { id: 3, mode: 'skb', program: 'physical' }]]);
  const again = plan(cfg(), world([big, ok], { egress: new Set([7]), xdp: attached }));
  assert.is(again.actions.get(7)?.some((a) => a.kind === 'egress-allow') ?? false, false, 'VID 7 kept, nothing to do');
});

test('xdp-forwarder: a second router link fails; the one in router_iface keeps it', () => {
  const a = link('02:01:00:00:00:01', { ifindex: 4, name: 'ra' });
  const b = link('02:01:00:00:00:02', { ifindex: 5, name: 'rb' });
  const p = plan(cfg(), world([a, b], { routerIface: 5 }));
  assert.is(p.links.get(5)!.error, null);
  assert.match(p.links.get(4)!.error!, /second router link: rb/);
  assert.ok(!p.actions.get(4), 'nothing done to the loser');
  const fresh = plan(cfg(), world([a, b]));
  assert.is(fresh.links.get(4)!.error, null, 'lowest ifindex wins on a fresh start');
});

test('xdp-forwarder: removal and stale state: allowlist entries of gone links and an empty router are cleaned', () => {
  const p = plan(cfg(), world([lo], { routerIface: 9, egress: new Set([7, 8]) }));
  assert.is(p.actions.size, 0, 'no live link has anything to do');
  const all = p.globals;
  assert.equal(all.map((a) => a.kind).sort(), ['egress-deny', 'egress-deny', 'router-iface']);
  const ri = all.find((a) => a.kind === 'router-iface');
  assert.is(ri && 'ifindex' in ri && ri.ifindex, null);
});

test('xdp-forwarder: links of other designs, bridges and ignoreInterfaces are left alone', () => {
  const iv = link('0a:b3:ec:40:00:02', { ifindex: 2 });
  const br = link('52:54:00:00:00:01', { ifindex: 3, kind: 'bridge' });
  const named = link('52:54:00:00:00:02', { ifindex: 4, name: 'mgmt0' });
  const tun = link('', { ifindex: 6, name: 'wg0' });
  const p = plan(cfg({ ignoreInterfaces: ['mgmt*'] }), world([iv, br, named, tun]));
  for (const i of [2, 3, 4, 6]) {
    assert.ok(p.links.get(i)!.ignored, `ifindex ${i} ignored`);
    assert.is(p.actions.get(i), undefined);
  }
  assert.is(p.links.get(2)!.role, 'inter-vm');
  assert.match(p.links.get(2)!.note!, /does not use inter-vm/);
  assert.match(p.links.get(4)!.note!, /ignoreInterfaces/);
});

test('xdp-forwarder: our program on a link that lost its role is detached; a foreign one is left', () => {
  const now = link('0a:b3:ec:40:00:02', { ifindex: 2 });
  const other = link('0a:b3:ec:40:00:04', { ifindex: 3 });
  const p = plan(cfg(), world([now, other], { xdp: new Map<number, ObservedXdp>([[2, { id: 1, mode: 'skb', program: 'physical' }], [3, { id: 2, mode: 'skb', program: null }]]) }));
  assert.equal(kinds(p.actions.get(2)), ['xdp-detach']);
  assert.is(p.actions.get(3), undefined);
});

test('router-p2p: 0a:b3:ec:40:00:02 gets 100.64.0.2/31, physical is the uplink with masquerade and DHCP', () => {
  const iv = link('0a:b3:ec:40:00:02', { ifindex: 2, name: 'vm1' });
  const up = link('52:54:00:00:00:01', { ifindex: 3, name: 'eth0' });
  const p = plan(cfg({ profile: 'router-p2p' }), world([lo, iv, up]));
  assert.equal(p.links.get(2)!.want.addresses, ['100.64.0.2/31']);
  assert.equal(kinds(p.actions.get(2)), ['addr-add', 'link:up=true']);
  assert.is(p.links.get(3)!.role, 'physical');
  assert.equal(kinds(p.actions.get(3)), ['link:up=true']);
  assert.equal(p.router, { uplinks: ['eth0'], clients: ['vm1'], peers: [{ name: 'vm1', address: '100.64.0.3', gateway: '100.64.0.2' }] }, 'the client is the other end of the /31');
  assert.equal(p.dhcp, ['eth0']);
  assert.equal(plan(cfg({ profile: 'router-p2p', uplinkDhcp: false }), world([up])).dhcp, []);
});

test('router-p2p: out of 100.64.0.0/10 fails with the reason, unless allowed', () => {
  const bad = link('0a:b3:ec:01:02:03', { ifindex: 2, name: 'vm1' });
  const p = plan(cfg({ profile: 'router-p2p' }), world([bad]));
  assert.match(p.links.get(2)!.error!, /100\.1\.2\.3, outside the shared address space/);
  assert.is(p.actions.get(2), undefined);
  assert.equal(p.router!.clients, [], 'a failed link is no client');
  const allowed = plan(cfg({ profile: 'router-p2p', allowPublicAddresses: true }), world([bad]));
  assert.equal(allowed.links.get(2)!.want.addresses, ['100.1.2.3/31']);
});

test('router-p2p: two links claiming the same address: the second fails', () => {
  const a = link('0a:b3:ec:40:00:02', { ifindex: 2, name: 'a' });
  const b = link('0A:B3:EC:40:00:02', { ifindex: 3, name: 'b' });
  const p = plan(cfg({ profile: 'router-p2p' }), world([a, b]));
  assert.is(p.links.get(2)!.error, null);
  assert.match(p.links.get(3)!.error!, /overlaps the \/31 100\.64\.0\.2\/31 of a/);
  // Overlapping /31s (:02 and :03 are the two ends of one link): the second fails too.
  const c = link('0a:b3:ec:40:00:03', { ifindex: 4, name: 'c' });
  const q = plan(cfg({ profile: 'router-p2p' }), world([a, c]));
  assert.is(q.links.get(2)!.error, null);
  assert.match(q.links.get(4)!.error!, /100\.64\.0\.3\/31 overlaps the \/31 100\.64\.0\.2\/31 of a/);
});

test('router-p2p: idempotent with the address present; a stale address of ours is removed, others kept', () => {
  const iv = link('0a:b3:ec:40:00:02', { ifindex: 2, name: 'vm1', up: true });
  const addrs = new Map<number, ObservedAddr[]>([[2, [
    { cidr: '100.64.0.2/31', proto: 199 },
    { cidr: '100.64.9.8/31', proto: 199 },
    { cidr: '192.168.7.1/24', proto: 0 },
  ]]]);
  const p = plan(cfg({ profile: 'router-p2p' }), world([iv], { addrs }));
  const acts = p.actions.get(2)!;
  assert.equal(acts.map((a) => a.kind), ['addr-del']);
  assert.is((acts[0] as { cidr: string }).cidr, '100.64.9.8/31');
});

test('router-routed: 02:01:XX:XX:AA:BB gets 169.254.0.1/32 and a host route to 100.64.AA.BB', () => {
  const c = link('02:01:00:00:01:0a', { ifindex: 2, name: 'c1' });
  const p = plan(cfg({ profile: 'router-routed' }), world([c]));
  assert.is(p.links.get(2)!.role, 'inter-vm');
  assert.equal(p.links.get(2)!.want.addresses, ['169.254.0.1/32']);
  assert.equal(p.links.get(2)!.want.routes, [{ dst: '100.64.1.10/32', oif: 2, gateway: null }]);
  assert.equal(kinds(p.actions.get(2)), ['addr-add', 'link:up=true', 'route-add'], 'up before the route: the kernel refuses routes through a down link');
  const done = plan(cfg({ profile: 'router-routed' }), world([{ ...c, up: true }], {
    addrs: new Map([[2, [{ cidr: '169.254.0.1/32', proto: 199 }]]]),
    routes: [{ dst: '100.64.1.10/32', oif: 2, gateway: null }, { dst: '100.64.7.7/32', oif: 2, gateway: null }],
  }));
  assert.equal(kinds(done.actions.get(2)), ['route-del'], 'a stale route of ours goes');
});

test('client: 0a:b3:ec:40:00:03 gives 100.64.0.3/31 and a default route via 100.64.0.2', () => {
  const c = link('0a:b3:ec:40:00:03', { ifindex: 2, name: 'eth0' });
  const c2 = link('0a:b3:ec:40:00:05', { ifindex: 3, name: 'eth1' });
  const phys = link('52:54:00:00:00:01', { ifindex: 4, name: 'eth2' });
  const p = plan(cfg({ profile: 'client' }), world([c, c2, phys]));
  assert.is(p.links.get(2)!.role, 'client-link');
  assert.equal(p.links.get(2)!.want.addresses, ['100.64.0.3/31']);
  assert.equal(p.links.get(2)!.want.routes, [{ dst: '0.0.0.0/0', oif: 2, gateway: '100.64.0.2' }]);
  assert.equal(p.links.get(3)!.want.routes, [], 'one default route only');
  assert.ok(p.links.get(4)!.ignored);
  assert.is(p.router, null);
});

test('client: 02:00 links take their configured address, or fail saying what to configure', () => {
  const c = link('02:00:00:00:00:07', { ifindex: 2, name: 'eth0' });
  const none = plan(cfg({ profile: 'client' }), world([c]));
  assert.match(none.links.get(2)!.error!, /clientAddresses/);
  const p = plan(cfg({ profile: 'client', clientAddresses: { '02:00:00:00:00:07': '100.64.0.7/31' } }), world([c]));
  assert.equal(p.links.get(2)!.want.addresses, ['100.64.0.7/31']);
  assert.equal(p.links.get(2)!.want.routes[0]!.gateway, '100.64.0.6');
});

test('client: a configured /32 gets no default route (no peer to name), and says so', () => {
  const c = link('02:00:00:00:00:07', { ifindex: 2, name: 'eth0' });
  const p = plan(cfg({ profile: 'client', clientAddresses: { '02:00:00:00:00:07': '100.64.1.10/32' } }), world([c]));
  assert.equal(p.links.get(2)!.want.routes, []);
  assert.match(p.links.get(2)!.note!, /no default route/);
});

test('profile switch: xdp-forwarder state is undone under router-p2p', () => {
  const rl = link('02:01:00:00:00:01', { ifindex: 2, up: true, promisc: true });
  const phys = link('52:54:00:00:00:10', { ifindex: 3, up: true });
  const w = world([rl, phys], {
    xdp: new Map<number, ObservedXdp>([[2, { id: 1, mode: 'skb', program: 'router' }], [3, { id: 2, mode: 'skb', program: 'physical' }]]),
    routerIface: 2,
    egress: new Set([3]),
    originals: new Map([[2, { promisc: false }]]),
  });
  const p = plan(cfg({ profile: 'router-p2p' }), w);
  const all = [...p.actions.values(), p.globals].flat().map((a) => a.kind).sort();
  assert.equal(all, ['egress-deny', 'link', 'router-iface', 'xdp-detach', 'xdp-detach']);
  const promisc = [...p.actions.values()].flat().find((a) => a.kind === 'link');
  assert.equal(promisc && 'promisc' in promisc && [promisc.ifindex, promisc.promisc], [2, false], 'the ex-router link leaves the promiscuous mode we gave it');
  // Promiscuous before netagent came (nothing noted): not ours to undo.
  const theirs = plan(cfg({ profile: 'router-p2p' }), { ...w, originals: new Map() });
  assert.not.ok([...theirs.actions.values()].flat().some((a) => a.kind === 'link' && a.promisc !== undefined), 'left as it was');
});

test('profile switch: what we changed goes back to what it was (up, MTU, promiscuous mode, rx-vlan-offload), once', () => {
  // xdp-forwarder had raised the router link's MTU, made it promiscuous and
  // brought both up; it had turned rx-vlan-offload off on the NIC.
  const rl = link('02:01:00:00:00:01', { ifindex: 2, up: true, promisc: true, mtu: 9004 });
  const phys = link('52:54:00:00:00:10', { ifindex: 3, up: true, mtu: 9000 });
  const originals = new Map<number, Originals>([[2, { up: false, promisc: false, mtu: 1500 }], [3, { up: false, rxVlanOffload: true }]]);
  const xdp = new Map<number, ObservedXdp>([[2, { id: 1, mode: 'skb', program: 'router' }], [3, { id: 2, mode: 'skb', program: 'physical' }]]);
  // client: neither link is used: both go back to how a fresh start leaves them (down, their MTU, offload on).
  const c = plan(cfg({ profile: 'client' }), world([rl, phys], { xdp, routerIface: 2, egress: new Set([3]), originals }));
  assert.equal(kinds(c.actions.get(2)), ['xdp-detach', 'link:promisc', 'link:mtu=1500', 'link:up=false']);
  assert.equal(kinds(c.actions.get(3)), ['egress-deny', 'xdp-detach', 'vlan-offload-restore', 'link:up=false'], 'out of the allowlist first');
  assert.ok([...c.actions.values()].flat().every((a) => a.kind !== 'link' || a.restore), 'restores are marked as such (the ledger forgets, not notes)');
  // router-routed: the 02:01 link is a client link there (up and addressed): only MTU and promiscuous mode go back.
  const r = plan(cfg({ profile: 'router-routed' }), world([rl, phys], { xdp, routerIface: 2, egress: new Set([3]), originals }));
  assert.equal(kinds(r.actions.get(2)), ['xdp-detach', 'link:promisc', 'link:mtu=1500', 'addr-add', 'route-add']);
  // Once restored (the ledger forgot them), nothing more: a later change by someone else is not ours to undo.
  const done = plan(cfg({ profile: 'client' }), world([{ ...rl, up: true, mtu: 1500, promisc: false }, { ...phys, up: true }], { routerIface: null }));
  assert.equal(kinds(done.actions.get(2)), []);
  assert.equal(kinds(done.actions.get(3)), []);
  // A change of ours notes what it replaces.
  const fresh = plan(cfg(), world([link('02:01:00:00:00:01', { ifindex: 2, mtu: 1500 }), link('52:54:00:00:00:10', { ifindex: 3, mtu: 9000 })]));
  const mtu = fresh.actions.get(2)!.find((a) => a.kind === 'link' && a.mtu !== undefined);
  assert.equal(mtu && mtu.kind === 'link' && [mtu.mtu, mtu.was], [9004, { mtu: 1500 }]);
});

test('routeProtocol changed: what carries the old number is re-tagged or removed; other numbers are left alone', () => {
  const l = link('02:01:00:00:01:07', { ifindex: 2, up: true });
  const addrs = new Map<number, ObservedAddr[]>([[2, [{ cidr: '169.254.0.1/32', proto: 77 }, { cidr: '10.1.1.1/32', proto: 77 }, { cidr: '10.2.2.2/32', proto: 78 }]]]);
  const routes: RouteLite[] = [{ dst: '100.64.1.7/32', oif: 2, gateway: null, proto: 77 }, { dst: '10.9.0.0/16', oif: 2, gateway: null, proto: 77 }];
  const p = plan(cfg({ profile: 'router-routed', routeProtocol: 199 }), world([l], { addrs, routes, formerProtocols: new Set([77]) }));
  const acts = p.actions.get(2)!.map((a) => (a.kind === 'addr-add' || a.kind === 'addr-del' ? `${a.kind} ${a.cidr}` : a.kind === 'route-add' || a.kind === 'route-del' ? `${a.kind} ${a.route.dst}` : a.kind));
  assert.equal(acts, ['addr-add 169.254.0.1/32', 'addr-del 10.1.1.1/32', 'route-del 100.64.1.7/32', 'route-del 10.9.0.0/16', 'route-add 100.64.1.7/32']);
  const del = p.actions.get(2)!.find((a) => a.kind === 'route-del');
  assert.is(del && del.kind === 'route-del' && del.route.proto, 77, 'deleted with the number it carries');
  // Without 77 among the former numbers, nothing of it is ours.
  const q = plan(cfg({ profile: 'router-routed', routeProtocol: 199 }), world([l], { addrs, routes: [] }));
  assert.equal(q.actions.get(2)!.map((a) => a.kind), ['route-add']);
});

test('random worlds never throw and every action names a link', () => {
  let seed = 42;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  const macs = ['02:01', '0a:b3:ec', '02:00', '52:54:00', '00:00:00', 'ff:ff:ff'];
  for (let round = 0; round < 300; round++) {
    const links: ObservedLink[] = [];
    for (let i = 0; i < rnd(12); i++) {
      const pre = macs[rnd(macs.length)]!;
      const rest = Array.from({ length: 6 - pre.split(':').length }, () => rnd(256).toString(16).padStart(2, '0'));
      const ifindex = 1 + rnd(6000);
      if (links.some((l) => l.ifindex === ifindex)) continue;
      links.push(link([pre, ...rest].join(':'), { ifindex, name: `l${ifindex}`, up: !!rnd(2), promisc: !!rnd(2), mtu: 1000 + rnd(9000) }));
    }
    for (const profile of ['xdp-forwarder', 'router-p2p', 'router-routed', 'client']) {
      const p = plan(cfg({ profile }), world(links, { routerIface: rnd(3) ? null : 1 + rnd(6000), egress: new Set([rnd(6000)]) }));
      for (const acts of [...p.actions.values(), p.globals]) for (const a of acts) assert.ok(a.name.length > 0);
    }
  }
});

test.run();
