// Real frames through the real VM: every NIC is backed by a TAP device in the
// VM's namespace on the host. A frame sent into a physical NIC leaves the
// router link tagged with VID = the guest's ifindex of that NIC (read from
// `netagent status --json`); a tagged frame sent into the router link leaves
// only the physical NIC its VID names, untagged; unknown VIDs go nowhere.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { byMac, vmSuite, type VmNic } from '../lib/vm.js';
import { ethFrame, withTag, hex, ETH_P_TEST } from '../lib/frames.js';

const ROUTER = '02:01:00:00:00:01';
const PHYS1 = '52:54:00:12:34:01';
const PHYS2 = '52:54:00:12:34:02';
const nics: VmNic[] = [
  { id: 'router', mac: ROUTER, tap: true },
  { id: 'phys1', mac: PHYS1, tap: true },
  { id: 'phys2', mac: PHYS2, tap: true },
];
const suite = vmSuite({ nics, profile: 'xdp-forwarder', name: 'frames' });
const { guarded } = suite;

/** A NIC's ifindex in the guest, from the status when the agent was first ready. */
const ifindex = (mac: string): number => {
  const i = byMac(suite.ready, mac);
  assert.is(i.state, 'configured', `${mac}: ${JSON.stringify(i)}`);
  return i.ifindex;
};
let seq = 0;
/** A test frame with a payload no other frame in this run has. */
const frame = (dst: string, src: string): Buffer => {
  seq += 1;
  const payload = Buffer.alloc(46);
  payload.write(`netagent-vm-${process.pid}-${seq}`);
  return ethFrame({ dst, src, type: ETH_P_TEST, payload });
};
const CAPTURE_MS = 4000;

for (const [nic, mac] of [['phys1', PHYS1], ['phys2', PHYS2]] as const) {
  guarded(`${nic} -> router link, tagged with VID = the guest's ifindex of ${nic}`, async () => {
    const vid = ifindex(mac);
    // Physical NICs are not promiscuous: broadcast reaches the guest whatever its MAC.
    const f = frame('ff:ff:ff:ff:ff:ff', '52:54:00:aa:00:01');
    const atRouter = await suite.vm.capture('router', CAPTURE_MS, ETH_P_TEST);
    const atOther = await suite.vm.capture(nic === 'phys1' ? 'phys2' : 'phys1', CAPTURE_MS, ETH_P_TEST);
    suite.vm.send(nic, [f]);
    const got = await atRouter();
    assert.equal(got, [hex(withTag(f, vid))], `router TAP got exactly the frame tagged with VID ${vid}`);
    assert.equal(await atOther(), [], 'the other physical NIC got nothing');
  });
}

for (const [nic, mac, other] of [['phys1', PHYS1, 'phys2'], ['phys2', PHYS2, 'phys1']] as const) {
  guarded(`router link -> ${nic} only, untagged, when the VID names ${nic}`, async () => {
    const vid = ifindex(mac);
    const f = frame('52:54:00:bb:00:02', '02:00:00:00:00:09');
    const atNic = await suite.vm.capture(nic, CAPTURE_MS, ETH_P_TEST);
    const atOther = await suite.vm.capture(other, CAPTURE_MS, ETH_P_TEST);
    suite.vm.send('router', [withTag(f, vid)]);
    assert.equal(await atNic(), [hex(f)], `${nic} TAP got the frame untagged`);
    assert.equal(await atOther(), [], `${other} got nothing`);
  });
}

guarded('router link: a VID naming no physical NIC (or the router link itself) goes nowhere', async () => {
  const caps = await Promise.all(['router', 'phys1', 'phys2'].map((n) => suite.vm.capture(n, CAPTURE_MS, ETH_P_TEST)));
  const lo = suite.ready.interfaces.find((i) => i.name === 'lo')?.ifindex ?? 1;
  suite.vm.send('router', [withTag(frame('52:54:00:bb:00:02', '02:00:00:00:00:09'), 999), withTag(frame('52:54:00:bb:00:02', '02:00:00:00:00:09'), ifindex(ROUTER)), withTag(frame('52:54:00:bb:00:02', '02:00:00:00:00:09'), lo)]);
  const [r, p1, p2] = await Promise.all(caps.map((c) => c()));
  assert.equal(p1, []);
  assert.equal(p2, []);
  assert.equal(r, [], 'nothing bounced back out of the router link');
});

guarded('a NIC hotplugged at run time forwards both ways at once; unplugged, its VID goes nowhere', async () => {
  const mac = '52:54:00:12:34:55';
  const t = Date.now();
  await suite.vm.hotplug({ id: 'hp', mac, tap: true });
  const i = (await suite.vm.waitIface(mac, (x) => x?.state === 'configured', 'hotplugged NIC configured'))!;
  console.log(`hotplugged TAP NIC configured ${Date.now() - t} ms after device_add (seen through the console)`);
  const f = frame('ff:ff:ff:ff:ff:ff', '52:54:00:aa:00:03');
  const atRouter = await suite.vm.capture('router', CAPTURE_MS, ETH_P_TEST);
  suite.vm.send('hp', [f]);
  assert.equal(await atRouter(), [hex(withTag(f, i.ifindex))], `tagged with the new NIC's ifindex ${i.ifindex}`);
  const g = frame('52:54:00:bb:00:03', '02:00:00:00:00:09');
  const atHp = await suite.vm.capture('hp', CAPTURE_MS, ETH_P_TEST);
  suite.vm.send('router', [withTag(g, i.ifindex)]);
  assert.equal(await atHp(), [hex(g)], 'the new NIC got the frame for its VID, untagged');

  await suite.vm.unplug('hp');
  await suite.vm.waitIface(mac, (x) => x === undefined, 'unplugged NIC gone');
  const caps = await Promise.all(['router', 'phys1', 'phys2'].map((n) => suite.vm.capture(n, CAPTURE_MS, ETH_P_TEST)));
  suite.vm.send('router', [withTag(frame('52:54:00:bb:00:03', '02:00:00:00:00:09'), i.ifindex)]);
  for (const got of await Promise.all(caps.map((c) => c()))) assert.equal(got, [], 'the removed VID is forwarded nowhere');
});

test.run();
