"""Adamax, as torch.optim.Adamax."""

from __future__ import annotations

from typing import Any

from .._engine import Rule, betas as _betas, bias_step, decay_terms, eps as _eps


class Adamax(Rule):
    """Adamax (Kingma and Ba, 2015, section 7.1), as ``torch.optim.Adamax``::

        g = grad + weight_decay * p
        m = lerp(m, g, 1 - beta1)
        u = maximum(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1**t) * m / u

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule (an L2 term, as torch).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_inf``.
    """

    name, key, core = "Adamax", "adamax", "adamax"

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)

    def slots(self):
        return ("exp_avg", "exp_inf", None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        beta1, beta2 = self.betas
        c = {"neg_clr": bias_step(lr, beta1, t), "one_minus_beta1": 1 - beta1, "beta2": beta2, "eps": self.eps}
        return c, decay_terms(lr, wd, False)
