"""Graph plumbing shared by regtune.dask: where a chunk lies in the stream, and dask arrays
built from per-chunk tasks.

A chunk of a C-ordered array is a union of *runs*: maximal sets of elements that are
consecutive in the whole array's flat (C) order. A chunk made of whole rows is one run; a
column block of an (R, C) array is one run per row. Element ``i`` of the whole array is
element ``first + i`` of its counter-based stream, so each run is one kernel call with the
offset of its first element: the chunk's values are the whole array's values, bit for bit,
whatever the chunking.
"""

from __future__ import annotations

import itertools
import math
import numbers
from functools import partial
from typing import Any, Callable, Sequence

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .. import _core
from .._validation import not_masked

__all__ = ["block_runs", "from_block_function", "map_aligned", "chunk_starts", "normalize_chunks"]


def _chunk_entry(c: Any, chunks: Any, explicit: bool) -> None:
    """One entry of ``chunks``: an int block size (> 0, or -1 / None: the whole axis; 0 only in
    an explicit per-axis tuple, for an empty chunk), or, except in explicit tuples, a size
    string such as "auto" or "64MiB"."""
    if isinstance(c, str) and not explicit:
        return
    if c is None and not explicit:
        return
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (numbers.Integral, np.integer)):
        if isinstance(c, (float, np.floating)) and math.isnan(c):
            raise ValueError(f"chunks must not hold NaN (unknown chunk sizes), got chunks={chunks!r}")
        raise TypeError(f"chunks must hold ints, got {c!r} in chunks={chunks!r}")
    if not (c >= 0 if explicit else c > 0 or c == -1):
        want = "chunk sizes >= 0" if explicit else "block sizes > 0 (or -1 for a whole axis)"
        raise ValueError(f"chunks must hold {want}, got {c!r} in chunks={chunks!r}")


def dask_array(x: Any, name: str) -> da.Array:
    """``x`` as a dask array of NumPy chunks with known chunk sizes (an array-like is wrapped
    with ``dask.array.asarray``); masked arrays (the mask would be ignored), None and unknown
    (NaN) chunk sizes raise naming ``name``."""
    if x is None:
        raise TypeError(f"{name} must be a dask or NumPy array, got None")
    not_masked(x, name)
    arr = x if isinstance(x, da.Array) else da.asarray(x)
    if isinstance(arr._meta, np.ma.MaskedArray):
        raise TypeError(f"{name} must not be a masked dask array: regtune would ignore its mask")
    if any(math.isnan(c) for cs in arr.chunks for c in cs):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    return arr


def normalize_chunks(chunks: Any, shape: tuple[int, ...], dtype: np.dtype) -> tuple[tuple[int, ...], ...]:
    """``dask.array.core.normalize_chunks`` behind regtune's checks: a bad ``chunks`` (0, a
    negative or float size, NaN, a tuple of the wrong rank, sizes that do not add up to
    ``shape``) is a TypeError or ValueError that names ``chunks``, never dask's
    ZeroDivisionError."""
    if chunks is None:
        raise TypeError("chunks must be 'auto', an int, or a tuple with one entry per axis, got chunks=None")
    if isinstance(chunks, dict):
        for axis in chunks:
            if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, np.integer)):
                raise TypeError(f"chunks keys must be int axes, got {axis!r} in chunks={chunks!r}")
            if not -len(shape) <= axis < len(shape):
                raise ValueError(f"chunks names axis {axis}, but shape {shape} has {len(shape)} dimensions")
        entries = list(chunks.values())
    elif isinstance(chunks, (tuple, list)):
        entries = list(chunks)
    else:
        entries = [chunks]
    for e in entries:
        if isinstance(e, (tuple, list)):
            for c in e:
                _chunk_entry(c, chunks, explicit=True)
        else:
            _chunk_entry(e, chunks, explicit=False)
    try:
        return da.core.normalize_chunks(chunks, shape, dtype=dtype)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, KeyError) as exc:
        reason = str(exc).split(". Got")[0].splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"chunks={chunks!r} does not fit shape {shape}: {reason}") from None


def block_runs(shape: Sequence[int], starts: Sequence[int], block_shape: Sequence[int]) -> tuple[int, np.ndarray]:
    """``(run_len, firsts)``: the block ``[starts, starts + block_shape)`` of a C-ordered array of
    ``shape`` viewed as ``len(firsts)`` rows of ``run_len`` elements (the block's own C order),
    row ``r`` holding elements ``firsts[r] .. firsts[r] + run_len - 1`` of the whole array.

    The runs are maximal: they span the trailing axes the block covers in full and the first
    axis (from the right) that it covers only in part; the axes before that are iterated.
    """
    nd = len(shape)
    j = nd  # axes j.. are covered in full
    while j > 0 and block_shape[j - 1] == shape[j - 1]:
        j -= 1
    if j == 0 or math.prod(block_shape) == 0:  # the whole array, or nothing
        return math.prod(block_shape), np.zeros(1 if math.prod(block_shape) else 0, dtype=np.int64)
    a = j - 1  # the partial axis: runs cover axes a..
    strides = [math.prod(shape[k + 1 :]) for k in range(nd)]
    rel = np.array(starts[a] * strides[a], dtype=np.int64)
    for k in range(a):
        rel = rel[..., None] + (starts[k] + np.arange(block_shape[k], dtype=np.int64)) * strides[k]
    return math.prod(block_shape[a:]), rel.reshape(-1)


def chunk_starts(chunks: tuple[tuple[int, ...], ...]) -> list[list[int]]:
    """The start of every chunk along every axis."""
    return [[0, *itertools.accumulate(c)][:-1] for c in chunks]


def _blocks(chunks: tuple[tuple[int, ...], ...]):
    """(block index, starts, block shape) of every block, in C order of the block grid."""
    starts = chunk_starts(chunks)
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        yield idx, tuple(starts[k][i] for k, i in enumerate(idx)), tuple(chunks[k][i] for k, i in enumerate(idx))


def from_block_function(
    prefix: str, func: Callable[..., np.ndarray], shape: tuple[int, ...], chunks: Any, dtype: np.dtype, token: Any
) -> da.Array:
    """A dask array whose block at ``starts`` of ``block_shape`` is
    ``func(shape=shape, starts=starts, block_shape=block_shape)`` (func: picklable, module-level
    or a partial of one). ``token`` names what the array is, for a deterministic graph name."""
    chunks = normalize_chunks(chunks, shape, dtype)
    name = f"{prefix}-{tokenize(token, shape, chunks, dtype.str)}"
    dsk = {
        (name, *idx): (partial(func, shape=shape, starts=starts, block_shape=bshape),)
        for idx, starts, bshape in _blocks(chunks)
    }
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(shape), dtype=dtype))


def map_aligned(
    prefix: str, func: Callable[..., Any], arrays: Sequence[da.Array], token: Any, *, extra: Sequence[Any] = (),
    meta: np.ndarray | None = None, chunks: tuple[tuple[int, ...], ...] | None = None,
) -> da.Array:
    """Blocks ``func(*extra_values, *blocks, shape=, starts=, block_shape=)`` over arrays that share
    ``arrays[0]``'s shape and chunks; ``extra`` are 0-d dask arrays whose single value is passed
    to every task (e.g. a global norm). The result has the first array's chunks and ``meta``
    unless ``chunks``/``meta`` say otherwise (blocks that are not arrays: any meta will do)."""
    x0 = arrays[0]
    name = f"{prefix}-{tokenize(token, *arrays, *extra)}"
    extra_keys = [(e.name,) for e in extra]
    dsk = {}
    for idx, starts, bshape in _blocks(x0.chunks):
        f = partial(func, shape=x0.shape, starts=starts, block_shape=bshape)
        dsk[(name, *idx)] = (f, *extra_keys, *[(a.name, *idx) for a in arrays])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[*arrays, *extra])
    return da.Array(graph, name, x0.chunks if chunks is None else chunks, meta=x0._meta if meta is None else meta)


def sample_block(
    kernel: str, key: int, stream: int, first: int, params: tuple, dtype: np.dtype, *, shape, starts, block_shape
) -> np.ndarray:
    """One block of a sampler: run r is stream elements ``first + firsts[r]`` on, all runs in
    one ``_core.<kernel>`` call (threaded across runs)."""
    out = np.empty(block_shape, dtype=dtype)
    run_len, firsts = block_runs(shape, starts, block_shape)
    if out.size:
        starts_in_stream = firsts.astype(np.uint64) + np.uint64(first)  # in range: checked when made
        getattr(_core, kernel)(out, key, stream, starts_in_stream, *params)
    return out
