"""NAdam, as torch.optim.NAdam."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..._validation import boolean, hyperparameter
from .._engine import Rule, betas as _betas, decay_terms, eps as _eps

# ------------------------------------------------------------------ NAdam's momentum cache
#: (beta1, momentum_decay) -> [(step, prod)]: checkpoints of NAdam's running product of mu_t,
#: every _MU_EVERY steps, and the last step asked for.
_MU_CACHE: dict[tuple[float, float], dict[str, Any]] = {}
_MU_EVERY = 4096
_MU_LOCK = threading.Lock()


def _mu(beta1: float, momentum_decay: float, t: int) -> float:
    """mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay)), torch's momentum cache."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (t * momentum_decay)))


def mu_product(beta1: float, momentum_decay: float, t: int) -> float:
    """prod(mu_1 .. mu_t) in double, multiplied one factor at a time as torch's ``mu_product``
    state does (with float64 as torch's default dtype; with float32 torch keeps it in float32).

    A function of t alone, so a restored or dask-driven optimizer needs no extra state. It is
    computed from the nearest checkpoint (cached per (beta1, momentum_decay)); the product
    stops changing once it underflows to 0, and once mu_t rounds to beta1 (0.96 ** (t *
    momentum_decay) below 2**-54: after about 229,000 steps at the default momentum_decay)
    the rest is ``beta1 ** (t - k)``. Either happens within a few million steps for every
    beta1 < 1, so any step count costs at most that once."""
    key = (beta1, momentum_decay)
    with _MU_LOCK:
        c = _MU_CACHE.setdefault(key, {"ckpt": [(0, 1.0)], "last": (0, 1.0), "tail": None})
        if c["tail"] is not None and t >= c["tail"][0]:  # mu_i == beta1 from step k + 1 on
            k, pk = c["tail"]
            return pk * beta1 ** (t - k) if pk else 0.0
        i, prod = c["last"] if c["last"][0] <= t else max(x for x in c["ckpt"] if x[0] <= t)
        while i < t:
            mu = _mu(beta1, momentum_decay, i + 1)
            if mu == beta1 or prod == 0.0:
                c["tail"] = (i, prod)
                return prod * beta1 ** (t - i) if prod else 0.0
            prod *= mu
            i += 1
            if i % _MU_EVERY == 0 and i > c["ckpt"][-1][0]:
                c["ckpt"].append((i, prod))
        c["last"] = (i, prod)
        return prod



class NAdam(Rule):
    """NAdam (Dozat, 2016), as ``torch.optim.NAdam``::

        g = grad + weight_decay * p            (or p = p * (1 - lr * weight_decay), decoupled)
        mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v / (1 - beta2**t)) + eps
        p = p - lr * (1 - mu_t) / (1 - prod(mu_1..mu_t)) * g / denom
        p = p - lr * mu_{t+1} / (1 - prod(mu_1..mu_{t+1})) * m / denom

    The product of the mu_t is formed in double from the step count (torch keeps it as a state
    tensor of its default dtype: float32 unless set to float64; the float32 trajectories agree
    within float32 rounding). In :mod:`regtune.torch.optim` it is torch's running
    ``mu_product`` of each parameter's state instead, a tensor of torch's dtype (float32 unless
    torch's default dtype is float64) multiplied by each step's mu_t in that dtype, as torch
    does: a beta1 that changes between steps (``OneCycleLR(cycle_momentum=True)``, a group's
    ``betas`` set by hand) enters it as in torch, and the steps are torch's.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule. momentum_decay: >= 0.
        decoupled_weight_decay: AdamW-style decay (torch's NAdamW), else an L2 term.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_avg_sq``.
    """

    name, key, core = "NAdam", "nadam", "nadam"
    torch_param_scalars = {"mu_product": 1.0}

    def __init__(
        self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3, *,
        decoupled_weight_decay=False,
    ) -> None:  # fmt: skip
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.momentum_decay = hyperparameter(momentum_decay, "momentum_decay", low=0.0)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")

    def slots(self):
        return ("exp_avg", "exp_avg_sq", None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        coef, fused, _ = self.advance({}, t, lr, wd)
        return coef, fused

    def advance(self, scalars: dict[str, Any], t: int, lr: float, wd: float) -> tuple[dict, dict, dict]:
        """As ``coefficients``; with ``scalars["mu_product"]`` (torch's running product after
        ``t - 1`` steps, a float or a NumPy float32/float64 scalar) the product is that times
        mu_t, multiplied and returned in its type (torch's ``mu_product *= mu``)."""
        beta1, beta2 = self.betas
        md = self.momentum_decay
        mu, mu_next = _mu(beta1, md, t), _mu(beta1, md, t + 1)
        if "mu_product" in scalars:  # in the dtype it is given in (torch's float32 product: float32)
            given = scalars["mu_product"]
            hyperparameter(given, "mu_product", low=0.0, high=1.0)
            kind = type(given) if isinstance(given, np.floating) else float
            scalars = {**scalars, "mu_product": kind(given * kind(mu))}
            prod = float(scalars["mu_product"])
        else:
            prod = mu_product(beta1, md, t)
        c = {
            "c_grad": -lr * (1.0 - mu) / (1.0 - prod),
            "c_avg": -lr * mu_next / (1.0 - prod * mu_next),
            "one_minus_beta1": 1 - beta1,
            "beta2": beta2,
            "one_minus_beta2": 1 - beta2,
            "bias_correction2": 1 - beta2**t,
            "eps": self.eps,
        }
        return c, decay_terms(lr, wd, self.decoupled_weight_decay), scalars
