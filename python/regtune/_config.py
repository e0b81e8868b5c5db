"""Build and run-time configuration: SIMD path, threads and their policy, compiler."""

from __future__ import annotations

import os
import platform
import warnings
from typing import Any

from . import _core
from ._validation import nonnegative_int

__all__ = ["config", "show_config", "get_num_threads", "set_num_threads"]


#: The most threads :func:`set_num_threads` accepts (and OMP_NUM_THREADS is clamped to).
MAX_THREADS: int = int(_core.MAX_THREADS)


def get_num_threads() -> int:
    """The number of threads regtune's kernels use.

    Until :func:`set_num_threads` is called this is the default: OMP_NUM_THREADS when set (read
    at import, clamped to ``MAX_THREADS``), else the number of CPUs this process may run on
    (its affinity mask). ``threadpoolctl.threadpool_limits`` changes it like set_num_threads.
    """
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every kernel from now on, process-wide (1 <= n <= ``MAX_THREADS``).

    Results do not depend on it: element i of every output is a function of its index alone,
    and reductions combine fixed blocks in a fixed order. In a build without the thread pool
    every kernel runs on the calling thread whatever ``n`` is.

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n`` is outside [1, MAX_THREADS].
    """
    n = nonnegative_int(n, "n")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be between 1 and {MAX_THREADS}, got {n}")
    _core.set_num_threads(n)


def _threads_from_environment() -> None:
    """OMP_NUM_THREADS (its first entry, as OpenMP reads a list) sets the default thread count;
    a value that is not a positive integer is ignored and an absurd one clamped, with a warning."""
    raw = os.environ.get("OMP_NUM_THREADS")
    if raw is None or raw.strip() == "":
        return
    first = raw.split(",")[0].strip()
    try:
        n = int(first)
    except ValueError:
        warnings.warn(f"regtune ignores OMP_NUM_THREADS={raw!r}: not a positive integer", RuntimeWarning, stacklevel=3)
        return
    if n < 1:
        warnings.warn(f"regtune ignores OMP_NUM_THREADS={raw!r}: not a positive integer", RuntimeWarning, stacklevel=3)
        return
    if n > MAX_THREADS:
        warnings.warn(f"OMP_NUM_THREADS={raw} is more than regtune's limit of {MAX_THREADS} threads;"
                      f" regtune uses {MAX_THREADS}", RuntimeWarning, stacklevel=3)
        n = MAX_THREADS
    _core.set_default_num_threads(n)


def _spin_from_environment() -> None:
    """REGTUNE_SPIN_US (microseconds an idle worker spins before it sleeps, 0 to ACTIVE_SPIN_US)
    overrides the policy; the C++ side reads it too, this only reports a bad value."""
    raw = os.environ.get("REGTUNE_SPIN_US")
    if raw is None or raw.strip() == "":
        return
    try:
        us = int(raw)
    except ValueError:
        us = -1
    if not 0 <= us <= int(_core.ACTIVE_SPIN_US):
        warnings.warn(f"regtune ignores REGTUNE_SPIN_US={raw!r}: expected an integer number of microseconds"
                      f" in [0, {int(_core.ACTIVE_SPIN_US)}]", RuntimeWarning, stacklevel=3)
        return
    _core.set_spin_us(us)


def _serial_threshold_from_environment() -> None:
    """REGTUNE_SERIAL_THRESHOLD (an element count >= 1) overrides the size below which a call
    stays on the calling thread."""
    raw = os.environ.get("REGTUNE_SERIAL_THRESHOLD")
    if raw is None or raw.strip() == "":
        return
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= 2**62:
        warnings.warn(f"regtune ignores REGTUNE_SERIAL_THRESHOLD={raw!r}: expected an element count >= 1",
                      RuntimeWarning, stacklevel=3)
        return
    _core.set_serial_threshold(n)


def _register_with_threadpoolctl() -> None:
    """Make regtune's pool visible to threadpoolctl (threadpool_info, threadpool_limits) as an
    OpenMP-like runtime: ``threadpool_limits(1)`` and ``threadpool_limits(1, user_api="openmp")``
    limit regtune's threads as they limit OpenMP's. Needs threadpoolctl >= 3.5 (``register``);
    older versions and its absence are fine."""
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register") or not hasattr(threadpoolctl, "LibController"):
        return

    class RegtuneController(threadpoolctl.LibController):
        user_api = "openmp"
        internal_api = "regtune"
        filename_prefixes = ("_core.",)
        # Other packages' _core extensions lack these, so threadpoolctl passes them by.
        check_symbols = ("regtune_get_num_threads", "regtune_set_num_threads")

        def get_num_threads(self):
            return self.dynlib.regtune_get_num_threads()

        def set_num_threads(self, num_threads):
            return self.dynlib.regtune_set_num_threads(int(num_threads))

        def get_version(self):
            from . import __version__

            return __version__

    threadpoolctl.register(RegtuneController)


def config() -> dict[str, Any]:
    """The configuration as a dict: simd, simd_supported, simd_compiled, threads,
    threads_default, max_threads, thread_pool (False in a serial build), spin_us (how long an
    idle worker spins before it sleeps), serial_threshold (arrays smaller than this stay on the
    calling thread), compiler, REGTUNE_SIMD, REGTUNE_SPIN_US, REGTUNE_SERIAL_THRESHOLD,
    OMP_NUM_THREADS, OMP_WAIT_POLICY,
    machine, cpu_count, version."""
    from . import __version__

    info = dict(_core.build_info())
    return {
        "version": __version__,
        "simd": _core.simd(),
        "simd_supported": list(info["simd_supported"]),
        "simd_compiled": list(info["simd_compiled"]),
        "threads": get_num_threads(),
        "threads_default": int(_core.default_num_threads()) if info["thread_pool"] else 1,
        "max_threads": MAX_THREADS,
        "thread_pool": bool(info["thread_pool"]),
        "spin_us": int(_core.spin_us()),
        "compiler": info["compiler"],
        "serial_threshold": int(info["serial_threshold"]),
        "REGTUNE_SIMD": os.environ.get("REGTUNE_SIMD"),
        "REGTUNE_SPIN_US": os.environ.get("REGTUNE_SPIN_US"),
        "REGTUNE_SERIAL_THRESHOLD": os.environ.get("REGTUNE_SERIAL_THRESHOLD"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def show_config() -> None:
    """Print the SIMD path in use, the thread count and how this build was made."""
    c = config()
    print(f"regtune {c['version']}")
    print(f"  simd path      : {c['simd']}  (CPU supports: {', '.join(c['simd_supported'])};"
          f" compiled: {', '.join(c['simd_compiled'])})")
    print(f"  threads        : {c['threads']}  (default {c['threads_default']}, cpu_count {c['cpu_count']},"
          f" OMP_NUM_THREADS={c['OMP_NUM_THREADS']}, at most {c['max_threads']})")
    if c["thread_pool"]:
        print(f"  thread policy  : idle workers spin {c['spin_us']} us then sleep; arrays under"
              f" {c['serial_threshold']} elements stay on the calling thread; chunks taken dynamically")
    else:
        print("  thread policy  : serial build (every kernel on the calling thread)")
    print(f"  compiler       : {c['compiler']}")
    print(f"  machine        : {c['machine']}")
    print(f"  REGTUNE_SIMD   : {c['REGTUNE_SIMD']}")


_threads_from_environment()
_spin_from_environment()
_serial_threshold_from_environment()
_register_with_threadpoolctl()
