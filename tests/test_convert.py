"""The float32 <-> bfloat16 / float16 conversion kernels (regtune._core.convert) and stochastic
rounding (regtune._core.round_stochastic): exact against ml_dtypes and NumPy, identical on every
SIMD path and thread count, and stochastic rounding unbiased with the exact probability.

Conversions are compared with ``ml_dtypes`` (bfloat16) and NumPy (float16) casts, bit for bit.
The one documented difference: a float32 signalling NaN narrowed to float16 comes out quieted
(sign | 0x7E00 | the payload's top 10 bits), as x86's F16C converts; NumPy keeps it signalling.
Every other value, quiet NaN payloads included, matches.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from scipy import stats

from regtune import _core

from .conftest import SIMD_PATHS, num_threads, simd_path

BF16, F16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)
LOW = [BF16, F16]
IDS = ["bf16", "f16"]

ALL16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)  # every 16-bit pattern


def _bits16(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16)


def _narrow(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    out = np.empty(x.shape, dt)
    _core.convert(x, out)
    return out


def _widen(h: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape, np.float32)
    _core.convert(h, out)
    return out


def _f32(bits: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bits, dtype=np.uint32).view(np.float32)


def _edges() -> np.ndarray:
    """float32 values at the places narrowing can go wrong, with both signs: zeros, the subnormal
    boundaries of both 16-bit formats and of float32, ties at every exponent (exact halfway, and
    one float32 ulp either side), float16's overflow boundary (65504 and the tie 65520 with its
    neighbours), bfloat16's largest value and the tie above it, infinities and NaN payloads."""
    f = []
    for e in range(-149, 128):  # every float32 exponent: the halfway points of both formats
        for keep in (7, 10):  # bfloat16 keeps 7 mantissa bits, float16 10
            base = np.float64(2.0) ** e
            for m in (0, 1, 2, 3, (1 << keep) - 1):
                for half in (0.5, 0.25, 0.75):
                    f.append((1 + (m + half) / (1 << keep)) * base)
    f += [0.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14, 2.0**-14 - 2.0**-25, 6.0e-8, 65504.0, 65519.0, 65520.0,
          65521.0, 65536.0, 2.0**-126, 2.0**-133, 2.0**-149, float(ml_dtypes.finfo(BF16).max), 3.3961e38, 3.4e38]
    x = np.array(f, np.float64)
    x = x[np.abs(x) < 3.5e38].astype(np.float32)
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])
    bits = x.view(np.uint32)
    special = np.array([0x7F800000, 0x7FC00000, 0x7F800001, 0x7FA00000, 0x7FFFFFFF, 0x7FC00001, 0x7F802000,
                        0x7FBFE000, 0x00000001, 0x007FFFFF, 0x00400000, 0x00008000, 0x00018000], np.uint32)
    bits = np.concatenate([bits, special])
    return _f32(np.concatenate([bits, bits ^ np.uint32(0x80000000)]))


def _narrow_inputs() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.concatenate([_edges(), _f32(rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint64).astype(np.uint32))])


# ------------------------------------------------------------------------------ exact widening


@pytest.mark.parametrize("dt", LOW, ids=IDS)
def test_widening_is_exact_on_all_65536_values(dt, each_simd):
    h = ALL16.view(dt)
    got = _widen(h)
    want = h.astype(np.float32)
    finite = ~np.isnan(want)
    assert np.array_equal(got.view(np.uint32)[finite], want.view(np.uint32)[finite])
    # NaN: a NaN of the same sign whose payload keeps the 16-bit one (quieted for float16, as F16C)
    nan = ~finite
    assert np.isnan(got[nan]).all()
    g, w = got.view(np.uint32)[nan], want.view(np.uint32)[nan]
    assert np.array_equal(g | np.uint32(0x00400000), w | np.uint32(0x00400000))


# ------------------------------------------------------------------------------ narrowing


@pytest.mark.parametrize("dt", LOW, ids=IDS)
def test_narrowing_rounds_to_nearest_even_like_ml_dtypes_and_numpy(dt, each_simd):
    x = _narrow_inputs()
    got = _bits16(_narrow(x, dt))
    with np.errstate(over="ignore", invalid="ignore"):
        want = _bits16(x.astype(dt))
    nan = np.isnan(x)
    assert np.array_equal(got[~nan], want[~nan])
    if dt == BF16:
        # bfloat16 NaN: the quiet NaN of x's sign, as ml_dtypes makes it
        assert np.array_equal(got[nan], want[nan])
    else:
        # float16 NaN: a quiet NaN passes as NumPy passes it. A signalling one NumPy keeps
        # signalling (setting a low payload bit when the kept ones are all zero); we quiet it as
        # F16C does: sign | 0x7E00 | the payload's top 10 bits.
        b = x.view(np.uint32)[nan]
        quiet = (b & np.uint32(0x00400000)) != 0
        assert np.array_equal(got[nan][quiet], want[nan][quiet])
        f16c = ((b >> 16) & 0x8000) | 0x7E00 | ((b >> 13) & 0x3FF)
        assert np.array_equal(got[nan][~quiet], f16c[~quiet].astype(np.uint16))
        assert np.isnan(want[nan].view(F16)).all() and not quiet.all()  # the edge set holds signalling NaNs


def test_float16_overflow_boundary():
    x = np.array([65504, 65519.996, 65520, 65535, -65520, 1e5], np.float32)
    got = _narrow(x, F16).astype(np.float64)
    assert got.tolist() == [65504, 65504, np.inf, np.inf, -np.inf, np.inf]


@pytest.mark.parametrize("dt", LOW, ids=IDS)
def test_conversions_identical_across_paths_and_threads(dt):
    x = _narrow_inputs()[: 100_003]
    ref = None
    for path in SIMD_PATHS:
        for threads in (1, 2):
            with simd_path(path), num_threads(threads):
                got = (_bits16(_narrow(x, dt)).tobytes(), _widen(ALL16.view(dt)).tobytes())
            ref = ref or got
            assert got == ref, (path, threads)


# ------------------------------------------------------------------------------ stochastic rounding


def _round_sr(x: np.ndarray, dt: np.dtype, key: int = 5, first: int = 0) -> np.ndarray:
    out = np.empty(x.shape, dt)
    _core.round_stochastic(x, out, key, 0, first)
    return out


def _neighbours(x: np.ndarray, dt: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The 16-bit values toward and away from zero around each finite x (lo == hi when exact)."""
    x64 = x.astype(np.float64)
    near = x.astype(dt)
    n64 = near.astype(np.float64)
    bits = _bits16(near).astype(np.int32)
    # the neighbour on the other side of x from the nearest value, in magnitude steps
    toward = np.abs(n64) > np.abs(x64)
    other_bits = np.where(toward, bits - 1, bits + 1).astype(np.uint16)
    other = other_bits.view(dt).astype(np.float64)
    exact = n64 == x64
    lo = np.where(exact, n64, np.where(toward, other, n64))
    hi = np.where(exact, n64, np.where(toward, n64, other))
    return lo, hi


@pytest.mark.parametrize("dt", LOW, ids=IDS)
def test_stochastic_rounding_gives_only_the_two_neighbours(dt):
    rng = np.random.default_rng(3)
    limit = 3e38 if dt == BF16 else 6e4
    x = (rng.standard_normal(50_000) * rng.choice([1e-6, 1e-3, 1.0, 1e3], 50_000)).astype(np.float32)
    x = np.concatenate([x, np.float32([0, -0.0, 1.0, -2.5, limit, -limit])])  # exact ones stay
    got = _round_sr(x, dt).astype(np.float64)
    lo, hi = _neighbours(x, dt)
    assert ((got == lo) | (got == hi)).all()
    exact = lo == hi
    assert np.array_equal(got[exact], x[exact].astype(np.float64))


@pytest.mark.parametrize("dt", LOW, ids=IDS)
def test_stochastic_rounding_is_unbiased(dt):
    # 200_000 roundings of each of a few values between two neighbours; the mean of the results
    # must be x within 5 standard errors of the two-point distribution.
    n = 200_000
    for v in (1.0 + 1 / 3 * 2**-7, 1.0 + 0.9 * 2**-10, -3.14159, 1e-3 + 1e-7, 7e-6):
        x = np.full(n, v, np.float32)
        got = _round_sr(x, dt, key=17).astype(np.float64)
        lo, hi = _neighbours(x[:1], dt)
        p = (abs(float(x[0])) - abs(lo[0])) / (abs(hi[0]) - abs(lo[0]))
        se = abs(hi[0] - lo[0]) * np.sqrt(p * (1 - p) / n)
        assert abs(got.mean() - float(x[0])) <= 5 * se, (v, got.mean(), float(x[0]), se)


def test_bfloat16_stochastic_rounding_probability_is_exactly_k_over_65536():
    # x is k / 65536 of the way from 1 to the next bfloat16 (2**-7 above): it rounds up with
    # probability k / 65536 exactly. Binomial test at the 1e-6 level for each k.
    n = 100_000
    for k in (1, 255, 4096, 32767, 32768, 50000, 65535):
        x = _f32(np.full(n, 0x3F800000 + k, np.uint32))
        up = int((_bits16(_round_sr(x, BF16, key=k)) == 0x3F81).sum())
        assert stats.binomtest(up, n, k / 65536).pvalue > 1e-6, (k, up)


@pytest.mark.parametrize("dt", LOW, ids=IDS)
def test_stochastic_rounding_is_addressable_and_identical_across_paths_and_threads(dt):
    x = np.random.default_rng(1).standard_normal(100_003).astype(np.float32)
    ref = None
    for path in SIMD_PATHS:
        for threads in (1, 2):
            with simd_path(path), num_threads(threads):
                got = _bits16(_round_sr(x, dt)).tobytes()
                tail = _bits16(_round_sr(x[777:], dt, first=777))
            ref = ref or got
            assert got == ref, (path, threads)
            assert np.array_equal(tail, np.frombuffer(ref, np.uint16)[777:])  # element i uses word first + i


# ------------------------------------------------------------------------------ hostile arguments


def _readonly(dt: np.dtype) -> np.ndarray:
    a = np.zeros(4, dt)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: _core.convert(np.zeros(4, np.float64), np.zeros(4, BF16)), TypeError, "x float32"),
        (lambda: _core.convert(np.zeros(4, np.float32), np.zeros(4, np.float32)), TypeError, "out bfloat16"),
        (lambda: _core.convert(np.zeros(4, BF16), np.zeros(4, F16)), TypeError, "convert"),
        (lambda: _core.convert(np.zeros(4, np.float32), np.zeros(5, BF16)), ValueError, "same size"),
        (lambda: _core.convert(np.zeros(8, np.float32)[::2], np.zeros(4, BF16)), ValueError, "x must be C-contiguous"),
        (lambda: _core.convert(np.zeros(4, np.float32), np.zeros(8, F16)[::2]), ValueError, "out must be C-contiguous"),
        (lambda: _core.convert(np.zeros(4, np.float32), _readonly(F16)), ValueError, "out must be writable"),
        (lambda: _core.convert([0.0], np.zeros(1, BF16)), TypeError, "x must be a numpy.ndarray"),
        (lambda: _core.round_stochastic(np.zeros(4, np.float64), np.zeros(4, BF16), 0, 0, 0), TypeError, "x must have dtype"),
        (lambda: _core.round_stochastic(np.zeros(4, np.float32), np.zeros(4, np.float32), 0, 0, 0), TypeError, "out must be"),
        (lambda: _core.round_stochastic(np.zeros(4, np.float32), np.zeros(8, BF16)[::2], 0, 0, 0), ValueError, "out must be"),
        (lambda: _core.round_stochastic(np.zeros(4, np.float32), np.zeros(4, BF16), 0, 0, 2**64 - 2), ValueError, "stream|first|past"),
    ],
)
def test_bad_arguments_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
