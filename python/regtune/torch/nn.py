"""Dropout for torch that stores no mask: the backward regenerates it.

``regtune.torch.nn.Dropout(p)`` is a drop-in ``torch.nn.Dropout``: the same inverted scaling
(kept values ``x * (1 / (1 - p))`` rounded once to the dtype, dropped values ``+0.0``), identity
in ``eval()``. It saves no mask for the backward, only its 64-bit Philox key (an 8-byte tensor):
the backward draws the same Philox words again and applies the same mask, bit for bit
(regtune's ``dropout_backward`` with ``seed=``). Where ``torch.nn.Dropout`` keeps an
``x.numel()``-element mask alive from forward to backward, this keeps 8 bytes.

torch.compile: the kernels are the torch custom ops ``regtune::dropout``, ``regtune::dropout_``
(in place) and ``regtune::dropout_backward``, with fake implementations and a registered autograd
formula, so ``torch.compile`` (aot_eager, inductor) traces a model through its dropouts with no
graph break, and the compiled model gives the eager model's bits, forward and backward (the
op draws its key from torch's generator itself, where inductor would replace a torch random op
with its own RNG). With ``generator=`` the key is drawn by ``torch.randint(generator=...)`` before
the op, which torch.compile traces too (same bits under aot_eager and, in torch 2.13, inductor).

Randomness: each forward takes its Philox key from torch's default CPU generator (one 64-bit
draw, or from ``generator=``), so ``torch.manual_seed`` makes a run reproducible, and
``torch.utils.checkpoint``, which restores torch's RNG state before it recomputes a forward,
gets the same mask back. Masks are independent of the thread count and SIMD path.

float32, float64, bfloat16 and float16 tensors on the CPU; other dtypes and devices raise a
TypeError naming the input. bfloat16 and float16 compute in float32 and round each value once
to nearest even: kept values are ``x * np.float32(1 / (1 - p))`` rounded to the tensor's dtype,
the float32 result of the widened tensor, rounded. torch's own dropout rounds the scale to the
16-bit dtype first (bfloat16(1 / 0.7) = 1.4297, 0.08% high; up to 2**-9 relative for bfloat16),
so its 16-bit outputs are biased by that much and differ from these in the last place on many
kept elements (see :mod:`regtune.dropout`).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as _np
import torch

from .. import dropout as _rd
from .._validation import hyperparameter
from ._memory import empty_like as _empty_like

__all__ = [
    "Dropout", "AlphaDropout", "FeatureAlphaDropout", "Dropout1d", "Dropout2d", "Dropout3d",
    "dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d",
]  # fmt: skip

_SELU_ALPHA = 1.7580993408473766  # torch's alpha' = -SELU(-inf)

_KINDS = {  # kind: (forward, backward)
    "dropout": (_rd.dropout, _rd.dropout_backward),
    "alpha": (_rd.alpha_dropout, _rd.alpha_dropout_backward),
    "feature": (_rd.feature_dropout, _rd.feature_dropout_backward),
}


def _draw_key(generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh 64-bit Philox key from torch's generator (its state advances by one draw), as a
    0-d int64 tensor (the key's bits; ``& (2**64 - 1)`` gives the unsigned key)."""
    return torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, generator=generator)


def _check(x: Any, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {x.layout}")
    if x.device.type != "cpu":
        raise TypeError(f"{name} must be a CPU tensor, got one on {x.device}")
    if x.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise TypeError(
            f"{name} must have dtype torch.float32, torch.float64, torch.bfloat16 or torch.float16, got {x.dtype}"
        )


# ------------------------------------------------------------------ the kernels as torch ops
# Each dropout is the custom op regtune::dropout (y and the key it drew) with a registered
# autograd formula that calls regtune::dropout_backward (the mask regenerated from the key), and
# fake implementations, so torch.compile (dynamo, AOTAutograd, inductor) traces through them
# with no graph break and runs the same kernels, hence the same bits, as eager. The key is drawn
# from torch's default generator *inside* the op: inductor replaces torch's own random ops with
# its RNG, which would change the keys, but it does not look into a custom op. The op is tagged
# nondeterministic_seeded, so AOTAutograd's partitioner never recomputes it in the backward.


def _feature_alpha_noise(shape: tuple[int, ...], p: float, key: int, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """torch's feature_alpha_dropout noise (N, C, 1, ...): a keep bit per (n, c) channel from
    regtune's stream; and the scale a = 1 / sqrt((alpha'^2 p + 1)(1 - p))."""
    units = shape[0] * shape[1]
    bits = _rd.dropout_mask(units, p, seed=key)
    keep = torch.from_numpy(_np.unpackbits(bits, bitorder="little", count=units).astype(_np.float64))
    noise = keep.to(dtype).reshape(shape[0], shape[1], *([1] * (len(shape) - 2)))
    return noise, 1.0 / math.sqrt((_SELU_ALPHA * _SELU_ALPHA * p + 1) * (1 - p))


def _forward_into(x: torch.Tensor, p: float, key: int, kind: str, out: torch.Tensor) -> None:
    """out = the ``kind`` dropout of x (x contiguous; out may be x itself)."""
    if kind == "feature_alpha":  # b = (noise - 1) alpha' a + alpha' a p, y = x * (noise a) + b
        noise, a = _feature_alpha_noise(tuple(x.shape), p, key, x.dtype)
        b = noise.add(-1).mul_(_SELU_ALPHA * a).add_(_SELU_ALPHA * a * p)
        torch.mul(x, noise.mul_(a), out=out).add_(b)
    else:
        _KINDS[kind][0](x, p, seed=key, out=out, return_mask=False)


# torch >= 2.4 has custom_op; its tags= came later: without it the partitioner still recomputes
# only its allowlist of aten ops, never a custom op
_SEEDED: dict[str, Any] = {}
if "tags" in inspect.signature(torch.library.custom_op).parameters:
    _SEEDED["tags"] = (torch.Tag.nondeterministic_seeded,)
_OP_KINDS = ("dropout", "alpha", "feature", "feature_alpha")


def _op_args(x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> None:
    """The checks of a direct torch.ops.regtune call (the module and functional forms check
    theirs where the user's arguments enter)."""
    _check(x, "x")
    if kind not in _OP_KINDS:
        raise ValueError(f"kind must be one of {_OP_KINDS}, got kind={kind!r}")
    if key is not None and (key.dtype != torch.int64 or key.dim() != 0):
        raise TypeError(f"key must be a 0-d torch.int64 tensor, got {key.dtype} of shape {tuple(key.shape)}")
    hyperparameter(p, "p", low=0.0, high=1.0)


def _unsigned(key: torch.Tensor) -> int:
    return int(key) & (2**64 - 1)


def _key_for(key: torch.Tensor | None) -> torch.Tensor:
    return _draw_key() if key is None else key.clone()


def _dropout_impl(x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    key = _key_for(key)
    src = x if x.is_contiguous() else x.contiguous()
    out = _empty_like(src)
    _forward_into(src, p, _unsigned(key), kind, out)
    return out, key


def _dropout_inplace_impl(x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> torch.Tensor:
    key = _key_for(key)
    _forward_into(x, p, _unsigned(key), kind, x)
    return key


def _dropout_backward_impl(dy: torch.Tensor, key: torch.Tensor, p: float, kind: str) -> torch.Tensor:
    dy = dy if dy.is_contiguous() else dy.contiguous()
    if kind == "feature_alpha":
        noise, a = _feature_alpha_noise(tuple(dy.shape), p, _unsigned(key), dy.dtype)
        return dy.mul(noise.mul_(a))
    dx = _empty_like(dy)
    _KINDS[kind][1](dy, p=p, seed=_unsigned(key), out=dx)
    return dx


@torch.library.custom_op("regtune::dropout", mutates_args=(), **_SEEDED)
def _dropout_op(x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, key): the ``kind`` dropout of x with ``key`` (drawn from torch's default generator
    when None). kind: dropout, alpha, feature (whole channels of (N, C, ...)) or feature_alpha."""
    _op_args(x, key, p, kind)
    return _dropout_impl(x, key, p, kind)


@_dropout_op.register_fake
def _(x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty((), dtype=torch.int64)


@torch.library.custom_op("regtune::dropout_", mutates_args=("x",), **_SEEDED)
def _dropout_inplace_op(x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> torch.Tensor:
    """The key; x (contiguous) is overwritten with its ``kind`` dropout."""
    _op_args(x, key, p, kind)
    if not x.is_contiguous():
        raise ValueError("x must be contiguous for regtune::dropout_")
    return _dropout_inplace_impl(x, key, p, kind)


@_dropout_inplace_op.register_fake
def _(x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> torch.Tensor:
    return x.new_empty((), dtype=torch.int64)


@torch.library.custom_op("regtune::dropout_backward", mutates_args=())
def _dropout_backward_op(dy: torch.Tensor, key: torch.Tensor, p: float, kind: str) -> torch.Tensor:
    """dx for dy: the forward's mask regenerated from ``key`` (the backward is linear in dy)."""
    _op_args(dy, key, p, kind)
    return _dropout_backward_impl(dy, key, p, kind)


@_dropout_backward_op.register_fake
def _(dy: torch.Tensor, key: torch.Tensor, p: float, kind: str) -> torch.Tensor:
    return torch.empty_like(dy, memory_format=torch.contiguous_format)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    key = output[1] if isinstance(output, tuple) else inputs[1]
    ctx.save_for_backward(key)  # 8 bytes: the mask is regenerated from it
    ctx.p, ctx.kind = inputs[2], inputs[3]


def _backward(ctx: Any, dy: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
    (key,) = ctx.saved_tensors
    return _dropout_backward_op(dy, key, ctx.p, ctx.kind), None, None, None


_dropout_op.register_autograd(_backward, setup_context=_setup)
# dx = mask * scale * dy is linear in dy: its own derivative is the same op (double backward works)
_dropout_backward_op.register_autograd(_backward, setup_context=_setup)


# Eager calls take a shorter road to the same functions: the custom-op dispatch (its Python
# autograd and CPU kernels) costs about 35 us a forward and 45 more a backward, twice the rest
# of a small dropout. torch.compile traces the ops above; the two roads give the same bits
# (tests/test_torch_nn.py compares a compiled model with the eager one).
class _EagerDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> torch.Tensor:
        y, key = _dropout_impl(x.detach(), key, p, kind)
        ctx.save_for_backward(key)
        ctx.p, ctx.kind = p, kind
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (key,) = ctx.saved_tensors
        return _EagerDropoutBackward.apply(dy, key, ctx.p, ctx.kind), None, None, None


class _EagerDropoutBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, dy: torch.Tensor, key: torch.Tensor, p: float, kind: str) -> torch.Tensor:
        ctx.save_for_backward(key)
        ctx.p, ctx.kind = p, kind
        return _dropout_backward_impl(dy.detach(), key, p, kind)

    @staticmethod
    def backward(ctx: Any, ddx: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # linear in dy
        (key,) = ctx.saved_tensors
        return _EagerDropoutBackward.apply(ddx, key, ctx.p, ctx.kind), None, None, None


class _InplaceDropout(torch.autograd.Function):
    """In-place dropout on a tensor that needs a gradient (torch's ``dropout_`` under autograd):
    x is overwritten, the backward regenerates the mask from the saved key."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, key: torch.Tensor | None, p: float, kind: str) -> torch.Tensor:
        compiling = torch.compiler.is_compiling()
        key = (_dropout_inplace_op if compiling else _dropout_inplace_impl)(x, key, p, kind)
        ctx.save_for_backward(key)
        ctx.p, ctx.kind, ctx.compiling = p, kind, compiling
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (key,) = ctx.saved_tensors
        if ctx.compiling:
            return _dropout_backward_op(dy, key, ctx.p, ctx.kind), None, None, None
        return _EagerDropoutBackward.apply(dy, key, ctx.p, ctx.kind), None, None, None


def _run(x: torch.Tensor, p: float, kind: str, inplace: bool, generator: torch.Generator | None) -> torch.Tensor:
    """The ``kind`` dropout of x: the key is drawn from torch's default generator inside the
    kernel's op (or its eager twin), or here from ``generator``."""
    key = None if generator is None else _draw_key(generator)
    compiling = torch.compiler.is_compiling()
    if not inplace:
        return _dropout_op(x, key, p, kind)[0] if compiling else _EagerDropout.apply(x, key, p, kind)
    if torch.is_grad_enabled() and x.requires_grad:
        return _InplaceDropout.apply(x, key, p, kind)
    (_dropout_inplace_op if compiling else _dropout_inplace_impl)(x, key, p, kind)
    return x


def feature_alpha_dropout(input: torch.Tensor, p: float = 0.5, training: bool = False, inplace: bool = False, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.functional.feature_alpha_dropout`` (whole channels of (N, C, ...); ``training``
    defaults to False as torch's) whose backward regenerates the channel mask: one bit per
    channel from regtune's stream, saved nowhere. ``p == 1`` gives zeros, as torch."""
    _check(input, "input")
    p = hyperparameter(p, "p", low=0.0, high=1.0)
    if not isinstance(training, bool):
        raise TypeError(f"training must be a bool, got training={training!r}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got inplace={inplace!r}")
    if not training or p == 0.0:
        return input
    if input.dim() < 2:
        raise ValueError(f"input must have at least 2 dimensions (N, C, ...), got shape {tuple(input.shape)}")
    if p == 1.0:
        return input.mul_(0) if inplace else input.mul(0)
    if inplace and not input.is_contiguous():
        raise ValueError("input must be contiguous for inplace=True")
    return _run(input, p, "feature_alpha", inplace, generator)


def _apply(kind: str, x: torch.Tensor, p: float, training: bool, inplace: bool, generator: Any, name: str) -> Any:
    _check(x, name)
    p = hyperparameter(p, "p", low=0.0, high=1.0)
    if not isinstance(training, bool):
        raise TypeError(f"training must be a bool, got training={training!r}")
    if not training or p == 0.0:
        return x
    if kind == "feature" and x.dim() < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (N, C, ...) for channel dropout, got shape {tuple(x.shape)}")
    if inplace and not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous for inplace=True")
    return _run(x, p, kind, inplace, generator)


def dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.functional.dropout`` whose backward regenerates the mask (none is saved)."""
    return _apply("dropout", input, p, training, inplace, generator, "input")


def alpha_dropout(input: torch.Tensor, p: float = 0.5, training: bool = False, inplace: bool = False, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.functional.alpha_dropout`` (SELU networks; ``training`` defaults to False as
    torch's) whose backward regenerates the mask."""
    return _apply("alpha", input, p, training, inplace, generator, "input")


def _feature(input: torch.Tensor, p: float, training: bool, inplace: bool, generator: Any, dims: int) -> Any:
    _check(input, "input")
    if input.dim() not in (dims + 1, dims + 2):
        raise ValueError(
            f"input must have {dims + 1} (unbatched) or {dims + 2} dimensions for dropout{dims}d, got shape "
            f"{tuple(input.shape)}"
        )
    if input.dim() == dims + 1:  # unbatched (C, ...): one sample
        return _apply("feature", input.unsqueeze(0), p, training, inplace, generator, "input").squeeze(0)
    return _apply("feature", input, p, training, inplace, generator, "input")


def dropout1d(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.functional.dropout1d``: whole channels of (N, C, L) or (C, L)."""
    return _feature(input, p, training, inplace, generator, 1)


def dropout2d(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.functional.dropout2d``: whole channels of (N, C, H, W) or (C, H, W)."""
    return _feature(input, p, training, inplace, generator, 2)


def dropout3d(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.functional.dropout3d``: whole channels of (N, C, D, H, W) or (C, D, H, W)."""
    return _feature(input, p, training, inplace, generator, 3)


class _DropoutNd(torch.nn.Module):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = hyperparameter(p, "p", low=0.0, high=1.0)
        if not isinstance(inplace, bool):
            raise TypeError(f"inplace must be a bool, got inplace={inplace!r}")
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """``torch.nn.Dropout(p, inplace)``: the mask is regenerated in the backward, not stored."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    """``torch.nn.AlphaDropout(p, inplace)`` with a regenerated mask."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return alpha_dropout(input, self.p, self.training, self.inplace)


class FeatureAlphaDropout(_DropoutNd):
    """``torch.nn.FeatureAlphaDropout`` with a regenerated channel mask."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return feature_alpha_dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """``torch.nn.Dropout1d`` with a regenerated channel mask."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """``torch.nn.Dropout2d`` with a regenerated channel mask."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(_DropoutNd):
    """``torch.nn.Dropout3d`` with a regenerated channel mask."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout3d(input, self.p, self.training, self.inplace)
