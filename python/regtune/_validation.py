"""Argument checks shared by every public function.

Arguments are checked once, where they enter; the native kernels trust what they are given.
Every message names the argument and says what was expected.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from typing import Any

import ml_dtypes
import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy < 2
    from numpy import byte_bounds

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: The 16-bit floats: bfloat16 (``ml_dtypes.bfloat16``) and IEEE half (``numpy.float16``).
#: Kernels compute in float32 and round each result once to nearest even.
BFLOAT16, FLOAT16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)
LOW_DTYPES = (BFLOAT16, FLOAT16)
ALL_FLOAT_DTYPES = FLOAT_DTYPES + LOW_DTYPES


def _names(low_precision: bool) -> str:
    """The accepted dtypes, as the messages list them."""
    return "float32, float64, bfloat16 or float16" if low_precision else "float32 or float64"


def float_dtype(dtype: Any, name: str = "dtype", *, low_precision: bool = False) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, which must be float32 or float64 (or, with
    ``low_precision=True``, also bfloat16 or float16).

    None is regtune's default, float32 (NumPy reads None as float64): ``dtype=None`` means
    "the default" everywhere, and where an ``out=`` array is given the caller reads it as
    ``out.dtype`` before coming here (see :func:`output_array`).
    """
    if dtype is None:
        return FLOAT_DTYPES[0]
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be {_names(low_precision)}, got {dtype!r}") from exc
    if dt not in (ALL_FLOAT_DTYPES if low_precision else FLOAT_DTYPES):
        raise TypeError(f"{name} must be {_names(low_precision)}, got {dt}")
    return dt


def shape_tuple(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """An int or a tuple/list (or 1-D integer array) of non-negative ints, as a tuple.

    Stricter than NumPy only where NumPy would guess: a dict, a string, a set, a float, a
    nested sequence or a bool is a TypeError naming ``name``.
    """
    if type(shape) is tuple and all(type(d) is int and d >= 0 for d in shape):
        return shape  # the common case, without the ABC checks
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        dims: Any = (shape,)
    elif isinstance(shape, (tuple, list)) or (isinstance(shape, np.ndarray) and shape.ndim == 1 and shape.dtype.kind in "iu"):
        dims = shape
    else:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {type(shape).__name__} {shape!r}")
    out = []
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must contain only ints, got {shape!r}")
        d = operator.index(d)
        if d < 0:
            raise ValueError(f"{name} must not contain negative dimensions, got {shape!r}")
        out.append(d)
    return tuple(out)


def output_array(shape: Any, dtype: Any, out: Any, *, name: str = "out", low_precision: bool = False) -> np.ndarray:
    """The array an array-making function fills: ``out`` after checks, or a new one.

    NumPy's ``out=`` rule: ``dtype`` None means ``out.dtype`` (any float32/float64 array),
    or float32 when there is no ``out``; an explicit ``dtype`` must equal ``out.dtype``
    (``TypeError: dtype float32 does not match out.dtype float64``). ``out`` must be a
    C-contiguous, writable ``numpy.ndarray``; when ``shape`` is given too it must equal
    ``out.shape``. Nothing is ever copied: a wrong ``out`` raises. ``low_precision=True``
    also accepts bfloat16 and float16.
    """
    if out is None:
        if shape is None:
            raise TypeError("shape is required when out is not given")
        return np.empty(shape_tuple(shape), dtype=float_dtype(dtype, low_precision=low_precision))
    dt = None if dtype is None else float_dtype(dtype, low_precision=low_precision)
    out = check_inplace(out, name)
    if out.dtype not in (ALL_FLOAT_DTYPES if low_precision else FLOAT_DTYPES):
        raise TypeError(f"{name} must have dtype {_names(low_precision)}, got {out.dtype}")
    if dt is not None and out.dtype != dt:
        raise TypeError(f"dtype {dt} does not match {name}.dtype {out.dtype}")
    if shape is not None and shape_tuple(shape) != out.shape:
        raise ValueError(f"shape {shape_tuple(shape)} does not match {name}.shape {out.shape}")
    return out


def as_array(x: Any, name: str) -> Any:
    """``x`` itself unless it is a DLPack exporter that is not an ndarray (a CPU torch tensor, a
    JAX or CuPy array...): then a NumPy view of its memory, zero-copy, so a kernel that writes it
    updates the tensor in place. A torch tensor that requires grad (a ``Parameter``) is viewed
    through ``.detach()``, which shares its memory. A CPU ``torch.bfloat16`` tensor, which DLPack
    cannot hand to NumPy, is viewed through its int16 bits as ``ml_dtypes.bfloat16`` (the same
    memory). What NumPy cannot view (a GPU tensor, a dtype NumPy lacks such as
    torch.float8_e4m3fn) is a TypeError naming ``name``."""
    if isinstance(x, np.ndarray) or not hasattr(x, "__dlpack__"):
        return x
    src = x.detach() if getattr(x, "requires_grad", False) and hasattr(x, "detach") else x
    try:
        if str(getattr(src, "dtype", "")) == "torch.bfloat16":
            import torch  # only a torch tensor gets here: torch is imported already

            return np.from_dlpack(src.view(torch.int16)).view(BFLOAT16)
        return np.from_dlpack(src)
    except (BufferError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        what = f"a {type(x).__name__}" + (f" of dtype {x.dtype}" if hasattr(x, "dtype") else "")
        device = getattr(x, "device", None)
        if device is not None and str(device) != "cpu":
            what += f" on {device}"
        raise TypeError(
            f"{name} must be a CPU array of float32 or float64 that NumPy can view without a copy, got {what} "
            f"({exc})"
        ) from None


def check_inplace(arr: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """Check an array that a kernel writes into: ndarray (not masked; a DLPack exporter is viewed,
    see :func:`as_array`), exact dtype, C-contiguous, writable. Returns the array to write."""
    arr = as_array(arr, name)
    not_masked(arr, name)
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


def hyperparameter(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the interval [low, high] (an end is open when ``*_open``).

    ``name`` names the argument as the user wrote it, index included (``"betas[1]"``); the
    message quotes the bad value: ``ValueError: betas[1] must be in [0, 1), got betas[1]=1.0``.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {name}={value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {name}={v!r}")
    below = low is not None and (v <= low if low_open else v < low)
    above = high is not None and (v >= high if high_open else v > high)
    if below or above:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {lo}, {hi}, got {name}={v!r}")
    return v


def scalar_or_schedule(value: Any, name: str, *, low: float = 0.0) -> float | Any:
    """A hyperparameter that may also be a schedule: a callable of the step count.

    A number is checked now (finite, >= ``low``); a callable is checked each time it is called,
    by :func:`schedule_value`.
    """
    if callable(value):
        return value
    return hyperparameter(value, name, low=low)


def schedule_value(value: Any, name: str, count: int, *, low: float = 0.0) -> float:
    """The value of a float-or-schedule hyperparameter at step ``count`` (a checked float)."""
    if not callable(value):
        return value
    return hyperparameter(value(count), f"{name}({count})", low=low)


def array_list(arrays: Any, name: str, *, low: bool = False) -> list[np.ndarray]:
    """A non-empty list of arrays a kernel updates in place: each a C-contiguous, writable
    float32 or float64 (with ``low``, also bfloat16 or float16) ndarray, all of one dtype, no
    two sharing memory. Each message names the array as ``name[i]``."""
    if isinstance(arrays, np.ndarray) or not hasattr(arrays, "__iter__"):
        raise TypeError(f"{name} must be a list of numpy.ndarray, got {type(arrays).__name__}")
    out = list(arrays)
    if not out:
        raise ValueError(f"{name} must not be empty")
    for i, a in enumerate(out):
        out[i] = a = check_inplace(a, f"{name}[{i}]")
        if a.dtype not in FLOAT_DTYPES and not (low and a.dtype in LOW_DTYPES):
            what = "float32, float64, bfloat16 or float16" if low else "float32 or float64"
            raise TypeError(f"{name}[{i}] must have dtype {what}, got {a.dtype}")
        if a.dtype != out[0].dtype:
            raise TypeError(f"{name}[{i}] has dtype {a.dtype} but {name}[0] has {out[0].dtype}; one list holds one dtype")
    found = first_overlap([(f"{name}[{i}]", a) for i, a in enumerate(out)])
    if found:
        raise ValueError(f"{found}; each array must appear once")
    return out


def same_length(items: Any, name: str, like: list, like_name: str) -> list:
    """``items`` as a list, which must have as many entries as ``like``."""
    if isinstance(items, np.ndarray) or not hasattr(items, "__iter__"):
        raise TypeError(f"{name} must be a list of numpy.ndarray, got {type(items).__name__}")
    out = items if isinstance(items, list) else list(items)
    if len(out) != len(like):
        raise ValueError(f"{name} has {len(out)} arrays but {like_name} has {len(like)}")
    return out


def one_of(value: Any, valid: Any) -> bool:
    """Whether ``value`` is a str among ``valid`` (``in`` alone fails on arrays and unhashables)."""
    return isinstance(value, str) and value in valid


def boolean(value: Any, name: str) -> bool:
    """A bool (or NumPy bool); anything else is a TypeError naming the argument."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {name}={value!r}")
    return bool(value)


def available_bytes() -> int | None:
    """Memory this process can still allocate (Linux: MemAvailable; else the physical memory);
    None when unknown. Used to refuse, with a MemoryError, allocations that cannot succeed,
    before the operating system's overcommit hands out pages it will later kill us for."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


#: Allocations below this are not checked by :func:`check_fits` (reading the available memory
#: costs about 25 us; a failure to allocate less is NumPy's own MemoryError).
CHECKED_BYTES = 1 << 28


def check_fits(nbytes: int, what: str) -> None:
    """MemoryError (naming ``what``) when ``nbytes`` (at least :data:`CHECKED_BYTES`) exceed the
    memory available now."""
    if nbytes < CHECKED_BYTES:
        return
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} would take {nbytes / 2**30:.3g} GiB, more than the {avail / 2**30:.3g} GiB "
                          "of memory available")  # fmt: skip


def finite_array(a: np.ndarray, name: str, why: str) -> None:
    """Refuse an array holding NaN or inf: a ValueError naming its first such element,
    ``name[1, 0] is nan; <why>``. One pass over the array (for what is loaded, not stepped)."""
    ok = np.isfinite(a)
    if ok.all():
        return
    flat = int(np.argmin(ok.reshape(-1)))  # the first False
    where = np.unravel_index(flat, a.shape)
    at = f"[{', '.join(map(str, where))}]" if a.ndim else ""
    raise ValueError(f"{name}{at} is {float(a.reshape(-1)[flat])}; {why}")


def float_input(x: Any, name: str, *, low_precision: bool = False) -> np.ndarray:
    """An array a kernel only reads: a float32 or float64 ``numpy.ndarray`` (array-likes are
    converted once with ``numpy.asarray``; ``low_precision=True`` also accepts bfloat16 and
    float16). Contiguity is not required here; callers pass ``numpy.ascontiguousarray(x)`` to
    the kernel, a copy only of an input that is never written. Any other dtype, and a masked
    array (its mask would be ignored), is a TypeError naming the argument (nothing is cast
    silently)."""
    not_masked(x, name)
    x = as_array(x, name)
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype not in (ALL_FLOAT_DTYPES if low_precision else FLOAT_DTYPES):
        raise TypeError(f"{name} must have dtype {_names(low_precision)}, got {arr.dtype}")
    return arr


# --------------------------------------------------------------- masked arrays and overlap

#: Effort numpy.shares_memory may spend on one pair of strided views before the pair is taken
#: to overlap (only pairs whose memory bounds overlap get that far).
MAX_OVERLAP_WORK = 100_000


def not_masked(x: Any, name: str) -> None:
    """A masked array's mask would be ignored by every kernel: refuse it, naming ``name``."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} must be a plain numpy.ndarray, got a numpy.ma.MaskedArray (regtune would ignore its mask; "
            f"pass {name}.filled(...) or {name}.data)"
        )


def memory_root(a: np.ndarray) -> Any:
    """The object whose memory ``a`` views: arrays derived from one array or buffer share it."""
    b = a.base
    if b is None:
        return a
    return b.obj if type(b) is memoryview and b.obj is not None else b


def overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` share at least one byte: the cheap bounds test first, then the
    exact test (interleaved views such as x[::2] and x[1::2] do not overlap); a pair too hard
    to decide within ``MAX_OVERLAP_WORK`` counts as overlapping."""
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=MAX_OVERLAP_WORK))
    except np.exceptions.TooHardError:
        return True


def first_overlap(written: list[tuple[str, np.ndarray]], read: list[tuple[str, np.ndarray]] = ()) -> str | None:
    """``"a overlaps b"`` for the first pair of arrays that share memory, where at least one of
    the two is in ``written`` (arrays in ``read`` may share memory with each other), else None.
    The arrays are sorted by their memory bounds and only pairs whose bounds intersect are
    tested exactly: about n log n work for n arrays that tile one buffer (a flat parameter
    arena), not n**2. Bounds, not owners: views of one torch tensor through different tensor
    objects (or DLPack exports) have different NumPy bases but the same addresses."""
    group = [(label, a, True) for label, a in written]
    group += [(label, a, False) for label, a in read if isinstance(a, np.ndarray)]  # others: refused by the caller
    if len(group) >= 2:
        spans = sorted((*byte_bounds(a), k) for k, (_, a, _) in enumerate(group) if a.size)
        active: list[tuple[int, int]] = []  # (end, index) of the spans still open
        for lo, hi, k in spans:
            active = [(end, j) for end, j in active if end > lo]
            label, a, w = group[k]
            for _, j in active:
                other, b, wb = group[j]
                if (w or wb) and overlaps(a, b):
                    return f"{label} overlaps {other}" if k > j else f"{other} overlaps {label}"
            active.append((hi, k))
    return None
