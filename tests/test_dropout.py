"""Tests for regtune.dropout: the mask rule, exact values, regeneration, variants, bad input.

Statistical tests use fixed seeds and state their significance level: the kept count passes a
two-sided exact binomial test at alpha = 1e-3, and the alpha-dropout moments lie within
K_SE = 5 standard errors (a correct implementation fails with probability about 6e-7).
"""

from __future__ import annotations

import importlib
import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import regtune
import regtune.random as rr
from regtune import _core

from .conftest import SIMD_PATHS, num_threads, simd_path

rd = importlib.import_module("regtune.dropout")  # the module, also callable as regtune.dropout(x, p)

ALPHA = 1e-3  # binomial test significance level
K_SE = 5.0
DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 129, 1000, 4099]


def _keep(n: int, p: float, seed, offset: int = 0) -> np.ndarray:
    """The documented rule: element i kept iff bits[offset + i] >= round(p * 2**32)."""
    return rr.bits(n, seed=seed, offset=offset).astype(np.uint64) >= np.uint64(round(p * 2**32))


def _unpack(mask: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(mask, bitorder="little", count=n).astype(bool)


def _scale(p: float, dtype) -> np.floating:
    return np.dtype(dtype).type(1 / (1 - p))


def _data(shape, dtype, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ the mask and the values


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_binomial(p):
    n = 1_000_000
    mask = regtune.dropout_mask(n, p, seed=int(p * 1000))
    kept = int(_unpack(mask, n).sum())
    assert stats.binomtest(kept, n, 1 - p).pvalue > ALPHA, (kept, n * (1 - p))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_values_exact_and_mask_follows_the_rule(dtype, n):
    p, seed, offset = 0.3, 17, 5
    x = _data(n, dtype)
    x[: min(n, 3)] = -0.0  # signed zeros are kept signed
    y, mask = regtune.dropout(x, p, seed=seed, offset=offset)
    keep = _keep(n, p, seed, offset)
    assert mask.dtype == np.uint8 and mask.shape == ((n + 7) // 8,)
    np.testing.assert_array_equal(_unpack(mask, n), keep)
    assert not np.unpackbits(mask, bitorder="little")[n:].any()  # unused high bits are 0
    np.testing.assert_array_equal(mask, np.packbits(keep, bitorder="little"))
    expected = np.where(keep, x * _scale(p, dtype), dtype(0))
    assert y.dtype == dtype and y.shape == x.shape
    assert y.tobytes() == expected.tobytes()


def test_float32_scale_is_rounded_once_to_float32():
    # 1 / (1 - 0.3) in float64 rounded to float32, then one float32 multiply per element.
    x = _data(10_000, np.float32, 1)
    y, mask = regtune.dropout(x, 0.3, seed=2)
    keep = _unpack(mask, x.size)
    assert y[keep].tobytes() == (x[keep] * np.float32(1 / (1 - 0.3))).tobytes()
    assert (y[~keep] == 0).all() and not np.signbit(y[~keep]).any()


def test_dropped_values_are_plus_zero_even_for_nan_and_inf():
    x = np.array([np.nan, np.inf, -np.inf, -1.0] * 64, np.float32)
    y, mask = regtune.dropout(x, 0.5, seed=3)
    keep = _unpack(mask, x.size)
    assert 0 < keep.sum() < x.size
    assert (y[~keep] == 0).all() and not np.signbit(y[~keep]).any()
    np.testing.assert_array_equal(y[keep], x[keep] * np.float32(2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_matches_dropout_and_return_mask_false(dtype):
    x = _data((37, 29), dtype)
    y, mask = regtune.dropout(x, 0.4, seed=8, offset=3)
    np.testing.assert_array_equal(mask, regtune.dropout_mask((37, 29), 0.4, seed=8, offset=3))
    y2 = regtune.dropout(x, 0.4, seed=8, offset=3, return_mask=False)
    assert isinstance(y2, np.ndarray) and y2.tobytes() == y.tobytes()


def test_threshold_extremes():
    x = np.ones(1000, np.float32)
    # p below 2**-33 rounds to threshold 0: everything kept, still scaled by 1 / (1 - p).
    y, mask = regtune.dropout(x, 1e-12, seed=1)
    assert _unpack(mask, 1000).all() and (y == np.float32(1 / (1 - 1e-12))).all()
    # p above 1 - 2**-33 rounds to threshold 2**32: nothing kept.
    y, mask = regtune.dropout(x, 1 - 1e-12, seed=1)
    assert not mask.any() and (y == 0).all()


# ------------------------------------------------------------------ backward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,offset", [(1, 0), (100, 3), (4099, 13), (100_003, 6), (40_000, 2**40 + 1)])
def test_regenerated_backward_equals_stored_mask_backward(dtype, n, offset):
    p, seed = 0.35, 1234
    x, dy = _data(n, dtype, 1), _data(n, dtype, 2)
    _, mask = regtune.dropout(x, p, seed=seed, offset=offset)
    dx_mask = regtune.dropout_backward(dy, mask, p)
    dx_regen = regtune.dropout_backward(dy, p=p, seed=seed, offset=offset)
    assert dx_mask.tobytes() == dx_regen.tobytes()
    expected = np.where(_unpack(mask, n), dy * _scale(p, dtype), dtype(0))
    assert dx_mask.tobytes() == expected.tobytes()


def test_backward_with_seedsequence_and_in_place():
    ss = np.random.SeedSequence(77)
    x = _data((64, 33), np.float32)
    _, mask = regtune.dropout(x, 0.5, seed=np.random.SeedSequence(77))
    dy = _data((64, 33), np.float32, 3)
    ref = regtune.dropout_backward(dy, mask, 0.5)
    regtune.dropout_backward(dy, p=0.5, seed=ss, out=dy)  # in place
    assert dy.tobytes() == ref.tobytes()


def test_backward_p0_returns_dy_itself():
    dy = _data(10, np.float32)
    assert regtune.dropout_backward(dy, p=0.0, seed=1) is dy
    out = np.empty_like(dy)
    assert regtune.dropout_backward(dy, regtune.dropout_mask(10, 0.0, seed=1), 0.0, out=out) is out
    np.testing.assert_array_equal(out, dy)


# ------------------------------------------------------------------ determinism and offsets


N_DET = 100_003  # above the serial threshold, not a multiple of any vector width


def _dropout_outputs() -> dict[str, np.ndarray]:
    out = {}
    for dt in DTYPES:
        tag = np.dtype(dt).name
        x = _data(N_DET, dt, 5)
        y, m = regtune.dropout(x, 0.3, seed=9, offset=11)
        out[f"dropout_{tag}"], out[f"mask_{tag}"] = y, m
        out[f"dropout_nomask_{tag}"] = regtune.dropout(x, 0.3, seed=9, offset=11, return_mask=False)
        out[f"back_mask_{tag}"] = regtune.dropout_backward(x, m, 0.3)
        out[f"back_regen_{tag}"] = regtune.dropout_backward(x, p=0.3, seed=9, offset=11)
        out[f"alpha_{tag}"] = rd.alpha_dropout(x, 0.2, seed=9, offset=1)[0]
        out[f"feature_{tag}"] = rd.feature_dropout(x[:100_000].reshape(40, 50, 50), 0.5, seed=9)[0]
    out["mask_only"] = regtune.dropout_mask(N_DET, 0.7, seed=9, offset=3)
    return out


def test_bit_identical_across_simd_paths_and_threads():
    reference = None
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                got = _dropout_outputs()
            if reference is None:
                reference = got
                continue
            for name, arr in got.items():
                assert arr.tobytes() == reference[name].tobytes(), (name, path, threads)


@pytest.mark.parametrize("start,stop", [(0, 64), (8, 72), (3, 1000), (5, 6), (61, 200), (1001, 99_000), (640, 100_003)])
def test_offset_slice_made_alone_equals_the_whole(start, stop):
    p, seed = 0.45, 21
    x = _data(N_DET, np.float32, 4)
    y, mask = regtune.dropout(x, p, seed=seed)
    part, pmask = regtune.dropout(x[start:stop], p, seed=seed, offset=start)
    assert part.tobytes() == y[start:stop].tobytes()
    # The slice's mask is its own: bit 0 is element `start`, whatever start % 8.
    np.testing.assert_array_equal(_unpack(pmask, stop - start), _unpack(mask, N_DET)[start:stop])
    np.testing.assert_array_equal(pmask, regtune.dropout_mask(stop - start, p, seed=seed, offset=start))


def test_offset_at_the_end_of_the_stream():
    end = 2**64
    y, mask = regtune.dropout(np.ones(100, np.float32), 0.5, seed=1, offset=end - 100)
    np.testing.assert_array_equal(_unpack(mask, 100), _keep(100, 0.5, 1, end - 100))
    with pytest.raises(ValueError, match="runs past the end"):
        regtune.dropout(np.ones(101, np.float32), 0.5, seed=1, offset=end - 100)


def test_generator_seed_advances_and_matches_int_seed():
    g = regtune.Generator(42)
    x = np.ones(100, np.float32)
    _, m1 = regtune.dropout(x, 0.5, seed=g)
    _, m2 = regtune.dropout(x, 0.5, seed=g)
    np.testing.assert_array_equal(m1, regtune.dropout_mask(100, 0.5, seed=42))
    # A Generator call consumes whole blocks: the second call starts at word 100.
    np.testing.assert_array_equal(m2, regtune.dropout_mask(100, 0.5, seed=42, offset=100))


def test_seed_none_draws_fresh_masks():
    x = np.ones(256, np.float32)
    assert not np.array_equal(regtune.dropout(x, 0.5)[1], regtune.dropout(x, 0.5)[1])


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 40), min_size=0, max_size=3),
    dtype=st.sampled_from(DTYPES),
    p=st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0)),
    offset=st.integers(0, 2**40),
    step=st.sampled_from([1, 2, -1]),
    seed=st.integers(0, 2**64 - 1),
)
def test_property_matches_the_reference(shape, dtype, p, offset, step, seed):
    """Any shape, dtype, p, offset, seed, and a strided (read-only) input."""
    base = _data(tuple(shape[:-1]) + (2 * shape[-1],) if shape else (), dtype, 3)
    x = base[..., ::2 * step] if shape else base  # non-contiguous when shape is non-empty
    y, mask = regtune.dropout(x, p, seed=seed, offset=offset)
    n = x.size
    if p == 0.0:
        assert y is x and _unpack(mask, n).all()
        return
    keep = _keep(n, p, seed, offset).reshape(x.shape)
    np.testing.assert_array_equal(_unpack(mask, n).reshape(x.shape), keep)
    scale = dtype(0) if p == 1.0 else _scale(p, dtype)
    assert y.tobytes() == np.where(keep, x * scale, dtype(0)).tobytes()
    dx = regtune.dropout_backward(x, p=p, seed=seed, offset=offset)
    assert dx.tobytes() == regtune.dropout_backward(x, mask, p).tobytes() == y.tobytes()


# ------------------------------------------------------------------ special cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_p0_and_eval_return_x_itself(dtype):
    x = _data((3, 5), dtype)
    for kwargs in ({"p": 0.0, "seed": 1}, {"p": 0.5, "seed": 1, "training": False}):
        y, mask = regtune.dropout(x, **kwargs)
        assert y is x
        assert _unpack(mask, 15).all() and mask.size == 2 and mask[-1] == 0x7F
        assert regtune.dropout(x, return_mask=False, **kwargs) is x
        out = np.empty_like(x)
        assert regtune.dropout(x, out=out, return_mask=False, **kwargs) is out
        np.testing.assert_array_equal(out, x)


def test_p0_does_not_copy_a_noncontiguous_x():
    x = _data((8, 8), np.float32)[:, ::2]
    assert regtune.dropout(x, 0.0, return_mask=False) is x


@pytest.mark.parametrize("dtype", DTYPES)
def test_p1_gives_zeros(dtype):
    x = _data(1000, dtype)
    y, mask = regtune.dropout(x, 1.0, seed=0)
    assert (y == 0).all() and not np.signbit(y).any() and not mask.any()
    assert (regtune.dropout_backward(x, mask, 1.0) == 0).all()
    assert (regtune.dropout_backward(x, p=1.0, seed=0) == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_and_out(dtype):
    x = _data((31, 17), dtype)
    ref, mask = regtune.dropout(x, 0.5, seed=6)
    out = np.full_like(x, 7.0)
    y, _ = regtune.dropout(x, 0.5, seed=6, out=out)
    assert y is out and out.tobytes() == ref.tobytes()
    xc = x.copy()
    y, m2 = regtune.dropout(xc, 0.5, seed=6, out=xc)
    assert y is xc and xc.tobytes() == ref.tobytes()
    np.testing.assert_array_equal(m2, mask)


def test_empty_and_zero_dim_arrays():
    for shape in [(0,), (3, 0), (0, 4, 5)]:
        y, mask = regtune.dropout(np.empty(shape, np.float32), 0.5, seed=1)
        assert y.shape == shape and mask.shape == (0,)
    y, mask = regtune.dropout(np.array(3.0, np.float32), 0.5, seed=1)  # 0-d: one element
    assert y.shape == () and mask.shape == (1,)
    assert regtune.dropout_backward(np.empty(0), np.empty(0, np.uint8), 0.5).shape == (0,)


def test_read_only_inputs_may_be_noncontiguous_or_array_likes():
    x = _data((10, 20), np.float64)
    ref = regtune.dropout(np.ascontiguousarray(x[:, ::2]), 0.5, seed=3)[0]
    np.testing.assert_array_equal(regtune.dropout(x[:, ::2], 0.5, seed=3)[0], ref)
    lst = [[1.0, 2.0], [3.0, 4.0]]
    y = regtune.dropout(lst, 0.5, seed=3, return_mask=False)
    assert y.dtype == np.float64 and y.shape == (2, 2)


# ------------------------------------------------------------------ variants

SELU_ALPHA_PRIME = 1.7580993408473766


def _alpha_reference(x: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """torch's _dropout_impl<alpha> as NumPy: noise = keep; b = (noise - 1) * (alpha' a) +
    alpha' a p; y = x * (noise * a) + b, every operation in x's dtype."""
    t = x.dtype.type
    a = 1.0 / math.sqrt((SELU_ALPHA_PRIME**2 * p + 1) * (1 - p))
    noise = keep.astype(x.dtype)
    b = (noise - t(1)) * t(SELU_ALPHA_PRIME * a) + t(SELU_ALPHA_PRIME * a * p)
    return x * (noise * t(a)) + b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_alpha_dropout_matches_torch_formula(dtype, p):
    x = _data(5000, dtype, 7)
    y, mask = rd.alpha_dropout(x, p, seed=4, offset=9)
    keep = _keep(5000, p, 4, 9)
    np.testing.assert_array_equal(_unpack(mask, 5000), keep)
    assert y.tobytes() == _alpha_reference(x, keep, p).tobytes()


def test_alpha_dropout_matches_torch_itself_given_the_mask():
    torch = pytest.importorskip("torch")
    p = 0.3
    x = _data(4096, np.float32, 8)
    y, mask = rd.alpha_dropout(x, p, seed=5)
    # torch's own arithmetic (aten/src/ATen/native/Dropout.cpp) on our mask.
    noise = torch.from_numpy(_unpack(mask, 4096).astype(np.float32))
    a = 1.0 / math.sqrt((SELU_ALPHA_PRIME * SELU_ALPHA_PRIME * p + 1) * (1 - p))
    b = noise.add(-1).mul_(SELU_ALPHA_PRIME * a).add_(SELU_ALPHA_PRIME * a * p)
    noise.mul_(a)
    ref = torch.from_numpy(x).mul(noise).add_(b).numpy()
    assert y.tobytes() == ref.tobytes()


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_alpha_dropout_keeps_mean_zero_and_variance_one(p):
    n = 400_000
    x = rr.normal(n, dtype=np.float64, seed=31)
    y = rd.alpha_dropout(x, p, seed=32, return_mask=False)
    # Exact moments of y for x ~ N(0, 1): kept a (x + alpha' p) w.p. q = 1 - p, dropped -alpha' a q.
    q, a = 1 - p, 1 / math.sqrt((SELU_ALPHA_PRIME**2 * p + 1) * (1 - p))
    c = SELU_ALPHA_PRIME * p
    mu4 = q * a**4 * (c**4 + 6 * c**2 + 3) + p * (SELU_ALPHA_PRIME * a * q) ** 4
    assert abs(y.mean()) < K_SE * math.sqrt(1 / n), y.mean()
    assert abs(y.var() - 1) < K_SE * math.sqrt((mu4 - 1) / n), y.var()


def test_alpha_dropout_backward():
    x, dy = _data(3000, np.float32, 1), _data(3000, np.float32, 2)
    _, mask = rd.alpha_dropout(x, 0.25, seed=3, offset=7)
    a = np.float32(1 / math.sqrt((SELU_ALPHA_PRIME**2 * 0.25 + 1) * 0.75))
    expected = np.where(_unpack(mask, 3000), dy * a, np.float32(0))
    assert rd.alpha_dropout_backward(dy, mask, 0.25).tobytes() == expected.tobytes()
    assert rd.alpha_dropout_backward(dy, p=0.25, seed=3, offset=7).tobytes() == expected.tobytes()


def test_alpha_dropout_special_cases():
    x = _data(100, np.float32)
    assert rd.alpha_dropout(x, 0.0, seed=1)[0] is x
    y, mask = rd.alpha_dropout(x, 1.0, seed=1)
    assert (y == 0).all() and not mask.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 6), (3, 5, 7), (2, 3, 4, 5), (2, 2, 3, 3, 3), (5, 13, 64), (2, 3, 0)])
def test_feature_dropout_drops_whole_channels(dtype, shape):
    p, seed, offset = 0.5, 12, 3
    x = _data(shape, dtype) + dtype(10)  # no zeros in x, so zeros in y are drops
    y, mask = rd.feature_dropout(x, p, seed=seed, offset=offset)
    channels = shape[0] * shape[1]
    keep = _keep(channels, p, seed, offset).reshape(shape[:2])
    np.testing.assert_array_equal(_unpack(mask, channels).reshape(shape[:2]), keep)
    expanded = keep.reshape(shape[:2] + (1,) * (len(shape) - 2))
    expected = np.where(expanded, x * _scale(p, dtype), dtype(0))
    assert y.tobytes() == expected.tobytes()
    if x.size:
        assert 0 < keep.sum() < channels or channels < 8
        dy = _data(shape, dtype, 9)
        back = rd.feature_dropout_backward(dy, mask, p)
        assert back.tobytes() == np.where(expanded, dy * _scale(p, dtype), dtype(0)).tobytes()
        assert rd.feature_dropout_backward(dy, p=p, seed=seed, offset=offset).tobytes() == back.tobytes()


def test_feature_dropout_special_cases():
    x = _data((3, 5, 4), np.float32)
    for kwargs in ({"p": 0.0}, {"p": 0.5, "training": False}):
        y, mask = rd.feature_dropout(x, seed=1, **kwargs)
        assert y is x and _unpack(mask, 15).all() and mask.size == 2
    y, mask = rd.feature_dropout(x, 1.0, seed=1)
    assert (y == 0).all() and not mask.any() and mask.size == 2
    out = np.empty_like(x)
    y = rd.feature_dropout(x, 0.5, seed=1, out=out, return_mask=False)
    assert y is out and out.tobytes() == rd.feature_dropout(x, 0.5, seed=1)[0].tobytes()


def test_feature_dropout_kept_fraction_and_scaling_like_torch():
    torch = pytest.importorskip("torch")
    x = np.ones((64, 128, 3, 3), np.float32)
    y, mask = rd.feature_dropout(x, 0.25, seed=2)
    t = torch.nn.functional.dropout2d(torch.from_numpy(x), 0.25).numpy()
    # Same structure as torch: per channel all equal, either 0 or 1 / (1 - p).
    for arr in (y, t):
        flat = arr.reshape(64 * 128, 9)
        assert (flat == flat[:, :1]).all()
        assert set(np.unique(flat)) <= {0.0, np.float32(1 / 0.75)}
    assert stats.binomtest(int(_unpack(mask, 64 * 128).sum()), 64 * 128, 0.75).pvalue > ALPHA


def test_dropconnect_masks_weights_and_gives_the_backward():
    w = _data((16, 24), np.float32, 3)
    x = _data((5, 24), np.float32, 4)
    dc = rd.dropconnect(w, 0.4, seed=7)
    assert isinstance(dc, rd.DropConnect)
    ref_y, ref_mask = regtune.dropout(w, 0.4, seed=7)
    assert dc.weight.tobytes() == ref_y.tobytes()
    np.testing.assert_array_equal(dc.mask, ref_mask)
    # A linear layer's weight gradient: dW = (dy.T @ x) masked and scaled like the weights.
    dy = _data((5, 16), np.float32, 5)
    dw = regtune.dropout_backward(dy.T @ x, dc.mask, 0.4)
    keep = _unpack(dc.mask, w.size).reshape(w.shape)
    np.testing.assert_array_equal(dw, np.where(keep, (dy.T @ x) * np.float32(1 / 0.6), np.float32(0)))
    weight, mask = rd.dropconnect(w, 0.4, training=False)
    assert weight is w and _unpack(mask, w.size).all()


# ------------------------------------------------------------------ bad input


def _x():
    return np.ones((4, 8), np.float32)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: regtune.dropout(np.ones(8, np.int32), 0.5), TypeError, "x must have dtype"),
        (lambda: regtune.dropout(np.ones(8, ml_dtypes.float8_e5m2), 0.5), TypeError, "x must have dtype"),
        (lambda: regtune.dropout(_x(), 0.5, out=np.empty((4, 8), np.float64)), TypeError, "out must have dtype"),
        (lambda: regtune.dropout(_x(), 0.5, out=[0.0] * 32), TypeError, "out must be a numpy.ndarray"),
        (lambda: regtune.dropout(_x(), 0.5, out=np.empty((8, 8), np.float32)[:, ::2]), ValueError, "out must be C-contiguous"),
        (lambda: regtune.dropout(_x(), 0.5, out=np.empty((4, 8), np.float32).T.copy().T), ValueError, "out must be C-contiguous"),
        (lambda: regtune.dropout(_x(), 0.5, out=np.broadcast_to(np.float32(0), (4, 8))), ValueError, "out must"),
        (lambda: regtune.dropout(_x(), 0.5, out=np.empty((8, 4), np.float32)), ValueError, "out.shape"),
        (lambda: regtune.dropout(_x(), 1.5), ValueError, "p must be in"),
        (lambda: regtune.dropout(_x(), -0.1), ValueError, "p must be in"),
        (lambda: regtune.dropout(_x(), float("nan")), ValueError, "p must be finite"),
        (lambda: regtune.dropout(_x(), True), TypeError, "p must be a real number"),
        (lambda: regtune.dropout(_x(), "0.5"), TypeError, "p must be a real number"),
        (lambda: regtune.dropout(_x(), 0.5, training="yes"), TypeError, "training must be a bool"),
        (lambda: regtune.dropout(_x(), 0.5, seed=1.5), TypeError, "seed must be"),
        (lambda: regtune.dropout(_x(), 0.5, seed=1, offset=-1), ValueError, "offset must be >= 0"),
        (lambda: regtune.dropout_backward(_x(), np.zeros(3, np.uint8), 0.5), ValueError, "mask must hold ceil\\(32 / 8\\) = 4 bytes"),
        (lambda: regtune.dropout_backward(_x(), np.zeros(4, np.int8), 0.5), TypeError, "mask must have dtype uint8"),
        (lambda: regtune.dropout_backward(_x(), np.zeros(32, bool), 0.5), TypeError, "mask must have dtype uint8"),
        (lambda: regtune.dropout_backward(_x(), [0, 0, 0, 0], 0.5), TypeError, "mask must be a numpy.ndarray"),
        (lambda: regtune.dropout_backward(_x(), p=0.5), ValueError, "needs the forward's mask, or its seed"),
        (lambda: regtune.dropout_backward(_x(), np.zeros(4, np.uint8), 0.5, seed=1), ValueError, "not both"),
        (lambda: regtune.dropout_backward(_x(), p=0.5, seed=regtune.Generator(1)), TypeError, "Generator"),
        (lambda: regtune.dropout_backward(np.ones(32, np.int64), np.zeros(4, np.uint8)), TypeError, "dy must have dtype"),
        (lambda: regtune.dropout_backward(_x(), np.zeros(4, np.uint8), out=np.empty(32, np.float32)), ValueError, "out.shape"),
        (lambda: regtune.dropout_mask(-1, 0.5, seed=1), ValueError, "shape_or_n"),
        (lambda: regtune.dropout_mask(10, 2.0, seed=1), ValueError, "p must be in"),
        (lambda: rd.feature_dropout(np.ones(8, np.float32), 0.5), ValueError, "x must have at least 2 dimensions"),
        (lambda: rd.feature_dropout_backward(_x(), np.zeros(2, np.uint8), 0.5), ValueError, "mask must hold ceil\\(32 / 8\\) = 4 bytes"),
        (lambda: rd.feature_dropout_backward(np.ones((4, 8, 3)), np.zeros(12, np.uint8), 0.5), ValueError, "= 4 bytes"),
        (lambda: rd.alpha_dropout(_x(), 1.01), ValueError, "p must be in"),
        (lambda: rd.dropconnect(np.ones((2, 2), np.int64)), TypeError, "weight must have dtype"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_read_only_out_and_overlap_rejected():
    x = _x()
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        regtune.dropout(x, 0.5, out=ro)
    big = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match="out overlaps x"):
        regtune.dropout(big[:32], 0.5, seed=1, out=big[8:40])
    with pytest.raises(ValueError, match="out overlaps dy"):
        regtune.dropout_backward(big[:32], p=0.5, seed=1, out=big[1:33])


def test_native_layer_checks_its_arguments():
    # The binding never trusts sizes: a short mask or a mismatched out raises, never crashes.
    x, y = np.ones(100, np.float32), np.empty(100, np.float32)
    with pytest.raises(ValueError, match="mask must hold"):
        _core.dropout(x, y, np.empty(12, np.uint8), 1, 0, 0, 2**31, 2.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same size"):
        _core.dropout(x, np.empty(99, np.float32), None, 1, 0, 0, 2**31, 2.0, 0.0, 0.0)
    with pytest.raises(TypeError, match="x must have dtype"):
        _core.dropout(x.astype(np.float64), y, None, 1, 0, 0, 2**31, 2.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        _core.dropout(x, y, None, 1, 0, 0, 2**32 + 1, 2.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="row_len"):
        _core.dropout_apply(x, y, np.empty(2, np.uint8), 7, 2.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.dropout_apply(np.ones(200, np.float32)[::2], y, np.empty(13, np.uint8), 1, 2.0, 0.0, 0.0)


# ------------------------------------------------------------------- hostile input (issue 16)
FORWARDS = {
    "dropout": lambda x, **kw: regtune.dropout(x, **kw),
    "alpha_dropout": lambda x, **kw: rd.alpha_dropout(x, **kw),
    "feature_dropout": lambda x, **kw: rd.feature_dropout(x, **kw),
    "dropconnect": lambda x, **kw: rd.dropconnect(x, **{k: v for k, v in kw.items() if k != "return_mask"}),
}
BACKWARDS = {
    "dropout_backward": regtune.dropout_backward,
    "alpha_dropout_backward": rd.alpha_dropout_backward,
    "feature_dropout_backward": rd.feature_dropout_backward,
}
_XNAME = {"dropconnect": "weight"}


def _x4():
    return np.ones((4, 8), np.float32)


_BAD_ARRAYS = [
    (None, TypeError, "must be a float32, float64, bfloat16 or float16 array, got None"),
    (np.ma.masked_array(np.ones((4, 8), np.float32), mask=np.eye(4, 8)), TypeError, "must be a plain numpy.ndarray"),
    (np.ones((4, 8), complex), TypeError, "must have dtype float32, float64, bfloat16 or float16, got complex128"),
    (np.ones((4, 8), object), TypeError, "must have dtype float32, float64, bfloat16 or float16, got object"),
    (np.ones((4, 8), bool), TypeError, "must have dtype float32, float64, bfloat16 or float16, got bool"),
    (np.full((4, 8), "a"), TypeError, "must have dtype float32, float64, bfloat16 or float16, got <U1"),
    (np.ones((4, 8), np.int32), TypeError, "must have dtype float32, float64, bfloat16 or float16, got int32"),
    (np.ones((4, 8), ml_dtypes.float8_e4m3fn), TypeError, "must have dtype float32, float64, bfloat16 or float16, got float8_e4m3fn"),
    ([[1.0, 2.0], [1.0]], TypeError, "numpy.asarray cannot convert"),
    ({"x": 1.0}, TypeError, "must have dtype float32, float64, bfloat16 or float16, got object"),
    ("abc", TypeError, "must have dtype float32, float64, bfloat16 or float16"),
]


@pytest.mark.parametrize("fn", FORWARDS)
@pytest.mark.parametrize("bad, exc, match", _BAD_ARRAYS, ids=lambda v: type(v).__name__ if not isinstance(v, str) else "")
def test_hostile_forward_inputs_are_named(fn, bad, exc, match):
    with pytest.raises(exc, match=f"^{_XNAME.get(fn, 'x')} .*{match}"):
        FORWARDS[fn](bad, p=0.5, seed=1)


@pytest.mark.parametrize("fn", BACKWARDS)
@pytest.mark.parametrize("bad, exc, match", _BAD_ARRAYS, ids=lambda v: type(v).__name__ if not isinstance(v, str) else "")
def test_hostile_backward_inputs_are_named(fn, bad, exc, match):
    with pytest.raises(exc, match=f"^dy .*{match}"):
        BACKWARDS[fn](bad, p=0.5, seed=1)


_BAD_P = [(float("nan"), ValueError, "p must be finite"), (float("inf"), ValueError, "p must be finite"),
          (-1e-9, ValueError, r"p must be in \[0, 1\]"), (1.0 + 1e-9, ValueError, r"p must be in \[0, 1\]"),
          (True, TypeError, "p must be a real number"), ("0.5", TypeError, "p must be a real number"),
          (None, TypeError, "p must be a real number"), (0.5j, TypeError, "p must be a real number"),
          (np.array([0.5]), TypeError, "p must be a real number")]  # fmt: skip


@pytest.mark.parametrize("fn", [*FORWARDS, *BACKWARDS, "dropout_mask"])
@pytest.mark.parametrize("bad, exc, match", _BAD_P, ids=repr)
def test_hostile_probabilities_are_named(fn, bad, exc, match):
    with pytest.raises(exc, match=match):
        if fn == "dropout_mask":
            regtune.dropout_mask(10, bad, seed=1)
        elif fn in BACKWARDS:
            BACKWARDS[fn](_x4(), p=bad, seed=1)
        else:
            FORWARDS[fn](_x4(), p=bad, seed=1)


@pytest.mark.parametrize("arg", ["training", "return_mask"])
@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0, np.array([True])], ids=repr)
def test_hostile_flags_are_named(arg, bad):
    with pytest.raises(TypeError, match=f"{arg} must be a bool"):
        regtune.dropout(_x4(), 0.5, seed=1, **{arg: bad})


@pytest.mark.parametrize("shape", [2**62, (2**31, 2**31)], ids=repr)  # beyond any address space
def test_a_mask_that_cannot_be_allocated_is_a_named_memory_error_and_takes_nothing(shape):
    g = regtune.Generator(3)
    before = g.state
    with pytest.raises((MemoryError, ValueError), match="shape_or_n|runs past the end"):
        regtune.dropout_mask(shape, 0.5, seed=g)
    assert g.state == before


# ------------------------------------------------------------------------------ overlap
@pytest.mark.parametrize("fn", ["dropout", "alpha_dropout", "feature_dropout", "dropconnect", *BACKWARDS])
def test_exact_in_place_still_works(fn):
    x = regtune.random.normal((4, 8, 3), seed=2)
    if fn in BACKWARDS:
        want = BACKWARDS[fn](x.copy(), p=0.3, seed=7)
        got = BACKWARDS[fn](x, p=0.3, seed=7, out=x)
    else:
        want = FORWARDS[fn](x.copy(), p=0.3, seed=7)[0]
        got = FORWARDS[fn](x, p=0.3, seed=7, out=x)[0]
    assert got is x and np.array_equal(x, want)


@pytest.mark.parametrize("kw", [dict(training=False), dict(p=0.0)], ids=["eval", "p0"])
def test_identity_in_place_and_into_a_view_of_the_same_memory(kw):
    x = np.arange(8, dtype=np.float32)
    y, _ = regtune.dropout(x, **{"p": 0.5, **kw}, seed=1, out=x[:])  # another view object, the same elements
    assert np.shares_memory(y, x) and np.array_equal(x, np.arange(8))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b: regtune.dropout(b[:32], 0.5, seed=1, out=b[1:33]), "out overlaps x"),
        (lambda b: regtune.dropout(b[8:40], 0.5, seed=1, out=b[:32]), "out overlaps x"),
        (lambda b: regtune.dropout(b[:32].reshape(4, 8), 0.5, seed=1, out=b[4:36].reshape(4, 8)), "out overlaps x"),
        (lambda b: regtune.dropout(b[31::-1], 0.5, seed=1, out=b[:32]), "out overlaps x"),  # reversed
        (lambda b: regtune.dropout(b[::2][:16], 0.5, seed=1, out=b[:16]), "out overlaps x"),  # strided x
        (lambda b: rd.alpha_dropout(b[:32], 0.5, seed=1, out=b[2:34]), "out overlaps x"),
        (lambda b: rd.feature_dropout(b[:32].reshape(4, 8), 0.5, seed=1, out=b[8:40].reshape(4, 8)), "out overlaps x"),
        (lambda b: rd.dropconnect(b[:32].reshape(4, 8), 0.5, seed=1, out=b[1:33].reshape(4, 8)), "out overlaps weight"),
        (lambda b: regtune.dropout(b[:32], 0.5, training=False, out=b[1:33]), "out overlaps x"),
        (lambda b: regtune.dropout_backward(b[:32], p=0.5, seed=1, out=b[3:35]), "out overlaps dy"),
        (lambda b: rd.alpha_dropout_backward(b[:32], p=0.5, seed=1, out=b[3:35]), "out overlaps dy"),
        (lambda b: rd.feature_dropout_backward(b[:32].reshape(4, 8), p=0.5, seed=1, out=b[8:40].reshape(4, 8)),
         "out overlaps dy"),
        (lambda b: regtune.dropout_backward(b[:32], p=0.0, seed=1, out=b[3:35]), "out overlaps dy"),
    ],
)  # fmt: skip
def test_partial_overlap_of_out_is_refused_naming_both(call, match):
    buf = np.arange(48, dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        call(buf)
    assert np.array_equal(buf, np.arange(48, dtype=np.float32))


def test_out_in_the_gaps_of_a_strided_x_is_not_an_overlap():
    """x = b[:, :2] (rows 8 apart) and out in the columns between: the memory bounds overlap,
    no element does (the exact test decides); the result equals the out-of-place one."""
    b = np.arange(16, dtype=np.float32).reshape(2, 8)
    x = b[:, :2]
    out = b.reshape(-1)[2:6].reshape(2, 2)
    want = regtune.dropout(x.copy(), 0.5, seed=3)[0]
    regtune.dropout(x, 0.5, seed=3, out=out)
    assert np.array_equal(out, want) and np.array_equal(b[:, :2], [[0, 1], [8, 9]])


def _mask_for(y_seed=5, n=32):
    return regtune.dropout(np.ones(n, np.float32), 0.5, seed=y_seed)


@pytest.mark.parametrize("fn", ["dropout_backward", "alpha_dropout_backward"])
def test_a_mask_stored_inside_out_is_refused(fn):
    _, mask = _mask_for()
    arena = np.zeros(40, np.float32)
    stored = arena.view(np.uint8)[4:8]  # inside out = arena[:32]
    stored[:] = mask
    with pytest.raises(ValueError, match="mask overlaps out"):
        BACKWARDS[fn](np.ones(32, np.float32), stored, 0.5, out=arena[:32])
    assert np.array_equal(stored, mask)


def test_a_mask_stored_inside_dy_written_in_place_is_refused_and_read_only_dy_is_fine():
    y, mask = _mask_for()
    dy = np.ones(40, np.float32)
    stored = dy.view(np.uint8)[128:132]  # in dy[32], outside dy[:32]
    stored[:] = mask
    assert np.array_equal(regtune.dropout_backward(dy[:32], stored, 0.5), y)  # dy only read: exact
    inside = dy.view(np.uint8)[:4]  # now in dy[0], which the backward writes when out=dy
    inside[:] = mask
    with pytest.raises(ValueError, match="mask overlaps out"):
        regtune.dropout_backward(dy[:32], inside, 0.5, out=dy[:32])
    # a feature mask too
    x = np.ones((4, 8, 2), np.float32)
    fy, fmask = rd.feature_dropout(x, 0.5, seed=2)
    arena = np.zeros(65, np.float32)
    arena.view(np.uint8)[:4][: fmask.size] = fmask
    with pytest.raises(ValueError, match="mask overlaps out"):
        rd.feature_dropout_backward(x, arena.view(np.uint8)[: fmask.size], 0.5, out=arena[:64].reshape(4, 8, 2))


def test_a_non_contiguous_mask_inside_out_is_copied_first_so_it_is_exact():
    y, mask = _mask_for()
    arena = np.zeros(32, np.float32)
    strided = arena.view(np.uint8)[: 2 * mask.size : 2]  # every other byte of out's first elements
    strided[:] = mask
    assert np.array_equal(regtune.dropout_backward(np.ones(32, np.float32), strided, 0.5, out=arena), y)


@pytest.mark.parametrize("fn", BACKWARDS)
def test_a_masked_mask_or_out_is_refused(fn):
    dy = _x4()
    with pytest.raises(TypeError, match="mask must be a plain"):
        BACKWARDS[fn](dy, np.ma.masked_array(np.zeros(4, np.uint8)), 0.5)
    with pytest.raises(TypeError, match="out must be a plain"):
        BACKWARDS[fn](dy, p=0.5, seed=1, out=np.ma.masked_array(np.zeros((4, 8), np.float32)))


@pytest.mark.parametrize("fn", FORWARDS)
def test_a_masked_out_is_refused(fn):
    with pytest.raises(TypeError, match="out must be a plain"):
        FORWARDS[fn](_x4(), p=0.5, seed=1, out=np.ma.masked_array(np.zeros((4, 8), np.float32)))


@settings(max_examples=40, deadline=None)
@given(xs=st.integers(0, 16), os_=st.integers(0, 16), n=st.integers(1, 16))
def test_any_shifted_out_is_refused_or_exact(xs, os_, n):
    buf = np.arange(40, dtype=np.float32)
    x, out = buf[xs : xs + n], buf[os_ : os_ + n]
    want = regtune.dropout(x.copy(), 0.5, seed=4)[0]
    if xs != os_ and abs(xs - os_) < n:
        with pytest.raises(ValueError, match="out overlaps x"):
            regtune.dropout(x, 0.5, seed=4, out=out)
    else:
        regtune.dropout(x, 0.5, seed=4, out=out)
        assert np.array_equal(out, want)


# ------------------------------------------------------------------------------- names


def test_regtune_dropout_is_the_module_and_calls_dropout():
    # One object for both names (issue 14): regtune.dropout(x, p) calls the function, and
    # regtune.dropout.<name> is the module's <name>.
    import inspect
    import pickle

    import regtune.dropout as imported
    from regtune.dropout import dropout as function

    assert regtune.dropout is rd is imported is regtune._dropout_module
    assert callable(regtune.dropout) and function is rd.dropout and function is not rd
    x = np.arange(1, 20, dtype=np.float32)
    for got, want in zip(regtune.dropout(x, 0.3, seed=4, offset=2), function(x, 0.3, seed=4, offset=2)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(regtune.dropout(x, p=0.3, seed=4, return_mask=False), function(x, 0.3, seed=4)[0])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got p=1.5"):
        regtune.dropout(x, 1.5)
    for name in rd.__all__:
        assert getattr(regtune.dropout, name) is getattr(rd, name)
    assert regtune.dropout.alpha_dropout is rd.alpha_dropout and regtune.dropout.DropConnect is rd.DropConnect
    assert regtune.dropout_backward is rd.dropout_backward and regtune.dropout_mask is rd.dropout_mask
    assert inspect.signature(regtune.dropout) == inspect.signature(function)  # x included
    assert pickle.loads(pickle.dumps(regtune.dropout)) is regtune.dropout
    assert pickle.loads(pickle.dumps(function)) is function
    assert "dropout" in regtune.__all__ and "Dropout" in (regtune.dropout.__doc__ or "")


# ------------------------------------------------------------------------------ bfloat16 and float16

LOW = [np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)]
LOW_IDS = ["bf16", "f16"]
_PAIRS = [  # forward, backward (None: dropconnect's is dropout_backward)
    (regtune.dropout, regtune.dropout_backward),
    (rd.alpha_dropout, rd.alpha_dropout_backward),
    (rd.feature_dropout, rd.feature_dropout_backward),
]


def _u16(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16)


@pytest.mark.parametrize("dt", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("fwd,bwd", _PAIRS, ids=["dropout", "alpha", "feature"])
def test_16bit_dropout_is_the_float32_result_rounded_on_every_path_and_thread_count(fwd, bwd, dt):
    # x holds NaN, inf, subnormals and values whose product rounds at a tie; same mask as float32
    x = rr.normal((5, 7, 301), 0.0, 3.0, dtype=dt, seed=1)
    x.reshape(-1)[:6] = np.array([np.nan, np.inf, -np.inf, 1e-40, -6e-8, 65504.0], np.float32).astype(dt)
    x32 = x.astype(np.float32)
    for path in SIMD_PATHS:
        for threads in (1, 2):
            # 65504 * scale overflows float16 to inf, in the kernel as in NumPy's cast (which warns)
            with simd_path(path), num_threads(threads), np.errstate(over="ignore"):
                for p in (0.3, 0.75, 1.0):
                    y, mask = fwd(x, p, seed=4, offset=9)
                    y32, mask32 = fwd(x32, p, seed=4, offset=9)
                    assert y.dtype == dt and np.array_equal(mask, mask32)
                    assert np.array_equal(_u16(y), _u16(y32.astype(dt))), (path, threads, p)
                    dx = bwd(x, mask, p)
                    assert np.array_equal(_u16(dx), _u16(bwd(x32, mask32, p).astype(dt)))
                    assert np.array_equal(_u16(dx), _u16(bwd(x, p=p, seed=4, offset=9)))  # regenerated


@pytest.mark.parametrize("dt", LOW, ids=LOW_IDS)
def test_16bit_dropout_in_place_out_and_dropconnect(dt):
    x = rr.normal((33, 65), dtype=dt, seed=2)
    want, mask = regtune.dropout(x, 0.4, seed=3)
    y = x.copy()
    got, mask2 = regtune.dropout(y, 0.4, seed=3, out=y)  # in place
    assert got is y and np.array_equal(_u16(y), _u16(want)) and np.array_equal(mask, mask2)
    out = np.empty_like(x)
    assert regtune.dropout(x, 0.4, seed=3, out=out, return_mask=False) is out
    assert np.array_equal(_u16(out), _u16(want))
    dc = rd.dropconnect(x, 0.4, seed=3)
    assert np.array_equal(_u16(dc.weight), _u16(want)) and np.array_equal(dc.mask, mask)
    # kept values: x * float32(1 / (1 - p)) in float32, rounded once
    keep = np.unpackbits(mask, bitorder="little", count=x.size).astype(bool).reshape(x.shape)
    scaled = (x.astype(np.float32) * np.float32(1 / 0.6)).astype(dt)
    assert np.array_equal(_u16(want)[keep], _u16(scaled)[keep]) and not _u16(want)[~keep].any()


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: regtune.dropout(np.ones(8, ml_dtypes.bfloat16), 0.5, out=np.empty(8, np.float16)), TypeError,
         "out must have dtype bfloat16, got float16"),
        (lambda: regtune.dropout(np.ones(8, np.float16), 0.5, out=np.empty(8, np.float32)), TypeError,
         "out must have dtype float16, got float32"),
        (lambda: regtune.dropout(np.ones(8, np.float16), 0.5, out=np.empty(16, np.float16)[::2]), ValueError,
         "out must be C-contiguous"),
        (lambda: regtune.dropout_backward(np.ones(8, ml_dtypes.bfloat16), np.zeros(2, np.uint8), 0.5,
                                          out=np.empty(8, np.float16)), TypeError, "out must have dtype bfloat16"),
        (lambda: _core.dropout(np.ones(8, ml_dtypes.bfloat16), np.empty(8, np.float16), None, 0, 0, 0, 0, 1.0, 0.0, 0.0),
         TypeError, "x must have dtype float16"),
        (lambda: _core.dropout_apply(np.ones(8, np.float16), np.empty(16, np.float16)[::2], np.zeros(1, np.uint8), 1,
                                     1.0, 0.0, 0.0), ValueError, "out must be C-contiguous"),
    ],
)  # fmt: skip
def test_16bit_bad_arrays_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_16bit_read_only_out_is_refused():
    out = np.zeros(8, np.float16)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        regtune.dropout(np.ones(8, np.float16), 0.5, seed=1, out=out)
    assert not _u16(out).any()


@settings(max_examples=40)
@given(
    n=st.integers(0, 300),
    p=st.floats(0.0, 1.0),
    offset=st.integers(0, 2**40),
    dt=st.sampled_from(LOW),
    kind=st.sampled_from(["dropout", "alpha"]),
)
def test_16bit_property_float32_result_rounded(n, p, offset, dt, kind):
    fwd, bwd = (regtune.dropout, regtune.dropout_backward) if kind == "dropout" else _PAIRS[1]
    x = rr.normal(n, 0.0, 4.0, dtype=dt, seed=n)
    y, mask = fwd(x, p, seed=7, offset=offset)
    y32, mask32 = fwd(x.astype(np.float32), p, seed=7, offset=offset)
    assert np.array_equal(mask, mask32) and np.array_equal(_u16(y), _u16(y32.astype(dt)))
    assert np.array_equal(_u16(bwd(x, p=p, seed=7, offset=offset)), _u16(bwd(x, mask, p)))
