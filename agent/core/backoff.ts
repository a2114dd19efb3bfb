// Retry delays: the one backoff schedule for everything the agent retries
// (link configuration, the forwarder, DHCP clients). Pure: no timers here.

export interface BackoffOptions {
  /** The delay before the first retry. */
  baseMs: number;
  /** No delay is longer than this. */
  maxMs: number;
}

/**
 * The delay before retry number `attempt` (1 for the first): baseMs, then
 * doubling, capped at maxMs. No jitter: each link or client retries on its
 * own schedule, so there is no herd to spread out. Attempts below 1 (or not
 * a number) count as 1.
 */
export function backoff(attempt: number, { baseMs, maxMs }: BackoffOptions): number {
  const n = Number.isFinite(attempt) && attempt > 1 ? Math.floor(attempt) : 1;
  // 2 ** 1100 is Infinity, so the cap holds for any attempt count.
  return Math.min(maxMs, baseMs * 2 ** (n - 1));
}
