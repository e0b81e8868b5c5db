"""LARS, as pytorch-optimizer's LARS."""

from __future__ import annotations

from typing import Any

from ..._validation import boolean, hyperparameter
from .._engine import Rule, decay_terms


class LARS(Rule):
    """LARS (You et al., 2017, "Large Batch Training of Convolutional Networks"), as
    ``pytorch_optimizer.LARS`` computes it. On each tensor of more than one dimension (weights)::

        trust = trust_coefficient * |p| / (|g| + weight_decay * |p|)   (1 when |p| or that is 0)
        g = (g + weight_decay * p) * trust

    while vectors and scalars (biases, norm scales) keep ``g``; then on every tensor::

        buf = momentum * buf + (1 - dampening) * g      (buf starts at zeros)
        g = g + momentum * buf (nesterov) | buf
        p = p - lr * g

    The norms are reduced as :class:`LAMB`'s, in a first pass of the same native call.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. momentum: >= 0 (0: no buffer). dampening: in [0, 1].
        weight_decay: >= 0, or a schedule. nesterov: bool.
        trust_coefficient: >= 0 (default 1e-3).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the module
            docstring (the norm of g is that of the clipped gradient with its L1 term).

    State: ``momentum_buffer`` when momentum > 0.
    """

    name, key, core = "LARS", "lars", "lars"

    def __init__(
        self, lr=1e-3, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, *, trust_coefficient=1e-3
    ) -> None:
        self.momentum = hyperparameter(momentum, "momentum", low=0.0)
        self.dampening = hyperparameter(dampening, "dampening", low=0.0, high=1.0)
        self.nesterov = boolean(nesterov, "nesterov")
        self.trust_coefficient = hyperparameter(trust_coefficient, "trust_coefficient", low=0.0)

    def slots(self):
        return ("momentum_buffer" if self.momentum > 0 else None, None, None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        c: dict[str, Any] = {
            "neg_lr": -lr, "trust_coefficient": self.trust_coefficient, "nesterov": self.nesterov,
            "one_minus_dampening": 1 - self.dampening,
        }  # fmt: skip
        if self.momentum > 0:
            c["momentum"] = self.momentum
        return c, decay_terms(lr, wd, False)
