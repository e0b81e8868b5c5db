"""Fused optimizer steps over lists of NumPy arrays, exactly torch.optim's update rules.

``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``, ``NAdam``, ``RAdam``, ``Adamax`` and
``Adadelta`` follow, element for element, the update rule torch.optim documents for the
optimizer of the same name (bias correction, eps placement, first-step momentum buffer
included), with the same hyperparameters and defaults; ``Lion`` follows the paper's update as
the ``lion-pytorch`` package computes it; ``LAMB`` and ``LARS`` follow the papers' updates as
the ``pytorch-optimizer`` package computes them (``Lamb``, ``LARS``), with each tensor's trust
ratio reduced deterministically inside the same native call.
One native call steps the whole list of parameters: the elements of all tensors are split
across threads in cache-line-aligned ranges, and each element is read and written once per
step, with the extras folded into that pass:

- ``max_grad_norm=``: the global L2 norm of all gradients is computed first (one
  deterministic pass) and ``min(max_grad_norm / (norm + 1e-6), 1)`` scales the gradient inside
  the step, as ``torch.nn.utils.clip_grad_norm_`` followed by the step, without rewriting the
  gradients. ``step()`` then returns the norm.
- ``l1=``: ``l1 * sign(p)`` is added to the (clipped) gradient, before weight decay.
- ``prox_l1=``: after the update, ``p = sign(p) * max(|p| - lr * prox_l1, 0)`` (proximal
  gradient: weights at exact zero).
- ``ema=``: an :class:`EMA` (or :class:`SWA`) of the same parameters, updated from each new
  parameter value inside the step's pass instead of by a second pass that reads the
  parameters again (``ema.update()``).
- ``maximize=True``: ascend the objective, as torch's ``maximize``: the step uses ``-grad``
  (negated as it is read, before clipping, the L1 term and weight decay; the gradients are
  not modified).

Parameters are updated in place and must be C-contiguous, writable float32/float64 arrays of
one dtype; gradients must match them in shape and dtype and are never modified.

16-bit parameters: every optimizer also steps ``ml_dtypes.bfloat16`` or ``numpy.float16``
parameters, with gradients in their dtype or float32. The step is the
float32 step (the same kernel body, the same float32 arithmetic) on the widened values:

- ``state_dtype=``: the state buffers' dtype, float32 (the default) or the parameters' dtype
  (Adafactor: float32 only; as torch keeps it; with ``precision="round"`` this is torch's fused bfloat16/float16 step,
  bit for bit for SGD, Adam, AdamW and Adagrad);
- ``precision="round"``: the new parameter rounded to nearest even (an update below half an
  ulp of the weight is lost, as in torch);
- ``precision="stochastic"``: rounded up or down with probability proportional to the
  distance, so the expected parameter is the float32 one; the random bits are word ``i`` of
  the Philox stream ``step * 2**24 + t`` for element ``i`` of tensor ``t``, under a key drawn
  from ``seed=`` (an int, a SeedSequence or None) through
  ``SeedSequence(seed, spawn_key=(0x5352,))``, apart from the keys of ``regtune.random`` and
  dropout with the same seed: the same bits on any thread count and SIMD path;
- ``precision="master"``: a float32 master copy of each parameter in ``state["master"]``
  follows the float32 trajectory exactly; the parameter is its rounding to nearest even.

Each mode is one pass over memory.

8-bit state: ``state_dtype="int8"`` keeps each state buffer of a parameter with at least
``min_8bit_size`` (default 4096, as bitsandbytes) elements blockwise 8-bit: uint8 codes of
bitsandbytes' dynamic map and a float32 absmax per block of 256 elements (see
:mod:`regtune.optim.blockwise`), about 2 bytes per parameter for Adam's two buffers instead of
8. ``opt.state`` then holds the codes under the buffer's name and the absmax under
``name + "_absmax"`` (None for a smaller parameter, whose state stays float32). Each step
decodes a block into float32, updates it there with the same kernel body as the float32 step,
and encodes it again, in the same single pass; every other option (16-bit parameters and
their precision modes, clipping, L1, prox, EMA) works as with float32 state. For float32,
bfloat16 and float16 parameters, and the element-wise rules (not LAMB, LARS, Adafactor,
Schedule-Free AdamW, whose state enters a norm or is a copy of the parameters). The averages of ``EMA``/``SWA`` of 16-bit parameters are
float32. ``lr`` (and
``weight_decay``) may be a float or a schedule, a callable of the number of steps taken so far
(0 for the first step). The state is plain NumPy arrays in ``opt.state``;
``state_dict()``/``load_state_dict()`` round-trip exactly.

Overlap: a gradient that shares memory with a parameter or a state buffer, two parameters
that share memory, or a state buffer inside a parameter raises a ValueError naming both
arrays (``grads[0] overlaps params[0]``); gradients may share memory with each other (they are
only read). Arrays are compared when they derive from one NumPy array or buffer object, and
then exactly (``numpy.shares_memory``), so interleaved views that share no element are fine.
Masked arrays are refused (a kernel would ignore the mask). The checks look at metadata only:
no pass over the data. As in torch, an update that overflows element by element (finite
inputs, a huge ``lr``) gives inf; a coefficient that the hyperparameters alone make infinite
(``lr / (1 - beta1**t)``, ``lr * weight_decay``) raises a ValueError naming them.

Structure: each update rule is a small stateless :class:`Rule` in its own module of
``regtune/optim/rules/`` (its hyperparameters, the state it keeps, the coefficients of each
step), over a native rule in ``cpp/src/optim/rules/``; :class:`Optimizer` is the engine that
holds parameters, state and schedules. Every rule is listed in :data:`RULES` (by key, e.g.
``"adamw"``) and its optimizer class in :data:`OPTIMIZERS`; the trainer, the CLI,
:mod:`regtune.torch.optim` and :mod:`regtune.dask.optim` take their choices from there.

Thread safety: calls from several Python threads are serialized by a lock held for the whole
call; the result equals some serial order of the calls (``step``, ``state_dict``,
``load_state_dict``): no step is lost or torn. Copies and pickles carry the state, not the lock.

    >>> import numpy as np, regtune
    >>> w = np.ones(4, np.float32)
    >>> opt = regtune.optim.AdamW([w], lr=0.1, weight_decay=0.0)
    >>> opt.step([np.full(4, 2.0, np.float32)])
    >>> w.round(4)
    array([0.9, 0.9, 0.9, 0.9], dtype=float32)
"""

from __future__ import annotations

from typing import Union, Callable

from . import blockwise
from . import rules as _rules  # noqa: F401  (registers every rule)
from ._average import EMA, SWA, Average
from ._engine import (
    CORE_RULES,
    PRECISIONS,
    RULES as _RULES,
    Optimizer,
    Rule,
    clip_coefficient,
    clip_grad_norm,
    clip_grad_value,
    optimizer_class,
    step_all,
)

ScalarOrSchedule = Union[float, Callable[[int], float]]


def _order(key: str) -> tuple[int, int]:
    """The native rule list's order (cpp/src/optim/rules.def), then the order of definition."""
    core = _RULES[key].core
    native = CORE_RULES[core]["id"] if core in CORE_RULES else len(CORE_RULES)
    return native, list(_RULES).index(key)


#: Every rule, by key (``"sgd"``, ``"adamw"``, ...), in the native rule list's order.
RULES: dict[str, type[Rule]] = {k: _RULES[k] for k in sorted(_RULES, key=_order)}
#: Every optimizer class, by its rule's key.
OPTIMIZERS: dict[str, type[Optimizer]] = {k: optimizer_class(r) for k, r in RULES.items()}
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

__all__ = [
    "Optimizer", "Rule", *(cls.__name__ for cls in OPTIMIZERS.values()), "EMA", "SWA", "Average", "RULES",
    "OPTIMIZERS", "PRECISIONS", "clip_grad_norm", "clip_grad_value", "clip_coefficient", "step_all", "blockwise",
]  # fmt: skip


def __dir__() -> list[str]:
    return sorted(__all__)
