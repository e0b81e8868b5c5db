"""The regtune command line: train / compare / tune / bench / demo on tiny data, and every error
path ending in one line on stderr and a non-zero exit, without a traceback."""

from __future__ import annotations

import json
import os
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
    for name in ("a", "b"):
        out_dir = tmp_path / name
        rc, out, err = run(["train", "--data", tiny, *QUICK, "--out", str(out_dir)], capsys)
        assert rc == 0, err
        assert out.startswith("test accuracy ") and f"wrote {out_dir}/" in out
        for f in ("history.json", "timing.json", "model.npz", "history.png"):
            assert (out_dir / f).stat().st_size > 0
        outs.append((out_dir / "history.json").read_bytes())
    assert outs[0] == outs[1]  # same seed, same run: identical history.json (times live in timing.json)
    record = json.loads(outs[0])
    assert len(record["history"]["epoch"]) == 3 and record["model"]["sizes"] == [16, 16, 3]
    assert record["history"]["train_acc"][-1] > 0.8
    assert (tmp_path / "a" / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_progress_bar(tiny, capsys):
    pytest.importorskip("tqdm")
    rc, out, err = run(["train", "--data", tiny, *QUICK[:-1], "--schedule", "one_cycle", "--warmup", "1"], capsys)
    assert rc == 0 and "train" in err  # tqdm writes to stderr


def test_train_digits_default_dataset(capsys):
    pytest.importorskip("sklearn")
    rc, out, err = run(["train", "--epochs", "1", "--hidden", "32", "--no-progress"], capsys)
    assert rc == 0, err
    assert "(" in out and "/539)" in out  # the fixed 70/30 split of 1797 digits


def test_compare(tiny, tmp_path, capsys):
    rc, out, err = run(["compare", "--data", tiny, "--subset", "40", *QUICK, "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    for arm in ("none", "L2", "L1", "dropout", "L2+dropout", "max-norm"):
        assert f"\n{arm} " in out
    assert (tmp_path / "compare.png").stat().st_size > 0
    results = json.loads((tmp_path / "compare.json").read_text())["results"]
    assert set(results) == {"none", "L2", "L1", "dropout", "L2+dropout", "max-norm"}
    assert all(r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"]) for r in results.values())


def test_tune(tiny, tmp_path, capsys):
    pytest.importorskip("optuna")
    rc, out, err = run(["tune", "--data", tiny, *QUICK, "--trials", "2", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    assert "best trial" in out and "--lr" in out
    assert json.loads((tmp_path / "tune.json").read_text())["best"]["params"]


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

ERRORS = [
    (["--activation", "swish"], "unknown activation 'swish'; choose one of relu"),
    (["--init", "glorot"], "unknown initializer 'glorot'; choose one of auto"),
    (["--optimizer", "adamax"], "unknown optimizer 'adamax'; choose one of sgd, adam"),
    (["--schedule", "cosinus"], "unknown schedule 'cosinus'; choose one of constant"),
    (["--dropout", "1.5"], "dropout probabilities must be in [0, 1)"),
    (["--lr", "-1"], "--lr must be > 0, got -1.0"),
    (["--weight-decay", "-1"], "weight_decay must be in [0, inf), got weight_decay=-1.0"),
    (["--shift", "1", "--image-shape", "3,3"], "image_shape (3, 3) does not hold the model's 16 inputs"),
    (["--threads", "0"], "--threads must be between 1 and 1024, got 0"),
    (["--threads", "100000"], "--threads must be between 1 and 1024, got 100000"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[e[0][0] for e in ERRORS])
def test_bad_options(tiny, capsys, args, message):
    rc, out, err = run(["train", "--data", tiny, *QUICK, *args], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("regtune train: error: ") and message in err, err


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
    assert rc == 2 and err.count("\n") == 1 and message in err, err


def test_missing_data_file(tmp_path, capsys):
    rc, out, err = run(["train", "--data", str(tmp_path / "nope.npz"), *QUICK], capsys)
    assert rc == 2 and err.count("\n") == 1 and "cannot read --data" in err


@pytest.mark.parametrize(
    "module, argv, message",
    [
        ("optuna", ["tune"], 'regtune tune needs optuna, which is not installed: pip install "regtune[tune]"'),
        ("sklearn", ["train", "--no-progress"], 'needs sklearn, which is not installed: pip install "regtune[train]"'),
        ("tqdm", ["train"], 'progress bar (or pass --no-progress) needs tqdm'),
        ("matplotlib", ["compare"], 'needs matplotlib, which is not installed: pip install "regtune[train]"'),
        ("pytest_benchmark", ["bench", "--bench-dir", "bench"], 'pip install "regtune[bench]"'),
    ],
)  # fmt: skip
def test_missing_extra(monkeypatch, capsys, tiny, module, argv, message):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    if module == "sklearn":
        monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    if module == "tqdm":
        argv = [*argv, "--data", tiny]
    if module == "pytest_benchmark":
        monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rc, out, err = run(argv, capsys)
    assert rc == 2 and err.count("\n") == 1 and message in err, err


def test_bench_without_checkout(tmp_path, capsys):
    rc, out, err = run(["bench", "--bench-dir", str(tmp_path)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "source checkout" in err


def test_no_traceback_in_a_real_process(tiny):
    """The installed entry point, as a user runs it: one line, exit status 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "regtune", "train", "--data", tiny, "--activation", "swish", "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert "unknown activation 'swish'" in proc.stderr
