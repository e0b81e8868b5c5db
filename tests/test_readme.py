"""The README's API tour runs as written (its first ```python block)."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_tour_runs(capsys):
    if not README.exists():  # pragma: no cover - tests run from an sdist without the README
        pytest.skip("README.md is not beside the tests")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python block"
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_tour"})
    assert "simd path" in capsys.readouterr().out


# A dotted name regtune.<...> as the README writes it, in code and in prose; not part of a path,
# a URL or a longer identifier.
_NAME = re.compile(r"(?<![\w./-])regtune(?:\.[A-Za-z_]\w*)+")
_IMPORT = re.compile(r"^\s*(?:import|from)\s+(regtune(?:\.\w+)*(?:\s*,\s*regtune(?:\.\w+)*)*)", re.M)


def _readme() -> str:
    if not README.exists():  # pragma: no cover - tests run from an sdist without the README
        pytest.skip("README.md is not beside the tests")
    return README.read_text()


def readme_names(text: str) -> tuple[set[str], set[str]]:
    """(every dotted name regtune.<...> in ``text``, the regtune modules its code imports)."""
    names = set(_NAME.findall(text))
    imported = set()
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        for group in _IMPORT.findall(block):
            imported.update(m.strip() for m in group.split(","))
    return names, imported


def test_readme_name_finder():
    names, imported = readme_names(
        "Call `regtune.dropout.alpha_dropout(x)`; see regtune.init.\n"
        "python/regtune.x/y, https://e.org/regtune.git, my_regtune.z, regtune.dask.*\n"
        "```python\nimport numpy as np, regtune\nimport regtune, regtune.dask\n```\n"
    )
    assert names == {"regtune.dropout.alpha_dropout", "regtune.init", "regtune.dask"}
    assert imported == {"regtune", "regtune.dask"}


def test_every_name_the_readme_writes_resolves():
    # Issue 14: every regtune.<...> the README writes resolves by attribute access from
    # `import regtune`, after importing the submodules the README's code imports itself.
    import importlib

    names, imported = readme_names(_readme())
    assert len(names) >= 10, sorted(names)
    if any(n == "regtune.dask" or n.startswith("regtune.dask.") for n in names):
        pytest.importorskip("dask.array")
    if any(n == "regtune.torch" or n.startswith("regtune.torch.") for n in names):
        pytest.importorskip("torch")
    for module in sorted(imported):
        importlib.import_module(module)
    import regtune

    missing = []
    for name in sorted(names):
        obj = regtune
        for part in name.split(".")[1:]:
            try:
                obj = getattr(obj, part)
            except AttributeError:
                missing.append(name)
                break
    assert not missing, f"README.md names that do not resolve: {missing}"


# The README's table of which torch.optim implementation each optimizer matches bit for bit,
# for float32: (optimizer, hyperparameters, the torch implementations it equals). Every tensor
# has a multiple of 16 elements, so torch's fused kernels run only their vector loops (AVX2: 8
# float32 lanes, AVX-512: 16); their scalar loop over the last numel % lanes elements rounds
# differently and is the table's stated exception. RMSprop matches none of them (torch has no
# fused RMSprop; the for-loop one rounds differently) and is not listed here.
TORCH_TWINS = [
    ("SGD", dict(lr=0.05), ("for-loop", "foreach", "fused")),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01), ("for-loop", "foreach", "fused")),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), ("for-loop", "foreach", "fused")),
    ("Adam", dict(lr=1e-2, weight_decay=0.05, amsgrad=True), ("fused",)),
    ("AdamW", dict(lr=1e-2), ("fused",)),
    ("AdamW", dict(lr=1e-2, betas=(0.4, 0.9), weight_decay=0.1), ("fused",)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1), ("fused",)),
]
_TORCH_IMPLS = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


@pytest.mark.parametrize("name,kw,twins", TORCH_TWINS, ids=[f"{n}-{'-'.join(k)}" for n, k, _ in TORCH_TWINS])
def test_float32_optimizers_are_bit_identical_to_the_torch_implementation_the_readme_names(name, kw, twins):
    torch = pytest.importorskip("torch")
    import numpy as np

    import regtune

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("the table was measured with torch's AVX2/AVX-512 kernels")
    rng = np.random.default_rng(0)
    shapes = [(48, 32), (16,), (4, 4, 8)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(50)]
    mine = [p.copy() for p in start]
    opt = getattr(regtune.optim, name)(mine, **kw)
    for g in grads:
        opt.step(g)
    for impl in twins:
        theirs = [torch.tensor(p.copy(), requires_grad=True) for p in start]
        topt = getattr(torch.optim, name)(theirs, **kw, **_TORCH_IMPLS[impl])
        for g in grads:
            for t, gi in zip(theirs, g):
                t.grad = torch.tensor(gi.copy())
            topt.step()
        for i, (a, t) in enumerate(zip(mine, theirs)):
            assert np.array_equal(a, t.detach().numpy()), f"{name}({kw}) params[{i}] differs from torch's {impl}"


def test_demo_quotes_the_readme_table():
    # regtune demo compares its own normal-vs-NumPy figure with the README's, per SIMD path.
    from regtune.cli import README_NORMAL_VS_NUMPY

    row = next(line for line in README.read_text().splitlines() if line.startswith("| normal | numpy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == f"{README_NORMAL_VS_NUMPY['avx512']:.1f}x", row  # the AVX-512 speed-up column
    assert cells[8] == f"{README_NORMAL_VS_NUMPY['avx2']:.1f}x", row  # the AVX2 speed-up column


def test_the_optimizer_table_lists_every_rule():
    # The README's table under "The optimizers" has a row for every rule of regtune.optim.RULES
    # (a rule added through its own files appears in the registry, and must be documented).
    import regtune

    text = _readme()
    section = text[text.index("### The optimizers") :]
    section = section[: section.index("\n### ", 5)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {m for row in rows for m in re.findall(r"`(\w+)`", row.split("|")[1])}
    missing = [cls.__name__ for cls in regtune.optim.OPTIMIZERS.values() if cls.__name__ not in named]
    assert not missing, f"README's optimizer table lacks {missing}"
