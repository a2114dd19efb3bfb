// rtnetlink client over our own netlink socket (socket.ts).
//
// Rtnl: requests and dumps on a socket of its own that never joins a
// multicast group. Every request carries a sequence number and NLM_F_ACK and
// has a timeout; at most maxInFlight are outstanding (more queue, started in
// the order they were made); dumps run one at a time (the kernel allows one
// per socket) and are retried when the kernel marks them interrupted.
// Kernel refusals become NetlinkError with the errno name and the ext-ack text.
//
// RtnlEvents: multicast notifications on another socket, decoded; 'overflow'
// when the kernel dropped some (ENOBUFS), after which the consumer re-dumps.
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import { errnoName, errnoText } from '../core/errno.js';
import type { Logger } from '../log.js';
import * as C from './constants.js';
import {
  attr, attrNested, attrU8, attrU32, decodeAddr, decodeError, decodeLink, decodeRoute, encodeMsg, ifaddrmsg, ifinfomsg,
  parseCidr, parseIp, parseMessages, rtmsg, type Attr, type NlMsg, type Result,
} from './codec.js';
import { NetlinkSocket, emitEach, isSysErr, type SysErr } from './socket.js';
import type { AddrMsg, LinkMsg, RouteMsg } from './codec.js';

export type { AddrMsg, LinkMsg, RouteMsg, XdpAttached } from './codec.js';

export interface RouteSpec {
  /** CIDR, '0.0.0.0/0' (or '::/0') for default */
  dst: string;
  oif: number;
  gateway?: string;
  scope?: 'universe' | 'link' | 'host';
  /** default: main (254) */
  table?: number;
  /** default RTPROT_STATIC (4); the agent passes its own */
  protocol?: number;
  priority?: number;
}

const ERRNO = constants.errno;

// libuv's texts speak of files; for rtnetlink objects say it plainly.
const PLAIN: Readonly<Record<string, string>> = {
  EEXIST: 'already exists', ENOENT: 'no such object', ESRCH: 'no such route or object', ENODEV: 'no such device',
  EADDRNOTAVAIL: 'no such address on this link', ENETDOWN: 'the link is down', ENETUNREACH: 'the gateway is not reachable on that link',
};

function describeErrno(errno: number): { code: string; text: string } {
  const code = errnoName(errno);
  return { code, text: PLAIN[code] ?? errnoText(errno) };
}

/** A request the kernel refused (or that got no answer: code ETIMEDOUT). */
export class NetlinkError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly extack: string | null;
  readonly request: string;

  constructor(request: string, errno: number, extack: string | null = null, detail?: string) {
    const { code, text } = describeErrno(errno);
    super(`${request}: ${code} (${detail ?? text})${extack ? `: ${extack}` : ''}`);
    this.name = 'NetlinkError';
    this.errno = errno;
    this.code = code;
    this.extack = extack;
    this.request = request;
  }
}

/** ifindexes are positive s32 in the kernel's ABI. */
function checkIndex(desc: string, ifindex: number, what = 'ifindex'): void {
  if (!Number.isInteger(ifindex) || ifindex <= 0 || ifindex > 0x7fffffff) {
    throw new NetlinkError(desc, ERRNO.EINVAL, null, `${what} ${ifindex} is not a positive 32-bit integer`);
  }
}

interface Request {
  desc: string;
  dump: boolean;
  /** builds the message for a given sequence number (dumps are re-sent on NLM_F_DUMP_INTR) */
  build: (seq: number) => Buffer;
  resolve: (msgs: NlMsg[]) => void;
  reject: (e: Error) => void;
  seq: number;
  parts: NlMsg[];
  interrupted: boolean;
  attempts: number;
  timer: NodeJS.Timeout | null;
}

const MAX_DUMP_ATTEMPTS = 10;
// Skip per-link statistics in link dumps and gets: halves the bytes, which we never read.
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
const REQUEST_RCVBUF = 4 << 20;

const SCOPES = { universe: C.RT_SCOPE_UNIVERSE, link: C.RT_SCOPE_LINK, host: C.RT_SCOPE_HOST } as const;

export class Rtnl {
  private readonly sock: NetlinkSocket;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly log: Logger | undefined;
  private readonly pending = new Map<number, Request>();
  private readonly queue: Request[] = [];
  private dumpActive = false;
  private seq: number;
  private closed = false;
  private dumpRetries = 0;
  private refed = false;
  /**
   * A dump we gave up on (timeout) may still be running in the kernel, which
   * refuses a second one on the socket (EBUSY) until it ends: its sequence
   * number, until its NLMSG_DONE goes by (or a timeout more has passed).
   */
  private abandonedDump: { seq: number; timer: NodeJS.Timeout } | null = null;

  static open(opts: { timeoutMs?: number; maxInFlight?: number; log?: Logger } = {}): Rtnl {
    return new Rtnl(opts);
  }

  private constructor(opts: { timeoutMs?: number; maxInFlight?: number; log?: Logger }) {
    this.timeoutMs = opts.timeoutMs ?? 3000;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 64);
    this.log = opts.log;
    this.seq = (Date.now() & 0xffff) + 1;
    this.sock = NetlinkSocket.open(opts.log ? { log: opts.log } : {});
    // Ext-ack text in errors, strict checking of dump requests, and acks that
    // do not echo the whole request back (keeps the receive queue small).
    for (const [opt, name] of [
      [C.NETLINK_EXT_ACK, 'NETLINK_EXT_ACK'], [C.NETLINK_GET_STRICT_CHK, 'NETLINK_GET_STRICT_CHK'], [C.NETLINK_CAP_ACK, 'NETLINK_CAP_ACK'],
    ] as const) {
      const e = this.sock.setsockopt(C.SOL_NETLINK, opt, 1);
      if (e) this.log?.warn({ errno: e.code }, `rtnl: cannot set ${name}: ${e.code}`);
    }
    this.sock.setRcvbuf(REQUEST_RCVBUF);
    // Idle, the request socket must not keep the process alive; while
    // requests are outstanding or queued it does (see updateRef).
    this.sock.unref();
    this.sock.on('message', (buf: Buffer) => this.onMessage(buf));
    this.sock.on('overflow', () => this.failInFlight('the answer was lost: receive queue overflowed (ENOBUFS)'));
    this.sock.on('error', (e: Error & { code?: string }) => {
      this.log?.error({ err: e }, `rtnl: ${e.message}`);
      // A truncated datagram lost part of some answer: whose is unknowable.
      if (e.code === 'EMSGSIZE') this.failInFlight('part of the answer was lost: datagram truncated (EMSGSIZE)');
    });
  }

  // ------------------------------------------------------------ public API

  async dumpLinks(): Promise<LinkMsg[]> {
    const msgs = await this.request('RTM_GETLINK dump', true, (seq) =>
      encodeMsg(C.RTM_GETLINK, C.NLM_F_REQUEST | C.NLM_F_DUMP | C.NLM_F_ACK, seq, ifinfomsg({}), [
        attrU32(C.IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
      ]),
    );
    return this.decodeAll(msgs, C.RTM_NEWLINK, decodeLink, 'link');
  }

  async getLink(ifindex: number): Promise<LinkMsg | null> {
    checkIndex(`RTM_GETLINK dev ${ifindex}`, ifindex);
    try {
      const msgs = await this.request(`RTM_GETLINK dev ${ifindex}`, false, (seq) =>
        encodeMsg(C.RTM_GETLINK, C.NLM_F_REQUEST | C.NLM_F_ACK, seq, ifinfomsg({ index: ifindex }), [
          attrU32(C.IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
        ]),
      );
      return this.decodeAll(msgs, C.RTM_NEWLINK, decodeLink, 'link')[0] ?? null;
    } catch (e) {
      if (e instanceof NetlinkError && e.code === 'ENODEV') return null;
      throw e;
    }
  }

  async dumpAddresses(family?: 4 | 6): Promise<AddrMsg[]> {
    const af = family === 4 ? C.AF_INET : family === 6 ? C.AF_INET6 : C.AF_UNSPEC;
    const msgs = await this.request(`RTM_GETADDR dump${family ? ` ipv${family}` : ''}`, true, (seq) =>
      encodeMsg(C.RTM_GETADDR, C.NLM_F_REQUEST | C.NLM_F_DUMP | C.NLM_F_ACK, seq, ifaddrmsg({ family: af })),
    );
    return this.decodeAll(msgs, C.RTM_NEWADDR, decodeAddr, 'address').filter((a) => !family || a.family === family);
  }

  async dumpRoutes(family?: 4 | 6): Promise<RouteMsg[]> {
    const af = family === 4 ? C.AF_INET : family === 6 ? C.AF_INET6 : C.AF_UNSPEC;
    const msgs = await this.request(`RTM_GETROUTE dump${family ? ` ipv${family}` : ''}`, true, (seq) =>
      encodeMsg(C.RTM_GETROUTE, C.NLM_F_REQUEST | C.NLM_F_DUMP | C.NLM_F_ACK, seq, rtmsg({ family: af })),
    );
    return this.decodeAll(msgs, C.RTM_NEWROUTE, decodeRoute, 'route').filter((r) => !family || r.family === family);
  }

  /** opts.proto: IFA_PROTO, an RTPROT_*-style tag saying who added the address (the agent passes its own). */
  async addAddress(ifindex: number, cidr: string, opts: { replace?: boolean; peer?: string; proto?: number } = {}): Promise<void> {
    const desc = `RTM_NEWADDR ${cidr}${opts.peer ? ` peer ${opts.peer}` : ''} dev ${ifindex}`;
    checkIndex(desc, ifindex);
    const a = parseCidr(cidr);
    if (!a.ok) throw new NetlinkError(desc, ERRNO.EINVAL, null, a.error);
    let peer = a.value.bytes;
    if (opts.peer !== undefined) {
      const p = parseIp(opts.peer);
      if (!p || p.family !== a.value.family) throw new NetlinkError(desc, ERRNO.EINVAL, null, `peer '${opts.peer}' is not an IPv${a.value.family} address`);
      peer = p.bytes;
    }
    if (opts.proto !== undefined && !(Number.isInteger(opts.proto) && opts.proto >= 0 && opts.proto <= 255)) {
      throw new NetlinkError(desc, ERRNO.EINVAL, null, `proto ${opts.proto} is not 0..255`);
    }
    const flags = C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | (opts.replace ? C.NLM_F_REPLACE : C.NLM_F_EXCL);
    const fixed = ifaddrmsg({ family: a.value.family === 4 ? C.AF_INET : C.AF_INET6, prefixlen: a.value.prefixlen, index: ifindex });
    const attrs = [attr(C.IFA_LOCAL, a.value.bytes), attr(C.IFA_ADDRESS, peer)];
    if (opts.proto !== undefined) attrs.push(attrU8(C.IFA_PROTO, opts.proto));
    await this.request(desc, false, (seq) => encodeMsg(C.RTM_NEWADDR, flags, seq, fixed, attrs));
  }

  async deleteAddress(ifindex: number, cidr: string): Promise<void> {
    const desc = `RTM_DELADDR ${cidr} dev ${ifindex}`;
    checkIndex(desc, ifindex);
    const a = parseCidr(cidr);
    if (!a.ok) throw new NetlinkError(desc, ERRNO.EINVAL, null, a.error);
    const fixed = ifaddrmsg({ family: a.value.family === 4 ? C.AF_INET : C.AF_INET6, prefixlen: a.value.prefixlen, index: ifindex });
    await this.request(desc, false, (seq) =>
      encodeMsg(C.RTM_DELADDR, C.NLM_F_REQUEST | C.NLM_F_ACK, seq, fixed, [attr(C.IFA_LOCAL, a.value.bytes)]),
    );
  }

  async addRoute(r: RouteSpec, opts: { replace?: boolean } = {}): Promise<void> {
    const flags = C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | (opts.replace ? C.NLM_F_REPLACE : C.NLM_F_EXCL);
    await this.routeRequest(C.RTM_NEWROUTE, flags, r);
  }

  async deleteRoute(r: RouteSpec): Promise<void> {
    await this.routeRequest(C.RTM_DELROUTE, C.NLM_F_REQUEST | C.NLM_F_ACK, r);
  }

  /**
   * Link flags, MTU and (xdp) an XDP program: IFLA_XDP with the program's fd
   * and XDP_FLAGS_*, the same request libbpf's bpf_xdp_attach sends, but on
   * this socket (no socket per attach) and pipelined with the rest.
   */
  async setLink(ifindex: number, change: { up?: boolean; promisc?: boolean; mtu?: number; xdp?: { fd: number; flags: number } }): Promise<void> {
    let flags = 0, mask = 0;
    const words: string[] = [];
    if (change.up !== undefined) {
      mask |= C.IFF_UP;
      if (change.up) flags |= C.IFF_UP;
      words.push(change.up ? 'up' : 'down');
    }
    if (change.promisc !== undefined) {
      mask |= C.IFF_PROMISC;
      if (change.promisc) flags |= C.IFF_PROMISC;
      words.push(`promisc ${change.promisc ? 'on' : 'off'}`);
    }
    const attrs: Attr[] = [];
    if (change.mtu !== undefined) {
      attrs.push(attrU32(C.IFLA_MTU, change.mtu));
      words.push(`mtu ${change.mtu}`);
    }
    if (change.xdp !== undefined) {
      attrs.push(attrNested(C.IFLA_XDP, [attrU32(C.IFLA_XDP_FD, change.xdp.fd), attrU32(C.IFLA_XDP_FLAGS, change.xdp.flags)]));
      words.push(`xdp fd ${change.xdp.fd} flags 0x${change.xdp.flags.toString(16)}`);
    }
    const desc = `RTM_SETLINK dev ${ifindex}${words.length ? ` ${words.join(' ')}` : ''}`;
    checkIndex(desc, ifindex);
    if (change.mtu !== undefined && !(Number.isInteger(change.mtu) && change.mtu > 0 && change.mtu <= 0xffffffff)) {
      throw new NetlinkError(desc, ERRNO.EINVAL, null, `mtu ${change.mtu} is not a positive integer`);
    }
    await this.request(desc, false, (seq) =>
      encodeMsg(C.RTM_SETLINK, C.NLM_F_REQUEST | C.NLM_F_ACK, seq, ifinfomsg({ index: ifindex, flags, change: mask }), attrs),
    );
  }

  /** Rejects everything pending or queued, closes the socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.pending.values(), ...this.queue];
    this.pending.clear();
    this.queue.length = 0;
    if (this.abandonedDump) clearTimeout(this.abandonedDump.timer);
    this.abandonedDump = null;
    for (const r of all) {
      if (r.timer) clearTimeout(r.timer);
      r.reject(new NetlinkError(r.desc, ERRNO.ECANCELED, null, 'the rtnetlink client was closed'));
    }
    this.sock.close();
  }

  /** Requests sent and not answered, requests waiting for a slot, dump retries, datagrams received. */
  stats(): { inFlight: number; queued: number; dumpRetries: number; received: number } {
    return { inFlight: this.pending.size, queued: this.queue.length, dumpRetries: this.dumpRetries, received: this.sock.stats().received };
  }

  // ------------------------------------------------------------ internals

  private routeRequest(type: number, flags: number, r: RouteSpec): Promise<NlMsg[]> {
    const isDel = type === C.RTM_DELROUTE;
    const table = r.table ?? C.RT_TABLE_MAIN;
    let desc = `${C.RTM_NAMES[type]} ${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.oif}`;
    if (table !== C.RT_TABLE_MAIN) desc += ` table ${table}`;
    if (r.priority !== undefined) desc += ` metric ${r.priority}`;
    try {
      checkIndex(desc, r.oif, 'oif');
      if (r.table !== undefined) checkIndex(desc, r.table, 'table');
    } catch (e) {
      return Promise.reject(e);
    }
    const d = parseCidr(r.dst);
    if (!d.ok) return Promise.reject(new NetlinkError(desc, ERRNO.EINVAL, null, d.error));
    const fam = d.value.family;
    const attrs: Attr[] = [attrU32(C.RTA_TABLE, table), attrU32(C.RTA_OIF, r.oif)];
    if (d.value.prefixlen > 0) attrs.push(attr(C.RTA_DST, d.value.bytes));
    if (r.gateway !== undefined) {
      const g = parseIp(r.gateway);
      if (!g || g.family !== fam) {
        return Promise.reject(new NetlinkError(desc, ERRNO.EINVAL, null, `gateway '${r.gateway}' is not an IPv${fam} address`));
      }
      attrs.push(attr(C.RTA_GATEWAY, g.bytes));
    }
    if (r.priority !== undefined) attrs.push(attrU32(C.RTA_PRIORITY, r.priority));
    // As `ip route` does: a route without a gateway is on-link; deletes match any scope.
    const scope = isDel ? C.RT_SCOPE_NOWHERE : r.scope ? SCOPES[r.scope] : r.gateway ? C.RT_SCOPE_UNIVERSE : C.RT_SCOPE_LINK;
    const fixed = rtmsg({
      family: fam === 4 ? C.AF_INET : C.AF_INET6,
      dstLen: d.value.prefixlen,
      table: table < 256 ? table : C.RT_TABLE_UNSPEC,
      protocol: isDel ? r.protocol ?? C.RTPROT_UNSPEC : r.protocol ?? C.RTPROT_STATIC,
      scope,
      type: isDel ? C.RTN_UNSPEC : C.RTN_UNICAST,
    });
    return this.request(desc, false, (seq) => encodeMsg(type, flags, seq, fixed, attrs));
  }

  private decodeAll<T>(msgs: NlMsg[], type: number, decode: (p: Buffer) => Result<T>, what: string): T[] {
    const out: T[] = [];
    for (const m of msgs) {
      if (m.type !== type) continue;
      const r = decode(m.payload);
      if (r.ok) out.push(r.value);
      else this.log?.warn({ error: r.error }, `rtnl: skipping malformed ${what} message: ${r.error}`);
    }
    return out;
  }

  private request(desc: string, dump: boolean, build: (seq: number) => Buffer): Promise<NlMsg[]> {
    return new Promise<NlMsg[]>((resolve, reject) => {
      if (this.closed) {
        reject(new NetlinkError(desc, ERRNO.EBADF, null, 'the rtnetlink client is closed'));
        return;
      }
      this.queue.push({ desc, dump, build, resolve, reject, seq: 0, parts: [], interrupted: false, attempts: 0, timer: null });
      this.pump();
    });
  }

  private nextSeq(): number {
    do {
      this.seq = (this.seq + 1) >>> 0;
    } while (this.seq === 0 || this.pending.has(this.seq));
    return this.seq;
  }

  /** Starts queued requests in order while there is room. */
  private pump(): void {
    while (!this.closed && this.queue.length > 0 && this.pending.size < this.maxInFlight) {
      const head = this.queue[0]!;
      if (head.dump && (this.dumpActive || this.abandonedDump)) break; // one dump per socket at a time (else EBUSY)
      this.queue.shift();
      this.start(head);
    }
    this.updateRef();
  }

  /** The socket keeps the process alive exactly while someone waits for an answer. */
  private updateRef(): void {
    if (this.closed) return;
    const busy = this.pending.size > 0 || this.queue.length > 0 || this.abandonedDump !== null;
    if (busy !== this.refed) {
      this.refed = busy;
      if (busy) this.sock.ref();
      else this.sock.unref();
    }
  }

  private start(r: Request): void {
    r.seq = this.nextSeq();
    r.parts = [];
    r.interrupted = false;
    r.attempts += 1;
    if (r.dump) this.dumpActive = true;
    this.pending.set(r.seq, r);
    let msg: Buffer;
    try {
      msg = r.build(r.seq);
    } catch (e) {
      // Out-of-range numbers (an ifindex of -1, an mtu of 2^40) end up here, not in the kernel.
      this.finish(r, new NetlinkError(r.desc, ERRNO.EINVAL, null, `cannot encode the request: ${(e as Error).message}`));
      return;
    }
    const sent = this.sock.send(msg);
    if (isSysErr(sent)) {
      this.finish(r, new NetlinkError(r.desc, sent.errno, null, `send failed: ${describeErrno(sent.errno).text}`));
      return;
    }
    if (!r.timer) {
      r.timer = setTimeout(() => {
        if (r.dump && this.pending.get(r.seq) === r) this.abandonDump(r.seq);
        this.finish(r, new NetlinkError(r.desc, ERRNO.ETIMEDOUT, null, `no answer from the kernel within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    }
  }

  private finish(r: Request, result: Error | NlMsg[]): void {
    if (this.pending.get(r.seq) !== r) return;
    this.pending.delete(r.seq);
    if (r.timer) clearTimeout(r.timer);
    r.timer = null;
    if (r.dump) this.dumpActive = false;
    if (result instanceof Error) r.reject(result);
    else r.resolve(result);
    // Resolution callbacks run later (promises), so pumping here is safe.
    this.pump();
  }

  private onMessage(buf: Buffer): void {
    const { msgs, error } = parseMessages(buf);
    if (error) this.log?.warn({ error }, `rtnl: malformed datagram from the kernel: ${error}`);
    for (const m of msgs) {
      const r = this.pending.get(m.seq);
      if (!r) {
        // A late answer to a request that timed out, or noise. The end of an
        // abandoned dump frees the socket for the next one.
        if (this.abandonedDump?.seq === m.seq && (m.type === C.NLMSG_DONE || m.type === C.NLMSG_ERROR)) this.endAbandonedDump();
        continue;
      }
      if (m.type === C.NLMSG_ERROR) {
        const e = decodeError(m);
        if (!e.ok) this.finish(r, new NetlinkError(r.desc, ERRNO.EPROTO, null, `malformed answer: ${e.error}`));
        else if (e.value.errno === 0) this.finish(r, r.parts);
        else this.finish(r, new NetlinkError(r.desc, e.value.errno, e.value.extack));
      } else if (m.type === C.NLMSG_DONE) {
        // The payload of DONE is the dump's final status (negative errno), maybe with ext-ack TLVs.
        const status = m.payload.length >= 4 ? m.payload.readInt32LE(0) : 0;
        if (status < 0) {
          const e = decodeError(m);
          this.finish(r, new NetlinkError(r.desc, -status, e.ok ? e.value.extack : null));
        } else if (r.interrupted || m.flags & C.NLM_F_DUMP_INTR) {
          this.retryDump(r);
        } else {
          this.finish(r, r.parts);
        }
      } else if (m.type === C.NLMSG_NOOP || m.type === C.NLMSG_OVERRUN) {
        continue;
      } else {
        if (m.flags & C.NLM_F_DUMP_INTR) r.interrupted = true;
        r.parts.push(m);
      }
    }
  }

  private abandonDump(seq: number): void {
    if (this.abandonedDump) clearTimeout(this.abandonedDump.timer);
    const timer = setTimeout(() => this.endAbandonedDump(), this.timeoutMs);
    timer.unref();
    this.abandonedDump = { seq, timer };
  }

  private endAbandonedDump(): void {
    if (!this.abandonedDump) return;
    clearTimeout(this.abandonedDump.timer);
    this.abandonedDump = null;
    this.pump(); // also drops the socket's hold on the loop when nothing waits
  }

  /** The dump changed under us (NLM_F_DUMP_INTR): run it again, same timeout. */
  private retryDump(r: Request): void {
    this.pending.delete(r.seq);
    if (r.attempts >= MAX_DUMP_ATTEMPTS) {
      this.pending.set(r.seq, r);
      this.finish(r, new NetlinkError(r.desc, ERRNO.EPROTO, null, `dump interrupted by concurrent changes ${r.attempts} times in a row`));
      return;
    }
    this.dumpRetries += 1;
    this.log?.debug({ request: r.desc, attempt: r.attempts }, 'rtnl: dump interrupted, retrying');
    this.start(r);
  }

  /**
   * The kernel could not queue an answer for us (receive buffer full), or an
   * answer was cut short. Which request it was is unknowable, so every
   * outstanding one fails now rather than at its timeout; queued ones proceed.
   */
  private failInFlight(why: string): void {
    this.log?.warn({ inFlight: this.pending.size }, `rtnl: ${why}; failing the requests in flight`);
    for (const r of [...this.pending.values()]) {
      this.finish(r, new NetlinkError(r.desc, ERRNO.ENOBUFS, null, `${why}; the request may or may not have taken effect`));
    }
  }
}

// ---------------------------------------------------------------- events

export type RtnlGroup = 'link' | 'ipv4-ifaddr' | 'ipv6-ifaddr' | 'ipv4-route';
const GROUPS: Record<RtnlGroup, number> = {
  link: C.RTNLGRP_LINK,
  'ipv4-ifaddr': C.RTNLGRP_IPV4_IFADDR,
  'ipv6-ifaddr': C.RTNLGRP_IPV6_IFADDR,
  'ipv4-route': C.RTNLGRP_IPV4_ROUTE,
};
const DEFAULT_EVENTS_RCVBUF = 4 << 20;

export interface LinkEvent { type: 'new' | 'del'; link: LinkMsg }
export interface AddrEvent { type: 'new' | 'del'; addr: AddrMsg }
export interface RouteEvent { type: 'new' | 'del'; route: RouteMsg }

/**
 * Multicast notifications. Emits 'link' (LinkEvent), 'addr' (AddrEvent),
 * 'route' (RouteEvent), 'overflow' () when the kernel dropped events
 * (re-dump and reconcile), 'error' (Error). A throwing listener is reported
 * as 'error' and does not stop delivery of the remaining events.
 */
export class RtnlEvents extends EventEmitter {
  private readonly sock: NetlinkSocket;
  private readonly log: Logger | undefined;
  private listenerErrors = 0;
  /** What the kernel granted for the receive buffer (bytes, as SO_RCVBUF reports it). */
  readonly rcvbuf: number;

  static open(opts: { groups: RtnlGroup[]; rcvbufBytes?: number; log?: Logger }): RtnlEvents {
    return new RtnlEvents(opts);
  }

  private constructor(opts: { groups: RtnlGroup[]; rcvbufBytes?: number; log?: Logger }) {
    super();
    this.log = opts.log;
    this.sock = NetlinkSocket.open(opts.log ? { log: opts.log } : {});
    try {
      const rb = this.sock.setRcvbuf(opts.rcvbufBytes ?? DEFAULT_EVENTS_RCVBUF);
      if (rb.error) this.log?.warn({ errno: rb.error.code }, `rtnl events: cannot set the receive buffer: ${rb.error.code}`);
      this.rcvbuf = rb.actual;
      for (const g of opts.groups) {
        const n = GROUPS[g];
        if (n === undefined) throw new Error(`rtnl events: unknown group '${g}' (known: ${Object.keys(GROUPS).join(', ')})`);
        const e: SysErr | null = this.sock.addMembership(n);
        if (e) throw new Error(`rtnl events: cannot join multicast group ${g}: ${e.code}`);
      }
    } catch (e) {
      this.sock.close();
      throw e;
    }
    this.sock.on('message', (buf: Buffer) => this.onMessage(buf));
    this.sock.on('overflow', () => {
      this.log?.warn('rtnl events: the kernel dropped notifications (ENOBUFS); consumers re-dump');
      this.safeEmit('overflow');
    });
    this.sock.on('error', (e: Error & { code?: string }) => {
      // A truncated datagram lost notifications just as an overflow does.
      if (e.code === 'EMSGSIZE') this.safeEmit('overflow');
      this.emitError(e);
    });
  }

  close(): void {
    this.sock.close();
  }

  /** Datagrams received, overflows seen, listener exceptions caught. */
  stats(): ReturnType<NetlinkSocket['stats']> {
    const s = this.sock.stats();
    return { ...s, listenerErrors: s.listenerErrors + this.listenerErrors };
  }

  private onMessage(buf: Buffer): void {
    const { msgs, error } = parseMessages(buf);
    if (error) this.emitError(new Error(`rtnl events: malformed datagram: ${error}`));
    for (const m of msgs) {
      if (this.sock.closed) return;
      switch (m.type) {
        case C.RTM_NEWLINK:
        case C.RTM_DELLINK: {
          const r = decodeLink(m.payload);
          if (r.ok) this.safeEmit('link', { type: m.type === C.RTM_NEWLINK ? 'new' : 'del', link: r.value } satisfies LinkEvent);
          else this.emitError(new Error(`rtnl events: malformed link message: ${r.error}`));
          break;
        }
        case C.RTM_NEWADDR:
        case C.RTM_DELADDR: {
          const r = decodeAddr(m.payload);
          if (r.ok) this.safeEmit('addr', { type: m.type === C.RTM_NEWADDR ? 'new' : 'del', addr: r.value } satisfies AddrEvent);
          else this.emitError(new Error(`rtnl events: malformed address message: ${r.error}`));
          break;
        }
        case C.RTM_NEWROUTE:
        case C.RTM_DELROUTE: {
          const r = decodeRoute(m.payload);
          if (r.ok) this.safeEmit('route', { type: m.type === C.RTM_NEWROUTE ? 'new' : 'del', route: r.value } satisfies RouteEvent);
          else this.emitError(new Error(`rtnl events: malformed route message: ${r.error}`));
          break;
        }
        default:
          break; // other notifications (neighbours, ...) are not ours
      }
    }
  }

  private safeEmit(event: string, ...args: unknown[]): void {
    emitEach(this, event, args, (err) => {
      this.listenerErrors += 1;
      this.emitError(new Error(`rtnl events: '${event}' listener threw: ${err.message}`, { cause: err }));
    });
  }

  private emitError(err: Error): void {
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', err);
        return;
      } catch (e) {
        err = new Error(`rtnl events: 'error' listener threw: ${e instanceof Error ? e.message : String(e)}`, { cause: err });
      }
    }
    if (this.log) this.log.error({ err }, err.message);
    else process.emitWarning(err.message, { code: 'NETAGENT_NETLINK' });
  }
}
