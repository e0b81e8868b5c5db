// The image ops of torchvision's augmentation policies (TrivialAugmentWide, RandAugment,
// AutoAugment) and of its RandomPosterize, RandomSolarize, RandomAutocontrast, RandomEqualize,
// RandomAdjustSharpness and RandomInvert: per sample a list of `slots` ops, each 8 floats
// (code, then its parameters), applied in order to the whole image (values in [0, bound]).
// regtune.augment chooses the ops and turns their magnitudes into these parameters; each op is
// torchvision's tensor formula (transforms/v2/functional) in float32, at the pixel scale. On
// uint8 images the values are first rounded to integers (the uint8 image torchvision's ops take)
// and each op that computes in float (2, 3, 4, 5, 8) truncates its result as torchvision's
// conversion back to uint8 does, so the ops and their chains follow torchvision's uint8 results.
//   0 none
//   1 affine:     p = torchvision's inverse affine matrix (m0..m5, _get_inverse_affine_matrix,
//                 as float32 like its theta); output pixel (x, y) reads the input pixel that
//                 torchvision's _affine_grid + grid_sample(nearest, align_corners=False) reads,
//                 computed with torch's float32 operations (see affine()); outside: fill
//   2 brightness: p = f; v = clamp(v * f, 0, bound)
//   3 color:      p = (f, 1 - f) (1 - f rounded from float64, as torchvision's alpha);
//                 v = clamp(v * f + gray * (1 - f), 0, bound), gray as ColorJitter's (floored on
//                 uint8, as torchvision); 1 channel: unchanged
//   4 contrast:   p = (f, 1 - f); v = clamp(v * f + m * (1 - f), 0, bound), m the mean of gray
//                 (floored on uint8) or of the value (1 channel), summed in float64, rounded to
//                 float32
//   5 sharpness:  p = (f, 1 - f); interior pixels v + (1 - f) * (blur - v), clamped; blur the 3x3 kernel
//                 (1 1 1; 1 5 1; 1 1 1) / 13, ((((((n0 + n1) + n2) + n3) + n4) + n5) + n6) + n7) * a
//                 + c * b with a = 1/13, b = 5/13 in float32 (rounded half to even on uint8);
//                 images with a side <= 2: unchanged
//   6 posterize:  uint8: rint(v) & (0xFF << (8 - bits)) (bits >= 8: unchanged); float:
//                 clamp(floor(v * 2^bits), 0, 2^bits - 1) / 2^bits
//   7 solarize:   v >= threshold ? bound - v : v
//   8 autocontrast: per channel (v - min) / ((max - min) * (1 / bound)), clamped (max == min:
//                 unchanged)
//   9 equalize:   PIL's (and torchvision's) per-channel histogram equalization of the uint8
//                 values: rint(v) on uint8, int(v * 255.999) on float (then / 255)
//  10 invert:     bound - v
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "augment/select_bits.h"
#include "augment/step.h"

namespace regtune {

// Rounding without libm (the baseline x86-64 has no rounding instruction, and nearbyintf and
// truncf would be a call per value): adding then subtracting 1.5 * 2^23 rounds |x| <= 2^22 to
// the nearest integer, ties to even (the default rounding mode); a conversion to int truncates.
inline float round_even(float x) { return (x + 12582912.0f) - 12582912.0f; }
inline float trunc_nonneg(float x) { return float(int32_t(x)); }  // 0 <= x < 2^31
inline float clamp_to(float x, float hi) { return std::min(std::max(x, 0.0f), hi); }
// The loops below read the step's fields and parameters into locals (lambdas capture copies):
// the image is float, so a store into it could alias a float member and would force a reload
// per value, which keeps the loop from vectorizing.

struct policy {
  static constexpr int kFields = 8;
  static constexpr int kCodes = 11;
  const float* per_sample = nullptr;  // n x (slots * 8)
  const float* fill = nullptr;        // C values (affine)
  size_t slots = 0;
  float bound = 0;
  bool u8 = false;

  static policy from(StepRecord& r) {
    const AugmentBatch& b = *r.batch;
    policy s;
    const float slots = r.number("slots");
    if (!(slots >= 1 && slots <= 64 && slots == float(int(slots)))) r.fail("slots must be a whole number in [1, 64]");
    s.slots = size_t(slots);
    s.per_sample = r.rows("per_sample", s.slots * kFields);
    s.fill = r.vector("fill", b.channels);
    s.bound = r.number("bound");
    s.u8 = r.flag("u8");
    if (b.channels != 1 && b.channels != 3) r.fail("the policy ops need images with 1 or 3 channels");
    if (b.out_w > (size_t(1) << 22) || b.out_h > (size_t(1) << 22)) {
      r.fail("the policy ops need images of at most 2**22 pixels per side");  // see round_even
    }
    for (size_t i = 0; i < b.n * s.slots; ++i) {
      const float* p = s.per_sample + kFields * i;
      const float code = p[0];
      if (!(code >= 0 && code < kCodes && code == float(int(code)))) r.fail("unknown policy op code");
      for (int k = 1; k < kFields; ++k) {
        if (!std::isfinite(p[k])) r.fail("policy op parameters must be finite");
      }
      const int c = int(code);
      if (c >= 2 && c <= 5 && !(p[1] >= 0)) r.fail("policy op factors must be >= 0");
      if (c == 6 && !(p[1] >= 0 && p[1] <= 8 && p[1] == float(int(p[1])))) r.fail("posterize bits must be in 0..8");
    }
    return s;
  }
  bool whole_image() const { return true; }
  bool draws_noise() const { return false; }

  bool apply(StepRun& run, float* v, size_t y0, size_t y1) const {
    const AugmentBatch& b = run.b;
    const size_t H = y1 - y0, W = b.out_w, C = b.channels, plane = run.plane;
    // uint8 images: the uint8 tensor torchvision's ops would see (values rounded half to even),
    // and after each op its conversion back to uint8 (truncation), so that a chain of ops
    // quantizes as torchvision's does
    // Both are folded into the ops' own passes (each a pass over the whole image, out of the
    // cache at 224x224): `r`, the rounding, into the first op that is not "none" (its reads; a
    // list of "none" alone gets a pass of its own), and `t`, the truncation, into the writes of
    // the op it follows. The values are those of a rounding pass, the op, a truncating pass.
    const float hi = bound;
    const size_t n = H * W;
    bool pending = u8;  // the image still needs the rounding
    for (size_t k = 0; k < slots; ++k) {
      const float* p = per_sample + (run.s * slots + k) * kFields;
      const int code = int(p[0]);
      if (code == 0) continue;
      const bool r = pending, t = u8 && (code == 2 || code == 3 || code == 4 || code == 5 || code == 8);
      pending = false;
      switch (code) {
        case 1: affine(run.k, run.scratch, v, plane, H, W, C, p + 1, r); break;
        case 2: {
          const float f = p[1];
          if (!r && !t) {
            for (size_t c = 0; c < C; ++c) run.k.scale_clamp(v + c * plane, n, f, 0.0f, bound);
          } else {
            each_rt(v, plane, n, C, r, t, [f, hi](float x) { return clamp_to(x * f + 0.0f, hi); });  // scale_clamp's
          }
          break;
        }
        case 3:
          if (C == 3) {
            blend_gray(v, plane, n, p[1], p[2], r, t);
          } else {
            each_rt(v, plane, n, C, r, t, [](float x) { return x; });  // unchanged, but rounded and truncated
          }
          break;
        case 4: contrast(v, plane, n, C, p[1], p[2], r, t); break;
        case 5: sharpness(run.scratch, v, plane, H, W, C, p[2], r, t); break;
        case 6: posterize(v, plane, n, C, int(p[1]), r); break;
        case 7: {
          const float th = p[1];
          each_rt(v, plane, n, C, r, false, [th, hi](float x) { return select_bits(x >= th, hi - x, x); });
          break;
        }
        case 8: autocontrast(v, plane, n, C, r, t); break;
        case 9: equalize(run.scratch, v, plane, n, C); break;  // (its uint8 index rounds)
        case 10: each_rt(v, plane, n, C, r, false, [hi](float x) { return hi - x; }); break;
        default: break;
      }
    }
    if (pending) each(v, plane, n, C, [hi](float x) { return round_even(clamp_to(x, hi)); });
    return false;
  }

 private:
  float clampb(float x) const { return std::min(std::max(x, 0.0f), bound); }

  template <typename F>
  static void each(float* __restrict v, size_t plane, size_t npix, size_t C, F f) {
    for (size_t c = 0; c < C; ++c) {
      float* q = v + c * plane;
      for (size_t i = 0; i < npix; ++i) q[i] = f(q[i]);
    }
  }

  // The rounding of uint8 images before an op (r: round_even(clamp(x))) and torchvision's
  // conversion back after it (t: truncation), around f, as one function of a value (RT).
  template <bool R, bool T, typename F>
  static auto rt(F f, float hi) {
    return [f, hi](float x) {
      if constexpr (R) x = round_even(clamp_to(x, hi));
      const float y = f(x);
      if constexpr (T) return trunc_nonneg(y);
      return y;
    };
  }
  // g(std::bool_constant<r>, std::bool_constant<t>): one instance per case, no branch per value.
  template <typename G>
  static void with_rt(bool r, bool t, G g) {
    if (r) {
      if (t) g(std::true_type{}, std::true_type{}); else g(std::true_type{}, std::false_type{});
    } else {
      if (t) g(std::false_type{}, std::true_type{}); else g(std::false_type{}, std::false_type{});
    }
  }
  template <typename F>
  void each_rt(float* v, size_t plane, size_t npix, size_t C, bool r, bool t, F f) const {
    const float hi = bound;
    with_rt(r, t, [&](auto R, auto T) { each(v, plane, npix, C, rt<R, T>(f, hi)); });
  }
  // the rounding alone (r), or nothing, on one value
  static float pre(float x, bool r, float hi) { return r ? round_even(clamp_to(x, hi)) : x; }

  // torchvision's _rgb_to_grayscale_image (floored on uint8 images)
  static float gray(float r, float g, float b, bool floored) {
    const float x = 0.2989f * r;
    const float y = 0.587f * g;
    const float z = 0.114f * b;
    const float l = (x + y) + z;
    return floored ? trunc_nonneg(l) : l;  // floor: l >= 0 (the values are in [0, 255])
  }

  template <bool R, bool T, bool kFloored>
  static void blend_gray_rows(float* __restrict r, float* __restrict g, float* __restrict b, size_t npix, float f,
                              float omf, float hi) {
    for (size_t i = 0; i < npix; ++i) {  // (written out: through the rt lambdas it did not vectorize)
      float ri = r[i], gi = g[i], bi = b[i];
      if constexpr (R) {
        ri = round_even(clamp_to(ri, hi));
        gi = round_even(clamp_to(gi, hi));
        bi = round_even(clamp_to(bi, hi));
      }
      const float gw = gray(ri, gi, bi, kFloored) * omf;
      float x = clamp_to(ri * f + gw, hi), y = clamp_to(gi * f + gw, hi), z = clamp_to(bi * f + gw, hi);
      if constexpr (T) {
        x = trunc_nonneg(x);
        y = trunc_nonneg(y);
        z = trunc_nonneg(z);
      }
      r[i] = x;
      g[i] = y;
      b[i] = z;
    }
  }

  void blend_gray(float* v, size_t plane, size_t npix, float f, float omf, bool rd, bool tr) const {
    // the planes as __restrict parameters of a function of their own, and no branch inside
    // (the loop vectorizes); uint8 images' gray is floored
    const float hi = bound;
    float *r = v, *g = v + plane, *b = v + 2 * plane;
    if (u8) {
      with_rt(rd, tr, [&](auto R, auto T) { blend_gray_rows<R, T, true>(r, g, b, npix, f, omf, hi); });
    } else {
      blend_gray_rows<false, false, false>(r, g, b, npix, f, omf, hi);
    }
  }

  // The sum of the values (one channel) or of their gray (three: uint8 images' floored), each
  // rounded first (R), pixel i into sum i % 8, in float64: the 8 sums.
  template <bool R, bool kRGB, bool kFloored>
  static void gray_sums(const float* __restrict r, const float* __restrict g, const float* __restrict b, size_t npix,
                        float hi, double* out) {
    auto value = [&](size_t i) {
      float x = r[i];
      if constexpr (R) x = round_even(clamp_to(x, hi));
      if constexpr (kRGB) {
        float y = g[i], z = b[i];
        if constexpr (R) {
          y = round_even(clamp_to(y, hi));
          z = round_even(clamp_to(z, hi));
        }
        x = gray(x, y, z, kFloored);
      }
      return x;
    };
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= npix; i += 8) {  // 8 values, then the 8 sums: both vectorize
      float x[8];
      for (int k = 0; k < 8; ++k) x[k] = value(i + k);
      for (int k = 0; k < 8; ++k) acc[k] += double(x[k]);
    }
    for (; i < npix; ++i) acc[i % 8] += double(value(i));
    for (int k = 0; k < 8; ++k) out[k] = acc[k];
  }

  void contrast(float* v, size_t plane, size_t npix, size_t C, float f, float omf, bool r, bool t) const {
    double acc[8];  // pixel i into sum i % 8, combined in order
    const float hi = bound;
    const float *p0 = v, *p1 = v + plane, *p2 = v + 2 * plane;
    if (C != 3) {
      if (r) gray_sums<true, false, false>(p0, p0, p0, npix, hi, acc); else gray_sums<false, false, false>(p0, p0, p0, npix, hi, acc);
    } else if (u8) {
      if (r) gray_sums<true, true, true>(p0, p1, p2, npix, hi, acc); else gray_sums<false, true, true>(p0, p1, p2, npix, hi, acc);
    } else {
      gray_sums<false, true, false>(p0, p1, p2, npix, hi, acc);
    }
    double sum = 0.0;
    for (double a : acc) sum += a;
    const float mean = float(sum / double(npix));
    const float g = mean * omf;
    each_rt(v, plane, npix, C, r, t, [f, g, hi](float x) { return clamp_to(x * f + g, hi); });
  }

  void sharpness(StepScratch& scratch, float* v, size_t plane, size_t H, size_t W, size_t C, float omf, bool r,
                 bool t) const {
    if (H <= 2 || W <= 2) {  // unchanged (but rounded and truncated as the image would be)
      each_rt(v, plane, H * W, C, r, t, [](float x) { return x; });
      return;
    }
    const float a = float(1.0 / 13.0), bw = float(5.0 / 13.0);
    const float hi = bound;
    std::vector<float>& rows = scratch.f;  // the original rows y - 1, y and y + 1 of a channel
    rows.resize(3 * W);
    // a row of the image as the op reads it (rounded when r)
    auto load = [&](float* dst, const float* src) {
      if (r) {
        for (size_t x = 0; x < W; ++x) dst[x] = round_even(clamp_to(src[x], hi));
      } else {
        std::memcpy(dst, src, W * sizeof(float));
      }
    };
    for (size_t c = 0; c < C; ++c) {
      float* q = v + c * plane;
      float* up = rows.data();
      float* mid = rows.data() + W;
      float* next = rows.data() + 2 * W;
      load(up, q);
      load(mid, q + W);
      // the border rows and columns are unchanged, but clamped as torchvision clamps the whole
      // image (then truncated: t)
      auto edge = [&](float x) { const float y = clampb(x); return t ? trunc_nonneg(y) : y; };
      for (size_t x = 0; x < W; ++x) q[x] = edge(up[x]);
      for (size_t y = 1; y + 1 < H; ++y) {
        load(next, q + (y + 1) * W);  // not written yet: the original
        float* out = q + y * W;
        auto blur_at = [&](size_t x) {
          const float s = ((((((up[x - 1] + up[x]) + up[x + 1]) + mid[x - 1]) + mid[x + 1]) + next[x - 1]) + next[x]) +
                          next[x + 1];
          return s * a + mid[x] * bw;
        };
        out[0] = edge(mid[0]);
        out[W - 1] = edge(mid[W - 1]);
        // loops without a branch inside, so that each vectorizes
        with_rt(u8, t, [&](auto U, auto T) {
          for (size_t x = 1; x + 1 < W; ++x) {
            float blur = blur_at(x);
            if constexpr (U) blur = round_even(blur);
            const float y = std::min(std::max(mid[x] + omf * (blur - mid[x]), 0.0f), hi);
            if constexpr (T) out[x] = trunc_nonneg(y); else out[x] = y;
          }
        });
        std::swap(up, mid);  // up <- the original row y, mid <- row y + 1
        std::swap(mid, next);
      }
      for (size_t x = 0; x < W; ++x) q[(H - 1) * W + x] = edge(mid[x]);
    }
  }

  void posterize(float* v, size_t plane, size_t npix, size_t C, int bits, bool r) const {
    if (u8) {
      if (bits >= 8) {  // unchanged (but rounded: r)
        if (r) each_rt(v, plane, npix, C, true, false, [](float x) { return x; });
        return;
      }
      const uint32_t mask = (0xFFu << (8 - bits)) & 0xFFu;
      const float hi = bound;
      each(v, plane, npix, C, [mask, hi](float x) { return float(uint32_t(round_even(clamp_to(x, hi))) & mask); });
      return;
    }
    const float levels = float(1 << bits), top = levels - 1.0f, inv = 1.0f / levels;
    each(v, plane, npix, C, [levels, top, inv](float x) { return std::min(std::max(std::floor(x * levels), 0.0f), top) * inv; });
  }

  void autocontrast(float* v, size_t plane, size_t npix, size_t C, bool r, bool t) const {
    if (npix == 0) return;
    const float inv_bound = 1.0f / bound, top = bound;
    for (size_t c = 0; c < C; ++c) {
      float* q = v + c * plane;
      // 8 running minima and maxima (pixel i into lane i % 8), combined in lane order: the loop
      // vectorizes (this code is the same on every SIMD path, so the order is fixed)
      float lo8[8], hi8[8];
      for (int k = 0; k < 8; ++k) lo8[k] = hi8[k] = q[0];
      size_t i = 0;
      for (; i + 8 <= npix; i += 8) {
        for (int k = 0; k < 8; ++k) {
          lo8[k] = q[i + k] < lo8[k] ? q[i + k] : lo8[k];
          hi8[k] = q[i + k] > hi8[k] ? q[i + k] : hi8[k];
        }
      }
      for (; i < npix; ++i) {
        lo8[0] = q[i] < lo8[0] ? q[i] : lo8[0];
        hi8[0] = q[i] > hi8[0] ? q[i] : hi8[0];
      }
      float lo = lo8[0], hi = hi8[0];
      for (int k = 1; k < 8; ++k) {
        lo = lo8[k] < lo ? lo8[k] : lo;
        hi = hi8[k] > hi ? hi8[k] : hi;
      }
      // the extremes of the rounded values (r): the rounded extremes (the rounding is monotone)
      lo = pre(lo, r, top), hi = pre(hi, r, top);
      if (lo == hi) {  // (v - 0) / 1, clamped
        each_rt(q, 0, npix, 1, r, t, [top](float x) { return clamp_to(x, top); });
        continue;
      }
      const float inv_scale = (hi - lo) * inv_bound;
      each_rt(q, 0, npix, 1, r, t, [lo, inv_scale, top](float x) { return clamp_to((x - lo) / inv_scale, top); });
    }
  }

  void equalize(StepScratch& scratch, float* v, size_t plane, size_t npix, size_t C) const {
    if (npix == 0) return;
    std::vector<int32_t>& idx = scratch.i;
    idx.resize(npix);
    for (size_t c = 0; c < C; ++c) {
      float* q = v + c * plane;
      int32_t* ix = idx.data();
      const float hi = bound;
      if (u8) {  // separate loops: these two vectorize, the histogram cannot
        for (size_t i = 0; i < npix; ++i) ix[i] = int32_t(round_even(clamp_to(q[i], hi)));
      } else {
        for (size_t i = 0; i < npix; ++i) ix[i] = int32_t(clamp_to(q[i], hi) * 255.999f);
      }
      // four interleaved histograms: consecutive equal values do not wait on each other's increments
      int64_t part[4][256] = {};
      size_t i = 0;
      for (; i + 4 <= npix; i += 4) {
        ++part[0][ix[i]];
        ++part[1][ix[i + 1]];
        ++part[2][ix[i + 2]];
        ++part[3][ix[i + 3]];
      }
      for (; i < npix; ++i) ++part[0][ix[i]];
      int64_t hist[256];
      for (int k = 0; k < 256; ++k) hist[k] = (part[0][k] + part[1][k]) + (part[2][k] + part[3][k]);
      int last = 255;  // the last non-zero bin: the first with the maximum cumulative count
      while (hist[last] == 0) --last;
      const int64_t step = (int64_t(npix) - hist[last]) / 255;
      float lut[256];
      if (step == 0) {
        for (int k = 0; k < 256; ++k) lut[k] = float(k);
      } else {
        int64_t cum = 0;
        lut[0] = 0.0f;
        for (int k = 1; k < 256; ++k) {
          cum += hist[k - 1];
          lut[k] = float(std::min<int64_t>((cum + step / 2) / step, 255));
        }
      }
      if (!u8) {
        for (float& l : lut) l *= 1.0f / 255.0f;  // torchvision's uint8 -> float: mul_(1 / 255)
      }
      for (size_t k = 0; k < npix; ++k) q[k] = lut[ix[k]];
    }
  }

  // torchvision's _affine_grid + grid_sample(nearest, align_corners=False) in torch's float32
  // operations: the base grid X = x - (W - 1) / 2 (exact), theta divided by (W / 2, H / 2), the
  // grid g = (X * t0 + Y * t1) + t2, the source coordinate ((g + 1) * W - 1) / 2, nearbyint
  // (half to even). Computed this way, not in exact arithmetic, because rotations by 90 degrees
  // of an image with one odd and one even side put every source coordinate on a tie, which
  // torch's float32 rounding decides. Each row's offsets come from the kernel table's affine_row
  // (these operations on every SIMD path).
  void affine(const AugmentKernels& k, StepScratch& scratch, float* v, size_t plane, size_t H, size_t W, size_t C,
              const float* m, bool r) const {
    std::vector<float>& src = scratch.f;
    std::vector<int32_t>& at = scratch.i;  // one output row's source offsets (-1: fill)
    if (r) {  // the copy it reads, rounded
      src.resize((C - 1) * plane + H * W);
      const float hi = bound;
      for (size_t c = 0; c < C; ++c) {
        const float* from = v + c * plane;
        float* to = src.data() + c * plane;
        for (size_t i = 0; i < H * W; ++i) to[i] = round_even(clamp_to(from[i], hi));
      }
    } else {
      src.assign(v, v + (C - 1) * plane + H * W);
    }
    at.resize(W);
    const float hw = 0.5f * float(W), hh = 0.5f * float(H);
    const float theta[6] = {m[0] / hw, m[1] / hw, m[2] / hw,   // x row of theta, rescaled
                            m[3] / hh, m[4] / hh, m[5] / hh};  // y row
    float fill3[4] = {0, 0, 0, 0};
    for (size_t c = 0; c < C; ++c) fill3[c] = fill[c];
    int32_t* __restrict a = at.data();
    for (size_t y = 0; y < H; ++y) {
      k.affine_row(theta, y, W, H, a);  // the selected path's loop (the same operations on each)
      // The row's pixels inside the image are one run of consecutive source pixels for
      // translations and x-shears (and the fill around it): copied, the same values as the
      // gathers', without them. Otherwise each plane's pixels by the selected path's gathers
      // (offset -1: the fill value).
      size_t x0 = 0, x1 = W;
      while (x0 < W && a[x0] < 0) ++x0;
      while (x1 > x0 && a[x1 - 1] < 0) --x1;
      uint32_t off = 0;  // bits where a run's offsets differ from a[x] (vectorizes, as a && would not)
      const uint32_t base = x1 > x0 ? uint32_t(a[x0]) - uint32_t(x0) : 0;
      for (size_t x = x0; x < x1; ++x) off |= uint32_t(a[x]) ^ (base + uint32_t(x));
      const bool run = off == 0;
      for (size_t c = 0; c < C; ++c) {
        float* out = v + c * plane + y * W;
        if (!run) {
          k.gather_f32(src.data() + c * plane, a, W, 1, fill3 + c, out, 0);
          continue;
        }
        std::fill(out, out + x0, fill3[c]);
        if (x1 > x0) std::memcpy(out + x0, src.data() + c * plane + a[x0], (x1 - x0) * sizeof(float));
        std::fill(out + x1, out + W, fill3[c]);
      }
    }
  }
};

}  // namespace regtune
