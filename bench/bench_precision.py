"""regtune's AdamW on 16-bit parameters against torch's fused AdamW, on one N x N tensor.

Rows (all AdamW, lr 1e-3, weight_decay 1e-2, one step timed; min over interleaved repeats):

- bf16 params, bf16 grads, bf16 state, round to nearest: regtune vs ``torch.optim.AdamW(fused=True)``
  on bfloat16 tensors (torch keeps the state in the params' dtype and rounds to nearest: the
  same step, bit for bit; tests/test_optim.py checks it). Aim: >= 1.8x torch.
- bf16 params, bf16 grads, float32 state: regtune's ``round``, ``stochastic`` and ``master``
  modes vs torch's fused AdamW on float32 tensors (torch has no 16-bit-param, float32-state
  step). Aim: >= 1.4x torch's float32 step.
- float32: regtune's float32 step and torch's fused float32 step, for reference.

``bytes`` is the memory traffic of one fused step: every array read once and written once,
at its own width (bf16 params/grads/state: 2 + 2 + 2*2 read, 2 + 2*2 written = 14 B per
element; bf16 params and grads with float32 state: 2 + 2 + 8 read, 2 + 8 written = 22 B;
master adds the float32 master, read and written: 30 B; float32: 28 B). GB/s and "% of copy"
compare it with a threaded float32 copy of the same N x N array timed in the same run.

    python bench/bench_precision.py [--repeats 15] [--threads 2]

``REGTUNE_SIMD=avx2`` (with ``ATEN_CPU_CAPABILITY=avx2`` for torch) measures the AVX2 paths.
"""

from __future__ import annotations

import argparse
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_optim import _min_time  # noqa: E402  (min over interleaved rounds, see there)

N = int(os.environ.get("REGTUNE_BENCH_N", "4096"))
KW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
BF16 = np.dtype(ml_dtypes.bfloat16)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import regtune
    from regtune import _core, optim

    regtune.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    def arr(dt):
        return rng.standard_normal((N, N), dtype=np.float32).astype(dt)

    fns, bytes_per = {}, {}
    g16, g32 = arr(BF16), arr(np.float32)
    setups = {
        "regtune bf16 state, round": (BF16, dict(state_dtype=BF16), g16, 14),
        "regtune f32 state, round": (BF16, {}, g16, 22),
        "regtune f32 state, stochastic": (BF16, dict(precision="stochastic", seed=0), g16, 22),
        "regtune f32 state, master": (BF16, dict(precision="master"), g16, 30),
        "regtune float32": (np.float32, {}, g32, 28),
    }
    for name, (dt, extra, g, nbytes) in setups.items():
        opt = optim.AdamW([arr(dt)], **KW, **extra)
        fns[name] = lambda opt=opt, g=g: opt.step([g])
        bytes_per[name] = nbytes
    notes = []
    try:
        import torch

        torch.set_num_threads(args.threads)
        for name, tdt, nbytes in (("torch fused bf16", torch.bfloat16, 14), ("torch fused float32", torch.float32, 28)):
            p = torch.randn(N, N).to(tdt).requires_grad_()
            p.grad = torch.randn(N, N).to(tdt)
            topt = torch.optim.AdamW([p], fused=True, **KW)
            fns[name] = topt.step
            bytes_per[name] = nbytes
    except ImportError:
        notes.append("torch not installed: its rows are skipped")
    src, dst = arr(np.float32), arr(np.float32)
    fns["copy"] = lambda: _core.parallel_copy(dst, src)
    bytes_per["copy"] = 8

    best = _min_time(fns, args.repeats)
    copy_gbs = N * N * 8 / best["copy"] / 1e9
    regtune.show_config()
    print(f"AdamW step on {N}x{N}, {args.threads} thread(s), SIMD {_core.simd()}, min of {args.repeats} rounds")
    print(f"{'impl':34s} {'ms':>8s} {'GB/s':>7s} {'% copy':>7s}")
    for k, t in best.items():
        gbs = N * N * bytes_per[k] / t / 1e9
        print(f"{k:34s} {t * 1e3:8.2f} {gbs:7.1f} {100 * gbs / copy_gbs:6.0f}%")
    if "torch fused bf16" in best:
        print(f"bf16 state: torch fused bf16 / regtune = {best['torch fused bf16'] / best['regtune bf16 state, round']:.2f}x"
              " (aim >= 1.8x)")
        for mode in ("round", "stochastic", "master"):
            r = best["torch fused float32"] / best[f"regtune f32 state, {mode}"]
            print(f"f32 state, {mode}: torch fused float32 / regtune = {r:.2f}x (aim >= 1.4x)")
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
