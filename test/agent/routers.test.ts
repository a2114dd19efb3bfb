// The router profiles and the client profile, for real: addresses from MACs,
// routes, nftables isolation and masquerade proven with traffic between
// namespaces, restart with nothing doubled, live profile switch.
import { test } from 'uvu';
import { rmSync } from 'node:fs';
import * as assert from 'uvu/assert';
import { Sandbox, ownNetns, ip, ipJson, run } from '../lib/sandbox.js';
import { AgentProc, sleep } from '../lib/agent.js';

const me = await ownNetns(import.meta.url);
const sb = new Sandbox();
const pins = sb.bpffs();

interface IpAddr { ifname: string; addr_info: Array<{ family: string; local: string; prefixlen: number; protocol?: string }> }
const v4 = (ns: string | null, dev: string): string[] =>
  (ipJson<IpAddr[]>(ns, 'addr', 'show', 'dev', dev)[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
const routes = (dev: string): string[] => ipJson<Array<{ dst: string }>>(null, 'route', 'show', 'dev', dev).map((r) => r.dst);
const ping = (ns: string, to: string): boolean => {
  try {
    run('nsenter', [`--net=/run/netns/${ns}`, 'ping', '-c', '1', '-W', '1', '-q', to]);
    return true;
  } catch {
    return false;
  }
};

// Two client VMs, an uplink network with a "server" at 198.18.0.1.
const c1 = sb.netns('cl');
const c2 = sb.netns('cl');
const wan = sb.netns('wan');
const l1 = sb.veth(null, c1, { macA: '0a:b3:ec:40:00:02' });
const l2 = sb.veth(null, c2, { macA: '0a:b3:ec:40:00:04' });
const bad = sb.veth(null, sb.netns('cl'), { macA: '0a:b3:ec:01:02:03' });
const up = sb.veth(null, wan, { macA: '52:54:00:00:0e:01' });
ip(null, 'addr', 'add', '198.18.0.2/24', 'dev', up.a); // static uplink address: no DHCP server in this test
ip(wan, 'addr', 'add', '198.18.0.1/24', 'dev', up.b);
ip(c1, 'addr', 'add', '100.64.0.3/31', 'dev', l1.b);
ip(c1, 'route', 'add', 'default', 'via', '100.64.0.2');
ip(c2, 'addr', 'add', '100.64.0.5/31', 'dev', l2.b);
ip(c2, 'route', 'add', 'default', 'via', '100.64.0.4');

let agent = new AgentProc(sb, null, pins);
agent.writeConfig({ profile: 'router-p2p', uplinkDhcp: false });

test('router-p2p: 0a:b3:ec links get the address their MAC encodes; a public one fails', async () => {
  await agent.start();
  await agent.waitFor((s) => s.interfaces.filter((i) => i.state === 'configured').length >= 3, 'links configured');
  assert.equal(v4(null, l1.a), ['100.64.0.2/31']);
  assert.equal(v4(null, l2.a), ['100.64.0.4/31']);
  const s = agent.status();
  const i1 = s.interfaces.find((i) => i.name === l1.a)!;
  assert.equal([i1.role, i1.state, i1.addresses], ['inter-vm', 'configured', ['100.64.0.2/31']]);
  const ib = s.interfaces.find((i) => i.name === bad.a)!;
  assert.is(ib.state, 'failed');
  assert.match(ib.error!, /100\.1\.2\.3, outside the shared address space 100\.64\.0\.0\/10/);
  assert.equal(v4(null, bad.a), []);
  const iu = s.interfaces.find((i) => i.name === up.a)!;
  assert.equal([iu.role, iu.state], ['physical', 'configured']);
  assert.is(run('cat', ['/proc/sys/net/ipv4/ip_forward']).trim(), '1');
});

test('router-p2p: nft flush ruleset and ip_forward=0 (nothing announces them) are repaired within 5 s; clients stay apart', async () => {
  run('nft', ['flush', 'ruleset']);
  run('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
  const t0 = Date.now();
  for (;;) {
    let table = '';
    try { table = run('nft', ['list', 'table', 'inet', 'netagent']); } catch { /* gone */ }
    const fwd = run('cat', ['/proc/sys/net/ipv4/ip_forward']).trim();
    if (table.includes('chain forward') && fwd === '1') break;
    if (Date.now() - t0 > 5000) assert.unreachable(`not repaired within 5 s: table ${table ? 'present' : 'gone'}, ip_forward ${fwd}`);
    await sleep(50);
  }
  console.log(`    table and forwarding repaired after ${Date.now() - t0} ms`);
  assert.not.ok(ping(c1, '100.64.0.5'), 'client 1 still cannot reach client 2');
  assert.ok(ping(c1, '198.18.0.1'), 'and still reaches the uplink');
  // Only the link that is refused on purpose (bad) is left to say anything.
  await agent.waitFor((s) => !/nftables|forward|table/i.test(String(s.lastError)), 'the firewall problem gone from status once repaired', 5000);
});

test('router-p2p: clients reach the uplink, masqueraded; clients cannot reach each other', async () => {
  assert.ok(ping(c1, '100.64.0.2'), 'client reaches its router');
  assert.ok(ping(c1, '198.18.0.1'), 'client reaches the uplink network (masqueraded: the server has no route back to 100.64/10)');
  assert.ok(ping(c2, '198.18.0.1'));
  assert.not.ok(ping(c1, '100.64.0.5'), 'client 1 cannot reach client 2');
  assert.not.ok(ping(c2, '100.64.0.3'), 'client 2 cannot reach client 1');
  const ruleset = run('nft', ['list', 'table', 'inet', 'netagent']);
  assert.match(ruleset, new RegExp(`elements = \\{ "${up.a}" \\}`));
  assert.match(ruleset, /clients are kept apart/);
});

test('restart after kill -9 in router-p2p: nothing doubled', async () => {
  await agent.stop('SIGKILL');
  agent = new AgentProc(sb, null, pins, { dir: agent.dir });
  await agent.start();
  assert.equal(v4(null, l1.a), ['100.64.0.2/31']);
  assert.equal(v4(null, l2.a), ['100.64.0.4/31']);
  const tables = run('nft', ['list', 'tables']).split('\n').filter((l) => l.includes('netagent'));
  assert.is(tables.length, 1);
  assert.not.ok(agent.logs.some((l) => l.includes('"to":"pending"')), 'nothing to redo: no link went through pending');
  assert.ok(ping(c1, '198.18.0.1'));
});

test('hotplug in router-p2p: a new client link is addressed and joins the isolation set', async () => {
  const c3 = sb.netns('cl');
  const l3 = sb.veth(null, c3, { macA: '0a:b3:ec:40:00:06' });
  ip(c3, 'addr', 'add', '100.64.0.7/31', 'dev', l3.b);
  ip(c3, 'route', 'add', 'default', 'via', '100.64.0.6');
  await agent.waitFor((s) => s.interfaces.some((i) => i.name === l3.a && i.state === 'configured'), 'client 3 configured');
  const t0 = Date.now();
  while (!run('nft', ['list', 'set', 'inet', 'netagent', 'clients']).includes(l3.a)) {
    if (Date.now() - t0 > 5000) assert.unreachable('client set not updated');
    await sleep(20);
  }
  assert.ok(ping(c3, '198.18.0.1'));
  assert.not.ok(ping(c3, '100.64.0.3'));
  ip(null, 'link', 'del', l3.a);
  await agent.waitFor((s) => !s.interfaces.some((i) => i.name === l3.a), 'client 3 gone');
});

test('live switch to router-routed: p2p addresses go, 02:01 client links get 169.254.0.1/32 and a host route', async () => {
  const c4 = sb.netns('cl');
  const l4 = sb.veth(null, c4, { macA: '02:01:00:00:01:0a' });
  ip(c4, 'addr', 'add', '100.64.1.10/32', 'dev', l4.b);
  ip(c4, 'route', 'add', '169.254.0.1', 'dev', l4.b);
  ip(c4, 'route', 'add', 'default', 'via', '169.254.0.1');
  agent.writeConfig({ profile: 'router-routed', uplinkDhcp: false });
  await agent.waitFor((s) => s.profile === 'router-routed' && s.interfaces.some((i) => i.name === l4.a && i.state === 'configured'), 'routed client configured');
  const t0 = Date.now();
  while (v4(null, l1.a).length) {
    if (Date.now() - t0 > 5000) assert.unreachable(`p2p address left: ${v4(null, l1.a)}`);
    await sleep(20);
  }
  assert.equal(v4(null, l4.a), ['169.254.0.1/32']);
  assert.equal(routes(l4.a), ['100.64.1.10']);
  assert.ok(ping(c4, '169.254.0.1'), 'client reaches its gateway');
  assert.ok(ping(c4, '198.18.0.1'), 'and the uplink');
});

test('router-routed: a link bounce or a deleted address flushes our route without RTM_DELROUTE; it is back within 2 s', async () => {
  const l4 = agent.status().interfaces.find((i) => i.mac === '02:01:00:00:01:0a')!.name;
  for (const disrupt of [
    () => { ip(null, 'link', 'set', l4, 'down'); ip(null, 'link', 'set', l4, 'up'); },
    () => ip(null, 'addr', 'del', '169.254.0.1/32', 'dev', l4),
  ]) {
    disrupt();
    const t0 = Date.now();
    while (!routes(l4).includes('100.64.1.10')) {
      if (Date.now() - t0 > 2000) assert.unreachable(`route through ${l4} not back within 2 s: ${JSON.stringify(routes(l4))}`);
      await sleep(20);
    }
    await agent.waitFor((s) => s.interfaces.some((i) => i.name === l4 && i.state === 'configured'), `${l4} configured again`, 2000);
  }
});

test('an invalid config edit is refused; the last good config stays', async () => {
  agent.writeConfig({ profile: 'router-routd' });
  const t0 = Date.now();
  while (!agent.logs.some((l) => l.includes('config change refused'))) {
    if (Date.now() - t0 > 5000) assert.unreachable('no refusal logged');
    await sleep(20);
  }
  const refusal = agent.logs.find((l) => l.includes('config change refused'))!;
  assert.match(refusal, /profile must be one of/);
  assert.is(agent.status().profile, 'router-routed');
});

test('the config file deleted: the last good config keeps running, and status says so until it is back', async () => {
  rmSync(agent.config);
  await agent.waitFor((s) => /config file .* is gone; keeping the last good config/.test(String(s.lastError)), 'status says the file is gone');
  await sleep(500);
  assert.is(agent.status().profile, 'router-routed', 'not the built-in defaults');
  assert.ok(agent.status().interfaces.some((i) => i.addresses.includes('169.254.0.1/32')), 'the clients keep their gateway');
  agent.writeConfig({ profile: 'router-routed', uplinkDhcp: false });
  await agent.waitFor((s) => s.lastError === null, 'no error once the file is back');
});

test('SIGHUP (s6-svc -h) re-reads the config; the agent carries on', async () => {
  agent.child!.kill('SIGHUP');
  await sleep(500);
  assert.is(agent.child!.exitCode, null, 'still running');
  assert.is(agent.status().profile, 'router-routed');
});

test('client profile: the VM takes the address its MAC encodes, the peer is the default route', async () => {
  // A separate agent in a separate namespace acts as a client VM.
  const vm = sb.netns('cvm');
  const rtr = sb.netns('crt');
  const link = sb.veth(vm, rtr, { macA: '0a:b3:ec:40:00:09' });
  ip(rtr, 'addr', 'add', '100.64.0.8/31', 'dev', link.b);
  // No bpffs at the pin directory: the client profile does not need the XDP forwarder, and says nothing about it.
  const client = new AgentProc(sb, vm, sb.tempDir('netagent-nopins-'));
  client.writeConfig({ profile: 'client' });
  await client.start();
  const i = client.status().interfaces.find((x) => x.name === link.a)!;
  assert.equal([i.role, i.state, i.addresses], ['client-link', 'configured', ['100.64.0.9/31']]);
  const def = ipJson<Array<{ dst: string; gateway?: string }>>(vm, 'route', 'show', 'default');
  assert.equal(def.map((r) => r.gateway), ['100.64.0.8']);
  assert.ok(ping(vm, '100.64.0.8'));
  assert.is(client.status().lastError, null);
  await client.stop();
});

test('SIGTERM leaves addresses in place and exits 0', async () => {
  assert.is(await agent.stop(), 0);
  assert.equal(v4(null, l2.a), [], 'p2p address was removed by the routed profile');
  assert.ok(me.length > 0);
});

test.after(() => sb.cleanup());
test.run();
