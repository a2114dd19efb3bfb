// The network VM image boots in qemu: s6-svscan is PID 1, fstab mounted
// bpffs at /sys/fs/bpf, the modules the VM needs are loaded, every NIC qemu
// gives it is there with its MAC, s6 supervises netagent and the console
// shell (and respawns the shell), the agent's config comes from the kernel
// command line, and `poweroff` stops the VM cleanly.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { vmSuite, type VmNic } from '../lib/vm.js';

const nics: VmNic[] = [
  { id: 'router', mac: '02:01:00:00:00:01' },
  { id: 'phys1', mac: '52:54:00:12:34:01' },
  { id: 'phys2', mac: '52:54:00:12:34:02' },
];
// Booted to the shell prompt only: these tests look at the image, not at the agent's work.
const suite = vmSuite({ nics, profile: 'xdp-forwarder', xdpMode: 'skb', name: 'boot', readyTimeoutMs: false }, (vm) => {
  console.log(`boot to shell: ${vm.bootToShellMs} ms`);
});
const { guarded } = suite;

guarded('s6-svscan is PID 1, on the scan directory /run/service', async () => {
  assert.is((await suite.vm.sh('cat /proc/1/comm')).trim(), 's6-svscan');
  assert.match(await suite.vm.sh("tr '\\0' ' ' < /proc/1/cmdline"), /s6-svscan \/run\/service/);
});

guarded('fstab: bpffs at /sys/fs/bpf, proc, sysfs, devtmpfs, /run', async () => {
  const mounts = await suite.vm.sh('cat /proc/mounts');
  for (const [dir, type] of [['/sys/fs/bpf', 'bpf'], ['/proc', 'proc'], ['/sys', 'sysfs'], ['/dev', 'devtmpfs'], ['/run', 'tmpfs']]) {
    assert.ok(mounts.split('\n').some((l) => l.split(' ')[1] === dir && l.split(' ')[2] === type), `${type} at ${dir}:\n${mounts}`);
  }
});

guarded('kernel modules for NICs and nftables are loaded', async () => {
  const mods = (await suite.vm.sh('cut -d" " -f1 /proc/modules')).split('\n');
  for (const m of ['virtio_pci', 'virtio_net', 'nf_tables', 'nft_masq', 'nft_chain_nat', 'nf_conntrack', 'nft_ct']) {
    assert.ok(mods.includes(m), `${m} loaded; have: ${mods.join(' ')}`);
  }
  // And nft can use them.
  await suite.vm.sh('nft add table inet vmtest && nft delete table inet vmtest');
});

guarded('every NIC qemu gives the VM is there, with its MAC', async () => {
  const links = JSON.parse(await suite.vm.sh('ip -j link show')) as Array<{ ifname: string; address: string }>;
  for (const n of nics) assert.ok(links.some((l) => l.address === n.mac), `a link with MAC ${n.mac}: ${JSON.stringify(links)}`);
});

guarded('the profile from the kernel command line is in /etc/netagent/config.json', async () => {
  const cfg = JSON.parse(await suite.vm.sh('cat /etc/netagent/config.json'));
  assert.equal(cfg, { profile: 'xdp-forwarder', xdpMode: 'skb' });
});

guarded('s6 supervises netagent (with notification-fd 3) and the console shell', async () => {
  assert.is((await suite.vm.sh('cat /run/service/netagent/notification-fd')).trim(), '3');
  assert.match(await suite.vm.sh('s6-svstat /run/service/netagent'), /^up /);
  assert.match(await suite.vm.sh('s6-svstat /run/service/netagent/log'), /^up /);
  assert.match(await suite.vm.sh('s6-svstat /run/service/console'), /^up /);
  assert.ok(await suite.vm.sh('command -v netagent'), 'netagent on PATH');
});

guarded('the console shell respawns when it exits', async () => {
  const before = (await suite.vm.sh('echo $$')).trim();
  // `exit` ends the login shell; s6 starts a new one on ttyS0, which prompts.
  await suite.vm.typeAndWaitPrompt('exit\n');
  const t = Date.now();
  let after = before;
  while (after === before && Date.now() - t < 30_000) {
    try { after = (await suite.vm.sh('echo $$', 5_000)).trim(); } catch { suite.vm.type('\x03'); /* a line typed too early: cancel it */ }
  }
  assert.is.not(after, before, 'a new shell (new PID) answers on ttyS0');
});

guarded('memory: the guest has room to spare', async () => {
  const free = await suite.vm.sh('free -m');
  console.log(`guest memory (free -m):\n${free}`);
  const mem = free.split('\n').find((l) => l.startsWith('Mem:'))!.trim().split(/\s+/);
  const [total, used] = [Number(mem[1]), Number(mem[2])];
  assert.ok(used < total * 0.8, `used ${used} MiB of ${total}`);
});

guarded('poweroff stops the VM cleanly (s6 takes services down, then powers off)', async () => {
  const t = Date.now();
  await suite.vm.shutdown(30_000);
  assert.match(suite.vm.exitReason ?? '', /qemu exited \(code 0\)/);
  console.log(`poweroff: ${Date.now() - t} ms`);
});

test.run();
