"""Stream stability: every sampler, initializer and dropout mask against the outputs pinned in
tests/data/known_answers.json (README.md, "Stream stability").

A failure here means a stream changed. If that was deliberate, regenerate the file with
``python tools/make_known_answers.py``, review the diff and note the change in the changelog.
The suite runs on every SIMD path in CI (REGTUNE_SIMD=scalar/avx2 and the native one), so the
pins hold on every path.
"""

from __future__ import annotations

import json
import os
import platform

import numpy as np
import pytest

from .known_answers import CASES, FIRST, LAPACK_DEPENDENT, LIBM_DEPENDENT, summarize

with open(os.path.join(os.path.dirname(__file__), "data", "known_answers.json")) as _f:
    PINNED = json.load(_f)["cases"]

GLIBC = platform.libc_ver()[0] == "glibc"


def test_every_case_is_pinned_and_every_pin_has_a_case():
    assert set(PINNED) == set(CASES)


def test_every_public_sampler_initializer_and_dropout_is_pinned():
    import regtune.init as init
    import regtune.random as rr

    names = " ".join(CASES)
    for fn in ("uniform", "normal", "truncated_normal", "bits"):
        assert fn in names, fn
    fills = {"calculate_gain", "calculate_fans", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal"}
    for fn in set(init.__all__) - fills:
        assert f"init.{fn}_" in names, fn
    for fn in ("dropout_", "dropout_mask", "alpha_dropout", "feature_dropout", "dropconnect"):
        assert fn in names, fn
    assert set(rr.__all__) == {"Generator", "bits", "uniform", "normal", "truncated_normal"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_known_answer(name):
    want = PINNED[name]
    arr = CASES[name]()
    got = summarize(arr)
    assert (got["dtype"], got["shape"]) == (want["dtype"], want["shape"])
    exact = not any(k in name for k in LAPACK_DEPENDENT) and (GLIBC or not any(k in name for k in LIBM_DEPENDENT))
    if exact:
        assert got["first_bits"] == want["first_bits"], (name, got["first"], want["first"])
        assert got["sha256"] == want["sha256"], name
    else:
        # Allowed to differ in the last bits across C libraries / LAPACK builds.
        rtol = 1e-5 if arr.dtype == np.float32 else 1e-12
        pinned = np.array([float(v) for v in want["first"]])
        np.testing.assert_allclose(arr.reshape(-1)[:FIRST], pinned, rtol=rtol, atol=rtol * 1e-2)
