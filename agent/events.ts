// `netagent events`, the reader's side: asks the daemon for every link state
// transition and every repair, live, and shows them one line each:
//
//   05:48:16.570 now    eth0: configured role=router-link why="router link: ..."
//   -- live: transitions and repairs from here on (Ctrl-C to stop) --
//   05:48:20.101 change eth3: new -> pending why="applying: allow egress, attach physical, set up"
//   05:48:20.112 change eth3: pending -> configured why="physical: XDP physical/skb"
//   05:48:31.002 repair eth3: set up
//   05:48:35.420 missed 212 events while this watcher was behind (netagent status shows where things stand)
//
// The daemon's side, with the wire format (EventLine), is agent/eventfeed.ts.
import { createConnection } from 'node:net';
import type { EventLine } from './eventfeed.js';
import { reachError } from './status.js';
import { formatTime } from './logview.js';

export interface EventFormat {
  /** ANSI colours (stdout is a terminal and NO_COLOR is not set). */
  color: boolean;
  /** Events from another local day than this one show their date. */
  now: Date;
}

const SGR = { dim: '2', bold: '1', red: '31', green: '32', yellow: '33', magenta: '35', cyan: '36', boldRed: '1;31' } as const;
const KIND_WIDTH = 6;

/** One line of the stream, for a person: local time, what kind of line, the link, what happened. */
export function formatEvent(e: EventLine, o: EventFormat): string {
  const paint = (c: keyof typeof SGR, s: string) => (o.color && s ? `\x1b[${SGR[c]}m${s}\x1b[0m` : s);
  const time = paint('dim', formatTime(e.time, o.now));
  const kind = (word: string, c: keyof typeof SGR) => paint(c, word.padEnd(KIND_WIDTH));
  const link = (name: string) => paint('cyan', `${name}:`);
  const state = (s: string) => (s === 'failed' ? paint('red', s) : s === 'configured' ? paint('green', s) : s);
  const why = (s: string) => `${paint('dim', 'why=')}${quote(s)}`;
  switch (e.type) {
    case 'link':
      return `${time} ${kind('now', 'dim')} ${link(e.link)} ${state(e.state)} ${paint('dim', 'role=')}${e.role} ${why(e.why)}`;
    case 'live':
      return paint('dim', `-- live: transitions and repairs from here on (Ctrl-C to stop) --`);
    case 'transition':
      return `${time} ${kind('change', e.to === 'failed' ? 'yellow' : 'green')} ${link(e.link)} ${e.from} -> ${state(e.to)} ${why(e.why)}`;
    case 'repair':
      return `${time} ${kind('repair', 'magenta')} ${link(e.link)} ${e.actions.join(', ')}`;
    case 'dropped':
      return `${time} ${kind('missed', 'boldRed')} ${paint('bold', `${e.count} events dropped while this watcher was behind`)} (netagent status shows where things stand)`;
    case 'bye':
      return `${time} ${kind('bye', 'yellow')} ${e.why}`;
    default:
      return JSON.stringify(e);
  }
}

/** A value bare when it is one word, quoted when not (as `netagent log` shows fields). */
function quote(s: string): string {
  return s !== '' && /^[^\s"=\[\]{},]+$/.test(s) ? s : JSON.stringify(s);
}

/** Splits a byte stream into lines as chunks arrive (a chunk may end mid-line). */
export class LineSplitter {
  private buf = '';
  constructor(private readonly line: (s: string) => void) {}

  push(chunk: string): void {
    const parts = (this.buf + chunk).split('\n');
    this.buf = parts.pop()!;
    for (const l of parts) if (l) this.line(l);
  }
}

/**
 * Connects to the daemon's control socket, asks for events, and calls
 * `onEvent` for each line (raw JSON and parsed) until the stream ends.
 * Resolves with why it ended, for a person: it never ends by itself
 * otherwise (Ctrl-C ends the process).
 */
export function watchEvents(path: string, onEvent: (json: string, e: EventLine) => void, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const conn = createConnection(path);
    let heard = false;
    let said: string | null = null;
    const done = (why: string) => {
      clearTimeout(timer);
      conn.destroy();
      resolve(said ?? why);
    };
    const timer = setTimeout(() => done(`the daemon did not answer on ${path} within ${timeoutMs} ms`), timeoutMs);
    const lines = new LineSplitter((l) => {
      let v: EventLine & { error?: string };
      try {
        v = JSON.parse(l) as EventLine & { error?: string };
      } catch {
        return done(`the daemon's answer on ${path} is not JSON: ${l.slice(0, 200)}`);
      }
      if (!heard) {
        heard = true;
        clearTimeout(timer);
      }
      if (v.error) return done(`the daemon refused: ${v.error}`);
      if (v.type === 'bye') said = `the agent ended the stream: ${v.why}`;
      onEvent(l, v);
    });
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify({ cmd: 'events' }) + '\n'));
    conn.on('data', (d: string) => lines.push(d));
    conn.on('end', () => done('the daemon closed the connection (it stopped or restarted): run netagent events again once it is back'));
    conn.on('error', (e: NodeJS.ErrnoException) => done(reachError(e, path)));
  });
}
