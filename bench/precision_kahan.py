"""Is Kahan-compensated summation worth a fourth way of writing 16-bit weights back?

regtune.optim writes a float32 update into bfloat16 / float16 weights by rounding to nearest
(``precision="round"``), stochastically (``"stochastic"``) or through a float32 master copy
(``"master"``). Kahan summation (as torch-optimi does on GPU) keeps a 16-bit compensation
buffer ``c`` next to each weight and carries the part of each update that the rounding lost
into the next one::

    y = u - c;  t = round(p + y);  c = round((t - p) - y);  p = t      (float32 arithmetic)

This script measures the four against the exact float32 sum on the same sequence of updates:
weights N(0, 1) rounded to 16 bits, 1000 SGD-like steps whose updates are ``scale * N(0.5, 1)``
per element for scales from 1e-3 down to 1e-6 (mostly below half a bfloat16 ulp, as at a small
learning rate), drawn afresh each step ("noisy") or once for all steps ("steady", a constant
gradient), and reports the RMS error of the final weights against float32's and the
net movement relative to float32's (1: the updates arrived; 0: they vanished), plus the extra
memory per parameter and the extra traffic per step. Round, stochastic and master are
regtune's SGD (lr 1, the update as the gradient's negative); Kahan is emulated in NumPy with
float32 arithmetic rounded to the 16-bit type after each operation, as a fused kernel would.

    python bench/precision_kahan.py [--steps 1000] [--n 20000]

The decision it backs (full output in bench/RESULTS.md): no fourth mode. On noisy updates a
16-bit compensation ends as close to float32 as the master copy with half its memory (2 bytes
per parameter instead of 4), but the compensation is itself rounded to nearest, so a steady
gradient loses part of it: in bfloat16, steady updates of 1e-5 moved the weights 7% short of
float32 (master: 0.1%) and of 1e-6 a quarter of the way (master: 58%, its rounded weights),
the vanishing it exists to prevent, one level down. Stochastic rounding is unbiased at every
scale for no memory, the master copy exact for 4 bytes; float16's 3 more bits hide the effect.
"""

from __future__ import annotations

import argparse
import sys

import ml_dtypes
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from regtune import optim

    print(f"{args.n} weights N(0, 1), {args.steps} updates of scale * N(0.5, 1) per element, seed {args.seed}")
    print(f"{'dtype':9s} {'update':6s} {'scale':>6s} {'mode':11s} {'RMS error':>10s} {'moved / f32':>12s} {'extra B/param':>14s}"
          f" {'extra B/step':>13s}")  # fmt: skip
    for dt, steady, scale in [(dt, steady, scale) for dt in (np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16))
                              for steady in (False, True) for scale in (1e-3, 1e-4, 1e-5, 1e-6)]:  # fmt: skip
        rng = np.random.default_rng(args.seed)
        p0 = rng.standard_normal(args.n).astype(np.float32).astype(dt)
        if steady:  # each weight gets the same update every step (a steady gradient)
            one = (scale * rng.normal(0.5, 1.0, args.n)).astype(np.float32)
            updates = [one] * args.steps
        else:
            updates = [(scale * rng.normal(0.5, 1.0, args.n)).astype(np.float32) for _ in range(args.steps)]
        exact = p0.astype(np.float32)
        for u in updates:
            exact = exact + u  # float32, as the master copy computes it
        moved = exact - p0.astype(np.float32)

        def report(mode, p, extra_param, extra_step):
            err = np.sqrt(np.mean((p.astype(np.float32) - exact) ** 2))
            mv = float(np.sum((p.astype(np.float32) - p0.astype(np.float32)) * moved) / np.sum(moved * moved))
            kind = "steady" if steady else "noisy"
            print(f"{dt.name:9s} {kind:6s} {scale:6.0e} {mode:11s} {err:10.2e} {mv:12.3f} {extra_param:14d}"
                  f" {extra_step:13d}")  # fmt: skip

        for mode, kw, extra in (("round", {}, 0), ("stochastic", {"seed": args.seed}, 0), ("master", {}, 4)):
            p = p0.copy()
            opt = optim.SGD([p], lr=1.0, precision=mode, **kw)
            for u in updates:
                opt.step([-u])
            report(mode, p, extra, 2 * extra)
        p, c = p0.copy(), np.zeros(args.n, dt)
        for u in updates:  # Kahan, each operation in float32 and its result rounded as stored
            y = u - c.astype(np.float32)
            t = (p.astype(np.float32) + y).astype(dt)
            c = ((t.astype(np.float32) - p.astype(np.float32)) - y).astype(dt)
            p = t
        report("kahan", p, 2, 4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
