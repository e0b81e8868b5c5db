"""Build and run-time configuration: SIMD path, threads, compiler, OpenMP."""

from __future__ import annotations

import os
import platform
from typing import Any

from . import _core
from ._validation import nonnegative_int

__all__ = ["config", "show_config", "get_num_threads", "set_num_threads"]


def get_num_threads() -> int:
    """The number of threads regtune's kernels use.

    Until :func:`set_num_threads` is called this follows the OpenMP runtime: OMP_NUM_THREADS
    (all cores by default), or a limit set with ``threadpoolctl.threadpool_limits``.
    """
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) in every kernel from now on, process-wide.

    Results do not depend on it: element i of every output is a function of its index alone,
    and reductions combine fixed blocks in a fixed order.

    Raises:
        TypeError / ValueError: ``n`` is not an int >= 1.
    """
    n = nonnegative_int(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _core.set_num_threads(n)


def config() -> dict[str, Any]:
    """The configuration as a dict: simd, simd_supported, simd_compiled, threads, openmp,
    compiler, serial_threshold, REGTUNE_SIMD, OMP_NUM_THREADS, machine, version."""
    from . import __version__

    info = dict(_core.build_info())
    return {
        "version": __version__,
        "simd": _core.simd(),
        "simd_supported": list(info["simd_supported"]),
        "simd_compiled": list(info["simd_compiled"]),
        "threads": get_num_threads(),
        "openmp": bool(info["openmp"]),
        "compiler": info["compiler"],
        "serial_threshold": int(info["serial_threshold"]),
        "REGTUNE_SIMD": os.environ.get("REGTUNE_SIMD"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def show_config() -> None:
    """Print the SIMD path in use, the thread count and how this build was made."""
    c = config()
    print(f"regtune {c['version']}")
    print(f"  simd path      : {c['simd']}  (CPU supports: {', '.join(c['simd_supported'])};"
          f" compiled: {', '.join(c['simd_compiled'])})")
    print(f"  threads        : {c['threads']}  (cpu_count {c['cpu_count']},"
          f" OMP_NUM_THREADS={c['OMP_NUM_THREADS']})")
    print(f"  openmp         : {'yes' if c['openmp'] else 'no (serial build)'}")
    print(f"  compiler       : {c['compiler']}")
    print(f"  machine        : {c['machine']}")
    print(f"  REGTUNE_SIMD   : {c['REGTUNE_SIMD']}")
