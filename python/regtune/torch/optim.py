"""Every regtune optimizer as a ``torch.optim.Optimizer``.

``regtune.torch.optim.AdamW(model.parameters(), lr=1e-3)`` is used as ``torch.optim.AdamW``:
``param_groups`` with per-group hyperparameters, ``add_param_group``, ``zero_grad``,
``step(closure=None)``, parameters whose ``grad`` is None skipped, ``state_dict()`` /
``load_state_dict()`` in torch's layout (``state[i] = {"step": tensor, "exp_avg": tensor,
...}`` under torch's buffer names), so ``torch.optim.lr_scheduler`` works unchanged and a
checkpoint moves between regtune and torch where the state means the same. Each step is
regtune's fused kernel, updating the parameters and the state tensors in place (zero-copy
views); the parameters' autograd version counters are bumped as torch's own in-place updates
do. The hyperparameters are the regtune class's (same names and defaults as torch's where
torch has the rule; ``l1``, ``prox_l1`` and ``max_grad_norm`` too), checked when a group is
added; positionally too, in torch's order (``SGD(params, 0.1, 0.9)``). A 0-d tensor ``lr``,
``betas`` entry or ``weight_decay`` is read as its value at each step; ``maximize`` (keyword or
group key) negates the gradient inside the step; torch's implementation switches ``foreach``
and ``fused`` are accepted and kept in the groups (regtune's step is always one fused pass),
``capturable`` and ``differentiable`` only when False.

Every option a param group (or a loaded ``state_dict``) carries goes through the checks of its
keyword and is honoured or refused by name: regtune's own, the reference's names of them (LAMB's
``weight_decouple``) and the reference's options regtune implements with one value only
(torch's AdamW: ``decoupled_weight_decay=True``; LAMB: ``rectify=False``, ...). State the
reference keeps per group or per parameter is kept where it keeps it: Schedule-Free's and LAMB's
step count per group (``k``, ``step``), NAdam's running ``mu_product`` per parameter. Lion's
decoupled weight decay divides by the ``lr`` the optimizer was made with (lion-pytorch's
``_init_lr``). ``max_grad_norm`` clips by the norm of every gradient of the step (all groups).

One native call steps each group (per distinct step count within it: parameters that skipped
steps keep their own bias corrections, as in torch). Sparse gradients are refused. ``step``,
``state_dict``, ``load_state_dict`` and ``add_param_group`` hold a lock: threads sharing an
optimizer get some serial order of their calls. DTensor parameters (FSDP2's ``fully_shard``)
step their local shards, the state kept as DTensors laid out as the parameters and the clip
norm all-reduced over the mesh, as are the sums behind LAMB's and LARS' trust ratios and
Adafactor's factors and step size (Adafactor: shards of the leading axis, FSDP2's default).

``torch.bfloat16`` and ``torch.float16`` parameters take regtune's 16-bit step (see
``regtune.optim``): ``precision="round" | "stochastic" | "master"`` and ``state_dtype=``
(float32 state by default; ``state_dtype=torch.bfloat16`` keeps it in the parameters' dtype,
as torch does, and then Adam, AdamW and Adagrad equal torch's ``fused=True`` step bit for
bit). The state tensors, the master copies included, live in ``optimizer.state`` in their own
dtype.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import threading
import weakref
from typing import Any, Callable, Iterable

import ml_dtypes
import numpy as np
import torch

from .. import _core, optim as _ro
from . import _bitsandbytes as _bnb, _openmp
from ._memory import advise_hugepages
from .._validation import scalar_or_schedule


#: Bumps autograd's version counters, as torch's own in-place updates do (torch >= 2.2).
_increment_version = getattr(torch.autograd.graph, "increment_version", None)

#: Hyperparameters that a torch lr scheduler (or the user) may change between steps without a
#: rebuild of the cached regtune optimizer.
_SCHEDULED = ("lr", "weight_decay")


_BF16 = np.dtype(ml_dtypes.bfloat16)
#: The torch dtype of each dtype regtune keeps parameters or state in.
_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64, _BF16: torch.bfloat16,
                np.dtype(np.float16): torch.float16}  # fmt: skip
_NUMPY_DTYPE = {v: k for k, v in _TORCH_DTYPE.items()}
_TORCH_DTYPE[np.dtype(np.uint8)] = torch.uint8  # the codes of blockwise 8-bit state


try:  # FSDP2's parameters, gradients and state
    from torch.distributed.tensor import DTensor as _DTensor, Replicate as _Replicate, Shard as _Shard
except ImportError:  # torch built without torch.distributed
    _DTensor = _Replicate = _Shard = None


def _is_dtensor(t: Any) -> bool:
    # (plain tensors and Parameters, every step's usual case, by two identity tests)
    return type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter and _DTensor is not None \
        and isinstance(t, _DTensor)


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's shard on this process (its memory: updating it updates the DTensor), else ``t``."""
    return t.to_local() if _is_dtensor(t) else t


def _like(p: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """``local`` as a DTensor laid out as the parameter ``p`` (torch's state layout under FSDP2)."""
    if not _is_dtensor(p):
        return local
    return _DTensor.from_local(local, p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride())


def _sharded_dims(p: torch.Tensor) -> tuple[int, ...]:
    """The mesh dimensions a parameter is sharded over (its sums are all-reduced over them)."""
    return tuple(d for d, pl in enumerate(p.placements) if isinstance(pl, _Shard)) if _is_dtensor(p) else ()


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy; a DTensor's local shard); bfloat16
    through its int16 bits."""
    t = _local(t)
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(_BF16)
    return t.detach().numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A new tensor holding a copy of ``a`` (bfloat16 through its int16 bits), in torch's
    allocation: 64-byte aligned, so that no vector of the step straddles two cache lines (NumPy's
    allocations are 16-byte aligned; a step over such state ran up to 20% slower at one thread)."""
    # (huge pages advised before the first write, as NumPy advises them for its own arrays)
    if a.dtype == _BF16:
        t = advise_hugepages(torch.empty(a.shape, dtype=torch.int16))
        np.copyto(t.numpy(), a.view(np.int16))
        return t.view(torch.bfloat16)
    t = advise_hugepages(torch.empty(a.shape, dtype=_TORCH_DTYPE[a.dtype]))
    np.copyto(t.numpy(), a)
    return t


#: Options of torch's optimizers that only choose torch's implementation (regtune's step is
#: always one fused pass on the CPU): accepted and kept in the groups; the ones that would
#: change what a step means (capturable, differentiable) only when False.
_TORCH_FLAGS = ("foreach", "fused", "capturable", "differentiable")


def _torch_flag(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool or None, got {name}={value!r}")
    if name in ("capturable", "differentiable") and value:
        why = "CUDA graphs" if name == "capturable" else "autograd through the step"
        raise ValueError(f"{name}=True ({why}) cannot be honoured by regtune's CPU step: leave it False")


def _plain(value: Any) -> Any:
    """A hyperparameter as regtune takes it: a 0-d tensor (torch accepts a tensor lr, betas or
    weight_decay) as its float, read at each step; a pair of them as a tuple of floats."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a tensor hyperparameter must hold one value, got shape {tuple(value.shape)}")
        return float(value)
    if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        return tuple(_plain(v) for v in value)
    return value


def _scalar(value: Any) -> np.floating:
    """A scalar of a parameter's state as torch keeps it (a 0-d tensor of torch's scalar dtype:
    float32 unless torch's default dtype is float64), as a NumPy scalar of that dtype."""
    if isinstance(value, torch.Tensor):  # (torch's load_state_dict casts it to a 16-bit param's dtype)
        if value.numel() != 1 or not value.is_floating_point():
            raise ValueError(f"a scalar state tensor must hold one float, got {value.dtype} of shape {tuple(value.shape)}")
        return (np.float64 if value.dtype == torch.float64 else np.float32)(value.item())
    return (np.float64 if torch.get_default_dtype() == torch.float64 else np.float32)(value)


def _grad_norm(params: list[torch.Tensor], grads: list[np.ndarray]) -> float:
    """The L2 norm of every element of ``grads`` (the gradients of ``params``, DTensor shards
    included: their sums of squares are all-reduced over the mesh dimensions they are sharded
    over, in the same order on every process). Sums of squares in double, fixed blocks, per
    dtype and placement in a fixed order: the same bits on every thread count."""
    parts: dict[tuple, list[np.ndarray]] = {}  # (mesh, sharded dims, dtype) -> gradients, in first-seen order
    for p, g in zip(params, grads):
        dims = _sharded_dims(p)
        parts.setdefault((p.device_mesh if dims else None, dims, g.dtype.str), []).append(g)
    total = 0.0
    for (mesh, dims, _), gs in parts.items():
        sq = _core.grad_sums(gs)[1]
        if dims:
            t = torch.tensor(sq, dtype=torch.float64)
            for d in dims:
                torch.distributed.all_reduce(t, group=mesh.get_group(d))
            sq = float(t)
        total += sq
    return math.sqrt(total)


def _all_reduce(params: list[torch.Tensor], sums: np.ndarray, parts: Callable[[int, torch.Tensor], slice]) -> None:
    """``sums[parts(i, p)]`` (``sums`` 1-D) of every sharded parameter ``p`` made the whole
    tensor's: summed over the processes of the mesh dimensions it is sharded over, one
    all-reduce per (mesh, dimensions), the parameters in list order: the same calls on every
    process."""
    picks: dict[tuple, list[np.ndarray]] = {}  # (mesh, sharded dims) -> indices into sums, in first-seen order
    for i, p in enumerate(params):
        dims = _sharded_dims(p)
        if dims:
            part = parts(i, p)
            picks.setdefault((p.device_mesh, dims), []).append(np.arange(part.start, part.stop))
    for (mesh, dims), idx in picks.items():
        at = np.concatenate(idx)
        t = torch.from_numpy(sums[at])
        for d in dims:
            torch.distributed.all_reduce(t, group=mesh.get_group(d))
        sums[at] = t.numpy()


def _reduce_sums(params: list[torch.Tensor], sums: np.ndarray) -> None:
    """A trust-ratio rule's two sums of squares per parameter (rows of ``sums``), the whole
    tensor's for DTensor shards."""
    _all_reduce(params, sums.reshape(-1), lambda i, p: slice(2 * i, 2 * i + 2))


def _reduce_adafactor(params: list[torch.Tensor], stage: int, sums: np.ndarray, offsets: np.ndarray) -> None:
    """Adafactor's sums at ``stage`` (see ``_core.adafactor_step``), the whole tensor's for
    DTensor shards, which split the leading axis (checked when the parameter is taken): of a
    matrix, its rows (every sum and count is split); of a batch of matrices, whole matrices
    (only the sums over the tensor and its count: the factors are per matrix); of a vector,
    its elements."""

    def parts(i: int, p: torch.Tensor) -> slice:
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        if p.dim() == 2 or stage == 2:
            return slice(lo, hi)
        return slice(lo, lo + 2) if stage == 0 else slice(lo, lo)

    _all_reduce(params, sums, parts)


def _numpy_dtype(dtype: Any) -> Any:
    """A torch dtype given as ``state_dtype=`` in NumPy's terms (anything else as it is)."""
    if dtype is torch.int8:  # blockwise 8-bit state, as state_dtype="int8"
        return "int8"
    return _NUMPY_DTYPE.get(dtype, dtype) if isinstance(dtype, torch.dtype) else dtype


class _Plan:
    """What a step repeats while nothing it read has changed: the optimizer's last step, minus
    the work of finding out (the buckets of step counts, each group's regtune optimizer, the
    state bound to it). A step checks, per parameter, the few things that would make it differ
    (the same parameters with the same storage, gradients on the same ones, the same state dict
    holding the same tensors, step counts not written since) and per group its options; when
    any differs the step takes the full path, which builds a new plan. About a microsecond per
    parameter against several on the full path (bench/bench_torch.py)."""

    __slots__ = ("state", "groups", "keys", "values")

    class _Group:
        __slots__ = ("group", "ids", "options", "values", "size", "ro", "params", "ptrs", "has_grad", "dicts", "held", "steps",
                     "views", "versions", "count")  # fmt: skip

    @classmethod
    def of(cls, opt: _Optimizer, grouped: list, work: list, idle: list) -> _Plan | None:
        """The plan of the step just taken (``_step``'s lists), or None where the full path is
        needed anyway: groups stepped at several step counts, per-parameter scalars (NAdam's
        mu_product), DTensor parameters, tensor-valued options, groups without gradients."""
        rule = opt._regtune.rule_class
        if idle or rule.torch_param_scalars or len(work) != len(opt.param_groups):
            return None
        plan = cls()
        plan.state = opt.state
        plan.groups = []
        # opt.state's mapping by identity, in order (iterating a dict hashes nothing: a torch
        # tensor's __hash__ is a Python function, a lookup per parameter cost 0.4 us)
        plan.keys, plan.values = list(map(id, opt.state)), list(map(id, opt.state.values()))
        for (group, buckets), (ro, params, step) in zip(grouped, work):
            options = cls._options(group, rule)
            if len(buckets) != 1 or group is not opt.param_groups[len(plan.groups)] or options is None:
                return None
            g = cls._Group()
            g.group, g.ro, g.params = group, ro, params
            g.options, g.values, g.size = tuple(options), tuple(options.values()), len(group)
            g.ids = list(map(id, group["params"]))
            if any(_is_dtensor(p) for p in group["params"]):
                return None
            g.ptrs = [p.data_ptr() for p in params]
            g.has_grad = [p.grad is not None for p in group["params"]]
            g.dicts = [opt.state[p] for p in params]
            g.held = list(map(id, itertools.chain.from_iterable(map(dict.values, g.dicts))))
            g.steps = [st["step"] for st in g.dicts]
            g.views = [t.numpy() for t in g.steps]
            g.versions = [t._version for t in g.steps]
            g.count = None if rule.torch_group_step else step + 1
            plan.groups.append(g)
        return plan

    @staticmethod
    def _options(group: dict[str, Any], rule: type[_ro.Rule]) -> dict[str, Any] | None:
        """The group's options other than its parameters and the rule's scalar state (copies of
        lists), or None when one is a tensor (its value may change in place: read at each step)."""
        options = {}
        for k, v in group.items():
            if k == "params" or k == rule.torch_group_step or k in rule.scalars:
                continue
            if isinstance(v, torch.Tensor) or (isinstance(v, (tuple, list)) and any(isinstance(x, torch.Tensor) for x in v)):
                return None
            options[k] = list(v) if isinstance(v, list) else v
        return options

    def step(self, opt: _Optimizer) -> bool:
        """One step as the last one was taken; False (nothing done) when something differs."""
        state = opt.state
        if state is not self.state or len(opt.param_groups) != len(self.groups):
            return False
        # the same tensors mapped to the same state dicts (a dict replaced, added or removed
        # changes one of the lists)
        if list(map(id, state)) != self.keys or list(map(id, state.values())) != self.values:
            return False
        rule = opt._regtune.rule_class
        count_key = rule.torch_group_step
        work = []  # (regtune optimizer, parameters, gradients)
        for g, group in zip(self.groups, opt.param_groups):
            if group is not g.group or list(map(id, group["params"])) != g.ids:
                return False
            if tuple(map(group.get, g.options)) != g.values or len(group) != g.size:
                # a scheduler's betas or momentum (OneCycleLR), or the user's change: taken as
                # the full path takes it, and the same regtune optimizer keeps the state
                options = self._options(group, rule)
                if options is None or opt._regtune_for(group, g.params) is not g.ro:
                    return False
                g.options, g.values, g.size = tuple(options), tuple(options.values()), len(group)
            grads = [p.grad for p in group["params"]]
            if [t is not None for t in grads] != g.has_grad:
                return False
            if len(grads) != len(g.params):
                grads = [t for t in grads if t is not None]
            if [p.data_ptr() for p in g.params] != g.ptrs or [t._version for t in g.steps] != g.versions:
                return False
            if list(map(id, itertools.chain.from_iterable(map(dict.values, g.dicts)))) != g.held:
                return False
            try:
                arrays = [t.numpy() for t in grads if t.is_contiguous() and not t.is_sparse]
            except (RuntimeError, TypeError):  # a gradient that requires grad (create_graph=True)
                return False
            if len(arrays) != len(grads):
                return False
            ro = g.ro
            for k in _SCHEDULED:
                v = group.get(k)
                if v is not None and getattr(ro, k) != v:
                    setattr(ro, k, scalar_or_schedule(v, k))
            ro.step_count = int(group.get(count_key, 0)) if count_key else g.count
            opt._scalars_in(ro, group)
            work.append((ro, g.params, arrays))
        counts = [ro.step_count for ro, _, _ in work]
        opt._step_work(work)
        for g, group, count in zip(self.groups, opt.param_groups, counts):
            opt._scalars_out(g.ro, group, g.params)
            # each step tensor += 1 in float32, as the full path's torch._foreach_add_ (which costs
            # 50 us for 28 tensors); through NumPy views, so their versions stay those checked
            value = np.float32(count) + np.float32(1)
            for v in g.views:
                v[()] = value
            if g.count is not None:
                g.count = int(value)
            if _increment_version is not None:
                _increment_version(g.params)
        return True


class _Optimizer(torch.optim.Optimizer):
    _regtune: type[_ro.Optimizer]

    def __init__(self, params: Iterable[Any], *args: Any, **hyper: Any) -> None:
        sig = inspect.signature(self._regtune.__init__)
        defaults = {
            k: v.default for k, v in sig.parameters.items() if k not in ("self", "params", "ema") and v.default is not v.empty
        }
        # torch's positional hyperparameters (SGD(params, 0.1)), in the signature's order
        positional = [k for k, v in sig.parameters.items()
                      if k not in ("self", "params") and v.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]  # fmt: skip
        if len(args) > len(positional):
            raise TypeError(f"{type(self).__name__} takes at most {len(positional)} positional hyperparameters "
                            f"({', '.join(positional)}), got {len(args)}")  # fmt: skip
        for k, v in zip(positional, args):
            if k in hyper:
                raise TypeError(f"{type(self).__name__} got {k} both by position and by name")
            hyper[k] = v
        flags = {k: hyper.pop(k) for k in _TORCH_FLAGS if k in hyper}
        for k, v in flags.items():
            _torch_flag(k, v)
        unknown = set(hyper) - set(defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected hyperparameters {sorted(unknown)}")
        defaults.update(hyper)
        self._keys = tuple(defaults)  # the regtune hyperparameters (torch adds its own to defaults)
        #: the lr this optimizer was made with: a rule that keeps its initial lr (Lion's decoupled
        #: weight decay) gets this one, as lion-pytorch keeps ``_init_lr``
        self._init_lr = _plain(defaults["lr"])
        rule = self._regtune.rule_class
        #: the hyperparameters the rule takes (the rest are the regtune optimizer's)
        self._rule_keys = tuple(k for k in inspect.signature(rule.__init__).parameters if k != "self")
        #: the reference's group options regtune implements with one value only (torch's AdamW:
        #: decoupled_weight_decay=True), refused with any other
        self._fixed = {**{k: v for k, v in _torch_group_defaults(type(self).__name__).items()
                          if k not in self._keys and k not in _TORCH_FLAGS}, **rule.torch_fixed}  # fmt: skip
        defaults.update(flags)  # kept in the groups, as torch keeps them
        # step, state_dict, load_state_dict and add_param_group from several threads: one at a
        # time, the result some serial order of the calls (as regtune.optim's optimizers)
        self._lock = threading.RLock()
        self._cache: dict[int, tuple[Any, ...]] = {}
        self._plan: _Plan | None = None  # what the next step repeats of the last one
        # regtune optimizer -> the ids of the state tensors its arrays view (weak: a replaced
        # optimizer's entry goes with it, so a new one at the same address is never taken for it)
        self._bound: weakref.WeakKeyDictionary[_ro.Optimizer, tuple[int, ...]] = weakref.WeakKeyDictionary()
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:  # copy and pickle: torch's three, our own, no lock or cache
        own = {k: self.__dict__[k] for k in ("_keys", "_init_lr", "_fixed", "_rule_keys")}
        return {**super().__getstate__(), **own}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.RLock()
        self._cache = {}
        self._plan = None
        self._bound = weakref.WeakKeyDictionary()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        with self._lock:
            self._add_param_group(param_group)

    def _add_param_group(self, param_group: dict[str, Any]) -> None:
        self._plan = None
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            for i, p in enumerate(group["params"]):
                self._check_param(i, p)
            self._hyper(group)  # checks the hyperparameters now, naming them
        except BaseException:
            self.param_groups.pop()  # a refused group is not kept
            raise
        self._in_own_terms(group)
        # A rule with scalar state keeps it in the group, under the reference's names, and a rule
        # whose reference counts steps per group keeps that count there, under its name.
        rule = self._regtune.rule_class
        for k, v in rule.scalars.items():
            group.setdefault(k, v)
        if rule.torch_group_step:
            group.setdefault(rule.torch_group_step, 0)

    def _in_own_terms(self, group: dict[str, Any]) -> None:
        """A (checked) group under regtune's names: the reference's names of regtune's options
        renamed, and in a group the reference wrote, its keys that mean something else set to
        this optimizer's values (state_dict() writes the reference's names back)."""
        rule = self._regtune.rule_class
        for alias, k in rule.torch_aliases.items():
            if alias in group:
                if k not in group:
                    group[k] = group[alias]
                    for f in rule.torch_foreign:
                        group[f] = self.defaults[f]
                del group[alias]

    def _check_param(self, i: int, p: torch.Tensor) -> None:
        if p.device.type != "cpu":
            raise TypeError(f"params[{i}] must be a CPU tensor, got one on {p.device}")
        if p.dtype not in _NUMPY_DTYPE:
            raise TypeError(f"params[{i}] must have dtype torch.float32, float64, bfloat16 or float16, got {p.dtype}")
        if not _local(p).is_contiguous():
            raise ValueError(f"params[{i}] must be contiguous (regtune updates it in place)")
        if _is_dtensor(p):  # FSDP2: each process steps its shard
            if not all(isinstance(pl, (_Shard, _Replicate)) for pl in p.placements):
                raise TypeError(f"params[{i}] is a DTensor placed {p.placements}: regtune steps Shard and "
                                f"Replicate placements")  # fmt: skip
            rule = self._regtune.rule_class
            if not rule.elementwise() and not rule.trust_ratio() and any(
                    pl.dim != 0 for pl in p.placements if isinstance(pl, _Shard)):  # fmt: skip
                raise TypeError(f"params[{i}] is a DTensor placed {p.placements}: {type(self).__name__} steps "
                                f"shards of the leading axis (FSDP2's Shard(0)); its factors are sums along the "
                                f"last two axes")  # fmt: skip

    def _standin(self, group: dict[str, Any], hyper: dict[str, Any] | None = None) -> _ro.Optimizer:
        """A regtune optimizer over an empty array of the group's dtype (its checks, its coefficients)."""
        dt = _NUMPY_DTYPE[group["params"][0].dtype] if group["params"] else np.dtype(np.float32)
        return self._make([np.empty(0, dt)], self._group_hyper(group) if hyper is None else hyper)

    def _make(self, arrays: list[np.ndarray], hyper: dict[str, Any]) -> _ro.Optimizer:
        """The regtune optimizer over ``arrays``: made with this optimizer's initial lr (what a
        rule keeps of it is that one's), then given the group's lr."""
        ro = self._regtune(arrays, **{**hyper, "lr": self._init_lr})
        ro.lr = scalar_or_schedule(hyper["lr"], "lr")
        return ro

    def _rule(self, hyper: dict[str, Any]) -> _ro.Rule:
        """The rule of these hyperparameters (checked; its lr the initial one, as ``_make``'s)."""
        args = {k: hyper[k] for k in self._rule_keys if k in hyper}
        if "lr" in args:
            args["lr"] = self._init_lr
        return self._regtune.rule_class(**args)

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's regtune hyperparameters (a group loaded from torch's own optimizer lacks
        regtune's extras: their defaults), checked by a throwaway regtune instance, which
        names a bad one."""
        hyper = self._group_hyper(group)
        self._standin(group, hyper)
        return hyper

    def _group_hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's regtune hyperparameters. Every key that a group (or a loaded state_dict)
        may carry for the reference is honoured or refused by name: torch's flags, regtune's own
        names, the reference's names of them (``torch_aliases``), and the reference's options
        regtune implements with one value (``_fixed``); other keys (a scheduler's
        ``initial_lr``, the user's own) are the user's."""
        for k in _TORCH_FLAGS:  # a group (or a loaded torch state_dict) may carry them too
            if k in group:
                _torch_flag(k, group[k])
        name = type(self).__name__
        for k, v in self._fixed.items():
            if k in group and _plain(group[k]) != v:
                raise ValueError(f"{name} implements the group option {k}={v!r} only, got {k}={group[k]!r}")
        hyper = {k: _plain(group.get(k, self.defaults[k])) for k in self._keys}
        rule = self._regtune.rule_class
        from_reference = False  # a group the reference wrote: its aliases and not regtune's names
        for alias, k in rule.torch_aliases.items():
            if alias not in group:
                continue
            if k not in group:
                hyper[k], from_reference = _plain(group[alias]), True
            elif _plain(group[alias]) != hyper[k]:
                raise ValueError(f"{name}: the group option {alias}={group[alias]!r} (the reference's name of {k}) "
                                 f"disagrees with {k}={group[k]!r}")  # fmt: skip
        if from_reference:
            for k in rule.torch_foreign:  # the reference's option of that name means something else
                hyper[k] = _plain(self.defaults[k])
        for k in ("betas", "eps"):
            if isinstance(hyper.get(k), list):
                hyper[k] = tuple(hyper[k])
        if "state_dtype" in hyper:
            hyper["state_dtype"] = _numpy_dtype(hyper["state_dtype"])
        return hyper

    def _regtune_for(self, group: dict[str, Any], params: list[torch.Tensor]) -> _ro.Optimizer:
        """The regtune optimizer over these parameters (cached while the parameters and the
        hyperparameters other than lr and weight decay stay the same)."""
        hyper = self._group_hyper(group)
        fixed = {k: v for k, v in hyper.items() if k not in _SCHEDULED}
        ident = tuple((id(p), _local(p).data_ptr()) for p in params)
        cached = self._cache.get(id(group))
        if cached is not None and cached[0] == ident and cached[1] != fixed:
            # Only the rule's own hyperparameters changed (a scheduler's betas or momentum, set
            # at every step by OneCycleLR(cycle_momentum=True)): a new rule, the same state, as
            # long as the rule keeps the same buffers (amsgrad does not).
            changed = {k for k in fixed if fixed[k] != cached[1].get(k)}
            rule = self._rule(hyper) if changed <= set(self._rule_keys) else None
            if rule is not None and rule.slots() == cached[2].rule.slots():
                cached[2].rule = rule
                self._cache[id(group)] = cached = (ident, fixed, cached[2])
        if cached is not None and cached[0] == ident and cached[1] == fixed:
            ro = cached[2]
            for k in _SCHEDULED:
                if k in hyper and getattr(ro, k) != hyper[k]:
                    setattr(ro, k, scalar_or_schedule(hyper[k], k))
            return ro
        ro = self._make([_np(p) for p in params], hyper)
        self._cache[id(group)] = (ident, fixed, ro)
        return ro

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every group (``closure`` re-evaluates the loss, as torch's). Several
        threads may call it: one step at a time, each complete."""
        with self._lock:
            return self._step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._plan is not None and self._plan.step(self):
            return loss
        self._plan = None
        rule = self._regtune.rule_class
        count_key, own = rule.torch_group_step, rule.torch_param_scalars
        # Each group's parameters by (step count, per-parameter scalars): one regtune step each.
        grouped: list[tuple[dict[str, Any], dict[tuple, list[torch.Tensor]]]] = []
        for group in self.param_groups:
            buckets: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if count_key:
                    step = int(group.get(count_key, 0))  # the group's count
                else:  # torch's SGD keeps no step: a momentum buffer means steps were taken
                    step = int(state["step"]) if "step" in state else (1 if state else 0)
                values = tuple(_scalar(state.get(k, v)) for k, v in own.items()) if own else ()
                buckets.setdefault((step, values), []).append(p)
            grouped.append((group, buckets))
        first = [p for _, b in grouped for ps in b.values() for p in ps if not self.state[p]]
        work: list[tuple[_ro.Optimizer, list[torch.Tensor], int]] = []  # (regtune optimizer, params, step count)
        idle = []  # groups with no gradient whose reference advances its per-group count all the same
        try:
            for group, buckets in grouped:
                if count_key and not buckets:
                    ro = self._standin(group)
                    ro.step_count = int(group.get(count_key, 0))
                    self._scalars_in(ro, group)
                    idle.append((group, ro.coefficients(ro.step_count)[2], ro.step_count + 1))
                for (step, values), params in buckets.items():
                    ro = self._regtune_for(group, params)
                    self._bind_state(ro, params)
                    ro.step_count = step
                    self._scalars_in(ro, group, dict(zip(own, values)))
                    work.append((ro, params, step))
            grads = [[_np(p.grad if p.grad.is_contiguous() else p.grad.contiguous()) for p in params]
                     for _, params, _ in work]  # fmt: skip
            self._step_work([(ro, params, gs) for (ro, params, _), gs in zip(work, grads)])
        except BaseException:
            for p in first:  # a first step that did not happen leaves no state (it would count as a step)
                self.state.pop(p, None)
            for ro, _, _ in work:
                self._bound.pop(ro, None)
            raise
        steps = []
        groups = [group for group, buckets in grouped for _ in buckets]
        for (ro, params, _), group in zip(work, groups):
            self._scalars_out(ro, group, params)
        for group, scalars, count in idle:
            group.update({k: scalars[k] for k in rule.scalars})
            group[count_key] = count
        for ro, params, step in work:
            for p in params:
                st = self.state[p]
                t = st.get("step")
                if not isinstance(t, torch.Tensor) or t.dim() != 0 or t.dtype != torch.float32:
                    st["step"] = t = torch.tensor(float(step), dtype=torch.float32)  # torch's layout
                steps.append(t)
        if steps:
            torch._foreach_add_(steps, 1.0)  # one call for all: a torch.tensor per parameter costs more
        if _increment_version is not None:
            for _, params, _ in work:
                _increment_version(params)
        self._plan = _Plan.of(self, grouped, work, idle)
        return loss

    def _step_work(self, work: list[tuple[_ro.Optimizer, list[torch.Tensor], list[np.ndarray]]]) -> None:
        """Steps each regtune optimizer with its gradients, in one native call on torch's OpenMP
        threads, after all of them are checked. ``max_grad_norm`` clips by the norm of every
        gradient of the step, as clip_grad_norm_(model.parameters()) (one regtune step alone
        computes it itself)."""
        clipped = [ro for ro, _, _ in work if ro.max_grad_norm is not None]
        if clipped and (len(work) > 1 or any(_sharded_dims(p) for _, params, _ in work for p in params)):
            norm = _grad_norm([p for _, params, _ in work for p in params], [g for _, _, gs in work for g in gs])
            for ro in clipped:
                ro.global_grad_norm = norm
        sharded = [ro for ro, params, _ in work if not ro.rule.elementwise() and any(map(_sharded_dims, params))]
        for ro, params, _ in work:
            if ro in sharded:  # LAMB, LARS, Adafactor: each tensor's sums over its whole mesh
                reduce = _reduce_sums if ro.rule.trust_ratio() else _reduce_adafactor
                ro.reduce_sums = functools.partial(reduce, params)
        try:
            with _openmp.team():
                _ro.step_all([(ro, gs) for ro, _, gs in work])
        finally:
            for ro in clipped:
                ro.global_grad_norm = None
            for ro in sharded:
                ro.reduce_sums = None

    def _scalars_in(self, ro: _ro.Optimizer, group: dict[str, Any], own: dict[str, float] | None = None) -> None:
        """The rule's scalar state: from the group (its reference's keys) and, for scalars torch
        keeps per parameter, ``own`` (the bucket's values)."""
        if ro.rule.scalars or own:
            ro.scalars = {**{k: group.get(k, v) for k, v in ro.rule.scalars.items()}, **(own or {})}

    def _scalars_out(self, ro: _ro.Optimizer, group: dict[str, Any], params: list[torch.Tensor] = ()) -> None:
        rule = ro.rule
        group.update({k: ro.scalars[k] for k in rule.scalars})
        if rule.torch_group_step:
            group[rule.torch_group_step] = ro.step_count
        for k in rule.torch_param_scalars:  # in each parameter's state, as torch keeps it
            value = ro.scalars[k]
            dtype = _TORCH_DTYPE[np.dtype(type(value))]
            for p in params:
                t = self.state[p].get(k)
                if isinstance(t, torch.Tensor) and t.dim() == 0 and t.dtype == dtype:
                    t.fill_(float(value))
                else:
                    self.state[p][k] = torch.tensor(float(value), dtype=dtype)

    def _rule_method(self, name: str, *args: Any) -> None:
        """A method of the rule (Schedule-Free's ``train()`` / ``eval()``) on every group: on
        the parameters that have state, or on a stand-in when none has (only the group's scalar
        state changes then)."""
        count_key = self._regtune.rule_class.torch_group_step
        with torch.no_grad(), self._lock:
            self._plan = None
            for group in self.param_groups:
                params = [p for p in group["params"] if self.state[p]]
                if params:
                    ro = self._regtune_for(group, params)
                    self._bind_state(ro, params)
                else:
                    ro = self._standin(group)
                ro.step_count = int(group.get(count_key, 0)) if count_key else 0
                self._scalars_in(ro, group)
                getattr(ro, name)(*args)
                self._scalars_out(ro, group)
                if params and _increment_version is not None:
                    _increment_version(params)

    def _bind_state(self, ro: _ro.Optimizer, params: list[torch.Tensor]) -> None:
        """Point ``ro``'s state at the tensors in ``self.state`` (creating them on a first step
        as regtune fills them: zeros, Adagrad's initial accumulator, Adafactor's factors).
        Skipped while the state tensors are those bound last time."""
        bound = tuple(id(t) for p in params for t in self.state[p].values())
        if self._bound.get(ro) == bound:
            return
        made: set[tuple[int, str]] = set()  # (parameter, buffer) created here, at a first step
        if ro.blockwise and any(_is_dtensor(p) for p in params):
            raise ValueError("state_dtype='int8' with DTensor (FSDP2) parameters is not supported: the blocks of "
                             "the 8-bit state do not follow the shards; keep float32 state there")  # fmt: skip
        for name, arrays in ro.state.items():
            for i, p in enumerate(params):
                st = self.state[p]
                if arrays[i] is None:  # a buffer this tensor does not keep (Adafactor)
                    continue
                t = st.get(name)
                base = name[: -len("_absmax")] if name.endswith("_absmax") else None
                codes = st.get(base) if base else None
                if t is None and (id(p), base) not in made and isinstance(codes, torch.Tensor) and codes.dtype == torch.uint8:
                    raise ValueError(f"state[{name!r}] of a parameter of shape {tuple(p.shape)} is missing: its 8-bit "
                                     "codes cannot be read without their blocks' absmax")  # fmt: skip
                if t is None:  # a first step: as regtune fills it (a DTensor like its parameter)
                    made.add((id(p), name))
                    local = _tensor(arrays[i])
                    if ro.rule.fills.get(name) == "param":  # (also when it comes after the group's first step)
                        np.copyto(_np(local), _np(p), casting="unsafe")
                    st[name] = t = _like(p, local)
                elif tuple(_local(t).shape) != arrays[i].shape:
                    raise ValueError(
                        f"state[{name!r}] of a parameter of shape {tuple(p.shape)} has shape {tuple(t.shape)}, "
                        f"expected {arrays[i].shape} (a state_dict of another model?)"
                    )
                want = _TORCH_DTYPE[arrays[i].dtype]  # the param's dtype, or the state_dtype of a 16-bit step
                loc = _local(t)
                if (loc.dtype == torch.uint8) != (want == torch.uint8):  # 8-bit codes are no float state, nor the reverse
                    raise ValueError(
                        f"state[{name!r}] of a parameter of shape {tuple(p.shape)} is {loc.dtype} but this optimizer "
                        f"keeps it {'blockwise 8-bit (uint8 codes)' if want == torch.uint8 else want} (state_dtype "
                        "and min_8bit_size must be those the state was made with)"
                    )
                if loc.dtype != want or not loc.is_contiguous() or loc.device.type != "cpu":
                    st[name] = t = _like(p, loc.to(dtype=want, device="cpu").contiguous())
                arrays[i] = _np(t)
        self._bound[ro] = tuple(id(t) for p in params for t in self.state[p].values())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, except that a state tensor keeps the dtype it was saved
        in (torch casts floating state to its parameter's dtype, which would round the float32
        state and master copies of 16-bit parameters), and a NaN or inf in a state tensor is a
        ValueError naming it (``state_dict['state'][0]['exp_avg']``), before anything is loaded:
        it would reach every parameter at the next step."""
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = _bnb.from_bitsandbytes(self, state_dict)  # bitsandbytes' 8-bit layout, when it is that
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        state = state_dict.get("state") if isinstance(state_dict, dict) else None
        if isinstance(groups, list) and len(groups) == len(self.param_groups):
            # Each saved group becomes a group (torch keeps only our params): its options are
            # checked as add_param_group checks them, before anything is loaded; and its
            # parameters' state may hold only what the rule keeps with those options.
            rule_class = self._regtune.rule_class
            for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
                if not isinstance(saved, dict):
                    continue
                try:
                    hyper = self._hyper({**saved, "params": group["params"]})
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"state_dict['param_groups'][{i}]: {exc}") from None
                keeps = {"step", *rule_class.torch_param_scalars, *rule_class.torch_state_info}
                keeps.update(k for k in self._rule(hyper).slots() if k)
                if hyper.get("state_dtype") == "int8":  # blockwise 8-bit: each buffer's absmax too
                    keeps.update(k + "_absmax" for k in self._rule(hyper).slots() if k)
                if hyper["precision"] == "master":
                    keeps.add("master")
                for pid in saved.get("params", ()):
                    entries = state.get(pid) if isinstance(state, dict) else None
                    for k, v in (entries.items() if isinstance(entries, dict) else ()):
                        if k not in keeps and v is not None:
                            raise ValueError(f"state_dict['state'][{pid!r}][{k!r}]: {type(self).__name__} with these "
                                             f"options keeps no {k!r} (a state_dict of another optimizer, or of "
                                             f"other options?); it keeps {sorted(keeps)}")  # fmt: skip
        for i, entries in (state.items() if isinstance(state, dict) else ()):
            for k, v in (entries.items() if isinstance(entries, dict) else ()):
                v = _local(v) if isinstance(v, torch.Tensor) else v  # (a DTensor's shard: no collective)
                if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    bad = v.detach().reshape(-1)[~torch.isfinite(v.detach().reshape(-1))][0].item()
                    raise ValueError(f"state_dict['state'][{i!r}][{k!r}] holds {bad}; optimizer state must be finite")
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            self._in_own_terms(group)
        self._cache.clear()  # new groups and state tensors: bound afresh at the next step
        self._plan = None
        self._bound = weakref.WeakKeyDictionary()
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(saved_ids, params):
            for k, v in state_dict["state"].get(i, {}).items():
                if k != "step" and isinstance(v, torch.Tensor) and v.dtype != p.dtype and (v.is_floating_point() or v.dtype == torch.uint8):
                    self.state[p][k] = v.detach().to(device="cpu", copy=True)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout. Each group also carries the options torch's optimizer of the same
        name reads (``maximize``, ``foreach``, ...: torch's defaults), so that torch can load it."""
        rule = self._regtune.rule_class
        with self._lock:
            sd = super().state_dict()
        extra = {**_torch_group_defaults(type(self).__name__), **rule.torch_options, **rule.torch_fixed}
        for g in sd["param_groups"]:
            for k, v in extra.items():
                g.setdefault(k, v)
            for alias, k in rule.torch_aliases.items():
                g.setdefault(alias, g.get(k))
        return sd


_TORCH_DEFAULTS: dict[str, dict[str, Any]] = {}


def _torch_group_defaults(name: str) -> dict[str, Any]:
    """The group options of ``torch.optim.<name>`` (empty when torch has no such optimizer)."""
    if name not in _TORCH_DEFAULTS:
        cls = getattr(torch.optim, name, None)
        _TORCH_DEFAULTS[name] = {} if cls is None else dict(cls([torch.zeros(1, requires_grad=True)]).defaults)
    return _TORCH_DEFAULTS[name]


def _make(name: str, cls: type[_ro.Optimizer]) -> type[_Optimizer]:
    doc = f"``regtune.optim.{name}`` as a ``torch.optim.Optimizer`` (see the module docstring).\n\n" + (cls.__doc__ or "")
    body: dict[str, Any] = {"_regtune": cls, "__doc__": doc, "__module__": __name__, "__qualname__": name}
    for m in cls.rule_class.methods:  # the rule's own methods (Schedule-Free's train/eval)
        body[m] = _method(m, getattr(cls, m).__doc__)
    return type(name, (_Optimizer,), body)


def _method(name: str, doc: str | None) -> Callable[..., None]:
    def method(self: _Optimizer, *args: Any) -> None:
        self._rule_method(name, *args)

    method.__name__, method.__doc__ = name, doc
    return method


#: Every optimizer of regtune.optim, as a torch.optim.Optimizer, by its rule's key.
OPTIMIZERS: dict[str, type[_Optimizer]] = {k: _make(cls.__name__, cls) for k, cls in _ro.OPTIMIZERS.items()}
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})
to_bitsandbytes = _bnb.to_bitsandbytes
__all__ = [cls.__name__ for cls in OPTIMIZERS.values()]
