// GaussianNoise: v += N(0, std), clamped to [0, bound] with clip. Sample s's draws are the
// normal stream (key, epoch << 32 | index) from element (op_position << 34), in NHWC order, so
// they depend on the sample only, not on the batch, the threads or the row blocks.
#pragma once

#include "augment/step.h"
#include "regtune/kernels.h"

namespace regtune {

struct noise {
  int32_t op_position = 0;
  float bound = 0, std = 0;
  bool clip = false;

  static noise from(StepRecord& r) {
    noise s;
    s.op_position = r.position();
    s.bound = r.number("bound");
    s.std = r.number("std");
    s.clip = r.flag("clip");
    if (!(s.std >= 0.0f)) r.fail("std must be >= 0");
    return s;
  }
  bool whole_image() const { return false; }
  bool draws_noise() const { return true; }

  bool apply(StepRun& run, float* v, size_t y0, size_t y1) const {
    const AugmentBatch& b = run.b;
    const size_t C = b.channels, npix = (y1 - y0) * b.out_w;
    const Stream stream{b.key, (b.epoch << 32) | b.indices[run.s]};
    const uint64_t first = (uint64_t(uint32_t(op_position)) << 34) + y0 * b.out_w * C;
    random_kernels().normal_f32(stream, first, npix * C, run.noise, NormalParams<float>{0.0f, std});
    run.k.add_noise(v, run.plane, run.noise, npix, int(C), clip, bound);
    return false;
  }
};

}  // namespace regtune
