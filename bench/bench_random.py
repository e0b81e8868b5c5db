"""regtune.random vs NumPy, torch and JAX; and the copy bandwidth every op is measured against.

Each factory gets a ``Ctx`` (see conftest.py) and returns the call to time.
"""

from functools import partial

import numpy as np
from scipy import stats

A, B = -2.0, 2.0  # truncation bounds of the standard truncated normal


def _rt(c):
    return c.need("regtune.random")


def _source(c):
    return np.ones(c.shape, np.float32)


CASES = {
    "uniform": {
        "regtune": lambda c: partial(_rt(c).uniform, out=c.out, seed=c.seed),
        "numpy": lambda c: partial(c.rng.random, out=c.out, dtype=np.float32),
        "numpy-float64": lambda c: partial(c.rng.uniform, 0.0, 1.0, c.shape),
        "torch": lambda c: partial(c.need("torch").nn.init.uniform_, c.tensor),
        "jax": lambda c: c.jax(lambda jax, key: jax.random.uniform(key, c.shape, np.float32)),
    },
    "normal": {
        "regtune": lambda c: partial(_rt(c).normal, out=c.out, seed=c.seed),
        "numpy": lambda c: partial(c.rng.standard_normal, out=c.out, dtype=np.float32),
        "numpy-float64": lambda c: partial(c.rng.normal, 0.0, 1.0, c.shape),
        "torch": lambda c: partial(c.need("torch").nn.init.normal_, c.tensor),
        "jax": lambda c: c.jax(lambda jax, key: jax.random.normal(key, c.shape, np.float32)),
    },
    "truncated_normal": {
        "regtune": lambda c: partial(_rt(c).truncated_normal, a=A, b=B, out=c.out, seed=c.seed),
        "numpy": lambda c: c.numpy_trunc_normal(a=A, b=B),
        "torch": lambda c: partial(c.need("torch").nn.init.trunc_normal_, c.tensor, a=A, b=B),
        "jax": lambda c: c.jax(
            lambda jax, key: jax.random.truncated_normal(key, A, B, c.shape, np.float32)
        ),
    },
    # scipy.stats.truncnorm is ~15x slower than the NumPy recipe: its own op, at the small size.
    "truncated_normal_small": {
        "regtune": lambda c: partial(_rt(c).truncated_normal, a=A, b=B, out=c.out, seed=c.seed),
        "scipy": lambda c: partial(stats.truncnorm.rvs, A, B, size=c.shape, random_state=c.rng),
    },
    # The yardstick: copy bandwidth = (bytes read + bytes written) / time = 2 * nbytes / t.
    "copy": {
        "regtune": lambda c: partial(c.need("regtune._core").parallel_copy, c.out, _source(c)),
        "numpy": lambda c: partial(np.copyto, c.out, _source(c)),
    },
}
SMALL_OPS = {"truncated_normal_small"}


def test_random(run_case):
    run_case()
