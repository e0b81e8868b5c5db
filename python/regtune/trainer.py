"""A thin, readable NumPy trainer: an MLP, softmax cross-entropy, mini-batches, regtune's kernels.

Everything that makes a training run is here in plain NumPy, with no autograd framework; the
hot loops call regtune: weights come from :mod:`regtune.init` (by name), dropout masks from
:func:`regtune.dropout` (regenerated in the backward pass from the seed and the step, never
stored), input noise from :func:`regtune.random.normal`, and the update from one fused
:mod:`regtune.optim` step (with its ``weight_decay``/``l1``/``prox_l1``/``max_grad_norm``
options) followed by :func:`regtune.penalties.max_norm_` when asked.

    >>> import numpy as np
    >>> from regtune.trainer import MLP, Trainer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype(np.float32); y = (X[:, 0] > 0).astype(np.int64)
    >>> model = MLP([4, 16, 2], activation="relu", seed=0)
    >>> history = Trainer(model, optimizer="adam", lr=1e-2, batch_size=32, seed=0).fit(X, y, epochs=5)
    >>> history.train_acc[-1] > 0.9
    True

Determinism: every random choice is a pure function of ``seed`` and the step count (shuffling
by epoch, dropout, noise and shifts by optimizer step, each at its own region of the Philox
stream), so the same seed, data and options give the same :class:`History`, bit for bit, on
one machine; only the ``time`` column differs between runs. (NumPy's matrix products run in
the BLAS, whose results can depend on its thread count: keep that fixed between runs.)

16-bit weights: ``Trainer(model, precision="bf16" | "fp16", rounding="round" | "stochastic" |
"master")`` keeps the weights and biases in bfloat16 or float16 and everything else in float32
(NumPy has no bfloat16 matrix product: each product widens the weights); see :class:`Trainer`
and bench/precision_demo.py, where round to nearest stalls at a small learning rate while
stochastic rounding and master weights follow the float32 loss.

Threads: this trainer's arrays are small, and each step calls many short kernels. regtune's
pool keeps small arrays on the calling thread by itself; NumPy's BLAS does not: OpenBLAS splits
even a 32x64 by 64x512 product over its threads, which then wait for each other actively, and on
a busy machine (other processes, DataLoader workers) a descheduled thread makes every product
wait for a time slice (issue 27: 10 epochs took 62 s at the BLAS's default against 3.5 s on one
thread). So the trainer gives the BLAS its threads only for products big enough to gain from
them: training steps, :meth:`Trainer.evaluate` and :meth:`MLP.predict_logits` hold the BLAS at
one thread (``threadpoolctl``, as scikit-learn limits the BLAS around its own parallel loops)
while their largest product, ``rows x max(in_features x out_features)`` multiply-adds, is below
:data:`BLAS_THREADS_MIN_WORK`, and leave it as it is above. The rule depends on the shapes only,
never on the load, so a run computes the same bits on an idle and on a busy machine. Without
threadpoolctl (scikit-learn brings it) the BLAS keeps its own threads. ``regtune train
--threads 1`` (or ``regtune.set_num_threads(1)`` with ``threadpoolctl.threadpool_limits(1)``)
still runs everything on one thread; bench/busy_machine.py measures both.

Bad arguments raise where they enter (:class:`MLP`, :class:`Trainer`, :meth:`Trainer.fit`,
:meth:`Trainer.evaluate`, ...): TypeError for a wrong type (a float where an int is due, a
bool, complex or object data, a masked array), ValueError for a wrong value (NaN or inf in the
inputs, labels out of range, mismatched lengths), MemoryError for a model that cannot fit in
memory, FloatingPointError when training diverges; each message names the argument.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import time
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import ml_dtypes
import numpy as np

from . import optim, penalties
from . import random as _random
from ._validation import (
    FLOAT_DTYPES,
    LOW_DTYPES,
    available_bytes,
    boolean,
    finite_array,
    float_dtype,
    hyperparameter,
    nonnegative_int,
    not_masked,
)
from .dropout import alpha_dropout, alpha_dropout_backward, dropout_backward
from .dropout import dropout as _dropout
from .schedules import ReduceOnPlateau

__all__ = [
    "ACTIVATIONS", "INITIALIZERS", "OPTIMIZERS", "PRECISIONS", "ROUNDINGS", "MLP", "Trainer", "History",
    "softmax_cross_entropy",
]  # fmt: skip

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "gelu", "selu")
INITIALIZERS = (
    "auto", "kaiming_normal", "kaiming_uniform", "he_normal", "he_uniform", "xavier_normal", "xavier_uniform",
    "glorot_normal", "glorot_uniform", "lecun_normal", "lecun_uniform", "orthogonal",
)  # fmt: skip
#: The optimizers by name: every rule of regtune.optim (``regtune.optim.RULES``).
OPTIMIZERS: dict[str, type[optim.Optimizer]] = optim.OPTIMIZERS  # fmt: skip

#: Trainer(precision=): the dtype the weights and biases are stored in (None: the model's own,
#: float32 or float64).
PRECISIONS: dict[str, np.dtype | None] = {
    "fp32": None, "bf16": np.dtype(ml_dtypes.bfloat16), "fp16": np.dtype(np.float16),
}  # fmt: skip
#: Trainer(state_dtype=): the optimizer state's storage besides the default (None).
STATE_DTYPES = ("int8",)
#: Trainer(rounding=): how the optimizer writes a 16-bit weight (regtune.optim's precision=).
ROUNDINGS = ("round", "stochastic", "master")

#: The smallest matrix product (multiply-adds: rows x in_features x out_features) for which the
#: trainer lets NumPy's BLAS use its threads; smaller ones run on one thread (see the module
#: docstring). 2**32: such a product takes about 90 ms on one thread of this project's 2-core AMD
#: EPYC, so waiting a time slice or two for a descheduled BLAS thread costs it little. Measured
#: there (bench/busy_machine.py --what products, README "A busy machine"): with one or two other
#: processes on the cores OpenBLAS's two threads lost 1.5x at 2**30 and 1.17x at 2**32 (and up to
#: 60x on small products); beside 4 or 8 spinning processes they won from 2**30 on and lost up to
#: 30x below. The trainer's own products are far below the limit at the command line's defaults
#: (32 x 512 x 256 = 2**22 per step, 1293 x 512 x 256, about 2**27, per evaluation batch), so they
#: run on one thread there.
BLAS_THREADS_MIN_WORK = 2**32

LEAKY_SLOPE = 0.01  # torch's default negative_slope
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_GELU_C = math.sqrt(2.0 / math.pi)

# Each consumer of random numbers reads its own region of the seed's Philox stream, so that
# dropout, noise and shifts never share words: region r starts at word r * 2**60, and step s
# of a consumer starts at s * (words per step) inside its region.
_REGION = 1 << 60
_DROPOUT, _NOISE, _SHIFT = 0, 1, 2
# Stochastic rounding of 16-bit weights draws from its own key, SeedSequence([seed, _ROUNDING]),
# not from a region of the seed's stream: the optimizer addresses its words by (step, tensor).
_ROUNDING = 3
_BF16 = np.dtype(ml_dtypes.bfloat16)


def _param_dtype(dtype: Any) -> np.dtype:
    """The storage dtype of an MLP's parameters: float32 (None too), float64, bfloat16 or float16."""
    if dtype is None:
        return FLOAT_DTYPES[0]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32, float64, bfloat16 or float16, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES and dt not in LOW_DTYPES:
        raise TypeError(f"dtype must be float32, float64, bfloat16 or float16, got {dt}")
    return dt


def _stored(a: np.ndarray) -> np.ndarray:
    """An array as a .npy member holds it: bfloat16 as its uint16 bits (the .npy format has no
    bfloat16: NumPy would write an opaque 2-byte void); every other dtype as it is."""
    return a.view(np.uint16) if a.dtype == _BF16 else a


def _unstored(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The inverse of :func:`_stored` for an array expected to have ``dtype``."""
    return a.view(_BF16) if dtype == _BF16 and a.dtype == np.uint16 else a


def _choice(value: str, valid: Sequence[str], what: str, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str naming the {what}, got {name}={value!r}")
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(valid)}")
    return value


def _int(value: Any, name: str, low: int | None = 1) -> int:
    """An exact int (Python or NumPy integer; not a bool, not a float) >= ``low``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {name}={value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {name}={int(value)}")
    return int(value)


def _int_sequence(values: Any, name: str) -> list[int]:
    """A list, tuple or 1-D array of exact ints (each >= 1 is checked by the caller's message)."""
    if isinstance(values, (str, bytes, Mapping, set, frozenset)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {name}={values!r}")
    try:
        items = list(values)
    except TypeError:  # a 0-d array
        raise TypeError(f"{name} must be a sequence of ints, got {name}={values!r}") from None
    return [_int(v, f"{name}[{i}]", low=None) for i, v in enumerate(items)]


#: Memory this process can still allocate, or None (shared with regtune.augment; a name of this
#: module so that tests can replace it).
_available_bytes = available_bytes


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _check_fits(nbytes: int, what: str) -> None:
    """MemoryError (naming ``what``) when ``nbytes`` exceed the memory available now."""
    avail = _available_bytes()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs {_gib(nbytes)}, more than the {_gib(avail)} of memory available")


_blas = None  # the threadpoolctl controller of the BLAS libraries, made on first use (False: none)


def _blas_controller() -> Any:
    """threadpoolctl's controller of the BLAS libraries loaded now (NumPy's), or None without
    threadpoolctl or a BLAS it can see. Made once: looking the libraries up costs milliseconds,
    a limit on this controller about 10 us."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            ctl = ThreadpoolController().select(user_api="blas")
            _blas = ctl if ctl.lib_controllers else False
        except Exception:  # not installed, or a library it cannot query: the BLAS keeps its threads
            _blas = False
    return _blas or None


def _small_products(rows: int, model: "MLP") -> Any:
    """A context that holds the BLAS at one thread while the products of ``rows`` rows through
    ``model`` (at most ``rows x max(in x out)`` multiply-adds) are below
    :data:`BLAS_THREADS_MIN_WORK`; it restores the BLAS's own count on exit. Larger products,
    or no threadpoolctl: a context that does nothing."""
    if rows * max(w.size for w in model.weights) >= BLAS_THREADS_MIN_WORK:
        return contextlib.nullcontext()
    ctl = _blas_controller()
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=1)


@contextlib.contextmanager
def _open_npz(path: Any) -> Iterator[Any]:
    """``numpy.load(path)`` of a ``.npz`` (no pickles), closed on exit; anything else is a
    ValueError naming ``path`` (a missing file stays a FileNotFoundError). The file is opened
    here, not by NumPy, which leaves it open when the archive is corrupt."""
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(path, "rb")) if isinstance(path, (str, bytes, os.PathLike)) else path
        try:
            f = np.load(fh, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"path {path!r} is not a .npz file: {' '.join(str(exc).split())}") from None
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError(f"path {path!r} holds a single .npy array, not a .npz file")
        with f:
            yield f


def _member(f: Any, key: str, path: Any) -> np.ndarray:
    """Array ``key`` of an open ``.npz``; a missing or unreadable member is a ValueError."""
    if key not in f:
        raise ValueError(f"path {path!r} is not a complete regtune checkpoint: it has no {key}")
    try:
        return f[key]
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"path {path!r}: cannot read {key}: {' '.join(str(exc).split())}") from None


def _json_member(f: Any, key: str, path: Any) -> dict:
    try:
        d = json.loads(str(_member(f, key, path)))
    except json.JSONDecodeError as exc:
        raise ValueError(f"path {path!r}: {key} is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError(f"path {path!r}: {key} must be a JSON object, got {type(d).__name__}")
    return d


#: The date of every member of the .npz files written here (the earliest a zip file can hold).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _savez(path: Any, arrays: dict[str, Any]) -> None:
    """:func:`numpy.savez` (uncompressed, no pickles) with a fixed date on every member, so
    that equal arrays give byte-identical files (numpy.savez stamps each with the current time)."""
    if not hasattr(path, "write"):
        path = os.fspath(path)
        if not (path.endswith(".npz") if isinstance(path, str) else path.endswith(b".npz")):
            path += ".npz" if isinstance(path, str) else b".npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def _features(X: Any, name: str, n_in: int, dtype: np.dtype) -> np.ndarray:
    """Inputs of shape (n, n_in) as a C-contiguous array of ``dtype``: real numbers only (no
    bool, complex, object or strings), finite after the conversion to ``dtype``."""
    not_masked(X, name)
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if X.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (ints or floats), got dtype {X.dtype}")
    if X.ndim != 2 or X.shape[1] != n_in:
        raise ValueError(f"{name} must have shape (n, {n_in}), got {X.shape}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(X, dtype)
    if X.dtype.kind == "f":  # ints always fit float32 and float64
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            i, j = divmod(int(bad[0]), n_in)
            v = X[i, j]
            why = f"beyond the range of {dtype}" if np.isfinite(v) else "not finite"
            raise ValueError(f"{name}[{i}, {j}] = {v} is {why}; inputs must be finite {dtype} values")
    return out


def _labels(y: Any, name: str, n: int, n_classes: int, x_name: str) -> np.ndarray:
    """Integer class labels in [0, n_classes), one per row (integral floats are accepted)."""
    not_masked(y, name)
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be an array of integer labels: {exc}") from None
    if y.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match {x_name}, got {y.shape}")
    if y.dtype.kind == "f" and n:
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise ValueError(f"{name} must hold integer class labels, got {name}[{int(bad[0])}] = {y[bad[0]]}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        bad = y.min() if y.min() < 0 else y.max()
        bad = int(bad) if y.dtype.kind in "iu" else float(bad)
        raise ValueError(f"{name} holds label {bad}, outside [0, {n_classes}) for a model with {n_classes} classes")
    return y.astype(np.intp)


# ----------------------------------------------------------------------------- activations


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, z * z.dtype.type(LEAKY_SLOPE))
    if name == "tanh":
        return np.tanh(z)
    if name == "gelu":  # the tanh approximation (torch's approximate="tanh"): NumPy has no erf
        return 0.5 * z * (1.0 + np.tanh(_GELU_C * (z + 0.044715 * z**3)))
    # selu
    return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))


def _activate_grad(name: str, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    """dL/dz from dL/da for a = act(z)."""
    if name == "relu":
        return da * (z > 0)
    if name == "leaky_relu":
        return np.where(z > 0, da, da * da.dtype.type(LEAKY_SLOPE))
    if name == "tanh":
        return da * (1.0 - a * a)
    if name == "gelu":
        t = np.tanh(_GELU_C * (z + 0.044715 * z**3))
        return da * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * z * z))
    # selu: for z <= 0, a = scale * alpha * (exp(z) - 1), so da/dz = a + scale * alpha
    return da * np.where(z > 0, SELU_SCALE, a + SELU_SCALE * SELU_ALPHA)


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, int]:
    """Mean softmax cross-entropy of integer labels, its gradient and the number correct.

    ``loss = mean_i(logsumexp(z_i) - z_i[y_i])``; ``dloss/dz = (softmax(z) - onehot(y)) / n``.

    Returns:
        ``(loss, dlogits, correct)``: the loss as a Python float (summed in float64),
        ``dlogits`` in the logits' dtype, and how many argmax predictions equal ``y``.

    Raises:
        TypeError: ``logits`` not a float32/float64 array, ``y`` not integer labels.
        ValueError: ``logits`` not of shape (n, classes) with n >= 1 and classes >= 1, ``y`` not
            of shape (n,) or holding a label outside [0, classes).
    """
    if not isinstance(logits, np.ndarray) or isinstance(logits, np.ma.MaskedArray):
        raise TypeError(f"logits must be a numpy.ndarray, got {type(logits).__name__}")
    float_dtype(logits.dtype, "logits.dtype")
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape (n, classes) with n, classes >= 1, got {logits.shape}")
    return _softmax_xent(logits, _labels(y, "y", logits.shape[0], logits.shape[1], "logits"))


def _softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, int]:
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.sum(np.log(s[:, 0], dtype=np.float64) - z[rows, y], dtype=np.float64)) / n
    d = e / s
    d[rows, y] -= 1
    d /= n
    correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
    return loss, d, correct


# ----------------------------------------------------------------------------- the model


class MLP:
    """A multilayer perceptron of dense layers: ``x -> act(W0 x + b0) -> ... -> W_last h + b``.

    Weights use torch's layout, ``(out_features, in_features)``; hidden layers apply the
    activation and then (when training) dropout, or alpha dropout for SELU; the last layer
    gives logits.

    Args:
        sizes: ``[n_inputs, hidden..., n_classes]`` (at least two ints >= 1).
        activation: ``relu``, ``leaky_relu`` (slope 0.01), ``tanh``, ``gelu`` (tanh
            approximation) or ``selu``.
        init: a :mod:`regtune.init` initializer name, or ``auto``: ``kaiming_normal`` for
            relu/leaky_relu/gelu, ``xavier_normal`` with tanh's gain for tanh, ``lecun_normal``
            for selu. Kaiming initializers get the activation as ``nonlinearity`` (gelu counts
            as relu), xavier and orthogonal its gain. Biases start at zero.
        dropout: drop probability in [0, 1), one for every hidden layer or a list with one per
            hidden layer.
        dropout_kind: ``auto`` (alpha dropout for selu, dropout otherwise), ``dropout`` or
            ``alpha``.
        dtype: the dtype the weights and biases are stored in: float32 (default), float64,
            ``ml_dtypes.bfloat16`` or float16. A 16-bit model computes in float32
            (:attr:`compute_dtype`): each matrix product widens the weights to float32 (NumPy
            has no bfloat16 matrix product, and float16's is not a BLAS one), so inputs,
            activations, logits and gradients are float32; only the stored parameters are 16-bit.
            Its initial weights are the float32 draw of the same seed rounded to nearest even.
        seed: weights of layer ``i`` are drawn with ``seed`` at offset ``i * 2**40``.

    Raises:
        TypeError: ``sizes`` not a sequence of ints (floats are refused, not truncated), a name
            that is not a str, a dropout that is not a float or a list of floats, a dtype other
            than float32/float64/bfloat16/float16, a seed that is not an int.
        ValueError: an unknown activation, initializer or dropout kind (the message lists the
            valid names), sizes < 1 or fewer than two, dropout probabilities outside [0, 1), a
            seed outside [0, 2**64).
        MemoryError: parameters that do not fit in the memory available.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        init: str = "auto",
        dropout: float | Sequence[float] = 0.0,
        dropout_kind: str = "auto",
        dtype: Any = np.float32,
        seed: int = 0,
    ) -> None:
        sizes = _int_sequence(sizes, "sizes")
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must hold at least two positive ints (inputs, ..., classes), got sizes={sizes!r}")
        self.sizes = sizes
        self.activation = _choice(activation, ACTIVATIONS, "activation", "activation")
        self.init = _choice(init, INITIALIZERS, "initializer", "init")
        n_hidden = len(sizes) - 2
        if isinstance(dropout, np.ndarray) and dropout.ndim == 0:
            dropout = dropout[()]
        if isinstance(dropout, (numbers.Real, np.floating, np.integer)) and not isinstance(dropout, (bool, np.bool_)):
            named = [("dropout", dropout)] * max(n_hidden, 1)
        else:
            if isinstance(dropout, (str, bytes, Mapping, set, bool, np.bool_)) or not hasattr(dropout, "__iter__"):
                raise TypeError(f"dropout must be a float or a list of floats, got dropout={dropout!r}")
            named = [(f"dropout[{i}]", p) for i, p in enumerate(dropout)]
            if len(named) != n_hidden:
                raise ValueError(f"dropout needs one probability per hidden layer ({n_hidden}), got dropout={dropout!r}")
        ps = []
        for name, p in named:
            if isinstance(p, (bool, np.bool_)) or not isinstance(p, (numbers.Real, np.floating, np.integer)):
                raise TypeError(f"{name} must be a float, got {name}={p!r}")
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"dropout probabilities must be in [0, 1), got {name}={p!r}")
            ps.append(float(p))
        self.dropout = ps[:n_hidden]
        kind = _choice(dropout_kind, ("auto", "dropout", "alpha"), "dropout kind", "dropout_kind")
        self.dropout_kind = ("alpha" if activation == "selu" else "dropout") if kind == "auto" else kind
        #: The dtype of the stored weights and biases.
        self.dtype = _param_dtype(dtype)
        #: The dtype of the arithmetic: the parameters' own, or float32 for 16-bit parameters.
        self.compute_dtype = np.dtype(np.float32) if self.dtype in LOW_DTYPES else self.dtype
        self.seed = nonnegative_int(seed, "seed", upper=2**64)
        n_params = sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))
        _check_fits(n_params * self.dtype.itemsize, f"MLP(sizes={sizes!r}) with {n_params:,} {self.dtype} parameters")
        self.weights = [self._init_weight((o, i), k) for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.biases = [np.zeros(o, self.dtype) for o in sizes[1:]]

    def _init_weight(self, shape: tuple[int, int], layer: int) -> np.ndarray:
        from . import init as _init

        name, act = self.init, self.activation
        if name == "auto":
            name = {"tanh": "xavier_normal", "selu": "lecun_normal"}.get(act, "kaiming_normal")
        kw: dict[str, Any] = {"dtype": self.compute_dtype, "seed": self.seed, "offset": layer << 40}
        gain_name = "relu" if act == "gelu" else act
        if name.startswith(("kaiming", "he_")):
            kw["nonlinearity"] = gain_name
            if act == "leaky_relu":
                kw["a"] = LEAKY_SLOPE
        elif name.startswith(("xavier", "glorot")) or name == "orthogonal":
            kw["gain"] = _init.calculate_gain(gain_name, LEAKY_SLOPE if act == "leaky_relu" else None)
        w = getattr(_init, name)(shape, **kw)
        return w if w.dtype == self.dtype else w.astype(self.dtype)  # 16-bit: round to nearest even

    def _set_params(self, params: list[np.ndarray], dtype: np.dtype) -> None:
        """Store ``params`` (the order of :attr:`params`, all of ``dtype``) from now on."""
        self.weights, self.biases = list(params[0::2]), list(params[1::2])
        self.dtype = dtype
        self.compute_dtype = np.dtype(np.float32) if dtype in LOW_DTYPES else dtype

    def _wide(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """``arrays`` in :attr:`compute_dtype`: the arrays themselves, or float32 copies of
        16-bit ones (exact)."""
        if self.dtype == self.compute_dtype:
            return arrays
        return [a.astype(self.compute_dtype) for a in arrays]

    # The optimizer steps one flat list: [W0, b0, W1, b1, ...].
    @property
    def params(self) -> list[np.ndarray]:
        return [a for pair in zip(self.weights, self.biases) for a in pair]

    @property
    def n_hidden_units(self) -> int:
        return sum(self.sizes[1:-1])

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (what :meth:`save` stores)."""
        return {
            "sizes": self.sizes, "activation": self.activation, "init": self.init, "dropout": self.dropout,
            "dropout_kind": self.dropout_kind, "dtype": self.dtype.name, "seed": self.seed,
        }  # fmt: skip

    def forward(
        self, x: np.ndarray, *, training: bool = False, seed: int = 0, offset: int = 0
    ) -> tuple[np.ndarray, list]:
        """Logits for a batch ``x`` of shape (n, sizes[0]), and the cache :meth:`backward` needs.

        With ``training=True``, hidden layer ``k``'s dropout mask is drawn from ``seed`` at
        ``offset + n * (units of the hidden layers before k)``; the cache keeps that position,
        not the mask, and the backward pass regenerates the mask from it.

        Raises:
            TypeError: ``x`` not a float32/float64 ndarray, ``training`` not a bool, ``seed`` or
                ``offset`` not an int.
            ValueError: ``x`` not of shape (n, sizes[0]); a negative ``seed`` or ``offset``.
        """
        not_masked(x, "x")
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
        float_dtype(x.dtype, "x.dtype")
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x must have shape (n, {self.sizes[0]}), got {x.shape}")
        training = boolean(training, "training")
        seed, offset = nonnegative_int(seed, "seed", upper=2**64), nonnegative_int(offset, "offset")
        return self._forward(x, training=training, seed=seed, offset=offset)

    def _forward(
        self, x: np.ndarray, *, training: bool = False, seed: int = 0, offset: int = 0
    ) -> tuple[np.ndarray, list]:
        cache = []
        h = x
        last = len(self.weights) - 1
        pos = offset
        for k, (w, b) in enumerate(zip(self._wide(self.weights), self._wide(self.biases))):
            z = h @ w.T + b
            if k == last:
                cache.append((h, None, None, None))
                return z, cache
            a = _activate(self.activation, z)
            p = self.dropout[k]
            drop = (p, pos) if training and p > 0 else None
            cache.append((h, z, a, drop))
            if drop:
                fn = alpha_dropout if self.dropout_kind == "alpha" else _dropout
                h = fn(a, p, seed=seed, offset=pos, return_mask=False)
            else:
                h = a
            pos += a.size
        raise AssertionError("unreachable")

    def backward(self, cache: list, dlogits: np.ndarray, seed: int = 0) -> list[np.ndarray]:
        """Gradients of the loss for every parameter (the order of :attr:`params`), from the
        gradient of the logits and the forward's cache (``seed`` as given to the forward), in
        :attr:`compute_dtype` (float32 for a 16-bit model).

        Raises:
            TypeError: ``cache`` not a list from :meth:`forward`, ``dlogits`` not a float32/float64
                ndarray, ``seed`` not an int.
            ValueError: ``dlogits`` not of shape (n, sizes[-1]) for the n rows of the forward.
        """
        if not isinstance(cache, list) or len(cache) != len(self.weights) or not all(
            isinstance(c, tuple) and len(c) == 4 and isinstance(c[0], np.ndarray) for c in cache
        ):
            raise TypeError(f"cache must be the list that this model's forward() returned, got {type(cache).__name__}")
        not_masked(dlogits, "dlogits")
        if not isinstance(dlogits, np.ndarray):
            raise TypeError(f"dlogits must be a numpy.ndarray, got {type(dlogits).__name__}")
        float_dtype(dlogits.dtype, "dlogits.dtype")
        shape = (cache[0][0].shape[0], self.sizes[-1])
        if dlogits.shape != shape:
            raise ValueError(f"dlogits must have shape {shape} (the forward's rows, classes), got {dlogits.shape}")
        return self._backward(cache, dlogits, seed=nonnegative_int(seed, "seed", upper=2**64))

    def _backward(self, cache: list, dlogits: np.ndarray, seed: int = 0) -> list[np.ndarray]:
        grads: list[np.ndarray] = [None] * (2 * len(self.weights))  # type: ignore[list-item]
        dh = dlogits
        weights = self._wide(self.weights)
        for k in range(len(self.weights) - 1, -1, -1):
            h, z, a, drop = cache[k]
            if k < len(self.weights) - 1:
                if drop:
                    p, pos = drop
                    fn = alpha_dropout_backward if self.dropout_kind == "alpha" else dropout_backward
                    dh = fn(dh, p=p, seed=seed, offset=pos)
                dh = _activate_grad(self.activation, z, a, dh)
            grads[2 * k] = dh.T @ h
            grads[2 * k + 1] = dh.sum(axis=0)
            if k:
                dh = dh @ weights[k]
        return [np.ascontiguousarray(g, dtype=self.compute_dtype) for g in grads]

    def predict_logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Logits in evaluation mode (no dropout), in batches of ``batch_size`` rows.

        Raises:
            TypeError: ``x`` not real numbers (bool, complex, object, strings, a masked array),
                ``batch_size`` not an int.
            ValueError: ``x`` not of shape (n, sizes[0]) or not finite; ``batch_size`` < 1.
        """
        x = _features(x, "x", self.sizes[0], self.compute_dtype)
        batch_size = _int(batch_size, "batch_size")
        with _small_products(min(batch_size, len(x)), self):
            return np.concatenate([self._forward(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)] or
                                  [np.empty((0, self.sizes[-1]), self.compute_dtype)])  # fmt: skip

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class of each row of ``x``."""
        return self.predict_logits(x).argmax(axis=1)

    def save(self, path: str, **arrays: Any) -> None:
        """Write the model (config and parameters) to a ``.npz`` file, with any extra arrays
        (``.npz`` is appended to a path without it, as :func:`numpy.savez` does). The same model
        gives the same bytes: the archive's members carry a fixed date, not the current time.
        bfloat16 parameters are stored as their uint16 bits (the ``.npy`` format has no
        bfloat16); ``model_config``'s dtype says how to read them, and :meth:`load` does."""
        params = {f"param_{i}": _stored(p) for i, p in enumerate(self.params)}
        _savez(path, {"model_config": np.array(json.dumps(self.config())), **params, **arrays})

    @classmethod
    def load(cls, path: str) -> "MLP":
        """The model :meth:`save` (or :meth:`Trainer.save_checkpoint`) wrote, parameters exact.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: ``path`` is not a ``.npz`` file written by :meth:`save` (corrupt,
                truncated, a plain ``.npy``, missing or mismatched parameters).
        """
        with _open_npz(path) as f:
            return cls._from_npz(f, path)

    @classmethod
    def _from_npz(cls, f: Any, path: Any) -> "MLP":
        if "model_config" not in f:
            raise ValueError(f"path {path!r} is not a regtune checkpoint: no model_config in the file")
        config = _json_member(f, "model_config", path)
        try:
            model = cls(**config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path {path!r}: model_config {config!r} is not valid: {exc}") from None
        for i, p in enumerate(model.params):
            saved = _unstored(_member(f, f"param_{i}", path), p.dtype)
            if saved.shape != p.shape or saved.dtype != p.dtype:
                raise ValueError(f"param_{i} has shape {saved.shape} {saved.dtype}, expected {p.shape} {p.dtype}")
            finite_array(saved, f"path {path!r}: param_{i}", "a model's parameters must be finite")
            np.copyto(p, saved)
        return model

    def __repr__(self) -> str:
        return f"MLP({' -> '.join(map(str, self.sizes))}, {self.activation}, dropout={self.dropout}, {self.dtype})"


# ----------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch record of a run. ``train_*`` are measured at the end of each epoch in
    evaluation mode (no dropout, no augmentation) on the whole training set, so they compare
    directly with ``val_*``; ``lr`` is the learning rate of the epoch's last step and ``time``
    its wall-clock seconds (the only column that changes between identical runs). Without
    validation data, ``val_loss`` and ``val_acc`` hold None."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_acc: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time")

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self, include_time: bool = True) -> dict[str, Any]:
        """Plain lists, JSON-ready; ``include_time=False`` leaves out the wall-clock column so
        that two runs with the same seed give equal dicts."""
        d = {k: list(getattr(self, k)) for k in self.COLUMNS if include_time or k != "time"}
        d.update(best_epoch=self.best_epoch, stopped_early=self.stopped_early)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(**{k: (list(v) if isinstance(v, list) else v) for k, v in d.items()})


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Mini-batch training of an :class:`MLP` with any regtune optimizer.

    Args:
        model: the :class:`MLP` to train (updated in place).
        optimizer: ``sgd``, ``adam``, ``adamw``, ``rmsprop`` or ``adagrad``.
        lr: a float, a schedule of the optimizer step count (:mod:`regtune.schedules`), or a
            :class:`~regtune.schedules.ReduceOnPlateau`, stepped with the validation loss (the
            training loss without validation data) after every epoch.
        weight_decay: L2 coefficient (decoupled for adamw, in the gradient otherwise, as
            torch), float or schedule; applied to every parameter, as torch.optim does.
        l1, prox_l1, max_grad_norm: the optimizer's penalty and clipping options.
        max_norm: after each step, rescale every row of each weight matrix (a unit's incoming
            weights) to an L2 norm of at most this (:func:`regtune.penalties.max_norm_`).
        batch_size: examples per step; the last, smaller batch of an epoch is kept.
        noise_std: standard deviation of Gaussian noise added to each training batch.
        shift: for image-like inputs, shift each training image by up to this many pixels in
            each direction (zero fill); needs ``image_shape``. Shifts and noise run as one
            :class:`regtune.augment.Pipeline` call for float32 models.
        image_shape: ``(H, W)`` or ``(C, H, W)`` whose product is the number of inputs.
        seed: the seed of every random choice: the per-epoch shuffle, dropout masks, noise,
            shifts.
        optimizer_kwargs: other arguments for the optimizer (``momentum=``, ``betas=``...).
        precision: how the model's weights and biases are stored while training: ``fp32``
            (default: in the model's own float32 or float64, exactly as before this option),
            ``bf16`` (``ml_dtypes.bfloat16``) or ``fp16`` (float16). With bf16/fp16 the
            parameters are what is kept in low precision: a float32 model's are rounded to
            nearest even into the 16-bit dtype, in place, when the trainer is made (so
            ``model.dtype`` becomes that dtype; a model made with ``MLP(dtype=...)`` in it is
            taken as it is). Everything else is float32: each matrix product widens the
            weights to float32 (NumPy has no bfloat16 matrix product), so activations, the loss
            and the gradients handed to the optimizer are float32, and so are the optimizer's
            state and the master copy; only the write of each update into a 16-bit parameter
            rounds, as ``rounding`` says.
        rounding: how the optimizer writes an update into a 16-bit parameter (bf16/fp16 only;
            regtune.optim's ``precision=``): ``round`` to nearest even (what torch does with
            bfloat16 parameters): an update smaller than half a unit in the last place (ulp)
            of the weight is lost; bfloat16 has 8 significant bits, so a weight near 0.1
            (ulp 2**-11, about 4.9e-4) ignores every update below about 2.4e-4, and with a small
            learning rate training stalls. ``stochastic`` (the default) rounds up or down with
            probabilities that make the stored weight equal the float32 update on average, so
            small updates add up as they do in float32; its random words come from ``seed``
            (under a key of their own), the step, the tensor and the element: the same bits on
            any thread count. ``master`` keeps a float32 copy of every parameter
            (``optimizer.state["master"]``, 4 more bytes per parameter) that takes the float32
            update; the parameter is its rounding. The default is ``stochastic`` because it
            trains like float32 (bench/precision_demo.py: its loss follows float32's where
            ``round`` stalls) while the parameters stay 2 bytes each with no float32 copy, which
            is the point of 16-bit weights; ``master`` follows float32 a little more closely
            at the price of that copy.
        state_dtype: the optimizer state's storage: ``None`` (float32, or the model's float64)
            or ``"int8"``, blockwise 8-bit state (regtune.optim's ``state_dtype="int8"``: about
            2 bytes per parameter for Adam's two buffers instead of 8); weights with fewer than
            4096 elements keep float32 state, as bitsandbytes does. Not with float64 models,
            nor with the optimizers whose state cannot be 8-bit (LAMB, LARS, Adafactor,
            Schedule-Free AdamW).

    Example (16-bit weights)::

        >>> model = MLP([4, 16, 2], seed=0)
        >>> t = Trainer(model, optimizer="sgd", lr=0.05, precision="bf16", rounding="master")
        >>> model.dtype, model.compute_dtype, t.optimizer.state["master"][0].dtype
        (dtype(bfloat16), dtype('float32'), dtype('float32'))

    Raises:
        TypeError: an argument of the wrong type (each message names it).
        ValueError: an unknown ``optimizer``, ``precision`` or ``rounding`` (the message lists
            the valid names), ``rounding`` with ``precision="fp32"``, a model whose dtype the
            precision cannot train (a 16-bit model with ``fp32``, a float64 or other 16-bit
            model with bf16/fp16), adafactor with 16-bit weights, ``precision`` or ``seed`` in
            ``optimizer_kwargs``; values out of range; ``state_dtype`` other than None and
            ``"int8"``, or ``"int8"`` where the optimizer or the model's dtype cannot have it.
        MemoryError: gradients and optimizer state that do not fit in the memory available.
    """

    def __init__(
        self,
        model: MLP,
        *,
        optimizer: str = "adam",
        lr: Any = 1e-3,
        weight_decay: Any = 0.0,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        max_norm: float | None = None,
        batch_size: int = 64,
        noise_std: float = 0.0,
        shift: int = 0,
        image_shape: Sequence[int] | None = None,
        seed: int = 0,
        optimizer_kwargs: dict[str, Any] | None = None,
        precision: str = "fp32",
        rounding: str | None = None,
        state_dtype: str | None = None,
    ) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a regtune.trainer.MLP, got {type(model).__name__}")
        self.model = model
        self.optimizer_name = _choice(optimizer, tuple(OPTIMIZERS), "optimizer", "optimizer")
        if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, Mapping):
            raise TypeError(f"optimizer_kwargs must be a dict or None, got optimizer_kwargs={optimizer_kwargs!r}")
        taken = sorted({"precision", "seed"} & set(optimizer_kwargs or ()))
        if taken:
            raise ValueError(f"optimizer_kwargs must not set {' or '.join(taken)}: the trainer sets the optimizer's "
                             "precision from rounding= and its rounding seed from seed=")  # fmt: skip
        if state_dtype is not None and "state_dtype" in (optimizer_kwargs or ()):
            raise ValueError("state_dtype is given twice: as state_dtype= and in optimizer_kwargs")
        if state_dtype is not None and not (isinstance(state_dtype, str) and state_dtype in STATE_DTYPES):
            raise ValueError(f"state_dtype must be None or one of {', '.join(map(repr, STATE_DTYPES))}, "
                             f"got state_dtype={state_dtype!r}")  # fmt: skip
        #: The optimizer state's storage: None (float32, or float64) or "int8" (blockwise 8-bit).
        self.state_dtype = state_dtype
        #: ``fp32``, ``bf16`` or ``fp16``: the dtype the parameters are stored in while training.
        self.precision = _choice(precision, tuple(PRECISIONS), "precision", "precision")
        low = PRECISIONS[self.precision]
        if rounding is not None:
            _choice(rounding, ROUNDINGS, "rounding", "rounding")
            if low is None:
                raise ValueError(f"rounding={rounding!r} applies to precision 'bf16' or 'fp16' (16-bit weights); "
                                 "with precision='fp32' no update is rounded")  # fmt: skip
        #: How updates are written into 16-bit parameters (None with ``fp32``).
        self.rounding = None if low is None else (rounding or "stochastic")
        if low is None and model.dtype in LOW_DTYPES:
            name = next(k for k, v in PRECISIONS.items() if v == model.dtype)
            raise ValueError(f"precision='fp32' trains float32 or float64 weights, but the model stores {model.dtype} "
                             f"weights: pass precision={name!r}")  # fmt: skip
        if low is not None and model.dtype not in (np.dtype(np.float32), low):
            raise ValueError(f"precision={self.precision!r} stores a float32 model's weights in {low}; "
                             f"the model stores {model.dtype} weights")  # fmt: skip
        if low is not None and self.optimizer_name == "adafactor":
            raise ValueError(f"optimizer 'adafactor' takes float32 or float64 weights, not precision={self.precision!r} "
                             "(its 16-bit step is not built); choose another optimizer")  # fmt: skip
        self.max_norm = None if max_norm is None else hyperparameter(max_norm, "max_norm", low=0.0, low_open=True)
        self.batch_size = _int(batch_size, "batch_size")
        # A normal draw reaches about 9 standard deviations: they must fit the model's dtype.
        self.noise_std = hyperparameter(noise_std, "noise_std", low=0.0, high=float(np.finfo(model.compute_dtype).max) / 16)
        self.shift = _int(shift, "shift", low=0)
        self.image_shape = None if image_shape is None else tuple(_int_sequence(image_shape, "image_shape"))
        if self.shift and self.image_shape is None:
            raise ValueError("shift needs image_shape, the (H, W) or (C, H, W) of each input")
        if self.image_shape is not None and (
            len(self.image_shape) not in (2, 3) or min(self.image_shape) < 1
            or math.prod(self.image_shape) != model.sizes[0]
        ):  # fmt: skip
            raise ValueError(f"image_shape {self.image_shape} does not hold the model's {model.sizes[0]} inputs")
        if self.shift and self.shift >= max(self.image_shape[-2:]):
            raise ValueError(f"shift must be < the image's height and width {self.image_shape[-2:]}, got shift={shift!r}")
        self.seed = nonnegative_int(seed, "seed", upper=2**64)
        # Random words one step may draw in a region (dropout, noise, shifts): at most 2**60.
        self._words_per_step = self.batch_size * max(model.n_hidden_units, model.sizes[0], 2)
        if self._words_per_step > _REGION:
            raise ValueError(f"batch_size={self.batch_size} is too large: one step would draw {self._words_per_step} "
                             "random numbers, more than the 2**60 of a region of the seed's stream")  # fmt: skip
        if low is None:
            # Gradients and up to two state buffers per parameter (Adam's m and v).
            n_bytes = sum(p.nbytes for p in model.params)
            _check_fits(3 * n_bytes, f"training {model!r} (gradients and optimizer state)")
            params, cast, kw = model.params, False, {}
        else:
            # float32 gradients, up to two float32 state buffers, the master copy, and the 16-bit
            # copy of a float32 model's parameters.
            cast = model.dtype != low
            per = 4 * (3 + (self.rounding == "master")) + 2 * cast
            _check_fits(per * sum(p.size for p in model.params),
                        f"training {model!r} in {self.precision} (gradients and optimizer state)")  # fmt: skip
            params = [p.astype(low) for p in model.params] if cast else model.params
            kw = {"precision": self.rounding}
            if self.rounding == "stochastic":
                kw["seed"] = np.random.SeedSequence([self.seed, _ROUNDING])
        if state_dtype is not None:
            kw["state_dtype"] = state_dtype
        self.optimizer = OPTIMIZERS[optimizer](
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm,
            **kw, **(optimizer_kwargs or {}),
        )  # fmt: skip
        if cast:  # every check passed: the model now stores 16-bit parameters
            model._set_params(params, low)
        self.epochs_done = 0
        self.history = History()
        self._pipeline = None  # the float32 augmentation (regtune.augment), made on first use

    # -- data checks ------------------------------------------------------------------------

    def _data(self, X: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Checked inputs (finite, of the model's dtype, C-contiguous) and labels (intp)."""
        X = _features(X, f"X_{name}", self.model.sizes[0], self.model.compute_dtype)
        y = _labels(y, f"y_{name}", X.shape[0], self.model.sizes[-1], f"X_{name}")
        if X.shape[0] == 0:
            raise ValueError(f"X_{name} is empty")
        return X, y

    # -- one step -----------------------------------------------------------------------------

    def _augment(self, xb: np.ndarray, step: int) -> np.ndarray:
        """The batch shifted and noised. float32 models: one fused :class:`regtune.augment.Pipeline`
        call (RandomTranslate, then GaussianNoise without clipping), its choices keyed by
        (seed, step, position in the batch). float64 models (the pipeline works in float32) and
        images of more than 4 channels (the pipeline's limit): the same operations in NumPy, from
        regtune.random's words at the step's offsets."""
        if not (self.shift or self.noise_std):
            return xb
        if xb.dtype == np.float32 and (self.image_shape is None or len(self.image_shape) == 2 or self.image_shape[0] <= 4):
            return self._augment_pipeline(xb, step)
        n = xb.shape[0]
        if self.shift:
            s, shape = self.shift, self.image_shape
            H, W = shape[-2:]
            imgs = xb.reshape(n, -1, H, W)
            pad = np.pad(imgs, ((0, 0), (0, 0), (s, s), (s, s)))
            r = _random.bits(2 * n, seed=self.seed, offset=_SHIFT * _REGION + step * 2 * self.batch_size)
            oy, ox = (r[:n] % (2 * s + 1)).astype(np.intp), (r[n:] % (2 * s + 1)).astype(np.intp)
            rows = (oy[:, None] + np.arange(H))[:, None, :, None]
            cols = (ox[:, None] + np.arange(W))[:, None, None, :]
            chans = np.arange(imgs.shape[1])[None, :, None, None]
            xb = pad[np.arange(n)[:, None, None, None], chans, rows, cols].reshape(n, -1)
        if self.noise_std:
            noise = _random.normal(xb.shape, 0.0, self.noise_std, dtype=xb.dtype, seed=self.seed,
                                   offset=_NOISE * _REGION + step * self.batch_size * xb.shape[1])  # fmt: skip
            xb = xb + noise
        return xb

    def _augment_pipeline(self, xb: np.ndarray, step: int) -> np.ndarray:
        from . import augment

        if step >= 1 << 32:
            raise ValueError(f"augmentation is keyed by the step, which must be < 2**32; this is step {step}")
        if self._pipeline is None:
            ops = ([augment.RandomTranslate(self.shift)] if self.shift else []) + (
                [augment.GaussianNoise(self.noise_std, clip=False)] if self.noise_std else [])  # fmt: skip
            self._pipeline = augment.Pipeline(ops, seed=self.seed, layout="NCHW")
        n = xb.shape[0]
        if self.image_shape is not None:
            c, (h, w) = (self.image_shape[0] if len(self.image_shape) == 3 else 1), self.image_shape[-2:]
        else:
            c, h, w = 1, 1, xb.shape[1]
        nhwc = xb.reshape(n, c, h, w).transpose(0, 2, 3, 1)
        return self._pipeline(nhwc, indices=np.arange(n), epoch=step).reshape(n, -1)

    def train_step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        """One optimizer step on a batch of at most ``batch_size`` rows; returns the batch loss.

        Raises:
            TypeError, ValueError: a batch that :meth:`fit` would refuse, or larger than
                ``batch_size`` (each step's random numbers have room for ``batch_size`` rows).
            FloatingPointError: the loss is not finite (training diverged); the step is not taken.
        """
        xb, yb = self._data(xb, yb, "batch")
        if len(xb) > self.batch_size:
            raise ValueError(f"X_batch has {len(xb)} rows, more than batch_size={self.batch_size}")
        with _small_products(len(xb), self.model):
            return self._train_step(xb, yb)

    def _train_step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        model, opt = self.model, self.optimizer
        self._mode("train")
        step = opt.step_count
        if (step + 1) * self._words_per_step > _REGION:
            raise ValueError(f"the seed's random stream has room for {_REGION // self._words_per_step} steps of "
                             f"batch_size={self.batch_size}; this is step {step}: use a smaller batch_size")  # fmt: skip
        xb = self._augment(xb, step)
        offset = _DROPOUT * _REGION + step * self.batch_size * model.n_hidden_units
        with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported just below
            logits, cache = model._forward(xb, training=True, seed=self.seed, offset=offset)
            loss, dlogits, _ = _softmax_xent(logits, yb)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: the loss is {loss} at optimizer step {step} (lr {self.current_lr():.3g}); "
                "lower lr, or scale the inputs")  # fmt: skip
        grads = model._backward(cache, dlogits, seed=self.seed)
        opt.step(grads)
        if self.max_norm is not None:
            self._max_norm()
        return loss

    def _max_norm(self) -> None:
        """The max-norm constraint on every weight matrix. 16-bit weights are renormed in float32
        (the master copy, when there is one, whose rounding the weight then is; otherwise the
        widened weight) and rounded back to nearest even: a rescaled row's norm can exceed
        ``max_norm`` by that rounding (a relative 2**-9 in bfloat16, 2**-12 in float16)."""
        model = self.model
        if model.dtype == model.compute_dtype:
            for w in model.weights:
                penalties.max_norm_(w, self.max_norm, axis=0)
            return
        masters = self.optimizer.state.get("master")
        for k, w in enumerate(model.weights):
            w32 = masters[2 * k] if masters is not None else w.astype(np.float32)
            penalties.max_norm_(w32, self.max_norm, axis=0)
            w[...] = w32.astype(w.dtype)

    def evaluate(self, X: Any, y: Any, batch_size: int = 2048) -> tuple[float, float]:
        """``(mean loss, accuracy)`` in evaluation mode (no dropout, no augmentation).

        Raises:
            TypeError, ValueError: inputs, labels or ``batch_size`` that :meth:`fit` would refuse.
        """
        X, y = self._data(X, y, "eval")
        return self._evaluate(X, y, _int(batch_size, "batch_size"))

    def _mode(self, mode: str) -> None:
        """Puts an optimizer with modes (a rule with ``train``/``eval`` methods: Schedule-Free,
        whose parameters hold the training point y, and the average x in eval mode) in ``mode``;
        nothing for the others. Steps run in train mode, evaluation in eval mode, so after
        :meth:`fit` the model holds what it is evaluated with."""
        if mode in self.optimizer.rule.methods:
            getattr(self.optimizer, mode)()

    def _evaluate(self, X: np.ndarray, y: np.ndarray, batch_size: int = 2048) -> tuple[float, float]:
        self._mode("eval")
        total, correct = 0.0, 0
        with _small_products(min(batch_size, len(X)), self.model):
            for i in range(0, len(X), batch_size):
                with np.errstate(over="ignore", invalid="ignore"):
                    logits, _ = self.model._forward(X[i : i + batch_size])
                    loss, _, c = _softmax_xent(logits, y[i : i + batch_size])
                total += loss * len(logits)
                correct += c
        return total / len(X), correct / len(X)

    def current_lr(self) -> float:
        """The learning rate of the optimizer's next step."""
        lr = self.optimizer.lr
        return float(lr(self.optimizer.step_count)) if callable(lr) else float(lr)

    # -- the loop -----------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 20,
        validation_data: tuple[Any, Any] | None = None,
        patience: int | None = None,
        restore_best: bool = True,
        callback: Callable[[History], Any] | None = None,
    ) -> History:
        """Train for ``epochs`` more epochs (fewer with early stopping); returns the history.

        Args:
            X, y: training inputs (n, sizes[0]) and integer labels in [0, n_classes).
            epochs: number of passes over the data, each in a fresh order (shuffled from
                ``seed`` and the epoch number).
            validation_data: ``(X_val, y_val)`` measured after each epoch.
            patience: stop when the validation loss has not improved for this many epochs
                (needs validation data); with ``restore_best`` the parameters of the best epoch
                are put back at the end.
            callback: called with the history after each epoch (a progress bar, a log line).

        Raises:
            TypeError: inputs that are not real numbers (bool, complex, object, strings, masked
                arrays), labels that are not integers, ``epochs`` or ``patience`` not an int,
                ``validation_data`` not a pair, ``restore_best`` not a bool, ``callback`` not
                callable.
            ValueError: inputs of the wrong shape or not finite, labels outside [0, n_classes)
                or of the wrong length, negative ``epochs`` or ``patience``, ``patience``
                without validation data.
            FloatingPointError: training diverged (a loss that is not finite); the history up
                to the last finished epoch is in :attr:`history`.
        """
        epochs = _int(epochs, "epochs", low=0)
        patience = None if patience is None else _int(patience, "patience", low=0)
        restore_best = boolean(restore_best, "restore_best")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got callback={callback!r}")
        pair = isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
        if validation_data is not None and not pair:
            raise TypeError(f"validation_data must be a pair (X_val, y_val), got {type(validation_data).__name__}")
        X, y = self._data(X, y, "train")
        val = None if validation_data is None else self._data(*validation_data, "val")
        if patience is not None and val is None:
            raise ValueError("patience (early stopping) needs validation_data")
        h, n, bs = self.history, len(X), self.batch_size
        best_loss, best_params, waited = math.inf, None, 0
        for _ in range(epochs):
            t0 = time.perf_counter()
            order = np.random.default_rng([self.seed, self.epochs_done]).permutation(n)
            with _small_products(min(bs, n), self.model):
                for i in range(0, n, bs):
                    idx = order[i : i + bs]
                    self._train_step(X[idx], y[idx])
            lr = self.optimizer.lr
            lr_used = float(lr(self.optimizer.step_count - 1)) if callable(lr) else float(lr)
            train_loss, train_acc = self._evaluate(X, y)
            val_loss, val_acc = self._evaluate(*val) if val else (None, None)
            for what, loss in (("training", train_loss), ("validation", val_loss)):
                if loss is not None and not math.isfinite(loss):
                    raise FloatingPointError(f"training diverged: the {what} loss is {loss} after epoch "
                                             f"{self.epochs_done + 1}; lower lr, or scale the inputs")  # fmt: skip
            if isinstance(self.optimizer.lr, ReduceOnPlateau):
                self.optimizer.lr.step(val_loss if val else train_loss)
            self.epochs_done += 1
            for k, v in zip(History.COLUMNS, (self.epochs_done, train_loss, train_acc, val_loss, val_acc, lr_used,
                                              time.perf_counter() - t0)):  # fmt: skip
                getattr(h, k).append(v)
            if val and val_loss < best_loss:
                best_loss, h.best_epoch, waited = val_loss, self.epochs_done, 0
                if patience is not None and restore_best:
                    best_params = [p.copy() for p in self.model.params]
                    best_params += [m.copy() for m in self.optimizer.state.get("master", [])]
            else:
                waited += 1
            if callback is not None:
                callback(h)
            if patience is not None and waited > patience:
                h.stopped_early = True
                break
        if best_params is not None:  # the parameters (and the master copy of rounding="master")
            for p, b in zip([*self.model.params, *self.optimizer.state.get("master", [])], best_params):
                np.copyto(p, b)
        return h

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self, path: str) -> None:
        """Write model, optimizer state, epoch count and history to one ``.npz`` file.

        The history's wall-clock ``time`` column is left out, so that two identical runs write
        byte-identical files; :meth:`load_checkpoint` gives the loaded epochs a time of NaN.
        With 16-bit precision the file holds the 16-bit parameters (bfloat16 as its uint16
        bits), the float32 optimizer state including the ``master`` copy of
        ``rounding="master"``, and the precision and rounding (stochastic rounding needs no
        more: its words are a function of the seed and the step count)."""
        sd = self.optimizer.state_dict()
        arrays = {f"opt_{name}_{i}": a for name, arrs in sd["state"].items() for i, a in enumerate(arrs)}
        absent = sorted(k for k, a in arrays.items() if a is None)  # a buffer this tensor does not keep (Adafactor)
        arrays = {k: _stored(a) for k, a in arrays.items() if a is not None}
        meta = {
            "optimizer": self.optimizer_name, "opt_step": sd["step"], "opt_buffers": sorted(sd["state"]),
            "opt_absent": absent,
            "epochs_done": self.epochs_done, "seed": self.seed, "history": self.history.to_dict(include_time=False),
            "plateau": self.optimizer.lr.state_dict() if isinstance(self.optimizer.lr, ReduceOnPlateau) else None,
        }  # fmt: skip
        if "scalars" in sd:
            meta["opt_scalars"] = sd["scalars"]
        if self.precision != "fp32":  # (fp32 checkpoints stay what they were before 16-bit training)
            meta.update(precision=self.precision, rounding=self.rounding)
        if self.state_dtype is not None:
            meta["state_dtype"] = self.state_dtype
        self.model.save(path, trainer_meta=np.array(json.dumps(meta)), **arrays)

    def load_checkpoint(self, path: str) -> None:
        """Restore a :meth:`save_checkpoint` file into this trainer (same model shape, dtype,
        optimizer, precision and rounding): parameters, optimizer state, epoch count, history.
        Training then continues exactly as if it had not stopped.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a checkpoint of this trainer's kind (a plain model, another
                optimizer, precision, rounding, model shape or dtype), a corrupt file, or a NaN
                or inf in a parameter or an optimizer buffer (named); nothing is loaded then.
        """
        with _open_npz(path) as f:
            saved = MLP._from_npz(f, path)
            if "trainer_meta" not in f:
                raise ValueError(f"{path} holds a model but no trainer state (written by MLP.save)")
            meta = _json_member(f, "trainer_meta", path)
            missing = {"optimizer", "opt_step", "opt_buffers", "epochs_done", "history", "plateau"} - set(meta)
            if missing:
                raise ValueError(f"path {path!r}: trainer_meta lacks {', '.join(sorted(missing))}")
            if meta["optimizer"] != self.optimizer_name:
                raise ValueError(f"checkpoint optimizer {meta['optimizer']!r} differs from {self.optimizer_name!r}")
            saved_precision = (meta.get("precision", "fp32"), meta.get("rounding"))
            if saved_precision != (self.precision, self.rounding):
                raise ValueError(f"checkpoint precision {saved_precision[0]!r} (rounding {saved_precision[1]!r}) differs "
                                 f"from this trainer's {self.precision!r} (rounding {self.rounding!r})")  # fmt: skip
            if meta.get("state_dtype") != self.state_dtype:
                raise ValueError(f"checkpoint state_dtype {meta.get('state_dtype')!r} differs from this trainer's "
                                 f"{self.state_dtype!r}")  # fmt: skip
            history = meta["history"]
            if not isinstance(history, dict) or not set(history) <= {*History.COLUMNS, "best_epoch", "stopped_early"} \
                    or not all(isinstance(history.get(k, []), list) for k in History.COLUMNS):  # fmt: skip
                raise ValueError(f"path {path!r}: the history in trainer_meta is not a regtune History")
            if "time" not in history:  # not saved: see save_checkpoint
                history = {**history, "time": [math.nan] * len(history.get("epoch", []))}
            history = History.from_dict(history)
            n = len(self.model.params)
            absent = meta.get("opt_absent", [])
            if not isinstance(absent, list) or not all(isinstance(k, str) for k in absent):
                raise ValueError(f"path {path!r}: opt_absent in trainer_meta must be a list of names")
            own = self.optimizer.state
            state = {
                name: [
                    None if f"opt_{name}_{i}" in absent else _unstored(
                        _member(f, f"opt_{name}_{i}", path),
                        own[name][i].dtype if name in own and i < len(own[name]) and own[name][i] is not None else None,
                    )
                    for i in range(n)
                ]
                for name in meta["opt_buffers"]
            }  # fmt: skip
        if saved.sizes != self.model.sizes:
            raise ValueError(f"checkpoint model sizes {saved.sizes} differ from {self.model.sizes}")
        if saved.dtype != self.model.dtype:
            raise ValueError(f"checkpoint model dtype {saved.dtype} differs from {self.model.dtype}")
        # The optimizer checks its state (NaN and inf included) before it loads any: first, so that
        # a refused checkpoint leaves the parameters as they were too.
        sd = {"step": meta["opt_step"], "state": state}
        if "opt_scalars" in meta:  # a rule with scalar state (Schedule-Free's weight sum, mode)
            sd["scalars"] = meta["opt_scalars"]
        self.optimizer.load_state_dict(sd)
        for p, s in zip(self.model.params, saved.params):
            np.copyto(p, s)
        self.epochs_done = meta["epochs_done"]
        self.history = history
        if meta["plateau"] is not None and isinstance(self.optimizer.lr, ReduceOnPlateau):
            self.optimizer.lr.load_state_dict(meta["plateau"])

