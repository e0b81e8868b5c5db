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


def _huge_bytes(t) -> int:
    """AnonHugePages of the mappings overlapping ``t``'s storage (/proc/self/smaps), in bytes:
    advising splits a mapping, so the storage may span several."""
    lo_t = t.untyped_storage().data_ptr()
    hi_t = lo_t + t.untyped_storage().nbytes()
    total, inside = 0, False
    for line in pathlib.Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo < hi_t and lo_t < hi
        elif inside and head == "AnonHugePages:":
            total += int(line.split()[1]) * 1024
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
def test_dropout_outputs_and_gradients_are_mapped_with_huge_pages():
    torch.manual_seed(0)
    x = torch.randn(2048, 4096, requires_grad=True)  # 32 MiB
    y = rt.nn.Dropout(0.5)(x)
    assert _huge_bytes(y) >= 16 << 20
    y.backward(torch.ones_like(y))
    assert _huge_bytes(x.grad) >= 16 << 20
    plain = torch.randn(2048, 4096)
    plain.add_(1)  # torch's own allocation, written: 4 KiB pages (unless THP is "always")
    if "[always]" not in _THP.read_text():
        assert _huge_bytes(plain) < 16 << 20


@pytest.mark.skipif(not _thp_on(), reason="transparent huge pages are off on this machine")
def test_materialized_parameters_are_mapped_with_huge_pages():
    with torch.device("meta"):
        model = torch.nn.Linear(2048, 2048)  # 16 MiB of weight
    rt.init.materialize(model, seed=0)
    assert _huge_bytes(model.weight) >= 8 << 20
    with torch.device("meta"):
        again = torch.nn.Linear(2048, 2048)
    rt.init.materialize(again, seed=0)
    assert torch.equal(model.weight, again.weight)
