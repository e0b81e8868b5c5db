"""``python -m regtune``: a short demonstration of what regtune does and how fast.

Prints the configuration, initializes the weights of a small transformer-sized MLP with
torch-style initializers, checks the promises (same seed, same bits on every thread count;
a shard made alone equals the same slice of the whole) and times a 4096x4096 normal draw
against NumPy in the same process.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import regtune
from regtune import init


def _best_ms(fn, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regtune", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="side of the square tensor timed (default 4096)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error(f"--size must be >= 1, got {args.size}")

    regtune.show_config()
    print()

    layers = [(1024, 784), (1024, 1024), (1024, 1024), (10, 1024)]
    t0 = time.perf_counter()
    weights = [init.kaiming_normal(s, nonlinearity="relu", seed=args.seed, offset=i << 40)
               for i, s in enumerate(layers)]
    ms = (time.perf_counter() - t0) * 1e3
    print(f"kaiming_normal for an MLP {' -> '.join(str(s[1]) for s in layers)} -> 10: "
          f"{sum(w.size for w in weights):,} weights in {ms:.1f} ms")
    for s, w in zip(layers, weights):
        print(f"  {str(s):>13}  std {w.std():.5f}  (expected {np.sqrt(2.0 / s[1]):.5f})")

    n = args.size
    threads = regtune.get_num_threads()
    a = init.trunc_normal((n, n), std=0.02, a=-0.04, b=0.04, seed=args.seed)
    regtune.set_num_threads(1)
    b = init.trunc_normal((n, n), std=0.02, a=-0.04, b=0.04, seed=args.seed)
    regtune.set_num_threads(threads)
    shard = regtune.random.truncated_normal((n // 4, n), 0.0, 0.02, -0.04, 0.04,
                                            seed=args.seed, offset=(n // 2) * n)
    print(f"\nsame seed on 1 and {threads} threads: bit-identical = {np.array_equal(a, b)}")
    print(f"rows {n // 2}..{n // 2 + n // 4} made alone with offset=: equal to the slice = "
          f"{np.array_equal(shard, a[n // 2: n // 2 + n // 4])}")

    out = np.empty((n, n), np.float32)
    rng = np.random.default_rng(args.seed)
    t_rt = _best_ms(lambda: regtune.random.normal(out=out, seed=args.seed))
    t_np = _best_ms(lambda: rng.standard_normal(out=out, dtype=np.float32))
    print(f"\n{n}x{n} float32 normal: regtune {t_rt:.2f} ms, NumPy standard_normal {t_np:.2f} ms "
          f"({t_np / t_rt:.1f}x); {out.nbytes / t_rt / 1e6:.1f} GB/s written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
