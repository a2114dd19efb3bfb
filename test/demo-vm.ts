// The booted-VM half of `make demo`: the network VM image boots in qemu
// (TCG), s6 starts netagent, and we type at its serial console what a person
// would: `netagent status`, then a NIC is hotplugged and unplugged through
// qemu's monitor. Everything (qemu, namespaces) is removed at the end, also
// on Ctrl-C.
import { Sandbox } from './lib/sandbox.js';
import { Vm, ensureImage } from './lib/vm.js';

const bold = (s: string) => process.stdout.write(`\n\x1b[1m== ${s}\x1b[0m\n`);
const sb = new Sandbox();
let vm: Vm | null = null;
try {
  bold('6. the network VM: building the image (Debian kernel, busybox, s6, node, the agent)');
  const t0 = Date.now();
  ensureImage();
  console.log(`image ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  bold('7. booting it in qemu: router link 02:01:00:00:00:01, two NICs; s6 starts netagent');
  const tb = Date.now();
  vm = await Vm.boot(sb, {
    name: 'demo',
    nics: [
      { id: 'router', mac: '02:01:00:00:00:01' },
      { id: 'phys1', mac: '52:54:00:12:34:01' },
      { id: 'phys2', mac: '52:54:00:12:34:02' },
    ],
    profile: 'xdp-forwarder',
  });
  await vm.waitReady(180_000);
  console.log(`shell after ${(vm.bootToShellMs / 1000).toFixed(1)} s, agent ready after ${((Date.now() - tb) / 1000).toFixed(1)} s (software emulation)`);
  console.log('\n(vm)# netagent status');
  process.stdout.write(await vm.sh('netagent status'));
  bold('8. the hypervisor hotplugs a NIC (QMP netdev_add + device_add)');
  await vm.hotplug({ id: 'hot', mac: '52:54:00:12:34:77' });
  await vm.waitIface('52:54:00:12:34:77', (i) => i?.state === 'configured', 'hotplugged NIC configured');
  console.log('(vm)# netagent status');
  process.stdout.write(await vm.sh('netagent status'));
  bold('9. ... and takes it away again (device_del)');
  await vm.unplug('hot');
  await vm.waitIface('52:54:00:12:34:77', (i) => i === undefined, 'hotplugged NIC gone');
  console.log('(vm)# netagent status');
  process.stdout.write(await vm.sh('netagent status'));
  await vm.shutdown();
} catch (e) {
  console.error(`demo (VM part) failed: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  vm?.destroy();
  sb.cleanup();
}
