// qemu driver for the VM tests: boots build/vm (rootfs/build-image.sh) in a
// network namespace of its own, talks to the guest's root shell on the
// serial console (qemu's stdio) and to qemu over QMP (hotplug), and makes
// sure qemu, its TAP devices and its namespace are gone when the test file
// ends, whatever happens (Sandbox).
import { existsSync, mkdirSync, mkdtempSync, rmSync, appendFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { test } from 'uvu';
import { ROOT, Sandbox, inNs, ip, run, uniq } from './sandbox.js';

export const VM_DIR = join(ROOT, 'build', 'vm');
export const KERNEL = join(VM_DIR, 'vmlinuz');
export const INITRAMFS = join(VM_DIR, 'initramfs.img');
/** AF_PACKET helper (send hex frames, capture with VLAN tags re-inserted). */
const PKT = join(ROOT, 'test', 'lib', 'pkt.py');
const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** One virtio-net NIC. With `tap`, its backend is a TAP device of that name in the VM's namespace (frames can be sent and captured there); without, qemu user-mode networking with restrict=on. */
export interface VmNic {
  id: string;
  mac: string;
  tap?: boolean;
  /**
   * Queue pairs (TAP only; user-mode networking has one): a multi_queue TAP,
   * netdev queues=N, virtio-net-pci mq=on with 2N+2 MSI-X vectors. Native
   * XDP on virtio-net needs more than the vCPUs (nativeQueues()).
   */
  queues?: number;
}

/**
 * Queue pairs a virtio-net NIC needs for native XDP_TX/XDP_REDIRECT with
 * its own XDP send queues: the guest enables min(queues, vCPUs) pairs for
 * the stack and attaching XDP asks for one more send queue per possible CPU
 * (else virtio_net falls back to a "slower locked tx mode").
 */
export const nativeQueues = (smp: number): number => 2 * smp;

export interface VmOptions {
  nics: VmNic[];
  /** netagent profile (kernel command line netagent.profile=...). */
  profile?: string;
  xdpMode?: string;
  /** Full config.json (netagent.config=base64), wins over profile/xdpMode. */
  config?: Record<string, unknown>;
  memMiB?: number;
  smp?: number;
  /** Name for the console transcript (build/vm/test-logs/NAME-PID.log). */
  name?: string;
  bootTimeoutMs?: number;
}

/** `netagent status --json`, as the SPEC's contract says. */
export interface StatusJson {
  profile: string;
  ready: boolean;
  interfaces: Array<{
    name: string;
    ifindex: number;
    mac: string;
    role: string;
    state: string;
    addresses: string[];
    xdp: { program: string; mode: string; id: number } | null;
    error: string | null;
  }>;
}

export type StatusIface = StatusJson['interfaces'][number];

/** What the tests read from `ip -j -d link` in the guest. */
export interface GuestLink {
  ifindex: number;
  ifname: string;
  address: string;
  flags: string[];
  operstate?: string;
  promiscuity?: number;
  xdp?: { mode: number; prog?: { id: number }; attached?: Array<{ mode: number; prog?: { id: number } }> };
}

/** The interface with this MAC in a status; throws (listing what there is) when it is not there. */
export function byMac(s: StatusJson, mac: string): StatusIface {
  const i = s.interfaces.find((x) => x.mac.toLowerCase() === mac.toLowerCase());
  if (!i) throw new Error(`status lists no interface with MAC ${mac}: ${JSON.stringify(s.interfaces)}`);
  return i;
}

/** Whether one ping from namespace `ns` to `to` is answered within 3 s. */
export function ping(ns: string, to: string): boolean {
  try {
    run('nsenter', [`--net=/run/netns/${ns}`, 'ping', '-c', '1', '-W', '3', '-q', to], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** The XDP program id attached to a link (any mode), or null. */
export function xdpProgId(l: GuestLink): number | null {
  return l.xdp?.prog?.id ?? l.xdp?.attached?.[0]?.prog?.id ?? null;
}

export interface CmdResult {
  out: string;
  code: number;
}

let cachedAccel: string | null = null;
/** tcg or kvm: run-vm.sh's probe (cached per host boot in build/vm/accel); NETAGENT_VM_ACCEL overrides. */
export function accel(): string {
  if (process.env.NETAGENT_VM_ACCEL) return process.env.NETAGENT_VM_ACCEL;
  cachedAccel ??= run('bash', [join(ROOT, 'rootfs', 'run-vm.sh'), '--probe-accel'], { timeout: 30_000 }).trim();
  return cachedAccel;
}

let imageChecked = false;
/**
 * Brings the image up to date with the agent as built now (build-image.sh
 * does nothing, in about a second, when nothing changed), so a test never
 * boots a stale agent. NETAGENT_VM_NO_BUILD=1 skips it.
 */
export function ensureImage(): void {
  if (imageChecked || process.env.NETAGENT_VM_NO_BUILD) return;
  imageChecked = true;
  run('bash', [join(ROOT, 'rootfs', 'build-image.sh')], { timeout: 600_000 });
}

/** Why the VM tests cannot run here, or null when they can. */
export function vmUnavailable(): string | null {
  try { run('qemu-system-x86_64', ['--version']); } catch { return 'qemu-system-x86_64 is not installed (make deps)'; }
  try { ensureImage(); } catch (e) { return `the VM image could not be built: ${(e as Error).message}`; }
  if (!existsSync(KERNEL) || !existsSync(INITRAMFS)) return `no VM image in ${VM_DIR}: run make image`;
  return null;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A minimal QMP client: commands with ids, events kept for waitEvent(). */
class Qmp {
  private buf = '';
  private nextId = 1;
  private pending = new Map<string, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  readonly events: Array<{ event: string; data?: any }> = [];
  private eventWaiters: Array<() => void> = [];
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (line) this.onMessage(JSON.parse(line));
      }
    });
    const fail = (why: string) => {
      for (const p of this.pending.values()) p.reject(new Error(`QMP: ${why}`));
      this.pending.clear();
    };
    sock.on('close', () => fail('connection closed (qemu exited?)'));
    sock.on('error', (e) => fail(e.message));
  }

  static async open(path: string, timeoutMs: number): Promise<Qmp> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const q = new Qmp(sock);
        await q.execute('qmp_capabilities');
        return q;
      } catch (e) {
        if (Date.now() > end) throw new Error(`QMP socket ${path}: ${(e as Error).message}`);
        await sleep(100);
      }
    }
  }

  private onMessage(m: any): void {
    if (m.QMP) return; // greeting
    if (m.event) {
      this.events.push({ event: m.event, data: m.data });
      for (const w of this.eventWaiters.splice(0)) w();
      return;
    }
    const p = this.pending.get(String(m.id));
    if (!p) return;
    this.pending.delete(String(m.id));
    if (m.error) p.reject(new Error(`QMP ${m.error.class}: ${m.error.desc}`));
    else p.resolve(m.return);
  }

  execute(cmd: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<any> {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${cmd}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(t); resolve(v); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.sock.write(JSON.stringify({ execute: cmd, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  async waitEvent(pred: (e: { event: string; data?: any }) => boolean, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.events.some(pred)) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`QMP: no ${what} event in ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 500));
        this.eventWaiters.push(() => { clearTimeout(t); r(); });
      });
    }
  }

  close(): void { this.sock.destroy(); }
}

export class Vm {
  /** The network namespace qemu runs in; TAP backends live here. */
  readonly ns: string;
  /** NIC id -> TAP device name in `ns` (NICs with tap: true). */
  readonly taps = new Map<string, string>();
  /** Everything the serial console printed, \r removed. */
  console = '';
  /** Milliseconds from qemu's start to the first shell prompt. */
  bootToShellMs = 0;
  private consoleWaiters: Array<() => void> = [];
  private qemu!: ChildProcess;
  private qmp!: Qmp;
  private exited: string | null = null;
  private readonly dir: string;
  private readonly logFile: string;
  private readonly t0 = Date.now();
  private busy = Promise.resolve();

  private constructor(private readonly sb: Sandbox, private readonly opts: VmOptions) {
    this.ns = sb.netns('vm');
    // No IPv6 chatter (router solicitations, MLD) from the host side of the TAPs into the guest.
    for (const k of ['all', 'default']) run('nsenter', [`--net=/run/netns/${this.ns}`, 'sysctl', '-qw', `net.ipv6.conf.${k}.disable_ipv6=1`]);
    this.dir = mkdtempSync(join(tmpdir(), 'netagent-vm-'));
    const logDir = join(VM_DIR, 'test-logs');
    mkdirSync(logDir, { recursive: true });
    this.logFile = join(logDir, `${opts.name ?? 'vm'}-${process.pid}.log`);
    rmSync(this.logFile, { force: true });
    process.once('exit', () => this.destroy());
  }

  /** Boots a VM and waits for the root shell on its console. */
  static async boot(sb: Sandbox, opts: VmOptions): Promise<Vm> {
    const why = vmUnavailable();
    if (why) throw new Error(why);
    const vm = new Vm(sb, opts);
    try {
      await vm.start();
    } catch (e) {
      throw vm.withConsole(e as Error);
    }
    return vm;
  }

  /** Creates a TAP device in the VM's namespace, up, and returns its name; multiQueue for a NIC with queues > 1 (qemu then opens one fd per queue). */
  makeTap(multiQueue = false): string {
    const name = uniq('vt');
    ip(this.ns, 'tuntap', 'add', 'dev', name, 'mode', 'tap', ...(multiQueue ? ['multi_queue'] : []));
    ip(this.ns, 'link', 'set', name, 'up');
    return name;
  }

  private netdevArgs(nic: VmNic): string {
    const q = nic.queues ?? 1;
    if (!nic.tap) {
      if (q > 1) throw new Error(`NIC ${nic.id}: queues=${q} needs tap: true (qemu user-mode networking has one queue)`);
      return `user,id=${nic.id},restrict=on`;
    }
    const tap = this.makeTap(q > 1);
    this.taps.set(nic.id, tap);
    return `tap,id=${nic.id},ifname=${tap},script=no,downscript=no${q > 1 ? `,queues=${q}` : ''}`;
  }

  /** virtio-net-pci properties beyond netdev/id/mac: multiqueue and its MSI-X vectors (one per queue, config, control). */
  private static deviceProps(nic: VmNic): Record<string, string | number | boolean> {
    const q = nic.queues ?? 1;
    return { romfile: '', ...(q > 1 ? { mq: true, vectors: 2 * q + 2 } : {}) };
  }

  private async start(): Promise<void> {
    const o = this.opts;
    const qmpPath = join(this.dir, 'qmp.sock');
    let append = 'console=ttyS0 rootfstype=ramfs panic=-1 quiet';
    if (o.config) append += ` netagent.config=${Buffer.from(JSON.stringify(o.config)).toString('base64')}`;
    else {
      if (o.profile) append += ` netagent.profile=${o.profile}`;
      if (o.xdpMode) append += ` netagent.xdpmode=${o.xdpMode}`;
    }
    const a = accel();
    const args = [
      'qemu-system-x86_64',
      ...(a === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,thread=multi', '-cpu', 'max']),
      '-M', 'pc', '-smp', String(o.smp ?? 2), '-m', String(o.memMiB ?? 768),
      '-nodefaults', '-no-reboot', '-display', 'none', '-monitor', 'none',
      '-serial', 'stdio', '-qmp', `unix:${qmpPath},server=on,wait=off`,
      '-kernel', KERNEL, '-initrd', INITRAMFS, '-append', append,
    ];
    for (const nic of o.nics) {
      const props = Object.entries(Vm.deviceProps(nic)).map(([k, v]) => `${k}=${v === true ? 'on' : v}`);
      args.push('-netdev', this.netdevArgs(nic), '-device', [`virtio-net-pci,netdev=${nic.id},id=${nic.id},mac=${nic.mac}`, ...props].join(','));
    }
    // setpriv --pdeathsig: qemu dies with this process even when it is
    // SIGKILLed and no exit handler runs (nsenter and setpriv exec, so qemu's
    // parent is this process).
    this.qemu = this.sb.spawn(inNs(this.ns, ['setpriv', '--pdeathsig', 'KILL', '--', ...args]), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.qemu.stdout!.setEncoding('utf8');
    this.qemu.stdout!.on('data', (d: string) => this.onConsole(d));
    this.qemu.stderr!.setEncoding('utf8');
    this.qemu.stderr!.on('data', (d: string) => this.onConsole(`[qemu stderr] ${d}`));
    this.qemu.once('exit', (code, sig) => {
      this.exited = `qemu exited (${sig ?? `code ${code}`})`;
      for (const w of this.consoleWaiters.splice(0)) w();
    });
    this.qmp = await Qmp.open(qmpPath, 15_000);
    await this.waitConsole(/netvm# /, o.bootTimeoutMs ?? 180_000, 'the shell prompt on ttyS0');
    this.bootToShellMs = Date.now() - this.t0;
    // Long lines would wrap at busybox's default 80 columns and be redrawn.
    await this.sh('stty cols 1000 rows 50');
  }

  private onConsole(d: string): void {
    const clean = d.replace(/\r/g, '');
    this.console += clean;
    try { appendFileSync(this.logFile, clean); } catch { /* log is a convenience */ }
    for (const w of this.consoleWaiters.splice(0)) w();
  }

  /** Waits until the console, from offset `from`, matches re. */
  private async waitConsole(re: RegExp, timeoutMs: number, what: string, from = 0): Promise<RegExpExecArray> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.console.slice(from));
      if (m) return m;
      if (this.exited) throw new Error(`waiting for ${what}: ${this.exited}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`waiting for ${what}: nothing in ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 1000));
        this.consoleWaiters.push(() => { clearTimeout(t); r(); });
      });
    }
  }

  /** Adds the console's last lines to an error, for the reader of a failed test. */
  withConsole(e: Error): Error {
    e.message += `\n--- console (last 1500 chars; whole transcript in ${this.logFile}) ---\n${this.console.slice(-1500)}\n---`;
    return e;
  }

  /**
   * Types `text` at the guest's shell and returns its output and exit code.
   * The output is what lies between two markers printed by printf from
   * pieces, so the echoed command line never contains the marker itself.
   */
  cmd(text: string, timeoutMs = 60_000): Promise<CmdResult> {
    const p = this.busy.then(() => this.cmdNow(text, timeoutMs));
    this.busy = p.then(() => undefined, () => undefined);
    return p;
  }

  private async cmdNow(text: string, timeoutMs: number): Promise<CmdResult> {
    if (text.includes('\n')) throw new Error('Vm.cmd: one line only');
    const n = randomBytes(6).toString('hex');
    const from = this.console.length;
    // A command ending in & (background job) takes no ';' after it.
    const sep = /&\s*$/.test(text) ? ' ' : '; ';
    this.qemu.stdin!.write(`printf '@@%s-%s\\n' B ${n}; ${text}${sep}printf '@@%s-%s:%s\\n' E ${n} $?\n`);
    const m = await this.waitConsole(new RegExp(`@@B-${n}\\n([\\s\\S]*?)@@E-${n}:(\\d+)\\n`), timeoutMs, `\`${text}\` to finish`, from);
    return { out: m[1]!, code: Number(m[2]) };
  }

  /** cmd() that throws unless the exit code is 0. */
  async sh(text: string, timeoutMs = 60_000): Promise<string> {
    const r = await this.cmd(text, timeoutMs);
    if (r.code !== 0) throw new Error(`guest: \`${text}\` exited ${r.code}: ${r.out.trim()}`);
    return r.out;
  }

  /** `netagent status --json` in the guest, parsed. */
  async status(): Promise<StatusJson> {
    const out = await this.sh('netagent status --json', 30_000);
    try {
      return JSON.parse(out) as StatusJson;
    } catch {
      throw new Error(`netagent status --json printed no JSON: ${out.slice(0, 500)}`);
    }
  }

  /**
   * Waits for s6 to report netagent ready (its newline on the notification
   * fd), then for `status --json` to say ready. Throws with the agent's log
   * when it does not happen within timeoutMs.
   */
  async waitReady(timeoutMs = 120_000): Promise<StatusJson> {
    const t = Date.now();
    // s6 runs netagent/finish after each exit of the agent; it logs one line.
    const exits = async () => Number((await this.sh('grep -c "netagent/finish" /run/log/netagent/current 2>/dev/null || true')).trim() || 0);
    const exits0 = await exits();
    const agentLog = async () => (await this.cmd('tail -n 30 /run/log/netagent/current')).out;
    for (;;) {
      const r = await this.cmd('s6-svwait -U -t 2000 /run/service/netagent', 30_000);
      if (r.code === 0) break;
      const n = (await exits()) - exits0;
      if (n >= 3) throw new Error(`netagent exited ${n} times while starting (s6 restarts it each time); agent log:\n${await agentLog()}`);
      if (Date.now() - t > timeoutMs) throw new Error(`netagent did not become ready (s6-svwait -U) in ${timeoutMs} ms; agent log:\n${await agentLog()}`);
    }
    let last = '';
    while (Date.now() - t < timeoutMs) {
      try {
        const s = await this.status();
        if (s.ready) return s;
        last = 'status says ready: false';
      } catch (e) {
        last = (e as Error).message;
      }
      await sleep(500);
    }
    throw new Error(`netagent status never said ready in ${timeoutMs} ms: ${last}`);
  }

  /**
   * Polls `netagent status --json` until pred holds for the interface with
   * this MAC (pred(undefined) when it is not listed); returns it.
   */
  async waitIface(mac: string, pred: (i: StatusIface | undefined) => boolean, what: string, timeoutMs = 60_000): Promise<StatusIface | undefined> {
    const t = Date.now();
    let last: StatusIface | undefined;
    for (;;) {
      last = (await this.status()).interfaces.find((i) => i.mac.toLowerCase() === mac.toLowerCase());
      if (pred(last)) return last;
      if (Date.now() - t > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms; last seen: ${JSON.stringify(last)}`);
      await sleep(250);
    }
  }

  /** The agent's PID as s6 sees it (0 when down). */
  async agentPid(): Promise<number> {
    return Number((await this.sh('s6-svstat -o pid /run/service/netagent')).trim());
  }

  /**
   * kill -9 the agent, wait for s6 to start a new one and for it to be
   * ready again; returns the milliseconds from the kill to readiness.
   */
  async killAgentAndWaitRestart(timeoutMs = 120_000): Promise<number> {
    const old = await this.agentPid();
    if (!old) throw new Error('netagent is not running (s6-svstat says down)');
    const t = Date.now();
    await this.sh(`kill -9 ${old}`);
    let pid = old;
    while (pid === old || pid === 0) {
      if (Date.now() - t > timeoutMs) throw new Error(`s6 did not restart netagent within ${timeoutMs} ms (pid still ${pid})`);
      await sleep(200);
      pid = await this.agentPid();
    }
    await this.waitReady(Math.max(1000, timeoutMs - (Date.now() - t)));
    return Date.now() - t;
  }

  /** `ip -j -d link` in the guest. */
  async ipLinks(): Promise<GuestLink[]> {
    return JSON.parse(await this.sh('ip -j -d link show')) as GuestLink[];
  }

  /**
   * Starts capturing frames of `ethertype` (outer or behind tags) arriving
   * on the host side of a NIC's TAP for `ms` milliseconds; resolves once the
   * socket is bound, to a function that waits for the end and returns the
   * frames (hex, VLAN tags re-inserted).
   */
  async capture(nicId: string, ms: number, ethertype: number): Promise<() => Promise<string[]>> {
    const tap = this.taps.get(nicId);
    if (!tap) throw new Error(`capture: NIC ${nicId} has no TAP backend`);
    const child = this.sb.spawn(inNs(this.ns, [PY, PKT, 'capture', tap, String(ms), `0x${ethertype.toString(16)}`]));
    let out = '', err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const t = Date.now();
    while (!out.startsWith('ready\n')) {
      if (child.exitCode !== null || Date.now() - t > 15_000) throw new Error(`capture on ${tap}: not ready: ${err.trim()}`);
      await sleep(20);
    }
    return async () => {
      await done;
      if (child.exitCode !== 0) throw new Error(`capture on ${tap} exited ${child.exitCode}: ${err.trim()}`);
      return out.split('\n').slice(1).filter(Boolean);
    };
  }

  /**
   * Moves a NIC's TAP into another namespace (a "client VM" on the host
   * side); qemu keeps its file descriptor, frames keep flowing. Returns the
   * TAP's name. capture()/send() no longer work on it.
   */
  moveTap(nicId: string, ns: string): string {
    const tap = this.taps.get(nicId);
    if (!tap) throw new Error(`moveTap: NIC ${nicId} has no TAP backend`);
    ip(this.ns, 'link', 'set', tap, 'netns', ns);
    ip(ns, 'link', 'set', tap, 'up');
    this.taps.delete(nicId);
    return tap;
  }

  /**
   * A "client VM" on the host side: a namespace of its own holding NIC
   * nicId's TAP (moveTap) with `addr` on it and a default route via
   * `gateway`. A /32 has no subnet the gateway could lie in, so the gateway
   * then gets a route on the TAP first. Returns the namespace.
   */
  clientNs(nicId: string, addr: string, gateway: string): string {
    const ns = this.sb.netns('cl');
    const tap = this.moveTap(nicId, ns);
    ip(ns, 'addr', 'add', addr, 'dev', tap);
    if (addr.endsWith('/32')) ip(ns, 'route', 'add', gateway, 'dev', tap);
    ip(ns, 'route', 'add', 'default', 'via', gateway);
    return ns;
  }

  /** Sends frames (as they are, tags included) from the host side of a NIC's TAP into the guest. */
  send(nicId: string, frames: Buffer[]): void {
    const tap = this.taps.get(nicId);
    if (!tap) throw new Error(`send: NIC ${nicId} has no TAP backend`);
    const argv = inNs(this.ns, [PY, PKT, 'send', tap, ...frames.map((f) => f.toString('hex'))]);
    run(argv[0]!, argv.slice(1));
  }

  /** A QMP command. */
  qmpCmd(cmd: string, args?: Record<string, unknown>): Promise<any> {
    return this.qmp.execute(cmd, args);
  }

  /** Hotplugs a virtio-net NIC (netdev_add + device_add). */
  async hotplug(nic: VmNic): Promise<void> {
    const nd = this.netdevArgs(nic).split(',');
    const netdev: Record<string, unknown> = { type: nd[0] };
    for (const kv of nd.slice(1)) {
      const [k, v] = kv.split('=') as [string, string];
      netdev[k] = v === 'on' ? true : k === 'queues' ? Number(v) : v;
    }
    await this.qmp.execute('netdev_add', netdev);
    await this.qmp.execute('device_add', { driver: 'virtio-net-pci', id: nic.id, netdev: nic.id, mac: nic.mac, ...Vm.deviceProps(nic) });
  }

  /** Unplugs a NIC: device_del, waits for the guest to release it (ACPI eject), netdev_del. */
  async unplug(id: string, timeoutMs = 60_000): Promise<void> {
    await this.qmp.execute('device_del', { id });
    await this.qmp.waitEvent((e) => e.event === 'DEVICE_DELETED' && e.data?.device === id, timeoutMs, `DEVICE_DELETED for ${id}`);
    await this.qmp.execute('netdev_del', { id });
  }

  /** Powers the guest off (s6 stops its services first); kills qemu if that takes over timeoutMs. */
  async shutdown(timeoutMs = 20_000): Promise<void> {
    if (this.exited) return this.destroy();
    try {
      this.qemu.stdin!.write('poweroff\n');
      const end = Date.now() + timeoutMs;
      while (!this.exited && Date.now() < end) await sleep(100);
    } finally {
      this.destroy();
    }
  }

  /** Kills qemu and removes the socket directory (the Sandbox removes the namespace and its TAPs). */
  destroy(): void {
    try { this.qmp?.close(); } catch { /* gone */ }
    if (this.qemu && !this.exited) {
      try { this.qemu.kill('SIGKILL'); } catch { /* gone */ }
    }
    try { rmSync(this.dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }

  /** Sends raw keystrokes to the serial console (no markers, no waiting). */
  type(text: string): void {
    this.qemu.stdin!.write(text);
  }

  /**
   * Types `text` and waits for a shell prompt printed after it: after `exit`,
   * the respawned shell's. Typing the next command before that prompt loses
   * its first characters while the console is reopened (a line that then
   * starts inside a quote swallows every command after it).
   */
  async typeAndWaitPrompt(text: string, timeoutMs = 30_000): Promise<void> {
    const from = this.console.length;
    this.type(text);
    await this.waitConsole(/netvm# /, timeoutMs, 'a new shell prompt', from);
  }

  /** Why qemu exited, or null while it runs. */
  get exitReason(): string | null {
    return this.exited;
  }

  /** Milliseconds since qemu started. */
  uptimeMs(): number {
    return Date.now() - this.t0;
  }
}

export interface VmSuiteOptions extends VmOptions {
  /** How long to wait for netagent to be ready after the boot (default 180 s); false: the boot ends at the shell prompt. */
  readyTimeoutMs?: number | false;
}

export interface VmSuite {
  /** A uvu test that waits for the boot (and the setup) and adds the console's last lines to its failure. */
  guarded(name: string, fn: () => Promise<void>): void;
  /** The booted VM (inside guarded tests and the setup). */
  readonly vm: Vm;
  /** `netagent status --json` when it first said ready (throws with readyTimeoutMs: false). */
  readonly ready: StatusJson;
  readonly sb: Sandbox;
}

/**
 * One VM for a whole test file, booted now: the boot, the wait for the
 * agent and `setup` run once, and a failure of any of them fails every
 * guarded test with its reason (uvu would swallow an error thrown by a
 * before hook). qemu and the sandbox go when the file's tests are done.
 */
export function vmSuite(opts: VmSuiteOptions, setup?: (vm: Vm, sb: Sandbox) => void | Promise<void>): VmSuite {
  const sb = new Sandbox();
  const { readyTimeoutMs = 180_000, ...vmOpts } = opts;
  let vm: Vm | undefined;
  let ready: StatusJson | undefined;
  const booting = (async () => {
    const v = await Vm.boot(sb, vmOpts);
    vm = v;
    if (readyTimeoutMs !== false) {
      try { ready = await v.waitReady(readyTimeoutMs); } catch (e) { throw v.withConsole(e as Error); }
    }
    await setup?.(v, sb);
  })();
  booting.catch(() => { /* reported by each test */ });
  test.after(() => {
    vm?.destroy();
    sb.cleanup();
  });
  return {
    guarded: (name, fn) =>
      test(name, async () => {
        await booting;
        try { await fn(); } catch (e) { throw vm!.withConsole(e as Error); }
      }),
    get vm() {
      if (!vm) throw new Error('the VM is not booted (yet)');
      return vm;
    },
    get ready() {
      if (!ready) throw new Error('netagent is not ready (yet), or this suite does not wait for it');
      return ready;
    },
    sb,
  };
}
