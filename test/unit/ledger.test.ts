// The ledger of what netagent changed: a value is noted once (the first one
// we replaced), forgotten when restored or when its link goes, outlives the
// process in its file, and a damaged file is not fatal. Earlier route
// protocols are kept until nothing carries them, also across a restart with
// a new number.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../agent/daemon/ledger.js';
import { Model } from '../../agent/daemon/model.js';

const tick = () => new Promise((r) => setImmediate(r));
const dir = mkdtempSync(join(tmpdir(), 'netagent-ledger-'));
const file = (name: string) => join(dir, name);

test('the first value replaced is the one kept; a restore forgets it; a gone link takes its record along', async () => {
  const l = new Ledger(file('a.json'), 199);
  assert.ok(l.record(2, { mtu: 1500 }));
  assert.not.ok(l.record(2, { mtu: 1504 }), 'an MTU we set ourselves is not what to restore');
  l.record(2, { up: false, promisc: false });
  l.record(3, { rxVlanOffload: true });
  assert.equal(l.originals().get(2), { mtu: 1500, up: false, promisc: false });
  l.release(2, ['mtu', 'promisc']);
  assert.equal(l.originals().get(2), { up: false });
  l.forget(3);
  assert.is(l.originals().has(3), false);
  await tick();
  const again = new Ledger(file('a.json'), 199);
  assert.equal([...again.originals()], [[2, { up: false }]], 'read back by the next run');
  again.keepOnly((i) => i !== 2);
  assert.is(again.originals().size, 0, 'links absent from the first dump are dropped');
});

test('route protocols: the old number is former until nothing carries it, across a restart with another number', async () => {
  const l = new Ledger(file('b.json'), 199);
  l.setProtocol(200);
  assert.equal([...l.formerProtocols()], [199]);
  await tick();
  // The agent restarts with 201 in its config: 200 (in force when written) and 199 are both former.
  const r = new Ledger(file('b.json'), 201);
  assert.equal([...r.formerProtocols()].sort(), [199, 200]);
  r.dropFormer(199);
  r.setProtocol(200); // back to an earlier number: it is current again, not former
  assert.equal([...r.formerProtocols()], [201]);
  await tick();
  assert.equal(JSON.parse(readFileSync(file('b.json'), 'utf8')), { version: 1, protocol: 200, former: [201], links: {} });
});

test('a damaged or foreign file starts a new ledger; values of the wrong type are skipped', () => {
  writeFileSync(file('c.json'), '{"version":1,"protocol":199,"former":[],"links":');
  assert.is(new Ledger(file('c.json'), 199).originals().size, 0);
  writeFileSync(file('d.json'), JSON.stringify({ version: 1, protocol: 'x', former: [0, 300, 77], links: { 2: { mtu: -1, up: 'yes', promisc: true }, abc: { up: true } } }));
  const l = new Ledger(file('d.json'), 199);
  assert.equal([...l.originals()], [[2, { promisc: true }]]);
  assert.equal([...l.formerProtocols()], [77]);
});

test('a journal: a change appends a short line, a torn last line is skipped, it is compacted as it grows and at exit', async () => {
  const path = file('j.json');
  const l = new Ledger(path, 199);
  l.record(2, { up: false });
  await tick(); // the first write of a run is a snapshot
  const snapshot = readFileSync(path, 'utf8');
  l.record(3, { up: false, mtu: 1500 });
  await tick();
  l.release(3, ['mtu']);
  l.setProtocol(200);
  await tick();
  const text = readFileSync(path, 'utf8');
  assert.ok(text.startsWith(snapshot), 'appended to');
  assert.is(text.split('\n').length - snapshot.split('\n').length, 3, 'one line per change (the two in one tick: one per link and one for the numbers)');
  assert.ok(text.length - snapshot.length < 150, `short lines: ${text.slice(snapshot.length)}`);
  writeFileSync(path, `${text}{"link":2,"origi`); // a crash mid-write
  const back = new Ledger(path, 200);
  assert.equal([...back.originals()], [[2, { up: false }], [3, { up: false }]]);
  assert.equal([...back.formerProtocols()], [199]);
  // Growing far past what it describes: rewritten whole.
  for (let k = 0; k < 100; k++) {
    back.record(9, { up: true });
    back.release(9, ['up']);
    await tick();
  }
  assert.ok(readFileSync(path, 'utf8').split('\n').length < 70, 'compacted');
  back.flush();
  assert.equal(JSON.parse(readFileSync(path, 'utf8')), { version: 1, protocol: 200, former: [199], links: { 2: { up: false }, 3: { up: false } } }, 'one snapshot at exit');
});

test('the model replans a link whose ledger changed, even when the restore changed nothing else (no stuck restore)', () => {
  const m = new Model(199, () => null);
  const l = { ifindex: 2, name: 'rl', mac: '02:01:00:00:00:01', family: 0, flags: 0, up: true, running: true, promisc: false, mtu: 1500, operstate: 'UP', kind: null, master: null, xdp: { attached: 'none' as const, progId: 0, skbProgId: 0, drvProgId: 0, hwProgId: 0 } };
  m.onLink('new', l);
  m.ledger.record(2, { mtu: 1500 });
  m.takeDirty();
  m.applied({ kind: 'link', ifindex: 2, name: 'rl', mtu: 1500, restore: true }, undefined);
  assert.ok(m.takeDirty().has(2), 'marked');
  assert.is(m.ledger.originals().has(2), false, 'forgotten');
});

test('a journal line that is valid JSON but not an object is skipped, not fatal', () => {
  writeFileSync(file('k.json'), '{"version":1,"protocol":199,"former":[],"links":{"2":{"up":false}}}\nnull\n7\n{"link":3,"originals":{"mtu":1500}}\n');
  assert.equal([...new Ledger(file('k.json'), 199).originals()], [[2, { up: false }], [3, { mtu: 1500 }]]);
});

test('an unwritable place is reported, not fatal', async () => {
  const l = new Ledger(join(dir, 'missing', 'e.json'), 199);
  l.record(2, { up: false });
  await tick();
  assert.match(l.problem ?? '', /could not write .*e\.json/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
