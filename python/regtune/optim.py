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

Each mode is one pass over memory. The averages of ``EMA``/``SWA`` of 16-bit parameters are
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

import contextlib
import math
import threading
from typing import Any, Callable, Sequence, Union

import numpy as np

from . import _core
from .random import _key_from_seed
from ._validation import (
    LOW_DTYPES,
    array_list,
    as_array,
    boolean,
    check_inplace,
    finite_array,
    first_overlap,
    hyperparameter,
    memory_root,
    nonnegative_int,
    not_masked,
    same_length,
    scalar_or_schedule,
    schedule_value,
)

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Lion", "NAdam", "RAdam", "Adamax", "Adadelta",
    "LAMB", "LARS", "Adafactor", "EMA", "SWA", "clip_grad_norm", "clip_grad_value", "step_all",
]  # fmt: skip

ScalarOrSchedule = Union[float, Callable[[int], float]]

# The kernels' OptimKind (4: the benchmarks' yardstick; 10: the weight average's update alone).
_SGD, _ADAM, _RMSPROP, _ADAGRAD, _LION, _NADAM, _RADAM, _ADAMAX, _ADADELTA, _AVERAGE, _LAMB, _LARS = (
    0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12
)

#: How a step writes 16-bit parameters back (see the module docstring).
_PRECISIONS = ("round", "stochastic", "master")
#: step counts stay below 2**63 (an int64), so every coefficient is a float computation.
_MAX_STEP = 2**63
#: State buffers that are never negative (running sums of squares, whose sqrt is taken;
#: Adamax's running maximum of |g|; Adadelta's squared updates).
_SQUARES = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "exp_inf", "acc_delta", "row_var", "col_var", "variance")


# --------------------------------------------------------------- shared checks (private)
#: The spawn key that sets stochastic rounding's Philox keys apart from regtune.random's: the
#: same int seed given to a sampler, dropout and an optimizer draws unrelated bits.
_SR_DOMAIN = 0x5352


def _sr_key(seed: Any) -> int:
    """Stochastic rounding's Philox key: ``SeedSequence(seed, spawn_key=(0x5352,))``'s first
    64 bits for an int seed (a SeedSequence's own spawn key gets 0x5352 appended; None: fresh
    entropy)."""
    _key_from_seed(seed, "None, an int or a numpy.random.SeedSequence")  # type and range, named
    if isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, _SR_DOMAIN), pool_size=seed.pool_size)
    else:
        ss = np.random.SeedSequence(None if seed is None else int(seed), spawn_key=(_SR_DOMAIN,))
    w = ss.generate_state(2, np.uint32)
    return int(w[0]) | (int(w[1]) << 32)



def _arrays(arrays: Any, name: str, *, low: bool = False) -> list[np.ndarray]:
    """:func:`array_list` (in-place arrays, no two sharing memory), masked arrays refused."""
    out = array_list(arrays, name, low=low)
    for i, a in enumerate(out):
        not_masked(a, f"{name}[{i}]")
    return out


def clip_grad_norm(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``.

    ``total = sqrt(sum of g**2 over every element of every array)`` (summed in double in a
    fixed order: the same on any thread count and SIMD path); every gradient is multiplied by
    ``min(max_norm / (total + 1e-6), 1)``, as ``torch.nn.utils.clip_grad_norm_``. A NaN norm
    makes every gradient NaN, as in torch. To clip inside an optimizer step without rewriting
    the gradients, give the optimizer ``max_grad_norm=`` instead.

    Args:
        grads: C-contiguous, writable float32/float64/bfloat16/float16 arrays of one dtype, no
            two sharing memory, no masked arrays (16-bit values are squared and summed in
            double, and scaled in float32, rounded to nearest even).
        max_norm: finite, > 0.

    Returns:
        The total norm before clipping.

    Example::

        >>> g = [np.array([3.0, 4.0])]
        >>> clip_grad_norm(g, 1.0), g[0].round(6)
        (5.0, array([0.6, 0.8]))
    """
    grads = _arrays(grads, "grads", low=True)
    return _core.clip_grad_norm(grads, hyperparameter(max_norm, "max_norm", low=0.0, low_open=True))


def clip_grad_value(grads: Sequence[np.ndarray], clip: float) -> None:
    """Clamp every gradient element to ``[-clip, clip]`` in place (NaN stays NaN), as
    ``torch.nn.utils.clip_grad_value_``.

    Args:
        grads: C-contiguous, writable float32/float64/bfloat16/float16 arrays of one dtype, no
            two sharing memory, no masked arrays.
        clip: finite, >= 0.

    Example::

        >>> g = [np.array([-3.0, 0.5])]; clip_grad_value(g, 1.0); g[0]
        array([-1. ,  0.5])
    """
    grads = _arrays(grads, "grads", low=True)
    _core.clip_grad_value(grads, hyperparameter(clip, "clip", low=0.0))


class Optimizer:
    """The machinery every optimizer shares: parameters, state, schedules, one native step.

    Subclasses name their state buffers (``_slots``, in the kernel's order) and turn the
    hyperparameters into the per-step coefficients (``_coefficients``), computed in double in
    Python with the same expressions torch uses.

    Thread safety: calls from several Python threads are serialized by a lock held for the
    whole call; the result equals some serial order of the calls. The lock is re-entrant, so
    a schedule may call ``state_dict()`` from inside ``step``; a schedule that steps its own
    optimizer makes that ``step`` raise RuntimeError instead of losing a step.
    """

    _kind: int
    _fills: dict[str, float] = {}
    #: True for the rules whose step needs norms of whole tensors (LAMB, LARS): not elementwise.
    _per_tensor = False

    def __init__(
        self,
        params: Sequence[np.ndarray],
        *,
        lr: ScalarOrSchedule,
        weight_decay: ScalarOrSchedule,
        l1: float,
        prox_l1: float,
        max_grad_norm: float | None,
        slots: tuple[str | None, str | None, str | None],
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.params: list[np.ndarray] = _arrays(params, "params", low=True)
        dt = self.params[0].dtype
        #: Whether the parameters are bfloat16/float16 (the low-precision step).
        self._low = dt in LOW_DTYPES
        if precision not in _PRECISIONS:
            valid = ", ".join(map(repr, _PRECISIONS))
            raise ValueError(f"precision must be one of {valid}, got precision={precision!r}")
        if precision != "round" and not self._low:
            raise ValueError(f"precision={precision!r} needs bfloat16 or float16 params, got {dt}")
        #: How the update is written back to 16-bit parameters: "round", "stochastic" or "master".
        self.precision = precision
        if state_dtype is None:
            sdt = np.dtype(np.float32) if self._low else dt
        else:
            try:
                sdt = np.dtype(state_dtype)
            except TypeError:
                raise TypeError(f"state_dtype must be float32 or the params' dtype, got {state_dtype!r}") from None
            if sdt != dt and not (self._low and sdt == np.float32):
                raise TypeError(f"state_dtype must be float32 or the params' dtype ({dt}), got {sdt}")
        #: The dtype of the optimizer's state buffers (float32 by default for 16-bit params).
        self.state_dtype = sdt
        #: The Philox key of stochastic rounding (None otherwise).
        self._sr_key = _sr_key(seed) if precision == "stochastic" else None
        if precision != "stochastic" and seed is not None:
            raise ValueError(f"seed= keys stochastic rounding: it needs precision='stochastic', got {precision!r}")
        if ema is not None:
            if not isinstance(ema, _Average):
                raise TypeError(f"ema must be a regtune.optim.EMA or SWA, got {type(ema).__name__}")
            if len(ema.params) != len(self.params) or not all(map(_same_array, ema.params, self.params)):
                raise ValueError("ema must average this optimizer's params: the same arrays, in the same order")
        #: The weight average updated inside each step (``ema=``), or None.
        self.ema = ema
        self.lr = scalar_or_schedule(lr, "lr")
        self.weight_decay = scalar_or_schedule(weight_decay, "weight_decay")
        self.l1 = hyperparameter(l1, "l1", low=0.0)
        self.prox_l1 = hyperparameter(prox_l1, "prox_l1", low=0.0)
        self.max_grad_norm = (
            None if max_grad_norm is None else hyperparameter(max_grad_norm, "max_grad_norm", low=0.0, low_open=True)
        )
        self._slots = slots
        self._lock = threading.RLock()  # held by step, state_dict and load_state_dict
        self.step_count = 0
        #: The optimizer state: buffer name -> one array per parameter (torch's names).
        self.state: dict[str, list[np.ndarray]] = {
            name: [np.full(p.shape, self._fills.get(name, 0.0), sdt) for p in self.params] for name in slots if name
        }
        if precision == "master":  # the float32 master copy: the step's parameter
            self.state["master"] = [p.astype(np.float32) for p in self.params]

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        raise NotImplementedError

    def step(self, grads: Sequence[np.ndarray]) -> float | None:
        """Update every parameter in place from ``grads`` (one array per parameter, same shape
        and dtype, C-contiguous; not modified) in one native call.

        Returns:
            The global gradient norm before clipping when ``max_grad_norm`` is set, else None.

        Raises:
            TypeError / ValueError: a grads list of the wrong length, or a gradient whose dtype,
            shape or layout does not match its parameter (named ``grads[i]``), a masked array,
            a gradient that shares memory with a parameter or a state buffer (``grads[i]
            overlaps params[j]``); a schedule that returns a bad value (named ``lr(step)``);
            hyperparameters whose step coefficient overflows (``lr / (1 - beta1**t)``).
            Nothing is stepped when it raises.
            RuntimeError: a schedule changed ``step_count`` (stepped this optimizer) meanwhile.
        """
        return step_all([(self, grads)])[0]

    def _gradients(self, grads: Sequence[np.ndarray]) -> tuple[list, set[int]]:
        """The gradient list as the native call takes it (torch tensors viewed as arrays; the
        caller's list is never modified) and the ids of the gradients' memory roots."""
        grads = same_length(grads, "grads", self.params, "params")
        roots = set()  # of the gradients, to compare them with the arrays the step writes
        own = False  # whether grads is this call's own list
        for i, g in enumerate(grads):
            if type(g) is not np.ndarray:  # exact ndarrays (the usual case) skip these tests
                not_masked(g, f"grads[{i}]")
                if hasattr(g, "__dlpack__") and not isinstance(g, np.ndarray):  # a torch tensor: a view of it
                    if not own:
                        grads, own = list(grads), True
                    grads[i] = g = as_array(g, f"grads[{i}]")
                if not isinstance(g, np.ndarray):
                    continue  # the kernel names it
            roots.add(id(memory_root(g)))
        return grads, roots

    def _native_call(self, grads: list, states: list, names: list[str], args: dict[str, Any]) -> tuple[str, tuple]:
        """The step's native call: the name of the _core function and its arguments."""
        if self._low:
            masters = self.state["master"] if self.precision == "master" else None
            return "optim_step_low", (
                self._kind, self.params, grads, states, names, args, self.max_grad_norm or 0.0, masters, self._sr_key,
                self.step_count,
            )  # fmt: skip
        return "optim_step", (self._kind, self.params, grads, states, names, args, self.max_grad_norm or 0.0)

    def _written(self, states: list, names: list[str]) -> list[tuple[str, np.ndarray]]:
        """(label, array) of every array a step writes: the parameters and the state buffers."""
        out = [(f"params[{i}]", p) for i, p in enumerate(self.params)]
        for name, arrays in zip(names, states):
            if arrays is not None:
                label = "ema.averages" if name == "ema.averages" else f"state[{name!r}]"
                out += [(f"{label}[{i}]", a) for i, a in enumerate(arrays) if isinstance(a, np.ndarray)]
        return out

    def _check_grad_overlap(self, grads: list, roots: set[int], states: list, names: list[str]) -> None:
        """A gradient must not share memory with an array the step writes (it would be read
        after, or while, another thread writes it). Cheap in the usual case: only arrays with
        the root of a gradient (``roots``) are compared."""
        hit = False
        for arrays in (self.params, *states):
            if arrays is not None:
                for a in arrays:
                    if a is not None and id(memory_root(a)) in roots:
                        hit = True
        if hit:
            found = first_overlap(self._written(states, names), [(f"grads[{i}]", g) for i, g in enumerate(grads)])
            if found is not None:
                raise ValueError(f"{found}; a gradient must not share memory with a parameter or a state buffer")

    def _step_args(self, count: int) -> dict[str, Any]:
        """The kernel's coefficients for the step after ``count`` steps (schedules read at
        ``count``); also used by :func:`regtune.dask.optim.step`, chunk by chunk."""
        lr = schedule_value(self.lr, "lr", count)
        wd = schedule_value(self.weight_decay, "weight_decay", count)
        try:
            args = self._coefficients(count + 1, lr, wd)
        except OverflowError:  # only a step count near 2**1024 gets here (set by hand)
            raise ValueError(f"step_count must be < 2**63, got step_count={count}") from None
        if self.l1:
            args["l1"] = self.l1
        if self.prox_l1:
            args["prox"] = lr * self.prox_l1
            if math.isinf(args["prox"]):
                raise ValueError(f"lr * prox_l1 overflows float64: lr={lr!r}, prox_l1={self.prox_l1!r}")
        return args

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: ``{"step": int, "state": {name: [arrays]}}`` (plain NumPy)."""
        with self._lock:
            return {
                "step": self.step_count,
                "state": {k: [None if a is None else a.copy() for a in v] for k, v in self.state.items()},
            }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` of an optimizer of the same kind, options and parameter
        shapes; the arrays are copied in, exactly.

        Raises:
            TypeError / ValueError: missing or extra buffers, or an array whose length, shape or
            dtype does not match (named ``state['exp_avg'][i]``), a masked array, a NaN or inf
            anywhere (named ``state['row_var'][0][1, 0]``), a negative entry in a buffer of
            squares (``exp_avg_sq``, ``max_exp_avg_sq``, ``square_avg``, ``sum``, ...), a step
            that is not an int in [0, 2**63).

        The arrays may be views of the parameters or of this optimizer's own buffers (in any
        order): every value is read before any buffer is written.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"step", "state"}:
            raise ValueError("state_dict must be a dict with keys 'step' and 'state', as state_dict() returns")
        step = nonnegative_int(state_dict["step"], "state_dict['step']", upper=_MAX_STEP)
        given = state_dict["state"]
        if not isinstance(given, dict) or set(given) != set(self.state):
            got = sorted(given) if isinstance(given, dict) else type(given).__name__
            raise ValueError(f"state_dict['state'] must hold the buffers {sorted(self.state)}, got {got}")
        for name, arrays in given.items():
            label = f"state[{name!r}]"
            arrays = same_length(arrays, label, self.params, "params")
            for i, (a, p, own_a) in enumerate(zip(arrays, self.params, self.state[name])):
                if own_a is None:  # a buffer this tensor does not keep (Adafactor)
                    if a is not None:
                        raise ValueError(f"{label}[{i}] must be None: params[{i}] keeps no {name}")
                    continue
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"{label}[{i}] must be a numpy.ndarray, got {type(a).__name__}")
                not_masked(a, f"{label}[{i}]")
                if a.dtype != own_a.dtype:
                    raise TypeError(f"{label}[{i}] has dtype {a.dtype} but this optimizer keeps {own_a.dtype}")
                if a.shape != own_a.shape:
                    what = f"params[{i}] has shape {p.shape}" if own_a.shape == p.shape else f"must have shape {own_a.shape}"
                    raise ValueError(f"{label}[{i}] has shape {a.shape} but {what}")
                # NaN or inf would reach every parameter at the next step (through a norm, a
                # mean or the update itself); a sqrt of a negative square would be NaN.
                finite_array(a, f"{label}[{i}]", "optimizer state must be finite")
                if name in _SQUARES and (a < 0).any():  # loading is rare: these passes are cheap enough
                    raise ValueError(f"{label}[{i}] must be >= 0 (a running sum of squares), got a negative entry")
        with self._lock:  # checked above without it: only the copy needs it
            # Arrays are copied in, so one that views a parameter is simply read. One that views
            # this optimizer's own buffers (its own state_dict()'s arrays are copies, but
            # opt.state itself, or a permutation of it, may be given) is read before any is
            # written: a snapshot of those, so the result never depends on the copy order.
            own = {id(memory_root(a)) for arrays in self.state.values() for a in arrays if a is not None}
            given = {
                n: [a.copy() if a is not None and id(memory_root(a)) in own else a for a in arrays]
                for n, arrays in given.items()
            }
            for name, arrays in given.items():
                for own_a, a in zip(self.state[name], arrays):
                    if own_a is not None:
                        np.copyto(own_a, a)
            self.step_count = step

    def __getstate__(self) -> dict[str, Any]:  # copy and pickle: everything but the lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        extra = f", precision={self.precision!r}, state {self.state_dtype}" if self._low else ""
        name, dt = type(self).__name__, self.params[0].dtype
        return f"{name}({len(self.params)} params, {dt}{extra}, step {self.step_count})"


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """The same array, or two views of the same elements (as two views of one torch tensor)."""
    return a is b or (a.ctypes.data == b.ctypes.data and a.shape == b.shape and a.dtype == b.dtype)


def step_all(steps: Sequence[tuple[Optimizer, Sequence[np.ndarray]]]) -> list[float | None]:
    """Step several optimizers, each with its gradients, in one native call: ``[(opt, grads),
    ...]`` -> each ``opt.step(grads)``'s result, in order. Everything is checked first (each
    optimizer's gradients, schedules and arrays, as its ``step`` checks them) and nothing is
    stepped if a check fails; then the steps run one after another, each over its whole list,
    in one release of the GIL. For parameter groups with their own hyperparameters (one
    optimizer per group), as :mod:`regtune.torch.optim` steps them. An optimizer may appear once.

    Raises what ``step`` raises, for the optimizer concerned; ValueError when an optimizer
    appears twice; RuntimeError when a schedule steps one of them meanwhile.
    """
    if isinstance(steps, (str, bytes, dict, np.ndarray)) or not hasattr(steps, "__iter__"):
        raise TypeError(f"steps must be a list of (optimizer, grads) pairs, got {type(steps).__name__}")
    steps = list(steps)
    for i, pair in enumerate(steps):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], Optimizer):
            raise TypeError(f"steps[{i}] must pair a regtune.optim optimizer with its gradients, "
                            f"got {type(pair).__name__}")  # fmt: skip
    opts = [o for o, _ in steps]
    if len({id(o) for o in opts}) != len(opts):
        raise ValueError("steps names an optimizer twice; step it once per call")
    grads = [o._gradients(g) for o, g in steps]
    with contextlib.ExitStack() as held:
        for o in sorted(opts, key=id):  # one order for every caller: no two calls wait on each other
            held.enter_context(o._lock)
        # Every count is read before any schedule runs: a schedule of one optimizer may step
        # another of this call, whichever comes first in it.
        counts = [o.step_count for o in opts]
        args = []
        for o, count in zip(opts, counts):
            args.append(o._step_args(count))
            if o.step_count != count:
                raise RuntimeError(f"a schedule changed step_count from {count} to {o.step_count} inside step()")
        emas = {id(o.ema): o.ema for o in opts if o.ema is not None}
        for key in sorted(emas):
            held.enter_context(emas[key]._lock)
        calls, written = [], []
        for o, (g, roots), a in zip(opts, grads, args):
            states = [o.state[name] if name else None for name in o._slots]
            names = [name or "" for name in o._slots]
            if o.ema is not None:
                a.update(o.ema._args())
            states.append(o.ema.averages if o.ema is not None else None)
            names.append("ema.averages")
            o._check_grad_overlap(g, roots, states, names)
            calls.append(o._native_call(g, states, names, a))
            written.append((o, g, states, names))
        for o, count in zip(opts, counts):  # a schedule of one may have stepped another meanwhile
            if o.step_count != count:
                raise RuntimeError(f"a schedule changed step_count from {count} to {o.step_count} inside step()")
        try:
            if len(calls) == 1:
                name, call_args = calls[0]
                norms = [getattr(_core, name)(*call_args)]
            else:
                norms = _core.optim_steps(calls)
        except ValueError as exc:
            if "share memory" not in str(exc):
                raise
            for o, g, states, names in written:  # name the two arrays
                found = first_overlap(o._written(states, names))
                if found:
                    raise ValueError(f"{found}; parameters and optimizer state must not share memory") from None
                found = first_overlap(o._written(states, names), [(f"grads[{i}]", x) for i, x in enumerate(g)])
                if found:
                    raise ValueError(
                        f"{found}; a gradient must not share memory with a parameter or a state buffer") from None
            raise
        for o, count in zip(opts, counts):
            if o.ema is not None:
                o.ema.n_averaged += 1
            o.step_count = count + 1
    return norms


def _betas(betas: Any) -> tuple[float, float]:
    if isinstance(betas, (str, bytes, dict, set, frozenset)):  # iterable, but not a pair in order
        raise TypeError(f"betas must be a pair of floats, got betas={betas!r}")
    try:
        b = tuple(betas)
    except TypeError:
        raise TypeError(f"betas must be a pair of floats, got betas={betas!r}") from None
    if len(b) != 2:
        raise ValueError(f"betas must be a pair of floats, got betas={betas!r}")
    return tuple(hyperparameter(x, f"betas[{i}]", low=0.0, high=1.0, high_open=True) for i, x in enumerate(b))


def _eps(eps: Any) -> float:
    """eps of Adam and RMSprop: finite and > 0. (torch also takes 0, where an element whose
    gradient has been 0 so far gets 0 / 0 = nan.)"""
    return hyperparameter(eps, "eps", low=0.0, low_open=True)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        buf = g (first step) | momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) | buf
        p = p - lr * g

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: learning rate >= 0, or a schedule ``lr(step_count)``.
        momentum: >= 0 (0: no buffer). dampening: finite. nesterov: needs momentum > 0 and
        dampening == 0.
        weight_decay: >= 0 (L2, folded into the gradient), or a schedule.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``momentum_buffer`` when momentum != 0.

    Example::

        >>> w = np.zeros(2); opt = SGD([w], lr=0.5, momentum=0.9)
        >>> opt.step([np.ones(2)]); opt.step([np.ones(2)]); w
        array([-1.45, -1.45])
    """

    _kind = _SGD

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: ScalarOrSchedule = 0.0,
        nesterov: bool = False,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.momentum = hyperparameter(momentum, "momentum", low=0.0)
        self.dampening = hyperparameter(dampening, "dampening")
        self.nesterov = boolean(nesterov, "nesterov")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov=True requires momentum > 0 and dampening == 0, got momentum={self.momentum!r}, "
                f"dampening={self.dampening!r}"
            )
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("momentum_buffer" if self.momentum != 0 else None, None, None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        c: dict[str, Any] = {"step": -lr}
        if wd != 0:
            c["wd"] = wd
        if self.momentum != 0:
            c.update(momentum=self.momentum, damp_weight=1 - self.dampening, first_step=t == 1, nesterov=self.nesterov)
        return c


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (weight decay as an L2 term in the gradient)::

        g = grad + weight_decay * p
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        vmax = max(vmax, v) (amsgrad; then v = vmax)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule. amsgrad: keep the running maximum of v.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.
    """

    _kind = _ADAM
    _decoupled = False

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: ScalarOrSchedule = 0.0,
        amsgrad: bool = False,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.amsgrad = boolean(amsgrad, "amsgrad")
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if self.amsgrad else None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step = -(lr / bias_correction1)
        if math.isinf(step):
            raise ValueError(
                f"lr / (1 - betas[0]**t) overflows float64 at step t={t}: lr={lr!r}, betas[0]={beta1!r}"
            )
        c: dict[str, Any] = {
            "step": step,
            "avg_weight": 1 - beta1,
            "sq_decay": beta2,
            "sq_weight": 1 - beta2,
            "bc2_sqrt": bias_correction2**0.5,
            "eps": self.eps,
            "amsgrad": self.amsgrad,
        }
        _decay_args(c, lr, wd, self._decoupled)
        return c


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay,
    ``p = p * (1 - lr * weight_decay)`` before the Adam update (default weight_decay=1e-2).
    Arguments and state as :class:`Adam`.

    Example::

        >>> w = np.ones(3, np.float32); opt = AdamW([w], lr=1e-2, max_grad_norm=1.0)
        >>> float(opt.step([np.full(3, 4.0, np.float32)]))   # the global grad norm
        6.928203230275509
    """

    _decoupled = True

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: ScalarOrSchedule = 1e-2,
        amsgrad: bool = False,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm,
            ema=ema, precision=precision, state_dtype=state_dtype, seed=seed,
        )


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``::

        g = grad + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g * g
        ga = lerp(ga, g, 1 - alpha); avg = sqrt(sq - ga * ga) (centered) | sqrt(sq)
        avg = avg + eps
        buf = momentum * buf + g / avg; p = p - lr * buf (momentum > 0) | p = p - lr * g / avg

    Args:
        params: arrays to update in place. lr: >= 0, or a schedule. alpha: in [0, 1].
        eps: > 0. weight_decay: >= 0, or a schedule. momentum: >= 0. centered: bool.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``square_avg``; ``grad_avg`` when centered; ``momentum_buffer`` when momentum > 0.
    """

    _kind = _RMSPROP

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: ScalarOrSchedule = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.alpha = hyperparameter(alpha, "alpha", low=0.0, high=1.0)
        self.eps = _eps(eps)
        self.momentum = hyperparameter(momentum, "momentum", low=0.0)
        self.centered = boolean(centered, "centered")
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("square_avg", "grad_avg" if self.centered else None,
                   "momentum_buffer" if self.momentum > 0 else None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        c: dict[str, Any] = {
            "step": -lr,
            "sq_decay": self.alpha,
            "sq_weight": 1 - self.alpha,
            "avg_weight": 1 - self.alpha,
            "eps": self.eps,
            "centered": self.centered,
        }
        if wd != 0:
            c["wd"] = wd
        if self.momentum > 0:
            c["momentum"] = self.momentum
        return c


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``::

        g = grad + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + g * g
        p = p - clr * g / (sqrt(sum) + eps)

    Args:
        params: arrays to update in place. lr: >= 0, or a schedule. lr_decay: >= 0.
        weight_decay: >= 0, or a schedule. initial_accumulator_value: >= 0 (the start of sum).
        eps: >= 0 (> 0 when initial_accumulator_value is 0). l1, prox_l1, max_grad_norm, ema: see
        the module docstring.

    State: ``sum``.
    """

    _kind = _ADAGRAD

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: ScalarOrSchedule = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.lr_decay = hyperparameter(lr_decay, "lr_decay", low=0.0)
        self.initial_accumulator_value = hyperparameter(
            initial_accumulator_value, "initial_accumulator_value", low=0.0
        )
        self.eps = hyperparameter(eps, "eps", low=0.0)
        if self.eps == 0 and self.initial_accumulator_value == 0:
            raise ValueError(
                "eps must be > 0 when initial_accumulator_value is 0 (a zero gradient would give 0/0 = nan), "
                f"got eps={self.eps!r}"
            )
        self._fills = {"sum": self.initial_accumulator_value}
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("sum", None, None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        c: dict[str, Any] = {"step": -(lr / (1 + (t - 1) * self.lr_decay)), "eps": self.eps}
        if wd != 0:
            c["wd"] = wd
        return c


class Lion(Optimizer):
    """Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), as
    ``lion_pytorch.Lion`` computes it (the reference the tests step against)::

        p = p * (1 - lr * weight_decay)
        c = beta1 * m + (1 - beta1) * g
        p = p - lr * sign(c)
        m = beta2 * m + (1 - beta2) * g

    ``sign`` is torch's: 0 for 0 and for NaN. Every element moves by exactly ``lr`` (or not at
    all), so Lion wants a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x
    larger (the paper's advice). One state array per parameter; each step reads param, grad and
    ``exp_avg`` and writes param and ``exp_avg`` once.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1).
        weight_decay: >= 0, or a schedule: decoupled, as AdamW's (``p * (1 - lr * weight_decay)``).
        decoupled_weight_decay: as lion-pytorch's: ``weight_decay`` is divided by the first
            step's lr ``lr0`` (``lr(0)`` for a schedule), so each step multiplies p by
            ``1 - lr / lr0 * weight_decay``: ``weight_decay`` is the decay per step at the
            initial learning rate.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``.

    Example::

        >>> w = np.zeros(3); opt = Lion([w], lr=0.1)
        >>> opt.step([np.array([2.0, -0.5, 0.0])]); w
        array([-0.1,  0.1,  0. ])
    """

    _kind = _LION

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: ScalarOrSchedule = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.betas = _betas(betas)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("exp_avg", None, None),
        )  # fmt: skip
        if self.decoupled_weight_decay and not callable(self.lr) and self.lr == 0:
            raise ValueError("lr must be > 0 with decoupled_weight_decay=True (weight_decay is divided by it), got lr=0.0")

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        beta1, beta2 = self.betas
        c: dict[str, Any] = {
            "step": -lr,
            "momentum": beta1,
            "damp_weight": 1 - beta1,
            "sq_decay": beta2,
            "sq_weight": 1 - beta2,
        }
        if wd != 0:
            if self.decoupled_weight_decay:
                lr0 = self.lr if not callable(self.lr) else schedule_value(self.lr, "lr", 0)
                if lr0 == 0:
                    raise ValueError(
                        "lr(0) must be > 0 with decoupled_weight_decay=True (weight_decay is divided by it), got 0.0"
                    )
                wd = wd / lr0
        _decay_args(c, lr, wd, True)
        return c


# ------------------------------------------------------------------ NAdam's momentum cache
#: (beta1, momentum_decay) -> [(step, prod)]: checkpoints of NAdam's running product of mu_t,
#: every _MU_EVERY steps, and the last step asked for.
_MU_CACHE: dict[tuple[float, float], dict[str, Any]] = {}
_MU_EVERY = 4096
_MU_LOCK = threading.Lock()


def _nadam_mu(beta1: float, momentum_decay: float, t: int) -> float:
    """mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay)), torch's momentum cache."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (t * momentum_decay)))


def _nadam_mu_product(beta1: float, momentum_decay: float, t: int) -> float:
    """prod(mu_1 .. mu_t) in double, multiplied one factor at a time as torch's ``mu_product``
    state does (with float64 as torch's default dtype; with float32 torch keeps it in float32).

    A function of t alone, so a restored or dask-driven optimizer needs no extra state. It is
    computed from the nearest checkpoint (cached per (beta1, momentum_decay)); the product
    stops changing once it underflows to 0, and once mu_t rounds to beta1 (0.96 ** (t *
    momentum_decay) below 2**-54: after about 229,000 steps at the default momentum_decay)
    the rest is ``beta1 ** (t - k)``. Either happens within a few million steps for every
    beta1 < 1, so any step count costs at most that once."""
    key = (beta1, momentum_decay)
    with _MU_LOCK:
        c = _MU_CACHE.setdefault(key, {"ckpt": [(0, 1.0)], "last": (0, 1.0), "tail": None})
        if c["tail"] is not None and t >= c["tail"][0]:  # mu_i == beta1 from step k + 1 on
            k, pk = c["tail"]
            return pk * beta1 ** (t - k) if pk else 0.0
        i, prod = c["last"] if c["last"][0] <= t else max(x for x in c["ckpt"] if x[0] <= t)
        while i < t:
            mu = _nadam_mu(beta1, momentum_decay, i + 1)
            if mu == beta1 or prod == 0.0:
                c["tail"] = (i, prod)
                return prod * beta1 ** (t - i) if prod else 0.0
            prod *= mu
            i += 1
            if i % _MU_EVERY == 0 and i > c["ckpt"][-1][0]:
                c["ckpt"].append((i, prod))
        c["last"] = (i, prod)
        return prod


def _decay_args(c: dict[str, Any], lr: float, wd: float, decoupled: bool) -> None:
    """Weight decay into the step's coefficients: ``p * (1 - lr * wd)`` (decoupled) or an L2
    term ``wd * p`` in the gradient."""
    if wd == 0:
        return
    if decoupled:
        c["decay"] = 1 - lr * wd
        if math.isinf(c["decay"]):
            raise ValueError(f"lr * weight_decay overflows float64: lr={lr!r}, weight_decay={wd!r}")
    else:
        c["wd"] = wd


class NAdam(Optimizer):
    """NAdam (Dozat, 2016), as ``torch.optim.NAdam``::

        g = grad + weight_decay * p            (or p = p * (1 - lr * weight_decay), decoupled)
        mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v / (1 - beta2**t)) + eps
        p = p - lr * (1 - mu_t) / (1 - prod(mu_1..mu_t)) * g / denom
        p = p - lr * mu_{t+1} / (1 - prod(mu_1..mu_{t+1})) * m / denom

    The product of the mu_t is formed in double from the step count (torch keeps it as a state
    tensor of its default dtype: float32 unless set to float64; the float32 trajectories agree
    within float32 rounding).

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule. momentum_decay: >= 0.
        decoupled_weight_decay: AdamW-style decay (torch's NAdamW), else an L2 term.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_avg_sq``.
    """

    _kind = _NADAM

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: ScalarOrSchedule = 0.0,
        momentum_decay: float = 4e-3,
        *,
        decoupled_weight_decay: bool = False,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.momentum_decay = hyperparameter(momentum_decay, "momentum_decay", low=0.0)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("exp_avg", "exp_avg_sq", None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        beta1, beta2 = self.betas
        md = self.momentum_decay
        mu, mu_next = _nadam_mu(beta1, md, t), _nadam_mu(beta1, md, t + 1)
        prod = _nadam_mu_product(beta1, md, t)
        c: dict[str, Any] = {
            "step": -lr * (1.0 - mu) / (1.0 - prod),
            "step2": -lr * mu_next / (1.0 - prod * mu_next),
            "avg_weight": 1 - beta1,
            "sq_decay": beta2,
            "sq_weight": 1 - beta2,
            "bc2": 1 - beta2**t,
            "eps": self.eps,
        }
        _decay_args(c, lr, wd, self.decoupled_weight_decay)
        return c


class RAdam(Optimizer):
    """RAdam (Liu et al., 2020), as ``torch.optim.RAdam``::

        g = grad + weight_decay * p            (or p = p * (1 - lr * weight_decay), decoupled)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        rho_inf = 2 / (1 - beta2) - 1;  rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
        u = m / (1 - beta1**t) * lr
        u = u * sqrt(1 - beta2**t) / (sqrt(v) + eps) * rect_t     when rho_t > 5
        p = p - u

    with ``rect_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``:
    while the variance of the adaptive rate is intractable (rho_t <= 5, the first steps) the
    update is SGD with momentum.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule.
        decoupled_weight_decay: AdamW-style decay, else an L2 term.
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_avg_sq``.
    """

    _kind = _RADAM

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: ScalarOrSchedule = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("exp_avg", "exp_avg_sq", None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        c: dict[str, Any] = {
            "avg_weight": 1 - beta1,
            "sq_decay": beta2,
            "sq_weight": 1 - beta2,
            "bc1": bias_correction1,
            "scale": lr,
            "eps": self.eps,
        }
        # rho_inf is inf for beta2 = 0 (no rectified steps); the terms are torch's, in its order.
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
        if rho_t > 5.0 and math.isfinite(rho_inf):
            c["bc2_sqrt"] = bias_correction2**0.5
            c["rect"] = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        _decay_args(c, lr, wd, self.decoupled_weight_decay)
        return c


class Adamax(Optimizer):
    """Adamax (Kingma and Ba, 2015, section 7.1), as ``torch.optim.Adamax``::

        g = grad + weight_decay * p
        m = lerp(m, g, 1 - beta1)
        u = maximum(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1**t) * m / u

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0.
        weight_decay: >= 0, or a schedule (an L2 term, as torch).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``exp_avg``, ``exp_inf``.
    """

    _kind = _ADAMAX

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: ScalarOrSchedule = 0.0,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("exp_avg", "exp_inf", None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        beta1, beta2 = self.betas
        step = -(lr / (1 - beta1**t))
        if math.isinf(step):
            raise ValueError(
                f"lr / (1 - betas[0]**t) overflows float64 at step t={t}: lr={lr!r}, betas[0]={beta1!r}"
            )
        c: dict[str, Any] = {"step": step, "avg_weight": 1 - beta1, "sq_decay": beta2, "eps": self.eps}
        _decay_args(c, lr, wd, False)
        return c


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``::

        g = grad + weight_decay * p
        sq = rho * sq + (1 - rho) * g * g
        delta = sqrt(acc + eps) / sqrt(sq + eps) * g
        acc = rho * acc + (1 - rho) * delta * delta
        p = p - lr * delta

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule (default 1.0, as torch). rho: in [0, 1]. eps: > 0.
        weight_decay: >= 0, or a schedule (an L2 term, as torch).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the
        module docstring.

    State: ``square_avg``, ``acc_delta``.
    """

    _kind = _ADADELTA

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: ScalarOrSchedule = 0.0,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.rho = hyperparameter(rho, "rho", low=0.0, high=1.0)
        self.eps = _eps(eps)
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("square_avg", "acc_delta", None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        c: dict[str, Any] = {"step": -lr, "sq_decay": self.rho, "sq_weight": 1 - self.rho, "eps": self.eps}
        _decay_args(c, lr, wd, False)
        return c


class LAMB(Optimizer):
    """LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning"), as
    ``pytorch_optimizer.Lamb`` computes it with its defaults (the first moment's bias
    correction on the step size, none on the second moment), per tensor::

        m = beta1 * m + (1 - beta1) * g           (m = beta1 * m + g without grad_averaging)
        v = beta2 * v + (1 - beta2) * g * g
        p = p * (1 - lr * weight_decay)           (decoupled_weight_decay; else u gets + wd * p)
        u = m / (sqrt(v) + eps)
        w = min(|p|, trust_clamp);  trust = w / (|u| + eps), or 1 when w or |u| is 0
        p = p - lr / (1 - beta1**t) * trust * u

    The norms are L2 norms over the whole tensor, summed in double in a fixed order (the same
    on every thread count and SIMD path) in a first pass over the tensors; a second pass applies
    the steps. Both passes are one native call.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. betas: each in [0, 1). eps: > 0 (default 1e-6).
        weight_decay: >= 0, or a schedule. decoupled_weight_decay: default True (see above).
        grad_averaging: scale g by 1 - beta1 in m (default True).
        trust_clamp: > 0, the cap on the parameter norm (pytorch-optimizer's 10).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the module
            docstring (``max_grad_norm`` clips before the step, as ``clip_grad_norm`` does;
            pytorch-optimizer's ``pre_norm`` is not the same).

    State: ``exp_avg``, ``exp_avg_sq``.
    """

    _kind = _LAMB
    _per_tensor = True

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: ScalarOrSchedule = 0.0,
        *,
        decoupled_weight_decay: bool = True,
        grad_averaging: bool = True,
        trust_clamp: float = 10.0,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.betas = _betas(betas)
        self.eps = _eps(eps)
        self.decoupled_weight_decay = boolean(decoupled_weight_decay, "decoupled_weight_decay")
        self.grad_averaging = boolean(grad_averaging, "grad_averaging")
        self.trust_clamp = hyperparameter(trust_clamp, "trust_clamp", low=0.0, low_open=True)
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("exp_avg", "exp_avg_sq", None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        beta1, beta2 = self.betas
        step = -(lr / (1 - beta1**t))
        if math.isinf(step):
            raise ValueError(
                f"lr / (1 - betas[0]**t) overflows float64 at step t={t}: lr={lr!r}, betas[0]={beta1!r}"
            )
        c: dict[str, Any] = {
            "step": step,
            "momentum": beta1,
            "damp_weight": 1 - beta1 if self.grad_averaging else 1.0,
            "sq_decay": beta2,
            "sq_weight": 1 - beta2,
            "eps": self.eps,
            "trust_clamp": self.trust_clamp,
        }
        if wd != 0:
            if self.decoupled_weight_decay:
                _decay_args(c, lr, wd, True)
            else:
                c["update_wd"] = wd
        return c


class LARS(Optimizer):
    """LARS (You et al., 2017, "Large Batch Training of Convolutional Networks"), as
    ``pytorch_optimizer.LARS`` computes it. On each tensor of more than one dimension (weights)::

        trust = trust_coefficient * |p| / (|g| + weight_decay * |p|)   (1 when |p| or that is 0)
        g = (g + weight_decay * p) * trust

    while vectors and scalars (biases, norm scales) keep ``g``; then on every tensor::

        buf = momentum * buf + (1 - dampening) * g      (buf starts at zeros)
        g = g + momentum * buf (nesterov) | buf
        p = p - lr * g

    The norms are reduced as :class:`LAMB`'s, in a first pass of the same native call.

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64 or
            bfloat16/float16, one dtype).
        lr: >= 0, or a schedule. momentum: >= 0 (0: no buffer). dampening: in [0, 1].
        weight_decay: >= 0, or a schedule. nesterov: bool.
        trust_coefficient: >= 0 (default 1e-3).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the module
            docstring (the norm of g is that of the clipped gradient with its L1 term).

    State: ``momentum_buffer`` when momentum > 0.
    """

    _kind = _LARS
    _per_tensor = True

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-3,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: ScalarOrSchedule = 0.0,
        nesterov: bool = False,
        *,
        trust_coefficient: float = 1e-3,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.momentum = hyperparameter(momentum, "momentum", low=0.0)
        self.dampening = hyperparameter(dampening, "dampening", low=0.0, high=1.0)
        self.nesterov = boolean(nesterov, "nesterov")
        self.trust_coefficient = hyperparameter(trust_coefficient, "trust_coefficient", low=0.0)
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=("momentum_buffer" if self.momentum > 0 else None, None, None),
        )  # fmt: skip

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        c: dict[str, Any] = {"step": -lr, "trust_coef": self.trust_coefficient, "nesterov": self.nesterov}
        if self.momentum > 0:
            c.update(momentum=self.momentum, damp_weight=1 - self.dampening)
        if wd != 0:
            c["wd"] = wd
        return c


class Adafactor(Optimizer):
    """Adafactor (Shazeer and Stern, 2018), as ``torch.optim.Adafactor``. For a tensor of more
    than one dimension the second moment is factored over its last two axes (R x C, batched
    over the others)::

        beta2_t = 1 - t ** beta2_decay;  rho_t = min(lr, 1 / sqrt(t))
        alpha = max(eps2, rms(p)) * rho_t
        p = p * (1 - lr * weight_decay)
        row_var = lerp(row_var, mean(g**2 over C), 1 - beta2_t)      (R x 1)
        col_var = lerp(col_var, mean(g**2 over R), 1 - beta2_t)      (1 x C)
        v = row_var @ col_var / max(mean(row_var), eps1)
        u = g / sqrt(max(v, eps1**2))
        p = p - alpha / max(1, rms(u) / d) * u

    and a vector or scalar keeps ``variance = lerp(variance, g**2, 1 - beta2_t)`` as ``v``.
    ``rms`` is the root mean square over the whole tensor; ``eps1`` None means the machine
    epsilon of the state's dtype (float32 for 16-bit params, whose factors are float32). The row and column means and the norms are sums in double in a fixed order
    (the same on every thread count and SIMD path), all in one native call that reads each
    gradient three times and each parameter twice (torch's reads them about ten times, and
    materializes v).

    Args:
        params: arrays to update in place (C-contiguous, writable, float32/float64, one dtype).
        lr: >= 0, or a schedule (default 1e-2, as torch). beta2_decay: <= 0.
        eps: (eps1, eps2): eps1 None or >= 0, eps2 >= 0. d: >= 1, the clipping threshold.
        weight_decay: >= 0, or a schedule (decoupled, as torch).
        l1, prox_l1, max_grad_norm, ema, precision, state_dtype, seed: see the module
            docstring (16-bit params keep float32 factors: state_dtype must be float32).

    State: ``row_var`` and ``col_var`` for tensors of more than one dimension, ``variance`` for
    the others; each list holds None where a tensor keeps no such buffer.
    """

    _kind = -1  # its own native call
    _per_tensor = True

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: ScalarOrSchedule = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: ScalarOrSchedule = 0.0,
        *,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: EMA | None = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
    ) -> None:
        self.beta2_decay = hyperparameter(beta2_decay, "beta2_decay", high=0.0)
        if isinstance(eps, (str, bytes, dict, set, frozenset)) or not hasattr(eps, "__len__") or len(eps) != 2:
            raise TypeError(f"eps must be a pair (eps1, eps2), got eps={eps!r}")
        eps1 = None if eps[0] is None else hyperparameter(eps[0], "eps[0]", low=0.0)
        self.eps = (eps1, hyperparameter(eps[1], "eps[1]", low=0.0))
        self.d = hyperparameter(d, "d", low=1.0)
        super().__init__(
            params, lr=lr, weight_decay=weight_decay, l1=l1, prox_l1=prox_l1, max_grad_norm=max_grad_norm, ema=ema,
            precision=precision, state_dtype=state_dtype, seed=seed,
            slots=(None, None, None),
        )  # fmt: skip
        if self._low and self.state_dtype != np.float32:
            raise TypeError(f"state_dtype must be float32 for Adafactor's 16-bit step (its factors are small), "
                            f"got {self.state_dtype}")  # fmt: skip
        self._slots = ("row_var", "col_var", "variance")
        sdt = self.state_dtype
        master = self.state.get("master")
        self.state = {
            "row_var": [np.zeros(p.shape[:-1] + (1,), sdt) if p.ndim > 1 else None for p in self.params],
            "col_var": [np.zeros(p.shape[:-2] + (1, p.shape[-1]), sdt) if p.ndim > 1 else None for p in self.params],
            "variance": [np.zeros(p.shape, sdt) if p.ndim <= 1 else None for p in self.params],
        }
        if master is not None:
            self.state["master"] = master

    def _coefficients(self, t: int, lr: float, wd: float) -> dict[str, Any]:
        eps1 = self.eps[0] if self.eps[0] is not None else float(np.finfo(self.state_dtype).eps)
        c: dict[str, Any] = {"avg_weight": float(t) ** self.beta2_decay, "eps": eps1 * eps1}
        c["_scalars"] = {"rho": min(lr, 1 / (float(t) ** 0.5)), "eps1": eps1, "eps2": self.eps[1], "d": self.d}
        _decay_args(c, lr, wd, True)
        return c

    def _native_call(self, grads: list, states: list, names: list[str], args: dict[str, Any]) -> tuple[str, tuple]:
        args = dict(args)
        scalars = args.pop("_scalars")
        if self._low:
            masters = self.state["master"] if self.precision == "master" else None
            return "adafactor_step_low", (
                self.params, grads, states[0], states[1], states[2], states[3], args, scalars,
                self.max_grad_norm or 0.0, masters, self._sr_key, self.step_count,
            )  # fmt: skip
        return "adafactor_step", (
            self.params, grads, states[0], states[1], states[2], states[3], args, scalars, self.max_grad_norm or 0.0
        )


# ------------------------------------------------------------------------ weight averages
class _Average:
    """A running average of a list of parameters, kept in ``averages`` (one array per
    parameter, same shape and dtype), as ``torch.optim.swa_utils.AveragedModel``: the first
    update copies the parameters, each later one moves the average toward them (see the
    subclasses). ``update()`` is one native pass (threads, SIMD, the GIL released); an optimizer
    given ``ema=`` does the same update inside its step's pass."""

    def __init__(self, params: Sequence[np.ndarray]) -> None:
        self.params: list[np.ndarray] = _arrays(params, "params", low=True)
        #: Whether the parameters are bfloat16/float16: their averages are then float32 (an
        #: average in 16 bits would lose every update below half its ulp).
        self._low = self.params[0].dtype in LOW_DTYPES
        #: The averages, one array per parameter (copies of the parameters until the first update).
        self.averages: list[np.ndarray] = [p.astype(np.float32) if self._low else p.copy() for p in self.params]
        #: Updates so far (torch's ``n_averaged``).
        self.n_averaged = 0
        self._lock = threading.RLock()

    def _weight(self, n: int) -> float:
        raise NotImplementedError

    def _args(self) -> dict[str, Any]:
        """The kernel's coefficients of the next update."""
        if self.n_averaged == 0:
            return {"ema_weight": 1.0, "ema_copy": True}
        return {"ema_weight": self._weight(self.n_averaged)}

    def update(self) -> None:
        """Fold the parameters' current values into the averages (one pass).

        Raises:
            ValueError: an average that shares memory with a parameter (``averages`` replaced
                by hand), naming both; nothing is updated then.
        """
        with self._lock:
            roots = {id(memory_root(p)) for p in self.params}
            if any(isinstance(a, np.ndarray) and id(memory_root(a)) in roots for a in self.averages):
                found = first_overlap(
                    [(f"averages[{i}]", a) for i, a in enumerate(self.averages) if isinstance(a, np.ndarray)],
                    [(f"params[{i}]", p) for i, p in enumerate(self.params)],
                )
                if found is not None:
                    raise ValueError(f"{found}; the averages must not share memory with the parameters")
            if self._low:
                _core.optim_step_low(
                    _AVERAGE, self.averages, self.params, [None] * 4, [""] * 4, self._args(), 0.0, None, None, 0
                )
            else:
                _core.optim_step(_AVERAGE, self.averages, self.params, [None] * 4, [""] * 4, self._args(), 0.0)
            self.n_averaged += 1

    def copy_to(self, params: Sequence[np.ndarray] | None = None) -> None:
        """Write the averages into ``params`` (default: the averaged parameters themselves),
        e.g. to evaluate or save the averaged model. ``params``: one C-contiguous, writable array
        per parameter, of its shape and dtype (or a tensor exporting DLPack, such as a CPU torch
        tensor, written in place); anything else raises TypeError/ValueError naming
        ``params[i]``, and nothing is written."""
        with self._lock:
            out = self.params if params is None else same_length(params, "params", self.averages, "averages")
            out = [check_inplace(o, f"params[{i}]") for i, o in enumerate(out)]  # DLPack tensors: views
            for i, (o, a) in enumerate(zip(out, self.averages)):
                p = self.params[i]
                if o.shape != a.shape or o.dtype != p.dtype:
                    raise ValueError(f"params[{i}] must be an array of shape {a.shape} and dtype {p.dtype}, "
                                     f"got shape {o.shape} and dtype {o.dtype}")  # fmt: skip
            for o, a in zip(out, self.averages):
                if o.dtype == a.dtype:
                    np.copyto(o, a)
                else:  # a float32 average into 16-bit params: rounded to nearest even
                    _core.convert(a, o)

    def state_dict(self) -> dict[str, Any]:
        """A copy: ``{"n_averaged": int, "averages": [arrays]}``."""
        with self._lock:
            return {"n_averaged": self.n_averaged, "averages": [a.copy() for a in self.averages]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` of an average of the same parameter shapes (copied in).
        A wrong key, count, length, dtype or shape, or a NaN or inf in an average, raises
        TypeError/ValueError naming it (``state_dict['averages'][1][2]``); nothing is loaded."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"n_averaged", "averages"}:
            raise ValueError("state_dict must be a dict with keys 'n_averaged' and 'averages', as state_dict() returns")
        n = nonnegative_int(state_dict["n_averaged"], "state_dict['n_averaged']", upper=_MAX_STEP)
        arrays = same_length(state_dict["averages"], "state_dict['averages']", self.params, "params")
        for i, (a, p, own) in enumerate(zip(arrays, self.params, self.averages)):
            label = f"state_dict['averages'][{i}]"
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{label} must be a numpy.ndarray, got {type(a).__name__}")
            not_masked(a, label)
            if a.dtype != own.dtype:
                raise TypeError(f"{label} has dtype {a.dtype} but the averages of params[{i}] have {own.dtype}")
            if a.shape != p.shape:
                raise ValueError(f"{label} has shape {a.shape} but params[{i}] has shape {p.shape}")
            finite_array(a, label, "the averages must be finite")
        with self._lock:
            arrays = [a.copy() for a in arrays]  # may be views of the averages themselves
            for own, a in zip(self.averages, arrays):
                np.copyto(own, a)
            self.n_averaged = n

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.params)} params, {self.params[0].dtype}, n_averaged {self.n_averaged})"


class EMA(_Average):
    """Exponential moving average of parameters, as ``torch.optim.swa_utils.AveragedModel``
    with ``get_ema_multi_avg_fn(decay)``: the first update copies the parameters, each later
    one is ``avg = lerp(avg, p, 1 - decay)`` (torch's lerp, rounded as torch's).

    Args:
        params: the arrays to average (C-contiguous, float32/float64, one dtype). The averages
            start as copies of them.
        decay: in [0, 1].
        warmup: TensorFlow's ``ExponentialMovingAverage(num_updates=)`` warm-up: update n (n
            updates done before it) uses ``min(decay, (1 + n) / (10 + n))``, so early averages
            are not dominated by the initial weights.

    ``update()`` reads the parameters once; an optimizer built with ``ema=this`` updates the
    average from each new parameter value inside its own pass instead.

    Example::

        >>> w = np.zeros(2); ema = EMA([w], decay=0.9); opt = SGD([w], lr=1.0, ema=ema)
        >>> opt.step([np.ones(2)]); opt.step([np.ones(2)]); ema.averages[0]
        array([-1.1, -1.1])
    """

    def __init__(self, params: Sequence[np.ndarray], decay: float = 0.999, *, warmup: bool = False) -> None:
        self.decay = hyperparameter(decay, "decay", low=0.0, high=1.0)
        self.warmup = boolean(warmup, "warmup")
        super().__init__(params)

    def _weight(self, n: int) -> float:
        decay = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        return 1 - decay


class SWA(_Average):
    """Equal-weight average of parameters (stochastic weight averaging), as
    ``torch.optim.swa_utils.AveragedModel``'s default on the CPU: the first update copies,
    update n + 1 is ``avg = avg + (p - avg) / (n + 1)``, so after k updates the average is the
    mean of the k parameter values. Methods and ``ema=`` as :class:`EMA`.

    Example::

        >>> w = np.zeros(1); swa = SWA([w])
        >>> for v in (1.0, 2.0, 6.0):
        ...     w[:] = v; swa.update()
        >>> swa.averages[0]
        array([3.])
    """

    def _args(self) -> dict[str, Any]:
        n = self.n_averaged
        return {"ema_weight": 1.0, "ema_copy": True} if n == 0 else {"ema_weight": 1 / (n + 1), "ema_count": n + 1}
