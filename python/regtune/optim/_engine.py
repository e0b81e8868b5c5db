"""The optimizer engine: a stateless :class:`Rule` says how one rule updates; the stateful
:class:`Optimizer` holds the parameters, the state, the schedules and the lock, and steps every
rule through one native call (see the package docstring)."""

from __future__ import annotations

import contextlib
import inspect
import math
import threading
from typing import Any, Callable, ClassVar, Sequence, Union

import numpy as np

from .. import _core
from .._seeding import domain_key
from .._validation import (
    LOW_DTYPES,
    boolean,
    array_list,
    as_array,
    finite_array,
    memory_root,
    nonnegative_int,
    not_masked,
    one_of,
    same_length,
    scalar_or_schedule,
    schedule_value,
    hyperparameter,
)

ScalarOrSchedule = Union[float, Callable[[int], float]]

#: How a step writes 16-bit parameters back (see the package docstring).
PRECISIONS = ("round", "stochastic", "master")
#: step counts stay below 2**63 (an int64), so every coefficient is a float computation.
MAX_STEP = 2**63
#: The native rules (cpp/src/optim/rules.def), by name: their fields, state count, whether
#: they take a trust ratio per tensor.
CORE_RULES: dict[str, dict[str, Any]] = {r["name"]: r for r in _core.optim_rules()}


def like_param(p: np.ndarray, dtype: Any, value: Any) -> np.ndarray:
    """A new array of ``p``'s shape and ``dtype`` holding ``value`` (a scalar, or an array such
    as ``p`` itself, cast), placed at the same offset within a cache line as ``p`` (NumPy's own
    allocations are 16-byte aligned): a step reads and writes its parameter, gradient and state
    with the same vectors, and when one stream's vectors straddle cache lines and another's do
    not, the step runs 10-35% slower (AdamW, 4096x4096, torch tensors as parameters, the VM of
    the README). One pass: the value is written once."""
    dtype = np.dtype(dtype)
    off = (p.ctypes.data % 64) // max(p.itemsize, 1) * dtype.itemsize % 64
    nbytes = p.size * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    start = (off - raw.ctypes.data) % 64
    a = raw[start : start + nbytes].view(dtype).reshape(p.shape)
    np.copyto(a, value, casting="unsafe")
    return a


def _arrays(arrays: Any, name: str) -> list[np.ndarray]:
    """:func:`array_list` (in-place arrays, no two sharing memory), masked arrays refused."""
    out = array_list(arrays, name, low=True)
    for i, a in enumerate(out):
        not_masked(a, f"{name}[{i}]")
    return out


# ------------------------------------------------------------------------------- rules
#: Every rule, by its key (``"adamw"``), in the order their modules define them.
RULES: dict[str, type[Rule]] = {}


class Rule:
    """An update rule: its hyperparameters (checked in ``__init__``, which also fixes the
    optimizer's signature: ``lr`` and ``weight_decay`` in torch's positions), the state it keeps
    and the coefficients of each step. Stateless between steps: whatever changes from step to
    step lives in the :class:`Optimizer` (its arrays, its step count and ``scalars``).

    A rule is one class in its own module under ``regtune/optim/rules/`` with:

    - ``name`` (the optimizer class made from it: ``"AdamW"``) and ``key`` (``"adamw"``, for
      the trainer, the CLI and dask); ``core``, the native rule (a name of
      ``regtune._core.optim_rules()``, one header each in ``cpp/src/optim/rules/``);
    - ``__init__(self, lr=..., <hyperparameters>..., weight_decay=..., *, ...)`` and a docstring
      (the optimizer's);
    - ``slots()``: the names of its state arrays, in the native rule's order (None: unused);
    - ``coefficients(t, lr, wd)``: the native rule's fields for step ``t`` (1 for the first) as a
      dict, and the fused extras it sets (``decay`` for decoupled weight decay, ``wd`` for an L2
      term); computed in double with the expressions of the rule's reference.

    It may also set ``fills`` (a state array's initial value, or ``"param"`` for a copy of the
    parameter taken at the first step), ``scalars`` (scalar state with its initial values,
    advanced by ``advance``), ``methods`` (rule functions ``f(opt, ...)`` that become methods
    of the optimizer and of its torch counterpart) and the ``torch_*`` attributes below (how
    :mod:`regtune.torch.optim` reads and writes the reference's param groups and state)."""

    name: ClassVar[str]
    key: ClassVar[str]
    core: ClassVar[str]
    fills: ClassVar[dict[str, Any]] = {}
    scalars: ClassVar[dict[str, Any]] = {}
    methods: ClassVar[tuple[str, ...]] = ()
    #: Param-group options the rule's torch reference reads that regtune has no use for (its
    #: implementation switches): regtune.torch.optim writes them into state_dict()'s groups,
    #: so that the reference loads it. (torch.optim's own optimizers: found by name.)
    torch_options: ClassVar[dict[str, Any]] = {}
    #: Param-group options of the reference with the one value regtune implements (LAMB's
    #: ``rectify=False``): a group, or a loaded state_dict, with another value is refused by name,
    #: and state_dict() writes them. (torch.optim's own optimizers: found from their defaults.)
    torch_fixed: ClassVar[dict[str, Any]] = {}
    #: The reference's names of regtune hyperparameters (``{"weight_decouple":
    #: "decoupled_weight_decay"}``): a group added or loaded with one is kept under regtune's name
    #: (refused when both are there and disagree); state_dict() writes both.
    torch_aliases: ClassVar[dict[str, str]] = {}
    #: Group keys that the reference uses with another meaning than regtune's (pytorch-optimizer's
    #: ``max_grad_norm`` scales its ``pre_norm``): in a group the reference wrote (one with an
    #: alias of ``torch_aliases`` and without regtune's name) they take this optimizer's values.
    torch_foreign: ClassVar[tuple[str, ...]] = ()
    #: The param-group key under which the reference counts steps per group (one count for all
    #: of a group's parameters, advanced at every ``step()`` even for a group whose gradients are
    #: all None): Schedule-Free's ``"k"``, pytorch-optimizer's ``"step"``. None: torch's ``step``
    #: per parameter (a parameter whose gradient was None keeps its own count).
    torch_group_step: ClassVar[str | None] = None
    #: Scalar state torch keeps in each parameter's state (NAdam's running ``mu_product``), with
    #: its initial value: regtune.torch.optim passes a parameter's value to ``advance`` in
    #: ``scalars`` and stores the value it returns (rules derive it when it is not given).
    torch_param_scalars: ClassVar[dict[str, float]] = {}
    #: Per-parameter state the reference writes and never reads (pytorch-optimizer's LAMB
    #: diagnostics): accepted in a loaded state_dict (and kept as it is), never updated.
    torch_state_info: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "key" in cls.__dict__:
            if cls.key in RULES:
                raise ValueError(f"two rules with the key {cls.key!r}")
            if cls.core not in CORE_RULES and cls.core != "adafactor":
                raise ValueError(f"{cls.__name__}.core={cls.core!r} is no native rule of {sorted(CORE_RULES)}")
            RULES[cls.key] = cls

    @classmethod
    def blockwise8(cls) -> bool:
        """Whether its state may be blockwise 8-bit (``state_dtype="int8"``)."""
        return cls.core in CORE_RULES and CORE_RULES[cls.core]["blockwise8"]

    @classmethod
    def elementwise(cls) -> bool:
        """Whether each element's update depends only on that element (dask steps chunk by chunk)."""
        return cls.core in CORE_RULES and not CORE_RULES[cls.core]["per_tensor"]

    @classmethod
    def trust_ratio(cls) -> bool:
        """Whether each tensor's step scales by a ratio of its norms (LAMB, LARS): the step
        calls the optimizer's ``reduce_sums`` with them, when set, before using them."""
        return cls.core in CORE_RULES and CORE_RULES[cls.core]["per_tensor"]

    def slots(self) -> tuple[str | None, str | None, str | None]:
        raise NotImplementedError

    def coefficients(self, t: int, lr: float, wd: float) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    def advance(self, scalars: dict[str, Any], t: int, lr: float, wd: float) -> tuple[dict, dict, dict]:
        """The coefficients of step ``t`` and the scalar state after it (rules with ``scalars``
        override this; the optimizer commits the new scalars only once the step has run)."""
        coef, fused = self.coefficients(t, lr, wd)
        return coef, fused, scalars

    def state_arrays(
        self, params: list[np.ndarray], dtype: np.dtype, min_8bit_size: int | None = None
    ) -> dict[str, list[np.ndarray | None]]:
        """The state arrays for ``params`` (one per parameter and slot, filled per ``fills``).
        With ``min_8bit_size`` (blockwise 8-bit state), a parameter of at least that many
        elements keeps each buffer as uint8 codes (``name``) and their blocks' float32 absmax
        (``name + "_absmax"``); a smaller one keeps float32 (its ``_absmax`` entry None)."""
        out: dict[str, list[np.ndarray | None]] = {}
        nonneg = CORE_RULES[self.core]["nonnegative"] if self.core in CORE_RULES else ()
        for k, name in enumerate(self.slots()):
            if name:
                fill = self.fills.get(name, 0.0)
                fill = 0.0 if isinstance(fill, str) else fill  # "param": filled at the first step
                if min_8bit_size is None:
                    out[name] = [like_param(p, dtype, fill) for p in params]
                    continue
                signed = not nonneg[k]
                zero = int(np.flatnonzero(_core.dynamic_map(signed) == 0)[0])
                arrays: list[np.ndarray | None] = []
                absmax: list[np.ndarray | None] = []
                for p in params:
                    if p.size < min_8bit_size:
                        arrays.append(like_param(p, dtype, fill))
                        absmax.append(None)
                    elif fill == 0:  # the code of 0, absmax 0 (what encoding zeros gives, without a float32 copy)
                        arrays.append(np.full(p.shape, zero, np.uint8))
                        absmax.append(np.zeros(-(-p.size // _core.Q8_BLOCK), np.float32))
                    else:
                        codes, m = _core.quantize_blockwise(np.full(p.shape, fill, np.float32), signed)
                        arrays.append(codes)
                        absmax.append(m)
                out[name], out[name + ABSMAX] = arrays, absmax
        return out

    def native_call(self, opt: Optimizer, grads: list, coef: dict, fused: dict) -> tuple[str, tuple]:
        """The step's native call (the name of the ``_core`` function and its arguments)."""
        states, names = opt._slot_lists()
        masters = opt.state["master"] if opt.precision == "master" else None
        return "optim_step", (
            self.core, opt.params, grads, states, names, coef, fused, opt.own_max_grad_norm, masters,
            opt._sr_key, opt.step_count, opt.reduce_sums,
        )  # fmt: skip

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({hyper})"


def decay_terms(lr: float, wd: float, decoupled: bool) -> dict[str, float]:
    """Weight decay as fused extras: ``p * (1 - lr * wd)`` (decoupled) or an L2 term ``wd * p``
    in the gradient."""
    if wd == 0:
        return {}
    if decoupled:
        decay = 1 - lr * wd
        if math.isinf(decay):
            raise ValueError(f"lr * weight_decay overflows float64: lr={lr!r}, weight_decay={wd!r}")
        return {"decay": decay}
    return {"wd": wd}


def betas(value: Any) -> tuple[float, float]:
    """A pair of floats in [0, 1), named ``betas[0]`` / ``betas[1]``."""
    if isinstance(value, (str, bytes, dict, set, frozenset)):  # iterable, but not a pair in order
        raise TypeError(f"betas must be a pair of floats, got betas={value!r}")
    try:
        b = tuple(value)
    except TypeError:
        raise TypeError(f"betas must be a pair of floats, got betas={value!r}") from None
    if len(b) != 2:
        raise ValueError(f"betas must be a pair of floats, got betas={value!r}")
    return tuple(hyperparameter(x, f"betas[{i}]", low=0.0, high=1.0, high_open=True) for i, x in enumerate(b))


def eps(value: Any) -> float:
    """eps of Adam and its kin: finite and > 0. (torch also takes 0, where an element whose
    gradient has been 0 so far gets 0 / 0 = nan.)"""
    return hyperparameter(value, "eps", low=0.0, low_open=True)


def bias_step(lr: float, beta1: float, t: int) -> float:
    """-lr / (1 - beta1**t), refused when it overflows."""
    step = -(lr / (1 - beta1**t))
    if math.isinf(step):
        raise ValueError(f"lr / (1 - betas[0]**t) overflows float64 at step t={t}: lr={lr!r}, betas[0]={beta1!r}")
    return step


# ---------------------------------------------------------------------------- optimizer
#: Buffers that are never negative (running sums of squares, whose sqrt is taken; Adamax's
#: running maximum of |g|; Adadelta's squared updates).
SQUARES = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "exp_inf", "acc_delta", "row_var", "col_var", "variance")
#: ``state_dtype=`` for blockwise 8-bit state, and the suffix of its absmax buffers.
BLOCKWISE = "int8"
ABSMAX = "_absmax"
#: Parameters below this many elements keep float32 state under ``state_dtype="int8"``
#: (bitsandbytes' default ``min_8bit_size``).
MIN_8BIT_SIZE = 4096
#: The spawn key that sets stochastic rounding's Philox keys apart from regtune.random's.
SR_DOMAIN = 0x5352


class Optimizer:
    """The machinery every optimizer shares: parameters, state, schedules, one native step.

    ``Optimizer(params, rule, *, lr, weight_decay, ...)`` steps ``params`` by ``rule`` (a
    :class:`Rule`); the classes of :mod:`regtune.optim` (``AdamW`` ...) are made from their
    rules and take the rule's hyperparameters as arguments. The rule's hyperparameters read
    through the optimizer (``opt.betas``).

    Thread safety: calls from several Python threads are serialized by a lock held for the
    whole call; the result equals some serial order of the calls. The lock is re-entrant, so
    a schedule may call ``state_dict()`` from inside ``step``; a schedule that steps its own
    optimizer makes that ``step`` raise RuntimeError instead of losing a step.
    """

    rule_class: ClassVar[type[Rule] | None] = None

    def __init__(
        self,
        params: Sequence[np.ndarray],
        rule: Rule,
        *,
        lr: ScalarOrSchedule,
        weight_decay: ScalarOrSchedule,
        l1: float = 0.0,
        prox_l1: float = 0.0,
        max_grad_norm: float | None = None,
        ema: Any = None,
        precision: str = "round",
        state_dtype: Any = None,
        seed: Any = None,
        maximize: bool = False,
        min_8bit_size: int = MIN_8BIT_SIZE,
    ) -> None:
        if not isinstance(rule, Rule):
            raise TypeError(f"rule must be a regtune.optim.Rule, got {type(rule).__name__}")
        #: The update rule (stateless: its hyperparameters).
        self.rule = rule
        self.params: list[np.ndarray] = _arrays(params, "params")
        dt = self.params[0].dtype
        if not one_of(precision, PRECISIONS):
            valid = ", ".join(map(repr, PRECISIONS))
            raise ValueError(f"precision must be one of {valid}, got precision={precision!r}")
        low = dt in LOW_DTYPES
        if precision != "round" and not low:
            raise ValueError(f"precision={precision!r} needs bfloat16 or float16 params, got {dt}")
        #: How the update is written back to 16-bit parameters: "round", "stochastic" or "master".
        self.precision = precision
        #: Whether the state is blockwise 8-bit (``state_dtype="int8"``).
        self.blockwise = _is_int8(state_dtype)
        #: Parameters below this many elements keep float32 state under ``state_dtype="int8"``.
        self.min_8bit_size = nonnegative_int(min_8bit_size, "min_8bit_size", upper=2**63)
        if self.blockwise:
            if dt == np.float64:
                raise TypeError("state_dtype='int8' goes with float32, bfloat16 or float16 params, got float64")
            if not rule.blockwise8():
                raise TypeError(f"state_dtype='int8': {rule.name} keeps no blockwise 8-bit state")
            sdt = np.dtype(np.float32)
        elif state_dtype is None:
            sdt = np.dtype(np.float32) if low else dt
        else:
            try:
                sdt = np.dtype(state_dtype)
            except TypeError:
                raise TypeError(f"state_dtype must be float32, the params' dtype or 'int8', got {state_dtype!r}") from None
            if sdt != dt and not (low and sdt == np.float32):
                raise TypeError(f"state_dtype must be float32, the params' dtype ({dt}) or 'int8', got {sdt}")
        #: The dtype of the optimizer's state buffers (float32 by default for 16-bit params), or
        #: "int8" for blockwise 8-bit state.
        self.state_dtype: Any = BLOCKWISE if self.blockwise else sdt
        #: The Philox key of stochastic rounding (None otherwise).
        self._sr_key = domain_key(seed, SR_DOMAIN) if precision == "stochastic" else None
        if precision != "stochastic" and seed is not None:
            raise ValueError(f"seed= keys stochastic rounding: it needs precision='stochastic', got {precision!r}")
        if ema is not None:
            from ._average import Average

            if not isinstance(ema, Average):
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
        #: Ascend the objective: every step uses -grad (torch's ``maximize=True``), inside the pass.
        self.maximize = boolean(maximize, "maximize")
        #: None, or the gradient norm ``max_grad_norm`` clips by, computed by the caller over more
        #: gradients than this optimizer's (regtune.torch.optim: every group's, and the whole
        #: device mesh's); the step then computes no norm of its own.
        self.global_grad_norm: float | None = None
        #: None, or the native step's ``reduce``: a callable given the sums of squares the step
        #: divides, to make whole in place (regtune.torch.optim all-reduces a DTensor shard's
        #: over its device mesh). For a rule with a trust ratio (LAMB, LARS) ``f(sums)``, a
        #: float64 array of each parameter's two, shape (len(params), 2); for Adafactor
        #: ``f(stage, sums, offsets)``, as ``_core.adafactor_step`` says; never called by others.
        self.reduce_sums: Callable[..., None] | None = None
        self._lock = threading.RLock()  # held by step, state_dict and load_state_dict
        self.step_count = 0
        #: The optimizer state: buffer name -> one array per parameter (torch's names).
        self.state: dict[str, list[np.ndarray | None]] = (
            rule.state_arrays(self.params, sdt, self.min_8bit_size) if self.blockwise else rule.state_arrays(self.params, sdt)
        )
        if precision == "master":  # the float32 master copy: the step's parameter
            self.state["master"] = [like_param(p, np.float32, p) for p in self.params]
        #: The rule's scalar state (Schedule-Free's weight sum, ...): empty for most rules.
        self.scalars: dict[str, Any] = dict(rule.scalars)

    def __getattr__(self, name: str) -> Any:
        # The rule's hyperparameters read through the optimizer (opt.betas, opt.momentum).
        rule = self.__dict__.get("rule")
        if rule is not None and not name.startswith("_") and name in vars(rule):
            return getattr(rule, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # A rule's hyperparameter reads through the optimizer; set there it would be a new
        # attribute that no step reads: refused (lr and weight_decay are the optimizer's own).
        rule = self.__dict__.get("rule")
        if rule is not None and not name.startswith("_") and name in vars(rule) and name not in self.__dict__:
            raise AttributeError(f"{name} is a hyperparameter of the {type(rule).__name__} rule, fixed when the "
                                 f"optimizer is made: make a new optimizer and load_state_dict() to change it")  # fmt: skip
        super().__setattr__(name, value)

    @property
    def own_max_grad_norm(self) -> float:
        """The max_grad_norm the native step clips by with a norm of its own (0.0: none)."""
        return (self.max_grad_norm or 0.0) if self.global_grad_norm is None else 0.0

    @property
    def low(self) -> bool:
        """Whether the parameters are bfloat16/float16 (the 16-bit step)."""
        return self.params[0].dtype in LOW_DTYPES

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

    def _gradients(self, grads: Sequence[np.ndarray]) -> list:
        """The gradient list as the native call takes it (torch tensors viewed as arrays; the
        caller's list is never modified)."""
        grads = same_length(grads, "grads", self.params, "params")
        own = False  # whether grads is this call's own list
        for i, g in enumerate(grads):
            if type(g) is not np.ndarray:  # exact ndarrays (the usual case) skip these tests
                not_masked(g, f"grads[{i}]")
                if hasattr(g, "__dlpack__") and not isinstance(g, np.ndarray):  # a torch tensor: a view of it
                    if not own:
                        grads, own = list(grads), True
                    grads[i] = as_array(g, f"grads[{i}]")
        return grads

    def _slot_lists(self) -> tuple[list, list[str]]:
        """The rule's state lists in its slots' order and the averages, with their labels."""
        slots = self.rule.slots()
        states = [self.state[name] if name else None for name in slots] + [
            self.ema.averages if self.ema is not None else None
        ]
        if self.blockwise:  # blockwise 8-bit buffers go as (codes, absmax) pairs
            for k, name in enumerate(slots):
                if name:
                    absmax = self.state[name + ABSMAX]
                    states[k] = [a if m is None else (a, m) for a, m in zip(states[k], absmax)]
        names = [f"state[{name!r}]" if name else "" for name in slots] + ["ema.averages"]
        return states, names

    def coefficients(self, count: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The native rule's coefficients, the fused extras and the scalar state after the step
        that follows ``count`` steps (schedules read at ``count``). Also used by
        :func:`regtune.dask.optim.step`, chunk by chunk."""
        lr = schedule_value(self.lr, "lr", count)
        wd = schedule_value(self.weight_decay, "weight_decay", count)
        try:
            coef, fused, scalars = self.rule.advance(dict(self.scalars), count + 1, lr, wd)
        except OverflowError:  # only a step count near 2**1024 gets here (set by hand)
            raise ValueError(f"step_count must be < 2**63, got step_count={count}") from None
        fused = dict(fused)
        if self.global_grad_norm is not None and self.max_grad_norm is not None:
            c = _core.clip_coefficient(self.global_grad_norm, self.max_grad_norm)
            if not c >= 1.0:  # (NaN: every gradient NaN, as torch's clip_grad_norm_)
                fused["clip"] = c
        if self.maximize:
            fused["maximize"] = True
        if self.l1:
            fused["l1"] = self.l1
        if self.prox_l1:
            fused["prox"] = lr * self.prox_l1
            if math.isinf(fused["prox"]):
                raise ValueError(f"lr * prox_l1 overflows float64: lr={lr!r}, prox_l1={self.prox_l1!r}")
        return coef, fused, scalars

    def _first_step(self) -> None:
        """State filled from the parameters (``fills`` "param"), as the rule's reference does at
        its first step."""
        src = self.state["master"] if self.precision == "master" else self.params
        for name, fill in self.rule.fills.items():
            if fill == "param" and name in self.state:
                for a, p in zip(self.state[name], src):
                    np.copyto(a, p, casting="unsafe" if a.dtype != p.dtype else "no")

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: ``{"step": int, "state": {name: [arrays]}}`` (plain NumPy), and
        ``"scalars"`` for a rule with scalar state."""
        with self._lock:
            out = {
                "step": self.step_count,
                "state": {k: [None if a is None else a.copy() for a in v] for k, v in self.state.items()},
            }
            if self.rule.scalars:
                out["scalars"] = dict(self.scalars)
            return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` of an optimizer of the same kind, options and parameter
        shapes; the arrays are copied in, exactly.

        Raises:
            TypeError / ValueError: missing or extra buffers, or an array whose length, shape or
            dtype does not match (named ``state['exp_avg'][i]``), a masked array, a NaN or inf
            anywhere (named ``state['row_var'][0][1, 0]``), a negative entry in a buffer of
            squares (``exp_avg_sq``, ``max_exp_avg_sq``, ``square_avg``, ``sum``, ...), a step
            that is not an int in [0, 2**63), scalars other than the rule's.

        The arrays may be views of the parameters or of this optimizer's own buffers (in any
        order): every value is read before any buffer is written.
        """
        keys = {"step", "state", "scalars"} if self.rule.scalars else {"step", "state"}
        if not isinstance(state_dict, dict) or set(state_dict) != keys:
            names = [repr(k) for k in sorted(keys)]
            want = ", ".join(names[:-1]) + " and " + names[-1]
            raise ValueError(f"state_dict must be a dict with keys {want}, as state_dict() returns")
        step = nonnegative_int(state_dict["step"], "state_dict['step']", upper=MAX_STEP)
        scalars = self._checked_scalars(state_dict.get("scalars", {}))
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
                if name.endswith(ABSMAX) and (a < 0).any():
                    raise ValueError(f"{label}[{i}] must be >= 0 (the largest |value| of each block), got a negative entry")
                if name in SQUARES and (a < 0).any():  # loading is rare: these passes are cheap enough
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
            self.scalars = scalars

    def _checked_scalars(self, given: Any) -> dict[str, Any]:
        want = self.rule.scalars
        if not isinstance(given, dict) or set(given) != set(want):
            got = sorted(given) if isinstance(given, dict) else type(given).__name__
            raise ValueError(f"state_dict['scalars'] must hold {sorted(want)}, got {got}")
        out = {}
        for k, v in given.items():
            if isinstance(want[k], bool):
                if not isinstance(v, (bool, np.bool_)):
                    raise TypeError(f"state_dict['scalars'][{k!r}] must be a bool, got {type(v).__name__}")
                out[k] = bool(v)
            else:
                out[k] = hyperparameter(v, f"state_dict['scalars'][{k!r}]")
        return out

    def __getstate__(self) -> dict[str, Any]:  # copy and pickle: everything but the lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        extra = f", precision={self.precision!r}, state {self.state_dtype}" if self.low else ""
        if self.blockwise and not self.low:
            extra = ", state int8"
        name, dt = type(self).__name__, self.params[0].dtype
        return f"{name}({len(self.params)} params, {dt}{extra}, step {self.step_count})"


def _is_int8(state_dtype: Any) -> bool:
    """``state_dtype`` asks for blockwise 8-bit state: ``"int8"`` (or ``numpy.int8``)."""
    if isinstance(state_dtype, str):
        return state_dtype == BLOCKWISE
    try:
        return state_dtype is not None and np.dtype(state_dtype) == np.int8
    except TypeError:
        return False


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """The same array, or two views of the same elements (as two views of one torch tensor)."""
    return a is b or (a.ctypes.data == b.ctypes.data and a.shape == b.shape and a.dtype == b.dtype)


#: The extras every optimizer takes (keyword-only, after the rule's hyperparameters).
_EXTRAS = [
    inspect.Parameter("l1", inspect.Parameter.KEYWORD_ONLY, default=0.0, annotation="float"),
    inspect.Parameter("prox_l1", inspect.Parameter.KEYWORD_ONLY, default=0.0, annotation="float"),
    inspect.Parameter("max_grad_norm", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="float | None"),
    inspect.Parameter("ema", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="EMA | None"),
    inspect.Parameter("precision", inspect.Parameter.KEYWORD_ONLY, default="round", annotation="str"),
    inspect.Parameter("state_dtype", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Any"),
    inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Any"),
    inspect.Parameter("maximize", inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
    inspect.Parameter("min_8bit_size", inspect.Parameter.KEYWORD_ONLY, default=MIN_8BIT_SIZE, annotation="int"),
]


def optimizer_class(rule_class: type[Rule]) -> type[Optimizer]:
    """The optimizer class of a rule: ``Name(params, <the rule's arguments>, *, l1, prox_l1,
    max_grad_norm, ema, precision, state_dtype, seed)``, its docstring the rule's; ``lr`` and
    ``weight_decay`` go to the optimizer (they may be schedules), the rest to the rule."""
    rule_sig = inspect.signature(rule_class.__init__)
    rule_params = [p for name, p in rule_sig.parameters.items() if name != "self"]
    own = {p.name for p in rule_params}
    sig = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Sequence[np.ndarray]"),
         *rule_params, *[p for p in _EXTRAS if p.name not in own]]
    )  # fmt: skip

    def __init__(self: Optimizer, params: Sequence[np.ndarray], *args: Any, **kwargs: Any) -> None:
        try:
            bound = sig.bind(self, params, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}(): {exc}") from None
        bound.apply_defaults()
        a = dict(bound.arguments)
        del a["self"], a["params"]
        rule = rule_class(**{k: a[k] for k in own})
        extras = {k: v for k, v in a.items() if k not in own}
        Optimizer.__init__(self, params, rule, lr=a["lr"], weight_decay=a["weight_decay"], **extras)

    __init__.__signature__ = sig  # type: ignore[attr-defined]
    __init__.__doc__ = f"See :class:`{rule_class.name}`."
    body: dict[str, Any] = {"__init__": __init__, "__doc__": rule_class.__doc__, "__module__": "regtune.optim",
                            "__qualname__": rule_class.name, "rule_class": rule_class}  # fmt: skip
    for m in rule_class.methods:
        body[m] = _method(rule_class, m)
    return type(rule_class.name, (Optimizer,), body)


def _method(rule_class: type[Rule], name: str) -> Callable[..., Any]:
    fn = getattr(rule_class, name)

    def method(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self.rule, self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = fn.__doc__
    return method


# ------------------------------------------------------------------------------ stepping
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
    if len(opts) == 1 and opts[0].ema is None:  # the usual case: one lock, no ExitStack (a few us)
        with opts[0]._lock:
            return _step_held(opts, grads)
    with contextlib.ExitStack() as held:
        # one order for every caller (the optimizers, then their averages): no two calls wait
        # on each other
        for o in sorted(opts, key=id):
            held.enter_context(o._lock)
        emas = {id(o.ema): o.ema for o in opts if o.ema is not None}
        for key in sorted(emas):
            held.enter_context(emas[key]._lock)
        return _step_held(opts, grads)


def _step_held(opts: list[Optimizer], grads: list[list]) -> list[float | None]:
    """step_all's steps, with every lock held."""
    # Every count is read before any schedule runs: a schedule of one optimizer may step
    # another of this call, whichever comes first in it.
    counts = [o.step_count for o in opts]
    args = []
    for o, count in zip(opts, counts):
        args.append(o.coefficients(count))
        if o.step_count != count:
            raise RuntimeError(f"a schedule changed step_count from {count} to {o.step_count} inside step()")
    calls = []
    for o, g, (coef, fused, _) in zip(opts, grads, args):
        if o.ema is not None:
            fused.update(o.ema.coefficients())
        calls.append(o.rule.native_call(o, g, coef, fused))
    for o, count in zip(opts, counts):  # a schedule of one may have stepped another meanwhile
        if o.step_count != count:
            raise RuntimeError(f"a schedule changed step_count from {count} to {o.step_count} inside step()")
    for o, count in zip(opts, counts):
        if count == 0 and any(f == "param" for f in o.rule.fills.values()):
            o._first_step()
    if len(calls) == 1:
        name, call_args = calls[0]
        norms = [getattr(_core, name)(*call_args)]
    else:
        norms = _core.optim_steps(calls)
    for o, count, (_, _, scalars) in zip(opts, counts, args):
        if o.ema is not None:
            o.ema.n_averaged += 1
        o.step_count = count + 1
        o.scalars = scalars
    return norms


# ----------------------------------------------------------------------------- clipping
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
    grads = _arrays(grads, "grads")
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
    grads = _arrays(grads, "grads")
    _core.clip_grad_value(grads, hyperparameter(clip, "clip", low=0.0))


def clip_coefficient(norm: float, max_norm: float) -> float:
    """``min(max_norm / (norm + 1e-6), 1)``, NaN when the norm is: the scale a step with
    ``max_grad_norm`` applies (the native driver's own function)."""
    return _core.clip_coefficient(float(norm), float(max_norm))
