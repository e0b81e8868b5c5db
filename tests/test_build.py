"""tools/build_progress.sh, the compiler launcher that shows the build's progress behind pip's
spinner (CMakeLists.txt, REGTUNE_BUILD_PROGRESS)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "tools" / "build_progress.sh"

pytestmark = pytest.mark.skipif(not SCRIPT.exists() or shutil.which("sh") is None, reason="a source checkout with sh")


def _launch(tmp_path, *compiler: str, src="/a/cpp/src/optim.cpp", obj="x/regtune_kernels_avx512.dir/optim.o"):
    return subprocess.run(["sh", str(SCRIPT), "24", str(tmp_path / "stamps"), *compiler, "-c", src, "-o", obj],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def test_each_compile_says_which_file_and_how_far_the_build_has_come(tmp_path):
    first = _launch(tmp_path, "true")
    assert first.returncode == 0
    assert first.stdout.splitlines() == ["regtune build: 24 C++ files, about 2 minutes on an idle 2-core machine",
                                         "regtune build: [1/24] compiling src/optim.cpp (AVX-512)"]  # fmt: skip
    again = _launch(tmp_path, "true")  # the same object again: not counted twice
    assert again.stdout.splitlines() == ["regtune build: [1/24] compiling src/optim.cpp (AVX-512)"]
    other = _launch(tmp_path, "true", src="/a/cpp/bindings/optim.cpp", obj="x/_core.dir/optim.o")
    assert other.stdout.splitlines() == ["regtune build: [2/24] compiling bindings/optim.cpp"]


def test_the_compiler_runs_unchanged_and_its_failure_fails_the_build(tmp_path):
    out = tmp_path / "args"
    ok = _launch(tmp_path, "sh", "-c", f'printf "%s " "$@" > {out}', "compiler")
    assert ok.returncode == 0
    assert out.read_text() == "-c /a/cpp/src/optim.cpp -o x/regtune_kernels_avx512.dir/optim.o "
    failed = _launch(tmp_path, "sh", "-c", "echo 'error: bad' >&2; exit 3", "compiler")
    assert failed.returncode == 3 and "error: bad" in failed.stderr
