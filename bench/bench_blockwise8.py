"""8-bit optimizer state: regtune's ``state_dtype="int8"`` AdamW (and Lion, SGD with momentum)
against torch's fused float32 AdamW, DeepSpeedCPUAdam, bitsandbytes' CPU AdamW8bit and torchao's
AdamW8bit, on one 4096 x 4096 tensor, ResNet-18's weight shapes and a transformer block's (d=1024),
at 1 thread and at every core, each case in a process of its own.

Each row is the minimum time of one step over repeats (after a warm-up step), the state's bytes
per parameter, and, for regtune, the step's own memory traffic against the copy bandwidth measured
in the same process (a float32 parameter and gradient read, the parameter written, and each
8-bit state read and written with its block's absmax: 15.06 bytes per element for AdamW, 28 for
float32 AdamW), as a percentage of NumPy's copy bandwidth counted as read + write (a fused step
that streams several arrays at once can pass 100% of that yardstick). Peers that are not
installed are skipped with a note.

    python bench/bench_blockwise8.py [--threads 1,2] [--shapes big,resnet18,block] [--only regtune-int8,torch-fused]

Figures: bench/RESULTS.md ("8-bit optimizer state").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {
    "big": [(4096, 4096)],
    # ResNet-18's parameters (conv weights flattened; batch-norm vectors)
    "resnet18": [(64, 3, 7, 7)] + [(64, 64, 3, 3)] * 4 + [(128, 64, 3, 3), (128, 128, 3, 3), (128, 64, 1, 1)]
    + [(128, 128, 3, 3)] * 2 + [(256, 128, 3, 3), (256, 256, 3, 3), (256, 128, 1, 1)] + [(256, 256, 3, 3)] * 2
    + [(512, 256, 3, 3), (512, 512, 3, 3), (512, 256, 1, 1)] + [(512, 512, 3, 3)] * 2 + [(1000, 512), (1000,)]
    + [(64,)] * 10 + [(128,)] * 10 + [(256,)] * 10 + [(512,)] * 10,
    # one transformer block, d=1024 (qkv, out, MLP up and down, biases, two layer norms)
    "block": [(3072, 1024), (3072,), (1024, 1024), (1024,), (4096, 1024), (4096,), (1024, 4096), (1024,)]
    + [(1024,)] * 4,
}
IMPLS = ["torch-fused", "regtune-fp32", "regtune-int8", "deepspeed", "bnb-8bit", "torchao-8bit",
         "regtune-lion-int8", "regtune-lion-fp32", "regtune-sgd-int8", "regtune-sgd-fp32"]  # fmt: skip
LR = 1e-3


def _copy_bandwidth(np) -> float:
    """GB/s of a 256 MiB float32 copy (read + write), the best of 5."""
    a = np.ones(64 * 2**20, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def worker(impl: str, threads: int, shape_name: str, budget: float) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    shapes = SHAPES[shape_name]
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) * 0.05 for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in shapes]
    n = sum(p.size for p in params)
    out = {"impl": impl, "threads": threads, "shape": shape_name, "params": n}
    if impl.startswith("regtune"):
        import regtune
        import regtune.optim as ro

        regtune.set_num_threads(threads)
        rule = {"lion": ro.Lion, "sgd": ro.SGD}.get(impl.split("-")[1], ro.AdamW)
        kw = {"momentum": 0.9} if rule is ro.SGD else {}
        if impl.endswith("int8"):
            kw["state_dtype"] = "int8"
        opt = rule(params, lr=LR, **kw)
        step = lambda: opt.step(grads)  # noqa: E731
        step()
        state = opt.state
        out["simd"] = regtune.config()["simd"]
        state_bytes = sum(a.nbytes for v in state.values() for a in v if a is not None)
        nstates = len([k for k in state if not k.endswith("_absmax")])
        if impl.endswith("int8"):  # own traffic: p, g read; p written; each state and absmax read and written
            per = 12 + nstates * 2 * (1 + 4 / 256)
        else:
            per = 12 + nstates * 8
        out["bytes_per_elem"] = per
        out["copy_gbs"] = _copy_bandwidth(np)
    else:
        tp = [torch.nn.Parameter(torch.from_numpy(p)) for p in params]
        for p, g in zip(tp, grads):
            p.grad = torch.from_numpy(g)
        if impl == "torch-fused":
            opt = torch.optim.AdamW(tp, lr=LR, fused=True)
        elif impl == "deepspeed":
            try:
                from deepspeed.ops.adam import DeepSpeedCPUAdam
            except Exception as exc:  # not installed, or its CPU Adam does not build here
                return {**out, "skipped": f"deepspeed: {type(exc).__name__}: {exc}"[:200]}
            opt = DeepSpeedCPUAdam(tp, lr=LR, adamw_mode=True)
        elif impl == "bnb-8bit":
            try:
                import bitsandbytes as bnb
            except ImportError as exc:
                return {**out, "skipped": f"bitsandbytes: {exc}"}
            opt = bnb.optim.AdamW8bit(tp, lr=LR)
        elif impl == "torchao-8bit":
            try:
                from torchao.optim import AdamW8bit
            except ImportError as exc:
                return {**out, "skipped": f"torchao: {exc}"}
            opt = AdamW8bit(tp, lr=LR)
        else:
            raise ValueError(impl)
        step = opt.step
        step()
        state_bytes = 0
        for st in opt.state.values():
            for v in st.values():
                if hasattr(v, "__tensor_flatten__") and type(v) is not torch.Tensor:  # torchao's quantized subclass
                    names, _ = v.__tensor_flatten__()
                    state_bytes += sum(getattr(v, k).numel() * getattr(v, k).element_size() for k in names)
                elif isinstance(v, torch.Tensor) and v.numel() > 1:
                    state_bytes += v.numel() * v.element_size()
                elif isinstance(v, dict):  # bitsandbytes' wrapped quantization state
                    state_bytes += sum(t.numel() * t.element_size() for t in v.values() if isinstance(t, torch.Tensor))
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 3 or (spent < budget and reps < 50):
        t = time.perf_counter()
        step()
        dt = time.perf_counter() - t
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    out.update(ms=best * 1e3, repeats=reps, state_bytes_per_param=state_bytes / n)
    if "bytes_per_elem" in out:
        out["roofline"] = out["bytes_per_elem"] * n / best / 1e9 / out["copy_gbs"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--shapes", default="big,resnet18,block")
    ap.add_argument("--only", default=",".join(IMPLS))
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of repeats per case (at least 3 steps)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--worker", nargs=3, metavar=("IMPL", "THREADS", "SHAPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        impl, threads, shape = args.worker
        print(json.dumps(worker(impl, int(threads), shape, args.budget)))
        return 0
    threads = sorted({int(t) for t in args.threads.split(",")})
    rows = []
    for shape in args.shapes.split(","):
        for t in threads:
            for impl in args.only.split(","):
                env = dict(os.environ, OMP_NUM_THREADS=str(t))
                proc = subprocess.run([sys.executable, __file__, "--budget", str(args.budget), "--worker", impl, str(t), shape],
                                      capture_output=True, text=True, env=env)  # fmt: skip
                if proc.returncode != 0:
                    rows.append({"impl": impl, "threads": t, "shape": shape, "skipped": proc.stderr.strip()[-200:]})
                else:
                    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                if "skipped" in r:
                    print(f"{shape:9s} {t:2d}T {impl:18s} skipped: {r['skipped']}", flush=True)
                    continue
                ref = next((x for x in rows if x["impl"] == "torch-fused" and x["threads"] == t and x["shape"] == shape
                            and "ms" in x), None)  # fmt: skip
                rel = f"{ref['ms'] / r['ms']:6.2f}x torch fused" if ref else ""
                roof = f"  {100 * r['roofline']:5.1f}% of roofline ({r['copy_gbs']:.1f} GB/s copy)" if "roofline" in r else ""
                print(f"{shape:9s} {t:2d}T {impl:18s} {r['ms']:9.2f} ms  {r['state_bytes_per_param']:5.2f} B/param  "
                      f"{rel}{roof}", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
