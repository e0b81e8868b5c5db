"""Lion, as lion-pytorch's Lion."""

from __future__ import annotations

from typing import Any

from ..._validation import boolean, scalar_or_schedule, schedule_value
from .._engine import Rule, betas as _betas, decay_terms


class Lion(Rule):
    """Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), as
    ``lion_pytorch.Lion`` computes it (the reference the tests step against)::

        p = p * (1 - lr * weight_decay)
        c = beta1 * m + (1 - beta1) * g
        p = p - lr * sign(c)
        m = beta2 * m + (1 - beta2) * g

    ``sign`` is torch's: 0 for 0 and for NaN. Every element moves by exactly ``lr`` (or not at
    all), so Lion wants a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x
    larger (the paper's advice). One state array per parameter; each step reads param, grad and
    ``exp_avg`` and writes param and ``exp_avg`` once.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1).
        weight_decay: >= 0, or a schedule: decoupled, as AdamW's (``p * (1 - lr * weight_decay)``).
        decoupled_weight_decay: as lion-pytorch's: ``weight_decay`` is divided by the first
            step's lr ``lr0`` (``lr(0)`` for a schedule), so each step multiplies p by
            ``1 - lr / lr0 * weight_decay``: ``weight_decay`` is the decay per step at the
            initial learning rate. In :mod:`regtune.torch.optim`, ``lr0`` is the ``lr`` the
            optimizer was made with (lion-pytorch's ``_init_lr``), for every group and whatever
            an lr scheduler does.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``.

    Example::

        >>> w = np.zeros(3); opt = Lion([w], lr=0.1)
        >>> opt.step([np.array([2.0, -0.5, 0.0])]); w
        array([-0.1,  0.1,  0. ])
    """

    name, key, core = "Lion", "lion", "lion"

    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, decoupled_weight_decay=False) -> None:
        self.betas = _betas(betas)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")
        lr = scalar_or_schedule(lr, "lr")
        if self.decoupled_weight_decay and not callable(lr) and lr == 0:
            raise ValueError("lr must be > 0 with decoupled_weight_decay=True (weight_decay is divided by it), got lr=0.0")
        #: the first step's learning rate, by which decoupled weight decay is divided
        self.lr0 = lr if not callable(lr) else None
        self._lr = lr

    def slots(self):
        return ("exp_avg", None, None)

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        beta1, beta2 = self.betas
        c = {"neg_lr": -lr, "beta1": beta1, "one_minus_beta1": 1 - beta1, "beta2": beta2, "one_minus_beta2": 1 - beta2}
        if wd != 0 and self.decoupled_weight_decay:
            lr0 = self.lr0 if self.lr0 is not None else schedule_value(self._lr, "lr", 0)
            if lr0 == 0:
                raise ValueError(
                    "lr(0) must be > 0 with decoupled_weight_decay=True (weight_decay is divided by it), got 0.0"
                )
            wd = wd / lr0
        return c, decay_terms(lr, wd, True)
