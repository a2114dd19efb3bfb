// The router firewall in the booted VM (router-p2p from the kernel command
// line), seen from the host side of the client TAPs: anti-spoofing, the input
// filter, and DNS on the gateway sent on to the resolver of the uplink's DHCP
// lease (qemu user-mode: 10.0.2.3), with per-client counters in the guest.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ping, sleep, vmSuite, type VmNic } from '../lib/vm.js';
import { inNs, run } from '../lib/sandbox.js';

const UPLINK = '52:54:00:12:34:11';
const nics: VmNic[] = [
  { id: 'uplink', mac: UPLINK },
  { id: 'c1', mac: '0a:b3:ec:40:00:02', tap: true },
  { id: 'c2', mac: '0a:b3:ec:40:00:04', tap: true },
];
const clients: Record<'c1' | 'c2', string> = { c1: '', c2: '' };
const suite = vmSuite({ nics, profile: 'router-p2p', name: 'router-security' }, (vm) => {
  clients.c1 = vm.clientNs('c1', '100.64.0.3/31', '100.64.0.2');
  clients.c2 = vm.clientNs('c2', '100.64.0.5/31', '100.64.0.4');
});
const { guarded } = suite;

const ok = (argv: string[]): boolean => {
  try {
    run(argv[0]!, argv.slice(1), { timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
};
/** The guest's per-client counter set `name`, element of the link with this MAC: packets. */
const guestCounter = async (set: string, mac: string): Promise<number> => {
  const links = JSON.parse(await suite.vm.sh('ip -j link show')) as Array<{ ifname: string; address: string }>;
  const link = links.find((l) => l.address === mac)!.ifname;
  const j = JSON.parse(await suite.vm.sh(`nft -j list set inet netagent ${set}`)) as { nftables: Array<{ set?: { elem?: Array<{ elem: { val: string; counter: { packets: number } } }> } }> };
  const e = j.nftables.find((o) => o.set)?.set?.elem?.find((x) => x.elem.val === link);
  return e?.elem.counter.packets ?? -1;
};

guarded('the uplink lease names a resolver: DNS on the clients\' gateways goes there', async () => {
  const t = Date.now();
  let map = '';
  while (!/53 : 10\.0\.2\.3/.test(map) && Date.now() - t < 60_000) {
    await sleep(1000);
    map = await suite.vm.sh('nft list map inet netagent dns');
  }
  assert.match(map, /53 : 10\.0\.2\.3/);
  assert.match(await suite.vm.sh('cat /etc/resolv.conf'), /nameserver 10\.0\.2\.3/, 'the net VM\'s own resolv.conf (writeResolvConf on in the image)');
});

guarded('a DNS query to the gateway is DNATed to the lease\'s resolver', async () => {
  // Whether qemu's resolver answers (restrict=on, no internet here) does not matter: the guest's connection tracking shows the rewrite.
  ok(inNs(clients.c1, ['busybox', 'nslookup', '-timeout=1', 'example.test', '100.64.0.2']));
  const ct = await suite.vm.sh('cat /proc/net/nf_conntrack');
  assert.match(ct, /src=100\.64\.0\.3 dst=100\.64\.0\.2 sport=\d+ dport=53 .*src=10\.0\.2\.3 dst=10\.0\.2\.15 sport=53/, ct);
});

guarded('anti-spoofing: another source address from a client TAP gets nowhere and is counted', async () => {
  run('ip', ['-n', clients.c2, 'addr', 'add', '100.64.0.77/32', 'dev', 'lo']);
  const before = await guestCounter('spoofed', '0a:b3:ec:40:00:04');
  assert.not.ok(ok(inNs(clients.c2, ['ping', '-c', '2', '-W', '1', '-I', '100.64.0.77', '100.64.0.4'])));
  assert.ok(ping(clients.c2, '100.64.0.4'), 'its own address still works');
  assert.ok((await guestCounter('spoofed', '0a:b3:ec:40:00:04')) >= before + 2);
});

guarded('input filter: ping the gateway yes, a TCP port of the net VM no (counted); clients apart', async () => {
  await suite.vm.sh("(node -e \"require('net').createServer((c) => c.end('hi')).listen(7777)\" &) ; sleep 1");
  assert.ok(ping(clients.c1, '100.64.0.2'));
  const before = await guestCounter('to_netvm', '0a:b3:ec:40:00:02');
  assert.not.ok(ok(inNs(clients.c1, ['curl', '-sS', '--max-time', '2', 'http://100.64.0.2:7777/'])));
  assert.ok((await guestCounter('to_netvm', '0a:b3:ec:40:00:02')) > before);
  assert.not.ok(ping(clients.c1, '100.64.0.5'), 'c1 -> c2 dropped');
});

test.run();
