"""regtune.trainer: gradients against finite differences (float64), the training loop end to
end on a tiny problem, determinism, early stopping, augmentation and checkpoints."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from regtune import schedules
from regtune.trainer import ACTIVATIONS, MLP, History, Trainer, softmax_cross_entropy


def blobs(n=240, d=16, k=3, seed=0):
    """k Gaussian clusters in d dimensions: an easy, tiny classification problem."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, (k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(0, 1.0, (n, d))
    return X.astype(np.float32), y


def numeric_grads(model, loss, eps=1e-6):
    out = []
    for p in model.params:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = loss()
            p[i] = old - eps
            down = loss()
            p[i] = old
            g[i] = (up - down) / (2 * eps)
        out.append(g)
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_gradients_match_finite_differences(activation, p):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(7, 5)), rng.integers(0, 3, 7)
    model = MLP([5, 6, 4, 3], activation=activation, dropout=p, dtype=np.float64, seed=3)

    def loss():  # training mode: the same seed and offset draw the same dropout masks
        return softmax_cross_entropy(model.forward(X, training=True, seed=11, offset=5)[0], y)[0]

    logits, cache = model.forward(X, training=True, seed=11, offset=5)
    _, dlogits, _ = softmax_cross_entropy(logits, y)
    grads = model.backward(cache, dlogits, seed=11)
    for i, (g, n) in enumerate(zip(grads, numeric_grads(model, loss))):
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8, err_msg=f"param {i}")


def test_dropout_is_applied_and_regenerated():
    model = MLP([4, 200, 2], dropout=0.5, dtype=np.float64, seed=0)
    X = np.ones((3, 4))
    _, cache = model.forward(X, training=True, seed=7, offset=0)
    assert cache[0][3] == (0.5, 0)  # the position of the mask, not the mask
    a, b = model.forward(X, training=True, seed=7)[0], model.forward(X, training=True, seed=8)[0]
    assert not np.array_equal(a, b)
    assert np.array_equal(model.forward(X)[0], model.forward(X)[0])  # eval mode: no dropout


def test_selu_uses_alpha_dropout():
    assert MLP([4, 8, 2], activation="selu", dropout=0.1).dropout_kind == "alpha"
    assert MLP([4, 8, 2], activation="relu", dropout=0.1).dropout_kind == "dropout"


@pytest.mark.parametrize("init", ["auto", "kaiming_uniform", "xavier_normal", "lecun_normal", "orthogonal"])
def test_initializers_by_name(init):
    model = MLP([64, 128, 10], init=init, seed=0)
    assert model.weights[0].shape == (128, 64) and model.weights[0].dtype == np.float32
    assert 0.01 < model.weights[0].std() < 0.5 and not model.biases[0].any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(activation="swish"), "unknown activation 'swish'; choose one of relu, leaky_relu"),
        (dict(init="he_normalz"), "unknown initializer 'he_normalz'; choose one of auto"),
        (dict(dropout=1.0), "dropout probabilities must be in \\[0, 1\\)"),
        (dict(dropout=[0.1, 0.2]), "one probability per hidden layer \\(1\\)"),
    ],
)
def test_model_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP([4, 8, 2], **kwargs)


def test_trainer_errors():
    model = MLP([4, 8, 3])
    with pytest.raises(ValueError, match="unknown optimizer 'adamw2'; choose one of sgd"):
        Trainer(model, optimizer="adamw2")
    with pytest.raises(ValueError, match="shift needs image_shape"):
        Trainer(model, shift=1)
    t = Trainer(model)
    X = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match="X_train must have shape \\(n, 4\\), got \\(5, 3\\)"):
        t.fit(X[:, :3], np.zeros(5, int), epochs=1)
    with pytest.raises(ValueError, match="y_train holds label 3, outside \\[0, 3\\)"):
        t.fit(X, np.array([0, 1, 2, 3, 0]), epochs=1)
    with pytest.raises(ValueError, match="y_train holds label -1"):
        t.fit(X, np.array([0, 1, 2, -1, 0]), epochs=1)
    with pytest.raises(ValueError, match="patience \\(early stopping\\) needs validation_data"):
        t.fit(X, np.zeros(5, int), epochs=1, patience=2)


def make_trainer(seed=0, **kw):
    model = MLP([16, 32, 3], dropout=kw.pop("dropout", 0.2), seed=seed)
    kw = {"optimizer": "adamw", "lr": schedules.cosine_annealing(1e-2, 4 * 8), "batch_size": 32,
          "noise_std": 0.1, "max_norm": 3.0, "max_grad_norm": 10.0, "seed": seed, **kw}  # fmt: skip
    return Trainer(model, **kw)


def test_trains_end_to_end_and_is_deterministic():
    X, y = blobs()
    Xv, yv = blobs(90, seed=0)[0][:60], blobs(90, seed=0)[1][:60]
    h1 = make_trainer().fit(X, y, epochs=4, validation_data=(Xv, yv))
    h2 = make_trainer().fit(X, y, epochs=4, validation_data=(Xv, yv))
    assert len(h1) == 4 and h1.train_acc[-1] > 0.9 and h1.val_acc[-1] > 0.9
    assert h1.train_loss[-1] < h1.train_loss[0]
    assert h1.to_dict(include_time=False) == h2.to_dict(include_time=False)
    assert "time" not in h1.to_dict(include_time=False) and len(h1.time) == 4
    h3 = make_trainer(seed=1).fit(X, y, epochs=4, validation_data=(Xv, yv))
    assert h3.to_dict(include_time=False) != h1.to_dict(include_time=False)
    assert h1.lr[-1] == pytest.approx(schedules.cosine_annealing(1e-2, 32)(31))


def test_penalties_and_max_norm():
    X, y = blobs()
    t = make_trainer(optimizer="sgd", lr=0.1, prox_l1=0.05, max_norm=0.5, dropout=0.0)
    t.fit(X, y, epochs=2)
    w = t.model.weights[0]
    assert (w == 0).mean() > 0.1  # proximal L1 gives exact zeros
    assert np.linalg.norm(w, axis=1).max() <= 0.5 + 1e-5  # max-norm on each unit's incoming weights


def test_early_stopping_restores_best():
    X, y = blobs(60)
    Xv, yv = blobs(60, seed=5)  # other centers: validation gets worse as training goes on
    t = make_trainer(lr=0.05, dropout=0.0)
    h = t.fit(X, y, epochs=30, validation_data=(Xv, yv), patience=2)
    assert h.stopped_early and len(h) < 30
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1
    assert t.evaluate(Xv, yv)[0] == pytest.approx(min(h.val_loss), rel=1e-6)


def test_reduce_on_plateau_is_stepped_per_epoch():
    X, y = blobs(60)
    t = make_trainer(lr=schedules.ReduceOnPlateau(1e-2, patience=0, factor=0.5, threshold=0.99))
    h = t.fit(X, y, epochs=3)
    assert h.lr[0] == 1e-2 and h.lr[-1] < 1e-2


def test_shift_augmentation():
    model = MLP([2 * 4 * 4, 8, 2])
    t = Trainer(model, shift=1, image_shape=(2, 4, 4), seed=0)
    x = np.arange(2 * 32, dtype=np.float32).reshape(2, 32) + 1
    out = t._augment(x, step=0)
    for img, src in zip(out.reshape(2, 2, 4, 4), x.reshape(2, 2, 4, 4)):
        # a shift by at most one pixel each way, with zero fill: some (dy, dx) reproduces it
        ok = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                pad = np.pad(src, ((0, 0), (1, 1), (1, 1)))
                ok |= np.array_equal(img, pad[:, 1 + dy : 5 + dy, 1 + dx : 5 + dx])
        assert ok
    assert np.array_equal(out, t._augment(x, step=0)) and not np.array_equal(t._augment(x, step=1), out)


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor", "lars"])  # adafactor: buffers per tensor kind
def test_checkpoint_round_trip_and_resume(tmp_path, optimizer):
    X, y = blobs()
    full = make_trainer(optimizer=optimizer)
    full.fit(X, y, epochs=4)
    part = make_trainer(optimizer=optimizer)
    part.fit(X, y, epochs=2)
    path = str(tmp_path / "ckpt.npz")
    part.save_checkpoint(path)
    resumed = make_trainer(seed=0, optimizer=optimizer)
    resumed.load_checkpoint(path)
    resumed.fit(X, y, epochs=2)
    for a, b in zip(full.model.params, resumed.model.params):
        assert np.array_equal(a, b)  # resuming continues the same run exactly
    assert resumed.history.to_dict(include_time=False) == full.history.to_dict(include_time=False)
    loaded = MLP.load(path)
    assert loaded.config() == part.model.config()
    assert all(np.array_equal(a, b) for a, b in zip(loaded.params, part.model.params))
    model_only = str(tmp_path / "model.npz")
    part.model.save(model_only)
    with pytest.raises(ValueError, match="no trainer state"):
        make_trainer().load_checkpoint(model_only)


def test_checkpoints_are_reproducible_files(tmp_path):
    """Two identical runs write byte-identical checkpoints: no wall times in the history, and a
    fixed date on every member of the archive (numpy.savez stamps the current time)."""
    X, y = blobs()
    paths = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for path in paths:
        t = make_trainer()
        t.fit(X, y, epochs=2)
        t.save_checkpoint(str(path))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with zipfile.ZipFile(paths[0]) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "time" not in json.loads(str(np.load(paths[0])["trainer_meta"]))["history"]
    resumed = make_trainer()
    resumed.load_checkpoint(str(paths[0]))
    resumed.fit(X, y, epochs=1)
    times = resumed.history.time
    assert len(times) == 3 and np.isnan(times[:2]).all() and times[2] > 0  # the loaded epochs' times are unknown


def test_save_appends_npz_like_numpy(tmp_path):
    model = MLP([4, 8, 3], seed=1)
    model.save(str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]
    buf = io.BytesIO()
    model.save(buf)
    assert buf.getvalue() == (tmp_path / "m.npz").read_bytes()
    buf.seek(0)
    assert all(np.array_equal(a, b) for a, b in zip(MLP.load(buf).params, model.params))


def test_history_round_trip():
    h = History(epoch=[1], train_loss=[0.5], train_acc=[0.8], val_loss=[0.6], val_acc=[0.7], lr=[0.1], time=[1.0])
    assert History.from_dict(h.to_dict()) == h


# ------------------------------------------------------------------------------ hostile input
# Every case asserts the exception type and that the message names the argument.

from hypothesis import given, settings
from hypothesis import strategies as st

NAN, INF = float("nan"), float("inf")
F32MAX = float(np.finfo(np.float32).max)

BAD_SIZES = [
    ([4.7, 16.9, 2.5], TypeError, r"sizes\[0\] must be an int, got sizes\[0\]=4.7"),
    ([4, 16.0, 2], TypeError, r"sizes\[1\] must be an int, got sizes\[1\]=16.0"),
    ([4, np.float64(8), 2], TypeError, r"sizes\[1\] must be an int"),
    ([4, True, 2], TypeError, r"sizes\[1\] must be an int, got sizes\[1\]=True"),
    ([4, "8", 2], TypeError, r"sizes\[1\] must be an int, got sizes\[1\]='8'"),
    ([4, None, 2], TypeError, r"sizes\[1\] must be an int"),
    ([4, NAN, 2], TypeError, r"sizes\[1\] must be an int"),
    ([4, [8], 2], TypeError, r"sizes\[1\] must be an int"),
    (np.array([4.0, 8.0, 2.0]), TypeError, r"sizes\[0\] must be an int"),
    ("482", TypeError, r"sizes must be a sequence of ints, got sizes='482'"),
    ({4: 8, 8: 2}, TypeError, r"sizes must be a sequence of ints"),
    ({4, 8, 2}, TypeError, r"sizes must be a sequence of ints"),
    (None, TypeError, r"sizes must be a sequence of ints, got sizes=None"),
    (5, TypeError, r"sizes must be a sequence of ints, got sizes=5"),
    (np.array(5), TypeError, r"sizes must be a sequence of ints"),
    ([4], ValueError, r"sizes must hold at least two positive ints .*got sizes=\[4\]"),
    ([], ValueError, r"sizes must hold at least two positive ints"),
    ([4, 0, 2], ValueError, r"sizes must hold at least two positive ints .*got sizes=\[4, 0, 2\]"),
    ([4, -8, 2], ValueError, r"sizes must hold at least two positive ints"),
    ([0, 2], ValueError, r"sizes must hold at least two positive ints"),
    ([4, 10**7, 10**7, 2], MemoryError, r"MLP\(sizes=\[4, 10000000, 10000000, 2\]\) with .* parameters needs .* GiB"),
    ([2**40, 2], MemoryError, r"MLP\(sizes=.*needs .* GiB, more than the .* of memory available"),
]  # fmt: skip


@pytest.mark.parametrize("sizes, exc, match", BAD_SIZES, ids=[repr(s)[:30] for s, _, _ in BAD_SIZES])
def test_hostile_sizes(sizes, exc, match):
    with pytest.raises(exc, match=match):
        MLP(sizes)


def test_integer_sizes_of_any_int_type():
    assert MLP(np.array([4, 8, 2])).sizes == [4, 8, 2]
    assert MLP((np.int32(4), np.uint8(8), 2)).sizes == [4, 8, 2]
    assert all(type(s) is int for s in MLP(np.array([4, 8, 2])).sizes)


BAD_MODEL_KW = [
    (dict(activation=None), TypeError, r"activation must be a str naming the activation, got activation=None"),
    (dict(activation=["relu"]), TypeError, r"activation must be a str"),
    (dict(activation=b"relu"), TypeError, r"activation must be a str"),
    (dict(activation="ReLU"), ValueError, r"unknown activation 'ReLU'"),
    (dict(init=3), TypeError, r"init must be a str naming the initializer, got init=3"),
    (dict(init="xavier"), ValueError, r"unknown initializer 'xavier'"),
    (dict(dropout_kind=None), TypeError, r"dropout_kind must be a str naming the dropout kind"),
    (dict(dropout_kind="gaussian"), ValueError, r"unknown dropout kind 'gaussian'"),
    (dict(dropout=NAN), ValueError, r"dropout probabilities must be in \[0, 1\), got dropout=nan"),
    (dict(dropout=INF), ValueError, r"dropout probabilities must be in \[0, 1\), got dropout=inf"),
    (dict(dropout=-INF), ValueError, r"got dropout=-inf"),
    (dict(dropout=-0.1), ValueError, r"got dropout=-0.1"),
    (dict(dropout=1e308), ValueError, r"got dropout=1e\+308"),
    (dict(dropout=1), ValueError, r"got dropout=1"),
    (dict(dropout=np.float32(1.0)), ValueError, r"got dropout="),
    (dict(dropout="0.5"), TypeError, r"dropout must be a float or a list of floats, got dropout='0.5'"),
    (dict(dropout=None), TypeError, r"dropout must be a float or a list of floats, got dropout=None"),
    (dict(dropout=True), TypeError, r"dropout must be a float or a list of floats, got dropout=True"),
    (dict(dropout={"p": 0.1}), TypeError, r"dropout must be a float or a list"),
    (dict(dropout=0.1 + 0j), TypeError, r"dropout must be a float or a list"),
    (dict(dropout=["0.1"]), TypeError, r"dropout\[0\] must be a float, got dropout\[0\]='0.1'"),
    (dict(dropout=[None]), TypeError, r"dropout\[0\] must be a float"),
    (dict(dropout=[False]), TypeError, r"dropout\[0\] must be a float, got dropout\[0\]=False"),
    (dict(dropout=[NAN]), ValueError, r"dropout probabilities must be in \[0, 1\), got dropout\[0\]=nan"),
    (dict(dropout=[1.5]), ValueError, r"got dropout\[0\]=1.5"),
    (dict(dropout=np.array([0.9999999, 1.0])), ValueError, r"one probability per hidden layer \(1\)"),
    (dict(dtype=np.int64), TypeError, r"dtype must be float32, float64, bfloat16 or float16, got int64"),
    (dict(dtype=np.int16), TypeError, r"dtype must be float32, float64, bfloat16 or float16, got int16"),
    (dict(dtype=np.complex64), TypeError, r"dtype must be float32, float64, bfloat16 or float16, got complex64"),
    (dict(dtype="garbage"), TypeError, r"dtype must be float32, float64, bfloat16 or float16, got 'garbage'"),
    (dict(seed=1.5), TypeError, r"seed must be an int, got 1.5"),
    (dict(seed=1.0), TypeError, r"seed must be an int, got 1.0"),
    (dict(seed="1"), TypeError, r"seed must be an int"),
    (dict(seed=None), TypeError, r"seed must be an int"),
    (dict(seed=True), TypeError, r"seed must be an int"),
    (dict(seed=-1), ValueError, r"seed must be >= 0, got -1"),
    (dict(seed=2**64), ValueError, r"seed must be < 18446744073709551616"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, exc, match", BAD_MODEL_KW, ids=[repr(k)[:40] for k, _, _ in BAD_MODEL_KW])
def test_hostile_model_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP([4, 8, 2], **kwargs)


def test_dropout_accepts_numpy_scalars():
    assert MLP([4, 8, 2], dropout=np.float32(0.5)).dropout == [0.5]
    assert MLP([4, 8, 2], dropout=np.array(0.25)).dropout == [0.25]
    assert MLP([4, 8, 8, 2], dropout=np.array([0.1, 0.2])).dropout == pytest.approx([0.1, 0.2])
    assert MLP([4, 2], dropout=0.3).dropout == []  # no hidden layer: nothing to drop
    with pytest.raises(ValueError, match=r"got dropout=1.0"):
        MLP([4, 2], dropout=1.0)  # still checked


BAD_TRAINER_KW = [
    (dict(batch_size=2.9), TypeError, r"batch_size must be an int, got batch_size=2.9"),
    (dict(batch_size=32.0), TypeError, r"batch_size must be an int, got batch_size=32.0"),
    (dict(batch_size=True), TypeError, r"batch_size must be an int, got batch_size=True"),
    (dict(batch_size="32"), TypeError, r"batch_size must be an int"),
    (dict(batch_size=None), TypeError, r"batch_size must be an int"),
    (dict(batch_size=np.float64(8)), TypeError, r"batch_size must be an int"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1, got batch_size=0"),
    (dict(batch_size=-5), ValueError, r"batch_size must be >= 1, got batch_size=-5"),
    (dict(noise_std=NAN), ValueError, r"noise_std must be finite, got noise_std=nan"),
    (dict(noise_std=INF), ValueError, r"noise_std must be finite"),
    (dict(noise_std=-1.0), ValueError, r"noise_std must be in \[0, "),
    (dict(noise_std=-1e-320), ValueError, r"noise_std must be in \[0, "),
    (dict(noise_std=F32MAX), ValueError, r"noise_std must be in \[0, 2.1"),
    (dict(noise_std="0.1"), TypeError, r"noise_std must be a real number"),
    (dict(noise_std=None), TypeError, r"noise_std must be a real number"),
    (dict(max_norm=0.0), ValueError, r"max_norm must be in \(0, inf\), got max_norm=0.0"),
    (dict(max_norm=-1), ValueError, r"max_norm must be in \(0, inf\)"),
    (dict(max_norm=NAN), ValueError, r"max_norm must be finite"),
    (dict(max_norm=INF), ValueError, r"max_norm must be finite"),
    (dict(max_norm="1"), TypeError, r"max_norm must be a real number"),
    (dict(shift=1.5), TypeError, r"shift must be an int, got shift=1.5"),
    (dict(shift=True, image_shape=(4, 4)), TypeError, r"shift must be an int, got shift=True"),
    (dict(shift=-1), ValueError, r"shift must be >= 0, got shift=-1"),
    (dict(shift=1), ValueError, r"shift needs image_shape"),
    (dict(shift=4, image_shape=(4, 4)), ValueError, r"shift must be < the image's height and width \(4, 4\), got shift=4"),
    (dict(shift=10**9, image_shape=(1, 4, 4)), ValueError, r"shift must be < the image's"),
    (dict(image_shape=(4.0, 4.0)), TypeError, r"image_shape\[0\] must be an int, got image_shape\[0\]=4.0"),
    (dict(image_shape="44"), TypeError, r"image_shape must be a sequence of ints"),
    (dict(image_shape=16), TypeError, r"image_shape must be a sequence of ints, got image_shape=16"),
    (dict(image_shape={4: 4}), TypeError, r"image_shape must be a sequence of ints"),
    (dict(image_shape=(16,)), ValueError, r"image_shape \(16,\) does not hold the model's 16 inputs"),
    (dict(image_shape=(2, 2, 2, 2)), ValueError, r"image_shape \(2, 2, 2, 2\) does not hold"),
    (dict(image_shape=(-4, -4)), ValueError, r"image_shape \(-4, -4\) does not hold"),
    (dict(image_shape=(3, 5)), ValueError, r"image_shape \(3, 5\) does not hold the model's 16 inputs"),
    (dict(seed=0.5), TypeError, r"seed must be an int, got 0.5"),
    (dict(seed=-3), ValueError, r"seed must be >= 0, got -3"),
    (dict(seed=2**64), ValueError, r"seed must be < "),
    (dict(optimizer=None), TypeError, r"optimizer must be a str naming the optimizer, got optimizer=None"),
    (dict(optimizer="SGD"), ValueError, r"unknown optimizer 'SGD'"),
    (dict(optimizer_kwargs=[("momentum", 0.9)]), TypeError, r"optimizer_kwargs must be a dict or None"),
    (dict(optimizer_kwargs="momentum"), TypeError, r"optimizer_kwargs must be a dict or None"),
    (dict(lr=NAN), ValueError, r"lr must be finite"),
    (dict(lr=-1.0), ValueError, r"lr must be in \[0, inf\)"),
    (dict(weight_decay=INF), ValueError, r"weight_decay must be finite"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, exc, match", BAD_TRAINER_KW, ids=[repr(k)[:40] for k, _, _ in BAD_TRAINER_KW])
def test_hostile_trainer_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Trainer(MLP([16, 8, 3]), **kwargs)


@pytest.mark.parametrize("model", [None, {"sizes": [4, 2]}, "MLP", [np.zeros((2, 4))]])
def test_trainer_needs_a_model(model):
    with pytest.raises(TypeError, match=r"model must be a regtune.trainer.MLP"):
        Trainer(model)


def test_trainer_refuses_what_cannot_be_trained_in_memory(monkeypatch):
    import regtune.trainer as tr

    model = MLP([4, 64, 3])
    monkeypatch.setattr(tr, "_available_bytes", lambda: 2 * sum(p.nbytes for p in model.params))
    with pytest.raises(MemoryError, match=r"training MLP\(4 -> 64 -> 3.*\(gradients and optimizer state\) needs"):
        Trainer(model)
    with pytest.raises(MemoryError, match=r"training MLP\(4 -> 64 -> 3.* in bf16 \(gradients and optimizer state\)"):
        Trainer(model, precision="bf16", rounding="master")
    assert model.dtype == np.float32  # not converted


X3 = np.random.default_rng(3).normal(size=(12, 4)).astype(np.float32)
Y3 = np.arange(12) % 3


def put(X, i, j, v, dtype=np.float64):
    X = X.astype(dtype)
    X[i, j] = v
    return X


BAD_X = [
    (put(X3, 2, 1, NAN), ValueError, r"X_train\[2, 1\] = nan is not finite"),
    (put(X3, 0, 0, INF), ValueError, r"X_train\[0, 0\] = inf is not finite"),
    (put(X3, 11, 3, -INF), ValueError, r"X_train\[11, 3\] = -inf is not finite"),
    (put(X3, 5, 2, 1e39), ValueError, r"X_train\[5, 2\] = 1e\+39 is beyond the range of float32"),
    (put(X3, 5, 2, -1e300), ValueError, r"X_train\[5, 2\] = -1e\+300 is beyond the range of float32"),
    (put(X3, 1, 1, NAN, np.float16), ValueError, r"X_train\[1, 1\] = nan is not finite"),
    (X3.astype(np.complex128), TypeError, r"X_train must hold real numbers \(ints or floats\), got dtype complex128"),
    (X3.astype(object), TypeError, r"X_train must hold real numbers .*got dtype object"),
    (X3.astype(str), TypeError, r"X_train must hold real numbers .*got dtype <U"),
    (X3 > 0, TypeError, r"X_train must hold real numbers .*got dtype bool"),
    (np.ma.masked_array(X3, mask=X3 > 1), TypeError, r"X_train must be a plain numpy.ndarray, got a numpy.ma.MaskedArray"),
    ([[1.0, 2.0], [3.0]], ValueError, r"X_train must be an array of numbers"),
    (None, TypeError, r"X_train must hold real numbers .*got dtype object"),
    (X3[:, :3], ValueError, r"X_train must have shape \(n, 4\), got \(12, 3\)"),
    (X3[0], ValueError, r"X_train must have shape \(n, 4\), got \(4,\)"),
    (X3[None], ValueError, r"X_train must have shape \(n, 4\), got \(1, 12, 4\)"),
    (np.float32(1.0), ValueError, r"X_train must have shape \(n, 4\), got \(\)"),
]  # fmt: skip


@pytest.mark.parametrize("X, exc, match", BAD_X, ids=[f"X{i}" for i in range(len(BAD_X))])
def test_hostile_inputs_to_fit(X, exc, match):
    t = Trainer(MLP([4, 8, 3]))
    with pytest.raises(exc, match=match):
        t.fit(X, Y3, epochs=1)
    assert t.optimizer.step_count == 0 and len(t.history) == 0  # refused before any step


BAD_Y = [
    (Y3 + 0.5, ValueError, r"y_train must hold integer class labels, got y_train\[0\] = 0.5"),
    (np.where(Y3 == 2, NAN, Y3), ValueError, r"y_train must hold integer class labels, got y_train\[2\] = nan"),
    (np.where(Y3 == 2, INF, Y3), ValueError, r"y_train must hold integer class labels, got y_train\[2\] = inf"),
    (Y3 > 0, TypeError, r"y_train must hold integer class labels, got dtype bool"),
    (Y3.astype(complex), TypeError, r"y_train must hold integer class labels, got dtype complex128"),
    (Y3.astype(str), TypeError, r"y_train must hold integer class labels, got dtype <U"),
    (Y3.astype(object), TypeError, r"y_train must hold integer class labels, got dtype object"),
    (np.ma.masked_array(Y3, mask=Y3 == 0), TypeError, r"y_train must be a plain numpy.ndarray, got a numpy.ma.MaskedArray"),
    (Y3[:7], ValueError, r"y_train must have shape \(12,\) to match X_train, got \(7,\)"),
    (Y3[:, None], ValueError, r"y_train must have shape \(12,\) to match X_train, got \(12, 1\)"),
    (np.int64(1), ValueError, r"y_train must have shape \(12,\) to match X_train, got \(\)"),
    (Y3 + 1, ValueError, r"y_train holds label 3, outside \[0, 3\)"),
    (Y3 - 1, ValueError, r"y_train holds label -1, outside \[0, 3\)"),
    (np.where(Y3 == 2, 10**9, Y3), ValueError, r"y_train holds label 1000000000, outside \[0, 3\)"),
    (np.where(Y3 == 2, 2**64 - 1, Y3).astype(np.uint64), ValueError, r"y_train holds label 18446744073709551615"),
    (Y3.astype(np.float64) * 1e300, ValueError, r"y_train holds label 2e\+300, outside \[0, 3\)"),
]  # fmt: skip


@pytest.mark.parametrize("y, exc, match", BAD_Y, ids=[f"y{i}" for i in range(len(BAD_Y))])
def test_hostile_labels_to_fit(y, exc, match):
    t = Trainer(MLP([4, 8, 3]))
    with pytest.raises(exc, match=match):
        t.fit(X3, y, epochs=1)


def test_integral_float_labels_and_integer_inputs_are_accepted():
    t = Trainer(MLP([4, 8, 3]), batch_size=4)
    h = t.fit((X3 * 10).astype(np.int16), Y3.astype(np.float64), epochs=1)
    assert len(h) == 1 and np.isfinite(h.train_loss[0])


BAD_FIT_KW = [
    (dict(epochs=3.0), TypeError, r"epochs must be an int, got epochs=3.0"),
    (dict(epochs=2.9), TypeError, r"epochs must be an int, got epochs=2.9"),
    (dict(epochs=True), TypeError, r"epochs must be an int, got epochs=True"),
    (dict(epochs="3"), TypeError, r"epochs must be an int"),
    (dict(epochs=None), TypeError, r"epochs must be an int"),
    (dict(epochs=INF), TypeError, r"epochs must be an int, got epochs=inf"),
    (dict(epochs=-1), ValueError, r"epochs must be >= 0, got epochs=-1"),
    (dict(patience=1.5), TypeError, r"patience must be an int, got patience=1.5"),
    (dict(patience=-1), ValueError, r"patience must be >= 0, got patience=-1"),
    (dict(patience=2), ValueError, r"patience \(early stopping\) needs validation_data"),
    (dict(restore_best="yes"), TypeError, r"restore_best must be a bool, got restore_best='yes'"),
    (dict(restore_best=1), TypeError, r"restore_best must be a bool"),
    (dict(callback=3), TypeError, r"callback must be callable or None, got callback=3"),
    (dict(validation_data=X3), TypeError, r"validation_data must be a pair \(X_val, y_val\), got ndarray"),
    (dict(validation_data=(X3,)), TypeError, r"validation_data must be a pair"),
    (dict(validation_data=(X3, Y3, Y3)), TypeError, r"validation_data must be a pair"),
    (dict(validation_data="ab"), TypeError, r"validation_data must be a pair"),
    (dict(validation_data=(put(X3, 0, 0, NAN), Y3)), ValueError, r"X_val\[0, 0\] = nan is not finite"),
    (dict(validation_data=(X3, Y3 + 3)), ValueError, r"y_val holds label 5, outside \[0, 3\)"),
    (dict(validation_data=(X3[:0], Y3[:0])), ValueError, r"X_val is empty"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, exc, match", BAD_FIT_KW, ids=[repr(k)[:40] for k, _, _ in BAD_FIT_KW])
def test_hostile_fit_arguments(kwargs, exc, match):
    t = Trainer(MLP([4, 8, 3]))
    with pytest.raises(exc, match=match):
        t.fit(X3, Y3, **{"epochs": 1, **kwargs})


def test_zero_epochs_is_a_no_op():
    t = Trainer(MLP([4, 8, 3]))
    before = [p.copy() for p in t.model.params]
    assert len(t.fit(X3, Y3, epochs=np.int64(0))) == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, t.model.params))


def test_empty_training_set():
    with pytest.raises(ValueError, match=r"X_train is empty"):
        Trainer(MLP([4, 8, 3])).fit(X3[:0], Y3[:0], epochs=1)


def test_divergence_raises_instead_of_returning_nan():
    t = Trainer(MLP([4, 8, 3], seed=0), optimizer="adam", lr=1e30, batch_size=4)
    with pytest.raises(FloatingPointError, match=r"training diverged: the .*loss is nan.*lower lr"):
        t.fit(X3, Y3, epochs=3)
    assert all(np.isfinite(h).all() for h in t.history.train_loss)  # only finished, finite epochs


def test_train_step_checks_its_batch():
    t = Trainer(MLP([4, 8, 3]), batch_size=4)
    with pytest.raises(ValueError, match=r"X_batch has 12 rows, more than batch_size=4"):
        t.train_step(X3, Y3)
    with pytest.raises(ValueError, match=r"X_batch\[0, 0\] = nan is not finite"):
        t.train_step(put(X3[:4], 0, 0, NAN), Y3[:4])
    with pytest.raises(ValueError, match=r"y_batch holds label 7"):
        t.train_step(X3[:4], np.array([0, 1, 2, 7]))
    assert t.optimizer.step_count == 0
    assert np.isfinite(t.train_step(X3[:4], Y3[:4])) and t.optimizer.step_count == 1


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((put(X3, 3, 3, NAN), Y3), ValueError, r"X_eval\[3, 3\] = nan is not finite"),
        ((X3, Y3 + 0.5), ValueError, r"y_eval must hold integer class labels"),
        ((X3, Y3, 0), ValueError, r"batch_size must be >= 1, got batch_size=0"),
        ((X3, Y3, 2.5), TypeError, r"batch_size must be an int, got batch_size=2.5"),
        ((X3[:, :2], Y3), ValueError, r"X_eval must have shape \(n, 4\)"),
    ],
)  # fmt: skip
def test_hostile_evaluate(args, exc, match):
    with pytest.raises(exc, match=match):
        Trainer(MLP([4, 8, 3])).evaluate(*args)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda m: m.predict(put(X3, 0, 1, INF)), ValueError, r"x\[0, 1\] = inf is not finite"),
        (lambda m: m.predict(X3.astype(complex)), TypeError, r"x must hold real numbers"),
        (lambda m: m.predict(np.ma.masked_array(X3)), TypeError, r"x must be a plain numpy.ndarray, got a numpy.ma.MaskedArray"),
        (lambda m: m.predict_logits(X3, batch_size=0), ValueError, r"batch_size must be >= 1"),
        (lambda m: m.predict_logits(X3, batch_size=1.0), TypeError, r"batch_size must be an int"),
        (lambda m: m.predict(X3.T), ValueError, r"x must have shape \(n, 4\), got \(4, 12\)"),
        (lambda m: m.forward(X3.tolist()), TypeError, r"x must be a numpy.ndarray, got list"),
        (lambda m: m.forward(X3.astype(np.int32)), TypeError, r"x.dtype must be float32 or float64, got int32"),
        (lambda m: m.forward(X3[:, :3]), ValueError, r"x must have shape \(n, 4\), got \(12, 3\)"),
        (lambda m: m.forward(X3, training="yes"), TypeError, r"training must be a bool"),
        (lambda m: m.forward(X3, training=True, seed=-1), ValueError, r"seed must be >= 0, got -1"),
        (lambda m: m.forward(X3, training=True, offset=1.5), TypeError, r"offset must be an int, got 1.5"),
        (lambda m: m.backward([], np.zeros((12, 3))), TypeError, r"cache must be the list that this model's forward"),
        (lambda m: m.backward(m.forward(X3)[1], np.zeros((12, 2), np.float32)), ValueError,
         r"dlogits must have shape \(12, 3\)"),
        (lambda m: m.backward(m.forward(X3)[1], np.zeros((12, 3), int)), TypeError, r"dlogits.dtype must be float32"),
        (lambda m: m.backward(m.forward(X3)[1], [[0.0] * 3] * 12), TypeError, r"dlogits must be a numpy.ndarray"),
        (lambda m: m.backward(m.forward(X3)[1], np.zeros((12, 3)), seed=2.0), TypeError, r"seed must be an int"),
    ],
)  # fmt: skip
def test_hostile_model_calls(call, exc, match):
    with pytest.raises(exc, match=match):
        call(MLP([4, 8, 3]))


@pytest.mark.parametrize(
    "logits, y, exc, match",
    [
        ([[0.0, 1.0]], [0], TypeError, r"logits must be a numpy.ndarray, got list"),
        (np.zeros((2, 3), int), [0, 1], TypeError, r"logits.dtype must be float32 or float64, got int64"),
        (np.zeros(3), [0], ValueError, r"logits must have shape \(n, classes\)"),
        (np.zeros((0, 3)), [], ValueError, r"logits must have shape \(n, classes\) with n, classes >= 1, got \(0, 3\)"),
        (np.zeros((2, 0)), [0, 0], ValueError, r"logits must have shape \(n, classes\)"),
        (np.zeros((2, 3)), [0, 3], ValueError, r"y holds label 3, outside \[0, 3\)"),
        (np.zeros((2, 3)), [0, -1], ValueError, r"y holds label -1"),
        (np.zeros((2, 3)), [0.5, 1], ValueError, r"y must hold integer class labels, got y\[0\] = 0.5"),
        (np.zeros((2, 3)), [0], ValueError, r"y must have shape \(2,\) to match logits"),
        (np.zeros((2, 3)), ["a", "b"], TypeError, r"y must hold integer class labels"),
    ],
)  # fmt: skip
def test_hostile_softmax_cross_entropy(logits, y, exc, match):
    with pytest.raises(exc, match=match):
        softmax_cross_entropy(logits, y)


def _bytes_of(tmp_path, content):
    path = tmp_path / "ckpt.npz"
    path.write_bytes(content)
    return str(path)


def test_hostile_checkpoint_files(tmp_path):
    good = str(tmp_path / "good.npz")
    t = Trainer(MLP([4, 8, 3]))
    t.save_checkpoint(good)
    raw = (tmp_path / "good.npz").read_bytes()
    cases = [
        (b"", r"is not a .npz file"),
        (raw[: len(raw) // 2], r"is not a .npz file"),
        (b"PK\x03\x04" + b"x" * 50, r"is not a .npz file"),
    ]
    for content, match in cases:
        with pytest.raises(ValueError, match=match):
            MLP.load(_bytes_of(tmp_path, content))
        with pytest.raises(ValueError, match=match):
            t.load_checkpoint(_bytes_of(tmp_path, content))
    np.save(tmp_path / "plain.npy", X3)
    with pytest.raises(ValueError, match=r"holds a single .npy array, not a .npz file"):
        MLP.load(str(tmp_path / "plain.npy"))
    with pytest.raises(FileNotFoundError):
        MLP.load(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", a=X3)
    with pytest.raises(ValueError, match=r"not a regtune checkpoint: no model_config"):
        MLP.load(str(tmp_path / "other.npz"))
    np.savez(tmp_path / "badjson.npz", model_config=np.array("{not json"))
    with pytest.raises(ValueError, match=r"model_config is not valid JSON"):
        MLP.load(str(tmp_path / "badjson.npz"))
    np.savez(tmp_path / "list.npz", model_config=np.array("[4, 8, 3]"))
    with pytest.raises(ValueError, match=r"model_config must be a JSON object, got list"):
        MLP.load(str(tmp_path / "list.npz"))
    np.savez(tmp_path / "floats.npz", model_config=np.array('{"sizes": [4.5, 8, 3]}'))
    with pytest.raises(ValueError, match=r"model_config .* is not valid: sizes\[0\] must be an int"):
        MLP.load(str(tmp_path / "floats.npz"))
    np.savez(tmp_path / "noparams.npz", model_config=np.array('{"sizes": [4, 8, 3]}'), param_0=np.zeros((8, 4), np.float32))
    with pytest.raises(ValueError, match=r"not a complete regtune checkpoint: it has no param_1"):
        MLP.load(str(tmp_path / "noparams.npz"))
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("opt_")}
    np.savez(tmp_path / "noopt.npz", **arrays)
    with pytest.raises(ValueError, match=r"it has no opt_"):
        Trainer(MLP([4, 8, 3])).load_checkpoint(str(tmp_path / "noopt.npz"))
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["trainer_meta"]))
    for history in ([1], {"bogus": []}, {"epoch": 5}):
        bad = np.array(json.dumps({**meta, "history": history}))
        np.savez(tmp_path / "badhist.npz", **{**arrays, "trainer_meta": bad})
        fresh = Trainer(MLP([4, 8, 3], seed=5))
        before = [p.copy() for p in fresh.model.params]
        with pytest.raises(ValueError, match=r"the history in trainer_meta is not a regtune History"):
            fresh.load_checkpoint(str(tmp_path / "badhist.npz"))
        assert all(np.array_equal(a, b) for a, b in zip(before, fresh.model.params))  # nothing loaded


@pytest.mark.parametrize("key, where, match", [
    ("param_0", (1, 2), r"param_0\[1, 2\] is nan; .*finite"),
    ("param_3", (2,), r"param_3\[2\] is nan; .*finite"),
    ("opt_exp_avg_sq_2", (0, 0), r"state\['exp_avg_sq'\]\[2\]\[0, 0\] is nan; optimizer state must be finite"),
    ("opt_exp_avg_1", (5,), r"state\['exp_avg'\]\[1\]\[5\] is nan; optimizer state must be finite"),
])  # fmt: skip
def test_non_finite_checkpoint_contents_are_refused(tmp_path, key, where, match):
    """Issue 27: loaded state is checked for NaN and inf (a NaN parameter or second moment would
    make every prediction, or every parameter after one step, NaN); nothing is loaded."""
    t = Trainer(MLP([4, 8, 3], seed=1), optimizer="adam")
    t.fit(X3, Y3, epochs=1)
    good = str(tmp_path / "good.npz")
    t.save_checkpoint(good)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[key] = arrays[key].copy()
    arrays[key][where] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    fresh = Trainer(MLP([4, 8, 3], seed=5), optimizer="adam")
    before = [p.copy() for p in fresh.model.params]
    with pytest.raises(ValueError, match=match):
        fresh.load_checkpoint(str(tmp_path / "nan.npz"))
    assert all(np.array_equal(a, b) for a, b in zip(before, fresh.model.params))
    if key.startswith("param"):
        with pytest.raises(ValueError, match=match):
            MLP.load(str(tmp_path / "nan.npz"))


# Hypothesis: any float where an int is due is a TypeError naming it; any non-finite value at
# any position of the inputs is a ValueError naming that position.

@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=2, max_size=4), st.data())
def test_any_float_size_is_refused(sizes, data):
    i = data.draw(st.integers(0, len(sizes) - 1))
    bad = list(sizes)
    bad[i] = data.draw(st.floats(allow_nan=True, allow_infinity=True))
    with pytest.raises(TypeError, match=rf"sizes\[{i}\] must be an int"):
        MLP(bad)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 11), st.integers(0, 3), st.sampled_from([NAN, INF, -INF, 1e39, -3.5e38, 1e308]))
def test_any_nonfinite_input_is_refused(i, j, v):
    t = Trainer(MLP([4, 8, 3]))
    with pytest.raises(ValueError, match=rf"X_train\[{i}, {j}\] = "):
        t.fit(put(X3, i, j, v), Y3, epochs=1)


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(), st.booleans(), st.text(max_size=3), st.none(), st.integers(max_value=0)))
def test_any_bad_batch_size_is_refused(value):
    exc = ValueError if isinstance(value, int) and not isinstance(value, bool) else TypeError
    with pytest.raises(exc, match=r"batch_size must be"):
        Trainer(MLP([4, 8, 3]), batch_size=value)


def test_batch_size_too_large_for_the_random_stream():
    with pytest.raises(ValueError, match=r"batch_size=10{30} is too large: one step would draw"):
        Trainer(MLP([4, 8, 3]), batch_size=10**30)
    t = Trainer(MLP([4, 8, 3]), batch_size=2**56)  # room for 2 steps only (8 words per row)
    t.fit(X3, Y3, epochs=2)
    with pytest.raises(ValueError, match=r"room for 2 steps of batch_size=72057594037927936; this is step 2"):
        t.fit(X3, Y3, epochs=1)


def test_float32_augmentation_is_the_augment_pipeline():
    """float32 models shift and noise through regtune.augment (keyed by seed, step, position);
    float64 models through NumPy: both move whole images and add noise of the asked size."""
    from regtune import augment

    x = np.random.default_rng(0).random((5, 3 * 6 * 6), dtype=np.float32)
    t = Trainer(MLP([3 * 6 * 6, 4, 2]), shift=2, noise_std=0.05, image_shape=(3, 6, 6), seed=9)
    got = t._augment(x, step=7)
    pipe = augment.Pipeline([augment.RandomTranslate(2), augment.GaussianNoise(0.05, clip=False)], seed=9,
                            layout="NCHW")  # fmt: skip
    ref = pipe(x.reshape(5, 3, 6, 6).transpose(0, 2, 3, 1), indices=np.arange(5), epoch=7)
    np.testing.assert_array_equal(got, ref.reshape(5, -1))
    t64 = Trainer(MLP([3 * 6 * 6, 4, 2], dtype=np.float64), noise_std=0.05, seed=9)
    got64 = t64._augment(x.astype(np.float64), step=7)
    assert got64.dtype == np.float64 and abs(float(np.std(got64 - x)) / 0.05 - 1) < 0.2


# ------------------------------------------------------------------------------ 16-bit weights

import ml_dtypes  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
GRID = [("fp32", None)] + [(p, r) for p in ("bf16", "fp16") for r in ("round", "stochastic", "master")]


def bits(arrays):
    return [a.view(np.uint16 if a.itemsize == 2 else np.uint32 if a.itemsize == 4 else np.uint64) for a in arrays]


def same_bits(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(u, v)
                                    for x, y, u, v in zip(a, b, bits(a), bits(b)))  # fmt: skip


def sixteen(precision="bf16", rounding=None, seed=0, **kw):
    kw = {"optimizer": "adamw", "lr": 1e-2, "batch_size": 32, "noise_std": 0.1, "seed": seed, **kw}
    return Trainer(MLP([16, 32, 3], dropout=kw.pop("dropout", 0.2), seed=seed), precision=precision,
                   rounding=rounding, **kw)  # fmt: skip


@pytest.mark.parametrize("precision, rounding", GRID, ids=[f"{p}-{r}" for p, r in GRID])
def test_each_precision_trains_and_its_checkpoint_round_trips(tmp_path, precision, rounding):
    """Weights and biases are stored in 16 bits, gradients and state in float32; a checkpoint
    restores parameters and state (the master copy included) bit for bit, and training resumes
    exactly as if it had not stopped."""
    X, y = blobs()
    dtype = {"fp32": np.float32, "bf16": BF16, "fp16": np.float16}[precision]
    full = sixteen(precision, rounding, max_norm=3.0)
    assert full.model.dtype == dtype and all(p.dtype == dtype for p in full.model.params)
    assert full.rounding == (None if precision == "fp32" else rounding)
    h = full.fit(X, y, epochs=3)
    assert h.train_acc[-1] > 0.9 and h.train_loss[-1] < h.train_loss[0]
    assert all(a.dtype == np.float32 for arrs in full.optimizer.state.values() for a in arrs)
    assert ("master" in full.optimizer.state) == (rounding == "master")
    part = sixteen(precision, rounding, max_norm=3.0)
    part.fit(X, y, epochs=2)
    path = str(tmp_path / "ckpt.npz")
    part.save_checkpoint(path)
    resumed = sixteen(precision, rounding, max_norm=3.0)
    resumed.load_checkpoint(path)
    assert same_bits(resumed.model.params, part.model.params)
    for name, arrays in part.optimizer.state.items():
        assert same_bits(resumed.optimizer.state[name], arrays), name
    loaded = MLP.load(path)
    assert loaded.config() == part.model.config() and same_bits(loaded.params, part.model.params)
    resumed.fit(X, y, epochs=1)
    assert same_bits(resumed.model.params, full.model.params)
    assert resumed.history.to_dict(include_time=False) == full.history.to_dict(include_time=False)
    if rounding == "master":  # the weights are the rounding of the master copy
        master = full.optimizer.state["master"]
        assert same_bits([m.astype(dtype) for m in master], full.model.params)


def test_tiny_lr_round_to_nearest_stalls_where_stochastic_and_master_follow_float32():
    """SGD at lr 1e-4 for 320 steps: the float32 updates of most weights are far below half a
    bfloat16 ulp (weights ~0.35 have an ulp of 2**-9). Round to nearest moves under 10% of the
    weights and keeps under 20% of float32's change (measured along float32's change:
    <d, d32> / <d32, d32>); stochastic rounding and master weights move as float32 does: that
    projection within 5% (stochastic) and 2% (master) of 1, and their mean |change| within 10%
    of float32's. Fixed seeds: deterministic."""
    X, y = blobs()
    change, loss = {}, {}
    for precision, rounding in [("fp32", None), ("bf16", "round"), ("bf16", "stochastic"), ("bf16", "master")]:
        t = Trainer(MLP([16, 32, 3], seed=0), optimizer="sgd", lr=1e-4, batch_size=32, seed=0, precision=precision,
                    rounding=rounding, optimizer_kwargs={"momentum": 0.0})  # fmt: skip
        # the same starting point for all: float32's initial weights rounded to bfloat16
        w0 = np.concatenate([w.astype(BF16).astype(np.float32).ravel() for w in t.model.weights])
        loss[rounding] = t.fit(X, y, epochs=40).train_loss[-1]
        change[rounding] = np.concatenate([w.astype(np.float32).ravel() for w in t.model.weights]) - w0
    d32 = change[None]
    along = {k: float(d @ d32 / (d32 @ d32)) for k, d in change.items()}
    size = {k: float(np.abs(d).mean() / np.abs(d32).mean()) for k, d in change.items()}
    assert np.mean(change["round"] != 0) < 0.1 and along["round"] < 0.2 and size["round"] < 0.1, (along, size)
    assert abs(along["stochastic"] - 1) < 0.05 and abs(size["stochastic"] - 1) < 0.1, (along, size)
    assert abs(along["master"] - 1) < 0.02 and abs(size["master"] - 1) < 0.1, (along, size)
    assert loss["round"] > 1.3 * loss[None] and abs(loss["stochastic"] / loss[None] - 1) < 0.03
    assert abs(loss["master"] / loss[None] - 1) < 0.01


@pytest.mark.parametrize("rounding", ["stochastic", "master"])
def test_16bit_training_is_the_same_bits_on_any_thread_count_and_simd_path(rounding):
    """Same seed, same bits: 1 or 2 threads (arrays split into chunks), every SIMD path."""
    from .conftest import SIMD_PATHS, num_threads, simd_path

    X, y = blobs(96)
    runs = []
    for path in SIMD_PATHS:
        for threads in (1, 2):
            with simd_path(path), num_threads(threads):
                t = Trainer(MLP([16, 128, 3], dropout=0.2, seed=0), optimizer="adamw", lr=1e-2, batch_size=32, seed=0,
                            precision="bf16", rounding=rounding)  # fmt: skip
                t.fit(X, y, epochs=2)
                runs.append(t.model.params + t.optimizer.state["exp_avg"])
    assert all(same_bits(r, runs[0]) for r in runs[1:])


def test_16bit_model_storage():
    """MLP(dtype=bfloat16/float16) stores the float32 draw rounded to nearest even and computes
    in float32; Trainer(precision=) converts a float32 model the same way, in place."""
    m32 = MLP([16, 32, 3], seed=4)
    for dtype in (BF16, np.float16):
        m16 = MLP([16, 32, 3], seed=4, dtype=dtype)
        assert m16.dtype == dtype and m16.compute_dtype == np.float32 and m16.config()["dtype"] == np.dtype(dtype).name
        assert same_bits(m16.params, [p.astype(dtype) for p in m32.params])
        x = blobs(5)[0]
        logits = m16.predict_logits(x)
        wide = MLP([16, 32, 3], seed=4)
        for p, q in zip(wide.params, m16.params):
            p[...] = q.astype(np.float32)
        assert logits.dtype == np.float32 and np.array_equal(logits, wide.predict_logits(x))
        _, cache = m16.forward(x, training=True)
        assert all(g.dtype == np.float32 for g in m16.backward(cache, np.ones((5, 3), np.float32)))
        t = Trainer(MLP([16, 32, 3], seed=4), precision="bf16" if dtype == BF16 else "fp16")
        assert same_bits(t.model.params, m16.params) and same_bits(t.optimizer.params, t.model.params)
        assert all(a is b for a, b in zip(t.optimizer.params, t.model.params))  # the optimizer steps the model's
        assert Trainer(m16, precision="bf16" if dtype == BF16 else "fp16").model.params[0] is m16.params[0]


def test_fp32_is_the_default_and_unchanged(tmp_path):
    """precision="fp32" is the default and the path of before: float32 parameters stepped by the
    float32 optimizer, and checkpoints without precision fields (the same files as before)."""
    X, y = blobs()
    a, b = make_trainer(), make_trainer(precision="fp32")
    assert a.precision == b.precision == "fp32" and a.rounding is None and a.model.dtype == np.float32
    assert a.optimizer.precision == "round" and not a.optimizer.low
    a.fit(X, y, epochs=2)
    b.fit(X, y, epochs=2)
    assert same_bits(a.model.params, b.model.params)
    paths = [tmp_path / "a.npz", tmp_path / "b.npz"]
    a.save_checkpoint(str(paths[0]))
    b.save_checkpoint(str(paths[1]))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    meta = json.loads(str(np.load(paths[0])["trainer_meta"]))
    assert "precision" not in meta and "rounding" not in meta


def test_max_norm_and_early_stopping_with_16bit_weights():
    X, y = blobs(60)
    Xv, yv = blobs(60, seed=5)
    t = sixteen("bf16", "master", lr=0.05, dropout=0.0, max_norm=0.5)
    h = t.fit(X, y, epochs=30, validation_data=(Xv, yv), patience=2)
    assert h.stopped_early
    master = t.optimizer.state["master"]
    assert same_bits([m.astype(BF16) for m in master], t.model.params)  # restored together
    assert np.linalg.norm(master[0], axis=1).max() <= 0.5 + 1e-5
    assert np.linalg.norm(t.model.weights[0].astype(np.float32), axis=1).max() <= 0.5 * (1 + 2**-8)
    assert t.evaluate(Xv, yv)[0] == pytest.approx(min(h.val_loss), rel=1e-6)
    t = sixteen("fp16", "round", lr=0.05, dropout=0.0, max_norm=0.5)
    t.fit(X, y, epochs=2)
    assert np.linalg.norm(t.model.weights[0].astype(np.float32), axis=1).max() <= 0.5 * (1 + 2**-11)


BAD_PRECISION_KW = [
    (dict(precision="bf32"), ValueError, r"unknown precision 'bf32'; choose one of fp32, bf16, fp16"),
    (dict(precision="bfloat16"), ValueError, r"unknown precision 'bfloat16'"),
    (dict(precision=16), TypeError, r"precision must be a str naming the precision, got precision=16"),
    (dict(precision=None), TypeError, r"precision must be a str"),
    (dict(precision="bf16", rounding="nearest"), ValueError, r"unknown rounding 'nearest'; choose one of round, "
     r"stochastic, master"),
    (dict(precision="bf16", rounding=True), TypeError, r"rounding must be a str naming the rounding, got rounding=True"),
    (dict(rounding="master"), ValueError, r"rounding='master' applies to precision 'bf16' or 'fp16'"),
    (dict(precision="fp32", rounding="round"), ValueError, r"rounding='round' applies to precision"),
    (dict(precision="fp16", optimizer="adafactor"), ValueError, r"optimizer 'adafactor' takes float32 or float64 "
     r"weights, not precision='fp16'"),
    (dict(precision="bf16", optimizer_kwargs={"precision": "master"}), ValueError,
     r"optimizer_kwargs must not set precision"),
    (dict(precision="bf16", optimizer_kwargs={"seed": 3}), ValueError, r"optimizer_kwargs must not set seed"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, exc, match", BAD_PRECISION_KW, ids=[repr(k)[:50] for k, _, _ in BAD_PRECISION_KW])
def test_hostile_precision_arguments(kwargs, exc, match):
    model = MLP([16, 8, 3])
    with pytest.raises(exc, match=match):
        Trainer(model, **kwargs)
    assert model.dtype == np.float32 and model.params[0].dtype == np.float32  # a refused trainer converts nothing


def test_precision_and_model_dtype_must_agree(tmp_path):
    with pytest.raises(ValueError, match=r"precision='fp32' trains float32 or float64 weights, but the model stores "
                                         r"bfloat16 weights: pass precision='bf16'"):  # fmt: skip
        Trainer(MLP([4, 8, 2], dtype=BF16))
    with pytest.raises(ValueError, match=r"precision='bf16' stores a float32 model's weights in bfloat16; the model "
                                         r"stores float64"):  # fmt: skip
        Trainer(MLP([4, 8, 2], dtype=np.float64), precision="bf16")
    with pytest.raises(ValueError, match=r"the model stores float16 weights"):
        Trainer(MLP([4, 8, 2], dtype=np.float16), precision="bf16")
    model = MLP([16, 8, 3])
    with pytest.raises(ValueError, match=r"optimizer_kwargs must not set precision"):
        Trainer(model, optimizer_kwargs={"precision": "round"})
    # a failure inside the optimizer's own checks leaves the model as it was, too
    with pytest.raises(ValueError, match="momentum"):
        Trainer(model, optimizer="sgd", precision="bf16", optimizer_kwargs={"momentum": -1.0})
    assert model.dtype == np.float32
    # checkpoints name their precision, rounding and model dtype
    X, y = blobs(40)
    t = sixteen("bf16", "master")
    t.fit(X, y, epochs=1)
    path = str(tmp_path / "c.npz")
    t.save_checkpoint(path)
    for other, message in [(sixteen("bf16", "stochastic"), r"checkpoint precision 'bf16' \(rounding 'master'\) differs "
                                                           r"from this trainer's 'bf16' \(rounding 'stochastic'\)"),
                           (sixteen("fp32"), r"checkpoint precision 'bf16' \(rounding 'master'\) differs from this "
                                             r"trainer's 'fp32' \(rounding None\)"),
                           (sixteen("fp16", "master"), r"differs from this trainer's 'fp16'")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            other.load_checkpoint(path)
    f32 = str(tmp_path / "f32.npz")
    make_trainer().save_checkpoint(f32)
    with pytest.raises(ValueError, match=r"checkpoint model dtype float32 differs from float64"):
        Trainer(MLP([16, 32, 3], dropout=0.2, dtype=np.float64), optimizer="adamw").load_checkpoint(f32)


def test_bfloat16_optimizer_state_round_trips(tmp_path):
    """optimizer_kwargs={"state_dtype": bfloat16} (torch's layout): the state is written as its
    uint16 bits too and read back as bfloat16."""
    X, y = blobs(64)
    kw = {"optimizer": "adamw", "optimizer_kwargs": {"state_dtype": BF16}}
    t = sixteen("bf16", "stochastic", **kw)
    t.fit(X, y, epochs=1)
    assert t.optimizer.state["exp_avg"][0].dtype == BF16
    t.save_checkpoint(str(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz") as f:
        assert f["opt_exp_avg_0"].dtype == np.uint16 and f["param_0"].dtype == np.uint16
    back = sixteen("bf16", "stochastic", **kw)
    back.load_checkpoint(str(tmp_path / "s.npz"))
    for name, arrays in t.optimizer.state.items():
        assert same_bits(back.optimizer.state[name], arrays), name


def test_schedule_free_trains_evaluates_at_the_average_and_resumes_exactly(tmp_path):
    # The trainer takes every rule of the registry; Schedule-Free steps in train mode, is
    # evaluated (and left after fit) at its average x, and a checkpoint carries its scalars.
    X, y = blobs(n=120)
    make = lambda: Trainer(MLP([X.shape[1], 16, 3], seed=0), optimizer="schedule_free_adamw", lr=1e-2,
                           batch_size=32, seed=1)  # noqa: E731
    a = make()
    a.fit(X, y, epochs=2)
    assert a.optimizer.scalars["train_mode"] is False  # fit ends evaluated, at x
    path = str(tmp_path / "sf.npz")
    a.save_checkpoint(path)
    a.fit(X, y, epochs=1)
    b = make()
    b.load_checkpoint(path)
    assert b.optimizer.scalars == {**a.optimizer.scalars, "weight_sum": b.optimizer.scalars["weight_sum"]}
    b.fit(X, y, epochs=1)
    assert all(p.tobytes() == q.tobytes() for p, q in zip(a.model.params, b.model.params))
    assert b.optimizer.scalars == a.optimizer.scalars


# ------------------------------------------------------------------ the BLAS on a busy machine (issue 27)


def _blas_threads_seen(monkeypatch, t, run):
    """The BLAS thread counts in effect at each forward pass of ``run()`` (threadpoolctl)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    ctl = threadpoolctl.ThreadpoolController()
    seen = []
    forward = t.model._forward

    def spy(*args, **kwargs):
        seen.append(max(info["num_threads"] for info in ctl.select(user_api="blas").info()))
        return forward(*args, **kwargs)

    monkeypatch.setattr(t.model, "_forward", spy)
    run()
    return seen


def test_small_products_run_the_blas_on_one_thread(monkeypatch):
    """The trainer's products are small: with the BLAS's threads they collapsed on a busy
    machine (issue 27: 62 s against 3.5 s for 10 epochs). Below BLAS_THREADS_MIN_WORK
    multiply-adds per product, training, evaluation and prediction hold the BLAS at one thread,
    and give it back its own count afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import regtune.trainer as tr

    if not threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers:
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 64)).astype(np.float32), rng.integers(0, 10, 300)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        t = Trainer(MLP([64, 512, 256, 10], seed=0), batch_size=32)
        assert 32 * 512 * 256 < tr.BLAS_THREADS_MIN_WORK
        seen = _blas_threads_seen(monkeypatch, t, lambda: (t.fit(X, y, epochs=1, validation_data=(X[:50], y[:50])),
                                                           t.train_step(X[:32], y[:32]), t.evaluate(X, y),
                                                           t.model.predict(X)))  # fmt: skip
        assert seen and set(seen) == {1}, seen
        info = threadpoolctl.ThreadpoolController().select(user_api="blas").info()
        assert all(i["num_threads"] == 2 for i in info)  # given back


def test_large_products_keep_the_blas_threads(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import regtune.trainer as tr

    if not threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers:
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    X, y = np.ones((40, 8), np.float32), np.arange(40) % 2
    monkeypatch.setattr(tr, "BLAS_THREADS_MIN_WORK", 10 * 8 * 16)  # a batch of 10 rows is "large"
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        t = Trainer(MLP([8, 16, 2], seed=0), batch_size=10)
        seen = _blas_threads_seen(monkeypatch, t, lambda: t.fit(X, y, epochs=1))
        assert set(seen) == {2}, seen
        t2 = Trainer(MLP([8, 16, 2], seed=0), batch_size=9)  # 9 rows (evaluation too): one below the limit
        seen = _blas_threads_seen(monkeypatch, t2, lambda: t2.fit(X[:9], y[:9], epochs=2))
        assert set(seen) == {1}, seen


def test_the_blas_rule_changes_no_result():
    """Same seed, same History and parameters whether the rule holds the BLAS at one thread or
    not (NumPy's products give the same bits here; the rule depends only on shapes, never on the
    machine's load, so a run is reproducible whatever else is running)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import regtune.trainer as tr

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 16)).astype(np.float32), rng.integers(0, 3, 200)
    runs = []
    for limit in (tr.BLAS_THREADS_MIN_WORK, 0):
        tr_limit, tr.BLAS_THREADS_MIN_WORK = tr.BLAS_THREADS_MIN_WORK, limit
        try:
            with threadpoolctl.threadpool_limits(2, user_api="blas"):
                t = Trainer(MLP([16, 64, 3], seed=2, dropout=0.1), batch_size=16, seed=3)
                h = t.fit(X, y, epochs=2, validation_data=(X[:40], y[:40]))
        finally:
            tr.BLAS_THREADS_MIN_WORK = tr_limit
        runs.append((h.to_dict(include_time=False), [p.tobytes() for p in t.model.params]))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("precision, rounding", [("fp32", None), ("bf16", "stochastic")])
def test_int8_state_trains_and_its_checkpoint_resumes_exactly(tmp_path, precision, rounding):
    """state_dtype="int8": the first layer's weights (16 x 320 = 5120 elements, above
    min_8bit_size) keep blockwise 8-bit state, the rest float32; a checkpoint restores the codes
    and absmax, and training resumes exactly."""
    X, y = blobs()
    kw = dict(state_dtype="int8")
    model = lambda: MLP([16, 320, 3], seed=0)  # noqa: E731
    full = Trainer(model(), optimizer="adamw", lr=1e-2, seed=0, precision=precision, rounding=rounding, **kw)
    h = full.fit(X, y, epochs=3)
    assert h.train_acc[-1] > 0.9 and h.train_loss[-1] < h.train_loss[0]
    state = full.optimizer.state
    assert state["exp_avg"][0].dtype == np.uint8 and state["exp_avg_absmax"][0].dtype == np.float32
    assert state["exp_avg"][1].dtype == np.float32 and state["exp_avg_absmax"][1] is None
    part = Trainer(model(), optimizer="adamw", lr=1e-2, seed=0, precision=precision, rounding=rounding, **kw)
    part.fit(X, y, epochs=2)
    path = str(tmp_path / "ckpt.npz")
    part.save_checkpoint(path)
    resumed = Trainer(model(), optimizer="adamw", lr=1e-2, seed=0, precision=precision, rounding=rounding, **kw)
    resumed.load_checkpoint(path)
    resumed.fit(X, y, epochs=1)
    assert same_bits(resumed.model.params, full.model.params)
    other = Trainer(model(), optimizer="adamw", lr=1e-2, seed=0, precision=precision, rounding=rounding)
    with pytest.raises(ValueError, match="checkpoint state_dtype 'int8' differs"):
        other.load_checkpoint(path)


def test_state_dtype_is_checked_by_name():
    with pytest.raises(ValueError, match="state_dtype must be None or one of 'int8'"):
        Trainer(MLP([4, 8, 2], seed=0), state_dtype="int4")
    with pytest.raises(TypeError, match="state_dtype='int8': LAMB keeps no blockwise 8-bit state"):
        Trainer(MLP([4, 8, 2], seed=0), optimizer="lamb", state_dtype="int8")
    with pytest.raises(ValueError, match="state_dtype is given twice"):
        Trainer(MLP([4, 8, 2], seed=0), state_dtype="int8", optimizer_kwargs={"state_dtype": "int8"})
