"""Counter-based samplers as dask arrays, chunk by chunk, bit-identical to regtune.random.

``regtune.dask.random.normal(shape, ..., seed=s, chunks=c)`` computes, for any chunking ``c``,
exactly the bytes of ``regtune.random.normal(shape, ..., seed=s)``: each chunk is made by
regtune's kernels from the stream offsets of its own elements (one kernel call per run of
elements that are consecutive in the whole array: one per chunk of whole rows, one per row of
a column block). No chunk depends on another, so the chunks can be made on any worker, in any
order, and recomputed alone.

    >>> import numpy as np, regtune
    >>> import regtune.dask.random as rdr
    >>> x = rdr.normal((1000, 600), std=0.02, seed=7, chunks=(300, 250))
    >>> bool(np.array_equal(x.compute(), regtune.random.normal((1000, 600), std=0.02, seed=7)))
    True

Seeds and offsets mean what they mean in :mod:`regtune.random`; the key is fixed when the
dask array is made (``seed=None`` draws fresh entropy once, so recomputing the array gives
the same values), and a :class:`regtune.Generator` advances as the one-machine call would.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import dask.array as da
import numpy as np

from .. import random as _random
from .._validation import float_dtype, shape_tuple
from ..random import SeedLike
from ._blocks import from_block_function, normalize_chunks, sample_block

__all__ = ["uniform", "normal", "truncated_normal"]

Chunks = Any  # anything dask.array.core.normalize_chunks accepts: "auto", an int, a tuple, ...


def _sample(kernel: str, shape: Any, dt: np.dtype, seed: SeedLike, offset: Any, params: tuple, chunks: Chunks) -> da.Array:
    """The dask array of ``_core.<kernel>`` over ``shape``: (key, stream, first element) are fixed
    here, once, as regtune.random fixes them for a one-piece draw; each chunk then draws its
    own runs. Parameters were checked by the caller."""
    dims = shape_tuple(shape)
    chunks = normalize_chunks(chunks, dims, dt)  # a bad chunks raises before a Generator moves
    key, stream, first = _random._position(seed, offset, math.prod(dims), _random._per_block(dt))
    fill = partial(sample_block, kernel, key, stream, first, params, dt)
    return from_block_function(f"regtune-{kernel}", fill, dims, chunks, dt, (kernel, key, stream, first, params))


def uniform(
    shape: Any,
    low: float = 0.0,
    high: float = 1.0,
    *,
    dtype: Any = np.float32,
    seed: SeedLike = None,
    offset: int = 0,
    chunks: Chunks = "auto",
) -> da.Array:
    """:func:`regtune.random.uniform` as a dask array: U[low, high), ``low + (high - low) * u``.

    Args:
        shape: int or tuple of ints (required).
        low, high, dtype, seed, offset: as in :func:`regtune.random.uniform`.
        chunks: dask chunks ("auto", a size string such as "64MiB", an int, a tuple of ints or
            of per-axis chunk tuples; uneven chunks are fine; -1 or None for a whole axis).

    Returns:
        A ``dask.array.Array`` whose computed value equals
        ``regtune.random.uniform(shape, low, high, dtype=dtype, seed=seed, offset=offset)``
        bit for bit, whatever ``chunks``.

    Raises:
        TypeError / ValueError: as :func:`regtune.random.uniform`, when the array is made
        (not when it is computed); a bad ``chunks`` (0, negative, a float, NaN, the wrong
        rank, sizes that do not add up to ``shape``) raises a TypeError or ValueError naming
        ``chunks``.

    Example:
        >>> w = uniform((4096, 4096), -0.1, 0.1, seed=0, chunks=(1024, 1024))
        >>> w.chunksize
        (1024, 1024)
    """
    dt = float_dtype(dtype, low_precision=True)
    _random.uniform(0, low, high, dtype=dt, seed=0)  # the one-machine checks of low and high
    return _sample("uniform", shape, dt, seed, offset, (float(low), float(high)), chunks)


def normal(
    shape: Any,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    dtype: Any = np.float32,
    seed: SeedLike = None,
    offset: int = 0,
    chunks: Chunks = "auto",
) -> da.Array:
    """:func:`regtune.random.normal` as a dask array: N(mean, std**2) by Box-Muller.

    Args, Returns, Raises: as :func:`uniform`, with ``mean`` (finite) and ``std`` (> 0) of
    :func:`regtune.random.normal`.

    Example:
        >>> z = normal((10_000, 1000), seed=1, chunks=(2500, 1000))
        >>> abs(float(z.mean().compute())) < 1e-3
        True
    """
    dt = float_dtype(dtype, low_precision=True)
    _random.normal(0, mean, std, dtype=dt, seed=0)
    return _sample("normal", shape, dt, seed, offset, (float(mean), float(std)), chunks)


def truncated_normal(
    shape: Any,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    dtype: Any = np.float32,
    seed: SeedLike = None,
    offset: int = 0,
    chunks: Chunks = "auto",
) -> da.Array:
    """:func:`regtune.random.truncated_normal` as a dask array: N(mean, std**2) truncated to
    [a, b] (absolute cut-offs), by inverse CDF.

    Args, Returns, Raises: as :func:`uniform`, with ``mean``, ``std``, ``a`` and ``b`` of
    :func:`regtune.random.truncated_normal`.

    Example:
        >>> t = truncated_normal((2048, 2048), std=0.02, a=-0.04, b=0.04, seed=3, chunks=512)
        >>> bool(abs(t).max().compute() <= 0.04)
        True
    """
    dt = float_dtype(dtype, low_precision=True)
    _random.truncated_normal(0, mean, std, a, b, dtype=dt, seed=0)
    return _sample("truncated_normal", shape, dt, seed, offset, (float(mean), float(std), float(a), float(b)), chunks)
