"""Property-based tests (hypothesis) over every public function of regtune.random, regtune.init,
regtune.dropout, regtune.penalties and regtune.optim.

Each property draws shapes (empty, one element, sizes that are not multiples of any vector
width), dtypes, strides, seeds, offsets near the 2**32, 2**63 and 2**64 boundaries and NaN/Inf
values, and checks that the call either matches a plain NumPy reference or raises a
TypeError/ValueError naming the argument; an array that would be written must never be a
silent copy (a non-contiguous, read-only or wrongly typed ``out`` raises and stays untouched).

The examples are derandomized (the "regtune" profile in conftest.py), so CI sees the same
examples on every run; HYPOTHESIS_PROFILE=thorough draws many more.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import regtune
import regtune.init as init
import regtune.random as rr
from regtune import dropout as _dropout_fn  # noqa: F401  (the function; the module is below)
from regtune import optim, penalties

from .test_optim import CASES as OPTIM_CASES, EXTRAS as OPTIM_EXTRAS, _reference
from .test_random import _box_muller_ref32, _truncnorm_ref, _u64, bits_ref

D = regtune._dropout_module
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
U64 = 2**64

# ------------------------------------------------------------------------------ strategies

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=19)
shapes_2d = hnp.array_shapes(min_dims=2, max_dims=4, min_side=0, max_side=9)
dtypes = st.sampled_from(DTYPES)
seeds = st.one_of(st.sampled_from([0, 1, U64 - 1]), st.integers(0, U64 - 1))


def _near(b: int, r: int = 40) -> st.SearchStrategy[int]:
    return st.integers(max(0, b - r), b + r)


# Offsets in elements: small, and near the 2**32 word carry, 2**63 (the end of the float64
# stream) and 2**64 (the end of the word stream).
offsets = st.one_of(st.integers(0, 100), _near(2**32), _near(2**62), _near(2**63), st.integers(U64 - 300, U64 + 3))
bad_floats = st.sampled_from([math.nan, math.inf, -math.inf])


def _limit(dt: np.dtype) -> int:
    """Elements a stream holds in dtype dt (one word per float32, two per float64)."""
    return U64 if dt == np.float32 else U64 // 2


def _float_arrays(dtype, shape, nan=True):
    elements = st.floats(-1e6, 1e6, width=32) if not nan else st.one_of(
        st.floats(-1e6, 1e6, width=32), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]))
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def bad_outs(draw, dt: np.dtype, shape: tuple[int, ...]):
    """An array of ``shape`` that must be refused as ``out`` for dtype ``dt``: non-contiguous,
    read-only, or of another dtype. Returns (array, the base to check for changes)."""
    kind = draw(st.sampled_from(["strided", "transposed", "readonly", "dtype"]))
    if kind == "strided":
        assume(math.prod(shape) > 1)
        base = np.zeros(shape[:-1] + (2 * shape[-1],), dt)
        return base[..., ::2], base
    if kind == "transposed":
        assume(len(shape) >= 2 and shape[0] > 1 and shape[-1] > 1)
        base = np.zeros(shape[::-1], dt)
        return base.T, base
    if kind == "readonly":
        base = np.zeros(shape, dt)
        base.flags.writeable = False
        return base, base
    other = draw(st.sampled_from([np.int16, np.int32, np.float64 if dt == np.float32 else np.float32]))
    base = np.zeros(shape, other)
    return base, base


def _raises_naming(exc_types, name):
    return pytest.raises(exc_types, match=name)


# --------------------------------------------------------------------------- regtune.random


@given(n=st.integers(0, 70), seed=seeds, offset=offsets)
def test_bits_match_the_reference_or_raise(n, seed, offset):
    if offset + n > U64:
        with pytest.raises(ValueError, match="offset"):
            rr.bits(n, seed=seed, offset=offset)
        return
    np.testing.assert_array_equal(rr.bits(n, seed=seed, offset=offset), bits_ref(n, seed, offset))


def _sampler_reference(name: str, dt: np.dtype, n: int, seed: int, offset: int, params: tuple) -> np.ndarray:
    """The samplers' NumPy references (tests/test_random.py) from the raw words."""
    words_per = 1 if dt == np.float32 else 2
    w = bits_ref(n * words_per, seed, offset * words_per).astype(np.uint64)
    if name == "uniform":
        lo, hi = params
        if dt == np.float32:
            u = (w >> np.uint64(8)).astype(np.float64) / 2.0**24
        else:
            u = (_u64(w) >> np.uint64(12)).astype(np.float64) / 2.0**52
        return lo + (hi - lo) * u
    if name == "normal":
        m, s = params
        if dt == np.float32:
            # Box-Muller pairs are (even, odd) elements: start on a pair, then drop the extra.
            first = offset - offset % 2
            wp = bits_ref(n + 2, seed, first).astype(np.uint64)[: (n + offset % 2 + 1) // 2 * 2]
            return (m + s * _box_muller_ref32(wp))[offset % 2:offset % 2 + n]
        w2 = _u64(bits_ref(2 * (n + 1), seed, 2 * (offset - offset % 2)).astype(np.uint64))
        u1 = ((w2[0::2] >> np.uint64(12)).astype(np.float64) * 2 + 1) / 2.0**53
        theta = 2 * np.pi * (w2[1::2] >> np.uint64(11)).astype(np.float64) / 2.0**53
        r = np.sqrt(-2.0 * np.log(u1))
        z = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).ravel()
        return (m + s * z)[offset % 2:offset % 2 + n]
    m, s, a, b = params
    if dt == np.float32:
        u = ((w >> np.uint64(9)).astype(np.float64) * 2 + 1) / 2.0**24
    else:
        u = ((_u64(w) >> np.uint64(12)).astype(np.float64) * 2 + 1) / 2.0**53
    return _truncnorm_ref(u, m, s, a, b)


@given(
    name=st.sampled_from(["uniform", "normal", "truncated_normal"]),
    shape=shapes, dt=dtypes, seed=seeds, offset=offsets,
    loc=st.floats(-10, 10), scale=st.floats(0.01, 10), width=st.floats(0.5, 4),
)  # fmt: skip
def test_samplers_match_the_reference_or_raise(name, shape, dt, seed, offset, loc, scale, width):
    n = math.prod(shape)
    params = {
        "uniform": (loc, loc + width * scale),
        "normal": (loc, scale),
        "truncated_normal": (loc, scale, loc - width * scale, loc + 0.5 * width * scale),
    }[name]
    f = getattr(rr, name)
    if offset + n > _limit(dt):
        with pytest.raises(ValueError, match="offset"):
            f(shape, *params, dtype=dt, seed=seed, offset=offset)
        return
    got = f(shape, *params, dtype=dt, seed=seed, offset=offset)
    assert got.shape == shape and got.dtype == dt and np.isfinite(got).all()
    if n == 0 or (name == "normal" and offset + n + 2 > _limit(dt)):
        return  # (the normal reference reads one pair past the end)
    ref = _sampler_reference(name, dt, n, seed, offset, params).reshape(shape)
    span = max(abs(v) for v in params) + scale
    tol = 1e-5 if dt == np.float32 else 1e-12
    if name == "truncated_normal" and dt == np.float32 and rr._core.truncnorm_mass(*params) < 1 / 256:
        return  # float32 switches to the float64 kernel there (documented); covered in test_random
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * span)
    if name == "uniform":
        assert (got >= dt.type(params[0])).all() and (got < dt.type(params[1])).all()
    if name == "truncated_normal":
        assert (got >= params[2]).all() and (got <= params[3]).all()
    # Addressability: the same elements as a slice of one larger draw that starts earlier.
    k = min(offset, 5)
    whole = f(n + k, *params, dtype=dt, seed=seed, offset=offset - k)
    assert whole[k:].tobytes() == got.tobytes()


@given(
    name=st.sampled_from(["uniform", "normal", "truncated_normal"]),
    which=st.integers(0, 3), bad=bad_floats, dt=dtypes,
)  # fmt: skip
def test_samplers_refuse_non_finite_parameters(name, which, bad, dt):
    params = {"uniform": [0.0, 1.0], "normal": [0.0, 1.0], "truncated_normal": [0.0, 1.0, -2.0, 2.0]}[name]
    which %= len(params)
    params[which] = bad
    if name == "truncated_normal" and which >= 2 and not math.isnan(bad):
        # Infinite cut-offs are allowed (one-sided truncation) when they keep a < b.
        if (which == 2 and bad < 0) or (which == 3 and bad > 0):
            got = rr.truncated_normal(5, *params, dtype=dt, seed=0)
            assert np.isfinite(got).all()
            return
    argname = {"uniform": ["low", "high"], "normal": ["mean", "std"],
               "truncated_normal": ["mean", "std", "a", "b"]}[name][which]  # fmt: skip
    with pytest.raises(ValueError, match=f"{argname}|a must be < b"):
        getattr(rr, name)(5, *params, dtype=dt, seed=0)


@given(data=st.data(), name=st.sampled_from(["uniform", "normal", "truncated_normal"]),
       shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9), dt=dtypes)  # fmt: skip
def test_samplers_never_fill_a_silent_copy(data, name, shape, dt):
    out, base = data.draw(bad_outs(dt, shape))
    before = base.copy()
    with pytest.raises((TypeError, ValueError), match="out"):
        getattr(rr, name)(None, dtype=dt, seed=1, out=out)
    assert base.tobytes() == before.tobytes()


@given(sizes=st.lists(st.integers(0, 23), min_size=1, max_size=6),
       kinds=st.lists(st.sampled_from(["bits", "uniform32", "normal64", "trunc32"]), min_size=6, max_size=6),
       seed=seeds)  # fmt: skip
def test_generator_calls_equal_offset_calls(sizes, kinds, seed):
    """A Generator consumes whole Philox blocks: call k starts at the block after call k-1."""
    g = regtune.Generator(seed)
    block = 0
    for n, kind in zip(sizes, kinds):
        per_block = {"bits": 4, "uniform32": 4, "normal64": 2, "trunc32": 4}[kind]
        first = block * per_block
        if kind == "bits":
            got, want = g.bits(n), rr.bits(n, seed=seed, offset=first)
        elif kind == "uniform32":
            got, want = g.uniform(n), rr.uniform(n, seed=seed, offset=first)
        elif kind == "normal64":
            got, want = g.normal(n, dtype=np.float64), rr.normal(n, dtype=np.float64, seed=seed, offset=first)
        else:
            got, want = g.truncated_normal(n), rr.truncated_normal(n, seed=seed, offset=first)
        assert got.tobytes() == want.tobytes()
        block = -(-(first + n) // per_block)
    assert g.state["block"] == block


# ----------------------------------------------------------------------------- regtune.init

FAN_INITS = ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "lecun_uniform",
             "lecun_normal", "variance_scaling"]  # fmt: skip


def _init_reference(name, shape, dt, seed, offset, gain, mode, dist):
    """torch.nn.init's formulas (Keras's for lecun/variance_scaling), as sampler calls."""
    rf = math.prod(shape[2:])
    fan_in, fan_out = max(shape[1] * rf, 1), max(shape[0] * rf, 1)
    kw = dict(dtype=dt, seed=seed, offset=offset)
    if name.startswith("xavier"):
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        return ("uniform", math.sqrt(3.0) * std) if name.endswith("uniform") else ("normal", std), kw
    if name.startswith("kaiming"):
        fan = fan_in if mode == "fan_in" else fan_out
        std = math.sqrt(2.0 / (1 + gain**2)) / math.sqrt(fan)  # leaky_relu with slope `gain`
        return ("uniform", math.sqrt(3.0) * std) if name.endswith("uniform") else ("normal", std), kw
    if name.startswith("lecun"):
        return ("uniform", math.sqrt(3.0 / fan_in)) if name.endswith("uniform") else (
            "normal", 1.0 / math.sqrt(fan_in)), kw
    fan = {"fan_in": fan_in, "fan_out": fan_out}.get(mode, (fan_in + fan_out) / 2.0)
    var = gain / fan
    if dist == "uniform":
        return ("uniform", math.sqrt(3.0 * var)), kw
    if dist == "normal":
        return ("normal", math.sqrt(var)), kw
    return ("truncated_normal", math.sqrt(var) / 0.87962566103423978), kw


@given(name=st.sampled_from(FAN_INITS), shape=shapes_2d, dt=dtypes, seed=seeds, offset=offsets,
       gain=st.floats(0.1, 3.0), mode=st.sampled_from(["fan_in", "fan_out", "fan_avg"]),
       dist=st.sampled_from(["uniform", "normal", "truncated_normal"]))  # fmt: skip
def test_fan_initializers_follow_the_formulas(name, shape, dt, seed, offset, gain, mode, dist):
    f = getattr(init, name)
    if name.startswith("xavier"):
        call = lambda **kw: f(shape, gain, **kw)  # noqa: E731
    elif name.startswith("kaiming"):
        mode = "fan_in" if mode == "fan_avg" else mode
        call = lambda **kw: f(shape, gain, mode, "leaky_relu", **kw)  # noqa: E731
    elif name.startswith("lecun"):
        call = lambda **kw: f(shape, **kw)  # noqa: E731
    else:
        call = lambda **kw: f(shape, gain, mode, dist, **kw)  # noqa: E731
    n = math.prod(shape)
    if offset + n > _limit(dt):
        with pytest.raises(ValueError, match="offset"):
            call(dtype=dt, seed=seed, offset=offset)
        return
    got = call(dtype=dt, seed=seed, offset=offset)
    (kind, scale), kw = _init_reference(name, shape, dt, seed, offset, gain, mode, dist)
    if kind == "uniform":
        want = rr.uniform(shape, -scale, scale, **kw)
    elif kind == "normal":
        want = rr.normal(shape, 0.0, scale, **kw)
    else:
        want = rr.truncated_normal(shape, 0.0, scale, -2 * scale, 2 * scale, **kw)
    assert got.shape == shape and got.dtype == dt
    np.testing.assert_allclose(got, want, rtol=1e-6 if dt == np.float32 else 1e-14, atol=0)


@given(name=st.sampled_from(FAN_INITS + ["orthogonal"]), shape=st.sampled_from([(), (0,), (1,), (7,)]),
       dt=dtypes)  # fmt: skip
def test_fan_initializers_need_two_dimensions(name, shape, dt):
    with pytest.raises(ValueError, match="dimensions"):
        getattr(init, name)(shape, dtype=dt, seed=0)


@given(name=st.sampled_from(["uniform", "normal", "trunc_normal", "constant", "zeros", "ones", "orthogonal"]
                            + FAN_INITS),
       data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=7), dt=dtypes)
def test_initializers_never_fill_a_silent_copy(name, data, shape, dt):
    out, base = data.draw(bad_outs(dt, shape))
    before = base.copy()
    kw = {} if name in ("constant", "zeros", "ones") else {"seed": 3}
    args = (None, 0.5) if name == "constant" else (None,)
    with pytest.raises((TypeError, ValueError), match="out"):
        getattr(init, name)(*args, dtype=dt, out=out, **kw)
    assert base.tobytes() == before.tobytes()


@given(shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=0, max_side=12), dt=dtypes, seed=seeds,
       gain=st.floats(0.1, 4.0))  # fmt: skip
def test_orthogonal_is_orthogonal(shape, dt, seed, gain):
    w = init.orthogonal(shape, gain, dtype=dt, seed=seed)
    assert w.shape == shape and w.dtype == dt
    rows = shape[0]
    cols = math.prod(shape[1:])
    if rows * cols == 0:
        return
    m = w.reshape(rows, cols).astype(np.float64)
    gram = m.T @ m if rows >= cols else m @ m.T
    tol = 1e-5 if dt == np.float32 else 1e-12
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=tol * 10 * gain**2)


@given(shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=9),
       name=st.sampled_from(["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu", "softmax", "Relu"]),
       param=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))  # fmt: skip
def test_fans_and_gains(shape, name, param):
    if len(shape) < 2:
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            init.calculate_fans(shape)
    else:
        rf = math.prod(shape[2:])
        assert init.calculate_fans(shape) == (shape[1] * rf, shape[0] * rf)
    if name in ("softmax", "Relu"):
        with pytest.raises(ValueError, match="nonlinearity"):
            init.calculate_gain(name, param)
        return
    if name == "leaky_relu" and param is not None and not math.isfinite(param):
        with pytest.raises(ValueError, match="leaky_relu"):
            init.calculate_gain(name, param)
        return
    want = {"tanh": 5 / 3, "relu": math.sqrt(2), "selu": 0.75}.get(name, 1.0)
    if name == "leaky_relu":
        slope = 0.01 if param is None else param
        # torch's formula; past |slope| = 1e150, 1 + slope**2 would overflow (it is slope**2 there).
        want = math.sqrt(2.0 / (1 + slope**2)) if abs(slope) <= 1e150 else math.sqrt(2.0) / abs(slope)
    assert init.calculate_gain(name, param) == want


@given(name=st.sampled_from(["uniform", "normal", "trunc_normal", "constant"] + FAN_INITS[:2] + ["orthogonal"]),
       bad=bad_floats, dt=dtypes)  # fmt: skip
def test_initializers_refuse_non_finite_parameters(name, bad, dt):
    f = getattr(init, name)
    with pytest.raises(ValueError):
        if name == "constant":
            f((3, 4), bad, dtype=dt)
        elif name in ("uniform", "normal", "trunc_normal"):
            f((3, 4), 0.0, bad, dtype=dt, seed=0)
        else:
            f((3, 4), bad, dtype=dt, seed=0)


# ---------------------------------------------------------------------------- regtune.dropout


def _keep(n: int, p: float, seed: int, offset: int) -> np.ndarray:
    return bits_ref(n, seed, offset) >= np.uint64(round(p * 2.0**32))


def _unpack(mask: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(mask, bitorder="little", count=n).astype(bool)


@st.composite
def dropout_inputs(draw, min_dims=0):
    """x (possibly non-contiguous, with NaN/Inf), p, seed, offset."""
    dt = draw(dtypes)
    shape = draw(hnp.array_shapes(min_dims=max(min_dims, 1), max_dims=3, min_side=0, max_side=11)
                 if min_dims else shapes)  # fmt: skip
    base = draw(_float_arrays(dt, shape[:-1] + (2 * shape[-1],) if shape else ()))
    x = base[..., ::2] if shape and draw(st.booleans()) else (base[..., : shape[-1]] if shape else base)
    p = draw(st.one_of(st.sampled_from([0.0, 1.0, 0.5, 2.0**-32]), st.floats(0.0, 1.0)))
    return x, p, draw(seeds), draw(offsets)


@given(args=dropout_inputs(), kind=st.sampled_from(["dropout", "alpha_dropout"]))
def test_dropout_matches_the_reference_or_raises(args, kind):
    x, p, seed, offset = args
    n, dt = x.size, x.dtype
    f, back = getattr(D, kind), getattr(D, kind + "_backward")
    if offset + n > U64 and p != 0.0:
        with pytest.raises(ValueError, match="offset"):
            f(x, p, seed=seed, offset=offset)
        return
    y, mask = f(x, p, seed=seed, offset=offset)
    if p == 0.0:
        assert y is x and _unpack(mask, n).all()
        return
    keep = _keep(n, p, seed, offset).reshape(x.shape)
    assert (_unpack(mask, n).reshape(x.shape) == keep).all()
    with np.errstate(all="ignore"):  # the reference multiplies inf by 0 where it drops
        t = dt.type
        if kind == "dropout":
            scale = t(0) if p == 1.0 else t(1.0 / (1.0 - p))
            want, bscale = np.where(keep, x * scale, t(0)), scale
        else:
            if p == 1.0:
                want, bscale = np.zeros_like(x), t(0)
            else:
                a = 1.0 / math.sqrt((D.SELU_ALPHA_PRIME**2 * p + 1.0) * (1.0 - p))
                shift = t(D.SELU_ALPHA_PRIME * a * p)
                want = np.where(keep, x * t(a) + shift, -t(D.SELU_ALPHA_PRIME * a) + shift)
                bscale = t(a)
    assert y.dtype == dt and y.tobytes() == np.ascontiguousarray(want, dt).tobytes()
    # The backward from the mask and regenerated from (seed, offset): identical.
    dy = np.ascontiguousarray(x)
    from_mask = back(dy, mask, p)
    regenerated = back(dy, p=p, seed=seed, offset=offset)
    with np.errstate(all="ignore"):
        want_dx = np.where(keep, dy * bscale, t(0)).astype(dt)
    assert from_mask.tobytes() == regenerated.tobytes() == want_dx.tobytes()


@given(args=dropout_inputs(min_dims=2))
def test_feature_dropout_matches_the_reference_or_raises(args):
    x, p, seed, offset = args
    units = x.shape[0] * x.shape[1]
    if offset + units > U64 and p != 0.0:
        with pytest.raises(ValueError, match="offset"):
            D.feature_dropout(x, p, seed=seed, offset=offset)
        return
    y, mask = D.feature_dropout(x, p, seed=seed, offset=offset)
    if p == 0.0:
        assert y is x
        return
    keep = _keep(units, p, seed, offset).reshape(x.shape[:2] + (1,) * (x.ndim - 2))
    assert (_unpack(mask, units) == keep.reshape(-1)).all()
    t = x.dtype.type
    scale = t(0) if p == 1.0 else t(1.0 / (1.0 - p))
    with np.errstate(invalid="ignore"):
        want = np.where(keep, x * scale, t(0))
    assert y.tobytes() == np.ascontiguousarray(want, x.dtype).tobytes()
    dx = D.feature_dropout_backward(np.ascontiguousarray(x), p=p, seed=seed, offset=offset)
    assert dx.tobytes() == D.feature_dropout_backward(np.ascontiguousarray(x), mask, p).tobytes()


@given(shape=shapes, p=st.floats(0.0, 1.0), seed=seeds, offset=offsets)
def test_dropout_mask_and_dropconnect_match_the_rule(shape, p, seed, offset):
    n = math.prod(shape)
    if offset + n > U64:
        with pytest.raises(ValueError, match="offset"):
            regtune.dropout_mask(shape, p, seed=seed, offset=offset)
        return
    mask = regtune.dropout_mask(shape, p, seed=seed, offset=offset)
    assert mask.dtype == np.uint8 and mask.shape == ((n + 7) // 8,)
    assert (_unpack(mask, n) == _keep(n, p, seed, offset)).all()
    assert not np.unpackbits(mask, bitorder="little")[n:].any()  # unused high bits are 0
    if len(shape) >= 1 and p not in (0.0,):
        w = np.ones(shape, np.float32)
        dc = D.dropconnect(w, p, seed=seed, offset=offset)
        assert dc.mask.tobytes() == mask.tobytes()


@given(data=st.data(), kind=st.sampled_from(["dropout", "alpha_dropout", "feature_dropout", "dropout_backward"]),
       shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=7), dt=dtypes)  # fmt: skip
def test_dropout_never_writes_a_silent_copy(data, kind, shape, dt):
    x = np.ones(shape, dt)
    out, base = data.draw(bad_outs(dt, shape))
    before = base.copy()
    with pytest.raises((TypeError, ValueError), match="out"):
        if kind == "dropout_backward":
            regtune.dropout_backward(x, p=0.5, seed=1, out=out)
        else:
            getattr(D, kind)(x, 0.5, seed=1, out=out)
    assert base.tobytes() == before.tobytes()


@given(p=st.one_of(bad_floats, st.floats(-10, -1e-9), st.floats(1.0000001, 10)), dt=dtypes)
def test_dropout_refuses_bad_probabilities(p, dt):
    for f in (regtune.dropout, D.alpha_dropout, D.feature_dropout):
        with pytest.raises(ValueError, match="p must"):
            f(np.ones((2, 3), dt), p, seed=0)
    with pytest.raises(ValueError, match="p must"):
        regtune.dropout_mask(5, p, seed=0)


# -------------------------------------------------------------------------- regtune.penalties


@given(data=st.data(), shape=shapes, dt=dtypes, l1=st.floats(0, 10), l2=st.floats(0, 10))
def test_penalties_match_numpy(data, shape, dt, l1, l2):
    w = data.draw(_float_arrays(dt, shape))
    g = data.draw(_float_arrays(dt, shape))
    w64 = w.astype(np.float64)
    with np.errstate(all="ignore"):
        want = l1 * np.sum(np.abs(w64)) + (l2 / 2.0) * np.sum(w64 * w64)
        got = penalties.penalty_value(w, l1, l2)
        np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)
        t = dt.type
        want_g = g + (t(l1) * np.sign(w) + t(l2) * w)
        g2 = g.copy()
        assert penalties.add_penalty_grad(g2, w, l1, l2) is g2
        np.testing.assert_allclose(g2, want_g, rtol=2e-7 if dt == np.float32 else 1e-15, equal_nan=True)
        thr = l1
        want_p = np.where(np.abs(w) <= t(thr), t(0) * w, np.sign(w) * (np.abs(w) - t(thr)))
        w2 = w.copy()
        assert penalties.prox_l1(w2, thr) is w2
        np.testing.assert_allclose(w2, want_p, rtol=2e-7 if dt == np.float32 else 1e-15, equal_nan=True)


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9), dt=dtypes,
       max_norm=st.floats(0.01, 100))  # fmt: skip
def test_max_norm_matches_numpy(data, shape, dt, max_norm):
    w = data.draw(hnp.arrays(dt, shape, elements=st.floats(-100, 100, width=32)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    others = tuple(d for d in range(w.ndim) if d != axis % w.ndim)
    norms = np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=others, keepdims=True))
    want = w * np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(dt)
    got = penalties.max_norm_(w.copy(), max_norm, axis)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dt == np.float32 else 1e-14)


@given(data=st.data(), name=st.sampled_from(["add_penalty_grad", "prox_l1", "max_norm_"]),
       shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=7), dt=dtypes)  # fmt: skip
def test_penalties_never_update_a_silent_copy(data, name, shape, dt):
    arr, base = data.draw(bad_outs(dt, shape))
    before = base.copy()
    argname = "g" if name == "add_penalty_grad" else "w"
    with pytest.raises((TypeError, ValueError), match=argname):
        if name == "add_penalty_grad":
            penalties.add_penalty_grad(arr, np.ones(shape, dt), 0.1, 0.1)
        elif name == "prox_l1":
            penalties.prox_l1(arr, 0.1)
        else:
            penalties.max_norm_(arr, 1.0)
    assert base.tobytes() == before.tobytes()


@given(bad=st.one_of(bad_floats, st.floats(-10, -1e-9)), name=st.sampled_from(["l1", "l2"]))
def test_penalties_refuse_bad_coefficients(bad, name):
    with pytest.raises(ValueError, match=name):
        penalties.penalty_value(np.ones(3), **{name: bad})
    with pytest.raises(ValueError, match=name):
        penalties.add_penalty_grad(np.ones(3), np.ones(3), **{name: bad})


# ------------------------------------------------------------------------------ regtune.optim

sizes_lists = st.lists(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=13), min_size=1, max_size=3)


@given(data=st.data(), case=st.sampled_from(OPTIM_CASES + OPTIM_EXTRAS), shape_list=sizes_lists, dt=dtypes,
       steps=st.integers(1, 3), nan=st.booleans())  # fmt: skip
def test_optimizers_match_the_transcription(data, case, shape_list, dt, steps, nan):
    name, kw = case
    elements = st.floats(-4, 4, width=32)
    params = [data.draw(hnp.arrays(dt, s, elements=elements)) for s in shape_list]
    grads = [[data.draw(hnp.arrays(dt, s, elements=elements)) for s in shape_list] for _ in range(steps)]
    if nan and grads[0][0].size:
        grads[0][0].flat[0] = np.nan
    want = _reference(name, params, grads, **kw)
    got = [p.copy() for p in params]
    opt = getattr(optim, name)(got, **kw)
    with np.errstate(all="ignore"):
        for g in grads:
            opt.step(g)
    rtol, atol = (1e-5, 1e-6) if dt == np.float32 else (1e-12, 1e-14)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


@given(data=st.data(), name=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]),
       shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=7), dt=dtypes)  # fmt: skip
def test_optimizers_never_update_a_silent_copy(data, name, shape, dt):
    arr, base = data.draw(bad_outs(dt, shape))
    assume(arr.dtype in DTYPES)  # a wrong dtype alone is a TypeError too, covered in test_optim
    with pytest.raises((TypeError, ValueError), match=r"params\[1\]"):
        getattr(optim, name)([np.zeros(3, dt), arr], lr=0.1)
    ok = np.zeros(shape, dt)
    opt = getattr(optim, name)([ok], lr=0.1)
    before = base.copy()
    if arr.dtype == dt and arr.shape == shape:
        with pytest.raises((TypeError, ValueError), match=r"grads\[0\]"):
            opt.step([arr.astype(np.float16)])
    assert base.tobytes() == before.tobytes()


@given(data=st.data(), shape_list=sizes_lists, dt=dtypes, max_norm=st.floats(0.01, 100), clip=st.floats(0, 10))
def test_clipping_matches_numpy(data, shape_list, dt, max_norm, clip):
    grads = [data.draw(_float_arrays(dt, s)) for s in shape_list]
    with np.errstate(all="ignore"):
        total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
        coef = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
        want = [g * dt.type(coef) for g in grads]
        got = [g.copy() for g in grads]
        norm = optim.clip_grad_norm(got, max_norm)
    np.testing.assert_allclose(norm, total, rtol=1e-12, equal_nan=True)
    for a, b in zip(got, want):
        if math.isinf(total):
            continue  # coef is 0 or NaN there depending on how inf * 0 rounds; test_optim covers it
        np.testing.assert_allclose(a, b, rtol=1e-6 if dt == np.float32 else 1e-14, equal_nan=True)
    got = [g.copy() for g in grads]
    optim.clip_grad_value(got, clip)
    for a, g in zip(got, grads):
        np.testing.assert_array_equal(a, np.where(np.isnan(g), g, np.clip(g, -clip, clip)))


# ------------------------------------------------------- regtune.augment and loaded state (issue 27)
# The samplers' rule, extended: whatever a constructor or load_state_dict is given, it either
# refuses it with a TypeError/ValueError (MemoryError for what cannot fit) naming the argument, or
# the result is what the docs promise: finite images, label rows that are distributions, state
# loaded exactly. Never NaN, a wrapped integer, an OverflowError from deep inside, or a warning.

from regtune import augment as A  # noqa: E402

#: The buffers of squares, which must also be >= 0 (regtune.optim's load_state_dict docs).
_SQUARES = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "exp_inf", "acc_delta", "row_var", "col_var", "variance")

_HUGE_INTS = [2**30, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30]
hostile_ints = st.one_of(st.integers(-3, 40), st.sampled_from(_HUGE_INTS), st.integers(-(2**70), 2**70))
hostile_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-320, 1e-45, 1e-6, 1e-3, 0.5, 3.4e38, 3.5e38, 1e39, 1e300, 1.7976931348623157e308]),
)
odd_values = st.sampled_from([None, True, False, "1", b"1", [], (1, 2, 3), {}, 1j, object()])


def _at_least(n: int) -> settings:
    """The loaded profile with at least ``n`` examples (these tests draw from many cases)."""
    return settings(max_examples=max(n, settings.default.max_examples))


@_at_least(150)
@given(
    cls=st.sampled_from([A.MixUp, A.CutMix]),
    alpha=st.one_of(hostile_floats, hostile_ints, odd_values),
    num_classes=st.one_of(st.integers(-3, 40), st.sampled_from([2**40, 2**63, 2**64]), hostile_floats, odd_values),
    shape=st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(0, 5), st.integers(1, 3)),
    u8=st.booleans(), layout=st.sampled_from(["NHWC", "NCHW"]), seed=seeds, epoch=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_mix_parameters_are_refused_or_give_distributions(cls, alpha, num_classes, shape, u8, layout, seed, epoch):
    try:
        mix = cls(alpha, num_classes=num_classes, seed=seed, layout=layout)
    except (TypeError, ValueError) as exc:
        assert re.search(r"\b(alpha|num_classes)\b", str(exc)), str(exc)
        return
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, shape, np.uint8) if u8 else (rng.standard_normal(shape) * 100).astype(np.float32)
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = np.array([i % mix.num_classes for i in range(shape[0])], np.int64)
    try:
        out, soft = mix(x, y, indices=np.arange(shape[0]) * 7, epoch=epoch)
    except MemoryError as exc:
        assert f"num_classes={mix.num_classes}" in str(exc)
        return
    assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
    if x.size:
        assert out.min() >= x.min() and out.max() <= x.max()
    assert soft.shape == (shape[0], mix.num_classes) and np.isfinite(soft).all() and (soft >= 0).all()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    lam = mix.lambdas(shape[0], indices=np.arange(shape[0]) * 7, epoch=epoch)
    assert ((lam >= 0) & (lam <= 1)).all()


#: (op, argument, the other arguments): each op with one argument replaced by a hostile value.
_OP_ARGS = [
    (A.RandomCrop, "size", {}), (A.RandomCrop, "padding", {"size": 4}), (A.RandomCrop, "fill", {"size": 4, "padding": 1}),
    (A.RandomTranslate, "shift", {}), (A.RandomTranslate, "fill", {"shift": 1}),
    (A.HorizontalFlip, "p", {}), (A.VerticalFlip, "p", {}),
    (A.RandomResizedCrop, "size", {}), (A.RandomResizedCrop, "scale", {"size": 3}), (A.RandomResizedCrop, "ratio", {"size": 3}),
    (A.ColorJitter, "brightness", {}), (A.ColorJitter, "contrast", {}), (A.ColorJitter, "saturation", {}),
    (A.GaussianNoise, "std", {}), (A.GaussianNoise, "clip", {"std": 1.0}),
    (A.RandomErasing, "p", {}), (A.RandomErasing, "scale", {"p": 1.0}), (A.RandomErasing, "ratio", {"p": 1.0}),
    (A.RandomErasing, "value", {"p": 1.0}),
    (A.Normalize, "mean", {"std": 0.5}), (A.Normalize, "std", {"mean": 0.5}),
    (A.Normalize, "max_pixel_value", {"mean": 0.5, "std": 0.5}),
]  # fmt: skip
_PAIR_ARGS = {"scale", "ratio"}


@_at_least(300)
@given(case=st.sampled_from(_OP_ARGS), data=st.data())
def test_augment_constructors_refuse_or_run(case, data):
    cls, arg, base = case
    scalar = st.one_of(hostile_ints, hostile_floats, odd_values)
    if arg in _PAIR_ARGS or arg in ("brightness", "contrast", "saturation", "padding", "size"):
        value = data.draw(st.one_of(scalar, st.tuples(scalar, scalar)), label=arg)
    elif arg in ("fill", "value", "mean", "std"):
        value = data.draw(st.one_of(scalar, st.lists(scalar, min_size=0, max_size=4)), label=arg)
    else:
        value = data.draw(scalar, label=arg)
    try:
        op = cls(**base, **{arg: value})
    except (TypeError, ValueError) as exc:
        assert re.search(rf"\b{arg}\b", str(exc)), str(exc)
        return
    for images in (np.arange(2 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 5, 6, 3),
                   np.linspace(0, 1, 2 * 5 * 6 * 3, dtype=np.float32).reshape(2, 5, 6, 3)):  # fmt: skip
        pipe = A.Pipeline([op], seed=1)
        try:
            out = pipe(images, indices=np.array([3, 9]), epoch=2)
        except ValueError as exc:  # an argument that does not fit these images: named
            assert re.search(rf"\b{arg}\b", str(exc)), str(exc)
            continue
        except MemoryError as exc:  # an output too large for the memory: named by its size
            assert "size=" in str(exc), str(exc)
            continue
        assert out.shape == pipe.output_shape(images.shape)
        assert np.isfinite(out.astype(np.float32)).all()


@_at_least(200)
@given(name=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Lion", "NAdam", "RAdam", "Adamax",
                             "Adadelta", "LAMB", "LARS", "Adafactor"]), dt=dtypes, data=st.data())  # fmt: skip
def test_loaded_state_contents_are_refused_or_loaded_exactly(name, dt, data):
    kw = {"SGD": {"lr": 0.1, "momentum": 0.9}, "RMSprop": {"momentum": 0.9, "centered": True},
          "LARS": {"momentum": 0.9}, "Adam": {"amsgrad": True}}.get(name, {})  # fmt: skip
    params = [np.ones((3, 4), dt), np.ones(5, dt)]
    opt = getattr(optim, name)(params, **kw)
    opt.step([np.full_like(p, 0.5) for p in params])
    sd = opt.state_dict()
    buffers = [(k, i) for k, arrays in sd["state"].items() for i, a in enumerate(arrays) if a is not None]
    k, i = data.draw(st.sampled_from(buffers), label="buffer")
    a = sd["state"][k][i]
    flat = data.draw(st.integers(0, a.size - 1), label="element")
    value = data.draw(st.one_of(hostile_floats, st.floats(-1e3, 1e3)), label="value")
    with np.errstate(over="ignore"):
        a.reshape(-1)[flat] = value
    stored = a.reshape(-1)[flat]
    before = opt.state_dict()
    where = ", ".join(map(str, np.unravel_index(flat, a.shape)))
    if not np.isfinite(stored) or (k in _SQUARES and stored < 0):
        label = re.escape(f"state['{k}'][{i}]")
        with pytest.raises(ValueError, match=rf"{label}(\[{where}\] is .*finite| must be >= 0)"):
            opt.load_state_dict(sd)
        after = opt.state_dict()
        assert all(x is None and y is None or x.tobytes() == y.tobytes()
                   for n in before["state"] for x, y in zip(after["state"][n], before["state"][n]))  # fmt: skip
        return
    opt.load_state_dict(sd)
    assert opt.state[k][i].tobytes() == sd["state"][k][i].tobytes()


@_at_least(60)
@given(cls=st.sampled_from([optim.EMA, optim.SWA]), which=st.integers(0, 1), flat=st.integers(0, 11),
       value=hostile_floats)  # fmt: skip
def test_loaded_averages_are_refused_or_loaded_exactly(cls, which, flat, value):
    params = [np.ones((3, 4), np.float32), np.ones(5, np.float32)]
    avg = cls(params)
    avg.update()
    sd = avg.state_dict()
    a = sd["averages"][which]
    flat %= a.size
    with np.errstate(over="ignore"):
        a.reshape(-1)[flat] = value
    if not np.isfinite(a.reshape(-1)[flat]):
        with pytest.raises(ValueError, match=re.escape(f"state_dict['averages'][{which}]")):
            avg.load_state_dict(sd)
        assert all(np.array_equal(x, p) for x, p in zip(avg.averages, params))
        return
    avg.load_state_dict(sd)
    assert avg.averages[which].tobytes() == a.tobytes()
