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
