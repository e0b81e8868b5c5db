"""Dropout with counter-based masks: fused, bit-packed, and regenerable in the backward pass.

Element ``i`` of a dropout on ``n`` elements is kept when word ``offset + i`` of the Philox
stream of ``seed`` is at least ``threshold = round(p * 2**32)``: exactly the words
:func:`regtune.random.bits` returns, so the keep probability is ``1 - p`` to within 2**-32,
and the mask of any element depends on ``(seed, offset + i)`` alone, never on the thread
count, the SIMD path or how the array was split::

    >>> import numpy as np, regtune
    >>> x = np.ones(10, np.float32)
    >>> y, mask = regtune.dropout(x, 0.5, seed=3)
    >>> keep = regtune.random.bits(10, seed=3) >= 2**31
    >>> bool((np.unpackbits(mask, bitorder="little", count=10) == keep).all())
    True

Masks are **bit-packed**: ``ceil(n / 8)`` uint8 bytes, bit ``i % 8`` (value ``1 << (i % 8)``) of
byte ``i // 8`` set when element ``i`` is kept, the order of
``numpy.unpackbits(mask, bitorder="little", count=n)``; unused high bits of the last byte are 0.
A mask of a slice made alone (``offset=k``) starts at the slice: its bit 0 is element ``k``.

The backward pass can use the stored mask, or regenerate it from the same ``seed`` and
``offset`` (nothing stored between forward and backward); both give identical results. With
``seed=None`` a fresh seed is drawn and cannot be regenerated: keep the returned mask, or pass
an explicit seed (for example ``seed=base_seed``, ``offset=step * x.size``).

Values: kept elements are multiplied by ``scale`` computed once in the array's dtype
(``np.float32(1 / (1 - p))`` for float32, one multiply per element, no division); dropped ones
are exactly ``+0.0``, whatever ``x`` held there (also NaN or inf).

bfloat16 (``ml_dtypes.bfloat16``) and float16 arrays are computed in float32: ``x`` is widened
exactly, the coefficients are the float32 ones, and the float32 result is rounded once to nearest
even. So a 16-bit dropout equals the float32 dropout of ``x.astype(np.float32)`` (same seed, same
mask) cast back to the dtype, bit for bit, for every function here. torch differs on purpose
here: its CPU dropout builds the scaled mask in ``x``'s dtype, so ``1 / (1 - p)`` is rounded to
bfloat16 first (``1 / 0.7`` becomes 1.4297, 0.08% high; the error reaches 2**-9 relative), which
biases every kept value by that much; regtune's float32 scale keeps the expectation of ``y``
equal to ``x`` to float32 accuracy before the one final rounding.

Names: this module is callable. ``regtune.dropout(x, p)`` calls :func:`dropout`, and the
module's other functions are its attributes: ``regtune.dropout.alpha_dropout``,
``regtune.dropout.feature_dropout``, ``regtune.dropout.dropconnect`` and so on;
``from regtune.dropout import dropout`` gives the function itself.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import types
from typing import Any, NamedTuple, Union

import numpy as np

from . import _core
from ._validation import (
    as_array,
    boolean,
    check_inplace,
    float_input,
    hyperparameter,
    not_masked,
    overlaps,
    shape_tuple,
)
from .random import Generator, SeedLike, _draw, _drawing, _position

__all__ = [
    "DropConnect",
    "alpha_dropout",
    "alpha_dropout_backward",
    "dropconnect",
    "dropout",
    "dropout_backward",
    "dropout_mask",
    "feature_dropout",
    "feature_dropout_backward",
]

# torch's alpha for AlphaDropout (aten/src/ATen/native/Dropout.cpp): -SELU(-inf) = lambda * alpha.
SELU_ALPHA_PRIME = 1.7580993408473766

_KEEP_NONE = 1 << 32

ArrayOrPair = Union[np.ndarray, "tuple[np.ndarray, np.ndarray]"]


class DropConnect(NamedTuple):
    """What :func:`dropconnect` returns: the masked, rescaled weight and its packed mask."""

    weight: np.ndarray
    mask: np.ndarray


# ------------------------------------------------------------------------------- helpers


def _probability(p: Any) -> float:
    if type(p) is float and 0.0 <= p <= 1.0:
        return p  # the common case, without the ABC checks
    return hyperparameter(p, "p", low=0.0, high=1.0)


def _threshold(p: float) -> int:
    """round(p * 2**32): element kept iff its word >= threshold (2**32: nothing kept)."""
    return round(p * 2.0**32)


def _nbytes(n: int) -> int:
    return (n + 7) // 8


def _ones_mask(n: int) -> np.ndarray:
    """The packed mask that keeps all n elements (unused high bits of the last byte clear)."""
    mask = np.full(_nbytes(n), 0xFF, dtype=np.uint8)
    if n % 8:
        mask[-1] = (1 << (n % 8)) - 1
    return mask


def _input(x: Any, name: str) -> np.ndarray:
    """An array the kernels only read: float32/float64/bfloat16/float16, converted once; None,
    masked arrays and what NumPy cannot make an array of are refused naming ``name``."""
    if type(x) is not np.ndarray:
        if x is None:
            raise TypeError(f"{name} must be a float32, float64, bfloat16 or float16 array, got None")
        not_masked(x, name)
        x = as_array(x, name)
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except (ValueError, TypeError):
                raise TypeError(
                    f"{name} must be a float32, float64, bfloat16 or float16 array, got a {type(x).__name__} that "
                    "numpy.asarray cannot convert (ragged nesting?)"
                ) from None
    return float_input(x, name, low_precision=True)


def _output(out: Any, x: np.ndarray, xname: str) -> np.ndarray | None:
    """Check ``out`` against ``x``: exact dtype and shape, C-contiguous, writable, and either
    the same memory as ``x`` (in place) or disjoint from it (exactly: interleaved views that
    share no element are disjoint)."""
    if out is None:
        return None
    not_masked(out, "out")
    out = check_inplace(out, "out", x.dtype)
    if out.shape != x.shape:
        raise ValueError(f"out.shape {out.shape} does not match {xname}.shape {x.shape}")
    if out is x or out.size == 0 or not np.may_share_memory(out, x):
        return out
    if x.flags.c_contiguous and out.ctypes.data == x.ctypes.data:
        return out  # the same elements (same start, shape, dtype, both C-contiguous): in place
    if overlaps(out, x):
        raise ValueError(f"out overlaps {xname} without being the same memory; pass out={xname} or a separate array")
    return out


def _passthrough(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """The identity (training=False or p = 0): x itself, or x copied into out."""
    if out is None:
        return x
    if out.size and out.ctypes.data != x.ctypes.data:
        np.copyto(out, x)
    return out


def _contiguous(x: np.ndarray) -> np.ndarray:
    """x, or a C-contiguous copy of a read-only input (0-d arrays keep their shape)."""
    return x if x.flags.c_contiguous else x.copy(order="C")


def _channels(x: np.ndarray) -> tuple[int, int]:
    """(number of (n, c) channels, elements per channel) of an (N, C, *spatial) array."""
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, C, ...) for feature dropout, got shape {x.shape}")
    return x.shape[0] * x.shape[1], math.prod(x.shape[2:])


def _mask_input(mask: Any, units: int) -> np.ndarray:
    not_masked(mask, "mask")
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray of dtype uint8 (a packed mask), got {type(mask).__name__}")
    if mask.dtype != np.uint8:
        raise TypeError(f"mask must have dtype uint8 (a packed mask), got {mask.dtype}")
    if mask.size != _nbytes(units):
        raise ValueError(
            f"mask must hold ceil({units} / 8) = {_nbytes(units)} bytes for this array, got {mask.size}"
        )
    return np.ascontiguousarray(mask)


_COEFS: dict[tuple[float, np.dtype], tuple[float, float, float]] = {}


def _coef_type(dt: np.dtype) -> type:
    """The scalar type the coefficients are rounded to: the dtype's own, float32 for the 16-bit
    floats (their kernels compute in float32, as torch's CPU kernels do)."""
    return np.float32 if dt.itemsize == 2 else dt.type


def _dropout_coefs(p: float, dt: np.dtype) -> tuple[float, float, float]:
    """(scale, shift, drop) of inverted dropout: kept x * scale, dropped 0 (remembered per
    (p, dtype): rounding in the dtype costs more than a small kernel call)."""
    hit = _COEFS.get((p, dt))
    if hit is None:
        if len(_COEFS) >= 1024:
            _COEFS.clear()
        scale = 0.0 if p == 1.0 else float(_coef_type(dt)(1.0 / (1.0 - p)))
        hit = _COEFS[(p, dt)] = (scale, 0.0, 0.0)
    return hit


def _alpha_a(p: float) -> float:
    return 1.0 / math.sqrt((SELU_ALPHA_PRIME * SELU_ALPHA_PRIME * p + 1.0) * (1.0 - p))


def _alpha_coefs(p: float, dt: np.dtype) -> tuple[float, float, float]:
    """(scale, shift, drop) of alpha dropout, rounded as torch rounds them in the dtype:
    scale = a, shift = alpha' a p, drop = -alpha' a + alpha' a p. For the 16-bit floats they are
    the float32 coefficients (torch rounds them to the 16-bit dtype, as it builds them in a
    tensor of x's dtype: its 16-bit alpha dropout can differ from this by rounding)."""
    if p == 1.0:
        return 0.0, 0.0, 0.0
    t = _coef_type(dt)
    a = _alpha_a(p)
    scale, shift = t(a), t(SELU_ALPHA_PRIME * a * p)
    drop = -t(SELU_ALPHA_PRIME * a) + shift  # in the dtype's arithmetic
    return float(scale), float(shift), float(drop)


def _forward(
    x: Any, p: Any, seed: Any, offset: Any, training: Any, out: Any, return_mask: Any, kind: str, xname: str = "x"
):
    p = _probability(p)
    if type(training) is not bool:
        training = boolean(training, "training")
    if type(return_mask) is not bool:
        return_mask = boolean(return_mask, "return_mask")
    x = _input(x, xname)
    out = _output(out, x, xname)
    feature = kind == "feature"
    units, row_len = _channels(x) if feature else (x.size, 1)
    if not training or p == 0.0:
        y = _passthrough(x, out)
        return (y, _ones_mask(units)) if return_mask else y
    dt = x.dtype
    scale, shift, drop = _alpha_coefs(p, dt) if kind == "alpha" else _dropout_coefs(p, dt)
    threshold = _threshold(p)
    xc = _contiguous(x)
    y = np.empty_like(xc) if out is None else out

    def draw(key: int, stream: int, first: int) -> np.ndarray | None:  # a Generator advances on success
        if feature:
            mask = np.empty(_nbytes(units), dtype=np.uint8)
            _core.dropout_mask(mask, units, key, stream, first, threshold)
            if x.size:
                _core.dropout_apply(xc, y, mask, row_len, scale, shift, drop)
            return mask
        mask = np.empty(_nbytes(units), dtype=np.uint8) if return_mask else None
        _core.dropout(xc, y, mask, key, stream, first, threshold, scale, shift, drop)
        return mask

    mask = _draw(seed, offset, units, 4, draw)
    return (y, mask) if return_mask else y


def _backward(dy: Any, mask: Any, p: Any, seed: Any, offset: Any, out: Any, kind: str) -> np.ndarray:
    p = _probability(p)
    dy = _input(dy, "dy")
    out = _output(out, dy, "dy")
    if mask is not None and seed is not None:
        raise ValueError("give either mask (the forward's) or seed (to regenerate it), not both")
    if mask is None and seed is None:
        raise ValueError(
            "the backward needs the forward's mask, or its seed (and offset) to regenerate the mask; "
            "a forward run with seed=None can only be undone with its returned mask"
        )
    if isinstance(seed, Generator):
        raise TypeError(
            "seed must be the int or SeedSequence the forward used; a Generator has advanced since "
            "the forward: pass the forward's mask instead"
        )
    feature = kind == "feature"
    units, row_len = _channels(dy) if feature else (dy.size, 1)
    if mask is not None:
        mask = _mask_input(mask, units)  # a copy when it was not contiguous
        if out is not None and overlaps(mask, out):  # its bits would be overwritten while read
            raise ValueError("mask overlaps out; the mask must not be stored in the output's memory")
    if p == 0.0:
        return _passthrough(dy, out)
    dt = dy.dtype
    if kind == "alpha":
        scale = 0.0 if p == 1.0 else float(_coef_type(dt)(_alpha_a(p)))
    else:
        scale = _dropout_coefs(p, dt)[0]
    dyc = _contiguous(dy)
    dx = np.empty_like(dyc) if out is None else out
    if mask is None:
        threshold = _threshold(p)
        key, stream, first = _position(seed, offset, units, 4)
        if feature:
            mask = np.empty(_nbytes(units), dtype=np.uint8)
            _core.dropout_mask(mask, units, key, stream, first, threshold)
        else:
            _core.dropout(dyc, dx, None, key, stream, first, threshold, scale, 0.0, 0.0)
            return dx
    if dy.size:
        _core.dropout_apply(dyc, dx, mask, row_len, scale, 0.0, 0.0)
    return dx


# ------------------------------------------------------------------------------- public API


def dropout(
    x: Any,
    p: float = 0.5,
    *,
    seed: SeedLike = None,
    offset: int = 0,
    training: bool = True,
    out: np.ndarray | None = None,
    return_mask: bool = True,
) -> ArrayOrPair:
    """Inverted dropout: ``y = x * keep * scale`` with ``keep ~ Bernoulli(1 - p)`` per element.

    ``keep[i] = bits[offset + i] >= round(p * 2**32)`` on the Philox stream of ``seed`` (the
    words of :func:`regtune.random.bits`), and ``scale = 1 / (1 - p)`` rounded once to the
    dtype: kept values are exactly ``x * np.float32(1 / (1 - p))`` for float32 (``x * (1 / (1 -
    p))`` for float64), dropped values exactly ``+0.0``. One pass over ``x``: draws, mask and
    output together.

    bfloat16 and float16 ``x`` compute in float32 with the float32 ``scale``: kept values are
    ``x * np.float32(1 / (1 - p))`` in float32, rounded once to nearest even.

    Args:
        x: float32, float64, bfloat16 (``ml_dtypes.bfloat16``) or float16 array of any shape
            (read only; a non-contiguous array or an array-like is copied once to a
            C-contiguous array first).
        p: probability of dropping an element, in [0, 1].
        seed: int, ``numpy.random.SeedSequence``, :class:`regtune.Generator` (advances past
            the elements drawn) or None (fresh entropy: keep the mask for the backward).
        offset: index of element 0 in the stream, so that a slice of a larger tensor can be
            made alone: ``dropout(x[k:], p, seed=s, offset=k)`` equals ``dropout(x, ...)[k:]``.
        training: False returns ``x`` unchanged (the identity, whose backward is the identity).
        out: a C-contiguous, writable array of ``x``'s dtype and shape to write ``y`` into;
            ``out=x`` works in place.
        return_mask: also return the packed mask (default); False skips writing it.

    Returns:
        ``(y, mask)``, or ``y`` when ``return_mask=False``. ``mask`` is uint8 of ``ceil(n / 8)``
        bytes, ``np.unpackbits(mask, bitorder="little", count=n)`` reads it. With
        ``training=False`` or ``p == 0``, ``y`` is ``x`` itself (no copy unless ``out`` is
        given), nothing is drawn, and the mask keeps everything. ``p == 1`` gives zeros.

    Raises:
        TypeError: ``x`` or ``out`` of a dtype other than float32/float64/bfloat16/float16
            (bool, complex, object, string arrays too), None, a masked array (its mask would be ignored),
            ``out`` not an ndarray, or of a dtype different from ``x``'s; a bad seed type.
        ValueError: ``p`` outside [0, 1] or NaN; ``out`` non-contiguous, read-only, of another
            shape, or sharing an element with ``x`` without being ``x`` ("out overlaps x";
            decided exactly, so a strided ``x`` and an ``out`` in its gaps are fine); a
            negative offset, or one that runs past the end of the stream.

    Example:
        >>> x = np.arange(1, 9, dtype=np.float32)
        >>> y, mask = dropout(x, 0.5, seed=0)
        >>> keep = np.unpackbits(mask, bitorder="little", count=8).astype(bool)
        >>> bool((y[keep] == x[keep] * np.float32(2.0)).all() and (y[~keep] == 0).all())
        True
    """
    return _forward(x, p, seed, offset, training, out, return_mask, "dropout")


def dropout_backward(
    dy: Any,
    mask: np.ndarray | None = None,
    p: float = 0.5,
    *,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The gradient of :func:`dropout`: ``dx = dy * keep * scale``, ``scale = 1 / (1 - p)``
    rounded once to the dtype (as in the forward), dropped elements exactly ``+0.0``.

    ``keep`` comes from the forward's packed ``mask``, or is **regenerated** from the forward's
    ``seed`` and ``offset`` (give one or the other): both give identical results, bit for bit.

    Args:
        dy: float32, float64, bfloat16 or float16 gradient of the forward's output, ``x``'s
            shape (16-bit: computed in float32 and rounded once, as in the forward).
        mask: the packed mask the forward returned (uint8, ``ceil(dy.size / 8)`` bytes).
        p: the forward's drop probability.
        seed, offset: the forward's int or SeedSequence seed and offset, to regenerate the
            mask instead of storing it (a Generator cannot be used: it has moved on).
        out: as in :func:`dropout`; ``out=dy`` works in place.

    Returns:
        ``dx`` (``out`` when given). With ``p == 0`` it is ``dy`` itself unless ``out`` is given.

    Raises:
        TypeError / ValueError naming the argument: bad dtypes, a mask of the wrong dtype or
        length, both or neither of mask and seed, a Generator seed, a bad ``out`` or ``p``,
        masked arrays; a mask stored in ``out``'s memory ("mask overlaps out": it would be
        overwritten while read; a mask inside a ``dy`` that is only read is fine).

    Example:
        >>> x = np.ones((4, 5), np.float32)
        >>> y, mask = dropout(x, 0.25, seed=9, offset=100)
        >>> dx1 = dropout_backward(np.ones_like(x), mask, 0.25)
        >>> dx2 = dropout_backward(np.ones_like(x), p=0.25, seed=9, offset=100)
        >>> bool(np.array_equal(dx1, dx2) and np.array_equal(dx1, y))
        True
    """
    return _backward(dy, mask, p, seed, offset, out, "dropout")


def dropout_mask(shape_or_n: Any, p: float, *, seed: SeedLike, offset: int = 0) -> np.ndarray:
    """The packed keep mask alone: bit ``i`` set when ``bits[offset + i] >= round(p * 2**32)``.

    The same mask :func:`dropout` returns for an array of that many elements and the same
    ``seed``/``offset`` (``p == 0`` keeps all, ``p == 1`` none).

    Args:
        shape_or_n: int or shape tuple; the mask covers its ``n = prod(shape)`` elements.
        p: drop probability in [0, 1].
        seed: int, SeedSequence, Generator or None (keyword, required, as in ``random.bits``).
        offset: index of element 0 in the stream.

    Returns:
        uint8 array of ``ceil(n / 8)`` bytes (read with ``np.unpackbits(..., bitorder="little",
        count=n)``).

    Raises:
        TypeError / ValueError: a bad shape, ``p``, seed or offset.

    Example:
        >>> m = dropout_mask((3, 5), 0.1, seed=1)
        >>> m.dtype, m.shape
        (dtype('uint8'), (2,))
    """
    n = math.prod(shape_tuple(shape_or_n, "shape_or_n"))
    p = _probability(p)
    with _drawing(seed, offset, n, 4) as (key, stream, first):
        try:
            mask = np.empty(_nbytes(n), dtype=np.uint8)
        except MemoryError:  # the Generator has not moved: a refused draw takes nothing
            raise MemoryError(
                f"shape_or_n={shape_or_n!r}: a mask of {n} elements ({_nbytes(n)} bytes) cannot be allocated"
            ) from None
        _core.dropout_mask(mask, n, key, stream, first, _threshold(p))
    return mask


def alpha_dropout(
    x: Any,
    p: float = 0.5,
    *,
    seed: SeedLike = None,
    offset: int = 0,
    training: bool = True,
    out: np.ndarray | None = None,
    return_mask: bool = True,
) -> ArrayOrPair:
    """Alpha dropout for SELU networks (Klambauer et al., 2017), torch's ``F.alpha_dropout``:
    keeps zero mean and unit variance of a standard normal input.

    With ``alpha' = 1.7580993408473766`` (torch's constant, -SELU(-inf)) and
    ``a = 1 / sqrt((alpha'**2 p + 1) (1 - p))``::

        kept:    y = x * a + alpha' a p          (a multiply, then an add)
        dropped: y = -alpha' a + alpha' a p      (= -alpha' a (1 - p))

    with ``a``, ``alpha' a p`` and ``alpha' a`` rounded to the dtype and the dropped value
    summed in the dtype, exactly as torch computes them; same mask rule, seeds and offsets as
    :func:`dropout`. bfloat16 and float16 use the float32 coefficients and arithmetic and round
    ``y`` once (the float32 result, rounded; torch rounds its coefficients and the product to
    the 16-bit dtype, so its 16-bit values may differ by an ulp). The backward is :func:`alpha_dropout_backward` (``dx = dy * keep * a``).

    Args, Returns, Raises: as in :func:`dropout` (``p == 1`` gives zeros, as torch).

    Example:
        >>> from regtune.random import normal
        >>> y, _ = alpha_dropout(normal(200_000, seed=0), 0.2, seed=1)
        >>> abs(float(y.mean())) < 0.01 and abs(float(y.var()) - 1) < 0.02
        True
    """
    return _forward(x, p, seed, offset, training, out, return_mask, "alpha")


def alpha_dropout_backward(
    dy: Any,
    mask: np.ndarray | None = None,
    p: float = 0.5,
    *,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The gradient of :func:`alpha_dropout`: ``dx = dy * keep * a``, ``a`` as in the forward
    rounded to the dtype; from the stored mask or regenerated from ``seed``/``offset``.

    Args, Returns, Raises: as in :func:`dropout_backward`.

    Example:
        >>> y, mask = alpha_dropout(np.ones(8, np.float32), 0.5, seed=2)
        >>> dx = alpha_dropout_backward(np.ones(8, np.float32), mask, 0.5)
        >>> bool(np.array_equal(dx, alpha_dropout_backward(np.ones(8, np.float32), p=0.5, seed=2)))
        True
    """
    return _backward(dy, mask, p, seed, offset, out, "alpha")


def feature_dropout(
    x: Any,
    p: float = 0.5,
    *,
    seed: SeedLike = None,
    offset: int = 0,
    training: bool = True,
    out: np.ndarray | None = None,
    return_mask: bool = True,
) -> ArrayOrPair:
    """Channel dropout, as torch's ``F.dropout1d/2d/3d``: for ``x`` of shape (N, C, *spatial)
    the whole channel ``x[n, c, ...]`` is kept (and scaled) or zeroed together.

    Channel ``k = n * C + c`` is kept when ``bits[offset + k] >= round(p * 2**32)``; kept
    channels become ``x * scale`` with ``scale = 1 / (1 - p)`` rounded to the dtype, dropped
    ones ``+0.0``. The mask has one bit per channel: ``ceil(N * C / 8)`` bytes. For torch's
    unbatched (C, L) input of ``dropout1d`` pass ``x[None]``; a 2-D (N, C) array has one element
    per channel.

    Args, Raises: as in :func:`dropout`; ``x`` must have at least 2 dimensions (ValueError).

    Returns:
        ``(y, mask)`` or ``y``; the backward is :func:`feature_dropout_backward`.

    Example:
        >>> x = np.ones((2, 3, 4, 4), np.float32)
        >>> y, mask = feature_dropout(x, 0.5, seed=0)
        >>> keep = np.unpackbits(mask, bitorder="little", count=6).reshape(2, 3).astype(bool)
        >>> bool((y[keep] == 2).all() and (y[~keep] == 0).all())
        True
    """
    return _forward(x, p, seed, offset, training, out, return_mask, "feature")


def feature_dropout_backward(
    dy: Any,
    mask: np.ndarray | None = None,
    p: float = 0.5,
    *,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The gradient of :func:`feature_dropout`: ``dx[n, c] = dy[n, c] * keep[n, c] * scale``,
    from the per-channel mask or regenerated from ``seed``/``offset``.

    Args, Returns, Raises: as in :func:`dropout_backward`, with a mask of ``ceil(N * C / 8)``
    bytes.

    Example:
        >>> x = np.ones((2, 3, 5), np.float32)
        >>> y, mask = feature_dropout(x, 0.5, seed=4)
        >>> bool(np.array_equal(feature_dropout_backward(x, mask, 0.5), y))
        True
    """
    return _backward(dy, mask, p, seed, offset, out, "feature")


def dropconnect(
    weight: Any,
    p: float = 0.5,
    *,
    seed: SeedLike = None,
    offset: int = 0,
    training: bool = True,
    out: np.ndarray | None = None,
) -> DropConnect:
    """DropConnect (Wan et al., 2013): dropout on a layer's weights rather than its outputs.

    ``W' = W * keep * scale`` elementwise, with the mask rule, scale and seeds of
    :func:`dropout` (inverted scaling, so no change is needed at inference). A linear layer
    ``y = x @ W'.T`` then has the gradients ``dx = dy @ W'`` and
    ``dW = dropout_backward(dy.T @ x, mask, p)`` (or regenerate the mask from ``seed``).

    Args:
        weight: float32/float64/bfloat16/float16 weights, typically (out_features, in_features).
        p, seed, offset, training, out: as in :func:`dropout`.

    Returns:
        ``DropConnect(weight, mask)``: the masked weights ``W'`` and the packed mask the
        backward needs. ``training=False`` or ``p == 0`` returns ``weight`` itself.

    Raises:
        As :func:`dropout`.

    Example:
        >>> w = np.ones((4, 3), np.float32)
        >>> x = np.ones((2, 3), np.float32)
        >>> dc = dropconnect(w, 0.5, seed=5)
        >>> y = x @ dc.weight.T
        >>> dw = dropout_backward(np.ones((2, 4), np.float32).T @ x, dc.mask, 0.5)
        >>> bool(((dw == 0) == (dc.weight == 0)).all())
        True
    """
    y, mask = _forward(weight, p, seed, offset, training, out, True, "dropout", "weight")
    return DropConnect(y, mask)


# ------------------------------------------------------------------------------- the module


class _CallableModule(types.ModuleType):
    """The type of this module: ``regtune.dropout(x, p)`` is ``regtune.dropout.dropout(x, p)``.

    One object is both the function's name and the module's, so every name written
    ``regtune.dropout.<name>`` resolves, and ``regtune.dropout(...)`` keeps working. A copy or
    pickle of the module is the module itself (imported again by name).
    """

    __call__ = staticmethod(dropout)  # no extra Python frame: the call goes straight to dropout
    __signature__ = inspect.signature(dropout)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallableModule
