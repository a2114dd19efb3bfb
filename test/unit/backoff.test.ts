import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backoff } from '../../agent/core/backoff.js';

test('doubles from baseMs and stops at maxMs', () => {
  const o = { baseMs: 1000, maxMs: 60_000 };
  assert.equal([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoff(n, o)), [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
  const links = { baseMs: 500, maxMs: 60_000 };
  assert.equal([1, 2, 7, 8, 9].map((n) => backoff(n, links)), [500, 1000, 32_000, 60_000, 60_000]);
});

test('any attempt count gives a finite delay within the bounds', () => {
  const o = { baseMs: 500, maxMs: 60_000 };
  for (const n of [0, -3, 0.5, NaN, Infinity, 1e6, Number.MAX_SAFE_INTEGER]) {
    const d = backoff(n, o);
    assert.ok(Number.isFinite(d) && d >= 500 && d <= 60_000, `${n} -> ${d}`);
  }
  assert.is(backoff(0, o), 500, 'below 1 counts as the first retry');
  assert.is(backoff(2.9, o), 1000);
});

test.run();
