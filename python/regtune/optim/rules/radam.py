"""RAdam, as torch.optim.RAdam."""

from __future__ import annotations

import math
from typing import Any

from ..._validation import boolean
from .._engine import Rule, betas as _betas, decay_terms, eps as _eps


class RAdam(Rule):
    """RAdam (Liu et al., 2020), as ``torch.optim.RAdam``::

        g = grad + weight_decay * p            (or p = p * (1 - lr * weight_decay), decoupled)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        rho_inf = 2 / (1 - beta2) - 1;  rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
        u = m / (1 - beta1**t) * lr
        u = u * sqrt(1 - beta2**t) / (sqrt(v) + eps) * rect_t     when rho_t > 5
        p = p - u

    with ``rect_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``:
    while the variance of the adaptive rate is intractable (rho_t <= 5, the first steps) the
    update is SGD with momentum.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule.
        decoupled_weight_decay: AdamW-style decay, else an L2 term.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_avg_sq``.
    """

    name, key, core = "RAdam", "radam", "radam"

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, decoupled_weight_decay=False) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")

    def slots(self):
        return ("exp_avg", "exp_avg_sq", None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        c: dict[str, Any] = {
            "lr": lr,
            "one_minus_beta1": 1 - beta1,
            "beta2": beta2,
            "one_minus_beta2": 1 - beta2,
            "bias_correction1": bias_correction1,
            "bias_correction2_sqrt": 1.0,
            "eps": self.eps,
        }
        # rho_inf is inf for beta2 = 0 (no rectified steps); the terms are torch's, in its order.
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
        if rho_t > 5.0 and math.isfinite(rho_inf):
            c["bias_correction2_sqrt"] = bias_correction2**0.5
            c["rect"] = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        return c, decay_terms(lr, wd, self.decoupled_weight_decay)
