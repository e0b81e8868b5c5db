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
"""

from __future__ import annotations

import math
import numbers
import threading
from typing import Any, Union

import numpy as np

from . import _core
from ._validation import finite_float, float_dtype, nonnegative_int, output_array, positive_float

__all__ = ["Generator", "bits", "uniform", "normal", "truncated_normal"]

_U64 = 1 << 64

SeedLike = Union[None, int, np.integer, np.random.SeedSequence, "Generator"]


def _key_from_seed(seed: Any) -> int:
    """The 64-bit Philox key for an int, a SeedSequence or None (fresh OS entropy)."""
    if seed is None:
        seed = np.random.SeedSequence()
    if isinstance(seed, np.random.SeedSequence):
        w = seed.generate_state(2, np.uint32)
        return int(w[0]) | (int(w[1]) << 32)
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(
            "seed must be None, an int, a numpy.random.SeedSequence or a regtune.Generator, "
            f"got {type(seed).__name__}"
        )
    s = int(seed)
    if not 0 <= s < _U64:
        raise ValueError(f"seed must be in [0, 2**64), got {s}")
    return s


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
        self._key = _key_from_seed(seed)
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
        """Everything needed to resume: key, stream, block position, spawn path and count."""
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
        try:
            key, stream, block = int(value["key"]), int(value["stream"]), int(value["block"])
            path, children = tuple(int(p) for p in value["path"]), int(value["children"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"state must be a dict like Generator.state returns: {exc}") from exc
        for name, v in (("key", key), ("stream", stream), ("block", block)):
            if not 0 <= v < _U64:
                raise ValueError(f"state[{name!r}] must be in [0, 2**64), got {v}")
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
        """
        n = nonnegative_int(n, "n")
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

    def uniform(self, shape=None, low=0.0, high=1.0, *, dtype=np.float32, out=None) -> np.ndarray:
        """Like :func:`regtune.random.uniform`, drawing the next elements of this stream."""
        return uniform(shape, low, high, dtype=dtype, seed=self, out=out)

    def normal(self, shape=None, mean=0.0, std=1.0, *, dtype=np.float32, out=None) -> np.ndarray:
        """Like :func:`regtune.random.normal`, drawing the next elements of this stream."""
        return normal(shape, mean, std, dtype=dtype, seed=self, out=out)

    def truncated_normal(
        self, shape=None, mean=0.0, std=1.0, a=-2.0, b=2.0, *, dtype=np.float32, out=None
    ) -> np.ndarray:
        """Like :func:`regtune.random.truncated_normal`, drawing the next elements."""
        return truncated_normal(shape, mean, std, a, b, dtype=dtype, seed=self, out=out)

    def __repr__(self) -> str:
        return f"Generator(key={self._key:#x}, stream={self._stream:#x}, block={self._block})"


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
        offset = nonnegative_int(self._offset, "offset")
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
    with _drawing(seed, offset, n, 4) as (key, stream, first):
        out = np.empty(n, dtype=np.uint32)
        _core.bits(out, key, stream, first)
    return out


def _per_block(dt: np.dtype) -> int:
    return 4 if dt == np.float32 else 2


def _finite_in(value: float, dt: np.dtype, name: str) -> float:
    if abs(value) > float(np.finfo(dt).max):
        raise ValueError(f"{name} = {value!r} does not fit in {dt}")
    return value


def uniform(
    shape: Any = None,
    low: float = 0.0,
    high: float = 1.0,
    *,
    dtype: Any = np.float32,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Samples from U[low, high): ``low + (high - low) * u``; ``high`` is never returned.

    ``u`` takes 24 random bits (float32) or 52 (float64); a value that rounds up to ``high``
    is replaced by the largest value below it.

    Args:
        shape: int or tuple; may be omitted when ``out`` is given.
        low, high: finite bounds with low < high (after rounding to ``dtype``).
        dtype: float32 (default) or float64.
        seed: int, SeedSequence, Generator or None (fresh entropy).
        offset: index of the first element in the stream (>= 0).
        out: a C-contiguous, writable array of exactly ``dtype`` to fill in place.

    Returns:
        ``out``, or a new array of ``shape``.

    Raises:
        TypeError / ValueError naming the bad argument.

    Example:
        >>> w = uniform((256, 128), -0.1, 0.1, seed=0)
        >>> bool(w.min() >= -0.1 and w.max() < 0.1)
        True
    """
    dt = float_dtype(dtype)
    lo = _finite_in(finite_float(low, "low"), dt, "low")
    hi = _finite_in(finite_float(high, "high"), dt, "high")
    if not dt.type(lo) < dt.type(hi):
        raise ValueError(f"low must be < high (in {dt}), got low={lo!r}, high={hi!r}")
    if not math.isfinite(hi - lo) or hi - lo > float(np.finfo(dt).max):
        raise ValueError(f"high - low must be finite in {dt}, got low={lo!r}, high={hi!r}")
    arr = output_array(shape, dt, out)
    with _drawing(seed, offset, arr.size, _per_block(dt)) as (key, stream, first):
        _core.uniform(arr, key, stream, first, lo, hi)
    return arr


def normal(
    shape: Any = None,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    dtype: Any = np.float32,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Samples from N(mean, std**2) by Box-Muller: ``mean + std * z``.

    Each Philox block gives a fixed number of normals (4 in float32, 2 in float64): two
    uniforms make two normals, ``r cos(2 pi u2)`` and ``r sin(2 pi u2)`` with
    ``r = sqrt(-2 log u1)``; no rejection, so element i depends on (seed, i) alone.
    The radius uses 31 bits (float32, |z| <= 6.66) or 53 bits (float64, |z| <= 8.57).

    Args:
        shape, dtype, seed, offset, out: as in :func:`uniform`.
        mean: finite mean.
        std: standard deviation, finite and > 0.

    Returns:
        ``out``, or a new array of ``shape``.

    Raises:
        TypeError / ValueError naming the bad argument (e.g. ``std`` <= 0).

    Example:
        >>> z = normal(100_000, seed=1)
        >>> abs(float(z.mean())) < 0.02
        True
    """
    dt = float_dtype(dtype)
    m = _finite_in(finite_float(mean, "mean"), dt, "mean")
    s = _finite_in(positive_float(std, "std"), dt, "std")
    arr = output_array(shape, dt, out)
    with _drawing(seed, offset, arr.size, _per_block(dt)) as (key, stream, first):
        _core.normal(arr, key, stream, first, m, s)
    return arr


def truncated_normal(
    shape: Any = None,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    dtype: Any = np.float32,
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

    Args:
        shape, dtype, seed, offset, out: as in :func:`uniform`.
        mean: finite mean; std: finite, > 0.
        a, b: cut-offs with a < b; may be -inf / inf. The interval must hold positive
            probability in float64 (within about 37 std of the mean).

    Returns:
        ``out``, or a new array of ``shape``; every value lies in [a, b].

    Raises:
        TypeError / ValueError naming the bad argument.

    Example:
        >>> t = truncated_normal(10_000, std=0.02, a=-0.04, b=0.04, seed=3)
        >>> bool(t.min() >= -0.04 and t.max() <= 0.04)
        True
    """
    dt = float_dtype(dtype)
    m = _finite_in(finite_float(mean, "mean"), dt, "mean")
    s = _finite_in(positive_float(std, "std"), dt, "std")
    lo, hi = _cutoff(a, "a"), _cutoff(b, "b")
    if not lo < hi:
        raise ValueError(f"a must be < b, got a={lo!r}, b={hi!r}")
    if not _core.truncnorm_mass(m, s, lo, hi) > 0.0:
        raise ValueError(
            f"[a, b] = [{lo!r}, {hi!r}] holds no probability under N({m!r}, {s!r}**2) "
            "in float64: move the cut-offs closer to the mean"
        )
    arr = output_array(shape, dt, out)
    with _drawing(seed, offset, arr.size, _per_block(dt)) as (key, stream, first):
        _core.truncated_normal(arr, key, stream, first, m, s, lo, hi)
    return arr


def _cutoff(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v
