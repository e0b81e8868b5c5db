"""Image augmentation for CPU training loops: fused, threaded, and a pure function of the sample.

A :class:`Pipeline` applies a list of ops to a batch of images (NHWC, uint8 or float32)::

    >>> import numpy as np
    >>> from regtune import augment as A
    >>> pipe = A.Pipeline([A.RandomCrop(32, padding=4), A.HorizontalFlip(),
    ...                    A.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))], seed=0, layout="NCHW")
    >>> images = np.zeros((8, 32, 32, 3), np.uint8)
    >>> pipe(images, indices=np.arange(8), epoch=0).shape
    (8, 3, 32, 32)

**Randomness.** Every random choice is a pure function of ``(seed, epoch, sample index, op
position)``: op ``k``'s choices for the sample with index ``i`` in epoch ``e`` come from the Philox
stream ``(key, e << 32 | i)`` at block ``k << 32``, a fixed number of words per op (no rejection
loop whose word use depends on values: RandomResizedCrop and RandomErasing draw torchvision's 10
tries up front). So a sample gets the same augmentation whatever the batch it is in, its place in
the batch, the thread count, the SIMD path or the number of DataLoader workers. ``key`` is derived
from ``seed`` (an int, a ``numpy.random.SeedSequence``, or None for fresh entropy) through
``SeedSequence(entropy=..., spawn_key=(0x61756700,))``, so the same seed given to
:mod:`regtune.random` draws different words. Words become choices as follows: a probability
``p`` is taken when the word is below ``round(p * 2**32)``; an integer in ``[0, n)`` is
``(word * n) >> 32`` (bias below ``n / 2**32``); a uniform on ``[lo, hi)`` is
``lo + (hi - lo) * word / 2**32`` in float64.

**Fusion.** Geometric ops (crops, flips, translations, one Resize or RandomResizedCrop, CenterCrop)
compose into one map per axis, so each output pixel is read from the input once (a gather, or a
separable bilinear blend: 2 x 2 source pixels, or with antialiasing as many as the shrink
factor needs, each source row filtered once); the pointwise ops (ColorJitter, GaussianNoise,
RandomErasing, Normalize) then run on blocks of output rows still in L1 cache, and the result is
stored once, in NHWC or NCHW order.
ColorJitter's contrast needs the mean of the whole image, and the policies (TrivialAugmentWide,
RandAugment, AutoAugment) and the single image ops (RandomPosterize, RandomSolarize,
RandomAutocontrast, RandomEqualize, RandomAdjustSharpness, RandomInvert) work on the whole image
(their affine maps, histograms and 3x3 blur), so a pipeline with any of them keeps each image's
values in a per-thread buffer until its pointwise ops are done. Samples are spread
over regtune's threads (``regtune.set_num_threads``) with the GIL released; the pixel loops are
vectorized (AVX2, AVX-512) and give the same bits on every path.

**Values.** Pixel values are float32 inside the pipeline (Normalize may store them as
bfloat16). ``uint8`` images are read as 0..255; without Normalize a uint8 batch gives uint8
output, rounded to nearest (ties to even) once at the end after clamping to [0, 255]
(torchvision rounds after each op of a uint8 chain; here there is one rounding). ColorJitter and clipped GaussianNoise clamp to [0, 255] for uint8 images and to
[0, 1] for float32 images.

**Order.** Geometric ops come first, then pointwise ops; ColorJitter, the policies and the single
image ops, and a clipped GaussianNoise must come before Normalize; RandomErasing may come before
Normalize (``value`` in pixel units) or after it (``value`` in normalized units, torchvision's
usual placement). The policies and single image ops take uint8 images' values as torchvision's
uint8 tensors (rounded to integers first, truncated after each op that computes in float). MixUp and CutMix mix
pairs of samples, so they are separate callables applied to a batch after the pipeline; their
image mixing is one native pass too (threaded across samples, GIL released, into a new float32
array or ``out=``), giving the same bits as the NumPy expressions in their docstrings on every
thread count and SIMD path. Their per-sample lambdas and boxes are drawn in NumPy (float64).

**Not here (yet).** float64 images.

**Antialiasing.** Resize and RandomResizedCrop antialias by default (``antialias=True``,
torchvision's default since 0.17): bilinear with a triangle filter as wide as the shrink factor,
torch's ``interpolate(mode="bilinear", antialias=True)`` (within 1 of it on uint8: torch rounds
its fixed-point weights and its intermediate rows, regtune computes in float32 and rounds once).
``antialias=False`` is the plain 2-tap blend (torch's ``antialias=False``, OpenCV's
``INTER_LINEAR`` as albumentations uses it), which aliases when shrinking by more than 2x; it was
the only resize of regtune 0.1.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
from typing import Any, Sequence

import ml_dtypes
import numpy as np

from . import _core
from ._seeding import augment_key
from ._validation import as_array, check_fits, check_inplace, hyperparameter, not_masked, one_of, overlaps

__all__ = [
    "ColorJitter",
    "AutoAugment",
    "CenterCrop",
    "CutMix",
    "GaussianNoise",
    "HorizontalFlip",
    "MixUp",
    "Normalize",
    "Pipeline",
    "RandAugment",
    "RandomAdjustSharpness",
    "RandomAutocontrast",
    "RandomCrop",
    "RandomEqualize",
    "RandomErasing",
    "RandomInvert",
    "RandomPosterize",
    "RandomResizedCrop",
    "RandomSolarize",
    "RandomTranslate",
    "Resize",
    "TrivialAugmentWide",
    "VerticalFlip",
]

_TWO32 = float(1 << 32)
PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


# ----------------------------------------------------------------------------- words -> choices


def _uniform(words: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Uniform on [lo, hi) in float64 from uint32 words: lo + (hi - lo) * word / 2**32."""
    return lo + (hi - lo) * (words.astype(np.float64) / _TWO32)


def _below(words: np.ndarray, n: Any) -> np.ndarray:
    """An integer in [0, n) from each uint32 word: (word * n) >> 32 (n may be an array, n <= 2**31)."""
    return ((words.astype(np.uint64) * np.asarray(n, dtype=np.uint64)) >> np.uint64(32)).astype(np.int64)


def _taken(words: np.ndarray, p: float) -> np.ndarray:
    """True with probability p (to 2**-32): word < round(p * 2**32)."""
    return words.astype(np.uint64) < np.uint64(round(p * _TWO32))


# ----------------------------------------------------------------------------- argument checks

#: Limits that keep every coordinate in the pipeline's 32-bit index maps and every value in
#: float32: an output side (``size``) below 2**31; a padding or shift of at most 2**30 per side
#: (a padded side then stays below 2**32, the range of the crop's ``(word * n) >> 32``).
_MAX_SIDE = 2**31 - 1
_MAX_PAD = 2**30
_F32_MAX = float(np.finfo(np.float32).max)


def _size_pair(size: Any, name: str) -> tuple[int, int]:
    """An int or an (h, w) pair of ints in [1, 2**31 - 1]."""
    if isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, (bool, np.bool_)):
        size = (size, size)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise TypeError(f"{name} must be an int or an (height, width) pair of ints, got {name}={size!r}")
    out = []
    for s in size:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must be an int or an (height, width) pair of ints, got {name}={size!r}")
        if operator.index(s) < 1:
            raise ValueError(f"{name} must be >= 1, got {name}={size!r}")
        if operator.index(s) > _MAX_SIDE:
            raise ValueError(f"{name} must be <= 2**31 - 1 (pixel coordinates are 32-bit), got {name}={size!r}")
        out.append(operator.index(s))
    return out[0], out[1]


def _int_arg(value: Any, name: str, low: int = 0, high: int | None = None, why: str = "") -> int:
    """An exact int (not a bool) in [low, high]; ``why`` explains ``high`` in the message."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {name}={value!r}")
    v = operator.index(value)
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {name}={v}")
    if high is not None and v > high:
        top = "2**30" if high == _MAX_PAD else str(high)
        raise ValueError(f"{name} must be <= {top}{f' ({why})' if why else ''}, got {name}={v}")
    return v


def _pad_arg(value: Any, name: str) -> int:
    """A padding or shift in pixels: an int in [0, 2**30]."""
    return _int_arg(value, name, 0, _MAX_PAD, "per side: pixel coordinates are 32-bit")


def _flag(value: Any, name: str) -> bool:
    """A bool (or NumPy bool), refused otherwise (a string "False" is not False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {name}={value!r}")
    return bool(value)


def _probability(p: Any, name: str = "p") -> float:
    return hyperparameter(p, name, low=0.0, high=1.0)


def _interval(value: Any, name: str, low: float, high: float | None = None) -> tuple[float, float]:
    """A (lo, hi) pair of finite floats with low <= lo <= hi (<= high)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair, got {name}={value!r}")
    lo = hyperparameter(value[0], f"{name}[0]", low=low, high=high)
    hi = hyperparameter(value[1], f"{name}[1]", low=low, high=high)
    if lo > hi:
        raise ValueError(f"{name} must have {name}[0] <= {name}[1], got {name}={value!r}")
    return lo, hi


def _channel_values(value: Any, name: str, bound: float | None = None) -> tuple[float, ...]:
    """A number or a sequence of numbers (one per channel), finite (and in [-bound, bound])."""
    low = None if bound is None else -bound
    if isinstance(value, (tuple, list, np.ndarray)):
        vals = tuple(hyperparameter(v, f"{name}[{i}]", low=low, high=bound) for i, v in enumerate(value))
        if not vals:
            raise ValueError(f"{name} must not be empty")
        return vals
    return (hyperparameter(value, name, low=low, high=bound),)


def _per_channel(vals: tuple[float, ...], channels: int, name: str) -> np.ndarray:
    if len(vals) == 1:
        return np.full(channels, vals[0], np.float64)
    if len(vals) != channels:
        raise ValueError(f"{name} has {len(vals)} values but the images have {channels} channels")
    return np.asarray(vals, np.float64)


# ----------------------------------------------------------------------------- per-axis maps


class _AxisMap:
    """Per sample and output coordinate o along one axis, where the output reads the input.

    Integer maps (crops, flips, shifts): ``i0`` of shape (n, out), the input coordinate (-1: the
    fill value). Resampling maps (bilinear, antialiased or not): ``i0, i1, w0, w1`` of shape
    (n, P, out), P pairs of taps, the value being ``sum over p < pairs[s] of w0 * in[i0] + w1 * in[i1]``
    in pair order (see regtune/augment.h); ``pairs`` (n,) int32, each sample's count."""

    __slots__ = ("i0", "i1", "w0", "w1", "pairs", "bilinear", "is_identity", "_shape")

    def __init__(self, i0: np.ndarray, i1: np.ndarray | None = None, w0: np.ndarray | None = None,
                 w1: np.ndarray | None = None, pairs: np.ndarray | None = None) -> None:  # fmt: skip
        self.i0 = i0
        self.bilinear = i1 is not None
        self.i1 = i1 if i1 is not None else i0
        self.w0 = w0
        self.w1 = w1
        self.pairs = pairs if pairs is not None or i1 is None else np.ones(i0.shape[0], np.int32)
        self.is_identity = False

    @staticmethod
    def identity(n: int, size: int) -> _AxisMap:
        """The map that changes nothing; its index array is only made if it is the final map."""
        m = _AxisMap.__new__(_AxisMap)
        m.i0 = m.i1 = m.w0 = m.w1 = m.pairs = None
        m.bilinear, m.is_identity, m._shape = False, True, (n, size)
        return m

    def indices(self) -> np.ndarray:
        """i0, also for the identity."""
        if self.i0 is None:
            return np.broadcast_to(np.arange(self._shape[1], dtype=np.int32), self._shape)
        return self.i0

    def then(self, m: _AxisMap) -> _AxisMap:
        """This map followed by op map ``m`` (m's indices address this map's output coordinates)."""
        if self.is_identity:
            return m
        if m.is_identity:
            return self
        if m.bilinear and self.bilinear:
            raise ValueError("a pipeline may hold only one resampling op (Resize or RandomResizedCrop)")

        def pick(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
            """a[s, idx[s, ...]] for every sample s, -1 where idx is -1 (a is integer: (n, len))."""
            flat = np.maximum(idx, 0).reshape(len(idx), -1)
            got = np.take_along_axis(a, flat, axis=1).reshape(idx.shape)
            return np.where(idx < 0, -1, got)

        if m.bilinear:  # self is integer: look m's taps up
            return _AxisMap(pick(self.i0, m.i0), pick(self.i0, m.i1), m.w0, m.w1, m.pairs)
        if not self.bilinear:
            return _AxisMap(pick(self.i0, m.i0))
        # m is integer after a resampling map: its coordinates pick the resampled ones; a fill
        # coordinate reads the fill value through pair 0 (weights 1, 0) and nothing else. One
        # flat index for the four tables (np.take on it is cheaper than take_along_axis).
        n, P, length = self.i0.shape
        out = m.i0.shape[1]
        rows = (np.arange(n * P, dtype=np.int64) * length).reshape(n, P, 1)
        flat = (np.maximum(m.i0, 0).astype(np.int64)[:, None, :] + rows).reshape(-1)

        def take(a: np.ndarray) -> np.ndarray:
            return np.take(a.reshape(-1), flat).reshape(n, P, out)

        i0, i1, w0, w1 = take(self.i0), take(self.i1), take(self.w0), take(self.w1)
        fill = (m.i0 < 0)[:, None, :]
        if fill.any():
            first = (np.arange(P) == 0)[None, :, None]
            i0, i1 = np.where(fill, -1, i0), np.where(fill, -1, i1)
            w0 = np.where(fill, np.where(first, 1.0, 0.0), w0).astype(self.w0.dtype)
            w1 = np.where(fill, 0.0, w1).astype(self.w1.dtype)
        return _AxisMap(i0, i1, w0, w1, self.pairs)


def _bilinear_taps(start: np.ndarray, length: np.ndarray, out: int, antialias: bool) -> _AxisMap:
    """The resampling map of the boxes ``[start, start + length)`` (per sample) onto ``out``
    coordinates, ``align_corners=False``: torch's ``interpolate(mode="bilinear")`` taps.

    Without antialiasing, 2 taps: source coordinate ``c = max((o + 0.5) * L / out - 0.5, 0)``,
    ``i0 = floor(c)``, ``i1 = min(i0 + 1, L - 1)``, ``w1 = c - i0``, ``w0 = 1 - w1``.
    With antialiasing (torch's ``_compute_weights_aa``, PIL's resample), with ``scale = L / out``,
    ``support = scale`` when shrinking (``scale >= 1``) else 1, and ``center = scale * (o + 0.5)``:
    taps ``j`` in ``[xmin, xmin + xsize)``, ``xmin = max(int(center - support + 0.5), 0)``,
    ``xsize = min(int(center + support + 0.5), L) - xmin``, weights
    ``tri((j - center + 0.5) / max(scale, 1))`` (``tri(x) = max(0, 1 - |x|)``) divided by their sum.
    Weights are computed in float64 (the total summed over the taps in order) and rounded to
    float32 once. Taps come in pairs; a coordinate with fewer taps than its sample's widest pads
    with weight 0 on its last tap. An empty box (``L = 0``) reads the fill value. Computed
    natively (``_core.augment_taps``, regtune/augment.h) for speed."""
    i0, i1, w0, w1, pairs = _core.augment_taps(np.ascontiguousarray(start, np.int64),
                                               np.ascontiguousarray(length, np.int64), out, antialias)  # fmt: skip
    return _AxisMap(i0, i1, w0, w1, pairs)


def _pad_index(j: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Index into [0, n) of padded coordinate j (may be outside), or -1 (constant fill)."""
    if mode == "constant":
        return np.where((j >= 0) & (j < n), j, -1)
    if mode == "edge":
        return np.clip(j, 0, n - 1)
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 ...: period 2(n - 1)
        if n == 1:
            return np.zeros_like(j)
        period = 2 * (n - 1)
        k = np.mod(j, period)
        return np.where(k < n, k, period - k)
    # symmetric: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...: period 2n
    k = np.mod(j, 2 * n)
    return np.where(k < n, k, 2 * n - 1 - k)


# ----------------------------------------------------------------------------- ops


class Op:
    """Base class of the augmentation ops: each draws its per-sample parameters from ``nwords``
    Philox words per sample (``params``). Ops run inside a :class:`Pipeline`."""

    nwords = 1
    geometric = False

    def params(self, words: np.ndarray, in_hw: tuple[int, int], channels: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class _GeometricOp(Op):
    geometric = True
    fill: tuple[float, ...] | None = None  # the value read outside the image, when the op can

    def out_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        return in_hw

    def maps(self, prm: dict[str, np.ndarray], in_hw: tuple[int, int]) -> tuple[_AxisMap, _AxisMap]:
        raise NotImplementedError


class RandomCrop(_GeometricOp):
    """A random ``size`` window of the image padded by ``padding`` (torchvision's RandomCrop).

    ``size``: an int or ``(h, w)``, each in [1, 2**31 - 1]. ``padding``: an int (all sides),
    ``(left/right, top/bottom)`` or ``(left, top, right, bottom)``, each in [0, 2**30] (pixel
    coordinates are 32-bit; anything else is a ValueError naming ``padding`` when the op is made).
    ``padding_mode``: ``"constant"`` (``fill``), ``"edge"``, ``"reflect"`` (no edge repeat:
    ``2 1 | 0 1 2``) or ``"symmetric"`` (``1 0 | 0 1``). The window's top-left corner is uniform
    over the ``(Hp - h + 1) * (Wp - w + 1)`` positions of the padded ``Hp x Wp`` image:
    ``top = (word0 * (Hp - h + 1)) >> 32``, ``left = (word1 * (Wp - w + 1)) >> 32``. A window
    larger than the padded image raises ValueError naming ``size``.
    """

    nwords = 2

    def __init__(self, size: Any, padding: Any = 0, padding_mode: str = "constant", fill: Any = 0) -> None:
        self.size = _size_pair(size, "size")
        if isinstance(padding, (tuple, list)):
            pads = [_pad_arg(p, f"padding[{i}]") for i, p in enumerate(padding)]
            if len(pads) == 2:
                pads = [pads[0], pads[1], pads[0], pads[1]]
            elif len(pads) != 4:
                raise ValueError(f"padding must be an int or a sequence of 2 or 4 ints, got padding={padding!r}")
        else:
            pads = [_pad_arg(padding, "padding")] * 4
        self.padding = tuple(pads)  # left, top, right, bottom
        if not one_of(padding_mode, PADDING_MODES):
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}")
        self.padding_mode = padding_mode
        self.fill = _channel_values(fill, "fill", _F32_MAX) if padding_mode == "constant" and any(pads) else None

    def out_hw(self, in_hw):
        return self.size

    def params(self, words, in_hw, channels):
        l, t, r, b = self.padding
        hp, wp = in_hw[0] + t + b, in_hw[1] + l + r
        h, w = self.size
        if h > hp or w > wp:
            raise ValueError(f"size {self.size} is larger than the padded image ({hp}, {wp}) (RandomCrop)")
        return {"top": _below(words[:, 0], hp - h + 1), "left": _below(words[:, 1], wp - w + 1)}

    def maps(self, prm, in_hw):
        l, t, _, _ = self.padding
        h, w = self.size
        rows = prm["top"][:, None] + np.arange(h) - t
        cols = prm["left"][:, None] + np.arange(w) - l
        return (_AxisMap(_pad_index(rows, in_hw[0], self.padding_mode)),
                _AxisMap(_pad_index(cols, in_hw[1], self.padding_mode)))  # fmt: skip


class RandomTranslate(_GeometricOp):
    """Shift the image by ``dy, dx`` whole pixels, each uniform on ``[-shift, shift]``; pixels
    shifted in read ``fill``. Output pixel ``(y, x)`` = input ``(y + dy, x + dx)``. The same as
    ``RandomCrop(image size, padding=shift)`` (the trainer's shifts)."""

    nwords = 2

    def __init__(self, shift: Any, fill: Any = 0) -> None:
        self.shift = _pad_arg(shift, "shift")
        self.fill = _channel_values(fill, "fill", _F32_MAX) if self.shift else None

    def params(self, words, in_hw, channels):
        s = self.shift
        if s and s >= max(in_hw):  # the trainer's rule: a shift that could move every pixel out is a mistake
            raise ValueError(f"shift must be < the image's height or width {in_hw}, got shift={s}")
        return {"dy": _below(words[:, 0], 2 * s + 1) - s, "dx": _below(words[:, 1], 2 * s + 1) - s}

    def maps(self, prm, in_hw):
        rows = prm["dy"][:, None] + np.arange(in_hw[0])
        cols = prm["dx"][:, None] + np.arange(in_hw[1])
        return _AxisMap(_pad_index(rows, in_hw[0], "constant")), _AxisMap(_pad_index(cols, in_hw[1], "constant"))


class HorizontalFlip(_GeometricOp):
    """Mirror left-right with probability ``p``: taken when word0 < round(p * 2**32)."""

    def __init__(self, p: Any = 0.5) -> None:
        self.p = _probability(p)

    def params(self, words, in_hw, channels):
        return {"flip": _taken(words[:, 0], self.p)}

    def maps(self, prm, in_hw):
        h, w = in_hw
        x = np.arange(w)
        cols = np.where(prm["flip"][:, None], w - 1 - x, x)
        return _AxisMap.identity(len(cols), h), _AxisMap(cols)


class VerticalFlip(HorizontalFlip):
    """Mirror top-bottom with probability ``p``: taken when word0 < round(p * 2**32)."""

    def maps(self, prm, in_hw):
        h, w = in_hw
        y = np.arange(h)
        rows = np.where(prm["flip"][:, None], h - 1 - y, y)
        return _AxisMap(rows), _AxisMap.identity(len(rows), w)


def _log_ratio_box(words: np.ndarray, area: float, scale: tuple[float, float], ratio: tuple[float, float],
                   swap: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """torchvision's (h, w) proposals for 10 tries, 2 words each: target area uniform on
    area * [scale), log aspect ratio uniform on log [ratio); w = round(sqrt(a * r)), h = round(sqrt(a / r))
    (RandomErasing's h and w are the other way round: ``swap``)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        target = area * _uniform(words[:, 0::4], scale[0], scale[1])
        aspect = np.exp(_uniform(words[:, 1::4], math.log(ratio[0]), math.log(ratio[1])))
        # A side beyond 2**40 pixels (inf, or NaN from inf * 0, with extreme scale or ratio) fails
        # every try's fit test as it is: clamped before the cast to int, which would wrap it.
        a = np.round(np.fmin(np.sqrt(target * aspect), 2.0**40)).astype(np.int64)
        b = np.round(np.fmin(np.sqrt(target / aspect), 2.0**40)).astype(np.int64)
    return (a, b) if swap else (b, a)


class RandomResizedCrop(_GeometricOp):
    """A random box of the image, resized to ``size`` (torchvision's RandomResizedCrop).

    The box: torchvision's sampling, 10 tries drawn up front (4 words each: area fraction,
    log aspect ratio, top, left); the first try with ``0 < w <= W`` and ``0 < h <= H`` is used,
    at ``top = (word * (H - h + 1)) >> 32``, ``left`` likewise, else the central crop of
    torchvision's fallback. The resize: bilinear, ``align_corners=False``, with ``antialias=True``
    (the default, torchvision's since 0.17) a triangle filter as wide as the shrink factor
    (torch's ``interpolate(mode="bilinear", antialias=True)``, PIL's ``BILINEAR`` resample): a
    large box shrunk to ``size`` does not alias; with ``antialias=False`` the plain 2-tap blend
    (source coordinate ``(o + 0.5) * in / out - 0.5``, clamped at 0; the second tap clamped to the
    box: torch's ``antialias=False``, OpenCV's ``INTER_LINEAR``). The taps and weights are
    ``_bilinear_taps``'s; weights are computed in float64 and rounded to float32 once; the
    blends are in float32, the rows first, then the columns (see regtune/augment.h).
    """

    nwords = 40

    def __init__(self, size: Any, scale: Any = (0.08, 1.0), ratio: Any = (3 / 4, 4 / 3), antialias: Any = True) -> None:
        self.size = _size_pair(size, "size")
        self.antialias = _flag(antialias, "antialias")
        self.scale = _interval(scale, "scale", 0.0)
        if self.scale[1] <= 0:
            raise ValueError(f"scale must have scale[1] > 0, got scale={scale!r}")
        self.ratio = _interval(ratio, "ratio", 0.0)
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio must be > 0, got ratio={ratio!r}")

    def out_hw(self, in_hw):
        if 0 in in_hw:
            raise ValueError(f"RandomResizedCrop needs images with pixels, got height and width {tuple(in_hw)}")
        return self.size

    def params(self, words, in_hw, channels):
        H, W = in_hw
        h, w = _log_ratio_box(words, float(H * W), self.scale, self.ratio, swap=False)
        ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = np.argmax(ok, axis=1)
        found = ok.any(axis=1)
        rows = np.arange(len(words))
        hh, ww = h[rows, first], w[rows, first]
        top = _below(words[rows, 4 * first + 2], np.where(found, H - hh + 1, 1))
        left = _below(words[rows, 4 * first + 3], np.where(found, W - ww + 1, 1))
        # torchvision's fallback: the central crop at the nearest allowed aspect ratio (at least
        # a pixel: where torchvision's rounds to 0, as a 1-pixel-wide image at ratio (10, 20), its
        # resize fails)
        in_ratio = W / H
        if in_ratio < min(self.ratio):
            fw, fh = W, max(1, int(round(W / min(self.ratio))))
        elif in_ratio > max(self.ratio):
            fh, fw = H, max(1, int(round(H * max(self.ratio))))
        else:
            fw, fh = W, H
        return {
            "top": np.where(found, top, (H - fh) // 2), "left": np.where(found, left, (W - fw) // 2),
            "height": np.where(found, hh, fh), "width": np.where(found, ww, fw),
        }  # fmt: skip

    def maps(self, prm, in_hw):
        return (_bilinear_taps(prm["top"], prm["height"], self.size[0], self.antialias),
                _bilinear_taps(prm["left"], prm["width"], self.size[1], self.antialias))  # fmt: skip


def _resized_hw(in_hw: tuple[int, int], size: int, max_size: int | None) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size`` for an int ``size``: the shorter side
    becomes ``size``, the longer ``int(size * long / short)``; then, with ``max_size``, a longer
    side above it becomes ``max_size`` and the shorter ``int(max_size * short / long)``."""
    h, w = in_hw
    short, long = (w, h) if w <= h else (h, w)
    if short == 0:
        raise ValueError(f"Resize needs images with pixels, got height and width {in_hw}")
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    if new_short < 1 or new_long > _MAX_SIDE:
        raise ValueError(f"Resize(size={size}) of a {h}x{w} image gives a side of {new_short} or {new_long} pixels, "
                         "outside [1, 2**31 - 1]")  # fmt: skip
    return (new_long, new_short) if w <= h else (new_short, new_long)


class Resize(_GeometricOp):
    """Resize every image (torchvision's Resize, bilinear): ``size`` an int resizes the shorter
    side to ``size`` and the longer to ``int(size * long / short)`` (aspect ratio kept, as
    torchvision computes it; ``max_size`` then caps the longer side), or ``(h, w)`` exactly.
    ``antialias=True`` (the default, torchvision's) low-pass filters when shrinking, as
    RandomResizedCrop documents; ``antialias=False``: the plain 2-tap blend. The evaluation
    transform of the ImageNet recipes is ``[Resize(256), CenterCrop(224), Normalize(...)]``.
    A pipeline holds at most one resampling op (Resize or RandomResizedCrop). Draws nothing."""

    nwords = 0

    def __init__(self, size: Any, antialias: Any = True, max_size: Any = None) -> None:
        if isinstance(size, (tuple, list)) and len(size) == 1:
            size = size[0]  # torchvision's [size]: the shorter side
        is_int = isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, (bool, np.bool_))
        self.size: int | tuple[int, int] = (_int_arg(size, "size", 1, _MAX_SIDE, "pixel coordinates are 32-bit")
                                            if is_int else _size_pair(size, "size"))  # fmt: skip
        self.antialias = _flag(antialias, "antialias")
        if max_size is not None:
            if not isinstance(self.size, int):
                raise ValueError(f"max_size is only allowed when size is an int, got size={size!r}")
            self.max_size = _int_arg(max_size, "max_size", 1, _MAX_SIDE, "pixel coordinates are 32-bit")
            if self.max_size <= self.size:
                raise ValueError(f"max_size must be > size, got max_size={self.max_size} and size={self.size}")
        else:
            self.max_size = None

    def out_hw(self, in_hw):
        if isinstance(self.size, tuple):
            return self.size
        return _resized_hw(in_hw, self.size, self.max_size)

    def params(self, words, in_hw, channels):
        """The output size of every sample (the same for all): ``height``, ``width``."""
        oh, ow = self.out_hw(in_hw)
        return {"height": np.full(len(words), oh, np.int64), "width": np.full(len(words), ow, np.int64)}

    def maps(self, prm, in_hw):
        n = len(prm["height"])
        oh, ow = self.out_hw(in_hw)
        zero = np.zeros(n, np.int64)
        return (_bilinear_taps(zero, np.full(n, in_hw[0], np.int64), oh, self.antialias),
                _bilinear_taps(zero, np.full(n, in_hw[1], np.int64), ow, self.antialias))  # fmt: skip


class CenterCrop(_GeometricOp):
    """The central ``size`` window (torchvision's CenterCrop): ``top = int(round((H - h) / 2))``,
    ``left`` likewise (Python's round, half to even). A window larger than the image is padded
    with ``fill`` first, as torchvision does (``(h - H) // 2`` above, the rest below; the same
    for the columns). ``size``: an int or ``(h, w)``. Draws nothing."""

    nwords = 0

    def __init__(self, size: Any, fill: Any = 0) -> None:
        self.size = _size_pair(size, "size")
        self.fill = _channel_values(fill, "fill", _F32_MAX)

    def out_hw(self, in_hw):
        return self.size

    @staticmethod
    def _start(length: int, out: int) -> int:
        if out > length:  # torchvision pads (out - length) // 2 before, the rest after, then crops at 0
            return -((out - length) // 2)
        return int(round((length - out) / 2.0))

    def params(self, words, in_hw, channels):
        """The window's corner in the image (negative where the window pads): ``top``, ``left``."""
        n = len(words)
        return {"top": np.full(n, self._start(in_hw[0], self.size[0]), np.int64),
                "left": np.full(n, self._start(in_hw[1], self.size[1]), np.int64)}  # fmt: skip

    def maps(self, prm, in_hw):
        rows = prm["top"][:, None] + np.arange(self.size[0])
        cols = prm["left"][:, None] + np.arange(self.size[1])
        return _AxisMap(_pad_index(rows, in_hw[0], "constant")), _AxisMap(_pad_index(cols, in_hw[1], "constant"))


class _PointwiseOp(Op):
    nwords = 1

    def step(self, prm: dict[str, np.ndarray], position: int, channels: int, bound: float) -> tuple[str, dict]:
        """The op's native step: ``(name, fields)``, a step of cpp/src/augment/steps.def and its
        fields by name (the batch's per-sample parameters ``prm``, the op's ``position`` in the
        pipeline, the images' ``channels`` and the clamp's ``bound``: 255 for uint8, else 1)."""
        raise NotImplementedError


def _jitter_range(value: Any, name: str, center: float = 1.0) -> tuple[float, float]:
    """A factor range: ``(min, max)`` or ``x`` for ``[max(0, 1 - x), 1 + x]``; the factors are
    float32, so the range ends at float32's largest value."""
    if isinstance(value, (tuple, list)):
        return _interval(value, name, 0.0, _F32_MAX)
    v = hyperparameter(value, name, low=0.0, high=_F32_MAX)
    return max(0.0, center - v), min(center + v, _F32_MAX)


_ORDERS3 = list(itertools.permutations(range(3)))
_ORDERS4 = list(itertools.permutations(range(4)))


class ColorJitter(_PointwiseOp):
    """Random brightness, contrast, saturation and hue, in a random order (torchvision's
    ColorJitter). Each factor is uniform on ``[max(0, 1 - x), 1 + x]`` (or the given
    ``(min, max)``), the hue shift on ``[-hue, hue]`` (``0 <= hue <= 0.5``, or ``(min, max)`` within
    ``[-0.5, 0.5]``); with ``bound`` 255 for uint8 images and 1 for float32 ones:

    - brightness ``b``: ``v = clamp(v * b, 0, bound)``;
    - contrast ``c``: ``v = clamp(v * c + m * (1 - c), 0, bound)``, ``m`` the mean over the image of
      the gray value (3 channels) or of the value (1 channel), summed in float64 and rounded to
      float32, ``m * (1 - c)`` one float32 multiply;
    - saturation ``s`` (3 channels only): ``v = clamp(v * s + gray * (1 - s), 0, bound)`` per
      pixel, ``gray = 0.2989 r + 0.587 g + 0.114 b`` (torchvision's weights), float32;
    - hue ``h`` (3 channels only): torchvision's ``adjust_hue`` on tensors: RGB -> HSV
      (``_rgb_to_hsv``), ``H = (H + h) mod 1`` (torch's ``remainder``), HSV -> RGB
      (``_hsv_to_rgb``, p, q, t clamped to ``[0, bound]``), each step the float32 operation
      torchvision makes, at the scale ``bound`` (hue and saturation are ratios: the same up to
      rounding). On uint8, within 1 of torchvision's, which converts to float, shifts, and
      converts back by truncating ``x * 255.999``.

    Words: the brightness, contrast and saturation factors (words 0-2), the order (word 3) and the
    hue shift (word 4). Without hue the order is one of the 6 permutations of the first three
    parts (``(word * 6) >> 32``, ``itertools.permutations`` order), the draws regtune 0.1 made;
    with hue one of the 24 permutations of the four (``(word * 24) >> 32``; torchvision's
    ``randperm(4)``). A factor of exactly 1 (hue: 0) is skipped. Values are rounded once, at the
    store (torchvision rounds uint8 images after each part).
    """

    nwords = 5

    def __init__(self, brightness: Any = 0, contrast: Any = 0, saturation: Any = 0, hue: Any = 0) -> None:
        self.brightness = _jitter_range(brightness, "brightness")
        self.contrast = _jitter_range(contrast, "contrast")
        self.saturation = _jitter_range(saturation, "saturation")
        if isinstance(hue, (tuple, list)):
            self.hue = _interval(hue, "hue", -0.5, 0.5)
        else:
            h = hyperparameter(hue, "hue", low=0.0, high=0.5)
            self.hue = (-h, h)

    def params(self, words, in_hw, channels):
        if self.saturation != (1.0, 1.0) and channels != 3:
            raise ValueError(f"ColorJitter(saturation=...) needs 3 channels, the images have {channels}")
        if self.hue != (0.0, 0.0) and channels != 3:
            raise ValueError(f"ColorJitter(hue=...) needs 3 channels, the images have {channels}")
        if channels not in (1, 3) and (self.contrast != (1.0, 1.0)):
            raise ValueError(f"ColorJitter(contrast=...) needs 1 or 3 channels, the images have {channels}")
        f = [_uniform(words[:, k], *rng).astype(np.float32) for k, rng in
             enumerate((self.brightness, self.contrast, self.saturation))]  # fmt: skip
        if self.hue == (0.0, 0.0):
            order = np.array([_ORDERS3[k] + (3,) for k in range(6)])[_below(words[:, 3], 6)]
            hue = np.zeros(len(words), np.float32)
        else:
            order = np.array(_ORDERS4)[_below(words[:, 3], 24)]
            hue = _uniform(words[:, 4], *self.hue).astype(np.float32)
        return {"brightness": f[0], "contrast": f[1], "saturation": f[2], "hue": hue, "order": order}

    def step(self, prm, position, channels, bound):
        per = np.concatenate([np.stack([prm["brightness"], prm["contrast"], prm["saturation"], prm["hue"]], axis=1),
                              prm["order"].astype(np.float32)], axis=1)  # fmt: skip
        return "jitter", {"per_sample": np.ascontiguousarray(per, np.float32), "bound": bound}


# ----------------------------------------------------------------------------- policies

#: The image ops of torchvision's policies (transforms/v2/_auto_augment.py) and their codes in the
#: native "policy" step (cpp/src/augment/steps/policy.h); the geometric ones are one affine map.
_POLICY_CODES = {
    "Identity": 0, "ShearX": 1, "ShearY": 1, "TranslateX": 1, "TranslateY": 1, "Rotate": 1, "Brightness": 2,
    "Color": 3, "Contrast": 4, "Sharpness": 5, "Posterize": 6, "Solarize": 7, "AutoContrast": 8, "Equalize": 9,
    "Invert": 10,
}  # fmt: skip


def _bins_linspace(lo: float, hi: float) -> Any:
    """torchvision's ``torch.linspace(lo, hi, num_bins)`` magnitudes (float32 values)."""
    return lambda nb, h, w: np.linspace(lo, hi, nb).astype(np.float32).astype(np.float64)


def _bins_posterize(top: float, div: float) -> Any:
    """torchvision's ``(top - (torch.arange(num_bins) / ((num_bins - 1) / div))).round().int()``."""
    return lambda nb, h, w: np.round(np.float32(top) - np.arange(nb, dtype=np.float32) / np.float32((nb - 1) / div)
                                     ).astype(np.float64)  # fmt: skip


def _no_bins(nb: int, h: int, w: int) -> None:
    return None


# name -> (magnitudes(num_bins, height, width) or None, signed): torchvision's tables
_RAND_SPACE = {  # RandAugment and AutoAugment (AutoAugment: without Identity, with Invert)
    "Identity": (_no_bins, False),
    "ShearX": (_bins_linspace(0.0, 0.3), True),
    "ShearY": (_bins_linspace(0.0, 0.3), True),
    "TranslateX": (lambda nb, h, w: _bins_linspace(0.0, 150.0 / 331.0 * w)(nb, h, w), True),
    "TranslateY": (lambda nb, h, w: _bins_linspace(0.0, 150.0 / 331.0 * h)(nb, h, w), True),
    "Rotate": (_bins_linspace(0.0, 30.0), True),
    "Brightness": (_bins_linspace(0.0, 0.9), True),
    "Color": (_bins_linspace(0.0, 0.9), True),
    "Contrast": (_bins_linspace(0.0, 0.9), True),
    "Sharpness": (_bins_linspace(0.0, 0.9), True),
    "Posterize": (_bins_posterize(8, 4), False),
    "Solarize": (_bins_linspace(1.0, 0.0), False),
    "AutoContrast": (_no_bins, False),
    "Equalize": (_no_bins, False),
}
_AUTO_SPACE = {k: v for k, v in _RAND_SPACE.items() if k != "Identity"} | {"Invert": (_no_bins, False)}
_WIDE_SPACE = {  # TrivialAugmentWide
    "Identity": (_no_bins, False),
    "ShearX": (_bins_linspace(0.0, 0.99), True),
    "ShearY": (_bins_linspace(0.0, 0.99), True),
    "TranslateX": (_bins_linspace(0.0, 32.0), True),
    "TranslateY": (_bins_linspace(0.0, 32.0), True),
    "Rotate": (_bins_linspace(0.0, 135.0), True),
    "Brightness": (_bins_linspace(0.0, 0.99), True),
    "Color": (_bins_linspace(0.0, 0.99), True),
    "Contrast": (_bins_linspace(0.0, 0.99), True),
    "Sharpness": (_bins_linspace(0.0, 0.99), True),
    "Posterize": (_bins_posterize(8, 6), False),
    "Solarize": (_bins_linspace(1.0, 0.0), False),
    "AutoContrast": (_no_bins, False),
    "Equalize": (_no_bins, False),
}

#: torchvision's AutoAugmentPolicy sub-policies: ((op, probability, magnitude bin), (op, p, bin))
AUTOAUGMENT_POLICIES = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
    "svhn": (
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)), (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)), (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 3), ("Invert", 0.7, None)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ),
}


def _inverse_affine_matrix(center: tuple[Any, Any], angle: Any, translate: tuple[Any, Any],
                           shear: tuple[Any, Any]) -> np.ndarray:  # fmt: skip
    """torchvision's ``_get_inverse_affine_matrix`` (scale 1), vectorized over samples in float64:
    ``(n, 6)``, the map from output to input pixel coordinates centred on the image."""
    rot = np.radians(angle)
    sx, sy = np.radians(shear[0]), np.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    cos_sy, tan_sx = np.cos(sy), np.tan(sx)
    rot_minus_sy = rot - sy
    a = np.cos(rot_minus_sy) / cos_sy
    b = -(a * tan_sx + np.sin(rot))
    c = np.sin(rot_minus_sy) / cos_sy
    d = -(c * tan_sx - np.cos(rot))
    m = [d, -b, np.zeros_like(a), -c, a, np.zeros_like(a)]
    m[2] = (m[2] + (m[0] * (-(cx + tx)) + m[1] * (-(cy + ty)))) + cx
    m[5] = (m[5] + (m[3] * (-(cx + tx)) + m[4] * (-(cy + ty)))) + cy
    return np.stack([np.broadcast_to(np.asarray(v, np.float64), np.shape(a)) for v in m], axis=-1)


def _policy_rows(names: np.ndarray, magnitude: np.ndarray, in_hw: tuple[int, int], bound: float) -> np.ndarray:
    """The native step's rows for ops ``names`` (an array of op names) with (signed) magnitudes:
    torchvision's ``_apply_image_or_video_transform`` turned into (code, parameters)."""
    H, W = in_hw
    rows = np.zeros(names.shape + (8,), np.float64)
    rows[..., 0] = np.vectorize(_POLICY_CODES.__getitem__, otypes=[np.int64])(names) if names.size else 0
    m = magnitude
    shear_x, shear_y = names == "ShearX", names == "ShearY"
    trans_x, trans_y, rotate = names == "TranslateX", names == "TranslateY", names == "Rotate"
    corner = shear_x | shear_y  # torchvision shears about center=[0, 0], the top-left corner
    center = (np.where(corner, -W * 0.5, 0.0), np.where(corner, -H * 0.5, 0.0))
    deg = np.degrees(np.arctan(m))
    angle = np.where(rotate, -np.mod(m, 360.0), 0.0)  # F.rotate: angle % 360, then -angle
    translate = (np.where(trans_x, np.trunc(m), 0.0), np.where(trans_y, np.trunc(m), 0.0))  # int(magnitude)
    shear = (np.where(shear_x, deg, 0.0), np.where(shear_y, deg, 0.0))
    affine = shear_x | shear_y | trans_x | trans_y | rotate
    mat = _inverse_affine_matrix(center, angle, translate, shear)
    rows[..., 1:7] = np.where(affine[..., None], mat, 0.0)
    factor = np.isin(names, ("Brightness", "Color", "Contrast", "Sharpness"))
    rows[..., 1] = np.where(factor, 1.0 + m, rows[..., 1])
    rows[..., 2] = np.where(factor, 1.0 - (1.0 + m), rows[..., 2])  # torchvision's alpha=(1.0 - ratio), float64
    rows[..., 1] = np.where(names == "Posterize", np.trunc(m), rows[..., 1])  # int(magnitude)
    rows[..., 1] = np.where(names == "Solarize", bound * m, rows[..., 1])
    return rows


def _fill_arg(fill: Any) -> tuple[float, ...]:
    return _channel_values(0 if fill is None else fill, "fill", _F32_MAX)


def _interpolation_arg(interpolation: Any) -> str:
    if not one_of(interpolation, ("nearest",)):
        raise ValueError(f"interpolation must be 'nearest' (torchvision's default for the policies; bilinear is "
                         f"not supported yet), got interpolation={interpolation!r}")  # fmt: skip
    return interpolation


class _PolicyOp(_PointwiseOp):
    """Ops that run torchvision's policy image ops (cpp/src/augment/steps/policy.h) on the whole
    image, in pixel units (before Normalize): each sample gets ``slots`` ops chosen by ``choose``.
    Images must have 1 or 3 channels."""

    slots = 1
    _fill: tuple[float, ...] = (0.0,)

    def choose(self, words: np.ndarray, in_hw: tuple[int, int]) -> dict[str, np.ndarray]:
        """``{"op": names (n, slots), "magnitude": (n, slots) signed float64, ...}``."""
        raise NotImplementedError

    def params(self, words, in_hw, channels):
        if channels not in (1, 3):
            raise ValueError(f"{type(self).__name__} needs images with 1 or 3 channels, the images have {channels}")
        _per_channel(self._fill, channels, "fill")
        prm = self.choose(words, in_hw)
        prm["_hw"] = np.broadcast_to(np.array(in_hw), (len(words), 2))
        return prm

    def step(self, prm, position, channels, bound):
        hw = tuple(int(v) for v in prm["_hw"][0]) if len(prm["_hw"]) else (1, 1)
        rows = _policy_rows(prm["op"], prm["magnitude"], hw, bound)
        n = rows.shape[0]
        return "policy", {"per_sample": np.ascontiguousarray(rows.reshape(n, -1), np.float32),
                          "slots": float(self.slots), "bound": bound, "u8": bound == 255.0,
                          "fill": _per_channel(self._fill, channels, "fill").astype(np.float32)}  # fmt: skip


class TrivialAugmentWide(_PolicyOp):
    """TrivialAugment (Müller and Hutter, 2021), torchvision's ``TrivialAugmentWide``: per sample
    one of 14 ops (Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color,
    Contrast, Sharpness, Posterize, Solarize, AutoContrast, Equalize) uniformly
    (``(word0 * 14) >> 32``), a magnitude bin uniform on ``num_magnitude_bins``
    (``(word1 * bins) >> 32``) of torchvision's wide ranges, negated for signed ops when word2 <
    2**31 (probability 1/2). Each op is torchvision's tensor op (see ``_policy_rows`` and
    cpp/src/augment/steps/policy.h): within 1 of it on uint8 images. Geometric ops sample the
    nearest pixel and read ``fill`` (pixel units, default 0) outside the image.
    ``sample_params``: ``op`` (names), ``magnitude`` (signed, as torchvision passes it), ``bin``."""

    nwords = 3
    _space = _WIDE_SPACE

    def __init__(self, num_magnitude_bins: Any = 31, interpolation: str = "nearest", fill: Any = None) -> None:
        self.num_magnitude_bins = _int_arg(num_magnitude_bins, "num_magnitude_bins", 2, 1 << 20)
        self.interpolation = _interpolation_arg(interpolation)
        self.fill = fill
        self._fill = _fill_arg(fill)

    def choose(self, words, in_hw):
        names = np.array(list(self._space))
        which = _below(words[:, 0], len(names))
        nb = self.num_magnitude_bins
        b = _below(words[:, 1], nb)
        neg = _taken(words[:, 2], 0.5)
        mag = np.zeros(len(words))
        for k, (fn, signed) in enumerate(self._space.values()):
            bins = fn(nb, *in_hw)
            if bins is None:
                continue
            sel = which == k
            mag[sel] = bins[b[sel]] * np.where(signed & neg[sel], -1.0, 1.0)
        return {"op": names[which][:, None], "magnitude": mag[:, None], "bin": b[:, None]}


class RandAugment(_PolicyOp):
    """RandAugment (Cubuk et al., 2020), torchvision's: per sample ``num_ops`` ops, each one of 14
    (Identity and torchvision's 13) uniformly (word ``2k``), at magnitude bin ``magnitude`` of
    ``num_magnitude_bins``, negated for signed ops when word ``2k + 1`` < 2**31. The ops and their
    accuracy: as TrivialAugmentWide. ``sample_params``: ``op``, ``magnitude`` (n, num_ops)."""

    _space = _RAND_SPACE

    def __init__(self, num_ops: Any = 2, magnitude: Any = 9, num_magnitude_bins: Any = 31,
                 interpolation: str = "nearest", fill: Any = None) -> None:  # fmt: skip
        self.num_ops = _int_arg(num_ops, "num_ops", 0, 64)
        self.num_magnitude_bins = _int_arg(num_magnitude_bins, "num_magnitude_bins", 2, 1 << 20)
        self.magnitude = _int_arg(magnitude, "magnitude", 0, self.num_magnitude_bins - 1,
                                  "a bin of num_magnitude_bins")  # fmt: skip
        self.interpolation = _interpolation_arg(interpolation)
        self.fill = fill
        self._fill = _fill_arg(fill)
        self.slots = max(self.num_ops, 1)
        self.nwords = 2 * self.num_ops

    def choose(self, words, in_hw):
        n = len(words)
        names = np.array(list(self._space))
        if self.num_ops == 0:
            return {"op": np.full((n, 1), "Identity"), "magnitude": np.zeros((n, 1))}
        which = _below(words[:, 0::2], len(names))
        neg = _taken(words[:, 1::2], 0.5)
        mag = np.zeros(which.shape)
        for k, (fn, signed) in enumerate(self._space.values()):
            bins = fn(self.num_magnitude_bins, *in_hw)
            if bins is not None:
                mag = np.where(which == k, bins[self.magnitude] * np.where(signed & neg, -1.0, 1.0), mag)
        return {"op": names[which], "magnitude": mag}


class AutoAugment(_PolicyOp):
    """AutoAugment (Cubuk et al., 2019), torchvision's: ``policy`` ``"imagenet"``, ``"cifar10"`` or
    ``"svhn"`` (AUTOAUGMENT_POLICIES, torchvision's sub-policies). Per sample one of the 25
    sub-policies uniformly (word 0), then each of its two ops applied with its probability
    (word ``1 + 2k`` < round(p * 2**32)) at its magnitude bin of 10, negated for signed ops when
    word ``2 + 2k`` < 2**31. The ops: as TrivialAugmentWide (plus Invert).
    ``sample_params``: ``policy`` (the sub-policy's index), ``op`` (names; Identity where not
    applied), ``magnitude``, ``applied``."""

    nwords = 5
    slots = 2
    _space = _AUTO_SPACE

    def __init__(self, policy: str = "imagenet", interpolation: str = "nearest", fill: Any = None) -> None:
        if not one_of(policy, AUTOAUGMENT_POLICIES):
            raise ValueError(f"policy must be one of {tuple(AUTOAUGMENT_POLICIES)}, got policy={policy!r}")
        self.policy = policy
        self.interpolation = _interpolation_arg(interpolation)
        self.fill = fill
        self._fill = _fill_arg(fill)

    def choose(self, words, in_hw):
        table = AUTOAUGMENT_POLICIES[self.policy]
        n = len(words)
        pick = _below(words[:, 0], len(table))
        names = np.empty((n, 2), dtype=object)
        mag = np.zeros((n, 2))
        applied = np.zeros((n, 2), bool)
        for j, sub in enumerate(table):
            sel = pick == j
            for k, (name, prob, idx) in enumerate(sub):
                fn, signed = self._space[name]
                bins = fn(10, *in_hw)
                m = 0.0 if bins is None else bins[idx]
                take = _taken(words[sel, 1 + 2 * k], prob)
                neg = _taken(words[sel, 2 + 2 * k], 0.5) & signed
                applied[sel, k] = take
                names[sel, k] = np.where(take, name, "Identity")
                mag[sel, k] = np.where(take, np.where(neg, -m, m), 0.0)
        return {"policy": pick, "op": names.astype(str), "magnitude": mag, "applied": applied}


class _RandomImageOp(_PolicyOp):
    """One policy op, taken with probability ``p`` (word0 < round(p * 2**32))."""

    _name = "Identity"

    def _magnitude(self) -> float:
        return 0.0

    def choose(self, words, in_hw):
        take = _taken(words[:, 0], self.p)
        return {"op": np.where(take, self._name, "Identity")[:, None],
                "magnitude": np.where(take, self._magnitude(), 0.0)[:, None], "applied": take}  # fmt: skip


class RandomPosterize(_RandomImageOp):
    """torchvision's RandomPosterize: keep the ``bits`` high bits of each uint8 value (float
    images: ``floor(v * 2**bits) / 2**bits``, clamped), with probability ``p``."""

    _name = "Posterize"

    def __init__(self, bits: Any, p: Any = 0.5) -> None:
        self.bits = _int_arg(bits, "bits", 0, 8)
        self.p = _probability(p)

    def _magnitude(self):
        return float(self.bits)


class RandomSolarize(_RandomImageOp):
    """torchvision's RandomSolarize: ``v >= threshold ? bound - v : v`` (``threshold`` in the
    images' units: 0..255 for uint8, 0..1 for float32), with probability ``p``."""

    _name = "Solarize"

    def __init__(self, threshold: Any, p: Any = 0.5) -> None:
        self.threshold = hyperparameter(threshold, "threshold", low=0.0, high=_F32_MAX)
        self.p = _probability(p)

    def choose(self, words, in_hw):
        prm = super().choose(words, in_hw)
        prm["magnitude"] = np.where(prm["applied"], self.threshold, 0.0)[:, None]
        return prm

    def step(self, prm, position, channels, bound):
        # the rows take a threshold as a fraction of bound (torchvision's policies' Solarize)
        frac = dict(prm, magnitude=prm["magnitude"] / bound)
        return super().step(frac, position, channels, bound)


class RandomAutocontrast(_RandomImageOp):
    """torchvision's RandomAutocontrast: each channel stretched to ``[0, bound]`` by its minimum and
    maximum, with probability ``p``."""

    _name = "AutoContrast"

    def __init__(self, p: Any = 0.5) -> None:
        self.p = _probability(p)


class RandomEqualize(_RandomImageOp):
    """torchvision's RandomEqualize (PIL's histogram equalization, per channel, of the uint8
    values), with probability ``p``."""

    _name = "Equalize"

    def __init__(self, p: Any = 0.5) -> None:
        self.p = _probability(p)


class RandomInvert(_RandomImageOp):
    """torchvision's RandomInvert: ``bound - v``, with probability ``p``."""

    _name = "Invert"

    def __init__(self, p: Any = 0.5) -> None:
        self.p = _probability(p)


class RandomAdjustSharpness(_RandomImageOp):
    """torchvision's RandomAdjustSharpness: blend with the 3x3 smoothed image
    (``v + (1 - f) * (blur - v)`` inside a 1-pixel border), with probability ``p``."""

    _name = "Sharpness"

    def __init__(self, sharpness_factor: Any, p: Any = 0.5) -> None:
        self.sharpness_factor = hyperparameter(sharpness_factor, "sharpness_factor", low=0.0, high=_F32_MAX)
        self.p = _probability(p)

    def _magnitude(self):
        return self.sharpness_factor - 1.0  # the rows take 1 + magnitude


class GaussianNoise(_PointwiseOp):
    """Add normal noise of standard deviation ``std`` (in the images' units: 0..255 for uint8),
    then clamp to ``[0, bound]`` when ``clip``. Element ``e`` of a sample's output (NHWC order)
    takes normal element ``(position << 34) + e`` of the Philox stream ``(key, epoch << 32 | index)``
    (regtune.random's float32 Box-Muller)."""

    nwords = 0

    def __init__(self, std: Any, clip: bool = True) -> None:
        # float32 noise: a normal draw reaches about 9 standard deviations, which must stay
        # finite (the trainer's noise_std has the same bound)
        self.std = hyperparameter(std, "std", low=0.0, high=_F32_MAX / 16)
        if not isinstance(clip, (bool, np.bool_)):
            raise TypeError(f"clip must be a bool, got clip={clip!r}")
        self.clip = bool(clip)

    def params(self, words, in_hw, channels):
        return {}

    def step(self, prm, position, channels, bound):
        return "noise", {"op_position": position, "bound": bound, "std": self.std, "clip": self.clip}


class RandomErasing(_PointwiseOp):
    """Cutout: with probability ``p``, set a random box to ``value`` (torchvision's RandomErasing).

    Words: the decision (``word0 < round(p * 2**32)``), then 10 tries of 4 words (area fraction
    uniform on ``scale``, log aspect ratio uniform on ``log ratio``, top, left) drawn up front:
    ``h = round(sqrt(a * r))``, ``w = round(sqrt(a / r))``, the first try with ``h < H`` and
    ``w < W`` is used at ``top = (word * (H - h + 1)) >> 32``, ``left`` likewise; no try fits:
    nothing is erased (torchvision returns the image). ``value``: a number or one per channel, in
    the units of the values where the op stands (pixel units before Normalize, normalized after),
    or ``"random"`` (torchvision's ``value="random"``): standard normal values, one per pixel and
    channel. Box element ``(c, y, x)``, counted from the box's top-left corner, takes normal
    element ``(position << 34) + (c * height + y) * width + x`` of the sample's Philox stream
    ``(key, epoch << 32 | index)`` (GaussianNoise's stream and float32 Box-Muller, with mean 0 and
    std 1), so the values depend on the sample and its box only. They are N(0, 1) in the units
    where the op stands: after Normalize (torchvision's placement) or on float32 images they are
    kept as drawn; in a uint8 pipeline without Normalize they are stored like every value, clamped
    to [0, 255] and rounded half to even (about 69% of them become 0, the rest mostly 1 or 2).
    Any other string raises ValueError naming ``value``.
    """

    nwords = 41

    def __init__(self, p: Any = 0.5, scale: Any = (0.02, 0.33), ratio: Any = (0.3, 3.3), value: Any = 0) -> None:
        self.p = _probability(p)
        self.scale = _interval(scale, "scale", 0.0, 1.0)
        self.ratio = _interval(ratio, "ratio", 0.0)
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio must be > 0, got ratio={ratio!r}")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"value must be a number, one number per channel or 'random', got value={value!r}")
            self.value: tuple[float, ...] | str = value
        else:
            self.value = _channel_values(value, "value", _F32_MAX)

    def params(self, words, in_hw, channels):
        if self.value != "random":
            _per_channel(self.value, channels, "value")
        H, W = in_hw
        h, w = _log_ratio_box(words[:, 1:], float(H * W), self.scale, self.ratio, swap=True)
        ok = (h < H) & (w < W)
        first = np.argmax(ok, axis=1)
        rows = np.arange(len(words))
        erase = ok.any(axis=1) & _taken(words[:, 0], self.p)
        hh, ww = h[rows, first], w[rows, first]
        top = _below(words[rows, 1 + 4 * first + 2], np.where(erase, H - hh + 1, 1))
        left = _below(words[rows, 1 + 4 * first + 3], np.where(erase, W - ww + 1, 1))
        z = np.zeros_like(hh)
        return {"top": np.where(erase, top, z), "left": np.where(erase, left, z),
                "height": np.where(erase, hh, z), "width": np.where(erase, ww, z)}  # fmt: skip

    def step(self, prm, position, channels, bound):
        per = np.stack([prm["top"], prm["left"], prm["height"], prm["width"]], axis=1).astype(np.float32)
        # values None: N(0, 1) draws (value="random")
        vals = None if self.value == "random" else _per_channel(self.value, channels, "value").astype(np.float32)
        return "erase", {"op_position": position, "per_sample": np.ascontiguousarray(per), "values": vals}


class Normalize(_PointwiseOp):
    """``out = (v / max_pixel_value - mean) / std`` per channel, computed in float32 as
    ``v * a + b`` (one multiply, one add) with ``a = 1 / (max_pixel_value * std)`` and
    ``b = -mean / std`` rounded from float64 to float32 once. ``max_pixel_value`` defaults to 255
    for uint8 images and 1 for float32 ones (torchvision's ToTensor + Normalize; albumentations'
    Normalize). ``dtype``: the pipeline's output, float32 (default) or ``ml_dtypes.bfloat16``
    (the float32 result rounded to nearest even, as ``.astype(ml_dtypes.bfloat16)``; ops after
    Normalize, such as RandomErasing, still work in float32 before that one rounding)."""

    nwords = 0

    def __init__(self, mean: Any, std: Any, max_pixel_value: Any = None, dtype: Any = np.float32) -> None:
        self.mean = _channel_values(mean, "mean")
        self.std = _channel_values(std, "std")
        for i, s in enumerate(self.std):
            if s <= 0:
                raise ValueError(f"std must be > 0, got std[{i}]={s!r}")
        self.max_pixel_value = None if max_pixel_value is None else hyperparameter(
            max_pixel_value, "max_pixel_value", low=0.0, low_open=True)  # fmt: skip
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"dtype must be float32 or ml_dtypes.bfloat16, got dtype={dtype!r}") from exc
        if dt not in (np.dtype(np.float32), np.dtype(ml_dtypes.bfloat16)):
            raise TypeError(f"dtype must be float32 or ml_dtypes.bfloat16, got dtype={dt}")
        self.dtype = dt
        self._check_coefficients()

    def _check_coefficients(self) -> None:
        """Refuse, naming the arguments, values whose float32 coefficients would be inf (every
        output inf or NaN) or whose ``a`` rounds to 0 (every output -mean / std): for the given
        ``max_pixel_value``, or for both defaults (1 and 255) when it is None."""
        mean, std = self.mean, self.std
        n = max(len(mean), len(std))
        if len(mean) not in (1, n) or len(std) not in (1, n):
            return  # per-channel values of two lengths: refused with the images' channel count
        given = self.max_pixel_value is not None
        for c in range(n):
            i, j = (c if len(mean) > 1 else 0), (c if len(std) > 1 else 0)
            m, sd = mean[i], std[j]
            for mpv in [self.max_pixel_value] if given else [1.0, 255.0]:
                with np.errstate(over="ignore", under="ignore", divide="ignore"):
                    a = np.float64(1.0) / (np.float64(mpv) * sd)
                    b = -np.float64(m) / sd
                    a32, b32 = np.float32(a), np.float32(b)
                who = (f"max_pixel_value={mpv!r} and std[{j}]={sd!r} make" if given else
                       f"std[{j}]={sd!r} (with max_pixel_value {mpv:g}, the default for "
                       f"{'uint8' if mpv == 255.0 else 'float32'} images) makes")  # fmt: skip
                if not np.isfinite(a32):
                    raise ValueError(f"{who} 1 / (max_pixel_value * std) = {a:g}, not finite in float32")
                if a32 == 0:
                    raise ValueError(f"{who} 1 / (max_pixel_value * std) = {a:g}, which rounds to 0 in float32: "
                                     "every value would be -mean / std")  # fmt: skip
                if not np.isfinite(b32):
                    raise ValueError(f"mean[{i}]={m!r} and std[{j}]={sd!r} make -mean / std = {b:g}, not finite in float32")

    def params(self, words, in_hw, channels):
        return {}

    def coefficients(self, channels: int, u8: bool) -> tuple[np.ndarray, np.ndarray]:
        mean = _per_channel(self.mean, channels, "mean")
        std = _per_channel(self.std, channels, "std")
        mpv = self.max_pixel_value if self.max_pixel_value is not None else (255.0 if u8 else 1.0)
        return (1.0 / (mpv * std)).astype(np.float32), (-mean / std).astype(np.float32)

    def step(self, prm, position, channels, bound):
        a, b = self.coefficients(channels, bound == 255.0)
        return "normalize", {"values": np.concatenate([a, b])}


# ----------------------------------------------------------------------------- pipeline


def _derive_key(seed: Any) -> int:
    return augment_key(seed)


def _epoch(epoch: Any) -> int:
    if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (numbers.Integral, np.integer)):
        raise TypeError(f"epoch must be an int, got epoch={epoch!r}")
    e = operator.index(epoch)
    if not 0 <= e < 1 << 32:
        raise ValueError(f"epoch must be in [0, 2**32), got epoch={e}")
    return e


def _indices(indices: Any, n: int) -> np.ndarray:
    if indices is None:
        return np.arange(n, dtype=np.uint64)
    not_masked(indices, "indices")
    idx = np.asarray(as_array(indices, "indices"))
    if idx.shape == (0,) and n == 0:  # [] is float64 to NumPy
        return np.zeros(0, np.uint64)
    if idx.dtype.kind not in "iu" or idx.dtype == np.bool_:
        raise TypeError(f"indices must hold integers, got dtype {idx.dtype}")
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
    if len(idx) != n:
        raise ValueError(f"indices has {len(idx)} entries but images has {n} samples")
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= 1 << 32):
        raise ValueError(f"indices must be in [0, 2**32), got values in [{int(idx.min())}, {int(idx.max())}]")
    return np.ascontiguousarray(idx, dtype=np.uint64)


def _images(images: Any) -> np.ndarray:
    not_masked(images, "images")
    x = as_array(images, "images")
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    if x.dtype not in (np.uint8, np.float32):
        raise TypeError(f"images must have dtype uint8 or float32, got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"images must be 4-D (N, H, W, C), got shape {x.shape}")
    if not 1 <= x.shape[3] <= 4:
        raise ValueError(
            f"images must be NHWC with 1 to 4 channels, got shape {x.shape}"
            + (" (an NCHW batch? pass images.transpose(0, 2, 3, 1))" if 1 <= x.shape[1] <= 4 else "")
        )
    return np.ascontiguousarray(x)


def _images_shape(images_shape: Any, layout: str = "NHWC", channels: bool = True) -> tuple[int, int, int, int]:
    """A batch's shape as 4 ints in ``layout`` order: N <= 2**32 (sample indices are below
    2**32), H and W <= 2**31 - 1, C in 1..4 (``channels``: as the pipeline takes images)."""
    what = f"the images' shape ({', '.join(layout)}), 4 ints"
    if isinstance(images_shape, (str, bytes, dict, set)) or not hasattr(images_shape, "__iter__"):
        raise TypeError(f"images_shape must be {what}, got images_shape={images_shape!r}")
    dims = list(images_shape)
    if len(dims) != 4:
        raise ValueError(f"images_shape must be {what}, got {len(dims)} entries: images_shape={images_shape!r}")
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (numbers.Integral, np.integer)):
            raise TypeError(f"images_shape must be {what}, got images_shape={images_shape!r}")
    dims = [operator.index(d) for d in dims]
    n, h, w, c = dims if layout == "NHWC" else (dims[0], dims[2], dims[3], dims[1])
    if min(dims) < 0:
        raise ValueError(f"images_shape must not hold negative sizes, got images_shape={images_shape!r}")
    if n > 1 << 32 or max(h, w) > _MAX_SIDE:
        raise ValueError(f"images_shape must have N <= 2**32 and H, W <= 2**31 - 1, got images_shape={images_shape!r}")
    if channels and not 1 <= c <= 4:
        raise ValueError(f"images_shape must have 1 to 4 channels (C), got images_shape={images_shape!r}")
    return n, h, w, c


def _count(n: Any, name: str = "n") -> int:
    """A sample count: an int in [0, 2**32]."""
    return _int_arg(n, name, 0, 1 << 32, "sample indices are below 2**32")


class Pipeline:
    """A list of ops applied to a batch in one fused pass: ``pipe(images, indices=, epoch=)``.

    Arguments:
        ops: the ops, in order: geometric ops (RandomCrop, RandomTranslate, HorizontalFlip,
            VerticalFlip, CenterCrop, at most one Resize or RandomResizedCrop) first, then
            pointwise ones (ColorJitter, the policies TrivialAugmentWide, RandAugment and
            AutoAugment, the single image ops, GaussianNoise, RandomErasing, Normalize; see the
            module docstring for their order).
        seed: an int, a ``numpy.random.SeedSequence``, or None (fresh entropy, drawn once here).
        layout: ``"NHWC"`` or ``"NCHW"``: the output's layout (the input is always NHWC).

    Calling it: ``pipe(images, *, indices=None, epoch=0, out=None)``. ``images``: (N, H, W, C)
    uint8 or float32, C in 1..4 (array-likes and DLPack tensors are read, non-contiguous ones
    copied once). ``indices``: the samples' dataset indices, N ints in [0, 2**32) (None: 0..N-1,
    positions in the batch, which makes the result depend on the batching). ``epoch``: an int in
    [0, 2**32). Returns Normalize's dtype (float32 or bfloat16) when the pipeline normalizes, else
    the images' dtype; ``out=`` must then be a C-contiguous writable array of exactly that dtype and shape
    (never a silent copy) that does not overlap ``images``.

    Raises TypeError/ValueError naming the argument: ``ops[i]``, ``seed``, ``layout``,
    ``images`` (dtype, rank, channels), ``indices``, ``epoch``, ``out``, and op arguments that do not
    fit the images (``size`` larger than the padded image, per-channel values of the wrong length);
    MemoryError when the output (its shape set by the ops' ``size``) cannot fit in the memory
    available. ``sample_params`` and ``output_shape`` name a malformed ``images_shape``.
    """

    def __init__(self, ops: Sequence[Op], seed: Any = None, layout: str = "NHWC") -> None:
        if isinstance(ops, Op) or not hasattr(ops, "__iter__"):
            raise TypeError(f"ops must be a list of regtune.augment ops, got {type(ops).__name__}")
        ops = list(ops)
        resampling, pointwise, normalized = 0, False, False
        fills = set()
        for i, op in enumerate(ops):
            if isinstance(op, (MixUp, CutMix)):
                raise TypeError(f"ops[{i}] is {type(op).__name__}, which mixes samples: call it on the pipeline's output")
            if not isinstance(op, Op):
                raise TypeError(f"ops[{i}] must be a regtune.augment op, got {type(op).__name__}")
            if op.geometric:
                if pointwise:
                    raise ValueError(f"ops[{i}] ({type(op).__name__}) is geometric: geometric ops come before pointwise ones")
                resampling += isinstance(op, (RandomResizedCrop, Resize))
                if resampling > 1:
                    raise ValueError(f"ops[{i}]: a pipeline may hold only one resampling op (Resize or RandomResizedCrop)")
                if op.fill is not None:
                    fills.add(op.fill)
            else:
                pointwise = True
                if normalized and (isinstance(op, (ColorJitter, Normalize, _PolicyOp)) or
                                   (isinstance(op, GaussianNoise) and op.clip)):
                    raise ValueError(f"ops[{i}] ({type(op).__name__}) must come before Normalize")
                normalized |= isinstance(op, Normalize)
        if len(fills) > 1:
            raise ValueError(f"the geometric ops of one pipeline must share one fill value, got {sorted(fills)}")
        if not one_of(layout, ("NHWC", "NCHW")):
            raise ValueError(f"layout must be 'NHWC' or 'NCHW', got layout={layout!r}")
        self.ops = ops
        self.layout = layout
        self.key = _derive_key(seed)
        self._fill = fills.pop() if fills else (0.0,)
        self._out_dtype = next((op.dtype for op in ops if isinstance(op, Normalize)), None)

    def __repr__(self) -> str:
        return f"Pipeline({self.ops!r}, layout={self.layout!r})"

    def output_shape(self, images_shape: Sequence[int]) -> tuple[int, ...]:
        """The output's shape for images of shape ``images_shape`` (N, H, W, C); a shape that is
        not 4 ints of a batch the pipeline takes is a TypeError/ValueError naming it."""
        n, h, w, c = _images_shape(images_shape)
        for op in self.ops:
            if op.geometric:
                h, w = op.out_hw((h, w))
        return (n, c, h, w) if self.layout == "NCHW" else (n, h, w, c)

    def output_dtype(self, images_dtype: Any) -> np.dtype:
        """Normalize's dtype (float32 or bfloat16) when the pipeline normalizes, else the images'."""
        if self._out_dtype is not None:
            return self._out_dtype
        return np.dtype(np.float32) if np.dtype(images_dtype) == np.float32 else np.dtype(np.uint8)

    def sample_params(self, images_shape: Sequence[int], *, indices: Any = None, epoch: Any = 0) -> list[dict]:
        """The per-sample parameters each op draws for a batch of this shape: one dict of arrays per
        op (crop offsets, flip flags, boxes, factors...). The same numbers the call uses.
        ``images_shape``: (N, H, W, C), 4 ints, as :meth:`output_shape`."""
        n, h, w, c = _images_shape(images_shape)
        params = self._params(n, (h, w), c, _indices(indices, n), _epoch(epoch))[0]
        return [{k: v for k, v in p.items() if not k.startswith("_")} for p in params]

    def _params(self, n: int, hw: tuple[int, int], c: int, idx: np.ndarray, epoch: int) -> tuple[list[dict], list]:
        out, sizes = [], []
        for k, op in enumerate(self.ops):
            words = (_core.augment_words(self.key, epoch, idx, k, op.nwords) if op.nwords
                     else np.zeros((n, 0), np.uint32))  # fmt: skip
            out.append(op.params(words, hw, c))
            sizes.append(hw)
            if op.geometric:
                hw = op.out_hw(hw)
        return out, sizes

    def __call__(self, images: Any, *, indices: Any = None, epoch: Any = 0, out: Any = None) -> np.ndarray:
        x = _images(images)
        n, H, W, C = x.shape
        idx = _indices(indices, n)
        ep = _epoch(epoch)
        shape, dtype = self.output_shape(x.shape), self.output_dtype(x.dtype)
        if out is None:
            sized = [f"ops[{k}] size={op.size}" for k, op in enumerate(self.ops)
                     if isinstance(op, (RandomCrop, RandomResizedCrop, Resize, CenterCrop))]
            check_fits(math.prod(shape) * dtype.itemsize, f"the output {shape} {dtype}" + (f" ({sized[-1]})" if sized else ""))
            out = np.empty(shape, dtype)
        else:
            out = check_inplace(out, "out")
            if out.dtype != dtype:
                raise TypeError(f"out must have dtype {dtype}, got {out.dtype}")
            if out.shape != shape:
                raise ValueError(f"out must have shape {shape}, got {out.shape}")
            if overlaps(out, x):
                raise ValueError("out overlaps images; augmentation cannot run in place")
        if n == 0:
            return out
        fill = _per_channel(self._fill, C, "fill").astype(np.float32)
        params, sizes = self._params(n, (H, W), C, idx, ep)
        rows, cols = _AxisMap.identity(n, H), _AxisMap.identity(n, W)
        bound = 255.0 if x.dtype == np.uint8 else 1.0
        steps = []
        for k, (op, prm, hw) in enumerate(zip(self.ops, params, sizes)):
            if op.geometric:
                r, c = op.maps(prm, hw)
                rows, cols = rows.then(r), cols.then(c)
            else:
                steps.append(op.step(prm, k, C, bound))
        bilinear = rows.bilinear

        def i32(a):
            return np.ascontiguousarray(a, np.int32)

        def f32(a):
            return None if a is None else np.ascontiguousarray(a, np.float32).reshape(n, -1)

        def tab(a):  # (n, P, out) tap tables as (n, P * out)
            return None if a is None else np.ascontiguousarray(a, np.int32).reshape(n, -1)

        if bilinear:
            _core.augment_run(
                x, out, self.layout == "NCHW", True, tab(rows.i0), tab(rows.i1), f32(rows.w0), f32(rows.w1),
                tab(cols.i0), tab(cols.i1), f32(cols.w0), f32(cols.w1), fill, steps, self.key, ep, idx,
                i32(rows.pairs), i32(cols.pairs),
            )  # fmt: skip
        else:
            _core.augment_run(
                x, out, self.layout == "NCHW", False, i32(rows.indices()), None, None, None, i32(cols.indices()),
                None, None, None, fill, steps, self.key, ep, idx,
            )  # fmt: skip
        return out


# ----------------------------------------------------------------------------- MixUp / CutMix

_MIX_POSITION = 1 << 29  # MixUp's and CutMix's word region: far from any pipeline op position
_GAMMA_TRIES = 8


def _open_uniform(words: np.ndarray) -> np.ndarray:
    """Uniform on (0, 1) (never 0 or 1): (word + 0.5) / 2**32."""
    return (words.astype(np.float64) + 0.5) / _TWO32


def _gamma_parts(words: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Gamma(a, 1) from 1 + 3 * _GAMMA_TRIES words per row, as ``(x, u)``: x ~ Gamma(b) by
    Marsaglia and Tsang's method (2000), b = a + 1 for a < 1 and a otherwise, with its tries
    drawn up front (the first accepted one is used; all 8 fail with probability < 1e-10, and then
    x = d, the mode); for a < 1 the draw is boosted by U ** (1 / a) (their section 7) and ``u``
    is that U (word 0), else None. x is a positive normal float for every a (it is near d = b - 1/3
    >= 2/3, or d itself once 9 d overflows); the boost is left to the caller, which may need it
    in log space (U ** (1 / a) underflows to 0 for small a)."""
    b = a + 1.0 if a < 1.0 else a
    d = b - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)  # 0 once 9 d overflows (a > 2e307): then x = d
    x = np.full(len(words), d)
    done = np.zeros(len(words), bool)
    for t in range(_GAMMA_TRIES):
        u1, u2, u3 = (_open_uniform(words[:, 1 + 3 * t + k]) for k in range(3))
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
        v = (1.0 + c * z) ** 3
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (v > 0) & (np.log(u3) < 0.5 * z * z + d - d * v + d * np.log(np.where(v > 0, v, 1.0)))
        take = ok & ~done
        x = np.where(take, d * v, x)
        done |= ok
    return x, (_open_uniform(words[:, 0]) if a < 1.0 else None)


def _beta(words: np.ndarray, alpha: float) -> np.ndarray:
    """Beta(alpha, alpha) as X / (X + Y) with X, Y ~ Gamma(alpha): 2 * (1 + 3 * 8) words per row,
    for every alpha > 0, always in [0, 1].

    Where both gammas are normal floats whose sum is finite, ``X / (X + Y)`` (X = x * U ** (1 /
    alpha) for alpha < 1), the draws regtune has always made. Elsewhere (rows where U ** (1 /
    alpha) underflows, which starts below alpha = 0.032 for the smallest U and takes about 5% of
    the rows at 0.002, where 0 / 0 gave NaN; alpha above about 1e307, where X + Y overflows) the
    same X and Y in log space: ``lam = 1 / (1 + exp(-t))`` with
    ``t = log X - log Y = log x1 - log x2 + (log U1 - log U2) / alpha``, which is exact to
    rounding where lam is representable and 0 or 1 where it is not (as Beta(alpha, alpha) with a
    tiny alpha is all but a fair coin on {0, 1})."""
    half = 1 + 3 * _GAMMA_TRIES
    x1, u1 = _gamma_parts(words[:, :half], alpha)
    x2, u2 = _gamma_parts(words[:, half:2 * half], alpha)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        if u1 is None:
            g1, g2 = x1, x2
        else:
            g1, g2 = x1 * u1 ** (1.0 / alpha), x2 * u2 ** (1.0 / alpha)
        total = g1 + g2
        lam = g1 / total
        tiny = np.finfo(np.float64).tiny
        rest = ~((g1 >= tiny) & (g2 >= tiny) & np.isfinite(total))
        if rest.any():
            t = np.log(x1[rest]) - np.log(x2[rest])
            if u1 is not None:
                t = t + (np.log(u1[rest]) - np.log(u2[rest])) / alpha  # +-inf where it overflows: lam 0 or 1
            e = np.exp(-np.abs(t))
            lam[rest] = np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return np.clip(lam, 0.0, 1.0)


def _lam32(lam: np.ndarray) -> np.ndarray:
    """The lambdas as float32 (a lambda below float32's range becomes 0 without a warning)."""
    with np.errstate(under="ignore"):
        return lam.astype(np.float32)


def _mix_labels(lam: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """``ly * soft + (1 - ly) * soft of the partner``, ``ly = float32(lam)``, with two arrays of
    soft's size besides it (the same float32 operations as that expression)."""
    ly = _lam32(lam)[:, None]
    with np.errstate(under="ignore"):
        out = ly * soft
        other = np.roll(soft, 1, axis=0)
        other *= np.float32(1) - ly
        out += other
    return out


class _Mix:
    """Shared by MixUp and CutMix: each sample i is mixed with the sample before it in the batch
    (i - 1, the first with the last: torchvision's ``batch.roll(1, 0)``), with its own
    lambda ~ Beta(alpha, alpha) drawn from ``(seed, epoch, indices[i])``. ``alpha``: any finite
    float > 0; every lambda is in [0, 1] (a tiny alpha gives lambdas at or next to 0 and 1, a
    huge one lambdas next to 1/2; see ``_beta`` for the arithmetic). The pairing depends on the
    batch (it must: the partner is another sample of it); each sample's lambda does not.

    The images are mixed by one native call (``_core.augment_mix``), threaded across samples with
    the GIL released; uint8 images are read as they are (no float32 copy of the batch first).
    ``out=``: a float32, C-contiguous, writable array of the images' shape, filled and returned; it
    must not overlap ``images`` (each sample reads its partner, so the mix cannot run in place).
    Without it a new float32 array is returned. Raises TypeError/ValueError naming ``images``,
    ``labels``, ``indices``, ``epoch`` or ``out``."""

    _position = _MIX_POSITION
    nwords = 2 * (1 + 3 * _GAMMA_TRIES)

    def __init__(self, alpha: Any = 1.0, *, num_classes: Any, seed: Any = None, layout: str = "NHWC") -> None:
        self.alpha = hyperparameter(alpha, "alpha", low=0.0, low_open=True)
        # a NumPy dimension (the soft labels' second); what fits in memory is checked per call
        self.num_classes = _int_arg(num_classes, "num_classes", 1, 2**63 - 1, "the soft labels' width is a NumPy dimension")
        if not one_of(layout, ("NHWC", "NCHW")):
            raise ValueError(f"layout must be 'NHWC' or 'NCHW', got layout={layout!r}")
        self.layout = layout
        self.key = _derive_key(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha!r}, num_classes={self.num_classes!r}, layout={self.layout!r})"

    def _inputs(self, images: Any, labels: Any, indices: Any, epoch: Any) -> tuple:
        not_masked(images, "images")
        x = as_array(images, "images")
        x = x if isinstance(x, np.ndarray) else np.asarray(x)
        if x.dtype not in (np.uint8, np.float32):
            raise TypeError(f"images must have dtype uint8 or float32, got {x.dtype}")
        if x.ndim != 4:
            raise ValueError(f"images must be 4-D ({', '.join(self.layout)}), got shape {x.shape}")
        n = x.shape[0]
        # The soft labels, their mix and the partner's: three (n, num_classes) float32 arrays.
        check_fits(3 * 4 * n * self.num_classes,
                   f"the soft labels of {n} samples with num_classes={self.num_classes}")  # fmt: skip
        y = np.asarray(as_array(labels, "labels"))
        if y.ndim == 1 and y.dtype.kind in "iu" and y.dtype != np.bool_:
            if len(y) != n:
                raise ValueError(f"labels has {len(y)} entries but images has {n} samples")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"labels must be in [0, num_classes={self.num_classes})")
            soft = np.zeros((n, self.num_classes), np.float32)
            soft[np.arange(n), y] = 1.0
        elif y.ndim == 2 and y.dtype in (np.float32, np.float64):
            if y.shape != (n, self.num_classes):
                raise ValueError(f"labels must have shape ({n}, {self.num_classes}), got {y.shape}")
            soft = y.astype(np.float32)
        else:
            raise TypeError(f"labels must be class indices (N,) of ints or soft labels (N, num_classes), "
                            f"got dtype {y.dtype} shape {y.shape}")  # fmt: skip
        idx = _indices(indices, n)
        words = _core.augment_words(self.key, _epoch(epoch), idx, self._position, self.nwords) if n else None
        return np.ascontiguousarray(x), soft, words

    @staticmethod
    def _out(out: Any, x: np.ndarray) -> np.ndarray:
        """The float32 array the mix fills: ``out`` checked as Pipeline checks its own, or a new one."""
        if out is None:
            return np.empty(x.shape, np.float32)
        out = check_inplace(out, "out")
        if out.dtype != np.float32:
            raise TypeError(f"out must have dtype float32, got {out.dtype}")
        if out.shape != x.shape:
            raise ValueError(f"out must have shape {x.shape}, got {out.shape}")
        if overlaps(out, x):
            raise ValueError(
                "out overlaps images; MixUp and CutMix read each sample's partner, so they cannot run in place")
        return out

    def lambdas(self, n: int, *, indices: Any = None, epoch: Any = 0) -> np.ndarray:
        """The samples' lambdas ~ Beta(alpha, alpha) (before CutMix's adjustment to its box) of
        ``n`` samples (an int in [0, 2**32])."""
        n = _count(n)
        idx = _indices(indices, n)
        if n == 0:
            return np.zeros(0)
        return _beta(_core.augment_words(self.key, _epoch(epoch), idx, self._position, self.nwords), self.alpha)


class MixUp(_Mix):
    """MixUp (Zhang et al. 2018): ``x_i' = lam_i x_i + (1 - lam_i) x_{i-1}`` and the same for the
    one-hot (or soft) labels, lam_i ~ Beta(alpha, alpha) per sample (see _Mix); float32 out.

    ``mix(images, labels, *, indices=None, epoch=0, out=None) -> (images, soft_labels)``; images of
    any layout (``layout`` only matters to CutMix), uint8 or float32. The images are computed in
    float32 with ``lx = float32(lam)``: bit for bit NumPy's
    ``lx * x + (float32(1) - lx) * np.roll(x, 1, axis=0)`` (``x`` the images as float32), on every
    thread count and SIMD path. ``out=``: a float32, C-contiguous, writable array of the images'
    shape that does not overlap them, filled and returned (anything else raises TypeError or
    ValueError naming ``out``); without it a new array. Example::

        >>> import numpy as np
        >>> from regtune import augment as A
        >>> x = np.zeros((4, 8, 8, 3), np.uint8)
        >>> mixed, soft = A.MixUp(0.4, num_classes=10, seed=0)(x, np.arange(4), indices=np.arange(4))
        >>> mixed.dtype, mixed.shape, soft.shape
        (dtype('float32'), (4, 8, 8, 3), (4, 10))
    """

    def __call__(self, images: Any, labels: Any, *, indices: Any = None, epoch: Any = 0,
                 out: Any = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        x, soft, words = self._inputs(images, labels, indices, epoch)
        out = self._out(out, x)
        if words is None:
            return out, soft
        lam = _beta(words, self.alpha)
        _core.augment_mix(x, out, _lam32(lam), None, False)
        return out, _mix_labels(lam, soft)


class CutMix(_Mix):
    """CutMix (Yun et al. 2019), torchvision's box: with lam ~ Beta(alpha, alpha) per sample,
    a centre ``(cy, cx)`` uniform over the pixels (``(word * H) >> 32``, ...), half sizes
    ``int(0.5 * sqrt(1 - lam) * H)`` and ``... * W``, clipped to the image; the box is pasted from
    sample i - 1, and the labels mix with ``lam' = 1 - box area / (H W)``. float32 out: the images
    as float32 with box ``(y1, y2, x1, x2)`` of sample i (rows ``y1:y2``, columns ``x1:x2``, every
    channel) taken from sample i - 1, exactly. ``mix(images, labels, *, indices=None, epoch=0,
    out=None) -> (images, soft_labels)``; ``out=`` as for MixUp."""

    _position = _MIX_POSITION + 1
    nwords = _Mix.nwords + 2

    def __call__(self, images: Any, labels: Any, *, indices: Any = None, epoch: Any = 0,
                 out: Any = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        x, soft, words = self._inputs(images, labels, indices, epoch)
        out = self._out(out, x)
        if words is None:
            return out, soft
        boxes, lam = self._boxes(words, x.shape)
        _core.augment_mix(x, out, None, np.ascontiguousarray(boxes, np.int32), self.layout == "NCHW")
        return out, _mix_labels(lam, soft)

    def _boxes(self, words: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        H, W = (shape[1], shape[2]) if self.layout == "NHWC" else (shape[2], shape[3])
        lam = _beta(words, self.alpha)
        cy, cx = _below(words[:, -2], H), _below(words[:, -1], W)
        r = 0.5 * np.sqrt(1.0 - lam)
        rh, rw = (r * H).astype(np.int64), (r * W).astype(np.int64)
        y1, y2 = np.maximum(cy - rh, 0), np.minimum(cy + rh, H)
        x1, x2 = np.maximum(cx - rw, 0), np.minimum(cx + rw, W)
        pasted = (y2 - y1) * (x2 - x1) / (H * W) if H * W else np.zeros(len(lam))  # images without pixels: nothing pasted
        return np.stack([y1, y2, x1, x2], axis=1), 1.0 - pasted

    def boxes(self, images_shape: Sequence[int], *, indices: Any = None, epoch: Any = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes, lam)``: per sample ``(y1, y2, x1, x2)`` and the adjusted lambda the call uses,
        for images of shape ``images_shape`` (4 ints in this CutMix's layout)."""
        shape = _images_shape(images_shape, self.layout, channels=False)
        shape = shape if self.layout == "NHWC" else (shape[0], shape[3], shape[1], shape[2])
        n = shape[0]
        idx = _indices(indices, n)
        if n == 0:
            return np.zeros((0, 4), np.int64), np.zeros(0)
        words = _core.augment_words(self.key, _epoch(epoch), idx, self._position, self.nwords)
        return self._boxes(words, shape)
