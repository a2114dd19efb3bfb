// The incremental planner must always agree with planning from scratch: random
// event sequences (links coming, changing MAC, name, MTU and flags, going;
// addresses and routes of ours and of others; XDP programs; router_iface and
// allowlist entries written behind our back; the kernel carrying out what was
// asked) in every profile, and after every event the Planner's result equals
// plan() over the same world.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig, type Config } from '../../agent/config.js';
import { Planner, plan, type Action, type ObservedAddr, type ObservedLink, type ObservedXdp, type Originals, type Plan, type RouteLite, type World } from '../../agent/core/plan.js';

function cfg(extra: Record<string, unknown>): Config {
  const r = parseConfig(extra);
  if (!r.config) throw new Error(r.problems.join('; '));
  return r.config;
}

class Rng {
  constructor(private seed: number) {}
  int(n: number): number {
    this.seed = (Math.imul(this.seed, 1103515245) + 12345) >>> 0;
    return (this.seed >>> 8) % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/** A mutable world; every change replaces objects (the planner may hold the old ones). */
class FakeKernel {
  links = new Map<number, ObservedLink>();
  addrs = new Map<number, ObservedAddr[]>();
  routes = new Map<number, RouteLite[]>();
  xdp = new Map<number, ObservedXdp>();
  routerIface: number | null = null;
  egress = new Map<number, number>(); // ifindex -> VID, one NIC per VID as in the maps
  vlanOff = new Set<number>();
  refused = new Set<number>();
  /** What the ledger holds: values of ours to restore (kept as daemon/ledger.ts does). */
  originals = new Map<number, Originals>();
  former = new Set<number>();

  world(): World {
    return { links: this.links, addrs: this.addrs, routes: this.routes, xdp: this.xdp, routerIface: this.routerIface, egress: this.egress, strayEgress: new Map(), vlanOffloadOff: this.vlanOff, vlanOffloadOn: new Set(), nativeRefused: this.refused, originals: this.originals, formerProtocols: this.former };
  }

  private note(i: number, f: (o: Originals) => Originals): void {
    const o = f({ ...this.originals.get(i) });
    this.originals = new Map(this.originals);
    if (Object.keys(o).length) this.originals.set(i, o);
    else this.originals.delete(i);
  }

  removeLink(i: number): void {
    this.links.delete(i);
    this.addrs.delete(i);
    this.routes.delete(i);
    this.xdp.delete(i);
    this.vlanOff = new Set([...this.vlanOff].filter((x) => x !== i));
    this.refused = new Set([...this.refused].filter((x) => x !== i));
    this.note(i, () => ({}));
  }

  /** A VID names one NIC: setting it takes it from whoever had it. */
  setVid(i: number, vid: number): void {
    this.egress = new Map([...this.egress].filter(([x, v]) => x !== i && v !== vid));
    this.egress.set(i, vid);
  }

  /** What the kernel would do with an action (the effects, without a kernel). */
  apply(a: Action, protocol: number): void {
    const i = a.ifindex;
    switch (a.kind) {
      case 'link': {
        const l = this.links.get(i!);
        if (l) this.links.set(i!, { ...l, ...(a.up !== undefined ? { up: a.up } : {}), ...(a.promisc !== undefined ? { promisc: a.promisc } : {}), ...(a.mtu !== undefined ? { mtu: a.mtu } : {}) });
        const fields = (['up', 'promisc', 'mtu'] as const).filter((f) => a[f] !== undefined);
        if (a.restore) this.note(i!, (o) => { for (const f of fields) delete o[f]; return o; });
        else if (a.was) this.note(i!, (o) => ({ ...a.was, ...o }));
        return;
      }
      case 'addr-add': this.addrs.set(i!, [...(this.addrs.get(i!) ?? []).filter((x) => x.cidr !== a.cidr), { cidr: a.cidr, proto: protocol }]); return;
      case 'addr-del': this.addrs.set(i!, (this.addrs.get(i!) ?? []).filter((x) => x.cidr !== a.cidr)); return;
      case 'route-add': this.routes.set(i!, [...(this.routes.get(i!) ?? []), { ...a.route, proto: protocol }]); return;
      case 'route-del': this.routes.set(i!, (this.routes.get(i!) ?? []).filter((r) => r !== a.route && !(r.dst === a.route.dst && r.gateway === a.route.gateway))); return;
      case 'xdp-attach': this.xdp.set(i!, { id: 100 + (a.program === 'router' ? 1 : 0), mode: a.mode, program: a.program }); return;
      case 'xdp-detach': this.xdp.delete(i!); return;
      case 'vlan-offload-off': this.vlanOff = new Set([...this.vlanOff, i!]); this.note(i!, (o) => ({ rxVlanOffload: true, ...o })); return;
      case 'vlan-offload-restore': this.vlanOff = new Set([...this.vlanOff].filter((x) => x !== i)); this.note(i!, (o) => { delete o.rxVlanOffload; return o; }); return;
      case 'egress-allow': this.setVid(i!, a.vid); return;
      case 'egress-deny': this.egress = new Map([...this.egress].filter(([x]) => x !== i)); return;
      case 'router-iface': this.routerIface = a.ifindex; return;
    }
  }
}

const this_has = (k: FakeKernel, i: number) => k.egress.has(i);

/** A plan as plain, ordered data (to compare two plans). */
function snapshot(p: Plan): unknown {
  return {
    links: [...p.links.values()].sort((a, b) => a.ifindex - b.ifindex),
    actions: [...p.actions.entries()].sort((a, b) => a[0] - b[0]),
    globals: p.globals,
    router: p.router,
    dhcp: p.dhcp,
  };
}

const hex = (n: number) => n.toString(16).padStart(2, '0');

function randomMac(r: Rng): string {
  switch (r.int(7)) {
    case 0: return `02:01:00:00:${hex(r.int(3))}:${hex(r.int(6))}`; // router link / routed client (collisions likely)
    case 1: return `0a:b3:ec:40:00:${hex(r.int(8))}`; // inter-vm, inside 100.64/10, overlapping /31s
    case 2: return `0a:b3:ec:${hex(r.int(256))}:00:02`; // sometimes outside the shared space
    case 3: return `02:00:00:00:00:${hex(r.int(3))}`; // client link, maybe configured
    case 4: return '00:00:00:00:00:00';
    case 5: return '';
    default: return `52:54:00:00:${hex(r.int(4))}:${hex(r.int(256))}`; // physical
  }
}

function randomLink(r: Rng, ifindex: number): ObservedLink {
  return {
    ifindex,
    name: r.int(10) === 0 ? 'dup0' : `l${ifindex}`,
    mac: randomMac(r),
    kind: r.int(8) === 0 ? 'bridge' : r.int(6) === 0 ? 'veth' : null,
    loopback: false,
    up: r.int(2) === 0,
    promisc: r.int(4) === 0,
    mtu: r.pick([1500, 1500, 9000, 1400, 4000]),
  };
}

const PROFILES = [
  { profile: 'xdp-forwarder' },
  { profile: 'xdp-forwarder', xdpMode: 'auto' },
  // VID pins: by name pattern and by MAC, one of them an ifindex other NICs may have.
  { profile: 'xdp-forwarder', vidPins: { 'l1*': 7, '52:54:00:00:00:05': 4090, dup0: 3 } },
  { profile: 'router-p2p', uplinkDhcp: true },
  { profile: 'router-routed' },
  { profile: 'client', clientAddresses: { '02:00:00:00:00:01': '100.64.1.1/31', '02:00:00:00:00:02': '100.64.1.2/32' } },
];

for (const [n, extra] of PROFILES.entries()) {
  test(`incremental planning equals planning from scratch: ${JSON.stringify(extra)}`, () => {
    const config = cfg(extra);
    for (let run = 0; run < 12; run++) {
      const r = new Rng(1000 * n + run + 1);
      const k = new FakeKernel();
      // Every other run, an earlier config's route protocol (77) is still carried by some addresses and routes.
      if (run % 2) k.former = new Set([77]);
      const planner = new Planner(config);
      let p = planner.update(k.world(), null);
      for (let step = 0; step < 250; step++) {
        const changed = new Set<number>();
        const ifindexes = [...k.links.keys()];
        const some = () => (ifindexes.length ? r.pick(ifindexes) : null);
        let what = '';
        switch (r.int(12)) {
          case 0: case 1: { // a link appears (low ifindexes collide with removed ones, some above 4095)
            const i = r.int(4) === 0 ? 4092 + r.int(8) : 1 + r.int(40); // some above 4094: they need free VIDs
            if (k.links.has(i)) break;
            k.links.set(i, randomLink(r, i));
            changed.add(i);
            what = `add ${i}`;
            break;
          }
          case 2: { const i = some(); if (i === null) break; k.removeLink(i); changed.add(i); what = `del ${i}`; break; }
          case 3: { // MAC, name, MTU or flags change
            const i = some(); if (i === null) break;
            const l = k.links.get(i)!;
            const fresh = randomLink(r, i);
            const field = r.pick(['mac', 'name', 'mtu', 'up', 'promisc'] as const);
            k.links.set(i, { ...l, [field]: fresh[field] });
            changed.add(i);
            what = `change ${i} ${field}`;
            break;
          }
          case 4: { // an address of ours or someone else's, sometimes the wanted one
            const i = some(); if (i === null) break;
            const cidr = r.pick(['100.64.0.2/31', '169.254.0.1/32', '192.0.2.1/24', '100.64.1.1/31']);
            const list = (k.addrs.get(i) ?? []).filter((a) => a.cidr !== cidr);
            if (r.int(2)) list.push({ cidr, proto: r.pick([config.routeProtocol, 0, 77]) });
            k.addrs.set(i, list);
            changed.add(i);
            what = `addr ${i} ${cidr}`;
            break;
          }
          case 5: { // a route of ours appears or goes (the kernel flushed it)
            const i = some(); if (i === null) break;
            const route = { dst: r.pick(['100.64.0.1/32', '0.0.0.0/0', '10.0.0.0/8']), oif: i, gateway: r.int(2) ? null : '100.64.1.0', proto: r.pick([config.routeProtocol, 77]) };
            const list = k.routes.get(i) ?? [];
            k.routes.set(i, r.int(2) ? [...list, route] : []);
            changed.add(i);
            what = `route ${i}`;
            break;
          }
          case 6: { // an XDP program: ours, someone else's, or none
            const i = some(); if (i === null) break;
            const x = r.int(4);
            if (x === 0) k.xdp.delete(i);
            else k.xdp.set(i, { id: r.int(50), mode: r.pick(['skb', 'native'] as const), program: x === 1 ? null : r.pick(['physical', 'router'] as const) });
            // Sometimes the driver refused native XDP (the effects fell back to skb).
            if (r.int(5) === 0) { k.refused = new Set([...k.refused, i]); what = `refused ${i}`; } else what = `xdp ${i}`;
            changed.add(i);
            break;
          }
          case 7: { // router_iface written behind our back (or emptied)
            k.routerIface = r.int(3) === 0 ? null : some() ?? 77;
            what = `router_iface ${k.routerIface}`;
            break;
          }
          case 8: { // an allowlist entry (a VID) appears, moves or goes behind our back (also for links that do not exist)
            const i = r.int(3) === 0 ? 900 + r.int(3) : some(); if (i === null) break;
            for (const [x] of k.egress) changed.add(x); // whoever loses its VID to this is marked too (as Model.checkMaps does)
            if (this_has(k, i) && r.int(2)) k.egress = new Map([...k.egress].filter(([x]) => x !== i));
            else k.setVid(i, r.pick([i, 4094, 7, 5000 % 4095]));
            changed.add(i);
            for (const [x] of k.egress) changed.add(x);
            what = `egress ${i}`;
            break;
          }
          default: { // the kernel carries out everything asked (as the reconciler would)
            for (const [i, acts] of p.actions) {
              for (const a of acts) k.apply(a, config.routeProtocol);
              changed.add(i);
            }
            for (const a of p.globals) {
              k.apply(a, config.routeProtocol);
              if (a.ifindex !== null) changed.add(a.ifindex);
            }
            what = 'apply';
          }
        }
        p = planner.update(k.world(), changed);
        const fresh = plan(config, k.world());
        const [a, b] = [JSON.stringify(snapshot(p), null, 1), JSON.stringify(snapshot(fresh), null, 1)];
        if (a !== b) {
          const la = a.split('\n'), lb = b.split('\n');
          const at = la.findIndex((l, k) => l !== lb[k]);
          assert.unreachable(`run ${run} step ${step} (${what}): incremental and fresh plans differ at line ${at}:\n${la.slice(Math.max(0, at - 12), at + 3).join('\n')}\n--- fresh:\n${lb.slice(Math.max(0, at - 12), at + 3).join('\n')}`);
        }
      }
    }
  });
}

test('a converged world needs nothing, and an event replans only the links it concerns', () => {
  const config = cfg({ profile: 'router-routed' });
  const k = new FakeKernel();
  for (let i = 2; i < 1402; i++) k.links.set(i, { ifindex: i, name: `c${i}`, mac: `02:01:00:00:${hex(i >> 8)}:${hex(i & 255)}`, kind: null, loopback: false, up: false, promisc: false, mtu: 1500 });
  const planner = new Planner(config);
  let p = planner.update(k.world(), null);
  for (let round = 0; round < 3 && (p.actions.size || p.globals.length); round++) {
    const changed = new Set<number>();
    for (const [i, acts] of p.actions) { for (const a of acts) k.apply(a, config.routeProtocol); changed.add(i); }
    p = planner.update(k.world(), changed);
  }
  assert.is(p.actions.size, 0, 'converged');
  // One more client: one link replanned, three actions.
  k.links.set(5000, { ifindex: 5000, name: 'new', mac: '02:01:00:00:20:01', kind: null, loopback: false, up: false, promisc: false, mtu: 1500 });
  p = planner.update(k.world(), [5000]);
  assert.equal([...p.replanned], [5000]);
  assert.equal(p.actions.get(5000)!.map((a) => a.kind), ['addr-add', 'link', 'route-add']);
  assert.is(p.router!.clients.length, 1401);
});

test.run();
