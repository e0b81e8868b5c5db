"""regtune.trainer: gradients against finite differences (float64), the training loop end to
end on a tiny problem, determinism, early stopping, augmentation and checkpoints."""

from __future__ import annotations

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
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'; choose one of sgd"):
        Trainer(model, optimizer="adamax")
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


def test_checkpoint_round_trip_and_resume(tmp_path):
    X, y = blobs()
    full = make_trainer()
    full.fit(X, y, epochs=4)
    part = make_trainer()
    part.fit(X, y, epochs=2)
    path = str(tmp_path / "ckpt.npz")
    part.save_checkpoint(path)
    resumed = make_trainer(seed=0)
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


def test_history_round_trip():
    h = History(epoch=[1], train_loss=[0.5], train_acc=[0.8], val_loss=[0.6], val_acc=[0.7], lr=[0.1], time=[1.0])
    assert History.from_dict(h.to_dict()) == h
