"""Weight penalties: L1, L2 and elastic net values and gradients, soft-thresholding, max-norm.

For weights ``w`` and coefficients ``l1``, ``l2``::

    penalty(w)      = l1 * sum|w| + (l2 / 2) * sum w**2
    grad penalty(w) = l1 * sign(w) + l2 * w            (sign(0) = 0)

Each function is one native pass over its arrays, threaded, with the GIL released. bfloat16
(``ml_dtypes.bfloat16``) and float16 arrays are computed in float32 and rounded back to
nearest even once per element. Values are reduced in double in a fixed order (blocks of 4096 elements, 16 accumulators per block), so
they are the same on every thread count and SIMD path. To fold a penalty into an optimizer
step instead, give the optimizer ``weight_decay=`` (L2), ``l1=`` or ``prox_l1=``.

    >>> import numpy as np, regtune
    >>> w = np.array([-2.0, 0.0, 0.5], np.float32)
    >>> regtune.penalties.penalty_value(w, l1=0.1, l2=1.0)
    2.375
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _core
from ._validation import FLOAT_DTYPES, LOW_DTYPES, as_array, check_inplace, hyperparameter, not_masked, overlaps

__all__ = ["penalty_value", "add_penalty_grad", "prox_l1", "max_norm_"]


def _read_array(w: Any, dtype: np.dtype | None = None, name: str = "w") -> np.ndarray:
    """An array the kernels only read: converted once (if needed) to a C-contiguous float array.

    Real numbers only: float arrays keep their dtype (float32/float64, bfloat16/float16; other
    floats and ints become float64, or ``dtype``); None, masked arrays and bool, complex, object, string or
    datetime arrays are a TypeError naming ``name`` (a cast would drop the mask, the imaginary
    part, or give nan)."""
    if w is None:
        raise TypeError(f"{name} must be an array of real numbers, got None")
    not_masked(w, name)
    w = as_array(w, name)
    try:
        arr = w if isinstance(w, np.ndarray) else np.asarray(w)
    except (ValueError, TypeError):
        raise TypeError(f"{name} must be an array of real numbers; numpy.asarray cannot convert the "
                        f"{type(w).__name__} given (ragged nesting?)") from None
    if arr.dtype.kind not in "fiu" and arr.dtype not in LOW_DTYPES:
        raise TypeError(f"{name} must be an array of real numbers (float32 or float64), got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES or arr.dtype in LOW_DTYPES else np.dtype(np.float64)
    return np.asarray(arr, dtype=dtype, order="C")  # (ascontiguousarray would make a 0-d array 1-d)


def _inplace(w: Any, name: str) -> np.ndarray:
    """An array a kernel updates in place: C-contiguous, writable float32/float64 (or
    bfloat16/float16), not masked."""
    not_masked(w, name)
    w = check_inplace(w, name)
    if w.dtype not in FLOAT_DTYPES and w.dtype not in LOW_DTYPES:
        raise TypeError(f"{name} must have dtype float32, float64, bfloat16 or float16, got {w.dtype}")
    return w


def penalty_value(w: Any, l1: float = 0.0, l2: float = 0.0) -> float:
    """``l1 * sum|w| + (l2 / 2) * sum w**2`` as a Python float.

    Args:
        w: the weights (float32, float64, bfloat16 or float16 array-like, summed as they are;
            ints and other floats are converted to float64; bool, complex, object and string arrays, masked arrays and None raise).
        l1, l2: non-negative finite coefficients.

    Returns:
        The penalty, summed in double whatever ``w``'s dtype, deterministically. NaN or inf in
        ``w`` give a NaN or inf penalty (``0 * inf`` is NaN, as in the formula); for finite
        ``w`` a term whose coefficient is 0 is 0 even when its sum overflows.

    Raises:
        TypeError / ValueError: a coefficient that is not a finite number >= 0; a ``w`` that is
        not an array of real numbers; finite weights whose penalty overflows float64 (ValueError).

    Example::

        >>> penalty_value(np.ones(4), l2=0.5)
        1.0
    """
    l1 = hyperparameter(l1, "l1", low=0.0)
    l2 = hyperparameter(l2, "l2", low=0.0)
    wa = _read_array(w)
    abs_sum, sq_sum = _core.grad_sums([wa])
    value = l1 * abs_sum + (l2 / 2.0) * sq_sum
    if not math.isfinite(value) and np.isfinite(wa).all():  # (a pass over w on this path only)
        # Finite weights whose sums overflow: a term with a zero coefficient is 0 (not 0 * inf);
        # if the other overflows too, the penalty does not fit a float64.
        value = (l1 * abs_sum if l1 else 0.0) + ((l2 / 2.0) * sq_sum if l2 else 0.0)
        if not math.isfinite(value):
            raise ValueError(f"penalty_value of these finite weights w overflows float64 (l1={l1!r}, l2={l2!r})")
    return value


def add_penalty_grad(g: np.ndarray, w: Any, l1: float = 0.0, l2: float = 0.0) -> np.ndarray:
    """Add the penalty's gradient in place: ``g += l1 * sign(w) + l2 * w``.

    Elastic net when both are set. Computed as ``g + (l1 * sign(w) + l2 * w)``, element by
    element in ``g``'s dtype (float32 for a bfloat16/float16 ``g``, rounded once), in one pass.

    Args:
        g: the gradient to update: a C-contiguous, writable float32/float64/bfloat16/float16
            ndarray.
        w: the weights, of ``g``'s shape (converted once to ``g``'s dtype if needed, except
            float32 weights of a 16-bit ``g``, read as they are; real numbers only, as in
            :func:`penalty_value`).
        l1, l2: non-negative finite coefficients.

    Returns:
        ``g``. As in torch, an element that overflows (huge ``l2 * w``) becomes inf: no extra
        pass checks the result.

    Raises:
        TypeError / ValueError: a ``g`` that cannot be updated in place (masked arrays too), a
        shape mismatch, a bad coefficient, or a ``w`` that shares memory with ``g`` ("g
        overlaps w": a weight would be read after its gradient element was written).

    Example::

        >>> g = np.zeros(3); add_penalty_grad(g, np.array([-1.0, 0.0, 2.0]), l1=0.5, l2=1.0)
        array([-1.5,  0. ,  2.5])
    """
    _inplace(g, "g")
    l1 = hyperparameter(l1, "l1", low=0.0)
    l2 = hyperparameter(l2, "l2", low=0.0)
    low_w = g.dtype in LOW_DTYPES and getattr(w, "dtype", None) == np.float32  # read as it is
    wa = _read_array(w, None if low_w else g.dtype)
    if wa.shape != g.shape:
        raise ValueError(f"w has shape {wa.shape} but g has shape {g.shape}")
    if overlaps(g, wa):  # (a converted copy never does)
        raise ValueError("g overlaps w; the gradient must not share memory with the weights")
    _core.add_penalty_grad(g, wa, l1, l2)
    return g


def prox_l1(w: np.ndarray, threshold: float) -> np.ndarray:
    """Soft-thresholding in place: ``w = sign(w) * max(|w| - threshold, 0)``.

    The proximal operator of ``threshold * sum|w|``: entries with ``|w| <= threshold`` become
    exact zeros, so the weights are truly sparse. After a gradient step of size ``lr``, use
    ``threshold = lr * l1`` (proximal gradient descent; the optimizers' ``prox_l1=`` does this
    inside their step).

    Args:
        w: C-contiguous, writable float32/float64/bfloat16/float16 ndarray (not a masked
            array; 16-bit values computed in float32 and rounded to nearest even).
        threshold: finite, >= 0.

    Returns:
        ``w``.

    Example::

        >>> prox_l1(np.array([-1.0, 0.2, 0.7]), 0.5)
        array([-0.5,  0. ,  0.2])
    """
    _inplace(w, "w")
    _core.prox_l1(w, hyperparameter(threshold, "threshold", low=0.0))
    return w


def max_norm_(w: np.ndarray, max_norm: float, axis: int = 0) -> np.ndarray:
    """Rescale, in place, each slice of ``w`` along ``axis`` whose L2 norm exceeds ``max_norm``.

    Slice ``i`` is ``w.take(i, axis)``; when its norm ``n_i > max_norm`` it is multiplied by
    ``max_norm / (n_i + 1e-7)``, as ``torch.renorm(w, 2, axis, max_norm)``. With torch's
    ``(fan_out, fan_in)`` weight layout, ``axis=0`` bounds each output unit's incoming weights
    (the max-norm constraint of dropout nets, Srivastava et al. 2014). Norms are summed in
    double; a float64 slice whose sum of squares overflows is rescaled by its largest entry
    first (where torch's norm would be inf and the slice zeroed).

    Args:
        w: C-contiguous, writable float32/float64 ndarray with at least one dimension (not a
            masked array).
        max_norm: finite, > 0.
        axis: the axis that indexes the slices.

    Returns:
        ``w``.

    Example::

        >>> w = np.array([[3.0, 4.0], [0.3, 0.4]])
        >>> max_norm_(w, 1.0).round(6)
        array([[0.6, 0.8],
               [0.3, 0.4]])
    """
    _inplace(w, "w")
    max_norm = hyperparameter(max_norm, "max_norm", low=0.0, low_open=True)
    if w.ndim == 0:
        raise ValueError("w must have at least one dimension")
    if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, np.integer)):
        raise TypeError(f"axis must be an int, got axis={axis!r}")
    if not -w.ndim <= axis < w.ndim:
        raise ValueError(f"axis must be in [{-w.ndim}, {w.ndim}), got axis={axis}")
    axis = int(axis) % w.ndim
    others = tuple(d for d in range(w.ndim) if d != axis)
    with np.errstate(over="ignore"):  # handled below
        norms = np.sqrt(np.sum(np.square(w, dtype=np.float64), axis=others, keepdims=True))
    if w.dtype == np.float64 and np.isinf(norms).any():  # sum of squares past 1.8e308: rescale
        peak = np.max(np.abs(w), axis=others, keepdims=True, initial=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):  # inf / inf where w holds inf
            robust = peak * np.sqrt(np.sum(np.square(w / np.where(peak > 0, peak, 1.0)), axis=others, keepdims=True))
        norms = np.where(np.isfinite(peak), robust, norms)  # slices with inf keep norm inf
    scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
    np.multiply(w, scale, out=w)
    return w
