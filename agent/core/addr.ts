// The addresses a MAC encodes (the inter-VM and routed-client designs).
// Pure code: no I/O. IPv4 parsing and math live in ipv4.ts.
import { formatIp4, inNet4, SHARED_SPACE } from './ipv4.js';
import { formatMac } from './mac.js';

// Old home of the IPv4 helpers: plan.ts and others still import them from here.
export { formatCidr4, formatIp4, inNet4, mask4, parseCidr4, parseIp4, peer31, SHARED_SPACE, type Cidr4 } from './ipv4.js';

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
  return checkSpace(addr, 31, `MAC ${formatMac(mac)}`, allowPublic);
}

/**
 * 2023-2025 routed design: `02:01:XX:XX:AA:BB` is a link to the client whose
 * address is `100.64.AA.BB` (always inside 100.64.0.0/10).
 */
export function decodeRoutedClient(mac: Uint8Array): Decoded {
  const addr = ((100 << 24) | (64 << 16) | (mac[4]! << 8) | mac[5]!) >>> 0;
  return { ok: true, cidr: `${formatIp4(addr)}/32`, addr, len: 32 };
}
