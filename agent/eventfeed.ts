// The daemon's side of `netagent events` (agent/events.ts is the reader's):
// every link state transition and every repair, live, to any number of
// watchers on the control socket.
//
// A watcher never slows the agent: each event is serialised once and written
// to every watcher whose socket is keeping up. A watcher that is not (a
// stopped process, a slow serial console) gets nothing more until its socket
// has drained; what it missed meanwhile is counted and said to it then.
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Repair, Transition } from './daemon/reconciler.js';
import type { StatusReport } from './status.js';

/** One line of the stream (JSON, one per line; what `--json` prints). `time` is ms since the epoch. */
export type EventLine =
  /** The state of one link when the watcher connected. */
  | { type: 'link'; time: number; ifindex: number; link: string; role: string; state: string; why: string }
  /** The snapshot is complete; what follows happens live. */
  | { type: 'live'; time: number; links: number }
  | ({ type: 'transition'; time: number } & Transition)
  | ({ type: 'repair'; time: number } & Repair)
  /** `count` events were not sent to this watcher while it was behind. */
  | { type: 'dropped'; time: number; count: number }
  /** The agent is stopping: the stream ends. */
  | { type: 'bye'; time: number; why: string };

interface Watcher {
  conn: Socket;
  dropped: number;
}

/**
 * Fans the reconciler's 'transition' and 'repair' events out to watchers.
 * Subscribed only while someone watches. A watcher is behind once a write
 * filled its socket's buffer (the kernel's, then Node's high-water mark of
 * 16 KiB): from then on its events are counted, not queued, until 'drain'.
 */
export class EventFeed {
  private readonly watchers = new Set<Watcher>();
  private source: EventEmitter | null = null;
  /**
   * The last name of each link, while someone watches: the reconciler names a
   * link that is gone "ifindex N" (the model has forgotten it by then), and
   * "eth3: pending -> removed" is what a person needs to read.
   */
  private readonly names = new Map<number, string>();
  private readonly onTransition = (t: Transition) => {
    const link = t.to === 'removed' ? this.names.get(t.ifindex) ?? t.link : t.link;
    if (t.to === 'removed') this.names.delete(t.ifindex);
    else this.names.set(t.ifindex, t.link);
    this.broadcast({ type: 'transition', time: Date.now(), ...t, link });
  };
  private readonly onRepair = (r: Repair) => {
    this.names.set(r.ifindex, r.link);
    this.broadcast({ type: 'repair', time: Date.now(), ...r });
  };

  constructor(private readonly getSource: () => EventEmitter | undefined) {}

  get size(): number {
    return this.watchers.size;
  }

  /**
   * Takes over a connection that asked for events: sends the snapshot (the
   * state of every link, from the status report) and then the live stream.
   * Snapshot and subscription happen in the same tick: nothing is missed
   * between them, nothing is said twice.
   */
  add(conn: Socket, report: StatusReport): void {
    const source = this.getSource();
    if (!source) {
      conn.end(JSON.stringify({ error: 'the agent is still starting: try again in a moment' }) + '\n');
      return;
    }
    conn.setTimeout(0); // a watcher is quiet for as long as the links are
    const now = Date.now();
    let out = '';
    for (const i of report.interfaces) {
      this.names.set(i.ifindex, i.name);
      out += JSON.stringify({ type: 'link', time: now, ifindex: i.ifindex, link: i.name, role: i.role, state: i.state, why: i.error ?? i.why } satisfies EventLine) + '\n';
    }
    out += JSON.stringify({ type: 'live', time: now, links: report.interfaces.length } satisfies EventLine) + '\n';
    conn.write(out);
    const w: Watcher = { conn, dropped: 0 };
    this.watchers.add(w);
    conn.on('drain', () => {
      if (w.dropped === 0) return;
      const count = w.dropped;
      w.dropped = 0;
      conn.write(JSON.stringify({ type: 'dropped', time: Date.now(), count } satisfies EventLine) + '\n');
    });
    conn.on('close', () => this.remove(w));
    if (!this.source) {
      this.source = source;
      source.on('transition', this.onTransition);
      source.on('repair', this.onRepair);
    }
  }

  /** The agent is stopping: tell every watcher, and close their connections (a stuck one too). */
  closeAll(why: string): void {
    const line = JSON.stringify({ type: 'bye', time: Date.now(), why } satisfies EventLine) + '\n';
    for (const w of [...this.watchers]) {
      this.remove(w);
      if (w.conn.writableNeedDrain) w.conn.destroy();
      else {
        w.conn.end(line);
        setTimeout(() => w.conn.destroy(), 250).unref();
      }
    }
  }

  private broadcast(e: EventLine): void {
    const line = JSON.stringify(e) + '\n';
    for (const w of this.watchers) {
      // Behind: count, do not queue. The count is said once the socket drained.
      if (w.dropped > 0 || w.conn.writableNeedDrain) w.dropped++;
      else w.conn.write(line);
    }
  }

  private remove(w: Watcher): void {
    if (!this.watchers.delete(w) || this.watchers.size > 0 || !this.source) return;
    this.source.off('transition', this.onTransition);
    this.source.off('repair', this.onRepair);
    this.source = null;
    this.names.clear();
  }
}
