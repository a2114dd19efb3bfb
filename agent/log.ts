// One logger for the process: pino, JSON lines to stdout (s6 collects them;
// a person pretty-prints with `| npx pino-pretty` or reads them as they are).
import { pino, type Logger } from 'pino';

export type { Logger };

export function makeLogger(opts: { level?: string; name?: string } = {}): Logger {
  // Synchronous writes: a line is out before the next event is handled, so the
  // log's order is the order things happened in, and a crash (or kill -9)
  // loses nothing. A log line costs microseconds; the agent logs per change, not per packet.
  return pino({
    name: opts.name ?? 'netagent',
    level: opts.level ?? process.env.NETAGENT_LOG_LEVEL ?? 'info',
    base: undefined, // no pid/hostname: one agent per VM, and the console is narrow
    timestamp: pino.stdTimeFunctions.isoTime,
  }, pino.destination({ dest: 1, sync: true }));
}

/** A logger that drops everything (tests, and the `status` client). */
export const silentLogger: Logger = pino({ level: 'silent' });
