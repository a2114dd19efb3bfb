// `netagent events` typed at the VM's serial console, as a person at 2 a.m.
// watches it: first where every link stands, then, live, a NIC hotplugged
// through qemu (new -> pending -> configured) and a NIC someone took down
// that the agent puts back up (a repair), each one readable line with its
// local time, coloured on the terminal, no JSON.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { byMac, sleep, vmSuite, type VmNic } from '../lib/vm.js';

const ROUTER = '02:01:00:00:00:01';
const PHYS = '52:54:00:12:34:01';
const HP = '52:54:00:12:34:78';
const nics: VmNic[] = [
  { id: 'router', mac: ROUTER },
  { id: 'phys1', mac: PHYS },
];
const suite = vmSuite({ nics, profile: 'xdp-forwarder', name: 'events' });
const { guarded } = suite;

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
const T = '\\d\\d:\\d\\d:\\d\\d\\.\\d{3}';

guarded('`netagent events` at the console: where the links stand, then a hotplug and a repair as they happen', async () => {
  const vm = suite.vm;
  const before = await vm.status();
  const phys = byMac(before, PHYS).name;
  const from = vm.console.length;
  // The repair comes from a background job (the console is the watcher's);
  // the hotplug from qemu's monitor once the stream is live.
  const running = vm.cmd(`(sleep 6; ip link set ${phys} down) & timeout 25 netagent events; echo "ended $?"`, 120_000);
  const t0 = Date.now();
  while (!/-- live: /.test(vm.console.slice(from))) {
    if (Date.now() - t0 > 30_000) assert.unreachable(`no live marker on the console:\n${vm.console.slice(from)}`);
    await sleep(100);
  }
  await vm.hotplug({ id: 'hp1', mac: HP });
  const r = await running;
  console.log(`netagent events at the console:\n${stripAnsi(r.out)}`);
  assert.match(r.out, /\x1b\[/, 'coloured: the console is a terminal');
  const lines = stripAnsi(r.out).split('\n').filter(Boolean).filter((l) => !/^\[\d+\]/.test(l)); // busybox sh's job notices
  assert.not.ok(lines.some((l) => /"type"|\{"/.test(l)), 'no JSON');
  // The snapshot: one line per link as status had it, then the marker.
  const live = lines.findIndex((l) => /^-- live: /.test(l));
  assert.is(live, before.interfaces.length, lines.join('\n'));
  for (const [k, i] of before.interfaces.entries()) {
    assert.match(lines[k]!, new RegExp(`^${T} now    ${i.name}: ${i.state} role=${i.role} why=`), lines[k]);
  }
  const after = await vm.status();
  const hp = byMac(after, HP);
  assert.is(hp.state, 'configured');
  const rest = lines.slice(live + 1);
  const hpLines = rest.filter((l) => l.includes(` ${hp.name}: `));
  assert.match(hpLines[0] ?? '', new RegExp(`^${T} change ${hp.name}: new -> pending why="applying: .*attach physical`), hpLines.join('\n'));
  assert.ok(hpLines.some((l) => new RegExp(`^${T} change ${hp.name}: pending -> configured why=`).test(l)), hpLines.join('\n'));
  const physLines = rest.filter((l) => l.includes(` ${phys}: `));
  assert.match(physLines[0] ?? '', new RegExp(`^${T} repair ${phys}: set up$`), physLines.join('\n'));
  assert.ok(physLines.some((l) => new RegExp(`^${T} change ${phys}: pending -> configured`).test(l)), physLines.join('\n'));
  assert.is(byMac(after, PHYS).state, 'configured');
  assert.match(lines.at(-1)!, /^ended \d+$/);
  assert.not.ok(lines.some((l) => / missed /.test(l)), 'the console kept up: nothing dropped');
});

test.run();
