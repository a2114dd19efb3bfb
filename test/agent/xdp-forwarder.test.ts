// The agent in the xdp-forwarder profile, for real: its own namespace (the
// "net VM"), veths as NICs, a private bpffs. Coldplug, hotplug, removal,
// restart after kill -9 with nothing doubled, clean shutdown, status.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sandbox, ownNetns, ip, ipJson, run, uniq } from '../lib/sandbox.js';
import { AgentProc, exchange, sleep } from '../lib/agent.js';
import { readdirSync } from 'node:fs';

await ownNetns(import.meta.url);
const sb = new Sandbox();
const pins = sb.bpffs();
const lanA = sb.netns('lan');
const routerNs = sb.netns('rtr');
const physA = sb.veth(null, lanA, { macA: '52:54:00:aa:00:01' });
const rlink = sb.veth(null, routerNs, { macA: '02:01:00:00:00:01' });
let agent = new AgentProc(sb, null, pins);
agent.writeConfig({ profile: 'xdp-forwarder' });

interface IpLink { ifname: string; ifindex: number; flags: string[]; mtu: number; xdp?: { mode: number; prog?: { id: number }; prog_id?: number } }
const ipLink = (name: string): IpLink => ipJson<IpLink[]>(null, '-d', 'link', 'show', 'dev', name)[0]!;
const xdpId = (l: IpLink): number | null => l.xdp?.prog?.id ?? (l.xdp as { prog?: { id: number } } | undefined)?.prog?.id ?? null;
const egressMap = (): number[] => {
  const out = JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${pins}/router_egress`])) as Array<{ key: number[] | string[]; formatted?: { key: number } }>;
  return out.map((e) => e.formatted?.key ?? Buffer.from((e.key as string[]).map((x) => parseInt(String(x), 16))).readUInt32LE(0)).sort((a, b) => a - b);
};
const routerIfaceMap = (): number | null => {
  const out = JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${pins}/router_iface`])) as Array<{ value?: unknown; formatted?: { value: number } }>;
  // An emptied DEVMAP slot has no value (bpftool prints "<no entry>" or leaves it out).
  const v = out[0]?.formatted?.value ?? out[0]?.value;
  if (typeof v === 'number') return v;
  return Array.isArray(v) ? Buffer.from(v.map((x) => parseInt(String(x), 16))).readInt32LE(0) : null;
};

test('coldplug: links present at start are configured before readiness', async () => {
  const ms = await agent.start();
  const s = agent.status();
  assert.is(s.profile, 'xdp-forwarder');
  assert.ok(s.ready);
  const a = s.interfaces.find((i) => i.name === physA.a)!;
  assert.is(a.role, 'physical');
  assert.is(a.state, 'configured', JSON.stringify(a));
  assert.equal(a.xdp && [a.xdp.program, a.xdp.mode], ['physical', 'skb']);
  const r = s.interfaces.find((i) => i.name === rlink.a)!;
  assert.is(r.role, 'router-link');
  assert.is(r.state, 'configured', JSON.stringify(r));
  assert.equal(r.xdp && r.xdp.program, 'router');
  const lo = s.interfaces.find((i) => i.name === 'lo')!;
  assert.equal([lo.role, lo.state, lo.xdp], ['loopback', 'ignored', null]);
  // What the kernel says, not what the agent says:
  const k = ipLink(rlink.a);
  assert.ok(k.flags.includes('PROMISC'), 'router link promiscuous');
  assert.ok(k.flags.includes('UP'));
  assert.is(xdpId(k), r.xdp!.id);
  assert.is(xdpId(ipLink(physA.a)), a.xdp!.id);
  assert.is(routerIfaceMap(), r.ifindex);
  assert.equal(egressMap(), [a.ifindex]);
  console.log(`    start-to-ready ${ms.toFixed(0)} ms`);
});

let physB: { a: string; b: string };
test('hotplug: a new NIC is configured within milliseconds, once', async () => {
  const lanB = sb.netns('lan');
  const t0 = performance.now();
  physB = sb.veth(null, lanB, { macA: '52:54:00:bb:00:01', up: false });
  // Watch the kernel, not the agent: up + XDP attached.
  let l: IpLink;
  for (;;) {
    l = ipLink(physB.a);
    if (l.flags.includes('UP') && xdpId(l)) break;
    if (performance.now() - t0 > 10_000) assert.unreachable(`not configured: ${JSON.stringify(l)}`);
    await sleep(2);
  }
  console.log(`    hotplug-to-configured ${(performance.now() - t0).toFixed(1)} ms (incl. polling with ip)`);
  await agent.waitFor((s) => s.interfaces.some((i) => i.name === physB.a && i.state === 'configured'), 'physB configured');
  assert.equal(egressMap(), [ipLink(physA.a).ifindex, l!.ifindex].sort((a, b) => a - b));
  const attaches = agent.logs.filter((x) => x.includes(physB.a) && x.includes('attach physical'));
  assert.is(attaches.length, 1, `attached exactly once:\n${agent.logs.filter((x) => x.includes(physB.a)).join('\n')} (${agent.logs.length} lines; last: ${agent.logs.slice(-3).join('\n')})`);
});

test('the router link MTU follows the largest physical MTU, + 4 for a LAN tag inside ours', async () => {
  ip(null, 'link', 'set', physB.a, 'mtu', '9000');
  const t0 = Date.now();
  while (ipLink(rlink.a).mtu !== 9004) {
    if (Date.now() - t0 > 10_000) assert.unreachable(`router link mtu ${ipLink(rlink.a).mtu}`);
    await sleep(20);
  }
});

test('map entries deleted by hand (nothing announces it): router_iface and the allowlist are back within 5 s', async () => {
  const rl = ipLink(rlink.a).ifindex;
  const nic = ipLink(physA.a).ifindex;
  run('bpftool', ['map', 'delete', 'pinned', `${pins}/router_iface`, 'key', '0', '0', '0', '0']);
  run('bpftool', ['map', 'delete', 'pinned', `${pins}/router_egress`, 'key', ...[nic & 255, (nic >> 8) & 255, 0, 0].map(String)]);
  assert.is(routerIfaceMap(), null, 'deleted');
  const t0 = Date.now();
  while (routerIfaceMap() !== rl || !egressMap().includes(nic)) {
    if (Date.now() - t0 > 5000) assert.unreachable(`not repaired within 5 s: router_iface ${routerIfaceMap()}, egress ${egressMap()}`);
    await sleep(50);
  }
  console.log(`    map entries repaired after ${Date.now() - t0} ms`);
  assert.is(agent.status().routerIface, rl, 'status shows what the map holds');
});

test('router_egress entries added by hand (no NIC\'s own VID) are removed within 5 s: the router may send only where we allow', async () => {
  const rl = ipLink(rlink.a).ifindex;
  const nic = ipLink(physA.a).ifindex;
  const le = (n: number) => [n & 255, (n >> 8) & 255, (n >> 16) & 255, n >>> 24].map(String);
  const before = egressMap();
  // Beside the NIC's own pair (VID 3000 -> the NIC), and one out of the router link itself.
  run('bpftool', ['map', 'update', 'pinned', `${pins}/router_egress`, 'key', ...le(3000), 'value', ...le(nic)]);
  run('bpftool', ['map', 'update', 'pinned', `${pins}/router_egress`, 'key', ...le(3001), 'value', ...le(rl)]);
  assert.ok(egressMap().includes(3000) && egressMap().includes(3001), 'added');
  const t0 = Date.now();
  while (egressMap().includes(3000) || egressMap().includes(3001)) {
    if (Date.now() - t0 > 5000) assert.unreachable(`stray entries still there after 5 s: ${egressMap()}`);
    await sleep(50);
  }
  console.log(`    stray entries removed after ${Date.now() - t0} ms`);
  assert.equal(egressMap(), before, 'the NICs\' own entries untouched');
});

test('removal: the allowlist entry goes with the NIC', async () => {
  const gone = ipLink(physB.a).ifindex;
  ip(null, 'link', 'del', physB.a);
  await agent.waitFor((s) => !s.interfaces.some((i) => i.name === physB.a), 'physB gone from status');
  const t0 = Date.now();
  while (egressMap().includes(gone)) {
    if (Date.now() - t0 > 5000) assert.unreachable('egress entry left behind');
    await sleep(20);
  }
  assert.equal(egressMap(), [ipLink(physA.a).ifindex]);
});

test('restart after kill -9: state adopted, nothing doubled or re-attached', async () => {
  const before = agent.status();
  const ids = Object.fromEntries(before.interfaces.filter((i) => i.xdp).map((i) => [i.name, i.xdp!.id]));
  await agent.stop('SIGKILL');
  const progsBefore = run('bpftool', ['-j', 'prog', 'show']);
  agent = new AgentProc(sb, null, pins, { dir: agent.dir });
  await agent.start();
  const after = agent.status();
  for (const i of after.interfaces.filter((x) => x.xdp)) {
    assert.is(i.xdp!.id, ids[i.name], `${i.name} keeps program ${ids[i.name]}`);
    assert.is(i.state, 'configured');
  }
  assert.is(after.interfaces.filter((x) => x.xdp).length, Object.keys(ids).length);
  assert.not.ok(agent.logs.some((l) => l.includes('"to":"pending"')), `nothing to do after restart, got: ${agent.logs.filter((l) => l.includes('"to":"pending"')).join('\n')}`);
  // One program per link, no orphans attached anywhere:
  const net = JSON.parse(run('bpftool', ['-j', 'net', 'show']));
  const xdpEntries = (net[0]?.xdp ?? []) as Array<{ devname: string; id: number }>;
  assert.is(xdpEntries.length, 2, JSON.stringify(xdpEntries));
  assert.ok(progsBefore.length > 0);
  assert.equal(egressMap(), [ipLink(physA.a).ifindex]);
});

test('pins lost while the agent was down (bpffs remounted): the restart replaces programs bound to the old maps', async () => {
  await agent.stop('SIGKILL');
  run('umount', [pins]);
  run('mount', ['-t', 'bpf', 'bpf', pins]); // a fresh, empty bpffs where the pins were
  agent = new AgentProc(sb, null, pins, { dir: agent.dir });
  await agent.start();
  const pinned = new Set(readdirSync(pins).filter((m) => !m.endsWith('.debug')).map((m) => (JSON.parse(run('bpftool', ['-j', 'map', 'show', 'pinned', `${pins}/${m}`])) as { id: number }).id));
  const attached = agent.status().interfaces.filter((i) => i.xdp);
  assert.is(attached.length, 2);
  for (const i of attached) {
    const prog = JSON.parse(run('bpftool', ['-j', 'prog', 'show', 'id', String(i.xdp!.id)])) as { map_ids: number[] };
    assert.ok(prog.map_ids.length > 0 && prog.map_ids.every((m) => pinned.has(m)), `${i.name}: program ${i.xdp!.id} uses maps ${prog.map_ids}, pinned are ${[...pinned]}`);
  }
  assert.equal(egressMap(), [ipLink(physA.a).ifindex]);
  assert.is(routerIfaceMap(), ipLink(rlink.a).ifindex);
});

test('a second agent on the same control socket refuses to start; the first keeps answering', async () => {
  const second = new AgentProc(sb, null, pins, { dir: agent.dir });
  let err = '';
  try {
    await second.start(15_000);
  } catch (e) {
    err = (e as Error).message;
  }
  assert.match(err, /another netagent is running/);
  assert.ok(agent.status().ready);
});

test('a NIC enslaved to a bridge and released (AF_BRIDGE messages) is not re-done', async () => {
  const id = agent.iface(physA.a)!.xdp!.id;
  const before = agent.logs.length;
  const br = uniq('br');
  ip(null, 'link', 'add', br, 'type', 'bridge');
  ip(null, 'link', 'set', physA.a, 'master', br);
  await sleep(200);
  ip(null, 'link', 'set', physA.a, 'nomaster');
  ip(null, 'link', 'del', br);
  await sleep(300);
  assert.is(agent.iface(physA.a)!.xdp!.id, id);
  const mine = agent.logs.slice(before).filter((l) => l.includes(`"${physA.a}"`));
  assert.equal(mine, [], 'no log about the NIC: nothing removed, re-attached or adopted');
  assert.is(agent.iface(br), undefined);
});

test('a NIC whose peer namespace vanishes is cleaned up without errors', async () => {
  const lanD = sb.netns('lan');
  const d = sb.veth(null, lanD, { macA: '52:54:00:dd:00:01' });
  await agent.waitFor((s) => s.interfaces.some((i) => i.name === d.a && i.state === 'configured'), 'd configured');
  const before = agent.logs.length;
  run('ip', ['netns', 'del', lanD]);
  await agent.waitFor((s) => !s.interfaces.some((i) => i.name === d.a), 'd gone');
  await sleep(300);
  const errors = agent.logs.slice(before).filter((l) => /"level":(50|60)/.test(l));
  assert.equal(errors, []);
  assert.is(agent.status().lastError, null);
});

test('status --json matches the contract', async () => {
  const s = agent.status();
  assert.type(s.profile, 'string');
  assert.type(s.ready, 'boolean');
  assert.ok(Array.isArray(s.interfaces));
  const roles = ['router-link', 'physical', 'inter-vm', 'client-link', 'loopback', 'ignored'];
  const states = ['configured', 'pending', 'failed', 'ignored'];
  for (const i of s.interfaces) {
    assert.type(i.name, 'string');
    assert.type(i.ifindex, 'number');
    assert.type(i.mac, 'string');
    assert.ok(roles.includes(i.role), i.role);
    assert.ok(states.includes(i.state), i.state);
    assert.ok(Array.isArray(i.addresses) && i.addresses.every((a) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a)));
    if (i.xdp !== null) {
      assert.ok(['physical', 'router'].includes(i.xdp.program));
      assert.ok(['skb', 'native'].includes(i.xdp.mode));
      assert.type(i.xdp.id, 'number');
    }
    assert.ok(i.error === null || typeof i.error === 'string');
  }
  const table = agent.statusRaw();
  assert.is(table.status, 0);
  assert.match(table.stdout, /IFACE\s+IDX\s+MAC\s+ROLE\s+STATE/);
  assert.match(table.stdout, new RegExp(`${rlink.a}\\s+\\d+\\s+02:01:00:00:00:01\\s+router-link\\s+configured`));
});

test('a NIC at ifindex 5000 gets a free VLAN ID (4094), and frames cross both ways with it', async () => {
  const lanC = sb.netns('lan');
  // The LAN end is born in its namespace: created here and moved, it would be
  // a NIC of ours for a moment, and keep the program it got when it left.
  const big = { a: uniq('big'), b: uniq('lanc') };
  ip(null, 'link', 'add', big.a, 'index', '5000', 'address', '52:54:00:cc:00:01', 'type', 'veth', 'peer', 'name', big.b, 'netns', lanC);
  ip(lanC, 'link', 'set', big.b, 'up');
  await agent.waitFor((s) => s.interfaces.some((i) => i.name === big.a && i.state === 'configured'), 'NIC 5000 configured');
  const vids = JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${pins}/nic_vid`])) as Array<{ formatted?: { key: number; value: number }; key: string[]; value: string[] }>;
  const le = (x: string[]) => Buffer.from(x.map((b) => parseInt(b, 16))).readUInt32LE(0);
  const map = new Map(vids.map((e) => (e.formatted ? [e.formatted.key, e.formatted.value] : [le(e.key), le(e.value)])));
  assert.is(map.get(5000), 4094, 'nic_vid[5000]');
  assert.is(map.get(ipLink(physA.a).ifindex), ipLink(physA.a).ifindex, 'the others keep VID = ifindex');
  // LAN -> router: tagged 4094 (0x0ffe). Router -> LAN: a frame tagged 4094 arrives untagged in that LAN only.
  const payload = '88b5' + Buffer.from('vid 4094').toString('hex');
  const seenAtRouter = await exchange(sb, { ns: lanC, ifname: big.b }, 'ffffffffffff02cccccccc01' + payload, [{ ns: routerNs, ifname: rlink.b }]);
  assert.ok(seenAtRouter[0]!.some((f) => f.startsWith('ffffffffffff02cccccccc0181000ffe88b5')), `tagged 4094 at the router: ${seenAtRouter[0]}`);
  const seenInLans = await exchange(sb, { ns: routerNs, ifname: rlink.b }, 'ffffffffffff02dddddddd0181000ffe' + payload, [{ ns: lanC, ifname: big.b }, { ns: lanA, ifname: physA.b }]);
  assert.ok(seenInLans[0]!.some((f) => f === 'ffffffffffff02dddddddd01' + payload), `untagged in LAN C: ${seenInLans[0]}`);
  assert.equal(seenInLans[1], [], 'nothing in LAN A');
});

test('SIGTERM: clean exit, XDP stays attached so forwarding survives', async () => {
  const id = agent.iface(physA.a)!.xdp!.id;
  const code = await agent.stop('SIGTERM');
  assert.is(code, 0);
  assert.is(xdpId(ipLink(physA.a)), id);
  const down = agent.statusRaw();
  assert.is.not(down.status, 0);
  assert.match(down.stderr, /netagent status: netagent is not running/);
  assert.is(down.stderr.trim().split('\n').length, 1, 'one line');
});

test('detachOnExit: the agent takes its programs with it', async () => {
  agent = new AgentProc(sb, null, pins, { dir: agent.dir });
  agent.writeConfig({ profile: 'xdp-forwarder', detachOnExit: true });
  await agent.start();
  assert.ok(xdpId(ipLink(physA.a)));
  assert.is(await agent.stop('SIGTERM'), 0);
  assert.is(xdpId(ipLink(physA.a)), null);
  assert.is(xdpId(ipLink(rlink.a)), null);
});

test.after(() => sb.cleanup());
test.run();
