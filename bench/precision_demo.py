"""Training with 16-bit weights: round to nearest stalls, stochastic rounding and master weights don't.

    python bench/precision_demo.py            (from a source checkout; about 10 s on 2 cores)

An MLP on scikit-learn's bundled digits, trained with plain SGD (no momentum) and a small
learning rate, five times from the same initial weights and the same seed: in float32, and with
the weights and biases stored in bfloat16 (regtune.trainer's ``precision="bf16"``) under each
of the optimizer's three ways of writing an update (``rounding=``), plus float16 with the
two cheap ones. Everything but the stored parameters is float32 (the widened weights' matrix
products, the gradients, the optimizer's state and master copy).

Why round-to-nearest stalls: bfloat16 keeps 8 significant bits, so a weight w carries an ulp
of about |w| * 2**-7 (2**-11, about 4.9e-4, for |w| in [0.0625, 0.125)), and an update is
kept only where it exceeds half of that. Here lr * |grad| is mostly far below it (the script
prints the fraction of first-step updates that round away), so most weights never move;
what learns are the biases (which start at zero, where the ulp is tiny) and the smallest
weights. Stochastic rounding moves a weight a whole ulp with probability update / ulp, so it
follows the float32 weights on average; a float32 master copy follows them exactly, up to the
rounding of the weights that the forward pass sees.

Everything is a pure function of the seeds: the same output on any thread count (regtune's
stochastic rounding words come from (seed, step, tensor, element)); the BLAS is held to one
thread here, so the float32 matrix products are the same from run to run too.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import regtune
from regtune.cli import load_digits_data
from regtune.trainer import MLP, PRECISIONS, Trainer, softmax_cross_entropy

HIDDEN = [128]
LR = 0.005
EPOCHS = 60
BATCH = 32
SEED = 0
#: (precision, rounding) of each run, in the order printed.
RUNS = [("fp32", None), ("bf16", "round"), ("bf16", "stochastic"), ("bf16", "master"),
        ("fp16", "round"), ("fp16", "stochastic")]  # fmt: skip
#: Epochs whose training loss is printed in the curve table.
CURVE = (1, 5, 10, 20, 30, 40, 50, 60)


def ulp(w: np.ndarray) -> np.ndarray:
    """The unit in the last place of each element of a bfloat16 or float16 array, as float32:
    2**(e - p) for |w| in [2**(e-1), 2**e), p = 8 (bfloat16) or 11 (float16) significant bits;
    float16's subnormals (and zeros) have 2**-24, bfloat16's (below 1.2e-38) do not occur here."""
    p = 8 if w.dtype == PRECISIONS["bf16"] else 11
    w32 = w.astype(np.float32)
    out = np.ldexp(np.float32(1.0), np.frexp(np.abs(w32))[1] - p).astype(np.float32)
    return np.maximum(out, np.float32(2.0**-24)) if p == 11 else out


def lost_fraction(model: MLP, X: np.ndarray, y: np.ndarray) -> float:
    """The fraction of the first step's weight updates (lr * grad, in float32) smaller than half
    an ulp of their 16-bit weight: those that round to nearest leaves out."""
    logits, cache = model.forward(X[:BATCH], training=True, seed=SEED)
    grads = model.backward(cache, softmax_cross_entropy(logits, y[:BATCH])[1], seed=SEED)
    lost = sum(int(np.count_nonzero(np.abs(LR * g) < ulp(w) / 2)) for w, g in zip(model.weights, grads[0::2]))
    return lost / sum(w.size for w in model.weights)


def main() -> int:
    regtune.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1, user_api="blas")
    except ImportError:
        limit = None
    data = load_digits_data()
    sizes = [data.X_train.shape[1], *HIDDEN, data.n_classes]
    n_params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    print(f"digits: {len(data.y_train)} training, {len(data.y_test)} test images (8x8, pixels in [0, 1])")
    print(f"MLP {' -> '.join(map(str, sizes))} (relu, kaiming_normal, no dropout; {n_params:,} parameters), "
          f"plain SGD (momentum 0, no weight decay), lr {LR} constant, batch {BATCH}, {EPOCHS} epochs, seed {SEED}")
    print("every run starts from the same float32 weights (rounded to nearest even for 16 bits); "
          "16-bit runs store only weights and biases in 16 bits: matrix products, gradients, optimizer state "
          "and master copy are float32\n")
    results = []
    for precision, rounding in RUNS:
        model = MLP(sizes, activation="relu", seed=SEED)
        trainer = Trainer(model, optimizer="sgd", lr=LR, batch_size=BATCH, seed=SEED, precision=precision,
                          rounding=rounding, optimizer_kwargs={"momentum": 0.0})  # fmt: skip
        w0 = [w.astype(np.float32) for w in model.weights]  # (16-bit runs: already rounded)
        lost = lost_fraction(model, data.X_train, data.y_train) if precision != "fp32" else 0.0
        t0 = time.perf_counter()
        h = trainer.fit(data.X_train, data.y_train, epochs=EPOCHS)
        seconds = time.perf_counter() - t0
        test_loss, test_acc = trainer.evaluate(data.X_test, data.y_test)
        moved = np.mean(np.concatenate([(w.astype(np.float32) != a).ravel() for w, a in zip(model.weights, w0)]))
        name = precision if rounding is None else f"{precision} {rounding}"
        results.append((name, h, test_loss, test_acc, moved, lost, seconds))
    print("training loss by epoch")
    print(f"{'run':<16}" + "".join(f"{e:>8}" for e in CURVE))
    for name, h, *_ in results:
        print(f"{name:<16}" + "".join(f"{h.train_loss[e - 1]:>8.4f}" for e in CURVE))
    print("\nafter the last epoch (first-step updates below half an ulp: those round to nearest drops;"
          " weights moved: fraction of weights that differ from their initial value)")
    print(f"{'run':<16}{'train loss':>11}{'train acc':>11}{'test loss':>11}{'test acc':>10}"
          f"{'updates < ulp/2':>17}{'weights moved':>15}{'seconds':>9}")
    for name, h, test_loss, test_acc, moved, lost, seconds in results:
        lost_s = f"{100 * lost:.1f}%" if name != "fp32" else "-"
        print(f"{name:<16}{h.train_loss[-1]:>11.4f}{100 * h.train_acc[-1]:>10.2f}%{test_loss:>11.4f}"
              f"{100 * test_acc:>9.2f}%{lost_s:>17}{100 * moved:>14.1f}%{seconds:>9.1f}")  # fmt: skip
    fp32 = results[0][1].train_loss[-1]
    by = {name: h.train_loss[-1] for name, h, *_ in results}
    print(f"\nbf16 round ends at {by['bf16 round'] / fp32:.2f}x float32's training loss; bf16 stochastic at "
          f"{by['bf16 stochastic'] / fp32:.3f}x, bf16 master at {by['bf16 master'] / fp32:.3f}x "
          f"(fp16, with 3 more significant bits: round {by['fp16 round'] / fp32:.2f}x, "
          f"stochastic {by['fp16 stochastic'] / fp32:.3f}x)")
    if limit is not None:
        limit.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
