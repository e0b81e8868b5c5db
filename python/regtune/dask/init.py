"""regtune.init's initializers as dask arrays, chunk by chunk, bit-identical to one machine.

Same names, arguments and formulas as :mod:`regtune.init` (torch.nn.init semantics), plus
``chunks=``, minus ``out=``. The distribution's parameters come from the **whole** shape
(fans by :func:`regtune.init.calculate_fans`), computed once by regtune.init's own helpers;
each chunk then draws its elements at their stream offsets (see :mod:`regtune.dask.random`).
So for every initializer but :func:`orthogonal` the computed array equals the one-machine
``regtune.init.<name>(shape, ...)`` bit for bit, whatever the chunking, and no chunk needs
another: a weight larger than any one machine's memory can be made on a cluster.

    >>> import numpy as np, regtune
    >>> import regtune.dask.init as rdi
    >>> w = rdi.kaiming_normal((1024, 768), nonlinearity="relu", seed=0, chunks=(256, 300))
    >>> bool(np.array_equal(w.compute(), regtune.init.kaiming_normal((1024, 768), nonlinearity="relu", seed=0)))
    True

:func:`orthogonal` is not elementwise (a QR factorization of the whole matrix): it is computed
in one task by :func:`regtune.init.orthogonal` and then split into ``chunks``, so the matrix
must fit in one worker's memory (see its docstring).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Literal, NamedTuple

import dask.array as da
import numpy as np

from .. import init as _init
from .. import random as _random
from .._validation import finite_float, float_dtype, shape_tuple
from ..init import calculate_fans, calculate_gain
from ..random import SeedLike
from . import random as _drandom
from ._blocks import from_block_function, normalize_chunks

# The same names as regtune.init, each defined below (aliases included).
__all__ = list(_init.__all__)

Chunks = Any


class _Whole(NamedTuple):
    """What regtune.init's parameter helpers read of the array they fill: its shape and size
    (the whole array's, never a chunk's)."""

    shape: tuple[int, ...]
    size: int


def _whole(shape: Any, dtype: Any) -> tuple[_Whole, np.dtype]:
    dims = shape_tuple(shape)
    return _Whole(dims, math.prod(dims)), float_dtype(dtype, low_precision=True)


def _draw(
    whole: _Whole, dt: np.dtype, distribution: str, scale: float, seed: SeedLike, offset: int, chunks: Chunks, blame: str
) -> da.Array:
    """regtune.init._draw, chunked: the same checks (``blame`` names the user's argument), the
    same sampler and arguments, so the same values."""
    _init._check_scale(scale, distribution, dt, blame)
    sampler, args = _init._sampler_args(distribution, scale)
    return getattr(_drandom, sampler)(whole.shape, *args, dtype=dt, seed=seed, offset=offset, chunks=chunks)


# --------------------------------------------------------------------------- plain draws


def uniform(
    shape: Any, a: float = 0.0, b: float = 1.0, *, dtype: Any = np.float32, seed: SeedLike = None,
    offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    """:func:`regtune.init.uniform` as a dask array: U(a, b), values in [a, b).

    Args:
        shape: the shape of the result (required).
        a, b, dtype, seed, offset: as in :func:`regtune.init.uniform`.
        chunks: dask chunks ("auto", an int, a tuple; uneven chunks are fine).

    Returns:
        A ``dask.array.Array`` equal, once computed, to ``regtune.init.uniform(shape, a, b, ...)``
        bit for bit, whatever ``chunks``.

    Raises:
        TypeError / ValueError: as :func:`regtune.init.uniform`, when the array is made.

    Example:
        >>> w = uniform((3, 5), -0.1, 0.1, seed=0, chunks=2)
    """
    whole, dt = _whole(shape, dtype)
    _init.uniform(0, a, b, dtype=dt, seed=0)  # the one-machine argument checks
    return _drandom.uniform(whole.shape, a, b, dtype=dt, seed=seed, offset=offset, chunks=chunks)


def normal(
    shape: Any, mean: float = 0.0, std: float = 1.0, *, dtype: Any = np.float32, seed: SeedLike = None,
    offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    """:func:`regtune.init.normal` as a dask array: N(mean, std**2).

    Args, Returns, Raises: as :func:`uniform` (``std > 0``).

    Example:
        >>> w = normal((3, 5), 0.0, 0.02, seed=0, chunks=(2, 5))
    """
    whole, dt = _whole(shape, dtype)
    return _drandom.normal(whole.shape, mean, std, dtype=dt, seed=seed, offset=offset, chunks=chunks)


def trunc_normal(
    shape: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, *,
    dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    """:func:`regtune.init.trunc_normal` as a dask array: N(mean, std**2) truncated to [a, b]
    (absolute cut-offs, torch's convention).

    Args, Returns, Raises: as :func:`uniform` (``std > 0``, ``a < b``).

    Example:
        >>> w = trunc_normal((3, 5), std=0.02, a=-0.04, b=0.04, seed=0, chunks=(3, 2))
    """
    whole, dt = _whole(shape, dtype)
    return _drandom.truncated_normal(whole.shape, mean, std, a, b, dtype=dt, seed=seed, offset=offset, chunks=chunks)


def constant(shape: Any, val: float | None = None, *, dtype: Any = np.float32, chunks: Chunks = "auto") -> da.Array:
    """:func:`regtune.init.constant` as a dask array (``dask.array.full`` after regtune's checks).

    Raises:
        TypeError / ValueError: as :func:`regtune.init.constant` (``val`` required and finite).

    Example:
        >>> constant((2, 2), 0.5, chunks=1).compute()
        array([[0.5, 0.5],
               [0.5, 0.5]], dtype=float32)
    """
    whole, dt = _whole(shape, dtype)
    _init.constant(0, val, dtype=dt)
    chunks = normalize_chunks(chunks, whole.shape, dt)
    v = finite_float(val, "val")
    # 16-bit: val rounded to float32 first, as regtune.init.constant rounds it
    return da.full(whole.shape, np.float32(v) if dt.itemsize == 2 else v, dtype=dt, chunks=chunks)


def zeros(shape: Any, *, dtype: Any = np.float32, chunks: Chunks = "auto") -> da.Array:
    """:func:`regtune.init.zeros` as a dask array: ``constant(shape, 0.0)``.

    Example:
        >>> zeros(3, chunks=2).compute()
        array([0., 0., 0.], dtype=float32)
    """
    return constant(shape, 0.0, dtype=dtype, chunks=chunks)


def ones(shape: Any, *, dtype: Any = np.float32, chunks: Chunks = "auto") -> da.Array:
    """:func:`regtune.init.ones` as a dask array: ``constant(shape, 1.0)``.

    Example:
        >>> ones(3, chunks=2).compute()
        array([1., 1., 1.], dtype=float32)
    """
    return constant(shape, 1.0, dtype=dtype, chunks=chunks)


# --------------------------------------------------------------------------- fan-based


def xavier_uniform(
    shape: Any, gain: float = 1.0, *, dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0,
    chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.xavier_uniform` as a dask array: U(-b, b) with
    :math:`b = \text{gain} \sqrt{6 / (\text{fan\_in} + \text{fan\_out})}`, fans of the whole shape.

    Args:
        shape: the shape of the result (at least 2 dimensions).
        gain, dtype, seed, offset: as in :func:`regtune.init.xavier_uniform`.
        chunks: dask chunks.

    Returns:
        A ``dask.array.Array`` equal, once computed, to the one-machine result bit for bit.

    Raises:
        TypeError / ValueError: as :func:`regtune.init.xavier_uniform`, when the array is made.

    Example:
        >>> w = xavier_uniform((256, 128), gain=calculate_gain("tanh"), seed=0, chunks=(64, 128))
    """
    whole, dt = _whole(shape, dtype)
    return _draw(whole, dt, "uniform", math.sqrt(3.0) * _init._xavier_std(whole, gain), seed, offset, chunks, f"gain={gain!r}")


def xavier_normal(
    shape: Any, gain: float = 1.0, *, dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0,
    chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.xavier_normal` as a dask array: N(0, std**2) with
    :math:`\text{std} = \text{gain} \sqrt{2 / (\text{fan\_in} + \text{fan\_out})}`.

    Args, Returns, Raises: as :func:`xavier_uniform`.

    Example:
        >>> w = xavier_normal((256, 128), seed=0, chunks=100)
    """
    whole, dt = _whole(shape, dtype)
    return _draw(whole, dt, "normal", _init._xavier_std(whole, gain), seed, offset, chunks, f"gain={gain!r}")


def kaiming_uniform(
    shape: Any, a: float = 0.0, mode: Literal["fan_in", "fan_out"] = "fan_in", nonlinearity: str = "leaky_relu", *,
    dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.kaiming_uniform` as a dask array: U(-bound, bound),
    :math:`\text{bound} = \text{gain} \sqrt{3 / \text{fan\_mode}}`,
    gain = ``calculate_gain(nonlinearity, a)``, fans of the whole shape.

    Args, Returns, Raises: as :func:`xavier_uniform`, with ``a``, ``mode`` and
    ``nonlinearity`` of :func:`regtune.init.kaiming_uniform`.

    Example:
        >>> w = kaiming_uniform((64, 3, 3, 3), nonlinearity="relu", seed=0, chunks=(16, 3, 3, 3))
    """
    whole, dt = _whole(shape, dtype)
    std = _init._kaiming_std(whole, a, mode, nonlinearity)
    return _draw(whole, dt, "uniform", math.sqrt(3.0) * std, seed, offset, chunks, f"a={a!r}")


def kaiming_normal(
    shape: Any, a: float = 0.0, mode: Literal["fan_in", "fan_out"] = "fan_in", nonlinearity: str = "leaky_relu", *,
    dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.kaiming_normal` as a dask array: N(0, std**2),
    :math:`\text{std} = \text{gain} / \sqrt{\text{fan\_mode}}`.

    Args, Returns, Raises: as :func:`kaiming_uniform`.

    Example:
        >>> w = kaiming_normal((512, 256), mode="fan_out", nonlinearity="relu", seed=0, chunks=(128, 64))
    """
    whole, dt = _whole(shape, dtype)
    return _draw(whole, dt, "normal", _init._kaiming_std(whole, a, mode, nonlinearity), seed, offset, chunks, f"a={a!r}")


def lecun_uniform(
    shape: Any, *, dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.lecun_uniform` as a dask array: U(-b, b), :math:`b = \sqrt{3 / \text{fan\_in}}`.

    Args, Returns, Raises: as :func:`xavier_uniform` without ``gain``.

    Example:
        >>> w = lecun_uniform((128, 64), seed=0, chunks=(50, 64))
    """
    whole, dt = _whole(shape, dtype)
    return _draw(whole, dt, "uniform", _init._lecun_scale(whole, "uniform"), seed, offset, chunks, f"shape {whole.shape}")


def lecun_normal(
    shape: Any, *, dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.lecun_normal` as a dask array: N(0, 1/fan_in) (a plain normal).

    Args, Returns, Raises: as :func:`lecun_uniform`.

    Example:
        >>> w = lecun_normal((128, 64), seed=0, chunks=(50, 64))
    """
    whole, dt = _whole(shape, dtype)
    return _draw(whole, dt, "normal", _init._lecun_scale(whole, "normal"), seed, offset, chunks, f"shape {whole.shape}")


def variance_scaling(
    shape: Any, scale: float = 1.0, mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in",
    distribution: Literal["truncated_normal", "normal", "uniform"] = "truncated_normal", *,
    dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0, chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.variance_scaling` as a dask array (Keras/JAX variance scaling with
    torch's fan layout): variance :math:`v = \text{scale} / n`, n the fan of ``mode`` of the
    whole shape, drawn from ``distribution`` as the one-machine function documents.

    Args, Returns, Raises: as :func:`xavier_uniform`, with ``scale``, ``mode`` and
    ``distribution`` of :func:`regtune.init.variance_scaling`.

    Example:
        >>> w = variance_scaling((256, 128), 2.0, "fan_in", "truncated_normal", seed=0, chunks=64)
    """
    whole, dt = _whole(shape, dtype)
    std = _init._variance_scaling_scale(whole, scale, mode, distribution)
    return _draw(whole, dt, distribution, std, seed, offset, chunks, f"scale={scale!r}")


def _orthogonal_block(key: int, stream: int, first: int, gain: float, dt: np.dtype, *, shape, starts, block_shape) -> np.ndarray:
    # A fresh seed each time the task runs: recomputing the array gives the same values.
    return _init.orthogonal(shape, gain, dtype=dt, seed=_replay_seed(key, stream), offset=first)


def orthogonal(
    shape: Any, gain: float = 1.0, *, dtype: Any = np.float32, seed: SeedLike = None, offset: int = 0,
    chunks: Chunks = "auto",
) -> da.Array:
    r""":func:`regtune.init.orthogonal` as a dask array: a (semi-)orthogonal matrix (Saxe et al.).

    **Not chunked in the making.** An orthogonal matrix is a QR factorization of the whole
    ``(rows, cols)`` normal matrix, not an elementwise draw, so one task runs
    :func:`regtune.init.orthogonal` on the whole shape (same seed and offset: the same values
    as on one machine, with that worker's LAPACK) and the result is then split into
    ``chunks``. That task needs about ``3 * rows * cols * 8`` bytes (the float64 draw, its QR
    and the result) on one worker; for a weight too large for that, orthogonality is not on
    offer here: use a chunked initializer instead.

    Args:
        shape: at least 2 dimensions; gain, dtype, seed, offset: as in
            :func:`regtune.init.orthogonal`; chunks: dask chunks of the result.

    Returns:
        A ``dask.array.Array`` of ``shape`` whose computed value equals
        ``regtune.init.orthogonal(shape, gain, dtype=dtype, seed=seed, offset=offset)``.

    Raises:
        TypeError / ValueError: as :func:`regtune.init.orthogonal`, when the array is made.

    Example:
        >>> q = orthogonal((64, 128), seed=0, chunks=32).compute()
        >>> bool(np.allclose(q @ q.T, np.eye(64), atol=1e-5))
        True
    """
    whole, dt = _whole(shape, dtype)
    gain = finite_float(gain, "gain")
    if len(whole.shape) < 2:
        raise ValueError(f"orthogonal needs a shape with 2 or more dimensions, got shape {whole.shape}")
    _init.orthogonal((1, 1), gain, dtype=dt, seed=0)  # the one-machine checks of gain, now (not in the task)
    chunks = normalize_chunks(chunks, whole.shape, dt)
    # Fix the stream position now, as the one-machine call would (a Generator advances once):
    # the float64 draw of rows x cols normals.
    key, stream, first = _random._position(seed, offset, whole.size, _random._per_block(np.dtype(np.float64)))
    one = from_block_function(
        "regtune-orthogonal", partial(_orthogonal_block, key, stream, first, gain, dt), whole.shape,
        tuple((d,) for d in whole.shape), dt, ("orthogonal", key, stream, first, gain),
    )  # fmt: skip
    return one.rechunk(chunks)


def _replay_seed(key: int, stream: int) -> SeedLike:
    """A seed that reads the stream (key, stream) from its start: the int key itself for the
    root stream, else a fresh Generator on that stream."""
    if stream == 0:
        return key
    g = _random.Generator(0)
    g.state = {"key": key, "stream": stream, "block": 0, "path": [], "children": 0}
    return g


# Aliases: the same functions (torch semantics) under their Keras/JAX names, as regtune.init.
glorot_uniform = xavier_uniform
glorot_normal = xavier_normal
he_uniform = kaiming_uniform
he_normal = kaiming_normal
