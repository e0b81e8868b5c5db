// Normalize: v * a[c] + b[c] (multiply, then add). As the last step of a float32 NCHW pipeline
// it writes straight into the output planes (one pass less).
#pragma once

#include "augment/step.h"

namespace regtune {

struct normalize {
  const float* values = nullptr;  // a[C] then b[C]

  static normalize from(StepRecord& r) {
    normalize s;
    s.values = r.vector("values", 2 * r.batch->channels);
    return s;
  }
  bool whole_image() const { return false; }
  bool draws_noise() const { return false; }

  bool apply(StepRun& run, float* v, size_t y0, size_t y1) const {
    const AugmentBatch& b = run.b;
    const size_t C = b.channels, npix = (y1 - y0) * b.out_w;
    const bool direct = run.last && !b.out_u8 && !b.out_bf16 && b.nchw;  // straight into the output planes
    for (size_t c = 0; c < C; ++c) {
      float* dst = direct ? static_cast<float*>(b.out) + ((run.s * C + c) * b.out_h + y0) * b.out_w : v + c * run.plane;
      if (direct) {
        run.k.affine_stream(v + c * run.plane, dst, npix, values[c], values[C + c]);
      } else {
        run.k.affine(v + c * run.plane, dst, npix, values[c], values[C + c]);
      }
    }
    return direct;
  }
};

}  // namespace regtune
