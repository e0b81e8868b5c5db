"""regtune.init vs the same distributions from NumPy, torch.nn.init and JAX.

Weights are square N x N (fan_in = fan_out = N) float32, initializer arguments at torch's
defaults. Each factory gets a ``Ctx`` (see conftest.py) and returns the call to time.
"""

import math
from functools import partial

import numpy as np

SQRT2 = math.sqrt(2.0)  # calculate_gain("leaky_relu", 0) = calculate_gain("relu")


def _rt(c, name, **kwargs):
    return partial(getattr(c.need("regtune.init"), name), out=c.out, seed=c.seed, **kwargs)


def _torch(c, name, *args, **kwargs):
    return partial(getattr(c.need("torch").nn.init, name), c.tensor, *args, **kwargs)


def _numpy_uniform(rng, out, bound):
    """U(-bound, bound) in place, float32: NumPy has no uniform(out=), so scale random(out=)."""
    rng.random(out=out, dtype=np.float32)
    out *= 2.0 * bound
    out -= bound


def _numpy_normal(rng, out, std):
    rng.standard_normal(out=out, dtype=np.float32)
    out *= std


def _uniform_op(name, bound, torch_name, **torch_kwargs):
    """regtune.init.<name> vs U(-bound(c), bound(c)) from each peer."""
    return {
        "regtune": lambda c: _rt(c, name),
        "numpy": lambda c: partial(_numpy_uniform, c.rng, c.out, bound(c)),
        "numpy-float64": lambda c: partial(c.rng.uniform, -bound(c), bound(c), c.shape),
        "torch": lambda c: _torch(c, torch_name, **torch_kwargs),
        "jax": lambda c: c.jax(
            lambda jax, key: jax.random.uniform(key, c.shape, np.float32, -bound(c), bound(c))
        ),
    }


def _normal_op(name, std, torch_name, **torch_kwargs):
    """regtune.init.<name> vs N(0, std(c)^2) from each peer."""
    return {
        "regtune": lambda c: _rt(c, name),
        "numpy": lambda c: partial(_numpy_normal, c.rng, c.out, std(c)),
        "numpy-float64": lambda c: partial(c.rng.normal, 0.0, std(c), c.shape),
        "torch": lambda c: _torch(c, torch_name, **torch_kwargs),
        "jax": lambda c: c.jax(
            lambda jax, key: jax.random.normal(key, c.shape, np.float32) * std(c)
        ),
    }


def _numpy_orthogonal(rng, out):
    """The textbook recipe, in float64 as regtune does: QR of a Gaussian, signs fixed by R."""
    q, r = np.linalg.qr(rng.standard_normal(out.shape))
    q *= np.sign(np.diag(r))
    out[...] = q


TRUNC = dict(mean=0.0, std=0.02, a=-2.0, b=2.0)  # the ubiquitous trunc_normal_(w, std=.02)
TRUNC_UNITS = tuple((TRUNC[k] - TRUNC["mean"]) / TRUNC["std"] for k in ("a", "b"))
VAL = 0.1

CASES = {
    "xavier_uniform": _uniform_op(
        "xavier_uniform", lambda c: math.sqrt(6.0 / (c.fan_in + c.fan_out)), "xavier_uniform_"
    ),
    "xavier_normal": _normal_op(
        "xavier_normal", lambda c: math.sqrt(2.0 / (c.fan_in + c.fan_out)), "xavier_normal_"
    ),
    "kaiming_uniform": _uniform_op(
        "kaiming_uniform", lambda c: SQRT2 * math.sqrt(3.0 / c.fan_in), "kaiming_uniform_"
    ),
    "kaiming_normal": _normal_op(
        "kaiming_normal", lambda c: SQRT2 / math.sqrt(c.fan_in), "kaiming_normal_"
    ),
    # torch has no lecun_*; kaiming with the linear gain (1) is the same distribution.
    "lecun_uniform": _uniform_op(
        "lecun_uniform",
        lambda c: math.sqrt(3.0 / c.fan_in),
        "kaiming_uniform_",
        nonlinearity="linear",
    ),
    "lecun_normal": _normal_op(
        "lecun_normal",
        lambda c: 1.0 / math.sqrt(c.fan_in),
        "kaiming_normal_",
        nonlinearity="linear",
    ),
    "trunc_normal": {
        "regtune": lambda c: _rt(c, "trunc_normal", **TRUNC),
        "numpy": lambda c: c.numpy_trunc_normal(**TRUNC),
        "torch": lambda c: _torch(c, "trunc_normal_", **TRUNC),
        "jax": lambda c: c.jax(
            lambda jax, key: TRUNC["mean"]
            + TRUNC["std"] * jax.random.truncated_normal(key, *TRUNC_UNITS, c.shape, np.float32)
        ),
    },
    "orthogonal": {
        "regtune": lambda c: _rt(c, "orthogonal"),
        "numpy": lambda c: partial(_numpy_orthogonal, c.rng, c.out),
        "torch": lambda c: _torch(c, "orthogonal_"),
        "jax": lambda c: c.jax(
            lambda jax, key: jax.nn.initializers.orthogonal()(key, c.shape, np.float32)
        ),
    },
    "constant": {
        "regtune": lambda c: partial(c.need("regtune.init").constant, val=VAL, out=c.out),
        "numpy": lambda c: partial(c.out.fill, VAL),
        "numpy-float64": lambda c: partial(np.full, c.shape, VAL),
        "torch": lambda c: _torch(c, "constant_", VAL),
    },
}
SMALL_OPS = {"orthogonal"}  # O(n^3)


def test_init(run_case):
    run_case()
