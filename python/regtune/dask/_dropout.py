"""Dropout on dask arrays, chunk by chunk, equal to regtune.dropout on the computed array.

Element ``i`` (C order of the whole array) is kept when word ``offset + i`` of the Philox
stream of ``seed`` is at least ``round(p * 2**32)``, exactly as in :func:`regtune.dropout`;
each chunk draws the words of its own elements (one kernel call per run of consecutive
elements), so the result does not depend on the chunking. No mask is stored or returned: the
backward regenerates it per chunk from the same ``seed`` and ``offset``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import dask.array as da
import numpy as np

from .. import _core
from .. import _dropout_module as _rd  # regtune.dropout the attribute is the function
from .._validation import ALL_FLOAT_DTYPES, boolean
from ..random import Generator, _position
from ._blocks import block_runs, dask_array, map_aligned

__all__ = ["dropout", "dropout_backward"]


def _dropout_block(key, stream, first, threshold, scale, x, *, shape, starts, block_shape) -> np.ndarray:
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    run_len, firsts = block_runs(shape, starts, block_shape)
    xr = x.reshape(-1, run_len) if run_len else x.reshape(0, 0)
    yr = y.reshape(xr.shape)
    for r, f in enumerate(firsts.tolist()):
        _core.dropout(xr[r], yr[r], None, key, stream, first + f, threshold, scale, 0.0, 0.0)
    return y


def _dask_input(x: Any, name: str) -> da.Array:
    arr = dask_array(x, name)
    if arr.dtype not in ALL_FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32, float64, bfloat16 or float16, got {arr.dtype}")
    return arr


def _seed(seed: Any) -> Any:
    if seed is None:
        raise ValueError(
            "regtune.dask.dropout needs an explicit seed (int or numpy.random.SeedSequence): no mask is "
            "returned, so the backward regenerates it from the seed"
        )
    if isinstance(seed, Generator):
        raise TypeError(
            "seed must be an int or a numpy.random.SeedSequence; a Generator would have moved on before "
            "the backward regenerates the mask"
        )
    return seed


def _apply(prefix: str, x: da.Array, p: float, scale: float, seed: Any, offset: Any) -> da.Array:
    key, stream, first = _position(seed, offset, x.size, 4)
    threshold = _rd._threshold(p)
    f = partial(_dropout_block, key, stream, first, threshold, scale)
    return map_aligned(prefix, f, [x], (prefix, key, stream, first, threshold, scale))


def dropout(x: Any, p: float = 0.5, *, seed: Any, offset: int = 0, training: bool = True) -> da.Array:
    """Inverted dropout of a dask array: ``y = x * keep * scale``, equal (once computed) to
    ``regtune.dropout(x.compute(), p, seed=seed, offset=offset)[0]`` bit for bit, whatever the
    chunking of ``x``.

    ``keep[i] = bits[offset + i] >= round(p * 2**32)`` for element ``i`` in C order of the whole
    array; ``scale = 1 / (1 - p)`` rounded once to the dtype; dropped elements are ``+0.0``.

    Unlike :func:`regtune.dropout`, no mask is returned: a packed mask does not split along
    chunk boundaries, and a mask as large as ``x`` would be one more array to keep on the
    cluster. :func:`dropout_backward` regenerates it, chunk by chunk, from ``seed`` and
    ``offset`` (so ``seed`` is required). For a bit-packed mask of a slice, use
    :func:`regtune.dropout_mask` with that slice's offset.

    Args:
        x: a float32, float64, bfloat16 or float16 dask array (an array-like is wrapped with ``dask.array.asarray``).
        p: drop probability in [0, 1].
        seed: an int or ``numpy.random.SeedSequence`` (keyword, required; None or a Generator
            raise, since the backward must regenerate the mask).
        offset: stream index of element 0 (``offset=step * x.size`` gives each step fresh masks).
        training: False returns ``x`` itself.

    Returns:
        A dask array of ``x``'s shape, dtype and chunks (``x`` itself when ``training=False`` or
        ``p == 0``).

    Raises:
        TypeError / ValueError naming the argument, when the array is made.

    Example:
        >>> import regtune, regtune.dask
        >>> x = da.ones((1000, 300), dtype=np.float32, chunks=(256, 100))
        >>> y = regtune.dask.dropout(x, 0.25, seed=5)
        >>> bool(np.array_equal(y.compute(), regtune.dropout(np.ones((1000, 300), np.float32), 0.25, seed=5)[0]))
        True
    """
    p = _rd._probability(p)
    training = boolean(training, "training")
    x = _dask_input(x, "x")
    seed = _seed(seed)
    if not training or p == 0.0:
        _position(seed, offset, x.size, 4)  # still check seed and offset
        return x
    scale, _, _ = _rd._dropout_coefs(p, x.dtype)
    return _apply("regtune-dropout", x, p, scale, seed, offset)


def dropout_backward(dy: Any, p: float = 0.5, *, seed: Any, offset: int = 0) -> da.Array:
    """The gradient of :func:`dropout`: ``dx = dy * keep * scale``, the mask regenerated per chunk
    from the forward's ``seed`` and ``offset``; equal to
    ``regtune.dropout_backward(dy.compute(), p=p, seed=seed, offset=offset)`` bit for bit.

    Args:
        dy: float32/float64/bfloat16/float16 dask array of the forward output's shape (any chunking).
        p, seed, offset: the forward's.

    Returns:
        A dask array like ``dy`` (``dy`` itself when ``p == 0``).

    Raises:
        TypeError / ValueError naming the argument.

    Example:
        >>> import regtune.dask
        >>> x = da.ones(10_000, dtype=np.float32, chunks=3000)
        >>> y = regtune.dask.dropout(x, 0.5, seed=1)
        >>> dx = regtune.dask.dropout_backward(da.ones_like(x), 0.5, seed=1)
        >>> bool((dx == y).all().compute())
        True
    """
    p = _rd._probability(p)
    dy = _dask_input(dy, "dy")
    seed = _seed(seed)
    if p == 0.0:
        _position(seed, offset, dy.size, 4)
        return dy
    scale = _rd._dropout_coefs(p, dy.dtype)[0]
    return _apply("regtune-dropout-backward", dy, p, scale, seed, offset)
