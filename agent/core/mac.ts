// MAC addresses: parsing, normalising, and telling links apart by prefix.
// Pure code: no I/O.
import type { MacPrefixes } from '../config.js';

/**
 * The one reader of hardware addresses: `count` octets of exactly two hex
 * digits (any case), separated by ':' or by '-' (one or the other
 * throughout). Strict, so that the config accepts only what classification
 * will match.
 */
function readOctets(text: string, min: number, max: number): Uint8Array | null {
  const sep = text.includes('-') ? '-' : ':';
  const parts = text.split(sep);
  if (parts.length < min || parts.length > max || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) return null;
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/** Parses "AA:bb:0C:..." (6 octets, ':' or '-' separated) to bytes, or null. */
export function parseMac(text: string): Uint8Array | null {
  return readOctets(text, 6, 6);
}

/** A MAC prefix ("02:01", "0a:b3:ec"): 1 to 6 whole octets, or null. */
export function parseMacPrefix(text: string): Uint8Array | null {
  return readOctets(text, 1, 6);
}

/** Any link-layer address as netlink carries it (1..32 octets: MAX_ADDR_LEN), or null. */
export function parseHwAddr(text: string): Uint8Array | null {
  return readOctets(text, 1, 32);
}

/** Lower-case colon form, e.g. "0a:b3:ec:40:00:02" (any length: also other link-layer addresses). */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Normalised form of a MAC string, or null when it is not one. */
export function normalizeMac(text: string): string | null {
  const b = parseMac(text);
  return b ? formatMac(b) : null;
}

/** Normalised form of a MAC prefix, or null when it is not one. */
export function normalizeMacPrefix(text: string): string | null {
  const b = parseMacPrefix(text);
  return b ? formatMac(b) : null;
}

/** True when `mac` starts with `prefix` (whole octets; case-insensitive). False when either does not parse. */
export function macHasPrefix(mac: string, prefix: string): boolean {
  const m = parseMac(mac);
  const p = parseMacPrefix(prefix);
  return !!m && !!p && p.every((b, i) => m[i] === b);
}

/** What a MAC says about a link, before any profile looks at it. */
export type MacClass = 'loopback' | 'router-link' | 'inter-vm' | 'client-link' | 'physical' | 'none';

/**
 * Classifies by MAC as the spec's table does. 'none' is a link without an
 * Ethernet address (tun, wireguard, ...), which is never a NIC of ours.
 */
export function classifyMac(mac: string, prefixes: MacPrefixes): MacClass {
  if (mac === '') return 'none';
  const m = normalizeMac(mac);
  if (!m) return 'none';
  if (m === '00:00:00:00:00:00') return 'loopback';
  if (macHasPrefix(m, prefixes.interVm)) return 'inter-vm';
  if (macHasPrefix(m, prefixes.routerLink)) return 'router-link';
  if (macHasPrefix(m, prefixes.clientLink)) return 'client-link';
  return 'physical';
}

/** Matches an interface name against `eth*`-style patterns (only `*` is special). */
export function nameMatches(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    if (!p.includes('*')) return p === name;
    const re = new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return re.test(name);
  });
}
