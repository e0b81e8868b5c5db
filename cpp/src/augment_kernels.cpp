// The augmentation kernels, written once and compiled once per instruction set (see simd.h).
//
// Each kernel is a loop of single IEEE-754 float32 operations in a fixed order (no fma: the file
// is compiled with -ffp-contract=off; no reduction across lanes), so an element's value never
// depends on the vector width and every path gives the same bits. The elementwise loops are
// plain C++ that the compiler vectorizes at the target's width. The gathers are explicit: one
// 32-bit gather per output pixel brings all of a uint8 pixel's channels (3 gathers fewer than
// gathering channel by channel, and no conversion pass over the source row), and the channels
// are unpacked with shifts into planar float32. The one reduction (gray_sum) keeps 8 partial
// sums in fixed lanes (pixel p into sum p % 8) combined in a fixed order.
//
// Nothing here has static storage with a dynamic initializer (this file is compiled with
// AVX2/AVX-512 flags and must not run before the CPU has been checked).
#include <algorithm>
#include <cstring>

#include "augment/select_bits.h"
#include "regtune/augment.h"
#include "simd.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;

// Adding then subtracting 1.5 * 2^23 rounds 0 <= t <= 2^22 to the nearest integer, ties to even
// (the addition rounds in the default mode); no libm call, the same on every path.
constexpr float kRound = 12582912.0f;

// ---------------------------------------------------------------------------------- gathers
// A vector of kLanes output pixels: their offsets, a lane mask (offset >= 0), and the gathered
// 32-bit words (uint8 rows) or floats of channel c (float rows). Masked-off lanes read nothing.
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
using IVec = __m512i;
using LMask = __mmask16;
RT_INLINE IVec load_off(const int32_t* p) { return _mm512_loadu_si512(p); }
RT_INLINE LMask valid(IVec off, bool row_ok) {
  return row_ok ? _mm512_cmpge_epi32_mask(off, _mm512_setzero_si512()) : LMask(0);
}
RT_INLINE IVec gather_words(const uint8_t* row, IVec off, LMask m) {
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, off, row, 1);
}
RT_INLINE F32 byte_f32(IVec w, int c) {
  return {_mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(w, _mm512_set1_epi32(8 * c)), _mm512_set1_epi32(0xFF)))};
}
RT_INLINE F32 gather_chan(const float* row, IVec off, LMask m, int c) {
  return {_mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(off, _mm512_set1_epi32(c)), row, 4)};
}
RT_INLINE F32 pick(LMask m, F32 a, float fill) { return {_mm512_mask_blend_ps(m, _mm512_set1_ps(fill), a.v)}; }
#elif REGTUNE_TARGET == REGTUNE_TARGET_AVX2
using IVec = __m256i;
using LMask = __m256i;
RT_INLINE IVec load_off(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
RT_INLINE LMask valid(IVec off, bool row_ok) {
  return row_ok ? _mm256_cmpgt_epi32(off, _mm256_set1_epi32(-1)) : _mm256_setzero_si256();
}
RT_INLINE IVec gather_words(const uint8_t* row, IVec off, LMask m) {
  return _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), reinterpret_cast<const int*>(row), off, m, 1);
}
RT_INLINE F32 byte_f32(IVec w, int c) {
  return {_mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w, _mm256_set1_epi32(8 * c)), _mm256_set1_epi32(0xFF)))};
}
RT_INLINE F32 gather_chan(const float* row, IVec off, LMask m, int c) {
  return {_mm256_mask_i32gather_ps(_mm256_setzero_ps(), row, _mm256_add_epi32(off, _mm256_set1_epi32(c)),
                                   _mm256_castsi256_ps(m), 4)};
}
RT_INLINE F32 pick(LMask m, F32 a, float fill) {
  return {_mm256_blendv_ps(_mm256_set1_ps(fill), a.v, _mm256_castsi256_ps(m))};
}
#else
using IVec = int32_t;
using LMask = bool;
RT_INLINE IVec load_off(const int32_t* p) { return *p; }
RT_INLINE LMask valid(IVec off, bool row_ok) { return row_ok && off >= 0; }
RT_INLINE IVec gather_words(const uint8_t* row, IVec off, LMask m) {
  uint32_t w = 0;
  if (m) std::memcpy(&w, row + off, 4);  // little-endian: byte c is channel c
  return int32_t(w);
}
RT_INLINE F32 byte_f32(IVec w, int c) { return {float((uint32_t(w) >> (8 * c)) & 0xFFu)}; }
RT_INLINE F32 gather_chan(const float* row, IVec off, LMask m, int c) { return {m ? row[off + c] : 0.0f}; }
RT_INLINE F32 pick(LMask m, F32 a, float fill) { return {m ? a.v : fill}; }
#endif

// Runs body(x, lanes) over vectors of output pixels, the last one partial through copies of
// its offsets padded with -1 (fill lanes, which read nothing) and a partial store.
template <typename Body>
RT_INLINE void for_pixels(size_t npx, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                          int channels, float* out, size_t plane, Body body) {
  size_t x = 0;
  for (; x + kLanes <= npx; x += kLanes) {
    F32 v[4];
    body(off0 + x, off1 ? off1 + x : nullptr, w0 ? w0 + x : nullptr, w1 ? w1 + x : nullptr, v);
    for (int c = 0; c < channels; ++c) store(out + c * plane + x, v[c]);
  }
  if (x < npx) {
    const size_t k = npx - x;
    alignas(64) int32_t o0[kLanes], o1[kLanes];
    alignas(64) float a[kLanes], b[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      const bool in = size_t(l) < k;
      o0[l] = in ? off0[x + l] : -1;
      o1[l] = in && off1 ? off1[x + l] : -1;
      a[l] = in && w0 ? w0[x + l] : 0.0f;
      b[l] = in && w1 ? w1[x + l] : 0.0f;
    }
    F32 v[4];
    body(o0, o1, a, b, v);
    for (int c = 0; c < channels; ++c) store_partial(out + c * plane + x, v[c], k);
  }
}

void gather_u8(const uint8_t* row, const int32_t* off0, size_t npx, int channels, const float* fill, float* out,
               size_t plane) {
  const bool row_ok = row != nullptr;
  for_pixels(npx, off0, nullptr, nullptr, nullptr, channels, out, plane,
             [&](const int32_t* o0, const int32_t*, const float*, const float*, F32* v) {
               const IVec off = load_off(o0);
               const LMask m = valid(off, row_ok);
               const IVec w = gather_words(row, off, m);
               for (int c = 0; c < channels; ++c) v[c] = pick(m, byte_f32(w, c), fill[c]);
             });
}

void gather_f32(const float* row, const int32_t* off0, size_t npx, int channels, const float* fill, float* out,
                size_t plane) {
  const bool row_ok = row != nullptr;
  for_pixels(npx, off0, nullptr, nullptr, nullptr, channels, out, plane,
             [&](const int32_t* o0, const int32_t*, const float*, const float*, F32* v) {
               const IVec off = load_off(o0);
               const LMask m = valid(off, row_ok);
               for (int c = 0; c < channels; ++c) v[c] = pick(m, gather_chan(row, off, m, c), fill[c]);
             });
}

// Both taps of kLanes RGB pixels whose second tap is the next pixel or the same one (every
// interior column of a bilinear map, and its clamped edge): one 64-bit gather per pixel brings
// bytes [o, o + 8), taps 0 and 1 with all their channels, half the loads of gathering each tap.
// Returns false (nothing computed) when a lane does not fit; the caller then gathers each tap.
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
RT_INLINE bool pair_rgb(const uint8_t* row, IVec p0, IVec p1, F32 wa, F32 wb, F32* v) {
  const __m512i three = _mm512_set1_epi32(3);
  const __mmask16 same = _mm512_cmpeq_epi32_mask(p1, p0);
  const __mmask16 next = _mm512_cmpeq_epi32_mask(p1, _mm512_add_epi32(p0, three));
  const __mmask16 valid = _mm512_cmpge_epi32_mask(p0, _mm512_setzero_si512());
  if (__mmask16(valid & (same | next)) != 0xFFFF) return false;
  const __m512i q0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(p0), row, 1);
  const __m512i q1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(p0, 1), row, 1);
  const __m512i lo = _mm512_permutex2var_epi32(q0, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), q1);
  const __m512i hi = _mm512_permutex2var_epi32(q0, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), q1);
  const __m512i ff = _mm512_set1_epi32(0xFF);
  const __m512i t0[3] = {_mm512_and_si512(lo, ff), _mm512_and_si512(_mm512_srli_epi32(lo, 8), ff),
                         _mm512_and_si512(_mm512_srli_epi32(lo, 16), ff)};
  const __m512i t1[3] = {_mm512_srli_epi32(lo, 24), _mm512_and_si512(hi, ff), _mm512_and_si512(_mm512_srli_epi32(hi, 8), ff)};
  for (int c = 0; c < 3; ++c) {
    const F32 a{_mm512_cvtepi32_ps(t0[c])};
    const F32 b{_mm512_cvtepi32_ps(_mm512_mask_blend_epi32(same, t1[c], t0[c]))};
    v[c] = add(mul(wa, a), mul(wb, b));
  }
  return true;
}
#elif REGTUNE_TARGET == REGTUNE_TARGET_AVX2
RT_INLINE bool pair_rgb(const uint8_t* row, IVec p0, IVec p1, F32 wa, F32 wb, F32* v) {
  const __m256i same = _mm256_cmpeq_epi32(p1, p0);
  const __m256i next = _mm256_cmpeq_epi32(p1, _mm256_add_epi32(p0, _mm256_set1_epi32(3)));
  const __m256i valid = _mm256_cmpgt_epi32(p0, _mm256_set1_epi32(-1));
  if (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_and_si256(valid, _mm256_or_si256(same, next)))) != 0xFF) return false;
  const auto* base = reinterpret_cast<const long long*>(row);
  const __m256 q0 = _mm256_castsi256_ps(_mm256_i32gather_epi64(base, _mm256_castsi256_si128(p0), 1));
  const __m256 q1 = _mm256_castsi256_ps(_mm256_i32gather_epi64(base, _mm256_extracti128_si256(p0, 1), 1));
  // low and high dwords of the 8 qwords, in pixel order (shuffle within halves, then fix the halves)
  const __m256i lo = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(q0, q1, 0x88)), 0xD8);
  const __m256i hi = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(q0, q1, 0xDD)), 0xD8);
  const __m256i ff = _mm256_set1_epi32(0xFF);
  const __m256i t0[3] = {_mm256_and_si256(lo, ff), _mm256_and_si256(_mm256_srli_epi32(lo, 8), ff),
                         _mm256_and_si256(_mm256_srli_epi32(lo, 16), ff)};
  const __m256i t1[3] = {_mm256_srli_epi32(lo, 24), _mm256_and_si256(hi, ff), _mm256_and_si256(_mm256_srli_epi32(hi, 8), ff)};
  for (int c = 0; c < 3; ++c) {
    const F32 a{_mm256_cvtepi32_ps(t0[c])};
    const F32 b{_mm256_cvtepi32_ps(_mm256_blendv_epi8(t1[c], t0[c], same))};
    v[c] = add(mul(wa, a), mul(wb, b));
  }
  return true;
}
#else
RT_INLINE bool pair_rgb(const uint8_t*, IVec, IVec, F32, F32, F32*) { return false; }  // plain loads already
#endif

// One vector of output pixels from their two taps (offsets o0, o1, weights a, b) in a row:
// the weighted sum, with `fill` where a tap lies outside the row (or there is no row).
// kC = 0: any channel count (run time); 3: RGB, whose taps are read as pairs where they can be.
template <int kC>
RT_INLINE auto u8_pair(const uint8_t* row, int C, const float* fill) {
  return [row, C, fill, row_ok = row != nullptr](const int32_t* o0, const int32_t* o1, const float* a, const float* b,
                                                 F32* v) {
    const IVec p0 = load_off(o0), p1 = load_off(o1);
    const F32 wa = load(a), wb = load(b);
    if (kC == 3 && row_ok && pair_rgb(row, p0, p1, wa, wb, v)) return;
    const LMask m0 = valid(p0, row_ok), m1 = valid(p1, row_ok);
    const IVec g0 = gather_words(row, p0, m0), g1 = gather_words(row, p1, m1);
    for (int c = 0; c < C; ++c) {
      v[c] = add(mul(wa, pick(m0, byte_f32(g0, c), fill[c])), mul(wb, pick(m1, byte_f32(g1, c), fill[c])));
    }
  };
}
RT_INLINE auto f32_pair(const float* row, int channels, const float* fill) {
  return [row, channels, fill, row_ok = row != nullptr](const int32_t* o0, const int32_t* o1, const float* a,
                                                        const float* b, F32* v) {
    const IVec p0 = load_off(o0), p1 = load_off(o1);
    const LMask m0 = valid(p0, row_ok), m1 = valid(p1, row_ok);
    const F32 wa = load(a), wb = load(b);
    for (int c = 0; c < channels; ++c) {
      v[c] = add(mul(wa, pick(m0, gather_chan(row, p0, m0, c), fill[c])),
                 mul(wb, pick(m1, gather_chan(row, p1, m1, c), fill[c])));
    }
  };
}

template <int kC>
RT_INLINE void gather2_u8_body(const uint8_t* row, const int32_t* off0, const int32_t* off1, const float* w0,
                               const float* w1, size_t npx, int channels, const float* fill, float* out, size_t plane) {
  const int C = kC ? kC : channels;
  for_pixels(npx, off0, off1, w0, w1, C, out, plane, u8_pair<kC>(row, C, fill));
}

// Several tap pairs per pixel (antialiased resampling): pair p's offsets and weights at
// + p * stride; the pairs' blends summed in registers in pair order (acc = pair 0, then
// acc + pair p), the same operations as gathering each pair and adding the results.
template <typename Pair>
RT_INLINE void for_pixel_pairs(size_t npx, size_t pairs, size_t stride, const int32_t* off0, const int32_t* off1,
                               const float* w0, const float* w1, int channels, float* out, size_t plane, Pair pair) {
  size_t x = 0;
  for (; x + kLanes <= npx; x += kLanes) {
    F32 acc[4], v[4];
    pair(off0 + x, off1 + x, w0 + x, w1 + x, acc);
    for (size_t p = 1; p < pairs; ++p) {
      const size_t o = p * stride + x;
      pair(off0 + o, off1 + o, w0 + o, w1 + o, v);
      for (int c = 0; c < channels; ++c) acc[c] = add(acc[c], v[c]);
    }
    for (int c = 0; c < channels; ++c) store(out + c * plane + x, acc[c]);
  }
  if (x < npx) {
    const size_t k = npx - x;
    F32 acc[4], v[4];
    for (size_t p = 0; p < pairs; ++p) {
      alignas(64) int32_t o0[kLanes], o1[kLanes];
      alignas(64) float a[kLanes], b[kLanes];
      const size_t o = p * stride + x;
      for (int l = 0; l < kLanes; ++l) {
        const bool in = size_t(l) < k;
        o0[l] = in ? off0[o + l] : -1;
        o1[l] = in ? off1[o + l] : -1;
        a[l] = in ? w0[o + l] : 0.0f;
        b[l] = in ? w1[o + l] : 0.0f;
      }
      pair(o0, o1, a, b, p == 0 ? acc : v);
      if (p > 0) {
        for (int c = 0; c < channels; ++c) acc[c] = add(acc[c], v[c]);
      }
    }
    for (int c = 0; c < channels; ++c) store_partial(out + c * plane + x, acc[c], k);
  }
}

template <int kC>
RT_INLINE void gather2n_u8_body(const uint8_t* row, const int32_t* off0, const int32_t* off1, const float* w0,
                                const float* w1, size_t stride, size_t pairs, size_t npx, int channels,
                                const float* fill, float* out, size_t plane) {
  const int C = kC ? kC : channels;
  for_pixel_pairs(npx, pairs, stride, off0, off1, w0, w1, C, out, plane, u8_pair<kC>(row, C, fill));
}

void gather2n_u8(const uint8_t* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                 size_t stride, size_t pairs, size_t npx, int channels, const float* fill, float* out, size_t plane) {
  if (channels == 3) {
    gather2n_u8_body<3>(row, off0, off1, w0, w1, stride, pairs, npx, channels, fill, out, plane);
  } else {
    gather2n_u8_body<0>(row, off0, off1, w0, w1, stride, pairs, npx, channels, fill, out, plane);
  }
}

void gather2n_f32(const float* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                  size_t stride, size_t pairs, size_t npx, int channels, const float* fill, float* out, size_t plane) {
  for_pixel_pairs(npx, pairs, stride, off0, off1, w0, w1, channels, out, plane, f32_pair(row, channels, fill));
}

// The rgb path reads 8 bytes at each pixel's offset: the caller keeps 8 bytes past the row's
// last pixel readable (a staged row; see augment.cpp).
void gather2_u8(const uint8_t* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                size_t npx, int channels, const float* fill, float* out, size_t plane) {
  if (channels == 3) {
    gather2_u8_body<3>(row, off0, off1, w0, w1, npx, channels, fill, out, plane);
  } else {
    gather2_u8_body<0>(row, off0, off1, w0, w1, npx, channels, fill, out, plane);
  }
}

void gather2_f32(const float* row, const int32_t* off0, const int32_t* off1, const float* w0, const float* w1,
                 size_t npx, int channels, const float* fill, float* out, size_t plane) {
  for_pixels(npx, off0, off1, w0, w1, channels, out, plane, f32_pair(row, channels, fill));
}

// Contiguous runs (crops, translations, flips: output pixel x reads source pixel x0 + dir * x):
// out[c * plane + x] = row[dir * x * C + c], no gather.
template <typename T>
RT_INLINE void run_body(const T* __restrict row, int dir, size_t npx, int channels, float* __restrict out, size_t plane) {
  if (channels == 3 && dir == 1) {
    for (size_t x = 0; x < npx; ++x) {
      out[x] = float(row[3 * x]);
      out[plane + x] = float(row[3 * x + 1]);
      out[2 * plane + x] = float(row[3 * x + 2]);
    }
  } else if (channels == 3) {
    for (size_t x = 0; x < npx; ++x) {
      const T* px = row - 3 * ptrdiff_t(x);
      out[x] = float(px[0]);
      out[plane + x] = float(px[1]);
      out[2 * plane + x] = float(px[2]);
    }
  } else {
    for (int c = 0; c < channels; ++c) {
      for (size_t x = 0; x < npx; ++x) out[c * plane + x] = float(row[ptrdiff_t(dir) * ptrdiff_t(x) * channels + c]);
    }
  }
}
void run_u8(const uint8_t* row, int dir, size_t npx, int channels, float* out, size_t plane) {
  run_body(row, dir, npx, channels, out, plane);
}
void run_f32(const float* row, int dir, size_t npx, int channels, float* out, size_t plane) {
  run_body(row, dir, npx, channels, out, plane);
}

// --------------------------------------------------------------------------- elementwise
// Vector loops over n elements with a partial last vector: one body, no scalar copy of it.
template <typename Body>
RT_INLINE void for_vectors(size_t n, Body body) {
  size_t e = 0;
  for (; e + kLanes <= n; e += kLanes) body(e, size_t(kLanes));
  if (e < n) body(e, n - e);
}
RT_INLINE F32 ld(const float* p, size_t k) { return k == size_t(kLanes) ? load(p) : load_partial(p, k); }
RT_INLINE void st(float* p, F32 v, size_t k) {
  if (k == size_t(kLanes)) {
    store(p, v);
  } else {
    store_partial(p, v, k);
  }
}
// clamp(v, 0, bound) with NaN -> 0: simd max/min return their second operand when unordered.
RT_INLINE F32 clampv(F32 v, F32 bound) { return min(max(v, set1(0.0f)), bound); }

void blend(const float* a, const float* b, float w0, float w1, size_t n, float* out) {
  const F32 x = set1(w0), y = set1(w1);
  for_vectors(n, [&](size_t e, size_t k) { st(out + e, add(mul(x, ld(a + e, k)), mul(y, ld(b + e, k))), k); });
}

// out[e] = sum over p < pairs of (w[2p] * rows[2p][e] + w[2p + 1] * rows[2p + 1][e]), summed in
// pair order: blend's operations, pair by pair, then adds.
void blendn(const float* const* rows, const float* w, size_t pairs, size_t n, float* out) {
  for_vectors(n, [&](size_t e, size_t k) {
    F32 acc = add(mul(set1(w[0]), ld(rows[0] + e, k)), mul(set1(w[1]), ld(rows[1] + e, k)));
    for (size_t p = 1; p < pairs; ++p) {
      acc = add(acc, add(mul(set1(w[2 * p]), ld(rows[2 * p] + e, k)), mul(set1(w[2 * p + 1]), ld(rows[2 * p + 1] + e, k))));
    }
    st(out + e, acc, k);
  });
}

void scale_clamp(float* v, size_t n, float f, float g, float bound) {
  const F32 fv = set1(f), gv = set1(g), bv = set1(bound);
  for_vectors(n, [&](size_t e, size_t k) { st(v + e, clampv(add(mul(ld(v + e, k), fv), gv), bv), k); });
}

RT_INLINE F32 gray(F32 r, F32 g, F32 b) {
  return add(add(mul(set1(0.2989f), r), mul(set1(0.587f), g)), mul(set1(0.114f), b));
}

void saturation(float* v, size_t plane, size_t npix, float f, float bound) {
  const F32 fv = set1(f), omf = set1(1.0f - f), bv = set1(bound);
  float* r = v;
  float* g = v + plane;
  float* b = v + 2 * plane;
  for_vectors(npix, [&](size_t p, size_t k) {
    const F32 rv = ld(r + p, k), gv = ld(g + p, k), bb = ld(b + p, k);
    const F32 gw = mul(gray(rv, gv, bb), omf);
    st(r + p, clampv(add(mul(rv, fv), gw), bv), k);
    st(g + p, clampv(add(mul(gv, fv), gw), bv), k);
    st(b + p, clampv(add(mul(bb, fv), gw), bv), k);
  });
}

// torchvision's adjust_hue (transforms.v2.functional._color: _rgb_to_hsv, the shift, _hsv_to_rgb)
// per pixel, each operation a float32 operation in torchvision's order; its masks multiply by
// 0 or 1, which only changes the sign of a zero that the following "+ 1" removes. A loop without
// branches (selects by masks) that the compiler vectorizes at the target's width: the same bits
// on every path.
void hue(float* __restrict v, size_t plane, size_t npix, float factor, float bound) {
  float* __restrict rp = v;
  float* __restrict gp = v + plane;
  float* __restrict bp = v + 2 * plane;
  const float sixth = float(1.0 / 6.0);
  for (size_t p = 0; p < npix; ++p) {
    const float r = rp[p], g = gp[p], b = bp[p];
    const float maxc = std::max(r, std::max(g, b));
    const float minc = std::min(r, std::min(g, b));
    const bool eqc = maxc == minc;
    const float range = maxc - minc;
    const float s = range / select_bits(eqc, 1.0f, maxc);
    const float div = select_bits(eqc, 1.0f, range);
    const float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    const bool max_r = maxc == r, max_g = maxc == g;
    const float hr = select_bits(max_r, bc - gc, 0.0f);
    const float hg = select_bits(max_g & !max_r, (rc + 2.0f) - bc, 0.0f);
    const float hb = select_bits(!max_g & !max_r, (gc + 4.0f) - rc, 0.0f);
    float h = (hr + hg) + hb;
    h = h * sixth + 1.0f;
    // trunc and floor as int conversions (the ranges are small; std::trunc and std::floor keep GCC
    // from vectorizing the loop)
    h = h - float(int32_t(h));  // fmod(h, 1) (exact: h is in [5/6, 11/6])
    h = h + factor;
    const float m0 = h - float(int32_t(h));  // remainder(h, 1): fmod, then + 1 when negative (h in [-0.5, 1.5])
    const float m = select_bits(m0 < 0.0f, m0 + 1.0f, m0);
    const float h6 = m * 6.0f;
    const float fl = float(int32_t(h6));  // floor: h6 is in [0, 6]
    const float f = h6 - fl;
    const int i0 = int(fl);
    const int i = i0 >= 6 ? i0 - 6 : i0;  // i0 is in [0, 6]
    const float sxv = s * maxc;
    const float pv = std::min(std::max(maxc - sxv, 0.0f), bound);
    const float sxvf = sxv * f;
    const float qv = std::min(std::max(maxc - sxvf, 0.0f), bound);
    const float tv = std::min(std::max(sxvf + pv, 0.0f), bound);
    // torchvision's select table over (v, p, q, t): [[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]]
    rp[p] = select_bits((i == 0) | (i == 5), maxc, select_bits(i == 1, qv, select_bits(i == 4, tv, pv)));
    gp[p] = select_bits((i == 1) | (i == 2), maxc, select_bits(i == 0, tv, select_bits(i == 3, qv, pv)));
    bp[p] = select_bits((i == 3) | (i == 4), maxc, select_bits(i == 2, tv, select_bits(i == 5, qv, pv)));
  }
}

RT_INLINE float gray1(float r, float g, float b) {
  const float x = 0.2989f * r;
  const float y = 0.587f * g;
  const float z = 0.114f * b;
  return (x + y) + z;
}

double gray_sum(const float* __restrict v, size_t plane, size_t npix, int channels) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  auto value = [&](size_t p) { return channels == 3 ? gray1(v[p], v[plane + p], v[2 * plane + p]) : v[p]; };
  size_t p = 0;
  for (; p + 8 <= npix; p += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += double(value(p + k));
  }
  for (int k = 0; p < npix; ++p, ++k) acc[k] += double(value(p));
  double s = 0.0;
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}

void add_noise(float* v, size_t plane, const float* noise, size_t npix, int channels, bool clip, float bound) {
  alignas(64) float nb[kLanes];
  const F32 bv = set1(bound);
  for (int c = 0; c < channels; ++c) {
    float* vc = v + c * plane;
    for_vectors(npix, [&](size_t p, size_t k) {
      for (size_t l = 0; l < k; ++l) nb[l] = noise[(p + l) * channels + c];
      F32 t = add(ld(vc + p, k), ld(nb, k));
      if (clip) t = clampv(t, bv);
      st(vc + p, t, k);
    });
  }
}

// out may be v: each element is read once, then written in its place.
void affine(const float* v, float* out, size_t n, float a, float b) {
  const F32 av = set1(a), bv = set1(b);
  for_vectors(n, [&](size_t e, size_t k) { st(out + e, add(mul(ld(v + e, k), av), bv), k); });
}

// The same into a large output that is not read back soon: whole 64-byte lines are written with
// non-temporal stores (no read-for-ownership of lines about to be overwritten, no eviction of
// the block buffers), the unaligned ends with plain stores. The values are affine's. Measured on
// 64 500x375 images -> 224x224 NCHW float32 (38 MB out), one thread, alternating in one process:
// 196 vs 225 us of CPU per image with plain stores (medians of 12).
// out[0, n) = val(e, k) for the vectors [e, e + k): whole 64-byte lines with non-temporal
// stores, the unaligned ends with plain (partial) stores.
template <typename Val>
RT_INLINE void stream_out(float* out, size_t n, Val val) {
#if REGTUNE_TARGET == REGTUNE_TARGET_SCALAR
  for_vectors(n, [&](size_t e, size_t k) { st(out + e, val(e, k), k); });
#else
  size_t head = (64 - (reinterpret_cast<uintptr_t>(out) & 63)) / sizeof(float) % (64 / sizeof(float));
  if ((reinterpret_cast<uintptr_t>(out) & 3) != 0 || head > n) head = n;
  size_t e = 0;
  for (; e < head; e += size_t(kLanes)) {
    const size_t k = std::min(size_t(kLanes), head - e);
    st(out + e, val(e, k), k);
  }
  e = head;
  for (; e + 16 <= n; e += 16) {
    for (size_t l = 0; l < 16; l += size_t(kLanes)) {
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
      _mm512_stream_ps(out + e + l, val(e + l, size_t(kLanes)).v);
#else
      _mm256_stream_ps(out + e + l, val(e + l, size_t(kLanes)).v);
#endif
    }
  }
  for (; e < n; e += size_t(kLanes)) {
    const size_t k = std::min(size_t(kLanes), n - e);
    st(out + e, val(e, k), k);
  }
#endif
}

void affine_stream(const float* v, float* out, size_t n, float a, float b) {
  const F32 av = set1(a), bv = set1(b);
  stream_out(out, n, [&](size_t e, size_t k) { return add(mul(ld(v + e, k), av), bv); });
}

// blend, then affine, straight into the output: the same operations in the same order as the
// two kernels one after the other (so the same bits), without the values' round trip through
// the block buffer (a bilinear resize whose only pointwise op is the final Normalize).
void blend_affine_stream(const float* x, const float* y, float w0, float w1, size_t n, float a, float b, float* out) {
  const F32 w0v = set1(w0), w1v = set1(w1), av = set1(a), bv = set1(b);
  stream_out(out, n, [&](size_t e, size_t k) {
    const F32 t = add(mul(w0v, ld(x + e, k)), mul(w1v, ld(y + e, k)));
    return add(mul(t, av), bv);
  });
}

// round-to-nearest-even(clamp(v, 0, 255)): after adding 1.5 * 2^23 the integer sits in the low
// mantissa bits (the addition rounds, ties to even), so no float -> int conversion is needed.
RT_INLINE U32 u8_bits(F32 v) { return band(bits(add(clampv(v, set1(255.0f)), set1(kRound))), set1(0xFFu)); }

RT_INLINE void store_bytes(uint8_t* out, U32 b, size_t k) {
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
  _mm_mask_storeu_epi8(out, __mmask16((1u << k) - 1), _mm512_cvtepi32_epi8(b.v));
#elif REGTUNE_TARGET == REGTUNE_TARGET_AVX2
  alignas(32) uint32_t w[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(w), b.v);
  for (size_t l = 0; l < k; ++l) out[l] = uint8_t(w[l]);
#else
  if (k) out[0] = uint8_t(b.v);
#endif
}

void store_u8(const float* v, size_t n, uint8_t* out) {
  for_vectors(n, [&](size_t e, size_t k) { store_bytes(out + e, u8_bits(ld(v + e, k)), k); });
}

void interleave_f32(const float* __restrict v, size_t plane, size_t npix, int channels, float* __restrict out) {
  if (channels == 3) {  // a constant stride the compiler can vectorize
    for (size_t p = 0; p < npix; ++p) {
      out[3 * p] = v[p];
      out[3 * p + 1] = v[plane + p];
      out[3 * p + 2] = v[2 * plane + p];
    }
    return;
  }
  for (size_t p = 0; p < npix; ++p) {
    for (int c = 0; c < channels; ++c) out[p * channels + c] = v[c * plane + p];
  }
}

void interleave_u8(const float* v, size_t plane, size_t npix, int channels, uint8_t* out) {
  alignas(64) uint8_t b[4][kLanes];
  for_vectors(npix, [&](size_t p, size_t k) {
    for (int c = 0; c < channels; ++c) store_bytes(b[c], u8_bits(ld(v + c * plane + p, k)), k);
    for (size_t l = 0; l < k; ++l) {
      for (int c = 0; c < channels; ++c) out[(p + l) * channels + c] = b[c][l];
    }
  });
}

// MixUp and CutMix on uint8 images: plain loops the compiler vectorizes at the target's width
// (the byte -> float conversion is exact, and each element is blend's two multiplies and one add
// in the same order, so every path and NumPy's float32 expression give the same bits).
void blend_u8(const uint8_t* __restrict a, const uint8_t* __restrict b, float w0, float w1, size_t n,
              float* __restrict out) {
  for (size_t e = 0; e < n; ++e) {
    const float x = w0 * float(a[e]);
    const float y = w1 * float(b[e]);
    out[e] = x + y;
  }
}

void widen_u8(const uint8_t* __restrict a, size_t n, float* __restrict out) {
  for (size_t e = 0; e < n; ++e) out[e] = float(a[e]);
}

// Rounding half to even without a rounding instruction (|x| <= 2^22): the same operations on
// every path (see policy.h).
RT_INLINE float round_half_even(float x) { return (x + 12582912.0f) - 12582912.0f; }

void affine_row(const float* t, size_t y, size_t W, size_t H, int32_t* __restrict out) {
  const float t0 = t[0], t1 = t[1], t2 = t[2], u0 = t[3], u1 = t[4], u2 = t[5];
  const float fw = float(W), fh = float(H), cx = (fw - 1.0f) * 0.5f, cy = (fh - 1.0f) * 0.5f;
  const float Y = float(y) - cy;
  const int32_t iw = int32_t(W);
  for (size_t x = 0; x < W; ++x) {  // vectorizes: float operations, compares and conversions
    const float X = float(int32_t(x)) - cx;  // (from a size_t the loop would not vectorize)
    const float gx = (X * t0 + Y * t1) + t2;
    const float gy = (X * u0 + Y * u1) + u2;
    // beyond 2^22 the rounding is not nearbyint's, but the result stays out of the image
    const float sx = round_half_even(((gx + 1.0f) * fw - 1.0f) / 2.0f);
    const float sy = round_half_even(((gy + 1.0f) * fh - 1.0f) / 2.0f);
    const bool in = (sx >= 0.0f) & (sx < fw) & (sy >= 0.0f) & (sy < fh);
    // clamped before the conversions, so that they are computed for every pixel (no branch)
    const int32_t ix = int32_t(std::min(std::max(sx, 0.0f), fw - 1.0f));
    const int32_t iy = int32_t(std::min(std::max(sy, 0.0f), fh - 1.0f));
    out[x] = in ? iy * iw + ix : -1;
  }
}

}  // namespace

AugmentKernels augment_kernels() {
  return AugmentKernels{REGTUNE_NS_NAME, gather_u8,   gather_f32, gather2_u8, gather2_f32, gather2n_u8, gather2n_f32,
                        run_u8, run_f32, blend, blendn,
                        affine_stream, blend_affine_stream,
                        scale_clamp,     saturation,  hue, gray_sum,   add_noise,  affine,         store_u8,
                        interleave_f32,  interleave_u8, blend_u8, widen_u8, affine_row};
}

}  // namespace REGTUNE_NS
}  // namespace regtune
