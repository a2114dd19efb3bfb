// What a person sees when something is wrong: BpfErrors that name the call,
// the errno, the link and what to do; libbpf's own messages in the log.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Forwarder } from '../../agent/bpf/forwarder.js';
import { BpfError, errnoName } from '../../agent/bpf/errors.js';
import { silentLogger } from '../../agent/log.js';
import { Sandbox, ROOT, ownNetns, run } from '../lib/sandbox.js';
import { ethFrame } from '../lib/frames.js';

await ownNetns(import.meta.url);

const sb = new Sandbox();
const bpfDir = join(ROOT, 'build', 'bpf');

function catchErr(fn: () => unknown): BpfError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, BpfError);
    return e as BpfError;
  }
  throw new Error('expected a BpfError');
}

test.after(() => sb.cleanup());

test('errno names', () => {
  assert.is(errnoName(22), 'EINVAL');
  assert.is(errnoName(-95), 'EOPNOTSUPP');
  assert.is(errnoName(4007), 'LIBBPF_ERRNO__VERIFY');
  assert.is(errnoName(9999), 'E9999');
});

test('a pin directory that is not bpffs is refused up front, with the mount hint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netagent-notbpffs-'));
  try {
    const e = catchErr(() => Forwarder.open({ bpfDir, pinDir: dir, log: silentLogger }));
    assert.is(e.code, 'EINVAL');
    assert.match(e.message, /is bpffs mounted at/);
    const e2 = catchErr(() => Forwarder.open({ bpfDir, pinDir: join(dir, 'nope'), log: silentLogger }));
    assert.is(e2.code, 'ENOENT');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing BPF object names the call, the path and the fix', () => {
  const e = catchErr(() => Forwarder.open({ bpfDir: '/nonexistent', pinDir: sb.bpffs(), log: silentLogger }));
  assert.is(e.call, 'bpf_object__open_file');
  assert.is(e.code, 'ENOENT');
  assert.match(e.message, /\/nonexistent\/physical\.o/);
  assert.match(e.hint ?? '', /make bpf/);
});

test('a stale pin of another shape is refused with a hint instead of being reused', () => {
  const pinDir = sb.bpffs();
  run('bpftool', ['map', 'create', join(pinDir, 'xdp_stats'), 'type', 'array', 'key', '4', 'value', '8', 'entries', '3', 'name', 'xdp_stats']);
  const e = catchErr(() => Forwarder.open({ bpfDir, pinDir, log: silentLogger }));
  assert.is(e.code, 'EINVAL');
  assert.match(e.message, /xdp_stats/);
  assert.match(e.hint ?? '', /remove .*xdp_stats/);
  Forwarder.removePins(pinDir);
  Forwarder.open({ bpfDir, pinDir, log: silentLogger }).close();
});

test('map errors name the link; libbpf messages reach the logger', () => {
  const lines: string[] = [];
  const log = pino({ level: 'trace' }, { write: (s: string) => { lines.push(s); } });
  const pinDir = sb.bpffs();
  const fw = Forwarder.open({ bpfDir, pinDir, log });
  try {
    const e = catchErr(() => fw.setRouterIface(4000)); // no such link in this namespace
    assert.is(e.code, 'EINVAL'); // what kernel 6.18 says for a devmap entry naming no link
    assert.is(e.link?.ifindex, 4000);
    assert.match(e.message, /ifindex 4000/);
    assert.match(e.hint ?? '', /no such link/);
    assert.is(catchErr(() => fw.allowEgress(5000)).code, 'ERANGE');
    assert.is(fw.query(4000), null, 'query of a link that does not exist: nothing attached');
    assert.is(fw.detach({ ifindex: 4000, name: 'ghost' }), false);
    const ghost = catchErr(() => fw.attach({ ifindex: 4000, name: 'ghost' }, 'physical', 'skb'));
    assert.is(ghost.code, 'ENODEV');
    assert.match(ghost.message, /^bpf_xdp_attach on ghost \(ifindex 4000\) failed with ENODEV/);
    assert.is(catchErr(() => fw.testRun('router', Buffer.alloc(5))).code, 'EINVAL');
    // A frame bigger than a test-run page is refused too, not a crash.
    const big = catchErr(() => fw.testRun('physical', Buffer.concat([ethFrame(), Buffer.alloc(9000)]), { live: true }));
    assert.ok(big.errno > 0);
    // Native XDP on lo fails inside the kernel; libbpf says so through its print callback.
    assert.is(catchErr(() => fw.attach({ ifindex: 1, name: 'lo' }, 'physical', 'native')).code, 'EOPNOTSUPP');
    const libbpfLines = lines.map((l) => JSON.parse(l)).filter((l) => l.libbpf);
    assert.ok(libbpfLines.some((l) => /native mode/.test(l.msg) && l.level === 40), 'libbpf warning logged at warn level');
  } finally {
    fw.close();
    Forwarder.removePins(pinDir);
  }
});

test.run();
