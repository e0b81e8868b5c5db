// RandomErasing: per sample (top, left, height, width) (height 0: none), filled with a value
// per channel, or (random fill: no values) N(0, 1) draws of the noise stream: box element
// (c, y, x) (relative to the box's corner) takes normal element
// (op_position << 34) + (c * height + y) * width + x, so the values depend on the sample and its
// box only, not on the blocks of rows run.
#pragma once

#include <algorithm>

#include "augment/step.h"
#include "regtune/kernels.h"

namespace regtune {

struct erase {
  int32_t op_position = 0;
  const float* per_sample = nullptr;  // n x 4, whole numbers
  const float* values = nullptr;      // C fill values, or null: random
  bool random_fill = false;

  static erase from(StepRecord& r) {
    const AugmentBatch& b = *r.batch;
    erase e;
    e.op_position = r.position();
    e.per_sample = r.rows("per_sample", 4);
    e.random_fill = !r.has("values");  // RandomErasing(value="random")
    if (!e.random_fill) e.values = r.vector("values", b.channels);
    for (size_t i = 0; i < b.n; ++i) {
      const float* p = e.per_sample + 4 * i;
      for (int j = 0; j < 4; ++j) {
        if (!(p[j] >= 0 && p[j] < float(1 << 24) && p[j] == float(int64_t(p[j])))) {
          r.fail("RandomErasing boxes must hold whole numbers >= 0");
        }
      }
      if (p[0] + p[2] > float(b.out_h) || p[1] + p[3] > float(b.out_w)) r.fail("RandomErasing box outside the output");
    }
    return e;
  }
  bool whole_image() const { return false; }
  bool draws_noise() const { return false; }

  bool apply(StepRun& run, float* v, size_t y0, size_t y1) const {
    const AugmentBatch& b = run.b;
    const float* p = per_sample + 4 * run.s;
    const size_t top = size_t(p[0]), left = size_t(p[1]), h = size_t(p[2]), w = size_t(p[3]);
    const size_t ya = std::max(y0, top), yb = std::min(y1, top + h);
    const Stream stream{b.key, (b.epoch << 32) | b.indices[run.s]};
    const uint64_t base = uint64_t(uint32_t(op_position)) << 34;
    for (size_t c = 0; c < b.channels; ++c) {
      for (size_t y = ya; y < yb; ++y) {
        float* row = v + c * run.plane + (y - y0) * b.out_w + left;
        if (random_fill) {
          const uint64_t first = base + (c * h + (y - top)) * w;
          random_kernels().normal_f32(stream, first, w, row, NormalParams<float>{0.0f, 1.0f});
        } else {
          std::fill(row, row + w, values[c]);
        }
      }
    }
    return false;
  }
};

}  // namespace regtune
