// RtnlEvents and the socket under it, against the real kernel in a namespace
// of this file's own: notifications for links, addresses and routes; an event
// storm into a tiny receive buffer gives 'overflow' (ENOBUFS) and the process
// lives on, and so does the socket; throwing listeners are errors, not crashes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ownNetns, ip, ipJson, run, uniq, ROOT } from '../lib/sandbox.js';
import { RtnlEvents, type AddrEvent, type LinkEvent, type RouteEvent } from '../../agent/netlink/rtnl.js';
import { NetlinkSocket, loadAddon } from '../../agent/netlink/socket.js';
import * as C from '../../agent/netlink/constants.js';
import { encodeMsg, ifinfomsg } from '../../agent/netlink/codec.js';

await ownNetns(import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the first `event` whose payload satisfies `pred`; rejects after timeoutMs. */
function waitFor<T>(em: EventEmitter, event: string, pred: (x: T) => boolean = () => true, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      em.off(event, on);
      reject(new Error(`no matching '${event}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (x: T) => {
      if (!pred(x)) return;
      clearTimeout(timer);
      em.off(event, on);
      resolve(x);
    };
    em.on(event, on);
  });
}

const vethBatch = (pfx: string, n: number, cmd: 'add' | 'del'): string =>
  Array.from({ length: n }, (_, i) => (cmd === 'add' ? `link add ${pfx}a${i} type veth peer name ${pfx}b${i}` : `link del ${pfx}a${i}`)).join('\n');

test('link, address and route notifications for a veth pair made and removed with ip', async () => {
  const ev = RtnlEvents.open({ groups: ['link', 'ipv4-ifaddr', 'ipv6-ifaddr', 'ipv4-route'] });
  const errors: Error[] = [];
  ev.on('error', (e: Error) => errors.push(e));
  const a = uniq('ea'), b = uniq('eb');
  const newA = waitFor<LinkEvent>(ev, 'link', (e) => e.type === 'new' && e.link.name === a);
  const newB = waitFor<LinkEvent>(ev, 'link', (e) => e.type === 'new' && e.link.name === b);
  ip(null, 'link', 'add', a, 'address', '02:01:00:00:00:42', 'type', 'veth', 'peer', 'name', b);
  const la = await newA;
  await newB;
  assert.is(la.link.mac, '02:01:00:00:00:42');
  assert.is(la.link.kind, 'veth');
  assert.is(la.link.ifindex, ipJson<Array<{ ifindex: number }>>(null, 'link', 'show', 'dev', a)[0]!.ifindex);

  const upA = waitFor<LinkEvent>(ev, 'link', (e) => e.link.name === a && e.link.up);
  const addr = waitFor<AddrEvent>(ev, 'addr', (e) => e.type === 'new' && e.addr.address === '100.64.0.2');
  const route = waitFor<RouteEvent>(ev, 'route', (e) => e.type === 'new' && e.route.dst === '100.64.9.9');
  ip(null, 'link', 'set', a, 'up');
  ip(null, 'link', 'set', b, 'up');
  ip(null, 'addr', 'add', '100.64.0.2/31', 'dev', a);
  ip(null, 'route', 'add', '100.64.9.9/32', 'dev', a);
  await upA;
  const ad = await addr;
  assert.equal([ad.addr.ifindex, ad.addr.prefixlen, ad.addr.local, ad.addr.label], [la.link.ifindex, 31, '100.64.0.2', a]);
  const rt = await route;
  assert.equal([rt.route.dstLen, rt.route.oif, rt.route.table], [32, la.link.ifindex, 254]);

  const delA = waitFor<LinkEvent>(ev, 'link', (e) => e.type === 'del' && e.link.name === a);
  const delB = waitFor<LinkEvent>(ev, 'link', (e) => e.type === 'del' && e.link.name === b);
  const delAddr = waitFor<AddrEvent>(ev, 'addr', (e) => e.type === 'del' && e.addr.address === '100.64.0.2');
  ip(null, 'link', 'del', a);
  assert.is((await delA).link.ifindex, la.link.ifindex);
  await delB;
  await delAddr;
  assert.equal(errors, []);
  ev.close();
  ev.close(); // idempotent
});

test('event storm into a 4 KiB buffer: overflow is reported, the process and the socket live on', async () => {
  const ev = RtnlEvents.open({ groups: ['link'], rcvbufBytes: 4096 });
  assert.ok(ev.rcvbuf <= 16384, `receive buffer is tiny (${ev.rcvbuf})`);
  let overflows = 0;
  ev.on('overflow', () => { overflows += 1; });
  const errors: Error[] = [];
  ev.on('error', (e: Error) => errors.push(e));
  // ~300 links while this process cannot read (run() blocks the event loop).
  const pfx = uniq('s');
  run('ip', ['-batch', '-'], { input: vethBatch(pfx, 150, 'add') });
  const late = uniq('sl');
  try {
    await waitFor(ev, 'overflow');
    assert.ok(overflows >= 1);
    assert.ok(ev.stats().overflows >= 1);
    await sleep(200); // let it drain what the kernel did queue
    // Still delivering: a link made now is announced.
    const seen = waitFor<LinkEvent>(ev, 'link', (e) => e.type === 'new' && e.link.name === late);
    ip(null, 'link', 'add', late, 'type', 'veth', 'peer', 'name', `${late}p`);
    await seen;
    assert.equal(errors, []);
  } finally {
    ev.close();
    run('ip', ['-batch', '-'], { input: `${vethBatch(pfx, 150, 'del')}\nlink del ${late}` });
  }
});

test('rcvbufBytes: forced when we may (CAP_NET_ADMIN), else SO_RCVBUF up to rmem_max', () => {
  const want = 8 << 20;
  const ev = RtnlEvents.open({ groups: ['link'], rcvbufBytes: want });
  assert.is(ev.rcvbuf, 2 * want, 'the kernel doubles what it grants');
  ev.close();
  // The same in a process without CAP_NET_ADMIN: SO_RCVBUFFORCE is refused, SO_RCVBUF is capped.
  const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
  const mod = join(ROOT, 'dist', 'agent', 'netlink', 'rtnl.js');
  const code = `import(${JSON.stringify(mod)}).then(({ RtnlEvents }) => { const e = RtnlEvents.open({ groups: ['link'], rcvbufBytes: ${want} }); console.log(e.rcvbuf); e.close(); })`;
  const out = run('setpriv', ['--bounding-set=-net_admin', '--inh-caps=-net_admin', process.execPath, '-e', code]);
  assert.is(Number(out.trim()), 2 * Math.min(want, rmemMax));
});

test('a paused socket overflows; resumed, it reports ENOBUFS once and reads on', async () => {
  const s = NetlinkSocket.open();
  s.setRcvbuf(4096);
  assert.is(s.addMembership(C.RTNLGRP_LINK), null);
  s.pause();
  const pfx = uniq('p');
  run('ip', ['-batch', '-'], { input: vethBatch(pfx, 50, 'add') });
  await sleep(50); // the loop turns; nothing is read while paused
  assert.is(s.stats().received, 0);
  const overflow = waitFor(s, 'overflow');
  let messages = 0;
  s.on('message', () => { messages += 1; });
  s.resume();
  try {
    await overflow;
    await sleep(50);
    assert.ok(messages > 0, 'what was queued before the overflow is still read');
    assert.is(s.stats().overflows, 1);
  } finally {
    s.close();
    run('ip', ['-batch', '-'], { input: vethBatch(pfx, 50, 'del') });
  }
});

test('a throwing listener becomes an error event; other listeners and later events still run', async () => {
  const ev = RtnlEvents.open({ groups: ['link'] });
  const errors: Error[] = [];
  ev.on('error', (e: Error) => errors.push(e));
  ev.on('link', () => { throw new Error('listener bug'); });
  const a = uniq('ta');
  const first = waitFor<LinkEvent>(ev, 'link', (e) => e.link.name === a);
  ip(null, 'link', 'add', a, 'type', 'veth', 'peer', 'name', `${a}p`);
  await first;
  assert.ok(errors.length >= 1);
  assert.match(errors[0]!.message, "'link' listener threw: listener bug");
  const gone = waitFor<LinkEvent>(ev, 'link', (e) => e.type === 'del' && e.link.name === a);
  ip(null, 'link', 'del', a);
  await gone;
  assert.ok(ev.stats().listenerErrors >= 2);
  // Without an 'error' listener the error is a process warning, not a crash.
  ev.removeAllListeners('error');
  const warned = new Promise<Error>((r) => process.once('warning', r));
  const b = uniq('tb');
  ip(null, 'link', 'add', b, 'type', 'veth', 'peer', 'name', `${b}p`);
  assert.match((await warned).message, 'listener bug');
  ip(null, 'link', 'del', b);
  ev.close();
});

test('close() inside a listener stops delivery at once, without a crash', async () => {
  const ev = RtnlEvents.open({ groups: ['link'] });
  let calls = 0;
  ev.on('link', () => {
    calls += 1;
    ev.close();
  });
  const pfx = uniq('c');
  run('ip', ['-batch', '-'], { input: vethBatch(pfx, 20, 'add') }); // 40+ notifications queued
  await sleep(200);
  assert.is(calls, 1);
  run('ip', ['-batch', '-'], { input: vethBatch(pfx, 20, 'del') });
});

test('the addon itself: a throwing callback is an ordinary uncaught JS exception, and the socket survives', async () => {
  const { NetlinkSocket: Native } = loadAddon();
  let calls = 0;
  let sock: InstanceType<typeof Native> | null = null;
  const done = new Promise<void>((resolve) => {
    sock = new Native(C.NETLINK_ROUTE, (_code, _errno, buf) => {
      calls += 1;
      // The dump ends with NLMSG_DONE: close from inside the callback, then finish.
      if (buf && buf.readUInt16LE(4) === C.NLMSG_DONE) {
        sock!.close();
        resolve();
        return;
      }
      if (calls === 1) throw new Error('thrown inside the addon callback');
    });
  });
  const caught = new Promise<Error>((r) => process.once('uncaughtException', r));
  assert.is(typeof sock!.bind(), 'number');
  const dump = encodeMsg(C.RTM_GETLINK, C.NLM_F_REQUEST | C.NLM_F_DUMP, 1, ifinfomsg({}));
  assert.is(sock!.send(dump), dump.length);
  sock!.start();
  assert.match((await caught).message, 'thrown inside the addon callback');
  await done;
  assert.ok(calls >= 2, 'more datagrams delivered after the exception');
  // Closed: every call is a harmless value.
  assert.equal(sock!.send(dump), { errno: 9, code: 'EBADF' });
  sock!.close();
  // Errors are values, not throws.
  const s2 = new Native(C.NETLINK_ROUTE, () => undefined);
  assert.equal(s2.setsockopt(C.SOL_NETLINK, 9999, 1), { errno: 92, code: 'ENOPROTOOPT' });
  assert.equal(s2.addMembership(9999), { errno: 22, code: 'EINVAL' });
  assert.is(typeof s2.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF), 'number');
  assert.throws(() => s2.send('not a buffer' as unknown as Buffer), /Buffer/);
  s2.close();
});

test.run();
