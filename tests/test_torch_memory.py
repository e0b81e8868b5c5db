"""regtune.torch._memory: huge pages for the large tensors regtune.torch allocates (torch optional)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("regtune.torch")

from regtune import _core  # noqa: E402
from regtune.torch import _memory  # noqa: E402

_THP = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _thp_on() -> bool:
    return _THP.exists() and "[never]" not in _THP.read_text()


def _advised_bytes(t) -> int:
    """Bytes of ``t``'s storage in mappings flagged for huge pages (``hg`` in the VmFlags of
    /proc/self/smaps: what madvise(MADV_HUGEPAGE) sets). Whether the kernel then finds free 2 MiB
    pages at the first touch depends on the machine's memory, so the tests check the advice."""
    lo_t = t.untyped_storage().data_ptr()
    hi_t = lo_t + t.untyped_storage().nbytes()
    total, span = 0, None
    for line in pathlib.Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(v, 16) for v in head.split("-"))
            span = (max(lo, lo_t), min(hi, hi_t)) if lo < hi_t and lo_t < hi else None
        elif span is not None and head == "VmFlags:" and "hg" in line.split()[1:]:
            total += span[1] - span[0]
    return total


def test_advise_hugepages_covers_only_whole_huge_pages_inside_the_range():
    assert _core.advise_hugepages(0, 0) == 0
    assert _core.advise_hugepages(4096, 4096) == 0  # no whole huge page inside
    assert _core.advise_hugepages(2**64 - 4096, 2**64 - 1) == 0  # address + nbytes overflows: refused
    a = np.empty(9 << 20, np.uint8)
    got = _core.advise_hugepages(a.ctypes.data, a.nbytes)
    if _thp_on():
        assert got % (2 << 20) == 0 and (5 << 20) <= got <= a.nbytes  # the aligned interior
    else:
        assert got == 0


def test_small_and_untouched_tensors_are_left_alone():
    small = torch.zeros(1000)
    assert _memory.advise_hugepages(small) is small
    t = _memory.empty_like(torch.zeros(3, 5).t())  # contiguous layout whatever the input's strides
    assert t.is_contiguous() and t.shape == (5, 3)


@pytest.mark.skipif(not _thp_on(), reason="transparent huge pages are off on this machine")
def test_dropout_outputs_and_gradients_are_advised_huge_pages():
    torch.manual_seed(0)
    x = torch.randn(2304, 4096, requires_grad=True)  # 36 MiB
    y = rt.nn.Dropout(0.5)(x)
    assert _advised_bytes(y) >= 32 << 20  # all but the unaligned ends
    y.backward(torch.ones_like(y))
    assert _advised_bytes(x.grad) >= 32 << 20


@pytest.mark.skipif(not _thp_on(), reason="transparent huge pages are off on this machine")
def test_materialized_parameters_are_advised_huge_pages():
    with torch.device("meta"):
        model = torch.nn.Linear(4096, 2304)  # 36 MiB of weight
    rt.init.materialize(model, seed=0)
    assert _advised_bytes(model.weight) >= 32 << 20
    with torch.device("meta"):
        again = torch.nn.Linear(4096, 2304)
    rt.init.materialize(again, seed=0)
    assert torch.equal(model.weight, again.weight)
