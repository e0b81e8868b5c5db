"""Adam and AdamW, as torch.optim.Adam and torch.optim.AdamW."""

from __future__ import annotations

from typing import Any

from ..._validation import boolean
from .._engine import Rule, betas as _betas, bias_step, decay_terms, eps as _eps


class Adam(Rule):
    """Adam, as ``torch.optim.Adam`` (weight decay as an L2 term in the gradient)::

        g = grad + weight_decay * p
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        vmax = max(vmax, v) (amsgrad; then v = vmax)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule. amsgrad: keep the running maximum of v.
        decoupled_weight_decay: AdamW's decay, p * (1 - lr * weight_decay), instead of an L2 term
            (torch's Adam option; Adam(..., decoupled_weight_decay=True) steps as AdamW).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.
    """

    name, key, core = "Adam", "adam", "adam"

    def __init__(
        self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *, decoupled_weight_decay=False
    ) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.amsgrad = boolean(amsgrad, "amsgrad")
        #: AdamW's decay (``p * (1 - lr * weight_decay)``) instead of an L2 term, as torch's Adam option
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")

    def slots(self):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if self.amsgrad else None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        beta1, beta2 = self.betas
        c = {
            "neg_step_size": bias_step(lr, beta1, t),
            "one_minus_beta1": 1 - beta1,
            "beta2": beta2,
            "one_minus_beta2": 1 - beta2,
            "bias_correction2_sqrt": (1 - beta2**t) ** 0.5,
            "eps": self.eps,
            "amsgrad": self.amsgrad,
        }
        return c, decay_terms(lr, wd, self.decoupled_weight_decay)


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay,
    ``p = p * (1 - lr * weight_decay)`` before the Adam update (default weight_decay=1e-2).
    Arguments and state as :class:`Adam`.

    Example::

        >>> w = np.ones(3, np.float32); opt = AdamW([w], lr=1e-2, max_grad_norm=1.0)
        >>> float(opt.step([np.full(3, 4.0, np.float32)]))   # the global grad norm
        6.928203230275509
    """

    name, key, core = "AdamW", "adamw", "adam"

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)
