// Dropout kernels: plain pointers and counts, no SIMD types.
//
// The keep rule, shared by every kernel and every instruction set: element i of a call that
// starts at stream word `first` is kept when word first + i of the Philox stream (the word
// regtune.random.bits would return there) is >= `threshold`, threshold = round(p * 2^32).
// So P(keep) = 1 - threshold / 2^32, exact to 2^-32 of 1 - p.
//
// Values: a kept element becomes x * scale (one multiply in T), or x * scale + shift when the
// params are affine (alpha dropout: multiply, then add, never fused); a dropped one becomes
// `drop`, whatever x holds (+0 for plain dropout, also for x = NaN or inf). For the 16-bit
// floats (bfloat16_t, float16_t) T's arithmetic is float32: x is widened exactly, the float32
// result is rounded once to nearest even, so y is the float32 dropout of the widened x, rounded.
//
// Masks are bit-packed: byte b, bit k (value 1 << k) is element 8b + k of the call, set when
// kept; ceil(count / 8) bytes, the unused high bits of the last byte zero. This is the order
// of numpy.unpackbits(mask, bitorder="little").
#pragma once

#include <cstddef>
#include <cstdint>

#include "regtune/kernels.h"

namespace regtune {

// The type a kernel on storage T computes in, and its coefficients' type: float for the 16-bit
// floats, T otherwise.
template <typename T> struct DropoutCompute { using type = T; };
template <> struct DropoutCompute<bfloat16_t> { using type = float; };
template <> struct DropoutCompute<float16_t> { using type = float; };

template <typename T>
struct DropoutParams {
  uint32_t threshold;  // keep iff word >= threshold (forward and mask kernels only)
  bool affine;         // kept = x * scale + shift (alpha dropout); false: kept = x * scale exactly
  T scale, shift, drop;
};

// One instruction set's dropout kernels, each on the calling thread; the drivers below thread
// them. `mask` pointers address the mask byte of the call's element 0.
struct DropoutKernels {
  const char* name;
  // y[i] = keep_i ? kept(x[i]) : drop with keep_i drawn from the stream; writes the packed
  // mask too unless mask is null. y may equal x (in place).
  void (*forward_f32)(Stream, uint64_t first, size_t count, const float* x, float* y, uint8_t* mask,
                      const DropoutParams<float>&);
  void (*forward_f64)(Stream, uint64_t first, size_t count, const double* x, double* y, uint8_t* mask,
                      const DropoutParams<double>&);
  // The same with keep_i = bit i of a stored packed mask (backward from the mask).
  void (*apply_f32)(const uint8_t* mask, size_t count, const float* x, float* y, const DropoutParams<float>&);
  void (*apply_f64)(const uint8_t* mask, size_t count, const double* x, double* y, const DropoutParams<double>&);
  // The same with one keep flag for all `count` elements (one channel of feature dropout).
  void (*fill_f32)(bool keep, size_t count, const float* x, float* y, const DropoutParams<float>&);
  void (*fill_f64)(bool keep, size_t count, const double* x, double* y, const DropoutParams<double>&);
  // The packed mask alone.
  void (*mask)(Stream, uint64_t first, size_t count, uint8_t* mask, uint32_t threshold);
  // forward, apply and fill on 16-bit storage, computing in float32 (coefficients in float32).
  void (*forward_bf16)(Stream, uint64_t first, size_t count, const bfloat16_t* x, bfloat16_t* y, uint8_t* mask,
                       const DropoutParams<float>&);
  void (*forward_f16)(Stream, uint64_t first, size_t count, const float16_t* x, float16_t* y, uint8_t* mask,
                      const DropoutParams<float>&);
  void (*apply_bf16)(const uint8_t* mask, size_t count, const bfloat16_t* x, bfloat16_t* y, const DropoutParams<float>&);
  void (*apply_f16)(const uint8_t* mask, size_t count, const float16_t* x, float16_t* y, const DropoutParams<float>&);
  void (*fill_bf16)(bool keep, size_t count, const bfloat16_t* x, bfloat16_t* y, const DropoutParams<float>&);
  void (*fill_f16)(bool keep, size_t count, const float16_t* x, float16_t* y, const DropoutParams<float>&);
};

// ---- drivers (dropout.cpp): threaded over the selected kernels ---------------------------
// Threads own whole 64-element groups (8 mask bytes, whole cache lines of y), so the result
// does not depend on the thread count. `threshold` may be 2^32: nothing is kept (p = 1).
// Parameters arrive in double and are rounded to T's compute type once (DropoutCompute: float
// for the 16-bit floats): scale, shift and drop should already be values of it (the Python layer
// computes them there). T is float, double, bfloat16_t or float16_t.
template <typename T>
void dropout_forward(Stream s, uint64_t first, size_t count, const T* x, T* y, uint8_t* mask, uint64_t threshold,
                     double scale, double shift, double drop);
// Backward from a stored mask, and feature dropout: bit r of `mask` decides the `row_len`
// elements [r * row_len, (r + 1) * row_len) (row_len = 1: one bit per element).
template <typename T>
void dropout_apply(const uint8_t* mask, size_t count, size_t row_len, const T* x, T* y, double scale, double shift,
                   double drop);
void dropout_mask(Stream s, uint64_t first, size_t count, uint8_t* mask, uint64_t threshold);

}  // namespace regtune
