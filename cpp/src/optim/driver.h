// What the optimizer drivers (optim.cpp, optim/adafactor.cpp) share: the per-target table, the
// layout of a list of tensors in one index space, and the clip pass. Baseline code (no SIMD).
#pragma once

#include <algorithm>
#include <vector>

#include "dispatch.h"
#include "optim/coefficients.h"
#include "optim/table.h"
#include "regtune/optim.h"
#include "regtune/threads.h"

namespace regtune {

const OptimTable& optim_kernels();  // the selected path's table

// Runs f(begin, end) over aligned chunks of [0, n) (see parallel_for). Not interruptible: a step
// always runs to the end, so parameters and state never hold half an update.
template <typename F>
void parallel(size_t n, size_t grain, F& f) {
  parallel_for(n, grain, [](void* c, size_t b, size_t e) { (*static_cast<F*>(c))(b, e); }, &f);
}

constexpr size_t kLineBytes = 64;
// Chunks of 16-bit steps start on multiples of 32 elements of their tensor: a cache line of
// each 16-bit array (two of a float32 one), and a multiple of 4 (a Philox block) for the words
// of stochastic rounding.
constexpr size_t kLowAlign = 32;

// The alignment of a tensor's chunks: a cache line of its parameter, kLowAlign for a 16-bit
// step, a whole block of a blockwise 8-bit state (kQ8Block, a multiple of both).
inline size_t chunk_align(const Tensor& t) {
  if (is_q8(t.state[0].dt)) return kQ8Block;
  return is_16bit(t.param.dt) || t.shadow ? kLowAlign : kLineBytes / bytes_of(t.param.dt);
}

// Tensor t occupies [start[t], start[t] + sizes[t]) of the index space; each start is a multiple
// of `align`, the largest alignment any tensor asks for (`align_of(t)`), and so is `total`.
struct Layout {
  std::vector<size_t> start;
  size_t total = 0, align = 1;
  template <typename A>
  Layout(const size_t* sizes, size_t count, A align_of) : start(count) {
    for (size_t t = 0; t < count; ++t) align = std::max(align, align_of(t));
    for (size_t t = 0; t < count; ++t) {
      start[t] = total;
      total += (sizes[t] + align - 1) / align * align;
    }
  }
  // f(t, lo, hi) for the part [lo, hi) of each tensor t that lies in [b, e).
  template <typename F>
  void walk(const size_t* sizes, size_t b, size_t e, F f) const {
    size_t t = size_t(std::upper_bound(start.begin(), start.end(), b) - start.begin()) - 1;
    for (; t < start.size() && start[t] < e; ++t) {
      const size_t lo = std::max(b, start[t]) - start[t];
      const size_t hi = std::min(e - start[t], sizes[t]);
      if (lo < hi) f(t, lo, hi);
    }
  }
};

// With max_grad_norm > 0: the global norm of the gradients (one deterministic pass), and its
// clip scale switched on in `fused` when it is below 1 (as torch, a NaN norm makes every
// gradient NaN). Returns the norm, or NaN without clipping.
double clip_fused(const Tensor* tensors, size_t count, double max_grad_norm, Values& fused);

}  // namespace regtune
