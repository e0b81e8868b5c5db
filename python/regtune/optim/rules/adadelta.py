"""Adadelta, as torch.optim.Adadelta."""

from __future__ import annotations

from typing import Any

from ..._validation import hyperparameter
from .._engine import Rule, decay_terms, eps as _eps


class Adadelta(Rule):
    """Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``::

        g = grad + weight_decay * p
        sq = rho * sq + (1 - rho) * g * g
        delta = sqrt(acc + eps) / sqrt(sq + eps) * g
        acc = rho * acc + (1 - rho) * delta * delta
        p = p - lr * delta

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule (default 1.0, as torch). rho: in [0, 1]. eps: > 0.
        weight_decay: >= 0, or a schedule (an L2 term, as torch).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``square_avg``, ``acc_delta``.
    """

    name, key, core = "Adadelta", "adadelta", "adadelta"

    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0) -> None:
        self.rho = hyperparameter(rho, "rho", low=0.0, high=1.0)
        self.eps = _eps(eps)

    def slots(self):
        return ("square_avg", "acc_delta", None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"neg_lr": -lr, "rho": self.rho, "one_minus_rho": 1 - self.rho, "eps": self.eps}, decay_terms(lr, wd, False)
