"""``torch.nn.init`` on regtune's kernels, and whole-model initialization keyed by name.

The ``torch.nn.init`` names with their trailing underscore fill a CPU float32, float64, bfloat16
or float16 tensor in place (parameters and non-contiguous views included; a meta tensor is left
as it is, as torch leaves it) from regtune's counter-based stream and return it (16-bit: the
float32 values rounded to nearest even). Without
``seed=`` the key is one 64-bit draw from torch's default generator (or ``generator=``), so
``torch.manual_seed`` reproduces them.

``reset_parameters(module, seed)`` re-initializes every submodule with the distributions that
torch's own ``reset_parameters`` uses, each parameter from a key derived from ``seed`` and its
qualified name alone: any part of a model (a pipeline stage, a shard, a layer built alone,
given its ``prefix=``) gets exactly the values it has in the whole model, and no value depends
on the order of construction, the thread count or the SIMD path. ``materialize(module, seed)``
allocates a module built on the meta device and runs the model's own init code with every random
fill keyed the same way; ``save_safetensors`` writes a meta model larger than memory, module by
module, with the values ``reset_parameters`` gives.
"""

from __future__ import annotations

import inspect
import math
import threading
import types
import warnings
from typing import Any

import numpy as np
import torch

from .. import init as _ri
from ._memory import advise_hugepages

__all__ = [
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "reset_parameters", "materialize", "save_safetensors",
]  # fmt: skip


def _seed(seed: Any, generator: torch.Generator | None) -> Any:
    if seed is not None:
        return seed
    return int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, generator=generator)) & (2**64 - 1)


_FILLED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _fill(fn: Any, tensor: torch.Tensor, *args: Any, seed: Any = None, generator: Any = None, **kw: Any) -> torch.Tensor:
    """``fn`` (a regtune.init function) into ``tensor``, as torch.nn.init fills it: a tensor on
    the meta device is returned as it is (torch's init is a no-op there); constant fills of
    integer, bool or complex tensors are torch's ``fill_``; a non-contiguous tensor (a
    transposed weight) gets the values a contiguous one of its shape gets, through a contiguous
    buffer; what regtune cannot fill (a sparse or GPU tensor, a random fill of an integer
    tensor, an expanded view) is an exception naming ``tensor``."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.layout != torch.strided:
        raise TypeError(f"tensor must be a dense (strided) tensor, got layout {tensor.layout}")
    if tensor.is_meta:
        return tensor
    if tensor.device.type != "cpu":
        raise TypeError(f"tensor must be on the CPU (regtune's kernels run there), got a tensor on {tensor.device}")
    if tensor.dtype not in _FILLED_DTYPES and fn is not _ri.constant:
        raise TypeError(f"tensor must have dtype float32, float64, bfloat16 or float16, got {tensor.dtype}")
    if any(st == 0 and n > 1 for st, n in zip(tensor.stride(), tensor.shape)):
        raise ValueError(f"tensor must not have elements that share memory (an expanded view: strides {tensor.stride()})")
    if tensor.dtype not in _FILLED_DTYPES:  # constant_ of an integer, bool or complex tensor
        val = args[0]
        with torch.no_grad():
            try:
                tensor.fill_(val)
            except TypeError:
                raise TypeError(f"val must be a number, got val={val!r}") from None
            except RuntimeError as exc:
                raise ValueError(f"val={val!r} does not fit tensor's dtype {tensor.dtype} ({exc})") from None
    else:
        target = tensor if tensor.is_contiguous() else torch.empty(tensor.shape, dtype=tensor.dtype)
        if fn is _ri.constant:
            fn(None, *args, out=target)
        else:
            fn(None, *args, seed=_seed(seed, generator), out=target, **kw)
        if target is not tensor:
            with torch.no_grad():
                try:
                    tensor.copy_(target)
                except RuntimeError as exc:  # elements that overlap in another way
                    raise ValueError(f"tensor cannot be written element by element: {exc}") from None
    mode = getattr(_materializing, "mode", None)
    if mode is not None:  # a model's init code calling these directly: what they set counts as set
        mode._mark(tensor)
    return tensor


def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0, *, seed: Any = None, generator: Any = None) -> torch.Tensor:
    """``torch.nn.init.uniform_``: U(a, b)."""
    return _fill(_ri.uniform, tensor, a, b, seed=seed, generator=generator)


def normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, *, seed: Any = None, generator: Any = None) -> torch.Tensor:
    """``torch.nn.init.normal_``: N(mean, std**2)."""
    return _fill(_ri.normal, tensor, mean, std, seed=seed, generator=generator)


def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, *,
                  seed: Any = None, generator: Any = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.init.trunc_normal_``: N(mean, std**2) truncated to [a, b] (absolute bounds)."""
    return _fill(_ri.trunc_normal, tensor, mean, std, a, b, seed=seed, generator=generator)


def constant_(tensor: torch.Tensor, val: float) -> torch.Tensor:
    """``torch.nn.init.constant_``."""
    return _fill(_ri.constant, tensor, val)


def ones_(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.nn.init.ones_``."""
    return constant_(tensor, 1.0)


def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.nn.init.zeros_``."""
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0, *, seed: Any = None, generator: Any = None) -> torch.Tensor:
    """``torch.nn.init.xavier_uniform_``."""
    return _fill(_ri.xavier_uniform, tensor, gain, seed=seed, generator=generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0, *, seed: Any = None, generator: Any = None) -> torch.Tensor:
    """``torch.nn.init.xavier_normal_``."""
    return _fill(_ri.xavier_normal, tensor, gain, seed=seed, generator=generator)


def kaiming_uniform_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                     seed: Any = None, generator: Any = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.init.kaiming_uniform_``."""
    return _fill(_ri.kaiming_uniform, tensor, a, mode, nonlinearity, seed=seed, generator=generator)


def kaiming_normal_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                    seed: Any = None, generator: Any = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.init.kaiming_normal_``."""
    return _fill(_ri.kaiming_normal, tensor, a, mode, nonlinearity, seed=seed, generator=generator)


def orthogonal_(tensor: torch.Tensor, gain: float = 1.0, *, seed: Any = None, generator: Any = None) -> torch.Tensor:
    """``torch.nn.init.orthogonal_`` (a QR in float64 through NumPy's LAPACK)."""
    return _fill(_ri.orthogonal, tensor, gain, seed=seed, generator=generator)


# ------------------------------------------------------------------------- whole models
def _key(seed: int, name: str) -> np.random.SeedSequence:
    """The key of the parameter or buffer ``name``: a SeedSequence of ``seed`` spawned along
    the UTF-8 bytes of the name (a function of the two alone)."""
    return np.random.SeedSequence(seed, spawn_key=tuple(name.encode()))


def _bias_bound(weight: torch.Tensor) -> float:
    fan_in = _ri.calculate_fans(tuple(weight.shape))[0] if weight.dim() >= 2 else weight.shape[0]
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0


_NORMS = (
    torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm,
    *((torch.nn.RMSNorm,) if hasattr(torch.nn, "RMSNorm") else ()),
)  # fmt: skip


def _reset_module(mod: torch.nn.Module, prefix: str, seed: int, fallback: list[str]) -> None:
    """One module's own parameters (children are done before it), as its torch class does."""
    def name(n: str) -> str:
        return f"{prefix}.{n}" if prefix else n

    own = dict(mod.named_parameters(recurse=False))
    if isinstance(mod, (torch.nn.Linear, torch.nn.Bilinear, torch.nn.modules.conv._ConvNd)):
        w = mod.weight
        kaiming_uniform_(w, a=math.sqrt(5), seed=_key(seed, name("weight")))
        if getattr(mod, "bias", None) is not None:
            if isinstance(mod, torch.nn.Bilinear):
                bound = 1 / math.sqrt(w.size(1))
            else:
                bound = _bias_bound(w)
            uniform_(mod.bias, -bound, bound, seed=_key(seed, name("bias")))
        if isinstance(mod, torch.nn.Bilinear):  # torch: U(-1/sqrt(in1), 1/sqrt(in1)) for the weight too
            bound = 1 / math.sqrt(w.size(1))
            uniform_(w, -bound, bound, seed=_key(seed, name("weight")))
    elif isinstance(mod, torch.nn.Embedding):
        normal_(mod.weight, seed=_key(seed, name("weight")))
        if mod.padding_idx is not None:
            with torch.no_grad():
                mod.weight[mod.padding_idx].fill_(0)
    elif isinstance(mod, _NORMS):
        if isinstance(mod, torch.nn.modules.batchnorm._NormBase) and mod.track_running_stats:
            mod.reset_running_stats()
        if own.get("weight") is not None:
            ones_(mod.weight)
        if own.get("bias") is not None:
            zeros_(mod.bias)
    elif isinstance(mod, torch.nn.MultiheadAttention):  # after out_proj (a Linear child): as its __init__
        for n in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if own.get(n) is not None:
                xavier_uniform_(own[n], seed=_key(seed, name(n)))
        if own.get("in_proj_bias") is not None:
            zeros_(mod.in_proj_bias)
        if mod.out_proj.bias is not None:
            zeros_(mod.out_proj.bias)
        for n in ("bias_k", "bias_v"):
            if own.get(n) is not None:
                xavier_normal_(own[n], seed=_key(seed, name(n)))
    elif isinstance(mod, (torch.nn.RNNBase, torch.nn.modules.rnn.RNNCellBase)):
        stdv = 1.0 / math.sqrt(mod.hidden_size) if mod.hidden_size > 0 else 0
        for n, p in own.items():
            uniform_(p, -stdv, stdv, seed=_key(seed, name(n)))
    elif isinstance(mod, torch.nn.Transformer):  # its __init__: xavier_uniform_ on every matrix
        for n, p in mod.named_parameters():
            if p.dim() > 1:
                xavier_uniform_(p, seed=_key(seed, name(n)))
    elif own and callable(getattr(mod, "reset_parameters", None)):
        mod.reset_parameters()  # torch's own method, with torch's RNG: not keyed by name
        fallback.append(prefix or type(mod).__name__)
    elif own:
        fallback.append(prefix or type(mod).__name__)


def reset_parameters(module: torch.nn.Module, seed: int, *, prefix: str = "") -> list[str]:
    """Re-initialize every parameter of ``module`` as torch's ``reset_parameters`` of its
    module's class does, from keys derived from ``seed`` and each parameter's qualified name
    (``prefix`` + its name in ``module``; give a part of a larger model the prefix it has there
    to get the values it has in the whole).

    Handled (torch's distributions): Linear, Bilinear, Conv1d/2d/3d and ConvTranspose (Kaiming
    uniform with a = sqrt(5), bias U(+-1/sqrt(fan_in))), Embedding (N(0, 1), padding row 0),
    BatchNorm/InstanceNorm/LayerNorm/GroupNorm/RMSNorm (ones, zeros, running statistics reset),
    MultiheadAttention (Xavier uniform in-projections, zero biases, Xavier normal bias_k/v),
    RNN/LSTM/GRU and their cells (U(+-1/sqrt(hidden))), Transformer (Xavier uniform on every
    matrix, as its __init__). Children are done before their parent, as torch constructs them.
    Any other module with parameters falls back to its own ``reset_parameters()`` (torch's RNG,
    not keyed by name) and is listed in the return value.

    Args:
        module: a module on the CPU, float32, float64, bfloat16 or float16 parameters (16-bit: the float32 values rounded
            to nearest even).
        seed: an int in [0, 2**64).
        prefix: the qualified name of ``module`` in the whole model ("" for the whole).

    Returns:
        The qualified names of the modules that fell back (empty when every one was handled).
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    _check_seed(seed)
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got prefix={prefix!r}")
    fallback: list[str] = []
    mods = list(module.named_modules(prefix=prefix))
    with torch.no_grad():
        for name, mod in reversed(mods):  # children before parents
            _reset_module(mod, name, int(seed), fallback)
    return fallback


# ------------------------------------------------------------------ a model's own init code
_INIT = torch.nn.init
# torch's random fills, by the function torch's __torch_function__ protocol reports: each takes
# (tensor, *its parameters) and maps to the regtune fill with the same parameters
_RANDOM: dict[Any, Any] = {
    _INIT.uniform_: uniform_, _INIT.normal_: normal_, _INIT.trunc_normal_: trunc_normal_,
    _INIT.xavier_uniform_: xavier_uniform_, _INIT.xavier_normal_: xavier_normal_,
    _INIT.kaiming_uniform_: kaiming_uniform_, _INIT.kaiming_normal_: kaiming_normal_,
    _INIT.orthogonal_: orthogonal_,
}  # fmt: skip
_METHODS = {torch.Tensor.normal_: normal_, torch.Tensor.uniform_: uniform_}  # (self, a, b, *, generator)
# random fills regtune has no sampler for: torch's, from a torch.Generator keyed like the rest
_OTHER_RANDOM = {
    _INIT.sparse_, torch.Tensor.bernoulli_, torch.Tensor.random_, torch.Tensor.exponential_, torch.Tensor.cauchy_,
    torch.Tensor.log_normal_, torch.Tensor.geometric_,
}  # fmt: skip
# writes that set every element they cover without randomness
_SETS = {
    _INIT.constant_, _INIT.ones_, _INIT.zeros_, _INIT.eye_, _INIT.dirac_, torch.Tensor.zero_, torch.Tensor.fill_,
    torch.Tensor.copy_, torch.Tensor.__setitem__,
}  # fmt: skip
_SAMPLED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
# torch.nn.init's functions hand the protocol their module-global name, which a library may have
# replaced for a while with a wrapper of the same signature (Hugging Face's
# guard_torch_init_functions does, around its init code): such a function is known by its name
_INIT_NAMES = {f.__name__: f for f in (*_RANDOM, *_OTHER_RANDOM, *_SETS) if isinstance(f, types.FunctionType)}


def _canonical(func: Any) -> Any:
    """torch.nn.init's function for a Python function of the same name standing in for it."""
    if isinstance(func, types.FunctionType):
        return _INIT_NAMES.get(func.__name__, func)
    return func


_materializing = threading.local()  # .mode: the _KeyedInit of the materialize running in this thread


def _generator(key: np.random.SeedSequence) -> torch.Generator:
    return torch.Generator().manual_seed(int(key.generate_state(1, np.uint64)[0]))


class _KeyedInit(torch.overrides.TorchFunctionMode):
    """While a model's init code runs: every random fill of a parameter or buffer (torch.nn.init's
    functions, Tensor.normal_/uniform_ and torch's other in-place samplers) draws from a key
    derived from the seed and the tensor's qualified name (regtune's samplers where regtune has
    the distribution, else torch's from a torch.Generator seeded with that key), and which elements
    of which tensors any fill, copy or assignment set is recorded, so that what nothing
    initialized can be named."""

    def __init__(self, seed: int, named: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.seed = seed
        self.where: dict[int, list[tuple[int, int, str]]] = {}  # storage address: (offset, numel, name)
        for name, t in named.items():
            self.where.setdefault(t.untyped_storage().data_ptr(), []).append((t.storage_offset(), t.numel(), name))
        self.written: set[str] = set()
        self.parts: dict[str, torch.Tensor] = {}  # name: which elements parts of it have set so far

    def _mark(self, t: Any) -> None:
        """Record that t's elements were set; a tensor counts once all of its elements were."""
        found = self._find(t)
        if found is None or found[0] in self.written:
            return
        name, whole, _ = found
        if whole:
            self.written.add(name)
            return
        start, numel = next((s, n) for s, n, m in self.where[t.untyped_storage().data_ptr()] if m == name)
        seen = self.parts.setdefault(name, torch.zeros(numel, dtype=torch.bool))
        seen.as_strided(t.shape, t.stride(), t.storage_offset() - start).fill_(True)
        if bool(seen.all()):
            self.written.add(name)
            del self.parts[name]

    def _find(self, t: Any) -> tuple[str, bool, int] | None:
        """(name, whole tensor?, element offset in it) of the parameter or buffer t views."""
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.numel() == 0:
            return None
        for start, numel, name in self.where.get(t.untyped_storage().data_ptr(), ()):
            if start <= t.storage_offset() < start + numel:
                delta = t.storage_offset() - start
                return name, delta == 0 and t.numel() == numel and t.is_contiguous(), delta
        return None

    def _key(self, name: str, whole: bool, t: torch.Tensor, delta: int) -> np.random.SeedSequence:
        if whole:
            return _key(self.seed, name)  # the key reset_parameters gives the same tensor
        # a part of a tensor: its own key, from where it starts and its shape
        return np.random.SeedSequence(self.seed, spawn_key=(*name.encode(), 256, delta, *t.shape))

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        kind = _canonical(func)
        sampler = _RANDOM.get(kind) or _METHODS.get(kind)
        if sampler is not None or kind in _OTHER_RANDOM:
            t = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            found = self._find(t)
            if found is None:
                return func(*args, **kwargs)  # not a parameter: torch's generator, seeded by materialize
            name, whole, delta = found
            key = self._key(name, whole, t, delta)
            kwargs.pop("generator", None)
            if sampler is not None and t.is_contiguous() and t.dtype in _SAMPLED_DTYPES:
                if kind is torch.Tensor.uniform_:  # its parameters are named from/to
                    kwargs = {{"from": "a", "to": "b"}.get(k, k): v for k, v in kwargs.items()}
                kwargs.pop("tensor", None)
                kwargs.pop("self", None)
                sampler(t, *args[1:], seed=key, **kwargs)
                out = t
            else:
                out = func(*args, generator=_generator(key), **kwargs)
            self._mark(t)
            return out
        out = func(*args, **kwargs)
        if kind is torch.Tensor.__setitem__:  # t[index] = value: the part basic indexing views
            part = args[0].__getitem__(args[1])
            if part.untyped_storage().data_ptr() == args[0].untyped_storage().data_ptr():
                self._mark(part)
        elif kind in _SETS:
            self._mark(args[0] if args else kwargs.get("tensor", kwargs.get("self")))
        elif isinstance(kwargs.get("out"), torch.Tensor):  # torch.eye(..., out=p) and the like
            self._mark(kwargs["out"])
        return out


def _ties(module: torch.nn.Module, prefix: str) -> list[list[tuple[torch.nn.Module, str, str, bool]]]:
    """Groups of (owner module, attribute, qualified name, is a parameter) that hold one tensor,
    in the order named_parameters / named_buffers list them (the first name is the key's)."""
    groups: dict[int, list[tuple[torch.nn.Module, str, str, bool]]] = {}
    for mod_name, mod in module.named_modules(prefix=prefix, remove_duplicate=False):
        for is_param, table in ((True, mod._parameters), (False, mod._buffers)):
            for n, t in table.items():
                if t is not None:
                    groups.setdefault(id(t), []).append((mod, n, f"{mod_name}.{n}" if mod_name else n, is_param))
    return list(groups.values())


def _retie(groups: list[list[tuple[torch.nn.Module, str, str, bool]]]) -> None:
    """Make every member of a group hold its first member's tensor again (to_empty gives each
    module its own)."""
    for group in groups:
        mod, n, _, is_param = group[0]
        t = (mod._parameters if is_param else mod._buffers)[n]
        for other, m, _, other_is_param in group[1:]:
            (other._parameters if other_is_param else other._buffers)[m] = t


def _takes_no_arguments(fn: Any) -> bool:
    try:
        return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                   for p in inspect.signature(fn).parameters.values())  # fmt: skip
    except (TypeError, ValueError):  # no signature to read: call it as torch would
        return True


def _own_init(module: torch.nn.Module) -> None:
    """Run the model's own initialization code, in the order construction runs it: every
    module's ``reset_parameters`` (or ``_reset_parameters``), children before parents, then the
    top module's: Hugging Face's ``init_weights()`` (its ``_init_weights`` on every module, then
    its ties), any other ``init_weights()``, or ``apply(_init_weights)``."""
    for mod in reversed(list(module.modules())):
        fn = getattr(mod, "reset_parameters", None)
        fn = fn if callable(fn) else getattr(mod, "_reset_parameters", None)
        if callable(fn) and _takes_no_arguments(fn):  # else what it would set is reported as not set
            fn()
    for mod in module.modules():  # Hugging Face skips what it marked as initialized (on meta: nothing)
        mod.__dict__.pop("_is_hf_initialized", None)
    if callable(getattr(module, "init_weights", None)):
        module.init_weights()
    elif callable(getattr(module, "_init_weights", None)):
        module.apply(module._init_weights)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise TypeError(f"seed must be an int in [0, 2**64), got seed={seed!r}")
    return int(seed)


def _require_meta(module: torch.nn.Module, what: str) -> None:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    for name, t in (*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)):
        if t.device.type != "meta":
            raise ValueError(
                f"module must be built on the meta device (under `with torch.device('meta'):`) for {what}, but "
                f"{name!r} is on {t.device}: its values would be discarded; use reset_parameters(module, seed) to "
                f"re-initialize a model that has memory"
            )


def materialize(module: torch.nn.Module, seed: int, *, prefix: str = "", strict: bool = True) -> list[str]:
    """Allocate a model built on the meta device on the CPU and run the model's *own*
    initialization code, each parameter and buffer drawn from a key derived from ``seed`` and its
    qualified name: fast (regtune's samplers, on every core), and the same values on every call,
    whatever the thread count, the SIMD path or (for fills of the tensors themselves) the order
    the code visits the tensors in.

    The code run is what construction on the CPU would run, in its order: every module's
    ``reset_parameters()`` (or ``_reset_parameters()``, as MultiheadAttention and Transformer
    name it), children before parents; then the top module's ``init_weights()`` (Hugging Face's
    ``PreTrainedModel``: its ``_init_weights`` on every module, then its ties) or, without one,
    ``module.apply(module._init_weights)``. Initialization written inline in an ``__init__``
    cannot be run again: give it a method of one of these names.

    While that code runs, ``torch.nn.init``'s functions and ``Tensor.normal_``/``uniform_`` on a
    parameter or buffer fill it from regtune's counter-based samplers (``uniform_``, ``normal_``,
    ``trunc_normal_``, ``xavier_*``, ``kaiming_*``, ``orthogonal_``, with the key of the whole
    tensor, as :func:`reset_parameters` gives it, or one derived from the part's place and shape
    for a part); the other samplers (``sparse_``, ``bernoulli_``, ...) are torch's with a
    ``torch.Generator`` seeded from that key; ``generator=`` arguments are replaced. Random
    tensors made from torch's default generator (``torch.randn`` then ``copy_``) come from a
    generator seeded from ``seed`` (torch's RNG state is restored afterwards). Tied tensors (one
    ``Parameter`` under two names, as GPT-2's ``lm_head.weight`` and ``wte.weight``; torch's
    ``to_empty`` unties them) are tied again before and after the code runs, and take the key
    of their first name.

    Args:
        module: a module whose parameters and buffers are all on the meta device (else
            ValueError: their values would be discarded; use :func:`reset_parameters`).
        seed: an int in [0, 2**64).
        prefix: the qualified name of ``module`` in a larger model ("" for the whole).
        strict: what to do with a tensor nothing initialized (a module with no
            initialization method, as Hugging Face's ``Conv1D`` outside its model, a buffer
            computed in ``__init__``): True raises a ValueError naming them; False warns
            (RuntimeWarning) and returns their names. Either way they are filled with NaN
            (integer buffers: 0), never left as whatever memory ``to_empty`` gave them.

    Returns:
        The qualified names of the tensors nothing initialized (empty unless ``strict=False``).

    Raises:
        ValueError: a parameter or buffer is not on the meta device (nothing is changed), or,
            with ``strict=True``, nothing initialized some tensors (named in the message).
        TypeError: ``module``, ``seed``, ``prefix`` or ``strict`` of the wrong type.

    Example:
        >>> with torch.device("meta"):
        ...     model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
        >>> materialize(model, seed=0)
        []
    """
    _require_meta(module, "materialize")
    seed = _check_seed(seed)
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got prefix={prefix!r}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got strict={strict!r}")
    groups = _ties(module, prefix)
    module.to_empty(device="cpu")
    _retie(groups)

    def current() -> dict[str, torch.Tensor]:
        return {g[0][2]: (g[0][0]._parameters if g[0][3] else g[0][0]._buffers)[g[0][1]] for g in groups}

    named = current()
    for t in named.values():
        advise_hugepages(t)  # written first by the initializers: 2 MiB pages, not 4 KiB faults
    allocated = {name: t.untyped_storage().data_ptr() for name, t in named.items()}
    mode = _KeyedInit(seed, named)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(_key(seed, "").generate_state(1, np.uint64)[0]))
        _materializing.mode = mode
        try:
            with torch.device("cpu"), mode:  # tensors the code makes are on the CPU, as the model now
                _own_init(module)
        finally:
            _materializing.mode = None
    _retie(groups)  # in case the code replaced one of a tied group
    left = [
        name for name, t in current().items()
        if name not in mode.written and t.untyped_storage().data_ptr() == allocated[name] and t.numel() > 0
    ]  # fmt: skip
    if left:
        with torch.no_grad():
            for name, t in current().items():
                if name in left:
                    t.fill_(float("nan") if t.is_floating_point() or t.is_complex() else 0)
        message = (
            f"nothing in module's initialization code initialized {len(left)} tensor(s): {', '.join(left[:8])}"
            f"{', ...' if len(left) > 8 else ''} (filled with NaN; give their modules a reset_parameters() or the "
            f"model an init_weights() / _init_weights)"
        )
        if strict:
            raise ValueError(message + "; pass strict=False to get their names back instead")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return left


def _units(module: torch.nn.Module, prefix: str) -> list[tuple[str, torch.nn.Module, bool]]:
    """(qualified name, module, whole subtree?) in the order reset_parameters initializes them:
    children before parents; a MultiheadAttention or Transformer (which set their children's
    values too) as one subtree."""
    out: list[tuple[str, torch.nn.Module, bool]] = []

    def walk(name: str, mod: torch.nn.Module) -> None:
        if isinstance(mod, (torch.nn.MultiheadAttention, torch.nn.Transformer)):
            out.append((name, mod, True))
            return
        for child_name, child in mod.named_children():
            walk(f"{name}.{child_name}" if name else child_name, child)
        if any(True for _ in mod.parameters(recurse=False)) or any(True for _ in mod.buffers(recurse=False)):
            out.append((name, mod, False))

    walk(prefix, module)
    return out


def save_safetensors(
    module: torch.nn.Module, seed: int, path: str, *, max_shard_bytes: int = 2**31, prefix: str = ""
) -> list[str]:
    """Initialize a model built on the meta device as :func:`reset_parameters` does and write it
    to safetensors files without ever holding the whole model: one module (a MultiheadAttention
    or Transformer with its children) is allocated at a time, its tensors go into the current
    shard, and a shard is written once it would pass ``max_shard_bytes``: a model larger than
    memory can be written. The module is left on the meta device, its ties intact.

    Values: those ``reset_parameters(module, seed, prefix=prefix)`` gives the model in memory
    (regtune's table of torch's distributions, each tensor keyed by its qualified name, not the
    model's own init code: that needs the whole model, see :func:`materialize`). A tensor tied
    under several names (one ``Parameter`` held by two modules) is written under each of its
    names with the same values: those of the last module that initializes it, as in memory.

    Files: ``path`` when one shard holds everything, else ``path`` with ``-00001-of-0000N`` before
    its suffix for each shard and ``<path>.index.json`` mapping each tensor name to its file (the
    Hugging Face layout). Names are the state_dict's (parameters and persistent buffers, with
    ``prefix``, tied names included). Needs the ``safetensors`` package.

    Raises:
        ValueError: ``module`` has a parameter or buffer that is not on the meta device (its
            values would be discarded: save a model that has memory with safetensors itself);
            ``path`` does not end in ``.safetensors``; ``max_shard_bytes`` < 1.
        OSError: a file could not be written (the message names ``path``).

    Returns:
        The paths written (shards, then the index when there is one).
    """
    import json
    import os

    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    _require_meta(module, "save_safetensors")
    if isinstance(max_shard_bytes, bool) or not isinstance(max_shard_bytes, int) or max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be an int >= 1, got max_shard_bytes={max_shard_bytes!r}")
    if not isinstance(path, (str, os.PathLike)) or not str(path).endswith(".safetensors"):
        raise ValueError(f"path must name a .safetensors file, got path={path!r}")
    reset_parameters(torch.nn.Module(), seed, prefix=prefix)  # checks seed and prefix
    path = str(path)
    groups = _ties(module, prefix)
    units = _units(module, prefix)

    def unit_names(name: str, mod: torch.nn.Module, subtree: bool) -> list[str]:
        own = (*mod.named_parameters(recurse=subtree, remove_duplicate=False),
               *mod.named_buffers(recurse=subtree, remove_duplicate=False))  # fmt: skip
        return [f"{name}.{n}" if name else n for n, _ in own]

    # a tied tensor takes the values its first name's module gives it (reset_parameters visits
    # modules in reverse, so that one writes last) and is written with them under every name
    tied = {n: k for k, g in enumerate(groups) if len(g) > 1 for _, _, n, _ in g}
    first = {groups[k][0][2] for k in set(tied.values())}
    owner = {tied[n]: u for u, unit in enumerate(units) for n in unit_names(*unit) if n in first}
    shards: list[dict[str, np.ndarray]] = [{}]
    sizes = [0]
    tmp: list[str] = []

    def write(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (OSError, SafetensorError) as e:
            raise OSError(f"save_safetensors could not write path={path!r}: {e}") from e

    def flush() -> None:
        stem = f"{path[: -len('.safetensors')]}.part{len(tmp):05d}.safetensors"
        write(save_file, shards[-1], stem)
        tmp.append(stem)
        shards[-1] = {}
        sizes[-1] = 0

    def add(key: str, arr: np.ndarray) -> None:
        if sizes[-1] and sizes[-1] + arr.nbytes > max_shard_bytes:
            flush()
        shards[-1][key] = arr
        sizes[-1] += arr.nbytes

    try:
        for u, (name, mod, subtree) in enumerate(units):
            mod.to_empty(device="cpu", recurse=subtree)
            for t in (*mod.parameters(recurse=subtree), *mod.buffers(recurse=subtree)):
                advise_hugepages(t)
            fallback: list[str] = []
            with torch.no_grad():
                if subtree:
                    reset_parameters(mod, seed, prefix=name)
                else:
                    _reset_module(mod, name, int(seed), fallback)
            persistent = {n for n, _ in mod.named_buffers(recurse=subtree)} - set(getattr(mod, "_non_persistent_buffers_set", ()))
            tensors = [*mod.named_parameters(recurse=subtree, remove_duplicate=False),
                       *((n, b) for n, b in mod.named_buffers(recurse=subtree, remove_duplicate=False) if n in persistent)]  # fmt: skip
            for n, t in tensors:
                key = f"{name}.{n}" if name else n
                if key not in tied:
                    add(key, t.detach().cpu().numpy())
                elif owner[tied[key]] == u and key in first:  # every name of the group gets these values
                    arr = t.detach().cpu().numpy()
                    for _, _, alias, _ in groups[tied[key]]:
                        add(alias, arr)
            mod.to("meta")  # the module's memory is freed once its shard is written
        if shards[-1] or not tmp:
            flush()
    finally:
        module.to("meta")
        _retie(groups)
    if len(tmp) == 1:
        write(os.replace, tmp[0], path)
        return [path]
    weight_map: dict[str, str] = {}
    final = []
    stem = path[: -len(".safetensors")]
    from safetensors import safe_open

    for k, t in enumerate(tmp, start=1):
        dest = f"{stem}-{k:05d}-of-{len(tmp):05d}.safetensors"
        write(os.replace, t, dest)
        final.append(dest)
        with safe_open(dest, "np") as f:
            for key in f.keys():
                weight_map[key] = os.path.basename(dest)
    index = f"{path}.index.json"
    total = int(sum(write(os.path.getsize, p) for p in final))

    def dump() -> None:
        with open(index, "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)

    write(dump)
    return [*final, index]
