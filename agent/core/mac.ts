// MAC addresses: parsing, normalising, and telling links apart by prefix.
// Pure code: no I/O.
import type { MacPrefixes } from '../config.js';

/** Parses "AA:bb:0C:..." (6 octets, ':' or '-' separated) to bytes, or null. */
export function parseMac(text: string): Uint8Array | null {
  const parts = text.trim().split(/[:-]/);
  if (parts.length !== 6) return null;
  const out = new Uint8Array(6);
  for (let i = 0; i < 6; i++) {
    const p = parts[i]!;
    if (!/^[0-9a-fA-F]{1,2}$/.test(p)) return null;
    out[i] = parseInt(p, 16);
  }
  return out;
}

/** Lower-case colon form, e.g. "0a:b3:ec:40:00:02". */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Normalised form of a MAC string, or null when it is not one. */
export function normalizeMac(text: string): string | null {
  const b = parseMac(text);
  return b ? formatMac(b) : null;
}

/** True when `mac` starts with `prefix` (both colon-separated hex; case-insensitive). */
export function macHasPrefix(mac: string, prefix: string): boolean {
  const m = normalizeMac(mac);
  if (!m) return false;
  const p = prefix.toLowerCase().split(/[:-]/).map((x) => x.padStart(2, '0')).join(':');
  return p.length > 0 && m.startsWith(p) && (m.length === p.length || m[p.length] === ':');
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
