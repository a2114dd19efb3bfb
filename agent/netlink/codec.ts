// Pure rtnetlink encoding and decoding. No I/O, no addon.
//
// Decoders never throw on bad input: every length read from a message is
// checked against the bytes actually there, and a malformed message gives a
// { ok: false, error } value naming what was wrong and where. A kernel bug
// (or a fuzzer) must not be able to kill the agent.
import { formatIp4, ip4FromBytes, ip4ToBytes, readCidr4, readIp4 } from '../core/ipv4.js';
import { formatMac, parseHwAddr } from '../core/mac.js';
import type { Result } from '../core/vocab.js';
import * as C from './constants.js';

export type { Result } from '../core/vocab.js';
const ok = <T>(value: T): Result<T> => ({ ok: true, value });
const bad = <T>(error: string): Result<T> => ({ ok: false, error });

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** The bytes after the 16-byte header, up to nlmsg_len (a view, not a copy). */
  payload: Buffer;
}

export interface LinkMsg {
  ifindex: number;
  name: string;
  /** lowercase 'aa:bb:cc:dd:ee:ff', '' if the link has no hardware address */
  mac: string;
  /** ifi_family: AF_UNSPEC (0) for the link itself; AF_BRIDGE (7) for bridge-port messages about it. */
  family: number;
  flags: number;
  up: boolean;
  running: boolean;
  promisc: boolean;
  mtu: number;
  operstate: string;
  kind: string | null;
  master: number | null;
  /** progId: the program (single mode), or the first of native/skb/hw in multi mode; per-mode ids, 0 when none. */
  xdp: { attached: XdpAttached; progId: number; skbProgId: number; drvProgId: number; hwProgId: number };
  /** Sent because the link's features changed (IFLA_EVENT_FEATURES: `ethtool -K`); the message does not say which. */
  featuresChanged?: true;
}
export type XdpAttached = 'none' | 'skb' | 'native' | 'hw' | 'multi';

export interface AddrMsg {
  ifindex: number;
  family: 4 | 6;
  /** IFA_ADDRESS: the peer on point-to-point addresses, else the same as local. */
  address: string;
  prefixlen: number;
  /** IFA_LOCAL: the interface's own address (IPv4; null when the kernel omits it, as for IPv6). */
  local: string | null;
  scope: number;
  label: string | null;
  /** IFA_PROTO: who added it (RTPROT_* numbers; the agent tags its own); null when not reported */
  proto: number | null;
}

export interface RouteMsg {
  family: 4 | 6;
  /** destination address without the prefix length ('0.0.0.0' / '::' for default) */
  dst: string;
  dstLen: number;
  oif: number | null;
  gateway: string | null;
  /** RTA_TABLE when present (tables > 255), else rtm_table */
  table: number;
  protocol: number;
  scope: number;
  type: number;
  priority: number | null;
}

export interface ErrorMsg {
  /** positive errno, 0 for an ack */
  errno: number;
  extack: string | null;
  /** NLMSGERR_ATTR_OFFS: offset of the offending attribute in the request */
  extackOffset: number | null;
  /** header of the request this answers */
  request: { len: number; type: number; flags: number; seq: number; pid: number } | null;
}

const align4 = (n: number): number => (n + 3) & ~3;

// ---------------------------------------------------------------- messages

/** Splits a datagram into netlink messages. Stops at the first malformed header. */
export function parseMessages(buf: Buffer): { msgs: NlMsg[]; error: string | null } {
  const msgs: NlMsg[] = [];
  let off = 0;
  while (off < buf.length) {
    const left = buf.length - off;
    if (left < C.NLMSG_HDRLEN) {
      return { msgs, error: `truncated nlmsghdr at offset ${off}: ${left} bytes left, need ${C.NLMSG_HDRLEN}` };
    }
    const len = buf.readUInt32LE(off);
    if (len < C.NLMSG_HDRLEN) return { msgs, error: `nlmsg_len ${len} at offset ${off} is shorter than the header` };
    if (len > left) return { msgs, error: `nlmsg_len ${len} at offset ${off} exceeds the ${left} bytes left` };
    msgs.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + C.NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return { msgs, error: null };
}

/** Parses a run of rtattrs. Types are masked (NLA_F_NESTED etc.); the last of duplicates wins. */
export function parseAttrs(buf: Buffer): Result<Map<number, Buffer>> {
  const attrs = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & C.NLA_TYPE_MASK;
    if (len < 4) return bad(`rta_len ${len} at offset ${off} is shorter than the attribute header`);
    if (len > buf.length - off) return bad(`rta_len ${len} of attribute ${type} at offset ${off} exceeds the ${buf.length - off} bytes left`);
    attrs.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  // Fewer than 4 bytes left can only be padding: ignored.
  return ok(attrs);
}

function u8(a: Buffer | undefined): number | null {
  return a && a.length >= 1 ? a.readUInt8(0) : null;
}
function u32(a: Buffer | undefined): number | null {
  return a && a.length >= 4 ? a.readUInt32LE(0) : null;
}
function str(a: Buffer | undefined): string | null {
  if (!a) return null;
  const nul = a.indexOf(0);
  return a.subarray(0, nul < 0 ? a.length : nul).toString('utf8');
}

/** Decodes an NLMSG_ERROR payload (acks are errno 0). */
export function decodeError(msg: NlMsg): Result<ErrorMsg> {
  const p = msg.payload;
  if (p.length < 4) return bad(`NLMSG_ERROR payload of ${p.length} bytes has no error code`);
  const errno = -p.readInt32LE(0);
  let request: ErrorMsg['request'] = null;
  let extack: string | null = null;
  let extackOffset: number | null = null;
  if (p.length >= 4 + C.NLMSG_HDRLEN) {
    const len = p.readUInt32LE(4);
    request = { len, type: p.readUInt16LE(8), flags: p.readUInt16LE(10), seq: p.readUInt32LE(12), pid: p.readUInt32LE(16) };
    if (msg.flags & C.NLM_F_ACK_TLVS) {
      // The original request follows in full unless the ack is capped (NETLINK_CAP_ACK, or a success ack).
      const origLen = msg.flags & C.NLM_F_CAPPED ? C.NLMSG_HDRLEN : len;
      if (origLen < C.NLMSG_HDRLEN || 4 + origLen > p.length) {
        return bad(`NLMSG_ERROR quotes a request of ${origLen} bytes but carries ${p.length - 4}`);
      }
      const tlv = parseAttrs(p.subarray(Math.min(p.length, 4 + align4(origLen))));
      if (!tlv.ok) return bad(`NLMSG_ERROR ext-ack: ${tlv.error}`);
      extack = str(tlv.value.get(C.NLMSGERR_ATTR_MSG));
      extackOffset = u32(tlv.value.get(C.NLMSGERR_ATTR_OFFS));
    }
  }
  return ok({ errno, extack, extackOffset, request });
}

// ---------------------------------------------------------------- addresses

/** Formats 4 or 16 bytes as `ip` (glibc inet_ntop) does; null for other lengths. */
export function formatIp(b: Buffer): string | null {
  if (b.length === 4) return formatIp4(ip4FromBytes(b));
  if (b.length !== 16) return null;
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push(b.readUInt16BE(i * 2));
  // Longest run (>= 2) of zero words becomes '::' (first one on ties).
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (bestLen < 2) best = -1;
  // IPv4-compatible and IPv4-mapped forms, as inet_ntop prints them.
  if (best === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
    return `::${bestLen === 5 ? 'ffff:' : ''}${formatIp4(ip4FromBytes(b.subarray(12)))}`;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) { out += i === 0 ? '::' : ':'; i += bestLen - 1; continue; }
    out += w[i]!.toString(16) + (i < 7 ? ':' : '');
  }
  return out;
}

/**
 * Parses a textual IPv4 or IPv6 address to bytes; null when it is not one.
 * IPv4 (also as the tail of an IPv6 address) is core/ipv4.ts's strict form.
 */
export function parseIp(s: string): { family: 4 | 6; bytes: Buffer } | null {
  if (!s.includes(':')) {
    const v4 = readIp4(s);
    return v4.ok ? { family: 4, bytes: ip4ToBytes(v4.value) } : null;
  }
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  let tail: number[] = [];
  let head = s;
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const v = parseIp(s.slice(lastColon + 1));
    if (!v || v.family !== 4) return null;
    tail = [(v.bytes[0]! << 8) | v.bytes[1]!, (v.bytes[2]! << 8) | v.bytes[3]!];
    head = s.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const parts = head.split('::');
  if (parts.length > 2) return null;
  const words = (x: string): number[] | null => {
    if (x === '') return [];
    const r: number[] = [];
    for (const p of x.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
      r.push(parseInt(p, 16));
    }
    return r;
  };
  const a = words(parts[0]!);
  const z = parts.length === 2 ? words(parts[1]!) : [];
  if (!a || !z) return null;
  const total = a.length + z.length + tail.length;
  let all: number[];
  if (parts.length === 2) {
    if (total > 7) return null;
    all = [...a, ...new Array<number>(8 - total).fill(0), ...z, ...tail];
  } else {
    if (total !== 8) return null;
    all = [...a, ...tail];
  }
  const bytes = Buffer.alloc(16);
  all.forEach((x, i) => bytes.writeUInt16BE(x, i * 2));
  return { family: 6, bytes };
}

/**
 * Parses 'addr/len' (a bare address means a host prefix). IPv4 goes through
 * core/ipv4.ts (host bits may be set: interface addresses are written so).
 */
export function parseCidr(s: string): Result<{ family: 4 | 6; bytes: Buffer; prefixlen: number; address: string }> {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  if (!addr.includes(':')) {
    const c = readCidr4(s);
    if (!c.ok) {
      const a4 = readIp4(addr);
      return bad(a4.ok ? `'${s}': ${c.error}` : `'${s}' is not an IPv4 or IPv6 address (${a4.error})`);
    }
    return ok({ family: 4, bytes: ip4ToBytes(c.value.addr), prefixlen: c.value.len, address: formatIp4(c.value.addr) });
  }
  const ipv = parseIp(addr);
  if (!ipv) return bad(`'${s}' is not an IPv4 or IPv6 address`);
  let prefixlen = 128;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 128) return bad(`'${s}': prefix length must be 0..128`);
    prefixlen = Number(p);
  }
  return ok({ ...ipv, prefixlen, address: formatIp(ipv.bytes)! });
}

/** IFLA_ADDRESS as text: '' when the link has none (tun, wireguard, ...). */
function hwAddr(b: Buffer | undefined): string {
  return b && b.length > 0 ? formatMac(b) : '';
}

// ---------------------------------------------------------------- decoders

const XDP_MODES: Record<number, XdpAttached> = {
  [C.XDP_ATTACHED_NONE]: 'none', [C.XDP_ATTACHED_DRV]: 'native', [C.XDP_ATTACHED_SKB]: 'skb',
  [C.XDP_ATTACHED_HW]: 'hw', [C.XDP_ATTACHED_MULTI]: 'multi',
};

/** Decodes the payload of RTM_NEWLINK / RTM_DELLINK. */
export function decodeLink(p: Buffer): Result<LinkMsg> {
  if (p.length < C.IFINFOMSG_LEN) return bad(`ifinfomsg of ${p.length} bytes, need ${C.IFINFOMSG_LEN}`);
  const family = p.readUInt8(0);
  const ifindex = p.readInt32LE(4);
  const flags = p.readUInt32LE(8);
  const at = parseAttrs(p.subarray(C.IFINFOMSG_LEN));
  if (!at.ok) return bad(`link ${ifindex}: ${at.error}`);
  const a = at.value;
  const name = str(a.get(C.IFLA_IFNAME));
  if (name === null) return bad(`link ${ifindex}: no IFLA_IFNAME`);
  let kind: string | null = null;
  const li = a.get(C.IFLA_LINKINFO);
  if (li) {
    const n = parseAttrs(li);
    if (!n.ok) return bad(`link ${name}: IFLA_LINKINFO: ${n.error}`);
    kind = str(n.value.get(C.IFLA_INFO_KIND));
  }
  let xdp: LinkMsg['xdp'] = { attached: 'none', progId: 0, skbProgId: 0, drvProgId: 0, hwProgId: 0 };
  const xa = a.get(C.IFLA_XDP);
  if (xa) {
    const n = parseAttrs(xa);
    if (!n.ok) return bad(`link ${name}: IFLA_XDP: ${n.error}`);
    const mode = u8(n.value.get(C.IFLA_XDP_ATTACHED)) ?? C.XDP_ATTACHED_NONE;
    const id = (t: number) => u32(n.value.get(t)) ?? 0;
    // Single mode: IFLA_XDP_PROG_ID. Multi: the per-mode ids; report the native one first.
    const attached = XDP_MODES[mode] ?? 'none';
    const single = id(C.IFLA_XDP_PROG_ID);
    // The kernel sends the per-mode ids only in multi mode: derive them otherwise.
    const drvProgId = id(C.IFLA_XDP_DRV_PROG_ID) || (attached === 'native' ? single : 0);
    const skbProgId = id(C.IFLA_XDP_SKB_PROG_ID) || (attached === 'skb' ? single : 0);
    const hwProgId = id(C.IFLA_XDP_HW_PROG_ID) || (attached === 'hw' ? single : 0);
    const progId = single || drvProgId || skbProgId || hwProgId;
    xdp = { attached, progId, skbProgId, drvProgId, hwProgId };
  }
  const op = u8(a.get(C.IFLA_OPERSTATE));
  return ok({
    ifindex,
    name,
    mac: hwAddr(a.get(C.IFLA_ADDRESS)),
    flags,
    up: (flags & C.IFF_UP) !== 0,
    running: (flags & C.IFF_RUNNING) !== 0,
    promisc: (flags & C.IFF_PROMISC) !== 0,
    mtu: u32(a.get(C.IFLA_MTU)) ?? 0,
    operstate: op === null ? 'UNKNOWN' : C.OPERSTATES[op] ?? `UNKNOWN(${op})`,
    kind,
    master: u32(a.get(C.IFLA_MASTER)),
    xdp,
    family,
    ...(u32(a.get(C.IFLA_EVENT)) === C.IFLA_EVENT_FEATURES ? { featuresChanged: true as const } : {}),
  });
}

function family(f: number): 4 | 6 | null {
  return f === C.AF_INET ? 4 : f === C.AF_INET6 ? 6 : null;
}

function addrAttr(a: Buffer | undefined, fam: 4 | 6, what: string): Result<string | null> {
  if (!a) return ok(null);
  if (a.length !== (fam === 4 ? 4 : 16)) return bad(`${what} of ${a.length} bytes for IPv${fam}`);
  return ok(formatIp(a));
}

/** Decodes the payload of RTM_NEWADDR / RTM_DELADDR. */
export function decodeAddr(p: Buffer): Result<AddrMsg> {
  if (p.length < C.IFADDRMSG_LEN) return bad(`ifaddrmsg of ${p.length} bytes, need ${C.IFADDRMSG_LEN}`);
  const fam = family(p.readUInt8(0));
  if (fam === null) return bad(`ifaddrmsg family ${p.readUInt8(0)} is neither AF_INET nor AF_INET6`);
  const prefixlen = p.readUInt8(1);
  const scope = p.readUInt8(3);
  const ifindex = p.readUInt32LE(4);
  const at = parseAttrs(p.subarray(C.IFADDRMSG_LEN));
  if (!at.ok) return bad(`address on ifindex ${ifindex}: ${at.error}`);
  const address = addrAttr(at.value.get(C.IFA_ADDRESS), fam, 'IFA_ADDRESS');
  const local = addrAttr(at.value.get(C.IFA_LOCAL), fam, 'IFA_LOCAL');
  if (!address.ok) return bad(`address on ifindex ${ifindex}: ${address.error}`);
  if (!local.ok) return bad(`address on ifindex ${ifindex}: ${local.error}`);
  const addr = address.value ?? local.value;
  if (addr === null) return bad(`address on ifindex ${ifindex}: neither IFA_ADDRESS nor IFA_LOCAL`);
  return ok({
    ifindex, family: fam, address: addr, prefixlen, local: local.value, scope,
    label: str(at.value.get(C.IFA_LABEL)), proto: u8(at.value.get(C.IFA_PROTO)),
  });
}

/** Decodes the payload of RTM_NEWROUTE / RTM_DELROUTE. */
export function decodeRoute(p: Buffer): Result<RouteMsg> {
  if (p.length < C.RTMSG_LEN) return bad(`rtmsg of ${p.length} bytes, need ${C.RTMSG_LEN}`);
  const fam = family(p.readUInt8(0));
  if (fam === null) return bad(`rtmsg family ${p.readUInt8(0)} is neither AF_INET nor AF_INET6`);
  const at = parseAttrs(p.subarray(C.RTMSG_LEN));
  if (!at.ok) return bad(`route: ${at.error}`);
  const a = at.value;
  const dst = addrAttr(a.get(C.RTA_DST), fam, 'RTA_DST');
  const gw = addrAttr(a.get(C.RTA_GATEWAY), fam, 'RTA_GATEWAY');
  if (!dst.ok) return bad(`route: ${dst.error}`);
  if (!gw.ok) return bad(`route: ${gw.error}`);
  return ok({
    family: fam,
    dst: dst.value ?? (fam === 4 ? '0.0.0.0' : '::'),
    dstLen: p.readUInt8(1),
    oif: u32(a.get(C.RTA_OIF)),
    gateway: gw.value,
    table: u32(a.get(C.RTA_TABLE)) ?? p.readUInt8(4),
    protocol: p.readUInt8(5),
    scope: p.readUInt8(6),
    type: p.readUInt8(7),
    priority: u32(a.get(C.RTA_PRIORITY)),
  });
}

// ---------------------------------------------------------------- encoders

export type Attr = { type: number; data: Buffer };

export const attr = (type: number, data: Buffer): Attr => ({ type, data });
export const attrU8 = (type: number, v: number): Attr => attr(type, Buffer.from([v & 0xff]));
export function attrU32(type: number, v: number): Attr {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return attr(type, b);
}
export const attrStr = (type: number, s: string): Attr => attr(type, Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]));
export const attrNested = (type: number, attrs: Attr[]): Attr => attr(type | C.NLA_F_NESTED, encodeAttrs(attrs));

export function encodeAttrs(attrs: Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const len = 4 + a.data.length;
    if (len > 0xffff) throw new RangeError(`attribute ${a.type} of ${a.data.length} bytes does not fit rta_len`);
    const h = Buffer.alloc(4);
    h.writeUInt16LE(len, 0);
    h.writeUInt16LE(a.type, 2);
    parts.push(h, a.data, Buffer.alloc(align4(len) - len));
  }
  return Buffer.concat(parts);
}

/** One netlink message: header + fixed part + attributes. */
export function encodeMsg(type: number, flags: number, seq: number, fixed: Buffer, attrs: Attr[] = [], pid = 0): Buffer {
  const body = Buffer.concat([fixed, Buffer.alloc(align4(fixed.length) - fixed.length), encodeAttrs(attrs)]);
  const h = Buffer.alloc(C.NLMSG_HDRLEN);
  h.writeUInt32LE(C.NLMSG_HDRLEN + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq >>> 0, 8);
  h.writeUInt32LE(pid >>> 0, 12);
  return Buffer.concat([h, body]);
}

export function ifinfomsg(f: { family?: number; type?: number; index?: number; flags?: number; change?: number }): Buffer {
  const b = Buffer.alloc(C.IFINFOMSG_LEN);
  b.writeUInt8(f.family ?? C.AF_UNSPEC, 0);
  b.writeUInt16LE(f.type ?? 0, 2);
  b.writeInt32LE(f.index ?? 0, 4);
  b.writeUInt32LE((f.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((f.change ?? 0) >>> 0, 12);
  return b;
}

export function ifaddrmsg(f: { family: number; prefixlen?: number; flags?: number; scope?: number; index?: number }): Buffer {
  const b = Buffer.alloc(C.IFADDRMSG_LEN);
  b.writeUInt8(f.family, 0);
  b.writeUInt8(f.prefixlen ?? 0, 1);
  b.writeUInt8(f.flags ?? 0, 2);
  b.writeUInt8(f.scope ?? 0, 3);
  b.writeUInt32LE((f.index ?? 0) >>> 0, 4);
  return b;
}

export function rtmsg(f: {
  family: number; dstLen?: number; srcLen?: number; tos?: number; table?: number;
  protocol?: number; scope?: number; type?: number; flags?: number;
}): Buffer {
  const b = Buffer.alloc(C.RTMSG_LEN);
  b.writeUInt8(f.family, 0);
  b.writeUInt8(f.dstLen ?? 0, 1);
  b.writeUInt8(f.srcLen ?? 0, 2);
  b.writeUInt8(f.tos ?? 0, 3);
  b.writeUInt8(f.table ?? 0, 4);
  b.writeUInt8(f.protocol ?? 0, 5);
  b.writeUInt8(f.scope ?? 0, 6);
  b.writeUInt8(f.type ?? 0, 7);
  b.writeUInt32LE((f.flags ?? 0) >>> 0, 8);
  return b;
}

function macBytes(mac: string): Buffer | null {
  if (mac === '') return null;
  const b = parseHwAddr(mac);
  if (!b) throw new RangeError(`'${mac}' is not a link-layer address`);
  return Buffer.from(b);
}

const XDP_CODES: Record<XdpAttached, number> = { none: 0, native: 1, skb: 2, hw: 3, multi: 4 };

/** Encodes a LinkMsg as the kernel would announce it (tests, fixtures). */
export function encodeLinkPayload(l: LinkMsg): Buffer {
  const attrs: Attr[] = [attrStr(C.IFLA_IFNAME, l.name), attrU32(C.IFLA_MTU, l.mtu)];
  const mac = macBytes(l.mac);
  if (mac) attrs.push(attr(C.IFLA_ADDRESS, mac));
  const op = C.OPERSTATES.indexOf(l.operstate as (typeof C.OPERSTATES)[number]);
  attrs.push(attrU8(C.IFLA_OPERSTATE, op < 0 ? 0 : op));
  if (l.kind !== null) attrs.push(attrNested(C.IFLA_LINKINFO, [attrStr(C.IFLA_INFO_KIND, l.kind)]));
  if (l.master !== null) attrs.push(attrU32(C.IFLA_MASTER, l.master));
  const x: Attr[] = [attrU8(C.IFLA_XDP_ATTACHED, XDP_CODES[l.xdp.attached])];
  if (l.xdp.attached === 'multi') {
    if (l.xdp.drvProgId) x.push(attrU32(C.IFLA_XDP_DRV_PROG_ID, l.xdp.drvProgId));
    if (l.xdp.skbProgId) x.push(attrU32(C.IFLA_XDP_SKB_PROG_ID, l.xdp.skbProgId));
    if (l.xdp.hwProgId) x.push(attrU32(C.IFLA_XDP_HW_PROG_ID, l.xdp.hwProgId));
  } else if (l.xdp.progId) {
    x.push(attrU32(C.IFLA_XDP_PROG_ID, l.xdp.progId));
  }
  attrs.push(attrNested(C.IFLA_XDP, x));
  return Buffer.concat([ifinfomsg({ family: l.family, index: l.ifindex, flags: l.flags }), encodeAttrs(attrs)]);
}

function ipBytes(s: string): Buffer {
  const v = parseIp(s);
  if (!v) throw new RangeError(`'${s}' is not an IP address`);
  return v.bytes;
}

/** Encodes an AddrMsg as the kernel would announce it (tests, fixtures). */
export function encodeAddrPayload(a: AddrMsg): Buffer {
  const attrs: Attr[] = [attr(C.IFA_ADDRESS, ipBytes(a.address))];
  if (a.local !== null) attrs.push(attr(C.IFA_LOCAL, ipBytes(a.local)));
  if (a.label !== null) attrs.push(attrStr(C.IFA_LABEL, a.label));
  if (a.proto !== null) attrs.push(attrU8(C.IFA_PROTO, a.proto));
  return Buffer.concat([
    ifaddrmsg({ family: a.family === 4 ? C.AF_INET : C.AF_INET6, prefixlen: a.prefixlen, scope: a.scope, index: a.ifindex }),
    encodeAttrs(attrs),
  ]);
}

/** Encodes a RouteMsg as the kernel would announce it (tests, fixtures). */
export function encodeRoutePayload(r: RouteMsg): Buffer {
  const attrs: Attr[] = [attrU32(C.RTA_TABLE, r.table)];
  if (r.dstLen > 0) attrs.push(attr(C.RTA_DST, ipBytes(r.dst)));
  if (r.oif !== null) attrs.push(attrU32(C.RTA_OIF, r.oif));
  if (r.gateway !== null) attrs.push(attr(C.RTA_GATEWAY, ipBytes(r.gateway)));
  if (r.priority !== null) attrs.push(attrU32(C.RTA_PRIORITY, r.priority));
  return Buffer.concat([
    rtmsg({
      family: r.family === 4 ? C.AF_INET : C.AF_INET6, dstLen: r.dstLen, table: r.table < 256 ? r.table : C.RT_TABLE_UNSPEC,
      protocol: r.protocol, scope: r.scope, type: r.type,
    }),
    encodeAttrs(attrs),
  ]);
}
