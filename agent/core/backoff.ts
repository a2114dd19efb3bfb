// Retry delays: exponential from baseMs, capped at maxMs.
export function backoff(attempt: number, opts: { baseMs: number; maxMs: number }): number {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(n - 1, 30));
}
