// The status report: its shape (the contract of SPEC.md), the control socket
// that serves it (root only), the client `netagent status` uses, and the table
// a person reads at the console.
import { createServer, createConnection, type Server } from 'node:net';
import { chmodSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { EventEmitter } from 'node:events';
import type { Logger } from './log.js';
import type { ClientCounters } from './nft.js';
import { EventFeed } from './eventfeed.js';
import type { LinkState, Role, XdpMode, XdpProgram } from './core/vocab.js';

export interface InterfaceStatus {
  name: string;
  ifindex: number;
  mac: string;
  role: Role;
  state: LinkState;
  addresses: string[];
  xdp: { program: XdpProgram; mode: XdpMode; id: number } | null;
  error: string | null;
  /** Why a link is ignored, or what it is for (uplink, client address): for people. */
  note: string | null;
  /** Why the link is in its state: what is still to do (pending), the error (failed), what is in place (configured). */
  why: string;
  up: boolean;
  mtu: number;
  /** What the XDP forwarder counted on the link (NICs and the router link); null elsewhere or without the forwarder. */
  traffic: LinkTraffic | null;
}

/**
 * A link's counters, from its own point of view: rx what came in on it, tx
 * what the forwarder sent out of it. Bigints as decimal strings.
 */
export interface LinkTraffic {
  /** The NIC's VLAN ID (its frames' tag on the router link); null for the router link. */
  vid: number | null;
  rxPackets: string;
  rxBytes: string;
  txPackets: string;
  txBytes: string;
  /** Frames dropped on this link, by reason (bpf/common.h enum link_drop). */
  drops: Record<string, string>;
}

export interface StatusReport {
  profile: string;
  ready: boolean;
  interfaces: InterfaceStatus[];
  version: string;
  pid: number;
  uptimeSeconds: number;
  xdpMode: string;
  routerIface: number | null;
  counters: Record<string, string>; // bigint as decimal strings (JSON has no bigint)
  lastError: string | null;
  /** Router profiles: per client link, traffic forwarded each way and drops by reason (nftables counters). */
  clients?: Record<string, ClientCounters>;
}

/**
 * Serves status reports, and the event stream (agent/events.ts) to watchers,
 * on a Unix socket that only root may open (0600 in a 0700 directory).
 */
export class ControlServer {
  private server: Server | null = null;
  private readonly feed: EventFeed | null;
  /** `events`: what emits the reconciler's 'transition' and 'repair' (it exists once the daemon is wired). */
  constructor(private readonly path: string, private readonly report: () => StatusReport, private readonly log: Logger, events?: () => EventEmitter | undefined) {
    this.feed = events ? new EventFeed(events) : null;
  }

  async listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    // A socket file left by a killed agent would make listen() fail with
    // EADDRINUSE; but a live one belongs to a running agent: never take it over.
    let isSocket = false;
    try {
      isSocket = statSync(this.path).isSocket();
    } catch { /* not there */ }
    if (isSocket) {
      if (await answers(this.path)) {
        throw new Error(`another netagent is running (it answers on ${this.path}); stop it first, or give this one another --socket`);
      }
      rmSync(this.path);
    }
    const server = createServer((conn) => {
      conn.setTimeout(5000, () => conn.destroy());
      let buf = '';
      let answered = false;
      conn.on('data', (d) => {
        if (answered) return; // a watcher has nothing more to say
        buf += d.toString('utf8');
        if (buf.length > 4096) return conn.destroy(); // a request is one short line
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        answered = true;
        let reply: unknown;
        try {
          const req = JSON.parse(buf.slice(0, nl)) as { cmd?: unknown };
          if (req.cmd === 'events' && this.feed) return this.feed.add(conn, this.report());
          reply = req.cmd === 'status' ? this.report() : { error: `unknown command ${JSON.stringify(req.cmd)}` };
        } catch (e) {
          reply = { error: `bad request: ${(e as Error).message}` };
        }
        conn.end(JSON.stringify(reply) + '\n');
      });
      conn.on('error', () => { /* client went away */ });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const old = process.umask(0o177); // the socket is born 0600: no window where others could connect
      try {
        server.listen(this.path, () => resolve());
      } finally {
        process.umask(old);
      }
    });
    chmodSync(this.path, 0o600);
    server.on('error', (e) => this.log.error({ err: e, socket: this.path }, 'control socket error'));
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return; // never listened: the socket file, if any, is someone else's
    this.feed?.closeAll('netagent is stopping'); // else close() would wait for every watcher to hang up
    await new Promise<void>((r) => s.close(() => r()));
    try { rmSync(this.path); } catch { /* gone */ }
  }
}

/** Does something accept connections on this Unix socket? */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    const done = (v: boolean) => { c.destroy(); resolve(v); };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
    setTimeout(() => done(false), 1000).unref();
  });
}

export class StatusError extends Error {}

/** Asks the running daemon for its report. Rejects with a one-line reason. */
export function requestStatus(path: string, timeoutMs = 3000): Promise<StatusReport> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(path);
    let buf = '';
    const fail = (why: string) => {
      conn.destroy();
      reject(new StatusError(why));
    };
    const timer = setTimeout(() => fail(`the daemon did not answer on ${path} within ${timeoutMs} ms`), timeoutMs);
    conn.on('connect', () => conn.write(JSON.stringify({ cmd: 'status' }) + '\n'));
    conn.on('data', (d) => (buf += d.toString('utf8')));
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(buf) as StatusReport & { error?: string };
        if (r.error) return reject(new StatusError(`the daemon refused: ${r.error}`));
        resolve(r);
      } catch {
        reject(new StatusError(`the daemon's answer on ${path} is not JSON`));
      }
    });
    conn.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new StatusError(reachError(e, path)));
    });
  });
}

/** Why the control socket cannot be reached, and what to do, in one line. */
export function reachError(e: NodeJS.ErrnoException, path: string): string {
  return e.code === 'ENOENT' ? `netagent is not running (no control socket at ${path}); start it or check the service: s6-svstat /run/service/netagent`
    : e.code === 'ECONNREFUSED' ? `netagent is not running (${path} refuses connections: a stale socket?)`
    : e.code === 'EACCES' ? `permission denied on ${path}: the control socket is root's only (run as root)`
    : `cannot reach netagent at ${path}: ${e.code ?? e.message}`;
}

function fmtDuration(s: number): string {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return d ? `${d}d${h}h` : h ? `${h}h${m}m` : m ? `${m}m${sec}s` : `${sec}s`;
}

/** Frames and bytes per second on one link, between two reports; null when its counters went back (reset, new VID). */
export interface LinkRate {
  rx: { frames: number; bytes: number };
  tx: { frames: number; bytes: number };
}

/** Per-link rates from two reports `seconds` apart, by ifindex. */
export function rates(prev: StatusReport, cur: StatusReport, seconds: number): Map<number, LinkRate | null> {
  const out = new Map<number, LinkRate | null>();
  const before = new Map(prev.interfaces.map((i) => [i.ifindex, i.traffic]));
  for (const i of cur.interfaces) {
    const a = before.get(i.ifindex);
    const b = i.traffic;
    if (!a || !b || seconds <= 0) continue;
    const d = (k: 'rxPackets' | 'rxBytes' | 'txPackets' | 'txBytes') => Number(BigInt(b[k]) - BigInt(a[k]));
    const deltas = [d('rxPackets'), d('rxBytes'), d('txPackets'), d('txBytes')];
    if (a.vid !== b.vid || deltas.some((x) => x < 0)) {
      out.set(i.ifindex, null);
      continue;
    }
    const [rf, rb, tf, tb] = deltas.map((x) => x / seconds) as [number, number, number, number];
    out.set(i.ifindex, { rx: { frames: rf, bytes: rb }, tx: { frames: tf, bytes: tb } });
  }
  return out;
}

/** A count for people: exact below 10000, then 12.3k, 4.56M, 1.2G. */
export function humanCount(n: number | bigint): string {
  const v = Number(n);
  if (v < 10 && !Number.isInteger(v)) return v.toFixed(1); // a rate: 0.5/s is not 0/s
  if (v < 10_000) return String(Math.round(v));
  for (const [unit, size] of [['G', 1e9], ['M', 1e6], ['k', 1e3]] as const) {
    if (v >= size) return `${fix3(v / size)}${unit}`;
  }
  return String(v);
}

/** Bytes for people, in IEC units: 512 B, 4.9 KiB, 12.3 MiB, 1.07 GiB. */
export function humanBytes(n: number | bigint): string {
  const v = Number(n);
  if (v < 1024) return `${Math.round(v)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let x = v / 1024;
  let u = 0;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${fix3(x)} ${units[u]}`;
}

/** Three significant digits at most: 4.91, 49.1, 491. */
function fix3(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2).replace(/0$/, '');
}

export interface FormatStatusOptions {
  /** `status --watch`: add RX/s and TX/s columns ('-' for a link without a rate yet). */
  rates?: Map<number, LinkRate | null>;
}

/** The human table for the console: fixed columns, errors and drops spelled out below it. */
export function formatStatus(r: StatusReport, o: FormatStatusOptions = {}): string {
  const head = ['IFACE', 'IDX', 'MAC', 'ROLE', 'STATE', 'VID', 'RX', 'TX', ...(o.rates ? ['RX/s', 'TX/s'] : []), 'ADDRESSES', 'XDP', 'NOTE'];
  const total = (frames: string, bytes: string) => `${humanCount(BigInt(frames))} / ${humanBytes(BigInt(bytes))}`;
  const perSecond = (x: { frames: number; bytes: number }) => `${humanCount(x.frames)}/s ${humanBytes(x.bytes)}/s`;
  const rows = r.interfaces.map((i) => {
    const t = i.traffic;
    const rate = o.rates?.get(i.ifindex);
    return [
      i.name + (i.up ? '' : ' (down)'),
      String(i.ifindex),
      i.mac || '-',
      i.role,
      i.state,
      t?.vid != null ? String(t.vid) : '-',
      t ? total(t.rxPackets, t.rxBytes) : '-',
      t ? total(t.txPackets, t.txBytes) : '-',
      ...(o.rates ? (rate ? [perSecond(rate.rx), perSecond(rate.tx)] : ['-', '-']) : []),
      i.addresses.length ? i.addresses.join(',') : '-',
      i.xdp ? `${i.xdp.program}/${i.xdp.mode} #${i.xdp.id}` : '-',
      i.error ? 'see below' : i.state === 'pending' ? i.why : i.note ?? '',
    ];
  });
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((x, c) => (c === cells.length - 1 ? x : x.padEnd(widths[c]!))).join('  ').trimEnd();
  const out = [
    `netagent ${r.version}  profile ${r.profile}  xdp ${r.xdpMode}  ${r.ready ? 'ready' : 'NOT READY (coldplug running)'}  up ${fmtDuration(r.uptimeSeconds)}  pid ${r.pid}`,
    '',
    line(head),
    ...rows.map(line),
  ];
  const failed = r.interfaces.filter((i) => i.error);
  if (failed.length) {
    out.push('', 'errors:');
    for (const i of failed) out.push(`  ${i.name}: ${i.error}`);
  }
  const dropping = r.interfaces
    .map((i) => [i.name, Object.entries(i.traffic?.drops ?? {}).filter(([, v]) => v !== '0')] as const)
    .filter(([, d]) => d.length);
  if (dropping.length) {
    out.push('', 'dropped frames:');
    for (const [name, d] of dropping) out.push(`  ${name}: ${d.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  const c = r.counters;
  const nonzero = Object.entries(c).filter(([, v]) => v !== '0');
  if (Object.keys(c).length) {
    out.push('', `forwarder: router_iface ${r.routerIface ?? 'empty'}; ` + (nonzero.length ? nonzero.map(([k, v]) => `${k} ${v}`).join(', ') : 'no frames counted yet'));
  }
  const clients = Object.entries(r.clients ?? {});
  if (clients.length) {
    out.push('', 'clients: from client (tx) / to client (rx), packets and bytes; dropped: spoofed source, to another client, to the net VM');
    for (const [name, c] of clients) {
      out.push(`  ${name}: tx ${c.tx.packets} / ${c.tx.bytes} B, rx ${c.rx.packets} / ${c.rx.bytes} B; dropped ${c.dropped.spoofed} spoofed, ${c.dropped.toClient} to-client, ${c.dropped.toNetVm} to-net-vm`);
    }
  }
  if (r.lastError) out.push('', `last error: ${r.lastError}`);
  return out.join('\n') + '\n';
}
