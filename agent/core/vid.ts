// Which 802.1Q VLAN ID a NIC gets in the xdp-forwarder profile: a pure
// decision (no I/O), so the agent can plan with it and tests can pin it down.
// Forwarder.setNicVid then writes it into the maps.
//
// What the router on the other end needs (SPEC): one VID per NIC, unique,
// stable while the NIC exists; among uplinks with a live Router
// Advertisement the LOWEST VID wins. So the rules, in order:
//   1. pin:     a config pin that matches the NIC (by MAC, else by name
//               pattern), if no other NIC holds that VID. Pins let a person
//               prefer one uplink (a low VID for the wired NIC).
//   2. kept:    the VID the NIC already has, if still valid: stable across
//               agent restarts and re-plans.
//   3. ifindex: VID = ifindex when that is 1..4094 and free (the published
//               design's choice, so compatible routers see the same VIDs).
//   4. free:    the HIGHEST free VID (4094 downwards). Highest, not lowest:
//               a NIC that only got a VID because its ifindex did not fit
//               (> 4094 after many hotplugs) must not become the preferred
//               uplink by accident and take over from the wired NIC.
// A VID named by a pin is reserved for NICs matching that pin: rules 2-4
// never give it to another NIC, so a pinned NIC that appears later still
// gets its VID. null: no VID left (4094 NICs).

export const VID_FIRST = 1;
export const VID_LAST = 4094;

/** Config pins: key a MAC (aa:bb:cc:dd:ee:ff, any case) or a name pattern (`*` any run, `?` one character); value the VID. */
export type VidPins = Readonly<Record<string, number>>;

export interface VidNic { ifindex: number; name: string; mac: string | null }

export interface VidChoice {
  vid: number;
  why: 'pin' | 'kept' | 'ifindex' | 'free';
  /** Set when the NIC's pin could not be honoured because another NIC holds that VID. */
  pinConflict?: { vid: number; heldBy: number };
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function isVid(n: number): boolean {
  return Number.isInteger(n) && n >= VID_FIRST && n <= VID_LAST;
}

/** Problems with a pins object (empty when fine): VIDs out of range, two pins with one VID, empty keys. */
export function checkVidPins(pins: VidPins): string[] {
  const errs: string[] = [];
  const byVid = new Map<number, string>();
  for (const [key, vid] of Object.entries(pins)) {
    if (!key) errs.push('vid pin with an empty name pattern');
    if (!isVid(vid)) errs.push(`vid pin ${key}: ${vid} is not a usable VLAN ID (${VID_FIRST}..${VID_LAST}; 0 and 4095 are reserved)`);
    const other = byVid.get(vid);
    if (other !== undefined) errs.push(`vid pins ${other} and ${key} both name VID ${vid}: a VID names one NIC`);
    else byVid.set(vid, key);
  }
  return errs;
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * The pin that applies to the NIC: a MAC pin first, then an exact name,
 * then the first matching pattern in the order written. null: none.
 */
export function pinFor(nic: VidNic, pins: VidPins): { key: string; vid: number } | null {
  const entries = Object.entries(pins);
  const mac = nic.mac?.toLowerCase();
  const byMac = entries.find(([k]) => MAC_RE.test(k) && k.toLowerCase() === mac);
  if (byMac) return { key: byMac[0], vid: byMac[1] };
  const names = entries.filter(([k]) => !MAC_RE.test(k));
  const exact = names.find(([k]) => k === nic.name);
  if (exact) return { key: exact[0], vid: exact[1] };
  const pat = names.find(([k]) => /[*?]/.test(k) && globToRegExp(k).test(nic.name));
  return pat ? { key: pat[0], vid: pat[1] } : null;
}

/**
 * The rules for one NIC, given who holds what: its pin if free, else the
 * VID it has (current) if usable, else its ifindex, else the highest free
 * VID; a usable VID is 1..4094, not held by another NIC, not reserved by a
 * pin. `holder(vid)` names the other NIC holding a VID (undefined: free).
 * The planner calls this with its reverse index (O(1) per question);
 * chooseVid() below is the same from a plain map.
 */
export function pickVid(
  nic: { ifindex: number; current?: number | undefined; pin: number | null },
  holder: (vid: number) => number | undefined,
  reserved: ReadonlySet<number>,
): VidChoice | null {
  let pinConflict: VidChoice['pinConflict'];
  if (nic.pin !== null && isVid(nic.pin)) {
    const h = holder(nic.pin);
    if (h === undefined) return { vid: nic.pin, why: 'pin' };
    pinConflict = { vid: nic.pin, heldBy: h };
  }
  const usable = (v: number | undefined): v is number => v !== undefined && isVid(v) && holder(v) === undefined && !reserved.has(v);
  const withConflict = (c: VidChoice): VidChoice => (pinConflict ? { ...c, pinConflict } : c);
  if (usable(nic.current)) return withConflict({ vid: nic.current, why: 'kept' });
  if (usable(nic.ifindex)) return withConflict({ vid: nic.ifindex, why: 'ifindex' });
  for (let v = VID_LAST; v >= VID_FIRST; v--) if (usable(v)) return withConflict({ vid: v, why: 'free' });
  return null;
}

/**
 * The VID `nic` should have, given `assigned` (ifindex -> VID as the maps
 * hold it now; the NIC's own entry, if any, is its current VID) and the
 * config pins. Deterministic; the rules are pickVid's.
 */
export function chooseVid(nic: VidNic, assigned: ReadonlyMap<number, number>, pins: VidPins = {}): VidChoice | null {
  const held = new Map<number, number>(); // VID -> ifindex, other NICs only
  for (const [ifindex, vid] of assigned) if (ifindex !== nic.ifindex) held.set(vid, ifindex);
  const reserved = new Set(Object.values(pins).filter(isVid));
  return pickVid({ ifindex: nic.ifindex, current: assigned.get(nic.ifindex), pin: pinFor(nic, pins)?.vid ?? null }, (v) => held.get(v), reserved);
}
