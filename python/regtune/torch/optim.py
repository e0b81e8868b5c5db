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

One native call steps each group (per distinct step count within it: parameters that skipped
steps keep their own bias corrections, as in torch). Sparse gradients are refused.

``torch.bfloat16`` and ``torch.float16`` parameters take regtune's 16-bit step (see
``regtune.optim``): ``precision="round" | "stochastic" | "master"`` and ``state_dtype=``
(float32 state by default; ``state_dtype=torch.bfloat16`` keeps it in the parameters' dtype,
as torch does, and then Adam, AdamW and Adagrad equal torch's ``fused=True`` step bit for
bit). The state tensors, the master copies included, live in ``optimizer.state`` in their own
dtype.
"""

from __future__ import annotations

import inspect
import math
import weakref
from typing import Any, Callable, Iterable

import ml_dtypes
import numpy as np
import torch

from .. import optim as _ro
from . import _bitsandbytes as _bnb
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


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy); bfloat16 through its int16 bits."""
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(_BF16)
    return t.detach().numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A new tensor holding a copy of ``a`` (bfloat16 through its int16 bits)."""
    if a.dtype == _BF16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True))


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


def _numpy_dtype(dtype: Any) -> Any:
    """A torch dtype given as ``state_dtype=`` in NumPy's terms (anything else as it is)."""
    return _NUMPY_DTYPE.get(dtype, dtype) if isinstance(dtype, torch.dtype) else dtype


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
        defaults.update(flags)  # kept in the groups, as torch keeps them
        self._cache: dict[int, tuple[Any, ...]] = {}
        # regtune optimizer -> the ids of the state tensors its arrays view (weak: a replaced
        # optimizer's entry goes with it, so a new one at the same address is never taken for it)
        self._bound: weakref.WeakKeyDictionary[_ro.Optimizer, tuple[int, ...]] = weakref.WeakKeyDictionary()
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for i, p in enumerate(group["params"]):
            if p.device.type != "cpu":
                raise TypeError(f"params[{i}] must be a CPU tensor, got one on {p.device}")
            if p.dtype not in _NUMPY_DTYPE:
                raise TypeError(
                    f"params[{i}] must have dtype torch.float32, float64, bfloat16 or float16, got {p.dtype}"
                )
            if not p.is_contiguous():
                raise ValueError(f"params[{i}] must be contiguous (regtune updates it in place)")
        self._hyper(group)  # checks the hyperparameters now, naming them
        # A rule with scalar state keeps it in the group, under the reference's names, with the
        # group's step count as "k" (one count per group, as the reference steps it).
        for k, v in self._regtune.rule_class.scalars.items():
            group.setdefault(k, v)
        if self._regtune.rule_class.scalars:
            group.setdefault("k", 0)

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's regtune hyperparameters (a group loaded from torch's own optimizer lacks
        regtune's extras: their defaults), checked by a throwaway regtune instance, which
        names a bad one."""
        hyper = self._group_hyper(group)
        dt = _NUMPY_DTYPE[group["params"][0].dtype] if group["params"] else np.dtype(np.float32)
        self._regtune([np.empty(0, dt)], **hyper)
        return hyper

    def _group_hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        for k in _TORCH_FLAGS:  # a group (or a loaded torch state_dict) may carry them too
            if k in group:
                _torch_flag(k, group[k])
        hyper = {k: _plain(group.get(k, self.defaults[k])) for k in self._keys}
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
        ident = tuple((id(p), p.data_ptr()) for p in params)
        cached = self._cache.get(id(group))
        if cached is not None and cached[0] == ident and cached[1] == fixed:
            ro = cached[2]
            for k in _SCHEDULED:
                if k in hyper and getattr(ro, k) != hyper[k]:
                    setattr(ro, k, scalar_or_schedule(hyper[k], k))
            return ro
        ro = self._regtune([_np(p) for p in params], **hyper)
        self._cache[id(group)] = (ident, fixed, ro)
        return ro

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every group (``closure`` re-evaluates the loss, as torch's)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grouped: list[tuple[dict[str, Any], dict[int, list[torch.Tensor]]]] = []
        for group in self.param_groups:
            buckets: dict[int, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if "k" in group and self._regtune.rule_class.scalars:
                    step = int(group["k"])  # the group's count
                else:  # torch's SGD keeps no step: a momentum buffer means steps were taken
                    step = int(state["step"]) if "step" in state else (1 if state else 0)
                buckets.setdefault(step, []).append(p)
            grouped.append((group, buckets))
        first = [p for _, b in grouped for ps in b.values() for p in ps if not self.state[p]]
        work: list[tuple[_ro.Optimizer, list[torch.Tensor], int]] = []  # (regtune optimizer, params, step count)
        try:
            for group, buckets in grouped:
                for step, params in buckets.items():
                    ro = self._regtune_for(group, params)
                    self._bind_state(ro, params)
                    ro.step_count = step
                    self._scalars_in(ro, group)
                    work.append((ro, params, step))
            # One native call steps every group (and step count), after all of them are checked.
            _ro.step_all([(ro, [_np(p.grad if p.grad.is_contiguous() else p.grad.contiguous()) for p in params])
                          for ro, params, _ in work])  # fmt: skip
        except BaseException:
            for p in first:  # a first step that did not happen leaves no state (it would count as a step)
                self.state.pop(p, None)
            for ro, _, _ in work:
                self._bound.pop(ro, None)
            raise
        steps = []
        groups = [group for group, buckets in grouped for _ in buckets]
        for (ro, _, _), group in zip(work, groups):
            self._scalars_out(ro, group)
        for ro, params, step in work:
            for p in params:
                st = self.state[p]
                t = st.get("step")
                if not isinstance(t, torch.Tensor) or t.dim() != 0 or t.dtype != torch.float32:
                    st["step"] = t = torch.tensor(float(step), dtype=torch.float32)  # torch's layout
                steps.append(t)
            self._extra_state(ro, params, step + 1)
        if steps:
            torch._foreach_add_(steps, 1.0)  # one call for all: a torch.tensor per parameter costs more
        if _increment_version is not None:
            for _, params, _ in work:
                _increment_version(params)
        return loss

    def _scalars_in(self, ro: _ro.Optimizer, group: dict[str, Any]) -> None:
        """The rule's scalar state from the group (its reference's keys)."""
        if ro.rule.scalars:
            ro.scalars = {k: group.get(k, v) for k, v in ro.rule.scalars.items()}

    def _scalars_out(self, ro: _ro.Optimizer, group: dict[str, Any]) -> None:
        if ro.rule.scalars:
            group.update(ro.scalars)
            group["k"] = ro.step_count

    def _rule_method(self, name: str, *args: Any) -> None:
        """A method of the rule (Schedule-Free's ``train()`` / ``eval()``) on every group: on
        the parameters that have state, or on a stand-in when none has (only the group's scalar
        state changes then)."""
        with torch.no_grad():
            for group in self.param_groups:
                params = [p for p in group["params"] if self.state[p]]
                if params:
                    ro = self._regtune_for(group, params)
                    self._bind_state(ro, params)
                    ro.step_count = int(group.get("k", 0))
                else:
                    dt = _NUMPY_DTYPE[group["params"][0].dtype] if group["params"] else np.dtype(np.float32)
                    ro = self._regtune([np.empty(0, dt)], **self._group_hyper(group))
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
        for name, arrays in ro.state.items():
            for i, p in enumerate(params):
                st = self.state[p]
                if arrays[i] is None:  # a buffer this tensor does not keep (Adafactor)
                    continue
                t = st.get(name)
                if t is None:  # a first step: as regtune fills it
                    st[name] = t = _tensor(arrays[i])
                elif tuple(t.shape) != arrays[i].shape:
                    raise ValueError(
                        f"state[{name!r}] of a parameter of shape {tuple(p.shape)} has shape {tuple(t.shape)}, "
                        f"expected {arrays[i].shape} (a state_dict of another model?)"
                    )
                want = _TORCH_DTYPE[arrays[i].dtype]  # the param's dtype, or the state_dtype of a 16-bit step
                if (t.dtype == torch.uint8) != (want == torch.uint8):  # 8-bit codes are no float state, nor the reverse
                    raise ValueError(
                        f"state[{name!r}] of a parameter of shape {tuple(p.shape)} is {t.dtype} but this optimizer "
                        f"keeps it {'blockwise 8-bit (uint8 codes)' if want == torch.uint8 else want} (state_dtype "
                        "and min_8bit_size must be those the state was made with)"
                    )
                if t.dtype != want or not t.is_contiguous() or t.device.type != "cpu":
                    st[name] = t = t.to(dtype=want, device="cpu").contiguous()
                arrays[i] = _np(t)
        self._bound[ro] = tuple(id(t) for p in params for t in self.state[p].values())

    def _extra_state(self, ro: _ro.Optimizer, params: list[torch.Tensor], step: int) -> None:
        """State torch keeps that the rule derives from the step count (NAdam's mu_product)."""
        for name, value in ro.rule.torch_state(step).items():
            for p in params:
                t = self.state[p].get(name)
                if isinstance(t, torch.Tensor) and t.dim() == 0:
                    t.fill_(value)
                else:
                    self.state[p][name] = torch.tensor(value, dtype=torch.float32)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, except that a state tensor keeps the dtype it was saved
        in (torch casts floating state to its parameter's dtype, which would round the float32
        state and master copies of 16-bit parameters), and a NaN or inf in a state tensor is a
        ValueError naming it (``state_dict['state'][0]['exp_avg']``), before anything is loaded:
        it would reach every parameter at the next step."""
        state = state_dict.get("state") if isinstance(state_dict, dict) else None
        for i, entries in (state.items() if isinstance(state, dict) else ()):
            for k, v in (entries.items() if isinstance(entries, dict) else ()):
                if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    bad = v.detach().reshape(-1)[~torch.isfinite(v.detach().reshape(-1))][0].item()
                    raise ValueError(f"state_dict['state'][{i!r}][{k!r}] holds {bad}; optimizer state must be finite")
        state_dict = _bnb.from_bitsandbytes(self, state_dict)  # bitsandbytes' 8-bit layout, when it is that
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(saved_ids, params):
            for k, v in state_dict["state"].get(i, {}).items():
                if k != "step" and isinstance(v, torch.Tensor) and v.dtype != p.dtype and (v.is_floating_point() or v.dtype == torch.uint8):
                    self.state[p][k] = v.detach().to(device="cpu", copy=True)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout. Each group also carries the options torch's optimizer of the same
        name reads (``maximize``, ``foreach``, ...: torch's defaults), so that torch can load it."""
        sd = super().state_dict()
        extra = {**_torch_group_defaults(type(self).__name__), **self._regtune.rule_class.torch_options}
        for g in sd["param_groups"]:
            for k, v in extra.items():
                g.setdefault(k, v)
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
