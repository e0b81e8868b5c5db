"""Argument checks shared by every public function.

Arguments are checked once, where they enter; the native kernels trust what they are given.
Every message names the argument and says what was expected.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, which must be float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def shape_tuple(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """Normalize an int or a sequence of non-negative ints to a tuple."""
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
        dims = (shape,)
    else:
        try:
            dims = tuple(shape)
        except TypeError as exc:
            raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}") from exc
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must contain only ints, got {shape!r}")
        d = operator.index(d)
        if d < 0:
            raise ValueError(f"{name} must not contain negative dimensions, got {shape!r}")
        out.append(d)
    return tuple(out)


def output_array(shape: Any, dtype: Any, out: Any, *, name: str = "out") -> np.ndarray:
    """The array an array-making function fills: ``out`` after checks, or a new one.

    ``out`` must be a C-contiguous, writable ``numpy.ndarray`` of exactly ``dtype``
    (when ``dtype`` is None, any float32/float64 array). When ``shape`` is given too it must
    equal ``out.shape``. Nothing is ever copied: a wrong ``out`` raises.
    """
    if out is None:
        if shape is None:
            raise TypeError("shape is required when out is not given")
        return np.empty(shape_tuple(shape), dtype=float_dtype(dtype))
    check_inplace(out, name, dtype=None if dtype is None else float_dtype(dtype))
    if out.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {out.dtype}")
    if shape is not None and shape_tuple(shape) != out.shape:
        raise ValueError(f"shape {shape_tuple(shape)} does not match {name}.shape {out.shape}")
    return out


def check_inplace(arr: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """Check an array that a kernel writes into: ndarray, exact dtype, C-contiguous, writable."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (regtune never writes into a silent copy)")
    if not arr.flags.writeable:
        raise ValueError(f"{name} must be writable, got a read-only array")
    return arr


def finite_float(value: Any, name: str) -> float:
    """A finite real number as a Python float."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return v


def positive_float(value: Any, name: str) -> float:
    """A finite number > 0."""
    v = finite_float(value, name)
    if not v > 0.0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return v


def nonnegative_int(value: Any, name: str, upper: int | None = None) -> int:
    """An int >= 0 (and < ``upper`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    v = operator.index(value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    if upper is not None and v >= upper:
        raise ValueError(f"{name} must be < {upper}, got {v}")
    return v
