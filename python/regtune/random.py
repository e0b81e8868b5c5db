"""Counter-based random numbers: Philox4x32-10, addressable element by element.

Every value is a pure function of (key, stream, element index). The same seed gives the same
array on any thread count and on every SIMD path, and ``offset=`` generates any slice of a
larger array on its own::

    >>> import numpy as np, regtune.random as rr
    >>> whole = rr.normal((4, 1000), seed=7)
    >>> part = rr.normal(1000, seed=7, offset=2000)      # row 2, made alone
    >>> bool(np.array_equal(whole[2], part))
    True

The raw stream (``bits``) is defined so that anyone can reproduce it with Random123: for an
integer seed ``s``, word ``i`` is word ``i % 4`` of Philox4x32-10 applied to the counter
``(j & 0xffffffff, j >> 32, t & 0xffffffff, t >> 32)``, ``j = i // 4``, under the key
``(s & 0xffffffff, s >> 32)``; ``t`` is the stream id (0 except for ``Generator.spawn``
children). A ``numpy.random.SeedSequence`` maps to a key through ``generate_state(2, uint32)``.

Element ``i`` of a float32 sampler uses word ``i``; element ``i`` of a float64 sampler uses
words ``2i`` and ``2i + 1``. The stream-stability policy (what may change between versions)
is in the README.

bfloat16 (``ml_dtypes.bfloat16``) and float16 draws are the float32 draws of the same
(seed, offset) rounded to nearest even, element for element (one word each), so a 16-bit
array equals ``normal(..., dtype=np.float32).astype(dtype)`` bit for bit and streams stay
comparable across dtypes. Rounding can reach a bound a float32 draw never does: a 16-bit
``uniform`` may return ``high``.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
import threading
from statistics import NormalDist
from typing import Any, Union

import ml_dtypes
import numpy as np

from . import _core
from ._seeding import key_from_seed
from ._validation import (
    ALL_FLOAT_DTYPES,
    LOW_DTYPES,
    finite_float,
    float_dtype,
    nonnegative_int,
    output_array,
    positive_float,
    shape_tuple,
)

__all__ = ["Generator", "bits", "uniform", "normal", "truncated_normal"]

_U64 = 1 << 64
_MAX_SPAWN = 1 << 20  # children per spawn() call: more is minutes of work and gigabytes of objects

SeedLike = Union[None, int, np.integer, np.random.SeedSequence, "Generator"]


#: The key of a seed (see regtune._seeding, where every key domain is listed).
_key_from_seed = key_from_seed


def _state_int(value: Any, label: str, upper: int) -> int:
    """A field of a Generator state: an exact int in [0, upper); ``label`` names it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{label} must be an int, got {type(value).__name__} {value!r}")
    v = int(value)
    if not 0 <= v < upper:
        raise ValueError(f"{label} must be in [0, {upper:#x}), got {v}")
    return v


class Generator:
    """A stateful Philox4x32-10 stream: each call draws the next elements.

    ``Generator(seed)`` keys the stream like the module functions do (int, SeedSequence or
    None for fresh entropy). Each call consumes whole Philox blocks (4 words), so the
    position after a call is a multiple of 4 words; ``spawn(n)`` makes children with their
    own stream ids under the same key, independent of the parent and of each other. A draw
    that raises (bad arguments, an exhausted stream, Ctrl-C) takes nothing from the stream.

    Thread safety: calls from several Python threads are serialized by a lock held for the
    whole call; the result equals some serial order of the calls (each draw takes its own
    consecutive blocks, each spawned child its own stream id). Draws from one Generator
    therefore do not run in parallel: give each thread its own child (``spawn``) for that.
    Copies and pickles carry the state, not the lock.

    Example::

        >>> g = Generator(42)
        >>> a = g.normal((2, 3))
        >>> b = g.normal((2, 3))          # the next elements, not a repeat
        >>> bool((a != b).all())
        True
    """

    __slots__ = ("_key", "_stream", "_block", "_path", "_children", "_lock")

    def __init__(self, seed: int | np.integer | np.random.SeedSequence | None = None) -> None:
        self._key = _key_from_seed(seed, "None, an int in [0, 2**64) or a numpy.random.SeedSequence")
        self._stream = 0
        self._block = 0  # next unused Philox block (4 words)
        self._path: tuple[int, ...] = ()
        self._children = 0
        self._lock = threading.Lock()  # held by every call that reads or moves the fields above

    @property
    def key(self) -> int:
        """The 64-bit Philox key."""
        return self._key

    @property
    def stream(self) -> int:
        """The 64-bit stream id (the counter's upper half)."""
        return self._stream

    @property
    def state(self) -> dict[str, Any]:
        """Everything needed to resume: key, stream, block position, spawn path and count.

        The setter takes exactly such a dict: exact ints (a float, string or bool is a
        TypeError naming the field, e.g. ``state['block']``), ``key``/``stream`` in
        [0, 2**64), ``block`` in [0, 2**62], ``path`` a list of ints >= 0; nothing missing,
        nothing extra. A refused state leaves the Generator unchanged.
        """
        with self._lock:
            return {
                "key": self._key,
                "stream": self._stream,
                "block": self._block,
                "path": list(self._path),
                "children": self._children,
            }

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        # Exactly the dict the getter returns: exact ints (a float, a string or a bool is refused,
        # never truncated), the block position at most 2**62 (the end of the stream).
        if not isinstance(value, dict):
            raise TypeError(f"state must be a dict like Generator.state returns, got {type(value).__name__}")
        if value.keys() != _STATE_KEYS:
            missing, extra = sorted(_STATE_KEYS - value.keys()), sorted(map(repr, value.keys() - _STATE_KEYS))
            raise ValueError(
                f"state must have exactly the keys {sorted(_STATE_KEYS)}"
                + (f"; missing {missing}" if missing else "") + (f"; unknown {', '.join(extra)}" if extra else "")
            )
        key, stream = _state_int(value["key"], "state['key']", _U64), _state_int(value["stream"], "state['stream']", _U64)
        block = _state_int(value["block"], "state['block']", _U64 // 4 + 1)
        children = _state_int(value["children"], "state['children']", _U64)
        if not isinstance(value["path"], (list, tuple)):
            raise TypeError(f"state['path'] must be a list of ints, got {type(value['path']).__name__}")
        path = tuple(_state_int(p, f"state['path'][{i}]", _U64) for i, p in enumerate(value["path"]))
        with self._lock:
            self._key, self._stream, self._block, self._path, self._children = (
                key, stream, block, path, children,
            )

    def __getstate__(self) -> dict[str, Any]:  # copy and pickle: the state without the lock
        return self.state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self.state = state

    def spawn(self, n: int) -> list[Generator]:
        """``n`` independent child generators (same key, new stream ids).

        A child's stream id is derived from the key and its spawn path (parent's path plus
        its index) through ``numpy.random.SeedSequence``, so ``Generator(s).spawn(2)`` gives
        the same children every time and grandchildren never collide with children.

        Raises:
            TypeError / ValueError: ``n`` is not an int in [0, 2**20] (a million children per
            call, about a second of work; call again for more).
        """
        n = nonnegative_int(n, "n", upper=_MAX_SPAWN + 1)
        kids = []
        with self._lock:  # concurrent spawns get distinct child indices, hence stream ids
            for i in range(self._children, self._children + n):
                child = Generator.__new__(Generator)
                child._key = self._key
                child._path = self._path + (i,)
                ss = np.random.SeedSequence(
                    entropy=[self._key & 0xFFFFFFFF, self._key >> 32], spawn_key=child._path
                )
                w = ss.generate_state(2, np.uint32)
                child._stream = (int(w[0]) | (int(w[1]) << 32)) or 1  # 0 is the root's stream
                child._block = 0
                child._children = 0
                child._lock = threading.Lock()
                kids.append(child)
            self._children += n
        return kids

    def bits(self, n: int) -> np.ndarray:
        """The next ``n`` raw uint32 words of this stream."""
        return bits(n, seed=self)

    def uniform(self, shape=None, low=0.0, high=1.0, *, dtype=None, out=None) -> np.ndarray:
        """Like :func:`regtune.random.uniform`, drawing the next elements of this stream."""
        return uniform(shape, low, high, dtype=dtype, seed=self, out=out)

    def normal(self, shape=None, mean=0.0, std=1.0, *, dtype=None, out=None) -> np.ndarray:
        """Like :func:`regtune.random.normal`, drawing the next elements of this stream."""
        return normal(shape, mean, std, dtype=dtype, seed=self, out=out)

    def truncated_normal(
        self, shape=None, mean=0.0, std=1.0, a=-2.0, b=2.0, *, dtype=None, out=None
    ) -> np.ndarray:
        """Like :func:`regtune.random.truncated_normal`, drawing the next elements."""
        return truncated_normal(shape, mean, std, a, b, dtype=dtype, seed=self, out=out)

    def __repr__(self) -> str:
        return f"Generator(key={self._key:#x}, stream={self._stream:#x}, block={self._block})"


_STATE_KEYS = frozenset({"key", "stream", "block", "path", "children"})


class _drawing:
    """``with _drawing(seed, offset, count, per_block) as (key, stream, first):`` draw there.

    (key, stream, first element) for a draw of ``count`` elements, checked for overflow. A
    Generator stays locked for the whole ``with`` block and moves past the draw only when the
    block ends without an exception: concurrent draws take consecutive ranges in some serial
    order, and a refused or interrupted draw takes nothing from the stream.
    """

    __slots__ = ("_seed", "_offset", "_count", "_per_block", "_end_block")

    def __init__(self, seed: Any, offset: Any, count: int, per_block: int) -> None:
        self._seed, self._offset, self._count, self._per_block = seed, offset, count, per_block

    def __enter__(self) -> tuple[int, int, int]:
        if not isinstance(self._seed, Generator):
            return self._locate()
        self._seed._lock.acquire()
        try:
            return self._locate()
        except BaseException:  # a refused draw: nothing moved, and __exit__ will not run
            self._seed._lock.release()
            raise

    def _locate(self) -> tuple[int, int, int]:
        seed, count, per_block = self._seed, self._count, self._per_block
        offset = self._offset
        if type(offset) is not int or offset < 0:
            offset = nonnegative_int(offset, "offset")
        words_per_element = 4 // per_block
        if isinstance(seed, Generator):
            key, stream = seed._key, seed._stream
            first = seed._block * per_block + offset
            self._end_block = -(-(first + count) // per_block)
            if self._end_block > _U64 // 4:
                raise ValueError("this Generator's stream is exhausted (2**64 words, 2**62 blocks of 4)")
        else:
            key, stream, first = _key_from_seed(seed), 0, offset
        if (first + count) * words_per_element > _U64:
            raise ValueError(
                f"offset + size = {first + count} runs past the end of the 2**64-word stream "
                f"({_U64 // words_per_element} elements of this dtype)"
            )
        # An empty draw may start at the very end (offset 2**64); nothing is drawn, so pass 0 down.
        return key, stream, first if count else 0

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        gen = self._seed
        if isinstance(gen, Generator):
            if exc_type is None:
                gen._block = self._end_block
            gen._lock.release()


def _draw(seed: Any, offset: Any, count: int, per_block: int, draw: Any) -> Any:
    """``draw(key, stream, first)`` at the position of a draw of ``count`` elements, as
    ``with _drawing(...)`` does (a Generator is locked for the call and moves past the draw only
    when it succeeds), with a fast path for the common case: an int seed and an int offset."""
    if (type(seed) is int and type(offset) is int and 0 <= seed < _U64 and offset >= 0
            and (offset + count) * (4 // per_block) <= _U64):
        return draw(seed, 0, offset if count else 0)
    with _drawing(seed, offset, count, per_block) as (key, stream, first):
        return draw(key, stream, first)


def _position(seed: Any, offset: Any, count: int, per_block: int) -> tuple[int, int, int]:
    """(key, stream, first element) for a draw of ``count`` elements made outside this call
    (the dask layers); a Generator moves past it at once, atomically."""
    with _drawing(seed, offset, count, per_block) as position:
        return position


def bits(n: int, *, seed: SeedLike, offset: int = 0) -> np.ndarray:
    """The raw Philox4x32-10 stream: ``n`` uint32 words starting at word ``offset``.

    Word ``i`` is word ``i % 4`` of Philox4x32-10 (Random123) of the counter
    ``(j & 0xffffffff, j >> 32, t & 0xffffffff, t >> 32)`` with ``j = i // 4`` under the key
    ``(s & 0xffffffff, s >> 32)``, for an integer seed ``s`` and stream id ``t`` (0 here).

    Args:
        n: number of words (>= 0).
        seed: int in [0, 2**64), numpy SeedSequence, a regtune.Generator, or None. Required
            (keyword-only) because raw bits are usually wanted reproducibly.
        offset: first word index (>= 0).

    Returns:
        A new uint32 array of shape (n,).

    Raises:
        TypeError / ValueError: a bad n, seed or offset, or offset + n past 2**64.

    Example:
        >>> int(bits(4, seed=0)[0]) == 0x6627E8D5   # Random123's known answer for counter 0, key 0
        True
    """
    n = nonnegative_int(n, "n")
    out = _empty((n,), np.dtype(np.uint32), f"n = {n}")
    _draw(seed, offset, out.size, 4, lambda key, stream, first: _core.bits(out, key, stream, first))
    return out


def _per_block(dt: np.dtype) -> int:
    """Elements per Philox block: 2 for float64 (two words each), else 4 (float32 and the
    16-bit floats, which are float32 draws rounded)."""
    return 2 if dt is _DT64 or dt == _DT64 else 4


# The largest |z| the normal kernels draw: the Box-Muller radius sqrt(-2 ln u) at the smallest
# u, 2**-32 in float32 (6.66043) and 2**-53 in float64 (8.57172), with a margin for their rounding.
# The 16-bit floats are float32 draws, rounded: float32's reach, against their own (much smaller,
# for float16: 65504) largest value.
_Z_MAX = {np.dtype(np.float32): 6.6605, np.dtype(np.float64): 8.5718}
_Z_MAX.update({dt: _Z_MAX[np.dtype(np.float32)] for dt in LOW_DTYPES})
_FMAX = {dt: float(ml_dtypes.finfo(dt).max) for dt in _Z_MAX}
# The dtype the kernels compute in: float32 for the 16-bit floats.
_COMPUTE = {dt: (np.dtype(np.float32) if dt in LOW_DTYPES else dt) for dt in _Z_MAX}
_TIGHT = 1.0 - 1e-6  # reach checks stay this far under the dtype's max (parameters round to it)
# The truncated normal's kernels reach tail probabilities down to p_side + 2**-53 * mass; below
# a mass of 2**-969 that can be subnormal, where their log (and so the draw) is inaccurate.
_TN_UMIN = 2.0**-53
_TN_MIN_MASS = sys.float_info.min / _TN_UMIN
_STD_NORMAL = NormalDist()


_DT32, _DT64 = np.dtype(np.float32), np.dtype(np.float64)


def _dtype(dtype: Any, out: Any = None) -> np.dtype:
    """The dtype to draw in, NumPy's ``out=`` rule: ``dtype`` when given (checked by
    ``float_dtype``, the common spellings first, without ABC checks on the hot path); when
    ``dtype`` is None, ``out.dtype`` if ``out`` is given, else float32. An explicit ``dtype``
    that differs from ``out.dtype`` is refused later, by :func:`_output`. float32, float64,
    bfloat16 and float16."""
    if dtype is None:
        if out is None:
            return _DT32
        if isinstance(out, np.ndarray):
            dt = out.dtype
            if dt is _DT32 or dt is _DT64 or dt in ALL_FLOAT_DTYPES:
                return dt
        return output_array(None, None, out, low_precision=True).dtype  # raises, naming out
    if dtype is np.float32 or dtype is _DT32:
        return _DT32
    if dtype is np.float64 or dtype is _DT64:
        return _DT64
    return float_dtype(dtype, low_precision=True)


def _real(value: Any, name: str) -> float:
    """``finite_float``, a finite Python float taking the fast path."""
    return value if type(value) is float and math.isfinite(value) else finite_float(value, name)


def _finite_in(value: float, dt: np.dtype, name: str) -> float:
    if abs(value) > _FMAX[dt]:
        raise ValueError(f"{name} = {value!r} does not fit in {dt}")
    return value


_shape = shape_tuple  # (the strict shape check, under the name this module uses)


def _empty(dims: tuple[int, ...], dt: np.dtype, label: str = "") -> np.ndarray:
    """``np.empty(dims, dt)``; a size NumPy cannot address or allocate raises naming the
    argument (``label``, by default ``shape``) instead of NumPy's message."""
    label = label or f"shape {dims}"
    if len(dims) > 64:
        raise ValueError(f"{label} has {len(dims)} dimensions; NumPy arrays have at most 64")
    try:
        return np.empty(dims, dtype=dt)
    except MemoryError as exc:
        raise MemoryError(
            f"{label} is too large: {math.prod(dims) * dt.itemsize / 2**30:.4g} GiB of {dt} cannot be allocated"
        ) from exc
    except ValueError as exc:  # the byte count overflows a signed pointer-sized int
        raise ValueError(f"{label} is too large: a NumPy array holds at most {sys.maxsize} bytes") from exc


def _output(shape: Any, dtype: Any, out: Any) -> np.ndarray:
    """The array a sampler or initializer fills: ``out`` after checks, or a new one of ``shape``.

    As ``_validation.output_array`` (which checks ``out``), with ``shape`` checked strictly,
    an impossible allocation named after ``shape``, and masked arrays refused. ``dtype`` None
    means ``out.dtype``, or float32 without ``out`` (see :func:`_dtype`).
    """
    if out is None:
        if shape is None:
            raise TypeError("shape is required when out is not given")
        dims = _shape(shape)
        return _empty(dims, _dtype(dtype))
    if dtype is None:
        dtype = _dtype(None, out)
    if (type(out) is np.ndarray and out.dtype == dtype and out.flags.carray
            and (shape is None or (type(shape) is int and out.shape == (shape,)) or (type(shape) is tuple and shape == out.shape))):
        return out  # the common case: an exact, aligned, writable C array of the dtype and shape asked for
    return output_array(None if shape is None else _shape(shape), dtype, out, low_precision=True)


#: Parameters already checked, by (value, value, dtype): the checks cost more than a small draw.
_CHECKED: dict[tuple[Any, ...], tuple[float, ...]] = {}


def _remember(key: tuple[Any, ...], value: tuple[float, ...]) -> tuple[float, ...]:
    if len(_CHECKED) >= 1024:
        _CHECKED.clear()
    _CHECKED[key] = value
    return value


def _uniform_bounds(low: Any, high: Any, dt: np.dtype, names: tuple[str, str] = ("low", "high")) -> tuple[float, float]:
    """Checked bounds of U[low, high) in ``dt``; ``names`` are the user's argument names."""
    if type(low) is float and type(high) is float:
        key = ("u", low, high, math.copysign(1.0, low), math.copysign(1.0, high), dt, names)  # -0.0 is not 0.0
        hit = _CHECKED.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        return _remember(key, _uniform_bounds_checked(low, high, dt, names))  # type: ignore[return-value]
    return _uniform_bounds_checked(low, high, dt, names)


def _uniform_bounds_checked(low: Any, high: Any, dt: np.dtype, names: tuple[str, str]) -> tuple[float, float]:
    ln, hn = names
    lo = _finite_in(_real(low, ln), dt, ln)
    hi = _finite_in(_real(high, hn), dt, hn)
    ct = _COMPUTE[dt]  # a 16-bit draw is made in float32: the bounds must differ there too
    if not (dt.type(lo) < dt.type(hi) and (ct is dt or ct.type(lo) < ct.type(hi))):
        raise ValueError(f"{ln} must be < {hn} (in {dt}), got {ln}={lo!r}, {hn}={hi!r}")
    if not hi - lo <= _FMAX[ct]:
        raise ValueError(f"{hn} - {ln} must be finite in {ct}, got {ln}={lo!r}, {hn}={hi!r}")
    return lo, hi


def _normal_params(mean: Any, std: Any, dt: np.dtype) -> tuple[float, float]:
    """Checked (mean, std) of N(mean, std**2) whose every draw fits in ``dt``."""
    if type(mean) is float and type(std) is float:
        key = ("n", mean, std, math.copysign(1.0, mean), dt)  # -0.0 is not 0.0
        hit = _CHECKED.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        return _remember(key, _normal_params_checked(mean, std, dt))  # type: ignore[return-value]
    return _normal_params_checked(mean, std, dt)


def _normal_params_checked(mean: Any, std: Any, dt: np.dtype) -> tuple[float, float]:
    m = _finite_in(_real(mean, "mean"), dt, "mean")
    s = _finite_in(std if type(std) is float and 0.0 < std < math.inf else positive_float(std, "std"), dt, "std")
    z = _Z_MAX[dt]
    if not abs(m) + z * s <= _FMAX[dt] * _TIGHT:
        raise ValueError(
            f"mean + z * std overflows {dt} for the largest |z| = {z} the sampler draws "
            f"(|mean| + {z} * std must be <= {_FMAX[dt]:.6g}), got mean={m!r}, std={s!r}"
        )
    return m, s


def _tail_z(p_side: float, mass: float) -> float:
    """The farthest |z| the truncated-normal kernels reach on a side whose cut-off tail holds
    ``p_side`` (the smallest tail probability they take is p_side + 2**-53 * mass)."""
    p = min(p_side + _TN_UMIN * mass, 0.5)
    return -_STD_NORMAL.inv_cdf(p) * (1.0 + 1e-6) + 1e-6


def _truncnorm_params(mean: Any, std: Any, a: Any, b: Any, dt: np.dtype) -> tuple[float, float, float, float]:
    """Checked (mean, std, a, b) of the truncated normal whose every draw fits in ``dt``."""
    m = _finite_in(_real(mean, "mean"), dt, "mean")
    s = _finite_in(std if type(std) is float and 0.0 < std < math.inf else positive_float(std, "std"), dt, "std")
    lo, hi = _cutoff(a, "a"), _cutoff(b, "b")
    if not lo < hi:
        raise ValueError(f"a must be < b, got a={lo!r}, b={hi!r}")
    if hi - lo < 1e-8 * s:  # the inverse CDF in float64 resolves [a, b] to ~1e-16 * std / (b - a)
        raise ValueError(
            f"[a, b] = [{lo!r}, {hi!r}] is too narrow for std = {s!r}: (b - a) / std must be >= 1e-8 for "
            "the sampler to resolve it (the draw is then nearly uniform on [a, b]: use uniform)"
        )
    mass = _core.truncnorm_mass(m, s, lo, hi)
    if not mass >= _TN_MIN_MASS:
        raise ValueError(
            f"[a, b] = [{lo!r}, {hi!r}] holds no probability under N({m!r}, {s!r}**2) that float64 "
            f"can sample (mass {mass:.3g} < 2**-969): move the cut-offs closer to the mean"
        )
    # Draws are clamped to [a, b]; a side whose cut-off is beyond the dtype's range (infinite,
    # say) is bounded by the farthest quantile the kernels reach instead.
    fmax, root2 = _FMAX[dt] * _TIGHT, math.sqrt(2.0)
    top = hi if hi <= fmax else max(lo, m + s * _tail_z(0.5 * math.erfc((hi - m) / s / root2), mass))
    bottom = lo if lo >= -fmax else min(hi, m - s * _tail_z(0.5 * math.erfc((m - lo) / s / root2), mass))
    if not (top <= fmax and bottom >= -fmax):
        raise ValueError(
            f"mean, std, a and b overflow {dt}: the draws reach [{bottom:.6g}, {top:.6g}], beyond "
            f"+-{_FMAX[dt]:.6g}; got mean={m!r}, std={s!r}, a={lo!r}, b={hi!r}"
        )
    return m, s, lo, hi


def uniform(
    shape: Any = None,
    low: float = 0.0,
    high: float = 1.0,
    *,
    dtype: Any = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Samples from U[low, high): ``low + (high - low) * u``; ``high`` is never returned.

    ``u`` takes 24 random bits (float32) or 52 (float64); a value that rounds up to ``high``
    is replaced by the largest value below it. bfloat16 and float16 values are the float32
    draw rounded to nearest even, which may round up to ``high`` itself: for them the range is
    ``[low, high]`` rounded to the dtype.

    Args:
        shape: int or tuple; may be omitted when ``out`` is given.
        low, high: finite bounds with low < high (after rounding to ``dtype``, and to
            float32 for the 16-bit dtypes), each representable in ``dtype``'s range.
        dtype: float32, float64, bfloat16 (``ml_dtypes.bfloat16``) or float16. By default
            (None) float32, or ``out.dtype`` when ``out`` is given, as NumPy does; an explicit
            ``dtype`` must equal ``out.dtype``. A 16-bit draw is the float32 draw of the same
            elements rounded to nearest even (one word per element, as float32), so streams
            stay comparable across dtypes.
        seed: int, SeedSequence, Generator or None (fresh entropy).
        offset: index of the first element in the stream (>= 0).
        out: a C-contiguous, writable float32, float64, bfloat16 or float16 array to fill in
            place.

    Returns:
        ``out``, or a new array of ``shape``.

    Raises:
        TypeError / ValueError naming the bad argument (``high - low`` must be finite in
        ``dtype``; ``shape`` an int or a tuple of ints; ``out`` a plain ndarray, not masked,
        whose dtype is ``dtype`` when both are given).
        MemoryError: a ``shape`` too large to allocate.

    Example:
        >>> w = uniform((256, 128), -0.1, 0.1, seed=0)
        >>> bool(w.min() >= -0.1 and w.max() < 0.1)
        True
    """
    # NumPy's out= rule, with the common case (dtype left out, a float ndarray out) inline.
    dt = out.dtype if dtype is None and type(out) is np.ndarray and out.dtype in _FMAX else _dtype(dtype, out)
    lo, hi = _uniform_bounds(low, high, dt)
    arr = _output(shape, dt, out)
    _draw(seed, offset, arr.size, _per_block(dt), lambda key, stream, first: _core.uniform(arr, key, stream, first, lo, hi))
    return arr


def normal(
    shape: Any = None,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    dtype: Any = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Samples from N(mean, std**2) by Box-Muller: ``mean + std * z``.

    Each Philox block gives a fixed number of normals (4 in float32, 2 in float64): two
    uniforms make two normals, ``r cos(2 pi u2)`` and ``r sin(2 pi u2)`` with
    ``r = sqrt(-2 log u1)``; no rejection, so element i depends on (seed, i) alone.
    The radius uses 31 bits (float32, |z| <= 6.66) or 53 bits (float64, |z| <= 8.57).
    bfloat16 and float16 draws are the float32 draws rounded to nearest even.

    Args:
        shape, dtype, seed, offset, out: as in :func:`uniform`.
        mean: finite mean.
        std: standard deviation, finite and > 0.

    Returns:
        ``out``, or a new array of ``shape``.

    Raises:
        TypeError / ValueError naming the bad argument (e.g. ``std`` <= 0, or a ``mean`` and
        ``std`` whose draws would overflow ``dtype``: ``|mean| + 6.66 std`` past the max of
        float32, bfloat16 or float16 (65504), ``|mean| + 8.57 std`` past float64's).
        MemoryError: a ``shape`` too large to allocate.

    Example:
        >>> z = normal(100_000, seed=1)
        >>> abs(float(z.mean())) < 0.02
        True
    """
    dt = out.dtype if dtype is None and type(out) is np.ndarray and out.dtype in _FMAX else _dtype(dtype, out)  # as uniform
    m, s = _normal_params(mean, std, dt)
    arr = _output(shape, dt, out)
    _draw(seed, offset, arr.size, _per_block(dt), lambda key, stream, first: _core.normal(arr, key, stream, first, m, s))
    return arr


def truncated_normal(
    shape: Any = None,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    dtype: Any = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Samples from N(mean, std**2) truncated to [a, b] (absolute cut-offs, as torch).

    Inverse CDF with no rejection loop: for u uniform on (0, 1),
    ``p = Phi(alpha) + u * (Phi(beta) - Phi(alpha))`` with ``alpha = (a - mean) / std`` and
    ``beta = (b - mean) / std``, and the sample is ``mean + std * Phi^-1(p)``. The lower and
    upper tail probabilities are carried separately and the quantile is always taken of the
    smaller one (Wichura's AS 241), so far tails keep their relative accuracy. float32 uses
    AS 241's PPND7 (about 1e-7 relative); cut-offs beyond its reach (a tail probability below
    1e-30, or less than 1/256 of the mass between the cut-offs) switch to the float64 kernel.
    bfloat16 and float16 draws are the float32 draws rounded to nearest even, so they lie in
    [a, b] rounded to the dtype (a cut-off that is not a value of the dtype may be passed by
    up to half a unit in its last place).

    Args:
        shape, dtype, seed, offset, out: as in :func:`uniform`.
        mean: finite mean; std: finite, > 0.
        a, b: cut-offs with a < b; may be -inf / inf. The interval must hold positive
            probability in float64 (within about 36 std of the mean) and be at least
            1e-8 std wide.

    Returns:
        ``out``, or a new array of ``shape``; every value lies in [a, b].

    Raises:
        TypeError / ValueError naming the bad argument, also when an infinite (or out of
        range) cut-off lets the draws overflow ``dtype``.
        MemoryError: a ``shape`` too large to allocate.

    Example:
        >>> t = truncated_normal(10_000, std=0.02, a=-0.04, b=0.04, seed=3)
        >>> bool(t.min() >= -0.04 and t.max() <= 0.04)
        True
    """
    dt = _dtype(dtype, out)
    m, s, lo, hi = _truncnorm_params(mean, std, a, b, dt)
    arr = _output(shape, dt, out)
    _draw(seed, offset, arr.size, _per_block(dt),
          lambda key, stream, first: _core.truncated_normal(arr, key, stream, first, m, s, lo, hi))
    return arr


def _cutoff(value: Any, name: str) -> float:
    if type(value) is float and not math.isnan(value):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v
