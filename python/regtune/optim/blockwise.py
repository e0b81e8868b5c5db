"""Blockwise 8-bit quantization: how ``state_dtype="int8"`` keeps an optimizer's state.

The scheme is bitsandbytes' (Dettmers et al. 2022, "8-bit Optimizers via Block-wise
Quantization"): a tensor is cut into blocks of :data:`BLOCK` (256) elements in order; each
block keeps its largest magnitude ``absmax`` (float32) and each element one uint8 code, the
index of the nearest value of the *dynamic map* (:func:`dynamic_map`: 256 values in [-1, 1],
dense near 0, one decade of evenly spaced values per level) to ``x * (1 / absmax)`` (the
float32 reciprocal, as bitsandbytes scales; clamped to [-1, 1]). A value decodes as
``map[code] * absmax``. The signed map serves buffers of either sign (Adam's ``exp_avg``), the
unsigned one buffers that are never negative (``exp_avg_sq``): its 256 values all lie in [0, 1].

"Nearest" is exact here: a value exactly halfway between two map values takes the lower code;
a block of zeros takes the code of 0 and absmax 0; a block holding a NaN or an infinity gets
absmax NaN (it decodes as NaN, as a float32 state would have become). The codes depend on the
block's values only: the same on every SIMD path and thread count.

Where bitsandbytes 0.50.2 differs: its CPU kernel (``quantize_blockwise`` on a CPU tensor)
divides by absmax and searches the map approximately, so about 0.3% of signed and 3% of unsigned
codes differ from the nearest value by one step there (measured in
tests/test_optim_blockwise.py); its pure-PyTorch path (and its CUDA kernel) scales by the
reciprocal and rounds to the nearest value, as regtune does. Decoding is the same everywhere.
Optimizer state moves between the two with :func:`regtune.torch.optim.to_bitsandbytes` and a
regtune optimizer's ``load_state_dict``.

    >>> import numpy as np
    >>> codes, absmax = quantize_blockwise(np.array([0.5, -1.0, 0.0], np.float32))
    >>> codes, absmax, dequantize_blockwise(codes, absmax)
    (array([219,   0, 127], dtype=uint8), array([1.], dtype=float32), array([ 0.50078124, -0.99296874,  0.        ], dtype=float32))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .._validation import as_array, boolean, not_masked

#: Elements per block: each keeps one float32 absmax.
BLOCK: int = _core.Q8_BLOCK


def dynamic_map(signed: bool = True) -> np.ndarray:
    """bitsandbytes' dynamic map (``create_dynamic_map(signed=...)``): the 256 float32 values
    the codes stand for, increasing (a new array)."""
    return _core.dynamic_map(boolean(signed, "signed"))


def _input(x: Any, name: str, dtype: Any) -> np.ndarray:
    not_masked(x, name)
    x = as_array(x, name)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (no copy is made behind your back)")
    return x


def quantize_blockwise(x: Any, *, signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 8-bit codes of ``x`` (uint8, ``x``'s shape) and the absmax of each block of
    :data:`BLOCK` elements (float32, ``ceil(x.size / BLOCK)``).

    Args:
        x: a C-contiguous float32 array (a torch tensor's memory is taken as it is).
        signed: the signed map (values of either sign) or the unsigned one (``x >= 0``; a
            negative value takes the code of 0).

    Raises:
        TypeError / ValueError: ``x`` of another dtype, not C-contiguous, or masked.
    """
    return _core.quantize_blockwise(_input(x, "x", np.float32), boolean(signed, "signed"))


def dequantize_blockwise(codes: Any, absmax: Any, *, signed: bool = True) -> np.ndarray:
    """The float32 values of ``codes`` (a new array of their shape): ``dynamic_map(signed)[code]
    * absmax`` of the code's block.

    Raises:
        TypeError / ValueError: ``codes`` not uint8, ``absmax`` not float32 of
        ``ceil(codes.size / BLOCK)`` elements, either not C-contiguous.
    """
    codes = _input(codes, "codes", np.uint8)
    absmax = _input(absmax, "absmax", np.float32)
    return _core.dequantize_blockwise(codes, absmax, boolean(signed, "signed"))


__all__ = ["BLOCK", "dynamic_map", "quantize_blockwise", "dequantize_blockwise"]
