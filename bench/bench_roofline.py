"""Optimizer steps against their roofline and against torch's fused and DeepSpeed's CPU steps,
one library per process.

The roofline yardstick is ``regtune._core.optim_step`` rule "stream": a step's memory traffic (param
and grad read, param and each state array read and written, in place, with regtune's threads,
chunks and prefetching) with one add per array in place of the rule's arithmetic. For each
(optimizer, problem, thread count, SIMD path) three kinds of process run the same step on the
same values:

- ``regtune``: ``regtune.optim.<Optimizer>.step``;
- ``torch-fused``: ``torch.optim.<Optimizer>(..., fused=True)``;
- ``deepspeed``: ``DeepSpeedCPUAdam`` (``adamw_mode`` for AdamW) and ``DeepSpeedCPUAdagrad``,
  whose C++ op is built on first use with the system compiler.

Each process sets its thread count before the first step (``regtune.set_num_threads``,
``torch.set_num_threads``, ``OMP_NUM_THREADS`` for DeepSpeed's OpenMP loop), warms up, then
times ``--steps`` steps one by one; the parent runs every process ``--runs`` times,
interleaved, and reports the median over runs of each process's median step. Runs are
interleaved so that a slow spell of a shared machine falls on every library alike.

The AVX2 path on an AVX-512 machine: regtune with ``REGTUNE_SIMD=avx2``, torch with
``ATEN_CPU_CAPABILITY=avx2``, DeepSpeed built with ``-march=haswell -D__AVX256__`` (its
builder otherwise picks the widest the CPU has) into a separate extension directory.

    python bench/bench_roofline.py                       # everything this machine has
    python bench/bench_roofline.py --simd avx2 --threads 1 --opts adamw --problems single
    python bench/bench_roofline.py --markdown-out t.md   # ... and save the table

Every process also runs the yardstick on its own library's arrays, after its steps (0.2 s
apart, so a peer's OpenMP workers have stopped spinning): ``share`` = yardstick time / step
time, the step's bandwidth as a fraction of the yardstick's on the same memory. On a VM the
same step varies by up to 1.6x from one process to the next with where its pages land (in one
process on the AVX2 path, regtune's Adam step and the yardstick took 17.2 and 16.1 ms on the
arrays NumPy allocated, DeepSpeed's step and the yardstick 10.9 and 10.5 ms on the arrays
torch allocated), so besides the plain ratio
``vs torch`` = regtune time / torch time, ``same-memory`` divides each time by its own
yardstick first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

LR, BETAS, EPS, WD = 1e-3, (0.9, 0.999), 1e-8, 1e-2

# name: (regtune / torch class, kwargs, roofline state arrays, deepspeed class or None)
OPTS = {
    "adamw": ("AdamW", dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD), 2, "adam"),
    "adam": ("Adam", dict(lr=LR, betas=BETAS, eps=EPS), 2, "adam"),
    "sgd": ("SGD", dict(lr=LR, momentum=0.9), 1, None),
    "adagrad": ("Adagrad", dict(lr=LR, eps=1e-10), 1, "adagrad"),
}


def resnet18_shapes() -> list[tuple[int, ...]]:
    """The parameter shapes of torchvision's resnet18 (62 tensors, 11,689,512 elements)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            shapes += [(cout, cin, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if block == 0 and (s != 1 or cin != cout):
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
            cin = cout
    return shapes + [(1000, 512), (1000,)]


PROBLEMS = {"single": [(4096, 4096)], "resnet18": resnet18_shapes()}


def arrays(shapes, seed=1234):
    import numpy as np

    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    return params, grads


# ------------------------------------------------------------------------------ one process
# The state arrays each library keeps, in the yardstick's order.
STATE_KEYS = {
    "adam": ("exp_avg", "exp_avg_sq"),
    "sgd": ("momentum_buffer",),
    "adagrad": ("sum",),
}
DS_STATE_KEYS = {"adam": ("exp_avg", "exp_avg_sq"), "adagrad": ("exp_avg_sq",)}


def make_step(lib: str, opt: str, problem: str, threads: int):
    """(step, state) for one library: state() gives, once a step has run, the parameters,
    gradients and state arrays (as NumPy views of the library's own memory) the yardstick runs
    on."""
    cls, kw, nstates, ds = OPTS[opt]
    params, grads = arrays(PROBLEMS[problem])
    rule = "adam" if opt in ("adam", "adamw") else opt
    if lib == "regtune":
        import regtune.optim as ro

        o = getattr(ro, cls)(params, **kw)
        return (lambda: o.step(grads)), lambda: (params, grads, [o.state[k] for k in STATE_KEYS[rule]])
    import torch

    torch.set_num_threads(threads)
    tp = [torch.nn.Parameter(torch.from_numpy(p)) for p in params]
    for p, g in zip(tp, grads):
        p.grad = torch.from_numpy(g)
    if lib == "torch-fused":
        o = getattr(torch.optim, cls)(tp, fused=True, **kw)
        keys = STATE_KEYS[rule]
    elif lib == "deepspeed":
        o = deepspeed_optimizer(opt, ds, tp, kw)
        keys = DS_STATE_KEYS[ds]
    else:
        raise ValueError(lib)
    return o.step, lambda: (params, grads, [[o.state[p][k].numpy() for p in tp] for k in keys])


def deepspeed_optimizer(opt, ds, tp, kw):
    if os.environ.get("REGTUNE_BENCH_DS_AVX2"):
        from deepspeed.ops.op_builder.cpu import builder

        builder.CPUOpBuilder.cpu_arch = lambda self: "-march=haswell"
        builder.CPUOpBuilder.simd_width = lambda self: "-D__AVX256__"
    if ds == "adam":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(tp, lr=kw["lr"], betas=kw["betas"], eps=kw["eps"],
                                weight_decay=kw.get("weight_decay", 0.0), adamw_mode=opt == "adamw")
    from deepspeed.ops.adagrad import DeepSpeedCPUAdagrad

    return DeepSpeedCPUAdagrad(tp, lr=kw["lr"], eps=kw["eps"])


def timed(f, steps: int, warmup: int) -> dict:
    for _ in range(warmup):
        f()
    t = []
    for _ in range(steps):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return {"median": statistics.median(t), "min": min(t)}


def child(lib, opt, problem, threads, steps, warmup):
    import regtune
    from regtune import _core

    regtune.set_num_threads(threads)
    step, state = make_step(lib, opt, problem, threads)
    out = {lib: timed(step, steps, warmup)}
    params, grads, states = state()
    states = list(states) + [None] * (4 - len(states))
    time.sleep(0.2)  # a peer's OpenMP workers stop spinning before the yardstick runs
    out[lib + ":roofline"] = timed(lambda: _core.optim_step("stream", params, grads, states, ["s0", "s1", "s2", "s3"], {}, {}),
                                   steps, warmup)
    print(json.dumps(out))


# ------------------------------------------------------------------------------ the parent
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def env_for(lib: str, simd: str, threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["REGTUNE_SIMD"] = simd
    if simd == "avx2":
        env["ATEN_CPU_CAPABILITY"] = "avx2"
        if lib == "deepspeed":
            env["REGTUNE_BENCH_DS_AVX2"] = "1"
            base = os.environ.get("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions"))
            env["TORCH_EXTENSIONS_DIR"] = os.path.join(base, "regtune-bench-avx2")
    return env


def available(lib: str) -> bool:
    mod = {"regtune": "regtune", "torch-fused": "torch", "deepspeed": "deepspeed"}[lib]
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def run_child(lib, opt, problem, threads, simd, steps, warmup):
    cmd = [sys.executable, __file__, "--child", lib, opt, problem, str(threads), str(steps), str(warmup)]
    r = subprocess.run(cmd, env=env_for(lib, simd, threads), capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"{lib} {opt} {problem} {threads}t {simd}: failed\n{r.stderr[-2000:]}\n")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--opts", default=",".join(OPTS))
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--simd", default=None, help="comma-separated paths (default: the native one, and avx2 if different)")
    ap.add_argument("--libs", default="regtune,torch-fused,deepspeed")
    ap.add_argument("--steps", type=int, default=41)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--markdown-out")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        lib, opt, problem, threads, steps, warmup = a.child
        child(lib, opt, problem, int(threads), int(steps), int(warmup))
        return 0

    import regtune

    if a.simd:
        paths = a.simd.split(",")
    else:
        native = regtune.config()["simd"]
        paths = [native] + (["avx2"] if native == "avx512" else [])
    libs = [x for x in a.libs.split(",") if available(x)]
    lines = [
        f"**Machine:** {cpu_name()}, {os.cpu_count()} logical CPUs; regtune {regtune.__version__} "
        f"({regtune.config()['compiler']}); one library per process, {a.runs} interleaved runs of "
        f"{a.steps} steps after {a.warmup} warm-up steps. Each cell: ms per step (median step, median "
        "run) and, in brackets, the share of the roofline yardstick run on that library's own arrays "
        "in the same process. vs: regtune's time / the peer's (< 1: regtune faster); same-memory: "
        "the same ratio with each time taken relative to its own yardstick (median over runs).",
        "",
        "| simd | optimizer | problem | threads | regtune | torch fused | deepspeed | vs torch | "
        "vs deepspeed | vs torch, same-memory | vs deepspeed, same-memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for simd in paths:
        for problem in a.problems.split(","):
            for opt in a.opts.split(","):
                for threads in (int(t) for t in a.threads.split(",")):
                    runs: dict[str, list[dict]] = {}
                    for _ in range(a.runs):
                        for lib in libs:
                            if lib == "deepspeed" and OPTS[opt][3] is None:
                                continue
                            r = run_child(lib, opt, problem, threads, simd, a.steps, a.warmup)
                            if r:
                                runs.setdefault(lib, []).append(r)
                    # per library: median step time (ms), share of its yardstick, time / yardstick
                    med = {k: statistics.median(r[k]["median"] for r in v) * 1e3 for k, v in runs.items()}
                    rel = {k: statistics.median(r[k]["median"] / r[k + ":roofline"]["median"] for r in v)
                           for k, v in runs.items()}

                    def cell(k):
                        return f"{med[k]:.2f} ({1 / rel[k]:.0%})" if k in med else "—"

                    def vs(peer, d):
                        return f"{d['regtune'] / d[peer]:.2f}" if peer in d and "regtune" in d else "—"

                    row = (f"| {simd} | {opt} | {problem} | {threads} | {cell('regtune')} | {cell('torch-fused')} | "
                           f"{cell('deepspeed')} | {vs('torch-fused', med)} | {vs('deepspeed', med)} | "
                           f"{vs('torch-fused', rel)} | {vs('deepspeed', rel)} |")
                    lines.append(row)
                    print(row, flush=True)
    if a.markdown_out:
        with open(a.markdown_out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
