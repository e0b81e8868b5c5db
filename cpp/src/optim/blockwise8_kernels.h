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
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
RT_INLINE void q8_decode(const Q8Map& m, const uint8_t* codes, float a, size_t k, float* out) {
  const Tab256 code = tab256(m.code);  // (loaded once: stores to out may alias m for all the compiler knows)
  const F32 av = set1(a);
  size_t i = 0;
  for (; i + size_t(kLanes) <= k; i += kLanes) store(out + i, mul(lookup(code, load_u8(codes + i)), av));
  if (i < k) store_partial(out + i, mul(lookup(code, load_u8_partial(codes + i, k - i)), av), k - i);
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

// A map's level tables, loaded into registers once per block.
struct Q8Regs {
  const float* div_pos;
  const float* div_neg;
  TabF<32> oct_div_pos, oct_div_neg;
  TabU<32> oct_base_pos, oct_base_neg;
  TabF<8> scale, offset, jmax, near_hi;
  TabU<8> start_pos, start_neg;
  explicit Q8Regs(const Q8Map& m)
      : div_pos(m.div_pos), div_neg(m.div_neg), oct_div_pos(tab<32>(m.oct_div_pos)), oct_div_neg(tab<32>(m.oct_div_neg)),
        oct_base_pos(tab<32>(m.oct_base_pos)), oct_base_neg(tab<32>(m.oct_base_neg)),
        scale(tab<8>(m.scale)), offset(tab<8>(m.offset)), jmax(tab<8>(m.jmax)), near_hi(tab<8>(m.near_hi)),
        start_pos(tab<8>(m.start_pos)), start_neg(tab<8>(m.start_neg)) {}
};

// The codes of q (x * inv clamped to [-1, 1]), by levels (see optim/blockwise8.h); `exact` is
// cleared when a lane lies too near a threshold inside its level.
template <bool kSigned>
RT_INLINE U32 q8_codes(const Q8Regs& t, uint32_t zero, F32 q, bool& exact) {
  const F32 a = abs(q);
  const M32 neg = lt(q, set1(0.0f));
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
  // the octave of |x| (clamped to [2**-31, 1]; its exponent - 96) gives the level below it and
  // the one divider inside it: two lookups in registers
  const U32 e = sub(shr<23>(bits(min(max(a, set1(0x1p-31f)), set1(1.0f)))), set1(96u));
  U32 base = lookup(t.oct_base_pos, e);
  F32 div = lookup(t.oct_div_pos, e);
  if (kSigned) {
    base = select(neg, lookup(t.oct_base_neg, e), base);
    div = select(neg, lookup(t.oct_div_neg, e), div);
  }
  const U32 level = inc_where(base, lt(div, a));
#else
  // (AVX2's permutes hold 8 entries: 8 comparisons are cheaper than a lookup in 32)
  U32 level = set1(0u);
  for (int l = 0; l < 8; ++l) {
    const F32 d = kSigned ? select(neg, set1(t.div_neg[l]), set1(t.div_pos[l])) : set1(t.div_pos[l]);
    level = inc_where(level, lt(d, a));
  }
#endif
  const M32 top = lt(set1(7.5f), to_f32(level));  // level 8: above the largest decade (x > 0 only)
  const U32 L = select(top, set1(7u), level);     // shares level 7's row
  const F32 u = fma(a, lookup(t.scale, L), lookup(t.offset, L));
  const F32 r = min(max(round_small(u), set1(1.0f)), lookup(t.near_hi, L));
  exact = exact && none(lt(abs(sub(u, r)), set1(kQ8Margin)));
  const U32 j = trunc_u32(min(max(u, set1(0.0f)), lookup(t.jmax, L)));
  U32 code = add(lookup(t.start_pos, L), j);
  if (kSigned) {
    code = select(neg, sub(lookup(t.start_neg, L), j), code);
  } else {
    code = select(neg, set1(zero), code);
  }
  return select(top, set1(255u), code);
}

// Encodes x[0, k) (one block, k <= kQ8Block) into codes and *absmax: the nearest values of x
// times 1 / absmax (as bitsandbytes scales: by the float reciprocal), clamped to [-1, 1]. A
// block of zeros, or one with a NaN or an infinity (absmax NaN: it decodes as NaN), gets the
// code of 0 throughout.
template <bool kSigned>
RT_INLINE void q8_encode_map(const Q8Map& m, const float* x, size_t k, uint8_t* codes, float* absmax) {
  const float a = block_absmax(x, k);
  *absmax = a;
  if (!(a > 0.0f)) {
    std::memset(codes, int(m.zero), k);
    return;
  }
  const Q8Regs t(m);
  const F32 inv = set1(1.0f / a), one = set1(1.0f), minus_one = set1(-1.0f);
  for (size_t i = 0; i < k; i += kLanes) {
    const size_t w = std::min(size_t(kLanes), k - i);
    const F32 v = w == size_t(kLanes) ? load(x + i) : load_partial(x + i, w);
    const F32 q = min(max(mul(v, inv), minus_one), one);
    bool exact = true;
    const U32 c = q8_codes<kSigned>(t, m.zero, q, exact);
    if (exact) {
      if (w == size_t(kLanes)) store_u8(codes + i, c); else store_u8_partial(codes + i, c, w);
    } else {
      alignas(64) float qs[kLanes];
      store(qs, q);
      for (size_t l = 0; l < w; ++l) codes[i + l] = uint8_t(q8_search(m, qs[l]));
    }
  }
}

RT_INLINE void q8_encode(const Q8Map& m, const float* x, size_t k, uint8_t* codes, float* absmax) {
  if (m.is_signed) {
    q8_encode_map<true>(m, x, k, codes, absmax);
  } else {
    q8_encode_map<false>(m, x, k, codes, absmax);
  }
}

RT_INLINE const Q8Map& q8_map(DType d) { return q8_tables().map[d == DType::q8u ? 1 : 0]; }

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
