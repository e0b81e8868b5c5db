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
from functools import partial
from typing import Any, Callable, Sequence

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .. import _core

__all__ = ["block_runs", "from_block_function", "map_aligned", "chunk_starts"]


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
    chunks = da.core.normalize_chunks(chunks, shape, dtype=dtype)
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
