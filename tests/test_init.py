"""Tests for regtune.init: formulas, distributions, seeding/offset, orthogonality, errors.

One shared table (CASES) of initializers runs through the same tests for float32 and
float64. Each row states the exact distribution its initializer must draw from, computed
here by hand from the published formulas, independently of regtune.init's own helpers.

Statistical tests use fixed seeds, so they are deterministic; their thresholds are chosen
so that a correct sampler would fail them with the stated small probability on a new seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np
import pytest
from scipy import stats

import regtune
import regtune.init as init
import regtune.random as rrandom

from .conftest import SIMD_PATHS, simd_path

DTYPES = [np.float32, np.float64]

# Shapes in torch layout: linear (out, in), conv1d/2d/3d (out, in, *kernel).
FORMULA_SHAPES = [(30, 50), (50, 30), (1, 1), (16, 8, 3), (32, 16, 3, 3), (8, 4, 3, 3, 3)]


def hand_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive


# --------------------------------------------------------------------------- the table


class Dist(NamedTuple):
    """The exact distribution an initializer draws from.

    kind: "uniform" -> U(-scale, scale); "normal" -> N(0, scale^2);
    "truncated_normal" -> N(loc, scale^2) cut to [a, b] (absolute); loc defaults to 0.
    """

    kind: str
    scale: float
    a: float = 0.0
    b: float = 0.0
    loc: float = 0.0

    def frozen(self) -> Any:
        if self.kind == "uniform":
            return stats.uniform(loc=self.loc - self.scale, scale=2 * self.scale)
        if self.kind == "normal":
            return stats.norm(loc=self.loc, scale=self.scale)
        return stats.truncnorm(
            (self.a - self.loc) / self.scale,
            (self.b - self.loc) / self.scale,
            loc=self.loc,
            scale=self.scale,
        )

    def sample(self, shape: Any, dtype: Any, seed: Any, offset: int = 0) -> np.ndarray:
        """The same draw made directly with regtune.random."""
        kw = dict(dtype=dtype, seed=seed, offset=offset)
        if self.kind == "uniform":
            return rrandom.uniform(shape, self.loc - self.scale, self.loc + self.scale, **kw)
        if self.kind == "normal":
            return rrandom.normal(shape, self.loc, self.scale, **kw)
        return rrandom.truncated_normal(shape, self.loc, self.scale, self.a, self.b, **kw)


def _vs_truncated(var: float) -> Dist:
    sigma = math.sqrt(var) / 0.87962566103423978
    return Dist("truncated_normal", sigma, -2 * sigma, 2 * sigma)


def _fan_avg(shape: tuple[int, ...]) -> float:
    fi, fo = hand_fans(shape)
    return (fi + fo) / 2


class Case(NamedTuple):
    name: str
    fn: Callable[..., np.ndarray]
    kwargs: dict[str, Any]
    dist: Callable[[tuple[int, ...]], Dist]  # shape -> exact distribution, by hand
    fan_in_only: bool = False  # parameters depend on shape[1:] only (shardable by rows)


CASES = [
    Case("uniform", init.uniform, dict(a=-0.3, b=0.3), lambda s: Dist("uniform", 0.3), True),
    Case("normal", init.normal, dict(mean=0.0, std=0.02), lambda s: Dist("normal", 0.02), True),
    Case(
        "trunc_normal",
        init.trunc_normal,
        dict(mean=0.1, std=0.5, a=-0.4, b=0.9),
        lambda s: Dist("truncated_normal", 0.5, -0.4, 0.9, loc=0.1),
        True,
    ),
    Case(
        "xavier_uniform",
        init.xavier_uniform,
        dict(gain=1.7),
        lambda s: Dist("uniform", 1.7 * math.sqrt(6.0 / sum(hand_fans(s)))),
    ),
    Case(
        "xavier_normal",
        init.xavier_normal,
        {},
        lambda s: Dist("normal", math.sqrt(2.0 / sum(hand_fans(s)))),
    ),
    Case(
        "kaiming_uniform",
        init.kaiming_uniform,
        {},  # torch defaults: a=0, fan_in, leaky_relu -> gain sqrt(2)
        lambda s: Dist("uniform", math.sqrt(2.0) * math.sqrt(3.0 / hand_fans(s)[0])),
        True,
    ),
    Case(
        "kaiming_uniform_leaky_fan_out",
        init.kaiming_uniform,
        dict(a=0.2, mode="fan_out"),
        lambda s: Dist(
            "uniform", math.sqrt(2.0 / (1 + 0.2**2)) * math.sqrt(3.0 / hand_fans(s)[1])
        ),
    ),
    Case(
        "kaiming_normal_relu",
        init.kaiming_normal,
        dict(nonlinearity="relu"),
        lambda s: Dist("normal", math.sqrt(2.0) / math.sqrt(hand_fans(s)[0])),
        True,
    ),
    Case(
        "kaiming_normal_tanh_fan_out",
        init.kaiming_normal,
        dict(mode="fan_out", nonlinearity="tanh"),
        lambda s: Dist("normal", (5.0 / 3.0) / math.sqrt(hand_fans(s)[1])),
    ),
    Case(
        "lecun_uniform",
        init.lecun_uniform,
        {},
        lambda s: Dist("uniform", math.sqrt(3.0 / hand_fans(s)[0])),
        True,
    ),
    Case(
        "lecun_normal",
        init.lecun_normal,
        {},
        lambda s: Dist("normal", math.sqrt(1.0 / hand_fans(s)[0])),
        True,
    ),
    Case(
        "variance_scaling_default",
        init.variance_scaling,
        {},  # scale 1, fan_in, truncated_normal
        lambda s: _vs_truncated(1.0 / hand_fans(s)[0]),
        True,
    ),
    Case(
        "variance_scaling_fan_avg_normal",
        init.variance_scaling,
        dict(scale=2.0, mode="fan_avg", distribution="normal"),
        lambda s: Dist("normal", math.sqrt(2.0 / _fan_avg(s))),
    ),
    Case(
        "variance_scaling_fan_out_uniform",
        init.variance_scaling,
        dict(scale=0.5, mode="fan_out", distribution="uniform"),
        lambda s: Dist("uniform", math.sqrt(3.0 * 0.5 / hand_fans(s)[1])),
    ),
    Case(
        "variance_scaling_fan_avg_truncated",
        init.variance_scaling,
        dict(scale=3.0, mode="fan_avg", distribution="truncated_normal"),
        lambda s: _vs_truncated(3.0 / _fan_avg(s)),
    ),
]
CASE_IDS = [c.name for c in CASES]
FAN_BASED = [c for c in CASES if c.fn not in (init.uniform, init.normal, init.trunc_normal)]
ALL_RANDOM = [(c.name, c.fn, c.kwargs) for c in CASES] + [("orthogonal", init.orthogonal, {})]
ALL_RANDOM_IDS = [r[0] for r in ALL_RANDOM]


def _close(actual: np.ndarray, expected: np.ndarray, scale: float) -> None:
    """Equal up to a few ulps of the distribution's scale (the bound/std computed here and
    in regtune.init may differ in their last bit, e.g. sqrt(6/n) vs sqrt(3)*sqrt(2/n))."""
    eps = np.finfo(actual.dtype).eps
    np.testing.assert_allclose(actual, expected, rtol=8 * eps, atol=8 * eps * scale)


# --------------------------------------------------------------------------- fans and gains


@pytest.mark.parametrize("shape", FORMULA_SHAPES + [(0, 5), (5, 0), (2, 3, 0, 4)])
def test_calculate_fans_hand_formula(shape):
    assert init.calculate_fans(shape) == hand_fans(shape)


def test_calculate_fans_examples():
    assert init.calculate_fans((64, 3, 7, 7)) == (3 * 49, 64 * 49)
    assert init.calculate_fans([10, 20]) == (20, 10)
    assert init.calculate_fans(np.array([4, 5, 2])) == (10, 8)


@pytest.mark.parametrize("shape", FORMULA_SHAPES + [(0, 5), (3, 4, 0)])
def test_calculate_fans_matches_torch(shape):
    torch = pytest.importorskip("torch")
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fans(shape) == tuple(expected)


@pytest.mark.parametrize("shape", [(), 5, (5,)])
def test_calculate_fans_needs_two_dims(shape):
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.calculate_fans(shape)


GAIN_TABLE = [
    ("linear", None, 1.0),
    ("conv1d", None, 1.0),
    ("conv2d", None, 1.0),
    ("conv3d", None, 1.0),
    ("conv_transpose1d", None, 1.0),
    ("conv_transpose2d", None, 1.0),
    ("conv_transpose3d", None, 1.0),
    ("sigmoid", None, 1.0),
    ("tanh", None, 5.0 / 3.0),
    ("relu", None, math.sqrt(2.0)),
    ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01**2))),
    ("leaky_relu", 0.2, math.sqrt(2.0 / (1 + 0.04))),
    ("leaky_relu", 0, math.sqrt(2.0)),
    ("leaky_relu", 3, math.sqrt(2.0 / 10.0)),
    ("leaky_relu", -0.5, math.sqrt(2.0 / 1.25)),
    ("selu", None, 0.75),
    ("relu", "ignored", math.sqrt(2.0)),  # param is only read for leaky_relu, as in torch
]


@pytest.mark.parametrize("name,param,expected", GAIN_TABLE)
def test_calculate_gain_hand_table(name, param, expected):
    assert init.calculate_gain(name, param) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("name,param,expected", GAIN_TABLE)
def test_calculate_gain_matches_torch(name, param, expected):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)


def test_calculate_gain_unknown_nonlinearity():
    with pytest.raises(ValueError, match=r"Unsupported nonlinearity 'swish'.*relu.*selu"):
        init.calculate_gain("swish")


@pytest.mark.parametrize(
    "param,exc",
    [("0.2", TypeError), (True, TypeError), ([0.1], TypeError), (float("nan"), ValueError), (float("inf"), ValueError)],
)
def test_calculate_gain_bad_leaky_slope(param, exc):
    # torch raises ValueError for all of these; regtune keeps TypeError for a wrong type.
    with pytest.raises(exc, match="param.*negative slope"):
        init.calculate_gain("leaky_relu", param)


def test_truncation_constant():
    # The divisor in variance_scaling is the std of N(0,1) truncated to [-2, 2].
    assert stats.truncnorm(-2, 2).std() == pytest.approx(0.87962566103423978, rel=1e-14)


# --------------------------------------------------------------------------- formulas


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FORMULA_SHAPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_draws_the_formula_distribution(case, shape, dtype):
    """Each initializer equals the regtune.random draw with hand-computed parameters."""
    dist = case.dist(shape)
    got = case.fn(shape, **case.kwargs, dtype=dtype, seed=1234)
    assert got.shape == shape and got.dtype == dtype
    _close(got, dist.sample(shape, dtype, seed=1234), dist.scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_support(case, dtype):
    shape = (64, 32, 3, 3)
    dist = case.dist(shape)
    x = case.fn(shape, **case.kwargs, dtype=dtype, seed=7).astype(np.float64)
    assert np.all(np.isfinite(x))
    if dist.kind == "uniform":
        lo, hi = dist.loc - dist.scale, dist.loc + dist.scale
        assert x.min() >= lo and x.max() < hi  # [low, high): never the upper bound
    elif dist.kind == "truncated_normal":
        # float32 rounding of a value just inside a cut-off may land on it, not beyond.
        tol = 2 * np.finfo(dtype).eps * max(abs(dist.a), abs(dist.b))
        assert x.min() >= dist.a - tol and x.max() <= dist.b + tol


@pytest.mark.parametrize("shape", [(40, 60), (60, 40), (16, 8, 3, 3)])
def test_cross_family_identities(shape):
    """Keras names as variance_scaling: lecun, he (relu) and glorot are special cases."""
    vs = init.variance_scaling
    pairs = [
        (init.lecun_uniform(shape, seed=3), vs(shape, 1.0, "fan_in", "uniform", seed=3)),
        (init.lecun_normal(shape, seed=3), vs(shape, 1.0, "fan_in", "normal", seed=3)),
        (
            init.kaiming_normal(shape, nonlinearity="relu", seed=3),
            vs(shape, 2.0, "fan_in", "normal", seed=3),
        ),
        (
            init.kaiming_uniform(shape, mode="fan_out", nonlinearity="relu", seed=3),
            vs(shape, 2.0, "fan_out", "uniform", seed=3),
        ),
        (init.xavier_uniform(shape, seed=3), vs(shape, 1.0, "fan_avg", "uniform", seed=3)),
        (init.xavier_normal(shape, seed=3), vs(shape, 1.0, "fan_avg", "normal", seed=3)),
    ]
    for a, b in pairs:
        _close(a, b, float(np.abs(b).max()))


def test_aliases():
    assert init.glorot_uniform is init.xavier_uniform
    assert init.glorot_normal is init.xavier_normal
    assert init.he_uniform is init.kaiming_uniform
    assert init.he_normal is init.kaiming_normal


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_zeros_ones(dtype):
    c = init.constant((3, 4), 0.25, dtype=dtype)
    assert c.dtype == dtype and c.shape == (3, 4) and np.all(c == 0.25)
    assert np.all(init.zeros((2, 3, 4), dtype=dtype) == 0)
    assert np.all(init.ones(5, dtype=dtype) == 1)
    out = np.full((4, 2), np.nan, dtype=dtype)
    assert init.constant(None, -3, dtype=dtype, out=out) is out and np.all(out == -3)
    assert init.zeros(dtype=dtype, out=out) is out and np.all(out == 0)
    assert init.ones((4, 2), dtype=dtype, out=out) is out and np.all(out == 1)
    big = init.constant((300, 301), 1.0 / 3.0, dtype=dtype)  # threaded fill; rounds like NumPy
    assert np.all(big == np.full((300, 301), 1.0 / 3.0, dtype=dtype))


def test_constant_errors():
    with pytest.raises(TypeError, match="val"):
        init.constant((2, 2))
    with pytest.raises(ValueError, match="val"):
        init.constant((2, 2), float("nan"))
    with pytest.raises(TypeError, match="val"):
        init.constant((2, 2), "1")
    with pytest.raises(ValueError, match="val"):
        init.constant((2, 2), 1e39)  # overflows float32
    assert np.all(init.constant((2, 2), 1e39, dtype=np.float64) == 1e39)
    with pytest.raises(TypeError, match="dtype"):
        init.zeros((2, 2), dtype=ml_dtypes.float8_e4m3fn)
    with pytest.raises(ValueError, match="out"):
        init.ones(out=np.empty((4, 6), dtype=np.float32)[:, ::2])


# --------------------------------------------------------------------------- distributions

# Each statistical test below uses 204,800 samples and a fixed seed per (case, dtype).
N_SHAPE = (128, 64, 5, 5)  # 204,800 elements, conv2d layout
KS_ALPHA = 1e-3  # KS test: reject the exact distribution when p < 1e-3
K_SE = 5.0  # moment tests: |estimate - exact| <= 5 standard errors


def _sample_for_stats(case: Case, dtype: Any) -> tuple[np.ndarray, Any]:
    seed = 1000 + CASE_IDS.index(case.name) + (0 if dtype is np.float32 else 500)
    x = case.fn(N_SHAPE, **case.kwargs, dtype=dtype, seed=seed)
    return x.ravel().astype(np.float64), case.dist(N_SHAPE).frozen()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_kolmogorov_smirnov(case, dtype):
    x, dist = _sample_for_stats(case, dtype)
    result = stats.kstest(x, dist.cdf)
    assert result.pvalue > KS_ALPHA, (case.name, result)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mean_and_variance(case, dtype):
    """Sample mean and variance within K_SE standard errors of the exact values.

    SE(mean) = sqrt(var / n); SE(sample variance) = sqrt((mu4 - var^2) / n), with
    mu4 = (excess_kurtosis + 3) * var^2 the exact fourth central moment.
    """
    x, dist = _sample_for_stats(case, dtype)
    n = x.size
    mean, var, kurt = (float(v) for v in dist.stats(moments="mvk"))
    mu4 = (kurt + 3.0) * var**2
    se_mean = math.sqrt(var / n)
    se_var = math.sqrt((mu4 - var**2) / n)
    assert abs(x.mean() - mean) <= K_SE * se_mean, (x.mean(), mean, se_mean)
    assert abs(x.var() - var) <= K_SE * se_var, (x.var(), var, se_var)


# --------------------------------------------------------------------------- orthogonal

ORTHO_SHAPES = [(8, 8), (20, 6), (6, 20), (16, 4, 3, 3), (64, 2, 2, 2), (1, 5), (5, 1)]


def _reference_orthogonal(shape, gain, seed, offset=0):
    """torch.nn.init.orthogonal_'s algorithm, transcribed, on regtune's float64 normals."""
    rows = shape[0]
    cols = math.prod(shape) // rows
    flat = rrandom.normal((rows, cols), dtype=np.float64, seed=seed, offset=offset)
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gain", [1.0, 2.5])
@pytest.mark.parametrize("shape", ORTHO_SHAPES)
def test_orthogonal(shape, gain, dtype):
    w = init.orthogonal(shape, gain, dtype=dtype, seed=11)
    assert w.shape == shape and w.dtype == dtype
    m = w.reshape(shape[0], -1).astype(np.float64)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    tol = 50 * np.finfo(dtype).eps * gain**2
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=tol)
    expected = _reference_orthogonal(shape, gain, seed=11)
    np.testing.assert_allclose(w, expected.astype(dtype), rtol=0, atol=tol)


def test_orthogonal_offset_and_out():
    shape = (6, 4)
    w = init.orthogonal(shape, seed=5, offset=100, dtype=np.float64)
    np.testing.assert_allclose(w, _reference_orthogonal(shape, 1.0, seed=5, offset=100), atol=1e-14)
    assert not np.allclose(w, init.orthogonal(shape, seed=5, dtype=np.float64))
    out = np.empty(shape, dtype=np.float32)
    assert init.orthogonal(None, seed=5, offset=100, out=out) is out
    np.testing.assert_allclose(out, w, atol=1e-6)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_orthogonal_needs_two_dims(shape):
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal(shape, seed=0)


def test_orthogonal_bad_gain():
    with pytest.raises(ValueError, match="gain"):
        init.orthogonal((3, 3), gain=float("inf"), seed=0)


# --------------------------------------------------------------------------- seeds, out, offset


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fn,kwargs", ALL_RANDOM, ids=ALL_RANDOM_IDS)
def test_seed_determinism(name, fn, kwargs, dtype):
    shape = (12, 10, 3)
    a = fn(shape, **kwargs, dtype=dtype, seed=42)
    b = fn(shape, **kwargs, dtype=dtype, seed=42)
    c = fn(shape, **kwargs, dtype=dtype, seed=43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    ss = fn(shape, **kwargs, dtype=dtype, seed=np.random.SeedSequence(42))
    ss2 = fn(shape, **kwargs, dtype=dtype, seed=np.random.SeedSequence(42))
    np.testing.assert_array_equal(ss, ss2)
    # seed=None draws fresh entropy: two calls differ.
    assert not np.array_equal(fn(shape, **kwargs, dtype=dtype), fn(shape, **kwargs, dtype=dtype))


@pytest.mark.parametrize("name,fn,kwargs", ALL_RANDOM, ids=ALL_RANDOM_IDS)
def test_generator_seed_advances(name, fn, kwargs):
    """A regtune.Generator starts where the int seed does and advances between calls."""
    shape = (6, 5, 2)
    g = regtune.Generator(77)
    first = fn(shape, **kwargs, seed=g)
    np.testing.assert_array_equal(first, fn(shape, **kwargs, seed=77))
    second = fn(shape, **kwargs, seed=g)
    assert not np.array_equal(first, second)
    g2 = regtune.Generator(77)
    fn(shape, **kwargs, seed=g2)
    np.testing.assert_array_equal(second, fn(shape, **kwargs, seed=g2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fn,kwargs", ALL_RANDOM, ids=ALL_RANDOM_IDS)
def test_out_fills_in_place(name, fn, kwargs, dtype):
    shape = (9, 7, 2)
    expected = fn(shape, **kwargs, dtype=dtype, seed=8, offset=3)
    out = np.full(shape, np.nan, dtype=dtype)
    assert fn(None, **kwargs, dtype=dtype, seed=8, offset=3, out=out) is out
    np.testing.assert_array_equal(out, expected)
    out[...] = np.nan
    assert fn(shape, **kwargs, dtype=dtype, seed=8, offset=3, out=out) is out  # shapes agree
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_offset_gives_any_block_of_rows(case, dtype):
    """Rows [k, k+m) of a (rows, cols) weight, drawn alone with offset=k*cols.

    Initializers whose parameters depend only on fan_in (shape[1:]) are shardable by rows
    directly; for the others the block is drawn with regtune.random and the full weight's
    parameters (the fans of a block differ from those of the whole)."""
    rows, cols, k, m = 300, 37, 123, 50
    full = case.fn((rows, cols), **case.kwargs, dtype=dtype, seed=99)
    block = full[k : k + m]
    if case.fan_in_only:
        alone = case.fn((m, cols), **case.kwargs, dtype=dtype, seed=99, offset=k * cols)
        np.testing.assert_array_equal(alone, block)
    dist = case.dist((rows, cols))
    _close(dist.sample((m, cols), dtype, seed=99, offset=k * cols), block, dist.scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", [init.uniform, init.normal, init.trunc_normal])
def test_offset_arbitrary_slice(fn, dtype):
    full = fn((40, 25), dtype=dtype, seed=2024).ravel()
    for k, m in [(0, 1), (1, 7), (137, 50), (999, 1)]:
        np.testing.assert_array_equal(fn(m, dtype=dtype, seed=2024, offset=k), full[k : k + m])


@pytest.mark.parametrize("name,fn,kwargs", ALL_RANDOM, ids=ALL_RANDOM_IDS)
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0), (3, 0, 2)])
def test_zero_element_shapes(name, fn, kwargs, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = fn(shape, **kwargs, seed=0)
    assert w.shape == shape and w.dtype == np.float32


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("case", FAN_BASED, ids=[c.name for c in FAN_BASED])
@pytest.mark.parametrize("shape", [(), 7, (7,)])
def test_fan_based_need_two_dims(case, shape):
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        case.fn(shape, **case.kwargs, seed=0)


@pytest.mark.parametrize("name,fn,kwargs", ALL_RANDOM, ids=ALL_RANDOM_IDS)
def test_bad_out_and_dtype(name, fn, kwargs):
    with pytest.raises(ValueError, match="out.*C-contiguous"):
        fn(**kwargs, out=np.empty((4, 6), dtype=np.float32)[:, ::2])
    read_only = np.empty((4, 3), dtype=np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out.*writable"):
        fn(**kwargs, out=read_only)
    with pytest.raises(TypeError, match="^dtype float32 does not match out.dtype float64$"):
        fn(**kwargs, dtype=np.float32, out=np.empty((4, 3), dtype=np.float64))
    with pytest.raises(TypeError, match="out must have dtype float32, float64, bfloat16 or float16, got int32"):
        fn(**kwargs, out=np.empty((4, 3), dtype=np.int32))
    with pytest.raises(TypeError, match="out"):
        fn(**kwargs, out=[[0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="out.shape"):
        fn((4, 4), **kwargs, out=np.empty((4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="dtype"):
        fn((4, 3), **kwargs, dtype=ml_dtypes.float8_e4m3fn)
    with pytest.raises(TypeError, match="dtype"):
        fn((4, 3), **kwargs, dtype=np.int32)
    with pytest.raises(TypeError, match="shape"):
        fn(**kwargs)  # neither shape nor out
    with pytest.raises(ValueError, match="offset"):
        fn((4, 3), **kwargs, seed=0, offset=-1)
    with pytest.raises(ValueError, match="shape"):
        fn((4, -3), **kwargs, seed=0)


OUT_RULE = ALL_RANDOM + [("constant", init.constant, {"val": 0.5}), ("zeros", init.zeros, {}),
                         ("ones", init.ones, {})]


@pytest.mark.parametrize("name,fn,kwargs", OUT_RULE, ids=[r[0] for r in OUT_RULE])
@pytest.mark.parametrize("dtype", DTYPES)
def test_out_sets_the_dtype_as_numpy_does(name, fn, kwargs, dtype):
    # NumPy's out= rule: without dtype=, out's dtype is used; an equal explicit dtype is fine,
    # a different one is refused naming both; without out the default stays float32.
    seeded = {} if name in ("constant", "zeros", "ones") else {"seed": 4}
    out = np.zeros((4, 3), dtype)
    assert fn(**kwargs, **seeded, out=out) is out
    made = fn((4, 3), **kwargs, **seeded, dtype=dtype)
    np.testing.assert_array_equal(out, made)  # the same values as asking for the dtype
    assert fn(**kwargs, **seeded, dtype=dtype, out=out) is out
    assert fn((4, 3), **kwargs, **seeded).dtype == np.float32
    assert fn((4, 3), **kwargs, **seeded, dtype=None).dtype == np.float32
    other = np.float32 if dtype == np.float64 else np.float64
    before = out.copy()
    with pytest.raises(TypeError, match=f"^dtype {np.dtype(other)} does not match out.dtype {np.dtype(dtype)}$"):
        fn(**kwargs, **seeded, dtype=other, out=out)
    np.testing.assert_array_equal(out, before)


def test_kaiming_normal_fills_a_float64_out():
    # The newcomer's case of issue 14: no dtype= needed for a float64 out.
    w = np.empty((64, 32))
    assert init.kaiming_normal(out=w, nonlinearity="relu", seed=0) is w
    np.testing.assert_array_equal(w, init.kaiming_normal((64, 32), nonlinearity="relu", dtype=np.float64, seed=0))


@pytest.mark.parametrize("fn", [init.kaiming_uniform, init.kaiming_normal])
def test_kaiming_errors(fn):
    with pytest.raises(ValueError, match="mode.*'fan_avg'"):
        fn((4, 3), mode="fan_avg", seed=0)
    with pytest.raises(ValueError, match="Unsupported nonlinearity 'gelu'"):
        fn((4, 3), nonlinearity="gelu", seed=0)
    with pytest.raises(TypeError, match=r"\ba\b"):
        fn((4, 3), a="0.1", seed=0)


def test_variance_scaling_errors():
    vs = init.variance_scaling
    with pytest.raises(ValueError, match="mode.*'fan_sum'"):
        vs((4, 3), mode="fan_sum", seed=0)
    with pytest.raises(ValueError, match="distribution.*'laplace'"):
        vs((4, 3), distribution="laplace", seed=0)
    for scale in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            vs((4, 3), scale=scale, seed=0)


@pytest.mark.parametrize("fn", [init.xavier_uniform, init.xavier_normal])
def test_xavier_bad_gain(fn):
    for gain in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="gain"):
            fn((4, 3), gain=gain, seed=0)


def test_plain_sampler_errors():
    with pytest.raises(ValueError, match=r"\ba\b.*\bb\b"):
        init.uniform((3,), a=1.0, b=1.0, seed=0)
    with pytest.raises(ValueError, match=r"\ba\b.*\bb\b"):
        init.uniform((3,), a=2.0, b=1.0, seed=0)
    with pytest.raises(ValueError, match=r"\ba\b.*\bb\b"):
        init.uniform((3,), a=1.0, b=1.0 + 1e-12, seed=0)  # equal once rounded to float32
    assert init.uniform((3,), a=1.0, b=1.0 + 1e-12, dtype=np.float64, seed=0).min() >= 1.0
    with pytest.raises(ValueError, match=r"\ba\b"):
        init.uniform((3,), a=float("-inf"), seed=0)
    for std in (0.0, -0.1):
        with pytest.raises(ValueError, match="std"):
            init.normal((3,), std=std, seed=0)
        with pytest.raises(ValueError, match="std"):
            init.trunc_normal((3,), std=std, seed=0)
    with pytest.raises(ValueError, match=r"\ba\b.*\bb\b"):
        init.trunc_normal((3,), a=1.0, b=-1.0, seed=0)


# --------------------------------------------------------------------------- surface


def test_public_surface_documented():
    for name in init.__all__:
        obj = getattr(init, name)
        assert callable(obj), name
        doc = obj.__doc__ or ""
        assert "Example" in doc, name
        assert "Raises" in doc, name


# --------------------------------------------------------------------------- hostile input (issue 16)
#
# Every refusal is a TypeError / ValueError / MemoryError whose message names the argument the
# user passed (``gain``, ``a``, ``scale``, ``val``...), never a sampler's internal ``low`` or
# ``std``; every accepted call returns finite values; a refused draw takes nothing from a
# Generator.

import re  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .test_random import HOSTILE_OFFSETS, HOSTILE_SEEDS, HOSTILE_SHAPES, _largest_accepted  # noqa: E402

F32_MAX = float(np.finfo(np.float32).max)
F64_MAX = float(np.finfo(np.float64).max)
NAN, INF = float("nan"), float("inf")

# Every initializer that makes an array: (name, function, keyword arguments, draws at random)
INITIALIZERS = [
    ("uniform", init.uniform, {}, True),
    ("normal", init.normal, {}, True),
    ("trunc_normal", init.trunc_normal, {}, True),
    ("constant", init.constant, {"val": 0.5}, False),
    ("zeros", init.zeros, {}, False),
    ("ones", init.ones, {}, False),
    ("xavier_uniform", init.xavier_uniform, {}, True),
    ("xavier_normal", init.xavier_normal, {}, True),
    ("kaiming_uniform", init.kaiming_uniform, {}, True),
    ("kaiming_normal", init.kaiming_normal, {}, True),
    ("lecun_uniform", init.lecun_uniform, {}, True),
    ("lecun_normal", init.lecun_normal, {}, True),
    ("orthogonal", init.orthogonal, {}, True),
    ("variance_scaling", init.variance_scaling, {}, True),
]
INIT_IDS = [i[0] for i in INITIALIZERS]
RANDOM_INITS = [i for i in INITIALIZERS if i[3]]
RANDOM_IDS = [i[0] for i in RANDOM_INITS]


def test_the_tables_cover_every_public_initializer():
    public = {n for n in init.__all__ if n not in ("calculate_gain", "calculate_fans")}
    aliases = {"glorot_uniform", "glorot_normal", "he_uniform", "he_normal"}
    assert public - aliases == set(INIT_IDS)


@pytest.mark.parametrize("shape,exc", HOSTILE_SHAPES, ids=[f"shape{i}" for i in range(len(HOSTILE_SHAPES))])
@pytest.mark.parametrize("name,fn,kwargs,rand", INITIALIZERS, ids=INIT_IDS)
def test_hostile_shapes_are_refused_naming_shape(name, fn, kwargs, rand, shape, exc):
    g = regtune.Generator(4)
    with pytest.raises(exc, match="shape"):
        fn(shape, **kwargs, **({"seed": g} if rand else {}))
    assert g.state["block"] == 0  # nothing drawn


@pytest.mark.parametrize("seed,exc", HOSTILE_SEEDS, ids=[f"seed{i}" for i in range(len(HOSTILE_SEEDS))])
@pytest.mark.parametrize("name,fn,kwargs,rand", RANDOM_INITS, ids=RANDOM_IDS)
def test_hostile_seeds_are_refused_naming_seed(name, fn, kwargs, rand, seed, exc):
    with pytest.raises(exc, match="seed"):
        fn((4, 3), **kwargs, seed=seed)


@pytest.mark.parametrize("offset,exc", HOSTILE_OFFSETS, ids=[f"offset{i}" for i in range(len(HOSTILE_OFFSETS))])
@pytest.mark.parametrize("name,fn,kwargs,rand", RANDOM_INITS, ids=RANDOM_IDS)
def test_hostile_offsets_are_refused_naming_offset(name, fn, kwargs, rand, offset, exc):
    with pytest.raises(exc, match="offset"):
        fn((4, 3), **kwargs, seed=1, offset=offset)


@pytest.mark.parametrize("name,fn,kwargs,rand", INITIALIZERS, ids=INIT_IDS)
def test_masked_out_is_refused(name, fn, kwargs, rand):
    out = np.ma.masked_array(np.zeros((4, 3), np.float32), mask=np.eye(4, 3, dtype=bool))
    with pytest.raises(TypeError, match="out.*mask"):
        fn(**kwargs, out=out, **({"seed": 1} if rand else {}))
    assert not out.data.any()


@pytest.mark.parametrize("name,fn,kwargs,rand", INITIALIZERS, ids=INIT_IDS)
@pytest.mark.parametrize("out", [np.zeros((4, 3), np.complex64), np.zeros((4, 3), object), np.zeros((4, 3), bool), "out", 3])
def test_hostile_out_is_refused(name, fn, kwargs, rand, out):
    with pytest.raises(TypeError, match="out"):
        fn(**kwargs, out=out, **({"seed": 1} if rand else {}))


# (initializer, keyword arguments, exception, what the message must contain)
HOSTILE_PARAMS = [
    (init.uniform, dict(a=NAN), ValueError, r"\ba\b"),
    (init.uniform, dict(b=INF), ValueError, r"\bb\b"),
    (init.uniform, dict(a="0"), TypeError, r"\ba\b"),
    (init.uniform, dict(b=None), TypeError, r"\bb\b"),
    (init.uniform, dict(a=2.0, b=1.0), ValueError, r"\ba\b.*\bb\b"),
    (init.uniform, dict(a=-3e38, b=3e38), ValueError, r"\bb - a\b"),
    (init.uniform, dict(a=-1e308, b=1e308, dtype=np.float64), ValueError, r"\bb - a\b"),
    (init.uniform, dict(a=-1e39, b=0.0), ValueError, r"\ba\b"),
    (init.uniform, dict(a=0.0, b=1e-46), ValueError, r"\ba\b.*\bb\b"),  # rounds to 0 in float32
    (init.normal, dict(mean=NAN), ValueError, "mean"),
    (init.normal, dict(std=0.0), ValueError, "std"),
    (init.normal, dict(std=-0.0), ValueError, "std"),
    (init.normal, dict(std="1"), TypeError, "std"),
    (init.normal, dict(std=1e38), ValueError, "mean.*std"),
    (init.normal, dict(mean=1e38, std=1e38), ValueError, "mean.*std"),
    (init.normal, dict(std=1e308, dtype=np.float64), ValueError, "mean.*std"),
    (init.trunc_normal, dict(std=1e300), ValueError, "std"),
    (init.trunc_normal, dict(std=1e38, a=-INF, b=INF), ValueError, "std.*a=.*b="),
    (init.trunc_normal, dict(a=NAN), ValueError, r"\ba\b"),
    (init.trunc_normal, dict(a=1.0, b=1.0), ValueError, r"\ba\b.*\bb\b"),
    (init.trunc_normal, dict(mean=100.0, std=1.0), ValueError, r"\ba, b\b"),
    (init.constant, dict(val=None), TypeError, "val"),
    (init.constant, dict(val=NAN), ValueError, "val"),
    (init.constant, dict(val=-INF), ValueError, "val"),
    (init.constant, dict(val="1"), TypeError, "val"),
    (init.constant, dict(val=True), TypeError, "val"),
    (init.constant, dict(val=1j), TypeError, "val"),
    (init.constant, dict(val=np.array(1.0)), TypeError, "val"),
    (init.constant, dict(val=1e39), ValueError, "val"),
    (init.constant, dict(val=-3.5e38), ValueError, "val"),
    (init.xavier_uniform, dict(gain=0.0), ValueError, "gain"),
    (init.xavier_uniform, dict(gain=-1.0), ValueError, "gain"),
    (init.xavier_uniform, dict(gain=NAN), ValueError, "gain"),
    (init.xavier_uniform, dict(gain="1"), TypeError, "gain"),
    (init.xavier_uniform, dict(gain=None), TypeError, "gain"),
    (init.xavier_uniform, dict(gain=1e300), ValueError, "gain=1e[+]300"),
    (init.xavier_uniform, dict(gain=2e38), ValueError, "gain=2e[+]38"),
    (init.xavier_uniform, dict(gain=1e308, dtype=np.float64), ValueError, "gain=1e[+]308"),
    (init.xavier_uniform, dict(gain=1e-320), ValueError, "gain=1e-320"),  # the bound rounds to 0
    (init.xavier_uniform, dict(gain=1e-50), ValueError, "gain=1e-50"),
    (init.xavier_normal, dict(gain=INF), ValueError, "gain"),
    (init.xavier_normal, dict(gain=1e300), ValueError, "gain=1e[+]300"),
    (init.xavier_normal, dict(gain=1e38), ValueError, "gain=1e[+]38"),
    (init.xavier_normal, dict(gain=1e308, dtype=np.float64), ValueError, "gain=1e[+]308"),
    (init.kaiming_uniform, dict(a=1e300), ValueError, r"\ba=1e\+300"),
    (init.kaiming_uniform, dict(a=1e200), ValueError, r"\ba=1e\+200"),
    (init.kaiming_uniform, dict(a="0.1"), TypeError, r"\ba\b"),
    (init.kaiming_uniform, dict(a=True), TypeError, r"\ba\b"),
    (init.kaiming_uniform, dict(a=NAN), ValueError, r"\ba\b"),
    (init.kaiming_uniform, dict(a=-INF), ValueError, r"\ba\b"),
    (init.kaiming_uniform, dict(mode="fan_avg"), ValueError, "mode"),
    (init.kaiming_uniform, dict(mode=None), TypeError, "mode"),
    (init.kaiming_uniform, dict(mode=["fan_in"]), TypeError, "mode"),
    (init.kaiming_uniform, dict(nonlinearity="gelu"), ValueError, "nonlinearity"),
    (init.kaiming_uniform, dict(nonlinearity=None), TypeError, "nonlinearity"),
    (init.kaiming_uniform, dict(nonlinearity=["relu"]), TypeError, "nonlinearity"),
    (init.kaiming_normal, dict(a=NAN), ValueError, r"\ba\b"),
    (init.kaiming_normal, dict(a=[0.1]), TypeError, r"\ba\b"),
    (init.kaiming_normal, dict(mode=1), TypeError, "mode"),
    (init.kaiming_normal, dict(nonlinearity=3), TypeError, "nonlinearity"),
    (init.kaiming_normal, dict(a=1e-300, mode="fan_sum"), ValueError, "mode"),
    (init.variance_scaling, dict(scale=0.0), ValueError, "scale"),
    (init.variance_scaling, dict(scale=-1.0), ValueError, "scale"),
    (init.variance_scaling, dict(scale=NAN), ValueError, "scale"),
    (init.variance_scaling, dict(scale=INF), ValueError, "scale"),
    (init.variance_scaling, dict(scale="1"), TypeError, "scale"),
    (init.variance_scaling, dict(scale=1e308), ValueError, "scale=1e[+]308"),
    (init.variance_scaling, dict(scale=1e78, distribution="normal"), ValueError, "scale=1e[+]78"),
    (init.variance_scaling, dict(scale=1e78, distribution="uniform"), ValueError, "scale=1e[+]78"),
    (init.variance_scaling, dict(scale=1e-320, distribution="uniform"), ValueError, "scale=1e-320"),
    (init.variance_scaling, dict(mode="fan_sum"), ValueError, "mode"),
    (init.variance_scaling, dict(mode=None), TypeError, "mode"),
    (init.variance_scaling, dict(distribution="laplace"), ValueError, "distribution"),
    (init.variance_scaling, dict(distribution=None), TypeError, "distribution"),
    (init.variance_scaling, dict(distribution=1), TypeError, "distribution"),
    (init.orthogonal, dict(gain=NAN), ValueError, "gain"),
    (init.orthogonal, dict(gain=-INF), ValueError, "gain"),
    (init.orthogonal, dict(gain="1"), TypeError, "gain"),
    (init.orthogonal, dict(gain=None), TypeError, "gain"),
    (init.orthogonal, dict(gain=1e300), ValueError, "gain=1e[+]300"),
    (init.orthogonal, dict(gain=-1e39), ValueError, "gain=-1e[+]39"),
    (init.orthogonal, dict(gain=F64_MAX, dtype=np.float64), ValueError, "gain"),
]


@pytest.mark.parametrize(
    "fn,kwargs,exc,match", HOSTILE_PARAMS, ids=[f"{p[0].__name__}{i}" for i, p in enumerate(HOSTILE_PARAMS)]
)
def test_hostile_parameters_are_refused_naming_them(fn, kwargs, exc, match):
    rand = fn not in (init.constant, init.zeros, init.ones)
    g = regtune.Generator(5)
    with pytest.raises(exc, match=match) as info:
        fn((4, 3), **kwargs, **({"seed": g} if rand else {}))
    # never a sampler's internal name for a derived parameter
    assert not re.search(r"\b(low|high)\b", str(info.value)), str(info.value)
    assert g.state["block"] == 0


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: init.calculate_gain(None), TypeError, "nonlinearity"),
        (lambda: init.calculate_gain(1), TypeError, "nonlinearity"),
        (lambda: init.calculate_gain(b"relu"), TypeError, "nonlinearity"),
        (lambda: init.calculate_gain(["relu"]), TypeError, "nonlinearity"),
        (lambda: init.calculate_gain("RELU"), ValueError, "nonlinearity"),
        (lambda: init.calculate_gain("leaky_relu", 1j), TypeError, "param"),
        (lambda: init.calculate_gain("leaky_relu", np.array(0.1)), TypeError, "param"),
        (lambda: init.calculate_gain("leaky_relu", -INF), ValueError, "param"),
        (lambda: init.calculate_fans({1: 2}), TypeError, "shape"),
        (lambda: init.calculate_fans(2.0), TypeError, "shape"),
        (lambda: init.calculate_fans((2.0, 3)), TypeError, "shape"),
        (lambda: init.calculate_fans("ab"), TypeError, "shape"),
        (lambda: init.calculate_fans(None), TypeError, "shape"),
        (lambda: init.calculate_fans((3, -1)), ValueError, "shape"),
        (lambda: init.calculate_fans((3,)), ValueError, "shape"),
    ],
)
def test_hostile_gain_and_fan_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_huge_leaky_slope_gives_a_finite_gain():
    # torch's sqrt(2 / (1 + slope**2)) overflows past |slope| = 1.3e154 (OverflowError, or 0).
    assert init.calculate_gain("leaky_relu", 1e200) == math.sqrt(2.0) / 1e200
    assert init.calculate_gain("leaky_relu", -1e300) == math.sqrt(2.0) / 1e300
    assert init.calculate_gain("leaky_relu", 1e100) == math.sqrt(2.0 / (1 + 1e200))


def test_tiny_parameters_are_drawn_correctly():
    # A normal std that is subnormal but not 0 in the dtype gives its correctly rounded values
    # (some of them 0); a std or bound that rounds to 0 in the dtype is refused (below).
    w = init.xavier_normal((4, 3), gain=1e-320, dtype=np.float64, seed=1)
    assert np.isfinite(w).all() and np.abs(w).max() < 1e-319 and w.any()
    w = init.kaiming_normal((4, 3), a=1e40, seed=1)  # std 7e-41: subnormal in float32
    assert np.isfinite(w).all() and w.any() and np.abs(w).max() < 1e-39
    assert np.isfinite(init.kaiming_uniform((4, 3), a=1e300, dtype=np.float64, seed=1)).all()
    w = init.orthogonal((4, 3), gain=1e-320, dtype=np.float64, seed=1)
    assert np.isfinite(w).all() and 0 < np.abs(w).max() <= 1e-320
    assert not init.orthogonal((4, 3), gain=0.0, seed=1).any()  # an explicit 0 is not an underflow
    w = init.variance_scaling((4, 3), 1e-320, dtype=np.float64, seed=1)
    assert np.isfinite(w).all() and w.any()
    # A std that underflows to 0 even in float64 is refused, naming the argument.
    assert init.xavier_normal((4, 3), gain=5e-324, dtype=np.float64, seed=1).any()  # 5e-324 * 0.53 rounds up
    with pytest.raises(ValueError, match="gain=5e-324"):
        init.xavier_normal((40, 30), gain=5e-324, dtype=np.float64, seed=1)  # 5e-324 * 0.17 rounds to 0
    with pytest.raises(ValueError, match="gain=5e-324"):
        init.xavier_uniform((40, 30), gain=5e-324, dtype=np.float64, seed=1)


#: (initializer call of a dtype, the argument it must name): each makes a std, bound or gain that
#: is not 0 but rounds to 0 in float32, bfloat16 and float16, so every value would be 0 (or the mean).
UNDERFLOWS = [
    (lambda dt: init.kaiming_normal((4, 3), a=1e200, dtype=dt, seed=1), r"a=1e\+200"),
    (lambda dt: init.he_normal((4, 3), a=-1e300, mode="fan_out", dtype=dt, seed=1), r"a=-1e\+300"),
    (lambda dt: init.kaiming_uniform((4, 3), a=1e200, dtype=dt, seed=1), r"a=1e\+200"),
    (lambda dt: init.xavier_normal((4, 3), gain=1e-320, dtype=dt, seed=1), "gain=1e-320"),
    (lambda dt: init.xavier_uniform((4, 3), gain=1e-320, dtype=dt, seed=1), "gain=1e-320"),
    (lambda dt: init.orthogonal((4, 3), gain=1e-320, dtype=dt, seed=1), "gain=1e-320"),
    (lambda dt: init.orthogonal((4, 3), gain=-1e-50, dtype=dt, seed=1), "gain=-1e-50"),
    (lambda dt: init.variance_scaling((4, 3), 1e-320, dtype=dt, seed=1), "scale=1e-320"),
    (lambda dt: init.variance_scaling((4, 3), 1e-320, "fan_avg", "normal", dtype=dt, seed=1), "scale=1e-320"),
    (lambda dt: init.normal((4, 3), 0.5, 1e-320, dtype=dt, seed=1), "std=1e-320"),
    (lambda dt: init.trunc_normal((4, 3), 0.0, 1e-320, dtype=dt, seed=1), "std=1e-320"),
]


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.float16], ids=["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("call, name", UNDERFLOWS, ids=[f"{i}-{m}" for i, (_, m) in enumerate(UNDERFLOWS)])
def test_a_std_or_gain_that_underflows_to_zero_is_refused_naming_it(call, name, dtype):
    """kaiming_normal(a=1e200) returned all zeros in float32 (issue 27): the gain underflows.
    Every initializer whose std, bound or gain can round to 0 in the dtype refuses it, naming the
    argument the user gave, before drawing anything."""
    with pytest.raises(ValueError, match=rf"{name}\b.*rounds to 0 in {np.dtype(dtype).name}"):
        call(dtype)


def test_kaiming_normal_with_an_ordinary_slope_is_unchanged():
    # the check above only refuses; ordinary draws keep their known bits
    a = init.kaiming_normal((64, 32), a=0.2, seed=3)
    b = rrandom.normal((64, 32), 0.0, init.calculate_gain("leaky_relu", 0.2) / math.sqrt(32), seed=3)
    assert a.tobytes() == b.tobytes()


# (label, f(x, shape, dtype, seed) with x the parameter pushed to its limit, message pattern)
INIT_EXTREMES = [
    ("uniform b", lambda x, sh, dt, s: init.uniform(sh, -x, x, dtype=dt, seed=s), r"\bb - a\b"),
    ("normal std", lambda x, sh, dt, s: init.normal(sh, 0.0, x, dtype=dt, seed=s), "std"),
    ("normal mean", lambda x, sh, dt, s: init.normal(sh, x, 1.0, dtype=dt, seed=s), "mean"),
    ("trunc_normal std", lambda x, sh, dt, s: init.trunc_normal(sh, 0.0, x, dtype=dt, seed=s), "std"),
    ("trunc_normal std inf", lambda x, sh, dt, s: init.trunc_normal(sh, 0.0, x, -INF, INF, dtype=dt, seed=s), "std"),
    ("constant val", lambda x, sh, dt, s: init.constant(sh, x, dtype=dt), "val"),
    ("xavier_uniform gain", lambda x, sh, dt, s: init.xavier_uniform(sh, x, dtype=dt, seed=s), "gain"),
    ("xavier_normal gain", lambda x, sh, dt, s: init.xavier_normal(sh, x, dtype=dt, seed=s), "gain"),
    ("vs truncated scale", lambda x, sh, dt, s: init.variance_scaling(sh, x, dtype=dt, seed=s), "scale"),
    ("vs normal scale", lambda x, sh, dt, s: init.variance_scaling(sh, x, "fan_avg", "normal", dtype=dt, seed=s), "scale"),
    ("vs uniform scale", lambda x, sh, dt, s: init.variance_scaling(sh, x, "fan_out", "uniform", dtype=dt, seed=s), "scale"),
    ("orthogonal gain", lambda x, sh, dt, s: init.orthogonal(sh, x, dtype=dt, seed=s), "gain"),
    ("orthogonal -gain", lambda x, sh, dt, s: init.orthogonal(sh, -x, dtype=dt, seed=s), "gain"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label,draw,match", INIT_EXTREMES, ids=[e[0] for e in INIT_EXTREMES])
def test_largest_accepted_parameters_give_finite_values(label, draw, match, dtype):
    fmax = float(np.finfo(dtype).max)
    x = _largest_accepted(lambda v: draw(v, (4, 3), dtype, 1), 1.0, fmax)
    got = draw(x, (128, 64), dtype, 7)
    assert np.isfinite(got).all(), (label, x)
    if x == fmax:  # accepted up to the largest float (variance_scaling's scale in float32, ...)
        return
    with pytest.raises(ValueError, match=match):
        draw(x * (1 + 1e-6) if x * (1 + 1e-6) < INF else INF, (4, 3), dtype, 7)


# --------------------------------------------------------------------------- hypothesis

_ARG_NAMES = re.compile(r"\b(shape|a|b|a, b|mean|std|val|gain|scale|mode|nonlinearity|distribution|dtype|seed|offset|out)\b")

hostile_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-320, 1e-45, F32_MAX, 3.5e38, 1e154, 1e300, F64_MAX, -F64_MAX]),
    st.integers(-(2**70), 2**70),
    st.sampled_from([None, "1", "fan_in", "relu", True, 1j, [1.0], np.float32("nan"), np.float64(2.0)]),
)

# initializer -> the parameters drawn (positionally after shape)
_PARAMS = {
    "uniform": 2, "normal": 2, "trunc_normal": 4, "constant": 1, "xavier_uniform": 1, "xavier_normal": 1,
    "kaiming_uniform": 3, "kaiming_normal": 3, "orthogonal": 1, "variance_scaling": 3,
}  # fmt: skip


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(_PARAMS)),
    values=st.lists(hostile_values, min_size=4, max_size=4),
    dtype=st.sampled_from(DTYPES),
    shape=st.sampled_from([(4, 3), (3, 4), (1, 1), (2, 3, 2), (0, 3)]),
)
def test_random_parameters_give_finite_values_or_name_an_argument(name, values, dtype, shape):
    fn = getattr(init, name)
    kw = {} if name == "constant" else {"seed": 3}
    try:
        got = fn(shape, *values[: _PARAMS[name]], dtype=dtype, **kw)
    except (TypeError, ValueError) as exc:
        assert _ARG_NAMES.search(str(exc)), str(exc)
        return
    assert got.shape == shape and got.dtype == dtype and np.isfinite(got).all(), (name, values)


# --------------------------------------------------------------------------- bfloat16 and float16

LOW = [np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)]
LOW_IDS = ["bf16", "f16"]


@pytest.mark.parametrize("dt", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("name,fn,kwargs", ALL_RANDOM, ids=ALL_RANDOM_IDS)
def test_16bit_initializers_are_the_float32_result_rounded(name, fn, kwargs, dt):
    # dtype= and out= alike, at an offset; every path (orthogonal's QR is NumPy's, the draw ours)
    for path in SIMD_PATHS:
        with simd_path(path):
            want = fn((37, 29), **kwargs, dtype=np.float32, seed=6, offset=5).astype(dt)
            got = fn((37, 29), **kwargs, dtype=dt, seed=6, offset=5)
            out = np.empty((37, 29), dt)
            assert fn(**kwargs, seed=6, offset=5, out=out) is out
            assert got.dtype == dt
            assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), (name, path)
            assert np.array_equal(out.view(np.uint16), want.view(np.uint16)), (name, path)


@pytest.mark.parametrize("dt", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("val", [0.0, -0.0, 1.0, 0.1, 1 / 3, -7.3e-8, 1.0 + 2**-8 + 2**-40, 1e-9])
def test_16bit_constant_is_float32_val_rounded(dt, val):
    got = init.constant(1000, val, dtype=dt)
    want = np.full(1000, np.float32(val)).astype(dt)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16))
    assert np.array_equal(init.zeros(3, dtype=dt).view(np.uint16), np.zeros(3, np.uint16))
    assert (init.ones(out=np.empty(5, dt)).astype(np.float32) == 1).all()


def test_16bit_scale_checks_use_the_16bit_range():
    # float16 overflows at 65504: a gain whose draws pass it is refused naming the gain
    with pytest.raises(ValueError, match=r"gain=100000.0 .*too large for float16"):
        init.xavier_normal((4, 4), gain=1e5, dtype=np.float16)
    with pytest.raises(ValueError, match=r"gain=100000.0 is too large for float16"):
        init.orthogonal((4, 4), gain=1e5, dtype=np.float16)
    with pytest.raises(ValueError, match=r"val = 70000.0 does not fit in float16"):
        init.constant(3, 7e4, dtype=np.float16)
    # a uniform bound that rounds to 0 in float16 (but not in float32 or bfloat16)
    with pytest.raises(ValueError, match=r"rounds to 0 in float16"):
        init.kaiming_uniform((4, 4), a=1e9, nonlinearity="leaky_relu", dtype=np.float16)
    assert np.isfinite(init.kaiming_uniform((4, 4), a=1e9, dtype=ml_dtypes.bfloat16).astype(np.float32)).all()
    w = init.xavier_normal((4, 4), gain=3e3, dtype=np.float16)  # 6.66 * std * ... still < 65504
    assert np.isfinite(w.astype(np.float32)).all()


def test_16bit_orthogonal_is_orthogonal_to_its_precision():
    for dt, tol in ((ml_dtypes.bfloat16, 2e-2), (np.float16, 2e-3)):
        w = init.orthogonal((64, 32), dtype=dt, seed=1).astype(np.float64)
        assert np.abs(w.T @ w - np.eye(32)).max() < tol
