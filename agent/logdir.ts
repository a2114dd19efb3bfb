// Reading the agent's log where s6-log keeps it (rootfs/etc/s6/netagent/log):
// a directory with `current` (being written) and archived files named
// @<TAI64N label>.s (rotated normally) or .u (s6-log died while it was
// current), the label sorting by time. During a rotation s6-log renames
// `current` (a processor would see it as `previous` first), then opens a new
// empty `current`. A follower therefore holds the file it reads open: a
// rename does not disturb it, and it reads it to its end before switching.
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { parseLogLine, passes, type LogFilter, type LogLine } from './logview.js';

export const DEFAULT_LOG_DIR = '/run/log/netagent';

const ARCHIVED = /^@[0-9a-f]{24}\.[su]$/;

/**
 * The log's files, oldest first: archived ones, `previous` (mid-rotation),
 * `current`. Throws ENOENT when dir is missing.
 */
export function logFiles(dir: string): string[] {
  const names = readdirSync(dir);
  const archived = names.filter((n) => ARCHIVED.test(n)).sort();
  const out = archived.map((n) => join(dir, n));
  // s6-log renames current to previous, opens a new current, links previous
  // to @label.s and unlinks previous: between the link and the unlink both
  // names are the same file, which must be read once.
  if (names.includes('previous')) {
    const ino = inode(join(dir, 'previous'));
    if (ino !== null && !out.some((f) => inode(f) === ino)) out.push(join(dir, 'previous'));
  }
  if (names.includes('current')) out.push(join(dir, 'current'));
  return out;
}

function inode(path: string): number | null {
  try {
    return statSync(path).ino;
  } catch {
    return null; // gone since the listing
  }
}

/** A file's lines, the last one even when it has no newline yet. */
function fileLines(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []; // rotated away or deleted (n10) since the listing
    throw e;
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** The last n lines of the log in dir that pass the filter, oldest first. */
export function lastLines(dir: string, n: number, filter: LogFilter): LogLine[] {
  return pickLast(logFiles(dir).map((f) => () => fileLines(f)), n, filter);
}

/** The last n lines that pass the filter from these files (oldest first), reading from the newest back only as far as needed. */
function pickLast(files: Array<() => string[]>, n: number, filter: LogFilter): LogLine[] {
  const picked: LogLine[] = [];
  for (let f = files.length - 1; f >= 0 && picked.length < n; f--) {
    const lines = files[f]!();
    for (let i = lines.length - 1; i >= 0 && picked.length < n; i--) {
      const l = parseLogLine(lines[i]!);
      if (passes(l, filter)) picked.push(l);
    }
  }
  return picked.reverse();
}

export interface FollowOptions {
  /** How often to look for new lines, rotations and truncation (ms). */
  pollMs?: number;
  /** Lines of the log before following (after the filter). */
  lines: number;
  filter: LogFilter;
  /** Called with every line to show, in order. */
  emit: (l: LogLine) => void;
  /** Something the reader should know (waiting for the log, truncation); goes to stderr. */
  note: (msg: string) => void;
}

/**
 * `tail -F` for an s6-log directory: the last `lines` lines, then every new
 * one, across rotations (the old file is read to its end, then any archives
 * written since, then the new `current`) and truncation (read again from the
 * start). Polls; stop() ends it.
 */
export class LogFollower {
  private fd: number | null = null;
  private ino = 0;
  private pos = 0;
  private buf = '';
  private decoder = new StringDecoder('utf8');
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private waitingNoted = false;
  private readonly chunk = Buffer.alloc(64 * 1024);

  constructor(private readonly dir: string, private readonly o: FollowOptions) {}

  private get current(): string {
    return join(this.dir, 'current');
  }

  start(): void {
    // The files before current, and current opened right after listing
    // them: when a second listing is the same, no rotation came in between,
    // so those files and our descriptor are the whole log, each line once.
    for (let tries = 0; ; tries++) {
      let before: string[];
      try {
        before = logFiles(this.dir).filter((f) => f !== this.current);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        before = []; // no directory yet: s6-log creates it when it starts
      }
      if (!this.open()) {
        // No log yet (the logger not started): nothing before, everything from when it appears.
        this.noteWaiting();
        break;
      }
      const again = logFiles(this.dir).filter((f) => f !== this.current);
      if (tries < 5 && again.join('\n') !== before.join('\n')) {
        this.close();
        continue;
      }
      const lines: string[] = [];
      this.drain((line) => lines.push(line));
      for (const l of pickLast([...before.map((f) => () => fileLines(f)), () => lines], this.o.lines, this.o.filter)) this.o.emit(l);
      break;
    }
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.close();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      try {
        this.poll();
      } catch (e) {
        this.o.note(`cannot read ${this.dir}: ${(e as Error).message}; trying again`);
      }
      this.schedule();
    }, this.o.pollMs ?? 200);
  }

  /** One look: new lines, then whether `current` is still our file, and as long as ours. */
  poll(): void {
    if (this.fd === null) {
      if (this.open()) this.drain(this.show);
      return;
    }
    this.drain(this.show);
    let st;
    try {
      st = statSync(this.current);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // mid-rotation: renamed, the new one not created yet
      throw e;
    }
    if (st.ino !== this.ino) {
      // Rotated: s6-log finished writing the old file before renaming it;
      // read what is left of it, then what was archived after it, then switch.
      this.drain(this.show);
      this.flushPartial();
      const old = this.ino;
      this.close();
      this.catchUp(old);
      if (this.open()) this.drain(this.show);
    } else if (st.size < this.pos) {
      this.o.note(`${this.current} was truncated; reading it from its start`);
      this.pos = 0;
      this.buf = '';
      this.decoder = new StringDecoder('utf8');
      this.drain(this.show);
    }
  }

  private readonly show = (line: string): void => {
    const l = parseLogLine(line);
    if (passes(l, this.o.filter)) this.o.emit(l);
  };

  /** Archives written after the file with inode `old` (more than one rotation between two polls). */
  private catchUp(old: number): void {
    const files = logFiles(this.dir).filter((f) => f !== this.current);
    const inos = files.map((f) => { try { return statSync(f).ino; } catch { return -1; } });
    const at = inos.indexOf(old);
    if (at < 0) return; // not found (already deleted by s6-log's n limit): nothing to catch up from
    for (const f of files.slice(at + 1)) for (const line of fileLines(f)) this.show(line);
  }

  private open(): boolean {
    try {
      this.fd = openSync(this.current, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    this.ino = fstatSync(this.fd).ino;
    this.pos = 0;
    this.buf = '';
    this.decoder = new StringDecoder('utf8');
    this.waitingNoted = false;
    return true;
  }

  private close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private noteWaiting(): void {
    if (this.waitingNoted) return;
    this.waitingNoted = true;
    this.o.note(`no ${this.current} yet; waiting for it`);
  }

  /** Reads our file from pos to its end; complete lines go to `each`, a partial last line waits for its newline. */
  private drain(each: (line: string) => void): void {
    if (this.fd === null) return;
    for (;;) {
      const n = readSync(this.fd, this.chunk, 0, this.chunk.length, this.pos);
      if (n <= 0) break;
      this.pos += n;
      this.buf += this.decoder.write(this.chunk.subarray(0, n));
      const lines = this.buf.split('\n');
      this.buf = lines.pop()!;
      for (const line of lines) each(line);
    }
  }

  /** A line left without its newline in a file that is done (rotated) is still a line. */
  private flushPartial(): void {
    const rest = this.buf + this.decoder.end();
    this.buf = '';
    if (rest) this.show(rest);
  }
}
