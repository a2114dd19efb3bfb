// BpfError: what every failing libbpf / bpf() call in the agent turns into.
// It names the call, the errno (number and name), the link when one is
// involved, and a hint saying what a person can do about it.

/** errno numbers on Linux (x86-64, asm-generic) plus the kernel-internal and libbpf ones we can meet. */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 6: 'ENXIO', 7: 'E2BIG', 8: 'ENOEXEC',
  9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST',
  18: 'EXDEV', 19: 'ENODEV', 20: 'ENOTDIR', 21: 'EISDIR', 22: 'EINVAL', 23: 'ENFILE', 24: 'EMFILE',
  27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS', 34: 'ERANGE', 36: 'ENAMETOOLONG', 38: 'ENOSYS',
  39: 'ENOTEMPTY', 40: 'ELOOP', 61: 'ENODATA', 71: 'EPROTO', 74: 'EBADMSG', 75: 'EOVERFLOW',
  90: 'EMSGSIZE', 93: 'EPROTONOSUPPORT', 95: 'EOPNOTSUPP', 97: 'EAFNOSUPPORT', 99: 'EADDRNOTAVAIL',
  100: 'ENETDOWN', 110: 'ETIMEDOUT', 114: 'EALREADY', 524: 'ENOTSUPP',
  4000: 'LIBBPF_ERRNO__LIBELF', 4001: 'LIBBPF_ERRNO__FORMAT', 4002: 'LIBBPF_ERRNO__KVERSION',
  4003: 'LIBBPF_ERRNO__ENDIAN', 4004: 'LIBBPF_ERRNO__INTERNAL', 4005: 'LIBBPF_ERRNO__RELOC',
  4006: 'LIBBPF_ERRNO__LOAD', 4007: 'LIBBPF_ERRNO__VERIFY', 4008: 'LIBBPF_ERRNO__PROG2BIG',
  4009: 'LIBBPF_ERRNO__KVER', 4010: 'LIBBPF_ERRNO__PROGTYPE', 4011: 'LIBBPF_ERRNO__WRNGPID',
  4012: 'LIBBPF_ERRNO__INVSEQ', 4013: 'LIBBPF_ERRNO__NLPARSE',
};

/** 'EINVAL' for 22; 'E123' for numbers not in the table. Accepts -errno too. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return ERRNO_NAMES[n] ?? `E${n}`;
}

export interface LinkInfo { ifindex: number; name?: string }

export class BpfError extends Error {
  readonly call: string;
  readonly errno: number;
  readonly code: string;
  readonly link: LinkInfo | undefined;
  readonly hint: string | undefined;

  constructor(call: string, errno: number, opts: { link?: LinkInfo; hint?: string; detail?: string } = {}) {
    const n = Math.abs(errno);
    const code = errnoName(n);
    const where = opts.link ? (opts.link.name ? ` on ${opts.link.name} (ifindex ${opts.link.ifindex})` : ` on ifindex ${opts.link.ifindex}`) : '';
    const detail = opts.detail ? ` ${opts.detail}` : '';
    const hint = opts.hint ? `: ${opts.hint}` : '';
    super(`${call}${where} failed with ${code} (${n})${detail}${hint}`);
    this.name = 'BpfError';
    this.call = call;
    this.errno = n;
    this.code = code;
    this.link = opts.link;
    this.hint = opts.hint;
  }
}
