"""Threads: ops called from many Python threads at once, regtune's pool seen and limited by
threadpoolctl, thread-count bounds and the environment, fork, Ctrl-C, and torch (which brings
its own OpenMP runtime) in the same process.

Every kernel releases the GIL, so Python threads really do run ops at the same time (one owns
the pool, the others run on their own thread); the results must equal serial calls bit for bit.
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

N = 300_007  # above the serial threshold: every call is split into chunks


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


# ------------------------------------------------------------------ threadpoolctl


def test_threadpoolctl_sees_regtunes_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from regtune import _core

    info = threadpoolctl.threadpool_info()
    ours = [m for m in info if m["internal_api"] == "regtune"]
    assert len(ours) == 1, info
    assert os.path.realpath(ours[0]["filepath"]) == os.path.realpath(_core.__file__)
    assert ours[0]["user_api"] == "openmp" and ours[0]["num_threads"] == regtune.get_num_threads()
    assert ours[0]["version"] == regtune.__version__


@pytest.mark.parametrize("user_api", [None, "openmp"])
def test_threadpoolctl_limits_apply_to_regtune(user_api):
    pytest.importorskip("threadpoolctl")
    code = (
        "import regtune, threadpoolctl, numpy as np\n"
        "a = regtune.random.normal(10**6, seed=1)\n"
        f"with threadpoolctl.threadpool_limits(limits=1, user_api={user_api!r}):\n"
        "    inside = regtune.get_num_threads()\n"
        "    b = regtune.random.normal(10**6, seed=1)\n"
        "print(inside, regtune.get_num_threads(), a.tobytes() == b.tobytes())\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="3")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected_outside = "3" if regtune.config()["thread_pool"] else "1"
    assert proc.stdout.split() == ["1", expected_outside, "True"], proc.stdout


# ------------------------------------------------------------------- thread counts


def _python(code: str, env_extra: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "REGTUNE_SPIN_US", "REGTUNE_SERIAL_THRESHOLD"):
        env.pop(k, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


CHECK_SCRIPT = (
    "import hashlib, warnings, numpy as np, regtune\n"
    "h = hashlib.sha256()\n"
    "h.update(regtune.random.normal(300_007, seed=3).tobytes())\n"
    "h.update(regtune.dropout(np.ones(300_007, np.float32), 0.5, seed=4)[0].tobytes())\n"
    "print(regtune.get_num_threads(), h.hexdigest())\n"
)


def _check_digest() -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(rr.normal(300_007, seed=3).tobytes())
    h.update(regtune.dropout(np.ones(300_007, np.float32), 0.5, seed=4)[0].tobytes())
    return h.hexdigest()


@pytest.mark.skipif(not regtune.config()["thread_pool"], reason="serial build")
def test_absurd_omp_num_threads_is_clamped_with_a_warning():
    proc = _python(CHECK_SCRIPT, {"OMP_NUM_THREADS": "1000000"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OMP_NUM_THREADS=1000000" in proc.stderr and f"limit of {regtune.MAX_THREADS}" in proc.stderr
    assert proc.stdout.split() == [str(regtune.MAX_THREADS), _check_digest()]


@pytest.mark.parametrize("value", ["abc", "0", "-4", "2.5"])
def test_meaningless_omp_num_threads_is_ignored_with_a_warning(value):
    proc = _python(CHECK_SCRIPT, {"OMP_NUM_THREADS": value})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ignores OMP_NUM_THREADS={value!r}" in proc.stderr
    assert proc.stdout.split()[1] == _check_digest()


def test_omp_num_threads_list_takes_its_first_entry():
    proc = _python(CHECK_SCRIPT, {"OMP_NUM_THREADS": "3,1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = "3" if regtune.config()["thread_pool"] else "1"
    assert proc.stdout.split() == [expected, _check_digest()] and proc.stderr == ""


@pytest.mark.skipif(not regtune.config()["thread_pool"], reason="serial build")
def test_the_most_threads_allowed_work():
    code = f"import regtune; regtune.set_num_threads({regtune.MAX_THREADS})\n" + CHECK_SCRIPT
    proc = _python(code, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [str(regtune.MAX_THREADS), _check_digest()]


@pytest.mark.skipif(not regtune.config()["thread_pool"], reason="serial build")
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics")
@pytest.mark.skipif("address" in os.environ.get("LD_PRELOAD", "") or "asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan reserves far more address space than any limit this test can set")
def test_threads_that_cannot_start_fall_back_with_a_warning():
    # Under an address-space limit just above what the process uses, the 8 MiB stacks of new
    # threads cannot be mapped: the call must warn and still give the right answer.
    code = (
        "import resource, warnings, numpy as np, regtune\n"
        "x = regtune.random.normal(300_007, seed=3)\n"  # pages for the draws below, touched now
        "y = regtune.dropout(np.ones(300_007, np.float32), 0.5, seed=4)\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 40 * 2**20, resource.RLIM_INFINITY))\n"
        "regtune.set_num_threads(64)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import hashlib\n"
        "    h = hashlib.sha256()\n"
        "    h.update(regtune.random.normal(300_007, seed=3).tobytes())\n"
        "    h.update(regtune.dropout(np.ones(300_007, np.float32), 0.5, seed=4)[0].tobytes())\n"
        "    again = regtune.random.normal(300_007, seed=3)\n"
        "print(h.hexdigest(), len(w), str(w[0].message) if w else '')\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest, count, message = proc.stdout.split(" ", 2)
    assert digest == _check_digest()
    assert count == "1", proc.stdout  # warned once, not on every call
    assert "could not start thread" in message


# --------------------------------------------------------------------------- policy


def test_spin_policy_follows_the_environment():
    code = "import regtune; print(regtune.config()['spin_us'])"
    default = _python(code)
    assert default.returncode == 0 and int(default.stdout) > 0, default.stderr
    assert _python(code, {"OMP_WAIT_POLICY": "passive"}).stdout.strip() == "0"
    assert int(_python(code, {"OMP_WAIT_POLICY": "active"}).stdout) > int(default.stdout)
    assert _python(code, {"REGTUNE_SPIN_US": "7", "OMP_WAIT_POLICY": "passive"}).stdout.strip() == "7"
    bad = _python(code, {"REGTUNE_SPIN_US": "forever"})
    assert bad.returncode == 0 and "ignores REGTUNE_SPIN_US='forever'" in bad.stderr
    assert bad.stdout.strip() == default.stdout.strip()
    code = "import regtune; print(regtune.config()['serial_threshold'])"
    assert _python(code, {"REGTUNE_SERIAL_THRESHOLD": "4096"}).stdout.strip() == "4096"
    bad = _python(code, {"REGTUNE_SERIAL_THRESHOLD": "0"})
    assert "ignores REGTUNE_SERIAL_THRESHOLD='0'" in bad.stderr and int(bad.stdout) == 2**16


@pytest.mark.parametrize("spin", ["0", "1000"])
def test_results_do_not_depend_on_the_spin_policy(spin):
    proc = _python(CHECK_SCRIPT, {"REGTUNE_SPIN_US": spin})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[1] == _check_digest()


# ----------------------------------------------------------------------------- fork

FORK_SCRIPT = r"""
import hashlib, os, sys, numpy as np, regtune
regtune.set_num_threads(2)
def digest():
    h = hashlib.sha256()
    h.update(regtune.random.normal(1_000_003, seed=3).tobytes())
    h.update(regtune.dropout(np.ones(1_000_003, np.float32), 0.5, seed=4)[0].tobytes())
    p = [regtune.random.normal(300_007, seed=5)]
    opt = regtune.optim.AdamW(p, lr=1e-2, max_grad_norm=1.0)
    opt.step([regtune.random.normal(300_007, seed=6)])
    h.update(p[0].tobytes())
    return h.hexdigest()
parent = digest()                   # the pool's threads are running now
mode = sys.argv[1]
if mode == "os.fork":
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, (digest() + " " + str(regtune.get_num_threads())).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 1000).decode()
    os.waitpid(pid, 0)
    child, threads = out.split()
    print(parent == child, threads)
else:
    import multiprocessing as mp
    with mp.get_context("fork").Pool(2) as pool:   # as a torch DataLoader's workers are made
        results = [pool.apply_async(digest) for _ in range(4)]
        children = [r.get(timeout=120) for r in results]
    print(all(c == parent for c in children), len(children))
print(digest() == parent)           # and the parent's pool still works
"""


@pytest.mark.parametrize("mode", ["os.fork", "fork-pool"])
def test_fork_after_threaded_use_gives_correct_results(mode):
    # A child of a process whose pool has run must not wait for threads it does not have: it
    # starts its own pool (same thread count) and computes the same bits. The timeout is the bound.
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.splitlines()[:2]
    assert first.split()[0] == "True", proc.stdout
    if mode == "os.fork":
        assert first.split()[1] == "2", proc.stdout  # the parent's setting carries over
    assert second == "True", proc.stdout


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


# ---------------------------------------------------------------------------- Ctrl-C

SIGINT_SCRIPT = r"""
import sys, numpy as np, regtune
threads, dtype = int(sys.argv[1]), np.dtype(sys.argv[2])
regtune.set_num_threads(threads)
out = np.zeros(2**28 if dtype == np.float32 else 2**27, dtype)   # 1 GiB: about 10 s on the scalar path
print("start", flush=True)
try:
    regtune.random.truncated_normal(out.shape, dtype=dtype, out=out, seed=1, a=-1.0, b=2.0)
    print("finished", flush=True)
except KeyboardInterrupt:
    untouched = int(np.count_nonzero(out[-2**20:] == 0))   # the tail was never written
    print("interrupted", untouched, flush=True)
# the pool is usable afterwards and still gives the right bits
a = regtune.random.normal(1_000_003, seed=2)
regtune.set_num_threads(1)
print(a.tobytes() == regtune.random.normal(1_000_003, seed=2).tobytes(), flush=True)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")
@pytest.mark.parametrize("threads,dtype", [(1, "float32"), (2, "float32"), (2, "float64")])
def test_sigint_stops_a_long_call_within_a_second(threads, dtype):
    import signal
    import time

    env = dict(os.environ, REGTUNE_SIMD="scalar")  # the slowest path: the call would take seconds
    # SIGINT as a terminal gives it, whatever this process inherited (a shell's background job
    # starts with it ignored, and Python then keeps it ignored)
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(threads), dtype], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "start"
        time.sleep(0.5)                               # well inside the draw
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().split()
        elapsed = time.perf_counter() - sent
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert line and line[0] == "interrupted", (line, err[-3000:])
    assert elapsed < 1.0, elapsed
    assert int(line[1]) == 2**20, "the draw ran to its end before it stopped"
    assert rest.strip() == "True", (rest, err[-3000:])
