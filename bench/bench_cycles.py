"""Cycles per output element of the random kernels on one thread, in cache.

No performance counters are assumed (a VM rarely has them): the core clock comes from
``regtune._core.cpu_clock_ghz()``, which times a chain of dependent integer adds (one cycle
each) on the same thread just before and after the measurement, and

    cycles per element = (time of n elements - time of 16 elements) / (n - 16) * clock

so the cost of the Python call is taken out. n = 4096 (16 KiB of float32 / uint32, written
over and over: in L1; ``REGTUNE_BENCH_CYCLES_N`` changes it). Each time is the fastest of 15
runs of 2000 calls: on a shared machine noise only ever adds time.

    python bench/bench_cycles.py                 # the native path
    REGTUNE_SIMD=avx2 python bench/bench_cycles.py
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

N = int(os.environ.get("REGTUNE_BENCH_CYCLES_N", "4096"))
SMALL, CALLS, RUNS = 16, 2000, 15


def per_call(fn, calls: int = CALLS) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main() -> int:
    import regtune
    from regtune import _core

    regtune.set_num_threads(1)
    key, stream = 12345, 0
    out32 = {n: np.empty(n, np.uint32) for n in (N, SMALL)}
    outf = {n: np.empty(n, np.float32) for n in (N, SMALL)}
    kernels = {
        "bits (uint32 words)": lambda n: lambda: _core.bits(out32[n], key, stream, 0),
        "uniform float32": lambda n: lambda: _core.uniform(outf[n], key, stream, 0, 0.0, 1.0),
        "normal float32": lambda n: lambda: _core.normal(outf[n], key, stream, 0, 0.0, 1.0),
    }
    ghz_before = _core.cpu_clock_ghz()
    rows = []
    for name, make in kernels.items():
        big, small = make(N), make(SMALL)
        # the fastest of RUNS runs of each: on a shared machine, noise only ever adds time
        t_big = min(per_call(big) for _ in range(RUNS))
        t_small = min(per_call(small) for _ in range(RUNS))
        rows.append((name, (t_big - t_small) / (N - SMALL) * 1e9))
    ghz = (ghz_before + _core.cpu_clock_ghz()) / 2
    print(f"simd {regtune.config()['simd']}, 1 thread, clock {ghz:.2f} GHz (dependent-add chain; "
          f"{ghz_before:.2f} before, {2 * ghz - ghz_before:.2f} after)")
    print("| kernel | ns / element | cycles / element |")
    print("|---|---|---|")
    for name, ns in rows:
        print(f"| {name} | {ns:.3f} | {ns * ghz:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
