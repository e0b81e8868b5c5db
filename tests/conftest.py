"""Shared helpers for the tests: the SIMD paths this CPU runs, and a switch between them."""

from __future__ import annotations

import contextlib

import pytest

import regtune
from regtune import _core

SIMD_PATHS = [p for p in ("scalar", "avx2", "avx512") if _core.simd_supported(p)]


@contextlib.contextmanager
def simd_path(name: str):
    """Run the block on SIMD path ``name``, then restore the previous one."""
    before = _core.simd()
    _core.select_simd(name)
    try:
        yield
    finally:
        _core.select_simd(before)


@contextlib.contextmanager
def num_threads(n: int):
    before = regtune.get_num_threads()
    regtune.set_num_threads(n)
    try:
        yield
    finally:
        regtune.set_num_threads(before)


@pytest.fixture(params=SIMD_PATHS)
def each_simd(request):
    """Parametrize a test over every SIMD path this CPU supports."""
    with simd_path(request.param):
        yield request.param


# Hypothesis: derandomized, so CI sees the same examples on every run (tests/test_properties.py).
# HYPOTHESIS_PROFILE=thorough draws ten times as many, from fresh random examples.
import os  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "regtune", derandomize=True, max_examples=50, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)  # fmt: skip
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "regtune"))
