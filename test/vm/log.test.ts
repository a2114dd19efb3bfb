// `netagent log` at the VM's serial console, as a person at 2 a.m. reads it:
// the agent's records from s6-log's files, one short line each with its time
// and level and no raw JSON, coloured on the terminal; `netagent-log` follows.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { byMac, vmSuite, type VmNic } from '../lib/vm.js';

const ROUTER = '02:01:00:00:00:01';
const nics: VmNic[] = [
  { id: 'router', mac: ROUTER },
  { id: 'phys1', mac: '52:54:00:12:34:01' },
  { id: 'phys2', mac: '52:54:00:12:34:02' },
];
const suite = vmSuite({ nics, profile: 'xdp-forwarder', name: 'log' });
const { guarded } = suite;

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
const READABLE = /^(\d\d:\d\d:\d\d\.\d{3}) (trace|debug|info |warn |error|fatal) (.+)$/;

guarded('`netagent log -n 5` typed at the console: 5 readable lines with times and levels, no JSON', async () => {
  const raw = await suite.vm.sh('netagent log -n 5');
  console.log(`netagent log -n 5 at the console:\n${stripAnsi(raw)}`);
  assert.match(raw, /\x1b\[/, 'coloured: the console is a terminal');
  const lines = stripAnsi(raw).split('\n').filter(Boolean);
  assert.is(lines.length, 5, raw);
  for (const l of lines) {
    assert.match(l, READABLE, l);
    assert.not.match(l, /"level"|"msg"|"time"|\{"/, `no raw JSON: ${l}`);
  }
  // The same records as in s6-log's file (the agent may have logged more since: look a little further back).
  const recs = (await suite.vm.sh('tail -n 30 /run/log/netagent/current')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; level: number });
  const msgs = recs.map((r) => r.msg);
  const at = msgs.findIndex((_, i) => lines.every((l, j) => READABLE.exec(l)![3]!.includes(msgs[i + j] ?? '\0')));
  assert.ok(at >= 0, `the 5 lines are 5 consecutive records of /run/log/netagent/current:\n${lines.join('\n')}\nvs\n${msgs.join('\n')}`);
  const words = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  lines.forEach((l, j) => assert.is(READABLE.exec(l)![2]!.trim(), words[recs[at + j]!.level / 10 - 1]));
});

guarded('--link shows one link only; --level warn leaves the info records out', async () => {
  const name = byMac(await suite.vm.status(), ROUTER).name;
  const out = stripAnsi(await suite.vm.sh(`netagent log --link ${name} -n 50`)).split('\n').filter(Boolean);
  assert.ok(out.length >= 2, out.join('\n'));
  for (const l of out) assert.match(l, new RegExp(`^\\S+ \\w+ +${name}: `), l);
  assert.ok(out.some((l) => / link state \S+ -> configured /.test(l)), out.join('\n'));
  const warn = stripAnsi(await suite.vm.sh('netagent log --level warn -n all')).split('\n').filter(Boolean);
  for (const l of warn) assert.not.match(l, / (info |debug|trace) /, l);
});

guarded('`netagent-log` is `netagent log -f`: the last records, then it keeps following', async () => {
  // busybox timeout sends SIGTERM after 8 s: the follower ends quietly.
  const r = await suite.vm.cmd('timeout 8 netagent-log -n 2; echo "ended $?"', 60_000);
  const lines = stripAnsi(r.out).split('\n').filter(Boolean);
  assert.is(lines.length, 3, r.out);
  assert.match(lines[0]!, READABLE);
  assert.match(lines[1]!, READABLE);
  assert.match(lines[2]!, /^ended /);
  assert.match(await suite.vm.sh('netagent help log'), /-f, --follow/);
});

test.run();
