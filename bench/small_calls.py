"""Per-call cost of small calls, where argument checks and the call itself dominate the kernel.

At 1, 64 and 4096 float32 elements, in one process, best of 7 repeats of a timed loop:

    uniform / normal with out=   vs NumPy's Generator (rng.random / rng.standard_normal, out=)
                                 and torch (torch.rand / torch.randn, out=)
    dropout                      vs torch.nn.functional.dropout
    one-tensor AdamW step        vs torch.optim.AdamW (foreach=False, the fastest at this size)

Issue 16's targets are printed beside the figures: uniform/normal at 1 element at most 1.5x
NumPy's, dropout at 1 element under 5 us, a one-tensor optimizer step under 10 us.

    python bench/small_calls.py
"""

from __future__ import annotations

import sys
import timeit

import numpy as np

import regtune


def per_call_us(fn, number: int = 20000, repeat: int = 7) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> int:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rng = np.random.default_rng(1)
    rows = []
    for n in (1, 64, 4096):
        o = np.empty(n, np.float32)
        x = np.ones(n, np.float32)
        w, g = [np.ones(n, np.float32)], [np.full(n, 0.1, np.float32)]
        opt = regtune.optim.AdamW(w, lr=1e-3)
        row = {
            "uniform": per_call_us(lambda: regtune.random.uniform(None, seed=1, out=o)),
            "uniform numpy": per_call_us(lambda: rng.random(n, dtype=np.float32, out=o)),
            "normal": per_call_us(lambda: regtune.random.normal(None, seed=1, out=o)),
            "normal numpy": per_call_us(lambda: rng.standard_normal(n, dtype=np.float32, out=o)),
            "dropout": per_call_us(lambda: regtune.dropout(x, 0.5, seed=1)),
            "adamw": per_call_us(lambda: opt.step(g), number=5000),
        }
        if torch is not None:
            t = torch.from_numpy(o)
            tx = torch.from_numpy(x)
            tw = torch.ones(n, requires_grad=True)
            tw.grad = torch.full((n,), 0.1)
            topt = torch.optim.AdamW([tw], lr=1e-3, foreach=False)
            row["uniform torch"] = per_call_us(lambda: torch.rand(n, out=t))
            row["normal torch"] = per_call_us(lambda: torch.randn(n, out=t))
            row["dropout torch"] = per_call_us(lambda: torch.nn.functional.dropout(tx, 0.5, training=True))
            row["adamw torch"] = per_call_us(lambda: topt.step(), number=5000)
        rows.append((n, row))
    print(f"per-call microseconds, best of 7 (regtune {regtune.config()['simd']}, {regtune.get_num_threads()} threads;"
          " torch on 1 thread)")
    print("| op | elements | regtune | NumPy | torch | regtune / NumPy |")
    print("|---|---|---|---|---|---|")
    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}"

    for n, r in rows:
        for op in ("uniform", "normal", "dropout", "adamw"):
            npy, tch = r.get(f"{op} numpy"), r.get(f"{op} torch")
            print(f"| {op} | {n} | {fmt(r[op])} | {fmt(npy)} | {fmt(tch)} | {fmt(r[op] / npy if npy else None)} |")
    one = dict(rows[0][1])
    print()
    print(f"targets at 1 element: uniform {one['uniform'] / one['uniform numpy']:.2f}x NumPy (<= 1.5),"
          f" normal {one['normal'] / one['normal numpy']:.2f}x NumPy (<= 1.5), dropout {one['dropout']:.2f} us (< 5),"
          f" AdamW step {one['adamw']:.2f} us (< 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
