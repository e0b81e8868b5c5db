"""The regtune command line: train / compare / tune / bench / demo on tiny data, and every error
path ending in one line on stderr and a non-zero exit, without a traceback."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from regtune import cli


@pytest.fixture
def tiny(tmp_path):
    """A small 4x4-image, 3-class problem saved as --data."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2.0, (3, 4, 4))
    def part(n):
        y = rng.integers(0, 3, n)
        return (centers[y] + rng.normal(0, 1.0, (n, 4, 4))).astype(np.float32), y
    (Xtr, ytr), (Xte, yte) = part(120), part(60)
    path = tmp_path / "tiny.npz"
    np.savez(path, X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte)
    return str(path)


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


QUICK = ["--hidden", "16", "--epochs", "3", "--batch-size", "16", "--lr", "0.02", "--no-progress"]


def test_train_end_to_end(tiny, tmp_path, capsys):
    outs = []
    for name, slash in (("a", ""), ("b", "/")):  # --out run/ prints "wrote run/", not "wrote run//"
        out_dir = tmp_path / name
        rc, out, err = run(["train", "--data", tiny, *QUICK, "--out", f"{out_dir}{slash}"], capsys)
        assert rc == 0, err
        assert out.startswith("test accuracy ") and out.endswith(f"; wrote {out_dir}/\n") and "//" not in out
        for f in ("history.json", "timing.json", "model.npz", "history.png"):
            assert (out_dir / f).stat().st_size > 0
        outs.append([(out_dir / f).read_bytes() for f in ("history.json", "model.npz", "timing.json")])
    # Same seed, same run: identical history.json and model.npz, bytes included (zip dates too);
    # the wall times live only in timing.json.
    assert outs[0][:2] == outs[1][:2]
    assert outs[0][2] != outs[1][2]
    record = json.loads(outs[0][0])
    assert len(record["history"]["epoch"]) == 3 and record["model"]["sizes"] == [16, 16, 3]
    assert record["history"]["train_acc"][-1] > 0.8
    assert (tmp_path / "a" / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def terminal(monkeypatch):
    """stderr counts as a terminal (capsys's is not), so that the progress bar is shown."""
    monkeypatch.setattr(cli, "_on_terminal", lambda stream: True)


def test_train_progress_bar(tiny, capsys, terminal):
    pytest.importorskip("tqdm")
    rc, out, err = run(["train", "--data", tiny, *QUICK[:-1], "--schedule", "one_cycle", "--warmup", "1"], capsys)
    assert rc == 0 and "train" in err and "epoch" in err  # tqdm writes to stderr
    rc, out, err = run(["train", "--data", tiny, *QUICK], capsys)  # --no-progress
    assert rc == 0 and err == ""


def test_progress_bar_only_on_a_terminal(tiny):
    """In a pipe or a log file, no bar (tqdm would write every redraw there); on a terminal, one."""
    pytest.importorskip("tqdm")
    argv = [sys.executable, "-m", "regtune", "train", "--data", tiny, *QUICK[:-1]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("test accuracy") and proc.stderr == "", proc.stderr
    pty, select, fcntl, termios = (pytest.importorskip(m) for m in ("pty", "select", "fcntl", "termios"))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm draws nothing 0 wide
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    try:
        while select.select([master], [], [], 120)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal's other side (it ended)
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        assert proc.wait(timeout=120) == 0
    assert b"train" in seen and b"epoch" in seen, seen


def test_train_digits_default_dataset(capsys):
    pytest.importorskip("sklearn")
    rc, out, err = run(["train", "--epochs", "1", "--hidden", "32", "--no-progress"], capsys)
    assert rc == 0, err
    assert "(" in out and "/539)" in out  # the fixed 70/30 split of 1797 digits


def test_compare(tiny, tmp_path, capsys):
    rc, out, err = run(["compare", "--data", tiny, "--subset", "40", *QUICK, "--out", f"{tmp_path}/"], capsys)
    assert rc == 0, err
    for arm in ("none", "L2", "L1", "dropout", "L2+dropout", "max-norm"):
        assert f"\n{arm} " in out
    assert out.endswith(f"wrote {tmp_path}/compare.png and {tmp_path}/compare.json\n")
    assert (tmp_path / "compare.png").stat().st_size > 0
    results = json.loads((tmp_path / "compare.json").read_text())["results"]
    assert set(results) == {"none", "L2", "L1", "dropout", "L2+dropout", "max-norm"}
    assert all(r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"]) for r in results.values())


def test_nothing_written_without_out(tiny, tmp_path, capsys, monkeypatch):
    """train and compare write files only with --out (compare then needs no matplotlib)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for argv in (["train"], ["compare", "--subset", "40"]):
        rc, out, err = run([*argv, "--data", tiny, *QUICK, "--epochs", "1"], capsys)
        assert rc == 0 and "wrote" not in out, err
    assert os.listdir(cwd) == [] and sorted(os.listdir(tmp_path)) == ["cwd", "tiny.npz"]


def test_compare_sets_the_regularizers_itself(tiny, capsys):
    """Options that each arm of the study sets (none in the baseline) are not options of compare:
    they would be silently replaced. --l2, --l1-coef, --p and --max-norm-value set the arms (and
    argparse reads --l1 and --max-norm as abbreviations of the last two)."""
    for option in ("--weight-decay", "--dropout", "--prox-l1", "--noise", "--shift"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["compare", "--data", tiny, *QUICK, option, "1"])
        err = capsys.readouterr().err
        assert exc.value.code == 2
        assert err.strip().splitlines()[-1] == f"regtune: error: unrecognized arguments: {option} 1"


def fits_seen(monkeypatch):
    """The keyword arguments of every Trainer.fit call, and the learning rate of its trainer."""
    from regtune.trainer import Trainer

    calls, fit = [], Trainer.fit

    def spy(self, *args, **kwargs):
        calls.append({"lr": self.current_lr(), **kwargs})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    return calls


def test_compare_honours_patience(tiny, capsys, monkeypatch):
    calls = fits_seen(monkeypatch)
    rc, out, err = run(["compare", "--data", tiny, "--subset", "40", *QUICK, "--patience", "1"], capsys)
    assert rc == 0, err
    assert [c["patience"] for c in calls] == [1] * 6


def test_tune(tiny, tmp_path, capsys):
    pytest.importorskip("optuna")
    rc, out, err = run(["tune", "--data", tiny, *QUICK[:6], "--no-progress", "--trials", "2", "--out", str(tmp_path)],
                       capsys)  # fmt: skip
    assert rc == 0, err
    assert "best trial" in out and "--lr" in out and out.endswith(f"wrote {tmp_path}/tune.json\n")
    record = json.loads((tmp_path / "tune.json").read_text())
    assert record["fixed"] == {} and set(record["best"]["params"]) == set(cli.SEARCHED)


def test_tune_keeps_the_options_given(tiny, tmp_path, capsys, monkeypatch):
    """A searched option that the user gives stays fixed in every trial; the rest are searched.
    Given means given: --lr 0.002 equals train's default and --init auto the default value."""
    pytest.importorskip("optuna")
    calls = fits_seen(monkeypatch)
    argv = ["tune", "--data", tiny, *QUICK[:6], "--no-progress", "--trials", "2", "--epochs", "1", "--patience", "3"]
    rc, out, err = run([*argv, "--lr", "0.002", "--init", "auto", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    record = json.loads((tmp_path / "tune.json").read_text())
    assert record["fixed"] == {"lr": 0.002, "init": "auto"}
    assert len(record["trials"]) == 2
    assert all(set(t["params"]) == {"weight_decay", "dropout", "schedule"} for t in record["trials"])
    assert len(calls) == 2 and all(c["patience"] == 3 for c in calls)  # --patience is used too
    assert "--lr             0.002  (fixed)" in out and "--init           auto  (fixed)" in out


def test_tune_runs_with_the_given_learning_rate(tiny, capsys, monkeypatch):
    pytest.importorskip("optuna")
    calls = fits_seen(monkeypatch)
    argv = ["tune", "--data", tiny, *QUICK[:6], "--no-progress", "--trials", "2", "--epochs", "1"]
    rc, out, err = run([*argv, "--lr", "0.01", "--schedule", "constant"], capsys)
    assert rc == 0, err
    assert [c["lr"] for c in calls] == [0.01, 0.01]  # a constant schedule: the first step's rate is --lr


def test_tune_refuses_when_nothing_is_left_to_search(tiny, capsys):
    rc, out, err = run(["tune", "--data", tiny, *QUICK, "--weight-decay", "0", "--dropout", "0.1", "--init", "auto",
                        "--schedule", "cosine"], capsys)  # fmt: skip
    assert rc == 2 and one_line(err) and out == "", err
    assert err == ("regtune: error: --lr, --weight-decay, --dropout, --init and --schedule are all given: nothing left "
                   "to search (leave one out, or use regtune train)\n")  # fmt: skip


def test_demo(capsys):
    rc, out, err = run(["demo", "--size", "64"], capsys)
    assert rc == 0 and "bit-identical = True" in out and "equal to the slice = True" in out


def test_no_command_prints_help(capsys):
    rc, out, err = run([], capsys)
    assert rc == 2 and "train" in out and "compare" in out


# ------------------------------------------------------------------------------ errors


def bad_npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


X4, Y4 = np.zeros((8, 5), np.float32), np.array([0, 1] * 4)

def one_line(err):
    """stderr is exactly one line, `regtune: error: ...`, without a traceback."""
    return err.count("\n") == 1 and err.startswith("regtune: error: ") and "Traceback" not in err


ERRORS = [
    (["--activation", "swish"], "--activation: unknown activation 'swish'; choose one of relu"),
    (["--init", "glorot"], "--init: unknown initializer 'glorot'; choose one of auto"),
    (["--optimizer", "adamax2"], "--optimizer: unknown optimizer 'adamax2'; choose one of sgd, adam"),
    (["--schedule", "cosinus"], "--schedule: unknown schedule 'cosinus'; choose one of constant"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--lr", "-1"], "--lr must be > 0, got -1.0"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0, got -1.0"),
    (["--shift", "1", "--image-shape", "3,3"], "image_shape (3, 3) does not hold the model's 16 inputs"),
    (["--threads", "0"], "--threads must be between 1 and 1024, got 0"),
    (["--threads", "100000"], "--threads must be between 1 and 1024, got 100000"),
    (["--optimizer", "lion", "--momentum", "0.9"], "--momentum applies to --optimizer sgd, rmsprop and lars, not lion"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[e[0][0] for e in ERRORS])
def test_bad_options(tiny, capsys, args, message):
    rc, out, err = run(["train", "--data", tiny, *QUICK, *args], capsys)
    assert rc == 2
    assert one_line(err) and message in err, err


DATA_ERRORS = [
    (dict(X_train=X4, y_train=Y4, X_test=X4), "lacks y_test"),
    (dict(X_train=X4, y_train=Y4, X_test=X4[:, :3], y_test=Y4), "must have the same number of features"),
    (dict(X_train=X4[0], y_train=Y4, X_test=X4, y_test=Y4), "X_train must have shape (n, features)"),
    (dict(X_train=X4, y_train=Y4[:5], X_test=X4, y_test=Y4), "y_train must have shape (8,) to match X_train"),
    (dict(X_train=X4, y_train=Y4, X_test=X4, y_test=Y4 + 2), "y_test holds label 3, outside the classes 0..1"),
    (dict(X_train=X4, y_train=Y4 - 1, X_test=X4, y_test=Y4), "y_train holds label -1"),
    (dict(X_train=X4, y_train=Y4 + 0.5, X_test=X4, y_test=Y4), "y_train must hold integer class labels"),
]


@pytest.mark.parametrize("arrays, message", DATA_ERRORS, ids=[e[1].split()[0] + str(i) for i, e in enumerate(DATA_ERRORS)])
def test_bad_data(tmp_path, capsys, arrays, message):
    rc, out, err = run(["train", "--data", bad_npz(tmp_path, **arrays), *QUICK], capsys)
    assert rc == 2 and one_line(err) and message in err, err


def test_missing_data_file(tmp_path, capsys):
    rc, out, err = run(["train", "--data", str(tmp_path / "nope.npz"), *QUICK], capsys)
    assert rc == 2 and one_line(err) and "--data" in err and "no such file" in err


@pytest.mark.parametrize(
    "module, argv, message",
    [
        ("optuna", ["tune"], 'regtune tune needs optuna, which is not installed: pip install "regtune[tune]"'),
        ("sklearn", ["train", "--no-progress"], 'needs sklearn, which is not installed: pip install "regtune[train]"'),
        ("tqdm", ["train"], 'progress bar (or pass --no-progress) needs tqdm'),
        ("matplotlib", ["compare"], 'needs matplotlib, which is not installed: pip install "regtune[train]"'),
    ],
)  # fmt: skip
def test_missing_extra(monkeypatch, capsys, tmp_path, tiny, terminal, module, argv, message):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    if module == "sklearn":
        monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    if module == "tqdm":
        argv = [*argv, "--data", tiny]
    if module == "matplotlib":  # needed for --out only
        argv = [*argv, "--data", tiny, "--out", str(tmp_path)]
    rc, out, err = run(argv, capsys)
    assert rc == 2 and one_line(err) and message in err, err


CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_BENCH = ["bench", "--size", "64", "--seconds", "0.001", "--ops", "copy,normal,adamw,orthogonal"]


def _bench_report():
    """bench/report.py of this checkout, loaded as regtune bench loads it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_under_test", os.path.join(CHECKOUT, "bench", "report.py"))
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


@pytest.mark.skipif(not os.path.isfile(os.path.join(CHECKOUT, "bench", "report.py")), reason="no bench/ (an sdist)")
def test_bench_needs_no_extra_and_prints_one_table(monkeypatch, capsys, tmp_path):
    # Issue 28: regtune bench works after the README's set-up (no pytest-benchmark, which no
    # extra of that set-up installs) and prints one table under a header naming the SIMD path,
    # the threads and the copy yardstick; targets are not judged at a size they are not for.
    import regtune

    monkeypatch.setitem(sys.modules, "pytest_benchmark", None)  # `import pytest_benchmark` fails
    monkeypatch.chdir(CHECKOUT)
    rc, out, err = run([*TINY_BENCH, "--json", str(tmp_path / "b.json")], capsys)
    assert rc == 0 and err == "", err  # no progress line when stderr is not a terminal
    lines = out.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    assert table == list(range(table[0], table[0] + len(table))), "the table rows are not one block"
    assert lines[table[0]].split("|")[1].strip() == "op" and sum("| op " in line for line in lines) == 1
    assert {line.split("|")[1].strip() for line in lines[table[0] + 2 : table[-1] + 1]} >= {"copy", "normal", "adamw"}
    assert f"path **{regtune.config()['simd']}**" in out.replace("on the **", "path **")
    assert f"**{regtune.get_num_threads()} threads**" in out
    assert "**Copy yardstick:** " in out and " GB/s " in out.split("**Copy yardstick:** ")[1].splitlines()[0]
    assert "not judged on this 64x64 run" in out and "NOT met" not in out and ": met" not in out
    assert "Name (time in" not in out and not any(line.startswith("---") for line in lines)  # no pytest-benchmark
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["size"] == 64 and {r["op"] for r in saved["rows"]} >= {"copy", "normal", "adamw"}


def test_bench_targets_are_judged_only_at_their_size():
    report = _bench_report()
    row = dict(op="normal", peer="numpy", speedup=1.0, gbs=1.0, frac=1.0)
    at_target = report.targets([row], report.TARGET_N)
    assert any("normal vs numpy speed-up >= 20x: 1.00x, **NOT met**" in line for line in at_target)
    assert sum("not measured" in line for line in at_target) == len(report.TARGETS) - 1
    for n in (512, 2048):
        (line,) = report.targets([row], n)
        assert f"not judged on this {n}x{n} run" in line and "NOT met" not in line


def test_bench_counts_what_could_not_run_in_one_line():
    report = _bench_report()
    (line,) = report.skipped_note({
        "normal/jax": "jax is not installed (No module named 'jax')",
        "nadam/torch-fused": "torch.optim.NAdam(fused=True) raises on this torch: TypeError: no fused",
        "nadam-list200/torch-fused": "torch.optim.NAdam(fused=True) raises on this torch: TypeError: no fused",
        "adamw+ema/regtune": "regtune.optim has no EMA in this build",
    })  # fmt: skip
    assert line == ("Cases left out (4): not installed here: jax (1); this torch has no fused=True step for NAdam (2); "
                    "regtune.optim has no EMA in this build (1).")  # fmt: skip
    assert report.skipped_note({}) == []


def test_bench_progress_line_on_a_terminal(monkeypatch, capsys, terminal):
    if not os.path.isfile(os.path.join(CHECKOUT, "bench", "report.py")):
        pytest.skip("no bench/ (an sdist)")
    monkeypatch.chdir(CHECKOUT)
    rc, out, err = run([*TINY_BENCH[:-1], "copy"], capsys)
    assert rc == 0 and "regtune bench: case 1/2: copy (" in err and err.endswith("\r\033[K"), repr(err)


def test_bench_ops_that_match_nothing(monkeypatch, capsys):
    if not os.path.isfile(os.path.join(CHECKOUT, "bench", "report.py")):
        pytest.skip("no bench/ (an sdist)")
    monkeypatch.chdir(CHECKOUT)
    rc, out, err = run(["bench", "--size", "64", "--ops", "nothing*"], capsys)
    assert rc == 2 and one_line(err) and "--ops nothing* matches no benchmark" in err, err


def test_bench_without_checkout(tmp_path, capsys):
    rc, out, err = run(["bench", "--bench-dir", str(tmp_path)], capsys)
    assert rc == 2 and one_line(err) and "source checkout" in err


def test_no_traceback_in_a_real_process(tiny):
    """The installed entry point, as a user runs it: one line, exit status 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "regtune", "train", "--data", tiny, "--activation", "swish", "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("regtune: error: --activation: unknown activation 'swish'")


# ------------------------------------------------------------------------------ hostile input
# Every case ends before training (or after one tiny step), in process: exit status 2, one line
# on stderr, `regtune: error: ...`, naming the option or the --data key at fault.

NONFINITE = ["nan", "inf", "-inf", "1e999"]
TRAIN_FLOATS = ["--lr", "--momentum", "--weight-decay", "--l1", "--prox-l1", "--max-grad-norm", "--max-norm",
                "--noise", "--dropout"]  # fmt: skip


@pytest.mark.parametrize("value", NONFINITE)
@pytest.mark.parametrize("option", TRAIN_FLOATS)
def test_nonfinite_float_options(tiny, capsys, option, value):
    rc, out, err = run(["train", "--data", tiny, *QUICK, f"{option}={value}"], capsys)
    assert rc == 2 and one_line(err) and f"{option} must be a finite number" in err, err


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize("option", ["--l2", "--l1-coef", "--p", "--max-norm-value", "--label-noise"])
def test_nonfinite_compare_options(tiny, capsys, option, value):
    rc, out, err = run(["compare", "--data", tiny, *QUICK, option, value], capsys)
    assert rc == 2 and one_line(err) and f"{option} must be a finite number" in err, err


OUT_OF_RANGE = [
    (["train", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "--epochs", "-3"], "--epochs must be >= 1, got -3"),
    (["train", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["train", "--batch-size", "-32"], "--batch-size must be >= 1, got -32"),
    (["train", "--patience", "-1"], "--patience must be >= 0, got -1"),
    (["train", "--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["train", "--shift", "-1"], "--shift must be >= 0, got -1"),
    (["train", "--seed", "-1"], "--seed must be in [0, 2**64), got -1"),
    (["train", "--seed", str(2**64)], "--seed must be in [0, 2**64)"),
    (["train", "--lr", "0"], "--lr must be > 0, got 0.0"),
    (["train", "--lr", "-0.0"], "--lr must be > 0, got -0.0"),
    (["train", "--momentum", "-0.5"], "--momentum must be >= 0, got -0.5"),
    (["train", "--l1", "-1e-320"], "--l1 must be >= 0"),
    (["train", "--prox-l1", "-1"], "--prox-l1 must be >= 0"),
    (["train", "--max-grad-norm", "0"], "--max-grad-norm must be > 0, got 0.0"),
    (["train", "--max-norm", "-1"], "--max-norm must be > 0, got -1.0"),
    (["train", "--noise", "-1"], "--noise must be in [0, "),
    (["train", "--noise", "3e38"], "--noise must be in [0, "),
    (["train", "--dropout", "-0.1"], "--dropout must be in [0, 1), got -0.1"),
    (["train", "--dropout", "0.1,1.0"], "--dropout must be in [0, 1), got [0.1, 1.0]"),
    (["train", "--threads", "-1"], "--threads must be between 1 and"),
    (["compare", "--subset", "0"], "--subset must be >= 1, got 0"),
    (["compare", "--subset", "-5"], "--subset must be >= 1, got -5"),
    (["compare", "--subset", "100000"], "--subset must be in [1, 108], got 100000"),
    (["compare", "--p", "1"], "--p must be in [0, 1), got 1.0"),
    (["compare", "--label-noise", "-0.5"], "--label-noise must be in [0, 1), got -0.5"),
    (["compare", "--l2", "-1"], "--l2 must be >= 0, got -1.0"),
    (["compare", "--l1-coef", "-1"], "--l1-coef must be >= 0, got -1.0"),
    (["compare", "--max-norm-value", "0"], "--max-norm-value must be > 0, got 0.0"),
    (["compare", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["tune", "--trials", "0"], "--trials must be >= 1, got 0"),
    (["tune", "--trials", "-2"], "--trials must be >= 1, got -2"),
    (["tune", "--timeout", "0"], "--timeout must be > 0, got 0.0"),
    (["tune", "--timeout", "nan"], "--timeout must be a finite number, got nan"),
    (["tune", "--epochs", "-1"], "--epochs must be >= 1, got -1"),
    (["tune", "--patience", "-1"], "--patience must be >= 0, got -1"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", OUT_OF_RANGE, ids=[" ".join(a) for a, _ in OUT_OF_RANGE])
def test_options_out_of_range(tiny, capsys, argv, message):
    rc, out, err = run([argv[0], "--data", tiny, *QUICK, f"{argv[1]}={argv[2]}"], capsys)
    assert rc == 2 and one_line(err) and message in err, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--size", "0"], "--size must be >= 1, got 0"),
        (["demo", "--size", "-4"], "--size must be >= 1, got -4"),
        (["demo", "--seed", "-1"], "--seed must be in [0, 2**64)"),
        (["demo", "--size", "1000000"], "--size 1000000 (1000000x1000000 float32 arrays) needs"),
        (["bench", "--size", "0"], "--size must be >= 1, got 0"),
        (["bench", "--seconds", "0"], "--seconds must be > 0, got 0.0"),
        (["bench", "--seconds", "inf"], "--seconds must be a finite number, got inf"),
        (["bench", "--json", ""], "--json must not be empty"),
        (["bench", "--bench-dir", ""], "--bench-dir must not be empty"),
        (["bench", "--ops", " "], "--ops must not be empty"),
        (["bench", "--json", "/nonexistent-dir/x.json"], "--json /nonexistent-dir/x.json: the folder"),
    ],
)  # fmt: skip
def test_demo_and_bench_options(capsys, argv, message):
    rc, out, err = run(argv, capsys)
    assert rc == 2 and one_line(err) and message in err and out == "", err


@pytest.mark.parametrize("command", ["train", "compare", "tune"])
@pytest.mark.parametrize("option", ["--data", "--out"])
def test_empty_paths(tiny, capsys, command, option):
    argv = [command, "--data", tiny, *QUICK, option, ""]
    rc, out, err = run(argv, capsys)
    assert rc == 2 and one_line(err) and f"{option} must not be empty" in err, err


def test_out_is_a_file(tiny, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--out", str(f)], capsys)
    assert rc == 2 and one_line(err) and f"--out {f} exists and is not a directory" in err
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--out", str(f / "sub")], capsys)
    assert rc == 2 and one_line(err) and "--out" in err and "is not a directory" in err
    rc, out, err = run(["bench", "--json", str(tmp_path)], capsys)
    assert rc == 2 and one_line(err) and "--json" in err and "is a directory" in err


USAGE_ERRORS = [
    (["--epochs", "3.0"], "argument --epochs: invalid int value: '3.0'"),
    (["--batch-size", "2.9"], "argument --batch-size: invalid int value: '2.9'"),
    (["--patience", "1e3"], "argument --patience: invalid int value"),
    (["--hidden", "4.7"], "argument --hidden: expected comma-separated ints, got '4.7'"),
    (["--hidden", "a,b"], "argument --hidden: expected comma-separated ints, got 'a,b'"),
    (["--hidden", ""], "argument --hidden: expected comma-separated ints, got ''"),
    (["--hidden", "4,,5"], "argument --hidden: expected comma-separated ints, got '4,,5'"),
    (["--hidden", "0"], "argument --hidden: sizes must be >= 1, got '0'"),
    (["--hidden", "16,-3"], "argument --hidden: sizes must be >= 1, got '16,-3'"),
    (["--image-shape", ""], "argument --image-shape: expected comma-separated ints"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--dropout", "0.1,x"], "argument --dropout: expected a float or comma-separated floats"),
    (["--seed", "0x10"], "argument --seed: invalid int value"),
    (["--lr=-inf", "--lr", "--epochs"], "argument --lr: expected one argument"),
]  # fmt: skip


@pytest.mark.parametrize("args, message", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2(tiny, capsys, args, message):
    """Values of the wrong type stop in argparse: usage, then `regtune train: error: argument ...`."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--data", tiny, *QUICK, *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("usage: regtune train")
    assert err.strip().splitlines()[-1].startswith("regtune train: error: ") and message in err, err


def test_unknown_option_exit_2(tiny, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--data", tiny, "--bogus"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.strip().splitlines()[-1] == "regtune: error: unrecognized arguments: --bogus"


def npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


XF = np.random.default_rng(1).normal(size=(12, 5)).astype(np.float32)
YF = np.arange(12) % 3


def with_x(**changes):
    return {"X_train": XF, "y_train": YF, "X_test": XF, "y_test": YF, **changes}


def nan_at(i, j, value=np.nan, dtype=np.float32):
    X = XF.astype(dtype)
    X[i, j] = value
    return X


HOSTILE_DATA = [
    ("nan", with_x(X_train=nan_at(3, 2)), "X_train holds nan (row 3, feature 2), not finite"),
    ("inf", with_x(X_test=nan_at(0, 4, np.inf)), "X_test holds inf (row 0, feature 4), not finite"),
    ("-inf", with_x(X_train=nan_at(11, 0, -np.inf)), "X_train holds -inf (row 11, feature 0)"),
    ("f64 overflow", with_x(X_train=nan_at(1, 1, 1e39, np.float64)), "X_train holds 1e+39 (row 1, feature 1), beyond float32's range"),
    ("f16 inf", with_x(X_train=nan_at(2, 3, np.inf, np.float16)), "X_train holds inf (row 2, feature 3)"),
    ("nan val", with_x(X_val=nan_at(5, 0), y_val=YF), "X_val holds nan (row 5, feature 0)"),
    ("complex", with_x(X_train=XF.astype(np.complex64)), "X_train must hold numbers, got dtype complex64"),
    ("strings", with_x(X_train=XF.astype(str)), "X_train must hold numbers, got dtype <U"),
    ("bytes", with_x(X_train=XF.astype("S8")), "X_train must hold numbers, got dtype |S8"),
    ("bool X", with_x(X_train=XF > 0), "X_train must hold numbers, got dtype bool"),
    ("datetime", with_x(X_train=np.zeros((12, 5), "datetime64[s]")), "X_train must hold numbers, got dtype datetime64"),
    ("bool y", with_x(y_train=YF > 0), "y_train must hold integer class labels, got dtype bool"),
    ("float y", with_x(y_test=YF.astype(np.float64)), "y_test must hold integer class labels, got dtype float64"),
    ("complex y", with_x(y_train=YF.astype(complex)), "y_train must hold integer class labels, got dtype complex128"),
    ("str y", with_x(y_train=YF.astype(str)), "y_train must hold integer class labels, got dtype <U"),
    ("negative y", with_x(y_train=YF - 1), "y_train holds label -1"),
    ("negative test y", with_x(y_test=YF - 2), "y_test holds label -2"),
    ("huge y", with_x(y_train=np.where(YF == 2, 10**9, YF)), "y_train holds label 1000000000: at most 100000 classes"),
    ("huge uint64 y", with_x(y_train=np.where(YF == 2, 2**63 + 5, YF).astype(np.uint64)), f"y_train holds label {2**63 + 5}: at most"),
    ("huge test y", with_x(y_test=np.where(YF == 2, 10**6, YF)), "y_test holds label 1000000: at most 100000 classes"),
    ("one class", with_x(y_train=YF * 0, y_test=YF * 0), "y_train must hold at least 2 classes, got 1"),
    ("unseen test label", with_x(y_train=YF % 2), "y_test holds label 2, outside the classes 0..1 seen in y_train"),
    ("1-D X", with_x(X_train=XF[:, 0]), "X_train must have shape (n, features)"),
    ("5-D X", with_x(X_train=XF.reshape(12, 5, 1, 1, 1)), "X_train must have shape (n, features)"),
    ("0-D X", with_x(X_train=np.float32(1)), "X_train must have shape (n, features)"),
    ("no rows", with_x(X_test=XF[:0], y_test=YF[:0]), "X_test must have shape (n, features), (n, H, W) or (n, C, H, W) with n > 0, got (0, 5)"),
    ("no features", with_x(X_train=XF[:, :0], X_test=XF[:, :0]), "X_train has no features: shape (12, 0)"),
    ("no image pixels", with_x(X_train=np.zeros((12, 0, 4), np.float32)), "X_train has no features: shape (12, 0, 4)"),
    ("short y", with_x(y_train=YF[:7]), "y_train must have shape (12,) to match X_train (12, 5), got (7,)"),
    ("2-D y", with_x(y_test=YF[:, None]), "y_test must have shape (12,) to match X_test (12, 5), got (12, 1)"),
    ("0-D y", with_x(y_train=np.int64(1)), "y_train must have shape (12,) to match X_train (12, 5), got ()"),
    ("features test", with_x(X_test=XF[:, :4]), "X_train, X_test (and X_val) must have the same number of features"),
    ("features val", with_x(X_val=XF[:, :2], y_val=YF), "X_train, X_test (and X_val) must have the same number of features"),
    ("X_val alone", with_x(X_val=XF), "has X_val but no y_val"),
    ("y_val alone", with_x(y_val=YF), "has y_val but no X_val"),
    ("no X_train", {"y_train": YF, "X_test": XF, "y_test": YF}, "lacks X_train (it needs X_train, y_train, X_test, y_test)"),
    ("no y_train", {"X_train": XF, "X_test": XF, "y_test": YF}, "lacks y_train"),
    ("no X_test", {"X_train": XF, "y_train": YF, "y_test": YF}, "lacks X_test"),
    ("nothing", {"weights": XF}, "lacks X_train, y_train, X_test, y_test"),
    ("object X", with_x(X_train=np.array([[1.0, "a"]] * 12, dtype=object)), "cannot read X_train (Object arrays cannot be loaded"),
    ("too few rows", {"X_train": XF[:1], "y_train": YF[:1] * 0 + 1, "X_test": XF, "y_test": YF % 2}, "X_train has 1 rows: too few"),
]  # fmt: skip


@pytest.mark.parametrize("arrays, message", [c[1:] for c in HOSTILE_DATA], ids=[c[0] for c in HOSTILE_DATA])
def test_hostile_data(tmp_path, capsys, arrays, message):
    rc, out, err = run(["train", "--data", npz(tmp_path, **arrays), *QUICK], capsys)
    assert rc == 2 and one_line(err) and message in err, err


def _file(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return str(path)


def _npz_bytes():
    import io

    buf = io.BytesIO()
    np.savez(buf, **with_x())
    return buf.getvalue()


def _npy_bytes():
    import io

    buf = io.BytesIO()
    np.save(buf, XF)
    return buf.getvalue()


def _corrupt_member():
    """A valid zip directory whose X_train member's bytes are damaged (CRC mismatch)."""
    b = bytearray(_npz_bytes())
    i = b.index(b"X_train.npy") + len("X_train.npy") + 140  # inside X_train's data
    b[i : i + 8] = b"\xff" * 8
    return bytes(b)


BAD_FILES = [
    ("empty", b"", "is empty"),
    ("npy", _npy_bytes(), "holds a single .npy array; it must be a .npz"),
    ("truncated", _npz_bytes()[: len(_npz_bytes()) // 2], "cannot read --data"),
    ("truncated head", _npz_bytes()[:30], "cannot read --data"),
    ("garbage", b"PK\x03\x04" + b"garbage" * 40, "cannot read --data"),
    ("text", b"X_train,y_train\n1,2\n", "cannot read --data"),
    ("pickle", b"\x80\x04\x95" + b"\x00" * 40, "cannot read --data"),
    ("damaged member", _corrupt_member(), "cannot read X_train"),
    ("directory", None, "is a directory, not a .npz file"),
]  # fmt: skip


@pytest.mark.parametrize("content, message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_data_files(tmp_path, capsys, content, message):
    path = _file(tmp_path, "data.npz", content)
    rc, out, err = run(["train", "--data", path, *QUICK], capsys)
    assert rc == 2 and one_line(err) and "--data" in err and message in err, err


def test_data_not_a_regular_file(tmp_path, capsys):
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)  # reading it would block forever
    rc, out, err = run(["train", "--data", str(fifo), *QUICK], capsys)
    assert rc == 2 and one_line(err) and "is not a regular file" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "10000000,10000000"], "--hidden 10000000,10000000: the model cannot be allocated"),
        (["--hidden", str(10**15)], f"--hidden {10**15}: the model cannot be allocated"),
    ],
)
def test_model_too_large(tiny, capsys, args, message):
    rc, out, err = run(["train", "--data", tiny, *QUICK, *args], capsys)
    assert rc == 2 and one_line(err) and message in err and "GiB" in err, err


def test_shift_needs_images(tmp_path, tiny, capsys):
    flat = npz(tmp_path, **with_x())
    rc, out, err = run(["train", "--data", flat, *QUICK, "--shift", "1"], capsys)
    assert rc == 2 and one_line(err) and "--shift 1 needs image inputs" in err
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--shift", "4"], capsys)  # 4x4 images
    assert rc == 2 and one_line(err) and "--shift must be < the image's height and width (4, 4), got 4" in err


def test_divergence_is_an_error(tiny, capsys):
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--lr", "1e30", "--schedule", "constant"], capsys)
    assert rc == 2 and one_line(err) and "training diverged" in err and "lower lr" in err, err


def test_keyboard_interrupt(tiny, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_data", interrupted)
    rc, out, err = run(["train", "--data", tiny, *QUICK], capsys)
    assert rc == 130 and err == "regtune: interrupted\n"


def test_memory_error_is_one_line(tiny, capsys, monkeypatch):
    def alloc(args):
        raise MemoryError("Unable to allocate 3.6 TiB for an array with shape (10**12,)")

    monkeypatch.setattr(cli, "load_data", alloc)
    rc, out, err = run(["train", "--data", tiny, *QUICK], capsys)
    assert rc == 2 and one_line(err) and "out of memory: Unable to allocate 3.6 TiB" in err


@pytest.mark.parametrize("exc", [RuntimeError("boom\nsecond line"), KeyError("k"), ZeroDivisionError("z"), AssertionError()])
def test_unexpected_error(tiny, capsys, monkeypatch, exc):
    def broken(args):
        raise exc

    monkeypatch.delenv("REGTUNE_DEBUG", raising=False)
    monkeypatch.setattr(cli, "load_data", broken)
    rc, out, err = run(["train", "--data", tiny, *QUICK], capsys)
    name = type(exc).__name__
    assert rc == 1 and one_line(err) and err.startswith(f"regtune: error: unexpected {name}: ")
    assert err.rstrip().endswith("(set REGTUNE_DEBUG=1 for the traceback)"), err


def test_debug_shows_the_traceback(tiny, capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setenv("REGTUNE_DEBUG", "1")
    monkeypatch.setattr(cli, "load_data", broken)
    rc, out, err = run(["train", "--data", tiny, *QUICK], capsys)
    assert rc == 1 and err.startswith("Traceback (most recent call last)") and "in broken" in err
    assert err.strip().splitlines()[-1] == "regtune: error: unexpected RuntimeError: boom"
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--epochs", "0"], capsys)  # expected errors too
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1] == "regtune: error: --epochs must be >= 1, got 0"


SUBPROCESS = [
    (["train", "--data", "{bad}", "--no-progress"], "cannot read --data"),
    (["train", "--data", "{nan}", "--no-progress"], "X_train holds nan (row 0, feature 0)"),
    (["train", "--data", "{huge}", "--no-progress"], "y_train holds label 1000000000: at most 100000 classes"),
    (["train", "--data", "{tiny}", "--epochs", "-1", "--no-progress"], "--epochs must be >= 1, got -1"),
    (["demo", "--size", "1000000"], "--size 1000000"),
]


@pytest.mark.parametrize("argv, message", SUBPROCESS, ids=[m.split()[0] for _, m in SUBPROCESS])
def test_hostile_in_a_real_process(tmp_path, tiny, argv, message):
    paths = {"bad": _file(tmp_path, "bad.npz", _npz_bytes()[:100]), "tiny": tiny,
             "nan": npz(tmp_path, "nan.npz", **with_x(X_train=nan_at(0, 0))),
             "huge": npz(tmp_path, "huge.npz", **with_x(y_train=np.where(YF == 2, 10**9, YF)))}  # fmt: skip
    argv = [a.format(**paths) for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "REGTUNE_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "regtune", *argv], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and one_line(proc.stderr) and message in proc.stderr, proc.stderr


def test_interrupt_in_a_real_process(tiny):
    """Ctrl-C (a real SIGINT) during training: exit status 130 and one line, no traceback."""
    import signal

    code = ("import sys, regtune.cli as c\n"
            "build = c.build_trainer\n"
            "def ready(*a, **k):\n"
            "    t = build(*a, **k); print('training', flush=True); return t\n"
            "c.build_trainer = ready\n"
            f"sys.exit(c.main(['train', '--data', {tiny!r}, '--epochs', '1000000', '--hidden', '8', '--no-progress']))")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        assert proc.stdout.readline() == "training\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and err == "regtune: interrupted\n", err


#: A sitecustomize that holds the first import of ml_dtypes (the slowest part of regtune's start-up,
#: where issue 27's Ctrl-C landed) until the test has sent its SIGINT.
_SLOW_START = """
import builtins, sys, time
_real = builtins.__import__
def _slow(name, *args, **kwargs):
    if name == "ml_dtypes" and "ml_dtypes" not in sys.modules:
        builtins.__import__ = _real
        print("importing ml_dtypes", flush=True)
        time.sleep(60)
    return _real(name, *args, **kwargs)
builtins.__import__ = _slow
"""


@pytest.mark.parametrize("how", ["console script", "python -m regtune"])
def test_interrupt_during_start_up_is_one_line_and_130(tmp_path, tiny, how):
    """Issue 27: SIGINT while `regtune train` was still importing printed a KeyboardInterrupt
    traceback from inside ml_dtypes' import (and the status of a process killed by SIGINT)."""
    import signal

    (tmp_path / "sitecustomize.py").write_text(_SLOW_START)
    script = tmp_path / "regtune"  # what pip's console script does, under the command's name
    script.write_text("import sys\nfrom regtune.cli import main\nsys.exit(main())\n")
    args = ["train", "--data", tiny, "--epochs", "1", "--no-progress"]
    cmd = [sys.executable, str(script), *args] if how == "console script" else [sys.executable, "-m", "regtune", *args]
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": path},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        assert proc.stdout.readline() == "importing ml_dtypes\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and err == "regtune: interrupted\n", (proc.returncode, err)


def test_a_program_that_imports_regtune_keeps_its_ctrl_c(tmp_path):
    """The start-up handler is the command's alone: a script that imports regtune still gets
    KeyboardInterrupt from Ctrl-C."""
    code = ("import signal, regtune\n"
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
            "import regtune.cli\n"
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n")  # fmt: skip
    import signal

    # SIGINT as a terminal gives it, whatever this process inherited (a shell's background job
    # starts with it ignored, and Python then keeps it ignored)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_valid_edge_values_still_work(tiny, capsys):
    """Boundaries that are allowed: --patience 0, --dropout 0, --momentum 0, --noise 0, a uint8
    image --data, a batch larger than the data."""
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--patience", "0", "--dropout", "0", "--optimizer", "sgd",
                        "--momentum", "0", "--noise", "0", "--batch-size", "100000"], capsys)  # fmt: skip
    assert rc == 0 and out.startswith("test accuracy"), err


def test_huge_batch_size_is_the_whole_training_set(tiny, capsys):
    rc, out, err = run(["train", "--data", tiny, *QUICK[:4], "--no-progress", "--epochs", "2",
                        "--batch-size", str(10**30)], capsys)  # fmt: skip
    assert rc == 0 and out.startswith("test accuracy"), err


def test_a_closed_pipe_ends_quietly():
    # `regtune demo | head -1`: the reader leaves early; no traceback, no error line.
    proc = subprocess.run(f"{sys.executable} -m regtune demo --size 256 | head -1", shell=True,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("regtune"), proc.stdout
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------ 16-bit weights

PRECISION_ERRORS = [
    (["--precision", "bf32"], "--precision: unknown precision 'bf32'; choose one of fp32, bf16, fp16"),
    (["--precision", "BF16"], "--precision: unknown precision 'BF16'"),
    (["--precision", "bf16", "--rounding", "nearest"], "--rounding: unknown rounding 'nearest'; choose one of round, "
     "stochastic, master"),
    (["--rounding", "master"], "--rounding master applies to --precision bf16 or fp16"),
    (["--precision", "fp32", "--rounding", "round"], "--rounding round applies to --precision bf16 or fp16"),
    (["--precision", "fp16", "--optimizer", "adafactor"], "--optimizer adafactor takes float32 weights, not "
     "--precision fp16"),
    (["--state-dtype", "int4"], "--state-dtype: unknown state dtype 'int4'; choose one of float32, int8"),
    (["--state-dtype", "int8", "--optimizer", "lars"], "--state-dtype int8: --optimizer lars keeps no 8-bit state"),
]  # fmt: skip


@pytest.mark.parametrize("args, message", PRECISION_ERRORS, ids=[" ".join(a) for a, _ in PRECISION_ERRORS])
def test_bad_precision_options(tiny, capsys, args, message):
    rc, out, err = run(["train", "--data", tiny, *QUICK, *args], capsys)
    assert rc == 2 and out == ""
    assert one_line(err) and message in err, err


def test_train_in_bf16_writes_a_checkpoint_that_resumes(tiny, tmp_path, capsys):
    """--precision bf16 --rounding master: bfloat16 weights in model.npz with the float32 master
    copy; the same run twice gives the same bytes; the checkpoint loads into the trainer the same
    options build, and the model alone loads as bfloat16."""
    from regtune.trainer import MLP

    argv = ["train", "--data", tiny, *QUICK, "--precision", "bf16", "--rounding", "master"]
    files = []
    for name in ("a", "b"):
        rc, out, err = run([*argv, "--out", str(tmp_path / name)], capsys)
        assert rc == 0, err
        assert "bf16 weights (rounding: master)" in out
        files.append((tmp_path / name / "model.npz").read_bytes())
    assert files[0] == files[1]
    record = json.loads((tmp_path / "a" / "history.json").read_text())
    assert record["model"]["dtype"] == "bfloat16" and record["options"]["precision"] == "bf16"
    path = str(tmp_path / "a" / "model.npz")
    model = MLP.load(path)
    assert model.dtype == np.dtype("bfloat16") and model.compute_dtype == np.float32
    args = cli.build_parser().parse_args(argv)
    cli.check_options(args)
    trainer = cli.build_trainer(args, cli.load_data(args))
    trainer.load_checkpoint(path)
    assert all(np.array_equal(a.view(np.uint16), b.view(np.uint16)) for a, b in zip(trainer.model.params, model.params))
    master = trainer.optimizer.state["master"]
    assert all(m.dtype == np.float32 and np.array_equal(m.astype(p.dtype), p) for m, p in zip(master, model.params))


def test_train_default_rounding_is_stochastic(tiny, tmp_path, capsys):
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--precision", "fp16", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "fp16 weights (rounding: stochastic)" in out and out.startswith("test accuracy ")
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["options"]["rounding"] == "stochastic" and record["history"]["train_acc"][-1] > 0.8
    rc, out32, err = run(["train", "--data", tiny, *QUICK], capsys)
    assert rc == 0 and "weights" not in out32  # fp32: the line it always printed


def _help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", ["train", "compare", "tune", "bench", "demo"])
def test_help_texts_are_whole(command, capsys):
    # Issue 28: demo's description was cut mid-sentence ("... checked, and a") and bench's
    # printed a literal "%%": every description ends with a full stop, and no "%%" is left.
    text = _help(command, capsys)
    description = text.split(" options: ")[0].split("]", )[-1].strip()
    assert description.endswith("."), description
    assert "%%" not in text and "%(" not in text


def test_help_says_what_to_do_on_a_busy_machine(capsys):
    text = _help("train", capsys)
    assert "busy with other work" in text and "--threads 1" in text


def test_demo_help_names_what_it_checks(capsys):
    text = _help("demo", capsys)
    assert "the same bits on 1 and N threads" in text and "time a normal draw against NumPy's." in text


def test_train_with_int8_state(tiny, tmp_path, capsys):
    """--state-dtype int8 trains (the trainer's blockwise 8-bit optimizer state) and names it in
    history.json's options."""
    rc, out, err = run(["train", "--data", tiny, *QUICK, "--optimizer", "adamw", "--state-dtype", "int8",
                        "--out", str(tmp_path / "a")], capsys)  # fmt: skip
    assert rc == 0, err
    record = json.loads((tmp_path / "a" / "history.json").read_text())
    assert record["options"]["state_dtype"] == "int8"
