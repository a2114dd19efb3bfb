// The XDP forwarder as the agent sees it: loads physical.o and router.o with
// shared, pinned maps; attaches, adopts, replaces and detaches the programs;
// keeps router_iface and the egress allowlist; reads the counters; and runs
// frames through the programs with BPF_PROG_TEST_RUN.
//
// attach() is deliberately pure: it does not touch router_iface or the VID
// maps. The agent calls setRouterIface() for the router link and
// setNicVid() for every NIC it attaches `physical` to (and clearNic() when
// such a NIC goes away), so map contents and attachments can be reasoned
// about separately. allowEgress/disallowEgress/egress are the earlier
// VID = ifindex API, kept as thin wrappers.
//
// VIDs: `physical` tags a NIC's frames with nic_vid[ifindex]; `router` sends
// a frame tagged VID out of router_egress[VID] (a DEVMAP_HASH VID -> ifindex,
// so the lookup is also the allowlist). setNicVid/clearNic are the one way
// in that writes both, in an order that never sends a frame to a wrong NIC.
// Which VID a NIC should have is agent/core/vid.ts's (pure) decision.
//
// Counters: xdp_stats (global, per reason: counters()) and link_stats
// (per link: frames and bytes each way and drops by reason, in a per-CPU
// array indexed by VID, slot 0 the router link: nicCounters()).
//
// Modes: 'skb' (generic XDP) works on every link and redirects to any
// link. 'native' needs driver support (virtio-net, veth; not lo) and, for
// XDP_REDIRECT, a target driver with ndo_xdp_xmit: a veth target only
// transmits natively-redirected frames when its peer has XDP or GRO/NAPI
// enabled. libbpf_set_print is process-global: the logger of the last
// Forwarder.open receives libbpf's messages.
import { existsSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { BpfError } from './errors.js';
import * as bpf from './libbpf.js';
import { XDP_PROGRAMS, type XdpMode, type XdpModeSetting, type XdpProgram } from '../core/vocab.js';
import { VID_FIRST, VID_LAST } from '../core/vid.js';

// Defined in core/vocab.ts; re-exported for the callers that know them from here.
export { XDP_PROGRAMS, type XdpMode, type XdpModeSetting, type XdpProgram } from '../core/vocab.js';
export interface LinkRef { ifindex: number; name: string }
/** Program ids attached to a link per mode (0: none), as IFLA_XDP or bpf_xdp_query report them. */
export interface XdpState { skbProgId: number; drvProgId: number; hwProgId: number }
export interface AttachResult { program: XdpProgram; mode: XdpMode; id: number; adopted: boolean }
export interface AttachedXdp { id: number; mode: XdpMode | 'hw'; name: string; tag: string; program: XdpProgram | null /* null: not ours */ }
export interface TestRunResult {
  retval: number;
  verdict: 'aborted' | 'drop' | 'pass' | 'tx' | 'redirect';
  data: Buffer;
  durationNs: number;
}

/**
 * Pinned map names (bpf/common.h). router_iface is fixed by the SPEC.
 * router_egress (now VID -> ifindex) and xdp_stats keep their earlier names
 * and shapes: with VID = ifindex their contents mean the same, so pins of
 * the earlier layout are reused on upgrade; programs of that layout differ
 * in code (tag), so attach() replaces them rather than adopting them.
 */
export const MAP_NAMES = {
  routerIface: 'router_iface', egress: 'router_egress', nicVid: 'nic_vid', stats: 'xdp_stats', linkStats: 'link_stats',
} as const;

/** Mirrors enum xdp_counter in bpf/common.h, in order (test/bpf/layout.test.ts checks it). */
export const COUNTER_NAMES: readonly string[] = [
  'physical_forwarded',
  'physical_drop_short',
  'physical_drop_no_vid',
  'physical_drop_no_router',
  'physical_drop_headroom',
  'router_forwarded',
  'router_drop_short',
  'router_drop_untagged',
  'router_drop_pcp_dei',
  'router_drop_vid_self',
  'router_drop_vid_unknown',
  'router_drop_headroom',
];

/** Mirrors enum link_drop in bpf/common.h, in order: the per-link drop reasons. */
export const LINK_DROP_NAMES = ['short', 'no_router', 'headroom', 'untagged', 'pcp_dei', 'vid_self', 'vid_unknown'] as const;
export type LinkDrop = typeof LINK_DROP_NAMES[number];
/** sizeof(struct link_counters): 4 + 7 + 1 spare u64. */
const LINK_COUNTERS_SIZE = 96;
const ROUTER_SLOT = 0;

/**
 * One link's counters, summed over CPUs. rx: frames the link's own program
 * saw (all of them, bytes as received); tx: frames the other program sent
 * to the link (bytes as they leave it). drops: of the rx frames, by reason.
 * They start at zero when the link gets its VID (or becomes the router link).
 */
export interface LinkCounters {
  role: 'nic' | 'router';
  /** The NIC's VID; null for the router link. */
  vid: number | null;
  rxPackets: bigint; rxBytes: bigint; txPackets: bigint; txBytes: bigint;
  drops: Record<LinkDrop, bigint>;
}

const BPF_FS_MAGIC = 0xcafe4a11;
/** A DEVMAP update with an ifindex the kernel cannot resolve fails with EINVAL (ENODEV on some kernels). */
const NO_LINK_HINT = 'no such link in this network namespace (a devmap entry must name an existing link)';
const VERDICTS = ['aborted', 'drop', 'pass', 'tx', 'redirect'] as const;
/** Errors of a native attach that mean "this driver cannot", so auto falls back to skb. */
const NATIVE_UNSUPPORTED = new Set(['EOPNOTSUPP', 'ENOTSUPP', 'EINVAL', 'ERANGE', 'E2BIG', 'ENOMEM', 'ENXIO']);

interface Loaded { obj: bpf.Ptr; fd: number; name: string; tag: string; id: number }

function modeFlag(mode: XdpMode): number {
  return mode === 'native' ? bpf.XDP_FLAGS_DRV_MODE : bpf.XDP_FLAGS_SKB_MODE;
}

function attachHint(mode: XdpMode, code: string, ifname: string): string | undefined {
  switch (code) {
    case 'EOPNOTSUPP': case 'ENOTSUPP':
      return mode === 'native' ? 'driver lacks native XDP: use xdpMode skb or auto' : 'the kernel lacks generic XDP';
    case 'EBUSY': return `a bpf_link holds the XDP hook of ${ifname} (another tool's program; bpftool link show lists it): detach it (bpftool link detach id N) or add ${ifname} to ignoreInterfaces`;
    case 'EEXIST': return `another XDP program appeared on ${ifname} meanwhile: retry`;
    case 'ENODEV': return `${ifname} is gone`;
    case 'ERANGE': case 'E2BIG': return `MTU of ${ifname} too large for native XDP: lower it or use xdpMode skb`;
    case 'EINVAL': return mode === 'native' ? 'driver refused native XDP (MTU, queues, LRO?): use xdpMode skb or auto' : undefined;
    case 'EPERM': return 'run as root (CAP_NET_ADMIN and CAP_BPF)';
    default: return undefined;
  }
}

function pinDirCheck(pinDir: string): void {
  const hint = `is bpffs mounted at ${pinDir}? (mount -t bpf bpf ${pinDir})`;
  if (!existsSync(pinDir)) throw new BpfError('statfs', 2, { detail: `(${pinDir})`, hint });
  if (statfsSync(pinDir).type !== BPF_FS_MAGIC) throw new BpfError('statfs', 22, { detail: `(${pinDir} is not bpffs)`, hint });
}

export class Forwarder {
  private readonly progs: Record<XdpProgram, Loaded>;
  private readonly fds: Record<keyof typeof MAP_NAMES, number>;
  private readonly statsValueSize: number;
  private readonly ncpus: number;
  private readonly log: Logger;
  /** Per map fd: whether BPF_MAP_LOOKUP_BATCH works for it (learnt on the first read). */
  private readonly batchable = new Map<number, boolean>();
  /** Buffers for reading the u32 -> u32 maps (dumpU32), made once: room for every entry either map can hold. */
  private readonly u32Bufs: { capacity: number; keys: Buffer; values: Buffer; keyA: Buffer; keyB: Buffer; value: Buffer };
  readonly pinDir: string;
  private closed = false;

  private constructor(progs: Record<XdpProgram, Loaded>, log: Logger, pinDir: string) {
    this.progs = progs;
    this.log = log;
    this.pinDir = pinDir;
    const obj = progs.physical.obj;
    const fdOf = (name: string): number => {
      const m = bpf.objectFindMap(obj, name);
      if (m === null) throw new BpfError('bpf_object__find_map_by_name', 2, { detail: `(map ${name})`, hint: 'rebuild the BPF objects (make bpf)' });
      return bpf.mapFd(m);
    };
    this.fds = {
      routerIface: fdOf(MAP_NAMES.routerIface), egress: fdOf(MAP_NAMES.egress), nicVid: fdOf(MAP_NAMES.nicVid),
      stats: fdOf(MAP_NAMES.stats), linkStats: fdOf(MAP_NAMES.linkStats),
    };
    this.ncpus = bpf.numPossibleCpus();
    const capacity = Math.max(bpf.mapInfo(this.fds.nicVid).maxEntries, bpf.mapInfo(this.fds.egress).maxEntries);
    this.u32Bufs = {
      capacity, keys: Buffer.alloc(4 * capacity), values: Buffer.alloc(4 * capacity),
      keyA: Buffer.alloc(4), keyB: Buffer.alloc(4), value: Buffer.alloc(4),
    };
    this.statsValueSize = 8; // __u64; per-CPU values are rounded up to 8 bytes each
  }

  /**
   * Opens and loads bpfDir/physical.o and bpfDir/router.o. Maps are pinned
   * by name in pinDir; pins that exist are reused explicitly (bpf_obj_get +
   * bpf_map__reuse_fd, pin path cleared) because libbpf 1.1.2 rejects a
   * pinned DEVMAP as incompatible (BPF_F_RDONLY_PROG). Maps without a pin
   * are created and pinned by libbpf. So both objects, and any later process,
   * share every map in MAP_NAMES.
   */
  static open(opts: { bpfDir: string; pinDir: string; log: Logger }): Forwarder {
    bpf.setLibbpfLogger(opts.log);
    pinDirCheck(opts.pinDir);
    const loaded: Partial<Record<XdpProgram, Loaded>> = {};
    try {
      for (const name of XDP_PROGRAMS) {
        const path = join(opts.bpfDir, `${name}.o`);
        try {
          loaded[name] = loadOne(path, name, opts.pinDir, opts.log);
        } catch (e) {
          // Another process pinned a map between our look and libbpf's pin (two agents
          // starting at once): the pin exists now, so a second attempt reuses it.
          if (!(e instanceof BpfError) || e.code !== 'EEXIST') throw e;
          opts.log.warn({ object: path }, 'a pin appeared while loading; retrying once to reuse it');
          loaded[name] = loadOne(path, name, opts.pinDir, opts.log);
        }
      }
      const fw = new Forwarder(loaded as Record<XdpProgram, Loaded>, opts.log, opts.pinDir);
      opts.log.debug({ physical: loaded.physical!.id, router: loaded.router!.id, pinDir: opts.pinDir }, 'xdp programs loaded');
      return fw;
    } catch (e) {
      for (const l of Object.values(loaded)) if (l) bpf.objectClose(l.obj);
      throw e;
    }
  }

  /** Program ids and tags of the copies this Forwarder loaded. */
  loaded(): Record<XdpProgram, { id: number; tag: string }> {
    return {
      physical: { id: this.progs.physical.id, tag: this.progs.physical.tag },
      router: { id: this.progs.router.id, tag: this.progs.router.tag },
    };
  }

  /** Ids of the shared maps (equal across processes that share the pins). */
  mapIds(): Record<keyof typeof MAP_NAMES, number> {
    const out = {} as Record<keyof typeof MAP_NAMES, number>;
    for (const k of Object.keys(MAP_NAMES) as (keyof typeof MAP_NAMES)[]) out[k] = bpf.mapInfo(this.fds[k]).id;
    return out;
  }

  /**
   * Attaches `program` to the link in `mode`. If the same program (name,
   * tag and maps) is already attached in an acceptable mode it is adopted
   * and left alone; anything else is replaced atomically in the same mode,
   * or detached first when it sits in the other mode (the kernel allows one
   * of native/generic at a time). 'auto' adopts ours in either mode, else
   * tries native and falls back to skb when the driver cannot.
   */
  attach(link: LinkRef, program: XdpProgram, mode: XdpModeSetting, current?: XdpState): AttachResult {
    this.assertOpen();
    // `current` is what the caller already knows from netlink (IFLA_XDP): it
    // saves bpf_xdp_query, which is a netlink dump of every link (O(links) per
    // call, so O(links^2) for a storm). If it turns out stale, the kernel
    // refuses the conditional attach (EBUSY/EEXIST) and we ask for real.
    try {
      return this.attachWith(link, program, mode, current ?? this.stateOf(link));
    } catch (e) {
      if (current && e instanceof BpfError && (e.code === 'EBUSY' || e.code === 'EEXIST')) {
        return this.attachWith(link, program, mode, this.stateOf(link));
      }
      throw e;
    }
  }

  /**
   * The request that attaches `program` to a link that has no XDP program in
   * any mode (a new link: the common case), for the caller to send on its
   * own netlink socket (IFLA_XDP in RTM_SETLINK); null when the link has a
   * program already, which attach() handles (adopt, replace, mode switch).
   * 'auto' asks for native first; the caller falls back to attach(..., 'skb')
   * when the driver refuses (NATIVE_UNSUPPORTED codes).
   */
  freshAttachRequest(program: XdpProgram, mode: XdpModeSetting, current: XdpState | undefined): { fd: number; flags: number; result: AttachResult } | null {
    this.assertOpen();
    if (!current || current.skbProgId || current.drvProgId || current.hwProgId) return null;
    const m: XdpMode = mode === 'skb' ? 'skb' : 'native';
    const ours = this.progs[program];
    return { fd: ours.fd, flags: modeFlag(m) | bpf.XDP_FLAGS_UPDATE_IF_NOEXIST, result: { program, mode: m, id: ours.id, adopted: false } };
  }

  /** Whether an attach error means "this driver cannot do native XDP" ('auto' then falls back to skb). */
  static nativeUnsupported(code: string | undefined): boolean {
    return code !== undefined && NATIVE_UNSUPPORTED.has(code);
  }

  private attachWith(link: LinkRef, program: XdpProgram, mode: XdpModeSetting, q: XdpState): AttachResult {
    const cur = this.describe(q);
    if (cur && cur.program === program && cur.mode !== 'hw' && (mode === 'auto' || cur.mode === mode) && this.usesOurMaps(cur.id)) {
      this.log.debug({ link: link.name, program, id: cur.id, mode: cur.mode }, 'xdp program adopted');
      return { program, mode: cur.mode, id: cur.id, adopted: true };
    }
    if (mode !== 'auto') return this.attachIn(link, program, mode, q);
    try {
      return this.attachIn(link, program, 'native', q);
    } catch (e) {
      if (!(e instanceof BpfError) || !NATIVE_UNSUPPORTED.has(e.code)) throw e;
      this.log.info({ link: link.name, program, err: e.message }, 'native XDP refused; falling back to skb mode');
      return this.attachIn(link, program, 'skb', this.stateOf(link));
    }
  }

  private attachIn(link: LinkRef, program: XdpProgram, mode: XdpMode, q: XdpState): AttachResult {
    const ours = this.progs[program];
    const sameId = mode === 'native' ? q.drvProgId : q.skbProgId;
    const otherId = mode === 'native' ? q.skbProgId : q.drvProgId;
    const otherMode: XdpMode = mode === 'native' ? 'skb' : 'native';
    if (otherId) {
      // Native and generic cannot coexist: remove the other one, but only if it is still that program.
      // A bpf_link holding it refuses (EBUSY, as for an attach): say so, as an attach would.
      try {
        this.withProgFd(otherId, (oldFd) => bpf.xdpDetach(link, modeFlag(otherMode), oldFd ?? undefined));
      } catch (e) {
        if (!(e instanceof BpfError)) throw e;
        const hint = ['EBUSY', 'EEXIST', 'ENODEV', 'EPERM'].includes(e.code) ? attachHint(otherMode, e.code, link.name) : undefined;
        throw new BpfError(e.call, e.errno, { link, detail: `(program ${otherId} in ${otherMode} mode, in the way of ${program} in ${mode} mode)`, hint: hint ?? e.hint });
      }
      this.log.info({ link: link.name, id: otherId, mode: otherMode }, 'detached xdp program in the other mode');
    }
    const flags = modeFlag(mode);
    try {
      if (sameId) {
        this.withProgFd(sameId, (oldFd) => {
          if (oldFd === null) bpf.xdpAttach(link, ours.fd, flags | bpf.XDP_FLAGS_UPDATE_IF_NOEXIST);
          else bpf.xdpAttach(link, ours.fd, flags | bpf.XDP_FLAGS_REPLACE, oldFd);
        });
        this.log.info({ link: link.name, program, mode, id: ours.id, replaced: sameId }, 'xdp program replaced');
      } else {
        bpf.xdpAttach(link, ours.fd, flags | bpf.XDP_FLAGS_UPDATE_IF_NOEXIST);
        this.log.info({ link: link.name, program, mode, id: ours.id }, 'xdp program attached');
      }
    } catch (e) {
      if (e instanceof BpfError) {
        throw new BpfError(e.call, e.errno, { link, detail: `(attach ${program}, ${mode} mode)`, hint: attachHint(mode, e.code, link.name) ?? e.hint });
      }
      throw e;
    }
    return { program, mode, id: ours.id, adopted: false };
  }

  /** Detaches whatever XDP program is attached to the link, in every mode. false if there was none. */
  detach(link: LinkRef): boolean {
    this.assertOpen();
    let q: bpf.XdpQuery;
    try {
      q = bpf.xdpQuery(link);
    } catch (e) {
      if (e instanceof BpfError && e.code === 'ENODEV') return false; // the link is gone, and its programs with it
      throw e;
    }
    let any = false;
    for (const [id, flag] of [[q.drvProgId, bpf.XDP_FLAGS_DRV_MODE], [q.skbProgId, bpf.XDP_FLAGS_SKB_MODE], [q.hwProgId, bpf.XDP_FLAGS_HW_MODE]] as const) {
      if (!id) continue;
      bpf.xdpDetach(link, flag);
      this.log.info({ link: link.name, id }, 'xdp program detached');
      any = true;
    }
    return any;
  }

  /**
   * What is attached to ifindex (native before skb before hw), or null (also
   * when the link does not exist). program is null unless it is exactly our
   * loaded program (same name and tag).
   */
  query(ifindex: number): AttachedXdp | null {
    this.assertOpen();
    let q: XdpState;
    try {
      q = this.stateOf({ ifindex });
    } catch (e) {
      if (e instanceof BpfError && e.code === 'ENODEV') return null; // the link is gone, and its programs with it
      throw e;
    }
    return this.describe(q);
  }

  /**
   * Which program a prog id is: its name, tag, and which of ours it is (null
   * unless exactly our loaded program). No netlink dump: one bpf() call.
   * null when no program has that id (any more).
   */
  identify(id: number): { name: string; tag: string; program: XdpProgram | null } | null {
    this.assertOpen();
    const info = this.withProgFd(id, (fd) => (fd === null ? null : bpf.progInfo(fd)));
    if (!info) return null;
    // Same name and tag is not enough: the tag ignores map references, and a
    // program loaded against maps whose pins are gone (bpffs remounted) would
    // never see what we write now. Ours means our code on our maps.
    const same = XDP_PROGRAMS.find((p) => this.progs[p].name === info.name && this.progs[p].tag === info.tag) ?? null;
    const program = same && this.usesOurMaps(id) ? same : null;
    return { name: info.name, tag: info.tag, program };
  }

  /** The attached program of a per-mode state (native before skb before hw), described. */
  private describe(q: XdpState): AttachedXdp | null {
    const pick: [number, XdpMode | 'hw'] | null =
      q.drvProgId ? [q.drvProgId, 'native'] : q.skbProgId ? [q.skbProgId, 'skb'] : q.hwProgId ? [q.hwProgId, 'hw'] : null;
    if (!pick) return null;
    const [id, mode] = pick;
    const info = this.identify(id);
    if (!info) return null; // detached between the two calls
    return { id, mode, ...info };
  }

  private stateOf(link: { ifindex: number; name?: string }): XdpState {
    const q = bpf.xdpQuery(link);
    return { skbProgId: q.skbProgId, drvProgId: q.drvProgId, hwProgId: q.hwProgId };
  }

  /**
   * Entry 0 of router_iface; null clears it (physical then drops and counts
   * physical_drop_no_router). Another router link in place of the one set
   * starts its counters (link_stats slot 0) at zero; after a clear (null)
   * they continue.
   */
  setRouterIface(ifindex: number | null): void {
    this.assertOpen();
    const key = u32(0);
    if (ifindex === null) {
      bpf.mapDelete(this.fds.routerIface, key, MAP_NAMES.routerIface);
      return;
    }
    const before = this.routerIface();
    if (before !== null && before !== ifindex) this.zeroLinkSlot(ROUTER_SLOT);
    try {
      bpf.mapUpdate(this.fds.routerIface, key, u32(ifindex), bpf.BPF_ANY, { what: `${MAP_NAMES.routerIface}[0] = ${ifindex}` });
    } catch (e) {
      if (e instanceof BpfError && (e.code === 'EINVAL' || e.code === 'ENODEV')) {
        throw new BpfError(e.call, e.errno, { link: { ifindex }, detail: `(${MAP_NAMES.routerIface}[0])`, hint: NO_LINK_HINT });
      }
      throw e;
    }
  }

  routerIface(): number | null {
    this.assertOpen();
    const v = Buffer.alloc(4);
    return bpf.mapLookup(this.fds.routerIface, u32(0), v, MAP_NAMES.routerIface) ? v.readUInt32LE(0) : null;
  }

  /**
   * Gives the NIC `ifindex` the VLAN ID `vid` (1..4094), both ways: `router`
   * sends VID-tagged frames out of it, `physical` tags its frames with the
   * VID. Idempotent. Refuses (EEXIST) a VID that another NIC holds: clear
   * that NIC first; so a VID never names two NICs. Order, so that no frame
   * goes to a wrong NIC meanwhile: the new VID -> NIC entry first (the VID
   * was free: only this NIC can receive by it), then the NIC's tag, then
   * the old VID's entry goes (until then it also led here). The NIC's
   * counters start at zero when the VID is new to it.
   */
  setNicVid(ifindex: number, vid: number): void {
    this.assertOpen();
    const what = `${MAP_NAMES.egress}[${vid}] = ${ifindex}`;
    if (!Number.isInteger(ifindex) || ifindex < 1 || ifindex > 0x7fffffff) {
      throw new BpfError('bpf_map_update_elem', 22, { detail: `(${what})`, hint: 'an ifindex is a positive 32-bit integer' });
    }
    if (!Number.isInteger(vid) || vid < VID_FIRST || vid > VID_LAST) {
      throw new BpfError('bpf_map_update_elem', 34, { link: { ifindex }, detail: `(${what})`, hint: `a VLAN ID is ${VID_FIRST}..${VID_LAST} (0 and 4095 are reserved): agent/core/vid.ts chooses one` });
    }
    const owner = this.lookupU32(this.fds.egress, vid, MAP_NAMES.egress);
    if (owner !== null && owner !== ifindex) {
      throw new BpfError('bpf_map_update_elem', 17, { link: { ifindex }, detail: `(${what})`, hint: `VID ${vid} belongs to ifindex ${owner}: clearNic(${owner}) first` });
    }
    const old = this.lookupU32(this.fds.nicVid, ifindex, MAP_NAMES.nicVid);
    if (owner === ifindex && old === vid) return;
    if (owner !== ifindex) {
      this.zeroLinkSlot(vid);
      try {
        bpf.mapUpdate(this.fds.egress, u32(vid), u32(ifindex), bpf.BPF_ANY, { what });
      } catch (e) {
        if (e instanceof BpfError && (e.code === 'EINVAL' || e.code === 'ENODEV')) {
          throw new BpfError(e.call, e.errno, { link: { ifindex }, detail: `(${what})`, hint: NO_LINK_HINT });
        }
        throw e;
      }
    }
    bpf.mapUpdate(this.fds.nicVid, u32(ifindex), u32(vid), bpf.BPF_ANY, { what: `${MAP_NAMES.nicVid}[${ifindex}] = ${vid}` });
    if (old !== null && old !== vid && this.lookupU32(this.fds.egress, old, MAP_NAMES.egress) === ifindex) {
      bpf.mapDelete(this.fds.egress, u32(old), MAP_NAMES.egress);
    }
  }

  /**
   * Takes the NIC's VID away, both ways: first its tag (physical then drops
   * its frames as physical_drop_no_vid), then the VID -> NIC entry. Also
   * removes an entry of the earlier layout (VID = ifindex without a nic_vid
   * entry). false when the NIC had neither.
   */
  clearNic(ifindex: number): boolean {
    this.assertOpen();
    const vid = this.lookupU32(this.fds.nicVid, ifindex, MAP_NAMES.nicVid);
    let any = vid !== null && bpf.mapDelete(this.fds.nicVid, u32(ifindex), MAP_NAMES.nicVid);
    for (const v of new Set([vid, ifindex])) {
      if (v === null || v < 0 || v > 4095) continue;
      if (this.lookupU32(this.fds.egress, v, MAP_NAMES.egress) === ifindex) any = bpf.mapDelete(this.fds.egress, u32(v), MAP_NAMES.egress) || any;
    }
    return any;
  }

  /**
   * nic_vid as it is: ifindex -> the VID `physical` tags that NIC's frames
   * with. One BPF_MAP_LOOKUP_BATCH call (a HASH map); `{ walk: true }` reads
   * it entry by entry instead (what the batch read is tested against).
   */
  nicVids(opts: { walk?: boolean } = {}): Map<number, number> {
    this.assertOpen();
    return this.dumpU32(this.fds.nicVid, MAP_NAMES.nicVid, opts.walk);
  }

  /**
   * router_egress as it is: VID -> the ifindex `router` sends such frames
   * to. Always a walk: a DEVMAP_HASH has no batch lookup (ENOTSUPP).
   */
  vidEgress(opts: { walk?: boolean } = {}): Map<number, number> {
    this.assertOpen();
    return this.dumpU32(this.fds.egress, MAP_NAMES.egress, opts.walk);
  }

  /**
   * Both VID maps read once, paired up: `agreed` the NICs whose two entries
   * agree (nic_vid[ifindex] = vid and router_egress[vid] = ifindex), ifindex
   * -> VID (egressVids()); `strayEgress` the router_egress entries that no
   * agreeing pair accounts for, VID -> ifindex (each lets `router` send
   * frames out of that link: an entry added behind our back, or the
   * leftover of a NIC whose nic_vid entry went); `strayNicVid` the nic_vid
   * entries without their router_egress entry, ifindex -> VID.
   */
  vidPairs(): { agreed: Map<number, number>; strayEgress: Map<number, number>; strayNicVid: Map<number, number> } {
    this.assertOpen();
    const back = this.vidEgress();
    const agreed = new Map<number, number>(), strayNicVid = new Map<number, number>();
    for (const [ifindex, vid] of this.nicVids()) {
      if (back.get(vid) === ifindex) agreed.set(ifindex, vid);
      else strayNicVid.set(ifindex, vid);
    }
    const strayEgress = new Map<number, number>();
    for (const [vid, ifindex] of back) if (agreed.get(ifindex) !== vid) strayEgress.set(vid, ifindex);
    return { agreed, strayEgress, strayNicVid };
  }

  /**
   * Deletes router_egress[vid] if it still leads to `ifindex` and is not
   * that NIC's own VID (nic_vid[ifindex] = vid): the repair of a stray
   * entry that vidPairs() reported, which setNicVid/clearNic (they only
   * touch a NIC's own VIDs) leave alone. false when there was nothing to
   * delete.
   */
  removeStrayEgress(vid: number, ifindex: number): boolean {
    this.assertOpen();
    if (this.lookupU32(this.fds.egress, vid, MAP_NAMES.egress) !== ifindex) return false;
    if (this.lookupU32(this.fds.nicVid, ifindex, MAP_NAMES.nicVid) === vid) return false;
    return bpf.mapDelete(this.fds.egress, u32(vid), MAP_NAMES.egress);
  }

  /**
   * Per-link counters summed over CPUs: every NIC with a VID (by ifindex),
   * and the router link (router_iface's ifindex, role 'router') when set.
   */
  nicCounters(): Map<number, LinkCounters> {
    this.assertOpen();
    const out = new Map<number, LinkCounters>();
    for (const [ifindex, vid] of [...this.nicVids()].sort((a, b) => a[0] - b[0])) {
      if (vid < VID_FIRST || vid > VID_LAST) continue;
      out.set(ifindex, this.readLinkSlot(vid, 'nic'));
    }
    const rl = this.routerIface();
    if (rl !== null) out.set(rl, this.readLinkSlot(ROUTER_SLOT, 'router'));
    return out;
  }

  /** Compatibility (VID = ifindex): lets `router` send frames tagged with this ifindex out of that link. */
  allowEgress(ifindex: number): void {
    if (!Number.isInteger(ifindex) || ifindex < VID_FIRST || ifindex > VID_LAST) {
      throw new BpfError('bpf_map_update_elem', 34, { link: { ifindex }, detail: `(${MAP_NAMES.egress})`, hint: `only ifindexes ${VID_FIRST}..${VID_LAST} fit a VLAN ID as they are: give the NIC a free VID (setNicVid)` });
    }
    this.setNicVid(ifindex, ifindex);
  }

  /** Compatibility: clearNic. */
  disallowEgress(ifindex: number): void {
    this.clearNic(ifindex);
  }

  /**
   * NICs whose two VID maps agree (nic_vid[ifindex] = vid and
   * router_egress[vid] = ifindex): ifindex -> VID. Blind to a stray
   * router_egress entry beside a NIC's agreeing pair: vidPairs() has those.
   */
  egressVids(): Map<number, number> {
    return this.vidPairs().agreed;
  }

  egress(): number[] {
    return [...this.egressVids().keys()].sort((a, b) => a - b);
  }

  /** xdp_stats summed over CPUs, by COUNTER_NAMES. */
  counters(): Record<string, bigint> {
    this.assertOpen();
    const out: Record<string, bigint> = {};
    const v = Buffer.alloc(this.statsValueSize * this.ncpus);
    COUNTER_NAMES.forEach((name, i) => {
      let sum = 0n;
      if (bpf.mapLookup(this.fds.stats, u32(i), v, MAP_NAMES.stats)) {
        for (let c = 0; c < this.ncpus; c++) sum += v.readBigUInt64LE(c * this.statsValueSize);
      }
      out[name] = sum;
    });
    return out;
  }

  private readLinkSlot(slot: number, role: LinkCounters['role']): LinkCounters {
    const v = Buffer.alloc(LINK_COUNTERS_SIZE * this.ncpus);
    const sums = new Array<bigint>(LINK_COUNTERS_SIZE / 8).fill(0n);
    if (bpf.mapLookup(this.fds.linkStats, u32(slot), v, MAP_NAMES.linkStats)) {
      for (let c = 0; c < this.ncpus; c++) {
        for (let i = 0; i < sums.length; i++) sums[i] = sums[i]! + v.readBigUInt64LE(c * LINK_COUNTERS_SIZE + 8 * i);
      }
    }
    const drops = Object.fromEntries(LINK_DROP_NAMES.map((n, i) => [n, sums[4 + i]!])) as Record<LinkDrop, bigint>;
    return { role, vid: role === 'nic' ? slot : null, rxPackets: sums[0]!, rxBytes: sums[1]!, txPackets: sums[2]!, txBytes: sums[3]!, drops };
  }

  private zeroLinkSlot(slot: number): void {
    bpf.mapUpdate(this.fds.linkStats, u32(slot), Buffer.alloc(LINK_COUNTERS_SIZE * this.ncpus), bpf.BPF_ANY, { what: `${MAP_NAMES.linkStats}[${slot}] = 0` });
  }

  private lookupU32(fd: number, key: number, what: string): number | null {
    const v = Buffer.alloc(4);
    return bpf.mapLookup(fd, u32(key), v, what) ? v.readUInt32LE(0) : null;
  }

  /**
   * A u32 -> u32 map's entries (nic_vid, router_egress). BPF_MAP_LOOKUP_BATCH
   * where the kernel has it for the map's type (nic_vid, a HASH: one system
   * call into buffers kept for it, decoded in one pass), else, or with
   * `walk`, entry by entry: get_next_key + lookup (router_egress, a
   * DEVMAP_HASH: devmaps have no batch ops and answer ENOTSUPP, so that is
   * learnt on the first read and not asked again). The walk stops after
   * max_entries + 1 keys: never loops forever on a concurrently changing map.
   */
  private dumpU32(fd: number, what: string, walk = false): Map<number, number> {
    const buf = this.u32Bufs;
    if (!walk && this.batchable.get(fd) !== false) {
      const n = bpf.mapLookupBatch(fd, buf.keys, buf.values, 4, 4, buf.capacity, what);
      this.batchable.set(fd, n !== null);
      if (n !== null) {
        // Map keys and values are in host byte order: so are Uint32Array's.
        const keys = new Uint32Array(buf.keys.buffer as ArrayBuffer, buf.keys.byteOffset, n);
        const values = new Uint32Array(buf.values.buffer as ArrayBuffer, buf.values.byteOffset, n);
        const out = new Map<number, number>();
        for (let i = 0; i < n; i++) out.set(keys[i]!, values[i]!);
        return out;
      }
      this.log.debug({ map: what }, 'no batch lookup for this map type: read entry by entry');
    }
    const out = new Map<number, number>();
    // Two key buffers in turn (the key asked about, the one the kernel writes), no copies.
    let key: Buffer | null = null, next = buf.keyA;
    const v = buf.value;
    for (let n = 0; n <= buf.capacity && bpf.mapNextKey(fd, key, next, what); n++) {
      if (bpf.mapLookup(fd, next, v, what)) out.set(next.readUInt32LE(0), v.readUInt32LE(0));
      key = next;
      next = next === buf.keyA ? buf.keyB : buf.keyA;
    }
    return out;
  }

  /**
   * Runs one frame through a program with BPF_PROG_TEST_RUN. ingressIfindex
   * must name a link in this namespace (default: the kernel uses lo). With
   * live: true the frames really go where the verdict says (redirects
   * happen) and no output frame is returned. Frames under 14 bytes are
   * refused by the kernel (EINVAL), before the program runs.
   */
  testRun(program: XdpProgram, frame: Buffer, opts: { ingressIfindex?: number; repeat?: number; live?: boolean } = {}): TestRunResult {
    this.assertOpen();
    const r = bpf.progTestRun(this.progs[program].fd, {
      data: frame,
      dataOutSize: opts.live ? 0 : frame.length + 256,
      ingressIfindex: opts.ingressIfindex,
      repeat: opts.repeat,
      live: opts.live,
    });
    return { retval: r.retval, verdict: VERDICTS[r.retval] ?? 'aborted', data: Buffer.from(r.data), durationNs: r.durationNs };
  }

  /** Closes our fds and objects; attached programs and pins stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of XDP_PROGRAMS) bpf.objectClose(this.progs[p].obj);
  }

  /** Removes our pins from pinDir (uninstall, tests). Programs still attached keep their maps. */
  static removePins(pinDir: string): void {
    for (const name of Object.values(MAP_NAMES)) rmSync(join(pinDir, name), { force: true });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('Forwarder is closed');
  }

  private withProgFd<T>(id: number, fn: (fd: number | null) => T): T {
    const fd = bpf.progFdById(id);
    try {
      return fn(fd);
    } finally {
      if (fd !== null) bpf.closeFd(fd);
    }
  }

  /** Are all maps program `id` uses our shared maps? (Otherwise it was loaded against other, e.g. removed, pins.) */
  private usesOurMaps(id: number): boolean {
    const ids = this.withProgFd(id, (fd) => (fd === null ? null : bpf.progMapIds(fd)));
    if (!ids) return false;
    const ours = new Set(Object.values(this.mapIds()));
    return ids.length > 0 && ids.every((m) => ours.has(m));
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** Opens one object, reuses or creates its pinned maps, loads it. */
function loadOne(path: string, name: XdpProgram, pinDir: string, log: Logger): Loaded {
  const obj = bpf.objectOpenFile(path, { pinRootPath: pinDir });
  try {
    for (const map of bpf.objectMaps(obj)) {
      const pin = bpf.mapPinPath(map);
      if (!pin) continue; // not pinned (e.g. .rodata): libbpf handles it
      const fd = bpf.objGet(pin);
      if (fd === null) continue; // no pin yet: libbpf creates and pins it at load
      try {
        const have = bpf.mapInfo(fd);
        const want = bpf.mapDef(map);
        if (have.type !== want.type || have.keySize !== want.keySize || have.valueSize !== want.valueSize || have.maxEntries !== want.maxEntries) {
          throw new BpfError('bpf_map__reuse_fd', 22, {
            detail: `(pin ${pin}: type ${have.type} key ${have.keySize} value ${have.valueSize} max ${have.maxEntries}; ${name}.o wants ${want.type}/${want.keySize}/${want.valueSize}/${want.maxEntries})`,
            hint: `a pin left by another netagent version: remove ${pin} and restart`,
          });
        }
        bpf.mapReuseFd(map, fd); // dups fd
        bpf.mapSetPinPath(map, null); // keep libbpf's pin compatibility check (and re-pin) out of it
        log.debug({ map: bpf.mapName(map), pin, id: have.id }, 'reusing pinned map');
      } finally {
        bpf.closeFd(fd);
      }
    }
    try {
      bpf.objectLoad(obj, `${name}.o`);
    } catch (e) {
      if (e instanceof BpfError) {
        throw new BpfError(e.call, e.errno, {
          detail: `(${path})`,
          hint: e.code === 'EINVAL' ? `is bpffs mounted at ${pinDir}? Else the verifier refused it (see the libbpf log)` : e.hint,
        });
      }
      throw e;
    }
    const fd = bpf.programFd(bpf.objectFindProgram(obj, name));
    const info = bpf.progInfo(fd);
    return { obj, fd, name: info.name, tag: info.tag, id: info.id };
  } catch (e) {
    bpf.objectClose(obj);
    throw e;
  }
}
