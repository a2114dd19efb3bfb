// The agent's log, readable: one pino JSON line in, one short line out
// (`netagent log`). Pure functions: parse a line, filter it, format it.
//
//   05:36:05.774 info  eth0: link configured ifindex=2 role=physical actions=[set up, attach physical]
//   05:36:05.774 error eth1: could not configure eth1 err="RTM_NEWADDR eth1 100.64.0.1/31: File exists (EEXIST)" action=addr-add attempt=2 retryInMs=400 ifindex=3
//
// Lines that are not pino records (a shell script's echo through s6-log, a
// stack trace on stderr) are kept as they are: they are often the very line
// a person is looking for.

/** pino's level numbers, by name. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
export type LevelName = keyof typeof LEVELS;

const LEVEL_NAMES = new Map<number, string>(Object.entries(LEVELS).map(([k, v]) => [v, k]));

/** A level name ("warn", any case) as its number; null when it is none of trace..fatal. */
export function parseLevel(word: string): number | null {
  return LEVELS[word.toLowerCase() as LevelName] ?? null;
}

/** A pino record: level (number), time, msg and whatever fields the call site added. */
export type LogRecord = Record<string, unknown> & { level: number };

export type LogLine =
  /** `json` is the line without a timestamp prefix: what `--json` prints. */
  | { kind: 'record'; rec: LogRecord; json: string }
  | { kind: 'text'; text: string };

// s6-log prefixes each line with a TAI64N label ('t' in its script) or an
// ISO 8601 time ('T') when asked to; the image's script asks for neither
// (pino records carry their own time), but a log written either way still reads.
const PREFIX = /^(?:@[0-9a-f]{24}|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?) +/;

/** One line of the log (no newline) as a pino record, or as text when it is not one. */
export function parseLogLine(line: string): LogLine {
  const body = line.replace(PREFIX, '');
  if (body.startsWith('{')) {
    try {
      const v: unknown = JSON.parse(body);
      if (v && typeof v === 'object' && !Array.isArray(v) && typeof (v as { level?: unknown }).level === 'number') {
        return { kind: 'record', rec: v as LogRecord, json: body };
      }
    } catch { /* not JSON after all: text */ }
  }
  return { kind: 'text', text: line };
}

export interface LogFilter {
  /** Only records whose `link` field is this name (text lines name no link: left out). */
  link?: string | undefined;
  /** Only records at this level or above (text lines have no level: kept). */
  minLevel?: number | undefined;
}

export function passes(l: LogLine, f: LogFilter): boolean {
  if (l.kind === 'text') return f.link === undefined;
  if (f.link !== undefined && l.rec.link !== f.link) return false;
  if (f.minLevel !== undefined && l.rec.level < f.minLevel) return false;
  return true;
}

export interface FormatOptions {
  /** ANSI colours (the CLI: stdout is a terminal and NO_COLOR is not set). */
  color: boolean;
  /** Records from another local day than this one show their date. */
  now: Date;
}

// Fields never shown: the ones the line's columns already show, and pino's
// bookkeeping (name is always "netagent"; pid/hostname are off in agent/log.ts).
const HIDDEN = new Set(['level', 'time', 'msg', 'link', 'name', 'pid', 'hostname', 'v']);
// Shown first, in this order, when present: what went wrong and what happens next.
const FIRST = ['err', 'error', 'action', 'why', 'attempt', 'retryInMs'];

const SGR = { dim: '2', bold: '1', red: '31', green: '32', yellow: '33', blue: '34', magenta: '35', cyan: '36', boldRed: '1;31' } as const;
const LEVEL_COLOR: Record<string, keyof typeof SGR> = { trace: 'dim', debug: 'blue', info: 'green', warn: 'yellow', error: 'red', fatal: 'boldRed' };

/** One log line, formatted for a person. */
export function formatLine(l: LogLine, o: FormatOptions): string {
  return l.kind === 'text' ? l.text : formatRecord(l.rec, o);
}

/** A pino record as `TIME LEVEL [LINK] MESSAGE key=value...`. */
export function formatRecord(rec: LogRecord, o: FormatOptions): string {
  const paint = (c: keyof typeof SGR, s: string) => (o.color && s ? `\x1b[${SGR[c]}m${s}\x1b[0m` : s);
  const word = LEVEL_NAMES.get(rec.level) ?? `L${rec.level}`;
  const parts = [paint('dim', formatTime(rec.time, o.now)), paint(LEVEL_COLOR[word] ?? 'magenta', word.padEnd(5))];
  if (typeof rec.link === 'string' || typeof rec.link === 'number') parts.push(paint('cyan', `${rec.link}:`));
  const msg = typeof rec.msg === 'string' ? rec.msg : rec.msg === undefined ? '' : render(rec.msg);
  if (msg) parts.push(rec.level >= LEVELS.error ? paint('bold', msg) : msg);
  // A state transition reads as one: "pending -> failed".
  const transition = rec.from !== undefined && rec.to !== undefined;
  if (transition) parts.push(`${render(rec.from)} -> ${render(rec.to)}`);
  const keys = [...FIRST.filter((k) => k in rec), ...Object.keys(rec).filter((k) => !FIRST.includes(k))];
  for (const k of keys) {
    if (HIDDEN.has(k) || (transition && (k === 'from' || k === 'to')) || rec[k] === undefined || rec[k] === null) continue;
    const v = k === 'err' || k === 'error' ? renderErr(rec[k]) : render(rec[k]);
    const kv = `${paint('dim', `${k}=`)}${v}`;
    parts.push(k === 'err' || k === 'error' ? paint('red', kv) : kv);
  }
  return parts.join(' ');
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** HH:MM:SS.mmm in local time, with YYYY-MM-DD before it when not on `now`'s day. */
export function formatTime(t: unknown, now: Date): string {
  const d = typeof t === 'string' || typeof t === 'number' ? new Date(t) : null;
  if (!d || Number.isNaN(d.getTime())) return t === undefined ? '--:--:--.---' : String(t);
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const sameDay = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return sameDay ? hms : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

/** pino serialises an Error as {type, message, stack, code...}: the message (and code) is what a person needs; `--json` has the stack. */
function renderErr(v: unknown): string {
  if (v && typeof v === 'object' && !Array.isArray(v) && typeof (v as { message?: unknown }).message === 'string') {
    const e = v as { message: string; code?: unknown };
    const code = typeof e.code === 'string' || typeof e.code === 'number' ? ` (${e.code})` : '';
    return quote(`${e.message}${code}`);
  }
  return render(v);
}

/** A string bare when it is one word, quoted when not. */
function quote(s: string): string {
  return s !== '' && /^[^\s"=\[\]{},]+$/.test(s) ? s : JSON.stringify(s);
}

/** A field's value, compact: arrays as [a, b], objects as {k=v ...}. */
function render(v: unknown): string {
  if (typeof v === 'string') return quote(v);
  if (Array.isArray(v)) return `[${v.map((x) => (typeof x === 'string' && !/[,\[\]{}"]/.test(x) ? x : render(x))).join(', ')}]`;
  if (v && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${k}=${render(x)}`).join(' ')}}`;
  return String(v);
}
