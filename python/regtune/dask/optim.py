"""Data-parallel optimizer steps on dask arrays, equal to regtune.optim's one-machine step.

``step(opt_kind, params, grads, state, ...)`` runs regtune's fused kernel on each chunk of
each parameter, with the aligned chunks of its gradient and optimizer state. The update rules
it takes are the element-wise ones of ``regtune.optim.RULES`` (SGD, Adam, AdamW, RMSprop,
Adagrad, Lion, NAdam, RAdam, Adamax, Adadelta, ...; penalties ``l1``/``prox_l1`` included), so
each chunk's result is the one-machine result for those elements.

The one global quantity, the gradient norm for ``max_grad_norm``, is reduced exactly as
:func:`regtune.optim.clip_grad_norm` and the one-machine step reduce it: each tensor (flat, C
order) is cut into blocks of 4096 elements at its own indices 0, 4096, ...; each block's sum
of squares is formed in double by the same kernel; the block sums are added one after
another, tensor by tensor and block by block, from 0.0. The chunks of the dask reduction are
cut at those block boundaries (a gradient whose chunks end elsewhere is rechunked at the
nearest boundaries below: small moves, none when chunks hold whole blocks; a gradient chunked
across its trailing axes is first reshaped to 1-D, which dask does by merging those chunks),
each chunk returns its block sums, and one task adds them in order. So the norm, the clip
coefficient and the updated arrays are **bit-identical** to the one-machine step, whatever the
chunking and the number of workers.

    >>> import numpy as np, dask.array as da, regtune
    >>> from regtune.dask import optim as rdo
    >>> w = np.ones((300, 200), np.float32); g = np.full((300, 200), 0.5, np.float32)
    >>> res = rdo.step("adamw", [da.from_array(w, chunks=(128, 50))], [da.from_array(g, chunks=(100, 200))],
    ...                lr=1e-2, max_grad_norm=1.0)
    >>> opt = regtune.optim.AdamW([w], lr=1e-2, max_grad_norm=1.0); norm = opt.step([g])
    >>> bool(np.array_equal(res.params[0].compute(), w)) and float(res.norm.compute()) == norm
    True
"""

from __future__ import annotations

import itertools
import math
import operator
from functools import partial
from typing import Any, NamedTuple, Sequence

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .. import _core
from .. import optim as _optim
from .._validation import FLOAT_DTYPES, nonnegative_int
from ._blocks import dask_array, map_aligned

__all__ = ["StepResult", "step", "grad_norm", "OPTIMIZERS"]

#: The blocks of regtune's deterministic reductions (kReduceBlock in cpp/include/regtune/optim.h).
REDUCE_BLOCK: int = _core.REDUCE_BLOCK

#: The optimizers ``step`` accepts by name: those of regtune.optim whose rule is element-wise.
OPTIMIZERS: dict[str, type[_optim.Optimizer]] = {
    k: cls for k, cls in _optim.OPTIMIZERS.items() if cls.rule_class.elementwise()
}


class StepResult(NamedTuple):
    """What :func:`step` returns (all lazy dask objects)."""

    #: The updated parameters, one dask array per parameter (the inputs' chunks).
    params: list[da.Array]
    #: The updated optimizer state, ``{buffer name: [one array per parameter]}`` (torch's names).
    state: dict[str, list[da.Array]]
    #: The global gradient norm before clipping (a 0-d float64 dask array) when
    #: ``max_grad_norm`` is set, else None.
    norm: da.Array | None


# ------------------------------------------------------------------------------ the norm


def _block_sq_sums(x: np.ndarray, *, shape, starts, block_shape) -> np.ndarray:
    """Sum of squares of each 4096-element block of a 1-D chunk that starts on a block
    boundary, each formed by the kernel regtune's one-machine reduction uses."""
    x = np.ascontiguousarray(x)
    return np.array([_core.grad_sums([x[b : b + REDUCE_BLOCK]])[1] for b in range(0, x.size, REDUCE_BLOCK)], np.float64)


def _fold_norm(*parts: np.ndarray) -> np.float64:
    """sqrt of the block sums added one after another from 0.0, in the order given (tensor by
    tensor, block by block): the one-machine reduction's order."""
    q = 0.0
    for part in parts:
        for v in part.tolist():
            q += v
    return np.float64(math.sqrt(q))


def _block_aligned_flat(g: da.Array) -> da.Array:
    """``g`` as 1-D (C order), chunked at multiples of REDUCE_BLOCK (the last chunk excepted)."""
    flat = g.reshape(-1) if g.ndim != 1 else g
    n = flat.shape[0]
    ends = [e // REDUCE_BLOCK * REDUCE_BLOCK for e in itertools.accumulate(flat.chunks[0])][:-1] + [n]
    cuts = sorted({0, *ends})
    chunks = tuple(b - a for a, b in zip(cuts, cuts[1:])) or (0,)
    return flat if chunks == flat.chunks[0] else flat.rechunk((chunks,))


def grad_norm(grads: Sequence[Any]) -> da.Array:
    """The global L2 norm of a list of gradients (dask or NumPy arrays of one float dtype), as a
    0-d float64 dask array, bit-identical to the norm regtune's one-machine reduction gives
    (``regtune.optim.clip_grad_norm``, an optimizer's ``step`` with ``max_grad_norm``).

    ``sqrt(sum of g**2)`` with the sum formed per 4096-element block of each flat tensor and
    the block sums added in tensor and block order (module docstring).

    Args:
        grads: a non-empty list of dask arrays (NumPy arrays are wrapped), any chunking.

    Returns:
        A 0-d float64 dask array.

    Raises:
        TypeError / ValueError: an empty list, mixed or non-float dtypes, unknown chunk sizes.

    Example:
        >>> g = da.ones((5000, 30), dtype=np.float32, chunks=(1000, 7))
        >>> float(grad_norm([g]).compute()) == float(np.sqrt(150_000.0))
        True
    """
    grads = _array_list(grads, "grads")
    parts = []
    for g in grads:
        flat = _block_aligned_flat(g)
        counts = tuple(-(-c // REDUCE_BLOCK) for c in flat.chunks[0])
        parts.append(
            map_aligned("regtune-gradsq", _block_sq_sums, [flat], "gradsq", meta=np.empty(0, np.float64), chunks=(counts,))
        )
    name = "regtune-gradnorm-" + tokenize(*parts)
    keys = [(p.name, i) for p in parts for i in range(p.numblocks[0])]
    graph = HighLevelGraph.from_collections(name, {(name,): (_fold_norm, *keys)}, dependencies=parts)
    return da.Array(graph, name, (), meta=np.empty((), np.float64))


# ------------------------------------------------------------------------------ the step


def _step_block(core, names, coef, fused, max_norm, *blocks, shape, starts, block_shape) -> tuple[np.ndarray, ...]:
    """One chunk of one parameter: the fused step on copies of the chunk and its state."""
    f = dict(fused)
    if max_norm:
        norm, blocks = float(blocks[0]), blocks[1:]
        c = _optim.clip_coefficient(norm, max_norm)
        if not c >= 1.0:  # as the one-machine step: a NaN norm makes every gradient NaN
            f["clip"] = c
    p = np.array(blocks[0], order="C", copy=True)  # a computed chunk is shared: write a copy
    g = np.ascontiguousarray(blocks[1])
    own = iter([np.array(s, order="C", copy=True) for s in blocks[2:]])
    states = [[next(own)] if n else None for n in names]
    _core.optim_step(core, [p], [g], [*states, None], [*names, ""], coef, f)
    return (p, *[s[0] for s in states if s is not None])


def _leaf(tuple_array: da.Array, k: int, like: da.Array) -> da.Array:
    """Item ``k`` of each block of an array whose blocks are tuples."""
    name = f"{tuple_array.name}-{k}"
    blocks = itertools.product(*(range(n) for n in tuple_array.numblocks))
    dsk = {(name, *idx): (operator.getitem, (tuple_array.name, *idx), k) for idx in blocks}
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[tuple_array])
    return da.Array(graph, name, like.chunks, meta=like._meta)


def _array_list(arrays: Any, name: str) -> list[da.Array]:
    if isinstance(arrays, (np.ndarray, da.Array)) or not hasattr(arrays, "__iter__"):
        raise TypeError(f"{name} must be a list of dask (or NumPy) arrays, got {type(arrays).__name__}")
    out = [dask_array(a, f"{name}[{i}]") for i, a in enumerate(arrays)]
    if not out:
        raise ValueError(f"{name} must not be empty")
    for i, a in enumerate(out):
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}[{i}] must have dtype float32 or float64, got {a.dtype}")
        if a.dtype != out[0].dtype:
            raise TypeError(f"{name}[{i}] has dtype {a.dtype} but {name}[0] has {out[0].dtype}; one list holds one dtype")
    return out


def _like(arrays: Any, name: str, params: list[da.Array]) -> list[da.Array]:
    """``arrays`` matched one to one with ``params`` (shape, dtype) and rechunked to their chunks."""
    out = _array_list(arrays, name)
    if len(out) != len(params):
        raise ValueError(f"{name} has {len(out)} arrays but params has {len(params)}")
    for i, (a, p) in enumerate(zip(out, params)):
        if a.dtype != p.dtype:
            raise TypeError(f"{name}[{i}] has dtype {a.dtype} but params[{i}] has {p.dtype}")
        if a.shape != p.shape:
            raise ValueError(f"{name}[{i}] has shape {a.shape} but params[{i}] has shape {p.shape}")
    return [a if a.chunks == p.chunks else a.rechunk(p.chunks) for a, p in zip(out, params)]


def _optimizer_class(opt_kind: Any) -> type[_optim.Optimizer]:
    if isinstance(opt_kind, str) and opt_kind.lower() in OPTIMIZERS:
        return OPTIMIZERS[opt_kind.lower()]
    if isinstance(opt_kind, type) and issubclass(opt_kind, _optim.Optimizer) and opt_kind is not _optim.Optimizer:
        if not opt_kind.rule_class.elementwise():
            raise ValueError(
                f"opt_kind {opt_kind.__name__} scales each tensor by a ratio of its norms: not a chunk-by-chunk step"
            )
        return opt_kind
    raise ValueError(f"opt_kind must be one of {sorted(OPTIMIZERS)} or a regtune.optim optimizer class, got {opt_kind!r}")


def step(
    opt_kind: Any,
    params: Sequence[Any],
    grads: Sequence[Any],
    state: dict[str, Sequence[Any]] | None = None,
    *,
    step_count: int = 0,
    **hyperparameters: Any,
) -> StepResult:
    """One optimizer step over dask arrays: bit-identical to ``regtune.optim.<Optimizer>.step``.

    The arguments say what an optimizer object holds on one machine: its kind and
    hyperparameters, its state and its step count. Each chunk of each parameter is updated by
    regtune's fused kernel with the aligned chunks of its gradient and state (gradients and
    state are rechunked to the parameter's chunks when theirs differ). With ``max_grad_norm``
    the global gradient norm is first reduced deterministically (see the module docstring) and
    every chunk scales its gradient by ``min(max_grad_norm / (norm + 1e-6), 1)``.

    Args:
        opt_kind: a name of :data:`OPTIMIZERS` (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
            ``"adagrad"``, ``"lion"``, ``"nadam"``, ``"radam"``, ``"adamax"``, ``"adadelta"``) or
            one of those classes of :mod:`regtune.optim`. (``ema=`` is not taken here.)
        params: the parameters, dask arrays (NumPy arrays are wrapped) of one float dtype.
        grads: one gradient per parameter, same shape and dtype (any chunking).
        state: ``{buffer name: [one array per parameter]}`` as ``StepResult.state`` (or a
            one-machine ``opt.state``) holds it; None for a first step (buffers filled as the
            optimizer fills them: zeros, or Adagrad's ``initial_accumulator_value``).
        step_count: steps already taken (Adam's bias correction, schedules, SGD's first step).
        **hyperparameters: the optimizer's constructor arguments (``lr``, ``betas``,
            ``weight_decay``, ``momentum``, ``l1``, ``prox_l1``, ``max_grad_norm``, ...),
            checked as the constructor checks them; ``lr`` may be a schedule.

    Returns:
        ``StepResult(params, state, norm)``: new lazy arrays (nothing is modified in place) and
        the gradient norm (0-d dask array) when ``max_grad_norm`` is set. Compute them
        together, e.g. ``dask.compute(res.params, res.state, res.norm)``, or persist them.

    Raises:
        TypeError / ValueError naming the argument: an unknown ``opt_kind`` or hyperparameter,
        mismatched list lengths, shapes or dtypes, a state without the optimizer's buffers.

    Example:
        >>> p = [da.zeros((1000, 100), chunks=(250, 100))]
        >>> g = [da.ones((1000, 100), chunks=(250, 50))]
        >>> r = step("sgd", p, g, lr=0.5, momentum=0.9)
        >>> r = step("sgd", r.params, g, r.state, step_count=1, lr=0.5, momentum=0.9)
        >>> float(r.params[0][0, 0].compute())
        -1.45
    """
    cls = _optimizer_class(opt_kind)
    if "ema" in hyperparameters:
        raise TypeError("ema is not taken by regtune.dask.optim.step: average the returned params instead")
    params = _array_list(params, "params")
    grads = _like(grads, "grads", params)
    step_count = nonnegative_int(step_count, "step_count", upper=2**63)
    # The optimizer object checks the hyperparameters and computes the kernel's coefficients,
    # as on one machine; it holds a stand-in parameter, never the dask arrays.
    opt = cls([np.empty(0, params[0].dtype)], **hyperparameters)
    if opt.rule.scalars:
        raise ValueError(f"opt_kind {cls.__name__} keeps scalar state between steps: not a stateless dask step")
    if opt.blockwise:
        raise ValueError("state_dtype='int8' is not taken by regtune.dask.optim.step: its blocks of 256 elements "
                         "do not follow dask's chunks; keep float32 state there")  # fmt: skip
    coef, fused, _ = opt.coefficients(step_count)
    slots = opt.rule.slots()
    names = [f"state[{n!r}]" if n else "" for n in slots]
    buffers = [n for n in slots if n]
    fills = opt.rule.fills
    if any(isinstance(fills.get(n, 0.0), str) for n in buffers):
        raise ValueError(f"opt_kind {cls.__name__} fills its state from the parameters: not supported by dask steps")
    if state is None:
        state = {n: [da.full(p.shape, fills.get(n, 0.0), dtype=p.dtype, chunks=p.chunks) for p in params] for n in buffers}
    else:
        if not isinstance(state, dict) or set(state) != set(buffers):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must hold the buffers {sorted(buffers)} of {cls.__name__}, got {got}")
        state = {n: _like(state[n], f"state[{n!r}]", params) for n in buffers}
    max_norm = opt.max_grad_norm or 0.0
    norm = grad_norm(grads) if max_norm else None
    extra = [norm] if norm is not None else []
    func = partial(_step_block, opt.rule.core, names, coef, fused, max_norm)
    new_params, new_state = [], {n: [] for n in buffers}
    for i, (p, g) in enumerate(zip(params, grads)):
        arrays = [p, g, *[state[n][i] for n in buffers]]
        token = (cls.__name__, sorted(coef.items()), sorted(fused.items()), max_norm, i)
        tuples = map_aligned("regtune-step", func, arrays, token, extra=extra, meta=np.empty((0,) * p.ndim, object))
        new_params.append(_leaf(tuples, 0, p))
        for k, n in enumerate(buffers, start=1):
            new_state[n].append(_leaf(tuples, k, p))
    return StepResult(new_params, new_state, norm)
