"""Turn a pytest-benchmark JSON of the regtune suites into a Markdown table.

    python bench/report.py results.json          # from a saved --benchmark-json
    python bench/report.py --run                 # run bench/ first, then report
    python bench/report.py --run -- -k normal    # extra arguments after -- go to pytest

One row per (op, peer): the peer's and regtune's median times, the speed-up (peer / regtune),
regtune's output bandwidth (bytes written / median time) and that bandwidth as a fraction of
the copy bandwidth measured in the same run (2 * nbytes / median time of
regtune._core.parallel_copy). The table goes to stdout (and --markdown-out); pytest's own
output goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ["op", "peer", "peer ms", "regtune ms", "speed-up", "regtune GB/s", "% of copy bw"]
DASH = "—"

# The project's performance targets, defined at 4096 x 4096 float32 on 2 cores:
# (op, peer, kind, threshold) where kind is "speed-up" (x) or "GB/s".
TARGETS = [
    ("normal", "numpy", "speed-up", 20.0),
    ("normal", "torch", "speed-up", 6.0),
    ("uniform", None, "GB/s", 25.0),
    # issue 11's aim: a bfloat16 normal at least 1.2x as fast as the float32 one (t_f32 / t_bf16)
    ("normal_bf16", "regtune-float32", "speed-up", 1.2),
    ("truncated_normal", "torch", "speed-up", 50.0),
    ("adamw", "numpy", "speed-up", 10.0),
    ("adamw", "torch-fused", "speed-up", 1.0),
    ("clip+adamw", "torch-fused", "speed-up", 1.3),
    ("dropout", "numpy", "speed-up", 10.0),
    ("dropout", "torch", "speed-up", 30.0),
    ("dropout", None, "% of copy", 60.0),
    # Backward by regeneration within 1.3x of backward from the stored mask: t_mask / t_regen.
    ("dropout_backward", "regtune-mask", "speed-up", 1 / 1.3),
]


def run_suite(pytest_args: list[str]) -> tuple[dict, int]:
    """Run the benchmark suite in a subprocess into a temporary JSON file and load it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        cmd = [
            sys.executable, "-m", "pytest", BENCH_DIR, "--benchmark-only", "-p", "no:cacheprovider",
            "-o", "python_files=bench_*.py", f"--benchmark-json={path}", *pytest_args,
        ]  # fmt: skip
        rc = subprocess.call(cmd, stdout=sys.stderr)
        if not os.path.exists(path):
            sys.exit(f"pytest exited with status {rc} and wrote no benchmark JSON")
        with open(path) as f:
            return json.load(f), rc


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    ms = seconds * 1e3
    return f"{ms:,.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def _fmt(value: float | None, spec: str) -> str:
    return DASH if value is None else format(value, spec)


def collect(data: dict) -> dict[str, dict[str, dict]]:
    """{op: {impl: {"median": s, "bytes": n, "shape": [..]}}}: the copy yardstick first, then
    regtune.random's ops, then regtune.init's, each in the order they ran."""
    ops: dict[str, dict[str, dict]] = defaultdict(dict)
    order = sorted(
        data["benchmarks"],
        key=lambda b: (b.get("extra_info", {}).get("op") != "copy", "bench_init" in b["fullname"]),
    )
    for b in order:
        info = b.get("extra_info", {})
        if "op" in info:
            ops[info["op"]][info["impl"]] = {**info, "median": b["stats"]["median"]}
    return ops


def rows(ops: dict[str, dict[str, dict]], bench_n: int | None):
    """Yield one dict per (op, peer) with the numbers behind each column."""
    copy = ops.get("copy", {}).get("regtune")
    for op, impls in ops.items():
        rt = impls.get("regtune")
        any_entry = rt or next(iter(impls.values()))
        label = op
        if bench_n and any_entry.get("shape", [bench_n])[0] != bench_n:
            label += " ({}x{})".format(*any_entry["shape"])
        gbs = frac = None
        if rt:
            factor = 2 if op == "copy" else 1  # copy: bytes read + written
            gbs = factor * rt["bytes"] / rt["median"] / 1e9
            # A % of copy bw at the same size, or for ops whose bytes count all traffic (read +
            # written, "traffic": the optimizer steps), measured on arrays as far out of cache.
            if copy and (copy["bytes"] == rt["bytes"] or rt.get("traffic")):
                frac = 100 * gbs / (2 * copy["bytes"] / copy["median"] / 1e9)
        peers = [impl for impl in impls if impl != "regtune"] or [None]
        for peer in peers:
            p = impls.get(peer)
            t_rt, t_p = rt and rt["median"], p and p["median"]
            yield {
                "op": op, "label": label, "peer": peer, "peer_s": t_p, "regtune_s": t_rt,
                "speedup": t_p / t_rt if t_p and t_rt else None, "gbs": gbs, "frac": frac,
            }  # fmt: skip


def header(data: dict) -> list[str]:
    m = data.get("machine_info", {})
    s = m.get("regtune_bench") or {}
    cpu = s.get("cpu") or m.get("cpu", {}).get("brand_raw", "unknown CPU")
    cores = s.get("cores") or m.get("cpu", {}).get("count", "?")
    rt = s.get("regtune")
    rt_text = "regtune not importable"
    if rt:
        rt_fields = defaultdict(lambda: "?", rt)
        rt_text = "regtune SIMD {simd}, {threads} threads (spin {spin_us} us), {compiler}"
        rt_text = rt_text.format_map(rt_fields)
    torch = "no torch"
    if s.get("torch"):
        torch = f"torch {s['torch']} ({s.get('torch_threads')} threads)"
    n = s.get("bench_n", "?")
    return [
        f"**Machine:** {cpu}, {cores} cores; {rt_text}; "
        f"NumPy {s.get('numpy', '?')} (1 thread), {torch}.",
        f"**Size:** {n}x{n} float32 unless noted; median of each benchmark's rounds.",
    ]


def targets(table: list[dict]) -> list[str]:
    out = []
    by_key = {(r["op"], r["peer"]): r for r in table}
    for op, peer, kind, threshold in TARGETS:
        r = by_key.get((op, peer)) or next((v for (o, _), v in by_key.items() if o == op), None)
        value = r and {"speed-up": r["speedup"], "GB/s": r["gbs"], "% of copy": r["frac"]}[kind]
        what = f"{op} vs {peer} speed-up" if peer else f"{op} {kind}"
        unit = {"speed-up": "x", "GB/s": " GB/s", "% of copy": "%"}[kind]
        if value is None:
            out.append(f"- {what} >= {threshold:.3g}{unit}: not measured")
        else:
            verdict = "met" if value >= threshold else "**NOT met**"
            out.append(f"- {what} >= {threshold:.3g}{unit}: {value:.1f}{unit}, {verdict}")
    return out


def render(data: dict) -> str:
    n = data.get("machine_info", {}).get("regtune_bench", {}).get("bench_n")
    table = list(rows(collect(data), n))
    lines = header(data) + ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table:
        cells = [
            r["label"], r["peer"] or DASH, _ms(r["peer_s"]), _ms(r["regtune_s"]),
            _fmt(r["speedup"], ".1f") + ("x" if r["speedup"] is not None else ""),
            _fmt(r["gbs"], ".1f"), _fmt(r["frac"], ".0f") + ("%" if r["frac"] is not None else ""),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"**Targets** (defined at 4096x4096 float32, 2 cores; this run: {n}x{n}):"]
    return "\n".join(lines + targets(table)) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", help="a pytest-benchmark --benchmark-json file")
    parser.add_argument("--run", action="store_true", help="run the bench/ suite first")
    parser.add_argument("--markdown-out", metavar="FILE", help="also write the table here")
    args = parser.parse_args(argv)
    if args.run == bool(args.json):
        parser.error("give either a JSON file or --run")
    rc = 0
    if args.run:
        data, rc = run_suite(pytest_args)
    else:
        with open(args.json) as f:
            data = json.load(f)
    text = render(data)
    sys.stdout.write(text)
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
