// errno numbers and their names: the one table every error message uses
// (BpfError, NetlinkError, the netlink socket). Pure: no I/O, no addon.
//
// Names are glibc's (strerrorname_np), the ones the kernel headers, strace
// and our native addon print: EOPNOTSUPP, not libuv's ENOTSUP, for 95.
import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/** Where two names share a number, the one glibc prints. */
const PREFERRED: readonly string[] = ['EAGAIN', 'EDEADLK', 'EOPNOTSUPP'];

/** Linux (asm-generic) errnos Node's os.constants.errno leaves out, kernel-internal ones, and libbpf's own. */
const EXTRA: Readonly<Record<number, string>> = {
  15: 'ENOTBLK', 44: 'ECHRNG', 45: 'EL2NSYNC', 46: 'EL3HLT', 47: 'EL3RST', 48: 'ELNRNG', 49: 'EUNATCH',
  50: 'ENOCSI', 51: 'EL2HLT', 52: 'EBADE', 53: 'EBADR', 54: 'EXFULL', 55: 'ENOANO', 56: 'EBADRQC',
  57: 'EBADSLT', 59: 'EBFONT', 64: 'ENONET', 65: 'ENOPKG', 66: 'EREMOTE', 68: 'EADV', 69: 'ESRMNT',
  70: 'ECOMM', 73: 'EDOTDOT', 76: 'ENOTUNIQ', 77: 'EBADFD', 78: 'EREMCHG', 79: 'ELIBACC', 80: 'ELIBBAD',
  81: 'ELIBSCN', 82: 'ELIBMAX', 83: 'ELIBEXEC', 85: 'ERESTART', 86: 'ESTRPIPE', 87: 'EUSERS',
  94: 'ESOCKTNOSUPPORT', 96: 'EPFNOSUPPORT', 108: 'ESHUTDOWN', 109: 'ETOOMANYREFS', 112: 'EHOSTDOWN',
  117: 'EUCLEAN', 118: 'ENOTNAM', 119: 'ENAVAIL', 120: 'EISNAM', 121: 'EREMOTEIO', 123: 'ENOMEDIUM',
  124: 'EMEDIUMTYPE', 126: 'ENOKEY', 127: 'EKEYEXPIRED', 128: 'EKEYREVOKED', 129: 'EKEYREJECTED',
  130: 'EOWNERDEAD', 131: 'ENOTRECOVERABLE', 132: 'ERFKILL', 133: 'EHWPOISON',
  // include/linux/errno.h: never meant for user space, but bpf() and XDP attach return ENOTSUPP.
  512: 'ERESTARTSYS', 513: 'ERESTARTNOINTR', 514: 'ERESTARTNOHAND', 515: 'ENOIOCTLCMD', 516: 'ERESTART_RESTARTBLOCK',
  517: 'EPROBE_DEFER', 518: 'EOPENSTALE', 519: 'ENOPARAM', 521: 'EBADHANDLE', 522: 'ENOTSYNC', 523: 'EBADCOOKIE',
  524: 'ENOTSUPP', 525: 'ETOOSMALL', 526: 'ESERVERFAULT', 527: 'EBADTYPE', 528: 'EJUKEBOX', 529: 'EIOCBQUEUED',
  530: 'ERECALLCONFLICT',
  // libbpf.h enum libbpf_errno
  4000: 'LIBBPF_ERRNO__LIBELF', 4001: 'LIBBPF_ERRNO__FORMAT', 4002: 'LIBBPF_ERRNO__KVERSION',
  4003: 'LIBBPF_ERRNO__ENDIAN', 4004: 'LIBBPF_ERRNO__INTERNAL', 4005: 'LIBBPF_ERRNO__RELOC',
  4006: 'LIBBPF_ERRNO__LOAD', 4007: 'LIBBPF_ERRNO__VERIFY', 4008: 'LIBBPF_ERRNO__PROG2BIG',
  4009: 'LIBBPF_ERRNO__KVER', 4010: 'LIBBPF_ERRNO__PROGTYPE', 4011: 'LIBBPF_ERRNO__WRNGPID',
  4012: 'LIBBPF_ERRNO__INVSEQ', 4013: 'LIBBPF_ERRNO__NLPARSE',
};

const NAMES = new Map<number, string>(Object.entries(EXTRA).map(([n, name]) => [Number(n), name]));
const NUMBERS = new Map<string, number>();
for (const [name, n] of Object.entries(constants.errno)) {
  NUMBERS.set(name, n);
  if (!NAMES.has(n) || PREFERRED.includes(name)) NAMES.set(n, name);
}
for (const [n, name] of NAMES) NUMBERS.set(name, n);

/** 'EINVAL' for 22 (or -22, as the kernel and libbpf return it); 'E123' for a number we have no name for. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return NAMES.get(n) ?? `E${n}`;
}

/** The number of an errno name ('EINVAL' -> 22); throws for a name that is not one (a typo in our code). */
export function errnoNumber(name: string): number {
  const n = NUMBERS.get(name);
  if (n === undefined) throw new RangeError(`${name} is not an errno name`);
  return n;
}

const TEXTS = getSystemErrorMap();

/** The C library's short description ('invalid argument'), or 'errno N' when it has none. */
export function errnoText(errno: number): string {
  const n = Math.abs(errno);
  return TEXTS.get(-n)?.[1] ?? `errno ${n}`;
}
