// netagent's command line: `run` (the daemon), `status` (ask it), `events`
// (watch it change links, live), `log` (read its log), help, version.
import { dirname, join } from 'node:path';
import { makeLogger } from './log.js';
import { DEFAULT_PATHS, ConfigError, type Paths } from './config.js';
import { VERSION } from './version.js';

interface CommandHelp {
  usage: string;
  /** One line for `netagent --help`. */
  summary: string;
  /** More for `netagent help COMMAND`. */
  details?: string;
  options: Array<[string, string]>;
}

/** Every command's help, in the order `netagent --help` lists them. */
const COMMANDS: Record<string, CommandHelp> = {
  run: {
    usage: 'netagent run [--config FILE] [--socket PATH] [--state FILE] [--bpf-dir DIR] [--pin-dir DIR] [--notify-fd N]',
    summary: 'Run the daemon in the foreground.',
    details: `Watch links, configure them per the profile, load the XDP forwarder.
Logs JSON lines (pino) to stdout; \`netagent log\` reads them back.
SIGHUP (s6-svc -h) re-reads the config; SIGTERM stops. A config file that
disappears keeps the last good config running. Crash-only: an error that
escapes every handler exits 70, and s6 restarts the agent, which adopts
what it finds.`,
    options: [
      ['--config FILE', `config file (default ${DEFAULT_PATHS.config}; optional: without it, profile xdp-forwarder)`],
      ['--socket PATH', `control socket to answer \`status\` on (default ${DEFAULT_PATHS.socket})`],
      ['--state FILE', `what netagent changed on links, to undo when they stop being ours (default: state.json beside the socket, ${DEFAULT_PATHS.state})`],
      ['--bpf-dir DIR', `the compiled XDP programs (default ${DEFAULT_PATHS.bpfDir})`],
      ['--pin-dir DIR', `where programs and maps are pinned (default ${DEFAULT_PATHS.pinDir})`],
      ['--notify-fd N', 'write a newline on fd N once coldplug is done (s6 readiness); NOTIFY_FD in the environment works the same'],
    ],
  },
  status: {
    usage: 'netagent status [--json] [--watch [SECONDS]] [--socket PATH]',
    summary: "Ask the daemon for every link's role, state, XDP program and traffic.",
    details: `The table shows each NIC's VID and, per link, the frames / bytes the XDP
forwarder received (RX) and sent out of it (TX); drops by reason below it.
Exit 0 when it answers, 1 with a one-line reason when not.`,
    options: [
      ['--json', 'the whole answer as JSON (SPEC.md) instead of a table; per interface, traffic: {vid, rxPackets, rxBytes, txPackets, txBytes, drops}'],
      ['--watch [SECONDS]', 'ask again every SECONDS (default 2) until Ctrl-C, with RX/s and TX/s rates: redrawn on a terminal, else one table after another, a blank line between (with --json: one report per line)'],
      ['--socket PATH', `the daemon's control socket (default ${DEFAULT_PATHS.socket})`],
    ],
  },
  events: {
    usage: 'netagent events [--json] [--socket PATH]',
    summary: 'Watch links change state and get repaired, live, until Ctrl-C.',
    details: `First one line per link with the state it is in now, then, as they happen,
each state change (new, pending, configured, failed, ignored, removed) with
its reason, and each repair (the agent putting back what someone changed on a
configured link), with the local time. Any number may watch at once; one
that falls behind (a slow console, Ctrl-Z) never slows the agent: it is told
how many events it missed. Exit 1 with a one-line reason when the daemon
cannot be reached or the stream ends.`,
    options: [
      ['--json', 'one JSON object per line, as the daemon sends them (type: link, live, transition, repair, dropped, bye)'],
      ['--socket PATH', `the daemon's control socket (default ${DEFAULT_PATHS.socket})`],
    ],
  },
  log: {
    usage: 'netagent log [-n N] [-f] [--link NAME] [--level LEVEL] [--json] [--dir DIR]',
    summary: "Show the agent's log, one readable line per record; -f follows it.",
    details: `Each line: local time (with the date when not today), level, link, message
and the fields that matter (err, action, attempt, retryInMs...). Lines that
are not records (a script's echo, a crash's stack trace) are shown as they
are. Colour when stdout is a terminal and NO_COLOR is not set.`,
    options: [
      ['-n, --lines N', 'the last N records (default 20, also with -f); "all" for the whole log'],
      ['-f, --follow', 'then keep showing new records, across s6-log rotations, until Ctrl-C'],
      ['--link NAME', 'only records about this link (lines that are not records are left out)'],
      ['--level LEVEL', 'only records at LEVEL or above: trace, debug, info, warn, error, fatal'],
      ['--json', 'the records as the agent wrote them (JSON lines, still filtered; other lines left out)'],
      ['--dir DIR', 'the s6-log directory (default $NETAGENT_LOG_DIR, else /run/log/netagent)'],
    ],
  },
};

function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const options: Array<[string, string]> = [...c.options, ['-h, --help', 'this help']];
  const w = Math.max(...options.map(([o]) => o.length));
  const lines = options.map(([o, d]) => wrap(`  ${o.padEnd(w)}  `, d, w + 4));
  return `${wrap('usage: ', c.usage, 'usage: netagent '.length + name.length + 1)}\n\n${c.summary}\n${c.details ? `${c.details}\n` : ''}\noptions:\n${lines.join('\n')}\n`;
}

/** `prefix` then `text` word-wrapped at 80 columns (a serial console), continuing at column `indent`; a usage's [--option VALUE] (or [--option [VALUE]]) stays whole. */
function wrap(prefix: string, text: string, indent: number): string {
  const out: string[] = [];
  let cur = '';
  for (const word of text.match(/\[(?:[^[\]]|\[[^\]]*\])*\]|\S+/g) ?? []) {
    if (!cur) {
      cur = prefix + word;
    } else if (cur.length + 1 + word.length > 80) {
      out.push(cur);
      cur = ' '.repeat(indent) + word;
    } else {
      cur = `${cur} ${word}`;
    }
  }
  out.push(cur);
  return out.join('\n');
}

const HELP = `netagent ${VERSION}: the networking agent of the network VM

usage:
${Object.entries(COMMANDS).map(([name, c]) => `${wrap('  ', c.usage, '  netagent '.length + name.length + 1)}\n      ${c.summary}`).join('\n')}
  netagent help [COMMAND] | COMMAND --help
      Help, for one command: what it does and every option.
  netagent --version
`;

class UsageError extends Error {}

interface Parsed {
  flags: Map<string, string | true>;
  rest: string[];
}

/** --name VALUE, --name=VALUE, --flag; `short` maps one-letter options (-n 5, -n5, -f) to long names. */
function parseArgs(argv: string[], valued: string[], booleans: string[], short: Record<string, string> = {}): Parsed {
  const flags = new Map<string, string | true>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const long = /^-([a-zA-Z])(.*)$/s.exec(a);
    if (long && short[long[1]!]) {
      const name = short[long[1]!]!;
      if (valued.includes(name)) {
        const v = long[2] || argv[++i];
        if (v === undefined || v === '') throw new UsageError(`-${long[1]} needs a value`);
        flags.set(name, v);
        continue;
      }
      if (long[2]) throw new UsageError(`-${long[1]} takes no value (got ${a})`);
      flags.set(name, true);
      continue;
    }
    if (!a.startsWith('--')) { rest.push(a); continue; }
    const [name, inline] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (valued.includes(name)) {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`--${name} needs a value`);
      flags.set(name, v);
    } else if (booleans.includes(name)) {
      flags.set(name, true);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return { flags, rest };
}

function fdArg(v: string | undefined, from: string): number | null {
  if (v === undefined) return null;
  if (!/^\d+$/.test(v) || Number(v) < 3) throw new UsageError(`${from} must be a file descriptor number >= 3 (got ${JSON.stringify(v)})`);
  return Number(v);
}

async function cmdRun(argv: string[]): Promise<number> {
  const { flags, rest } = parseArgs(argv, ['config', 'socket', 'state', 'bpf-dir', 'pin-dir', 'notify-fd'], []);
  if (rest.length) throw new UsageError(`run takes no arguments (got ${rest.join(' ')})`);
  const socket = (flags.get('socket') as string) ?? DEFAULT_PATHS.socket;
  const paths: Paths = {
    config: (flags.get('config') as string) ?? DEFAULT_PATHS.config,
    socket,
    state: (flags.get('state') as string) ?? join(dirname(socket), 'state.json'),
    bpfDir: (flags.get('bpf-dir') as string) ?? DEFAULT_PATHS.bpfDir,
    pinDir: (flags.get('pin-dir') as string) ?? DEFAULT_PATHS.pinDir,
  };
  const notifyFd = fdArg(flags.get('notify-fd') as string | undefined, '--notify-fd') ?? fdArg(process.env.NOTIFY_FD || undefined, 'NOTIFY_FD');
  const log = makeLogger();
  const { Daemon } = await import('./daemon/daemon.js');
  const daemon = new Daemon({ paths, notifyFd, log });
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    daemon.stop().then(() => process.exit(0), (e) => {
      log.error({ err: e }, 'error while shutting down');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // s6-svc -h: re-read the config file (the default action would kill us).
  process.on('SIGHUP', () => daemon.reloadConfig('SIGHUP'));
  // Bad input must never take the agent down: log what escaped and carry on.
  // Crash-only: something escaped every handler, so the model may be wrong.
  // Exit non-zero at once; s6 restarts the agent, which adopts what it finds
  // (programs, pins, addresses) and reconciles from a fresh dump.
  const crash = (what: string) => (e: unknown) => {
    try {
      log.fatal({ err: e }, `${what}: exiting so that the supervisor restarts the agent`);
      daemon.flushLedger(); // what we changed must be known to the next run
    } finally { process.exit(70); }
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled rejection'));
  try {
    await daemon.start();
  } catch (e) {
    const msg = e instanceof ConfigError ? e.message : e instanceof Error ? e.message : String(e);
    log.fatal({ err: msg }, 'netagent could not start');
    await daemon.stop().catch(() => undefined);
    return 1;
  }
  return -1; // keep running
}

async function cmdStatus(argv: string[]): Promise<number> {
  const { watch, rest: args } = watchArg(argv);
  const { flags, rest } = parseArgs(args, ['socket'], ['json']);
  if (rest.length) throw new UsageError(`status takes no arguments (got ${rest.join(' ')})`);
  const { requestStatus, formatStatus } = await import('./status.js');
  const socket = (flags.get('socket') as string) ?? DEFAULT_PATHS.socket;
  const json = flags.has('json');
  if (watch !== null) return watchStatus(socket, watch, json);
  try {
    const r = await requestStatus(socket);
    process.stdout.write(json ? JSON.stringify(r, null, 2) + '\n' : formatStatus(r));
    return 0;
  } catch (e) {
    process.stderr.write(`netagent status: ${(e as Error).message}\n`);
    return 1;
  }
}

/** `--watch`, `--watch N`, `--watch=N` (N seconds, default 2) taken out of argv. */
function watchArg(argv: string[]): { watch: number | null; rest: string[] } {
  const rest = [...argv];
  const at = rest.findIndex((a) => a === '--watch' || a.startsWith('--watch='));
  if (at < 0) return { watch: null, rest };
  const a = rest[at]!;
  let v: string | undefined = a.includes('=') ? a.slice('--watch='.length) : undefined;
  let n = 1;
  if (v === undefined && rest[at + 1] !== undefined && /^[\d.]+$/.test(rest[at + 1]!)) {
    v = rest[at + 1];
    n = 2;
  }
  rest.splice(at, n);
  const s = v === undefined ? 2 : Number(v);
  if (!Number.isFinite(s) || s < 0.1 || s > 86_400) throw new UsageError(`--watch takes a number of seconds from 0.1 to 86400 (got ${JSON.stringify(v)})`);
  return { watch: s, rest };
}

/** Asks again every `seconds` until Ctrl-C; the daemon not answering is shown, and asked again. */
async function watchStatus(socket: string, seconds: number, json: boolean): Promise<number> {
  const { requestStatus, formatStatus, rates } = await import('./status.js');
  const { formatTime } = await import('./logview.js');
  const tty = process.stdout.isTTY === true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(0));
  let prev: { r: import('./status.js').StatusReport; at: number } | null = null;
  let first = true;
  for (;;) {
    const started = performance.now();
    let text: string;
    try {
      const r = await requestStatus(socket);
      const at = performance.now();
      text = json ? `${JSON.stringify(r)}\n` : formatStatus(r, { rates: prev ? rates(prev.r, r, (at - prev.at) / 1000) : new Map() });
      prev = { r, at };
    } catch (e) {
      text = json ? `${JSON.stringify({ error: (e as Error).message })}\n` : `netagent status: ${(e as Error).message}\n`;
      prev = null;
    }
    if (!json) text = `${formatTime(Date.now(), new Date())}  every ${seconds} s (Ctrl-C to stop)\n${text}`;
    // A terminal: redraw in place (home, clear). Otherwise one table after another.
    process.stdout.write(json ? text : tty ? `\x1b[H\x1b[2J${text}` : `${first ? '' : '\n'}${text}`);
    first = false;
    await new Promise((r) => setTimeout(r, Math.max(0, seconds * 1000 - (performance.now() - started))));
  }
}

async function cmdEvents(argv: string[]): Promise<number> {
  const { flags, rest } = parseArgs(argv, ['socket'], ['json']);
  if (rest.length) throw new UsageError(`events takes no arguments (got ${rest.join(' ')})`);
  const { watchEvents, formatEvent } = await import('./events.js');
  const json = flags.has('json');
  const color = !json && process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0); // `netagent events | head`: the reader is done
    throw e;
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(0));
  const why = await watchEvents((flags.get('socket') as string) ?? DEFAULT_PATHS.socket, (line, e) => {
    process.stdout.write(json ? `${line}\n` : `${formatEvent(e, { color, now: new Date() })}\n`);
  });
  process.stderr.write(`netagent events: ${why}\n`);
  return 1;
}

async function cmdLog(argv: string[]): Promise<number> {
  const { flags, rest } = parseArgs(argv, ['lines', 'link', 'level', 'dir'], ['follow', 'json'], { n: 'lines', f: 'follow' });
  const bad = rest.find((a) => a.startsWith('-') && a !== '-');
  if (bad) throw new UsageError(`unknown option ${bad}`);
  if (rest.length) throw new UsageError(`log takes no arguments (got ${rest.join(' ')})`);
  const nArg = (flags.get('lines') as string | undefined) ?? '20';
  if (nArg !== 'all' && !/^\d+$/.test(nArg)) throw new UsageError(`-n must be a number of records or "all" (got ${JSON.stringify(nArg)})`);
  const n = nArg === 'all' ? Infinity : Number(nArg);
  const { parseLevel, formatLine } = await import('./logview.js');
  const levelArg = flags.get('level') as string | undefined;
  const minLevel = levelArg === undefined ? undefined : parseLevel(levelArg);
  if (minLevel === null) throw new UsageError(`--level must be one of trace, debug, info, warn, error, fatal (got ${JSON.stringify(levelArg)})`);
  const filter = { link: flags.get('link') as string | undefined, minLevel };
  const { DEFAULT_LOG_DIR, lastLines, LogFollower } = await import('./logdir.js');
  const dir = (flags.get('dir') as string | undefined) ?? (process.env.NETAGENT_LOG_DIR || DEFAULT_LOG_DIR);
  const json = flags.has('json');
  const color = !json && process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
  // `netagent log | head` closes the pipe early: that is the reader being done, not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  const show = (l: import('./logview.js').LogLine) => {
    if (json) {
      if (l.kind === 'record') process.stdout.write(`${l.json}\n`);
    } else {
      process.stdout.write(`${formatLine(l, { color, now: new Date() })}\n`);
    }
  };
  if (!flags.has('follow')) {
    let lines;
    try {
      lines = lastLines(dir, n, filter);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === 'ENOENT' ? 'no such directory' : err.code === 'EACCES' ? 'permission denied (root only?)' : err.message;
      process.stderr.write(`netagent log: cannot read the log in ${dir}: ${why} (the VM image keeps it there; elsewhere give --dir or NETAGENT_LOG_DIR)\n`);
      return 1;
    }
    for (const l of lines) show(l);
    return 0;
  }
  const follower = new LogFollower(dir, {
    lines: n,
    filter,
    emit: show,
    note: (msg) => process.stderr.write(`netagent log: ${msg}\n`),
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { follower.stop(); process.exit(0); });
  try {
    follower.start();
  } catch (e) {
    process.stderr.write(`netagent log: cannot read the log in ${dir}: ${(e as Error).message}\n`);
    follower.stop();
    return 1;
  }
  return -1; // follows until interrupted
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== undefined && Object.hasOwn(COMMANDS, cmd) && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(commandHelp(cmd));
    return 0;
  }
  switch (cmd) {
    case 'run': return cmdRun(rest);
    case 'status': return cmdStatus(rest);
    case 'events': return cmdEvents(rest);
    case 'log': return cmdLog(rest);
    case '--version': case 'version': process.stdout.write(`netagent ${VERSION}\n`); return 0;
    case '--help': case '-h': case 'help': {
      const topic = rest[0];
      if (topic === undefined) { process.stdout.write(HELP); return 0; }
      if (!Object.hasOwn(COMMANDS, topic)) throw new UsageError(`no command ${JSON.stringify(topic)} (commands: ${Object.keys(COMMANDS).join(', ')})`);
      process.stdout.write(commandHelp(topic));
      return 0;
    }
    case undefined: process.stderr.write(HELP); return 2;
    default: throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exitCode = code; },
  (e) => {
    if (e instanceof UsageError) {
      const cmd = process.argv[2];
      const see = cmd !== undefined && Object.hasOwn(COMMANDS, cmd) ? `netagent ${cmd} --help` : 'netagent --help';
      process.stderr.write(`netagent: ${e.message} (see ${see})\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`netagent: ${(e as Error).stack ?? e}\n`);
      process.exitCode = 1;
    }
  },
);
