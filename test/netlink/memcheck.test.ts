// The addon under valgrind: many sockets opened and closed (from inside their
// own callback too), sockets left to the garbage collector, an overflow, and
// a throwing callback, with no invalid access and nothing definitely lost.
// Skipped where valgrind is not installed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownNetns, ROOT, uniq } from '../lib/sandbox.js';

await ownNetns(import.meta.url);

const addon = join(ROOT, 'native', 'build', 'Release', 'netlink.node');
const haveValgrind = spawnSync('valgrind', ['--version']).status === 0;
const pfx = uniq('vg');

const script = `
const a = require(${JSON.stringify(addon)});
const { execFileSync } = require('child_process');
const dump = Buffer.alloc(32);
dump.writeUInt32LE(32, 0); dump.writeUInt16LE(18, 4); dump.writeUInt16LE(0x301, 6); dump.writeUInt32LE(1, 8);
const DONE = 3;
const once = (fn) => new Promise(fn);
(async () => {
  for (let i = 0; i < 30; i++) {
    await once((res) => {
      const s = new a.NetlinkSocket(0, (code, errno, buf) => { if (!buf || buf.readUInt16LE(4) === DONE) { s.close(); s.close(); res(); } });
      s.bind(); s.send(dump); s.start();
    });
  }
  for (let i = 0; i < 30; i++) { const s = new a.NetlinkSocket(0, () => {}); s.bind(); s.start(); s.unref(); s.close(); }
  await once((res) => {
    const s = new a.NetlinkSocket(0, (code) => { if (code === 'ENOBUFS') { s.close(); res(); } });
    s.bind(); s.setsockopt(1, 33, 2048); s.addMembership(1);
    const n = 40;
    let add = '', del = '';
    for (let i = 0; i < n; i++) { add += 'link add ${pfx}a' + i + ' type veth peer name ${pfx}b' + i + '\\n'; del += 'link del ${pfx}a' + i + '\\n'; }
    execFileSync('ip', ['-batch', '-'], { input: add });
    execFileSync('ip', ['-batch', '-'], { input: del });
    s.start();
  });
  process.once('uncaughtException', (e) => console.log('uncaught:', e.message));
  await once((res) => {
    let n = 0;
    const s = new a.NetlinkSocket(0, (code, errno, buf) => {
      n++;
      if (buf && buf.readUInt16LE(4) === DONE) { s.close(); res(); return; }
      if (n === 1) throw new Error('from the callback');
    });
    s.bind(); s.send(dump); s.start();
  });
  for (let i = 0; i < 3; i++) { global.gc(); await new Promise((r) => setTimeout(r, 50)); }
  console.log('script done');
})();
`;

test('valgrind: no invalid accesses, nothing definitely lost', () => {
  if (!haveValgrind) {
    console.log('  (valgrind not installed: skipped)');
    return;
  }
  assert.ok(existsSync(addon), 'addon built');
  const dir = mkdtempSync(join(tmpdir(), 'netagent-vg-'));
  try {
    const file = join(dir, 'vg.cjs');
    writeFileSync(file, script);
    const r = spawnSync('valgrind', ['--leak-check=full', '--show-leak-kinds=definite', process.execPath, '--expose-gc', file], {
      encoding: 'utf8',
      timeout: 180_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.match(out, 'uncaught: from the callback');
    assert.match(out, 'script done');
    assert.is(r.status, 0, out.slice(-3000));
    assert.not.match(out, /Invalid (read|write|free)|Mismatched free|use of uninitialised value of size/);
    assert.match(out, /definitely lost: 0 bytes/);
    // Any other report must not come from our code.
    const blocks = out.split(/\n==\d+== \n/).filter((b) => /netlink\.node/.test(b));
    assert.equal(blocks, [], 'valgrind reports in netlink.node');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
