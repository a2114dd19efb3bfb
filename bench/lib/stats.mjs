// Percentiles by the nearest-rank method (no interpolation: every reported
// value was actually measured).
export function percentile(sorted, p) {
  if (!sorted.length) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export function summarize(values) {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : null;
  return {
    count: s.length,
    p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99),
    min: s[0] ?? null, max: s[s.length - 1] ?? null, mean,
  };
}
