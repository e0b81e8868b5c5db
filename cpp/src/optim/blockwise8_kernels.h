// Blockwise 8-bit state, one instruction set: decoding a block of codes to float32 and encoding
// it back (see optim/blockwise8.h for the lookup). Exact integer work and one IEEE division per
// element, so every target writes the same codes and absmax.
#pragma once

#include <cstring>
#include <limits>

#include "optim/blockwise8.h"
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

// out[0, k) = code[codes[i]] * a: one block (k <= kQ8Block) of absmax a. AVX-512 looks the
// values up in registers; elsewhere a scalar loop (a vector gather is slower on every x86 we
// measured, so the loop is kept from being vectorized into one).
#if defined(REGTUNE_HAS_LOOKUP256)
RT_INLINE void q8_decode(const Q8Map& m, const uint8_t* codes, float a, size_t k, float* out) {
  const F32 av = set1(a);
  size_t i = 0;
  for (; i + size_t(kLanes) <= k; i += kLanes) store(out + i, mul(lookup256(m.code, load_u8(codes + i)), av));
  if (i < k) store_partial(out + i, mul(lookup256(m.code, load_u8_partial(codes + i, k - i)), av), k - i);
}
#else
__attribute__((noinline, optimize("no-tree-vectorize"))) void q8_decode(const Q8Map& m, const uint8_t* codes, float a,
                                                                        size_t k, float* out) {
  for (size_t i = 0; i < k; ++i) out[i] = m.code[codes[i]] * a;
}
#endif

// The largest |x| of x[0, k), or NaN when any is NaN or infinite (x * 0 is then NaN, and a
// NaN stays in the sum).
RT_INLINE float block_absmax(const float* x, size_t k) {
  F32 top = set1(0.0f), bad = set1(0.0f);
  const F32 zero = set1(0.0f);
  size_t i = 0;
  for (; i + size_t(kLanes) <= k; i += kLanes) {
    const F32 v = load(x + i);
    top = max(top, abs(v));
    bad = add(bad, mul(v, zero));
  }
  if (i < k) {
    const F32 v = load_partial(x + i, k - i);
    top = max(top, abs(v));
    bad = add(bad, mul(v, zero));
  }
  alignas(64) float t[kLanes], b[kLanes];
  store(t, top);
  store(b, bad);
  float a = 0.0f, s = 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    a = t[l] > a ? t[l] : a;
    s += b[l];
  }
  return s == 0.0f ? a : std::numeric_limits<float>::quiet_NaN();
}

// The exact search for one value: the number of thresholds below q.
RT_INLINE uint32_t q8_search(const Q8Map& m, float q) {
  uint32_t lo = 0, hi = 255;
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (m.thr[mid] < q) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// The codes of x * inv clamped to [-1, 1] (0 < inv < inf), by levels (see optim/blockwise8.h);
// `exact` is cleared when a lane lies too near a threshold inside its level.
RT_INLINE U32 q8_codes(const Q8Map& m, F32 q, bool& exact) {
  const F32 a = abs(q);
  const M32 neg = lt(q, set1(0.0f));
  U32 level = set1(0u);
  M32 top = lt(set1(m.div_pos[7]), a);
  if (m.is_signed) {
    for (int l = 0; l < 8; ++l) level = inc_where(level, lt(select(neg, set1(m.div_neg[l]), set1(m.div_pos[l])), a));
    top = lt(select(neg, set1(m.div_neg[7]), set1(m.div_pos[7])), a);
  } else {
    for (int l = 0; l < 8; ++l) level = inc_where(level, lt(set1(m.div_pos[l]), a));
  }
  const U32 L = select(top, set1(7u), level);  // level 8 shares level 7's row
  const F32 u = fma(a, lookup8(m.scale, L), lookup8(m.offset, L));
  const F32 r = min(max(round_small(u), set1(1.0f)), lookup8(m.near_hi, L));
  exact = exact && none(lt(abs(sub(u, r)), set1(kQ8Margin)));
  const U32 j = trunc_u32(min(max(u, set1(0.0f)), lookup8(m.jmax, L)));
  U32 code = add(lookup8(m.start_pos, L), j);
  if (m.is_signed) {
    code = select(neg, sub(lookup8(m.start_neg, L), j), code);
  } else {
    code = select(neg, set1(m.zero), code);
  }
  return select(top, set1(m.top), code);
}

// Encodes x[0, k) (one block, k <= kQ8Block) into codes and *absmax: the nearest values of x
// times 1 / absmax (as bitsandbytes scales: by the float reciprocal), clamped to [-1, 1]. A
// block of zeros, or one with a NaN or an infinity (absmax NaN: it decodes as NaN), gets the
// code of 0 throughout.
RT_INLINE void q8_encode(const Q8Map& m, const float* x, size_t k, uint8_t* codes, float* absmax) {
  const float a = block_absmax(x, k);
  *absmax = a;
  if (!(a > 0.0f)) {
    std::memset(codes, int(m.zero), k);
    return;
  }
  const F32 inv = set1(1.0f / a), one = set1(1.0f), minus_one = set1(-1.0f);
  for (size_t i = 0; i < k; i += kLanes) {
    const size_t w = std::min(size_t(kLanes), k - i);
    const F32 v = w == size_t(kLanes) ? load(x + i) : load_partial(x + i, w);
    const F32 q = min(max(mul(v, inv), minus_one), one);
    bool exact = true;
    const U32 c = q8_codes(m, q, exact);
    if (exact) {
      if (w == size_t(kLanes)) store_u8(codes + i, c); else store_u8_partial(codes + i, c, w);
    } else {
      alignas(64) float qs[kLanes];
      store(qs, q);
      for (size_t l = 0; l < w; ++l) codes[i + l] = uint8_t(q8_search(m, qs[l]));
    }
  }
}

RT_INLINE const Q8Map& q8_map(DType d) { return q8_tables().map[d == DType::q8u ? 1 : 0]; }

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
