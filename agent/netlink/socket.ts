// Typed wrapper of our netlink addon (native/netlink.c).
//
// Events: 'message' (Buffer: one datagram from the kernel), 'overflow' (the
// kernel dropped messages for us: ENOBUFS), 'error' (Error). A listener that
// throws does not unwind into the addon or the event loop: the exception is
// caught and emitted as 'error' (or logged when nobody listens for errors).
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import * as C from './constants.js';

/**
 * Calls each listener of `event` on its own: one that throws is handed to
 * onThrow and the others still run. (A throwing listener must never reach the
 * addon's callback, nor keep other listeners from hearing the event.)
 */
export function emitEach(emitter: EventEmitter, event: string, args: unknown[], onThrow: (err: Error) => void): void {
  for (const l of emitter.rawListeners(event) as Array<(...a: unknown[]) => unknown>) {
    try {
      l.apply(emitter, args);
    } catch (e) {
      onThrow(e instanceof Error ? e : new Error(String(e)));
    }
  }
}

/** A failed syscall, as the addon reports it (never thrown by the addon). */
export interface SysErr { errno: number; code: string }
export const isSysErr = (x: unknown): x is SysErr =>
  typeof x === 'object' && x !== null && typeof (x as SysErr).code === 'string' && typeof (x as SysErr).errno === 'number';

type RecvCallback = (code: string | null, errno: number, data: Buffer | undefined) => void;
interface NativeSocket {
  bind(): number | SysErr;
  addMembership(group: number): number | SysErr;
  dropMembership(group: number): number | SysErr;
  setsockopt(level: number, option: number, value: number): number | SysErr;
  getsockopt(level: number, option: number): number | SysErr;
  send(buf: Buffer): number | SysErr;
  start(): number | SysErr;
  pause(): number;
  ref(): void;
  unref(): void;
  close(): void;
  fd(): number;
  stats(): { received: number; dropped: number; truncated: number; recvBufferBytes: number };
}
interface Addon {
  NetlinkSocket: new (protocol: number, cb: RecvCallback) => NativeSocket;
  /** strerrorname_np: how the addon names the codes it reports. TypeScript names errnos with core/errno.ts (test/unit/errno checks they agree). */
  errnoName(errno: number): string;
}

// Where the addon lives: an explicit override, the repository build (this file
// is dist/agent/netlink/socket.js), or next to the installed agent.
const here = dirname(fileURLToPath(import.meta.url));
const ADDON_CANDIDATES = [
  process.env.NETAGENT_NETLINK_ADDON,
  join(here, '..', '..', '..', 'native', 'build', 'Release', 'netlink.node'),
  join(here, '..', '..', 'native', 'build', 'Release', 'netlink.node'),
  join(here, 'netlink.node'),
].filter((p): p is string => !!p);

let addon: Addon | null = null;
export function loadAddon(): Addon {
  if (addon) return addon;
  const path = ADDON_CANDIDATES.find((p) => existsSync(p));
  if (!path) {
    throw new Error(
      `netlink addon not found (looked in ${ADDON_CANDIDATES.join(', ')}): run \`make native\` or set NETAGENT_NETLINK_ADDON`,
    );
  }
  addon = createRequire(import.meta.url)(path) as Addon;
  return addon;
}

export interface SocketStats { received: number; dropped: number; truncated: number; overflows: number; listenerErrors: number }

export class NetlinkSocket extends EventEmitter {
  /** The kernel-assigned port id (nl_pid) after bind. */
  readonly pid: number;
  private readonly native: NativeSocket;
  private readonly log: Logger | undefined;
  private closedFlag = false;
  private overflows = 0;
  private listenerErrors = 0;

  /** Opens, binds (no multicast groups) and starts reading. Throws only when the socket cannot be made at all. */
  static open(opts: { protocol?: number; log?: Logger } = {}): NetlinkSocket {
    return new NetlinkSocket(opts.protocol ?? C.NETLINK_ROUTE, opts.log);
  }

  private constructor(protocol: number, log: Logger | undefined) {
    super();
    this.log = log;
    const { NetlinkSocket: Native } = loadAddon();
    this.native = new Native(protocol, (code, errno, data) => this.onRecv(code, errno, data));
    const pid = this.native.bind();
    if (isSysErr(pid)) {
      this.native.close();
      throw new Error(`netlink: bind failed: ${pid.code}`);
    }
    this.pid = pid;
    const st = this.native.start();
    if (isSysErr(st)) {
      this.native.close();
      throw new Error(`netlink: cannot poll the socket: ${st.code}`);
    }
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  send(buf: Buffer): number | SysErr {
    if (this.closedFlag) return { errno: 9, code: 'EBADF' };
    return this.native.send(buf);
  }

  setsockopt(level: number, option: number, value: number): SysErr | null {
    const r = this.native.setsockopt(level, option, value);
    return isSysErr(r) ? r : null;
  }

  getsockopt(level: number, option: number): number | SysErr {
    return this.native.getsockopt(level, option);
  }

  addMembership(group: number): SysErr | null {
    const r = this.native.addMembership(group);
    return isSysErr(r) ? r : null;
  }

  dropMembership(group: number): SysErr | null {
    const r = this.native.dropMembership(group);
    return isSysErr(r) ? r : null;
  }

  /**
   * Sets the receive buffer: SO_RCVBUFFORCE (needs CAP_NET_ADMIN, ignores
   * net.core.rmem_max), falling back to SO_RCVBUF. Returns what the kernel
   * granted (it doubles the request for bookkeeping).
   */
  setRcvbuf(bytes: number): { forced: boolean; actual: number; error: SysErr | null } {
    const forced = this.setsockopt(C.SOL_SOCKET, C.SO_RCVBUFFORCE, bytes);
    let error: SysErr | null = null;
    if (forced) error = this.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, bytes);
    const actual = this.getsockopt(C.SOL_SOCKET, C.SO_RCVBUF);
    return { forced: forced === null, actual: isSysErr(actual) ? 0 : actual, error };
  }

  /** Stops reading (messages queue in the kernel, which drops them with ENOBUFS when full). */
  pause(): void {
    if (!this.closedFlag) this.native.pause();
  }

  resume(): void {
    if (!this.closedFlag) this.native.start();
  }

  ref(): this {
    if (!this.closedFlag) this.native.ref();
    return this;
  }

  unref(): this {
    if (!this.closedFlag) this.native.unref();
    return this;
  }

  /** Idempotent; safe from inside a 'message' listener (no further messages are delivered). */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.native.close();
  }

  stats(): SocketStats {
    const s = this.native.stats();
    return { received: s.received, dropped: s.dropped, truncated: s.truncated, overflows: this.overflows, listenerErrors: this.listenerErrors };
  }

  private onRecv(code: string | null, errno: number, data: Buffer | undefined): void {
    if (code === null && data) {
      this.safeEmit('message', data);
    } else if (code === 'ENOBUFS') {
      this.overflows += 1;
      this.safeEmit('overflow');
    } else {
      const err = Object.assign(new Error(`netlink receive failed: ${code ?? 'unknown'} (errno ${errno})`), { code, errno });
      this.reportError(err);
    }
  }

  private safeEmit(event: string, ...args: unknown[]): void {
    emitEach(this, event, args, (err) => {
      this.listenerErrors += 1;
      this.reportError(new Error(`netlink '${event}' listener threw: ${err.message}`, { cause: err }));
    });
  }

  private reportError(err: Error): void {
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', err);
        return;
      } catch (e) {
        this.listenerErrors += 1;
        err = new Error(`netlink 'error' listener threw: ${e instanceof Error ? e.message : String(e)}`, { cause: err });
      }
    }
    if (this.log) this.log.error({ err }, err.message);
    else process.emitWarning(err.message, { code: 'NETAGENT_NETLINK' });
  }
}
