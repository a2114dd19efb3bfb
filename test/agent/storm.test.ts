// An event storm: 1000 NICs appear at once while the agent's event socket has
// a deliberately small receive buffer, so the kernel drops events (ENOBUFS).
// The agent must notice, re-dump, and end with every link configured.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sandbox, ownNetns, run, ipJson } from '../lib/sandbox.js';
import { AgentProc } from '../lib/agent.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();
const pins = sb.bpffs();
const peers = sb.netns('peer');
const N = Number(process.env.NETAGENT_STORM_LINKS ?? 1000);
const agent = new AgentProc(sb, null, pins);
agent.writeConfig({ profile: 'xdp-forwarder', eventBufferBytes: 4096 });

test(`${N} links created at once with a tiny event buffer: every link ends configured`, async () => {
  await agent.start();
  const lines: string[] = [];
  for (let i = 0; i < N; i++) {
    const mac = `52:54:01:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    lines.push(`link add st${i} address ${mac} type veth peer name sp${i} netns ${peers}`);
  }
  const t0 = performance.now();
  run('ip', ['-batch', '-'], { input: lines.join('\n') + '\n', timeout: 120_000 });
  const created = performance.now() - t0;
  await agent.waitFor(
    (s) => s.interfaces.filter((i) => i.name.startsWith('st') && i.state === 'configured').length === N,
    `${N} links configured`,
    180_000,
  );
  const total = performance.now() - t0;
  console.log(`    created ${N} veths in ${created.toFixed(0)} ms; all configured ${total.toFixed(0)} ms after the first was created`);
  const overflowed = agent.logs.some((l) => l.includes('ENOBUFS'));
  console.log(`    event socket overflowed: ${overflowed}`);
  // The kernel's view: every one up with XDP attached, exactly one program each.
  const links = ipJson<Array<{ ifname: string; flags: string[]; xdp?: { prog?: { id: number } } }>>(null, '-d', 'link', 'show');
  const mine = links.filter((l) => l.ifname.startsWith('st'));
  assert.is(mine.length, N);
  assert.is(mine.filter((l) => l.flags.includes('UP') && l.xdp?.prog?.id).length, N);
  assert.ok(agent.child && agent.child.exitCode === null, 'the agent is still running');
});

test('the storm leaves the agent responsive and the links can all go again', async () => {
  const logged = agent.logs.length;
  const lines = Array.from({ length: N }, (_, i) => `link del st${i}`);
  run('ip', ['-batch', '-'], { input: lines.join('\n') + '\n', timeout: 120_000 });
  await agent.waitFor((s) => !s.interfaces.some((i) => i.name.startsWith('st')), 'all gone', 120_000);
  // A mass unplug is not an error: nothing for `netagent log --level error` to show, nothing in status.
  const errors = agent.logs.slice(logged).map((l) => JSON.parse(l) as { level: number; msg: string; err?: string }).filter((r) => r.level >= 50);
  assert.equal(errors.map((r) => `${r.msg}: ${r.err}`).slice(0, 5), [], `${errors.length} error records during the unplug`);
  assert.is(agent.status().lastError ?? null, null);
  const egress = JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'pinned', `${pins}/router_egress`])) as unknown[];
  assert.is(egress.length, 0, 'no allowlist entries left behind');
  assert.is(await agent.stop(), 0);
});

test.after(() => sb.cleanup());
test.run();
