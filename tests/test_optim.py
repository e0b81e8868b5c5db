"""regtune.optim against a NumPy transcription of torch.optim's documented update rules, and
against torch.optim itself when installed (Lion: against lion-pytorch's ``Lion``).

One table of optimizer configurations (CASES) runs through every test, in float32 and float64
(optax's alias_test style). The transcription below follows the pseudo-code of
https://pytorch.org/docs/stable/optim.html and the ``_single_tensor_*`` functions of
torch/optim/{sgd,adam,rmsprop,adagrad}.py, written plainly in NumPy; regtune's extras
(max_grad_norm, l1, prox_l1) are applied around it in the order the module documents.
"""

from __future__ import annotations

import copy
import hashlib
import math
import pickle

import ml_dtypes
import numpy as np
import pytest

import regtune
from regtune import _core, optim
from regtune._validation import first_overlap

from .conftest import SIMD_PATHS, num_threads, run_together, simd_path

STEPS = 50
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
# Parameters are O(1); an element that passes near zero has no relative accuracy to speak of,
# so an absolute floor of a few ulps at 1 goes with the relative tolerance.
ATOL = {np.float32: 1e-6, np.float64: 1e-14}

# (optimizer, kwargs): the grid of options the issue lists, and the extras.
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True, eps=1e-6)),
    ("AdamW", dict(lr=1e-2, betas=(0.4, 0.9))),  # lerp weight >= 0.5: torch's other lerp form
    ("RMSprop", dict(lr=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=1e-3, alpha=0.9, centered=True)),
    ("Adagrad", dict(lr=0.05)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01, eps=1e-8)),
    ("Lion", dict(lr=1e-3)),
    ("Lion", dict(lr=1e-3, betas=(0.95, 0.98), weight_decay=0.1)),
    ("Lion", dict(lr=1e-3, weight_decay=1e-4, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=2e-3)),
    ("NAdam", dict(lr=2e-3, betas=(0.8, 0.99), weight_decay=0.05, momentum_decay=0.01)),
    ("NAdam", dict(lr=2e-3, weight_decay=0.1, decoupled_weight_decay=True, eps=1e-6)),
    ("NAdam", dict(lr=2e-3, betas=(0.4, 0.9), momentum_decay=0.0)),
    ("RAdam", dict(lr=1e-2)),
    ("RAdam", dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=0.05)),  # rectified from step 3
    ("RAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, eps=1e-6)),
    ("RAdam", dict(lr=1e-2, betas=(0.9, 0.0))),  # rho_inf = 1: never rectified
    ("Adamax", dict(lr=2e-3)),
    ("Adamax", dict(lr=2e-3, betas=(0.4, 0.9), weight_decay=0.05, eps=1e-3)),
    ("Adadelta", dict(lr=1.0)),
    ("Adadelta", dict(lr=0.5, rho=0.5, weight_decay=0.05, eps=1e-4)),
    ("LAMB", dict(lr=1e-2)),
    ("LAMB", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    ("LAMB", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=False, grad_averaging=False, eps=1e-8)),
    ("LAMB", dict(lr=0.05, trust_clamp=0.5)),  # the clamp binds on every tensor but the scalars
    ("LARS", dict(lr=0.1)),
    ("LARS", dict(lr=0.1, weight_decay=0.01, nesterov=True, trust_coefficient=0.02)),
    ("LARS", dict(lr=0.1, momentum=0.0, weight_decay=0.01)),
    ("LARS", dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.05)),
    ("Adafactor", dict(lr=1e-2)),
    ("Adafactor", dict(lr=0.05, beta2_decay=-0.5, eps=(1e-20, 1e-2), d=2.0, weight_decay=0.1)),
    ("Adafactor", dict(lr=0.1, eps=(1e-3, 0.0), d=1.0)),  # eps1 clamps v: a different branch
    ("ScheduleFreeAdamW", dict(lr=1e-2)),
    ("ScheduleFreeAdamW", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05, warmup_steps=10, r=1.0,
                               weight_lr_power=1.0)),  # fmt: skip
    ("ScheduleFreeAdamW", dict(lr=1e-2, betas=(0.4, 0.9), eps=1e-6)),  # eval()'s weight 1 - 1/beta1 < -1
]
EXTRAS = [
    ("SGD", dict(lr=0.05, momentum=0.9, l1=1e-3)),
    ("Adam", dict(lr=1e-2, l1=1e-3, max_grad_norm=5.0)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, max_grad_norm=5.0)),
    ("AdamW", dict(lr=1e-2, prox_l1=0.05, l1=1e-3)),
    ("RMSprop", dict(lr=1e-3, centered=True, max_grad_norm=5.0, prox_l1=0.1)),
    ("Adagrad", dict(lr=0.05, l1=1e-2, prox_l1=0.02)),
    ("Lion", dict(lr=1e-3, weight_decay=0.1, l1=1e-3, max_grad_norm=5.0, prox_l1=0.05)),
    ("NAdam", dict(lr=2e-3, l1=1e-3, max_grad_norm=5.0, prox_l1=0.05)),
    ("RAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, l1=1e-3, max_grad_norm=5.0)),
    ("Adamax", dict(lr=2e-3, max_grad_norm=5.0, prox_l1=0.1)),
    ("Adadelta", dict(lr=1.0, l1=1e-2, prox_l1=0.02, max_grad_norm=5.0)),
    ("LAMB", dict(lr=1e-2, weight_decay=0.1, l1=1e-3, max_grad_norm=5.0, prox_l1=0.05)),
    ("LARS", dict(lr=0.1, weight_decay=0.01, l1=1e-3, max_grad_norm=5.0, prox_l1=0.05)),
    ("Adafactor", dict(lr=1e-2, weight_decay=0.1, l1=1e-3, max_grad_norm=5.0, prox_l1=0.05)),
    ("ScheduleFreeAdamW", dict(lr=1e-2, weight_decay=0.1, l1=1e-3, max_grad_norm=5.0, prox_l1=0.05)),
]
TORCH_EXTRAS = {"l1", "prox_l1", "max_grad_norm"}
# Every optimizer of the registry: a rule added through its own files joins every shared test.
OPTIMIZERS = [cls.__name__ for cls in optim.OPTIMIZERS.values()]


def _id(case):
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


SHAPES = [(37, 53), (5,), (3, 4, 7), (1,)]  # odd sizes: every vector tail is exercised


def _problem(dtype, seed=0, steps=STEPS, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return params, grads


# ------------------------------------------------------------------------ the transcription
def _reference(name, params, grad_seq, lr=1e-3, weight_decay=None, l1=0.0, prox_l1=0.0, max_grad_norm=None,
               momentum=None, dampening=0.0, nesterov=False, betas=(0.9, 0.999), eps=None, amsgrad=False,
               alpha=0.99, centered=False, lr_decay=0.0, initial_accumulator_value=0.0,
               decoupled_weight_decay=None, momentum_decay=4e-3, rho=0.9, grad_averaging=True, trust_clamp=10.0,
               trust_coefficient=1e-3, beta2_decay=-0.8, d=1.0, warmup_steps=0, r=0.0,
               weight_lr_power=2.0):  # fmt: skip
    """torch.optim's documented algorithm, per tensor, in the parameters' dtype (Lion: the
    paper's, as lion-pytorch's update_fn)."""
    if name == "Lion" and betas == (0.9, 0.999):
        betas = (0.9, 0.99)
    if weight_decay is None:
        weight_decay = 1e-2 if name == "AdamW" else 0.0
    if eps is None:
        eps = {"Adagrad": 1e-10, "Adadelta": 1e-6, "LAMB": 1e-6, "Adafactor": (None, 1e-3)}.get(name, 1e-8)
    if decoupled_weight_decay is None:
        decoupled_weight_decay = name == "LAMB"
    if momentum is None:
        momentum = 0.9 if name == "LARS" else 0.0
    p = [x.copy() for x in params]
    dt = p[0].dtype.type
    st = [dict() for _ in p]
    sf = {"lr_max": -1.0, "weight_sum": 0.0}  # Schedule-Free's scalar state
    lr0 = lr
    for t, grads in enumerate(grad_seq, start=1):
        if name == "ScheduleFreeAdamW":  # once per step: the reference's group-level scalars
            lr = lr0 * (t / warmup_steps if t - 1 < warmup_steps else 1.0)
            sf["lr_max"] = max(lr, sf["lr_max"])
            weight = t**r * sf["lr_max"] ** weight_lr_power
            sf["weight_sum"] += weight
            ckp1 = weight / sf["weight_sum"]
        grads = [g.copy() for g in grads]
        if max_grad_norm is not None:  # torch.nn.utils.clip_grad_norm_
            total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
            coef = min(max_grad_norm / (total + 1e-6), 1.0)
            grads = [g * dt(coef) for g in grads]
        for i, g in enumerate(grads):
            s, w = st[i], p[i]
            if l1:
                g = g + l1 * np.sign(w)
            if name == "SGD":
                if weight_decay:
                    g = g + weight_decay * w
                if momentum:
                    s["buf"] = g.copy() if t == 1 else momentum * s["buf"] + (1 - dampening) * g
                    g = g + momentum * s["buf"] if nesterov else s["buf"]
                w = w - lr * g
            elif name in ("Adam", "AdamW"):
                b1, b2 = betas
                if weight_decay:
                    if name == "AdamW":
                        w = w * (1 - lr * weight_decay)
                    else:
                        g = g + weight_decay * w
                m = s.get("m", np.zeros_like(w))
                v = s.get("v", np.zeros_like(w))
                s["m"] = m = b1 * m + (1 - b1) * g
                s["v"] = v = b2 * v + (1 - b2) * g * g
                if amsgrad:
                    s["vmax"] = v = np.maximum(s.get("vmax", np.zeros_like(w)), v)
                bc1, bc2 = 1 - b1**t, 1 - b2**t
                w = w - (lr / bc1) * m / (np.sqrt(v) / math.sqrt(bc2) + eps)
            elif name == "RMSprop":
                if weight_decay:
                    g = g + weight_decay * w
                s["sq"] = sq = alpha * s.get("sq", np.zeros_like(w)) + (1 - alpha) * g * g
                if centered:
                    s["ga"] = ga = alpha * s.get("ga", np.zeros_like(w)) + (1 - alpha) * g
                    avg = np.sqrt(sq - ga * ga) + eps
                else:
                    avg = np.sqrt(sq) + eps
                if momentum > 0:
                    s["buf"] = momentum * s.get("buf", np.zeros_like(w)) + g / avg
                    w = w - lr * s["buf"]
                else:
                    w = w - lr * g / avg
            elif name == "Lion":
                b1, b2 = betas
                wd = weight_decay / lr if decoupled_weight_decay else weight_decay
                w = w * (1 - lr * wd)
                m = s.get("m", np.zeros_like(w))
                c = b1 * m + (1 - b1) * g
                w = w - lr * np.where(np.isnan(c), 0, np.sign(c))  # torch's sgn: 0 for NaN
                s["m"] = b2 * m + (1 - b2) * g
            elif name in ("NAdam", "RAdam", "Adamax"):
                b1, b2 = betas
                if weight_decay:
                    if decoupled_weight_decay:
                        w = w * (1 - lr * weight_decay)
                    else:
                        g = g + weight_decay * w
                m = s.get("m", np.zeros_like(w))
                s["m"] = m = b1 * m + (1 - b1) * g
                if name == "Adamax":
                    s["u"] = u = np.maximum(b2 * s.get("u", np.zeros_like(w)), np.abs(g) + eps)
                    w = w - lr / (1 - b1**t) * m / u
                else:
                    s["v"] = v = b2 * s.get("v", np.zeros_like(w)) + (1 - b2) * g * g
                    bc1, bc2 = 1 - b1**t, 1 - b2**t
                if name == "NAdam":
                    mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
                    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
                    s["mp"] = mp = s.get("mp", 1.0) * mu
                    denom = np.sqrt(v / bc2) + eps
                    w = w - lr * (1 - mu) / (1 - mp) * g / denom - lr * mu_next / (1 - mp * mu_next) * m / denom
                elif name == "RAdam":
                    rho_inf = 2 / (1 - b2) - 1
                    rho_t = rho_inf - 2 * t * b2**t / bc2
                    if rho_t > 5:
                        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                        w = w - lr * m / bc1 * rect * math.sqrt(bc2) / (np.sqrt(v) + eps)
                    else:
                        w = w - lr * m / bc1
            elif name == "LAMB":  # pytorch_optimizer.Lamb
                b1, b2 = betas
                s["m"] = m = b1 * s.get("m", np.zeros_like(w)) + ((1 - b1) if grad_averaging else 1) * g
                s["v"] = v = b2 * s.get("v", np.zeros_like(w)) + (1 - b2) * g * g
                if weight_decay and decoupled_weight_decay:
                    w = w * (1 - lr * weight_decay)
                u = m / (np.sqrt(v) + eps)
                if weight_decay and not decoupled_weight_decay:
                    u = u + weight_decay * w
                wn = min(float(np.linalg.norm(w.astype(np.float64))), trust_clamp)
                un = float(np.linalg.norm(u.astype(np.float64)))
                trust = 1.0 if wn == 0 or un == 0 else wn / (un + eps)
                w = w - lr / (1 - b1**t) * trust * u
            elif name == "LARS":  # pytorch_optimizer.LARS
                if w.ndim > 1:
                    pn = float(np.linalg.norm(w.astype(np.float64)))
                    den = float(np.linalg.norm(g.astype(np.float64))) + weight_decay * pn
                    trust = trust_coefficient * pn / den if pn > 0 and den > 0 else 1.0
                    g = (g + weight_decay * w) * trust
                if momentum > 0:
                    s["buf"] = momentum * s.get("buf", np.zeros_like(w)) + (1 - dampening) * g
                    g = g + momentum * s["buf"] if nesterov else s["buf"]
                w = w - lr * g
            elif name == "Adafactor":  # torch.optim.Adafactor
                eps1 = np.finfo(dt).eps if eps[0] is None else eps[0]
                w64 = w.astype(np.float64)
                alpha = max(eps[1], math.sqrt(float(np.sum(w64 * w64)) / max(w.size, 1))) * min(lr, 1 / math.sqrt(t))
                beta = t**beta2_decay
                if weight_decay:
                    w = w * (1 - lr * weight_decay)
                g64 = g.astype(np.float64)
                if w.ndim > 1:
                    s["row"] = row = s.get("row", 0) + beta * (np.mean(g64 * g64, axis=-1, keepdims=True) - s.get("row", 0))
                    s["col"] = col = s.get("col", 0) + beta * (np.mean(g64 * g64, axis=-2, keepdims=True) - s.get("col", 0))
                    v = row * col / np.maximum(np.mean(row, axis=-2, keepdims=True), eps1)
                else:
                    s["var"] = v = s.get("var", 0) + beta * (g64 * g64 - s.get("var", 0))
                u = g64 / np.sqrt(np.maximum(v, eps1 * eps1))
                w = w - alpha / max(1.0, math.sqrt(float(np.sum(u * u)) / max(u.size, 1)) / d) * u
            elif name == "ScheduleFreeAdamW":
                b1, b2 = betas
                z = s.get("z", w.copy())  # the parameters at the first step
                s["v"] = v = b2 * s.get("v", np.zeros_like(w)) + (1 - b2) * g * g
                u = g / (np.sqrt(v / (1 - b2**t)) + eps) + weight_decay * w
                w = (1 - ckp1) * w + ckp1 * z + lr * (b1 * (1 - ckp1) - 1) * u
                s["z"] = z - lr * u
            elif name == "Adadelta":
                if weight_decay:
                    g = g + weight_decay * w
                s["sq"] = sq = rho * s.get("sq", np.zeros_like(w)) + (1 - rho) * g * g
                acc = s.get("acc", np.zeros_like(w))
                delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
                s["acc"] = rho * acc + (1 - rho) * delta * delta
                w = w - lr * delta
            elif name == "Adagrad":
                if weight_decay:
                    g = g + weight_decay * w
                clr = lr / (1 + (t - 1) * lr_decay)
                s["sum"] = s.get("sum", np.full_like(w, initial_accumulator_value)) + g * g
                w = w - clr * g / (np.sqrt(s["sum"]) + eps)
            if prox_l1:
                w = np.sign(w) * np.maximum(np.abs(w) - lr * prox_l1, 0)
            p[i] = w.astype(dt)
    return p


def _torch_optimizer(torch, name, tparams, tkw):
    """torch.optim's optimizer of that name; Lion is lion-pytorch's (skips when absent)."""
    if name == "Lion":
        return pytest.importorskip("lion_pytorch").Lion(tparams, **tkw)
    if name == "ScheduleFreeAdamW":  # the schedulefree package's, in train mode
        opt = pytest.importorskip("schedulefree").AdamWScheduleFree(tparams, **tkw)
        opt.train()
        return opt
    if name in ("LAMB", "LARS"):  # pytorch-optimizer's, with its names for two options
        po = pytest.importorskip("pytorch_optimizer")
        kw = {{"decoupled_weight_decay": "weight_decouple"}.get(k, k): v for k, v in tkw.items() if k != "trust_clamp"}
        opt = po.Lamb(tparams, **kw) if name == "LAMB" else po.LARS(tparams, **kw)
        if "trust_clamp" in tkw:
            opt.clamp = tkw["trust_clamp"]
        return opt
    return getattr(torch.optim, name)(tparams, **tkw)


@pytest.fixture
def torch_scalars_like(request):
    """Sets torch's default dtype to the parameters' for one test: NAdam keeps its running
    product of mu_t in a tensor of that dtype (float32 otherwise), as regtune keeps it in
    double for float64 parameters."""
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()

    def use(dtype):
        torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)

    yield use
    torch.set_default_dtype(before)


def _run(name, kw, params, grad_seq):
    params = [x.copy() for x in params]
    opt = getattr(optim, name)(params, **kw)
    for grads in grad_seq:
        opt.step(grads)
    return params, opt


def _assert_close(got, want, dtype):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=ATOL[dtype])


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES + EXTRAS, ids=_id)
def test_matches_numpy_transcription(case, dtype):
    name, kw = case
    params, grad_seq = _problem(dtype)
    got, _ = _run(name, kw, params, grad_seq)
    _assert_close(got, _reference(name, params, grad_seq, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES + EXTRAS, ids=_id)
def test_matches_torch_optim(case, dtype, torch_scalars_like):
    torch = pytest.importorskip("torch")
    torch_scalars_like(dtype)
    name, kw = case
    params, grad_seq = _problem(dtype)
    got, _ = _run(name, kw, params, grad_seq)
    tkw = {k: v for k, v in kw.items() if k not in TORCH_EXTRAS}
    tparams = [torch.tensor(x.copy(), requires_grad=True) for x in params]
    topt = _torch_optimizer(torch, name, tparams, tkw)
    for grads in grad_seq:
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        if "max_grad_norm" in kw:
            torch.nn.utils.clip_grad_norm_(tparams, kw["max_grad_norm"])
        with torch.no_grad():
            if kw.get("l1"):
                for tp in tparams:
                    tp.grad.add_(torch.sign(tp), alpha=kw["l1"])
        topt.step()
        if kw.get("prox_l1"):
            with torch.no_grad():
                for tp in tparams:
                    thr = kw["lr"] * kw["prox_l1"]
                    tp.copy_(torch.sign(tp) * torch.clamp(tp.abs() - thr, min=0))
    _assert_close(got, [tp.detach().numpy() for tp in tparams], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prox_l1_gives_exact_zeros(dtype):
    params, grad_seq = _problem(dtype, steps=10)
    got, _ = _run("AdamW", dict(lr=0.05, prox_l1=2.0), params, grad_seq)
    flat = np.concatenate([x.ravel() for x in got])
    assert np.mean(flat == 0) > 0.2
    assert np.all((flat == 0) | (np.abs(flat) > 0))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_max_grad_norm_returns_the_norm_and_leaves_grads_alone(name):
    params, grad_seq = _problem(np.float64, steps=1)
    grads = grad_seq[0]
    before = [g.copy() for g in grads]
    opt = getattr(optim, name)([x.copy() for x in params], lr=1e-2, max_grad_norm=1.0)
    norm = opt.step(grads)
    want = math.sqrt(sum(float(np.sum(g**2)) for g in before))
    assert norm == pytest.approx(want, rel=1e-14)
    for g, b in zip(grads, before):
        assert g.tobytes() == b.tobytes()
    assert getattr(optim, name)([x.copy() for x in params], lr=1e-2).step(grads) is None


def test_schedules_are_called_with_the_step_count():
    params, grad_seq = _problem(np.float64, steps=5)
    seen = []

    def lr(count):
        seen.append(count)
        return 0.1 / (1 + count)

    got, _ = _run("SGD", dict(lr=lr, momentum=0.9, weight_decay=lambda c: 0.01 * c), params, grad_seq)
    assert seen == [0, 1, 2, 3, 4]
    # The reference with the schedule unrolled, one step at a time.
    want = [x.copy() for x in params]
    opt = optim.SGD([x.copy() for x in params], lr=0.1, momentum=0.9)
    for k, grads in enumerate(grad_seq):
        opt.lr, opt.weight_decay = 0.1 / (1 + k), 0.01 * k
        opt.step(grads)
    want = opt.params
    for g, w in zip(got, want):
        assert g.tobytes() == w.tobytes()


def test_a_schedule_returning_a_bad_value_is_named():
    params, grad_seq = _problem(np.float64, steps=1)
    opt = optim.Adam(params, lr=lambda c: float("nan"))
    with pytest.raises(ValueError, match=r"lr\(0\) must be finite"):
        opt.step(grad_seq[0])
    opt = optim.Adam(params, lr=lambda c: -1.0)
    with pytest.raises(ValueError, match=r"lr\(0\) must be in"):
        opt.step(grad_seq[0])


# --------------------------------------------------------------------------------- state
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_state_dict_round_trips_exactly(case, dtype):
    name, kw = case
    params, grad_seq = _problem(dtype, steps=8)
    a_params, a = _run(name, kw, params, grad_seq[:4])
    sd = a.state_dict()
    b_params = [x.copy() for x in a_params]
    b = getattr(optim, name)(b_params, **kw)
    b.load_state_dict(sd)
    assert b.step_count == 4
    for grads in grad_seq[4:]:
        a.step(grads)
        b.step(grads)
    for x, y in zip(a_params, b_params):
        assert x.tobytes() == y.tobytes()
    # state_dict is a copy: stepping does not change it.
    assert all(isinstance(v, list) and all(isinstance(x, np.ndarray) or (x is None and name == "Adafactor") for x in v)
               for v in sd["state"].values())  # fmt: skip
    sd2 = a.state_dict()
    assert sd2["step"] == 8 and set(sd2["state"]) == set(sd["state"])


def test_load_state_dict_rejects_mismatches():
    params, _ = _problem(np.float32)
    opt = optim.Adam(params)
    sd = opt.state_dict()
    bad = {"step": 1, "state": {"exp_avg": sd["state"]["exp_avg"]}}
    with pytest.raises(ValueError, match="buffers"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["exp_avg"][1] = bad["state"]["exp_avg"][1].astype(np.float64)
    with pytest.raises(TypeError, match=r"state\['exp_avg'\]\[1\] has dtype float64"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["exp_avg_sq"][2] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"state\['exp_avg_sq'\]\[2\] has shape"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["exp_avg"] = bad["state"]["exp_avg"][:2]
    with pytest.raises(ValueError, match=r"state\['exp_avg'\] has 2 arrays but params has 4"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["step"] = -1
    with pytest.raises(ValueError, match="step"):
        opt.load_state_dict(bad)



def test_copies_and_pickles_carry_the_state_not_the_lock():
    params, grad_seq = _problem(np.float64, steps=4)
    want, _ = _run("SGD", dict(lr=0.05, momentum=0.9), params, grad_seq)
    opt = optim.SGD([x.copy() for x in params], lr=0.05, momentum=0.9)
    for grads in grad_seq[:2]:
        opt.step(grads)
    for other in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert other._lock is not opt._lock and other.step_count == 2
        for grads in grad_seq[2:]:
            other.step(grads)
        assert all(x.tobytes() == y.tobytes() for x, y in zip(other.params, want))
    assert opt.step_count == 2


def test_a_schedule_may_read_but_not_step_its_optimizer():
    params, grad_seq = _problem(np.float32, steps=1)
    seen = []
    opt = optim.SGD(params, lr=lambda c: seen.append(opt.state_dict()["step"]) or 0.1)
    opt.step(grad_seq[0])  # the lock is re-entrant: no deadlock
    assert seen == [0] and opt.step_count == 1
    calls = []

    def stepping(count):
        if not calls:  # the first call steps the optimizer, inside its own step
            calls.append(count)
            opt.step(grad_seq[0])
        return 0.1

    opt = optim.SGD(params, lr=stepping)
    with pytest.raises(RuntimeError, match="step_count from 0 to 1"):
        opt.step(grad_seq[0])
    assert opt.step_count == 1


# ------------------------------------------------------------------------------- threads
# 8 Python threads share one optimizer. Its lock makes their calls some serial order; with
# identical gradients every order gives the same bits, so 40 concurrent steps equal 40 serial
# ones exactly (a lost or torn step would not). 300_007 elements keep each native step (GIL
# released) long enough for the threads to overlap.
THREAD_CASES = [
    ("AdamW", dict(lr=lambda c: 1e-2 / (1 + c), max_grad_norm=5.0)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
]


def _shared_problem():
    params, grad_seq = _problem(np.float32, steps=1, shapes=[(300_007,), (5, 3)])
    return params, grad_seq[0]


@pytest.mark.parametrize("case", THREAD_CASES, ids=["AdamW", "SGD-momentum"])
def test_steps_from_threads_equal_serial_steps(case):
    name, kw = case
    params, grads = _shared_problem()
    want, serial = _run(name, kw, params, [grads] * 40)
    opt = getattr(optim, name)([x.copy() for x in params], **kw)
    norms = run_together(8, lambda i: [opt.step(grads) for _ in range(5)])
    assert opt.step_count == 40
    assert all(x.tobytes() == y.tobytes() for x, y in zip(opt.params, want))
    for buf, arrays in serial.state.items():
        assert all(x.tobytes() == y.tobytes() for x, y in zip(opt.state[buf], arrays)), buf
    if "max_grad_norm" in kw:
        assert len({n for per_thread in norms for n in per_thread}) == 1


def _digest(state):
    return hashlib.sha256(b"".join(a.tobytes() for buf in sorted(state) for a in state[buf])).hexdigest()


def test_state_dict_while_threads_step_is_a_state_after_whole_steps():
    params, grads = _shared_problem()
    serial = optim.AdamW([x.copy() for x in params], lr=1e-2)
    after = []  # after[k]: the state after k steps
    for _ in range(36):
        after.append(_digest(serial.state_dict()["state"]))
        serial.step(grads)
    opt = optim.AdamW([x.copy() for x in params], lr=1e-2)

    def work(i):
        if i == 0:
            return [(sd["step"], _digest(sd["state"])) for sd in (opt.state_dict() for _ in range(20))]
        for _ in range(5):
            opt.step(grads)

    seen = run_together(8, work)[0]
    assert all(digest == after[step] for step, digest in seen)
    assert [step for step, _ in seen] == sorted(step for step, _ in seen)
    assert opt.step_count == 35 and _digest(opt.state) == after[35]

# --------------------------------------------------------------------------- determinism
BIG = [(300, 301), (7,), (40_000,), (129, 3)]  # above the serial threshold in total


def _digest_all(dtype):
    params, grad_seq = _problem(dtype, steps=3, shapes=BIG)
    out = []
    for name, kw in CASES + EXTRAS:
        got, _ = _run(name, kw, params, grad_seq)
        out.append(b"".join(x.tobytes() for x in got))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_across_threads_and_simd_paths(dtype):
    reference = None
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                got = _digest_all(dtype)
            if reference is None:
                reference = got
            assert got == reference, (path, threads)


def test_a_list_steps_like_each_tensor_alone():
    rng = np.random.default_rng(3)
    shapes = [(int(rng.integers(1, 3000)),) for _ in range(200)]
    params, grad_seq = _problem(np.float32, steps=2, shapes=shapes)
    together, _ = _run("AdamW", dict(lr=1e-2, max_grad_norm=None), params, grad_seq)
    for i in range(0, 200, 37):
        alone, _ = _run("AdamW", dict(lr=1e-2), [params[i]], [[g[i]] for g in grad_seq])
        assert alone[0].tobytes() == together[i].tobytes()


# ----------------------------------------------------------------------------------- NaN
@pytest.mark.parametrize("case", CASES + EXTRAS, ids=_id)
def test_nan_gradient_propagates_like_torch(case):
    torch = pytest.importorskip("torch")
    name, kw = case
    params, grad_seq = _problem(np.float64, steps=3)
    grad_seq[1][0][2, 3] = np.nan
    got, _ = _run(name, kw, params, grad_seq)
    tkw = {k: v for k, v in kw.items() if k not in TORCH_EXTRAS}
    tparams = [torch.tensor(x.copy(), requires_grad=True) for x in params]
    topt = _torch_optimizer(torch, name, tparams, tkw)
    for grads in grad_seq:
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        if "max_grad_norm" in kw:
            torch.nn.utils.clip_grad_norm_(tparams, kw["max_grad_norm"])
        topt.step()
    for g, tp in zip(got, tparams):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(tp.detach().numpy()))
    if name == "Lion":  # sign(NaN) = 0: the parameter stays where it was, as lion-pytorch's
        assert np.isfinite(got[0][2, 3])
    else:
        assert np.isnan(got[0][2, 3])


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(lr=-1.0), ValueError, r"lr must be in \[0, inf\), got lr=-1.0"),
        (dict(lr=float("nan")), ValueError, r"lr must be finite, got lr=nan"),
        (dict(lr="0.1"), TypeError, r"lr must be a real number"),
        (dict(weight_decay=-0.1), ValueError, r"weight_decay must be in \[0, inf\)"),
        (dict(l1=float("nan")), ValueError, r"l1 must be finite"),
        (dict(prox_l1=-1.0), ValueError, r"prox_l1 must be in"),
        (dict(max_grad_norm=0.0), ValueError, r"max_grad_norm must be in \(0, inf\)"),
        (dict(max_grad_norm=float("inf")), ValueError, r"max_grad_norm must be finite"),
    ],
)
def test_common_hyperparameters_are_checked_when_built(name, kw, exc, match):
    params, _ = _problem(np.float32)
    with pytest.raises(exc, match=match):
        getattr(optim, name)(params, **kw)


@pytest.mark.parametrize(
    "name, kw, exc, match",
    [
        ("Adam", dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\), got betas\[1\]=1.0"),
        ("AdamW", dict(betas=(-0.1, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
        ("Adam", dict(betas=(float("nan"), 0.9)), ValueError, r"betas\[0\] must be finite, got betas\[0\]=nan"),
        ("Adam", dict(betas=(0.9,)), ValueError, r"betas must be a pair"),
        ("Adam", dict(betas=0.9), TypeError, r"betas must be a pair"),
        ("Adam", dict(eps=-1e-8), ValueError, r"eps must be in \(0, inf\)"),
        ("Adam", dict(amsgrad=1), TypeError, r"amsgrad must be a bool"),
        ("SGD", dict(momentum=-0.5), ValueError, r"momentum must be in"),
        ("SGD", dict(nesterov=True), ValueError, r"nesterov=True requires momentum > 0"),
        ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True), ValueError, r"dampening == 0"),
        ("RMSprop", dict(alpha=1.5), ValueError, r"alpha must be in \[0, 1\]"),
        ("RMSprop", dict(eps=float("nan")), ValueError, r"eps must be finite"),
        ("RMSprop", dict(centered="yes"), TypeError, r"centered must be a bool"),
        ("Adagrad", dict(lr_decay=-1.0), ValueError, r"lr_decay must be in"),
        ("Adagrad", dict(initial_accumulator_value=-1.0), ValueError, r"initial_accumulator_value must be in"),
        ("Lion", dict(betas=(1.0, 0.99)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
        ("Lion", dict(betas=(0.9, float("nan"))), ValueError, r"betas\[1\] must be finite"),
        ("Lion", dict(decoupled_weight_decay="yes"), TypeError, r"decoupled_weight_decay must be a bool"),
        ("Lion", dict(lr=0.0, weight_decay=0.1, decoupled_weight_decay=True), ValueError,
         r"lr must be > 0 with decoupled_weight_decay=True"),
        ("NAdam", dict(momentum_decay=-1.0), ValueError, r"momentum_decay must be in \[0, inf\)"),
        ("NAdam", dict(decoupled_weight_decay=1), TypeError, r"decoupled_weight_decay must be a bool"),
        ("NAdam", dict(eps=0.0), ValueError, r"eps must be in \(0, inf\)"),
        ("RAdam", dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        ("RAdam", dict(decoupled_weight_decay="no"), TypeError, r"decoupled_weight_decay must be a bool"),
        ("Adamax", dict(betas=(1.0, 0.9)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
        ("Adamax", dict(eps=float("nan")), ValueError, r"eps must be finite"),
        ("Adadelta", dict(rho=1.5), ValueError, r"rho must be in \[0, 1\]"),
        ("Adadelta", dict(rho=None), TypeError, r"rho must be a real number"),
        ("Adadelta", dict(eps=-1.0), ValueError, r"eps must be in \(0, inf\)"),
        ("LAMB", dict(trust_clamp=0.0), ValueError, r"trust_clamp must be in \(0, inf\)"),
        ("LAMB", dict(trust_clamp=float("inf")), ValueError, r"trust_clamp must be finite"),
        ("LAMB", dict(grad_averaging=None), TypeError, r"grad_averaging must be a bool"),
        ("LAMB", dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        ("LARS", dict(trust_coefficient=-1e-3), ValueError, r"trust_coefficient must be in \[0, inf\)"),
        ("LARS", dict(dampening=1.5), ValueError, r"dampening must be in \[0, 1\]"),
        ("LARS", dict(momentum=float("nan")), ValueError, r"momentum must be finite"),
        ("LARS", dict(nesterov=1), TypeError, r"nesterov must be a bool"),
        ("Adafactor", dict(beta2_decay=0.5), ValueError, r"beta2_decay must be in \(-inf, 0\]"),
        ("Adafactor", dict(beta2_decay=float("nan")), ValueError, r"beta2_decay must be finite"),
        ("Adafactor", dict(d=0.5), ValueError, r"d must be in \[1, inf\)"),
        ("Adafactor", dict(eps=(None, -1.0)), ValueError, r"eps\[1\] must be in \[0, inf\)"),
        ("Adafactor", dict(eps=(float("inf"), 1e-3)), ValueError, r"eps\[0\] must be finite"),
        ("Adafactor", dict(eps=1e-3), TypeError, r"eps must be a pair \(eps1, eps2\)"),
        ("Adafactor", dict(eps=(1e-3,)), TypeError, r"eps must be a pair"),
        ("Adafactor", dict(eps="ab"), TypeError, r"eps must be a pair"),
        ("Adafactor", dict(eps=np.array(1e-3)), TypeError, r"eps must be a pair"),  # 0-d: len() raised
    ],
)
def test_specific_hyperparameters_are_checked_when_built(name, kw, exc, match):
    params, _ = _problem(np.float32)
    with pytest.raises(exc, match=match):
        getattr(optim, name)(params, **kw)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_bad_params_are_named(name):
    ctor = getattr(optim, name)
    a = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"params\[1\] must be C-contiguous"):
        ctor([a, np.zeros((5, 4), np.float32).T])
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] must be writable"):
        ctor([ro])
    with pytest.raises(TypeError, match=r"params\[1\] has dtype float64 but params\[0\] has float32"):
        ctor([a, np.zeros(3)])
    with pytest.raises(TypeError, match=r"params\[0\] must have dtype float32, float64, bfloat16 or float16, got int"):
        ctor([np.zeros(3, np.int64)])
    with pytest.raises(TypeError, match=r"params\[0\] must be a numpy.ndarray"):
        ctor([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"params\[1\] overlaps params\[0\]"):
        ctor([a, a])
    with pytest.raises(ValueError, match=r"params must not be empty"):
        ctor([])
    with pytest.raises(TypeError, match=r"params must be a list"):
        ctor(a)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_bad_grads_are_named(name):
    params = [np.zeros((4, 5), np.float32), np.zeros(3, np.float32)]
    opt = getattr(optim, name)(params)
    with pytest.raises(ValueError, match=r"grads has 1 arrays but params has 2"):
        opt.step([np.zeros((4, 5), np.float32)])
    with pytest.raises(TypeError, match=r"grads\[1\] must have dtype float32, got float64"):
        opt.step([np.zeros((4, 5), np.float32), np.zeros(3)])
    with pytest.raises(ValueError, match=r"grads\[0\] has shape \(5, 4\) but params\[0\] has shape \(4, 5\)"):
        opt.step([np.zeros((5, 4), np.float32), np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match=r"grads\[0\] must be C-contiguous"):
        opt.step([np.zeros((5, 4), np.float32).T, np.zeros(3, np.float32)])
    with pytest.raises(TypeError, match=r"grads\[1\] must be a numpy.ndarray"):
        opt.step([np.zeros((4, 5), np.float32), [0.0, 0.0, 0.0]])
    assert opt.step_count == 0  # nothing was stepped
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False  # grads are only read: a read-only grad is fine
    opt.step([np.ones((4, 5), np.float32), ro])
    assert opt.step_count == 1


def test_state_that_no_longer_matches_is_caught_natively():
    params = [np.zeros((4, 5), np.float32)]
    opt = optim.Adam(params)
    opt.state["exp_avg"][0] = np.zeros((4, 5), np.float64)
    with pytest.raises(TypeError, match=r"state\['exp_avg'\]\[0\] must have dtype float32"):
        opt.step([np.zeros((4, 5), np.float32)])
    opt.state["exp_avg"][0] = opt.params[0]
    with pytest.raises(_core.OverlapError, match="share memory") as err:
        opt.step([np.zeros((4, 5), np.float32)])
    # a structured error: a ValueError that carries the two arrays' names
    assert isinstance(err.value, ValueError)
    assert set(err.value.names) == {"params[0]", "state['exp_avg'][0]"}


# ---------------------------------------------------------------------------- clip utils
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    _, grad_seq = _problem(dtype, steps=1, shapes=BIG)
    grads = grad_seq[0]
    tparams = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g.copy())
    want = float(torch.nn.utils.clip_grad_norm_(tparams, 10.0))
    got = optim.clip_grad_norm(grads, 10.0)
    assert got == pytest.approx(want, rel=RTOL[dtype])
    for g, tp in zip(grads, tparams):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=RTOL[dtype], atol=ATOL[dtype])
    # Below the bound nothing changes.
    before = [g.copy() for g in grads]
    optim.clip_grad_norm(grads, 1e9)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(grads, before))


def test_clip_grad_norm_is_deterministic_across_threads_and_paths():
    _, grad_seq = _problem(np.float32, steps=1, shapes=BIG)
    norms = set()
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                norms.add(optim.clip_grad_norm([g.copy() for g in grad_seq[0]], 1e9))
    assert len(norms) == 1


def test_clip_grad_value():
    g = [np.array([-3.0, -0.5, 0.0, 2.0, np.nan]), np.array([[5.0]])]
    optim.clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(g[0], [-1.0, -0.5, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(g[1], [[1.0]])
    with pytest.raises(ValueError, match=r"clip must be in \[0, inf\)"):
        optim.clip_grad_value(g, -1.0)
    with pytest.raises(ValueError, match=r"grads\[0\] must be C-contiguous"):
        optim.clip_grad_value([np.zeros((3, 2)).T], 1.0)


def test_nan_norm_makes_every_gradient_nan_as_torch():
    g = [np.array([1.0, np.nan]), np.array([2.0])]
    assert math.isnan(optim.clip_grad_norm(g, 1.0))
    assert np.isnan(g[1]).all()


def test_exported():
    assert regtune.optim is optim and "optim" in regtune.__all__ and "penalties" in regtune.__all__
    assert _core.optim_step.__doc__


# ------------------------------------------------------------------- hostile input (issue 16)
# Every case asserts the exception type and that the message names the argument(s) involved.

_HOSTILE_NUMBERS = [
    (float("nan"), ValueError, "finite"),
    (float("inf"), ValueError, "finite"),
    (-float("inf"), ValueError, "finite"),
    (True, TypeError, "real number"),
    ("0.1", TypeError, "real number"),
    (None, TypeError, "real number"),
    ([0.1], TypeError, "real number"),
    (1 + 0j, TypeError, "real number"),
    ({"lr": 0.1}, TypeError, "real number"),
    (np.array([0.1]), TypeError, "real number"),
]
_NONNEGATIVE = ["lr", "weight_decay", "l1", "prox_l1"]


def _one(dtype=np.float32, n=6):
    return [np.zeros(n, dtype)]


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize(
    "arg, bad, exc, what",
    [(arg, *case) for arg in _NONNEGATIVE + ["max_grad_norm"]
     for case in _HOSTILE_NUMBERS + [(-1e-300, ValueError, "must be in")]
     if not (arg == "max_grad_norm" and case[0] is None)]  # None: no clipping, valid
    + [("max_grad_norm", 0.0, ValueError, "must be in"), ("max_grad_norm", -0.0, ValueError, "must be in")],
    ids=lambda v: repr(v)[:12],
)  # fmt: skip
def test_hostile_common_hyperparameters(name, arg, bad, exc, what):
    with pytest.raises(exc, match=rf"{arg} must .*{what}|{arg} must be in"):
        getattr(optim, name)(_one(), **{arg: bad})


@pytest.mark.parametrize(
    "name, kw, exc, match",
    [
        ("SGD", dict(momentum=float("nan")), ValueError, r"momentum must be finite"),
        ("SGD", dict(momentum=True), TypeError, r"momentum must be a real number"),
        ("SGD", dict(momentum="0.9"), TypeError, r"momentum must be a real number"),
        ("SGD", dict(dampening=float("inf")), ValueError, r"dampening must be finite"),
        ("SGD", dict(dampening=None), TypeError, r"dampening must be a real number"),
        ("SGD", dict(momentum=0.9, nesterov=1), TypeError, r"nesterov must be a bool"),
        ("SGD", dict(momentum=0.9, nesterov="yes"), TypeError, r"nesterov must be a bool"),
        ("Adam", dict(betas=(0.9, 0.999, 0.5)), ValueError, r"betas must be a pair"),
        ("Adam", dict(betas=()), ValueError, r"betas must be a pair"),
        ("Adam", dict(betas=None), TypeError, r"betas must be a pair"),
        ("Adam", dict(betas="ab"), TypeError, r"betas must be a pair"),
        ("Adam", dict(betas={0.9, 0.999}), TypeError, r"betas must be a pair"),
        ("Adam", dict(betas={0.9: 1, 0.999: 2}), TypeError, r"betas must be a pair"),
        ("Adam", dict(betas=(0.9, float("inf"))), ValueError, r"betas\[1\] must be finite"),
        ("Adam", dict(betas=(True, 0.9)), TypeError, r"betas\[0\] must be a real number"),
        ("Adam", dict(betas=("0.9", 0.9)), TypeError, r"betas\[0\] must be a real number"),
        ("Adam", dict(betas=(1.0, 0.9)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
        ("AdamW", dict(betas=(0.9, -1e-9)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        ("AdamW", dict(betas=(0.9, 1.5)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        ("Adam", dict(eps=0.0), ValueError, r"eps must be in \(0, inf\), got eps=0.0"),
        ("AdamW", dict(eps=-0.0), ValueError, r"eps must be in \(0, inf\)"),
        ("RMSprop", dict(eps=0.0), ValueError, r"eps must be in \(0, inf\)"),
        ("Adagrad", dict(eps=0.0), ValueError, r"eps must be > 0 when initial_accumulator_value is 0"),
        ("Adam", dict(eps=float("inf")), ValueError, r"eps must be finite"),
        ("Adam", dict(eps="1e-8"), TypeError, r"eps must be a real number"),
        ("Adam", dict(amsgrad=None), TypeError, r"amsgrad must be a bool"),
        ("RMSprop", dict(alpha=float("nan")), ValueError, r"alpha must be finite"),
        ("RMSprop", dict(alpha=-0.1), ValueError, r"alpha must be in \[0, 1\]"),
        ("RMSprop", dict(momentum=-1.0), ValueError, r"momentum must be in"),
        ("RMSprop", dict(centered=0), TypeError, r"centered must be a bool"),
        ("Adagrad", dict(lr_decay=float("inf")), ValueError, r"lr_decay must be finite"),
        ("Adagrad", dict(lr_decay=True), TypeError, r"lr_decay must be a real number"),
        ("Adagrad", dict(initial_accumulator_value=float("nan")), ValueError, r"initial_accumulator_value must be"),
    ],
)
def test_hostile_specific_hyperparameters(name, kw, exc, match):
    with pytest.raises(exc, match=match):
        getattr(optim, name)(_one(), **kw)


def test_adagrad_eps_zero_is_fine_with_a_positive_accumulator():
    w = np.ones(3)
    optim.Adagrad([w], eps=0.0, initial_accumulator_value=0.1).step([np.zeros(3)])
    assert np.array_equal(w, np.ones(3))  # 0 / sqrt(0.1): no nan


@pytest.mark.parametrize("clip_fn, arg", [(optim.clip_grad_norm, "max_norm"), (optim.clip_grad_value, "clip")])
@pytest.mark.parametrize("bad, exc, what", _HOSTILE_NUMBERS, ids=lambda v: repr(v)[:12])
def test_hostile_clip_bounds(clip_fn, arg, bad, exc, what):
    g = [np.ones(3)]
    with pytest.raises(exc, match=rf"{arg} must .*{what}"):
        clip_fn(g, bad)
    assert np.array_equal(g[0], np.ones(3))


# Hyperparameters that alone make a step coefficient infinite: refused, named, nothing stepped.
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: optim.Adam(p, lr=1e308), r"lr / \(1 - betas\[0\]\*\*t\) overflows .*lr=1e\+308"),
        (lambda p: optim.Adam(p, lr=1e300, betas=(1 - 2**-52, 0.999)), r"lr / \(1 - betas\[0\]\*\*t\) overflows"),
        (lambda p: optim.AdamW(p, lr=1e200, weight_decay=1e200), r"lr \* weight_decay overflows .*weight_decay=1e\+200"),
        (lambda p: optim.SGD(p, lr=1e200, prox_l1=1e200), r"lr \* prox_l1 overflows .*prox_l1=1e\+200"),
        (lambda p: optim.RMSprop(p, lr=1e300, prox_l1=1e10), r"lr \* prox_l1 overflows"),
        (lambda p: optim.SGD(p, lr=regtune.schedules.exponential_decay(1e300, 1e300)),
         r"exponential_decay overflows float64 at count=1 .*gamma=1e\+300"),  # lr(0) = 1e300 is fine
    ],
)  # fmt: skip
def test_hyperparameters_that_overflow_a_coefficient_are_refused(make, match):
    p = _one(np.float64)
    opt = make(p)
    start = 1 if "count=1" in match else 0
    opt.step_count = start
    with pytest.raises(ValueError, match=match):
        opt.step([np.ones(6)])
    assert np.array_equal(p[0], np.zeros(6)) and opt.step_count == start


def test_a_huge_step_count_is_named_not_an_overflow_error():
    opt = optim.Adagrad(_one(np.float64), lr_decay=0.5)
    opt.step_count = 10**400
    with pytest.raises(ValueError, match=r"step_count must be < 2\*\*63"):
        opt.step([np.ones(6)])


# ------------------------------------------------------------------- masked arrays and None
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: optim.SGD([np.ma.masked_array(np.zeros(3), mask=[0, 1, 0])]), r"params\[0\] must be a plain"),
        (lambda: optim.Adam([np.zeros(3), np.ma.masked_array(np.zeros(3))]), r"params\[1\] must be a plain"),
        (lambda: optim.SGD([np.zeros(3)]).step([np.ma.masked_array(np.ones(3), mask=[1, 0, 0])]),
         r"grads\[0\] must be a plain"),
        (lambda: optim.clip_grad_norm([np.ma.masked_array(np.ones(3))], 1.0), r"grads\[0\] must be a plain"),
        (lambda: optim.clip_grad_value([np.ones(2), np.ma.masked_array(np.ones(3))], 1.0), r"grads\[1\] must be a plain"),
        (lambda: optim.SGD(None), r"params must be a list"),
        (lambda: optim.SGD([None]), r"params\[0\] must be a numpy.ndarray"),
        (lambda: optim.SGD([np.zeros(3)]).step(None), r"grads must be a list"),
        (lambda: optim.SGD([np.zeros(3)]).step([None]), r"grads\[0\] must be a numpy.ndarray"),
        (lambda: optim.SGD([np.zeros(3)]).step([np.zeros(3, complex)]), r"grads\[0\] must have dtype"),
        (lambda: optim.SGD([np.zeros(3)]).step([np.zeros(3, object)]), r"grads\[0\] must have dtype"),
        (lambda: optim.SGD([np.zeros(3)]).step([np.zeros(3, bool)]), r"grads\[0\] must have dtype"),
        (lambda: optim.SGD([np.zeros(3, complex)]), r"params\[0\] must have dtype"),
        (lambda: optim.SGD([np.array(["a", "b"])]), r"params\[0\] must have dtype"),
        (lambda: optim.SGD([np.zeros(3, object)]), r"params\[0\] must have dtype"),
        (lambda: optim.clip_grad_norm(None, 1.0), r"grads must be a list"),
        (lambda: optim.clip_grad_norm([np.zeros(3, bool)], 1.0), r"grads\[0\] must have dtype"),
    ],
)  # fmt: skip
def test_masked_none_and_non_float_arrays_are_refused(call, match):
    with pytest.raises(TypeError, match=match):
        call()


# ------------------------------------------------------------------------------ overlap
def _arena_case(kind):
    """(optimizer, grads, expected message) for one kind of overlap, built by slicing buffers."""
    buf = np.zeros(40, np.float32)
    if kind == "grad is its param":
        p = [np.zeros(10, np.float32)]
        return optim.SGD(p), [p[0]], r"grads\[0\] overlaps params\[0\]"
    if kind == "grad is a reshape view of its param":
        p = [np.zeros((2, 5), np.float32)]
        return optim.SGD(p), [p[0].reshape(10).reshape(5, 2).reshape(2, 5)], r"grads\[0\] overlaps params\[0\]"
    if kind == "grad shifted into its param":
        return optim.Adam([buf[:10]]), [buf[5:15]], r"grads\[0\] overlaps params\[0\]"
    if kind == "grad shifted into another param":
        return optim.SGD([buf[:10], buf[20:30]]), [buf[30:40], buf[25:35]], r"grads\[1\] overlaps params\[1\]"
    if kind == "grad overlaps the other param":
        return optim.SGD([buf[:10], buf[20:30]]), [buf[5:15], buf[30:40]], r"grads\[0\] overlaps params\[0\]"
    if kind == "grad[1] is params[0]":
        p = [np.zeros(10, np.float32), np.zeros(10, np.float32)]
        return optim.SGD(p), [np.ones(10, np.float32), p[0]], r"grads\[1\] overlaps params\[0\]"
    if kind == "grad one element into a param":
        return optim.SGD([buf[:10]]), [buf[9:19]], r"grads\[0\] overlaps params\[0\]"
    cls, kw = {"exp_avg": (optim.Adam, {}), "exp_avg_sq": (optim.Adam, {}),
               "max_exp_avg_sq": (optim.Adam, dict(amsgrad=True)), "momentum_buffer": (optim.SGD, dict(momentum=0.9)),
               "square_avg": (optim.RMSprop, {}), "grad_avg": (optim.RMSprop, dict(centered=True)),
               "sum": (optim.Adagrad, {})}[kind]  # fmt: skip
    opt = cls([np.zeros(10, np.float32)], **kw)
    view = opt.state[kind][0].reshape(2, 5).reshape(10)  # another array object, the same memory
    return opt, [view], rf"grads\[0\] overlaps state\['{kind}'\]\[0\]"


OVERLAPS = ["grad is its param", "grad is a reshape view of its param", "grad shifted into its param",
            "grad shifted into another param", "grad overlaps the other param", "grad[1] is params[0]",
            "grad one element into a param", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer",
            "square_avg", "grad_avg", "sum"]  # fmt: skip


@pytest.mark.parametrize("kind", OVERLAPS)
def test_a_gradient_that_overlaps_a_written_array_is_refused_naming_both(kind):
    opt, grads, match = _arena_case(kind)
    before = [p.copy() for p in opt.params], {k: [a.copy() for a in v] for k, v in opt.state.items()}
    with pytest.raises(ValueError, match=match):
        opt.step(grads)
    assert opt.step_count == 0
    assert all(np.array_equal(a, b) for a, b in zip(opt.params, before[0]))
    assert all(np.array_equal(a, b) for k in before[1] for a, b in zip(opt.state[k], before[1][k]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda b: optim.SGD([b[:10], b[:10]]), r"params\[1\] overlaps params\[0\]"),
        (lambda b: optim.Adam([b[:10], b[5:15]]), r"params\[1\] overlaps params\[0\]"),
        (lambda b: optim.SGD([b[:12].reshape(3, 4), b[8:16]]), r"params\[1\] overlaps params\[0\]"),
        (lambda b: optim.clip_grad_norm([b[:10], b[9:19]], 1.0), r"grads\[1\] overlaps grads\[0\]"),
        (lambda b: optim.clip_grad_value([b[:10], b[:10]], 1.0), r"grads\[1\] overlaps grads\[0\]"),
    ],
)
def test_the_same_buffer_twice_in_a_written_list_is_refused(make, match):
    buf = np.arange(40, dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        make(buf)
    assert np.array_equal(buf, np.arange(40, dtype=np.float32))


@pytest.mark.parametrize("slot, cls, kw", [("exp_avg", optim.Adam, {}), ("momentum_buffer", optim.SGD, dict(momentum=0.9)),
                                           ("sum", optim.Adagrad, {})])  # fmt: skip
def test_a_state_buffer_set_to_a_parameter_is_named(slot, cls, kw):
    p = [np.zeros(10), np.zeros(10)]
    opt = cls(p, **kw)
    opt.state[slot][1] = p[0]
    with pytest.raises(ValueError, match=rf"state\['{slot}'\]\[1\] overlaps params\[0\].*share memory"):
        opt.step([np.ones(10), np.ones(10)])


def test_disjoint_views_of_one_buffer_and_a_shared_gradient_are_fine():
    """Parameters and gradients cut from one arena without overlap, and one gradient array
    given for two parameters (gradients are only read): stepped exactly as separate arrays."""
    arena = np.zeros(60)
    params, grads = [arena[:10], arena[10:20]], [arena[20:30], arena[20:30]]
    grads[0][:] = np.arange(10)
    twin = [np.zeros(10), np.zeros(10)]
    optim.Adam(params, lr=0.1).step(grads)
    optim.Adam(twin, lr=0.1).step([np.arange(10.0), np.arange(10.0)])
    assert np.array_equal(params[0], twin[0]) and np.array_equal(params[1], twin[1])
    assert np.array_equal(arena[20:30], np.arange(10.0))  # the gradients were not written


def test_the_overlap_helper_is_exact_for_interleaved_and_gapped_views():
    x = np.zeros(64)
    assert first_overlap([("a", x[::2])], [("b", x[1::2])]) is None  # bounds overlap, no element does
    assert first_overlap([("a", x[::2]), ("b", x[1::2])]) is None
    assert first_overlap([("a", x[::2])], [("b", x[2::4])]) == "b overlaps a"
    m = x.reshape(8, 8)
    assert first_overlap([("a", m[:, :4])], [("b", m[:, 4:])]) is None  # column blocks
    assert first_overlap([("a", m[:, :4])], [("b", m[:, 3:5])]) == "b overlaps a"
    assert first_overlap([], [("a", x), ("b", x)]) is None  # two reads may share memory
    assert first_overlap([("a", x[:0]), ("b", x[:0])]) is None  # nothing to share


def test_an_arena_of_many_views_is_checked_without_quadratic_work():
    arena = np.zeros(2 * 500 * 4, np.float32)
    params = [arena[i * 4 : i * 4 + 4] for i in range(500)]
    grads = [arena[2000 + i * 4 : 2000 + i * 4 + 4] for i in range(500)]
    opt = optim.SGD(params, lr=0.1)
    opt.step(grads)  # fine: disjoint
    grads[250] = arena[1998:2002]
    with pytest.raises(ValueError, match=r"grads\[250\] overlaps params\[499\]"):
        opt.step(grads)


# ------------------------------------------------------------------------- load_state_dict
def _adam_state():
    p = [np.zeros(4), np.zeros(3)]
    opt = optim.Adam(p, lr=0.1, amsgrad=True)
    opt.step([np.arange(4.0), np.ones(3)])
    return opt, p, opt.state_dict()


@pytest.mark.parametrize(
    "edit, exc, match",
    [
        (lambda sd: sd.update(step=1.0), TypeError, r"state_dict\['step'\] must be an int"),
        (lambda sd: sd.update(step=True), TypeError, r"state_dict\['step'\] must be an int"),
        (lambda sd: sd.update(step=-1), ValueError, r"state_dict\['step'\] must be >= 0"),
        (lambda sd: sd.update(step=2**63), ValueError, r"state_dict\['step'\] must be < 9223372036854775808"),
        (lambda sd: sd.update(step=None), TypeError, r"state_dict\['step'\] must be an int"),
        (lambda sd: sd["state"]["exp_avg"].__setitem__(0, np.ma.masked_array(np.zeros(4))), TypeError,
         r"state\['exp_avg'\]\[0\] must be a plain"),
        (lambda sd: sd["state"]["exp_avg"].__setitem__(1, None), TypeError, r"state\['exp_avg'\]\[1\] must be a numpy"),
        (lambda sd: sd["state"]["exp_avg_sq"].__setitem__(0, -np.ones(4)), ValueError,
         r"state\['exp_avg_sq'\]\[0\] must be >= 0"),
        (lambda sd: sd["state"]["max_exp_avg_sq"].__setitem__(1, np.array([0.0, -1e-300, 1.0])), ValueError,
         r"state\['max_exp_avg_sq'\]\[1\] must be >= 0"),
        (lambda sd: sd["state"]["exp_avg"].__setitem__(0, np.zeros(4, complex)), TypeError,
         r"state\['exp_avg'\]\[0\] has dtype complex128"),
        (lambda sd: sd["state"].__setitem__("exp_avg", None), TypeError, r"state\['exp_avg'\] must be a list"),
        (lambda sd: sd.__setitem__("state", None), ValueError, r"state_dict\['state'\] must hold the buffers"),
    ],
)  # fmt: skip
def test_hostile_state_dicts_are_refused_and_change_nothing(edit, exc, match):
    opt, _, sd = _adam_state()
    before = opt.state_dict()
    edit(sd)
    with pytest.raises(exc, match=match):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["step"] == before["step"]
    assert all(np.array_equal(a, b) for k in before["state"] for a, b in zip(after["state"][k], before["state"][k]))


#: An optimizer of every rule with every buffer it can keep (momentum, amsgrad, centered, both of
#: Adafactor's kinds of state, 16-bit params with float32, 16-bit and master state).
_STATEFUL = [
    ("SGD", np.float32, dict(lr=0.1, momentum=0.9)), ("Adam", np.float64, dict(amsgrad=True)),
    ("AdamW", np.float32, dict(amsgrad=True)), ("RMSprop", np.float32, dict(momentum=0.9, centered=True)),
    ("Adagrad", np.float32, {}), ("Lion", np.float32, {}), ("NAdam", np.float32, {}), ("RAdam", np.float32, {}),
    ("Adamax", np.float32, {}), ("Adadelta", np.float32, {}), ("LAMB", np.float32, {}),
    ("LARS", np.float32, dict(momentum=0.9)), ("Adafactor", np.float32, {}),
    ("AdamW", ml_dtypes.bfloat16, dict(precision="master")),
    ("Adam", ml_dtypes.bfloat16, dict(state_dtype=ml_dtypes.bfloat16)),
]  # fmt: skip


def _stateful(name, dtype, kw):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in ((3, 4), (5,))]
    opt = getattr(optim, name)(params, **kw)
    opt.step([np.ones_like(p) for p in params])
    return opt, params


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("case", _STATEFUL, ids=lambda c: f"{c[0]}-{np.dtype(c[1]).name}")
def test_non_finite_loaded_state_is_refused_naming_the_buffer(case, bad):
    """A NaN or inf in any buffer would reach every parameter at the next step (Adafactor's
    row_var feeds the mean that divides every v): refused, naming the buffer and the element,
    and nothing is loaded."""
    opt, params = _stateful(*case)
    checked = 0
    for name, arrays in opt.state.items():
        for i, a in enumerate(arrays):
            if a is None:
                continue
            sd = opt.state_dict()
            sd["state"][name][i].flat[-1] = bad
            before = opt.state_dict()
            last = ", ".join(str(d - 1) for d in a.shape)
            with pytest.raises(ValueError, match=rf"state\['{name}'\]\[{i}\]\[{last}\] is {bad}.* finite"):
                opt.load_state_dict(sd)
            after = opt.state_dict()
            assert after["step"] == before["step"]
            for k in before["state"]:
                assert all(x is None and y is None or x.tobytes() == y.tobytes()
                           for x, y in zip(after["state"][k], before["state"][k]))  # fmt: skip
            checked += 1
    assert checked >= len(opt.state)


def test_a_nan_loaded_into_adafactor_row_var_no_longer_poisons_the_parameters():
    """The case of issue 27: a NaN written into a loaded row_var was accepted and every
    parameter of that tensor was NaN after the next step."""
    opt, params = _stateful("Adafactor", np.float32, {})
    sd = opt.state_dict()
    sd["state"]["row_var"][0][1, 0] = np.nan
    with pytest.raises(ValueError, match=r"state\['row_var'\]\[0\]\[1, 0\] is nan"):
        opt.load_state_dict(sd)
    opt.step([np.ones_like(p) for p in params])
    assert all(np.isfinite(p).all() for p in params)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("cls", [optim.EMA, optim.SWA])
def test_non_finite_loaded_averages_are_refused(cls, bad):
    params = [np.ones((2, 3), np.float32), np.ones(4, np.float32)]
    avg = cls(params)
    avg.update()
    sd = avg.state_dict()
    sd["averages"][1][2] = bad
    with pytest.raises(ValueError, match=rf"state_dict\['averages'\]\[1\]\[2\] is {bad}.* finite"):
        avg.load_state_dict(sd)
    assert avg.n_averaged == 1 and all(np.array_equal(a, p) for a, p in zip(avg.averages, params))


def test_loading_views_of_the_parameters_or_of_its_own_buffers_is_exact():
    opt, p, _ = _adam_state()
    p[0][:] = [1, 2, 3, 4]
    p[1][:] = [5, 6, 7]
    # arrays that are the parameters themselves: copied in, the parameters untouched
    opt.load_state_dict({"step": 3, "state": {k: list(p) for k in opt.state}})
    assert all(np.array_equal(opt.state[k][0], [1, 2, 3, 4]) for k in opt.state)
    assert np.array_equal(p[0], [1, 2, 3, 4]) and opt.step_count == 3
    # the optimizer's own buffers, permuted: each buffer gets the old value of another
    opt.state["exp_avg"][0][:] = 10.0
    opt.state["exp_avg_sq"][0][:] = 20.0
    opt.state["max_exp_avg_sq"][0][:] = 30.0
    s = opt.state
    permuted = {"exp_avg": s["exp_avg_sq"], "exp_avg_sq": s["max_exp_avg_sq"], "max_exp_avg_sq": s["exp_avg"]}
    opt.load_state_dict({"step": 3, "state": permuted})
    assert [float(opt.state[k][0][0]) for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")] == [20.0, 30.0, 10.0]


# --------------------------------------------------------------------------- property based
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_bad_scalars = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, None, "1", b"1", [1.0], (1.0,), {}, 1j]),
    st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(OPTIMIZERS), arg=st.sampled_from(_NONNEGATIVE), bad=_bad_scalars)
def test_any_bad_nonnegative_hyperparameter_is_named(name, arg, bad):
    with pytest.raises((TypeError, ValueError), match=arg):
        getattr(optim, name)(_one(), **{arg: bad})


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 30), length=st.integers(1, 10), pstart=st.integers(0, 30), plen=st.integers(1, 10))
def test_any_overlapping_gradient_slice_is_refused_and_any_disjoint_one_steps(start, length, pstart, plen):
    buf = np.zeros(40)
    if pstart + plen > 40 or start + length > 40 or length != plen:
        return
    opt = optim.SGD([buf[pstart : pstart + plen]], lr=0.1)
    g = buf[start : start + length]
    if start < pstart + plen and pstart < start + length:
        with pytest.raises(ValueError, match=r"grads\[0\] overlaps params\[0\]"):
            opt.step([g])
    else:
        opt.step([g])
        assert opt.step_count == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centered_rmsprop_stays_finite_on_a_steady_gradient(dtype):
    # square_avg - grad_avg**2 rounds below 0 once both averages have converged (torch then
    # takes the sqrt of a negative number and returns NaN, from step ~3200 in float64 here).
    w = [np.zeros(64, dtype)]
    g = [np.full(64, 0.1, dtype)]
    opt = optim.RMSprop(w, lr=1e-3, alpha=0.99, centered=True)
    for _ in range(4000):
        opt.step(g)
    assert np.isfinite(w[0]).all() and np.isfinite(opt.state["square_avg"][0]).all()
    # and a NaN gradient still gives NaN (the clamp does not hide it)
    opt.step([np.full(64, np.nan, dtype)])
    assert np.isnan(w[0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nstates", [0, 1, 2, 3])
def test_roofline_yardstick_moves_every_array_of_the_step(dtype, nstates):
    # bench/bench_roofline.py divides step times by this kernel's: it must read param and grad
    # and read and write param and every given state array, over every element, on every path
    # (a yardstick that skipped an array would flatter every kernel measured against it).
    sizes = [1, 15, 16, 17, 63, 64, 1000, 70_001]
    rng = np.random.default_rng(4)
    for path in SIMD_PATHS:
        with simd_path(path), num_threads(2):
            params = [rng.standard_normal(n).astype(dtype) for n in sizes]
            grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
            states = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(nstates)]
            want_p = [p + g for p, g in zip(params, grads)]
            want_s = [[s + g for s, g in zip(lst, grads)] for lst in states]
            _core.optim_step("stream", params, grads, states + [None] * (4 - nstates), ["a", "b", "c", "d"], {}, {})
            for got, want in zip(params, want_p):
                np.testing.assert_array_equal(got, want)
            for lst, wlst in zip(states, want_s):
                for got, want in zip(lst, wlst):
                    np.testing.assert_array_equal(got, want)


def test_lion_moves_every_element_by_lr_or_not_at_all():
    # sign(c) is -1, 0 or +1: with no weight decay each element moves by exactly lr, or stays
    # where c is 0 (and where it is NaN, as torch's sgn_).
    p = np.array([1.0, 2.0, -3.0, 4.0, 5.0])
    g = np.array([0.5, -2.0, 0.0, np.nan, 1e-300])
    before = p.copy()
    optim.Lion([p], lr=0.25).step([g])
    np.testing.assert_array_equal(p - before, [-0.25, 0.25, 0.0, 0.0, -0.25])


def test_lion_decoupled_weight_decay_divides_by_the_first_lr():
    # lion-pytorch divides weight_decay by the lr it was built with; regtune by lr(0) for a
    # schedule, so halving the lr later halves the decay per step, as lion-pytorch's does.
    p = np.array([1.0])
    opt = optim.Lion([p], lr=lambda t: 0.1 if t == 0 else 0.05, weight_decay=0.01, decoupled_weight_decay=True)
    opt.step([np.array([0.0])])
    assert p[0] == 1.0 * (1 - 0.1 * (0.01 / 0.1))
    opt.step([np.array([0.0])])
    assert p[0] == (1.0 * (1 - 0.1 * (0.01 / 0.1))) * (1 - 0.05 * (0.01 / 0.1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lion_is_bit_identical_to_lion_pytorch(dtype):
    # lion-pytorch's update_fn is torch element-wise ops (mul_, add with alpha, sgn_), whose
    # vectorized loops also cover each tensor's tail; regtune computes the same operations, so
    # 50 steps agree bit for bit on every path (the README says so).
    torch = pytest.importorskip("torch")
    lion_pytorch = pytest.importorskip("lion_pytorch")
    shapes = [(1,), (7,), (10_007,), (33, 65)]
    for path in SIMD_PATHS:
        for kw in (dict(lr=1e-3), dict(lr=1e-3, betas=(0.95, 0.98), weight_decay=0.1)):
            params, grad_seq = _problem(dtype, seed=11, shapes=shapes)
            with simd_path(path):
                got, _ = _run("Lion", kw, params, grad_seq)
            tparams = [torch.tensor(x.copy(), requires_grad=True) for x in params]
            topt = lion_pytorch.Lion(tparams, **kw)
            for grads in grad_seq:
                for tp, g in zip(tparams, grads):
                    tp.grad = torch.tensor(g.copy())
                topt.step()
            for g, tp in zip(got, tparams):
                assert g.tobytes() == tp.detach().numpy().tobytes(), (path, kw)


# ------------------------------------------------------------------------ weight averages
def _torch_averaged(torch, kind, params, seq, decay=0.999):
    """torch.optim.swa_utils.AveragedModel over a ParameterList, updated after each value."""
    from torch.optim import swa_utils

    module = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(x.copy())) for x in params])
    fn = swa_utils.get_ema_multi_avg_fn(decay) if kind == "EMA" else None
    avg = swa_utils.AveragedModel(module, multi_avg_fn=fn)
    for values in seq:
        with torch.no_grad():
            for p, v in zip(module, values):
                p.copy_(torch.tensor(v))
        avg.update_parameters(module)
    return [p.detach().numpy() for p in avg.module]


def _value_seq(dtype, n=12, shapes=SHAPES, seed=4):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(n)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind, kw", [("EMA", dict(decay=0.9)), ("EMA", dict(decay=0.3)), ("SWA", {})])
def test_averages_are_torch_averaged_models_bit_for_bit(kind, kw, dtype, torch_scalars_like):
    torch = pytest.importorskip("torch")
    torch_scalars_like(dtype)  # SWA's weight 1 / (n + 1) is a tensor of torch's default dtype
    seq = _value_seq(dtype)
    params = [x.copy() for x in seq[0]]
    avg = getattr(optim, kind)(params, **kw)
    for values in seq:
        for p, v in zip(params, values):
            p[...] = v
        avg.update()
    want = _torch_averaged(torch, kind, seq[0], seq, **kw)
    assert avg.n_averaged == len(seq)
    for a, w in zip(avg.averages, want):
        assert a.tobytes() == w.tobytes()


def test_swa_is_the_mean_and_ema_warmup_follows_tensorflow():
    seq = _value_seq(np.float64, n=7)
    params = [x.copy() for x in seq[0]]
    swa, ema = optim.SWA(params), optim.EMA(params, decay=0.99, warmup=True)
    want = [x.copy() for x in seq[0]]
    for n, values in enumerate(seq):
        for p, v in zip(params, values):
            p[...] = v
        swa.update()
        ema.update()
        d = min(0.99, (1 + n) / (10 + n))
        want = [v.copy() if n == 0 else w + (1 - d) * (v - w) for w, v in zip(want, values)]
    for a, m in zip(swa.averages, [np.mean([v[i] for v in seq], axis=0) for i in range(len(SHAPES))]):
        np.testing.assert_allclose(a, m, rtol=1e-13, atol=1e-15)
    for a, w in zip(ema.averages, want):
        np.testing.assert_allclose(a, w, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES + EXTRAS, ids=_id)
def test_ema_in_the_step_equals_a_step_then_an_update(case, dtype):
    name, kw = case
    params, grad_seq = _problem(dtype, steps=6)
    a_params, b_params = [x.copy() for x in params], [x.copy() for x in params]
    a_ema = optim.EMA(a_params, decay=0.9, warmup=True)
    a = getattr(optim, name)(a_params, **kw, ema=a_ema)
    b_ema = optim.EMA(b_params, decay=0.9, warmup=True)
    b = getattr(optim, name)(b_params, **kw)
    for grads in grad_seq:
        a.step(grads)
        b.step(grads)
        b_ema.update()
    assert a_ema.n_averaged == b_ema.n_averaged == 6
    for x, y in zip(a_params + a_ema.averages, b_params + b_ema.averages):
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_ema_steps_are_bit_identical_across_threads_and_simd_paths(dtype):
    params, grad_seq = _problem(dtype, steps=3, shapes=BIG)
    reference = None
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                out = []
                for name, kw in [("AdamW", dict(lr=1e-2)), ("SGD", dict(lr=0.05, momentum=0.9)),
                                 ("NAdam", dict(lr=2e-3, max_grad_norm=5.0))]:  # fmt: skip
                    p = [x.copy() for x in params]
                    ema = optim.EMA(p, decay=0.99)
                    opt = getattr(optim, name)(p, **kw, ema=ema)
                    for grads in grad_seq:
                        opt.step(grads)
                    swa = optim.SWA(p)
                    swa.update()
                    swa.update()
                    out.append(b"".join(x.tobytes() for x in p + ema.averages + swa.averages))
            if reference is None:
                reference = out
            assert out == reference, (path, threads)


def test_average_state_dict_round_trips_and_copy_to_writes_the_averages():
    params, grad_seq = _problem(np.float32, steps=6)
    ema = optim.EMA(params, decay=0.8)
    opt = optim.AdamW(params, lr=1e-2, ema=ema)
    for grads in grad_seq[:3]:
        opt.step(grads)
    sd = ema.state_dict()
    twin_params = [x.copy() for x in params]
    twin = optim.EMA(twin_params, decay=0.8)
    twin.load_state_dict(sd)
    assert twin.n_averaged == 3
    twin_opt = optim.AdamW(twin_params, lr=1e-2, ema=twin)
    twin_opt.load_state_dict(opt.state_dict())
    for grads in grad_seq[3:]:
        opt.step(grads)
        twin_opt.step(grads)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(ema.averages, twin.averages))
    out = [np.empty_like(p) for p in params]
    ema.copy_to(out)
    assert all(np.array_equal(o, a) for o, a in zip(out, ema.averages))
    ema.copy_to()
    assert all(np.array_equal(p, a) for p, a in zip(params, ema.averages))
    assert sd["n_averaged"] == 3 and ema.n_averaged == 6  # state_dict() is a copy
    c = copy.deepcopy(opt)
    assert c.ema is not ema and c.ema.params[0] is c.params[0] and c.ema._lock is not ema._lock


class _Exporter:
    """A minimal DLPack exporter over an ndarray: what a CPU torch tensor offers NumPy."""

    def __init__(self, a):
        self._a, self.shape, self.dtype = a, a.shape, a.dtype

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _read_only(a):
    a.flags.writeable = False
    return a


def _ema_of_two():
    params = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
    ema = optim.EMA(params, decay=0.5)
    ema.update()
    params[0] += 10
    ema.update()
    return ema


@pytest.mark.parametrize(
    "make_out, exc, match",
    [
        (lambda: [np.zeros((2, 3), np.float32), _read_only(np.zeros(4, np.float32))], ValueError,
         r"params\[1\] must be writable"),
        (lambda: [np.zeros((3, 2), np.float32).T, np.zeros(4, np.float32)], ValueError, r"params\[0\] must be C-contiguous"),
        (lambda: [np.zeros((2, 3), np.float32), np.zeros(5, np.float32)], ValueError,
         r"params\[1\] must be an array of shape \(4,\) and dtype float32, got shape \(5,\) and dtype float32"),
        (lambda: [np.zeros((2, 3), np.float64), np.zeros(4, np.float32)], ValueError,
         r"params\[0\] must be an array of shape \(2, 3\) and dtype float32, got shape \(2, 3\) and dtype float64"),
        (lambda: [np.ma.masked_array(np.zeros((2, 3), np.float32)), np.zeros(4, np.float32)], TypeError,
         r"params\[0\] must be a plain numpy.ndarray"),
        (lambda: [[0.0] * 6, np.zeros(4, np.float32)], TypeError, r"params\[0\] must be a numpy.ndarray"),
    ],
)  # fmt: skip
def test_ema_copy_to_names_the_array(make_out, exc, match):
    """Issue 27: a read-only array gave NumPy's "assignment destination is read-only"."""
    ema = _ema_of_two()
    out = make_out()
    before = [np.array(o, copy=True) for o in out]
    with pytest.raises(exc, match=match):
        ema.copy_to(out)
    assert all(np.array_equal(np.asarray(o), b) for o, b in zip(out, before))  # nothing written


def test_ema_copy_to_writes_dlpack_tensors_in_place():
    """Issue 27: a CPU torch tensor of the right shape and dtype was refused as if its shape and
    dtype were wrong; it goes through the same DLPack view as every other function's arrays."""
    ema = _ema_of_two()
    targets = [np.full((2, 3), np.nan, np.float32), np.full(4, np.nan, np.float32)]
    ema.copy_to([_Exporter(t) for t in targets])
    assert all(np.array_equal(t, a) for t, a in zip(targets, ema.averages))


def test_ema_copy_to_writes_cpu_torch_tensors():
    torch = pytest.importorskip("torch")
    ema = _ema_of_two()
    tensors = [torch.full((2, 3), float("nan")), torch.nn.Parameter(torch.zeros(4))]
    ema.copy_to(tensors)
    assert all(np.array_equal(t.detach().numpy(), a) for t, a in zip(tensors, ema.averages))
    with pytest.raises(ValueError, match=r"params\[0\] must be an array of shape \(2, 3\) and dtype float32, got "
                                         r"shape \(2, 3\) and dtype float64"):  # fmt: skip
        ema.copy_to([torch.zeros((2, 3), dtype=torch.float64), torch.zeros(4)])


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda p: optim.EMA(p, decay=1.5), ValueError, r"decay must be in \[0, 1\], got decay=1.5"),
        (lambda p: optim.EMA(p, decay=float("nan")), ValueError, r"decay must be finite"),
        (lambda p: optim.EMA(p, decay="0.9"), TypeError, r"decay must be a real number"),
        (lambda p: optim.EMA(p, warmup=1), TypeError, r"warmup must be a bool"),
        (lambda p: optim.EMA([]), ValueError, r"params must not be empty"),
        (lambda p: optim.SWA([p[0], p[0]]), ValueError, r"params\[1\] overlaps params\[0\]"),
        (lambda p: optim.SGD(p, ema=0.999), TypeError, r"ema must be a regtune.optim.EMA or SWA, got float"),
        (lambda p: optim.SGD(p, ema=optim.EMA([x.copy() for x in p])), ValueError, r"ema must average this optimizer's params"),
        (lambda p: optim.Adam(p, ema=optim.EMA(p[:2])), ValueError, r"ema must average this optimizer's params"),
        (lambda p: optim.EMA(p).copy_to([np.zeros(3)]), ValueError, r"params has 1 arrays but averages has 4"),
        (lambda p: optim.EMA(p).copy_to([np.zeros_like(x, np.float64) for x in p]), ValueError, r"params\[0\] must be an array of shape"),
        (lambda p: optim.EMA(p).load_state_dict({"n_averaged": -1, "averages": p}), ValueError, r"n_averaged"),
        (lambda p: optim.EMA(p).load_state_dict({"averages": p}), ValueError, r"keys 'n_averaged' and 'averages'"),
        (lambda p: optim.EMA(p).load_state_dict({"n_averaged": 1, "averages": [x.astype(np.float64) for x in p]}),
         TypeError, r"state_dict\['averages'\]\[0\] has dtype float64"),
        (lambda p: optim.EMA(p).load_state_dict({"n_averaged": 1, "averages": [x.ravel() for x in p]}),
         ValueError, r"state_dict\['averages'\]\[0\] has shape"),
    ],
)  # fmt: skip
def test_bad_averages_are_named(make, exc, match):
    params, _ = _problem(np.float32)
    with pytest.raises(exc, match=match):
        make(params)


def test_a_gradient_overlapping_the_averages_is_refused_and_changes_nothing():
    params, grad_seq = _problem(np.float64, steps=1)
    ema = optim.EMA(params)
    opt = optim.Adam(params, ema=ema)
    grads = list(grad_seq[0])
    grads[1] = ema.averages[1]
    before = [a.copy() for a in params + ema.averages]
    with pytest.raises(ValueError, match=r"ema.averages\[1\] overlaps grads\[1\]|grads\[1\] overlaps ema.averages\[1\]"):
        opt.step(grads)
    assert opt.step_count == 0 and ema.n_averaged == 0
    assert all(np.array_equal(a, b) for a, b in zip(params + ema.averages, before))


def test_averages_replaced_by_a_parameter_are_refused_by_update():
    params, _ = _problem(np.float64)
    ema = optim.EMA(params)
    ema.averages[2] = params[2]
    with pytest.raises(ValueError, match=r"params\[2\] overlaps averages\[2\]; the averages must not share"):
        ema.update()
    assert ema.n_averaged == 0


@pytest.mark.parametrize("cls", [optim.LAMB, optim.LARS])
def test_dask_steps_refuse_the_rules_with_a_trust_ratio(cls):
    pytest.importorskip("dask")
    from regtune.dask import optim as rdo

    with pytest.raises(ValueError, match=rf"opt_kind {cls.__name__} scales each tensor by a ratio of its norms"):
        rdo.step(cls, [np.zeros(4)], [np.ones(4)])


def test_lars_adapts_weights_not_biases_and_lamb_clamps_the_weight_norm():
    w, b = np.full((4, 5), 3.0), np.full(5, 3.0)
    g = [np.ones((4, 5)), np.ones(5)]
    opt = optim.LARS([w, b], lr=1.0, momentum=0.0, trust_coefficient=0.01)
    opt.step(g)
    assert np.allclose(w, 3.0 - 0.01 * np.sqrt(180) / np.sqrt(20))  # trust = 0.01 |w| / |g|
    assert np.array_equal(b, np.full(5, 2.0))  # a bias: plain SGD
    p = np.full(100, 5.0)  # |p| = 50 > 10: the ratio uses 10
    optim.LAMB([p], lr=0.1, eps=1e-12).step([np.ones(100)])
    # m = 0.1, v = 0.001: u = 0.1 / sqrt(0.001) = 3.1623 per element, |u| = 31.623; step size lr / 0.1
    np.testing.assert_allclose(p, 5.0 - 1.0 * (10 / 31.6227766) * 3.16227766, rtol=1e-6)


@pytest.mark.parametrize("cls", [optim.LAMB, optim.LARS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduce_sums_makes_a_shards_step_the_whole_tensors(cls, dtype):
    """A shard of each tensor given the whole tensors' sums of squares (what regtune.torch's
    all-reduce makes of the shards' sums under FSDP2) steps its elements bit for bit as the
    whole tensors' step; without them its trust ratios are its own."""
    rng = np.random.default_rng(7)
    shapes = [(6, 5), (6, 3), (6,)]
    whole = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    kw = dict(lr=0.1, weight_decay=0.01, max_grad_norm=None)
    a = cls([x.copy() for x in whole], **kw)
    seen = []
    a.reduce_sums = lambda sums: seen.append(sums.copy())
    shard = cls([x[:2].copy() for x in whole], **kw)  # the first 2 rows of each: the rest lives elsewhere
    own = cls([x[:2].copy() for x in whole], **kw)
    for t, gs in enumerate(grads):
        a.step(gs)

        def whole_sums(sums, t=t):
            assert sums.shape == (3, 2) and sums.dtype == np.float64
            assert np.all(sums <= seen[t] * (1 + 1e-12))  # a part of each sum
            sums[...] = seen[t]

        shard.reduce_sums = whole_sums
        shard.step([g[:2] for g in gs])
        own.step([g[:2] for g in gs])
        assert len(seen) == t + 1
    assert all(np.array_equal(p[:2], q) for p, q in zip(a.params, shard.params))
    assert not all(np.array_equal(p[:2], q) for p, q in zip(a.params, own.params))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adafactor_reduce_makes_a_shards_step_the_whole_tensors(dtype):
    """Adafactor's three reductions: a shard of the leading axis (a matrix's rows, a batch of
    matrices' first matrix, a vector's elements) given the whole tensors' sums and counts at
    each stage steps its elements bit for bit as the whole tensors' step."""
    rng = np.random.default_rng(3)
    shapes = [(6, 5), (3, 4, 5), (7,)]
    cut = [2, 1, 3]  # the shard: the first cut[t] entries of the leading axis
    whole = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    a = optim.Adafactor([x.copy() for x in whole], lr=0.05, weight_decay=0.01)
    shard = optim.Adafactor([x[:c].copy() for x, c in zip(whole, cut)], lr=0.05, weight_decay=0.01)
    seen = {}
    a.reduce_sums = lambda stage, sums, offsets: seen.__setitem__(stage, (sums.copy(), offsets.copy()))

    def from_whole(stage, sums, offsets):
        full, full_off = seen[stage]
        assert sums.dtype == np.float64 and offsets.dtype == np.int64 and len(offsets) == 4
        for t, ndim in enumerate(len(s) for s in shapes):
            lo, hi = offsets[t], offsets[t + 1]
            if ndim == 2 or stage == 2:
                sums[lo:hi] = full[full_off[t]:full_off[t + 1]]
            elif stage == 0:  # the sums over the tensor and its count; the factors are per matrix
                sums[lo:lo + 2] = full[full_off[t]:full_off[t] + 2]

    shard.reduce_sums = from_whole
    for gs in grads:
        a.step(gs)
        assert sorted(seen) == [0, 1, 2]
        shard.step([g[:c] for g, c in zip(gs, cut)])
    assert all(np.array_equal(p[:c], q) for p, q, c in zip(a.params, shard.params, cut))
    assert np.array_equal(a.state["row_var"][0][:2], shard.state["row_var"][0])
    assert np.array_equal(a.state["col_var"][0], shard.state["col_var"][0])


def test_reduce_sums_is_checked_and_its_errors_surface():
    p, g = np.ones((4, 4), np.float32), np.ones((4, 4), np.float32)
    opt = optim.LAMB([p])
    opt.reduce_sums = 3
    with pytest.raises(TypeError, match="reduce must be None or a callable, got int"):
        opt.step([g])

    def boom(sums):
        raise RuntimeError("all-reduce failed")

    opt.reduce_sums = boom
    before = p.copy()
    with pytest.raises(RuntimeError, match="all-reduce failed"):
        opt.step([g])
    assert np.array_equal(p, before)  # the parameters are not stepped (the moments were)
    opt.reduce_sums = lambda sums: sums.shape and sums.resize((2, 1), refcheck=False)
    with pytest.raises(ValueError, match="reduce changed the shape of the sums"):
        opt.step([g])
    ada = optim.Adafactor([p])
    ada.reduce_sums = "x"
    with pytest.raises(TypeError, match="reduce must be None or a callable, got str"):
        ada.step([g])
    ada.reduce_sums = lambda stage, sums, offsets: boom(sums) if stage == 1 else None
    with pytest.raises(RuntimeError, match="all-reduce failed"):
        ada.step([g])
    assert np.array_equal(p, before)
    sgd = optim.SGD([p], momentum=0.9)  # an element-wise rule has no sums: never called
    sgd.reduce_sums = boom
    sgd.step([g])


def test_adafactor_keeps_factored_state_for_matrices_and_checks_it():
    params, grad_seq = _problem(np.float32, steps=2)
    opt = optim.Adafactor(params)
    shapes = {k: [None if a is None else a.shape for a in v] for k, v in opt.state.items()}
    assert shapes == {"row_var": [(37, 1), None, (3, 4, 1), None], "col_var": [(1, 53), None, (3, 1, 7), None],
                      "variance": [None, (5,), None, (1,)]}  # fmt: skip
    opt.step(grad_seq[0])
    sd = opt.state_dict()
    twin = optim.Adafactor([x.copy() for x in opt.params])
    twin.load_state_dict(sd)
    opt.step(grad_seq[1])
    twin.step(grad_seq[1])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(opt.params, twin.params))
    bad = opt.state_dict()
    bad["state"]["row_var"][1] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"state\['row_var'\]\[1\] must be None: params\[1\] keeps no row_var"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["col_var"][0] = np.zeros((37, 1), np.float32)
    with pytest.raises(ValueError, match=r"state\['col_var'\]\[0\] has shape \(37, 1\) but must have shape \(1, 53\)"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["variance"][1] = -np.ones(5, np.float32)
    with pytest.raises(ValueError, match=r"state\['variance'\]\[1\] must be >= 0"):
        opt.load_state_dict(bad)
    opt.state["row_var"][0] = opt.state["row_var"][0].reshape(1, 37)  # replaced by hand: caught natively
    with pytest.raises(ValueError, match=r"state\['row_var'\]\[0\] has shape \(1, 37\) but must have shape \(37, 1\)"):
        opt.step(grad_seq[0])


def test_adafactor_gradient_overlapping_its_state_is_refused():
    params, grad_seq = _problem(np.float64, steps=1)
    opt = optim.Adafactor(params)
    grads = list(grad_seq[0])
    grads[1] = opt.state["variance"][1]
    with pytest.raises(ValueError, match=r"overlaps grads\[1\]|grads\[1\] overlaps"):
        opt.step(grads)
    assert opt.step_count == 0


def test_dask_steps_refuse_ema():
    pytest.importorskip("dask")
    from regtune.dask import optim as rdo

    p = [np.zeros(4)]
    with pytest.raises(TypeError, match="ema is not taken"):
        rdo.step("adamw", p, [np.ones(4)], ema=optim.EMA(p))


# ------------------------------------------------------------------ 16-bit parameters
BF16 = np.dtype(ml_dtypes.bfloat16)
LOW = [BF16, np.dtype(np.float16)]
LOW_CASES = CASES + EXTRAS


def _rounded(x, dtype):
    """float32 x rounded to nearest even into dtype (as ml_dtypes / NumPy round)."""
    return x.astype(dtype)


def _low_problem(dtype, seed=0, steps=STEPS, shapes=SHAPES):
    params, grads = _problem(np.float32, seed, steps, shapes)
    return [_rounded(p, dtype) for p in params], grads


def _stateful_f32(name, kw, params16, grad_seq, after_step):
    """The float32 optimizer on the widened 16-bit params; after each step `after_step(t, params)`
    writes the params back as the 16-bit step does. Returns (params, optimizer)."""
    p32 = [p.astype(np.float32) for p in params16]
    opt = getattr(optim, name)(p32, **kw)
    for t, grads in enumerate(grad_seq):
        opt.step(grads)
        after_step(t, p32)
    return p32, opt


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", LOW_CASES, ids=_id)
def test_master_weights_follow_the_float32_trajectory_exactly(case, dtype):
    name, kw = case
    params16, grad_seq = _low_problem(dtype, steps=20)
    ours = [p.copy() for p in params16]
    opt = getattr(optim, name)(ours, precision="master", **kw)
    for grads in grad_seq:
        opt.step(grads)
    want, _ = _stateful_f32(name, kw, params16, grad_seq, lambda t, p: None)
    for m, w, p in zip(opt.state["master"], want, ours):
        assert _same_bits(m, w)
        assert _same_bits(p, _rounded(w, dtype))  # the parameter is its master's rounding


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", LOW_CASES, ids=_id)
def test_round_to_nearest_is_the_float32_step_rounded(case, dtype):
    """With float32 state, each step is the float32 step on the widened params (the same
    arithmetic, the same state), its new params rounded to nearest even; 16-bit grads are the
    float32 grads' rounding."""
    name, kw = case
    params16, grad_seq = _low_problem(dtype, steps=20)
    grads16 = [[_rounded(g, dtype) for g in grads] for grads in grad_seq]
    ours = [p.copy() for p in params16]
    opt = getattr(optim, name)(ours, **kw)
    for grads in grads16:
        opt.step(grads)

    def write_back(t, p32):
        for p in p32:
            p[...] = _rounded(p, dtype).astype(np.float32)

    want, ref = _stateful_f32(name, kw, params16, [[g.astype(np.float32) for g in gs] for gs in grads16], write_back)
    for got, w in zip(ours, want):
        assert _same_bits(got, _rounded(w, dtype))
    for key in opt.state:
        for a, b in zip(opt.state[key], ref.state[key]):
            assert (a is None and b is None) or _same_bits(a, b), key


# torch's fused CPU optimizers on bfloat16/float16: state in the params' dtype, float32 math.
# torch rounds SGD's and Adagrad's coefficients (lr, eps, weight_decay, momentum, dampening) to
# the 16-bit dtype (lr=0.05 becomes 0.050048828125 in bfloat16); regtune keeps them in float32,
# as its float32 path does. With coefficients exact in 16 bits the steps agree bit for bit.
# torch 2.13's fused SGD on bfloat16/float16 CPU tensors is not compared: its vectorized loop
# never stores the parameters and reads the 16-bit momentum buffer as float32 words; regtune's
# SGD follows its float32 step (test_round_to_nearest_is_the_float32_step_rounded).
FUSED_CASES = [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True, eps=1e-6)),
    ("AdamW", dict(lr=1e-2, betas=(0.4, 0.9))),
    ("Adagrad", dict(lr=0.0625, eps=2**-20)),
    ("Adagrad", dict(lr=0.0625, eps=2**-20, weight_decay=2**-6, initial_accumulator_value=0.125)),
]


def _torch_fused_run(torch, name, kw, params16, grad_seq, dtype):
    tdt = torch.bfloat16 if dtype == BF16 else torch.float16
    tparams = [torch.from_numpy(p.astype(np.float32)).to(tdt).requires_grad_() for p in params16]
    topt = getattr(torch.optim, name)(tparams, fused=True, **kw)
    for grads in grad_seq:
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.astype(np.float32)).to(tdt)
        topt.step()
    return tparams, topt


def _from_torch(t, dtype):
    return t.detach().float().numpy().astype(dtype)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", FUSED_CASES, ids=_id)
def test_round_with_low_state_matches_torch_fused(case, dtype):
    torch = pytest.importorskip("torch")
    name, kw = case
    params16, grad_seq = _low_problem(dtype)
    grad_seq = [[_rounded(g, dtype) for g in grads] for grads in grad_seq]
    ours = [p.copy() for p in params16]
    opt = getattr(optim, name)(ours, state_dtype=dtype, **kw)
    for grads in grad_seq:
        opt.step(grads)
    tparams, _ = _torch_fused_run(torch, name, kw, params16, grad_seq, dtype)
    for got, tp in zip(ours, tparams):
        assert _same_bits(got, _from_torch(tp, dtype))
    assert all(a.dtype == dtype for arrays in opt.state.values() for a in arrays)


def _sr_writes(key, dtype):
    """The write-back of stochastic rounding as documented: word i of stream step * 2**24 + t
    of the key rounds element i of tensor t."""

    def write_back(t, p32):
        for i, p in enumerate(p32):
            out = np.empty(p.shape, dtype)
            _core.round_stochastic(p, out, key, (t << 24) | i, 0)
            p[...] = out.astype(np.float32)

    return write_back


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize(
    "case", [c for c in LOW_CASES if c[0] in ("SGD", "AdamW", "Lion", "LAMB", "Adagrad", "Adafactor")], ids=_id
)
def test_stochastic_rounding_is_the_float32_step_rounded_with_the_counter_stream(case, dtype):
    name, kw = case
    params16, grad_seq = _low_problem(dtype, steps=10)
    ours = [p.copy() for p in params16]
    opt = getattr(optim, name)(ours, precision="stochastic", seed=1234, **kw)
    for grads in grad_seq:
        opt.step(grads)
    want, ref = _stateful_f32(name, kw, params16, grad_seq, _sr_writes(opt._sr_key, dtype))
    for got, w in zip(ours, want):
        assert _same_bits(got.astype(np.float32), w)
    for key in opt.state:
        for a, b in zip(opt.state[key], ref.state[key]):
            assert (a is None and b is None) or _same_bits(a, b), key


def _low_digest(dtype, precision, name="AdamW", **kw):
    params16, grad_seq = _low_problem(dtype, steps=5, shapes=[(300, 77), (1000,), (3,)])
    opt = getattr(optim, name)(params16, lr=1e-2, weight_decay=0.1, precision=precision, **kw)
    for grads in grad_seq:
        opt.step([_rounded(g, dtype) for g in grads])
    states = [a.tobytes() for arrays in opt.state.values() for a in arrays if a is not None]
    return [p.tobytes() for p in params16] + states


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize(
    "precision, kw",
    [("round", {}), ("round", {"state_dtype": "same"}), ("stochastic", {"seed": 7}), ("master", {}),
     ("stochastic", {"seed": 7, "name": "Adafactor"}), ("master", {"name": "LAMB"})],
    ids=["round", "round-low-state", "stochastic", "master", "adafactor-stochastic", "lamb-master"],
)  # fmt: skip
def test_low_precision_steps_are_bit_identical_across_threads_and_paths(dtype, precision, kw):
    kw = {k: (dtype if v == "same" else v) for k, v in kw.items()}
    reference = None
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                got = _low_digest(dtype, precision, **kw)
            if reference is None:
                reference = got
            assert got == reference, (path, threads)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_small_updates_vanish_when_rounded_to_nearest_but_not_on_average_when_stochastic(dtype):
    """SGD steps of 1e-4 on weights at 1.0 (ulp 2**-8 below 1 in bfloat16, 2**-11 in float16):
    nearest rounding keeps every weight at 1.0; stochastic rounding moves the mean by the update,
    within 5 standard errors of the two-point rounding (z-test, fixed seed)."""
    n, step = 200_000, 1e-4
    g = np.full(n, step / 0.5, np.float32)  # lr 0.5
    near = np.ones(n, dtype)
    optim.SGD([near], lr=0.5).step([g])
    assert np.all(near == 1)
    sr = np.ones(n, dtype)
    optim.SGD([sr], lr=0.5, precision="stochastic", seed=3).step([g])
    values = np.unique(sr.astype(np.float64))
    lo = float(np.nextafter(dtype.type(1), dtype.type(0)))
    assert set(values) <= {lo, 1.0}
    q = step / (1 - lo)  # P(lo)
    se = (1 - lo) * np.sqrt(q * (1 - q) / n)
    assert abs(sr.astype(np.float64).mean() - (1 - step)) < 5 * se


def test_low_precision_options_are_checked_and_named():
    p16 = [np.ones(4, BF16)]
    with pytest.raises(ValueError, match="precision must be one of 'round', 'stochastic', 'master', got precision='bog"):
        optim.Adam(p16, precision="bogus")
    with pytest.raises(ValueError, match="precision must be one of"):  # not NumPy's "truth value of an array"
        optim.Adam(p16, precision=np.array(["round", "master"]))
    with pytest.raises(ValueError, match=r"precision='stochastic' needs bfloat16 or float16 params, got float32"):
        optim.Adam([np.ones(4, np.float32)], precision="stochastic")
    with pytest.raises(ValueError, match=r"precision='master' needs bfloat16 or float16 params, got float64"):
        optim.SGD([np.ones(4)], precision="master")
    with pytest.raises(TypeError, match=r"state_dtype must be float32, the params' dtype \(bfloat16\) or 'int8', got float64"):
        optim.Adam(p16, state_dtype=np.float64)
    with pytest.raises(TypeError, match=r"state_dtype must be float32, the params' dtype \(float32\) or 'int8', got bfloat16"):
        optim.Adam([np.ones(4, np.float32)], state_dtype=BF16)
    with pytest.raises(TypeError, match="state_dtype must be float32, the params' dtype or 'int8', got 'nope'"):
        optim.Adam(p16, state_dtype="nope")
    with pytest.raises(ValueError, match="seed= keys stochastic rounding: it needs precision='stochastic'"):
        optim.Adam(p16, seed=3)
    with pytest.raises(TypeError, match=r"state_dtype must be float32 for Adafactor's 16-bit step"):
        optim.Adafactor([np.ones((4, 4), BF16)], state_dtype=BF16)
    with pytest.raises(TypeError, match=r"params\[1\] has dtype float16 but params\[0\] has bfloat16"):
        optim.Adam([np.ones(4, BF16), np.ones(4, np.float16)])
    opt = optim.Adam(p16)
    for bad, what in ((np.ones(4), "float64"), (np.ones(4, np.float16), "float16"), (np.ones(4, np.int16), "int16")):
        with pytest.raises(TypeError, match=rf"grads\[0\] must have dtype bfloat16 or float32, got {what}"):
            opt.step([bad])
    with pytest.raises(ValueError, match=r"grads\[0\] must be C-contiguous"):
        opt.step([np.ones(8, np.float32)[::2]])
    with pytest.raises(ValueError, match=r"grads\[0\] has shape \(5,\) but params\[0\] has shape \(4,\)"):
        opt.step([np.ones(5, np.float32)])
    assert opt.step_count == 0 and np.all(p16[0] == 1)


@pytest.mark.parametrize("precision", ["round", "stochastic", "master"])
def test_low_precision_state_dict_round_trips(precision):
    params16, grad_seq = _low_problem(BF16, steps=6)
    kw = {"seed": 5} if precision == "stochastic" else {}
    a = [p.copy() for p in params16]
    opt = optim.AdamW(a, lr=1e-2, precision=precision, **kw)
    for grads in grad_seq[:3]:
        opt.step(grads)
    saved, saved_params = opt.state_dict(), [p.copy() for p in a]
    assert ("master" in saved["state"]) == (precision == "master")
    for grads in grad_seq[3:]:
        opt.step(grads)
    b = [p.copy() for p in saved_params]
    opt2 = optim.AdamW(b, lr=1e-2, precision=precision, **kw)
    opt2.load_state_dict(saved)
    for grads in grad_seq[3:]:
        opt2.step(grads)
    assert all(_same_bits(x, y) for x, y in zip(a, b))
    bad = opt.state_dict()
    bad["state"]["exp_avg"][0] = bad["state"]["exp_avg"][0].astype(BF16)
    with pytest.raises(TypeError, match=r"state\['exp_avg'\]\[0\] has dtype bfloat16 but this optimizer keeps float32"):
        opt.load_state_dict(bad)


def test_ema_of_low_precision_params_averages_in_float32():
    params16, grad_seq = _low_problem(BF16, steps=5)
    a, b = [p.copy() for p in params16], [p.copy() for p in params16]
    ea, eb = optim.EMA(a, decay=0.9), optim.EMA(b, decay=0.9)
    oa, ob = optim.AdamW(a, lr=1e-2, ema=ea), optim.AdamW(b, lr=1e-2)
    for grads in grad_seq:
        oa.step(grads)
        ob.step(grads)
        eb.update()
    assert all(x.dtype == np.float32 for x in ea.averages)
    assert all(_same_bits(x, y) for x, y in zip(ea.averages, eb.averages))
    out = [np.empty_like(p) for p in params16]
    ea.copy_to(out)
    assert all(_same_bits(o, _rounded(x, BF16)) for o, x in zip(out, ea.averages))


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_clipping_16_bit_gradients_is_the_float32_clip_rounded(dtype):
    rng = np.random.default_rng(4)
    grads = [(3 * rng.standard_normal(s)).astype(dtype) for s in SHAPES]
    g32 = [g.astype(np.float32) for g in grads]
    norm = optim.clip_grad_norm(grads, 1.5)
    assert norm == optim.clip_grad_norm(g32, 1.5)
    assert all(_same_bits(a, b.astype(dtype)) for a, b in zip(grads, g32))
    grads = [(3 * rng.standard_normal(s)).astype(dtype) for s in SHAPES]
    g32 = [g.astype(np.float32) for g in grads]
    optim.clip_grad_value(grads, 0.3)
    optim.clip_grad_value(g32, 0.3)
    assert all(_same_bits(a, b.astype(dtype)) for a, b in zip(grads, g32))
    with pytest.raises(TypeError, match=r"grads\[1\] has dtype float32 but grads\[0\] has"):
        optim.clip_grad_norm([np.ones(3, dtype), np.ones(3, np.float32)], 1.0)


# ------------------------------------------------------------------------ step_all


def _group(kind, dtype, data_seed, **kw):
    """An optimizer over 3 fresh parameters and gradient lists for 3 steps."""
    rng = np.random.default_rng(data_seed)
    params = [rng.standard_normal(s).astype(dtype) for s in ((7, 5), (11,), (3, 4, 2))]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in params] for _ in range(3)]
    if kw.pop("ema", None):
        kw["ema"] = optim.EMA(params, decay=0.9)
    return getattr(optim, kind)(params, **kw), grads


_MIXED = [  # groups of different rules, dtypes and precisions, as param groups can be
    ("AdamW", np.float32, dict(lr=1e-2, weight_decay=0.1, max_grad_norm=1.0)),
    ("SGD", np.float64, dict(lr=0.05, momentum=0.9)),
    ("Adafactor", np.float32, dict(lr=1e-2)),
    ("Lion", ml_dtypes.bfloat16, dict(lr=1e-3, precision="stochastic", seed=3)),
    ("Adafactor", np.float16, dict(lr=1e-2, precision="master")),
    ("Adam", np.float32, dict(lr=1e-2, ema=True)),
]


def test_step_all_equals_stepping_each_optimizer_alone():
    together = [_group(k, dt, i, **kw) for i, (k, dt, kw) in enumerate(_MIXED)]
    alone = [_group(k, dt, i, **kw) for i, (k, dt, kw) in enumerate(_MIXED)]
    for t in range(3):
        norms = optim.step_all([(o, g[t]) for o, g in together])
        expect = [o.step(g[t]) for o, g in alone]
        assert [n is None for n in norms] == [n is None for n in expect]
        assert [n for n in norms if n is not None] == [n for n in expect if n is not None]
    for (a, _), (b, _) in zip(together, alone):
        assert a.step_count == b.step_count == 3
        for x, y in zip(a.params, b.params):
            assert x.tobytes() == y.tobytes()
        for name in a.state:
            for x, y in zip(a.state[name], b.state[name]):
                assert (x is None and y is None) or x.tobytes() == y.tobytes()
        if a.ema is not None:
            assert a.ema.n_averaged == b.ema.n_averaged == 3
            assert all(x.tobytes() == y.tobytes() for x, y in zip(a.ema.averages, b.ema.averages))


def test_step_all_makes_one_native_call(monkeypatch):
    groups = [_group(k, dt, i, **kw) for i, (k, dt, kw) in enumerate(_MIXED)]
    calls = []
    real = _core.optim_steps
    monkeypatch.setattr(_core, "optim_steps", lambda c: calls.append(len(c)) or real(c))
    for name in ("optim_step", "adafactor_step"):
        monkeypatch.setattr(_core, name, lambda *a, _n=name: pytest.fail(f"{_n} called on its own"))
    optim.step_all([(o, g[0]) for o, g in groups])
    assert calls == [len(groups)]


@pytest.mark.parametrize("bad", ["shape", "dtype", "overlap", "schedule"])
def test_step_all_steps_nothing_when_any_check_fails(bad):
    groups = [_group(k, dt, i, **kw) for i, (k, dt, kw) in enumerate(_MIXED)]
    before = [[p.copy() for p in o.params] for o, _ in groups]
    grads = [list(g[0]) for _, g in groups]
    last, lg = groups[-1][0], grads[-1]
    if bad == "shape":
        lg[1] = np.zeros(12, np.float32)
        err, match = ValueError, r"grads\[1\]"
    elif bad == "dtype":
        lg[0] = lg[0].astype(np.float64)
        err, match = TypeError, r"grads\[0\]"
    elif bad == "overlap":
        lg[2] = last.params[2]
        err, match = ValueError, r"grads\[2\] overlaps params\[2\]"
    else:
        last.lr = lambda step: float("nan")
        err, match = ValueError, r"lr"
    with pytest.raises(err, match=match):
        optim.step_all([(o, g) for (o, _), g in zip(groups, grads)])
    for (o, _), b in zip(groups, before):
        assert o.step_count == 0
        assert all(p.tobytes() == q.tobytes() for p, q in zip(o.params, b))


def test_step_all_refuses_a_repeated_optimizer_and_non_optimizers():
    o, g = _group("SGD", np.float32, 0, lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        optim.step_all([(o, g[0]), (o, g[1])])
    with pytest.raises(TypeError, match=r"steps\[1\]"):
        optim.step_all([(o, g[0]), ("SGD", g[1])])
    for bad in (None, "SGD", [o], [(o,)], [(o, g[0], 1)], np.zeros(2)):
        with pytest.raises(TypeError, match=r"steps"):
            optim.step_all(bad)
    assert optim.step_all([]) == []
    assert o.step_count == 0


def test_step_all_names_state_that_shares_memory_with_a_parameter():
    a, ga = _group("Adam", np.float32, 0, lr=0.1)
    b, gb = _group("Adam", np.float32, 1, lr=0.1)
    b.state["exp_avg"][0] = b.params[0]  # a state buffer that is a parameter
    with pytest.raises(ValueError, match=r"params\[0\].*state\['exp_avg'\]\[0\]|state\['exp_avg'\]\[0\].*params\[0\]"):
        optim.step_all([(a, ga[0]), (b, gb[0])])
    assert a.step_count == 0


@pytest.mark.parametrize("calls, err, match", [
    ([("optim_step",)], TypeError, r"calls\[0\] must be a \(name, arguments\) tuple"),
    ([["optim_step", ()]], TypeError, r"calls\[0\] must be a \(name, arguments\) tuple"),
    ([("optim_step", (0,))], TypeError, r"calls\[0\]: optim_step takes 12 arguments, got 1"),
    ([("rm -rf", ())], ValueError, r"calls\[0\]: unknown step function 'rm -rf'"),
    ([(3, ())], TypeError, r"calls\[0\] must be a \(name, arguments\) tuple"),
])  # fmt: skip
def test_native_optim_steps_refuses_malformed_calls(calls, err, match):
    with pytest.raises(err, match=match):
        _core.optim_steps(calls)


@pytest.mark.parametrize("order", ["stepped first", "stepped after"])
def test_step_all_refuses_a_schedule_that_steps_another_optimizer_of_the_call(order):
    """Whichever comes first in the call: the optimizer whose schedule steps another (a), or the
    other (b). When a comes first, b's count used to be read only after a's schedule had stepped
    b, so the step went through (b stepped twice in one call) without the documented error."""
    a, ga = _group("SGD", np.float32, 0, lr=0.1)
    b, gb = _group("SGD", np.float32, 1, lr=0.1)

    def lr(step):
        b.step(gb[2])  # the lock is re-entrant: this thread already holds b's
        return 0.1

    a.lr = lr
    before = [p.copy() for p in a.params]
    steps = [(b, gb[0]), (a, ga[0])] if order == "stepped first" else [(a, ga[0]), (b, gb[0])]
    with pytest.raises(RuntimeError, match="changed step_count from 0 to 1"):
        optim.step_all(steps)
    assert a.step_count == 0 and all(p.tobytes() == q.tobytes() for p, q in zip(a.params, before))
    assert b.step_count == 1  # the schedule's own step of b, and no other


# ----------------------------------------------------------------------- Schedule-Free AdamW
SF_KW = dict(lr=2e-2, betas=(0.85, 0.995), weight_decay=0.01, warmup_steps=25, r=0.5, weight_lr_power=1.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_schedule_free_follows_the_reference_over_200_steps_through_modes_and_a_state_dict(dtype):
    # 200 steps against the schedulefree package's AdamWScheduleFree: an eval()/train() switch
    # at step 60 (the averaged point x compared too), a state_dict() round trip into a new
    # optimizer at step 120, eval() at the end. float64 to 1e-12; float32 within its rounding
    # (torch's float32 sqrt is not correctly rounded for every input here: 1-ulp differences).
    torch = pytest.importorskip("torch")
    sfree = pytest.importorskip("schedulefree")
    params, grad_seq = _problem(dtype, steps=200)
    mine = [x.copy() for x in params]
    opt = optim.ScheduleFreeAdamW(mine, **SF_KW)
    tparams = [torch.tensor(x.copy(), requires_grad=True) for x in params]
    ref = sfree.AdamWScheduleFree(tparams, **SF_KW)
    ref.train()

    def check():
        _assert_close(mine, [t.detach().numpy() for t in tparams], dtype)

    for t, grads in enumerate(grad_seq):
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        ref.step()
        opt.step(grads)
        check()
        if t == 60:
            opt.eval()
            ref.eval()
            check()  # x
            opt.train()
            ref.train()
            check()
        if t == 120:  # a new optimizer over new arrays, from the state_dict
            sd = opt.state_dict()
            assert set(sd) == {"step", "state", "scalars"} and sd["scalars"]["train_mode"] is True
            mine = [x.copy() for x in mine]
            opt = optim.ScheduleFreeAdamW(mine, **SF_KW)
            opt.load_state_dict(sd)
            assert opt.scalars == sd["scalars"] and opt.step_count == 121
    opt.eval()
    ref.eval()
    check()
    assert opt.scalars["weight_sum"] == ref.param_groups[0]["weight_sum"]
    assert opt.scalars["lr_max"] == ref.param_groups[0]["lr_max"]


def test_schedule_free_steps_only_in_train_mode_and_switches_only_once():
    params, grad_seq = _problem(np.float32, steps=3)
    opt = optim.ScheduleFreeAdamW([x.copy() for x in params], lr=1e-2)
    opt.eval()  # before the first step: nothing to move (z is set at the first step)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(opt.params, params))
    with pytest.raises(RuntimeError, match=r"call train\(\) before step\(\)"):
        opt.step(grad_seq[0])
    assert opt.step_count == 0 and opt.scalars == {"lr_max": -1.0, "weight_sum": 0.0, "train_mode": False}
    opt.train()
    opt.train()  # a second train() is a no-op
    opt.step(grad_seq[0])
    opt.step(grad_seq[1])
    y = [p.copy() for p in opt.params]
    opt.eval()
    x = [p.copy() for p in opt.params]
    opt.eval()  # no-op
    assert all(a.tobytes() == b.tobytes() for a, b in zip(opt.params, x))
    assert any(a.tobytes() != b.tobytes() for a, b in zip(x, y))
    # x = lerp(y, z, 1 - 1/beta1), to float32 rounding
    z = opt.state["z"]
    for xi, yi, zi in zip(x, y, z):
        np.testing.assert_allclose(xi, yi + (1 - 1 / 0.9) * (zi - yi), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(betas=(0.0, 0.999)), ValueError, r"betas\[0\] must be > 0 for ScheduleFreeAdamW"),
    (dict(warmup_steps=-1), ValueError, r"warmup_steps"),
    (dict(warmup_steps=2.5), TypeError, r"warmup_steps"),
    (dict(r=-1.0), ValueError, r"r must be in \[0, inf\)"),
    (dict(weight_lr_power=float("nan")), ValueError, r"weight_lr_power must be finite"),
])  # fmt: skip
def test_schedule_free_hyperparameters_are_checked(kw, exc, match):
    with pytest.raises(exc, match=match):
        optim.ScheduleFreeAdamW([np.zeros(3, np.float32)], **kw)


def test_schedule_free_average_weight_that_overflows_is_named_and_steps_nothing():
    """(k + 1)**r * lr_max**weight_lr_power past float64 (r=1e30 at the second step) would make
    the average's weight inf / inf; the step raises naming r and leaves the parameters as they
    were (it was an OverflowError reported as a bad step_count)."""
    p = np.ones(3, np.float32)
    opt = optim.ScheduleFreeAdamW([p], lr=1e-2, r=1e30)
    opt.step([np.ones(3, np.float32)])
    before = p.copy()
    with pytest.raises(ValueError, match=r"overflows float64 at step 2: r=1e\+30, weight_lr_power=2.0"):
        opt.step([np.ones(3, np.float32)])
    assert p.tobytes() == before.tobytes()
    huge = optim.ScheduleFreeAdamW([np.ones(3, np.float32)], lr=1e200, weight_lr_power=2.0)  # 1e400: inf, no OverflowError
    with pytest.raises(ValueError, match="weight_lr_power=2.0"):
        huge.step([np.ones(3, np.float32)])


def test_schedule_free_state_dict_scalars_are_checked():
    opt = optim.ScheduleFreeAdamW([np.zeros(3, np.float32)], lr=1e-2)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match=r"keys 'scalars', 'state' and 'step'"):
        opt.load_state_dict({"step": 0, "state": sd["state"]})
    with pytest.raises(ValueError, match=r"state_dict\['scalars'\] must hold"):
        opt.load_state_dict({**sd, "scalars": {"lr_max": 1.0}})
    with pytest.raises(ValueError, match=r"state_dict\['scalars'\]\['weight_sum'\] must be finite"):
        opt.load_state_dict({**sd, "scalars": {**sd["scalars"], "weight_sum": float("nan")}})
    with pytest.raises(TypeError, match=r"state_dict\['scalars'\]\['train_mode'\] must be a bool"):
        opt.load_state_dict({**sd, "scalars": {**sd["scalars"], "train_mode": 1}})


@pytest.mark.parametrize("dtype", LOW)
def test_schedule_free_master_weights_follow_the_float32_run_through_modes(dtype):
    params, grad_seq = _problem(np.float32, steps=12)
    params = [_rounded(x, dtype).astype(np.float32) for x in params]  # representable in 16 bits
    ref = optim.ScheduleFreeAdamW([x.copy() for x in params], lr=1e-2)
    low = [x.astype(dtype) for x in params]
    opt = optim.ScheduleFreeAdamW(low, lr=1e-2, precision="master")
    for t, grads in enumerate(grad_seq):
        ref.step(grads)
        opt.step(grads)
        if t in (5, 11):
            ref.eval()
            opt.eval()
        for m, p, r in zip(opt.state["master"], opt.params, ref.params):
            assert m.tobytes() == r.tobytes()
            assert p.tobytes() == r.astype(dtype).tobytes()  # the master rounded to nearest even
        if t == 5:
            ref.train()
            opt.train()


def test_schedule_free_is_in_every_front_end():
    from regtune import trainer

    assert optim.RULES["schedule_free_adamw"].core in _core.optim_rules()[-1]["name"]
    assert trainer.OPTIMIZERS["schedule_free_adamw"] is optim.ScheduleFreeAdamW
    pytest.importorskip("dask")
    from regtune.dask import optim as rdo

    # dask steps are stateless: a rule with scalar state between steps is refused by name
    with pytest.raises(ValueError, match="ScheduleFreeAdamW keeps scalar state"):
        rdo.step(optim.ScheduleFreeAdamW, [np.zeros(4)], [np.ones(4)])


# ------------------------------------------------------------------------------ maximize
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_maximize_steps_as_descent_on_the_negated_gradient(name):
    # maximize=True negates the gradient as it is read (before clipping, L1 and weight decay),
    # inside the pass: the same bits as the step on -grad, and the gradients are left alone.
    params, grad_seq = _problem(np.float32, steps=4)
    kw = dict(lr=1e-2, weight_decay=0.01, l1=1e-3, max_grad_norm=5.0)
    a = getattr(optim, name)([x.copy() for x in params], maximize=True, **kw)
    b = getattr(optim, name)([x.copy() for x in params], **kw)
    for grads in grad_seq:
        before = [g.copy() for g in grads]
        na = a.step(grads)
        nb = b.step([-g for g in grads])
        assert na == nb
        assert all(g.tobytes() == h.tobytes() for g, h in zip(grads, before))
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.params, b.params))
    with pytest.raises(TypeError, match="maximize must be a bool"):
        getattr(optim, name)([np.zeros(3, np.float32)], maximize="yes")


@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
                                      ("AdamW", dict(lr=1e-2)), ("Adam", dict(lr=1e-2, weight_decay=0.05))])
def test_maximize_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    params, grad_seq = _problem(np.float64, steps=10)
    got, _ = _run(name, {**kw, "maximize": True}, params, grad_seq)
    tparams = [torch.tensor(x.copy(), requires_grad=True) for x in params]
    topt = getattr(torch.optim, name)(tparams, maximize=True, **kw)
    for grads in grad_seq:
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        topt.step()
    _assert_close(got, [tp.detach().numpy() for tp in tparams], np.float64)


def test_adam_with_decoupled_weight_decay_is_adamw():
    params, grad_seq = _problem(np.float32, steps=5)
    a, _ = _run("Adam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True), params, grad_seq)
    b, _ = _run("AdamW", dict(lr=1e-2, weight_decay=0.1), params, grad_seq)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


@pytest.mark.parametrize("name, attr", [("Adam", "betas"), ("SGD", "momentum"), ("NAdam", "momentum_decay")])
def test_a_rule_hyperparameter_set_on_the_optimizer_is_refused_not_ignored(name, attr):
    """Issue 26: ``opt.betas = ...`` made an attribute that no step read; lr and weight_decay
    (the optimizer's own, schedulable) still set."""
    opt = getattr(optim, name)([np.zeros(3)], lr=0.1)
    before = getattr(opt, attr)
    with pytest.raises(AttributeError, match=rf"{attr} is a hyperparameter of the {name} rule, fixed when"):
        setattr(opt, attr, before)
    opt.lr, opt.weight_decay = 0.5, 0.01
    assert (opt.lr, opt.weight_decay, getattr(opt, attr)) == (0.5, 0.01, before)


def _at_offset(values: np.ndarray, offset_bytes: int) -> np.ndarray:
    """A copy of ``values`` that starts ``offset_bytes`` past a 64-byte boundary."""
    raw = np.empty(values.nbytes + 128, np.uint8)
    start = (offset_bytes - raw.ctypes.data) % 64
    out = raw[start : start + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_where_the_arrays_start_in_a_cache_line_changes_no_bit(name, dtype):
    """The step splits each range at the first cache-line boundary of its arrays when they all
    start at the same offset within a line (so that its vectors never straddle two lines): an
    element-wise rule gives every element the same bits wherever its arrays start, with the
    state the optimizer makes (placed as its parameter)."""
    rng = np.random.default_rng(7)
    p0 = [rng.standard_normal(s).astype(dtype) for s in ((1000,), (37,), (9, 33))]
    gs = [[rng.standard_normal(p.shape).astype(dtype) for p in p0] for _ in range(3)]
    esize = np.dtype(dtype).itemsize
    results = []
    for offset in (0, esize, 16, 64 - esize):
        ps = [_at_offset(p, offset) for p in p0]
        opt = getattr(optim, name)(ps, lr=1e-2)
        for step in gs:
            opt.step([_at_offset(g, offset) for g in step])
        assert all(a.ctypes.data % 64 == offset for k in opt.state for a in opt.state[k] if isinstance(a, np.ndarray) and a.ndim and a.shape == ps[0].shape)
        results.append([p.copy() for p in ps])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
