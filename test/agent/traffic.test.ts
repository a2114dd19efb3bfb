// `netagent status` counts real frames: the agent (xdp-forwarder) in its own
// namespace, a NIC veth and the router link veth whose peers live in
// namespaces with IPv6 off (nothing else speaks on them). Frames of known
// size go each way with AF_PACKET (test/lib/pkt.py); the counters in
// `status --json`, the table's VID / RX / TX cells and `status --watch`'s
// rates must say exactly that.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, ownNetns, inNs, run, ROOT } from '../lib/sandbox.js';
import { AgentProc, sleep, type AgentStatus } from '../lib/agent.js';
import { ethFrame, withTag, hex } from '../lib/frames.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();
const pins = sb.bpffs();
const quiet = (prefix: string) => {
  const ns = sb.netns(prefix);
  for (const k of ['all', 'default']) run('nsenter', [`--net=/run/netns/${ns}`, 'sysctl', '-qw', `net.ipv6.conf.${k}.disable_ipv6=1`]);
  return ns;
};
const lan = quiet('lan');
const rtr = quiet('rtr');
const nic = sb.veth(null, lan, { macA: '52:54:00:aa:00:01' });
const rlink = sb.veth(null, rtr, { macA: '02:01:00:00:00:01' });
const agent = new AgentProc(sb, null, pins);
agent.writeConfig({ profile: 'xdp-forwarder' });

interface Traffic { vid: number | null; rxPackets: string; rxBytes: string; txPackets: string; txBytes: string; drops: Record<string, string> }
const traffic = (s: AgentStatus, name: string): Traffic => (s.interfaces.find((i) => i.name === name) as unknown as { traffic: Traffic }).traffic;
const nums = (t: Traffic) => [t.rxPackets, t.rxBytes, t.txPackets, t.txBytes].map(Number);
const send = (ns: string, ifname: string, frames: Buffer[]) => {
  const argv = inNs(ns, ['python3', join(ROOT, 'test', 'lib', 'pkt.py'), 'send', ifname, ...frames.map(hex)]);
  run(argv[0]!, argv.slice(1));
};

/** Waits until the NIC's and the router link's counters are `want` (then a little longer: nothing more may come). */
async function settleAt(want: { nic: number[]; router: number[] }, what: string): Promise<AgentStatus> {
  const t0 = Date.now();
  for (;;) {
    const s = agent.status();
    const got = { nic: nums(traffic(s, nic.a)), router: nums(traffic(s, rlink.a)) };
    if (JSON.stringify(got) === JSON.stringify(want)) {
      await sleep(300);
      const again = agent.status();
      assert.equal({ nic: nums(traffic(again, nic.a)), router: nums(traffic(again, rlink.a)) }, want, `${what}: nothing else counted`);
      return again;
    }
    if (Date.now() - t0 > 10_000) assert.unreachable(`${what}: counters ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    await sleep(50);
  }
}

const N_IN = 40; // LAN -> NIC, 100 bytes each
const N_OUT = 30; // router link -> NIC, 120 bytes each with the tag (116 out of the NIC)
let vid = 0;

test('status --json: the NIC\'s VID is the one in the nic_vid map; every counter starts at 0', async () => {
  await agent.start();
  const s = agent.status();
  const t = traffic(s, nic.a);
  const ifindex = s.interfaces.find((i) => i.name === nic.a)!.ifindex;
  const dump = JSON.parse(run('bpftool', ['-j', 'map', 'lookup', 'pinned', `${pins}/nic_vid`, 'key', ...le32(ifindex)])) as { value: string[] | number; formatted?: { value: number } };
  const mapVid = dump.formatted?.value ?? (Array.isArray(dump.value) ? Buffer.from(dump.value.map((x) => parseInt(String(x), 16))).readUInt32LE(0) : dump.value);
  assert.is(t.vid, mapVid);
  vid = t.vid!;
  assert.is(traffic(s, rlink.a).vid, null, 'the router link has no VID');
  assert.is(s.interfaces.find((i) => i.name === 'lo')!.hasOwnProperty('traffic'), true);
  assert.is((s.interfaces.find((i) => i.name === 'lo') as unknown as { traffic: unknown }).traffic, null, 'lo: nothing counted');
  await settleAt({ nic: [0, 0, 0, 0], router: [0, 0, 0, 0] }, 'before any frame');
  assert.equal(Object.keys(t.drops).sort(), ['headroom', 'no_router', 'pcp_dei', 'short', 'untagged', 'vid_self', 'vid_unknown']);
  assert.ok(Object.values(t.drops).every((v) => v === '0'));
});

test(`${N_IN} frames in from the LAN and ${N_OUT} out to it: exact frames and bytes on both links`, async () => {
  send(lan, nic.b, Array.from({ length: N_IN }, () => ethFrame({ payload: 86 })));
  send(rtr, rlink.b, Array.from({ length: N_OUT }, () => withTag(ethFrame({ payload: 102 }), vid)));
  // The NIC received N_IN * 100 and sent N_OUT * 116 (the router took the tag off);
  // the router link received N_OUT * 120 and sent N_IN * 104 (physical added the tag).
  const s = await settleAt({ nic: [N_IN, N_IN * 100, N_OUT, N_OUT * 116], router: [N_OUT, N_OUT * 120, N_IN, N_IN * 104] }, 'after the frames');
  for (const name of [nic.a, rlink.a]) assert.ok(Object.values(traffic(s, name).drops).every((v) => v === '0'), `${name}: nothing dropped`);
  // The table: VID, RX and TX in human units (4000 B = 3.91 KiB).
  const table = agent.statusRaw();
  assert.is(table.status, 0);
  const lines = table.stdout.split('\n');
  assert.match(lines[2]!, /^IFACE\s+IDX\s+MAC\s+ROLE\s+STATE\s+VID\s+RX\s+TX\s+ADDRESSES\s+XDP\s+NOTE$/);
  const row = lines.find((l) => l.startsWith(`${nic.a} `))!;
  assert.match(row, new RegExp(`^${nic.a}\\s+\\d+\\s+52:54:00:aa:00:01\\s+physical\\s+configured\\s+${vid}\\s+40 / 3.91 KiB\\s+30 / 3.4 KiB\\s+-\\s+physical/skb`), row);
  const rrow = lines.find((l) => l.startsWith(`${rlink.a} `))!;
  assert.match(rrow, new RegExp(`^${rlink.a}\\s+\\d+\\s+02:01:00:00:00:01\\s+router-link\\s+configured\\s+-\\s+30 / 3.52 KiB\\s+40 / 4.06 KiB\\s+`), rrow);
  assert.not.match(table.stdout, /dropped frames:/);
  console.log(`    ${lines.slice(2, 6).join('\n    ')}`);
});

test('frames the router drops are counted on the router link by reason, and listed under the table', async () => {
  const unknown = vid === 4000 ? 4001 : 4000;
  send(rtr, rlink.b, Array.from({ length: 5 }, () => withTag(ethFrame({ payload: 46 }), unknown)));
  send(rtr, rlink.b, Array.from({ length: 3 }, () => ethFrame({ payload: 46 }))); // untagged
  await settleAt({ nic: [N_IN, N_IN * 100, N_OUT, N_OUT * 116], router: [N_OUT + 8, N_OUT * 120 + 5 * 64 + 3 * 60, N_IN, N_IN * 104] }, 'after the bad frames');
  const d = traffic(agent.status(), rlink.a).drops;
  assert.is(d.vid_unknown, '5');
  assert.is(d.untagged, '3');
  const out = agent.statusRaw().stdout;
  assert.match(out, new RegExp(`dropped frames:\\n  ${rlink.a}: untagged 3, vid_unknown 5\\n`));
});

test('status --watch 1 on a pipe: successive tables a blank line apart, with rates while frames flow', async () => {
  const file = join(sb.tempDir('netagent-watch-'), 'out');
  const fd = openSync(file, 'w');
  const w = sb.spawn([join(ROOT, 'bin', 'netagent'), 'status', '--watch', '1', '--socket', agent.socket], { stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  // Each table starts with the time it was asked at; a blank line comes before the next one.
  const tables = () => readFileSync(file, 'utf8').split(/\n\n(?=\d\d:\d\d:\d\d\.\d{3}  every )/).filter((t) => /^\d\d:\d\d:\d\d\.\d{3}  every 1 s \(Ctrl-C to stop\)\nnetagent .*\n\nIFACE /.test(t));
  const waitTables = async (n: number) => {
    const t0 = Date.now();
    while (tables().length < n) {
      if (Date.now() - t0 > 15_000) assert.unreachable(`${n} tables; got:\n${readFileSync(file, 'utf8')}`);
      await sleep(50);
    }
  };
  await waitTables(2);
  const N = 50;
  send(lan, nic.b, Array.from({ length: N }, () => ethFrame({ payload: 86 })));
  const sentAt = tables().length;
  await waitTables(sentAt + 3);
  w.kill('SIGINT');
  const code = await new Promise<number | null>((r) => (w.exitCode !== null ? r(w.exitCode) : w.once('exit', (c) => r(c))));
  assert.is(code, 0, 'Ctrl-C ends it quietly');
  const all = tables();
  const rx = all.map((t) => {
    const head = t.split('\n')[3]!;
    assert.match(head, /^IFACE\s+IDX\s+MAC\s+ROLE\s+STATE\s+VID\s+RX\s+TX\s+RX\/s\s+TX\/s\s+ADDRESSES/);
    const row = t.split('\n').find((l) => l.startsWith(`${nic.a} `))!;
    const m = new RegExp(`configured\\s+${vid}\\s+(\\d+) / \\S+ \\S+\\s+\\d+ / \\S+ \\S+\\s+(-|(\\S+)/s (\\S+ \\S+)/s)\\s`).exec(row);
    assert.ok(m, row);
    return { total: Number(m![1]), rate: m![2] === '-' ? null : Number(m![3]) };
  });
  assert.is(rx[0]!.rate, null, 'the first table has no rate yet');
  assert.ok(rx.slice(1).every((x) => x.rate !== null), JSON.stringify(rx));
  assert.is(rx.at(-1)!.total, N_IN + N);
  assert.is(rx.at(-1)!.rate, 0, 'nothing flows at the end');
  // Each rate is the frames counted since the table before, per second (about 1 s apart).
  const moving = rx.filter((x) => x.rate! > 0);
  assert.ok(moving.length >= 1 && moving.length <= 2, JSON.stringify(rx));
  const sum = moving.reduce((a, x) => a + x.rate!, 0);
  assert.ok(sum > N * 0.8 && sum <= N * 1.05, `rates add up to about ${N} frames: ${JSON.stringify(rx)}`);
  console.log(`    ${all.length} tables; NIC RX frames/s: ${rx.map((x) => x.rate ?? '-').join(', ')}`);
  console.log(`    ${all.at(-1)!.split('\n').slice(3, 7).join('\n    ')}`);
});

function le32(n: number): string[] {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return [...b].map(String);
}

test.after(async () => {
  await agent.stop();
  sb.cleanup();
});
test.run();
