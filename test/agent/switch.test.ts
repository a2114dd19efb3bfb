// A config change must leave the kernel exactly as a fresh start with the new
// config leaves it (SPEC "Truth and repair"): two identical "net VMs", one
// switched live from profile A to B, the other started with B; their kernel
// state (links' up/MTU/promiscuous mode/XDP/rx-vlan-offload, addresses,
// routes, nftables tables, IPv4 forwarding, the forwarder's maps) must end
// up the same. And a changed routeProtocol must re-tag what carries the old
// number, not orphan it. The agent runs on its default timing.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { Sandbox, ownNetns, ip, ipJson, inNs, run, uniq } from '../lib/sandbox.js';
import { AgentProc, sleep } from '../lib/agent.js';
import { Rtnl } from '../../agent/netlink/rtnl.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();

/** The net VM's links: name, MAC, MTU. Born down, as a VM's NICs are. */
const LINKS = [
  { name: 'rl', mac: '02:01:00:00:01:07', mtu: 1500 }, // router link in xdp-forwarder, client 100.64.1.7 in router-routed
  { name: 'nic0', mac: '52:54:00:ad:00:01', mtu: 9000 }, // a jumbo NIC (the router link's MTU follows it)
  { name: 'nic1', mac: '52:54:00:ad:00:02', mtu: 1500 },
  { name: 'ivm', mac: '0a:b3:ec:40:00:02', mtu: 1500 }, // a router-p2p client link (100.64.0.2/31)
];

interface Vm { ns: string; pins: string; agent: AgentProc }

function netVm(config: Record<string, unknown>): Vm {
  const ns = sb.netns('svm');
  const peers = sb.netns('spr');
  for (const l of LINKS) {
    const peer = uniq('p');
    ip(ns, 'link', 'add', l.name, 'address', l.mac, 'mtu', String(l.mtu), 'type', 'veth', 'peer', 'name', peer, 'netns', peers);
    ip(peers, 'link', 'set', peer, 'mtu', String(l.mtu));
    ip(peers, 'link', 'set', peer, 'up');
  }
  const pins = sb.bpffs();
  const agent = new AgentProc(sb, ns, pins);
  agent.writeConfig(config);
  return { ns, pins, agent };
}

interface IpLink { ifname: string; ifindex: number; flags: string[]; mtu: number; promiscuity: number; xdp?: { mode: number; prog?: { name?: string } } }

/** Everything a config leaves in the kernel, by link name (ifindexes differ between the two VMs). */
function kernelState(vm: Vm): unknown {
  const links = ipJson<IpLink[]>(vm.ns, '-d', 'link', 'show').filter((l) => l.ifname !== 'lo');
  const names = new Map(links.map((l) => [l.ifindex, l.ifname]));
  const addrs = ipJson<Array<{ ifname: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>>(vm.ns, 'addr', 'show');
  const offload = (name: string) => /rx-vlan-offload: (on|off)/.exec(run('nsenter', [`--net=/run/netns/${vm.ns}`, 'ethtool', '-k', name]))?.[1];
  const routes = ipJson<Array<{ dst: string; dev: string; gateway?: string; protocol?: string }>>(vm.ns, 'route', 'show', 'table', 'main')
    .map((r) => `${r.dst} dev ${r.dev}${r.gateway ? ` via ${r.gateway}` : ''} proto ${r.protocol ?? '?'}`).sort();
  const tables = (JSON.parse(run('nsenter', [`--net=/run/netns/${vm.ns}`, 'nft', '-j', 'list', 'tables'])) as { nftables: Array<{ table?: { family: string; name: string } }> })
    .nftables.flatMap((x) => (x.table ? [`${x.table.family} ${x.table.name}`] : [])).sort();
  const forward = run('nsenter', [`--net=/run/netns/${vm.ns}`, 'cat', '/proc/sys/net/ipv4/ip_forward']).trim();
  const dump = (map: string) => {
    try {
      return (JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${vm.pins}/${map}`])) as Array<{ formatted?: { key: number; value: number } }>)
        .map((e) => e.formatted!).filter((e) => e.value !== 0);
    } catch {
      return []; // not pinned: the forwarder was never loaded
    }
  };
  return {
    links: Object.fromEntries(links.map((l) => [l.ifname, {
      up: l.flags.includes('UP'),
      mtu: l.mtu,
      promisc: l.promiscuity > 0,
      xdp: l.xdp ? l.xdp.prog?.name ?? `mode ${l.xdp.mode}` : null,
      rxVlanOffload: offload(l.ifname),
      addrs: addrs.find((a) => a.ifname === l.ifname)!.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`).sort(),
    }])),
    routes,
    tables,
    forward,
    routerIface: dump('router_iface').map((e) => names.get(e.value) ?? e.value),
    nicVid: dump('nic_vid').map((e) => names.get(e.key) ?? e.key).sort(),
  };
}

/** Every link settled: nothing pending (an ignored link's restores are checked through the kernel). */
const settled = (vm: Vm) => vm.agent.waitFor((s) => s.interfaces.length > 0 && s.interfaces.every((i) => i.state !== 'pending'), 'every link settled');

async function sameWithin(ms: number, a: Vm, b: unknown): Promise<void> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < ms) {
    last = kernelState(a);
    if (JSON.stringify(last) === JSON.stringify(b)) return;
    await sleep(100);
  }
  assert.equal(last, b, `within ${ms} ms the switched VM (left) is as the fresh one (right)`);
}

const PROFILES: Record<string, Record<string, unknown>> = {
  'xdp-forwarder': { profile: 'xdp-forwarder' },
  'router-routed': { profile: 'router-routed', uplinkDhcp: false },
  'router-p2p': { profile: 'router-p2p', uplinkDhcp: false },
  client: { profile: 'client' },
};

for (const [from, to] of [['xdp-forwarder', 'client'], ['xdp-forwarder', 'router-routed'], ['router-p2p', 'xdp-forwarder']] as const) {
  test(`${from} switched live to ${to} leaves what a fresh start with ${to} leaves`, async () => {
    const fresh = netVm(PROFILES[to]!);
    await fresh.agent.start();
    await settled(fresh);
    const want = kernelState(fresh);
    await fresh.agent.stop('SIGTERM');

    const vm = netVm(PROFILES[from]!);
    await vm.agent.start();
    await settled(vm);
    const before = kernelState(vm);
    assert.not.equal(before, want, `${from} and ${to} differ to begin with`);
    vm.agent.writeConfig(PROFILES[to]!);
    await vm.agent.waitFor((s) => s.profile === to, 'the new profile in force');
    await settled(vm);
    await sameWithin(5000, vm, want);
    // And it stays so across a restart (the ledger says nothing is left to undo).
    await vm.agent.stop('SIGKILL');
    await vm.agent.start();
    await settled(vm);
    await sleep(500);
    assert.equal(kernelState(vm), want, 'unchanged by a restart');
    await vm.agent.stop('SIGTERM');
  });
}

test('a switch after a restart still restores what the earlier run changed (the ledger outlives the process)', async () => {
  const fresh = netVm(PROFILES.client!);
  await fresh.agent.start();
  await settled(fresh);
  const want = kernelState(fresh);
  await fresh.agent.stop('SIGTERM');

  const vm = netVm(PROFILES['xdp-forwarder']!);
  await vm.agent.start();
  await settled(vm);
  await vm.agent.stop('SIGKILL'); // crash-only: s6 would restart it
  vm.agent.writeConfig(PROFILES.client!);
  await vm.agent.start();
  await settled(vm);
  await sameWithin(5000, vm, want);
  await vm.agent.stop('SIGTERM');
});

/** Addresses and routes by the protocol number they carry (iproute2 6.1 does not show an address's IFA_PROTO). */
async function protocols(): Promise<{ addrs: string[]; routes: string[] }> {
  const r = Rtnl.open();
  try {
    const links = new Map((await r.dumpLinks()).map((l) => [l.ifindex, l.name]));
    const addrs = (await r.dumpAddresses(4)).filter((a) => a.ifindex !== 1).map((a) => `${links.get(a.ifindex)} ${a.local ?? a.address}/${a.prefixlen} proto ${a.proto ?? 0}`).sort();
    const routes = (await r.dumpRoutes(4)).filter((x) => x.table === 254).map((x) => `${x.dst}/${x.dstLen} dev ${links.get(x.oif ?? 0)} proto ${x.protocol}`).sort();
    return { addrs, routes };
  } finally {
    r.close();
  }
}

test('routeProtocol changed live: what carried the old number is re-tagged at once (never orphaned); a person\'s routes stay', async () => {
  // This test's own namespace is the net VM (our netlink dumps read it).
  const peers = sb.netns('rpp');
  for (const [name, mac] of [['cl7', '02:01:00:00:01:07'], ['cl9', '02:01:00:00:01:09'], ['own0', '52:54:00:ad:00:09']] as const) {
    ip(null, 'link', 'add', name, 'address', mac, 'type', 'veth', 'peer', 'name', uniq('p'), 'netns', peers);
  }
  // A person's own link, address and routes (one through a client link of ours).
  ip(null, 'link', 'set', 'own0', 'up');
  ip(null, 'addr', 'add', '192.0.2.2/24', 'dev', 'own0');
  const config = (extra: Record<string, unknown>) => ({ ...PROFILES['router-routed'], ignoreInterfaces: ['own*'], ...extra });
  const agent = new AgentProc(sb, null, sb.tempDir('netagent-nopins-'));
  agent.writeConfig(config({ routeProtocol: 199 }));
  await agent.start();
  await settled({ ns: '', pins: '', agent });
  ip(null, 'route', 'add', '10.77.0.0/16', 'dev', 'cl7', 'proto', 'static');
  ip(null, 'route', 'add', '10.78.0.0/16', 'via', '192.0.2.1', 'proto', 'static');
  const theirs = { addrs: ['own0 192.0.2.2/24 proto 0'], routes: ['10.78.0.0/16 dev own0 proto 4', '192.0.2.0/24 dev own0 proto 2'] };
  const tagged = (n: number) => ({
    addrs: [`cl7 169.254.0.1/32 proto ${n}`, `cl9 169.254.0.1/32 proto ${n}`, ...theirs.addrs].sort(),
    routes: ['10.77.0.0/16 dev cl7 proto 4', `100.64.1.7/32 dev cl7 proto ${n}`, `100.64.1.9/32 dev cl9 proto ${n}`, ...theirs.routes].sort(),
  });
  assert.equal(await protocols(), tagged(199));

  agent.writeConfig(config({ routeProtocol: 200 }));
  const t0 = Date.now();
  let now = await protocols();
  while (JSON.stringify(now) !== JSON.stringify(tagged(200)) && Date.now() - t0 < 2000) {
    await sleep(50);
    now = await protocols();
  }
  assert.equal(now, tagged(200), 'everything of ours carries 200 within 2 s, nothing 199');
  const s = agent.status();
  assert.ok(s.interfaces.filter((i) => i.name.startsWith('cl')).every((i) => i.state === 'configured'), JSON.stringify(s.interfaces));

  // A restart with yet another number (changed while the agent was down) re-tags too: the ledger knows 200 was ours.
  await agent.stop('SIGTERM');
  agent.writeConfig(config({ routeProtocol: 201 }));
  await agent.start();
  await settled({ ns: '', pins: '', agent });
  assert.equal(await protocols(), tagged(201));

  // And what carries it is still recognised as ours: a profile that wants none of it removes all of it.
  // (The client links go down again, as a fresh start leaves them: the kernel
  // takes the person's route through cl7 with it.)
  agent.writeConfig({ profile: 'client', routeProtocol: 201, ignoreInterfaces: ['own*'] });
  await agent.waitFor((st) => st.profile === 'client', 'switched');
  await sleep(1000);
  assert.equal(await protocols(), theirs, 'ours gone, the person\'s own kept');
  await agent.stop('SIGTERM');
  assert.ok(JSON.parse(readFileSync(`${agent.dir}/state.json`, 'utf8')).former.length === 0, 'no former number is kept once nothing carries it');
});

test.run();
