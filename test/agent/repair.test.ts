// Hostile and clumsy environments (SPEC "Truth and repair"), each as a person
// would meet it, with the agent on its default timing:
// - xdpMode auto on veths: a native redirect into a veth is dropped silently,
//   so auto must choose a mode that forwards; frames cross both ways;
// - a router link that refuses the MTU the NICs need (a macvlan over a
//   1500-byte link next to a 9000-byte NIC) still gets promiscuous mode,
//   router_iface and "up"; the MTU problem is reported on it;
// - a person's default route is never replaced by the client profile.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sandbox, ownNetns, ip, ipJson, run, uniq } from '../lib/sandbox.js';
import { AgentProc, exchange } from '../lib/agent.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();

interface IpLink { ifname: string; ifindex: number; flags: string[]; mtu: number; xdp?: { mode: number } }
const link = (ns: string, name: string): IpLink => ipJson<IpLink[]>(ns, '-d', 'link', 'show', 'dev', name)[0]!;
const routerIface = (pins: string): number | null => {
  const out = JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${pins}/router_iface`])) as Array<{ value?: unknown; formatted?: { value: number } }>;
  const v = out[0]?.formatted?.value ?? out[0]?.value;
  if (typeof v === 'number') return v;
  return Array.isArray(v) ? Buffer.from(v.map((x) => parseInt(String(x), 16))).readInt32LE(0) : null;
};

/** A "net VM" namespace with an agent in it (xdp-forwarder unless said otherwise), its own pins. */
function netVm(config: Record<string, unknown>): { ns: string; pins: string; agent: AgentProc } {
  const ns = sb.netns('nvm');
  const pins = sb.bpffs();
  const agent = new AgentProc(sb, ns, pins);
  agent.writeConfig(config);
  return { ns, pins, agent };
}

/** veth with the net-VM end born in `ns` and the other in `peerNs` (no moment as a NIC of the wrong side). */
function veth(ns: string, peerNs: string, mac: string, mtu = 1500): { a: string; b: string } {
  const a = uniq('n'), b = uniq('p');
  ip(ns, 'link', 'add', a, 'address', mac, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', b, 'netns', peerNs);
  ip(peerNs, 'link', 'set', b, 'mtu', String(mtu));
  ip(peerNs, 'link', 'set', b, 'up');
  return { a, b };
}

test('xdpMode auto on veths: every forwarder link in skb mode (a native redirect into a veth would vanish), and frames cross both ways', async () => {
  const vm = netVm({ profile: 'xdp-forwarder', xdpMode: 'auto' });
  const lan = sb.netns('lan'), rtr = sb.netns('rtr');
  const nic = veth(vm.ns, lan, '52:54:00:ad:00:01');
  const rl = veth(vm.ns, rtr, '02:01:00:00:00:01');
  await vm.agent.start();
  const s = vm.agent.status();
  for (const name of [nic.a, rl.a]) {
    const i = s.interfaces.find((x) => x.name === name)!;
    assert.equal([i.state, i.xdp?.mode], ['configured', 'skb'], `${name}: ${JSON.stringify(i)}`);
  }
  const vid = link(vm.ns, nic.a).ifindex.toString(16).padStart(4, '0');
  const payload = '88b5' + Buffer.from('auto').toString('hex');
  const up = await exchange(sb, { ns: lan, ifname: nic.b }, 'ffffffffffff02aaaaaaaa01' + payload, [{ ns: rtr, ifname: rl.b }]);
  assert.ok(up[0]!.some((f) => f.startsWith(`ffffffffffff02aaaaaaaa018100${vid}88b5`)), `tagged at the router: ${up[0]}`);
  const down = await exchange(sb, { ns: rtr, ifname: rl.b }, `ffffffffffff02bbbbbbbb018100${vid}` + payload, [{ ns: lan, ifname: nic.b }]);
  assert.ok(down[0]!.some((f) => f.startsWith('ffffffffffff02bbbbbbbb01' + payload)), `untagged in the LAN: ${down[0]}`);
  await vm.agent.stop('SIGTERM');
});

test('a router link that refuses the MTU still gets promiscuous mode, router_iface and up; the refusal is reported on it', async () => {
  const vm = netVm({ profile: 'xdp-forwarder', ignoreInterfaces: ['base*'] });
  const lan = sb.netns('lan'), rtr = sb.netns('rtr');
  // The router link: a macvlan over a 1500-byte link (its MTU cannot exceed its parent's).
  const base = uniq('base'), trunk = uniq('trk');
  ip(vm.ns, 'link', 'add', base, 'mtu', '1500', 'type', 'veth', 'peer', 'name', trunk, 'netns', rtr);
  ip(rtr, 'link', 'set', trunk, 'up');
  ip(vm.ns, 'link', 'set', base, 'up');
  const rl = uniq('rl');
  ip(vm.ns, 'link', 'add', 'link', base, 'name', rl, 'address', '02:01:00:00:00:01', 'type', 'macvlan', 'mode', 'bridge');
  const small = veth(vm.ns, lan, '52:54:00:ad:00:02', 1500);
  const jumbo = veth(vm.ns, sb.netns('lan'), '52:54:00:ad:00:03', 9000);
  await vm.agent.start();
  await vm.agent.waitFor((s) => s.interfaces.some((i) => i.name === rl && i.state === 'failed'), 'the router link reports the refusal');
  const r = vm.agent.iface(rl)!;
  assert.match(r.error!, /mtu 9004/, r.error!);
  const l = link(vm.ns, rl);
  assert.ok(l.flags.includes('PROMISC'), `promiscuous: ${l.flags}`);
  assert.ok(l.flags.includes('UP'), `up: ${l.flags}`);
  assert.is(l.mtu, 1500);
  assert.is(routerIface(vm.pins), l.ifindex, 'router_iface names it');
  for (const n of [small.a, jumbo.a]) assert.is(vm.agent.iface(n)!.state, 'configured', n);
  // The 1500-byte NIC's frames are forwarded (not dropped for want of a router link).
  const before = vm.agent.status().counters as Record<string, string>;
  await exchange(sb, { ns: lan, ifname: small.b }, 'ffffffffffff02aaaaaaaa0188b5' + '00'.repeat(46), []);
  const after = vm.agent.status().counters as Record<string, string>;
  assert.ok(Number(after.physical_forwarded) > Number(before.physical_forwarded), JSON.stringify(after));
  assert.is(after.physical_drop_no_router, before.physical_drop_no_router);
  await vm.agent.stop('SIGTERM');
});

test("client profile: a person's default route is never replaced; the link is failed, saying what is in the way", async () => {
  const vm = sb.netns('cvm'), rtr = sb.netns('crt');
  const other = veth(vm, rtr, '52:54:00:ad:00:04');
  ip(vm, 'link', 'set', other.a, 'up');
  ip(vm, 'addr', 'add', '192.0.2.2/24', 'dev', other.a);
  ip(vm, 'route', 'add', 'default', 'via', '192.0.2.1', 'proto', 'static');
  const cl = veth(vm, rtr, '0a:b3:ec:40:00:0b');
  const client = new AgentProc(sb, vm, sb.tempDir('netagent-nopins-'));
  client.writeConfig({ profile: 'client' });
  await client.start();
  await client.waitFor((s) => s.interfaces.some((i) => i.name === cl.a && i.state === 'failed'), 'client link failed');
  assert.match(client.iface(cl.a)!.error!, /route to 0\.0\.0\.0\/0 that is not ours is in the way/);
  const def = ipJson<Array<{ gateway?: string; protocol?: string }>>(vm, 'route', 'show', 'default');
  assert.equal(def.map((r) => [r.gateway, r.protocol]), [['192.0.2.1', 'static']], 'the person\'s route is untouched');
  await client.stop('SIGTERM');
  assert.equal(ipJson<Array<{ gateway?: string }>>(vm, 'route', 'show', 'default').map((r) => r.gateway), ['192.0.2.1'], 'and still there after the agent stops');
});

test.run();
