// `netagent events` against the real agent (xdp-forwarder, its own namespace):
// what a watcher sees on connect (every link's state), then live: a
// hotplugged NIC (new -> pending -> configured), a repair (`ip link set X
// down` on a configured NIC: the agent puts it back up), a removal. Two
// watchers at once, one readable and one JSON. Then watchers that stop
// reading (SIGSTOP, as Ctrl-Z would) while 300 NICs appear: the agent carries
// on, and each stuck watcher, once resumed, is told how many events it missed,
// exactly as many as a watcher that kept up saw and it did not.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openSync, closeSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Sandbox, ownNetns, ip, ipJson, run, ROOT } from '../lib/sandbox.js';
import { AgentProc, sleep } from '../lib/agent.js';

await ownNetns(import.meta.url);
const sb = new Sandbox();
const pins = sb.bpffs();
const lan = sb.netns('lan');
const peers = sb.netns('peer');
const rtr = sb.netns('rtr');
const nic = sb.veth(null, lan, { macA: '52:54:00:aa:00:01' });
const rlink = sb.veth(null, rtr, { macA: '02:01:00:00:00:01' });
const agent = new AgentProc(sb, null, pins);
agent.writeConfig({ profile: 'xdp-forwarder' });

interface Ev { type: string; time: number; link?: string; ifindex?: number; state?: string; role?: string; from?: string; to?: string; why?: string; actions?: string[]; count?: number; links?: number }

/**
 * `netagent events` as a person runs it, its output into a file (a file
 * never pushes back: the watcher keeps up whatever this process is busy with).
 */
class Watcher {
  readonly child: ChildProcess;
  readonly file: string;
  constructor(readonly json: boolean) {
    this.file = join(sb.tempDir('netagent-events-'), 'out');
    const fd = openSync(this.file, 'w');
    const argv = [join(ROOT, 'bin', 'netagent'), 'events', '--socket', agent.socket, ...(json ? ['--json'] : [])];
    this.child = sb.spawn(argv, { stdio: ['ignore', fd, 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    closeSync(fd);
  }
  get text(): string {
    return readFileSync(this.file, 'utf8');
  }
  get lines(): string[] {
    return this.text.split('\n').filter(Boolean);
  }
  get events(): Ev[] {
    return this.lines.map((l) => JSON.parse(l) as Ev);
  }
  async until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const t0 = Date.now();
    while (!pred()) {
      if (Date.now() - t0 > timeoutMs) assert.unreachable(`watcher (${this.json ? 'json' : 'text'}): timed out waiting for ${what}; it printed:\n${this.lines.slice(-30).join('\n')}`);
      await sleep(20);
    }
  }
  live(): Promise<void> {
    return this.until(() => (this.json ? this.events.some((e) => e.type === 'live') : /^-- live/m.test(this.text)), 'the live marker');
  }
  stderr(): Promise<{ code: number | null; err: string }> {
    let err = '';
    this.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    return new Promise((resolve) => this.child.once('exit', (code) => resolve({ code, err })));
  }
}

const T = /^\d\d:\d\d:\d\d\.\d{3} /;
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
let js: Watcher;
let txt: Watcher;

test('on connect: one line per link with the state it is in now, then the live stream', async () => {
  await agent.start();
  js = new Watcher(true);
  txt = new Watcher(false);
  await js.live();
  await txt.live();
  const s = agent.status();
  const snap = js.events.filter((e) => e.type === 'link');
  assert.equal(snap.map((e) => [e.link, e.state, e.role]), s.interfaces.map((i) => [i.name, i.state, i.role]));
  assert.is(js.events.find((e) => e.type === 'live')!.links, s.interfaces.length);
  // The readable one: time, "now", link, state, role, why; then the marker.
  const lines = txt.lines;
  assert.is(lines.length, s.interfaces.length + 1, lines.join('\n'));
  for (const [k, i] of s.interfaces.entries()) {
    assert.match(lines[k]!, new RegExp(`${T.source}now    ${esc(i.name)}: ${i.state} role=${i.role} why=`), lines[k]);
  }
  assert.match(lines.at(-1)!, /^-- live: transitions and repairs from here on \(Ctrl-C to stop\) --$/);
  console.log(`    ${lines.join('\n    ')}`);
});

let hp: { a: string; b: string };
test('hotplug: both watchers see the new NIC go new -> pending -> configured', async () => {
  hp = sb.veth(null, lan, { macA: '52:54:00:aa:00:02' });
  for (const w of [js, txt]) {
    await w.until(() => new RegExp(`"link":"${hp.a}","from":"pending","to":"configured"|${hp.a}: pending -> configured`).test(w.text), `${hp.a} configured`);
  }
  const mine = js.events.filter((e) => e.type === 'transition' && e.link === hp.a);
  assert.equal(mine.map((e) => [e.from, e.to]), [['new', 'pending'], ['pending', 'configured']]);
  assert.match(mine[0]!.why!, /^applying: .*attach physical/);
  assert.is(mine[0]!.ifindex, agent.iface(hp.a)!.ifindex);
  const readable = txt.lines.filter((l) => l.includes(`${hp.a}:`));
  assert.is(readable.length, 2, readable.join('\n'));
  assert.match(readable[0]!, new RegExp(`${T.source}change ${hp.a}: new -> pending why="applying: .*attach physical`));
  assert.match(readable[1]!, new RegExp(`${T.source}change ${hp.a}: pending -> configured why=`));
  console.log(`    ${readable.join('\n    ')}`);
});

test('repair: a configured NIC taken down is put back up; the watchers see the repair and the round trip', async () => {
  const before = js.events.length;
  ip(null, 'link', 'set', hp.a, 'down');
  await js.until(() => js.events.slice(before).some((e) => e.type === 'transition' && e.link === hp.a && e.to === 'configured'), 'back to configured');
  const ev = js.events.slice(before).filter((e) => e.link === hp.a);
  assert.equal(ev.map((e) => (e.type === 'repair' ? `repair ${e.actions!.join(', ')}` : `${e.from} -> ${e.to}`)), ['repair set up', 'configured -> pending', 'pending -> configured']);
  const flags = ipJson<Array<{ flags: string[] }>>(null, 'link', 'show', 'dev', hp.a)[0]!.flags;
  assert.ok(flags.includes('UP'), 'the kernel has it up again');
  await txt.until(() => txt.lines.some((l) => new RegExp(`${T.source}repair ${hp.a}: set up$`).test(l)), 'the repair line');
  console.log(`    ${txt.lines.filter((l) => l.includes(`${hp.a}:`)).slice(2).join('\n    ')}`);
});

test('removal: -> removed, under the name the link had', async () => {
  ip(null, 'link', 'del', hp.a);
  await js.until(() => js.events.some((e) => e.link === hp.a && e.to === 'removed'), `${hp.a} removed`);
  // A veth's deletion first says "down" (RTM_NEWLINK) and then RTM_DELLINK:
  // the agent may start putting it up again (a repair) before it learns the
  // link is gone, so the last state before `removed` is configured or pending.
  const last = js.events.filter((e) => e.link === hp.a).at(-1)!;
  assert.equal([last.to, last.why], ['removed', 'the link is gone']);
  assert.ok(['configured', 'pending'].includes(last.from!), last.from);
  await txt.until(() => txt.lines.some((l) => new RegExp(`change ${hp.a}: (configured|pending) -> removed why="the link is gone"`).test(l)), 'the removal line');
  assert.not.ok(js.lines.some((l) => /"dropped"/.test(l)) || /missed/.test(txt.text), 'the watchers kept up: nothing dropped');
});

const N = 300;
test(`${N} NICs at once while two watchers are stopped (SIGSTOP): the agent carries on; once resumed, each is told exactly how many events it missed`, async () => {
  const keeps = new Watcher(true);
  const stuckJson = new Watcher(true);
  const stuckText = new Watcher(false);
  for (const w of [keeps, stuckJson, stuckText]) await w.live();
  const from = keeps.events.length;
  stuckJson.child.kill('SIGSTOP');
  stuckText.child.kill('SIGSTOP');
  const lines = Array.from({ length: N }, (_, i) => `link add bu${i} address 52:54:02:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')} type veth peer name bp${i} netns ${peers}`);
  const t0 = performance.now();
  run('ip', ['-batch', '-'], { input: lines.join('\n') + '\n', timeout: 120_000 });
  await agent.waitFor((s) => s.interfaces.filter((i) => i.name.startsWith('bu') && i.state === 'configured').length === N, `${N} NICs configured`, 120_000);
  const ms = performance.now() - t0;
  // The watcher that kept up saw both transitions of every one of them.
  await keeps.until(() => keeps.events.slice(from).filter((e) => e.to === 'configured' && e.link!.startsWith('bu')).length === N, 'every configured transition');
  const seen = keeps.events.slice(from);
  assert.not.ok(seen.some((e) => e.type === 'dropped'), 'a watcher that reads misses nothing');
  console.log(`    ${N} NICs created and configured in ${ms.toFixed(0)} ms with two watchers stopped; the reading watcher got ${seen.length} events`);

  stuckJson.child.kill('SIGCONT');
  stuckText.child.kill('SIGCONT');
  await stuckJson.until(() => stuckJson.events.some((e) => e.type === 'dropped'), 'the dropped notice');
  await sleep(300); // nothing else is happening: no more events should come
  const got = stuckJson.events.slice(stuckJson.events.findIndex((e) => e.type === 'live') + 1);
  const dropped = got.filter((e) => e.type === 'dropped');
  assert.is(dropped.length, 1, 'one notice, once it caught up');
  assert.is(got.at(-1)!.type, 'dropped', 'the notice comes when it has caught up');
  const delivered = got.filter((e) => e.type !== 'dropped');
  assert.ok(dropped[0]!.count! > 0);
  assert.is(delivered.length + dropped[0]!.count!, seen.length, `delivered ${delivered.length} + dropped ${dropped[0]!.count} = what the reading watcher saw (${seen.length})`);
  // What it did get is what happened first, in order, nothing doubled.
  assert.equal(delivered.map((e) => `${e.link} ${e.from} ${e.to}`), seen.slice(0, delivered.length).map((e) => `${e.link} ${e.from} ${e.to}`));
  console.log(`    stuck JSON watcher: ${delivered.length} delivered, then told ${dropped[0]!.count} were dropped`);

  await stuckText.until(() => /missed/.test(stuckText.text), 'the missed line');
  const missed = stuckText.lines.filter((l) => / missed /.test(l));
  assert.is(missed.length, 1);
  assert.match(missed[0]!, new RegExp(`${T.source}missed \\d+ events dropped while this watcher was behind \\(netagent status shows where things stand\\)$`));
  console.log(`    stuck readable watcher: ${missed[0]}`);
  for (const w of [keeps, stuckJson, stuckText]) w.child.kill('SIGTERM');
});

test('the control socket is root only: another user cannot watch', async () => {
  const st = statSync(agent.socket);
  assert.ok(st.isSocket());
  assert.is(st.mode & 0o777, 0o600);
  let out = '';
  let code = 0;
  try {
    run('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', join(ROOT, 'bin', 'netagent'), 'events', '--socket', agent.socket]);
  } catch (e) {
    out = (e as Error).message;
    code = 1;
  }
  assert.is(code, 1);
  assert.match(out, /netagent events: permission denied on .*control\.sock/);
});

test('the agent stops promptly even with a watcher that does not read; the watchers are told', async () => {
  const stuck = new Watcher(true);
  await stuck.live();
  stuck.child.kill('SIGSTOP');
  const ended = txt.stderr();
  const t0 = performance.now();
  assert.is(await agent.stop('SIGTERM'), 0);
  console.log(`    agent stopped in ${(performance.now() - t0).toFixed(0)} ms with a stopped watcher`);
  const { code, err } = await ended;
  assert.is(code, 1);
  assert.match(txt.lines.at(-1)!, new RegExp(`${T.source}bye    netagent is stopping$`));
  assert.match(err, /^netagent events: the agent ended the stream: netagent is stopping\n$/);
  stuck.child.kill('SIGKILL');
});

test('netagent events without an agent: one line saying so, exit 1', () => {
  let msg = '';
  try {
    run(join(ROOT, 'bin', 'netagent'), ['events', '--socket', agent.socket]);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.match(msg, /netagent events: netagent is not running \(no control socket at /);
});

test.after(() => sb.cleanup());
test.run();
