"""Turn a run of the regtune benchmark suites into one Markdown table.

    python bench/report.py --run                         # run bench/'s suites here, then report
    python bench/report.py --run --ops "normal*,copy"    # only these ops (shell-style patterns)
    python bench/report.py results.json                  # a saved pytest-benchmark --benchmark-json

``--run`` needs neither pytest nor pytest-benchmark (the timing loop is _harness.py's, the one
the pytest suites use); ``regtune bench`` is the same run from the command line. One row per
(op, peer): the peer's and regtune's median times, the speed-up (peer / regtune), regtune's
bandwidth (bytes written, or read + written for ops that declare their traffic, / median time)
and that bandwidth as a fraction of the copy bandwidth measured in the same run (2 * nbytes /
median time of regtune._core.parallel_copy). The project's targets are judged only on a run at
the size they are defined for (TARGET_N). The table goes to stdout (and --markdown-out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:  # _harness, and the suites it loads, import each other by name
    sys.path.insert(0, BENCH_DIR)
import _harness  # noqa: E402

COLUMNS = ["op", "peer", "peer ms", "regtune ms", "speed-up", "regtune GB/s", "% of copy bw"]
DASH = "—"

# The project's performance targets, defined at TARGET_N x TARGET_N float32 on TARGET_CORES cores:
# (op, peer, kind, threshold) where kind is "speed-up" (x) or "GB/s". A run at another size is
# not judged (a 512x512 array fits in cache, a 2048x2048 one halves the work per call).
TARGET_N, TARGET_CORES = 4096, 2
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


#: The ops a plain ``regtune bench`` runs: the README's headline table and the ops with a target
#: (``--all`` runs every op of the suites: each optimizer rule, the other initializers, ...).
DEFAULT_OPS = (
    "copy", "uniform", "normal", "normal_bf16", "truncated_normal", "dropout", "dropout_backward",
    "adamw", "adamw-list200", "adam", "sgd", "rmsprop", "adagrad", "clip+adamw",
    "xavier_uniform", "kaiming_normal", "trunc_normal", "orthogonal", "constant",
)  # fmt: skip


def measure(bench_n: int, seconds: float, ops=None, progress=None) -> dict:
    """Run the suites' cases whose op matches ``ops`` (shell-style patterns; None: every op) in
    this process, without pytest: see _harness.run."""
    return _harness.run(bench_n, seconds, _harness.select(ops), progress)


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


def copy_gbs(ops: dict[str, dict[str, dict]]) -> float | None:
    """The copy yardstick of the run: regtune._core.parallel_copy, bytes read + written / time."""
    copy = ops.get("copy", {}).get("regtune")
    return 2 * copy["bytes"] / copy["median"] / 1e9 if copy else None


def header(data: dict) -> list[str]:
    """What the run measured on: the machine, regtune's SIMD path and threads, the peers'
    versions and threads, the size, and the copy yardstick every "% of copy" compares with."""
    m = data.get("machine_info", {})
    s = m.get("regtune_bench") or {}
    cpu = s.get("cpu") or m.get("cpu", {}).get("brand_raw", "unknown CPU")
    cores = s.get("cores") or m.get("cpu", {}).get("count", "?")
    rt = s.get("regtune")
    rt_text = "regtune not importable"
    if rt:
        rt_fields = defaultdict(lambda: "?", rt)
        rt_text = "regtune on the **{simd}** path, **{threads} threads** (idle spin {spin_us} us), {compiler}"
        rt_text = rt_text.format_map(rt_fields)
    torch = "torch not installed (its rows are left out)"
    if s.get("torch"):
        torch = f"torch {s['torch']} ({s.get('torch_threads')} threads)"
    n = s.get("bench_n", "?")
    gbs = copy_gbs(collect(data))
    yardstick = (f"**Copy yardstick:** {gbs:.1f} GB/s (regtune's threaded copy of one {n}x{n} float32 array, bytes "
                 "read + written, measured in this run); \"% of copy\" is regtune's GB/s over it."
                 if gbs else "**Copy yardstick:** not measured in this run (no \"copy\" op), so no \"% of copy\".")
    return [
        f"**Machine:** {cpu}, {cores} cores; {rt_text}; NumPy {s.get('numpy', '?')} (its generators: 1 thread); "
        f"{torch}.",
        f"**Size:** {n}x{n} float32 unless the op says otherwise; median of each call's timed rounds.",
        yardstick,
    ]


def targets(table: list[dict], bench_n: int | None = TARGET_N) -> list[str]:
    """One line per target: met or not, on a run at TARGET_N; a single line saying they are not
    judged on a run at any other size."""
    if bench_n != TARGET_N:
        return [f"Targets: defined at {TARGET_N}x{TARGET_N} float32 on {TARGET_CORES} cores, so not judged on this "
                f"{bench_n}x{bench_n} run (--size {TARGET_N} judges them)."]
    out = []
    by_key = {(r["op"], r["peer"]): r for r in table}
    for op, peer, kind, threshold in TARGETS:
        # A target against a peer needs that peer's row (not another peer's speed-up); one on
        # regtune alone (GB/s, % of copy) reads any row of the op.
        r = by_key.get((op, peer)) if peer else next((v for (o, _), v in by_key.items() if o == op), None)
        value = r and {"speed-up": r["speedup"], "GB/s": r["gbs"], "% of copy": r["frac"]}[kind]
        what = f"{op} vs {peer} speed-up" if peer else f"{op} {kind}"
        unit = {"speed-up": "x", "GB/s": " GB/s", "% of copy": "%"}[kind]
        if value is None:
            out.append(f"- {what} >= {threshold:.3g}{unit}: not measured in this run")
        else:
            verdict = "met" if value >= threshold else "**NOT met**"
            out.append(f"- {what} >= {threshold:.3g}{unit}: {value:.2f}{unit}, {verdict}")
    return [f"Targets (defined at {TARGET_N}x{TARGET_N} float32 on {TARGET_CORES} cores):", *out]


def skipped_note(skipped: dict[str, str]) -> list[str]:
    """One line naming the peers not installed here (and any other reason a case could not
    run), with how many cases each left out."""
    if not skipped:
        return []
    import re

    missing: dict[str, int] = defaultdict(int)
    no_variant: dict[str, list[str]] = defaultdict(list)
    other: dict[str, int] = defaultdict(int)
    for reason in skipped.values():
        m = re.match(r"(\S+) is not (?:installed|importable)", reason)
        v = re.match(r"torch\.optim\.(\w+)\((\w+)=True\) raises on this torch", reason)
        if m:
            missing[m.group(1).split(".")[0]] += 1
        elif v:
            no_variant[v.group(2)].append(v.group(1))
        else:
            other[reason] += 1
    parts = []
    if missing:
        parts.append("not installed here: " + ", ".join(f"{k} ({n})" for k, n in sorted(missing.items())))
    for mode, names in sorted(no_variant.items()):
        parts.append(f"this torch has no {mode}=True step for {', '.join(sorted(set(names)))} ({len(names)})")
    parts += [f"{r} ({n})" for r, n in sorted(other.items())]
    return [f"Cases left out ({len(skipped)}): " + "; ".join(parts) + "."]


def table_lines(table: list[dict]) -> list[str]:
    """The rows as a Markdown table whose columns line up in a terminal too."""
    cells = [COLUMNS]
    for r in table:
        cells.append([
            r["label"], r["peer"] or DASH, _ms(r["peer_s"]), _ms(r["regtune_s"]),
            _fmt(r["speedup"], ".1f") + ("x" if r["speedup"] is not None else ""),
            _fmt(r["gbs"], ".1f"), _fmt(r["frac"], ".0f") + ("%" if r["frac"] is not None else ""),
        ])  # fmt: skip
    width = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    right = [False, False] + [True] * (len(COLUMNS) - 2)  # numbers right-aligned

    def line(row):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, width, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(width, right)) + "|"
    return [line(cells[0]), rule, *(line(row) for row in cells[1:])]


def render(data: dict) -> str:
    """The header, one table, what could not run, and the targets (judged at TARGET_N only)."""
    n = data.get("machine_info", {}).get("regtune_bench", {}).get("bench_n")
    table = list(rows(collect(data), n))
    lines = [*header(data), "", *table_lines(table), ""]
    note = skipped_note(data.get("skipped", {}))
    lines += [*note, *([""] if note else []), *targets(table, n)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", help="a pytest-benchmark --benchmark-json file")
    parser.add_argument("--run", action="store_true", help="run bench/'s suites here first (no pytest needed)")
    parser.add_argument("--size", type=int, default=int(os.environ.get("REGTUNE_BENCH_N", TARGET_N)),
                        help="N of the N x N float32 arrays for --run (default $REGTUNE_BENCH_N or %(default)s)")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("REGTUNE_BENCH_SECONDS", "1.0")),
                        help="time budget per case for --run (default $REGTUNE_BENCH_SECONDS or %(default)s)")
    parser.add_argument("--ops", metavar="PATTERNS", help="for --run: comma-separated op names or shell-style "
                        "patterns (default: every op)")  # fmt: skip
    parser.add_argument("--markdown-out", metavar="FILE", help="also write the table here")
    args = parser.parse_args(argv)
    if args.run == bool(args.json):
        parser.error("give either a JSON file or --run")
    if args.run:
        data = measure(args.size, args.seconds, args.ops.split(",") if args.ops else None)
    else:
        with open(args.json) as f:
            data = json.load(f)
    text = render(data)
    sys.stdout.write(text)
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
