// The router profile as the security boundary and as a usable network, end to
// end in namespaces. This file's own namespace is the net VM (router-p2p
// agent); "inet" behind its uplink runs a DHCP server (busybox udhcpd) naming
// a DNS server (a small responder below), and an HTTP server; client VM 1 is
// a namespace running netagent's client profile, client VM 2 a plain one.
// Nothing here writes the machine's /etc/resolv.conf: both agents write
// resolv.conf into temporary files (resolvConfPath), checked at the end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, ownNetns, ip, ipJson, run, inNs, ROOT, succeeds } from '../lib/sandbox.js';
import { AgentProc, sleep } from '../lib/agent.js';

await ownNetns(import.meta.url);
const machineResolvConf = readFileSync('/etc/resolv.conf', 'utf8');
const sb = new Sandbox();
const tmp = sb.tempDir('netagent-sec-');

const ok = (argv: string[]): boolean => succeeds(argv, 10_000);
const ping = (ns: string, to: string, from?: string) => ok(inNs(ns, ['ping', '-c', '1', '-W', '1', '-q', ...(from ? ['-I', from] : []), to]));
const until = async (what: string, cond: () => boolean, ms = 15_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) assert.unreachable(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
};
const conntrack = () => readFileSync('/proc/net/nf_conntrack', 'utf8');

// ---------------------------------------------------------------- the internet
const inet = sb.netns('inet');
const up = sb.veth(null, inet, { macA: '52:54:00:00:5e:01' });
for (const a of ['198.18.0.1/24', '198.18.0.53/24', '198.18.0.80/24']) ip(inet, 'addr', 'add', a, 'dev', up.b);
writeFileSync(join(tmp, 'udhcpd.conf'), [
  'start 198.18.0.10', 'end 198.18.0.20', `interface ${up.b}`, `lease_file ${join(tmp, 'leases')}`, `pidfile ${join(tmp, 'udhcpd.pid')}`,
  'option subnet 255.255.255.0', 'option router 198.18.0.1', 'option dns 198.18.0.53', 'option lease 600', '',
].join('\n'));
writeFileSync(join(tmp, 'leases'), '');
sb.spawn(inNs(inet, ['busybox', 'udhcpd', '-f', join(tmp, 'udhcpd.conf')]));
// A DNS server that knows one name; it prints who asked (the router's uplink address: DNAT, then masquerade).
writeFileSync(join(tmp, 'dns.py'), `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('198.18.0.53', 53))
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 17: continue
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode().lower()); i += 1 + q[i]
    qtype, end = int.from_bytes(q[i + 1:i + 3], 'big'), i + 5
    hit = '.'.join(labels) == 'www.example.test'
    answer = hit and qtype == 1
    r = q[:2] + (0x8180 if hit else 0x8183).to_bytes(2, 'big') + b'\\x00\\x01' + (b'\\x00\\x01' if answer else b'\\x00\\x00') + b'\\x00\\x00\\x00\\x00' + q[12:end]
    if answer: r += b'\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04' + socket.inet_aton('198.18.0.80')
    s.sendto(r, peer)
    print('query from', peer[0], flush=True)
`);
const dns = sb.spawn(inNs(inet, ['python3', '-u', join(tmp, 'dns.py')]));
let dnsLog = '';
dns.stdout!.on('data', (d: Buffer) => (dnsLog += d.toString()));
const www = sb.tempDir('netagent-www-');
writeFileSync(join(www, 'index.html'), 'hello from the internet\n');
sb.spawn(inNs(inet, ['python3', '-m', 'http.server', '80', '--bind', '198.18.0.80', '--directory', www]));

// ---------------------------------------------------------------- client VMs
const cvm1 = sb.netns('cvm');
const l1 = sb.veth(null, cvm1, { macA: '0a:b3:ec:40:00:02', macB: '0a:b3:ec:40:00:03' });
const cvm2 = sb.netns('cvm');
const l2 = sb.veth(null, cvm2, { macA: '0a:b3:ec:40:00:04' });
ip(cvm2, 'addr', 'add', '100.64.0.5/31', 'dev', l2.b);
ip(cvm2, 'route', 'add', 'default', 'via', '100.64.0.4');

// A service of the net VM's own, listening on every address: no client and no uplink may reach it.
sb.spawn(['python3', '-m', 'http.server', '8080', '--bind', '0.0.0.0', '--directory', www]);

// ---------------------------------------------------------------- the agents
const router = new AgentProc(sb, null, sb.bpffs());
const routerResolv = join(tmp, 'resolv.router');
router.writeConfig({
  profile: 'router-p2p',
  dhcpCommand: ['busybox', 'udhcpc', '-f', '-R', '-i', '{ifname}', '-s', join(ROOT, 'rootfs/usr/lib/netagent/udhcpc.script')],
  writeResolvConf: true,
  resolvConfPath: routerResolv,
});
const client = new AgentProc(sb, cvm1, sb.tempDir('netagent-nopins-'));
const clientResolv = join(tmp, 'resolv.client');
client.writeConfig({ profile: 'client', writeResolvConf: true, resolvConfPath: clientResolv });

interface Counters { tx: { packets: number; bytes: number }; rx: { packets: number; bytes: number }; dropped: { spoofed: number; toClient: number; toNetVm: number } }
const counters = (link: string): Counters | undefined => (router.status() as { clients?: Record<string, Counters> }).clients?.[link];
/** Waits until the counters `status` shows for a link satisfy `pred` (status shows a reading at most a second old). */
const countersUntil = async (link: string, what: string, pred: (c: Counters) => boolean): Promise<Counters> => {
  let c: Counters | undefined;
  await until(`${link} counters: ${what} (last: ${JSON.stringify(c)})`, () => !!(c = counters(link)) && pred(c), 5000);
  return c!;
};

test('the uplink gets a lease by DHCP; its name server becomes the clients\' DNS target', async () => {
  await router.start();
  await until('uplink leased', () => router.iface(up.a)?.addresses.some((a) => a.startsWith('198.18.0.1')) ?? false);
  await until('DNAT target from the lease', () => run('nft', ['list', 'map', 'inet', 'netagent', 'dns']).includes('53 : 198.18.0.53'));
  await until('the net VM\'s own resolv.conf (a temporary file)', () => { try { return readFileSync(routerResolv, 'utf8').includes('nameserver 198.18.0.53'); } catch { return false; } });
});

test('client VM: address and default route from its MAC, its gateway as name server in resolv.conf', async () => {
  await client.start();
  await client.waitFor((s) => s.interfaces.some((i) => i.name === l1.b && i.state === 'configured'), 'client link configured');
  assert.equal(client.iface(l1.b)!.addresses, ['100.64.0.3/31']);
  assert.equal(ipJson<Array<{ gateway?: string }>>(cvm1, 'route', 'show', 'default').map((r) => r.gateway), ['100.64.0.2']);
  await until('client resolv.conf written', () => { try { return /^nameserver 100\.64\.0\.2$/m.test(readFileSync(clientResolv, 'utf8')); } catch { return false; } });
  await router.waitFor((s) => s.interfaces.some((i) => i.name === l1.a && i.state === 'configured'), 'router side configured');
});

test('client VM resolves a name through its gateway and fetches a page through the net VM', async () => {
  // The client's own view of the world: the resolv.conf its agent wrote, at /etc/resolv.conf in a private mount namespace.
  const script = `mount --bind ${clientResolv} /etc/resolv.conf && exec nsenter --net=/run/netns/${cvm1} curl -sS --max-time 5 http://www.example.test/`;
  let page = '';
  await until('page fetched', () => { try { page = run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script]); return true; } catch { return false; } }, 10_000);
  assert.is(page, 'hello from the internet\n');
  // The DNS server saw the query come from the net VM's uplink address: DNAT to the lease's resolver, then masquerade.
  await until(`DNS server log names the uplink address: ${JSON.stringify(dnsLog)}`, () => /query from 198\.18\.0\.1\d/.test(dnsLog), 3000);
  await countersUntil(l1.a, 'traffic both ways', (c) => c.tx.packets >= 4 && c.rx.packets >= 4 && c.rx.bytes > 0);
});

test('client VM 2 cannot reach client VM 1; the drop is counted against client 2', async () => {
  assert.ok(ping(cvm2, '198.18.0.1'), 'client 2 reaches the internet');
  const before = (await countersUntil(l2.a, 'present', () => true)).dropped.toClient;
  assert.not.ok(ping(cvm2, '100.64.0.3'));
  await countersUntil(l2.a, 'a drop towards another client', (c) => c.dropped.toClient > before);
});

test('a spoofed source address gets nowhere and is counted', async () => {
  ip(cvm2, 'addr', 'add', '100.64.0.99/32', 'dev', l2.b);
  const before = (await countersUntil(l2.a, 'present', () => true)).dropped.spoofed;
  assert.not.ok(ping(cvm2, '198.18.0.1', '100.64.0.99'));
  assert.not.ok(ping(cvm2, '100.64.0.4', '100.64.0.99'), 'not even to the net VM');
  await countersUntil(l2.a, 'two spoofed packets', (c) => c.dropped.spoofed >= before + 2);
  assert.not.match(conntrack(), /src=100\.64\.0\.99 /, 'dropped before connection tracking');
});

test('the net VM: a client may ping its gateway, but not connect to a service; nor may the uplink side', async () => {
  assert.ok(ping(cvm1, '100.64.0.2'));
  const before = (await countersUntil(l1.a, 'present', () => true)).dropped.toNetVm;
  assert.not.ok(ok(inNs(cvm1, ['curl', '-sS', '--max-time', '2', 'http://100.64.0.2:8080/'])));
  assert.not.ok(ok(inNs(cvm1, ['curl', '-sS', '--max-time', '2', 'http://100.64.0.4:8080/'])), 'nor on another address of the net VM');
  await countersUntil(l1.a, 'drops towards the net VM', (c) => c.dropped.toNetVm > before);
  assert.ok(ok(['curl', '-sS', '--max-time', '2', 'http://127.0.0.1:8080/']), 'the service itself runs');
  const uplinkAddr = router.iface(up.a)!.addresses[0]!.split('/')[0]!;
  assert.not.ok(ok(inNs(inet, ['curl', '-sS', '--max-time', '2', `http://${uplinkAddr}:8080/`])), 'uplink side: dropped');
  assert.not.ok(ping(inet, uplinkAddr), 'uplink side: no ping either');
});

test('a client link that goes away takes its connection-tracking entries with it', async () => {
  assert.match(conntrack(), /src=100\.64\.0\.3 /);
  ip(null, 'link', 'del', l1.a);
  await until('entries of 100.64.0.3 gone', () => !/src=100\.64\.0\.3 /.test(conntrack()), 5000);
  assert.match(conntrack(), /src=100\.64\.0\.5 /, 'client 2\'s entries stay');
});

test('the machine\'s /etc/resolv.conf is untouched', async () => {
  await client.stop();
  await router.stop();
  assert.is(readFileSync('/etc/resolv.conf', 'utf8'), machineResolvConf);
});

test.after(() => sb.cleanup());
test.run();
