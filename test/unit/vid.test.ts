// The VID allocator (agent/core/vid.ts): pure, so plain unit tests.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chooseVid, checkVidPins, pinFor, VID_FIRST, VID_LAST } from '../../agent/core/vid.js';

const nic = (ifindex: number, name = `eth${ifindex}`, mac: string | null = null) => ({ ifindex, name, mac });
const none = new Map<number, number>();

test('default: VID = ifindex when it is 1..4094 and free', () => {
  assert.equal(chooseVid(nic(5), none), { vid: 5, why: 'ifindex' });
  assert.equal(chooseVid(nic(4094), none), { vid: 4094, why: 'ifindex' });
});

test('ifindex 4095 and above: the highest free VID (never 0 or 4095), unique', () => {
  assert.equal(chooseVid(nic(4095), none), { vid: 4094, why: 'free' });
  assert.equal(chooseVid(nic(5000), new Map([[4999, 4094]])), { vid: 4093, why: 'free' });
  const taken = new Map<number, number>();
  for (let i = 0; i < 10; i++) {
    const c = chooseVid(nic(5000 + i), taken)!;
    assert.ok(c.vid >= VID_FIRST && c.vid <= VID_LAST);
    assert.not.ok([...taken.values()].includes(c.vid));
    taken.set(5000 + i, c.vid);
  }
});

test('ifindex taken by another NIC: a free VID instead', () => {
  assert.equal(chooseVid(nic(7), new Map([[6000, 7]])), { vid: 4094, why: 'free' });
});

test('kept: a NIC keeps the VID it has (stable across restarts), even when its ifindex became free', () => {
  assert.equal(chooseVid(nic(5000), new Map([[5000, 4000]])), { vid: 4000, why: 'kept' });
  assert.equal(chooseVid(nic(5), new Map([[5, 4000]])), { vid: 4000, why: 'kept' });
});

test('pins: by MAC (any case) before exact name before patterns in order', () => {
  const pins = { 'wl*': 200, 'enp?s0': 10, 'enp1s0': 11, '52:54:00:AA:00:01': 3 };
  assert.equal(pinFor(nic(9, 'enp1s0', '52:54:00:aa:00:01'), pins), { key: '52:54:00:AA:00:01', vid: 3 });
  assert.equal(pinFor(nic(9, 'enp1s0'), pins), { key: 'enp1s0', vid: 11 });
  assert.equal(pinFor(nic(9, 'enp2s0'), pins), { key: 'enp?s0', vid: 10 });
  assert.equal(pinFor(nic(9, 'wlan0'), pins), { key: 'wl*', vid: 200 });
  assert.is(pinFor(nic(9, 'eth0'), pins), null);
  assert.is(pinFor(nic(9, 'xenp1s0'), pins), null, 'patterns match whole names');
  assert.equal(chooseVid(nic(9, 'wlan0'), none, pins), { vid: 200, why: 'pin' });
  assert.equal(chooseVid(nic(5000, 'enp1s0', '52:54:00:aa:00:01'), new Map([[5000, 4000]]), pins), { vid: 3, why: 'pin' }, 'a pin beats the kept VID');
});

test('a pinned VID is reserved: no other NIC gets it, by ifindex, kept or free', () => {
  const pins = { wired0: 3, other: 4094 };
  assert.equal(chooseVid(nic(3, 'wlan0'), none, pins), { vid: 4093, why: 'free' });
  assert.equal(chooseVid(nic(8, 'wlan0'), new Map([[8, 3]]), pins), { vid: 8, why: 'ifindex' }, 'moves off a VID a pin now claims');
});

test('a pin held by another NIC: not stolen, reported; the NIC gets a VID by the other rules', () => {
  assert.equal(chooseVid(nic(9, 'wired0'), new Map([[3, 3]]), { wired0: 3 }), { vid: 9, why: 'ifindex', pinConflict: { vid: 3, heldBy: 3 } });
});

test('all VIDs taken: null', () => {
  const all = new Map<number, number>();
  for (let v = VID_FIRST; v <= VID_LAST; v++) all.set(10_000 + v, v);
  assert.is(chooseVid(nic(5), all), null);
  assert.equal(chooseVid(nic(10_001), all), { vid: 1, why: 'kept' });
});

test('checkVidPins: range, duplicates', () => {
  assert.equal(checkVidPins({ a: 1, b: 4094 }), []);
  assert.is(checkVidPins({ a: 0 }).length, 1);
  assert.is(checkVidPins({ a: 4095 }).length, 1);
  assert.is(checkVidPins({ a: 1.5 }).length, 1);
  assert.match(checkVidPins({ a: 5, b: 5 })[0]!, /both name VID 5/);
});

test.run();
