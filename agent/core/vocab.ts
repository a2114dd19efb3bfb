// The words the agent's parts share: profiles, roles, programs, XDP modes,
// link states, limits. One place, so config, rules, forwarder and status
// cannot drift apart. Pure: types and constants only.

/** A value or the reason there is none; for parsers and decoders that must not throw. */
export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

/** Deployment profiles (SPEC: one per VM kind). */
export const PROFILES = ['xdp-forwarder', 'router-p2p', 'router-routed', 'client'] as const;
export type ProfileName = (typeof PROFILES)[number];

/** Our two XDP programs (bpf/physical.c, bpf/router.c). */
export const XDP_PROGRAMS = ['physical', 'router'] as const;
export type XdpProgram = (typeof XDP_PROGRAMS)[number];

/** How a program is attached: generic (skb) or in the driver (native). */
export type XdpMode = 'skb' | 'native';
/** The xdpMode setting: a mode, or 'auto' (native, falling back to skb where the driver cannot). */
export const XDP_MODES = ['skb', 'native', 'auto'] as const;
export type XdpModeSetting = (typeof XDP_MODES)[number];

/** What a link is to the agent under the current profile. */
export type Role = 'router-link' | 'physical' | 'inter-vm' | 'client-link' | 'loopback' | 'ignored';

/** Where a link stands: as wanted, still being configured, refused or failed, or left alone. */
export type LinkState = 'configured' | 'pending' | 'failed' | 'ignored';

// VLAN IDs (1..4094, any ifindex) are core/vid.ts's: VID_FIRST, VID_LAST.
