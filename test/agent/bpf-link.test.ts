// A NIC whose XDP hook another tool holds through a bpf_link (BPF_LINK_CREATE,
// as libbpf's bpf_program__attach_xdp makes it: the kernel refuses to replace
// or detach it over netlink, EBUSY), with the agent on its default timing:
// - the NIC is `failed`, and its error says a bpf_link holds it and what to
//   do; it is never put in the egress allowlist, however often it is retried;
// - the agent's other NICs are configured and allowlisted, and forward;
// - once the bpf_link goes (its pin removed: the tool is gone; or detached
//   as the error says), the agent recovers by itself on its retry backoff:
//   our `physical` is attached, the NIC is allowlisted and forwards.
// Two NICs are held: one by a link made as bpf_program__attach_xdp makes it
// (no mode flag: native on a veth, while the agent wants skb), one by a link
// in skb mode (the very hook the agent wants).
// - a NIC taken by a bpf_link while the agent was down loses the allowlist
//   entry the earlier run left, and gets it back once released.
// What counts is the kernel: `ip -d link`, bpftool on the links and on the
// agent's pinned maps, frames crossing; the status is checked against it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, rmSync } from 'node:fs';
import { Sandbox, ownNetns, ip, ipJson, run, uniq } from '../lib/sandbox.js';
import { AgentProc, exchange, sleep, type AgentStatus } from '../lib/agent.js';
import { holdXdp } from '../lib/xdp-link.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();
const pins = sb.bpffs(); // the agent's
const theirs = sb.bpffs(); // the other tool's
const rtr = sb.netns('rtr');
const lanOk = sb.netns('lan');
const lanA = sb.netns('lan');
const lanB = sb.netns('lan');
const ok = sb.veth(null, lanOk, { macA: '52:54:00:0b:00:01' });
const heldA = sb.veth(null, lanA, { macA: '52:54:00:0b:00:02' });
const heldB = sb.veth(null, lanB, { macA: '52:54:00:0b:00:03' });
const rlink = sb.veth(null, rtr, { macA: '02:01:00:00:00:01' });
const pinA = `${theirs}/held-a`;
const pinB = `${theirs}/held-b`;
let agent = new AgentProc(sb, null, pins);
agent.writeConfig({ profile: 'xdp-forwarder' }); // defaults otherwise: xdpMode skb, resync 60 s

// ---- the kernel's view
interface IpXdp { mode: number; prog?: { id: number; name: string } }
interface IpLink { ifname: string; ifindex: number; flags: string[]; xdp?: IpXdp }
const ipLink = (name: string): IpLink => ipJson<IpLink[]>(null, '-d', 'link', 'show', 'dev', name)[0]!;
const ifindex = (name: string): number => ipLink(name).ifindex;
/** What `ip -d link` says is attached: program id and name, and the mode (XDP_ATTACHED_DRV 1, SKB 2). */
const xdpOn = (name: string): { id: number; name: string; mode: 'native' | 'skb' | 'other' } | null => {
  const x = ipLink(name).xdp;
  if (!x?.prog) return null;
  return { id: x.prog.id, name: x.prog.name, mode: x.mode === 1 ? 'native' : x.mode === 2 ? 'skb' : 'other' };
};
const bpfLink = (pin: string): { id: number; type: string; prog_id: number } => JSON.parse(run('bpftool', ['-j', 'link', 'show', 'pinned', pin]));
const xdpLinkIds = (): number[] => (JSON.parse(run('bpftool', ['-j', 'link', 'show'])) as Array<{ id: number; type: string }>).filter((l) => l.type === 'xdp').map((l) => l.id);
/** A pinned u32 -> u32 map of the agent, as bpftool dumps it. */
const dumpMap = (name: string): Map<number, number> => {
  const out = JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${pins}/${name}`])) as Array<{ key: unknown; value?: unknown; formatted?: { key: number; value: number } }>;
  const u32 = (x: unknown) => (typeof x === 'number' ? x : Buffer.from((x as string[]).map((b) => parseInt(String(b), 16))).readUInt32LE(0));
  return new Map(out.filter((e) => e.formatted || e.value !== undefined).map((e) => (e.formatted ? [e.formatted.key, e.formatted.value] : [u32(e.key), u32(e.value)])));
};
/** The allowlist as the programs read it: nic_vid (NIC -> VID, for physical) and router_egress (VID -> NIC, for router). */
const allowlist = () => ({ nicVid: dumpMap('nic_vid'), egress: dumpMap('router_egress') });
const allowlisted = (idx: number): number | null => {
  const { nicVid, egress } = allowlist();
  const vid = nicVid.get(idx);
  return vid !== undefined && egress.get(vid) === idx ? vid : null;
};
/** Neither map names the NIC, in any direction (null), else the entry that does. */
const notInAllowlist = (idx: number, { nicVid, egress } = allowlist()): string | null => {
  if (nicVid.has(idx)) return `nic_vid[${idx}] = ${nicVid.get(idx)}`;
  for (const [vid, to] of egress) if (to === idx) return `router_egress[${vid}] = ${idx}`;
  return null;
};

const iface = (s: AgentStatus, name: string) => {
  const i = s.interfaces.find((x) => x.name === name);
  if (!i) throw new Error(`${name} is not in the status: ${JSON.stringify(s.interfaces.map((x) => x.name))}`);
  return i as AgentStatus['interfaces'][number] & { why: string; traffic: { vid: number | null } | null };
};
const attemptOf = (error: string | null): number => Number(/\(attempt (\d+);/.exec(error ?? '')?.[1] ?? 0);
const hex4 = (n: number) => n.toString(16).padStart(4, '0');
const payload = '88b5' + Buffer.from('held by a bpf_link').toString('hex');

const held = [
  { veth: heldA, lan: lanA, pin: pinA, mode: 'default' as const, kernelMode: 'native' },
  { veth: heldB, lan: lanB, pin: pinB, mode: 'skb' as const, kernelMode: 'skb' },
];

test('setup: the other tool holds two NICs through bpf_links that outlive it', () => {
  for (const h of held) {
    holdXdp(ifindex(h.veth.a), h.pin, h.mode);
    const l = bpfLink(h.pin);
    assert.is(l.type, 'xdp');
    const x = xdpOn(h.veth.a);
    assert.ok(x, `${h.veth.a} has an XDP program`);
    assert.equal([x!.id, x!.name, x!.mode], [l.prog_id, 'other_tool', h.kernelMode], `${h.veth.a} carries the linked program`);
  }
  assert.is(xdpOn(ok.a), null);
});

// The free NIC's VID and our `physical` (one program, shared by every NIC), read from the kernel when needed.
const okVid = (): number => allowlisted(ifindex(ok.a)) ?? 0;
const physicalId = (): number => (xdpOn(ok.a)?.name === 'physical' ? xdpOn(ok.a)!.id : 0);
test('coldplug: the held NICs are failed with the bpf_link hint and not allowlisted; the free NIC is configured and allowlisted', async () => {
  const ms = await agent.start();
  console.log(`    start-to-ready ${ms.toFixed(0)} ms`);
  // Held NICs fail in the coldplug pass; the status says so by the time we ask.
  await agent.waitFor((s) => held.every((h) => iface(s, h.veth.a).state === 'failed'), 'held NICs failed', 10_000);
  const s = agent.status();
  assert.ok(s.ready, 'ready: held NICs do not keep the agent from starting');
  for (const h of held) {
    const i = iface(s, h.veth.a);
    const name = h.veth.a;
    assert.is(i.role, 'physical');
    assert.is(i.state, 'failed');
    const err = i.error ?? '';
    assert.match(err, /^attach physical: /, err);
    assert.match(err, new RegExp(`EBUSY`), err);
    assert.match(err, new RegExp(`a bpf_link holds the XDP hook of ${name}\\b`), err);
    assert.match(err, /bpftool link show lists it/, err);
    assert.match(err, /detach it \(bpftool link detach id N\)/, err);
    assert.match(err, new RegExp(`add ${name} to ignoreInterfaces`), err);
    assert.match(err, /retrying with backoff/, err);
    console.log(`    ${name} (${h.kernelMode} bpf_link): ${err}`);
    assert.is(i.xdp, null, 'the status shows no program of ours');
    assert.is(i.traffic, null, 'no VID, so no counters');
    // The kernel: the other tool's program is still there, on its link.
    const x = xdpOn(name);
    assert.equal(x && [x.id, x.name, x.mode], [bpfLink(h.pin).prog_id, 'other_tool', h.kernelMode], `${name}: ${JSON.stringify(x)}`);
    assert.is(notInAllowlist(ifindex(name)), null, `${name} is not allowlisted`);
  }
  assert.match(String(s.lastError), new RegExp(`^${heldA.a}: attach physical: .*a bpf_link holds the XDP hook of ${heldA.a}`), 'lastError: the first failed link');

  const o = iface(s, ok.a);
  assert.equal([o.role, o.state, o.error], ['physical', 'configured', null], JSON.stringify(o));
  assert.equal(o.xdp && [o.xdp.program, o.xdp.mode], ['physical', 'skb']);
  const k = xdpOn(ok.a)!;
  assert.equal([k.id, k.name, k.mode], [o.xdp!.id, 'physical', 'skb'], `kernel: ${JSON.stringify(k)}`);
  assert.ok(ipLink(ok.a).flags.includes('UP'));
  assert.ok(okVid() > 0, `${ok.a} allowlisted: ${JSON.stringify([...allowlist().nicVid])} / ${JSON.stringify([...allowlist().egress])}`);
  assert.is(o.traffic?.vid, okVid(), 'status VID = nic_vid');

  const r = iface(s, rlink.a);
  assert.equal([r.role, r.state, r.xdp?.program], ['router-link', 'configured', 'router']);
  assert.is(s.routerIface, ifindex(rlink.a));

  // The table a person reads says the same.
  const table = agent.statusRaw();
  assert.is(table.status, 0);
  for (const h of held) assert.match(table.stdout, new RegExp(`^${h.veth.a}\\s+\\d+\\s+\\S+\\s+physical\\s+failed\\b`, 'm'), table.stdout);
  assert.match(table.stdout, new RegExp(`^${ok.a}\\s+\\d+\\s+\\S+\\s+physical\\s+configured\\b`, 'm'), table.stdout);
});

test('while held: retry after retry fails the same way, the held NICs never enter the allowlist, the free NIC forwards', async () => {
  const first = Math.min(...held.map((h) => attemptOf(agent.iface(h.veth.a)!.error)));
  assert.ok(first >= 1, 'an attempt count in the error');
  // Watch the maps (and the hooks) through at least two more retries.
  const idxOf = Object.fromEntries(held.map((h) => [h.veth.a, ifindex(h.veth.a)]));
  const t0 = Date.now();
  let polls = 0;
  for (;;) {
    const maps = allowlist();
    for (const h of held) {
      const bad = notInAllowlist(idxOf[h.veth.a]!, maps);
      assert.is(bad, null, `${h.veth.a} must not be allowlisted while held, found ${bad}`);
      assert.is(xdpOn(h.veth.a)?.name, 'other_tool');
    }
    polls += 1;
    const s = agent.status();
    if (held.every((h) => attemptOf(iface(s, h.veth.a).error) >= first + 2)) {
      for (const h of held) {
        const i = iface(s, h.veth.a);
        assert.is(i.state, 'failed');
        assert.match(i.error ?? '', new RegExp(`a bpf_link holds the XDP hook of ${h.veth.a}\\b`), 'the same hint on every retry');
      }
      break;
    }
    if (Date.now() - t0 > 20_000) assert.unreachable(`no further retries within 20 s: ${JSON.stringify(s.interfaces.map((i) => [i.name, i.state, i.error]))}`);
    await sleep(50);
  }
  console.log(`    ${polls} looks at the maps over ${Date.now() - t0} ms of retries: held NICs never allowlisted`);

  // Frames: from the router tagged with the free NIC's VID reach its LAN only;
  // tagged with a held NIC's ifindex (the VID it would get) reach nobody.
  const idxA = ifindex(heldA.a);
  assert.not.ok(allowlist().egress.has(idxA), `no router_egress[${idxA}]`);
  const down = await exchange(sb, { ns: rtr, ifname: rlink.b }, `ffffffffffff02eeeeeeee018100${hex4(okVid())}` + payload, [{ ns: lanOk, ifname: ok.b }, { ns: lanA, ifname: heldA.b }]);
  assert.ok(down[0]!.some((f) => f.startsWith('ffffffffffff02eeeeeeee01' + payload)), `untagged in the free NIC's LAN: ${down[0]}`);
  assert.equal(down[1], [], 'nothing in the held LAN');
  const blocked = await exchange(sb, { ns: rtr, ifname: rlink.b }, `ffffffffffff02eeeeeeee018100${hex4(idxA)}` + payload, [{ ns: lanOk, ifname: ok.b }, { ns: lanA, ifname: heldA.b }]);
  assert.equal(blocked, [[], []], 'a frame for the held NIC goes nowhere');
  const up = await exchange(sb, { ns: lanOk, ifname: ok.b }, 'ffffffffffff02cccccccc01' + payload, [{ ns: rtr, ifname: rlink.b }]);
  assert.ok(up[0]!.some((f) => f.startsWith(`ffffffffffff02cccccccc018100${hex4(okVid())}` + payload)), `tagged ${okVid()} at the router: ${up[0]}`);
});

test('while held: a NIC plugged in now is configured and allowlisted as usual', async () => {
  const lanC = sb.netns('lan');
  // The LAN end is born in its namespace (created here and moved, it would be a NIC of ours for a moment).
  const c = { a: uniq('nic'), b: uniq('lan') };
  ip(null, 'link', 'add', c.a, 'address', '52:54:00:0b:00:04', 'type', 'veth', 'peer', 'name', c.b, 'netns', lanC);
  ip(lanC, 'link', 'set', c.b, 'up');
  await agent.waitFor((s) => iface(s, c.a).state === 'configured', 'hotplugged NIC configured');
  assert.equal([xdpOn(c.a)?.name, xdpOn(c.a)?.id], ['physical', physicalId()]);
  assert.ok(allowlisted(ifindex(c.a)), `${c.a} allowlisted`);
  for (const h of held) assert.is(agent.iface(h.veth.a)!.state, 'failed');
});

test('released (A: the tool is gone, its pin removed; B: detached as the error says): the agent recovers by itself on its backoff', async () => {
  const before = Object.fromEntries(held.map((h) => [h.veth.a, attemptOf(agent.iface(h.veth.a)!.error)]));
  // A: the pin was all that held the link; removing it releases the link and the program with it.
  const linkA = bpfLink(pinA).id;
  rmSync(pinA);
  // B: what the hint says: find the link (bpftool link show) and detach it by id.
  const linkB = bpfLink(pinB);
  assert.ok(xdpLinkIds().includes(linkB.id), 'bpftool link show lists it');
  run('bpftool', ['link', 'detach', 'id', String(linkB.id)]);
  const t0 = Date.now();
  for (;;) {
    if (!xdpOn(heldA.a) && !xdpOn(heldB.a) && !xdpLinkIds().includes(linkA)) break;
    if (Date.now() - t0 > 5000) assert.unreachable(`hooks not free: ${JSON.stringify([xdpOn(heldA.a), xdpOn(heldB.a), xdpLinkIds()])}`);
    await sleep(20);
  }
  // Nothing announces either release (no netlink message): only the retry finds out.
  // Backoff doubles from 0.5 s to at most 60 s; resync is 60 s: within 65 s either way.
  const waited = await agent.waitFor((s) => held.every((h) => iface(s, h.veth.a).state === 'configured'), 'held NICs configured after release', 65_000);
  console.log(`    released -> configured in ${waited.toFixed(0)} ms (attempts before release: ${JSON.stringify(before)})`);

  const s = agent.status();
  for (const h of held) {
    const name = h.veth.a;
    const i = iface(s, name);
    assert.equal([i.state, i.error], ['configured', null]);
    assert.equal(i.xdp && [i.xdp.program, i.xdp.mode, i.xdp.id], ['physical', 'skb', physicalId()]);
    const k = xdpOn(name)!;
    assert.equal([k.id, k.name, k.mode], [physicalId(), 'physical', 'skb'], `kernel: ${JSON.stringify(k)}`);
    assert.ok(ipLink(name).flags.includes('UP'));
    const vid = allowlisted(ifindex(name));
    assert.ok(vid, `${name} allowlisted: ${JSON.stringify([...allowlist().nicVid])} / ${JSON.stringify([...allowlist().egress])}`);
    assert.is(i.traffic?.vid, vid);
  }
  assert.is(s.lastError, null);
  // The detached link B stays (defunct, pinned) but holds nothing.
  assert.is(bpfLink(pinB).id, linkB.id);

  // Frames now cross both ways for A.
  const vidA = allowlisted(ifindex(heldA.a))!;
  const down = await exchange(sb, { ns: rtr, ifname: rlink.b }, `ffffffffffff02dddddddd018100${hex4(vidA)}` + payload, [{ ns: lanA, ifname: heldA.b }, { ns: lanOk, ifname: ok.b }]);
  assert.ok(down[0]!.some((f) => f.startsWith('ffffffffffff02dddddddd01' + payload)), `untagged in A's LAN: ${down[0]}`);
  assert.equal(down[1], [], 'nothing in the other LAN');
  const up = await exchange(sb, { ns: lanA, ifname: heldA.b }, 'ffffffffffff02aaaaaaaa01' + payload, [{ ns: rtr, ifname: rlink.b }]);
  assert.ok(up[0]!.some((f) => f.startsWith(`ffffffffffff02aaaaaaaa018100${hex4(vidA)}` + payload)), `tagged ${vidA} at the router: ${up[0]}`);
});

// A NIC whose entry an earlier run left in the maps (or ours, before another
// tool took the hook) must lose it while `physical` is not on it: the planner
// puts an egress-deny before the attach, and the allow after it.
test('restart: a NIC taken by a bpf_link while the agent was down (its entry from before still there) is taken out of the allowlist, and recovers when released', async () => {
  const idxA = ifindex(heldA.a);
  assert.ok(allowlisted(idxA), 'allowlisted before');
  assert.is(await agent.stop('SIGTERM'), 0);
  // Meanwhile someone puts another tool on the NIC: ours off, theirs on through a bpf_link.
  ip(null, 'link', 'set', 'dev', heldA.a, 'xdpgeneric', 'off');
  holdXdp(idxA, pinA, 'default');
  assert.is(xdpOn(heldA.a)?.name, 'other_tool');
  assert.ok(allowlisted(idxA), 'the entry of the earlier run is still in the maps');
  agent = new AgentProc(sb, null, pins, { dir: agent.dir });
  await agent.start();
  await agent.waitFor((s) => iface(s, heldA.a).state === 'failed', 'taken NIC failed', 10_000);
  assert.match(agent.iface(heldA.a)!.error ?? '', new RegExp(`a bpf_link holds the XDP hook of ${heldA.a}\\b`));
  const t0 = Date.now();
  while (notInAllowlist(idxA) !== null) {
    if (Date.now() - t0 > 10_000) assert.unreachable(`${heldA.a} is failed, another tool's program on it, and still allowlisted: ${notInAllowlist(idxA)}`);
    await sleep(100);
  }
  for (const n of [ok.a, heldB.a]) assert.is(agent.iface(n)!.state, 'configured', n);
  rmSync(pinA);
  await agent.waitFor((s) => iface(s, heldA.a).state === 'configured', 'taken NIC configured after release', 65_000);
  // This run loaded a physical of its own (the other NICs keep the one they had, adopted): the status and the kernel agree on it.
  const k = xdpOn(heldA.a);
  assert.equal(k && [k.name, k.mode, k.id], ['physical', 'skb', agent.iface(heldA.a)!.xdp?.id]);
  assert.ok(allowlisted(idxA), `${heldA.a} allowlisted again`);
});

test.after(async () => {
  await agent.stop('SIGTERM').catch(() => undefined);
  for (const p of [pinA, pinB]) if (existsSync(p)) rmSync(p, { force: true });
  sb.cleanup();
});
test.run();
