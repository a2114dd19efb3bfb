// libbpf for the benchmark's own tools (generator, sink, the working-loader
// baseline): the agent's typed binding (agent/bpf/libbpf.ts, built into
// dist/ by `make build`, which `make bench` runs first), with the bench's
// calling conventions on top. netagent's own programs are driven through its
// Forwarder; this only loads bench/bpf objects and, for the baseline, the
// published-design stand-ins. The one call the agent never makes (pinning a
// program) is bound here.
import koffi from 'koffi';
import * as bpf from '../../dist/agent/bpf/libbpf.js';

export const BPF_F_TEST_XDP_LIVE_FRAMES = bpf.BPF_F_TEST_XDP_LIVE_FRAMES;
export const XDP_FLAGS = { skb: bpf.XDP_FLAGS_SKB_MODE, native: bpf.XDP_FLAGS_DRV_MODE };

const objPin = koffi.load(bpf.LIBBPF_SONAME).func('int bpf_obj_pin(int fd, const char *path)');

// Importing the agent's binding silences libbpf; the bench wants its
// warnings and infos on stderr as libbpf's own printer writes them (until
// the data plane's Forwarder installs its own logger).
const levels = new Set(['warn', 'debug']);
const toStderr = (_obj, msg) => process.stderr.write(`${msg}\n`);
bpf.setLibbpfLogger({ isLevelEnabled: (l) => levels.has(l), warn: toStderr, debug: toStderr, trace: () => {} });

/** Attaches prog_fd to ifindex (of the calling thread's namespace) in mode skb|native. */
export function xdpAttach(ifindex, progFd, mode) {
  bpf.xdpAttach({ ifindex }, progFd, XDP_FLAGS[mode]);
}

/**
 * Opens and loads an object. `reuse` maps map names to pinned paths whose
 * maps the object must use instead of creating its own (the explicit reuse
 * that works on libbpf 1.1.2, where pin-by-name reuse of a DEVMAP fails).
 */
export function loadObject(path, { pinRoot, reuse = {} } = {}) {
  const obj = bpf.objectOpenFile(path, { pinRootPath: pinRoot });
  try {
    for (const [name, pin] of Object.entries(reuse)) {
      const map = bpf.objectFindMap(obj, name);
      const fd = bpf.objGet(pin);
      if (!map || fd === null) { bpf.closeFd(fd ?? -1); throw new Error(`libbpf: cannot reuse ${pin} for map ${name} of ${path}`); }
      // Reuse the fd and drop the pin path: with a pin path, libbpf 1.1.2
      // would compare the pinned DEVMAP with its definition and refuse it.
      try {
        bpf.mapReuseFd(map, fd);
        bpf.mapSetPinPath(map, null);
      } finally {
        bpf.closeFd(fd);
      }
    }
    bpf.objectLoad(obj, path);
  } catch (e) {
    bpf.objectClose(obj);
    throw e;
  }
  return {
    progFd(name) {
      return bpf.programFd(bpf.objectFindProgram(obj, name));
    },
    mapFd(name) {
      const m = bpf.objectFindMap(obj, name);
      if (!m) throw new Error(`libbpf: no map ${name} in ${path}`);
      return bpf.mapFd(m);
    },
    close() { bpf.objectClose(obj); },
  };
}

export function pin(fd, path) {
  const r = objPin(fd, path);
  if (r) throw new Error(`libbpf: pinning to ${path} failed: ${r}`);
}

/**
 * BPF_PROG_TEST_RUN on `frame` (ctx: struct xdp_md with this ingress
 * ifindex). live: real frames (XDP_TX / redirect go out, XDP_PASS enters the
 * stack). Returns {retval, durationNs (per repetition, as the kernel reports
 * it), wallNs}.
 */
export function testRun(progFd, frame, { ingressIfindex, repeat = 1, live = false, batchSize = 0 }) {
  const input = { data: frame, dataOutSize: live ? 0 : frame.length + 256, ingressIfindex, repeat, live, batchSize };
  const t0 = process.hrtime.bigint();
  const r = bpf.progTestRun(progFd, input);
  const wallNs = Number(process.hrtime.bigint() - t0);
  return { retval: r.retval, durationNs: r.durationNs, wallNs };
}

/** Sum of a per-CPU u64 array entry 0. */
export function percpuSum(mapFd, ncpu) {
  const key = Buffer.alloc(4);
  const val = Buffer.alloc(8 * ncpu);
  if (!bpf.mapLookup(mapFd, key, val)) throw new Error('bpf_map_lookup_elem failed: no entry 0');
  let s = 0n;
  for (let i = 0; i < ncpu; i++) s += val.readBigUInt64LE(8 * i);
  return Number(s);
}

/** Sets entry `key` (u32) of an array-like map to the bytes of `value`. */
export function updateBytes(mapFd, key, value) {
  const k = Buffer.alloc(4); k.writeUInt32LE(key);
  bpf.mapUpdate(mapFd, k, value);
}

/** A new fd for a loaded program, by id (close it with closeFd). */
export function progFdById(id) {
  const fd = bpf.progFdById(id);
  if (fd === null) throw new Error(`bpf_prog_get_fd_by_id(${id}) failed: no such program`);
  return fd;
}

export function closeFd(fd) { bpf.closeFd(fd); }

export function updateU32(mapFd, key, value) {
  const v = Buffer.alloc(4); v.writeUInt32LE(value);
  updateBytes(mapFd, key, v);
}
