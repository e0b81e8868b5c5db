"""LAMB, as pytorch-optimizer's Lamb."""

from __future__ import annotations

from typing import Any

from ..._validation import boolean, hyperparameter
from .._engine import Rule, betas as _betas, bias_step, decay_terms, eps as _eps


class LAMB(Rule):
    """LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning"), as
    ``pytorch_optimizer.Lamb`` computes it with its defaults (the first moment's bias
    correction on the step size, none on the second moment), per tensor (in
    :mod:`regtune.torch.optim`, ``t`` counts the group's steps, as pytorch-optimizer's does)::

        m = beta1 * m + (1 - beta1) * g           (m = beta1 * m + g without grad_averaging)
        v = beta2 * v + (1 - beta2) * g * g
        p = p * (1 - lr * weight_decay)           (decoupled_weight_decay; else u gets + wd * p)
        u = m / (sqrt(v) + eps)
        w = min(|p|, trust_clamp);  trust = w / (|u| + eps), or 1 when w or |u| is 0
        p = p - lr / (1 - beta1**t) * trust * u

    The norms are L2 norms over the whole tensor, summed in double in a fixed order (the same
    on every thread count and SIMD path) in a first pass over the tensors; a second pass applies
    the steps. Both passes are one native call.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0 (default 1e-6).
        weight_decay: >= 0, or a schedule. decoupled_weight_decay: default True (see above).
        grad_averaging: scale g by 1 - beta1 in m (default True).
        trust_clamp: > 0, the cap on the parameter norm (pytorch-optimizer's 10).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the module
            docstring (``max_grad_norm`` clips before the step, as ``clip_grad_norm`` does;
            pytorch-optimizer's ``pre_norm`` is not the same).

    State: ``exp_avg``, ``exp_avg_sq``.
    """

    name, key, core = "LAMB", "lamb", "lamb"
    # pytorch-optimizer's param groups: its step count, its name for decoupled_weight_decay, the
    # variants regtune does not implement, and max_grad_norm, which there scales pre_norm
    torch_group_step = "step"
    torch_aliases = {"weight_decouple": "decoupled_weight_decay"}
    torch_fixed = {"fixed_decay": False, "rectify": False, "adam": False}
    torch_foreign = ("max_grad_norm",)
    torch_options = {"foreach": None}
    torch_state_info = ("weight_norm", "adam_norm", "trust_ratio")

    def __init__(
        self, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, *, decoupled_weight_decay=True,
        grad_averaging=True, trust_clamp=10.0,
    ) -> None:  # fmt: skip
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")
        self.grad_averaging = boolean(grad_averaging, "grad_averaging")
        self.trust_clamp = hyperparameter(trust_clamp, "trust_clamp", low=0.0, low_open=True)

    def slots(self):
        return ("exp_avg", "exp_avg_sq", None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        beta1, beta2 = self.betas
        c: dict[str, Any] = {
            "neg_step_size": bias_step(lr, beta1, t),
            "beta1": beta1,
            "beta3": 1 - beta1 if self.grad_averaging else 1.0,
            "beta2": beta2,
            "one_minus_beta2": 1 - beta2,
            "eps": self.eps,
            "trust_clamp": self.trust_clamp,
        }
        if wd != 0 and not self.decoupled_weight_decay:
            c["weight_decay"] = wd
            return c, {}
        return c, decay_terms(lr, wd, True)
