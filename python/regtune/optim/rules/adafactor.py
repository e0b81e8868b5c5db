"""Adafactor, as torch.optim.Adafactor: a driver of its own (factored second moments)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validation import LOW_DTYPES, hyperparameter
from .._engine import Optimizer, Rule, decay_terms, like_param


class Adafactor(Rule):
    """Adafactor (Shazeer and Stern, 2018), as ``torch.optim.Adafactor``. For a tensor of more
    than one dimension the second moment is factored over its last two axes (R x C, batched
    over the others)::

        beta2_t = 1 - t ** beta2_decay;  rho_t = min(lr, 1 / sqrt(t))
        alpha = max(eps2, rms(p)) * rho_t
        p = p * (1 - lr * weight_decay)
        row_var = lerp(row_var, mean(g**2 over C), 1 - beta2_t)      (R x 1)
        col_var = lerp(col_var, mean(g**2 over R), 1 - beta2_t)      (1 x C)
        v = row_var @ col_var / max(mean(row_var), eps1)
        u = g / sqrt(max(v, eps1**2))
        p = p - alpha / max(1, rms(u) / d) * u

    and a vector or scalar keeps ``variance = lerp(variance, g**2, 1 - beta2_t)`` as ``v``.
    ``rms`` is the root mean square over the whole tensor; ``eps1`` None means the machine
    epsilon of the state's dtype (float32 for 16-bit params, whose factors are float32). The row and column means and the norms are sums in double in a fixed order
    (the same on every thread count and SIMD path), all in one native call that reads each
    gradient three times and each parameter twice (torch's reads them about ten times, and
    materializes v).

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64, one dtype).
        lr: >= 0, or a schedule (default 1e-2, as torch). beta2_decay: <= 0.
        eps: (eps1, eps2): eps1 None or >= 0, eps2 >= 0. d: >= 1, the clipping threshold.
        weight_decay: >= 0, or a schedule (decoupled, as torch).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the module
            docstring (16-bit params keep float32 factors: state_dtype must be float32).

    State: ``row_var`` and ``col_var`` for tensors of more than one dimension, ``variance`` for
    the others; each list holds None where a tensor keeps no such buffer.
    """

    name, key, core = "Adafactor", "adafactor", "adafactor"

    def __init__(self, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0) -> None:
        self.beta2_decay = hyperparameter(beta2_decay, "beta2_decay", high=0.0)
        not_pair = isinstance(eps, (str, bytes, dict, set, frozenset)) or not hasattr(eps, "__len__")
        if not_pair or getattr(eps, "ndim", 1) != 1 or len(eps) != 2:  # (a 0-d array has __len__ but no len)
            raise TypeError(f"eps must be a pair (eps1, eps2), got eps={eps!r}")
        eps1 = None if eps[0] is None else hyperparameter(eps[0], "eps[0]", low=0.0)
        self.eps = (eps1, hyperparameter(eps[1], "eps[1]", low=0.0))
        self.d = hyperparameter(d, "d", low=1.0)

    def slots(self):
        return ("row_var", "col_var", "variance")

    def state_arrays(self, params: list[np.ndarray], dtype: np.dtype) -> dict[str, list[np.ndarray | None]]:
        if params[0].dtype in LOW_DTYPES and dtype != np.float32:
            raise TypeError(f"state_dtype must be float32 for Adafactor's 16-bit step (its factors are small), "
                            f"got {dtype}")  # fmt: skip
        return {
            "row_var": [np.zeros(p.shape[:-1] + (1,), dtype) if p.ndim > 1 else None for p in params],
            "col_var": [np.zeros(p.shape[:-2] + (1, p.shape[-1]), dtype) if p.ndim > 1 else None for p in params],
            "variance": [like_param(p, dtype, 0) if p.ndim <= 1 else None for p in params],
        }

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        # eps1 None: the machine epsilon of the state's dtype, set by native_call
        eps1 = self.eps[0]
        c: dict[str, Any] = {
            "one_minus_beta2_t": float(t) ** self.beta2_decay,
            "rho": min(lr, 1 / (float(t) ** 0.5)),
            "eps2": self.eps[1],
            "d": self.d,
        }
        if eps1 is not None:
            c["eps1"], c["eps"] = eps1, eps1 * eps1
        return c, decay_terms(lr, wd, True)

    def native_call(self, opt: Optimizer, grads: list, coef: dict, fused: dict) -> tuple[str, tuple]:
        if "eps1" not in coef:
            eps1 = float(np.finfo(opt.state_dtype).eps)
            coef = {**coef, "eps1": eps1, "eps": eps1 * eps1}
        masters = opt.state["master"] if opt.precision == "master" else None
        st = opt.state
        emas = opt.ema.averages if opt.ema is not None else None
        return "adafactor_step", (
            opt.params, grads, st["row_var"], st["col_var"], st["variance"], emas, coef, fused,
            opt.own_max_grad_norm, masters, opt._sr_key, opt.step_count, opt.reduce_sums,
        )  # fmt: skip
