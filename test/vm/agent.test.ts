// netagent in the real VM (xdp-forwarder profile): s6 starts it at boot and
// reports it ready, `netagent status` typed at the serial console lists every
// NIC with its role, state and XDP program, the kernel agrees (XDP attached,
// router link promiscuous), and after kill -9 s6 restarts it and the new
// agent adopts what it finds with nothing doubled.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { byMac, vmSuite, xdpProgId, type VmNic, type GuestLink } from '../lib/vm.js';

const ROUTER = '02:01:00:00:00:01';
const PHYS = ['52:54:00:12:34:01', '52:54:00:12:34:02'];
const nics: VmNic[] = [
  { id: 'router', mac: ROUTER },
  { id: 'phys1', mac: PHYS[0]! },
  { id: 'phys2', mac: PHYS[1]! },
];
const suite = vmSuite({ nics, profile: 'xdp-forwarder', name: 'agent' }, (vm) => {
  console.log(`boot to shell ${vm.bootToShellMs} ms, boot to agent ready ${vm.uptimeMs()} ms`);
});
const { guarded } = suite;

guarded('s6 reports netagent ready at boot; status says ready, profile xdp-forwarder', async () => {
  assert.ok(suite.ready.ready);
  assert.is(suite.ready.profile, 'xdp-forwarder');
});

guarded('status --json: router link and physical NICs configured with their XDP programs', async () => {
  const s = await suite.vm.status();
  const r = byMac(s, ROUTER);
  assert.is(r.role, 'router-link');
  assert.is(r.state, 'configured', JSON.stringify(r));
  assert.is(r.xdp?.program, 'router');
  assert.is(r.error, null);
  for (const mac of PHYS) {
    const p = byMac(s, mac);
    assert.is(p.role, 'physical');
    assert.is(p.state, 'configured', JSON.stringify(p));
    assert.is(p.xdp?.program, 'physical');
    assert.is(p.xdp?.mode, 'skb');
    assert.equal(p.addresses, [], 'no IPv4 address in xdp-forwarder');
  }
  const lo = s.interfaces.find((i) => i.name === 'lo');
  assert.ok(!lo || lo.role === 'loopback', 'lo is loopback or not listed');
});

guarded('`netagent status` typed at the console prints a table with every NIC', async () => {
  const s = await suite.vm.status();
  const table = await suite.vm.sh('netagent status');
  for (const mac of [ROUTER, ...PHYS]) {
    const i = byMac(s, mac);
    const row = table.split('\n').find((l) => l.split(/\s+/).includes(i.name));
    assert.ok(row, `a row for ${i.name} in:\n${table}`);
    assert.match(row!, i.role);
    assert.match(row!, 'configured');
    assert.match(row!, i.xdp!.program);
  }
});

guarded('the guest kernel agrees: XDP ids as reported, router link promiscuous and up', async () => {
  const s = await suite.vm.status();
  const links = await suite.vm.ipLinks();
  for (const mac of [ROUTER, ...PHYS]) {
    const i = byMac(s, mac);
    const l = links.find((x) => x.address === mac)!;
    assert.is(xdpProgId(l), i.xdp!.id, `${l.ifname}: XDP program id`);
    assert.ok(l.flags.includes('UP'), `${l.ifname} up`);
  }
  const r = links.find((x) => x.address === ROUTER)!;
  assert.ok(r.flags.includes('PROMISC') || (r.promiscuity ?? 0) > 0, 'router link promiscuous');
});

/** Every XDP program loaded in the guest kernel, by id. */
const xdpProgs = async (): Promise<number[]> =>
  (JSON.parse(await suite.vm.sh('bpftool -j prog show')) as Array<{ id: number; type: string }>)
    .filter((p) => p.type === 'xdp').map((p) => p.id).sort((a, b) => a - b);

guarded('kill -9: s6 restarts the agent; it adopts what it finds, nothing doubled', async () => {
  const before = await suite.vm.status();
  const linksBefore = await suite.vm.ipLinks();
  const progsBefore = await xdpProgs();
  const addrsBefore = await suite.vm.sh('ip -j addr show');
  const ms = await suite.vm.killAgentAndWaitRestart();
  console.log(`kill -9 to ready again: ${ms} ms`);
  const after = await suite.vm.status();
  const linksAfter = await suite.vm.ipLinks();
  for (const mac of [ROUTER, ...PHYS]) {
    const b = byMac(before, mac), a = byMac(after, mac);
    assert.is(a.state, 'configured', JSON.stringify(a));
    assert.is(a.xdp?.program, b.xdp?.program);
    const l = linksAfter.find((x: GuestLink) => x.address === mac)!;
    assert.is(xdpProgId(l), a.xdp!.id, `${l.ifname}: status and kernel agree after restart`);
    assert.ok(!l.xdp?.attached || l.xdp.attached.length === 1, `${l.ifname}: one XDP program, not two`);
  }
  // Adopted (same ids) or replaced, one program per link; the new agent may
  // hold its own freshly loaded copies for links to come, but a second
  // restart must not add more: nothing grows with restarts.
  const progsAfter = await xdpProgs();
  const attached = new Set(linksAfter.map(xdpProgId).filter((x): x is number => x !== null));
  assert.ok(progsAfter.length <= attached.size + 2, `at most the attached programs plus one spare physical/router pair: ${progsBefore} -> ${progsAfter}, attached ${[...attached]}`);
  await suite.vm.killAgentAndWaitRestart();
  const progsAgain = await xdpProgs();
  assert.is(progsAgain.length, progsAfter.length, `a second restart leaves as many XDP programs: ${progsAfter} -> ${progsAgain}`);
  for (const mac of [ROUTER, ...PHYS]) assert.is(byMac(await suite.vm.status(), mac).state, 'configured');
  // No address doubled (xdp-forwarder assigns none; nothing may appear either).
  const addrs = (JSON.parse(await suite.vm.sh('ip -j addr show')) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>)
    .flatMap((l) => l.addr_info.map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`));
  assert.is(new Set(addrs).size, addrs.length, `duplicate addresses: ${addrs}`);
  assert.equal(addrs.sort(), (JSON.parse(addrsBefore) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>)
    .flatMap((l) => l.addr_info.map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`)).sort());
  void linksBefore;
});

guarded('bpffs gone while the agent is down: its run script mounts it again, the agent sets everything up anew', async () => {
  await suite.vm.sh('s6-svc -wD -d /run/service/netagent', 30_000);
  await suite.vm.sh('umount /sys/fs/bpf');
  assert.not.match(await suite.vm.sh('cat /proc/mounts'), / \/sys\/fs\/bpf bpf /);
  await suite.vm.sh('s6-svc -u /run/service/netagent');
  await suite.vm.waitReady(120_000);
  assert.match(await suite.vm.sh('cat /proc/mounts'), / \/sys\/fs\/bpf bpf /);
  assert.match(await suite.vm.sh('tail -n 50 /run/log/netagent/current'), /bpffs is not mounted at \/sys\/fs\/bpf; mounting it/);
  const s = await suite.vm.status();
  const links = await suite.vm.ipLinks();
  for (const mac of [ROUTER, ...PHYS]) {
    const i = byMac(s, mac);
    assert.is(i.state, 'configured', JSON.stringify(i));
    assert.is(xdpProgId(links.find((x) => x.address === mac)!), i.xdp!.id);
  }
  assert.ok((await suite.vm.sh('ls /sys/fs/bpf')).includes('router_iface'), 'router_iface pinned again');
});

guarded('memory with the agent running', async () => {
  const free = await suite.vm.sh('free -m');
  console.log(`guest memory with netagent (free -m):\n${free}`);
  const rss = await suite.vm.sh('grep VmRSS /proc/$(s6-svstat -o pid /run/service/netagent)/status');
  console.log(`netagent ${rss.trim()}`);
  const t = await suite.vm.sh('time -p netagent status >/dev/null 2>/tmp/st.err; cat /tmp/st.err; true');
  console.log(`\`netagent status\` in the guest (TCG): ${t.trim().split('\n').join(', ')}`);
});

test.run();
