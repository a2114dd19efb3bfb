// Netdev features (what `ethtool -k/-K` shows and sets), through the ethtool
// ioctl on one socket: no process per NIC. The agent needs one of them:
// rx-vlan-offload (the kernel's "rx-vlan-hw-parse", NETIF_F_HW_VLAN_CTAG_RX).
// A NIC that strips 802.1Q tags on receive hands XDP the frame untagged and
// keeps the tag in skb metadata; `physical` then pushes our tag, and the
// kernel re-inserts the LAN's tag OUTSIDE ours on the way to the router
// (SPEC "Tagged traffic from a LAN"). With the offload off the tag stays in
// the frame, and ours goes outside it.
//
// Why the ioctl and not the ethtool genetlink family: three fixed-layout
// calls (GSSET_INFO + GSTRINGS once per process, GFEATURES/SFEATURES per
// change) on a socket in the agent's network namespace, and the answer to a
// set says directly whether the feature is fixed (ETHTOOL_F_UNSUPPORTED) or
// the driver declined (ETHTOOL_F_WISH).
//
// Feature names are the kernel's (netdev_features_strings), the same for
// every device; their bit positions are looked up by name once and cached,
// since they differ between kernel versions.
import koffi from 'koffi';
import { errnoName, errnoText } from './core/errno.js';

// linux/socket.h, linux/sockios.h, linux/ethtool.h
const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCETHTOOL = 0x8946;
const ETHTOOL_GSTRINGS = 0x1b;
const ETHTOOL_GSSET_INFO = 0x37;
const ETHTOOL_GFEATURES = 0x3a;
const ETHTOOL_SFEATURES = 0x3b;
const ETH_SS_FEATURES = 4;
const ETH_GSTRING_LEN = 32;
const ETHTOOL_F_UNSUPPORTED = 1 << 0;
const ETHTOOL_F_WISH = 1 << 1;
const IFNAMSIZ = 16;
/** struct ifreq on x86-64: ifr_name[16], then a 24-byte union whose ifr_data pointer is at 16. */
const IFREQ_SIZE = 40;
const IFR_DATA = 16;
/** struct ethtool_get_features_block: available, requested, active, never_changed (u32 each). */
const GBLOCK = 16;
/** struct ethtool_set_features_block: valid, requested. */
const SBLOCK = 8;

/** The feature `ethtool -k` calls rx-vlan-offload. */
export const RX_VLAN_HW_PARSE = 'rx-vlan-hw-parse';

const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  // Variadic in glibc: bound as such so koffi follows the variadic calling convention.
  ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
};

/** Why a feature could not be read or set. */
export type EthtoolFailure =
  /** The ioctl itself failed (errno says why: ENODEV, EPERM, ...). */
  | 'errno'
  /** The driver offers no way to change it (`ethtool -k` shows "[fixed]"). */
  | 'fixed'
  /** The driver was asked and the feature stayed as it was. */
  | 'refused';

export class EthtoolError extends Error {
  readonly link: string;
  readonly feature: string;
  readonly reason: EthtoolFailure;
  /** The errno for reason 'errno', else 0. */
  readonly errno: number;
  readonly code: string | null;

  constructor(link: string, feature: string, reason: EthtoolFailure, message: string, errno = 0) {
    super(message);
    this.name = 'EthtoolError';
    this.link = link;
    this.feature = feature;
    this.reason = reason;
    this.errno = errno;
    this.code = errno ? errnoName(errno) : null;
  }
}

let sockFd = -1;
/** The one socket every ethtool ioctl goes through (in the network namespace we were started in). */
function sock(): number {
  if (sockFd < 0) {
    const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
    if (fd < 0) {
      const e = koffi.errno();
      throw new Error(`ethtool: socket(AF_INET, SOCK_DGRAM) failed with ${errnoName(e)} (${errnoText(e)}): no feature of any link can be read or set`);
    }
    sockFd = fd;
  }
  return sockFd;
}

function hintFor(errno: number): string {
  switch (errnoName(errno)) {
    case 'ENODEV': return 'no such link in this network namespace (removed or renamed meanwhile?)';
    case 'EPERM': case 'EACCES': return 'run as root (changing link features needs CAP_NET_ADMIN)';
    case 'EOPNOTSUPP': return 'the driver does not support this ethtool request';
    default: return errnoText(errno);
  }
}

/**
 * SIOCETHTOOL on `ifname` with `data` as the ethtool command buffer (its
 * first u32 is the command). Returns the ioctl's non-negative result.
 */
function ethtool(ifname: string, data: Buffer, what: string, feature: string): number {
  if (!ifname || Buffer.byteLength(ifname) >= IFNAMSIZ || ifname.includes('\0')) {
    throw new EthtoolError(ifname, feature, 'errno', `${ifname}: cannot ${what}: "${ifname}" is not a link name (1 to ${IFNAMSIZ - 1} bytes)`, 22);
  }
  const ifr = Buffer.alloc(IFREQ_SIZE);
  ifr.write(ifname, 0, 'utf8');
  ifr.writeBigUInt64LE(BigInt(koffi.address(data)), IFR_DATA);
  const r = c.ioctl(sock(), SIOCETHTOOL, 'void *', ifr) as number;
  const errno = r < 0 ? koffi.errno() : 0; // read before any other native call
  void data; // keep the command buffer reachable until the kernel is done with it
  if (r < 0) {
    throw new EthtoolError(ifname, feature, 'errno', `${ifname}: cannot ${what}: ioctl(SIOCETHTOOL) failed with ${errnoName(errno)}: ${hintFor(errno)}`, errno);
  }
  return r;
}

// ---- feature names -> bit positions (the same for every link; cached) ----
let featureBits: Map<string, number> | null = null;

function featureIndex(ifname: string, feature: string): number | null {
  if (!featureBits) {
    const info = Buffer.alloc(16 + 4); // ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1]
    info.writeUInt32LE(ETHTOOL_GSSET_INFO, 0);
    info.writeBigUInt64LE(1n << BigInt(ETH_SS_FEATURES), 8);
    ethtool(ifname, info, 'list the kernel\'s feature names', feature);
    if (!(info.readBigUInt64LE(8) & (1n << BigInt(ETH_SS_FEATURES)))) {
      throw new EthtoolError(ifname, feature, 'errno', `${ifname}: cannot list the kernel's feature names: ETHTOOL_GSSET_INFO has no ETH_SS_FEATURES set`, 95);
    }
    const count = info.readUInt32LE(16);
    const strings = Buffer.alloc(12 + count * ETH_GSTRING_LEN); // ethtool_gstrings: cmd, string_set, len, data
    strings.writeUInt32LE(ETHTOOL_GSTRINGS, 0);
    strings.writeUInt32LE(ETH_SS_FEATURES, 4);
    strings.writeUInt32LE(count, 8);
    ethtool(ifname, strings, 'list the kernel\'s feature names', feature);
    const bits = new Map<string, number>();
    for (let i = 0; i < Math.min(count, strings.readUInt32LE(8)); i++) {
      const raw = strings.subarray(12 + i * ETH_GSTRING_LEN, 12 + (i + 1) * ETH_GSTRING_LEN);
      const nul = raw.indexOf(0);
      const name = raw.toString('latin1', 0, nul < 0 ? raw.length : nul);
      if (name) bits.set(name, i);
    }
    featureBits = bits;
  }
  return featureBits.get(feature) ?? null;
}

/** One feature of one link, as `ethtool -k` shows it. */
export interface FeatureState {
  /** What the link does now. */
  active: boolean;
  /** What was last asked for (may differ from active when the driver declined). */
  requested: boolean;
  /** false where `ethtool -k` says "[fixed]": not in the driver's changeable set, or never changeable. */
  changeable: boolean;
}

interface Blocks { words: number; buf: Buffer }

function getFeatures(ifname: string, feature: string): Blocks {
  const want = Math.ceil((featureBits?.size ?? 64) / 32) + 1; // room to spare: the kernel says how many it has
  const buf = Buffer.alloc(8 + want * GBLOCK);
  buf.writeUInt32LE(ETHTOOL_GFEATURES, 0);
  buf.writeUInt32LE(want, 4);
  ethtool(ifname, buf, 'read its features', feature);
  const words = buf.readUInt32LE(4); // ETHTOOL_DEV_FEATURE_WORDS of this kernel
  if (words > want) throw new Error(`ethtool: the kernel has ${words} feature words, more than the ${want} asked for`);
  return { words, buf };
}

function stateOf(b: Blocks, bit: number): FeatureState {
  const off = 8 + (bit >> 5) * GBLOCK;
  const mask = (1 << (bit & 31)) >>> 0;
  const has = (field: number) => ((b.buf.readUInt32LE(off + field) & mask) >>> 0) !== 0;
  return { requested: has(4), active: has(8), changeable: has(0) && !has(12) };
}

/** The state of `feature` (a kernel feature name) on `ifname`; null when this kernel has no such feature. */
export function feature(ifname: string, name: string): FeatureState | null {
  const bit = featureIndex(ifname, name);
  if (bit === null) return null;
  return stateOf(getFeatures(ifname, name), bit);
}

/** How people know the feature: `ethtool -k` prints the short names for these. */
const SHOWN_AS: Readonly<Record<string, string>> = { [RX_VLAN_HW_PARSE]: 'rx-vlan-offload', 'rx-vlan-stag-hw-parse': 'rx-vlan-stag-hw-parse' };
const shown = (name: string) => (SHOWN_AS[name] && SHOWN_AS[name] !== name ? `${SHOWN_AS[name]} (${name})` : name);

/** What it costs when a feature stays on against our wish, for the messages. */
const CONSEQUENCE: Readonly<Record<string, string>> = {
  [RX_VLAN_HW_PARSE]: 'frames of tagged LANs will arrive at the router with their tag outside ours (untagged LANs are unaffected)',
};

/**
 * Turns `name` on or off on `ifname`; nothing is sent when it already is.
 * Returns whether it was on before (null: this kernel has no such feature),
 * read in the same ioctl that the change needs anyway.
 * Throws an EthtoolError naming the link, what was attempted and what to do:
 * reason 'fixed' when the driver cannot change it, 'refused' when it was asked
 * and the feature stayed, 'errno' when the ioctl failed.
 */
export function setFeature(ifname: string, name: string, on: boolean): boolean | null {
  const bit = featureIndex(ifname, name);
  const what = `turn ${shown(name)} ${on ? 'on' : 'off'}`;
  const cost = CONSEQUENCE[name] && !on ? `; ${CONSEQUENCE[name]}` : '';
  if (bit === null) {
    if (!on) return null; // a feature this kernel does not know is off everywhere
    throw new EthtoolError(ifname, name, 'fixed', `${ifname}: cannot ${what}: this kernel has no such feature`);
  }
  const before = getFeatures(ifname, name);
  const st = stateOf(before, bit);
  if (st.active === on && st.requested === on) return st.active;
  if (!st.changeable && st.active !== on) {
    throw new EthtoolError(ifname, name, 'fixed',
      `${ifname}: cannot ${what}: the driver has it fixed ${st.active ? 'on' : 'off'} (ethtool -k ${ifname} shows [fixed])${cost}; use a NIC whose driver can change it`);
  }
  if (!st.changeable) return st.active; // fixed, already as wanted
  const buf = Buffer.alloc(8 + before.words * SBLOCK);
  buf.writeUInt32LE(ETHTOOL_SFEATURES, 0);
  buf.writeUInt32LE(before.words, 4); // must equal the kernel's word count exactly
  const off = 8 + (bit >> 5) * SBLOCK;
  const mask = (1 << (bit & 31)) >>> 0;
  buf.writeUInt32LE(mask, off); // valid
  buf.writeUInt32LE(on ? mask : 0, off + 4); // requested
  const flags = ethtool(ifname, buf, what, name);
  if (flags & ETHTOOL_F_UNSUPPORTED) {
    throw new EthtoolError(ifname, name, 'fixed', `${ifname}: cannot ${what}: the driver cannot change it${cost}; use a NIC whose driver can`);
  }
  if (flags & ETHTOOL_F_WISH) {
    const now = stateOf(getFeatures(ifname, name), bit);
    if (now.active !== on) {
      throw new EthtoolError(ifname, name, 'refused',
        `${ifname}: cannot ${what}: the driver kept it ${now.active ? 'on' : 'off'} (it depends on another feature or on the driver's state)${cost}; retry with ethtool -K ${ifname} ${name} ${on ? 'on' : 'off'} to see why`);
    }
  }
  return st.active;
}

/**
 * Whether `ifname` strips 802.1Q tags on receive (`ethtool -k`: rx-vlan-offload).
 * null: the link has no such feature (off and fixed, as on lo): it never strips and cannot be asked to.
 */
export function rxVlanOffload(ifname: string): boolean | null {
  const st = feature(ifname, RX_VLAN_HW_PARSE);
  if (!st || (!st.active && !st.changeable)) return null;
  return st.active;
}

/** Turns rx-vlan-offload on or off on `ifname`; whether it was on before (see setFeature, also for the errors). */
export function setRxVlanOffload(ifname: string, on: boolean): boolean | null {
  return setFeature(ifname, RX_VLAN_HW_PARSE, on);
}
