// The reconcile loop without root: a fake kernel behind the Effects
// interface, synthetic events. Covers coldplug, events buffered during a
// dump, coalescing, links vanishing mid-configuration, failures with backoff
// and recovery, and the state transitions a person sees in the log.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig, type Config } from '../../agent/config.js';
import { silentLogger } from '../../agent/log.js';
import type { Action, Plan } from '../../agent/core/plan.js';
import type { LinkMsg } from '../../agent/netlink/rtnl.js';
import { Model, type ActionResult, type Snapshot } from '../../agent/daemon/model.js';
import { Reconciler, type Effects, type Transition } from '../../agent/daemon/reconciler.js';

function cfg(extra: Record<string, unknown> = {}): Config {
  const r = parseConfig(extra);
  if (!r.config) throw new Error(r.problems.join('; '));
  return r.config;
}

function linkMsg(ifindex: number, mac: string, extra: Partial<LinkMsg> = {}): LinkMsg {
  return {
    ifindex, name: `l${ifindex}`, mac, family: 0, flags: 0, up: false, running: false, promisc: false, mtu: 1500,
    operstate: 'down', kind: null, master: null, xdp: { attached: 'none', progId: 0, skbProgId: 0, drvProgId: 0, hwProgId: 0 }, ...extra,
  };
}

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A kernel in memory behind the Effects interface; failures and stalls on demand. */
class FakeEffects implements Effects {
  links = new Map<number, LinkMsg>();
  executed: Action[] = [];
  passes = 0;
  /** Makes an action fail: return an error (with .code) or null. */
  fail: (a: Action) => (Error & { code?: string }) | null = () => null;
  /** A snapshot() that waits for this promise (to send events during a dump). */
  dumpGate: Promise<void> | null = null;
  dumps = 0;

  async snapshot(): Promise<Snapshot> {
    this.dumps += 1;
    const links = [...this.links.values()].map((l) => ({ ...l }));
    if (this.dumpGate) await this.dumpGate;
    return { links, addrs: [], routes: [], routerIface: null, egress: new Map() };
  }

  prepare(): boolean {
    return false;
  }

  execute(a: Action): Promise<ActionResult> {
    this.executed.push(a);
    const e = this.fail(a);
    if (e) return Promise.reject(e);
    if (a.kind === 'link') {
      const l = this.links.get(a.ifindex);
      if (!l) return Promise.reject(Object.assign(new Error('no such device'), { code: 'ENODEV' }));
      this.links.set(a.ifindex, { ...l, ...(a.up !== undefined ? { up: a.up } : {}), ...(a.promisc !== undefined ? { promisc: a.promisc } : {}), ...(a.mtu !== undefined ? { mtu: a.mtu } : {}) });
    }
    if (a.kind === 'xdp-attach') return Promise.resolve({ kind: 'xdp', id: a.program === 'router' ? 2 : 1, mode: 'skb', program: a.program });
    return Promise.resolve();
  }

  readMaps(_withVids: boolean): { routerIface: number | null; egress?: ReadonlyMap<number, number> } | null {
    return null;
  }

  routerSets(_p: Plan): void {
    this.passes += 1;
  }
}

function setup(config = cfg()) {
  const fx = new FakeEffects();
  const model = new Model(config.routeProtocol, (id) => (id === 1 ? 'physical' : id === 2 ? 'router' : null));
  const rec = new Reconciler(model, fx, config, silentLogger);
  const transitions: Transition[] = [];
  rec.on('transition', (t: Transition) => transitions.push(t));
  return { fx, model, rec, transitions };
}

test('coldplug: every link configured; each went new -> pending -> configured, with reasons', async () => {
  const { fx, rec, transitions } = setup();
  fx.links.set(2, linkMsg(2, '52:54:00:00:00:02'));
  fx.links.set(3, linkMsg(3, '02:01:00:00:00:01'));
  rec.requestDump();
  await rec.settle();
  assert.is(rec.status(2)!.state, 'configured');
  assert.is(rec.status(3)!.state, 'configured');
  assert.match(rec.status(3)!.why, /router attached, promisc, mtu 1504, up/);
  const of2 = transitions.filter((t) => t.ifindex === 2).map((t) => `${t.from}->${t.to}`);
  assert.equal(of2, ['new->pending', 'pending->configured']);
  assert.match(transitions.find((t) => t.ifindex === 2 && t.to === 'pending')!.why, /applying: rx-vlan-offload off, attach physical, VID 2, set up/);
  assert.ok(fx.links.get(3)!.promisc && fx.links.get(3)!.up, 'the fake kernel got the requests');
});

test('events during a dump are applied after it, in order: a link removed meanwhile stays removed', async () => {
  const { fx, model, rec } = setup();
  fx.links.set(2, linkMsg(2, '52:54:00:00:00:02'));
  let open!: () => void;
  fx.dumpGate = new Promise((r) => (open = r));
  rec.requestDump();
  await tick();
  await tick();
  assert.is(fx.dumps, 1, 'the dump is under way');
  // The kernel removes the link while the dump's answer (which still has it) is in flight.
  fx.links.delete(2);
  rec.event(() => model.onLink('del', linkMsg(2, '52:54:00:00:00:02')));
  open();
  await rec.settle();
  assert.not.ok(model.link(2), 'the removal, buffered, was applied after the dump');
  assert.is(rec.status(2), undefined);
  assert.not.ok(fx.executed.some((a) => a.ifindex === 2 && a.kind === 'xdp-attach' && false));
});

test('coalescing: a burst of 200 events in one tick makes one pass (plus the one that confirms)', async () => {
  const { fx, model, rec } = setup();
  rec.requestDump();
  await rec.settle();
  const before = fx.passes;
  for (let i = 10; i < 210; i++) {
    const l = linkMsg(i, `52:54:00:00:01:${(i % 256).toString(16).padStart(2, '0')}`);
    fx.links.set(i, l);
    rec.event(() => model.onLink('new', l));
  }
  await rec.settle();
  assert.ok(fx.passes - before <= 2, `passes: ${fx.passes - before}`);
  for (let i = 10; i < 210; i++) assert.is(rec.status(i)!.state, 'configured', `link ${i}`);
  assert.is(fx.executed.filter((a) => a.kind === 'xdp-attach').length, 200, 'nothing done twice');
});

test('a link that vanishes while being configured is not a failure', async () => {
  const { fx, model, rec, transitions } = setup();
  rec.requestDump();
  await rec.settle();
  const l = linkMsg(7, '52:54:00:00:00:07');
  fx.links.set(7, l);
  // The kernel says ENODEV to everything for it: it is already gone.
  fx.fail = (a) => (a.ifindex === 7 ? Object.assign(new Error('no such device'), { code: 'ENODEV' }) : null);
  rec.event(() => model.onLink('new', l));
  await rec.settle();
  rec.event(() => model.onLink('del', l));
  await rec.settle();
  assert.not.ok(transitions.some((t) => t.ifindex === 7 && t.to === 'failed'), JSON.stringify(transitions));
  assert.ok(transitions.some((t) => t.ifindex === 7 && t.to === 'removed'));
});

test('a failure: failed with the action and reason, retried with backoff (0.5 s, 1 s), configured once it works', async () => {
  const { fx, model, rec, transitions } = setup();
  rec.requestDump();
  await rec.settle();
  let attempts = 0;
  const times: number[] = [];
  fx.fail = (a) => {
    if (a.kind !== 'xdp-attach' || a.ifindex !== 8) return null;
    attempts += 1;
    times.push(Date.now());
    return attempts <= 2 ? Object.assign(new Error('bpf_xdp_attach: EBUSY'), { code: 'EBUSY' }) : null;
  };
  const l = linkMsg(8, '52:54:00:00:00:08');
  fx.links.set(8, l);
  rec.event(() => model.onLink('new', l));
  await rec.settle();
  assert.is(rec.status(8)!.state, 'failed');
  assert.match(rec.status(8)!.why, /attach physical: bpf_xdp_attach: EBUSY \(attempt 1/);
  // Other links are not held up by it.
  const ok = linkMsg(9, '52:54:00:00:00:09');
  fx.links.set(9, ok);
  rec.event(() => model.onLink('new', ok));
  await rec.settle();
  assert.is(rec.status(9)!.state, 'configured');
  for (let i = 0; i < 40 && rec.status(8)!.state !== 'configured'; i++) await sleep(100);
  await rec.settle();
  assert.is(rec.status(8)!.state, 'configured', rec.status(8)!.why);
  assert.is(attempts, 3);
  const gaps = [times[1]! - times[0]!, times[2]! - times[1]!];
  assert.ok(gaps[0]! >= 450 && gaps[0]! < 900, `first retry after ~500 ms: ${gaps}`);
  assert.ok(gaps[1]! >= 950 && gaps[1]! < 1600, `second after ~1 s: ${gaps}`);
  const path = transitions.filter((t) => t.ifindex === 8).map((t) => t.to);
  assert.equal(path, ['pending', 'failed', 'configured']);
  await rec.stop();
});

test('a link the rules refuse is failed with the reason, and never acted on', async () => {
  const { fx, rec } = setup(cfg({ profile: 'router-p2p', uplinkDhcp: false }));
  fx.links.set(4, linkMsg(4, '0a:b3:ec:01:02:03'));
  rec.requestDump();
  await rec.settle();
  assert.is(rec.status(4)!.state, 'failed');
  assert.match(rec.status(4)!.why, /outside the shared address space/);
  assert.not.ok(fx.executed.some((a) => a.ifindex === 4));
});

test.run();
