// The augmentation kernels, written once and compiled once per instruction set (see simd.h).
//
// Each kernel is a plain loop of single IEEE-754 float32 operations (no reductions across
// lanes, no fma: the file is compiled with -ffp-contract=off), which the compiler vectorizes at
// the target's width; an element's value never depends on the width, so every path gives the
// same bits. The one reduction (gray_sum) keeps 8 partial sums in fixed lanes (pixel p into sum
// p % 8) combined in a fixed order, which vectorizes without reassociating anything.
// The gathers (integer and bilinear resampling) use the targets' gather instructions
// explicitly: compilers do not vectorize them on their own.
//
// Nothing here has static storage with a dynamic initializer (this file is compiled with
// AVX2/AVX-512 flags and must not run before the CPU has been checked).
#include <cstring>

#include "regtune/augment.h"
#include "simd.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;

// 0.5 ulp below 2^23 + 2^22: adding then subtracting it rounds 0 <= t <= 2^22 to the nearest
// integer, ties to even (the float32 addition rounds in the current mode, nearest-even).
constexpr float kRound = 12582912.0f;  // 1.5 * 2^23

RT_INLINE float clamp0(float v, float bound) {
  v = v > 0.0f ? v : 0.0f;  // NaN -> 0
  return v < bound ? v : bound;
}

RT_INLINE uint8_t to_u8(float v) {
  const float t = clamp0(v, 255.0f);
  return uint8_t(int32_t((t + kRound) - kRound));
}

void load_u8(const uint8_t* __restrict src, size_t n, float* __restrict dst) {
  for (size_t i = 0; i < n; ++i) dst[i] = float(src[i]);
}

#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
RT_INLINE F32 gather_f32(const float* row, const int32_t* idx) {
  return {_mm512_i32gather_ps(_mm512_loadu_si512(idx), row, 4)};
}
#elif REGTUNE_TARGET == REGTUNE_TARGET_AVX2
RT_INLINE F32 gather_f32(const float* row, const int32_t* idx) {
  return {_mm256_i32gather_ps(row, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), 4)};
}
#else
RT_INLINE F32 gather_f32(const float* row, const int32_t* idx) { return {row[*idx]}; }
#endif

void gather(const float* __restrict row, const int32_t* __restrict idx, size_t n, float* __restrict out) {
  size_t e = 0;
  for (; e + kLanes <= n; e += kLanes) store(out + e, gather_f32(row, idx + e));
  for (; e < n; ++e) out[e] = row[idx[e]];
}

void gather2(const float* __restrict row, const int32_t* __restrict i0, const int32_t* __restrict i1,
             const float* __restrict w0, const float* __restrict w1, size_t n, float* __restrict out) {
  size_t e = 0;
  for (; e + kLanes <= n; e += kLanes) {
    const F32 a = mul(load(w0 + e), gather_f32(row, i0 + e));
    const F32 b = mul(load(w1 + e), gather_f32(row, i1 + e));
    store(out + e, add(a, b));
  }
  for (; e < n; ++e) {
    const float a = w0[e] * row[i0[e]];
    const float b = w1[e] * row[i1[e]];
    out[e] = a + b;
  }
}

void blend(const float* __restrict a, const float* __restrict b, float w0, float w1, size_t n, float* __restrict out) {
  for (size_t e = 0; e < n; ++e) {
    const float x = w0 * a[e];
    const float y = w1 * b[e];
    out[e] = x + y;
  }
}

void scale_clamp(float* __restrict v, size_t n, float f, float g, float bound) {
  for (size_t e = 0; e < n; ++e) {
    const float t = v[e] * f;
    v[e] = clamp0(t + g, bound);
  }
}

RT_INLINE float gray(const float* p) {
  const float r = 0.2989f * p[0];
  const float g = 0.587f * p[1];
  const float b = 0.114f * p[2];
  return (r + g) + b;
}

void saturation(float* __restrict v, size_t npix, float f, float bound) {
  const float omf = 1.0f - f;
  for (size_t p = 0; p < npix; ++p) {
    float* px = v + 3 * p;
    const float gw = gray(px) * omf;
    for (int c = 0; c < 3; ++c) {
      const float t = px[c] * f;
      px[c] = clamp0(t + gw, bound);
    }
  }
}

double gray_sum(const float* __restrict v, size_t npix, int channels) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t p = 0;
  if (channels == 3) {
    for (; p + 8 <= npix; p += 8) {
      for (int k = 0; k < 8; ++k) acc[k] += double(gray(v + 3 * (p + k)));
    }
    for (int k = 0; p < npix; ++p, ++k) acc[k] += double(gray(v + 3 * p));
  } else {
    for (; p + 8 <= npix; p += 8) {
      for (int k = 0; k < 8; ++k) acc[k] += double(v[p + k]);
    }
    for (int k = 0; p < npix; ++p, ++k) acc[k] += double(v[p]);
  }
  double s = 0.0;
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}

void add_noise(float* __restrict v, const float* __restrict noise, size_t n, bool clip, float bound) {
  if (clip) {
    for (size_t e = 0; e < n; ++e) v[e] = clamp0(v[e] + noise[e], bound);
  } else {
    for (size_t e = 0; e < n; ++e) v[e] = v[e] + noise[e];
  }
}

// out may be v: each element is read once, then written at the same place.
void affine(const float* v, float* out, size_t rows, size_t m, const float* __restrict a, const float* __restrict b) {
  for (size_t r = 0; r < rows; ++r) {
    const float* row = v + r * m;
    float* dst = out + r * m;
    for (size_t e = 0; e < m; ++e) {
      const float t = row[e] * a[e];
      dst[e] = t + b[e];
    }
  }
}

void store_u8(const float* __restrict v, size_t n, uint8_t* __restrict out) {
  for (size_t e = 0; e < n; ++e) out[e] = to_u8(v[e]);
}

void store_planar_f32(const float* __restrict v, size_t npix, int channels, float* __restrict out, size_t plane) {
  if (channels == 3) {  // the common case, with a constant stride the compiler can vectorize
    for (size_t p = 0; p < npix; ++p) {
      out[p] = v[3 * p];
      out[plane + p] = v[3 * p + 1];
      out[2 * plane + p] = v[3 * p + 2];
    }
    return;
  }
  for (int c = 0; c < channels; ++c) {
    for (size_t p = 0; p < npix; ++p) out[c * plane + p] = v[p * channels + c];
  }
}

void store_planar_u8(const float* __restrict v, size_t npix, int channels, uint8_t* __restrict out, size_t plane) {
  for (int c = 0; c < channels; ++c) {
    for (size_t p = 0; p < npix; ++p) out[c * plane + p] = to_u8(v[p * channels + c]);
  }
}

}  // namespace

AugmentKernels augment_kernels() {
  return AugmentKernels{REGTUNE_NS_NAME, load_u8,   gather,   gather2,  blend,       scale_clamp,      saturation,
                        gray_sum,        add_noise, affine,   store_u8, store_planar_f32, store_planar_u8};
}

}  // namespace REGTUNE_NS
}  // namespace regtune
