"""The trainer on a busy machine (issue 27): `regtune train` at its default threads against
`--threads 1`, on the machine as idle as it is and beside N processes that spin
(`python -c "while True: pass"`, as a browser tab or a DataLoader's workers would).

Three measurements, each bounded in time (`--budget` seconds per condition, `--timeout` per run):

    train     `regtune train --epochs E --no-progress --out TMP` (scikit-learn's digits, the
              default MLP 64-512-256-10, batch 32), default threads and `--threads 1`, alternating,
              `--rounds` rounds per condition; the figure is the training time the CLI writes to
              timing.json (start-up, data loading and the plot are left out), median of the
              per-round ratios; both arms must reach the same test accuracy (the same bits)
    mixed     bench/mixed_loop.py --no-torch (regtune's default threads against one thread; its
              BLAS at its own default in both arms) beside the same busy processes
    products  the trainer's matrix products alone, through NumPy's BLAS at its default threads
              and at one thread: where threads help on an idle machine and what they cost on a
              busy one (how regtune.trainer.BLAS_THREADS_MIN_WORK was chosen)

    python bench/busy_machine.py                          # train + mixed, idle and 4 busy
    python bench/busy_machine.py --busy 0,4,8 --epochs 20 --rounds 3
    python bench/busy_machine.py --what products --busy 0,4
    python bench/busy_machine.py --json busy.json

The busy processes are started here, at the priority of this one, and stopped (by their
process ids) when a condition ends, also on Ctrl-C or an error. The report starts with the CPU
(`lscpu`'s model name, `nproc`, `regtune.show_config()`) and the load average before each
condition: on a shared machine, say what else was running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
SPIN = "while True: pass"


@contextlib.contextmanager
def busy(n: int) -> Iterator[list[int]]:
    """``n`` spinning Python processes for the duration of the block (their pids)."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL) for _ in range(n)]
    try:
        time.sleep(1.0 if n else 0.0)  # let the scheduler see them
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except (OSError, subprocess.SubprocessError):
        return "?"


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def train_once(epochs: int, threads: int | None, timeout: float) -> dict:
    """One `regtune train` run; its training time from the timing.json it writes with --out (the
    printed "in X s" has a resolution of 0.1 s), and the process's wall time."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "regtune", "train", "--epochs", str(epochs), "--no-progress", "--out", out]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"train_s": None, "wall_s": timeout, "timed_out": True}
        wall = time.perf_counter() - t0
        m = re.search(r"test accuracy ([0-9.]+)%", proc.stdout)
        if proc.returncode != 0 or not m:
            raise SystemExit(f"regtune train failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        with open(os.path.join(out, "timing.json")) as f:
            train_s = json.load(f)["train_seconds"]
    return {"train_s": train_s, "wall_s": wall, "timed_out": False, "test_acc": float(m.group(1))}


def measure_train(n_busy: int, args: argparse.Namespace) -> dict:
    runs: dict[str, list[dict]] = {"default": [], "threads1": []}
    deadline = time.monotonic() + args.budget
    with busy(n_busy):
        before = load()
        for r in range(args.rounds):
            order = [("default", None), ("threads1", 1)] if r % 2 == 0 else [("threads1", 1), ("default", None)]
            for name, threads in order:
                left = deadline - time.monotonic()
                if left < 5:
                    break
                runs[name].append(train_once(args.epochs, threads, min(args.timeout, left)))
            if time.monotonic() > deadline:
                break
    pairs = [(d, o) for d, o in zip(runs["default"], runs["threads1"]) if d["train_s"] and o["train_s"]]
    accs = {r["test_acc"] for v in runs.values() for r in v if not r["timed_out"]}
    if len(accs) > 1:
        raise SystemExit(f"the two arms trained different models (test accuracies {sorted(accs)})")
    ratios = [d["train_s"] / o["train_s"] for d, o in pairs]
    return {
        "busy": n_busy, "load_before": before, "runs": runs,
        "default_s": statistics.median([r["train_s"] for r in runs["default"] if r["train_s"]] or [float("nan")]),
        "threads1_s": statistics.median([r["train_s"] for r in runs["threads1"] if r["train_s"]] or [float("nan")]),
        "ratio": statistics.median(ratios) if ratios else float("nan"), "ratios": ratios,
        "timed_out": sum(r["timed_out"] for v in runs.values() for r in v),
    }  # fmt: skip


def measure_mixed(n_busy: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "mixed_loop.py"), "--no-torch", "--repeats", "1", "--rounds",
           str(max(2, args.rounds)), "--iters", str(args.mixed_iters), "--json", os.devnull]  # fmt: skip
    with busy(n_busy):
        before = load()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget)
        except subprocess.TimeoutExpired:
            return {"busy": n_busy, "load_before": before, "timed_out": True}
    row = next((ln for ln in proc.stdout.splitlines() if ln.startswith("| numpy + regtune |")), None)
    if proc.returncode != 0 or row is None:
        raise SystemExit(f"mixed_loop.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cells = [c.strip() for c in row.strip("|").split("|")]
    return {"busy": n_busy, "load_before": before, "timed_out": False, "default_ms": float(cells[2]),
            "one_thread_ms": float(cells[3]), "ratio": float(cells[4])}  # fmt: skip


#: The trainer's products at the CLI's default model (64-512-256-10) and batch 32, its
#: evaluation batches (1293 and 144 rows), and larger ones for the crossover.
SHAPES = [(32, 64, 512), (32, 512, 256), (256, 32, 512), (1293, 64, 512), (1293, 512, 256), (512, 512, 512),
          (1024, 1024, 1024), (2048, 1024, 2048), (2048, 2048, 2048)]  # fmt: skip

PRODUCTS = r"""
import json, sys, time
import numpy as np
from threadpoolctl import ThreadpoolController
ctl = ThreadpoolController()
rng = np.random.default_rng(0)
out = []
for m, k, n in json.loads(sys.argv[1]):
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    reps = max(1, int(3e8 // (m * k * n)))
    def best():
        a @ b
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            times.append((time.perf_counter() - t0) / reps)
        return min(times)
    t_default = best()
    with ctl.limit(limits=1, user_api="blas"):
        t_one = best()
    out.append({"shape": [m, k, n], "work": m * k * n, "default_ms": 1e3 * t_default, "one_ms": 1e3 * t_one})
print(json.dumps(out))
"""


def measure_products(n_busy: int, args: argparse.Namespace) -> dict:
    with busy(n_busy):
        before = load()
        proc = subprocess.run([sys.executable, "-c", PRODUCTS, json.dumps(SHAPES)], capture_output=True, text=True,
                              timeout=args.budget)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"the products run failed:\n{proc.stderr}")
    return {"busy": n_busy, "load_before": before, "rows": json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--what", default="train,mixed", help="train, mixed and/or products (default train,mixed)")
    ap.add_argument("--busy", default="0,4", help="busy processes per condition (default 0,4)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per training run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each arm per condition (default 3)")
    ap.add_argument("--mixed-iters", type=int, default=100, help="mixed_loop.py --iters (default 100)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one training run may take (default 300)")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds per condition and measurement (default 900)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    whats = [w.strip() for w in args.what.split(",") if w.strip()]
    counts = [int(b) for b in args.busy.split(",")]
    import regtune

    print(f"CPU: {cpu_model()}; nproc {os.cpu_count()}; load average {load()}")
    regtune.show_config()
    results: dict[str, list[dict]] = {w: [] for w in whats}
    for n in counts:
        for w in whats:
            r = {"train": measure_train, "mixed": measure_mixed, "products": measure_products}[w](n, args)
            results[w].append(r)
            print(f"  [{w}, {n} busy: done; load before {r['load_before']}]", flush=True)
    if "train" in results:
        print(f"\nregtune train --epochs {args.epochs} --no-progress: default threads vs --threads 1, "
              f"{args.rounds} alternating runs each; medians of the CLI's training time")  # fmt: skip
        print("| busy processes | load avg before | default s | --threads 1 s | default / --threads 1 (median of rounds) |")
        print("|---|---|---|---|---|")
        for r in results["train"]:
            late = f" ({r['timed_out']} runs timed out)" if r["timed_out"] else ""
            print(f"| {r['busy']} | {r['load_before']} | {r['default_s']:.2f} | {r['threads1_s']:.2f} | "
                  f"{r['ratio']:.2f}{late} |")  # fmt: skip
    if "mixed" in results:
        print(f"\nbench/mixed_loop.py --no-torch ({args.mixed_iters} iterations per timing): regtune's default "
              "threads vs one thread")  # fmt: skip
        print("| busy processes | load avg before | default ms/iter | 1 thread ms/iter | ratio |")
        print("|---|---|---|---|---|")
        for r in results["mixed"]:
            if r.get("timed_out"):
                print(f"| {r['busy']} | {r['load_before']} | timed out | | |")
            else:
                print(f"| {r['busy']} | {r['load_before']} | {r['default_ms']:.3f} | {r['one_thread_ms']:.3f} | "
                      f"{r['ratio']:.2f} |")  # fmt: skip
    if "products" in results:
        print("\nNumPy matmul (float32), best of 5: BLAS at its default threads vs one thread")
        print("| busy | m x k x n | multiply-adds | default ms | 1 thread ms | default / 1 thread |")
        print("|---|---|---|---|---|---|")
        for r in results["products"]:
            for row in r["rows"]:
                m, k, n = row["shape"]
                print(f"| {r['busy']} | {m}x{k}x{n} | {row['work']:.3g} | {row['default_ms']:.3f} | "
                      f"{row['one_ms']:.3f} | {row['default_ms'] / row['one_ms']:.2f} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "nproc": os.cpu_count(), "config": regtune.config(), **results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
