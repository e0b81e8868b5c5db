"""The regtune benchmark suites (bench_*.py) under pytest-benchmark.

The machinery itself (``Ctx``, the timing rule, the machine summary) is in _harness.py, which
``regtune bench`` and ``bench/report.py --run`` use without pytest. A suite declares its work
as a table, ``CASES = {op: {impl: factory}}``. This conftest turns
every (op, impl) pair into one parametrized benchmark, all impls of an op in one
pytest-benchmark group, each carrying ``extra_info = {"op", "impl", "bytes"}`` for
``bench/report.py``.

A factory takes a :class:`Ctx` and returns a zero-argument callable that does the work once.
Everything a factory does before returning (imports, allocation, computing bounds) is outside
the timed region; the callable is what gets timed. Fairness rules, the same for every impl:

- the output array ``ctx.out`` is allocated and touched once, before timing; whoever can fill
  it in place does (regtune ``out=``, NumPy ``out=``, torch in-place ``*_`` on ``ctx.tensor``,
  which shares ``ctx.out``'s memory); peers that cannot (NumPy float64 textbook calls, JAX)
  allocate on each call, which is what their users pay;
- thread counts are left at each library's default (all cores for regtune and torch);
- every impl gets one warm-up call, then enough rounds to fill ``REGTUNE_BENCH_SECONDS``
  (at least 5); the report uses medians.

Sizes: ``REGTUNE_BENCH_N`` (default 4096) gives the N x N float32 shape; ops a suite lists in
``SMALL_OPS`` (O(n^3) or very slow peers) run at min(N, 1024) squared.
"""

from __future__ import annotations

import os
import time

import pytest
from _harness import MAX_ROUNDS, MIN_ROUNDS, SEED, Ctx, Unavailable, machine_summary, rounds_for  # noqa: F401

N = int(os.environ.get("REGTUNE_BENCH_N", "4096"))
SMALL_N = min(N, 1024)
BUDGET_S = float(os.environ.get("REGTUNE_BENCH_SECONDS", "2.0"))


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    small = getattr(metafunc.module, "SMALL_OPS", ())
    params = [
        pytest.param((op, impl, factory, SMALL_N if op in small else N), id=f"{op}-{impl}")
        for op, impls in metafunc.module.CASES.items()
        for impl, factory in impls.items()
    ]
    metafunc.parametrize("case", params)


@pytest.fixture
def run_case(benchmark, case):
    """Build the case's callable and time it; every impl of an op lands in the op's group."""

    def run():
        op, impl, factory, n = case
        ctx = Ctx((n, n))
        try:
            fn = factory(ctx)
        except Unavailable as exc:
            pytest.skip(str(exc))
        benchmark.group = op
        benchmark.extra_info.update(op=op, impl=impl, bytes=n * n * 4, shape=[n, n])
        # A factory whose work is not "write one n x n float32 array" says so on its callable,
        # e.g. fn.extra_info = {"bytes": read + written, "traffic": True} (see report.py).
        benchmark.extra_info.update(getattr(fn, "extra_info", {}))
        rounds = 1
        if not benchmark.disabled:
            start = time.perf_counter()
            fn()  # warm-up: first-call costs (lazy imports, JIT, page faults) are not timed
            rounds = rounds_for(time.perf_counter() - start, BUDGET_S)
        benchmark.pedantic(fn, rounds=rounds, iterations=1)

    return run


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["regtune_bench"] = machine_summary(N)
