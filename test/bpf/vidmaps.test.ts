// Reading the VID maps back (what the reconciler compares with its model on
// a timer): nic_vid (a HASH) is read with one BPF_MAP_LOOKUP_BATCH call,
// router_egress (a DEVMAP_HASH, which has no batch ops) entry by entry. The
// batch read must return exactly what the per-entry walk returns: with the
// maps as the agent wrote them, and after entries were deleted, changed and
// added behind its back; and vidPairs() must show every stray entry (a
// router_egress entry nothing pairs with lets `router` send out of a link).
// Runs in a network namespace of its own (router_egress values must name
// links that exist there), with a private bpffs for the pins.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Forwarder, MAP_NAMES } from '../../agent/bpf/forwarder.js';
import * as bpf from '../../agent/bpf/libbpf.js';
import { silentLogger } from '../../agent/log.js';
import { Sandbox, ROOT, ip, ipJson, ownNetns, uniq } from '../lib/sandbox.js';

await ownNetns(import.meta.url);

const sb = new Sandbox();
const pinDir = sb.bpffs();
const fw = Forwarder.open({ bpfDir: join(ROOT, 'build', 'bpf'), pinDir, log: silentLogger });

// 40 NICs (veth ends; their peers sit alongside) and a router link, made in one batch.
const N = 40;
const names = Array.from({ length: N }, () => uniq('vm'));
const rlName = uniq('vr');
const batch = join(sb.tempDir(), 'links');
writeFileSync(batch, [...names, rlName].map((n) => `link add name ${n} type veth peer name ${n}p`).join('\n') + '\n');
ip(null, '-batch', batch);
const index = new Map<string, number>(ipJson<Array<{ ifname: string; ifindex: number }>>(null, 'link', 'show').map((l) => [l.ifname, l.ifindex]));
const NICS = names.map((n) => index.get(n)!);
const RL = index.get(rlName)!;

// Other fds on the same pinned maps: writes behind the Forwarder's back, and libbpf-level reads.
const nicVidFd = bpf.objGet(join(pinDir, MAP_NAMES.nicVid))!;
const egressFd = bpf.objGet(join(pinDir, MAP_NAMES.egress))!;

const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };
const sorted = (m: ReadonlyMap<number, number>): Array<[number, number]> => [...m].sort((a, b) => a[0] - b[0]);

/** Both reads of both maps, compared; returns them (sorted). */
function sameBothWays(): { nicVid: Array<[number, number]>; egress: Array<[number, number]> } {
  const nicVid = sorted(fw.nicVids()), egress = sorted(fw.vidEgress());
  assert.equal(nicVid, sorted(fw.nicVids({ walk: true })), 'nic_vid: batch read = walk');
  assert.equal(egress, sorted(fw.vidEgress({ walk: true })), 'router_egress: read = walk');
  return { nicVid, egress };
}

test.after(() => {
  bpf.closeFd(nicVidFd);
  bpf.closeFd(egressFd);
  fw.close();
  Forwarder.removePins(pinDir);
  sb.cleanup();
});

test('the batch call: works for nic_vid (HASH), not for router_egress (DEVMAP_HASH: the walk is the fallback)', () => {
  const keys = Buffer.alloc(4 * 4096), values = Buffer.alloc(4 * 4096);
  assert.is(bpf.mapLookupBatch(nicVidFd, keys, values, 4, 4, 4096, MAP_NAMES.nicVid), 0, 'empty map: 0 entries');
  assert.is(bpf.mapLookupBatch(egressFd, keys, values, 4, 4, 4096, MAP_NAMES.egress), null, 'devmap: unsupported');
  assert.equal(sameBothWays(), { nicVid: [], egress: [] });
});

test('as the agent writes them: batch = walk, every NIC agreed, nothing stray', () => {
  NICS.forEach((ifindex, i) => fw.setNicVid(ifindex, 100 + i));
  const { nicVid, egress } = sameBothWays();
  assert.equal(nicVid, NICS.map((ifindex, i) => [ifindex, 100 + i]));
  assert.equal(egress, NICS.map((ifindex, i) => [100 + i, ifindex]));
  const p = fw.vidPairs();
  assert.equal(sorted(p.agreed), nicVid);
  assert.equal([p.strayEgress.size, p.strayNicVid.size], [0, 0]);
  assert.equal(sorted(fw.egressVids()), nicVid);
});

test('entries deleted, changed and added behind its back: batch = walk, and vidPairs() shows each', () => {
  const [a, b, c, d, e] = NICS as [number, number, number, number, number];
  bpf.mapDelete(nicVidFd, u32(a));                 // a: tag gone, its VID 100 still leads to it
  bpf.mapDelete(egressFd, u32(101));               // b: its VID no longer leads back
  bpf.mapUpdate(nicVidFd, u32(c), u32(3999));      // c: tag changed to a VID that leads nowhere (its VID 102 still leads to it)
  bpf.mapUpdate(egressFd, u32(103), u32(e));       // d's VID now leads to e
  bpf.mapUpdate(egressFd, u32(3000), u32(e));      // stray: a second VID out of e, beside e's own pair
  bpf.mapUpdate(egressFd, u32(3001), u32(RL));     // stray: a VID out of the router link
  bpf.mapUpdate(nicVidFd, u32(RL), u32(4000));     // stray tag on a link that is no NIC
  const { nicVid, egress } = sameBothWays();
  assert.is(nicVid.length, N - 1 + 1);
  assert.is(egress.length, N - 1 + 2);
  const p = fw.vidPairs();
  const broken = new Set([a, b, c, d]);
  assert.equal(sorted(p.agreed), NICS.map((ifindex, i) => [ifindex, 100 + i] as [number, number]).filter(([i]) => !broken.has(i)));
  assert.equal(sorted(p.strayEgress), [[100, a], [102, c], [103, e], [3000, e], [3001, RL]]);
  assert.equal(sorted(p.strayNicVid), [[b, 101], [c, 3999], [d, 103], [RL, 4000]].sort((x, y) => x[0] - y[0]));
  assert.equal(sorted(fw.egressVids()), sorted(p.agreed), 'egressVids() is the agreed pairs');
});

test('removeStrayEgress deletes a stray entry, never a NIC\'s own', () => {
  const e = NICS[4]!;
  assert.not.ok(fw.removeStrayEgress(104, e), 'e\'s own VID stays');
  assert.not.ok(fw.removeStrayEgress(3000, RL), 'not what the entry leads to: left alone');
  assert.ok(fw.removeStrayEgress(3000, e));
  assert.ok(fw.removeStrayEgress(3001, RL));
  assert.not.ok(fw.removeStrayEgress(3001, RL), 'gone already');
  assert.equal(sorted(fw.vidPairs().strayEgress), [[100, NICS[0]!], [102, NICS[2]!], [103, e]]);
  assert.is(fw.vidEgress().get(104), e);
});

test('a full nic_vid (max_entries, 4096): batch = walk; and a read into less room returns part of it', () => {
  for (const [ifindex] of fw.nicVids()) bpf.mapDelete(nicVidFd, u32(ifindex));
  // nic_vid is a plain HASH: any keys will do (not links), as many as it holds.
  for (let i = 0; i < 4096; i++) bpf.mapUpdate(nicVidFd, u32(100_000 + i * 7), u32(1 + (i % 4094)));
  const { nicVid } = sameBothWays();
  assert.is(nicVid.length, 4096);
  assert.equal(nicVid[0], [100_000, 1]);
  const keys = Buffer.alloc(4 * 4096), values = Buffer.alloc(4 * 4096);
  const n = bpf.mapLookupBatch(nicVidFd, keys, values, 4, 4, 1000)!;
  assert.ok(n > 0 && n <= 1000, `${n} entries`);
  const all = new Map(nicVid);
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const k = keys.readUInt32LE(4 * i);
    assert.is(values.readUInt32LE(4 * i), all.get(k), `entry ${k}`);
    seen.add(k);
  }
  assert.is(seen.size, n, 'no key twice');
  for (const [k] of nicVid) bpf.mapDelete(nicVidFd, u32(k));
  assert.equal(sameBothWays().nicVid, []);
});

test.run();
