"""The calls whose outputs are pinned in tests/data/known_answers.json (the stream-stability
policy in README.md: what may change, and that no change goes unnoticed).

Each case is a name and a function of nothing that returns one array; the JSON holds, per case,
the dtype, the shape, the first values (as hex bit patterns, and as decimals for a reader) and
the sha256 of the whole output. ``tools/make_known_answers.py`` rewrites the JSON from these
cases; the tests only read it. Regenerate only for a deliberate, documented change of a stream.

Sizes are odd (not multiples of any vector width) and some offsets cross the 2**32 carry of the
Philox counter, so the tails and the counter arithmetic are pinned too.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

import regtune
import regtune.init as init
import regtune.random as rr

N = 10_007  # the "larger output": not a multiple of 4, 8, 16 or 64
FIRST = 8  # how many leading values are stored in full
BIG = 2**32 - 5  # an offset whose draws cross the carry into the counter's second word

Case = Callable[[], np.ndarray]


def _x(dtype) -> np.ndarray:
    # The input of the dropout cases: exact small integers, the same on every platform.
    return (np.arange(N, dtype=np.float64) % 13 - 6).astype(dtype)


def _cases() -> dict[str, Case]:
    c: dict[str, Case] = {
        "bits": lambda: rr.bits(N, seed=2024),
        "bits_offset_2**32": lambda: rr.bits(N, seed=2024, offset=BIG),
        "bits_spawned_child": lambda: regtune.Generator(2024).spawn(2)[1].bits(N),
        "bits_seedsequence": lambda: rr.bits(N, seed=np.random.SeedSequence(2024)),
    }
    for dt in (np.float32, np.float64):
        t = np.dtype(dt).name
        c |= {
            # samplers
            f"random.uniform_{t}": lambda dt=dt: rr.uniform(N, -2.0, 3.0, dtype=dt, seed=11),
            f"random.uniform_{t}_offset": lambda dt=dt: rr.uniform(N, dtype=dt, seed=11, offset=BIG),
            f"random.normal_{t}": lambda dt=dt: rr.normal(N, 0.5, 2.0, dtype=dt, seed=12),
            f"random.normal_{t}_offset": lambda dt=dt: rr.normal(N, dtype=dt, seed=12, offset=BIG),
            f"random.truncated_normal_{t}": lambda dt=dt: rr.truncated_normal(N, dtype=dt, seed=13),
            f"random.truncated_normal_{t}_tail": lambda dt=dt: rr.truncated_normal(
                N, 0.0, 1.0, 5.0, 9.0, dtype=dt, seed=13, offset=7),
            f"random.truncated_normal_{t}_onesided": lambda dt=dt: rr.truncated_normal(
                N, 1.0, 0.5, -np.inf, 0.75, dtype=dt, seed=13),
            f"Generator.normal_{t}_third_call": lambda dt=dt: _third_call(dt),
            # initializers
            f"init.uniform_{t}": lambda dt=dt: init.uniform((97, 103), -0.5, 0.5, dtype=dt, seed=21),
            f"init.normal_{t}": lambda dt=dt: init.normal((97, 103), 0.0, 0.02, dtype=dt, seed=22),
            f"init.trunc_normal_{t}": lambda dt=dt: init.trunc_normal(
                (97, 103), std=0.02, a=-0.04, b=0.04, dtype=dt, seed=23),
            f"init.constant_{t}": lambda dt=dt: init.constant((3, 5), 0.25, dtype=dt),
            f"init.zeros_{t}": lambda dt=dt: init.zeros((3, 5), dtype=dt),
            f"init.ones_{t}": lambda dt=dt: init.ones((3, 5), dtype=dt),
            f"init.xavier_uniform_{t}": lambda dt=dt: init.xavier_uniform((97, 103), dtype=dt, seed=24),
            f"init.xavier_normal_{t}": lambda dt=dt: init.xavier_normal((64, 3, 7, 7), gain=2.0, dtype=dt, seed=25),
            f"init.kaiming_uniform_{t}": lambda dt=dt: init.kaiming_uniform((97, 103), a=0.1, dtype=dt, seed=26),
            f"init.kaiming_normal_{t}": lambda dt=dt: init.kaiming_normal(
                (97, 103), mode="fan_out", nonlinearity="relu", dtype=dt, seed=27, offset=BIG),
            f"init.lecun_uniform_{t}": lambda dt=dt: init.lecun_uniform((97, 103), dtype=dt, seed=28),
            f"init.lecun_normal_{t}": lambda dt=dt: init.lecun_normal((97, 103), dtype=dt, seed=29),
            f"init.variance_scaling_truncated_{t}": lambda dt=dt: init.variance_scaling(
                (97, 103), 2.0, "fan_avg", "truncated_normal", dtype=dt, seed=30),
            f"init.variance_scaling_normal_{t}": lambda dt=dt: init.variance_scaling(
                (97, 103), 1.0, "fan_in", "normal", dtype=dt, seed=31),
            f"init.variance_scaling_uniform_{t}": lambda dt=dt: init.variance_scaling(
                (97, 103), 1.0, "fan_out", "uniform", dtype=dt, seed=32),
            f"init.orthogonal_{t}": lambda dt=dt: init.orthogonal((31, 57), gain=1.5, dtype=dt, seed=33),
            # dropout: values and masks
            f"dropout_{t}": lambda dt=dt: regtune.dropout(_x(dt), 0.3, seed=41, offset=5)[0],
            f"dropout_mask_of_dropout_{t}": lambda dt=dt: regtune.dropout(_x(dt), 0.3, seed=41, offset=5)[1],
            f"dropout.alpha_dropout_{t}": lambda dt=dt: regtune._dropout_module.alpha_dropout(
                _x(dt), 0.2, seed=42)[0],
            f"dropout.feature_dropout_{t}": lambda dt=dt: regtune._dropout_module.feature_dropout(
                _x(dt)[:10_000].reshape(10, 25, 40), 0.4, seed=43)[0],
        }
    c |= {
        "dropout_mask_p0.5": lambda: regtune.dropout_mask(N, 0.5, seed=44),
        "dropout_mask_p0.1_offset": lambda: regtune.dropout_mask(N, 0.1, seed=44, offset=BIG),
        "dropout_mask_p0.9": lambda: regtune.dropout_mask((7, 1429), 0.9, seed=45),
        "dropout.feature_dropout_mask": lambda: regtune._dropout_module.feature_dropout(
            np.ones((31, 33, 2), np.float32), 0.5, seed=46)[1],
        "dropout.dropconnect_mask": lambda: regtune._dropout_module.dropconnect(
            np.ones((97, 103), np.float32), 0.25, seed=47).mask,
    }
    return c


def _third_call(dt) -> np.ndarray:
    g = regtune.Generator(np.random.SeedSequence(99))
    g.normal(5, dtype=dt)
    g.uniform(3, dtype=dt)
    return g.normal(N, dtype=dt)


CASES: dict[str, Case] = _cases()

# Cases whose values go through the C library's erfc (truncated-normal cut-off probabilities)
# or LAPACK (orthogonal's QR): the README allows them to differ in the last bits across C
# libraries and BLAS builds, so off glibc (or for the QR, always) they are compared to a
# tolerance instead of bit for bit.
LIBM_DEPENDENT = ("truncated_normal", "trunc_normal", "variance_scaling_truncated")
LAPACK_DEPENDENT = ("orthogonal",)


def summarize(arr: np.ndarray) -> dict:
    """What the JSON stores for one output."""
    flat = np.ascontiguousarray(arr).reshape(-1)
    head = flat[:FIRST]
    word = {1: np.uint8, 4: np.uint32, 8: np.uint64}[flat.dtype.itemsize]
    return {
        "dtype": flat.dtype.name,
        "shape": list(arr.shape),
        "first_bits": [f"{int(w):#x}" for w in head.view(word)],
        "first": [repr(v.item()) for v in head],
        "sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
    }


def compute() -> dict[str, dict]:
    return {name: summarize(f()) for name, f in CASES.items()}
