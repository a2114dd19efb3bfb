// IPv4 addresses and CIDRs: the one parser the config, the rule engine and
// the netlink codec share, and the address math on top. Pure: no I/O.
//
// The parser is strict, so that what the config accepts is exactly what the
// kernel will be asked for:
// - a dotted quad of four decimal octets 0..255, with no leading zeros
//   ("064" is refused: inet_aton would read it as octal 52, others as 64);
// - no whitespace, no other forms (no "100.64.7", no hex);
// - a prefix length 0..32, also without leading zeros.
// A CIDR may have host bits set: "100.64.0.7/31" is an interface address
// (address 100.64.0.7 on network 100.64.0.6/31), which is what the agent
// mostly writes. Callers that need a network (route destinations) check it
// with isNetwork4().
//
// Errors say what is wrong ("octet "064" has a leading zero") and leave out
// the text itself: the caller names what it was for (a config key, a request).
import type { Result } from './vocab.js';

export interface Cidr4 {
  /** The address as a 32-bit unsigned number (host bits kept). */
  addr: number;
  len: number;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;
const PREFIX = /^(0|[1-9][0-9]?)$/;

/** IPv4 dotted quad -> 32-bit unsigned number, or why it is not one. */
export function readIp4(text: string): Result<number> {
  const parts = text.split('.');
  if (parts.length !== 4) return { ok: false, error: `want four dot-separated octets, got ${parts.length}` };
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) {
      const why = /^0[0-9]+$/.test(p) ? 'has a leading zero' : 'is not a decimal number';
      return { ok: false, error: `octet ${JSON.stringify(p)} ${why}` };
    }
    const o = Number(p);
    if (o > 255) return { ok: false, error: `octet ${p} is above 255` };
    n = n * 256 + o;
  }
  return { ok: true, value: n };
}

/** IPv4 dotted quad -> 32-bit unsigned number, or null. */
export function parseIp4(text: string): number | null {
  const r = readIp4(text);
  return r.ok ? r.value : null;
}

/**
 * 'a.b.c.d/len' -> Cidr4, or the reason it is not one. A bare address means
 * /32 unless opts.prefix is 'required'.
 */
export function readCidr4(text: string, opts: { prefix?: 'required' | 'optional' } = {}): Result<Cidr4> {
  const slash = text.indexOf('/');
  if (slash < 0 && opts.prefix === 'required') {
    return { ok: false, error: 'no prefix length' };
  }
  const a = readIp4(slash < 0 ? text : text.slice(0, slash));
  if (!a.ok) return a;
  if (slash < 0) return { ok: true, value: { addr: a.value, len: 32 } };
  const l = text.slice(slash + 1);
  if (!PREFIX.test(l) || Number(l) > 32) {
    return { ok: false, error: `prefix length ${JSON.stringify(l)} is not 0..32` };
  }
  return { ok: true, value: { addr: a.value, len: Number(l) } };
}

/** 'a.b.c.d/len' (bare address: /32) -> Cidr4, or null. */
export function parseCidr4(text: string): Cidr4 | null {
  const r = readCidr4(text);
  return r.ok ? r.value : null;
}

export function formatIp4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function formatCidr4(c: Cidr4): string {
  return `${formatIp4(c.addr)}/${c.len}`;
}

/** 4 bytes (network order) -> number; the netlink codec's form. */
export function ip4FromBytes(b: Uint8Array): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

export function ip4ToBytes(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function mask4(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** True when no host bits are set (100.64.0.6/31 is a network; 100.64.0.7/31 is not). */
export function isNetwork4(c: Cidr4): boolean {
  return ((c.addr & ~mask4(c.len)) >>> 0) === 0;
}

/** True when address `a` lies inside network `net`. */
export function inNet4(a: number, net: Cidr4): boolean {
  const m = mask4(net.len);
  return ((a & m) >>> 0) === ((net.addr & m) >>> 0);
}

/** The other address of a /31 (RFC 3021: the pair differs in the last bit). */
export function peer31(a: number): number {
  return (a ^ 1) >>> 0;
}

/** RFC 6598 shared address space: where MAC-encoded addresses must lie. */
export const SHARED_SPACE: Readonly<Cidr4> = Object.freeze({ addr: 0x64400000, len: 10 });
