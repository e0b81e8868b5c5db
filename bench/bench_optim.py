"""regtune.optim steps vs a straightforward NumPy implementation and torch.optim (foreach and
fused), on one 4096 x 4096 float32 tensor and on a list of 200 mixed-size tensors (~50 M
parameters); and clip + AdamW against torch's clip_grad_norm_ + fused AdamW.

``bytes`` of each op is the memory traffic of one step (every array read and written once,
as a fused step does: AdamW reads param, grad, exp_avg, exp_avg_sq and writes three), so
GB/s and "% of copy bw" compare directly with the copy yardstick.

Run with the suite (``python bench/report.py --run -- -k optim``) or on its own for the
acceptance numbers (min over many interleaved repeats, robust to a shared machine)::

    python bench/bench_optim.py [--repeats 15]
"""

from __future__ import annotations

import functools
import math
import os
import sys

import numpy as np

N = int(os.environ.get("REGTUNE_BENCH_N", "4096"))
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.999), 1e-8, 1e-2

# (regtune/torch class, kwargs, arrays read + written per element in one fused step)
OPTS = {
    "adamw": ("AdamW", dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD), 7),
    "adam": ("Adam", dict(lr=LR, betas=BETAS, eps=EPS), 7),
    "sgd": ("SGD", dict(lr=LR, momentum=0.9), 5),
    "rmsprop": ("RMSprop", dict(lr=LR), 5),
    "adagrad": ("Adagrad", dict(lr=LR), 5),
}


def list_shapes(total: int, count: int = 200, seed: int = 5) -> list[tuple[int, ...]]:
    """``count`` tensor shapes of log-uniform sizes (biases to big matrices) summing to ~total."""
    rng = np.random.default_rng(seed)
    w = np.exp(rng.uniform(0, math.log(4000), count))
    sizes = np.maximum(1, (w / w.sum() * total).astype(np.int64))
    return [(int(s),) if i % 3 else (int(s) // 64 + 1, 64) for i, s in enumerate(sizes)]


SINGLE = [(N, N)]
MANY = list_shapes(3 * N * N)  # ~50 M parameters at N = 4096


class Problem:
    """Parameters, gradients (O(1) values) and their total size for one list of shapes."""

    def __init__(self, shapes, seed=1234):
        rng = np.random.default_rng(seed)
        self.params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        self.grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        self.numel = sum(p.size for p in self.params)

    def grad_norm(self):
        return math.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel())) for g in self.grads))


def _tag(fn, arrays):
    fn.extra_info = {"bytes": arrays * 4 * fn.numel, "traffic": True}
    return fn


# ------------------------------------------------------------------------------------ impls
def regtune_step(shapes, name, clip=False):
    import regtune.optim as ro

    pr = Problem(shapes)
    cls, kw, _ = OPTS[name]
    if clip:
        kw = dict(kw, max_grad_norm=0.999 * pr.grad_norm())
    opt = getattr(ro, cls)(pr.params, **kw)
    fn = functools.partial(opt.step, pr.grads)
    fn.numel = pr.numel
    return fn


def numpy_step(shapes, name):
    """The straightforward NumPy step: torch.optim's documented pseudo-code line by line (state
    rebound to each new array, the parameter updated in place)."""
    pr = Problem(shapes)
    state = [dict(m=np.zeros_like(p), v=np.zeros_like(p)) for p in pr.params]
    t = [0]
    b1, b2 = BETAS

    def step():
        t[0] += 1
        for p, g, s in zip(pr.params, pr.grads, state):
            if name in ("adam", "adamw"):
                if name == "adamw":
                    p -= LR * WD * p
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g**2
                m_hat = s["m"] / (1 - b1 ** t[0])
                v_hat = s["v"] / (1 - b2 ** t[0])
                p -= LR * m_hat / (np.sqrt(v_hat) + EPS)
            elif name == "sgd":
                s["m"] = 0.9 * s["m"] + g
                p -= LR * s["m"]
            elif name == "rmsprop":
                s["v"] = 0.99 * s["v"] + (1 - 0.99) * g**2
                p -= LR * g / (np.sqrt(s["v"]) + EPS)
            elif name == "adagrad":
                s["v"] = s["v"] + g**2
                p -= LR * g / (np.sqrt(s["v"]) + 1e-10)

    step.numel = pr.numel
    return step


def numpy_inplace_step(shapes, name):
    """A hand-tuned NumPy step: state updated in place, fewer temporaries."""
    pr = Problem(shapes)
    state = [dict(m=np.zeros_like(p), v=np.zeros_like(p)) for p in pr.params]
    t = [0]
    b1, b2 = BETAS

    def step():
        t[0] += 1
        bc1, bc2 = 1 - b1 ** t[0], 1 - b2 ** t[0]
        for p, g, s in zip(pr.params, pr.grads, state):
            m, v = s["m"], s["v"]
            if name == "adamw":
                p *= 1 - LR * WD
            if name in ("adam", "adamw"):
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                p -= (LR / bc1) * m / (np.sqrt(v) / math.sqrt(bc2) + EPS)
            elif name == "sgd":
                m *= 0.9
                m += g
                p -= LR * m
            elif name == "rmsprop":
                v *= 0.99
                v += 0.01 * g * g
                p -= LR * g / (np.sqrt(v) + EPS)
            elif name == "adagrad":
                v += g * g
                p -= LR * g / (np.sqrt(v) + 1e-10)

    step.numel = pr.numel
    return step


def torch_step(shapes, name, mode, clip=False):
    import pytest

    torch = pytest.importorskip("torch")
    pr = Problem(shapes)
    cls, kw, _ = OPTS[name]
    params = [torch.from_numpy(p).requires_grad_() for p in pr.params]
    for p, g in zip(params, pr.grads):
        p.grad = torch.from_numpy(g)
    try:
        opt = getattr(torch.optim, cls)(params, **kw, **{mode: True})
    except TypeError:
        pytest.skip(f"torch.optim.{cls} has no {mode}=True")
    max_norm = 0.999 * pr.grad_norm()  # clips by ~0.1% per call: no drift toward denormals

    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        opt.step()

    step.numel = pr.numel
    return step


def _case(make, op, arrays):
    return lambda c: _tag(make(), arrays)


CASES = {}
for _name, (_cls, _kw, _arrays) in OPTS.items():
    for _suffix, _shapes in (("", SINGLE), ("-list200", MANY)):
        _op = _name + _suffix
        CASES[_op] = {
            "regtune": _case(functools.partial(regtune_step, _shapes, _name), _op, _arrays),
            "numpy": _case(functools.partial(numpy_step, _shapes, _name), _op, _arrays),
            "numpy-inplace": _case(functools.partial(numpy_inplace_step, _shapes, _name), _op, _arrays),
            "torch-foreach": _case(functools.partial(torch_step, _shapes, _name, "foreach"), _op, _arrays),
            "torch-fused": _case(functools.partial(torch_step, _shapes, _name, "fused"), _op, _arrays),
        }
# clip + AdamW: one norm pass (reads the grads) + the step; torch also rewrites the grads.
CASES["clip+adamw"] = {
    "regtune": _case(functools.partial(regtune_step, SINGLE, "adamw", True), "clip+adamw", 8),
    "torch-fused": _case(functools.partial(torch_step, SINGLE, "adamw", "fused", True), "clip+adamw", 8),
}


def _copy(c):
    from regtune import _core

    src = np.ones((N, N), np.float32)
    return functools.partial(_core.parallel_copy, c.out, src)


CASES["copy"] = {"regtune": _copy}


def test_optim(run_case):
    run_case()


# ------------------------------------------------------------------- acceptance, standalone
def _min_time(fns: dict, repeats: int, block: int = 4) -> dict:
    """Min wall time of each callable: `repeats` rounds, each running every impl `block` times in
    a row. Impls alternate between rounds (a shared machine drifts), but not call by call: torch's
    OpenMP pool (and, for up to its spin time, regtune's) keeps its threads spinning after a
    parallel region, and call-by-call alternation would time each against the other's spinners."""
    import time

    best = {k: math.inf for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for k, fn in fns.items():
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    import argparse

    import regtune

    ap = argparse.ArgumentParser(description="regtune.optim acceptance numbers (min over repeats)")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    from regtune import _core

    src = np.ones((N, N), np.float32)
    dst = np.zeros_like(src)
    t_copy = _min_time({"copy": lambda: _core.parallel_copy(dst, src)}, 3 * args.repeats)["copy"]
    copy_bw = 2 * src.nbytes / t_copy / 1e9
    print(f"regtune {regtune.config()['simd']}, {regtune.get_num_threads()} threads; N={N}; "
          f"copy bandwidth {copy_bw:.1f} GB/s (min of {3 * args.repeats})")  # fmt: skip

    def report(label, t, arrays, numel):
        gbs = arrays * 4 * numel / t / 1e9
        print(f"  {label:<28s} {t * 1e3:8.2f} ms  {gbs:6.1f} GB/s  {100 * gbs / copy_bw:5.1f}% of copy")
        return gbs

    results = {}
    for name in OPTS:
        arrays = OPTS[name][2]
        fns = {
            "regtune": regtune_step(SINGLE, name),
            "regtune-list200": regtune_step(MANY, name),
            "numpy": numpy_step(SINGLE, name),
            "numpy-inplace": numpy_inplace_step(SINGLE, name),
        }
        try:
            fns["torch-foreach"] = torch_step(SINGLE, name, "foreach")
            if name != "rmsprop":
                fns["torch-fused"] = torch_step(SINGLE, name, "fused")
        except BaseException:  # torch missing: pytest.skip raises an exception of its own
            pass
        times = _min_time(fns, args.repeats)
        print(f"{name} {N}x{N} float32 (list: 200 tensors, {fns['regtune-list200'].numel / 1e6:.0f} M params):")
        for k, t in times.items():
            results[(name, k)] = (t, report(k, t, arrays, fns[k].numel))
        del fns
    fns = {"regtune": regtune_step(SINGLE, "adamw", clip=True)}
    try:
        fns["torch-fused"] = torch_step(SINGLE, "adamw", "fused", clip=True)
    except BaseException:
        pass
    times = _min_time(fns, args.repeats)
    print(f"clip + adamw {N}x{N} float32:")
    for k, t in times.items():
        results[("clip+adamw", k)] = (t, report(k, t, 8, fns[k].numel))

    print("acceptance:")
    rt = results[("adamw", "regtune")][0]
    print(f"  adamw vs numpy speed-up {results[('adamw', 'numpy')][0] / rt:.1f}x (target >= 10)")
    print(f"  adamw vs numpy-inplace (hand-tuned) speed-up {results[('adamw', 'numpy-inplace')][0] / rt:.1f}x")
    if ("adamw", "torch-fused") in results:
        print(f"  adamw time ratio regtune / torch fused {rt / results[('adamw', 'torch-fused')][0]:.3f} (target <= 1.0)")
        r = results[("clip+adamw", "torch-fused")][0] / results[("clip+adamw", "regtune")][0]
        print(f"  clip+adamw speed-up vs torch clip_grad_norm_ + fused {r:.2f}x (target >= 1.3)")
    for name in OPTS:
        single, many = results[(name, "regtune")][1], results[(name, "regtune-list200")][1]
        print(f"  {name}: 200-tensor list per byte / single tensor {100 * many / single:.0f}% (target >= 90%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
