"""regtune.dropout vs the NumPy recipe and torch.nn.functional.dropout; and the copy yardstick.

Each factory gets a ``Ctx`` (see conftest.py) and returns the call to time. Dropout reads its
input as well as writing its output, so each callable declares its traffic (bytes read +
written, mask included) in ``extra_info``; report.py turns that into GB/s and a fraction of
the copy bandwidth (itself bytes read + written / time).

Ops:
- ``dropout``: forward with the packed mask (regtune's default) vs the issue's NumPy recipe
  ``keep = rng.random(shape, dtype=float32) >= p; y = x * keep / (1 - p)`` (keeps a bool mask)
  and torch's ``F.dropout(x, p)`` (allocating, as users call it; it keeps no mask).
- ``dropout_nomask``: the same without writing a mask (``return_mask=False``).
- ``dropout_backward``: regtune regenerating the mask from (seed, offset) vs regtune from the
  stored packed mask (``regtune-mask``: the acceptance asks regeneration to be within 1.3x of
  it, i.e. a speed-up of at least 0.77) and NumPy from its stored bool mask.
"""

from functools import partial

import numpy as np

P = 0.5


def _rt(c):
    return c.need("regtune")


def _x(c):
    return c.rng.standard_normal(c.shape, dtype=np.float32)


def _traffic(fn, c, bytes_per_element):
    """Tag the callable with the bytes it reads and writes per call (see conftest.run_case)."""
    fn.extra_info = {"bytes": int(bytes_per_element * c.shape[0] * c.shape[1]), "traffic": True}
    return fn


# regtune's bytes per element: float32 in and out, plus 1/8 byte of packed mask written or read.
# (Peers' traffic is not declared: the report gives GB/s for regtune only.)
WITH_MASK = 8 + 1 / 8
NO_MASK = 8


def _numpy_forward(c):
    rng, x = c.rng, _x(c)

    def fwd():
        keep = rng.random(x.shape, dtype=np.float32) >= P
        return x * keep / (1 - P), keep

    return fwd


def _torch_forward(c):
    torch = c.need("torch")
    xt = torch.from_numpy(_x(c))
    return partial(torch.nn.functional.dropout, xt, P)


def _regtune_forward(c, return_mask):
    x = _x(c)
    fn = partial(_rt(c).dropout, x, P, seed=c.seed, out=c.out, return_mask=return_mask)
    return _traffic(fn, c, WITH_MASK if return_mask else NO_MASK)


def _regtune_backward_regen(c):
    dy = _x(c)
    return _traffic(partial(_rt(c).dropout_backward, dy, p=P, seed=c.seed, out=c.out), c, NO_MASK)


def _regtune_backward_mask(c):
    rt, dy = _rt(c), _x(c)
    mask = rt.dropout_mask(c.shape, P, seed=c.seed)
    return _traffic(partial(rt.dropout_backward, dy, mask, P, out=c.out), c, WITH_MASK)


def _numpy_backward(c):
    dy = _x(c)
    keep = c.rng.random(c.shape, dtype=np.float32) >= P
    return lambda: dy * keep / (1 - P)


def _copy(c):
    return partial(c.need("regtune._core").parallel_copy, c.out, np.ones(c.shape, np.float32))


CASES = {
    "dropout": {
        "regtune": lambda c: _regtune_forward(c, True),
        "numpy": _numpy_forward,
        "torch": _torch_forward,
    },
    "dropout_nomask": {
        "regtune": lambda c: _regtune_forward(c, False),
        "numpy": _numpy_forward,
        "torch": _torch_forward,
    },
    "dropout_backward": {
        "regtune": _regtune_backward_regen,
        "regtune-mask": _regtune_backward_mask,
        "numpy": _numpy_backward,
    },
    # The yardstick, as in bench_random.py: bytes read + written / time = 2 * nbytes / t.
    "copy": {"regtune": _copy},
}


def test_dropout(run_case):
    run_case()
