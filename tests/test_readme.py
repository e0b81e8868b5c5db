"""The README's code runs as written: every ```python block, on the README's own set-up."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"

# A fenced block: its language and its text, with the line it starts on.
_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def code_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, first line number, code) of every fenced block of ``text``."""
    return [(m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2)) for m in _FENCE.finditer(text)]


DOCS = README.parent / "docs"


def _python_blocks() -> list[tuple[str, str]]:
    """("<file>:<line>", code) of every python block of the README, then of the docs/ guides
    that is not the same code as one already listed."""
    files = [README] if README.exists() else []  # (an sdist has neither)
    files += sorted(DOCS.glob("*.md")) if DOCS.is_dir() else []
    seen, out = set(), []
    for f in files:
        for lang, line, code in code_blocks(f.read_text()):
            if lang == "python" and code not in seen:
                seen.add(code)
                out.append((f"{f.name}:{line}", code))
    return out


#: Packages a README block may import that the README's set-up (".[train,test]") does not
#: install: a block importing one of them is skipped when it is absent, saying which. CI installs
#: them (.ci/run), so there every block runs.
PEERS = {
    "torch": "pip install torch (regtune[torch]'s peer; CI installs it)",
    "transformers": "pip install transformers (a model for regtune.torch.init.materialize; CI installs it)",
    "bitsandbytes": "pip install bitsandbytes (8-bit state moved to and from it; CI installs it)",
}


def test_code_block_finder():
    text = "a\n```bash\nls\n```\n\n```python\nx = 1\n```\n```\nplain\n```\n"
    assert code_blocks(text) == [("bash", 2, "ls\n"), ("python", 6, "x = 1\n"), ("", 9, "plain\n")]


def test_every_readme_block_is_python_or_shell():
    # Issue 28: every python block runs (below); the other blocks are shell commands, said so by
    # their fence, so that no python snippet escapes the test by an unmarked fence.
    blocks = code_blocks(_readme())
    assert {lang for lang, _, _ in blocks} <= {"python", "bash"}, [(lang, line) for lang, line, _ in blocks]
    assert sum(lang == "python" for lang, _, _ in blocks) >= 5
    assert sum(where.startswith("README.md:") for where, _ in _python_blocks()) >= 5


@pytest.mark.parametrize("where, code", _python_blocks(), ids=[where for where, _ in _python_blocks()])
def test_python_block_runs(where, code, tmp_path, monkeypatch):
    """Each block in a fresh namespace, in an empty folder (a block may write a file there)."""
    imported = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, re.M))
    for peer in sorted(imported & set(PEERS)):
        pytest.importorskip(peer, reason=f"the block at {where} needs {peer}: {PEERS[peer]}")
    monkeypatch.chdir(tmp_path)
    import regtune

    threads = regtune.get_num_threads()
    try:
        exec(compile(code, where, "exec"), {"__name__": "readme_block"})
    finally:
        regtune.set_num_threads(threads)  # the tour sets 2


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


# The table of which torch.optim implementation each optimizer matches bit for bit (the README
# states it in short; docs/optimizers.md has the table), for float32: (optimizer,
# hyperparameters, the torch implementations it equals). Every tensor has a multiple of 16
# elements, so torch's fused kernels run only their vector loops (AVX2: 8 float32 lanes,
# AVX-512: 16); their scalar loop over the last numel % lanes elements rounds differently and is
# the table's stated exception. RMSprop matches none of them (torch has no fused RMSprop; the
# for-loop one rounds differently) and is not listed here.
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


def _slug(heading: str) -> str:
    """The anchor GitHub (and MkDocs' toc) gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.*?)\s*$", re.sub(_FENCE, "", text), re.M)}


def test_slug():
    assert _slug("Beyond one machine: regtune.dask") == "beyond-one-machine-regtunedask"
    assert _slug("License, changelog, contributing") == "license-changelog-contributing"


def test_readme_links_and_contents_resolve():
    # Issue 28: the README is a flat list of ## sections with a table of contents; every
    # relative link (to a section, a docs page and its section, or a file) leads somewhere.
    text = _readme()
    prose = re.sub(_FENCE, "", text)
    assert not re.search(r"^### ", prose, re.M), "the README's sections are flat (## only)"
    sections = re.findall(r"^## (.*?)\s*$", prose, re.M)
    toc = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"\]\(#([^)]+)\)", toc) == [_slug(s) for s in sections if s != "Contents"]
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = README.parent / path if path else README
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
            broken.append(target)
    assert not broken, f"README.md links that lead nowhere: {broken}"
    assert len(sections) >= 10


def test_readme_tells_no_project_history():
    # Issue 28: the README speaks of what regtune is, not of what an issue aimed at.
    text = _readme().lower()
    for phrase in ("the issue", "aimed at", "once aimed", "issue's aims", "before this", "of before"):
        assert phrase not in text, phrase


def test_every_figure_names_its_machine():
    # Issue 28: a figure is stated with the machine it came from. Every paragraph of the README
    # that quotes a time, a speed-up or an accuracy names a machine or says it is this run's.
    machine = re.compile(r"zen 4|zen 3|epyc|the machine it runs on|for your machine|same cpu", re.I)
    # (measured units: a setting such as "spin for at most 50 us" is not a measurement)
    figure = re.compile(r"\d(?:[\d.,]*)\s*(?:ms|s\b|x\b|%|images/s|gb/s)", re.I)
    unnamed = []
    for para in re.split(r"\n\s*\n", re.sub(_FENCE, "", _readme())):
        if para.startswith("|") or para.startswith("#"):
            continue  # a table: its machine is named in the paragraph above it
        if figure.search(para) and not machine.search(para):
            unnamed.append(para[:100])
    assert not unnamed, unnamed


def test_the_optimizer_table_lists_every_rule():
    # The optimizer table of docs/optimizers.md (the README links it) has a row for every rule of
    # regtune.optim.RULES (a rule added through its own files appears in the registry, and must
    # be documented).
    import regtune

    page = DOCS / "optimizers.md"
    if not page.exists():  # pragma: no cover - tests run from an sdist without the docs
        pytest.skip("docs/optimizers.md is not beside the tests")
    section = page.read_text().split("\n## ", 1)[0]  # the page's first section: the table
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "docs/optimizers.md has no optimizer table before its first ## section"
    named = {m for row in rows for m in re.findall(r"`(\w+)`", row.split("|")[1])}
    missing = [cls.__name__ for cls in regtune.optim.OPTIMIZERS.values() if cls.__name__ not in named]
    assert not missing, f"docs/optimizers.md's optimizer table lacks {missing}"
