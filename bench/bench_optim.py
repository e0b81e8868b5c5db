"""regtune.optim steps vs a straightforward NumPy implementation and torch's fastest one, on one
4096 x 4096 float32 tensor and on a list of 200 mixed-size tensors (~50 M parameters): AdamW,
Adam, SGD, RMSprop, Adagrad, NAdam, RAdam, Adamax, Adadelta and Lion; clip + AdamW against
torch's clip_grad_norm_ + fused AdamW; and AdamW with an EMA of the weights (regtune's
``ema=`` folded into the step, and a separate ``EMA.update()``) against torch's fused AdamW +
``torch._foreach_lerp_`` (what ``torch.optim.swa_utils.get_ema_multi_avg_fn`` does). The
AdamW + EMA rows also time regtune's plain AdamW step in the same run: the fused step aims at
<= 1.15x its time.

Peers: each torch.optim class with ``foreach=True`` and, where the installed torch accepts it,
``fused=True`` (tried on a tiny tensor, so the table follows the torch version; torch 2.13 CPU
has fused Adam, AdamW, SGD and Adagrad); Lion against ``lion_pytorch.Lion`` (one plain
implementation, no foreach/fused). "torch fastest" in the summary is the faster of the torch
columns measured. Rows whose regtune class (or ``regtune.optim.EMA``) is not in the installed
build, and peers that are not installed, are skipped with a note.

``bytes`` of each op is the memory traffic of one step (every array read and written once,
as a fused step does: AdamW reads param, grad, exp_avg, exp_avg_sq and writes three; AdamW +
EMA also reads and writes the average: 9), the same for every impl of an op, so GB/s and
"% of copy bw" compare directly with the copy yardstick.

Run with the suite (``regtune bench --ops "adam*,sgd*,lion*,copy"``, ``regtune bench --all``) or on its own for the
acceptance numbers (min over many interleaved repeats, robust to a shared machine)::

    python bench/bench_optim.py [--repeats 15] [--only nadam,lion,adamw+ema]

``REGTUNE_BENCH_N`` (default 4096) sets the single tensor to N x N and the list to ~3 N^2
parameters.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import sys

import numpy as np

N = int(os.environ.get("REGTUNE_BENCH_N", "4096"))
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.999), 1e-8, 1e-2
EMA_DECAY = 0.999

# name: (regtune.optim class, peer class, kwargs for both, arrays read + written per element in
# one fused step). A torch.optim peer is timed with foreach=True and fused=True (where torch has
# it); another peer (lion_pytorch) has one implementation, timed as is.
OPTS = {
    "adamw": ("AdamW", "torch.optim.AdamW", dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD), 7),
    "adam": ("Adam", "torch.optim.Adam", dict(lr=LR, betas=BETAS, eps=EPS), 7),
    "sgd": ("SGD", "torch.optim.SGD", dict(lr=LR, momentum=0.9), 5),
    "rmsprop": ("RMSprop", "torch.optim.RMSprop", dict(lr=LR), 5),
    "adagrad": ("Adagrad", "torch.optim.Adagrad", dict(lr=LR), 5),
    "nadam": ("NAdam", "torch.optim.NAdam", dict(lr=2e-3, betas=BETAS, eps=EPS, momentum_decay=4e-3), 7),
    "radam": ("RAdam", "torch.optim.RAdam", dict(lr=1e-3), 7),
    "adamax": ("Adamax", "torch.optim.Adamax", dict(lr=2e-3), 7),  # exp_avg, exp_inf
    "adadelta": ("Adadelta", "torch.optim.Adadelta", dict(lr=1.0, rho=0.9, eps=1e-6), 7),  # square_avg, acc_delta
    "lion": ("Lion", "lion_pytorch.Lion", dict(lr=1e-4, betas=(0.9, 0.99)), 5),
    # The rules with a norm per tensor take more than one pass; `arrays` stays the least traffic
    # the rule needs (each array read and written once), so GB/s compare with the others.
    "lamb": ("LAMB", "pytorch_optimizer.Lamb", dict(lr=1e-3, weight_decay=WD), 7),
    "lars": ("LARS", "pytorch_optimizer.LARS", dict(lr=1e-3, momentum=0.9, weight_decay=WD), 5),
    "adafactor": ("Adafactor", "torch.optim.Adafactor", dict(lr=1e-2), 3),  # + the O(R + C) factors
}
#: The rules with a NumPy transcription here (the others are compared with their peers only).
NUMPY_RULES = ("adamw", "adam", "sgd", "rmsprop", "adagrad", "nadam", "radam", "adamax", "adadelta", "lion")
EMA_ARRAYS = 9  # AdamW + EMA in one pass: reads param, grad, exp_avg, exp_avg_sq, average; writes four
TORCH_MODES = ("foreach", "fused")


def peer_impls(name: str) -> list[str]:
    """The peer columns of a row: torch-foreach and torch-fused for torch.optim, else the
    package's name (lion-pytorch, pytorch-optimizer: its own default, foreach where it can)."""
    peer = OPTS[name][1]
    if peer.startswith("torch.optim."):
        return [f"torch-{mode}" for mode in TORCH_MODES]
    return [peer.split(".")[0].replace("_", "-")]


def list_shapes(total: int, count: int = 200, seed: int = 5) -> list[tuple[int, ...]]:
    """``count`` tensor shapes of log-uniform sizes (biases to big matrices) summing to ~total."""
    rng = np.random.default_rng(seed)
    w = np.exp(rng.uniform(0, math.log(4000), count))
    sizes = np.maximum(1, (w / w.sum() * total).astype(np.int64))
    return [(int(s),) if i % 3 else (int(s) // 64 + 1, 64) for i, s in enumerate(sizes)]


SINGLE = [(N, N)]
MANY = list_shapes(3 * N * N)  # ~50 M parameters at N = 4096


# A case this environment cannot run (a class not in the installed regtune, a peer not installed,
# a torch option this torch lacks): pytest skips it, regtune bench leaves it out, the standalone
# run notes it.
from _harness import Unavailable  # noqa: E402


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{module} is not importable ({exc})") from None


def _regtune_class(cls: str):
    ro = _import("regtune.optim")
    found = getattr(ro, cls, None)
    if found is None:
        raise Unavailable(f"regtune.optim has no {cls} in this build")
    return found


def _peer_class(name: str):
    module, _, cls = OPTS[name][1].rpartition(".")
    return getattr(_import(module), cls)


@functools.cache
def _mode_error(name: str, mode: str) -> str | None:
    """Why torch's ``mode=True`` variant of a row's optimizer cannot run here, or None. Tried on
    a tiny float32 CPU tensor, construction and one step: torch raises on an option it lacks
    (TypeError for an unknown keyword, RuntimeError for an unsupported device or dtype)."""
    torch = _import("torch")
    p = torch.zeros(4, requires_grad=True)
    p.grad = torch.ones(4)
    try:
        _peer_class(name)([p], **OPTS[name][2], **{mode: True}).step()
    except Exception as exc:  # noqa: BLE001  (whatever torch raises, the variant is absent)
        return f"{type(exc).__name__}: {exc}"
    return None


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
    cls, _, kw, _ = OPTS[name]
    opt_class = _regtune_class(cls)
    pr = Problem(shapes)
    if clip:
        kw = dict(kw, max_grad_norm=0.999 * pr.grad_norm())
    opt = opt_class(pr.params, **kw)
    fn = functools.partial(opt.step, pr.grads)
    fn.numel = pr.numel
    return fn


def _per_step(name, kw, t, mu_product):
    """The per-step scalars of a rule at step t (1-based), as torch computes them in double."""
    b1, b2 = kw.get("betas", BETAS)
    c = {"bc1": 1 - b1**t, "bc2": 1 - b2**t}
    if name == "nadam":
        psi = kw["momentum_decay"]
        c["mu"] = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        c["mu_next"] = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_product[0] *= c["mu"]
        c["mu_product"] = mu_product[0]
    elif name == "radam":
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2**t / c["bc2"]
        c["rect"] = None
        if rho_t > 5:  # variance tractable: the rectified adaptive step
            c["rect"] = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return c


def numpy_step(shapes, name):
    """The straightforward NumPy step: torch.optim's documented pseudo-code line by line (state
    rebound to each new array, the parameter updated in place). State: m is exp_avg (Adadelta's
    acc_delta), v is exp_avg_sq (exp_inf, square_avg, sum)."""
    pr = Problem(shapes)
    kw = OPTS[name][2]
    state = [dict(m=np.zeros_like(p), v=np.zeros_like(p)) for p in pr.params]
    t, mu_product = [0], [1.0]
    lr, eps = kw["lr"], kw.get("eps", EPS)
    b1, b2 = kw.get("betas", BETAS)

    def step():
        t[0] += 1
        c = _per_step(name, kw, t[0], mu_product)
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
            elif name == "nadam":
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g**2
                mu, mu_next, prod = c["mu"], c["mu_next"], c["mu_product"]
                m_hat = mu_next * s["m"] / (1 - prod * mu_next) + (1 - mu) * g / (1 - prod)
                v_hat = s["v"] / c["bc2"]
                p -= lr * m_hat / (np.sqrt(v_hat) + eps)
            elif name == "radam":
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g**2
                m_hat = s["m"] / c["bc1"]
                if c["rect"] is not None:
                    adaptive = math.sqrt(c["bc2"]) / (np.sqrt(s["v"]) + eps)
                    p -= lr * m_hat * c["rect"] * adaptive
                else:
                    p -= lr * m_hat
            elif name == "adamax":
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = np.maximum(b2 * s["v"], np.abs(g) + eps)
                p -= lr / c["bc1"] * s["m"] / s["v"]
            elif name == "adadelta":
                rho = kw["rho"]
                s["v"] = rho * s["v"] + (1 - rho) * g**2
                delta = np.sqrt(s["m"] + eps) / np.sqrt(s["v"] + eps) * g
                s["m"] = rho * s["m"] + (1 - rho) * delta**2
                p -= lr * delta
            elif name == "lion":
                update = np.sign(b1 * s["m"] + (1 - b1) * g)
                p -= lr * update
                s["m"] = b2 * s["m"] + (1 - b2) * g
            else:
                raise ValueError(f"no NumPy step for {name!r}")

    step.numel = pr.numel
    return step


def numpy_inplace_step(shapes, name):
    """A hand-tuned NumPy step: state updated in place, fewer temporaries."""
    pr = Problem(shapes)
    kw = OPTS[name][2]
    state = [dict(m=np.zeros_like(p), v=np.zeros_like(p)) for p in pr.params]
    t, mu_product = [0], [1.0]
    lr, eps = kw["lr"], kw.get("eps", EPS)
    b1, b2 = kw.get("betas", BETAS)

    def step():
        t[0] += 1
        c = _per_step(name, kw, t[0], mu_product)
        bc1, bc2 = c["bc1"], c["bc2"]
        for p, g, s in zip(pr.params, pr.grads, state):
            m, v = s["m"], s["v"]
            if name == "adamw":
                p *= 1 - LR * WD
            if name in ("adam", "adamw", "nadam", "radam"):
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
            if name in ("adam", "adamw"):
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
            elif name == "nadam":
                denom = np.sqrt(v)
                denom *= 1 / math.sqrt(bc2)
                denom += eps
                mu, mu_next, prod = c["mu"], c["mu_next"], c["mu_product"]
                p -= (lr * (1 - mu) / (1 - prod)) * g / denom
                p -= (lr * mu_next / (1 - prod * mu_next)) * m / denom
            elif name == "radam":
                if c["rect"] is not None:
                    p -= (lr * c["rect"] * math.sqrt(bc2) / bc1) * m / (np.sqrt(v) + eps)
                else:
                    p -= (lr / bc1) * m
            elif name == "adamax":
                m *= b1
                m += (1 - b1) * g
                v *= b2
                np.maximum(v, np.abs(g) + eps, out=v)
                p -= (lr / bc1) * m / v
            elif name == "adadelta":
                rho = kw["rho"]
                v *= rho
                v += (1 - rho) * g * g
                delta = np.sqrt(m + eps)
                delta /= np.sqrt(v + eps)
                delta *= g
                m *= rho
                m += (1 - rho) * delta * delta
                p -= lr * delta
            elif name == "lion":
                update = m * b1
                update += (1 - b1) * g
                p -= lr * np.sign(update)  # not out=update: in place it ran ~8x slower (NumPy 2.4)
                m *= b2
                m += (1 - b2) * g
            else:
                raise ValueError(f"no NumPy step for {name!r}")

    step.numel = pr.numel
    return step


def _torch_problem(shapes):
    """(torch module, Problem, parameter tensors sharing its arrays with .grad set)."""
    torch = _import("torch")
    pr = Problem(shapes)
    params = [torch.from_numpy(p).requires_grad_() for p in pr.params]
    for p, g in zip(params, pr.grads):
        p.grad = torch.from_numpy(g)
    return torch, pr, params


def torch_step(shapes, name, impl, clip=False):
    """The peer's step: ``impl`` is one of peer_impls(name) (torch-foreach, torch-fused,
    lion-pytorch)."""
    mode = impl.removeprefix("torch-") if impl.startswith("torch-") else None
    if mode is not None:
        error = _mode_error(name, mode)
        if error is not None:
            raise Unavailable(f"{OPTS[name][1]}({mode}=True) raises on this torch: {error}")
    opt_class = _peer_class(name)
    torch, pr, params = _torch_problem(shapes)
    opt = opt_class(params, **OPTS[name][2], **({mode: True} if mode else {}))
    max_norm = 0.999 * pr.grad_norm()  # clips by ~0.1% per call: no drift toward denormals

    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        opt.step()

    step.numel = pr.numel
    return step


# ------------------------------------------------------------------------ AdamW + EMA
EMA_IMPLS = {  # impl: what it times (the standalone run prints these labels)
    "regtune": "adamw+ema (fused)",  # AdamW(..., ema=EMA(params)).step(grads): one pass
    "regtune-then-ema.update": "adamw then ema.update()",  # AdamW step, then EMA.update()
    "regtune-adamw-no-ema": "adamw (no ema)",  # the plain step: the yardstick of the fused one
    "torch-fused+foreach_lerp": "torch fused adamw + lerp",  # fused AdamW, then _foreach_lerp_
}


def regtune_ema_step(shapes, impl):
    """AdamW with an EMA of the weights (decay EMA_DECAY): folded into the step (``ema=``), a
    separate ``EMA.update()`` after the step, or no EMA at all."""
    opt_class = _regtune_class("AdamW")
    ema_class = _regtune_class("EMA")
    pr = Problem(shapes)
    kw = OPTS["adamw"][2]
    if impl == "regtune-adamw-no-ema":
        opt = opt_class(pr.params, **kw)
        fn = functools.partial(opt.step, pr.grads)
    elif impl == "regtune":
        try:
            opt = opt_class(pr.params, **kw, ema=ema_class(pr.params, decay=EMA_DECAY))
        except TypeError as exc:  # EMA landed before the optimizers' ema= argument
            raise Unavailable(f"regtune.optim.AdamW does not take ema= in this build ({exc})") from None
        fn = functools.partial(opt.step, pr.grads)
    else:
        opt = opt_class(pr.params, **kw)
        ema = ema_class(pr.params, decay=EMA_DECAY)

        def fn():
            opt.step(pr.grads)
            ema.update()

    fn.numel = pr.numel
    return fn


def torch_ema_step(shapes):
    """torch's fused AdamW step, then the EMA as torch.optim.swa_utils.get_ema_multi_avg_fn
    updates it: ``torch._foreach_lerp_(averages, params, 1 - decay)`` under no_grad."""
    error = _mode_error("adamw", "fused")
    if error is not None:
        raise Unavailable(f"torch.optim.AdamW(fused=True) raises on this torch: {error}")
    torch, pr, params = _torch_problem(shapes)
    opt = torch.optim.AdamW(params, **OPTS["adamw"][2], fused=True)
    averages = [p.detach().clone() for p in params]  # W_0^EMA = W_0, as swa_utils starts

    def step():
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(averages, params, 1 - EMA_DECAY)

    step.numel = pr.numel
    return step


def _ema_case(shapes, impl):
    if impl.startswith("torch"):
        return torch_ema_step(shapes)
    return regtune_ema_step(shapes, impl)


# ------------------------------------------------------------------------------ the table
def _case(make, arrays, requires):
    """A conftest factory; the whole row (every impl) is skipped when regtune.optim lacks
    ``requires``, so a row appears once the regtune build has it."""

    def factory(c):
        _regtune_class(requires)  # raises Unavailable: the case is skipped
        return _tag(make(), arrays)

    return factory


SIZES = (("", SINGLE), ("-list200", MANY))
CASES = {}
for _name, (_cls, _peer, _kw, _arrays) in OPTS.items():
    for _suffix, _shapes in SIZES:
        CASES[_name + _suffix] = {
            "regtune": _case(functools.partial(regtune_step, _shapes, _name), _arrays, _cls),
            **({
                "numpy": _case(functools.partial(numpy_step, _shapes, _name), _arrays, _cls),
                "numpy-inplace": _case(functools.partial(numpy_inplace_step, _shapes, _name), _arrays, _cls),
            } if _name in NUMPY_RULES else {}),
            **{
                _impl: _case(functools.partial(torch_step, _shapes, _name, _impl), _arrays, _cls)
                for _impl in peer_impls(_name)
            },
        }
# clip + AdamW: one norm pass (reads the grads) + the step; torch also rewrites the grads.
CASES["clip+adamw"] = {
    "regtune": _case(functools.partial(regtune_step, SINGLE, "adamw", True), 8, "AdamW"),
    "torch-fused": _case(functools.partial(torch_step, SINGLE, "adamw", "torch-fused", True), 8, "AdamW"),
}
for _suffix, _shapes in SIZES:
    CASES["adamw+ema" + _suffix] = {
        _impl: _case(functools.partial(_ema_case, _shapes, _impl), EMA_ARRAYS, "EMA") for _impl in EMA_IMPLS
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


def _build(makers: dict) -> tuple[dict, list[str]]:
    """The callables that this environment can run, and a note for each that it cannot."""
    fns, notes = {}, []
    for k, make in makers.items():
        try:
            fns[k] = make()
        except Unavailable as exc:
            notes.append(f"  ({k} skipped: {exc})")
    return fns, notes


def main(argv=None) -> int:
    import argparse

    import regtune

    groups = [*OPTS, "clip+adamw", "adamw+ema"]
    ap = argparse.ArgumentParser(description="regtune.optim acceptance numbers (min over repeats)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {','.join(groups)}")
    args = ap.parse_args(argv)
    only = groups if args.only is None else args.only.split(",")
    if unknown := [g for g in only if g not in groups]:
        ap.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(groups)}")
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
    measured = []
    for name in (n for n in OPTS if n in only):
        cls, peer, _, arrays = OPTS[name]
        try:
            _regtune_class(cls)
        except Unavailable as exc:
            print(f"{name}: skipped, {exc}")
            continue
        fns, notes = _build({
            "regtune": functools.partial(regtune_step, SINGLE, name),
            "regtune-list200": functools.partial(regtune_step, MANY, name),
            **({
                "numpy": functools.partial(numpy_step, SINGLE, name),
                "numpy-inplace": functools.partial(numpy_inplace_step, SINGLE, name),
            } if name in NUMPY_RULES else {}),
            **{impl: functools.partial(torch_step, SINGLE, name, impl) for impl in peer_impls(name)},
            **{impl + "-list200": functools.partial(torch_step, MANY, name, impl) for impl in peer_impls(name)},
        })  # fmt: skip
        times = _min_time(fns, args.repeats)
        print(f"{name} {N}x{N} float32 (list: 200 tensors, {fns['regtune-list200'].numel / 1e6:.3g} M params; "
              f"peer {peer}):")  # fmt: skip
        for note in notes:
            print(note)
        for k, t in times.items():
            results[(name, k)] = (t, report(k, t, arrays, fns[k].numel))
        measured.append(name)
        del fns
    if "clip+adamw" in only:
        fns, notes = _build({
            "regtune": functools.partial(regtune_step, SINGLE, "adamw", clip=True),
            "torch-fused": functools.partial(torch_step, SINGLE, "adamw", "torch-fused", clip=True),
        })  # fmt: skip
        times = _min_time(fns, args.repeats)
        print(f"clip + adamw {N}x{N} float32:")
        for note in notes:
            print(note)
        for k, t in times.items():
            results[("clip+adamw", k)] = (t, report(k, t, 8, fns[k].numel))
        del fns
    ema_sizes = []
    if "adamw+ema" in only:
        try:
            _regtune_class("EMA")
        except Unavailable as exc:
            print(f"adamw+ema: skipped, {exc}")
        else:
            for suffix, shapes in SIZES:
                op = "adamw+ema" + suffix
                fns, notes = _build({impl: functools.partial(_ema_case, shapes, impl) for impl in EMA_IMPLS})
                if "regtune" not in fns:
                    print(f"{op}: skipped", *notes, sep="\n")
                    continue
                times = _min_time(fns, args.repeats)
                what = f"{N}x{N}" if not suffix else f"list of 200 tensors, {fns['regtune'].numel / 1e6:.3g} M params"
                print(f"adamw + ema (decay {EMA_DECAY}) {what} float32, "
                      f"{EMA_ARRAYS * 4 * fns['regtune'].numel / 1e6:.0f} MB per step:")  # fmt: skip
                for note in notes:
                    print(note)
                for k, t in times.items():
                    results[(op, k)] = (t, report(EMA_IMPLS[k], t, EMA_ARRAYS, fns[k].numel))
                ema_sizes.append((suffix, fns["regtune"].numel))
                del fns

    print("acceptance:")
    if "adamw" in measured:
        rt = results[("adamw", "regtune")][0]
        print(f"  adamw vs numpy speed-up {results[('adamw', 'numpy')][0] / rt:.1f}x (target >= 10)")
        print(f"  adamw vs numpy-inplace (hand-tuned) speed-up {results[('adamw', 'numpy-inplace')][0] / rt:.1f}x")
        if ("adamw", "torch-fused") in results:
            print(f"  adamw time ratio regtune / torch fused {rt / results[('adamw', 'torch-fused')][0]:.3f} (target <= 1.0)")
    if ("clip+adamw", "torch-fused") in results:
        r = results[("clip+adamw", "torch-fused")][0] / results[("clip+adamw", "regtune")][0]
        print(f"  clip+adamw speed-up vs torch clip_grad_norm_ + fused {r:.2f}x (target >= 1.3)")
    for name in measured:
        fastest = ""
        for suffix, what in (("", f"{N}x{N}"), ("-list200", "list")):
            t_rt = results[(name, "regtune" + suffix)][0]
            peers = {k: results[(name, k + suffix)][0] for k in peer_impls(name) if (name, k + suffix) in results}
            if peers:
                best = min(peers, key=peers.get)
                fastest += f"{what}: regtune / fastest peer ({best}) {t_rt / peers[best]:.3f}; "
        single, many = results[(name, "regtune")][1], results[(name, "regtune-list200")][1]
        print(f"  {name}: {fastest}200-tensor list per byte / single tensor {100 * many / single:.0f}% (target >= 90%)")
    for suffix, numel in ema_sizes:
        op = "adamw+ema" + suffix
        t_fused = results[(op, "regtune")][0]
        what = f"{N}x{N}" if not suffix else "200-tensor list"
        line = f"  {op}: {what}, {EMA_ARRAYS} arrays = {EMA_ARRAYS * 4 * numel / 1e6:.0f} MB per step"
        if (op, "regtune-adamw-no-ema") in results:
            ratio = t_fused / results[(op, "regtune-adamw-no-ema")][0]
            line += f"; time ratio fused / plain adamw {ratio:.3f} (target <= 1.15)"
        if (op, "regtune-then-ema.update") in results:
            line += f"; separate update / fused {results[(op, 'regtune-then-ema.update')][0] / t_fused:.2f}x"
        if (op, "torch-fused+foreach_lerp") in results:
            line += f"; torch fused + lerp / fused {results[(op, 'torch-fused+foreach_lerp')][0] / t_fused:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
