"""Adagrad, as torch.optim.Adagrad."""

from __future__ import annotations

from typing import Any

from ..._validation import hyperparameter
from .._engine import Rule, decay_terms


class Adagrad(Rule):
    """Adagrad, as ``torch.optim.Adagrad``::

        g = grad + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + g * g
        p = p - clr * g / (sqrt(sum) + eps)

    Args:
        params: arrays to update in place. lr: >= 0, or a schedule. lr_decay: >= 0.
        weight_decay: >= 0, or a schedule. initial_accumulator_value: >= 0 (the start of sum).
        eps: >= 0 (> 0 when initial_accumulator_value is 0). l1, prox_l1, max_grad_norm, ema: see
        the module docstring.

    State: ``sum``.
    """

    name, key, core = "Adagrad", "adagrad", "adagrad"

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10) -> None:
        self.lr_decay = hyperparameter(lr_decay, "lr_decay", low=0.0)
        self.initial_accumulator_value = hyperparameter(initial_accumulator_value, "initial_accumulator_value", low=0.0)
        self.eps = hyperparameter(eps, "eps", low=0.0)
        if self.eps == 0 and self.initial_accumulator_value == 0:
            raise ValueError(
                "eps must be > 0 when initial_accumulator_value is 0 (a zero gradient would give 0/0 = nan), "
                f"got eps={self.eps!r}"
            )
        self.fills = {"sum": self.initial_accumulator_value}

    def slots(self):
        return ("sum", None, None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"neg_clr": -(lr / (1 + (t - 1) * self.lr_decay)), "eps": self.eps}, decay_terms(lr, wd, False)
