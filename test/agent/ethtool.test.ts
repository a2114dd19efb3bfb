// agent/ethtool.ts against real links in a namespace of its own: what it reads
// and sets is what `ethtool -k` shows, and every refusal names the link, what
// was attempted and why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync } from 'node:fs';
import { Sandbox, ownNetns, run } from '../lib/sandbox.js';
import { EthtoolError, feature, rxVlanOffload, setFeature, setRxVlanOffload } from '../../agent/ethtool.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();
const v = sb.veth(null, null);

/** What `ethtool -k` says of one feature: [state, fixed]. */
function shown(link: string, name: string): [string, boolean] {
  const line = run('ethtool', ['-k', link]).split('\n').find((l) => l.trim().startsWith(`${name}:`));
  if (!line) throw new Error(`ethtool -k ${link} shows no ${name}`);
  const m = /:\s+(on|off)(.*)$/.exec(line)!;
  return [m[1]!, m[2]!.includes('[fixed]')];
}

function thrown(fn: () => unknown): EthtoolError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, EthtoolError);
    return e as EthtoolError;
  }
  throw new Error('expected an EthtoolError');
}

test('a veth strips tags by default, and we read it as ethtool does', () => {
  assert.equal(shown(v.a, 'rx-vlan-offload'), ['on', false]);
  assert.is(rxVlanOffload(v.a), true);
  assert.equal(feature(v.a, 'rx-vlan-hw-parse'), { active: true, requested: true, changeable: true });
});

test('turning rx-vlan-offload off and on shows in ethtool -k; repeating is harmless', () => {
  setRxVlanOffload(v.a, false);
  assert.equal(shown(v.a, 'rx-vlan-offload'), ['off', false]);
  assert.is(rxVlanOffload(v.a), false);
  setRxVlanOffload(v.a, false);
  assert.equal(shown(v.a, 'rx-vlan-offload'), ['off', false]);
  // Only that feature moved: the peer and the rest are as they were.
  assert.equal(shown(v.b, 'rx-vlan-offload'), ['on', false]);
  assert.equal(shown(v.a, 'tx-vlan-offload'), ['on', false]);
  setRxVlanOffload(v.a, true);
  assert.equal(shown(v.a, 'rx-vlan-offload'), ['on', false]);
});

test('a change made by someone else is read from the kernel, not remembered', () => {
  run('ethtool', ['-K', v.a, 'rxvlan', 'off']);
  assert.is(rxVlanOffload(v.a), false);
  run('ethtool', ['-K', v.a, 'rxvlan', 'on']);
  assert.is(rxVlanOffload(v.a), true);
});

test('a link without the feature (lo) gives null; asking it off is a no-op, on is refused as fixed', () => {
  assert.equal(shown('lo', 'rx-vlan-offload'), ['off', true]);
  assert.is(rxVlanOffload('lo'), null);
  setRxVlanOffload('lo', false);
  const e = thrown(() => setRxVlanOffload('lo', true));
  assert.is(e.reason, 'fixed');
  assert.is(e.link, 'lo');
  assert.match(e.message, /^lo: cannot turn rx-vlan-offload \(rx-vlan-hw-parse\) on: the driver has it fixed off/);
});

test('a feature fixed on: the error says it is fixed and what turning it off would have been for', () => {
  assert.equal(shown('lo', 'vlan-challenged'), ['on', true]);
  const e = thrown(() => setFeature('lo', 'vlan-challenged', false));
  assert.is(e.reason, 'fixed');
  assert.match(e.message, /^lo: cannot turn vlan-challenged off: the driver has it fixed on \(ethtool -k lo shows \[fixed\]\); use a NIC/);
});

test('a driver that declines a change: reason refused, the feature unchanged', () => {
  // TSO needs checksum offload: with tx checksumming off the core drops TSO
  // again however often it is asked for (netdev_fix_features), while the
  // ioctl itself succeeds. A pair of its own, so the others keep their defaults.
  const w = sb.veth(null, null);
  setFeature(w.a, 'tx-tcp-segmentation', false);
  setFeature(w.a, 'tx-checksum-ip-generic', false);
  const e = thrown(() => setFeature(w.a, 'tx-tcp-segmentation', true));
  assert.is(e.reason, 'refused');
  assert.is(e.link, w.a);
  assert.match(e.message, new RegExp(`^${w.a}: cannot turn tx-tcp-segmentation on: the driver kept it off .*retry with ethtool -K ${w.a} tx-tcp-segmentation on to see why$`));
  assert.equal(shown(w.a, 'tx-tcp-segmentation'), ['off', false]);
  setFeature(w.a, 'tx-checksum-ip-generic', true);
  setFeature(w.a, 'tx-tcp-segmentation', true);
  assert.equal(shown(w.a, 'tx-tcp-segmentation'), ['on', false]);
});

test('a link that is not there: ENODEV, named', () => {
  const e = thrown(() => rxVlanOffload('nosuchlink0'));
  assert.is(e.code, 'ENODEV');
  assert.is(e.reason, 'errno');
  assert.match(e.message, /^nosuchlink0: cannot read its features: ioctl\(SIOCETHTOOL\) failed with ENODEV: no such link/);
  assert.match(thrown(() => rxVlanOffload('a-name-far-too-long')).message, /is not a link name/);
});

test('one socket for everything: no fd per call, no process', () => {
  const fds = () => readdirSync('/proc/self/fd').length;
  rxVlanOffload(v.a);
  const before = fds();
  const t0 = performance.now();
  for (let i = 0; i < 500; i++) {
    setRxVlanOffload(v.a, i % 2 === 1);
    rxVlanOffload(v.a);
  }
  const ms = performance.now() - t0;
  assert.is(fds(), before);
  assert.is(rxVlanOffload(v.a), true);
  console.log(`    500 set+read pairs in ${ms.toFixed(0)} ms`);
});

test.after(() => sb.cleanup());
test.run();
