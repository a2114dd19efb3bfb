// What netagent changed that the kernel does not mark as ours, so that it can
// be undone. Addresses and routes carry our protocol number and programs are
// ours by name; but a link's up/down, MTU, promiscuous mode and
// rx-vlan-offload are plain values. When a link stops being ours to set (a
// profile switch, a MAC change, a link that fails its plan), each value we
// changed goes back to what it was before our first change: the link is then
// as a fresh start with the new config leaves it.
//
// Also the protocol numbers that marked our routes and addresses under
// earlier configs, so that a changed `routeProtocol` re-tags or removes what
// carries the old number instead of orphaning it.
//
// Kept in a small file next to the control socket (/run: it outlives an agent
// restart, which must still know what to undo, and not a reboot, after which
// there is nothing to undo). Written after each change, coalesced per tick,
// as a journal (see save()).
import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log.js';

import type { Originals } from '../core/plan.js';

export type OriginalField = keyof Originals;

interface File {
  version: 1;
  /** The routeProtocol in force when this was written. */
  protocol: number;
  /** Earlier routeProtocols that something in the kernel may still carry. */
  former: number[];
  links: Record<string, Originals>;
}

/** A journal line: a link's originals as they are now (null: none), or the protocol numbers. */
type Delta = { link: number; originals: Originals | null } | { protocol: number; former: number[] };

const FIELDS: readonly OriginalField[] = ['up', 'promisc', 'mtu', 'rxVlanOffload'];

export class Ledger {
  private readonly links = new Map<number, Originals>();
  private readonly former = new Set<number>();
  private protocol: number;
  private writePending = false;
  private lastWriteError: string | null = null;
  /** Journal bookkeeping (see save()). */
  private snapshotWritten = false;
  private journalLines = 0;
  private readonly changedLinks = new Set<number>();
  private protocolsChanged = false;

  /** @param path the file (null: kept in memory only, as in unit tests) */
  constructor(private readonly path: string | null, routeProtocol: number, private readonly log?: Logger) {
    this.protocol = routeProtocol;
    if (path) this.load(path, routeProtocol);
  }

  originals(): ReadonlyMap<number, Originals> {
    return this.links;
  }

  /** Earlier route protocols: what carries one of them is ours too (to re-tag or remove). */
  formerProtocols(): ReadonlySet<number> {
    return this.former;
  }

  /** Why the ledger could not be written (status shows it: an agent restart would not know what to undo). */
  get problem(): string | null {
    return this.lastWriteError;
  }

  /** Notes the values a change of ours replaces, for the fields not noted yet. true when anything was new. */
  record(ifindex: number, before: Originals): boolean {
    const o = this.links.get(ifindex) ?? {};
    let added = false;
    for (const k of FIELDS) {
      if (before[k] === undefined || o[k] !== undefined) continue;
      (o as Record<string, unknown>)[k] = before[k];
      added = true;
    }
    if (!added) return false;
    this.links.set(ifindex, o);
    this.changed(ifindex);
    return true;
  }

  /** The values were put back (or are ours no longer to restore). */
  release(ifindex: number, fields: readonly OriginalField[]): void {
    const o = this.links.get(ifindex);
    if (!o) return;
    let removed = false;
    for (const k of fields) {
      if (o[k] === undefined) continue;
      delete o[k];
      removed = true;
    }
    if (!removed) return;
    if (!Object.keys(o).length) this.links.delete(ifindex);
    this.changed(ifindex);
  }

  /** The link is gone: nothing of it to undo. */
  forget(ifindex: number): void {
    if (this.links.delete(ifindex)) this.changed(ifindex);
  }

  /** After a full dump: records of links that no longer exist go. */
  keepOnly(present: (ifindex: number) => boolean): void {
    for (const i of [...this.links.keys()]) {
      if (present(i)) continue;
      this.links.delete(i);
      this.changed(i);
    }
  }

  /** A config reload changed routeProtocol: the old number becomes a former one. */
  setProtocol(n: number): void {
    if (n === this.protocol) return;
    this.former.add(this.protocol);
    this.former.delete(n);
    this.protocol = n;
    this.protocolsChanged = true;
    this.save();
  }

  /** Nothing in the kernel carries this former number any more. */
  dropFormer(n: number): void {
    if (!this.former.delete(n)) return;
    this.protocolsChanged = true;
    this.save();
  }

  private changed(ifindex: number): void {
    this.changedLinks.add(ifindex);
    this.save();
  }

  private load(path: string, routeProtocol: number): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return; // first start since boot: nothing to undo
    }
    const lines = text.split('\n');
    try {
      const f = JSON.parse(lines[0]!) as Partial<File>;
      if (f.version !== 1) throw new Error(`version ${String(f.version)}, expected 1`);
      for (const [k, v] of Object.entries(f.links ?? {})) this.setFromFile(Number(k), v);
      this.protocolsFromFile(f.protocol, f.former, routeProtocol);
    } catch (e) {
      // A damaged file is not a reason to stop: what it held is lost (the
      // links keep the values we set until something else changes them).
      this.log?.warn({ path, err: (e as Error).message }, 'the ledger of what netagent changed is unreadable; starting a new one (values set by an earlier run will not be restored)');
      return;
    }
    // The journal after the snapshot, in order; a torn last line (a crash mid-write) is skipped.
    for (const line of lines.slice(1)) {
      if (!line) continue;
      let d: Delta;
      try {
        d = JSON.parse(line) as Delta;
      } catch {
        continue;
      }
      if (typeof d !== 'object' || d === null) continue;
      if ('link' in d) {
        this.links.delete(Number(d.link));
        if (d.originals) this.setFromFile(Number(d.link), d.originals);
      } else if ('protocol' in d) {
        this.former.clear();
        this.protocolsFromFile(d.protocol, d.former, routeProtocol);
      }
    }
  }

  private setFromFile(ifindex: number, v: unknown): void {
    if (!Number.isInteger(ifindex) || ifindex <= 0 || typeof v !== 'object' || v === null) return;
    const x = v as Record<string, unknown>;
    const o: Originals = {};
    if (typeof x.up === 'boolean') o.up = x.up;
    if (typeof x.promisc === 'boolean') o.promisc = x.promisc;
    if (Number.isInteger(x.mtu) && (x.mtu as number) > 0) o.mtu = x.mtu as number;
    if (typeof x.rxVlanOffload === 'boolean') o.rxVlanOffload = x.rxVlanOffload;
    if (Object.keys(o).length) this.links.set(ifindex, o);
  }

  /** The file's current and former numbers are former ones now, unless one is the config's. */
  private protocolsFromFile(protocol: unknown, former: unknown, routeProtocol: number): void {
    for (const p of [...(Array.isArray(former) ? former : []), protocol]) {
      if (Number.isInteger(p) && (p as number) > 0 && (p as number) < 256 && p !== routeProtocol) this.former.add(p as number);
    }
  }

  /**
   * Writes are a journal: each change appends one short line (what a link's
   * originals are now; the protocol numbers), so a hotplug costs a write of
   * a few dozen bytes, not the whole ledger (42 KB, ~0.5 ms with 1400 links).
   * The first write of a run, and one whenever the journal has grown past
   * twice what it describes, rewrite the whole file (a snapshot) instead.
   */
  private save(): void {
    if (!this.path || this.writePending) return;
    this.writePending = true;
    setImmediate(() => {
      if (!this.writePending) return; // flushed meanwhile
      this.writePending = false;
      this.write(false);
    });
  }

  private write(compact: boolean): void {
    const path = this.path!;
    try {
      if (compact || !this.snapshotWritten || this.journalLines > 2 * this.links.size + 64) {
        const f: File = { version: 1, protocol: this.protocol, former: [...this.former].sort((a, b) => a - b), links: Object.fromEntries([...this.links].sort((a, b) => a[0] - b[0])) };
        const tmp = `${path}.tmp`;
        writeFileSync(tmp, `${JSON.stringify(f)}\n`, { mode: 0o600 });
        renameSync(tmp, path);
        this.snapshotWritten = true;
        this.journalLines = 0;
      } else {
        const lines: string[] = [];
        for (const i of this.changedLinks) lines.push(JSON.stringify({ link: i, originals: this.links.get(i) ?? null } satisfies Delta));
        if (this.protocolsChanged) lines.push(JSON.stringify({ protocol: this.protocol, former: [...this.former] } satisfies Delta));
        if (lines.length) appendFileSync(path, `${lines.join('\n')}\n`);
        this.journalLines += lines.length;
      }
      this.changedLinks.clear();
      this.protocolsChanged = false;
      if (this.lastWriteError) this.log?.info({ path }, 'the ledger is written again');
      this.lastWriteError = null;
    } catch (e) {
      // What was not written is rewritten whole next time.
      this.snapshotWritten = false;
      const err = `could not write ${path}: ${(e as Error).message}; after an agent restart, values netagent changed (MTU, up, promiscuous mode, rx-vlan-offload) would not be restored when a link stops being ours: check that the directory exists and is writable`;
      if (err !== this.lastWriteError) this.log?.error({ path }, err);
      this.lastWriteError = err;
    }
  }

  /** Writes the whole ledger now (at exit: nothing pending is lost, and the file is one snapshot). */
  flush(): void {
    if (!this.path) return;
    this.writePending = false;
    this.write(true);
  }
}
