"""Shared machinery for the regtune benchmark suites (bench_*.py).

A suite declares its work as a table, ``CASES = {op: {impl: factory}}``. This conftest turns
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

import functools
import os
import platform
import time

import numpy as np
import pytest

N = int(os.environ.get("REGTUNE_BENCH_N", "4096"))
SMALL_N = min(N, 1024)
SEED = 1234
BUDGET_S = float(os.environ.get("REGTUNE_BENCH_SECONDS", "2.0"))
MIN_ROUNDS, MAX_ROUNDS = 5, 200


class Ctx:
    """What a factory may use: the shape, a preallocated output and the optional libraries."""

    seed = SEED

    def __init__(self, shape):
        self.shape = shape
        self.rng = np.random.default_rng(SEED)

    @staticmethod
    def need(module):
        """Import an optional module, skipping the benchmark when it is absent."""
        return pytest.importorskip(module)

    @functools.cached_property
    def out(self):
        out = np.empty(self.shape, np.float32)
        out.fill(0.0)  # fault the pages in now, not inside the first timed call
        return out

    @functools.cached_property
    def tensor(self):
        """A torch tensor sharing ``out``'s memory, for torch's in-place initializers."""
        return self.need("torch").from_numpy(self.out)

    @property
    def fan_in(self):
        return self.shape[1]  # torch's convention for a 2-D weight: (fan_out, fan_in)

    @property
    def fan_out(self):
        return self.shape[0]

    def numpy_trunc_normal(self, mean=0.0, std=1.0, a=-2.0, b=2.0):
        """The in-place NumPy float32 recipe for torch.nn.init.trunc_normal_ semantics (a, b
        absolute): inverse CDF of a uniform on [Phi(alpha), Phi(beta)], then clip like torch."""
        from scipy import special

        lo, hi = (float(special.ndtr((x - mean) / std)) for x in (a, b))
        rng, x = self.rng, self.out

        def fill():
            rng.random(out=x, dtype=np.float32)
            np.multiply(x, hi - lo, out=x)
            np.add(x, lo, out=x)
            special.ndtri(x, out=x)
            np.multiply(x, std, out=x)
            np.add(x, mean, out=x)
            np.clip(x, a, b, out=x)

        return fill

    def jax(self, make):
        """Wrap ``make(jax, key) -> jax.Array`` into a call that waits for the result."""
        jax = self.need("jax")
        key = jax.random.PRNGKey(SEED)
        return lambda: make(jax, key).block_until_ready()


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
        fn = factory(ctx)
        benchmark.group = op
        benchmark.extra_info.update(op=op, impl=impl, bytes=n * n * 4, shape=[n, n])
        # A factory whose work is not "write one n x n float32 array" says so on its callable,
        # e.g. fn.extra_info = {"bytes": read + written, "traffic": True} (see report.py).
        benchmark.extra_info.update(getattr(fn, "extra_info", {}))
        rounds = 1
        if not benchmark.disabled:
            start = time.perf_counter()
            fn()  # warm-up: first-call costs (lazy imports, JIT, page faults) are not timed
            first = time.perf_counter() - start
            rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(BUDGET_S / max(first, 1e-9))))
        benchmark.pedantic(fn, rounds=rounds, iterations=1)

    return run


def machine_summary():
    """CPU, cores, library versions and regtune's build/runtime config, for report headers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "numpy": np.__version__, "bench_n": N}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        info["torch"] = None
    try:
        import regtune

        info["regtune"] = {k: str(v) for k, v in regtune.config().items()}
    except (ImportError, AttributeError):
        info["regtune"] = None
    return info


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["regtune_bench"] = machine_summary()
