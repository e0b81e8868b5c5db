"""Limits: 64-bit indices past 2**31 elements, and offsets that would run past the end of the
2**64-word stream.

The > 2**31-element tests are marked slow. The uint8 one (a packed dropout mask of 2**31 + 7
elements: 256 MiB written, every element's word drawn) always runs; the float32 one needs an
8 GiB array, so it is opt-in: REGTUNE_TEST_BIG_MEMORY=1 (CI sets it) runs it when about 12 GiB
are free.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import regtune
import regtune.init as init
import regtune.random as rr
from regtune import _core

U64 = 2**64
BIG = 2**31 + 7  # more elements than a 32-bit signed index can address


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.slow
def test_dropout_mask_past_2_to_the_31_elements():
    n, p, seed, offset = BIG, 0.5, 77, 2**32 - 3  # also crosses the counter's 32-bit carry
    mask = regtune.dropout_mask(n, p, seed=seed, offset=offset)
    assert mask.shape == ((n + 7) // 8,)
    # The last bytes and the bytes around 2**31 equal the same elements made alone at their offset.
    for start in (2**31 - 64, n - n % 8 - 64, 2**28 * 8 - 8):
        count = min(128, n - start)
        part = regtune.dropout_mask(count, p, seed=seed, offset=offset + start)
        got = np.unpackbits(mask[start // 8:(start + count + 7) // 8], bitorder="little", count=count)
        np.testing.assert_array_equal(got, np.unpackbits(part, bitorder="little", count=count), err_msg=str(start))
    tail = np.unpackbits(mask[-1:], bitorder="little")
    assert not tail[n % 8:].any()  # unused high bits of the last byte stay 0
    # Kept fraction within 6 standard errors of 1 - p (a binomial; fails with probability ~2e-9).
    # Bits counted per byte through a table, 32 MiB at a time (unpackbits would take 2 GiB).
    ones = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)
    kept = sum(int(ones[mask[i:i + 2**25]].sum(dtype=np.int64)) for i in range(0, mask.size, 2**25))
    assert abs(kept - n * (1 - p)) < 6 * math.sqrt(n * p * (1 - p))


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("REGTUNE_TEST_BIG_MEMORY") != "1" or _available_bytes() < 12 * 2**30,
    reason="opt-in (REGTUNE_TEST_BIG_MEMORY=1): needs about 12 GiB of free memory for an 8 GiB float32 array",
)
def test_float32_sampler_past_2_to_the_31_elements():
    out = np.empty(BIG, np.float32)
    rr.uniform(out=out, seed=5, offset=11)
    for start in (0, 2**31 - 3, BIG - 16):
        np.testing.assert_array_equal(out[start:start + 16], rr.uniform(min(16, BIG - start), seed=5, offset=11 + start))
    assert float(out.min()) >= 0.0 and float(out.max()) < 1.0
    del out


# ------------------------------------------------------------------------ offset + size past 2**64

ELEMENT_CALLS = [
    ("bits", lambda n, o: rr.bits(n, seed=1, offset=o), U64),
    ("uniform32", lambda n, o: rr.uniform(n, seed=1, offset=o), U64),
    ("uniform64", lambda n, o: rr.uniform(n, dtype=np.float64, seed=1, offset=o), U64 // 2),
    ("normal32", lambda n, o: rr.normal(n, seed=1, offset=o), U64),
    ("normal64", lambda n, o: rr.normal(n, dtype=np.float64, seed=1, offset=o), U64 // 2),
    ("truncnorm32", lambda n, o: rr.truncated_normal(n, seed=1, offset=o), U64),
    ("truncnorm64", lambda n, o: rr.truncated_normal(n, dtype=np.float64, seed=1, offset=o), U64 // 2),
    ("xavier32", lambda n, o: init.xavier_uniform((1, n), seed=1, offset=o), U64),
    ("kaiming64", lambda n, o: init.kaiming_normal((n, 1), dtype=np.float64, seed=1, offset=o), U64 // 2),
    ("dropout", lambda n, o: regtune.dropout(np.ones(n, np.float32), 0.5, seed=1, offset=o), U64),
    ("dropout_mask", lambda n, o: regtune.dropout_mask(n, 0.5, seed=1, offset=o), U64),
    ("dropout_backward", lambda n, o: regtune.dropout_backward(np.ones(n), p=0.5, seed=1, offset=o), U64),
]


@pytest.mark.parametrize("name,call,limit", ELEMENT_CALLS, ids=[c[0] for c in ELEMENT_CALLS])
@pytest.mark.parametrize("n", [1, 9, 4099])
def test_offset_plus_size_past_the_end_raises(name, call, limit, n):
    call(n, limit - n)  # ends exactly at the end of the stream: fine
    for offset in (limit - n + 1, limit, limit + 7, 2**64 + 5, 2**100):
        with pytest.raises(ValueError, match="offset"):
            call(n, offset)


def test_generator_stops_at_the_end_of_its_stream():
    g = regtune.Generator(3)
    g.state = dict(g.state, block=2**62 - 1)
    g.bits(4)  # the last block
    with pytest.raises(ValueError, match="exhausted"):
        g.bits(1)
    with pytest.raises(ValueError, match="exhausted"):
        g.normal(1)
    assert g.state["block"] == 2**62  # a refused draw does not move the position


@pytest.mark.parametrize("first,n", [(2**64 - 3, 4), (2**64 - 1, 2), (2**63, 2**0)])
def test_native_layer_refuses_a_range_past_the_end(first, n):
    """_core is private, but no call into it may wrap the counter around silently."""
    if (first, n) == (2**63, 1):
        out = np.empty(n, np.float64)
        with pytest.raises(ValueError, match="past the end"):
            _core.uniform(out, 1, 0, first, 0.0, 1.0)  # float64 uses words 2 * first..
        return
    with pytest.raises(ValueError, match="past the end"):
        _core.bits(np.empty(n, np.uint32), 1, 0, first)
    with pytest.raises(ValueError, match="past the end"):
        _core.uniform(np.empty(n, np.float32), 1, 0, first, 0.0, 1.0)
    with pytest.raises(ValueError, match="past the end"):
        _core.dropout_mask(np.empty((n + 7) // 8, np.uint8), n, 1, 0, first, 2**31)


def test_an_empty_draw_may_start_at_the_very_end():
    assert rr.bits(0, seed=1, offset=U64).shape == (0,)
    assert rr.normal(0, dtype=np.float64, seed=1, offset=U64 // 2).shape == (0,)
    y, mask = regtune.dropout(np.ones(0, np.float32), 1.0, seed=0, offset=U64)
    assert y.shape == (0,) and mask.shape == (0,)
    with pytest.raises(ValueError, match="offset"):
        rr.bits(0, seed=1, offset=U64 + 1)
