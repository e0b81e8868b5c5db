"""RMSprop, as torch.optim.RMSprop."""

from __future__ import annotations

from typing import Any

from ..._validation import boolean, hyperparameter
from .._engine import Rule, decay_terms, eps as _eps


class RMSprop(Rule):
    """RMSprop, as ``torch.optim.RMSprop``::

        g = grad + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g * g
        ga = lerp(ga, g, 1 - alpha); avg = sqrt(sq - ga * ga) (centered) | sqrt(sq)
        avg = avg + eps
        buf = momentum * buf + g / avg; p = p - lr * buf (momentum > 0) | p = p - lr * g / avg

    Args:
        params: arrays to update in place. lr: >= 0, or a schedule. alpha: in [0, 1].
        eps: > 0. weight_decay: >= 0, or a schedule. momentum: >= 0. centered: bool.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``square_avg``; ``grad_avg`` when centered; ``momentum_buffer`` when momentum > 0.
    """

    name, key, core = "RMSprop", "rmsprop", "rmsprop"

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False) -> None:
        self.alpha = hyperparameter(alpha, "alpha", low=0.0, high=1.0)
        self.eps = _eps(eps)
        self.momentum = hyperparameter(momentum, "momentum", low=0.0)
        self.centered = boolean(centered, "centered")

    def slots(self):
        return ("square_avg", "grad_avg" if self.centered else None, "momentum_buffer" if self.momentum > 0 else None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        c: dict[str, Any] = {
            "neg_lr": -lr, "alpha": self.alpha, "one_minus_alpha": 1 - self.alpha, "eps": self.eps,
            "centered": self.centered,
        }  # fmt: skip
        if self.momentum > 0:
            c["momentum"] = self.momentum
        return c, decay_terms(lr, wd, False)
