// NIC hotplug in the real VM: a virtio-net NIC added through qemu's monitor
// (QMP netdev_add + device_add, ACPI PCI hotplug) shows up in the guest and
// netagent configures it (physical, XDP attached); device_del takes it away
// and netagent forgets it. Then a router link is hotplugged the same way.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { vmSuite, xdpProgId, type Vm, type VmNic } from '../lib/vm.js';

const nics: VmNic[] = [
  { id: 'router', mac: '02:01:00:00:00:01' },
  { id: 'phys1', mac: '52:54:00:12:34:01' },
];
const suite = vmSuite({ nics, profile: 'xdp-forwarder', name: 'hotplug' });
const { guarded } = suite;

const waitIface: Vm['waitIface'] = (...a) => suite.vm.waitIface(...a);

const HP = '52:54:00:12:34:77';

/**
 * A guest-side watcher: records (guest uptime) when a link with `mac`
 * appears and when an XDP program is attached to it, polling iproute2 in a
 * loop; the agent's own reaction time, without the console's latency.
 */
const watchAttach = (mac: string) =>
  suite.vm.sh(`setsid sh -c 'a=; while :; do o=$(/usr/bin/ip -d -o link show | grep ${mac}); ` +
    `[ -n "$o" ] && [ -z "$a" ] && a=$(cut -d" " -f1 /proc/uptime); ` +
    `case "$o" in *prog/xdp*) echo "$a $(cut -d" " -f1 /proc/uptime)" > /tmp/attach.${mac.replace(/:/g, '')}; exit;; esac; done' </dev/null >/dev/null 2>&1 &`);
const attachMs = async (mac: string): Promise<number> => {
  const [a, b] = (await suite.vm.sh(`cat /tmp/attach.${mac.replace(/:/g, '')}`)).trim().split(' ').map(Number);
  return Math.round((b! - a!) * 1000);
};

guarded('a hotplugged NIC is configured as physical, XDP attached', async () => {
  await watchAttach(HP);
  const t = Date.now();
  await suite.vm.hotplug({ id: 'hp1', mac: HP });
  const i = (await waitIface(HP, (x) => x?.state === 'configured', 'hotplugged NIC configured'))!;
  console.log(`hotplug (device_add) to configured, seen through the console: ${Date.now() - t} ms`);
  console.log(`in the guest: link appeared -> XDP attached: ${await attachMs(HP)} ms (iproute2 polling loop, TCG)`);
  assert.is(i.role, 'physical');
  assert.is(i.xdp?.program, 'physical');
  const l = (await suite.vm.ipLinks()).find((x) => x.address === HP)!;
  assert.ok(l, 'the guest kernel has the link');
  assert.is(xdpProgId(l), i.xdp!.id);
  assert.ok(l.flags.includes('UP'));
});

guarded('device_del removes it; netagent forgets it, the others stay configured', async () => {
  const t = Date.now();
  await suite.vm.unplug('hp1');
  await waitIface(HP, (x) => x === undefined, 'unplugged NIC gone from status');
  console.log(`device_del to gone from status: ${Date.now() - t} ms`);
  assert.ok(!(await suite.vm.ipLinks()).some((x) => x.address === HP), 'gone from the guest kernel');
  const s = await suite.vm.status();
  for (const n of nics) assert.is(s.interfaces.find((i) => i.mac.toLowerCase() === n.mac)?.state, 'configured', n.mac);
});

guarded('plugging the same NIC again works (nothing stale from the first time)', async () => {
  await suite.vm.hotplug({ id: 'hp2', mac: HP });
  const i = (await waitIface(HP, (x) => x?.state === 'configured', 'replugged NIC configured'))!;
  assert.is(i.xdp?.program, 'physical');
  const links = await suite.vm.ipLinks();
  assert.is(links.filter((x) => x.address === HP).length, 1);
  await suite.vm.unplug('hp2');
  await waitIface(HP, (x) => x === undefined, 'replugged NIC gone');
});

guarded('several NICs hotplugged at once are all configured', async () => {
  const macs = ['52:54:00:12:35:01', '52:54:00:12:35:02', '52:54:00:12:35:03'];
  await Promise.all(macs.map((mac, k) => suite.vm.hotplug({ id: `multi${k}`, mac })));
  for (const mac of macs) await waitIface(mac, (x) => x?.state === 'configured' && x.xdp?.program === 'physical', `${mac} configured`);
  for (let k = 0; k < macs.length; k++) await suite.vm.unplug(`multi${k}`);
  for (const mac of macs) await waitIface(mac, (x) => x === undefined, `${mac} gone`);
});

test.run();
