"""torch's own OpenMP threads for the kernels regtune.torch calls.

Right after a torch operator, torch's OpenMP threads are awake: the runtime lets them spin for
a while before they sleep. regtune's own pool would then start (or wake) its workers on the
cores those threads spin on, and both lose: inside a training loop an optimizer step ran 0.66x
torch's fused one at 2 threads (bench/bench_torch.py). So the kernels that regtune.torch calls
run their chunks on the team of the OpenMP runtime torch runs on (its ``GOMP_parallel``; LLVM's
and Intel's runtimes export it too), found in the process as torch's own library resolves it.
The chunks are the same as on regtune's pool, and so are the values; the thread count is
regtune's (``regtune.set_num_threads``; by default torch's too). A forked child, a torch built on
another parallel backend, or ``REGTUNE_TORCH_OPENMP=0`` uses regtune's pool.
"""

from __future__ import annotations

import ctypes
import os

import torch

from .. import _core


def _gomp_parallel() -> int:
    """The address of the GOMP_parallel that torch's library binds to, or 0."""
    if os.environ.get("REGTUNE_TORCH_OPENMP", "1") == "0":
        return 0
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return 0
    lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:  # already loaded by torch (RTLD_NOLOAD: never loads another copy)
        handle = ctypes.CDLL(lib, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        return ctypes.cast(handle.GOMP_parallel, ctypes.c_void_p).value or 0
    except (OSError, AttributeError):
        return 0


_address = _gomp_parallel()
#: Whether regtune.torch's kernels run on torch's OpenMP team in this process.
available = bool(_address)
if available:
    _core.set_openmp_parallel(_address)


class team:
    """``with team():`` the kernels this thread calls run on torch's OpenMP team (when there
    is one)."""

    __slots__ = ("_prev",)

    def __enter__(self) -> None:
        self._prev = _core.use_openmp_team(True)

    def __exit__(self, *exc: object) -> None:
        _core.use_openmp_team(self._prev)
