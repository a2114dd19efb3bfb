// "Another tool" that holds a NIC's XDP hook through a bpf_link, the way
// libbpf's bpf_program__attach_xdp does it (BPF_LINK_CREATE with attach type
// BPF_XDP, not a netlink IFLA_XDP attach): loads a two-instruction XDP
// program (return XDP_PASS), creates the link on an ifindex of the calling
// process's network namespace, pins the link in a bpffs and exits. The pin
// keeps the link (and its program) alive after this process is gone; removing
// the pin releases it, `bpftool link detach` detaches it.
//
// As a script (a process of its own, like the tool it stands for):
//   node dist/test/lib/xdp-link.js IFINDEX PIN_PATH [default|skb|native]
// prints {"fd":N} on success; exits 1 with the libbpf error otherwise.
// Mode `default` passes no mode flag, as bpf_program__attach_xdp does (the
// kernel then picks native where the driver has it: veths do); `skb` and
// `native` pass XDP_FLAGS_SKB_MODE / XDP_FLAGS_DRV_MODE in the link's flags.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { errnoName } from '../../agent/core/errno.js';

const BPF_PROG_TYPE_XDP = 6;
const BPF_XDP = 37; // enum bpf_attach_type
const XDP_FLAGS_SKB_MODE = 1 << 1;
const XDP_FLAGS_DRV_MODE = 1 << 2;

export type HoldMode = 'default' | 'skb' | 'native';

/** Runs the helper in a process of its own (same network and mount namespace as the caller). */
export function holdXdp(ifindex: number, pinPath: string, mode: HoldMode = 'default'): void {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), String(ifindex), pinPath, mode], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`xdp-link helper (ifindex ${ifindex}, ${mode}): exit ${r.status ?? r.signal}: ${r.stderr.trim()}`);
}

function main(argv: string[]): void {
  const [ifindexArg, pinPath, modeArg = 'default'] = argv;
  const ifindex = Number(ifindexArg);
  if (!Number.isInteger(ifindex) || ifindex < 1 || !pinPath || !['default', 'skb', 'native'].includes(modeArg)) {
    throw new Error('usage: xdp-link.js IFINDEX PIN_PATH [default|skb|native]');
  }
  const lib = koffi.load('libbpf.so.1');
  // Prefixes of libbpf 1.1's opts structs: `sz` tells libbpf how much of them we pass.
  const LoadOpts = koffi.struct('xdp_link_helper_prog_load_opts', { sz: 'size_t', attempts: 'int', expected_attach_type: 'uint32_t' });
  const LinkOpts = koffi.struct('xdp_link_helper_link_create_opts', { sz: 'size_t', flags: 'uint32_t' });
  const progLoad = lib.func('bpf_prog_load', 'int', ['int', 'const char *', 'const char *', 'void *', 'size_t', koffi.pointer(LoadOpts)]);
  const linkCreate = lib.func('bpf_link_create', 'int', ['int', 'int', 'int', koffi.pointer(LinkOpts)]);
  const objPin = lib.func('bpf_obj_pin', 'int', ['int', 'const char *']);
  const strerror = (n: number) => `${errnoName(-n)} (${-n})`;

  // r0 = XDP_PASS (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT).
  const insns = Buffer.from([0xb7, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
  const progFd = progLoad(BPF_PROG_TYPE_XDP, 'other_tool', 'GPL', insns, 2, { sz: koffi.sizeof(LoadOpts), attempts: 0, expected_attach_type: BPF_XDP }) as number;
  if (progFd < 0) throw new Error(`bpf_prog_load: ${strerror(progFd)}`);
  const flags = modeArg === 'skb' ? XDP_FLAGS_SKB_MODE : modeArg === 'native' ? XDP_FLAGS_DRV_MODE : 0;
  const linkFd = linkCreate(progFd, ifindex, BPF_XDP, { sz: koffi.sizeof(LinkOpts), flags }) as number;
  if (linkFd < 0) throw new Error(`bpf_link_create (XDP, ifindex ${ifindex}, flags ${flags}): ${strerror(linkFd)}`);
  const pinned = objPin(linkFd, pinPath) as number;
  if (pinned < 0) throw new Error(`bpf_obj_pin ${pinPath}: ${strerror(pinned)}`);
  process.stdout.write(`${JSON.stringify({ fd: linkFd })}\n`);
  // Exiting closes both fds: from here on only the pin holds the link.
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  }
}
