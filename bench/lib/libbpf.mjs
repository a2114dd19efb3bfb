// Minimal libbpf binding for the benchmark's own tools (generator, sink,
// the working-loader baseline). netagent's own programs are driven through
// its Forwarder; this only loads bench/bpf objects and, for the baseline,
// the published-design stand-ins.
import koffi from 'koffi';

const lib = koffi.load('libbpf.so.1');

// libbpf 1.1 layouts, cut after the last field we set: libbpf accepts a
// shorter `sz` (older caller) and zero-fills the rest.
const OpenOpts = koffi.struct('bench_open_opts', {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
});
const TestRunOpts = koffi.struct('bench_test_run_opts', {
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

const fn = {
  open: lib.func('void *bpf_object__open_file(const char *path, bench_open_opts *opts)'),
  load: lib.func('int bpf_object__load(void *obj)'),
  close: lib.func('void bpf_object__close(void *obj)'),
  findProg: lib.func('void *bpf_object__find_program_by_name(void *obj, const char *name)'),
  findMap: lib.func('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
  progFd: lib.func('int bpf_program__fd(void *prog)'),
  mapFd: lib.func('int bpf_map__fd(void *map)'),
  reuseFd: lib.func('int bpf_map__reuse_fd(void *map, int fd)'),
  setPinPath: lib.func('int bpf_map__set_pin_path(void *map, const char *path)'),
  objGet: lib.func('int bpf_obj_get(const char *path)'),
  objPin: lib.func('int bpf_obj_pin(int fd, const char *path)'),
  testRun: lib.func('int bpf_prog_test_run_opts(int fd, _Inout_ bench_test_run_opts *opts)'),
  lookup: lib.func('int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)'),
  update: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  xdpAttach: lib.func('int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, void *opts)'),
  progFdById: lib.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
  close_fd: koffi.load('libc.so.6').func('int close(int fd)'),
};

export const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;
export const XDP_FLAGS = { skb: 1 << 1, native: 1 << 2 };

/** Attaches prog_fd to ifindex (of the calling thread's namespace) in mode skb|native. */
export function xdpAttach(ifindex, progFd, mode) {
  const r = fn.xdpAttach(ifindex, progFd, XDP_FLAGS[mode], null);
  if (r) throw new Error(`bpf_xdp_attach(ifindex ${ifindex}, ${mode}) failed: ${r}`);
}

/**
 * Opens and loads an object. `reuse` maps map names to pinned paths whose
 * maps the object must use instead of creating its own (the explicit reuse
 * that works on libbpf 1.1.2, where pin-by-name reuse of a DEVMAP fails).
 */
export function loadObject(path, { pinRoot, reuse = {} } = {}) {
  const opts = { sz: koffi.sizeof(OpenOpts), object_name: null, relaxed_maps: false, pin_root_path: pinRoot ?? null };
  const obj = fn.open(path, opts);
  if (!obj) throw new Error(`libbpf: cannot open ${path}`);
  for (const [name, pin] of Object.entries(reuse)) {
    const map = fn.findMap(obj, name);
    const fd = fn.objGet(pin);
    if (!map || fd < 0) { fn.close(obj); throw new Error(`libbpf: cannot reuse ${pin} for map ${name} of ${path}`); }
    // Reuse the fd and drop the pin path: with a pin path, libbpf 1.1.2
    // would compare the pinned DEVMAP with its definition and refuse it.
    const r = fn.reuseFd(map, fd) || fn.setPinPath(map, null);
    fn.close_fd(fd);
    if (r) { fn.close(obj); throw new Error(`libbpf: bpf_map__reuse_fd(${name}) failed: ${r}`); }
  }
  const r = fn.load(obj);
  if (r) { fn.close(obj); throw new Error(`libbpf: loading ${path} failed: ${r}`); }
  return {
    progFd(name) {
      const p = fn.findProg(obj, name);
      if (!p) throw new Error(`libbpf: no program ${name} in ${path}`);
      return fn.progFd(p);
    },
    mapFd(name) {
      const m = fn.findMap(obj, name);
      if (!m) throw new Error(`libbpf: no map ${name} in ${path}`);
      return fn.mapFd(m);
    },
    close() { fn.close(obj); },
  };
}

export function pin(fd, path) {
  const r = fn.objPin(fd, path);
  if (r) throw new Error(`libbpf: pinning to ${path} failed: ${r}`);
}

/** struct xdp_md as ctx_in: the kernel wants data_end == frame length. */
function xdpCtx(ingressIfindex, length) {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(length, 4);
  b.writeUInt32LE(ingressIfindex, 12);
  return b;
}

/**
 * BPF_PROG_TEST_RUN on `frame`. live: real frames (XDP_TX / redirect go
 * out, XDP_PASS enters the stack). Returns {retval, durationNs (per
 * repetition, as the kernel reports it), wallNs}.
 */
export function testRun(progFd, frame, { ingressIfindex, repeat = 1, live = false, batchSize = 0 }) {
  const ctx = xdpCtx(ingressIfindex, frame.length);
  const out = live ? null : Buffer.alloc(frame.length + 256);
  const opts = {
    sz: koffi.sizeof(TestRunOpts),
    data_in: frame, data_out: out, data_size_in: frame.length, data_size_out: out ? out.length : 0,
    ctx_in: ctx, ctx_out: null, ctx_size_in: ctx.length, ctx_size_out: 0,
    retval: 0, repeat, duration: 0, flags: live ? BPF_F_TEST_XDP_LIVE_FRAMES : 0, cpu: 0, batch_size: batchSize,
  };
  const t0 = process.hrtime.bigint();
  const r = fn.testRun(progFd, opts);
  const wallNs = Number(process.hrtime.bigint() - t0);
  if (r) throw new Error(`BPF_PROG_TEST_RUN failed: ${r} (ifindex ${ingressIfindex}, live ${live})`);
  return { retval: opts.retval, durationNs: opts.duration, wallNs };
}

/** Sum of a per-CPU u64 array entry 0. */
export function percpuSum(mapFd, ncpu) {
  const key = Buffer.alloc(4);
  const val = Buffer.alloc(8 * ncpu);
  if (fn.lookup(mapFd, key, val)) throw new Error('bpf_map_lookup_elem failed');
  let s = 0n;
  for (let i = 0; i < ncpu; i++) s += val.readBigUInt64LE(8 * i);
  return Number(s);
}

/** Sets entry `key` (u32) of an array-like map to the bytes of `value`. */
export function updateBytes(mapFd, key, value) {
  const k = Buffer.alloc(4); k.writeUInt32LE(key);
  const r = fn.update(mapFd, k, value, 0n);
  if (r) throw new Error(`bpf_map_update_elem failed: ${r}`);
}

/** A new fd for a loaded program, by id (close it with closeFd). */
export function progFdById(id) {
  const fd = fn.progFdById(id);
  if (fd < 0) throw new Error(`bpf_prog_get_fd_by_id(${id}) failed: ${fd}`);
  return fd;
}

export function closeFd(fd) { fn.close_fd(fd); }

export function updateU32(mapFd, key, value) {
  const k = Buffer.alloc(4); k.writeUInt32LE(key);
  const v = Buffer.alloc(4); v.writeUInt32LE(value);
  const r = fn.update(mapFd, k, v, 0n);
  if (r) throw new Error(`bpf_map_update_elem failed: ${r}`);
}
