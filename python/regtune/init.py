"""Weight initializers with torch.nn.init names and formulas, NumPy-style signatures.

Every initializer takes a ``shape`` (or an ``out=`` array to fill in place) instead of a
tensor, and draws from the counter-based streams of :mod:`regtune.random`, so ``seed=`` and
``offset=`` mean what they mean there: element ``i`` (C order) of the result is element
``offset + i`` of the stream of ``seed``. The dtype follows NumPy's ``out=`` rule: float32 by
default, ``out.dtype`` when ``out`` is given, and an explicit ``dtype`` must equal it.

Every initializer also fills bfloat16 (``ml_dtypes.bfloat16``) and float16 arrays: the result is
the float32 result rounded to nearest even (the random draws are float32 draws rounded, see
:mod:`regtune.random`; :func:`orthogonal` rounds its float32 result once), so a 16-bit weight
equals the float32 weight of the same seed cast to the 16-bit dtype, bit for bit. The checks
that a scale's draws fit (or do not round to 0) use the 16-bit dtype's own range: float16's
largest value is 65504.

Fans follow ``torch.nn.init._calculate_fan_in_and_fan_out`` (see :func:`calculate_fans`);
gains follow ``torch.nn.init.calculate_gain``. :func:`variance_scaling` and the ``lecun_*``
initializers follow Keras/JAX/Flax.

Zero-element shapes: torch returns such tensors untouched (``kaiming_*`` warns, ``orthogonal_``
is silent). regtune returns the empty array without a warning, after checking every argument
as usual; a shape with fewer than 2 dimensions is still an error for the fan-based
initializers, empty or not.

Aliases: ``glorot_uniform``/``glorot_normal`` are :func:`xavier_uniform`/:func:`xavier_normal`
and ``he_uniform``/``he_normal`` are :func:`kaiming_uniform`/:func:`kaiming_normal`, the same
functions with torch's semantics (torch's fan layout and ``kaiming``'s default
``nonlinearity="leaky_relu"``), not Keras's.

Each fan-based initializer computes its distribution parameters in one small helper and then
makes a single call to :func:`_draw`, the only place that calls the samplers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal, Union

import numpy as np
from numpy.typing import DTypeLike

from . import _core
from . import random as _random
from .random import _FMAX, _TIGHT, _Z_MAX, SeedLike, _output, _shape, _uniform_bounds
from ._validation import LOW_DTYPES as _LOW_DTYPES
from ._validation import finite_float, positive_float

__all__ = [
    "calculate_gain",
    "calculate_fans",
    "uniform",
    "normal",
    "trunc_normal",
    "constant",
    "zeros",
    "ones",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "variance_scaling",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
]

ShapeLike = Union[int, Sequence[int]]
FanMode = Literal["fan_in", "fan_out"]
Distribution = Literal["truncated_normal", "normal", "uniform"]

_LINEAR_GAIN_NAMES = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
_NONLINEARITIES = _LINEAR_GAIN_NAMES + ("tanh", "relu", "leaky_relu", "selu")
_FAN_MODES = ("fan_in", "fan_out")
_VS_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

#: Standard deviation of a standard normal truncated to [-2, 2]; dividing by it makes the
#: truncated draw of :func:`variance_scaling` have the requested variance (as Keras and JAX).
_TRUNC_NORMAL_STD_2 = 0.87962566103423978


# --------------------------------------------------------------------------- fans and gains


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    r"""The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    ================= ===================================================
    nonlinearity      gain
    ================= ===================================================
    linear / conv*d   :math:`1`
    conv_transpose*d  :math:`1`
    sigmoid           :math:`1`
    tanh              :math:`5/3`
    relu              :math:`\sqrt{2}`
    leaky_relu        :math:`\sqrt{2 / (1 + \text{negative\_slope}^2)}`
    selu              :math:`3/4`
    ================= ===================================================

    Args:
        nonlinearity: the name of the nonlinearity (one of the table above).
        param: the negative slope of ``leaky_relu`` (default 0.01); ignored otherwise.

    Returns:
        The gain as a float.

    Raises:
        TypeError: a ``nonlinearity`` that is not a string, or a ``param`` for ``leaky_relu``
            that is not a real number (torch raises ValueError there).
        ValueError: unknown ``nonlinearity`` (the message lists the valid names), or a
            non-finite ``param`` for ``leaky_relu``.

    Example:
        >>> calculate_gain("leaky_relu", 0.2)  # doctest: +ELLIPSIS
        1.3867...
    """
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity must be a string, got {type(nonlinearity).__name__} {nonlinearity!r}")
    if nonlinearity in _LINEAR_GAIN_NAMES:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        # torch's check: a real number but not a bool; we also refuse inf/nan, which
        # would give a zero or nan gain.
        negative_slope = 0.01 if param is None else finite_float(param, "param (the negative slope of leaky_relu)")
        if abs(negative_slope) > 1e150:  # 1 + slope**2 would overflow; it is slope**2 exactly
            return math.sqrt(2.0) / abs(negative_slope)
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "selu":
        # Found empirically (https://github.com/pytorch/pytorch/pull/50664).
        return 3.0 / 4
    raise ValueError(
        f"Unsupported nonlinearity {nonlinearity!r}; expected one of {_NONLINEARITIES}"
    )


def calculate_fans(shape: ShapeLike) -> tuple[int, int]:
    r"""``(fan_in, fan_out)`` of a weight of ``shape``, as torch computes them.

    .. math::
        \text{receptive} = \prod_{k \ge 2} \text{shape}[k],\quad
        \text{fan\_in} = \text{shape}[1] \cdot \text{receptive},\quad
        \text{fan\_out} = \text{shape}[0] \cdot \text{receptive}

    This is torch's layout: ``(out_features, in_features)`` for a linear weight and
    ``(out_channels, in_channels, *kernel)`` for a convolution.

    Args:
        shape: an int or a sequence of non-negative ints with at least 2 entries.

    Returns:
        ``(fan_in, fan_out)``; either may be 0 for a zero-element shape.

    Raises:
        TypeError: ``shape`` is not an int or a sequence of ints.
        ValueError: ``shape`` has fewer than 2 dimensions, or a negative one.

    Example:
        >>> calculate_fans((64, 3, 7, 7))
        (147, 3136)
    """
    dims = _shape(shape)
    if len(dims) < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for shape with fewer than 2 dimensions, "
            f"got shape {dims}"
        )
    receptive = math.prod(dims[2:])
    return dims[1] * receptive, dims[0] * receptive


def _fans(arr: np.ndarray) -> tuple[int, int]:
    """Fans of the array to fill; for a zero-element array, fans of 0 are read as 1.

    Nothing is drawn into an empty array, but its parameters are still computed and passed
    to the sampler (which checks seed and offset), so they must be finite.
    """
    fan_in, fan_out = calculate_fans(arr.shape)
    if arr.size == 0:
        return max(fan_in, 1), max(fan_out, 1)
    return fan_in, fan_out


def _choice(value: object, name: str, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {valid}, got {type(value).__name__} {value!r}")
    if value not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")
    return value


def _fan_for_mode(arr: np.ndarray, mode: str, valid: tuple[str, ...]) -> float:
    _choice(mode, "mode", valid)
    fan_in, fan_out = _fans(arr)
    if mode == "fan_in":
        return float(fan_in)
    if mode == "fan_out":
        return float(fan_out)
    return (fan_in + fan_out) / 2.0


# --------------------------------------------------------------------------- the one draw


def _draw(
    arr: np.ndarray,
    distribution: str,
    scale: float,
    seed: SeedLike,
    offset: int,
    blame: str,
) -> np.ndarray:
    """Fill ``arr`` with a zero-mean draw of ``distribution`` and return it.

    ``"uniform"``: U(-scale, scale); ``"normal"``: N(0, scale^2); ``"truncated_normal"``:
    N(0, scale^2) truncated to [-2 scale, 2 scale]. ``blame`` names the user's argument
    that ``scale`` comes from (``"gain=1e+300"``) for the message of :func:`_check_scale`.
    """
    _check_scale(scale, distribution, arr.dtype, blame)
    sampler, args = _sampler_args(distribution, scale)
    return getattr(_random, sampler)(None, *args, dtype=arr.dtype, seed=seed, offset=offset, out=arr)


def _check_scale(scale: float, distribution: str, dt: np.dtype, blame: str) -> None:
    """Refuse a derived ``scale`` whose draw cannot be represented in ``dt``, naming the user's
    argument (``blame``) rather than the sampler's internal ``low``/``std``: too large, the
    draws would overflow (uniform: the width 2 * bound; normal: 8.57 std in float64, 6.66 in
    float32; truncated normal: the cut-off 2 std); too small, it rounds to 0 in ``dt`` (a
    bound: U(-0, 0) is empty; a std: every value would be 0, as ``kaiming_normal(a=1e200)``
    in float32 was). A std that is subnormal but not 0 in ``dt`` is drawn, correctly rounded."""
    what = "bound" if distribution == "uniform" else "std"
    reach = _Z_MAX[dt] if distribution == "normal" else 2.0
    if not scale * reach <= _FMAX[dt] * _TIGHT:
        raise ValueError(
            f"{blame} makes the {distribution} draw's {what} {scale:.6g}, too large for {dt}: "
            f"its values would overflow (the largest {dt} is {_FMAX[dt]:.6g})"
        )
    if not scale > 0.0 or not dt.type(scale) > 0:
        raise ValueError(
            f"{blame} makes the {distribution} draw's {what} {scale!r}, which rounds to 0 in {dt}: "
            "every value would be 0"
        )


def _check_tiny(value: object, name: str, dt: np.dtype, what: str) -> None:
    """Refuse a real, finite, non-zero ``value`` (a std or a gain the user gave) that rounds to
    0 in ``dt``, naming it; other values are left to the caller's own checks."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        return
    v = float(value)
    if 0.0 < abs(v) < 1.0 and not abs(dt.type(v)) > 0:  # (a value >= 1 cannot round to 0)
        raise ValueError(f"{name}={value!r} rounds to 0 in {dt}: {what}")


def _sampler_args(distribution: str, scale: float) -> tuple[str, tuple[float, ...]]:
    """The :mod:`regtune.random` sampler and its positional arguments for :func:`_draw`
    (shared with :mod:`regtune.dask.init`, which draws the same values chunk by chunk)."""
    if distribution == "uniform":
        return "uniform", (-scale, scale)
    if distribution == "normal":
        return "normal", (0.0, scale)
    return "truncated_normal", (0.0, scale, -2.0 * scale, 2.0 * scale)


# --------------------------------------------------------------------------- plain draws


def uniform(
    shape: ShapeLike | None = None,
    a: float = 0.0,
    b: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Values drawn from :math:`\mathcal{U}(a, b)`, as ``torch.nn.init.uniform_``.

    Values lie in :math:`[a, b)`.

    Args:
        shape: the shape of the result; may be None when ``out`` is given.
        a: the lower bound.
        b: the upper bound, ``b > a``.
        dtype: float32, float64, bfloat16 (``ml_dtypes.bfloat16``) or float16. By default
            (None) float32, or ``out.dtype`` when ``out`` is given, as NumPy does; an explicit
            ``dtype`` must equal ``out.dtype``. A 16-bit result is the float32 draw rounded to
            nearest even (so it may equal ``b``).
        seed: None (fresh entropy), an int in [0, 2**64), a ``numpy.random.SeedSequence`` or
            a ``regtune.Generator`` (whose counter advances).
        offset: index of the first element in the counter-based stream of ``seed``.
        out: a C-contiguous writable float32, float64, bfloat16 or float16 array to fill in
            place.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type, or a ``dtype`` that
            differs from ``out.dtype``.
        ValueError: ``a >= b`` (after rounding to ``dtype``), a non-finite bound, a negative
            ``offset``, or an ``out`` that is not C-contiguous, writable and of ``shape``.

    Example:
        >>> w = uniform((3, 5), -0.1, 0.1, seed=0)
    """
    a = finite_float(a, "a")
    b = finite_float(b, "b")
    arr = _output(shape, dtype, out)
    # Compared in the output dtype: bounds that round to the same float32 leave no interval.
    a, b = _uniform_bounds(a, b, arr.dtype, ("a", "b"))
    return _random.uniform(None, a, b, dtype=arr.dtype, seed=seed, offset=offset, out=arr)


def normal(
    shape: ShapeLike | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Values drawn from :math:`\mathcal{N}(\text{mean}, \text{std}^2)`, as ``normal_``.

    Args:
        shape: the shape of the result; may be None when ``out`` is given.
        mean: the mean.
        std: the standard deviation, ``std > 0``.
        dtype, seed, offset, out: as in :func:`uniform`.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type.
        ValueError: ``std <= 0`` or one that rounds to 0 in ``dtype`` (every value would
            be the mean), a non-finite ``mean``, a negative ``offset``, or a bad ``out``.

    Example:
        >>> w = normal((3, 5), 0.0, 0.02, seed=0)
    """
    arr = _output(shape, dtype, out)
    _check_tiny(std, "std", arr.dtype, "every value would be the mean")
    return _random.normal(None, mean, std, dtype=arr.dtype, seed=seed, offset=offset, out=arr)


def trunc_normal(
    shape: ShapeLike | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Values drawn from :math:`\mathcal{N}(\text{mean}, \text{std}^2)` truncated to
    :math:`[a, b]`, as ``torch.nn.init.trunc_normal_``.

    ``a`` and ``b`` are absolute cut-offs, not multiples of ``std`` (torch's convention; the
    default [-2, 2] is two standard deviations only when ``mean=0, std=1``).

    Args:
        shape: the shape of the result; may be None when ``out`` is given.
        mean: the mean of the untruncated normal.
        std: its standard deviation, ``std > 0``.
        a: the lower cut-off.
        b: the upper cut-off, ``b > a``.
        dtype, seed, offset, out: as in :func:`uniform`.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type.
        ValueError: ``std <= 0`` or one that rounds to 0 in ``dtype``, ``a >= b``, a
            negative ``offset``, or a bad ``out``.

    Example:
        >>> w = trunc_normal((3, 5), std=0.02, a=-0.04, b=0.04, seed=0)
    """
    arr = _output(shape, dtype, out)
    _check_tiny(std, "std", arr.dtype, "every value would be the mean, or a cut-off")
    return _random.truncated_normal(
        None, mean, std, a, b, dtype=arr.dtype, seed=seed, offset=offset, out=arr
    )


def constant(
    shape: ShapeLike | None = None,
    val: float | None = None,
    *,
    dtype: DTypeLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """An array filled with ``val``, as ``torch.nn.init.constant_``.

    Args:
        shape: the shape of the result; may be None when ``out`` is given.
        val: the value (required; a finite real number). For bfloat16 and float16 it is
            rounded to float32 and then to the dtype (nearest even both times), so the result
            equals ``constant(shape, val, dtype=np.float32).astype(dtype)``.
        dtype: float32, float64, bfloat16 (``ml_dtypes.bfloat16``) or float16. By default
            (None) float32, or ``out.dtype`` when ``out`` is given, as NumPy does; an explicit
            ``dtype`` must equal ``out.dtype``.
        out: a C-contiguous writable array of one of those dtypes to fill in place.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: ``val`` missing or not a real number, or a bad ``dtype``/``shape``/``out``.
        ValueError: a non-finite ``val`` or a bad ``out``.

    Example:
        >>> constant((2, 2), 0.5)
        array([[0.5, 0.5],
               [0.5, 0.5]], dtype=float32)
    """
    if val is None:
        raise TypeError("constant() missing required argument 'val'")
    val = finite_float(val, "val")
    arr = _output(shape, dtype, out)
    if abs(val) > _FMAX[arr.dtype]:
        raise ValueError(f"val = {val!r} does not fit in {arr.dtype}")
    # Threaded; rounds val to the dtype as arr.fill would (16-bit: to float32 first, as
    # ml_dtypes does and as every 16-bit initializer rounds its float32 result).
    _core.fill(arr, val)
    return arr


def zeros(
    shape: ShapeLike | None = None,
    *,
    dtype: DTypeLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """An array of zeros, as ``torch.nn.init.zeros_``; ``constant(shape, 0.0)``.

    Args, Returns, Raises: as :func:`constant` without ``val``.

    Example:
        >>> zeros(3)
        array([0., 0., 0.], dtype=float32)
    """
    return constant(shape, 0.0, dtype=dtype, out=out)


def ones(
    shape: ShapeLike | None = None,
    *,
    dtype: DTypeLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """An array of ones, as ``torch.nn.init.ones_``; ``constant(shape, 1.0)``.

    Args, Returns, Raises: as :func:`constant` without ``val``.

    Example:
        >>> ones(3)
        array([1., 1., 1.], dtype=float32)
    """
    return constant(shape, 1.0, dtype=dtype, out=out)


# --------------------------------------------------------------------------- fan-based


def _xavier_std(arr: np.ndarray, gain: float) -> float:
    gain = positive_float(gain, "gain")
    fan_in, fan_out = _fans(arr)
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform(
    shape: ShapeLike | None = None,
    gain: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Glorot/Xavier uniform, as ``torch.nn.init.xavier_uniform_``.

    Values are drawn from :math:`\mathcal{U}(-b, b)` with

    .. math::
        b = \text{gain} \times \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    (computed as torch does: :math:`\sqrt{3}` times the std of :func:`xavier_normal`).
    Fans as in :func:`calculate_fans`.

    Args:
        shape: the shape of the result (at least 2 dimensions); may be None when ``out`` is
            given.
        gain: a scaling factor, ``gain > 0``, e.g. ``calculate_gain("relu")``.
        dtype, seed, offset, out: as in :func:`uniform`.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type.
        ValueError: fewer than 2 dimensions, ``gain <= 0``, a ``gain`` whose draws would
            overflow ``dtype`` or whose std (bound) rounds to 0 in it, a negative ``offset``,
            or a bad ``out``.
        MemoryError: a ``shape`` too large to allocate.

    Example:
        >>> w = xavier_uniform((256, 128), gain=calculate_gain("tanh"), seed=0)
    """
    arr = _output(shape, dtype, out)
    return _draw(arr, "uniform", math.sqrt(3.0) * _xavier_std(arr, gain), seed, offset, f"gain={gain!r}")


def xavier_normal(
    shape: ShapeLike | None = None,
    gain: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Glorot/Xavier normal, as ``torch.nn.init.xavier_normal_``.

    Values are drawn from :math:`\mathcal{N}(0, \text{std}^2)` with

    .. math::
        \text{std} = \text{gain} \times \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Args, Returns, Raises: as :func:`xavier_uniform`.

    Example:
        >>> w = xavier_normal((256, 128), seed=0)
    """
    arr = _output(shape, dtype, out)
    return _draw(arr, "normal", _xavier_std(arr, gain), seed, offset, f"gain={gain!r}")


def _kaiming_std(arr: np.ndarray, a: float, mode: str, nonlinearity: str) -> float:
    a = finite_float(a, "a")  # named as the user passed it (calculate_gain would say param)
    fan = _fan_for_mode(arr, mode, _FAN_MODES)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform(
    shape: ShapeLike | None = None,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""He/Kaiming uniform, as ``torch.nn.init.kaiming_uniform_``.

    Values are drawn from :math:`\mathcal{U}(-\text{bound}, \text{bound})` with

    .. math::
        \text{bound} = \text{gain} \times \sqrt{\frac{3}{\text{fan\_mode}}},\quad
        \text{gain} = \text{calculate\_gain}(\text{nonlinearity}, a)

    Args:
        shape: the shape of the result (at least 2 dimensions); may be None when ``out`` is
            given.
        a: the negative slope of the rectifier after this layer (only used with
            ``"leaky_relu"``).
        mode: ``"fan_in"`` (default; preserves the variance of the forward pass) or
            ``"fan_out"`` (of the backward pass).
        nonlinearity: a name accepted by :func:`calculate_gain`; torch's default
            ``"leaky_relu"``, use ``"relu"`` for ReLU.
        dtype, seed, offset, out: as in :func:`uniform`.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type.
        ValueError: fewer than 2 dimensions, an unknown ``mode`` or ``nonlinearity``, a
            non-finite ``a`` or one so large that the gain makes the bound (the std of
            :func:`kaiming_normal`) round to 0 in ``dtype`` (``a=1e200`` in float32: every
            value would be 0), a negative ``offset``, or a bad ``out``.
        MemoryError: a ``shape`` too large to allocate.

    Example:
        >>> w = kaiming_uniform((64, 3, 3, 3), nonlinearity="relu", seed=0)
    """
    arr = _output(shape, dtype, out)
    std = _kaiming_std(arr, a, mode, nonlinearity)
    return _draw(arr, "uniform", math.sqrt(3.0) * std, seed, offset, f"a={a!r}")


def kaiming_normal(
    shape: ShapeLike | None = None,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""He/Kaiming normal, as ``torch.nn.init.kaiming_normal_``.

    Values are drawn from :math:`\mathcal{N}(0, \text{std}^2)` with

    .. math::
        \text{std} = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}},\quad
        \text{gain} = \text{calculate\_gain}(\text{nonlinearity}, a)

    Args, Returns, Raises: as :func:`kaiming_uniform`.

    Example:
        >>> w = kaiming_normal((512, 256), mode="fan_out", nonlinearity="relu", seed=0)
    """
    arr = _output(shape, dtype, out)
    return _draw(arr, "normal", _kaiming_std(arr, a, mode, nonlinearity), seed, offset, f"a={a!r}")


def _lecun_scale(arr: np.ndarray, distribution: str) -> float:
    """U(-b, b) bound (``"uniform"``) or N(0, std^2) std (``"normal"``) of variance 1/fan_in."""
    fan_in, _ = _fans(arr)
    return math.sqrt(3.0 / fan_in) if distribution == "uniform" else 1.0 / math.sqrt(fan_in)


def lecun_uniform(
    shape: ShapeLike | None = None,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""LeCun uniform, as Keras/JAX ``lecun_uniform``.

    Values are drawn from :math:`\mathcal{U}(-b, b)`, :math:`b = \sqrt{3 / \text{fan\_in}}`
    (variance :math:`1/\text{fan\_in}`); the same as
    ``variance_scaling(shape, 1.0, "fan_in", "uniform")``.

    Args:
        shape: the shape of the result (at least 2 dimensions); may be None when ``out`` is
            given.
        dtype, seed, offset, out: as in :func:`uniform`.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type.
        ValueError: fewer than 2 dimensions, a negative ``offset``, or a bad ``out``.

    Example:
        >>> w = lecun_uniform((128, 64), seed=0)
    """
    arr = _output(shape, dtype, out)
    return _draw(arr, "uniform", _lecun_scale(arr, "uniform"), seed, offset, f"shape {arr.shape}")


def lecun_normal(
    shape: ShapeLike | None = None,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""LeCun normal: :math:`\mathcal{N}(0, 1/\text{fan\_in})`, a plain (untruncated) normal.

    Keras and JAX define ``lecun_normal`` as a *truncated* normal of variance
    :math:`1/\text{fan\_in}`; that form is
    ``variance_scaling(shape, 1.0, "fan_in", "truncated_normal")``.

    Args, Returns, Raises: as :func:`lecun_uniform`.

    Example:
        >>> w = lecun_normal((128, 64), seed=0)
    """
    arr = _output(shape, dtype, out)
    return _draw(arr, "normal", _lecun_scale(arr, "normal"), seed, offset, f"shape {arr.shape}")


def _variance_scaling_scale(arr: np.ndarray, scale: float, mode: str, distribution: str) -> float:
    scale = positive_float(scale, "scale")
    _choice(distribution, "distribution", _DISTRIBUTIONS)
    variance = scale / _fan_for_mode(arr, mode, _VS_MODES)
    if distribution == "truncated_normal":
        return math.sqrt(variance) / _TRUNC_NORMAL_STD_2
    if distribution == "normal":
        return math.sqrt(variance)
    return math.sqrt(3.0 * variance)


def variance_scaling(
    shape: ShapeLike | None = None,
    scale: float = 1.0,
    mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in",
    distribution: Distribution = "truncated_normal",
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Variance scaling, as Keras ``VarianceScaling`` and ``jax.nn.initializers.variance_scaling``.

    With :math:`n` = fan_in, fan_out or (fan_in + fan_out)/2 (``mode``) and
    :math:`v = \text{scale}/n`:

    - ``"truncated_normal"``: :math:`\mathcal{N}(0, \sigma^2)` truncated to
      :math:`[-2\sigma, 2\sigma]`, :math:`\sigma = \sqrt{v}/0.87962566103423978` (the
      divisor is the std of a standard normal truncated to [-2, 2], so the result has
      variance :math:`v`);
    - ``"normal"``: :math:`\mathcal{N}(0, v)`;
    - ``"uniform"``: :math:`\mathcal{U}(-\sqrt{3v}, \sqrt{3v})`.

    Fans use torch's layout (:func:`calculate_fans`: ``shape[1]`` is the input dimension),
    not Keras's ``(..., in, out)``.

    Args:
        shape: the shape of the result (at least 2 dimensions); may be None when ``out`` is
            given.
        scale: the variance scale, ``scale > 0``.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
        dtype, seed, offset, out: as in :func:`uniform`.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type.
        ValueError: fewer than 2 dimensions, ``scale <= 0``, a ``scale`` whose draws would
            overflow ``dtype`` (or whose std or bound rounds to 0 in it), an unknown ``mode`` or
            ``distribution``, a negative ``offset``, or a bad ``out``.
        MemoryError: a ``shape`` too large to allocate.

    Example:
        >>> w = variance_scaling((256, 128), 2.0, "fan_in", "truncated_normal", seed=0)
    """
    arr = _output(shape, dtype, out)
    std = _variance_scaling_scale(arr, scale, mode, distribution)
    return _draw(arr, distribution, std, seed, offset, f"scale={scale!r}")


def orthogonal(
    shape: ShapeLike | None = None,
    gain: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    seed: SeedLike = None,
    offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""A (semi-)orthogonal matrix, as ``torch.nn.init.orthogonal_`` (Saxe et al., 2013).

    The weight is viewed as a ``(rows, cols)`` matrix, ``rows = shape[0]``,
    ``cols = prod(shape[1:])``. A standard normal matrix of that shape is drawn in float64
    (from ``seed``/``offset``, as :func:`regtune.random.normal`), transposed when
    ``rows < cols``, factored :math:`A = QR`, and
    :math:`Q \operatorname{diag}(\operatorname{sign} R_{ii})` (Haar-distributed, Mezzadri
    2007) is transposed back, reshaped, scaled by ``gain`` and cast to ``dtype``. bfloat16 and
    float16 need float32 or better for the factorization: their result is the float32 result
    (float64 math rounded once to float32) rounded once more, to nearest even, by
    ``regtune._core.convert``, so it equals ``orthogonal(..., dtype=np.float32).astype(dtype)``
    and is orthogonal only to the 16-bit dtype's precision. So
    :math:`W^\top W = \text{gain}^2 I` when ``rows >= cols`` and
    :math:`W W^\top = \text{gain}^2 I` otherwise (W viewed as ``(rows, cols)``). A zero
    diagonal entry of R (probability 0) counts as +1 where torch would zero the column.

    Args:
        shape: the shape of the result (at least 2 dimensions); may be None when ``out`` is
            given.
        gain: a finite scaling factor, ``|gain| <= finfo(dtype).max``; 0 gives zeros, and a
            subnormal gain gives the correctly rounded, possibly zero, result, but a non-zero
            gain that rounds to 0 in ``dtype`` is refused.
        dtype, seed, offset, out: as in :func:`uniform`.

    Returns:
        A new array of ``shape``, or ``out`` filled in place.

    Raises:
        TypeError: a bad ``dtype``, ``shape``, ``seed`` or ``out`` type.
        ValueError: fewer than 2 dimensions, a non-finite ``gain``, one beyond ``dtype``'s
            range or a non-zero one that rounds to 0 in it, a negative ``offset``, or a bad
            ``out``.
        MemoryError: a ``shape`` too large to allocate.

    Example:
        >>> w = orthogonal((4, 8), seed=0)
        >>> bool(np.allclose(w @ w.T, np.eye(4), atol=1e-5))
        True
    """
    gain = finite_float(gain, "gain")
    arr = _output(shape, dtype, out)
    if arr.ndim < 2:
        raise ValueError(
            f"orthogonal needs a shape with 2 or more dimensions, got shape {arr.shape}"
        )
    if not abs(gain) <= _FMAX[arr.dtype] * _TIGHT:  # the entries of gain * Q reach |gain|
        raise ValueError(f"gain={gain!r} is too large for {arr.dtype}: |gain| must be <= {_FMAX[arr.dtype]:.6g}")
    _check_tiny(gain, "gain", arr.dtype, "every value would be 0")  # the entries of gain * Q are below |gain|
    rows = arr.shape[0]
    cols = arr.size // rows if rows else 0
    flat = _random.normal((rows, cols), 0.0, 1.0, dtype=np.float64, seed=seed, offset=offset)
    if arr.size == 0:
        return arr
    wide = rows < cols
    if wide:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.where(np.diagonal(r) < 0.0, -1.0, 1.0)
    if wide:
        q = q.T
    if arr.dtype in _LOW_DTYPES:  # the float32 result, rounded once more
        tmp = np.empty(arr.shape, np.float32)
        np.multiply(q.reshape(arr.shape), gain, out=tmp, casting="same_kind")
        _core.convert(tmp, arr)
        return arr
    np.multiply(q.reshape(arr.shape), gain, out=arr, casting="same_kind")
    return arr


# Aliases: the same functions (torch semantics) under their Keras/JAX names.
glorot_uniform = xavier_uniform
glorot_normal = xavier_normal
he_uniform = kaiming_uniform
he_normal = kaiming_normal
