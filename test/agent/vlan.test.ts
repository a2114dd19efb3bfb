// Tagged traffic from a LAN (SPEC): a LAN's own 802.1Q tags arrive at the
// router INSIDE ours, whole, also at full size; the agent runs the
// xdp-forwarder profile in this namespace (the "net VM").
//
// A NIC that strips tags on receive (rx-vlan-offload on) hands XDP the frame
// untagged with the tag in metadata; the kernel re-inserts that tag OUTSIDE
// ours on the way to the router. A veth does not strip by itself: it hands
// its XDP whatever its peer handed over, and ignores its own rx-vlan-offload.
// So the LAN side plays the stripping hardware: the LAN is a switch (a bridge,
// whose receive path moves a tag into metadata) whose port is the NIC's peer,
// and that peer hands the tag over in metadata (its tx-vlan-offload) exactly
// when the NIC's rx-vlan-offload is on, as `ethtool -k` reads it from the
// kernel just before each frame is sent. Whatever the agent does to the NIC's
// feature thus decides what XDP sees, as it would on a real NIC.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, ROOT, ownNetns, ip, ipJson, inNs, run, uniq } from '../lib/sandbox.js';
import { AgentProc, sleep } from '../lib/agent.js';
import { ethFrame, withTag, hex, ETH_P_TEST } from '../lib/frames.js';

await ownNetns(import.meta.url);
const PKT = join(ROOT, 'test', 'lib', 'pkt.py');
const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const LAN_VID = 7;

const sb = new Sandbox();
const pins = sb.bpffs();
const rtr = sb.netns('rtr');
const rlink = sb.veth(null, rtr, { macA: '02:01:00:00:00:01', macB: '02:bb:00:00:00:01' });
// The router's side must take two tags on a full-size frame: that is the router's business, not the agent's.
ip(rtr, 'link', 'set', rlink.b, 'mtu', '1504');

interface Lan { ns: string; nic: string; port: string; host: string }
/**
 * A NIC whose LAN is a switch: frames sent on `host` enter the switch and
 * leave through `port`, the NIC's peer. Everything on the LAN side is made in
 * the LAN's namespace directly: a link born here, even for a moment, is a NIC
 * to the agent.
 */
function lanBehindSwitch(mac: string): Lan {
  const ns = sb.netns('lan');
  const nic = uniq('nic'), port = uniq('port'), host = uniq('host'), hport = uniq('hport'), br = uniq('sw');
  ip(null, 'link', 'add', nic, 'address', mac, 'type', 'veth', 'peer', 'name', port, 'netns', ns);
  ip(ns, 'link', 'add', host, 'type', 'veth', 'peer', 'name', hport);
  ip(ns, 'link', 'add', br, 'type', 'bridge');
  for (const l of [port, hport]) ip(ns, 'link', 'set', l, 'master', br);
  for (const l of [br, port, host, hport]) ip(ns, 'link', 'set', l, 'up');
  ip(null, 'link', 'set', nic, 'up');
  return { ns, nic, port, host };
}

/** `ethtool -k` of one feature, in this namespace: 'on' or 'off'. */
function shown(link: string, name: string): string {
  const line = run('ethtool', ['-k', link]).split('\n').find((l) => l.trim().startsWith(`${name}:`));
  if (!line) throw new Error(`ethtool -k ${link} shows no ${name}`);
  return /:\s+(on|off)/.exec(line)![1]!;
}

/** The stripping hardware: the tag reaches the NIC in metadata iff the NIC's rx-vlan-offload is on now. */
function stripAsTheNicSays(lan: Lan): boolean {
  const strips = shown(lan.nic, 'rx-vlan-offload') === 'on';
  run('nsenter', inNs(lan.ns, ['ethtool', '-K', lan.port, 'txvlan', strips ? 'on' : 'off']).slice(1));
  return strips;
}

/** Sends `frames` into the LAN, returns the 0x88b5 frames the router saw (hex, tags as on the wire). */
async function toRouter(lan: Lan, frames: Buffer[], ms = 1500): Promise<string[]> {
  const strips = stripAsTheNicSays(lan);
  const child = sb.spawn(inNs(rtr, [PY, PKT, 'capture', rlink.b, String(ms), `0x${ETH_P_TEST.toString(16)}`]));
  let out = '', err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const done = new Promise<string[]>((resolve, reject) => {
    child.once('exit', (code) => (code === 0 ? resolve(out.split('\n').slice(1).filter(Boolean)) : reject(new Error(`capture on ${rlink.b} exited ${code}: ${err}`))));
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    child.once('exit', () => reject(new Error(`capture on ${rlink.b} not ready: ${err}`)));
  });
  run('nsenter', inNs(lan.ns, [PY, PKT, 'send', lan.host, ...frames.map(hex)]).slice(1));
  const seen = await done;
  if (!seen.length) console.log(`    (nothing at the router; the NIC ${strips ? 'stripped' : 'kept'} the LAN tag)`);
  return seen;
}

/** The tags of a captured frame, outermost first, as "VID n" (TPID 0x8100) or "0xTPID/VID n". */
function tags(h: string): string[] {
  const b = Buffer.from(h, 'hex');
  const out: string[] = [];
  for (let off = 12; off + 4 <= b.length; off += 4) {
    const tpid = b.readUInt16BE(off);
    if (tpid !== 0x8100 && tpid !== 0x88a8) break;
    const vid = b.readUInt16BE(off + 2) & 0xfff;
    out.push(tpid === 0x8100 ? `VID ${vid}` : `0x${tpid.toString(16)}/VID ${vid}`);
  }
  return out;
}

type Iface = ReturnType<AgentProc['status']>['interfaces'][number];
/** The VID the agent gave a NIC: `vid` in status where it shows, else the default (its ifindex). */
const vidOf = (i: Iface): number => (i as Iface & { vid?: number }).vid ?? i.ifindex;
const linkMtu = (name: string): number => (ipJson(null, 'link', 'show', 'dev', name)[0] as { mtu: number }).mtu;

const lanA = lanBehindSwitch('52:54:00:aa:00:01');
const agent = new AgentProc(sb, null, pins);
agent.writeConfig({ profile: 'xdp-forwarder' });
const lanFrame = (payload: number) => withTag(ethFrame({ dst: '02:00:00:00:00:02', src: '02:aa:00:00:00:07', payload }), LAN_VID);

test('the NIC strips tags before the agent starts (veth default), and the agent configures it', async () => {
  assert.is(shown(lanA.nic, 'rx-vlan-offload'), 'on');
  await agent.start();
  const i = agent.iface(lanA.nic)!;
  assert.is(i.role, 'physical');
  assert.is(i.state, 'configured', JSON.stringify(i));
  assert.is(i.error, null);
  assert.equal(i.xdp && i.xdp.program, 'physical');
});

test('a LAN frame tagged VID 7 arrives at the router as VID <NIC>, VID 7: ours outside, the LAN tag inside, whole', async () => {
  const i = agent.iface(lanA.nic)!;
  const f = lanFrame(46);
  const seen = await toRouter(lanA, [f]);
  assert.is(seen.length, 1, `one frame at the router, got ${seen.length}`);
  assert.equal(tags(seen[0]!), [`VID ${vidOf(i)}`, `VID ${LAN_VID}`], `tags at the router, outermost first: ${tags(seen[0]!).join(', ')} (NIC ${lanA.nic} has VID ${vidOf(i)})`);
  assert.is(seen[0], hex(withTag(f, vidOf(i))));
});

test('the agent turned rx-vlan-offload off on the NIC (what ethtool -k says)', () => {
  assert.is(shown(lanA.nic, 'rx-vlan-offload'), 'off');
});

test('a full-size tagged LAN frame (1518 bytes at MTU 1500) reaches the router whole: the router link leaves room for two tags', async () => {
  assert.is(linkMtu(lanA.nic), 1500);
  assert.ok(linkMtu(rlink.a) >= 1504, `router link MTU ${linkMtu(rlink.a)}, must be >= largest NIC MTU + 4 = 1504`);
  const f = lanFrame(1500);
  assert.is(f.length, 1518);
  const seen = await toRouter(lanA, [f]);
  assert.is(seen.length, 1, `one frame at the router, got ${seen.length}`);
  const vid = vidOf(agent.iface(lanA.nic)!);
  assert.equal(tags(seen[0]!), [`VID ${vid}`, `VID ${LAN_VID}`], `tags at the router, outermost first: ${tags(seen[0]!).join(', ')}`);
  assert.is(seen[0]!.length / 2, 1522);
  assert.is(seen[0], hex(withTag(f, vid)));
});

test('a NIC plugged in later gets the same: offload off, LAN tag inside ours', async () => {
  // A new veth strips (as the first test saw); the agent may act before we could look.
  const lanB = lanBehindSwitch('52:54:00:bb:00:01');
  await agent.waitFor((s) => s.interfaces.some((x) => x.name === lanB.nic && x.state === 'configured'), 'hotplugged NIC configured');
  const i = agent.iface(lanB.nic)!;
  assert.is(i.error, null);
  assert.is(shown(lanB.nic, 'rx-vlan-offload'), 'off');
  const seen = await toRouter(lanB, [lanFrame(46)]);
  assert.is(seen.length, 1);
  assert.equal(tags(seen[0]!), [`VID ${vidOf(i)}`, `VID ${LAN_VID}`], `tags at the router, outermost first: ${tags(seen[0]!).join(', ')}`);
});

test('someone turns rx-vlan-offload back on (ethtool -K): it is off again within 2 s, and tagged frames still arrive whole', async () => {
  run('ethtool', ['-K', lanA.nic, 'rxvlan', 'on']); // this file runs in its own namespace, as the agent
  const t0 = Date.now();
  while (shown(lanA.nic, 'rx-vlan-offload') !== 'off' && Date.now() - t0 < 2000) await sleep(20);
  assert.is(shown(lanA.nic, 'rx-vlan-offload'), 'off', 'turned off again');
  const i = agent.iface(lanA.nic)!;
  const seen = await toRouter(lanA, [lanFrame(46)]);
  assert.equal(tags(seen[0]!), [`VID ${vidOf(i)}`, `VID ${LAN_VID}`], `tags at the router, outermost first: ${tags(seen[0]!).join(', ')}`);
});

test('after a restart (NICs adopted with `physical` on them): offload turned on while the agent was down, and again after, is turned off', async () => {
  await agent.stop('SIGKILL');
  run('ethtool', ['-K', lanA.nic, 'rxvlan', 'on']);
  await agent.start();
  const off = async (what: string) => {
    const t0 = Date.now();
    while (shown(lanA.nic, 'rx-vlan-offload') !== 'off' && Date.now() - t0 < 2000) await sleep(20);
    assert.is(shown(lanA.nic, 'rx-vlan-offload'), 'off', what);
  };
  await off('found on at start: off again');
  run('ethtool', ['-K', lanA.nic, 'rxvlan', 'on']);
  await off('turned on after the restart: off again');
});

test('status --json: every NIC configured, no error', () => {
  const s = agent.status();
  assert.ok(s.ready);
  const nics = s.interfaces.filter((i) => i.role === 'physical');
  assert.is(nics.length, 2);
  for (const i of nics) {
    assert.is(i.state, 'configured', JSON.stringify(i));
    assert.is(i.error, null);
  }
  assert.is(s.lastError ?? null, null);
});

test.after(async () => {
  await agent.stop('SIGTERM');
  sb.cleanup();
});
test.run();
