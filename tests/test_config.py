"""Tests for regtune's configuration: show_config, config, thread control."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import regtune

from .conftest import SIMD_PATHS, num_threads


def test_config_reports_path_threads_policy_compiler():
    c = regtune.config()
    assert c["simd"] in SIMD_PATHS
    assert c["simd"] == SIMD_PATHS[-1] or os.environ.get("REGTUNE_SIMD")  # best path by default
    assert set(c["simd_supported"]) == set(SIMD_PATHS)
    assert "scalar" in c["simd_compiled"]
    assert c["threads"] == regtune.get_num_threads() >= 1
    assert isinstance(c["thread_pool"], bool)
    assert 1 <= c["threads_default"] <= c["max_threads"] == regtune.MAX_THREADS
    assert 0 <= c["spin_us"] and c["serial_threshold"] >= 1
    assert c["compiler"]


def test_show_config_prints_the_essentials(capsys):
    regtune.show_config()
    text = capsys.readouterr().out
    for needle in ("simd path", regtune.config()["simd"], "threads", "thread policy", "compiler"):
        assert needle in text


def test_set_num_threads_round_trips():
    with num_threads(3):
        assert regtune.get_num_threads() == 3
        assert regtune.config()["threads"] == 3


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError),
                                     (regtune.MAX_THREADS + 1, ValueError), (10**6, ValueError),
                                     (10**30, ValueError), (None, TypeError), (True, TypeError)])
def test_set_num_threads_rejects_bad_values(bad, exc):
    with pytest.raises(exc, match="n"):
        regtune.set_num_threads(bad)


def test_omp_num_threads_sets_the_default():
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", "import regtune; print(regtune.get_num_threads())"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = "3" if regtune.config()["thread_pool"] else "1"
    assert out.stdout.strip() == expected
