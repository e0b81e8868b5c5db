"""regtune beyond one machine: the same numbers on a dask cluster (optional extra ``[dask]``).

Every random value in regtune is a pure function of (seed, element index), so a tensor can be
made chunk by chunk, on any worker, in any order, and still equal the one-machine tensor bit
for bit. This package builds dask arrays that way:

- :mod:`regtune.dask.random`: ``uniform``, ``normal``, ``truncated_normal`` with ``chunks=``;
- :mod:`regtune.dask.init`: every initializer of :mod:`regtune.init`, same names and
  arguments, plus ``chunks=`` (fans from the whole shape);
- :func:`dropout` / :func:`dropout_backward`: dropout of a dask array, the mask regenerated per
  chunk in the backward;
- :mod:`regtune.dask.optim`: ``step(...)``, a data-parallel fused optimizer step whose global
  gradient norm is reduced in regtune's fixed block order.

Install with ``pip install "regtune[dask]"`` (dask[array] and distributed).

    >>> import numpy as np, regtune, regtune.dask
    >>> w = regtune.dask.init.xavier_uniform((2000, 1000), seed=0, chunks=(512, 300))
    >>> bool(np.array_equal(w.compute(), regtune.init.xavier_uniform((2000, 1000), seed=0)))
    True
"""

from __future__ import annotations

try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'regtune.dask needs dask: pip install "regtune[dask]" (or: pip install "dask[array]" distributed)'
    ) from exc

from . import init, optim, random
from ._dropout import dropout, dropout_backward

__all__ = ["dropout", "dropout_backward", "init", "optim", "random"]
