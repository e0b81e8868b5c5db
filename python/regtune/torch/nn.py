"""Dropout for torch that stores no mask: the backward regenerates it.

``regtune.torch.nn.Dropout(p)`` is a drop-in ``torch.nn.Dropout``: the same inverted scaling
(kept values ``x * (1 / (1 - p))`` rounded once to the dtype, dropped values ``+0.0``), identity
in ``eval()``. Its autograd Function saves no tensor for the backward, only ``(key, offset,
p)``: the backward draws the same Philox words again and applies the same mask, bit for bit
(regtune's ``dropout_backward`` with ``seed=``). Where ``torch.nn.Dropout`` keeps an
``x.numel()``-element mask alive from forward to backward, this keeps 0 bytes.

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


def _key(generator: torch.Generator | None) -> int:
    """A fresh 64-bit Philox key from torch's generator (its state advances by one draw)."""
    v = torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, generator=generator)
    return int(v) & (2**64 - 1)


def _check(x: Any, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise TypeError(f"{name} must be a CPU tensor, got one on {x.device}")
    if x.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise TypeError(
            f"{name} must have dtype torch.float32, torch.float64, torch.bfloat16 or torch.float16, got {x.dtype}"
        )


class _RegenDropout(torch.autograd.Function):
    """y = dropout(x); dx = the same mask, regenerated. Saves (kind, p, key) only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, key: int, kind: str, inplace: bool) -> torch.Tensor:
        forward, _ = _KINDS[kind]
        src = x.detach() if x.is_contiguous() else x.detach().contiguous()
        out = x if inplace else _empty_like(src)
        forward(src, p, seed=key, out=out.detach(), return_mask=False)
        ctx.p, ctx.key, ctx.kind = p, key, kind
        if inplace:
            ctx.mark_dirty(x)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        _, backward = _KINDS[ctx.kind]
        dy = dy if dy.is_contiguous() else dy.contiguous()
        dx = _empty_like(dy)
        backward(dy, p=ctx.p, seed=ctx.key, out=dx)
        return dx, None, None, None, None


class _FeatureAlphaDropout(torch.autograd.Function):
    """torch's feature_alpha_dropout with the channel mask regenerated in the backward: a keep
    bit per (n, c) channel from regtune's stream, then torch's own ops on the (N, C, 1, ...)
    noise tensor: b = (noise - 1) * alpha' a + alpha' a p, y = x * (noise * a) + b."""

    @staticmethod
    def _noise(shape: tuple[int, ...], ndim: int, p: float, key: int, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
        units = shape[0] * shape[1]
        bits = _rd.dropout_mask(units, p, seed=key)
        keep = torch.from_numpy(_np.unpackbits(bits, bitorder="little", count=units).astype(_np.float64))
        noise = keep.to(dtype).reshape(shape[0], shape[1], *([1] * (ndim - 2)))
        return noise, 1.0 / math.sqrt((_SELU_ALPHA * _SELU_ALPHA * p + 1) * (1 - p))

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, key: int) -> torch.Tensor:
        noise, a = _FeatureAlphaDropout._noise(tuple(x.shape), x.dim(), p, key, x.dtype)
        b = noise.add(-1).mul_(_SELU_ALPHA * a).add_(_SELU_ALPHA * a * p)
        noise.mul_(a)
        ctx.p, ctx.key, ctx.shape = p, key, tuple(x.shape)
        return x.detach().mul(noise).add_(b)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        noise, a = _FeatureAlphaDropout._noise(ctx.shape, len(ctx.shape), ctx.p, ctx.key, dy.dtype)
        return dy.mul(noise.mul_(a)), None, None


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
    y = _FeatureAlphaDropout.apply(input, p, _key(generator))
    if inplace:
        with torch.no_grad():
            input.copy_(y)
    return y


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
    return _RegenDropout.apply(x, p, _key(generator), kind, inplace)


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
