"""Same seed, same numbers: on 1, 2 or 3 threads and on every SIMD path the CPU runs.

In-process checks switch paths with the private _core.select_simd; subprocess checks use the
public knobs, REGTUNE_SIMD and OMP_NUM_THREADS, exactly as a user or a bug report would.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

import regtune
import regtune.init as init
import regtune.random as rr
from regtune import _core

from .conftest import SIMD_PATHS, num_threads, simd_path

N = 100_003  # above the serial threshold, and not a multiple of any vector width


def _outputs() -> dict[str, np.ndarray]:
    out = {"bits": rr.bits(N, seed=9, offset=5)}
    for dt in (np.float32, np.float64):
        tag = np.dtype(dt).name
        out[f"uniform_{tag}"] = rr.uniform(N, -1, 1, dtype=dt, seed=9, offset=3)
        out[f"normal_{tag}"] = rr.normal(N, 0.1, 2.0, dtype=dt, seed=9, offset=1)
        out[f"truncnorm_{tag}"] = rr.truncated_normal(N, dtype=dt, seed=9, offset=7)
        out[f"truncnorm_far_{tag}"] = rr.truncated_normal(N, 0, 1, 6.0, 9.0, dtype=dt, seed=9)
        out[f"xavier_{tag}"] = init.xavier_uniform((317, 331), dtype=dt, seed=9)
        out[f"kaiming_{tag}"] = init.kaiming_normal((331, 317), dtype=dt, seed=9)
        out[f"trunc_{tag}"] = init.trunc_normal((317, 331), std=0.02, a=-0.04, b=0.04, dtype=dt, seed=9)
        x = rr.normal(N, dtype=dt, seed=3)
        out[f"dropout_{tag}"], out[f"dropout_mask_{tag}"] = regtune.dropout(x, 0.3, seed=9, offset=13)
        out[f"dropout_regen_{tag}"] = regtune.dropout_backward(x, p=0.3, seed=9, offset=13)
    for dt in (np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)):  # float32 math, rounded once
        tag = dt.name
        out[f"uniform_{tag}"] = rr.uniform(N, -1, 1, dtype=dt, seed=9, offset=3)
        out[f"normal_{tag}"] = rr.normal(N, 0.1, 2.0, dtype=dt, seed=9, offset=1)
        out[f"truncnorm_{tag}"] = rr.truncated_normal(N, dtype=dt, seed=9, offset=7)
        out[f"truncnorm_far_{tag}"] = rr.truncated_normal(N, 0, 1, 6.0, 9.0, dtype=dt, seed=9)
        out[f"xavier_{tag}"] = init.xavier_uniform((317, 331), dtype=dt, seed=9)
        x = rr.normal(N, dtype=dt, seed=3)
        out[f"dropout_{tag}"], out[f"dropout_mask_{tag}"] = regtune.dropout(x, 0.3, seed=9, offset=13)
        out[f"alpha_{tag}"] = regtune.dropout.alpha_dropout(x, 0.3, seed=9, return_mask=False)
        out[f"feature_{tag}"] = regtune.dropout.feature_dropout(x[:100_000].reshape(40, 25, 100), 0.3, seed=9)[0]
        out[f"dropout_regen_{tag}"] = regtune.dropout_backward(x, p=0.3, seed=9, offset=13)
        x32 = rr.normal(N, seed=4)
        out[f"convert_{tag}"] = np.empty(N, dt)
        _core.convert(x32, out[f"convert_{tag}"])
        out[f"round_sr_{tag}"] = np.empty(N, dt)
        _core.round_stochastic(x32, out[f"round_sr_{tag}"], 9, 0, 11)
    return out


def test_bit_identical_across_paths_and_threads():
    reference = None
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                got = _outputs()
            if reference is None:
                reference = got
                continue
            for name, arr in got.items():
                assert arr.tobytes() == reference[name].tobytes(), (name, path, threads)


SCRIPT = r"""
import hashlib, json, sys
sys.path[:0] = [{tests_dir!r}]
import regtune
from tests.test_determinism import _outputs
h = hashlib.sha256()
for name, arr in sorted(_outputs().items()):
    h.update(name.encode()); h.update(arr.tobytes())
print(json.dumps({{"simd": regtune.config()["simd"], "threads": regtune.get_num_threads(),
                  "digest": h.hexdigest()}}))
"""


def _run(env_extra: dict[str, str], code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("REGTUNE_SIMD", None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_bit_identical_in_subprocesses_with_public_knobs():
    code = SCRIPT.format(tests_dir=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    digests = {}
    for path in SIMD_PATHS:
        for threads in ("1", "2", "3"):
            proc = _run({"REGTUNE_SIMD": path, "OMP_NUM_THREADS": threads, "REGTUNE_SERIAL_THRESHOLD": "1024"}, code)
            assert proc.returncode == 0, proc.stderr
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            # (a build without the thread pool runs every kernel on the calling thread alone)
            expected_threads = int(threads) if regtune.config()["thread_pool"] else 1
            assert info["simd"] == path and info["threads"] == expected_threads
            digests[(path, threads)] = info["digest"]
    in_process = hashlib.sha256()
    for name, arr in sorted(_outputs().items()):
        in_process.update(name.encode())
        in_process.update(arr.tobytes())
    assert set(digests.values()) == {in_process.hexdigest()}, digests


def test_unknown_simd_path_fails_at_import_with_a_clear_message():
    proc = _run({"REGTUNE_SIMD": "sse9"}, "import regtune")
    assert proc.returncode != 0
    assert "REGTUNE_SIMD=sse9" in proc.stderr and "scalar, avx2, avx512" in proc.stderr


@pytest.mark.skipif(len(SIMD_PATHS) == 3, reason="this CPU runs every path; nothing unsupported to ask for")
def test_unsupported_simd_path_fails_at_import():  # pragma: no cover - depends on the CPU
    missing = next(p for p in ("avx2", "avx512") if p not in SIMD_PATHS)
    proc = _run({"REGTUNE_SIMD": missing}, "import regtune")
    assert proc.returncode != 0 and f"REGTUNE_SIMD={missing}" in proc.stderr
    assert "not supported by this CPU" in proc.stderr or "not compiled into this build" in proc.stderr


def test_select_simd_rejects_unknown_names():
    from regtune import _core

    with pytest.raises(ValueError, match="unknown SIMD path"):
        _core.select_simd("neon")
    assert regtune.config()["simd"] in SIMD_PATHS
