/**
 * The permutation a `touch` step with `order: "random"` visits its addresses in: a
 * Fisher–Yates shuffle of 0..n−1 driven by xorshift32 from the step's seed (seed 0 uses the
 * golden-ratio constant 0x9e3779b9, as xorshift must not start at 0). Deterministic, so a
 * scenario's output is the same on every run; the benchmarks use it too.
 */

/** Returns a permutation of 0..n−1 for `seed`. Allocates the result. */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const j = x % (i + 1);
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}
