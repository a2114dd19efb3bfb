// The router-p2p profile in the real VM, chosen on the kernel command line:
// 0a:b3:ec links get the /31 their MAC encodes, the uplink gets an address
// by DHCP (qemu's user-mode DHCP, restrict=on: nothing leaves the machine),
// forwarding is on, clients reach the VM but not each other, and kill -9
// leaves no address or nftables rule doubled.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { byMac, ping, sleep, vmSuite, type VmNic } from '../lib/vm.js';

const UPLINK = '52:54:00:12:34:01';
const C1 = '0a:b3:ec:40:00:02';
const C2 = '0a:b3:ec:40:00:04';
const nics: VmNic[] = [
  { id: 'uplink', mac: UPLINK },
  { id: 'c1', mac: C1, tap: true },
  { id: 'c2', mac: C2, tap: true },
];
const clients: Record<'c1' | 'c2', string> = { c1: '', c2: '' };
const suite = vmSuite({ nics, profile: 'router-p2p', name: 'router-p2p' }, (vm) => {
  // Each client VM is a namespace holding the host side of its TAP.
  clients.c1 = vm.clientNs('c1', '100.64.0.3/31', '100.64.0.2');
  clients.c2 = vm.clientNs('c2', '100.64.0.5/31', '100.64.0.4');
});
const { guarded } = suite;

/** Every IPv4 address in the guest, "ifname a.b.c.d/n". */
const guestAddrs = async (): Promise<string[]> =>
  (JSON.parse(await suite.vm.sh('ip -j -4 addr show')) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>)
    .flatMap((l) => l.addr_info.map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`)).sort();

guarded('the profile comes from the kernel command line', async () => {
  assert.is((await suite.vm.status()).profile, 'router-p2p');
});

guarded('0a:b3:ec links carry the /31 their MAC encodes', async () => {
  const s = await suite.vm.status();
  for (const [mac, addr] of [[C1, '100.64.0.2/31'], [C2, '100.64.0.4/31']] as const) {
    const i = byMac(s, mac);
    assert.equal([i.role, i.state, i.addresses], ['inter-vm', 'configured', [addr]], JSON.stringify(i));
  }
  assert.is((await suite.vm.sh('cat /proc/sys/net/ipv4/ip_forward')).trim(), '1');
});

guarded('the uplink gets an address by DHCP (busybox udhcpc, qemu user-mode DHCP)', async () => {
  const t = Date.now();
  let i = byMac(await suite.vm.status(), UPLINK);
  while (!i.addresses.some((a) => a.startsWith('10.0.2.')) && Date.now() - t < 60_000) {
    await sleep(1000);
    i = byMac(await suite.vm.status(), UPLINK);
  }
  assert.is(i.role, 'physical');
  assert.ok(i.addresses.includes('10.0.2.15/24'), `DHCP lease on the uplink: ${JSON.stringify(i)}`);
});

guarded('masquerade on the uplink is in the nftables ruleset', async () => {
  assert.match(await suite.vm.sh('nft list ruleset'), /masquerade/);
});

guarded('each client reaches the net VM; clients do not reach each other', async () => {
  assert.ok(ping(clients.c1, '100.64.0.2'), 'c1 -> its router address');
  assert.ok(ping(clients.c2, '100.64.0.4'), 'c2 -> its router address');
  assert.not.ok(ping(clients.c1, '100.64.0.5'), 'c1 -> c2 is dropped');
  assert.not.ok(ping(clients.c2, '100.64.0.3'), 'c2 -> c1 is dropped');
});

guarded('kill -9: the restarted agent doubles no address and no nftables rule', async () => {
  const addrs = await guestAddrs();
  const rules = await suite.vm.sh('nft list ruleset');
  const ms = await suite.vm.killAgentAndWaitRestart();
  console.log(`router-p2p: kill -9 to ready again: ${ms} ms`);
  const after = await guestAddrs();
  assert.is(new Set(after).size, after.length, `duplicate addresses: ${after}`);
  assert.equal(after, addrs);
  assert.is((await suite.vm.sh('nft list ruleset')).split('\n').length, rules.split('\n').length, 'as many ruleset lines as before');
  assert.ok(ping(clients.c1, '100.64.0.2'), 'c1 still reaches the net VM');
});

test.run();
