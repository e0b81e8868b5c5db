"""SGD with momentum, as torch.optim.SGD."""

from __future__ import annotations

from typing import Any

from ..._validation import boolean, hyperparameter
from .._engine import Rule, decay_terms


class SGD(Rule):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        buf = g (first step) | momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) | buf
        p = p - lr * g

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: learning rate >= 0, or a schedule ``lr(step_count)``.
        momentum: >= 0 (0: no buffer). dampening: finite. nesterov: needs momentum > 0 and
        dampening == 0.
        weight_decay: >= 0 (L2, folded into the gradient), or a schedule.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``momentum_buffer`` when momentum != 0.

    Example::

        >>> w = np.zeros(2); opt = SGD([w], lr=0.5, momentum=0.9)
        >>> opt.step([np.ones(2)]); opt.step([np.ones(2)]); w
        array([-1.45, -1.45])
    """

    name, key, core = "SGD", "sgd", "sgd"

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False) -> None:
        self.momentum = hyperparameter(momentum, "momentum", low=0.0)
        self.dampening = hyperparameter(dampening, "dampening")
        self.nesterov = boolean(nesterov, "nesterov")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov=True requires momentum > 0 and dampening == 0, got momentum={self.momentum!r}, "
                f"dampening={self.dampening!r}"
            )

    def slots(self):
        return ("momentum_buffer" if self.momentum != 0 else None, None, None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        c: dict[str, Any] = {"neg_lr": -lr, "one_minus_dampening": 1 - self.dampening}
        if self.momentum != 0:
            c.update(momentum=self.momentum, first_step=t == 1, nesterov=self.nesterov)
        return c, decay_terms(lr, wd, False)
