"""regtune: fast, deterministic CPU kernels for training neural networks.

Counter-based random numbers (Philox4x32-10) behind NumPy-style samplers and torch-style
weight initializers; one native call per operation, the GIL released, the same numbers on
every thread count and SIMD path.

    >>> import regtune
    >>> w = regtune.init.kaiming_normal((512, 256), seed=0)
    >>> regtune.show_config()          # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

# First, before the imports below take their second: Ctrl-C while the regtune command is still
# starting ends it with one line and status 130 (see _startup; nothing happens on plain imports).
from . import _startup  # noqa: F401, I001

from . import _core  # noqa: F401  (selects the SIMD path at import; REGTUNE_SIMD overrides)
from . import augment, dropout, optim, penalties, random, schedules
from ._config import MAX_THREADS, config, get_num_threads, set_num_threads, show_config
from .dropout import dropout_backward, dropout_mask
from .random import Generator

# regtune.dropout is the module regtune/dropout.py, callable as its function dropout():
# regtune.dropout(x, p) and regtune.dropout.alpha_dropout(x, p) both work.
_dropout_module = dropout  # the name this package used for the module before it was callable

__all__ = [
    "MAX_THREADS",
    "Generator",
    "augment",
    "config",
    "dropout",
    "dropout_backward",
    "dropout_mask",
    "get_num_threads",
    "init",
    "optim",
    "penalties",
    "random",
    "schedules",
    "set_num_threads",
    "show_config",
    "trainer",
]


def __getattr__(name: str):
    # regtune.init and regtune.trainer are imported on first use so that `import regtune` stays light.
    if name in ("init", "trainer"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'regtune' has no attribute {name!r}")
