"""Threads: ops called from many Python threads at once, the OpenMP runtime seen by
threadpoolctl, and torch (which brings its own OpenMP runtime) in the same process.

Every kernel releases the GIL, so Python threads really do run ops at the same time, each op
on its own OpenMP team; the results must equal serial calls bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from importlib.util import find_spec

import numpy as np
import pytest

import regtune
import regtune.init as init
import regtune.random as rr
from regtune import optim, penalties

N = 300_007  # above the serial threshold: every call starts an OpenMP team


def _work(i: int) -> list[np.ndarray]:
    """A mix of ops, different per worker, each returning arrays to compare."""
    x = rr.normal(N, seed=i, dtype=np.float64 if i % 2 else np.float32)
    out = [x, rr.uniform((7, N // 7), seed=i, offset=3), rr.truncated_normal(N, seed=i, offset=i)]
    out.append(init.kaiming_uniform((517, 580), seed=i))
    y, mask = regtune.dropout(x, 0.25, seed=i)
    out += [y, mask, regtune.dropout_backward(x, p=0.25, seed=i)]
    params = [rr.normal(N, seed=100 + i), rr.normal(1001, seed=200 + i)]
    opt = optim.AdamW(params, lr=1e-2, max_grad_norm=1.0)
    for step in range(3):
        opt.step([rr.normal(N, seed=300 + i, offset=step * N), rr.normal(1001, seed=400 + i, offset=step)])
    out += params + opt.state["exp_avg_sq"]
    out.append(np.array([penalties.penalty_value(x, 0.1, 0.2)]))
    g = rr.normal(N, seed=500 + i)
    out.append(np.array([optim.clip_grad_norm([g], 1.0)]))
    out.append(g)
    return out


def test_eight_python_threads_give_the_serial_results():
    workers = 8
    serial = [_work(i) for i in range(workers)]
    results: list = [None] * workers
    errors: list = []
    start = threading.Barrier(workers)

    def run(i: int) -> None:
        try:
            start.wait()
            for _ in range(2):  # twice, so calls overlap in different phases
                results[i] = _work(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    for i in range(workers):
        assert len(results[i]) == len(serial[i])
        for k, (a, b) in enumerate(zip(results[i], serial[i])):
            assert a.tobytes() == b.tobytes(), (i, k)


def test_threads_calling_into_one_generator_never_reuse_a_block():
    # Generator position updates happen under the GIL: concurrent draws take disjoint blocks.
    g = regtune.Generator(7)
    draws: list[np.ndarray] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(20):
            a = g.bits(4 * 1000)
            with lock:
                draws.append(a)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = np.sort(np.concatenate(draws))
    np.testing.assert_array_equal(everything, np.sort(rr.bits(8 * 20 * 4000, seed=7)))


# ----------------------------------------------------------------------- OpenMP runtime


@pytest.mark.skipif(not regtune.config()["openmp"], reason="built without OpenMP")
def test_threadpoolctl_sees_our_openmp_runtime():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from regtune import _core

    info = threadpoolctl.threadpool_info()
    openmp = [m for m in info if m["user_api"] == "openmp"]
    assert openmp, info
    # The runtime _core is linked against (the bundled copy in a repaired wheel): the path of
    # the libgomp/libomp mapped into this process by _core's import.
    ours = _openmp_libraries_of(_core.__file__)
    assert ours, "could not find _core's OpenMP library in /proc/self/maps"
    seen = {os.path.realpath(m["filepath"]) for m in openmp}
    assert ours & seen, (ours, seen)


def _openmp_libraries_of(extension: str) -> set[str]:
    """The OpenMP runtimes in this process's memory map that ``extension`` needs (by soname)."""
    out = subprocess.run(["ldd", extension], capture_output=True, text=True, check=False).stdout
    paths = set()
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and ("gomp" in parts[0] or "libomp" in parts[0] or "iomp" in parts[0]):
            path = parts[1].split("(")[0].strip()
            if path and path != "not found":
                paths.add(os.path.realpath(path))
    return paths


@pytest.mark.skipif(not regtune.config()["openmp"], reason="built without OpenMP")
def test_threadpoolctl_limits_apply_to_regtune():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    code = (
        "import regtune, threadpoolctl, numpy as np\n"
        "a = regtune.random.normal(10**6, seed=1)\n"
        "with threadpoolctl.threadpool_limits(limits=1, user_api='openmp'):\n"
        "    inside = regtune.get_num_threads()\n"
        "    b = regtune.random.normal(10**6, seed=1)\n"
        "print(inside, regtune.get_num_threads(), a.tobytes() == b.tobytes())\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="3")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "3", "True"], proc.stdout
    del threadpoolctl


# --------------------------------------------------------------------------------- torch

TORCH_SCRIPT = r"""
import hashlib, json, sys, threading
order = sys.argv[1]
if order == "torch-first":
    import torch
import numpy as np
import regtune
if order == "regtune-first":
    import torch
torch.manual_seed(0)
a = torch.randn(512, 512)
c = (a @ a).sum().item()                       # torch's own OpenMP team runs
h = hashlib.sha256()
for threads in (1, 2):
    regtune.set_num_threads(threads)
    for dt in (np.float32, np.float64):
        h.update(regtune.random.normal(300_007, dtype=dt, seed=5).tobytes())
        h.update(regtune.dropout(np.ones(300_007, dt), 0.5, seed=6)[0].tobytes())
# both runtimes busy at once, from two Python threads
res = {}
def t_torch():
    res["torch"] = sum(float((a @ a).sum()) for _ in range(5))
def t_regtune():
    res["regtune"] = [regtune.random.uniform(10**6, seed=k).tobytes() for k in range(5)]
ts = [threading.Thread(target=t_torch), threading.Thread(target=t_regtune)]
[t.start() for t in ts]; [t.join() for t in ts]
assert res["regtune"] == [regtune.random.uniform(10**6, seed=k).tobytes() for k in range(5)]
w = torch.from_numpy(regtune.init.kaiming_normal((64, 32), seed=1))
print(json.dumps({"digest": h.hexdigest(), "torch_ok": bool(torch.isfinite(w).all()), "c": c}))
"""


def _digest_here() -> str:
    import hashlib

    h = hashlib.sha256()
    before = regtune.get_num_threads()
    try:
        for threads in (1, 2):
            regtune.set_num_threads(threads)
            for dt in (np.float32, np.float64):
                h.update(rr.normal(300_007, dtype=dt, seed=5).tobytes())
                h.update(regtune.dropout(np.ones(300_007, dt), 0.5, seed=6)[0].tobytes())
    finally:
        regtune.set_num_threads(before)
    return h.hexdigest()


@pytest.mark.skipif(find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("order", ["torch-first", "regtune-first"])
def test_torch_and_regtune_in_one_process(order):
    """torch wheels bundle their own libgomp: two OpenMP runtimes in one process must work in
    either import order, with both in use, even at the same time from two threads."""
    proc = subprocess.run([sys.executable, "-c", TORCH_SCRIPT, order], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["torch_ok"]
    assert info["digest"] == _digest_here()
