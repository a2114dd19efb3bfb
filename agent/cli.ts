// netagent's command line: `run` (the daemon), `status` (ask it), help, version.
import { makeLogger } from './log.js';
import { DEFAULT_PATHS, ConfigError, type Paths } from './config.js';
import { VERSION } from './version.js';

const HELP = `netagent ${VERSION}: the networking agent of the network VM

usage:
  netagent run [--config FILE] [--socket PATH] [--bpf-dir DIR] [--pin-dir DIR] [--notify-fd N]
      Run the daemon in the foreground: watch links, configure them per the
      profile, load the XDP forwarder. Logs JSON lines to stdout.
      NOTIFY_FD in the environment works like --notify-fd (s6 readiness).
  netagent status [--json] [--socket PATH]
      Ask the running daemon for every link's role, state, addresses and XDP
      program. Exit 0 when it answers, 1 with a one-line reason when not.
  netagent --help | --version

defaults:
  --config   ${DEFAULT_PATHS.config} (optional: without it, profile xdp-forwarder)
  --socket   ${DEFAULT_PATHS.socket}
  --bpf-dir  ${DEFAULT_PATHS.bpfDir}
  --pin-dir  ${DEFAULT_PATHS.pinDir}
`;

class UsageError extends Error {}

interface Parsed {
  flags: Map<string, string | true>;
  rest: string[];
}

function parseArgs(argv: string[], valued: string[], booleans: string[]): Parsed {
  const flags = new Map<string, string | true>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
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
  const { flags, rest } = parseArgs(argv, ['config', 'socket', 'bpf-dir', 'pin-dir', 'notify-fd'], []);
  if (rest.length) throw new UsageError(`run takes no arguments (got ${rest.join(' ')})`);
  const paths: Paths = {
    config: (flags.get('config') as string) ?? DEFAULT_PATHS.config,
    socket: (flags.get('socket') as string) ?? DEFAULT_PATHS.socket,
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
  // Bad input must never take the agent down: log what escaped and carry on.
  process.on('uncaughtException', (e) => log.error({ err: e }, 'uncaught exception (the agent carries on)'));
  process.on('unhandledRejection', (e) => log.error({ err: e }, 'unhandled rejection (the agent carries on)'));
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
  const { flags, rest } = parseArgs(argv, ['socket'], ['json']);
  if (rest.length) throw new UsageError(`status takes no arguments (got ${rest.join(' ')})`);
  const { requestStatus, formatStatus } = await import('./status.js');
  try {
    const r = await requestStatus((flags.get('socket') as string) ?? DEFAULT_PATHS.socket);
    process.stdout.write(flags.has('json') ? JSON.stringify(r, null, 2) + '\n' : formatStatus(r));
    return 0;
  } catch (e) {
    process.stderr.write(`netagent status: ${(e as Error).message}\n`);
    return 1;
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'run': return cmdRun(rest);
    case 'status': return cmdStatus(rest);
    case '--version': case 'version': process.stdout.write(`netagent ${VERSION}\n`); return 0;
    case '--help': case '-h': case 'help': process.stdout.write(HELP); return 0;
    case undefined: process.stderr.write(HELP); return 2;
    default: throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exitCode = code; },
  (e) => {
    if (e instanceof UsageError) {
      process.stderr.write(`netagent: ${e.message} (see netagent --help)\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`netagent: ${(e as Error).stack ?? e}\n`);
      process.exitCode = 1;
    }
  },
);
