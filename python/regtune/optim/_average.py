"""Weight averages of parameters (EMA, SWA), updated on their own or inside a step's pass."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from .. import _core
from .._validation import (
    LOW_DTYPES,
    boolean,
    check_inplace,
    finite_array,
    first_overlap,
    hyperparameter,
    memory_root,
    nonnegative_int,
    not_masked,
    same_length,
)
from ._engine import MAX_STEP, _arrays, like_param

__all__ = ["Average", "EMA", "SWA"]


class Average:
    """A running average of a list of parameters, kept in ``averages`` (one array per
    parameter, same shape and dtype), as ``torch.optim.swa_utils.AveragedModel``: the first
    update copies the parameters, each later one moves the average toward them (see the
    subclasses). ``update()`` is one native pass (threads, SIMD, the GIL released); an optimizer
    given ``ema=`` does the same update inside its step's pass."""

    def __init__(self, params: Sequence[np.ndarray]) -> None:
        self.params: list[np.ndarray] = _arrays(params, "params")
        #: Whether the parameters are bfloat16/float16: their averages are then float32 (an
        #: average in 16 bits would lose every update below half its ulp).
        self.low = self.params[0].dtype in LOW_DTYPES
        #: The averages, one array per parameter (copies of the parameters until the first update).
        self.averages: list[np.ndarray] = [like_param(p, np.float32 if self.low else p.dtype, p) for p in self.params]
        #: Updates so far (torch's ``n_averaged``).
        self.n_averaged = 0
        self._lock = threading.RLock()

    def weight(self, n: int) -> float:
        """The weight of the parameters in update n + 1 (n updates done before it)."""
        raise NotImplementedError

    def coefficients(self) -> dict[str, Any]:
        """The fused extras of the next update (the native average's ema fields)."""
        if self.n_averaged == 0:
            return {"ema_weight": 1.0, "ema_copy": True}
        return {"ema_weight": self.weight(self.n_averaged)}

    def update(self) -> None:
        """Fold the parameters' current values into the averages (one pass).

        Raises:
            ValueError: an average that shares memory with a parameter (``averages`` replaced
                by hand), naming both; nothing is updated then.
        """
        with self._lock:
            roots = {id(memory_root(p)) for p in self.params}
            if any(isinstance(a, np.ndarray) and id(memory_root(a)) in roots for a in self.averages):
                found = first_overlap(
                    [(f"averages[{i}]", a) for i, a in enumerate(self.averages) if isinstance(a, np.ndarray)],
                    [(f"params[{i}]", p) for i, p in enumerate(self.params)],
                )
                if found is not None:
                    raise ValueError(f"{found}; the averages must not share memory with the parameters")
            _core.optim_step("average", self.averages, self.params, [None] * 4, [""] * 4, {}, self.coefficients())
            self.n_averaged += 1

    def copy_to(self, params: Sequence[np.ndarray] | None = None) -> None:
        """Write the averages into ``params`` (default: the averaged parameters themselves),
        e.g. to evaluate or save the averaged model. ``params``: one C-contiguous, writable array
        per parameter, of its shape and dtype (or a tensor exporting DLPack, such as a CPU torch
        tensor, written in place); anything else raises TypeError/ValueError naming
        ``params[i]``, and nothing is written."""
        with self._lock:
            out = self.params if params is None else same_length(params, "params", self.averages, "averages")
            out = [check_inplace(o, f"params[{i}]") for i, o in enumerate(out)]  # DLPack tensors: views
            for i, (o, a) in enumerate(zip(out, self.averages)):
                p = self.params[i]
                if o.shape != a.shape or o.dtype != p.dtype:
                    raise ValueError(f"params[{i}] must be an array of shape {a.shape} and dtype {p.dtype}, "
                                     f"got shape {o.shape} and dtype {o.dtype}")  # fmt: skip
            for o, a in zip(out, self.averages):
                if o.dtype == a.dtype:
                    np.copyto(o, a)
                else:  # a float32 average into 16-bit params: rounded to nearest even
                    _core.convert(a, o)

    def state_dict(self) -> dict[str, Any]:
        """A copy: ``{"n_averaged": int, "averages": [arrays]}``."""
        with self._lock:
            return {"n_averaged": self.n_averaged, "averages": [a.copy() for a in self.averages]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` of an average of the same parameter shapes (copied in).
        A wrong key, count, length, dtype or shape, or a NaN or inf in an average, raises
        TypeError/ValueError naming it (``state_dict['averages'][1][2]``); nothing is loaded."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"n_averaged", "averages"}:
            raise ValueError("state_dict must be a dict with keys 'n_averaged' and 'averages', as state_dict() returns")
        n = nonnegative_int(state_dict["n_averaged"], "state_dict['n_averaged']", upper=MAX_STEP)
        arrays = same_length(state_dict["averages"], "state_dict['averages']", self.params, "params")
        for i, (a, p, own) in enumerate(zip(arrays, self.params, self.averages)):
            label = f"state_dict['averages'][{i}]"
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{label} must be a numpy.ndarray, got {type(a).__name__}")
            not_masked(a, label)
            if a.dtype != own.dtype:
                raise TypeError(f"{label} has dtype {a.dtype} but the averages of params[{i}] have {own.dtype}")
            if a.shape != p.shape:
                raise ValueError(f"{label} has shape {a.shape} but params[{i}] has shape {p.shape}")
            finite_array(a, label, "the averages must be finite")
        with self._lock:
            arrays = [a.copy() for a in arrays]  # may be views of the averages themselves
            for own, a in zip(self.averages, arrays):
                np.copyto(own, a)
            self.n_averaged = n

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.params)} params, {self.params[0].dtype}, n_averaged {self.n_averaged})"


class EMA(Average):
    """Exponential moving average of parameters, as ``torch.optim.swa_utils.AveragedModel``
    with ``get_ema_multi_avg_fn(decay)``: the first update copies the parameters, each later
    one is ``avg = lerp(avg, p, 1 - decay)`` (torch's lerp, rounded as torch's).

    Args:
        params: the arrays to average (C-contiguous, float32/float64, one dtype). The averages
            start as copies of them.
        decay: in [0, 1].
        warmup: TensorFlow's ``ExponentialMovingAverage(num_updates=)`` warm-up: update n (n
            updates done before it) uses ``min(decay, (1 + n) / (10 + n))``, so early averages
            are not dominated by the initial weights.

    ``update()`` reads the parameters once; an optimizer built with ``ema=this`` updates the
    average from each new parameter value inside its own pass instead.

    Example::

        >>> w = np.zeros(2); ema = EMA([w], decay=0.9); opt = SGD([w], lr=1.0, ema=ema)
        >>> opt.step([np.ones(2)]); opt.step([np.ones(2)]); ema.averages[0]
        array([-1.1, -1.1])
    """

    def __init__(self, params: Sequence[np.ndarray], decay: float = 0.999, *, warmup: bool = False) -> None:
        self.decay = hyperparameter(decay, "decay", low=0.0, high=1.0)
        self.warmup = boolean(warmup, "warmup")
        super().__init__(params)

    def weight(self, n: int) -> float:
        decay = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        return 1 - decay


class SWA(Average):
    """Equal-weight average of parameters (stochastic weight averaging), as
    ``torch.optim.swa_utils.AveragedModel``'s default on the CPU: the first update copies,
    update n + 1 is ``avg = avg + (p - avg) / (n + 1)``, so after k updates the average is the
    mean of the k parameter values. Methods and ``ema=`` as :class:`EMA`.

    Example::

        >>> w = np.zeros(1); swa = SWA([w])
        >>> for v in (1.0, 2.0, 6.0):
        ...     w[:] = v; swa.update()
        >>> swa.averages[0]
        array([3.])
    """

    def coefficients(self) -> dict[str, Any]:
        n = self.n_averaged
        return {"ema_weight": 1.0, "ema_copy": True} if n == 0 else {"ema_weight": 1 / (n + 1), "ema_count": n + 1}
