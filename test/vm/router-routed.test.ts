// The router-routed profile in the real VM, with the whole config passed on
// the kernel command line (netagent.config=base64): each 02:01:XX:XX:AA:BB
// link gets 169.254.0.1/32 and a host route to its client 100.64.AA.BB;
// clients (namespaces holding the host side of their TAPs) reach the VM but
// not each other.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { byMac, ping, vmSuite, type VmNic } from '../lib/vm.js';

const C1 = '02:01:00:00:01:0a'; // client 100.64.1.10
const C2 = '02:01:00:00:01:0b'; // client 100.64.1.11
const nics: VmNic[] = [
  { id: 'uplink', mac: '52:54:00:12:34:01' },
  { id: 'c1', mac: C1, tap: true },
  { id: 'c2', mac: C2, tap: true },
];
const clients: Record<'c1' | 'c2', string> = { c1: '', c2: '' };
const suite = vmSuite({ nics, config: { profile: 'router-routed', uplinkDhcp: false }, name: 'router-routed' }, (vm) => {
  // Each client VM is a namespace holding the host side of its TAP; the
  // gateway 169.254.0.1 lies outside its /32, so it gets a route on the TAP.
  clients.c1 = vm.clientNs('c1', '100.64.1.10/32', '169.254.0.1');
  clients.c2 = vm.clientNs('c2', '100.64.1.11/32', '169.254.0.1');
});
const { guarded } = suite;

guarded('the config from the kernel command line is the one in force', async () => {
  assert.equal(JSON.parse(await suite.vm.sh('cat /etc/netagent/config.json')), { profile: 'router-routed', uplinkDhcp: false });
  assert.is((await suite.vm.status()).profile, 'router-routed');
});

guarded('each client link: 169.254.0.1/32 and a host route to the client its MAC names', async () => {
  const s = await suite.vm.status();
  for (const [mac, client] of [[C1, '100.64.1.10'], [C2, '100.64.1.11']] as const) {
    const i = byMac(s, mac);
    assert.equal([i.role, i.state, i.addresses], ['inter-vm', 'configured', ['169.254.0.1/32']], JSON.stringify(i));
    const routes = JSON.parse(await suite.vm.sh(`ip -j route show dev ${i.name}`)) as Array<{ dst: string }>;
    assert.ok(routes.some((r) => r.dst === client), `route to ${client} via ${i.name}: ${JSON.stringify(routes)}`);
  }
});

guarded('clients reach the VM, not each other', async () => {
  assert.ok(ping(clients.c1, '169.254.0.1'), 'c1 -> its gateway');
  assert.ok(ping(clients.c2, '169.254.0.1'), 'c2 -> its gateway');
  assert.not.ok(ping(clients.c1, '100.64.1.11'), 'c1 -> c2 dropped');
  assert.not.ok(ping(clients.c2, '100.64.1.10'), 'c2 -> c1 dropped');
});

test.run();
