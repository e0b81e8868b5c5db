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

Threads: this trainer's arrays are small, and each step calls many short kernels, so one
thread is fastest; on a busy machine a parallel region also waits for a descheduled thread.
``regtune train`` runs regtune and the BLAS on one thread unless told ``--threads``; from
Python, ``regtune.set_num_threads(1)`` and ``threadpoolctl.threadpool_limits(1)`` do the same.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import optim, penalties
from . import random as _random
from .dropout import alpha_dropout, alpha_dropout_backward, dropout_backward
from .dropout import dropout as _dropout
from .schedules import ReduceOnPlateau

__all__ = ["ACTIVATIONS", "INITIALIZERS", "OPTIMIZERS", "MLP", "Trainer", "History", "softmax_cross_entropy"]

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "gelu", "selu")
INITIALIZERS = (
    "auto", "kaiming_normal", "kaiming_uniform", "he_normal", "he_uniform", "xavier_normal", "xavier_uniform",
    "glorot_normal", "glorot_uniform", "lecun_normal", "lecun_uniform", "orthogonal",
)  # fmt: skip
OPTIMIZERS: dict[str, type[optim.Optimizer]] = {
    "sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop, "adagrad": optim.Adagrad,
}  # fmt: skip

LEAKY_SLOPE = 0.01  # torch's default negative_slope
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_GELU_C = math.sqrt(2.0 / math.pi)

# Each consumer of random numbers reads its own region of the seed's Philox stream, so that
# dropout, noise and shifts never share words: region r starts at word r * 2**60, and step s
# of a consumer starts at s * (words per step) inside its region.
_REGION = 1 << 60
_DROPOUT, _NOISE, _SHIFT = 0, 1, 2


def _choice(value: str, valid: Sequence[str], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(valid)}")
    return value


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
    """
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
        dtype: float32 (default) or float64.
        seed: weights of layer ``i`` are drawn with ``seed`` at offset ``i * 2**40``.

    Raises:
        ValueError: an unknown activation, initializer or dropout kind (the message lists the
            valid names), bad sizes or dropout probabilities.
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
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must hold at least two positive ints (inputs, ..., classes), got sizes={sizes!r}")
        self.sizes = sizes
        self.activation = _choice(activation, ACTIVATIONS, "activation")
        self.init = _choice(init, INITIALIZERS, "initializer")
        n_hidden = len(sizes) - 2
        ps = [float(dropout)] * n_hidden if np.isscalar(dropout) else [float(p) for p in dropout]
        if len(ps) != n_hidden:
            raise ValueError(f"dropout needs one probability per hidden layer ({n_hidden}), got dropout={dropout!r}")
        for p in ps:
            if not 0.0 <= p < 1.0:
                raise ValueError(f"dropout probabilities must be in [0, 1), got dropout={dropout!r}")
        self.dropout = ps
        kind = _choice(dropout_kind, ("auto", "dropout", "alpha"), "dropout kind")
        self.dropout_kind = ("alpha" if activation == "selu" else "dropout") if kind == "auto" else kind
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.seed = int(seed)
        self.weights = [self._init_weight((o, i), k) for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.biases = [np.zeros(o, self.dtype) for o in sizes[1:]]

    def _init_weight(self, shape: tuple[int, int], layer: int) -> np.ndarray:
        from . import init as _init

        name, act = self.init, self.activation
        if name == "auto":
            name = {"tanh": "xavier_normal", "selu": "lecun_normal"}.get(act, "kaiming_normal")
        kw: dict[str, Any] = {"dtype": self.dtype, "seed": self.seed, "offset": layer << 40}
        gain_name = "relu" if act == "gelu" else act
        if name.startswith(("kaiming", "he_")):
            kw["nonlinearity"] = gain_name
            if act == "leaky_relu":
                kw["a"] = LEAKY_SLOPE
        elif name.startswith(("xavier", "glorot")) or name == "orthogonal":
            kw["gain"] = _init.calculate_gain(gain_name, LEAKY_SLOPE if act == "leaky_relu" else None)
        return getattr(_init, name)(shape, **kw)

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
        """
        cache = []
        h = x
        last = len(self.weights) - 1
        pos = offset
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
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
        gradient of the logits and the forward's cache (``seed`` as given to the forward)."""
        grads: list[np.ndarray] = [None] * (2 * len(self.weights))  # type: ignore[list-item]
        dh = dlogits
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
                dh = dh @ self.weights[k]
        return [np.ascontiguousarray(g, dtype=self.dtype) for g in grads]

    def predict_logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Logits in evaluation mode (no dropout), in batches."""
        x = np.asarray(x, self.dtype)
        return np.concatenate([self.forward(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)] or
                              [np.empty((0, self.sizes[-1]), self.dtype)])  # fmt: skip

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class of each row of ``x``."""
        return self.predict_logits(x).argmax(axis=1)

    def save(self, path: str, **arrays: Any) -> None:
        """Write the model (config and parameters) to a ``.npz`` file, with any extra arrays."""
        params = {f"param_{i}": p for i, p in enumerate(self.params)}
        np.savez(path, model_config=np.array(json.dumps(self.config())), **params, **arrays)

    @classmethod
    def load(cls, path: str) -> "MLP":
        """The model :meth:`save` (or :meth:`Trainer.save_checkpoint`) wrote, parameters exact."""
        with np.load(path, allow_pickle=False) as f:
            model = cls._from_npz(f)
        return model

    @classmethod
    def _from_npz(cls, f: Any) -> "MLP":
        if "model_config" not in f:
            raise ValueError("not a regtune checkpoint: no model_config in the file")
        model = cls(**json.loads(str(f["model_config"])))
        for i, p in enumerate(model.params):
            saved = f[f"param_{i}"]
            if saved.shape != p.shape or saved.dtype != p.dtype:
                raise ValueError(f"param_{i} has shape {saved.shape} {saved.dtype}, expected {p.shape} {p.dtype}")
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
            each direction (zero fill); needs ``image_shape``.
        image_shape: ``(H, W)`` or ``(C, H, W)`` whose product is the number of inputs.
        seed: the seed of every random choice: the per-epoch shuffle, dropout masks, noise,
            shifts.
        optimizer_kwargs: other arguments for the optimizer (``momentum=``, ``betas=``...).
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
    ) -> None:
        self.model = model
        self.optimizer_name = _choice(optimizer, tuple(OPTIMIZERS), "optimizer")
        self.optimizer = OPTIMIZERS[optimizer](
            model.params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm,
            **(optimizer_kwargs or {}),
        )  # fmt: skip
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got max_norm={max_norm!r}")
        self.max_norm = max_norm
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size!r}")
        self.batch_size = int(batch_size)
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got noise_std={noise_std!r}")
        self.noise_std = float(noise_std)
        self.shift = int(shift)
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0, got shift={shift!r}")
        self.image_shape = None if image_shape is None else tuple(int(d) for d in image_shape)
        if self.shift and self.image_shape is None:
            raise ValueError("shift needs image_shape, the (H, W) or (C, H, W) of each input")
        if self.image_shape is not None and (
            len(self.image_shape) not in (2, 3) or math.prod(self.image_shape) != model.sizes[0]
        ):
            raise ValueError(f"image_shape {self.image_shape} does not hold the model's {model.sizes[0]} inputs")
        self.seed = int(seed)
        self.epochs_done = 0
        self.history = History()

    # -- data checks ------------------------------------------------------------------------

    def _data(self, X: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X)
        y = np.asarray(y)
        n_in, n_out = self.model.sizes[0], self.model.sizes[-1]
        if X.ndim != 2 or X.shape[1] != n_in:
            raise ValueError(f"X_{name} must have shape (n, {n_in}), got {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y_{name} must have shape ({X.shape[0]},) to match X_{name}, got {y.shape}")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
                raise ValueError(f"y_{name} must hold integer class labels, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= n_out):
            bad = y.min() if y.min() < 0 else y.max()
            raise ValueError(f"y_{name} holds label {int(bad)}, outside [0, {n_out}) for a model with {n_out} classes")
        if X.shape[0] == 0:
            raise ValueError(f"X_{name} is empty")
        return np.ascontiguousarray(X, self.model.dtype), y.astype(np.intp)

    # -- one step -----------------------------------------------------------------------------

    def _augment(self, xb: np.ndarray, step: int) -> np.ndarray:
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

    def train_step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        """One optimizer step on a batch (already checked); returns the batch loss."""
        model, opt = self.model, self.optimizer
        step = opt.step_count
        xb = self._augment(xb, step)
        offset = _DROPOUT * _REGION + step * self.batch_size * model.n_hidden_units
        logits, cache = model.forward(xb, training=True, seed=self.seed, offset=offset)
        loss, dlogits, _ = softmax_cross_entropy(logits, yb)
        grads = model.backward(cache, dlogits, seed=self.seed)
        opt.step(grads)
        if self.max_norm is not None:
            for w in model.weights:
                penalties.max_norm_(w, self.max_norm, axis=0)
        return loss

    def evaluate(self, X: Any, y: Any, batch_size: int = 2048) -> tuple[float, float]:
        """``(mean loss, accuracy)`` in evaluation mode (no dropout, no augmentation)."""
        X, y = self._data(X, y, "eval")
        return self._evaluate(X, y, batch_size)

    def _evaluate(self, X: np.ndarray, y: np.ndarray, batch_size: int = 2048) -> tuple[float, float]:
        total, correct = 0.0, 0
        for i in range(0, len(X), batch_size):
            logits, _ = self.model.forward(X[i : i + batch_size])
            loss, _, c = softmax_cross_entropy(logits, y[i : i + batch_size])
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
            ValueError: inputs of the wrong shape, labels that are not integers in
                [0, n_classes), ``patience`` without validation data.
        """
        X, y = self._data(X, y, "train")
        val = None if validation_data is None else self._data(*validation_data, "val")
        if patience is not None and val is None:
            raise ValueError("patience (early stopping) needs validation_data")
        h, n, bs = self.history, len(X), self.batch_size
        best_loss, best_params, waited = math.inf, None, 0
        for _ in range(int(epochs)):
            t0 = time.perf_counter()
            order = np.random.default_rng([self.seed, self.epochs_done]).permutation(n)
            for i in range(0, n, bs):
                idx = order[i : i + bs]
                self.train_step(X[idx], y[idx])
            lr = self.optimizer.lr
            lr_used = float(lr(self.optimizer.step_count - 1)) if callable(lr) else float(lr)
            train_loss, train_acc = self._evaluate(X, y)
            val_loss, val_acc = self._evaluate(*val) if val else (None, None)
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
            else:
                waited += 1
            if callback is not None:
                callback(h)
            if patience is not None and waited > patience:
                h.stopped_early = True
                break
        if best_params is not None:
            for p, b in zip(self.model.params, best_params):
                np.copyto(p, b)
        return h

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self, path: str) -> None:
        """Write model, optimizer state, epoch count and history to one ``.npz`` file."""
        sd = self.optimizer.state_dict()
        arrays = {f"opt_{name}_{i}": a for name, arrs in sd["state"].items() for i, a in enumerate(arrs)}
        meta = {
            "optimizer": self.optimizer_name, "opt_step": sd["step"], "opt_buffers": sorted(sd["state"]),
            "epochs_done": self.epochs_done, "seed": self.seed, "history": self.history.to_dict(),
            "plateau": self.optimizer.lr.state_dict() if isinstance(self.optimizer.lr, ReduceOnPlateau) else None,
        }  # fmt: skip
        self.model.save(path, trainer_meta=np.array(json.dumps(meta)), **arrays)

    def load_checkpoint(self, path: str) -> None:
        """Restore a :meth:`save_checkpoint` file into this trainer (same model shape and
        optimizer): parameters, optimizer state, epoch count, history. Training then continues
        exactly as if it had not stopped."""
        with np.load(path, allow_pickle=False) as f:
            saved = MLP._from_npz(f)
            if "trainer_meta" not in f:
                raise ValueError(f"{path} holds a model but no trainer state (written by MLP.save)")
            meta = json.loads(str(f["trainer_meta"]))
            if meta["optimizer"] != self.optimizer_name:
                raise ValueError(f"checkpoint optimizer {meta['optimizer']!r} differs from {self.optimizer_name!r}")
            state = {name: [f[f"opt_{name}_{i}"] for i in range(len(self.model.params))] for name in meta["opt_buffers"]}
        if saved.sizes != self.model.sizes:
            raise ValueError(f"checkpoint model sizes {saved.sizes} differ from {self.model.sizes}")
        for p, s in zip(self.model.params, saved.params):
            np.copyto(p, s)
        self.optimizer.load_state_dict({"step": meta["opt_step"], "state": state})
        self.epochs_done = meta["epochs_done"]
        self.history = History.from_dict(meta["history"])
        if meta["plateau"] is not None and isinstance(self.optimizer.lr, ReduceOnPlateau):
            self.optimizer.lr.load_state_dict(meta["plateau"])

