"""The mixed training loop of issue 10: regtune beside NumPy's BLAS (and torch) on the same cores.

Each iteration does what a NumPy training step does between regtune calls:

    H = A @ W                    NumPy matmul, 256x512 by 512x512, BLAS at its default threads
    Y, mask = dropout(H, 0.1)    regtune, 131,072 float32
    [torch: gelu on Y]           torch's own intra-op threads (with --torch)
    AdamW.step on W (512x512)    regtune, one fused step

and the loop runs 300 iterations at regtune's default thread count, then 300 at one thread (or
the other way round), for `--rounds` rounds in one process: a 2-core VM drifts between speed
regimes from minute to minute, and alternating in one process compares both counts in the same
regime. Each loop (with and without torch, whose import is per process) runs in `--repeats`
fresh interpreters. The table shows the median ms per iteration and the median of the per-round
ratios of the default thread count to one thread (the acceptance bar: <= 1.0).

    python bench/mixed_loop.py                 # without and with torch
    python bench/mixed_loop.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
use_torch, iters, rounds = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
if use_torch:
    import torch
import numpy as np
import regtune
default = regtune.get_num_threads()
rng = np.random.default_rng(0)
A = rng.standard_normal((256, 512), dtype=np.float32)
W = (rng.standard_normal((512, 512), dtype=np.float32) * 0.02).astype(np.float32)
G = (rng.standard_normal((512, 512), dtype=np.float32) * 1e-3).astype(np.float32)
opt = regtune.optim.AdamW([W], lr=1e-4, weight_decay=0.01)
def step(i):
    H = A @ W
    Y, mask = regtune.dropout(H, 0.1, seed=1, offset=i * H.size)
    if use_torch:
        torch.nn.functional.gelu(torch.from_numpy(Y))
    opt.step([G])
def timed(threads):
    regtune.set_num_threads(threads)
    for i in range(20):          # warm-up: the pool started (or idle), caches and pages touched
        step(i)
    t0 = time.perf_counter()
    for i in range(iters):
        step(i)
    return 1e3 * (time.perf_counter() - t0) / iters
res = {"default": [], "1": []}
for r in range(rounds):          # alternate, so both see the same machine
    order = [("default", default), ("1", 1)] if r % 2 == 0 else [("1", 1), ("default", default)]
    for name, threads in order:
        res[name].append(timed(threads))
print(json.dumps({"default_threads": default, "simd": regtune.config()["simd"], **res}))
"""


def run(use_torch: bool, iters: int, rounds: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, "1" if use_torch else "0", str(iters), str(rounds)],
                          capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"child failed (torch={use_torch}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="processes per loop (default 3)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per process, each timing both thread counts")
    ap.add_argument("--no-torch", action="store_true", help="skip the rows with torch in the loop")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    torch_modes = [False]
    if not args.no_torch:
        try:
            import importlib.util

            if importlib.util.find_spec("torch") is not None:
                torch_modes.append(True)
        except ImportError:
            pass
    rows = []
    for use_torch in torch_modes:
        default_ms: list[float] = []
        one_ms: list[float] = []
        for _ in range(args.repeats):
            r = run(use_torch, args.iters, args.rounds)
            default_ms += r["default"]
            one_ms += r["1"]
        ratios = [d / o for d, o in zip(default_ms, one_ms)]
        rows.append({"torch": use_torch, "default_threads": r["default_threads"], "simd": r["simd"],
                     "default_ms": statistics.median(default_ms), "one_thread_ms": statistics.median(one_ms),
                     "ratio": statistics.median(ratios), "default_runs": default_ms, "one_thread_runs": one_ms})
    print(f"mixed loop: {args.repeats} processes x {args.rounds} rounds of {args.iters} iterations at each thread"
          f" count, alternating (cpu_count {os.cpu_count()}); medians, ratio = median of the per-round ratios")
    print("| loop | regtune threads | default ms/iter | 1 thread ms/iter | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        name = "numpy + regtune" + (" + torch" if r["torch"] else "")
        print(f"| {name} | {r['default_threads']} | {r['default_ms']:.3f} | {r['one_thread_ms']:.3f} | {r['ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
