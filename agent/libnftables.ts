// libnftables in-process, through koffi (Debian 12: libnftables1 1.0.6): the
// same ruleset language `nft -f -` reads, without a process per change.
// Only the calls we use are bound (see libnftables(3)):
//   nft_ctx_new(NFT_CTX_DEFAULT)         opens the nfnetlink socket (in the
//                                        network namespace we run in now)
//   nft_ctx_buffer_output/_error         messages into buffers, not our stdout/stderr
//   nft_run_cmd_from_buffer(ctx, text)   parse, evaluate, one netlink batch:
//                                        the whole text is one transaction
//   nft_ctx_get_output/error_buffer      read (and rewind) those buffers
//   nft_ctx_free
//
// One context serves the whole process, and every command goes through one
// queue: the context is not safe for two threads at once, and libnftables
// 1.0.6 keeps its interface cache in a global, so even two contexts must not
// run at the same time.
//
// Every command runs on a koffi worker thread (`func.async`), never on the
// event loop. Measured with 1400 client names in a private namespace (2-core
// machine, load ~2, medians of 15-30; CPU is the whole process plus, for the
// fork, the nft child; "blocked" is the synchronous part of the call):
//                        wall      CPU      event loop blocked
//   fork, one delta      32 ms     31 ms    11 ms (spawn)
//   fork, whole table    37 ms     40 ms    11 ms (spawn)
//   here, one delta      0.2 ms    0.2 ms   0     (0.1 ms if run on the loop)
//   here, whole table    5.6 ms    3.8 ms   0     (7 ms if run on the loop)
// (At load ~8 the CPU figures hold; the fork's wall time grows to 80-140 ms
// and its spawn blocks 25-45 ms, the library's delta stays at 0.2-0.4 ms.)
// On the loop, a delta would usually block 0.1 ms, but 3-8 ms whenever
// libnftables must refetch its cache of the kernel's ruleset (the first
// delta after a whole load, or after anyone else changed the ruleset), and a
// whole load with 20000 names blocks ~80 ms; off the loop all of that costs
// ~0.1 ms more latency and nothing else.
//
// The library is loaded on first use, not at import: a client VM without
// nftables never needs it.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import koffi, { type LibraryHandle } from 'koffi';

export const LIBNFTABLES_SONAME = 'libnftables.so.1';

const NFT_CTX_DEFAULT = 0;
const AF_NETLINK = 16, SOCK_RAW = 3, SOCK_CLOEXEC = 0o2000000, NETLINK_NETFILTER = 12;
const F_SETFD = 2, FD_CLOEXEC = 1;

/** libnftables could not be loaded or could not open its netlink socket: nothing was changed. */
export class NftUnavailableError extends Error {
  constructor(readonly detail: string, readonly hint: string) {
    super(`nftables: ${detail}; ${hint}`);
    this.name = 'NftUnavailableError';
  }
}

export interface NftResult {
  ok: boolean;
  /** libnftables' return code (0 on success). */
  rc: number;
  /** What `nft` would have printed on stdout. */
  output: string;
  /** What `nft` would have printed on stderr (parser and kernel errors, with the offending line). */
  error: string;
}

type Fn = ReturnType<LibraryHandle['func']>;
interface Binding {
  ctx_new: Fn; ctx_free: Fn; buffer_output: Fn; buffer_error: Fn;
  get_output: Fn; get_error: Fn; run: Fn; socket: Fn; close: Fn; fcntl: Fn;
  get_flags: Fn; set_flags: Fn;
}

/** nft_ctx_output_set_flags: JSON output (`nft -j`). */
const NFT_CTX_OUTPUT_JSON = 1 << 4;

let binding: Binding | null = null;

function bind(): Binding {
  if (binding) return binding;
  let lib: LibraryHandle;
  try {
    lib = koffi.load(LIBNFTABLES_SONAME);
  } catch (e) {
    throw new NftUnavailableError(`cannot load ${LIBNFTABLES_SONAME} (${(e as Error).message})`, 'install the libnftables1 package (apt-get install libnftables1)');
  }
  const libc = koffi.load('libc.so.6');
  const P = 'void *';
  binding = {
    ctx_new: lib.func('nft_ctx_new', P, ['uint32_t']),
    ctx_free: lib.func('nft_ctx_free', 'void', [P]),
    buffer_output: lib.func('nft_ctx_buffer_output', 'int', [P]),
    buffer_error: lib.func('nft_ctx_buffer_error', 'int', [P]),
    get_output: lib.func('nft_ctx_get_output_buffer', 'const char *', [P]),
    get_error: lib.func('nft_ctx_get_error_buffer', 'const char *', [P]),
    run: lib.func('nft_run_cmd_from_buffer', 'int', [P, 'const char *']),
    get_flags: lib.func('nft_ctx_output_get_flags', 'unsigned int', [P]),
    set_flags: lib.func('nft_ctx_output_set_flags', 'void', [P, 'unsigned int']),
    socket: libc.func('socket', 'int', ['int', 'int', 'int']),
    close: libc.func('close', 'int', ['int']),
    fcntl: libc.func('int fcntl(int fd, int cmd, ...)'),
  };
  return binding;
}

function openFds(): number[] {
  return readdirSync('/proc/self/fd').map(Number);
}

function fdTarget(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return ''; // closed meanwhile (readdir's own descriptor)
  }
}

/** The port id of the NETLINK_NETFILTER socket among these socket inodes (/proc/net/netlink: sk Eth Pid ... Inode). */
function netfilterPortId(inodes: string[]): number | null {
  try {
    for (const line of readFileSync('/proc/net/netlink', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 10 && f[1] === String(NETLINK_NETFILTER) && inodes.includes(f[9]!)) return Number(f[2]) >>> 0;
    }
  } catch { /* no /proc: our own changes then look foreign, and are re-applied once */ }
  return null;
}

/** The process's one libnftables context and the queue its commands wait in. */
export class Nftables {
  private static shared: Nftables | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /** Commands queued or running. */
  private inFlight = 0;

  private constructor(
    private readonly b: Binding,
    private readonly ctx: bigint,
    /**
     * The netlink port id of the library's socket: the kernel stamps it on the
     * nftables notifications our own transactions cause (nlmsg_pid), which is
     * how the change watcher tells them from other programs' (null: unknown).
     */
    readonly portId: number | null,
  ) {}

  /** The shared context, opened on first use; throws NftUnavailableError if it cannot be. */
  static get(): Nftables {
    if (Nftables.shared) return Nftables.shared;
    const b = bind();
    // nft_ctx_new calls exit() when it cannot open the nfnetlink socket
    // (libnftables 1.0.6, netlink_init_error): ask the kernel first ourselves.
    const fd = b.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER) as number;
    if (fd < 0) {
      const errno = koffi.errno();
      throw new NftUnavailableError(
        `cannot open a netfilter netlink socket (errno ${errno})`,
        'load the nfnetlink and nf_tables kernel modules (modprobe nf_tables) and run as root (CAP_NET_ADMIN)',
      );
    }
    b.close(fd);
    const before = new Set(openFds().map((n) => `${n} ${fdTarget(n)}`));
    const ctx = b.ctx_new(NFT_CTX_DEFAULT) as bigint | null;
    if (!ctx) throw new NftUnavailableError('nft_ctx_new failed', 'check memory and that libnftables1 is intact (nft list ruleset)');
    if ((b.buffer_output(ctx) as number) !== 0 || (b.buffer_error(ctx) as number) !== 0) {
      b.ctx_free(ctx);
      throw new NftUnavailableError('cannot buffer libnftables output (fopencookie failed)', 'check memory');
    }
    // libnftables opens its netlink socket on the first command, not in
    // nft_ctx_new: a harmless read makes it open it now, before any other
    // netfilter socket of ours exists, so it can be found.
    b.run(ctx, 'list tables');
    b.get_output(ctx);
    b.get_error(ctx);
    // It is opened without close-on-exec, and libnftables gives no way to
    // reach it: find it among the new descriptors (by target too: a number
    // listed before may have been readdir's own descriptor), so that programs
    // we start (the DHCP client) do not inherit a socket that can change the
    // firewall. Its port id tells our own transactions' notifications from
    // other programs' (without it, every change of ours would look foreign
    // and reload the whole table).
    const inodes: string[] = [];
    for (const n of openFds()) {
      const t = fdTarget(n);
      if (t.startsWith('socket:') && !before.has(`${n} ${t}`)) {
        b.fcntl(n, F_SETFD, 'int', FD_CLOEXEC);
        inodes.push(t.slice('socket:['.length, -1));
      }
    }
    return (Nftables.shared = new Nftables(b, ctx, netfilterPortId(inodes)));
  }

  /**
   * Runs `text` at once on this thread, with JSON output when asked, if no
   * command is queued or running (the context serves one caller at a time);
   * null when busy. For short reads a caller needs synchronously (counters
   * for `status`).
   */
  runSyncIfIdle(text: string, opts: { json?: boolean } = {}): NftResult | null {
    if (this.inFlight > 0) return null;
    const flags = this.b.get_flags(this.ctx) as number;
    if (opts.json) this.b.set_flags(this.ctx, flags | NFT_CTX_OUTPUT_JSON);
    try {
      return this.result(this.b.run(this.ctx, text) as number);
    } finally {
      if (opts.json) this.b.set_flags(this.ctx, flags);
    }
  }

  /**
   * Runs `text` (nft's ruleset language, as `nft -f -` reads it) as one
   * transaction, on a worker thread; queued behind any command still running.
   */
  run(text: string, opts: { json?: boolean } = {}): Promise<NftResult> {
    this.inFlight += 1;
    // The output flags belong to the context: set them for this command's turn only.
    const next = this.queue.then(async () => {
      const flags = this.b.get_flags(this.ctx) as number;
      if (opts.json) this.b.set_flags(this.ctx, flags | NFT_CTX_OUTPUT_JSON);
      try {
        return await this.runOffThread(text);
      } finally {
        if (opts.json) this.b.set_flags(this.ctx, flags);
      }
    }).finally(() => (this.inFlight -= 1));
    this.queue = next.catch(() => {});
    return next;
  }

  private runOffThread(text: string): Promise<NftResult> {
    return new Promise((resolve, reject) => {
      this.b.run.async(this.ctx, text, (err: unknown, rc: number) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve(this.result(rc));
      });
    });
  }

  /** Reads both buffers after every command (reading rewinds them, so messages never pile up). */
  private result(rc: number): NftResult {
    const output = (this.b.get_output(this.ctx) as string | null) ?? '';
    const error = (this.b.get_error(this.ctx) as string | null) ?? '';
    return { ok: rc === 0, rc, output, error };
  }
}
