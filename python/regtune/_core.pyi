"""Type stubs for regtune._core, the native extension (private: use the regtune package)."""

from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

# --- configuration -------------------------------------------------------------------------
def simd() -> str: ...
def select_simd(name: str) -> None: ...
def simd_supported(name: str) -> bool: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def default_num_threads() -> int: ...
def set_default_num_threads(n: int) -> None: ...
def spin_us() -> int: ...
def set_spin_us(us: int) -> None: ...
def serial_threshold() -> int: ...
def set_serial_threshold(n: int) -> None: ...
MAX_THREADS: int
ACTIVE_SPIN_US: int
def build_info() -> dict[str, Any]: ...
def cpu_clock_ghz() -> float: ...
def advise_hugepages(address: int, nbytes: int) -> int: ...

# --- random --------------------------------------------------------------------------------
def philox(counter: list[int], key: list[int]) -> list[int]: ...
# first: an int (out is one run of the stream), or a uint64 array of run starts (out holds
# len(first) equal runs, run r from stream element first[r]).
First = int | npt.NDArray[np.uint64]
def bits(out: npt.NDArray[np.uint32], key: int, stream: int, first: First) -> None: ...
# A float array the kernels take: float32, float64, ml_dtypes.bfloat16 or float16 (bfloat16's
# scalar type is not a numpy.floating subclass, hence Any). 16-bit draws are float32 draws
# rounded to nearest even, one stream word per element.
FloatArray = npt.NDArray[Any]
def uniform(out: FloatArray, key: int, stream: int, first: First, low: float, high: float) -> None: ...
def normal(out: FloatArray, key: int, stream: int, first: First, mean: float, std: float) -> None: ...
def truncated_normal(
    out: FloatArray, key: int, stream: int, first: First, mean: float, std: float, a: float, b: float
) -> None: ...
def truncnorm_mass(mean: float, std: float, a: float, b: float) -> float: ...
# 16-bit out: float32(value) rounded to nearest even.
def fill(out: FloatArray, value: float) -> None: ...
# float32 x rounded to nearest even into bfloat16/float16 out, or 16-bit x widened into float32 out.
def convert(x: FloatArray, out: FloatArray) -> None: ...
# float32 x rounded stochastically into bfloat16/float16 out, x[i] with word first + i.
def round_stochastic(x: npt.NDArray[np.float32], out: FloatArray, key: int, stream: int, first: int) -> None: ...
def parallel_copy(dst: npt.NDArray[Any], src: npt.NDArray[Any]) -> None: ...

# --- dropout (regtune.dropout computes threshold and coefficients) -------------------------
# x and out: float32, float64, bfloat16 or float16 (16-bit: computed in float32, rounded once).
def dropout(
    x: FloatArray,
    out: FloatArray,
    mask: npt.NDArray[np.uint8] | None,
    key: int,
    stream: int,
    first: int,
    threshold: int,
    scale: float,
    shift: float,
    drop: float,
) -> None: ...
def dropout_apply(
    x: FloatArray,
    out: FloatArray,
    mask: npt.NDArray[np.uint8],
    row_len: int,
    scale: float,
    shift: float,
    drop: float,
) -> None: ...
def dropout_mask(mask: npt.NDArray[np.uint8], n: int, key: int, stream: int, first: int, threshold: int) -> None: ...

# ---- optimizers and penalties (cpp/bindings/optim.cpp)
class OverlapError(ValueError):
    names: tuple[str, str]  # the labels of the two arrays that share memory

REDUCE_BLOCK: int
Q8_BLOCK: int  # elements per block of blockwise 8-bit state (one float32 absmax each)
# One dict per rule of cpp/src/optim/rules.def: name, id, fields ((name, kind) pairs), nstates,
# per_tensor, nonnegative (per state: never negative: the unsigned 8-bit map), blockwise8.
def optim_rules() -> list[dict[str, Any]]: ...
def dynamic_map(signed: bool = True) -> npt.NDArray[np.float32]: ...
def quantize_blockwise(x: npt.NDArray[np.float32], signed: bool = True) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]: ...
def dequantize_blockwise(
    codes: npt.NDArray[np.uint8], absmax: npt.NDArray[np.float32], signed: bool = True
) -> npt.NDArray[np.float32]: ...
def fused_fields() -> list[tuple[str, str]]: ...
def adafactor_fields() -> list[tuple[str, str]]: ...
def clip_coefficient(total_norm: float, max_norm: float) -> float: ...
# params: float32, float64, bfloat16 or float16 (one dtype); every dtype through this one entry.
def optim_step(
    rule: str | int,
    params: Sequence[npt.NDArray[Any]],
    grads: Sequence[npt.NDArray[Any]],
    # each state entry an array, or (uint8 codes, float32 absmax) for blockwise 8-bit state
    states: Sequence[Sequence[npt.NDArray[Any] | tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]] | None],
    state_names: Sequence[str],
    coef: dict[str, float | bool],
    fused: dict[str, float | bool],
    max_grad_norm: float = 0.0,
    masters: Sequence[npt.NDArray[np.float32]] | None = None,
    seed: int | None = None,
    step: int = 0,
    reduce: Callable[[npt.NDArray[np.float64]], None] | None = None,
) -> float | None: ...
def adafactor_step(
    params: Sequence[npt.NDArray[Any]],
    grads: Sequence[npt.NDArray[Any]],
    row_vars: Sequence[npt.NDArray[np.floating[Any]] | None],
    col_vars: Sequence[npt.NDArray[np.floating[Any]] | None],
    variances: Sequence[npt.NDArray[np.floating[Any]] | None],
    emas: Sequence[npt.NDArray[np.floating[Any]]] | None,
    coef: dict[str, float | bool],
    fused: dict[str, float | bool],
    max_grad_norm: float = 0.0,
    masters: Sequence[npt.NDArray[np.float32]] | None = None,
    seed: int | None = None,
    step: int = 0,
) -> float | None: ...
# calls: (name, arguments) with name "optim_step" or "adafactor_step" and that function's
# arguments as a tuple (all of them, positionally); all checked, then run in order.
def optim_steps(calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[float | None]: ...
def grad_sums(xs: Sequence[npt.NDArray[np.floating[Any]]]) -> tuple[float, float]: ...
def clip_grad_norm(grads: Sequence[npt.NDArray[np.floating[Any]]], max_norm: float) -> float: ...
def clip_grad_value(grads: Sequence[npt.NDArray[np.floating[Any]]], clip: float) -> None: ...
def add_penalty_grad(
    g: npt.NDArray[np.floating[Any]], w: npt.NDArray[np.floating[Any]], l1: float, l2: float
) -> None: ...
def prox_l1(w: npt.NDArray[np.floating[Any]], threshold: float) -> None: ...

# --- augment (regtune.augment builds the maps, per-sample parameters and steps) --------------
# words[i, w]: word w of the Philox stream (key, epoch << 32 | indices[i]) from block op_position << 32.
def augment_words(
    key: int, epoch: int, indices: npt.NDArray[np.uint64], op_position: int, nwords: int
) -> npt.NDArray[np.uint32]: ...
# A step: (name, fields), a name of cpp/src/augment/steps.def (jitter, noise, erase, normalize,
# policy) and the dict of fields its struct reads by name. Bilinear maps are (N, P * out) tables of
# P tap pairs per coordinate, with each sample's pair count in row_pairs / col_pairs (None: one
# pair). See cpp/include/regtune/augment.h.
AugmentStep = tuple[str, dict[str, Any]]
def augment_run(
    images: npt.NDArray[np.uint8] | npt.NDArray[np.float32],
    out: npt.NDArray[np.uint8] | npt.NDArray[np.float32] | npt.NDArray[Any],  # Any: ml_dtypes.bfloat16
    nchw: bool,
    bilinear: bool,
    row_i0: npt.NDArray[np.int32],
    row_i1: npt.NDArray[np.int32] | None,
    row_w0: npt.NDArray[np.float32] | None,
    row_w1: npt.NDArray[np.float32] | None,
    col_i0: npt.NDArray[np.int32],
    col_i1: npt.NDArray[np.int32] | None,
    col_w0: npt.NDArray[np.float32] | None,
    col_w1: npt.NDArray[np.float32] | None,
    fill: npt.NDArray[np.float32],
    steps: list[AugmentStep],
    key: int,
    epoch: int,
    indices: npt.NDArray[np.uint64],
    row_pairs: npt.NDArray[np.int32] | None = None,
    col_pairs: npt.NDArray[np.int32] | None = None,
) -> None: ...
# (i0, i1, w0, w1, pairs): the resampling taps of boxes [start, start + length) onto out
# coordinates, (N, P, out) each and (N,) pair counts (plain 2-tap bilinear, or antialiased).
def augment_taps(
    start: npt.NDArray[np.int64], length: npt.NDArray[np.int64], out: int, antialias: bool
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.float32],
           npt.NDArray[np.int32]]: ...
# MixUp (lam: N float32) or CutMix (boxes: (N, 4) int32 rows (y1, y2, x1, x2)) of sample i with
# sample i - 1 into out (float32, the images' shape, not overlapping them).
def augment_mix(
    images: npt.NDArray[np.uint8] | npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    lam: npt.NDArray[np.float32] | None,
    boxes: npt.NDArray[np.int32] | None,
    nchw: bool,
) -> None: ...
