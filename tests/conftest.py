"""Shared helpers for the tests: the SIMD paths this CPU runs, and a switch between them."""

from __future__ import annotations

import contextlib
import sys
import threading

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


#: Inside num_threads(): calls of this many elements and more are split into chunks, so that
#: test arrays of ~1e5 elements (below the default threshold) exercise the threaded path.
TEST_SERIAL_THRESHOLD = 1024


@contextlib.contextmanager
def num_threads(n: int):
    """Run the block on ``n`` threads, with the serial threshold lowered to
    TEST_SERIAL_THRESHOLD; restore both after."""
    before, threshold = regtune.get_num_threads(), _core.serial_threshold()
    regtune.set_num_threads(n)
    _core.set_serial_threshold(TEST_SERIAL_THRESHOLD)
    try:
        yield
    finally:
        regtune.set_num_threads(before)
        _core.set_serial_threshold(threshold)


def run_together(n: int, fn, timeout: float = 60.0) -> list:
    """``[fn(0), ..., fn(n - 1)]``, each called on its own Python thread; the threads start
    together (a Barrier) and switch as often as the interpreter allows, to bring races out.
    The first exception a thread raised is raised here."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout)
            results[i] = fn(i)
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads), f"a thread still runs after {timeout} s"
    if errors:
        raise errors[0]
    return results


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
