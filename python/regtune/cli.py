"""The ``regtune`` command line (also ``python -m regtune``).

    regtune train      train an MLP on scikit-learn's digits (or --data file.npz); --out DIR
                       writes history.json, timing.json, model.npz and history.png
    regtune compare    the regularization study: none / L2 / L1 / dropout / L2+dropout /
                       max-norm on a small training subset, same seed and budget; --out DIR
                       writes compare.png and compare.json
    regtune tune       hyperparameter search with Optuna (pip install "regtune[tune]") over the
                       options of SEARCHED that are not given; --out DIR writes tune.json
    regtune bench      one benchmark table (regtune against NumPy and the installed peers) at a
                       chosen size, from the bench/ folder of a source checkout
    regtune demo       configuration, determinism checks and a timed draw against NumPy

Without --out, nothing is written. The progress bar (one tqdm bar per run, on stderr) is shown
only when stderr is a terminal.

Errors in what the user asked for (an unknown name, an option out of its range, NaN or inf, a
bad --data file, a model too large for the memory, a missing extra) end with one line on stderr,
``regtune: error: <message naming the option>``, and exit status 2, without a traceback;
argparse's usage errors (a value of the wrong type) also exit 2. An unexpected error is one
line and exit status 1; ``REGTUNE_DEBUG=1`` prints the traceback too. Ctrl-C exits with 130
and one line, ``regtune: interrupted``, also while the command is still importing its modules
(regtune._startup).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import os
import sys
import time
import traceback
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _startup

PROG = "regtune"


class CLIError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


def _need(module: str, extra: str, why: str) -> Any:
    """Import an optional dependency, or fail with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CLIError(f'{why} needs {module.split(".")[0]}, which is not installed: pip install "regtune[{extra}]"') from None


# ----------------------------------------------------------------------------- data


@dataclass
class Data:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, ...] | None
    name: str


def _split(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed permutation of range(n) cut into (first round(fraction * n), the rest)."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n))
    return perm[:k], perm[k:]


def load_digits_data() -> Data:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), pixels scaled to [0, 1]:
    a fixed 70/30 train/test split, then 10% of the training part held out for validation."""
    datasets = _need("sklearn.datasets", "train", "the default dataset (scikit-learn's digits)")
    d = datasets.load_digits()
    X, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    test, rest = _split(len(X), 0.3)
    val, train = rest[: round(0.1 * len(rest))], rest[round(0.1 * len(rest)) :]
    return Data(X[train], y[train], X[val], y[val], X[test], y[test], 10, (8, 8), "digits")


#: At most this many classes (labels 0..MAX_CLASSES - 1) in a --data file: the output layer has
#: one row of weights per class, and a stray label of 10**9 would otherwise ask for gigabytes.
MAX_CLASSES = 100_000

_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)


def _fits(nbytes: int, what: str) -> None:
    """A CLIError when ``nbytes`` exceed the memory available (checked before allocating:
    the operating system may hand out more than it has, and kill the process later)."""
    from .trainer import _available_bytes

    avail = _available_bytes()
    if avail is not None and nbytes > avail:
        raise CLIError(f"{what} needs {_gib(nbytes)}, more than the {_gib(avail)} of memory available")


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_npz(f: Any, path: str) -> dict[str, np.ndarray]:
    """The X_/y_ train, val and test arrays of an open ``.npz`` (after checking the keys and
    that their declared sizes fit in memory)."""
    missing = [k for k in ("X_train", "y_train", "X_test", "y_test") if k not in f]
    if missing:
        raise CLIError(f"--data {path} lacks {', '.join(missing)} (it needs X_train, y_train, X_test, y_test)")
    for x, y in (("X_val", "y_val"), ("y_val", "X_val")):
        if x in f and y not in f:
            raise CLIError(f"--data {path} has {x} but no {y}")
    keys = [f"{a}_{part}" for part in ("train", "val", "test") for a in "Xy" if f"{a}_{part}" in f]
    # What the arrays take once read (the sizes the archive declares), plus their float32 copies.
    size = sum(i.file_size for i in f.zip.infolist() if i.filename.removesuffix(".npy") in keys)
    _fits(2 * size, f"--data {path} ({_gib(size)} of arrays)")
    arrays = {}
    for k in keys:
        try:
            arrays[k] = f[k]
        except _NPZ_ERRORS as exc:
            raise CLIError(f"--data {path}: cannot read {k} ({_reason(exc)})") from None
    return arrays


def load_npz_data(path: str) -> Data:
    """A ``.npz`` with X_train, y_train, X_test, y_test (and optionally X_val, y_val; else 10%
    of the training set is held out). X arrays of 3 or 4 dimensions are images (n, H, W) or
    (n, C, H, W), flattened for the MLP. Everything is checked before training: the file's
    format, the keys, ranks, lengths, dtypes (real numbers; integer labels), finite inputs
    (after the conversion to float32) and the label range (at most :data:`MAX_CLASSES`)."""
    if not os.path.exists(path):
        raise CLIError(f"--data {path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"--data {path} is a directory, not a .npz file")
    if not os.path.isfile(path):
        raise CLIError(f"--data {path} is not a regular file")
    if os.path.getsize(path) == 0:
        raise CLIError(f"--data {path} is empty")
    # The file is opened here, not by NumPy, which leaves it open when the archive is corrupt.
    with open(path, "rb") as fh:
        try:
            f = np.load(fh, allow_pickle=False)
        except _NPZ_ERRORS as exc:
            raise CLIError(f"cannot read --data {path}: not a .npz file ({_reason(exc)})") from None
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise CLIError(f"--data {path} holds a single .npy array; it must be a .npz with X_train, y_train, "
                           "X_test, y_test (numpy.savez)")  # fmt: skip
        arrays = _read_npz(f, path)
    image_shape = None
    xs = {}
    for part in ("train", "val", "test"):
        if f"X_{part}" not in arrays:
            continue
        X, y = arrays[f"X_{part}"], arrays[f"y_{part}"]
        if X.ndim not in (2, 3, 4) or X.shape[0] == 0:
            raise CLIError(f"X_{part} must have shape (n, features), (n, H, W) or (n, C, H, W) with n > 0, got {X.shape}")
        if X.size == 0:
            raise CLIError(f"X_{part} has no features: shape {X.shape}")
        if X.dtype.kind not in "iuf":
            raise CLIError(f"X_{part} must hold numbers, got dtype {X.dtype}")
        if X.ndim > 2:
            image_shape = X.shape[1:]
        if y.shape != (X.shape[0],):
            raise CLIError(f"y_{part} must have shape ({X.shape[0]},) to match X_{part} {X.shape}, got {y.shape}")
        if y.dtype.kind not in "iu":
            raise CLIError(f"y_{part} must hold integer class labels, got dtype {y.dtype}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise CLIError(f"y_{part} holds label {lo}; labels must be 0, 1, ..., n_classes - 1")
        if hi >= MAX_CLASSES:
            raise CLIError(f"y_{part} holds label {hi}: at most {MAX_CLASSES} classes (labels 0..{MAX_CLASSES - 1})")
        with np.errstate(over="ignore"):
            X32 = X.reshape(X.shape[0], -1).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(X32))
        if bad.size:
            i, j = divmod(int(bad[0]), X32.shape[1])
            v = X.reshape(X.shape[0], -1)[i, j]
            why = "beyond float32's range" if np.isfinite(v) else "not finite"
            raise CLIError(f"X_{part} holds {v} (row {i}, feature {j}), {why}: the inputs must be finite float32 values")
        xs[part] = (X32, y.astype(np.int64))
    shapes = {part: X.shape[1:] for part, (X, _) in xs.items()}
    if len(set(shapes.values())) != 1:
        raise CLIError(f"X_train, X_test (and X_val) must have the same number of features, got {shapes}")
    y_train = xs["train"][1]
    n_classes = int(y_train.max()) + 1
    for part, (_, y) in xs.items():
        if y.max() >= n_classes:
            raise CLIError(f"y_{part} holds label {int(y.max())}, outside the classes 0..{n_classes - 1} seen in y_train")
    if n_classes < 2:
        raise CLIError(f"y_train must hold at least 2 classes, got {n_classes}")
    if "val" not in xs:
        Xt, yt = xs["train"]
        val, train = _split(len(Xt), 0.1)
        if len(train) == 0 or len(val) == 0:
            raise CLIError(f"X_train has {len(Xt)} rows: too few to hold out a validation set (give X_val, y_val)")
        xs["val"], xs["train"] = (Xt[val], yt[val]), (Xt[train], yt[train])
    return Data(*xs["train"], *xs["val"], *xs["test"], n_classes, image_shape, os.path.basename(path))


def load_data(args: argparse.Namespace) -> Data:
    return load_npz_data(args.data) if args.data else load_digits_data()


# ----------------------------------------------------------------------------- options


def _int_list(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return out


def _float_list(text: str) -> list[float] | float:
    try:
        out = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a float or comma-separated floats, got {text!r}") from None
    return out[0] if len(out) == 1 else out


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE.npz", help="X_train, y_train, X_test, y_test (optional X_val, y_val); "
                   "default: scikit-learn's digits, fixed 70/30 split")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for regtune and NumPy's BLAS (default: each library's own default; regtune keeps "
                        "small arrays on the calling thread and its idle threads sleep, and the trainer holds the BLAS "
                        "at one thread for products too small to gain from more, which at the default model is all of "
                        "them). On a machine busy with other work the default is then as fast as --threads 1; with "
                        "a much larger model, time both")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar. The bar (tqdm, on stderr) is one bar for the whole run (compare: for all "
                        "its arms), advanced once per epoch with that epoch's loss and accuracies (tune: once per "
                        "trial) and removed at the end; it is shown only when stderr is a terminal, never in a pipe "
                        "or a log file")


#: The options that ``regtune tune`` searches when they are not given (by dest).
SEARCHED = ("lr", "weight_decay", "dropout", "init", "schedule")


def _add_model(
    p: argparse.ArgumentParser, defaults: dict[str, Any], searched: Sequence[str] = (), omit: Sequence[str] = ()
) -> None:
    """The model and training options; those in ``searched`` default to None (searched unless
    given), so that a value the user gives is told apart from a default, whatever its value;
    those in ``omit`` (by dest) are left out: the command sets them itself."""
    from . import trainer  # the optimizers' names come from regtune.optim's registry

    def add(flag: str, **kw: Any) -> None:
        if flag[2:].replace("-", "_") not in omit:
            p.add_argument(flag, **kw)

    def d(dest: str, default: Any) -> Any:
        return None if dest in searched else defaults.get(dest, default)

    def dflt(dest: str, text: str = "(default %(default)s)") -> str:
        return "(default: searched)" if dest in searched else text

    add("--hidden", type=_int_list, default=d("hidden", [512, 256]), metavar="N,N",
        help="hidden layer sizes (default %(default)s)")
    add("--activation", default="relu", help="relu, leaky_relu, tanh, gelu or selu (default relu)")
    add("--init", default=d("init", "auto"), help="a regtune.init name (kaiming_normal, xavier_uniform, "
        f"lecun_normal, orthogonal, ...) or auto: chosen for the activation {dflt('init', '(default auto)')}")
    add("--dropout", type=_float_list, default=d("dropout", 0.2), metavar="P[,P]",
        help=f"dropout probability, one or one per hidden layer (alpha dropout for selu) {dflt('dropout')}")
    add("--optimizer", default=d("optimizer", "adamw"),
        help=f"{', '.join(list(trainer.OPTIMIZERS)[:-1])} or {list(trainer.OPTIMIZERS)[-1]} (default %(default)s)")
    add("--lr", type=float, default=d("lr", 2e-3), help=f"peak learning rate {dflt('lr')}")
    add("--momentum", type=float, default=None,
        help=f"momentum of {', '.join(_with_momentum())} (SGD and LARS default 0.9)")
    add("--schedule", default=d("schedule", "cosine"),
        help="constant, step, multistep, exponential, cosine, warm_restarts, one_cycle, polynomial "
             f"or plateau {dflt('schedule')}")
    add("--warmup", type=int, default=0, metavar="EPOCHS", help="linear warm-up epochs (default 0)")
    add("--weight-decay", type=float, default=d("weight_decay", 1e-2),
        help=f"L2 (decoupled for adamw) {dflt('weight_decay')}")
    add("--l1", type=float, default=0.0, help="L1 coefficient in the gradient (default 0)")
    add("--prox-l1", type=float, default=0.0, help="proximal L1 (exact zeros) (default 0)")
    add("--max-grad-norm", type=float, default=None, help="clip the global gradient norm")
    add("--max-norm", type=float, default=None, help="max L2 norm of each unit's incoming weights")
    add("--epochs", type=int, default=d("epochs", 100), help="(default %(default)s)")
    add("--batch-size", type=int, default=d("batch_size", 32), help="(default %(default)s)")
    add("--patience", type=int, default=None, help="early stopping: epochs without a better "
        "validation loss (default: off)")
    add("--noise", type=float, default=d("noise", 0.0), help="std of Gaussian input noise (default 0)")
    add("--shift", type=int, default=None, help="random shifts of image inputs, in pixels "
        "(default: 1 for images, 0 otherwise)")
    add("--image-shape", type=_int_list, default=None, metavar="H,W",
        help="the image shape of 2-D --data inputs, for --shift")
    add("--precision", default="fp32",
        help="fp32 (default), bf16 or fp16: the dtype the weights and biases are kept in while training. With "
             "bf16/fp16 only they are 16-bit: the matrix products (on the weights widened to float32; NumPy has no "
             "bfloat16 matrix product), the gradients, the optimizer state and the master copy are float32")
    add("--state-dtype", default=None,
        help="the optimizer state's storage: float32 (default) or int8 (blockwise 8-bit, bitsandbytes' scheme: "
             "about 2 bytes per parameter for Adam's two buffers instead of 8; weights below 4096 elements keep "
             "float32 state)")
    add("--rounding", default=None,
        help="how each update is written into 16-bit weights (--precision bf16/fp16 only): round (to nearest "
             "even: an update below half a unit in the last place is lost, so a small --lr stalls), stochastic "
             "(default: unbiased, so small updates add up as in float32; keyed by --seed) or master (a float32 "
             "master copy takes the update, 4 more bytes per parameter; the weight is its rounding)")


#: Ranges of the numeric options, by dest: (low, high, low_open, high_open); None: unbounded.
#: Every float option must also be finite (argparse's float() accepts "nan" and "inf").
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "epochs": (1, None, False, False), "batch_size": (1, None, False, False), "trials": (1, None, False, False),
    "size": (1, None, False, False), "subset": (1, None, False, False),
    "patience": (0, None, False, False), "warmup": (0, None, False, False), "shift": (0, None, False, False),
    "seed": (0, 2**64, False, True),
    "lr": (0, None, True, False), "max_grad_norm": (0, None, True, False), "max_norm": (0, None, True, False),
    "max_norm_value": (0, None, True, False), "seconds": (0, None, True, False), "timeout": (0, None, True, False),
    "momentum": (0, None, False, False), "weight_decay": (0, None, False, False), "l1": (0, None, False, False),
    "prox_l1": (0, None, False, False), "l2": (0, None, False, False), "l1_coef": (0, None, False, False),
    # the trainer's bound: a normal draw (up to about 9 std) must fit float32
    "noise": (0, float(np.finfo(np.float32).max) / 16, False, False),
    "dropout": (0, 1, False, True), "p": (0, 1, False, True), "label_noise": (0, 1, False, True),
}  # fmt: skip


def _option(dest: str) -> str:
    return "-k" if dest == "k" else "--" + dest.replace("_", "-")


def _writable(path: str, opt: str, directory: bool) -> None:
    """Refuse, before any work, an output path that cannot be written: a file where a folder
    is due or the reverse, or a missing or read-only parent folder."""
    if os.path.exists(path):
        if directory and not os.path.isdir(path):
            raise CLIError(f"{opt} {path} exists and is not a directory")
        if not directory and os.path.isdir(path):
            raise CLIError(f"{opt} {path} is a directory, not a file")
        parent = path if directory else os.path.dirname(os.path.abspath(path))
    else:
        parent = os.path.dirname(os.path.abspath(path))
        if not directory and not os.path.isdir(parent):
            raise CLIError(f"{opt} {path}: the folder {parent} does not exist")
        while directory and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise CLIError(f"{opt} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise CLIError(f"{opt} {path}: {parent} is not writable")


def _strip_separators(path: str) -> str:
    """``path`` without trailing separators (``run1/`` -> ``run1``; ``/`` stays), so that the
    paths joined to it and printed have no doubled separator."""
    seps = os.sep + (os.altsep or "")
    return path.rstrip(seps) or path[:1]


def check_options(args: argparse.Namespace) -> None:
    """Refuse, with a CLIError naming the option, values that make no sense: empty paths,
    NaN or inf, numbers outside their range (:data:`_RANGES`), an impossible --threads."""
    import regtune
    from . import schedules, trainer

    names = {"activation": ("activation", trainer.ACTIVATIONS), "init": ("initializer", trainer.INITIALIZERS),
             "optimizer": ("optimizer", tuple(trainer.OPTIMIZERS)), "schedule": ("schedule", schedules.NAMES),
             "precision": ("precision", tuple(trainer.PRECISIONS)), "rounding": ("rounding", trainer.ROUNDINGS),
             "state_dtype": ("state dtype", ("float32", *trainer.STATE_DTYPES))}
    for dest, value in vars(args).items():
        opt = _option(dest)
        if dest in names and value is not None and value not in names[dest][1]:
            what, valid = names[dest]
            raise CLIError(f"{opt}: unknown {what} {value!r}; choose one of {', '.join(valid)}")
        if dest in ("data", "out", "json", "bench_dir", "ops") and value is not None and not value.strip():
            raise CLIError(f"{opt} must not be empty")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise CLIError(f"{opt} must be a finite number, got {v}")
        if dest not in _RANGES or value is None:
            continue
        low, high, low_open, high_open = _RANGES[dest]
        for v in values:
            if (v > low if low_open else v >= low) and (high is None or (v < high if high_open else v <= high)):
                continue
            if high is None:
                raise CLIError(f"{opt} must be {'>' if low_open else '>='} {low}, got {value}")
            top = "2**64" if high == 2**64 else f"{high:g}"
            interval = f"{'(' if low_open else '['}{low}, {top}{')' if high_open else ']'}"
            raise CLIError(f"{opt} must be in {interval}, got {value}")
    precision = getattr(args, "precision", "fp32")
    if precision == "fp32" and getattr(args, "rounding", None) is not None:
        raise CLIError(f"--rounding {args.rounding} applies to --precision bf16 or fp16 (16-bit weights); "
                       "fp32 updates are not rounded")  # fmt: skip
    if precision != "fp32" and getattr(args, "optimizer", None) == "adafactor":
        raise CLIError(f"--optimizer adafactor takes float32 weights, not --precision {precision}: "
                       "choose another optimizer")  # fmt: skip
    if precision != "fp32" and args.rounding is None:
        args.rounding = "stochastic"  # the trainer's default, named in history.json's options
    if getattr(args, "state_dtype", None) == "int8" and getattr(args, "optimizer", None) is not None:
        from . import optim

        rule = optim.RULES.get(args.optimizer)
        if rule is not None and not rule.blockwise8():
            raise CLIError(f"--state-dtype int8: --optimizer {args.optimizer} keeps no 8-bit state; choose adam, "
                           "adamw, lion, sgd or another element-wise optimizer")  # fmt: skip
    if getattr(args, "out", None):
        _writable(args.out, "--out", directory=True)
        args.out = _strip_separators(args.out)
    if getattr(args, "json", None):
        _writable(args.json, "--json", directory=False)
    threads = getattr(args, "threads", None)
    if threads is not None and not 1 <= threads <= regtune.MAX_THREADS:
        raise CLIError(f"--threads must be between 1 and {regtune.MAX_THREADS}, got {threads}")


def _schedule(args: argparse.Namespace, steps_per_epoch: int) -> Any:
    from . import schedules

    warm = args.warmup * steps_per_epoch
    total = max(args.epochs * steps_per_epoch - warm, 1)
    s = schedules.get(args.schedule, args.lr, total)
    if warm:
        if isinstance(s, schedules.ReduceOnPlateau):
            raise CLIError("--warmup cannot be combined with --schedule plateau")
        s = schedules.linear_warmup(s, warm)
    return s


def build_trainer(args: argparse.Namespace, data: Data, **overrides: Any):
    """An MLP and its Trainer from the command-line options (``overrides`` replace options)."""
    from .trainer import MLP, Trainer

    ns = argparse.Namespace(**{**vars(args), **overrides})
    sizes = [data.X_train.shape[1], *ns.hidden, data.n_classes]
    try:
        model = MLP(sizes, activation=ns.activation, init=ns.init, dropout=ns.dropout, seed=ns.seed)
    except MemoryError as exc:
        hidden = ",".join(map(str, ns.hidden))
        raise CLIError(f"--hidden {hidden}: the model cannot be allocated: {_reason(exc)}") from None
    image_shape = tuple(ns.image_shape) if ns.image_shape else data.image_shape
    shift = ns.shift if ns.shift is not None else (1 if image_shape else 0)
    if shift and not image_shape:
        raise CLIError(f"--shift {shift} needs image inputs: --data with X of shape (n, H, W) or (n, C, H, W), "
                       "or --image-shape H,W")  # fmt: skip
    if shift and shift >= max(image_shape[-2:]):
        raise CLIError(f"--shift must be < the image's height and width {tuple(image_shape[-2:])}, got {shift}")
    # A batch larger than the training set is the whole set (and needs no more random numbers).
    batch_size = min(ns.batch_size, len(data.X_train))
    steps = -(-len(data.X_train) // batch_size)
    kw: dict[str, Any] = {}
    if ns.momentum is not None and ns.optimizer not in _with_momentum():
        raise CLIError(f"--momentum applies to --optimizer {', '.join(_with_momentum()[:-1])} and "
                       f"{_with_momentum()[-1]}, not {ns.optimizer}")  # fmt: skip
    if ns.momentum is not None:
        kw["momentum"] = ns.momentum
    elif ns.optimizer == "sgd":
        kw["momentum"] = 0.9
    return Trainer(
        model, optimizer=ns.optimizer, lr=_schedule(ns, steps), weight_decay=ns.weight_decay, l1=ns.l1,
        prox_l1=ns.prox_l1, max_grad_norm=ns.max_grad_norm, max_norm=ns.max_norm, batch_size=batch_size,
        noise_std=ns.noise, shift=shift, image_shape=image_shape, seed=ns.seed, optimizer_kwargs=kw,
        precision=ns.precision, rounding=ns.rounding,
        state_dtype=None if ns.state_dtype in (None, "float32") else ns.state_dtype,
    )  # fmt: skip


def _with_momentum() -> list[str]:
    """The optimizers with a ``momentum`` hyperparameter (their rule's signature says)."""
    import inspect

    from . import optim

    return [k for k, r in optim.RULES.items() if "momentum" in inspect.signature(r.__init__).parameters]


def _on_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # None (no console), a closed or odd stream
        return False


class _Progress:
    """One tqdm bar on stderr for the whole run, advanced once per epoch (per trial for tune)
    and removed at the end; nothing with --no-progress or when stderr is not a terminal (a
    pipe or a log file would collect every redraw)."""

    def __init__(self, args: argparse.Namespace, total: int, desc: str, unit: str = "epoch") -> None:
        self.bar = None
        if not args.no_progress and _on_terminal(sys.stderr):
            tqdm = _need("tqdm", "train", "the progress bar (or pass --no-progress)").tqdm
            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)

    def __call__(self, h: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if h is None:
                return
            post = {"loss": f"{h.train_loss[-1]:.3f}", "train_acc": f"{h.train_acc[-1]:.3f}"}
            if h.val_acc[-1] is not None:
                post["val_acc"] = f"{h.val_acc[-1]:.3f}"
            self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _threads(args: argparse.Namespace):
    """Run the block with regtune and the BLAS under NumPy's matrix products on ``--threads``
    threads (the BLAS through threadpoolctl, which scikit-learn brings; skipped without it),
    then restore both. Without ``--threads`` both keep their defaults: regtune's pool keeps
    this trainer's small arrays on the calling thread, and its idle workers sleep after a short
    spin instead of taking the cores the BLAS needs; the trainer itself holds the BLAS at one
    thread around products below ``regtune.trainer.BLAS_THREADS_MIN_WORK`` (either way)."""
    import regtune

    if args.threads is None:
        yield
        return
    before = regtune.get_num_threads()
    regtune.set_num_threads(args.threads)
    try:
        with contextlib.ExitStack() as stack:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                pass
            else:
                stack.enter_context(threadpool_limits(args.threads, user_api="blas"))
            yield
    finally:
        regtune.set_num_threads(before)


def _figure(width: float, height: float):
    """A matplotlib Figure drawn by the Agg canvas (no pyplot, no GUI backend)."""
    _need("matplotlib", "train", "--out (the PNG plot)")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


# ----------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    with _threads(args):
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    if args.out:
        _need("matplotlib", "train", "--out (the PNG plot)")
    data = load_data(args)
    trainer = build_trainer(args, data)
    progress = _Progress(args, args.epochs, "train")
    t0 = time.perf_counter()
    try:
        history = trainer.fit(data.X_train, data.y_train, epochs=args.epochs,
                              validation_data=(data.X_val, data.y_val), patience=args.patience, callback=progress)  # fmt: skip
    finally:
        progress.close()
    wall = time.perf_counter() - t0
    test_loss, test_acc = trainer.evaluate(data.X_test, data.y_test)
    n_test = len(data.y_test)
    if args.out:
        _makedirs(args.out)
        record = {
            "dataset": data.name, "model": trainer.model.config(), "options": _options(args),
            "sizes": {"train": len(data.y_train), "val": len(data.y_val), "test": n_test},
            "history": history.to_dict(include_time=False), "test_loss": test_loss, "test_acc": test_acc,
        }  # fmt: skip
        _write_json(os.path.join(args.out, "history.json"), record)
        _write_json(os.path.join(args.out, "timing.json"), {"epoch_seconds": history.time, "train_seconds": wall})
        trainer.save_checkpoint(os.path.join(args.out, "model.npz"))
        plot_history(history, os.path.join(args.out, "history.png"), f"{data.name}: {trainer.model!r}", test_acc)
    stop = f", stopped early (best epoch {history.best_epoch})" if history.stopped_early else ""
    if trainer.precision != "fp32":
        stop += f", {trainer.precision} weights (rounding: {trainer.rounding})"
    wrote = f"; wrote {os.path.join(args.out, '')}" if args.out else ""
    print(f"test accuracy {100 * test_acc:.2f}% ({round(test_acc * n_test)}/{n_test}), test loss {test_loss:.4f}; "
          f"{len(history)} epochs in {wall:.1f} s{stop}{wrote}")  # fmt: skip
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"func", "command", "no_progress", "out", "threads"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def _makedirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out {path}: cannot create the folder ({_reason(exc)})") from None


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.write("\n")


def plot_history(history: Any, path: str, title: str, test_acc: float | None = None) -> None:
    """Loss and accuracy per epoch, training and validation, side by side."""
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ep = history.epoch
    ax_loss.plot(ep, history.train_loss, label="train")
    ax_loss.plot(ep, history.val_loss, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_acc.plot(ep, history.train_acc, label="train")
    ax_acc.plot(ep, history.val_acc, label="validation")
    if test_acc is not None:
        ax_acc.axhline(test_acc, color="gray", ls=":", label=f"test {100 * test_acc:.2f}%")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(max(0.0, min(history.val_acc) - 0.02), 1.005))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.savefig(path)


# ----------------------------------------------------------------------------- compare

#: The baseline of the study: no regularization. ``regtune compare`` sets these options itself
#: (one regularizer per arm), so they are not its options (--l2, --l1-coef, --p and
#: --max-norm-value set the arms).
COMPARE_BASE = {"weight_decay": 0.0, "l1": 0.0, "dropout": 0.0, "max_norm": None, "prox_l1": 0.0, "noise": 0.0,
                "shift": 0, "image_shape": None}  # fmt: skip


#: The arms of the study: name -> options that differ from the baseline.
def compare_arms(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {
        "none": {},
        "L2": {"weight_decay": args.l2},
        "L1": {"l1": args.l1_coef},
        "dropout": {"dropout": args.p},
        "L2+dropout": {"weight_decay": args.l2, "dropout": args.p},
        "max-norm": {"max_norm": args.max_norm_value},
    }


def cmd_compare(args: argparse.Namespace) -> int:
    if args.out:
        _need("matplotlib", "train", "--out (the comparison plot)")
    with _threads(args):
        return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    data = load_data(args)
    if not 0 < args.subset <= len(data.y_train):
        raise CLIError(f"--subset must be in [1, {len(data.y_train)}], got {args.subset}")
    perm = np.random.default_rng(args.seed).permutation(len(data.y_train))
    idx, rest = np.sort(perm[: args.subset]), np.sort(perm[args.subset :])
    y_small = data.y_train[idx].copy()
    if args.label_noise:  # each chosen label moves to one of the other classes, uniformly
        rng = np.random.default_rng([args.seed, 1])
        flip = rng.random(len(y_small)) < args.label_noise
        y_small[flip] = (y_small[flip] + rng.integers(1, data.n_classes, int(flip.sum()))) % data.n_classes
    # The validation curves use every held-out training example (the validation split and the
    # training examples outside the subset): nothing is selected on them, and more examples
    # make smoother curves.
    X_val = np.concatenate([data.X_val, data.X_train[rest]])
    y_val = np.concatenate([data.y_val, data.y_train[rest]])
    small = Data(data.X_train[idx], y_small, X_val, y_val, data.X_test, data.y_test,
                 data.n_classes, data.image_shape, data.name)  # fmt: skip
    arms = compare_arms(args)
    results = {}
    progress = _Progress(args, args.epochs * len(arms), "compare")
    try:
        for name, opts in arms.items():
            trainer = build_trainer(args, small, **{**COMPARE_BASE, **opts})
            h = trainer.fit(small.X_train, small.y_train, epochs=args.epochs,
                            validation_data=(small.X_val, small.y_val), patience=args.patience,
                            callback=progress)  # fmt: skip
            train_acc = trainer.evaluate(small.X_train, small.y_train)[1]
            test_loss, test_acc = trainer.evaluate(small.X_test, small.y_test)
            results[name] = {"train_acc": train_acc, "test_acc": test_acc, "gap": train_acc - test_acc,
                             "test_loss": test_loss,
                             "history": h.to_dict(include_time=False)}  # fmt: skip
    finally:
        progress.close()
    noise = f", {100 * args.label_noise:g}% of labels wrong" if args.label_noise else ""
    print(f"{data.name}: {args.subset} training examples{noise}, {len(y_val)} validation, {len(small.y_test)} test; "
          f"MLP {args.hidden}, "
          f"{args.optimizer} lr {args.lr} {args.schedule}, {args.epochs} epochs, seed {args.seed}")  # fmt: skip
    print(f"{'regularization':<16}{'train acc':>10}{'test acc':>10}{'gap':>8}{'test loss':>11}   setting")
    for name, r in results.items():
        setting = ", ".join(f"{k}={v}" for k, v in arms[name].items()) or "-"
        print(f"{name:<16}{100 * r['train_acc']:>9.1f}%{100 * r['test_acc']:>9.1f}%{100 * r['gap']:>7.1f}%"
              f"{r['test_loss']:>11.3f}   {setting}")  # fmt: skip
    if args.out:
        _makedirs(args.out)
        png, record = os.path.join(args.out, "compare.png"), os.path.join(args.out, "compare.json")
        plot_compare(results, png, f"{data.name}, {args.subset} training examples{noise}, same seed and budget")
        _write_json(record, {"options": _options(args), "results": results})
        print(f"wrote {png} and {record}")
    return 0


def plot_compare(results: dict[str, dict[str, Any]], path: str, title: str) -> None:
    """Validation loss and accuracy per epoch, one line per arm of the study."""
    fig = _figure(11, 4.2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, r in results.items():
        h = r["history"]
        style = {"lw": 2.2 if name == "none" else 1.4, "ls": "--" if name == "none" else "-"}
        ax_loss.plot(h["epoch"], h["val_loss"], label=name, **style)
        ax_acc.plot(h["epoch"], h["val_acc"], label=f"{name} (gap {100 * r['gap']:.1f}%)", **style)
    ax_loss.set(xlabel="epoch", ylabel="validation cross-entropy", yscale="log", title="validation loss")
    accs = [r["history"]["val_acc"][len(r["history"]["val_acc"]) // 4 :] for r in results.values()]
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy (legend: train - test gap)",
               ylim=(max(0.0, min(map(min, accs)) - 0.03), min(1.0, max(map(max, accs)) + 0.01)))  # fmt: skip
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)


# ----------------------------------------------------------------------------- tune


def cmd_tune(args: argparse.Namespace) -> int:
    if all(getattr(args, k) is not None for k in SEARCHED):
        given = [_option(k) for k in SEARCHED]
        raise CLIError(f"{', '.join(given[:-1])} and {given[-1]} are all given: nothing left to search "
                       "(leave one out, or use regtune train)")  # fmt: skip
    optuna = _need("optuna", "tune", "regtune tune")
    with _threads(args):
        return _tune(args, optuna)


#: What ``regtune tune`` draws for each option of :data:`SEARCHED` that is not given.
_SPACE = {
    "lr": lambda trial: trial.suggest_float("lr", 1e-4, 3e-2, log=True),
    "weight_decay": lambda trial: trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
    "dropout": lambda trial: trial.suggest_float("dropout", 0.0, 0.5),
    "init": lambda trial: trial.suggest_categorical("init", ["auto", "kaiming_uniform", "xavier_normal", "orthogonal"]),
    "schedule": lambda trial: trial.suggest_categorical("schedule", ["constant", "cosine", "one_cycle"]),
}


def _tune(args: argparse.Namespace, optuna: Any) -> int:
    # The options the user gave stay fixed (they are None when not given); the rest are searched.
    fixed = {k: getattr(args, k) for k in SEARCHED if getattr(args, k) is not None}
    data = load_data(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        opts = {k: suggest(trial) for k, suggest in _SPACE.items() if k not in fixed}
        trainer = build_trainer(args, data, **opts)
        best = math.inf

        def report(h: Any) -> None:
            nonlocal best
            best = min(best, h.val_loss[-1])
            trial.report(h.val_loss[-1], len(h) - 1)
            if trial.should_prune():
                raise optuna.TrialPruned()

        trainer.fit(data.X_train, data.y_train, epochs=args.epochs, validation_data=(data.X_val, data.y_val),
                    patience=args.patience, callback=report)  # fmt: skip
        val_loss, val_acc = trainer.evaluate(data.X_val, data.y_val)
        trial.set_user_attr("val_acc", val_acc)
        trial.set_user_attr("test_acc", trainer.evaluate(data.X_test, data.y_test)[1])
        return val_loss

    sampler = optuna.samplers.TPESampler(seed=args.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(args.epochs // 5, 1))
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    progress = _Progress(args, args.trials, "tune", unit="trial")
    try:
        study.optimize(objective, n_trials=args.trials, timeout=args.timeout,
                       callbacks=[lambda study, trial: progress(None)])  # fmt: skip
    finally:
        progress.close()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    if not done:
        raise CLIError("no trial completed (all pruned or the timeout was too short)")
    best = study.best_trial
    print(f"{len(study.trials)} trials ({pruned} pruned), {args.epochs} epochs each; best trial #{best.number}:")
    for k, v in {**best.params, **fixed}.items():
        value = f"{v:.3g}" if isinstance(v, float) else ",".join(map(str, v)) if isinstance(v, list) else v
        print(f"  {_option(k):<16} {value}" + ("  (fixed)" if k in fixed else ""))
    print(f"validation loss {best.value:.4f}, validation accuracy {100 * best.user_attrs['val_acc']:.2f}%, "
          f"test accuracy {100 * best.user_attrs['test_acc']:.2f}%")  # fmt: skip
    if args.out:
        _makedirs(args.out)
        path = os.path.join(args.out, "tune.json")
        _write_json(path, {
            "fixed": fixed,
            "best": {"number": best.number, "params": best.params, "val_loss": best.value, **best.user_attrs},
            "trials": [{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value}
                       for t in study.trials],
        })  # fmt: skip
        print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- bench


def find_bench_dir(explicit: str | None) -> str:
    """bench/ of a source checkout: --bench-dir, else ./bench, else the one beside the
    package's source tree (an editable install)."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [explicit] if explicit else [os.path.join(os.getcwd(), "bench"),
                                              os.path.normpath(os.path.join(here, "..", "..", "bench"))]  # fmt: skip
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "report.py")) and os.path.isfile(os.path.join(c, "_harness.py")):
            return c
    where = explicit or "./bench or beside the package source"
    raise CLIError(f"regtune bench runs the bench/ suite of a source checkout and found none ({where}): "
                   "run it from the checkout or pass --bench-dir")  # fmt: skip


def _bench_progress(i: int, total: int, op: str, impl: str) -> None:
    """One self-overwriting line on stderr while the cases run (only on a terminal)."""
    if not _on_terminal(sys.stderr):
        return
    text = f"regtune bench: case {i + 1}/{total}: {op} ({impl})" if i < total else ""
    sys.stderr.write("\r\033[K" + text)
    sys.stderr.flush()


def cmd_bench(args: argparse.Namespace) -> int:
    bench_dir = find_bench_dir(args.bench_dir)
    # A benchmark holds a few N x N float32 arrays (its output, its inputs, a peer's copy).
    _fits(4 * args.size**2 * 4, f"--size {args.size} ({args.size}x{args.size} float32 arrays)")
    spec = importlib.util.spec_from_file_location("regtune_bench_report", os.path.join(bench_dir, "report.py"))
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)  # type: ignore[union-attr]
    ops = args.ops.split(",") if args.ops else None if args.all else list(report.DEFAULT_OPS)
    data = report.measure(args.size, args.seconds, ops, _bench_progress)
    if not data["benchmarks"]:
        raise CLIError(f"--ops {args.ops} matches no benchmark (the ops are the first column of regtune bench --all)")
    sys.stdout.write(report.render(data))
    import regtune

    simd = regtune.config()["simd"]
    column = "one of its column sets" if simd in README_NORMAL_VS_NUMPY else "no column set of its own"
    print(f"\nThis run is on the {simd} path ({column} in the README's headline table, measured at 4096x4096 on "
          f"{README_MACHINE}); bench/RESULTS.md has the full tables.")  # fmt: skip
    if args.json:
        table = list(report.rows(report.collect(data), args.size))
        _write_json(args.json, {"header": report.header(data), "size": args.size, "rows": table,
                                "targets": report.targets(table, args.size), "skipped": data["skipped"]})  # fmt: skip
        print(f"wrote {args.json}")
    return 0


# ----------------------------------------------------------------------------- demo


#: normal vs NumPy's standard_normal at 4096x4096 float32 in the README's benchmark table, per SIMD
#: path, and the machine it was measured on (tests/test_readme.py checks the README agrees).
README_NORMAL_VS_NUMPY = {"avx512": 17.4, "avx2": 13.6}
README_MACHINE = "a 2-core AMD EPYC VM (Zen 4)"


def _best_ms(fn: Any, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def cmd_demo(args: argparse.Namespace) -> int:
    """Show the configuration (SIMD path, threads, compiler), initialize an MLP's weights, check
    the determinism promises (the same bits on 1 and N threads, a slice made alone with offset=
    equal to the same slice of the whole) and time a normal draw against NumPy's."""
    import regtune
    from regtune import init

    # a, b, out and a quarter-size shard: n x n float32 each (plus NumPy's share of the timing).
    _fits(4 * args.size**2 * 4, f"--size {args.size} ({args.size}x{args.size} float32 arrays)")
    regtune.show_config()
    print()

    layers = [(1024, 784), (1024, 1024), (1024, 1024), (10, 1024)]
    t0 = time.perf_counter()
    weights = [init.kaiming_normal(s, nonlinearity="relu", seed=args.seed, offset=i << 40)
               for i, s in enumerate(layers)]  # fmt: skip
    ms = (time.perf_counter() - t0) * 1e3
    print(f"kaiming_normal for an MLP {' -> '.join(str(s[1]) for s in layers)} -> 10: "
          f"{sum(w.size for w in weights):,} weights in {ms:.1f} ms")  # fmt: skip
    for s, w in zip(layers, weights):
        print(f"  {str(s):>13}  std {w.std():.5f}  (expected {np.sqrt(2.0 / s[1]):.5f})")

    n = args.size
    threads = regtune.get_num_threads()
    a = init.trunc_normal((n, n), std=0.02, a=-0.04, b=0.04, seed=args.seed)
    regtune.set_num_threads(1)
    b = init.trunc_normal((n, n), std=0.02, a=-0.04, b=0.04, seed=args.seed)
    regtune.set_num_threads(threads)
    shard = regtune.random.truncated_normal((n // 4, n), 0.0, 0.02, -0.04, 0.04,
                                            seed=args.seed, offset=(n // 2) * n)  # fmt: skip
    print(f"\nsame seed on 1 and {threads} threads: bit-identical = {np.array_equal(a, b)}")
    print(f"rows {n // 2}..{n // 2 + n // 4} made alone with offset=: equal to the slice = "
          f"{np.array_equal(shard, a[n // 2: n // 2 + n // 4])}")  # fmt: skip

    out = np.empty((n, n), np.float32)
    rng = np.random.default_rng(args.seed)
    t_rt = _best_ms(lambda: regtune.random.normal(out=out, seed=args.seed))
    t_np = _best_ms(lambda: rng.standard_normal(out=out, dtype=np.float32))
    print(f"\n{n}x{n} float32 normal: regtune {t_rt:.2f} ms, NumPy standard_normal {t_np:.2f} ms "
          f"({t_np / t_rt:.1f}x); {out.nbytes / t_rt / 1e6:.1f} GB/s written")  # fmt: skip
    simd = regtune.config()["simd"]
    ref = README_NORMAL_VS_NUMPY.get(simd)
    print(f"measured on the {simd} path with {threads} thread(s); "
          + (f"the README's table has {ref:.1f}x at 4096x4096 on {README_MACHINE} ({simd}, 2 threads)"
             if ref else f"the README's table has no {simd} column (it has avx512 and avx2)"))
    return 0


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="regtune: deterministic CPU training kernels, "
                                     "and a small trainer that uses them.")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an MLP (default: scikit-learn's digits)",
                       description="Train an MLP with regtune's kernels; prints the test accuracy.")  # fmt: skip
    _add_common(p)
    _add_model(p, {})
    p.add_argument("--out", metavar="DIR", help="write history.json, timing.json, model.npz and history.png here "
                   "(default: nothing is written). On one machine, the same options and seed give the same bytes in "
                   "history.json and model.npz; the wall times are in timing.json")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="regularization study on a small training subset",
                       description="Train none / L2 / L1 / dropout / L2+dropout / max-norm with the same seed and "
                                   "budget on a small training subset; print train and test accuracy and the gap; "
                                   "plot the validation curves.")  # fmt: skip
    _add_common(p)
    _add_model(p, {"optimizer": "sgd", "lr": 0.05, "epochs": 100, "batch_size": 32, "schedule": "cosine",
                   "hidden": [256, 256]}, omit=tuple(COMPARE_BASE))  # fmt: skip
    p.add_argument("--subset", type=int, default=150, help="training examples used (default %(default)s)")
    p.add_argument("--l2", type=float, default=5e-3, help="L2 coefficient of the L2 arms (default %(default)s)")
    p.add_argument("--l1-coef", type=float, default=1e-3, help="L1 coefficient of the L1 arm (default %(default)s)")
    p.add_argument("--p", type=float, default=0.5, help="dropout of the dropout arms (default %(default)s)")
    p.add_argument("--max-norm-value", type=float, default=1.0, help="the max-norm arm's bound (default %(default)s)")
    p.add_argument("--label-noise", type=float, default=0.0, metavar="FRACTION",
                   help="replace this fraction of the subset's labels by wrong ones (a harder test; default 0)")
    p.add_argument("--out", metavar="DIR", help="write compare.png (the validation curves) and compare.json here "
                   "(default: nothing is written)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("tune", help='hyperparameter search with Optuna (pip install "regtune[tune]")',
                       description="TPE search over learning rate, weight decay, dropout, initializer and schedule, "
                                   "pruning on the validation loss. Each of --lr, --weight-decay, --dropout, --init "
                                   "and --schedule that you give stays fixed in every trial, and only the others "
                                   "are searched; giving all five is an error (nothing left to search). The other "
                                   "options are used as given, as by regtune train.")  # fmt: skip
    _add_common(p)
    _add_model(p, {"epochs": 30}, searched=SEARCHED)
    p.add_argument("--trials", type=int, default=20, help="(default %(default)s)")
    p.add_argument("--timeout", type=float, default=None, help="seconds for the whole search")
    p.add_argument("--out", metavar="DIR", help="write tune.json (the fixed options, the best trial and every "
                   "trial's searched parameters) here (default: nothing is written)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("bench", help="the benchmark table: regtune against NumPy and the installed peers "
                       "(from a source checkout)",
                       description="Time regtune's kernels against NumPy and whatever peers are installed (torch, "
                                   "JAX, lion-pytorch, pytorch-optimizer) at one size, in this process, and print one "
                                   "table: median times, speed-up, GB/s and the share of the copy bandwidth measured "
                                   "in the same run, under a header naming the CPU, the SIMD path and the threads. "
                                   "The project's targets are judged only at --size 4096, the size they are defined "
                                   "for. Needs the bench/ folder of a source checkout; no extra packages. About 2 "
                                   "minutes at the defaults on a 2-core machine (--all: about 8).")  # fmt: skip
    p.add_argument("--size", type=int, default=4096, help="N of the N x N float32 arrays (default %(default)s)")
    p.add_argument("--seconds", type=float, default=1.0, help="time budget per case: rounds fill it, at least 5 "
                   "and at most 200 (default %(default)s)")  # fmt: skip
    p.add_argument("--ops", metavar="OP[,OP]", help="only these ops: names or shell-style patterns such as 'adam*' "
                   "(default: the README's headline ops and those with a target)")  # fmt: skip
    p.add_argument("--all", action="store_true", help="every op of the suites (each optimizer rule, every "
                   "initializer, the 200-tensor lists)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    p.add_argument("--bench-dir", metavar="DIR", help="the bench/ folder (default: ./bench or the checkout's)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="configuration, determinism checks, a timed draw against NumPy",
                       description=" ".join(cmd_demo.__doc__.split()))  # fmt: skip
    p.add_argument("--size", type=int, default=4096, help="side of the square tensors drawn and timed "
                   "(default %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default %(default)s)")
    p.set_defaults(func=cmd_demo)
    return parser


#: Failures in what the user asked for: the message is the whole story (exit status 2).
#: FloatingPointError: training diverged (the trainer says so and suggests a lower --lr).
EXPECTED = (CLIError, ValueError, TypeError, OSError, MemoryError, FloatingPointError)


def _debug() -> bool:
    return os.environ.get("REGTUNE_DEBUG", "") not in ("", "0")


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0, 2 for an error in what was asked
    (one line on stderr, ``regtune: error: ...``; argparse's usage errors also exit 2), 1 for
    an unexpected error (one line; ``REGTUNE_DEBUG=1`` prints the traceback too), 130 when
    interrupted (Ctrl-C), 1 when the reader of its output went away (a broken pipe)."""
    try:
        _startup.restore()  # Ctrl-C during start-up was handled by regtune._startup; from here on, here
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        check_options(args)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`regtune demo | head`): stop quietly, as other tools do, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if _debug():
            traceback.print_exc()
        msg = ("out of memory: " if isinstance(exc, MemoryError) else "") + _reason(exc)
        if isinstance(exc, EXPECTED):
            _fail(msg)
            return 2
        hint = "" if _debug() else " (set REGTUNE_DEBUG=1 for the traceback)"
        _fail(f"unexpected {type(exc).__name__}: {msg}{hint}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
