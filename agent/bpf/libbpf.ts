// libbpf-ts: the small typed binding over libbpf.so.1 (Debian 12: libbpf 1.1.2)
// that the forwarder needs, through koffi. Only the calls we use are bound.
//
// Conventions of libbpf 1.x that this file relies on:
// - int APIs return -errno directly on failure (and also set errno);
// - pointer APIs return NULL and set errno (read with koffi.errno() at once,
//   before any other native call can clobber it).
// Every failure becomes a BpfError naming the call, the errno and a hint.
//
// The opts structs are declared with koffi and their layout is asserted at
// load time against the numbers from the 1.1.2 headers (EXPECTED_LAYOUT);
// test/bpf/layout.test.ts compiles a C program against /usr/include/bpf to
// prove those numbers. Each `sz` field is set from koffi.sizeof, as
// LIBBPF_OPTS does with sizeof.
import koffi, { type TypeObject, type LibraryHandle } from 'koffi';
import type { Logger } from '../log.js';
import { BpfError, type LinkInfo } from './errors.js';

export { BpfError, errnoName } from './errors.js';

/** An opaque libbpf pointer (struct bpf_object *, struct bpf_map *, ...): koffi 3 gives them as BigInt. */
export type Ptr = bigint;

export const LIBBPF_SONAME = 'libbpf.so.1';

// ---- constants from linux/if_link.h and linux/bpf.h ----
export const XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0;
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;
export const XDP_FLAGS_HW_MODE = 1 << 3;
export const XDP_FLAGS_REPLACE = 1 << 4;
export const XDP_ATTACHED_NONE = 0;
export const XDP_ATTACHED_DRV = 1;
export const XDP_ATTACHED_SKB = 2;
export const XDP_ATTACHED_HW = 3;
export const XDP_ATTACHED_MULTI = 4;
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;
/** enum xdp_action */
export const XDP_ABORTED = 0, XDP_DROP = 1, XDP_PASS = 2, XDP_TX = 3, XDP_REDIRECT = 4;

const ENOENT = 2;
const EINVAL = 22;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
/** The kernel-internal "operation not supported for this object" (a map type without batch ops). */
const ENOTSUPP = 524;

// ---- struct layouts ----
// Unique koffi type names: koffi's name registry is process-global.
const OpenOpts = koffi.struct('netagent_bpf_object_open_opts', {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
  attach_prog_fd_stub: 'uint32_t', // `__u32 :32;` (removed attach_prog_fd)
  kconfig: 'const char *',
  btf_custom_path: 'const char *',
  kernel_log_buf: 'void *',
  kernel_log_size: 'size_t',
  kernel_log_level: 'uint32_t',
});
const XdpAttachOpts = koffi.struct('netagent_bpf_xdp_attach_opts', {
  sz: 'size_t',
  old_prog_fd: 'int',
});
const XdpQueryOpts = koffi.struct('netagent_bpf_xdp_query_opts', {
  sz: 'size_t',
  prog_id: 'uint32_t',
  drv_prog_id: 'uint32_t',
  hw_prog_id: 'uint32_t',
  skb_prog_id: 'uint32_t',
  attach_mode: 'uint8_t',
});
const TestRunOpts = koffi.struct('netagent_bpf_test_run_opts', {
  sz: 'size_t',
  data_in: 'void *',
  data_out: 'void *',
  data_size_in: 'uint32_t',
  data_size_out: 'uint32_t',
  ctx_in: 'void *',
  ctx_out: 'void *',
  ctx_size_in: 'uint32_t',
  ctx_size_out: 'uint32_t',
  retval: 'uint32_t',
  repeat: 'int',
  duration: 'uint32_t',
  flags: 'uint32_t',
  cpu: 'uint32_t',
  batch_size: 'uint32_t',
});
/** struct xdp_md (linux/bpf.h): the ctx of an XDP test run. */
const XdpMd = koffi.struct('netagent_xdp_md', {
  data: 'uint32_t',
  data_end: 'uint32_t',
  data_meta: 'uint32_t',
  ingress_ifindex: 'uint32_t',
  rx_queue_index: 'uint32_t',
  egress_ifindex: 'uint32_t',
});
/**
 * The head of struct bpf_prog_info up to `name`: the kernel copies
 * min(our size, its size), so a prefix is a valid request.
 */
const ProgInfoHead = koffi.struct('netagent_bpf_prog_info_head', {
  type: 'uint32_t',
  id: 'uint32_t',
  tag: koffi.array('uint8_t', 8, 'Array'),
  jited_prog_len: 'uint32_t',
  xlated_prog_len: 'uint32_t',
  jited_prog_insns: 'uint64_t',
  xlated_prog_insns: 'uint64_t',
  load_time: 'uint64_t',
  created_by_uid: 'uint32_t',
  nr_map_ids: 'uint32_t',
  map_ids: 'uint64_t',
  name: koffi.array('char', 16, 'String'),
});
/** The head of struct bpf_map_info up to `name`. */
const MapInfoHead = koffi.struct('netagent_bpf_map_info_head', {
  type: 'uint32_t',
  id: 'uint32_t',
  key_size: 'uint32_t',
  value_size: 'uint32_t',
  max_entries: 'uint32_t',
  map_flags: 'uint32_t',
  name: koffi.array('char', 16, 'String'),
});

/**
 * sizeof/offsetof as compiled from the libbpf 1.1.2 headers (and linux/bpf.h
 * of linux-libc-dev 6.1) for x86-64, checked by test/bpf/layout.test.ts:
 *   bpf_object_open_opts: 80 bytes; pin_root_path at 24, kernel_log_level at 72
 *   bpf_xdp_attach_opts: 16; bpf_xdp_query_opts: 32 (attach_mode at 24)
 *   bpf_test_run_opts: 80 (retval 56, duration 64, batch_size 76)
 *   xdp_md: 24; bpf_prog_info: name at 64; bpf_map_info: name at 24
 */
export const EXPECTED_LAYOUT = {
  bpf_object_open_opts: {
    size: 80,
    offsets: { sz: 0, object_name: 8, relaxed_maps: 16, pin_root_path: 24, kconfig: 40, btf_custom_path: 48, kernel_log_buf: 56, kernel_log_size: 64, kernel_log_level: 72 },
  },
  bpf_xdp_attach_opts: { size: 16, offsets: { sz: 0, old_prog_fd: 8 } },
  bpf_xdp_query_opts: {
    size: 32,
    offsets: { sz: 0, prog_id: 8, drv_prog_id: 12, hw_prog_id: 16, skb_prog_id: 20, attach_mode: 24 },
  },
  bpf_test_run_opts: {
    size: 80,
    offsets: { sz: 0, data_in: 8, data_out: 16, data_size_in: 24, data_size_out: 28, ctx_in: 32, ctx_out: 40, ctx_size_in: 48, ctx_size_out: 52, retval: 56, repeat: 60, duration: 64, flags: 68, cpu: 72, batch_size: 76 },
  },
  xdp_md: { size: 24, offsets: { data: 0, data_end: 4, data_meta: 8, ingress_ifindex: 12, rx_queue_index: 16, egress_ifindex: 20 } },
  bpf_prog_info: { size: null, offsets: { type: 0, id: 4, tag: 8, name: 64 } },
  bpf_map_info: { size: null, offsets: { type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24 } },
} as const;

/** The koffi side of the same structs: what the layout check compares. */
export const KOFFI_TYPES: Record<keyof typeof EXPECTED_LAYOUT, TypeObject> = {
  bpf_object_open_opts: OpenOpts,
  bpf_xdp_attach_opts: XdpAttachOpts,
  bpf_xdp_query_opts: XdpQueryOpts,
  bpf_test_run_opts: TestRunOpts,
  xdp_md: XdpMd,
  bpf_prog_info: ProgInfoHead,
  bpf_map_info: MapInfoHead,
};

/** Differences between koffi's layout and EXPECTED_LAYOUT ([] when they agree). */
export function layoutMismatches(): string[] {
  const out: string[] = [];
  for (const [name, exp] of Object.entries(EXPECTED_LAYOUT)) {
    const t = KOFFI_TYPES[name as keyof typeof EXPECTED_LAYOUT];
    if (exp.size !== null && koffi.sizeof(t) !== exp.size) out.push(`sizeof(${name}) = ${koffi.sizeof(t)}, expected ${exp.size}`);
    for (const [field, off] of Object.entries(exp.offsets)) {
      const got = koffi.offsetof(t, field);
      if (got !== off) out.push(`offsetof(${name}, ${field}) = ${got}, expected ${off}`);
    }
  }
  return out;
}

{
  const bad = layoutMismatches();
  if (bad.length) throw new Error(`libbpf-ts: struct layout differs from libbpf 1.1.2 headers: ${bad.join('; ')}`);
}

// ---- the library ----
let lib: LibraryHandle;
try {
  lib = koffi.load(LIBBPF_SONAME);
} catch (e) {
  throw new Error(`libbpf-ts: cannot load ${LIBBPF_SONAME} (${(e as Error).message}): install the libbpf1 package`);
}
const libc = koffi.load('libc.so.6');

const P = 'void *';
const f = {
  open_file: lib.func('bpf_object__open_file', P, ['const char *', koffi.pointer(OpenOpts)]),
  find_map_by_name: lib.func('bpf_object__find_map_by_name', P, [P, 'const char *']),
  next_map: lib.func('bpf_object__next_map', P, [P, P]),
  map_name: lib.func('bpf_map__name', 'const char *', [P]),
  map_pin_path: lib.func('bpf_map__pin_path', 'const char *', [P]),
  map_set_pin_path: lib.func('bpf_map__set_pin_path', 'int', [P, 'const char *']),
  map_reuse_fd: lib.func('bpf_map__reuse_fd', 'int', [P, 'int']),
  map_fd: lib.func('bpf_map__fd', 'int', [P]),
  map_type: lib.func('bpf_map__type', 'int', [P]),
  map_key_size: lib.func('bpf_map__key_size', 'uint32_t', [P]),
  map_value_size: lib.func('bpf_map__value_size', 'uint32_t', [P]),
  map_max_entries: lib.func('bpf_map__max_entries', 'uint32_t', [P]),
  object_load: lib.func('bpf_object__load', 'int', [P]),
  find_program_by_name: lib.func('bpf_object__find_program_by_name', P, [P, 'const char *']),
  program_fd: lib.func('bpf_program__fd', 'int', [P]),
  object_close: lib.func('bpf_object__close', 'void', [P]),
  obj_get: lib.func('bpf_obj_get', 'int', ['const char *']),
  xdp_attach: lib.func('bpf_xdp_attach', 'int', ['int', 'int', 'uint32_t', koffi.pointer(XdpAttachOpts)]),
  xdp_detach: lib.func('bpf_xdp_detach', 'int', ['int', 'uint32_t', koffi.pointer(XdpAttachOpts)]),
  xdp_query: lib.func('bpf_xdp_query', 'int', ['int', 'int', koffi.inout(koffi.pointer(XdpQueryOpts))]),
  map_update_elem: lib.func('bpf_map_update_elem', 'int', ['int', P, P, 'uint64_t']),
  map_lookup_elem: lib.func('bpf_map_lookup_elem', 'int', ['int', P, P]),
  map_delete_elem: lib.func('bpf_map_delete_elem', 'int', ['int', P]),
  map_get_next_key: lib.func('bpf_map_get_next_key', 'int', ['int', P, P]),
  // opts (struct bpf_map_batch_opts) is always NULL: no elem_flags/flags wanted, and libbpf accepts NULL.
  map_lookup_batch: lib.func('bpf_map_lookup_batch', 'int', ['int', P, P, P, P, P, P]),
  prog_get_fd_by_id: lib.func('bpf_prog_get_fd_by_id', 'int', ['uint32_t']),
  map_get_fd_by_id: lib.func('bpf_map_get_fd_by_id', 'int', ['uint32_t']),
  obj_get_info_by_fd: lib.func('bpf_obj_get_info_by_fd', 'int', ['int', P, koffi.inout(koffi.pointer('uint32_t'))]),
  prog_test_run_opts: lib.func('bpf_prog_test_run_opts', 'int', ['int', koffi.inout(koffi.pointer(TestRunOpts))]),
  strerror: lib.func('libbpf_strerror', 'int', ['int', P, 'size_t']),
  num_possible_cpus: lib.func('libbpf_num_possible_cpus', 'int', []),
  close: libc.func('close', 'int', ['int']),
  vsnprintf: libc.func('vsnprintf', 'int', [P, 'size_t', P, P]),
};

// libbpf_set_print: int (*)(enum libbpf_print_level, const char *fmt, va_list ap).
// On x86-64 va_list is an array type (__va_list_tag[1]) and decays to a
// pointer when passed, so the callback receives `ap` as a plain pointer that
// vsnprintf accepts unchanged. fmt stays a raw pointer too (no decoding).
const PrintFn = koffi.proto('int netagent_libbpf_print_fn(int level, void *fmt, void *ap)');
const set_print = lib.func('libbpf_set_print', P, [koffi.pointer(PrintFn)]);

// ---- error helpers ----
function defaultHint(errno: number): string | undefined {
  switch (errno) {
    case 1: case 13: return 'run as root (needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN for pins)';
    case 12: return 'out of memory or locked-memory limit (RLIMIT_MEMLOCK / memcg) too low';
    default: return undefined;
  }
}

function fail(call: string, errno: number, ctx: { link?: LinkInfo; hint?: string; detail?: string } = {}): never {
  const n = Math.abs(errno) || EINVAL;
  throw new BpfError(call, n, { ...ctx, hint: ctx.hint ?? defaultHint(n) });
}

function checkInt(call: string, ret: number, ctx: { link?: LinkInfo; hint?: string; detail?: string } = {}): number {
  if (ret < 0) fail(call, -ret, ctx);
  return ret;
}

function checkPtr(call: string, ptr: Ptr | null, ctx: { link?: LinkInfo; hint?: string; detail?: string } = {}): Ptr {
  if (ptr === null || ptr === 0n) {
    const errno = koffi.errno(); // pointer APIs: NULL + errno; read before anything else runs
    fail(call, errno || EINVAL, ctx);
  }
  return ptr;
}

// ---- logging ----
const LIBBPF_WARN = 0, LIBBPF_INFO = 1;
let printLogger: Logger | null = null;
const printBuf = Buffer.alloc(64 * 1024);
let printCb: bigint | null = null; // the registered trampoline; module scope keeps it alive

function onLibbpfPrint(level: number, fmt: Ptr | null, ap: Ptr | null): number {
  // Never throw from here: koffi would hand libbpf 0 and the exception would
  // surface somewhere unrelated. Formatting failures are swallowed.
  try {
    const log = printLogger;
    if (!log || fmt === null) return 0;
    const want = level === LIBBPF_WARN ? 'warn' : level === LIBBPF_INFO ? 'debug' : 'trace';
    if (!log.isLevelEnabled(want)) return 0;
    const n = f.vsnprintf(printBuf, printBuf.length, fmt, ap) as number;
    if (n < 0) return 0;
    let msg = printBuf.toString('utf8', 0, Math.min(n, printBuf.length - 1)).replace(/\n+$/, '');
    if (n >= printBuf.length) msg += ' ...(truncated)';
    log[want]({ libbpf: true }, msg);
  } catch {
    /* nothing sensible to do inside a C callback */
  }
  return 0;
}

/** Routes libbpf's own messages to `log` (warn -> warn, info -> debug, debug -> trace); null silences them. */
export function setLibbpfLogger(log: Logger | null): void {
  printLogger = log;
  if (printCb === null) {
    printCb = koffi.register(onLibbpfPrint, koffi.pointer(PrintFn));
    set_print(printCb);
  }
}

// Until someone asks for the messages, keep libbpf quiet on stderr (its default printer writes there).
setLibbpfLogger(null);

// ---- objects, maps, programs ----
export function objectOpenFile(path: string, opts: { pinRootPath?: string; objectName?: string } = {}): Ptr {
  const o = {
    sz: koffi.sizeof(OpenOpts),
    object_name: opts.objectName ?? null,
    relaxed_maps: false,
    pin_root_path: opts.pinRootPath ?? null,
    attach_prog_fd_stub: 0,
    kconfig: null,
    btf_custom_path: null,
    kernel_log_buf: null,
    kernel_log_size: 0,
    kernel_log_level: 0,
  };
  return checkPtr('bpf_object__open_file', f.open_file(path, o) as Ptr | null, {
    detail: `(${path})`,
    hint: 'is the BPF object built (make bpf) and readable?',
  });
}

/** The map called `name`, or null when the object has none. */
export function objectFindMap(obj: Ptr, name: string): Ptr | null {
  const m = f.find_map_by_name(obj, name) as Ptr | null;
  return m === null || m === 0n ? null : m;
}

export function objectMaps(obj: Ptr): Ptr[] {
  const out: Ptr[] = [];
  for (let m = f.next_map(obj, null) as Ptr | null; m !== null && m !== 0n; m = f.next_map(obj, m) as Ptr | null) out.push(m);
  return out;
}

export function mapName(map: Ptr): string {
  return (f.map_name(map) as string | null) ?? '';
}

export function mapPinPath(map: Ptr): string | null {
  return f.map_pin_path(map) as string | null;
}

export function mapSetPinPath(map: Ptr, path: string | null): void {
  checkInt('bpf_map__set_pin_path', f.map_set_pin_path(map, path) as number, { detail: `(map ${mapName(map)})` });
}

export function mapReuseFd(map: Ptr, fd: number): void {
  checkInt('bpf_map__reuse_fd', f.map_reuse_fd(map, fd) as number, { detail: `(map ${mapName(map)})` });
}

export function mapFd(map: Ptr): number {
  return checkInt('bpf_map__fd', f.map_fd(map) as number, { detail: `(map ${mapName(map)}; object not loaded?)` });
}

/** The definition libbpf will create the map from (before load). */
export function mapDef(map: Ptr): { type: number; keySize: number; valueSize: number; maxEntries: number } {
  return {
    type: f.map_type(map) as number,
    keySize: f.map_key_size(map) as number,
    valueSize: f.map_value_size(map) as number,
    maxEntries: f.map_max_entries(map) as number,
  };
}

export function objectLoad(obj: Ptr, what: string): void {
  checkInt('bpf_object__load', f.object_load(obj) as number, {
    detail: `(${what})`,
    hint: 'the verifier or the kernel refused it; the libbpf log (level debug/warn) has the details',
  });
}

export function objectFindProgram(obj: Ptr, name: string): Ptr {
  return checkPtr('bpf_object__find_program_by_name', f.find_program_by_name(obj, name) as Ptr | null, {
    detail: `(program ${name})`,
    hint: `the object does not define a program named ${name}: rebuild it (make bpf)`,
  });
}

export function programFd(prog: Ptr): number {
  return checkInt('bpf_program__fd', f.program_fd(prog) as number, { hint: 'load the object first' });
}

export function objectClose(obj: Ptr): void {
  f.object_close(obj);
}

/** fd of the pinned object at `path`, or null when nothing is pinned there. */
export function objGet(path: string): number | null {
  const fd = f.obj_get(path) as number;
  if (fd === -ENOENT) return null;
  return checkInt('bpf_obj_get', fd, { detail: `(${path})`, hint: `is bpffs mounted at ${path.replace(/\/[^/]*$/, '')}?` });
}

export function closeFd(fd: number): void {
  if (fd >= 0) f.close(fd);
}

// ---- XDP attachment ----
export interface XdpQuery {
  progId: number; drvProgId: number; hwProgId: number; skbProgId: number;
  attachMode: number; // XDP_ATTACHED_*
}

export function xdpQuery(link: LinkInfo, flags = 0): XdpQuery {
  const o = { sz: koffi.sizeof(XdpQueryOpts), prog_id: 0, drv_prog_id: 0, hw_prog_id: 0, skb_prog_id: 0, attach_mode: 0 };
  checkInt('bpf_xdp_query', f.xdp_query(link.ifindex, flags, o) as number, { link, hint: 'does the link still exist?' });
  return { progId: o.prog_id, drvProgId: o.drv_prog_id, hwProgId: o.hw_prog_id, skbProgId: o.skb_prog_id, attachMode: o.attach_mode };
}

/** bpf_xdp_attach; with oldProgFd set, the kernel swaps atomically only if that program is still the one attached. */
export function xdpAttach(link: LinkInfo, progFd: number, flags: number, oldProgFd?: number, hint?: string): void {
  const opts = oldProgFd !== undefined ? { sz: koffi.sizeof(XdpAttachOpts), old_prog_fd: oldProgFd } : null;
  checkInt('bpf_xdp_attach', f.xdp_attach(link.ifindex, progFd, flags >>> 0, opts) as number, { link, hint });
}

export function xdpDetach(link: LinkInfo, flags: number, oldProgFd?: number): void {
  const opts = oldProgFd !== undefined ? { sz: koffi.sizeof(XdpAttachOpts), old_prog_fd: oldProgFd } : null;
  checkInt('bpf_xdp_detach', f.xdp_detach(link.ifindex, flags >>> 0, opts) as number, { link });
}

// ---- maps through fds ----
export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags = BPF_ANY, ctx: { what?: string; hint?: string } = {}): void {
  checkInt('bpf_map_update_elem', f.map_update_elem(fd, key, value, flags) as number, { detail: ctx.what ? `(${ctx.what})` : undefined, hint: ctx.hint });
}

/** Fills `value`; false when the key is absent. */
export function mapLookup(fd: number, key: Buffer, value: Buffer, what?: string): boolean {
  const r = f.map_lookup_elem(fd, key, value) as number;
  if (r === -ENOENT) return false;
  checkInt('bpf_map_lookup_elem', r, { detail: what ? `(${what})` : undefined });
  return true;
}

/** false when the key was absent. */
export function mapDelete(fd: number, key: Buffer, what?: string): boolean {
  const r = f.map_delete_elem(fd, key) as number;
  if (r === -ENOENT) return false;
  checkInt('bpf_map_delete_elem', r, { detail: what ? `(${what})` : undefined });
  return true;
}

/** Writes the key after `key` (first key when null) into `next`; false at the end. */
export function mapNextKey(fd: number, key: Buffer | null, next: Buffer, what?: string): boolean {
  const r = f.map_get_next_key(fd, key, next) as number;
  if (r === -ENOENT) return false;
  checkInt('bpf_map_get_next_key', r, { detail: what ? `(${what})` : undefined });
  return true;
}

/**
 * Reads a whole map with BPF_MAP_LOOKUP_BATCH (one system call for a map
 * that fits): keys into `keys` and values into `values`, packed, entry i at
 * i * keySize and i * valueSize. They must have room for `capacity` entries
 * (the map's max_entries: then one call gets everything; with less room
 * the read stops at the last whole hash bucket that fits). Returns the
 * number of entries, or null when the kernel has no batch lookup for this
 * map's type: hash and array maps have it (kernel 5.6+), devmaps
 * (DEVMAP, DEVMAP_HASH) do not and answer ENOTSUPP; kernels before 5.6
 * answer EINVAL. The caller then walks the map (mapNextKey + mapLookup).
 * Like a walk, a map changing meanwhile may be seen partly before and
 * partly after the change.
 */
export function mapLookupBatch(fd: number, keys: Buffer, values: Buffer, keySize: number, valueSize: number, capacity: number, what?: string): number | null {
  if (keys.length < capacity * keySize || values.length < capacity * valueSize) throw new RangeError(`mapLookupBatch: buffers too small for ${capacity} entries`);
  // The resume token: a bucket number (u32) for hash maps, a key for arrays.
  const tokenSize = Math.max(8, keySize);
  let inBatch: Buffer | null = null;
  let outBatch: Buffer = Buffer.alloc(tokenSize);
  const count = Buffer.alloc(4);
  let total = 0;
  while (total < capacity) {
    count.writeUInt32LE(capacity - total, 0);
    const k = total ? keys.subarray(total * keySize) : keys;
    const v = total ? values.subarray(total * valueSize) : values;
    const r = f.map_lookup_batch(fd, inBatch, outBatch, k, v, count, null) as number;
    // A hash map is read bucket by bucket, and a bucket that does not fit in
    // the room left is not begun (ENOSPC when nothing fits): only a read into
    // less room than the map's max_entries stops short that way.
    if (r === -ENOSPC && total > 0) break;
    if (r < 0 && r !== -ENOENT) {
      if (total === 0 && (r === -ENOTSUPP || r === -EOPNOTSUPP || r === -EINVAL)) return null;
      fail('bpf_map_lookup_batch', -r, { detail: what ? `(${what})` : undefined });
    }
    const n = count.readUInt32LE(0);
    total += n;
    if (r === -ENOENT || n === 0) break; // ENOENT: the end of the map (count says how many came before it)
    const next: Buffer = inBatch ?? Buffer.alloc(tokenSize);
    inBatch = outBatch;
    outBatch = next;
  }
  return total;
}

// ---- ids and info ----
/** fd of the program with this id, or null when it is gone. */
export function progFdById(id: number): number | null {
  const fd = f.prog_get_fd_by_id(id) as number;
  if (fd === -ENOENT) return null;
  return checkInt('bpf_prog_get_fd_by_id', fd, { detail: `(id ${id})` });
}

export function mapFdById(id: number): number | null {
  const fd = f.map_get_fd_by_id(id) as number;
  if (fd === -ENOENT) return null;
  return checkInt('bpf_map_get_fd_by_id', fd, { detail: `(id ${id})` });
}

export interface ProgInfo { id: number; type: number; name: string; tag: string }
export interface MapInfo { id: number; type: number; name: string; keySize: number; valueSize: number; maxEntries: number; flags: number }

function objInfo(fd: number, type: TypeObject): Record<string, unknown> {
  const buf = Buffer.alloc(koffi.sizeof(type));
  const len = [buf.length];
  checkInt('bpf_obj_get_info_by_fd', f.obj_get_info_by_fd(fd, buf, len) as number);
  return koffi.decode(buf, type) as Record<string, unknown>;
}

export function progInfo(fd: number): ProgInfo {
  const i = objInfo(fd, ProgInfoHead);
  const tag = Buffer.from(i.tag as number[]).toString('hex');
  return { id: i.id as number, type: i.type as number, name: i.name as string, tag };
}

/** Ids of the maps a program uses (bpf_prog_info.map_ids, second info call with a buffer). */
export function progMapIds(fd: number): number[] {
  const n = objInfo(fd, ProgInfoHead).nr_map_ids as number;
  if (!n) return [];
  const ids = Buffer.alloc(4 * n);
  const buf = Buffer.alloc(koffi.sizeof(ProgInfoHead));
  buf.writeUInt32LE(n, koffi.offsetof(ProgInfoHead, 'nr_map_ids'));
  buf.writeBigUInt64LE(koffi.address(ids), koffi.offsetof(ProgInfoHead, 'map_ids'));
  const len = [buf.length];
  checkInt('bpf_obj_get_info_by_fd', f.obj_get_info_by_fd(fd, buf, len) as number);
  const got = Math.min(n, buf.readUInt32LE(koffi.offsetof(ProgInfoHead, 'nr_map_ids')));
  return Array.from({ length: got }, (_, i) => ids.readUInt32LE(4 * i));
}

export function mapInfo(fd: number): MapInfo {
  const i = objInfo(fd, MapInfoHead);
  return {
    id: i.id as number, type: i.type as number, name: i.name as string, keySize: i.key_size as number,
    valueSize: i.value_size as number, maxEntries: i.max_entries as number, flags: i.map_flags as number,
  };
}

export function numPossibleCpus(): number {
  return checkInt('libbpf_num_possible_cpus', f.num_possible_cpus() as number);
}

export function strerror(err: number): string {
  const buf = Buffer.alloc(256);
  f.strerror(Math.abs(err), buf, buf.length);
  const nul = buf.indexOf(0);
  return buf.toString('utf8', 0, nul < 0 ? buf.length : nul);
}

// ---- BPF_PROG_TEST_RUN ----
export interface TestRunInput {
  data: Buffer;
  /** Room for the output frame; 0 = no output (required for live frames). */
  dataOutSize: number;
  ingressIfindex?: number;
  repeat?: number;
  live?: boolean;
  batchSize?: number;
}
export interface TestRunOutput { retval: number; data: Buffer; durationNs: number }

export function progTestRun(fd: number, input: TestRunInput): TestRunOutput {
  const out = input.dataOutSize > 0 ? Buffer.alloc(input.dataOutSize) : null;
  // The ctx (struct xdp_md) must describe the data exactly: data_end = size.
  const ctx = input.ingressIfindex !== undefined ? Buffer.alloc(koffi.sizeof(XdpMd)) : null;
  if (ctx) {
    koffi.encode(ctx, 0, XdpMd, {
      data: 0, data_end: input.data.length, data_meta: 0,
      ingress_ifindex: input.ingressIfindex, rx_queue_index: 0, egress_ifindex: 0,
    });
  }
  const o = {
    sz: koffi.sizeof(TestRunOpts),
    data_in: input.data.length ? koffi.address(input.data) : null,
    data_out: out ? koffi.address(out) : null,
    data_size_in: input.data.length,
    data_size_out: out ? out.length : 0,
    ctx_in: ctx ? koffi.address(ctx) : null,
    ctx_out: null,
    ctx_size_in: ctx ? ctx.length : 0,
    ctx_size_out: 0,
    retval: 0,
    repeat: input.repeat ?? 1,
    duration: 0,
    flags: input.live ? BPF_F_TEST_XDP_LIVE_FRAMES : 0,
    cpu: 0,
    batch_size: input.live ? (input.batchSize ?? 0) : 0,
  };
  const r = f.prog_test_run_opts(fd, o) as number;
  // Keep the buffers reachable until after the call (their addresses are in `o`).
  void input.data; void ctx;
  checkInt('bpf_prog_test_run_opts', r, {
    detail: `(${input.data.length} bytes in)`,
    hint: input.data.length < 14 ? 'the kernel refuses XDP test frames shorter than 14 bytes (ETH_HLEN)' : undefined,
  });
  return { retval: o.retval, data: out ? out.subarray(0, o.data_size_out) : Buffer.alloc(0), durationNs: o.duration };
}
