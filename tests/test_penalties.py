"""regtune.penalties: values and gradients against their formulas, exact zeros from prox_l1,
max-norm against torch.renorm, the same bits on every thread count and SIMD path, bad input."""

from __future__ import annotations

import math

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
    with pytest.raises(TypeError, match="w must have dtype float32 or float64"):
        penalties.prox_l1(np.zeros(3, np.int32), 0.1)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, inf\)"):
        penalties.prox_l1(w, -0.1)
    with pytest.raises(ValueError, match=r"max_norm must be in \(0, inf\)"):
        penalties.max_norm_(w, 0.0)
    with pytest.raises(ValueError, match=r"axis must be in \[-1, 1\), got axis=1"):
        penalties.max_norm_(w, 1.0, axis=1)
    with pytest.raises(TypeError, match="axis must be an int"):
        penalties.max_norm_(w, 1.0, axis=0.5)
