// The router firewall in the booted VM (router-p2p from the kernel command
// line), seen from the host side of the client TAPs: anti-spoofing, the input
// filter, and DNS on the gateway sent on to the resolver of the uplink's DHCP
// lease, with per-client counters in the guest. The uplink is a TAP into an
// "internet" namespace whose DHCP server (busybox udhcpd) names a resolver:
// qemu's user-mode DHCP with restrict=on names none.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ping, sleep, vmSuite, type VmNic } from '../lib/vm.js';
import { inNs, ip, run, succeeds } from '../lib/sandbox.js';

const UPLINK = '52:54:00:12:34:11';
const RESOLVER = '198.18.0.53';
const nics: VmNic[] = [
  { id: 'uplink', mac: UPLINK, tap: true },
  { id: 'c1', mac: '0a:b3:ec:40:00:02', tap: true },
  { id: 'c2', mac: '0a:b3:ec:40:00:04', tap: true },
];
const clients: Record<'c1' | 'c2', string> = { c1: '', c2: '' };
const suite = vmSuite({ nics, profile: 'router-p2p', name: 'router-security' }, (vm, sb) => {
  clients.c1 = vm.clientNs('c1', '100.64.0.3/31', '100.64.0.2');
  clients.c2 = vm.clientNs('c2', '100.64.0.5/31', '100.64.0.4');
  const inet = sb.netns('inet');
  const tap = vm.moveTap('uplink', inet);
  ip(inet, 'addr', 'add', '198.18.0.1/24', 'dev', tap);
  const dir = sb.tempDir('netagent-udhcpd-');
  writeFileSync(join(dir, 'udhcpd.conf'), [
    'start 198.18.0.10', 'end 198.18.0.20', `interface ${tap}`, `lease_file ${join(dir, 'leases')}`, `pidfile ${join(dir, 'pid')}`,
    'opt subnet 255.255.255.0', 'opt router 198.18.0.1', `opt dns ${RESOLVER}`, 'opt lease 3600', '',
  ].join('\n'));
  writeFileSync(join(dir, 'leases'), '');
  sb.spawn(inNs(inet, ['busybox', 'udhcpd', '-f', join(dir, 'udhcpd.conf')]));
});
const { guarded } = suite;

const ok = (argv: string[]): boolean => succeeds(argv, 15_000);
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
  // The guest's DHCP client started before the server here: it retries every ~20 s.
  while (!/53 : 198\.18\.0\.53/.test(map) && Date.now() - t < 60_000) {
    await sleep(1000);
    map = await suite.vm.sh('nft list map inet netagent dns');
  }
  assert.match(map, /53 : 198\.18\.0\.53/);
  assert.match(await suite.vm.sh('cat /etc/resolv.conf'), /nameserver 198\.18\.0\.53/, 'the net VM\'s own resolv.conf (writeResolvConf on in the image)');
});

guarded('a DNS query to the gateway is DNATed to the lease\'s resolver', async () => {
  // Whether anything answers at the resolver does not matter: the guest's connection tracking shows the rewrite.
  ok(inNs(clients.c1, ['busybox', 'nslookup', '-timeout=1', 'example.test', '100.64.0.2']));
  const ct = await suite.vm.sh('cat /proc/net/nf_conntrack');
  assert.match(ct, /src=100\.64\.0\.3 dst=100\.64\.0\.2 sport=\d+ dport=53 .*src=198\.18\.0\.53 dst=198\.18\.0\.\d+ sport=53/, ct);
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
