// IPv4 address math and the addresses a MAC encodes. Pure code: no I/O.

/** IPv4 dotted quad -> 32-bit unsigned number, or null. */
export function parseIp4(text: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text.trim());
  if (!m) return null;
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) return null;
  return ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
}

export function formatIp4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr4 {
  addr: number;
  len: number;
}

export function parseCidr4(text: string): Cidr4 | null {
  const [a, l, extra] = text.split('/');
  if (extra !== undefined || a === undefined) return null;
  const addr = parseIp4(a);
  const len = l === undefined ? 32 : /^\d{1,2}$/.test(l) ? Number(l) : NaN;
  if (addr === null || !(len >= 0 && len <= 32)) return null;
  return { addr, len };
}

export function formatCidr4(c: Cidr4): string {
  return `${formatIp4(c.addr)}/${c.len}`;
}

export function mask4(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** True when address `a` lies inside network `net`. */
export function inNet4(a: number, net: Cidr4): boolean {
  const m = mask4(net.len);
  return ((a & m) >>> 0) === ((net.addr & m) >>> 0);
}

/** RFC 6598 shared address space: where MAC-encoded addresses must lie. */
export const SHARED_SPACE: Cidr4 = { addr: parseIp4('100.64.0.0')!, len: 10 };

/** The other address of a /31 (RFC 3021: the pair differs in the last bit). */
export function peer31(a: number): number {
  return (a ^ 1) >>> 0;
}

/** Result of decoding an address from a MAC. */
export type Decoded = { ok: true; cidr: string; addr: number; len: number } | { ok: false; error: string };

function checkSpace(addr: number, len: number, what: string, allowPublic: boolean): Decoded {
  if (!allowPublic && !inNet4(addr, SHARED_SPACE)) {
    return {
      ok: false,
      error:
        `${what} decodes to ${formatIp4(addr)}, outside the shared address space 100.64.0.0/10; ` +
        `refusing it (fix the MAC the host gives this NIC, or set "allowPublicAddresses": true)`,
    };
  }
  return { ok: true, cidr: `${formatIp4(addr)}/${len}`, addr, len };
}

/**
 * 2021 design: `0a:b3:ec:AA:BB:CC` -> `100.AA.BB.CC/31`, octets read as hex
 * bytes (0a:b3:ec:40:00:02 -> 100.64.0.2/31).
 */
export function decodeInterVm(mac: Uint8Array, allowPublic: boolean): Decoded {
  const addr = ((100 << 24) | (mac[3]! << 16) | (mac[4]! << 8) | mac[5]!) >>> 0;
  return checkSpace(addr, 31, `MAC ${hex(mac)}`, allowPublic);
}

/**
 * 2023-2025 routed design: `02:01:XX:XX:AA:BB` is a link to the client whose
 * address is `100.64.AA.BB` (always inside 100.64.0.0/10).
 */
export function decodeRoutedClient(mac: Uint8Array): Decoded {
  const addr = ((100 << 24) | (64 << 16) | (mac[4]! << 8) | mac[5]!) >>> 0;
  return { ok: true, cidr: `${formatIp4(addr)}/32`, addr, len: 32 };
}

function hex(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}
