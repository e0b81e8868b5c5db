"""Schedule-Free AdamW, as the schedulefree package's AdamWScheduleFree."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ... import _core
from ..._validation import hyperparameter, nonnegative_int
from .._engine import Optimizer, Rule, betas as _betas, eps as _eps


class ScheduleFreeAdamW(Rule):
    """Schedule-Free AdamW (Defazio et al., 2024, "The Road Less Scheduled"), as the
    ``schedulefree`` package's ``AdamWScheduleFree`` computes it: no learning-rate schedule to
    choose, an average of the iterates built into the step. The parameters hold ``y``, the
    point the gradient is taken at, during training; ``z`` (state) is the base sequence and
    ``x``, the average the model is evaluated at, is implicit. Step ``t = k + 1``::

        lr_t = lr * min(1, (k + 1) / warmup_steps)
        lr_max = max(lr_max, lr_t);  w = (k + 1)**r * lr_max**weight_lr_power
        weight_sum = weight_sum + w;  c = w / weight_sum
        v = beta2 * v + (1 - beta2) * g * g
        u = g / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * y
        y = lerp(y, z, c) + lr_t * (beta1 * (1 - c) - 1) * u
        z = z - lr_t * u

    one pass over memory, as every rule (param, grad, ``z`` and ``exp_avg_sq`` read once,
    written once). ``eval()`` moves the parameters to ``x = lerp(y, z, 1 - 1/beta1)`` (to
    evaluate or save the model), ``train()`` back to ``y = lerp(x, z, 1 - beta1)``; a step in
    eval mode raises. An optimizer starts in train mode (the reference starts in eval mode and
    needs a ``train()`` call first: calling it here is harmless). ``z`` is the parameters' copy
    at the first step, as the reference's. ``lr_max``, ``weight_sum`` and ``train_mode`` are
    scalar state (``state_dict()["scalars"]``; in :mod:`regtune.torch.optim`, param-group keys
    under the reference's names, with its step count ``k``).

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule (usually a constant: warm-up is ``warmup_steps``; default 0.0025).
        betas: (beta1, beta2), beta1 in (0, 1) (``eval()`` divides by it), beta2 in [0, 1).
        eps: > 0. weight_decay: >= 0, or a schedule: added to the normalized gradient at ``y``.
        warmup_steps: >= 0, the steps of the linear warm-up of ``lr``.
        r: >= 0, the polynomial weighting power of the average. weight_lr_power: >= 0.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the module
            docstring. With 16-bit parameters ``train()`` / ``eval()`` compute in float32 and
            round to nearest even (from the master copy with ``precision="master"``).

    State: ``z``, ``exp_avg_sq``; scalars ``lr_max``, ``weight_sum``, ``train_mode``.

    Example::

        >>> w = np.ones(3, np.float32); opt = ScheduleFreeAdamW([w], lr=0.1)
        >>> opt.step([np.ones(3, np.float32)]); opt.eval(); opt.train()
    """

    name, key, core = "ScheduleFreeAdamW", "schedule_free_adamw", "schedule_free_adamw"
    fills = {"z": "param"}
    scalars = {"lr_max": -1.0, "weight_sum": 0.0, "train_mode": True}
    methods = ("train", "eval")
    torch_options = {"foreach": True}  # the reference's implementation switch
    torch_group_step = "k"

    def __init__(
        self, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, warmup_steps=0, r=0.0,
        weight_lr_power=2.0,
    ) -> None:  # fmt: skip
        self.betas = _betas(betas)
        if self.betas[0] == 0:
            raise ValueError("betas[0] must be > 0 for ScheduleFreeAdamW (eval() interpolates with 1 - 1/beta1), "
                             "got betas[0]=0.0")  # fmt: skip
        self.eps = _eps(eps)
        self.warmup_steps = nonnegative_int(warmup_steps, "warmup_steps")
        self.r = hyperparameter(r, "r", low=0.0)
        self.weight_lr_power = hyperparameter(weight_lr_power, "weight_lr_power", low=0.0)

    def slots(self):
        return ("z", "exp_avg_sq", None)

    def advance(self, scalars: dict[str, Any], t: int, lr: float, wd: float) -> tuple[dict, dict, dict]:
        if not scalars["train_mode"]:
            raise RuntimeError("ScheduleFreeAdamW steps in train mode: call train() before step() "
                               "(after eval() the parameters hold the average x, not y)")  # fmt: skip
        beta1, beta2 = self.betas
        k = t - 1
        sched = (k + 1) / self.warmup_steps if k < self.warmup_steps else 1.0
        lr = lr * sched
        lr_max = max(lr, scalars["lr_max"])
        try:
            weight = ((k + 1) ** self.r) * (lr_max**self.weight_lr_power)
        except OverflowError:
            weight = math.inf
        weight_sum = scalars["weight_sum"] + weight
        if not math.isfinite(weight_sum):  # the average's weights would be inf / inf: NaN
            raise ValueError(f"the average's weight (k + 1)**r * lr_max**weight_lr_power overflows float64 at step "
                             f"{k + 1}: r={self.r!r}, weight_lr_power={self.weight_lr_power!r}, lr_max={lr_max!r}")  # fmt: skip
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0  # the reference's ZeroDivisionError: 0
        coef: dict[str, Any] = {
            "neg_lr": -lr,
            "y_step": lr * (beta1 * (1 - ckp1) - 1),
            "ckp1": ckp1,
            "beta2": beta2,
            "one_minus_beta2": 1 - beta2,
            "bias_correction2": 1 - beta2 ** (k + 1),
            "eps": self.eps,
        }
        if wd != 0:
            coef["weight_decay"] = wd
        return coef, {}, {"lr_max": lr_max, "weight_sum": weight_sum, "train_mode": True}

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        coef, fused, _ = self.advance(dict(self.scalars), t, lr, wd)
        return coef, fused

    def train(self, opt: Optimizer) -> None:
        """Train mode: the parameters become ``y = lerp(x, z, 1 - beta1)``, the point gradients
        are taken at (nothing moves before the first step, or when already in train mode)."""
        if not opt.scalars["train_mode"]:
            _toward_z(opt, 1 - self.betas[0])
            opt.scalars["train_mode"] = True

    def eval(self, opt: Optimizer) -> None:
        """Eval mode: the parameters become the average ``x = lerp(y, z, 1 - 1/beta1)``, to
        evaluate or save the model (nothing moves before the first step, or in eval mode)."""
        if opt.scalars["train_mode"]:
            _toward_z(opt, 1 - 1 / self.betas[0])
            opt.scalars["train_mode"] = False


def _toward_z(opt: Optimizer, weight: float) -> None:
    """params = lerp(params, z, weight), torch's lerp (the native weight-average pass); 16-bit
    parameters through float32 (their master copy, or a widened copy), rounded to nearest even."""
    if opt.step_count == 0:  # z is not yet set: the reference has no z then and moves nothing
        return
    fused = {"ema_weight": weight}
    z = opt.state["z"]
    if not opt.low:
        _core.optim_step("average", opt.params, z, [None] * 4, [""] * 4, {}, fused)
        return
    wide = opt.state["master"] if opt.precision == "master" else [p.astype(np.float32) for p in opt.params]
    _core.optim_step("average", wide, z, [None] * 4, [""] * 4, {}, fused)
    for w, p in zip(wide, opt.params):
        _core.convert(w, p)
