// ColorJitter (torchvision's): per sample (brightness, contrast, saturation, hue, order[4]):
// factors, then the order of the four parts (a permutation of 0 1 2 3: brightness, contrast,
// saturation, hue). Brightness v * b, contrast v * c + mean * (1 - c) (the mean of the gray
// image), saturation v * s + gray * (1 - s); each clamped to [0, bound]; hue the HSV shift of
// AugmentKernels::hue. A factor of 1 (hue: 0) skips its part.
#pragma once

#include <algorithm>

#include "augment/step.h"

namespace regtune {

struct jitter {
  const float* per_sample = nullptr;  // n x 8
  float bound = 0;

  static jitter from(StepRecord& r) {
    const AugmentBatch& b = *r.batch;
    jitter j;
    j.per_sample = r.rows("per_sample", 8);
    j.bound = r.number("bound");
    for (size_t i = 0; i < b.n; ++i) {
      const float* p = j.per_sample + 8 * i;
      if (!(p[0] >= 0 && p[1] >= 0 && p[2] >= 0 && p[3] >= -0.5f && p[3] <= 0.5f)) {
        r.fail("ColorJitter parameters out of range");
      }
      int seen = 0;
      for (int k = 4; k < 8; ++k) {
        if (!(p[k] >= 0 && p[k] <= 3 && p[k] == float(int(p[k])))) r.fail("ColorJitter order must be a permutation of 0..3");
        seen |= 1 << int(p[k]);
      }
      if (seen != 15) r.fail("ColorJitter order must be a permutation of 0..3");
      if (p[1] != 1.0f && b.channels != 1 && b.channels != 3) r.fail("contrast needs 1 or 3 channels");
      if (p[2] != 1.0f && b.channels != 3) r.fail("saturation needs 3 channels");
      if (p[3] != 0.0f && b.channels != 3) r.fail("hue needs 3 channels");
    }
    return j;
  }
  bool whole_image() const { return true; }  // contrast's mean is over the whole image
  bool draws_noise() const { return false; }

  bool apply(StepRun& run, float* v, size_t y0, size_t y1) const {
    const size_t C = run.b.channels, npix = (y1 - y0) * run.b.out_w;
    const float* p = per_sample + 8 * run.s;
    for (int k = 4; k < 8; ++k) {
      const int part = int(p[k]);
      const float f = p[part];
      if (part == 3) {
        if (f != 0.0f) run.k.hue(v, run.plane, npix, f, bound);
        continue;
      }
      if (f == 1.0f) continue;
      if (part == 2) {
        run.k.saturation(v, run.plane, npix, f, bound);
        continue;
      }
      float g = 0.0f;
      if (part == 1) {
        const float mean = float(run.k.gray_sum(v, run.plane, npix, int(C)) / double(npix));
        const float omf = 1.0f - f;
        g = mean * omf;
      }
      for (size_t c = 0; c < C; ++c) run.k.scale_clamp(v + c * run.plane, npix, f, g, bound);
    }
    return false;
  }
};

}  // namespace regtune
