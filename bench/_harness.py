"""The benchmark machinery shared by pytest (conftest.py, with pytest-benchmark) and by
``regtune bench`` / ``bench/report.py --run`` (:func:`run`, which needs neither pytest nor
pytest-benchmark).

A suite (bench_random.py, bench_init.py, bench_dropout.py, bench_optim.py) declares its work as
a table, ``CASES = {op: {impl: factory}}``. A factory takes a :class:`Ctx` and returns a
zero-argument callable that does the work once; what the factory does before returning
(imports, allocation) is not timed. A factory that cannot run here (a peer not installed, a
class this regtune build lacks) raises :class:`Unavailable`; its row is left out.

Timing, the same for every impl: one untimed warm-up call, then enough rounds to fill the time
budget (at least 5, at most 200), one call per round; the report uses the median.
"""

from __future__ import annotations

import functools
import gc
import importlib
import importlib.util
import os
import platform
import statistics
import time
from typing import Callable, Iterable

import numpy as np

SEED = 1234
MIN_ROUNDS, MAX_ROUNDS = 5, 200
#: The suites that hold CASES tables, in the order they run.
SUITES = ("bench_random", "bench_dropout", "bench_optim", "bench_init")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


class Unavailable(Exception):
    """A case this environment cannot run (a peer not installed, a class not in the installed
    regtune, a torch option this torch lacks): pytest skips it, :func:`run` leaves it out."""


class Ctx:
    """What a factory may use: the shape, a preallocated output and the optional libraries."""

    seed = SEED

    def __init__(self, shape):
        self.shape = shape
        self.rng = np.random.default_rng(SEED)

    @staticmethod
    def need(module):
        """Import an optional module, or raise :class:`Unavailable` (the case is skipped)."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise Unavailable(f"{module} is not installed ({exc})") from None

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
        special = self.need("scipy.special")
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


def rounds_for(first_s: float, budget_s: float) -> int:
    """Timed rounds for a call whose warm-up took ``first_s``: the budget's worth, in [5, 200]."""
    return max(MIN_ROUNDS, min(MAX_ROUNDS, int(budget_s / max(first_s, 1e-9))))


def machine_summary(bench_n: int) -> dict:
    """CPU, cores, library versions and regtune's build/runtime config, for report headers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "numpy": np.__version__, "bench_n": bench_n}
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


def load_suite(name: str, bench_n: int):
    """A fresh copy of bench/<name>.py, imported with REGTUNE_BENCH_N=bench_n (bench_optim reads
    its sizes when imported), under a private module name so that sizes never leak between runs."""
    path = os.path.join(BENCH_DIR, name + ".py")
    spec = importlib.util.spec_from_file_location(f"_regtune_{name}_{bench_n}", path)
    module = importlib.util.module_from_spec(spec)
    old = os.environ.get("REGTUNE_BENCH_N")
    os.environ["REGTUNE_BENCH_N"] = str(bench_n)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        if old is None:
            os.environ.pop("REGTUNE_BENCH_N", None)
        else:
            os.environ["REGTUNE_BENCH_N"] = old
    return module


def cases(bench_n: int, ops: Callable[[str], bool] = lambda op: True) -> list[tuple[str, str, Callable, int]]:
    """(op, impl, factory, n) for every case of the suites whose op ``ops`` accepts, each
    (op, impl) once (the copy yardstick is in several suites)."""
    import sys

    if BENCH_DIR not in sys.path:  # the suites import _harness, and bench_optim's helpers
        sys.path.insert(0, BENCH_DIR)
    out, seen = [], set()
    for name in SUITES:
        module = load_suite(name, bench_n)
        small = getattr(module, "SMALL_OPS", ())
        for op, impls in module.CASES.items():
            if not ops(op):
                continue
            for impl, factory in impls.items():
                if (op, impl) not in seen:
                    seen.add((op, impl))
                    out.append((op, impl, factory, min(bench_n, 1024) if op in small else bench_n))
    return out


def time_case(factory: Callable, n: int, budget_s: float) -> dict:
    """Build one case and time it: extra_info (op bytes, shape, ...) and the per-round times."""
    ctx = Ctx((n, n))
    fn = factory(ctx)
    info = {"bytes": n * n * 4, "shape": [n, n], **getattr(fn, "extra_info", {})}
    start = time.perf_counter()
    fn()  # warm-up: first-call costs (lazy imports, JIT, page faults) are not timed
    first = time.perf_counter() - start
    times = []
    for _ in range(rounds_for(first, budget_s)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"info": info, "times": times}


def run(
    bench_n: int,
    budget_s: float,
    ops: Callable[[str], bool] = lambda op: True,
    progress: Callable[[int, int, str, str], None] | None = None,
) -> dict:
    """Run the selected cases in this process; the result has pytest-benchmark's JSON layout
    (``benchmarks`` with ``extra_info`` and ``stats.median``, ``machine_info.regtune_bench``),
    so bench/report.py renders either, plus ``skipped``: {(op, impl): why}."""
    todo = list(cases(bench_n, ops))
    benchmarks, skipped = [], {}
    for i, (op, impl, factory, n) in enumerate(todo):
        if progress:
            progress(i, len(todo), op, impl)
        try:
            r = time_case(factory, n, budget_s)
        except Unavailable as exc:
            skipped[f"{op}/{impl}"] = str(exc)
            continue
        finally:
            gc.collect()  # the case's arrays go before the next one allocates its own
        benchmarks.append({
            "name": f"{op}-{impl}", "fullname": f"{op}-{impl}", "group": op,
            "extra_info": {"op": op, "impl": impl, **r["info"]},
            "stats": {"median": statistics.median(r["times"]), "min": min(r["times"]), "rounds": len(r["times"])},
        })  # fmt: skip
    if progress:
        progress(len(todo), len(todo), "", "")
    return {"machine_info": {"regtune_bench": machine_summary(bench_n)}, "benchmarks": benchmarks, "skipped": skipped}


def select(patterns: Iterable[str] | None) -> Callable[[str], bool]:
    """A predicate on op names: any of the shell-style patterns (fnmatch), or every op."""
    import fnmatch

    pats = [p for p in (patterns or []) if p]
    return (lambda op: any(fnmatch.fnmatchcase(op, p) for p in pats)) if pats else (lambda op: True)
