"""Fresh tensors for what regtune.torch writes: torch's CPU allocator maps a large tensor with
4 KiB pages, so the first write of each 4 KiB takes a page fault (64 MiB: 16,384 faults, about
20 ms on this project's 2-core machine, three times the dropout kernel that fills it). NumPy
advises transparent huge pages for its arrays of 4 MiB and more; regtune.torch does the same for
the tensors it allocates or fills first (dropout's outputs and gradients, ``materialize``'s
parameters): 2 MiB pages, one fault each. torch's own switch for its allocator is
``THP_MEM_ALLOC_ENABLE=1``. Only the mapping's flag changes: values, ownership and lifetime
stay torch's. A no-op where transparent huge pages are off ("never") or absent."""

from __future__ import annotations

import torch

from .. import _core

_MIN_BYTES = 4 << 20  # NumPy's threshold for the same advice


def advise_hugepages(t: torch.Tensor) -> torch.Tensor:
    """Advise huge pages for ``t``'s storage when it is 4 MiB or more; returns ``t``. Meant for
    storage not yet written (pages already mapped keep their size until the kernel merges them)."""
    if t.device.type == "cpu":
        st = t.untyped_storage()
        if st.nbytes() >= _MIN_BYTES:
            _core.advise_hugepages(st.data_ptr(), st.nbytes())
    return t


def empty_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(t)`` in contiguous layout, with huge pages advised."""
    return advise_hugepages(torch.empty_like(t, memory_format=torch.contiguous_format))
