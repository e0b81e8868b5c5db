"""regtune.penalties: values and gradients against their formulas, exact zeros from prox_l1,
max-norm against torch.renorm, the same bits on every thread count and SIMD path, bad input."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from regtune import penalties

from .conftest import SIMD_PATHS, num_threads, simd_path

DTYPES = [np.float32, np.float64]
N = 100_003  # above the serial threshold; not a multiple of any vector width or block


def _w(dtype, n=N, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1, l2", [(0.1, 0.0), (0.0, 0.5), (0.01, 0.3)])
def test_penalty_value_matches_formula(dtype, l1, l2):
    w = _w(dtype).reshape(-1, 1)
    w64 = w.astype(np.float64)
    want = l1 * math.fsum(np.abs(w64).ravel()) + (l2 / 2) * math.fsum((w64**2).ravel())
    assert penalties.penalty_value(w, l1=l1, l2=l2) == pytest.approx(want, rel=1e-13)


def test_penalty_value_of_array_likes_and_empty():
    assert penalties.penalty_value([[-2.0, 0.0, 0.5]], l1=0.1, l2=1.0) == pytest.approx(0.25 + 2.125)
    assert penalties.penalty_value(np.zeros(0, np.float32), l1=1.0, l2=1.0) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_value_is_bit_identical_across_threads_and_paths(dtype):
    w = _w(dtype, 3 * N)
    values = set()
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                values.add(penalties.penalty_value(w, l1=0.3, l2=0.7))
    assert len(values) == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1, l2", [(0.1, 0.0), (0.0, 0.5), (0.01, 0.3)])
def test_add_penalty_grad_matches_formula_exactly(each_simd, dtype, l1, l2):
    w = _w(dtype)
    w[::7] = 0.0
    g = _w(dtype, seed=1)
    want = g + (l1 * np.sign(w) + l2 * w)
    out = penalties.add_penalty_grad(g, w, l1=l1, l2=l2)
    assert out is g
    assert g.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_prox_l1_soft_thresholds_to_exact_zeros(each_simd, dtype):
    w = _w(dtype)
    want = np.sign(w) * np.maximum(np.abs(w) - dtype(0.5), 0)
    penalties.prox_l1(w, 0.5)
    np.testing.assert_array_equal(w, want)
    assert np.mean(w == 0) > 0.3
    assert np.all(np.abs(w[w != 0]) > 0)


def test_prox_l1_keeps_nan():
    w = np.array([np.nan, 1.0, -0.2])
    penalties.prox_l1(w, 0.5)
    assert np.isnan(w[0]) and w[1] == 0.5 and w[2] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1, 2])
def test_max_norm_matches_torch_renorm(dtype, axis):
    torch = pytest.importorskip("torch")
    w = np.random.default_rng(2).standard_normal((6, 5, 4)).astype(dtype)
    want = torch.renorm(torch.tensor(w), 2, axis % 3, 1.5).numpy()
    penalties.max_norm_(w, 1.5, axis=axis)
    np.testing.assert_allclose(w, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_max_norm_leaves_small_slices_alone():
    w = np.array([[3.0, 4.0], [0.3, 0.4]])
    penalties.max_norm_(w, 1.0, axis=0)
    np.testing.assert_allclose(w[0], [0.6, 0.8], rtol=1e-6)
    assert w[1].tolist() == [0.3, 0.4]


def test_bad_inputs_raise_clearly():
    w = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"l1 must be in \[0, inf\), got l1=-1.0"):
        penalties.penalty_value(w, l1=-1.0)
    with pytest.raises(ValueError, match=r"l2 must be finite, got l2=nan"):
        penalties.add_penalty_grad(w, w, l2=float("nan"))
    with pytest.raises(ValueError, match=r"w has shape \(3,\) but g has shape \(4,\)"):
        penalties.add_penalty_grad(w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="g must be C-contiguous"):
        penalties.add_penalty_grad(np.zeros((3, 2)).T, np.zeros((2, 3)))
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="w must be writable"):
        penalties.prox_l1(ro, 0.1)
    with pytest.raises(TypeError, match="w must have dtype float32, float64, bfloat16 or float16, got int32"):
        penalties.prox_l1(np.zeros(3, np.int32), 0.1)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, inf\)"):
        penalties.prox_l1(w, -0.1)
    with pytest.raises(ValueError, match=r"max_norm must be in \(0, inf\)"):
        penalties.max_norm_(w, 0.0)
    with pytest.raises(ValueError, match=r"axis must be in \[-1, 1\), got axis=1"):
        penalties.max_norm_(w, 1.0, axis=1)
    with pytest.raises(TypeError, match="axis must be an int"):
        penalties.max_norm_(w, 1.0, axis=0.5)


# ------------------------------------------------------------------- hostile input (issue 16)
_BAD_W = [
    (None, "w must be an array of real numbers, got None"),
    (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "w must be a plain numpy.ndarray"),
    (np.array([1 + 2j]), r"w must be an array of real numbers \(float32 or float64\), got dtype complex128"),
    (np.array([1.0, 2.0], dtype=object), "w must be an array of real numbers .*got dtype object"),
    ([1.0, None], "w must be an array of real numbers .*got dtype object"),
    (np.array(["1.0"]), "w must be an array of real numbers .*got dtype <U3"),
    ("abc", "w must be an array of real numbers .*got dtype <U3"),
    (np.array([True, False]), "w must be an array of real numbers .*got dtype bool"),
    (np.array([1], dtype="datetime64[s]"), "w must be an array of real numbers .*got dtype datetime64"),
    (np.array([1], dtype="timedelta64[s]"), "w must be an array of real numbers .*got dtype timedelta64"),
    ([[1.0, 2.0], [1.0]], "w must be an array of real numbers; numpy.asarray cannot convert"),
    ({"w": 1.0}, "w must be an array of real numbers .*got dtype object"),
]


@pytest.mark.parametrize("bad, match", _BAD_W, ids=lambda v: type(v).__name__)
def test_penalty_value_refuses_what_is_not_an_array_of_reals(bad, match):
    with pytest.raises(TypeError, match=match):
        penalties.penalty_value(bad, l1=0.1, l2=0.1)


@pytest.mark.parametrize("bad, match", _BAD_W, ids=lambda v: type(v).__name__)
def test_add_penalty_grad_refuses_a_bad_w(bad, match):
    g = np.zeros(2)
    with pytest.raises(TypeError, match=match):
        penalties.add_penalty_grad(g, bad, l1=0.1)
    assert not g.any()


def test_ints_and_other_floats_are_still_converted():
    assert penalties.penalty_value([1, -2, 3], l1=1.0) == 6.0
    assert penalties.penalty_value(np.array([1, 2], np.uint8), l2=2.0) == 5.0
    assert penalties.penalty_value(np.float16([0.5]), l1=2.0) == 1.0


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: penalties.add_penalty_grad(np.ma.masked_array(np.zeros(3)), np.ones(3)), TypeError, "g must be a plain"),
        (lambda: penalties.add_penalty_grad(None, np.ones(3)), TypeError, "g must be a numpy.ndarray"),
        (lambda: penalties.add_penalty_grad([0.0, 0.0], np.ones(2)), TypeError, "g must be a numpy.ndarray"),
        (lambda: penalties.add_penalty_grad(np.zeros(3, complex), np.ones(3)), TypeError, "g must have dtype"),
        (lambda: penalties.add_penalty_grad(np.zeros(3, bool), np.ones(3)), TypeError, "g must have dtype"),
        (lambda: penalties.prox_l1(np.ma.masked_array(np.zeros(3)), 0.1), TypeError, "w must be a plain"),
        (lambda: penalties.prox_l1(None, 0.1), TypeError, "w must be a numpy.ndarray"),
        (lambda: penalties.prox_l1(np.zeros(3, object), 0.1), TypeError, "w must have dtype"),
        (lambda: penalties.max_norm_(np.ma.masked_array(np.zeros((2, 2))), 1.0), TypeError, "w must be a plain"),
        (lambda: penalties.max_norm_(np.zeros((2, 2), complex), 1.0), TypeError, "w must have dtype"),
        (lambda: penalties.max_norm_(np.zeros((2, 2)), 1.0, axis=None), TypeError, "axis must be an int"),
        (lambda: penalties.max_norm_(np.zeros((2, 2)), 1.0, axis=True), TypeError, "axis must be an int"),
        (lambda: penalties.max_norm_(np.zeros((2, 2)), 1.0, axis="0"), TypeError, "axis must be an int"),
        (lambda: penalties.max_norm_(np.zeros((2, 2)), 1.0, axis=-3), ValueError, "axis must be in"),
        (lambda: penalties.max_norm_(np.zeros(()), 1.0), ValueError, "w must have at least one dimension"),
    ],
)  # fmt: skip
def test_hostile_in_place_arrays_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


_BAD_COEF = [(math.nan, ValueError, "must be finite"), (math.inf, ValueError, "must be finite"),
             (-1e-300, ValueError, "must be in"), (True, TypeError, "must be a real number"),
             ("0.1", TypeError, "must be a real number"), (None, TypeError, "must be a real number"),
             (1j, TypeError, "must be a real number"), ([0.1], TypeError, "must be a real number")]  # fmt: skip


@pytest.mark.parametrize("fn, arg", [("penalty_value", "l1"), ("penalty_value", "l2"), ("add_penalty_grad", "l1"),
                                     ("add_penalty_grad", "l2"), ("prox_l1", "threshold"), ("max_norm_", "max_norm")])
@pytest.mark.parametrize("bad, exc, what", _BAD_COEF, ids=repr)  # fmt: skip
def test_hostile_coefficients_are_named(fn, arg, bad, exc, what):
    w = np.ones((2, 3))
    with pytest.raises(exc, match=f"{arg} {what}"):
        if fn == "penalty_value":
            penalties.penalty_value(w, **{arg: bad})
        elif fn == "add_penalty_grad":
            penalties.add_penalty_grad(np.zeros((2, 3)), w, **{arg: bad})
        else:
            getattr(penalties, fn)(w, bad)
    assert np.array_equal(w, np.ones((2, 3)))


@pytest.mark.parametrize(
    "make",
    [
        lambda b: (b[:6], b[:6]),  # g is w
        lambda b: (b[:6], b[3:9]),  # shifted
        lambda b: (b[:6].reshape(2, 3), b[:6].reshape(3, 2).reshape(2, 3)),  # reshape views
        lambda b: (b[:6], b[5:11]),  # one element
        lambda b: (b[6:12], b[:7][1:]),  # w before g, sharing the last element
    ],
)
def test_a_gradient_that_overlaps_the_weights_is_refused_naming_both(make):
    buf = np.arange(16.0)
    g, w = make(buf)
    with pytest.raises(ValueError, match="g overlaps w"):
        penalties.add_penalty_grad(g, w, l1=0.5, l2=0.5)
    assert np.array_equal(buf, np.arange(16.0))


def test_disjoint_or_copied_weights_are_exact():
    buf = np.arange(16.0)
    g, w = buf[:6], buf[8:14]
    want = g + 0.5 * np.sign(w) + 0.25 * w
    assert np.array_equal(penalties.add_penalty_grad(g, w, l1=0.5, l2=0.25), want)
    # a strided w is converted to a contiguous copy before g is written: exact even if it
    # interleaves with g (x[::2] read, x[:8] written)
    x = np.arange(16.0)
    w2 = x[::2]
    want = x[:8] + 0.5 * np.sign(w2) + 0.25 * w2
    assert np.array_equal(penalties.add_penalty_grad(x[:8], w2, l1=0.5, l2=0.25), want)


def test_penalty_value_never_turns_finite_weights_into_inf_or_nan():
    big = np.array([1e200, -1e200])
    assert penalties.penalty_value(big, l1=1.0) == 2e200  # l2 = 0: its overflowing sum is not 0 * inf
    assert penalties.penalty_value(big, l1=0.0, l2=0.0) == 0.0
    with pytest.raises(ValueError, match=r"finite weights w overflows float64 \(l1=0.0, l2=1.0\)"):
        penalties.penalty_value(big, l2=1.0)
    with pytest.raises(ValueError, match=r"w overflows float64 \(l1=10.0"):
        penalties.penalty_value([1e308, 1e308], l1=10.0)
    # non-finite weights give what the formula gives (0 * inf is nan there, as in NumPy)
    assert math.isinf(penalties.penalty_value([math.inf], l1=1.0, l2=1.0))
    assert math.isnan(penalties.penalty_value([math.inf], l1=1.0))
    assert math.isnan(penalties.penalty_value([math.nan], l2=1.0))


def test_max_norm_of_huge_float64_slices_rescales_instead_of_zeroing():
    w = np.array([[1e200, 1e200], [3.0, 4.0], [0.0, 0.0]])
    penalties.max_norm_(w, 1.0)
    np.testing.assert_allclose(w, [[2**-0.5, 2**-0.5], [0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


# ------------------------------------------------------------------ 16-bit arrays
LOW = [np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)]


def _bits(a):
    return a.view(np.uint16).tobytes()


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_16_bit_arrays_compute_in_float32_and_round_once(dtype):
    """Each op on bfloat16/float16 arrays is the float32 op on the widened values, rounded to
    nearest even; values are summed in double as the float32 values are. Same bits on every
    SIMD path and thread count."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal(1001).astype(dtype)
    g = rng.standard_normal(1001).astype(dtype)
    w32, g32 = w.astype(np.float32), g.astype(np.float32)
    assert penalties.penalty_value(w, l1=0.3, l2=0.7) == penalties.penalty_value(w32, l1=0.3, l2=0.7)
    want = penalties.add_penalty_grad(g32.copy(), w32, l1=0.01, l2=0.1).astype(dtype)
    results = []
    for path in SIMD_PATHS:
        for threads in (1, 3):
            with simd_path(path), num_threads(threads):
                a = penalties.add_penalty_grad(g.copy(), w, l1=0.01, l2=0.1)
                b = penalties.add_penalty_grad(g.copy(), w32, l1=0.01, l2=0.1)  # float32 weights read as they are
                c = penalties.prox_l1(w.copy(), 0.25)
                results.append(_bits(a) + _bits(b) + _bits(c))
            assert _bits(a) == _bits(want) and _bits(b) == _bits(want)
            assert _bits(c) == _bits(penalties.prox_l1(w32.copy(), 0.25).astype(dtype))
    assert len(set(results)) == 1
