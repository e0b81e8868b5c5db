// The few vector operations regtune's kernels need, for one target at a time.
//
// This header is included by the per-target kernel sources (kernels.cpp), which are compiled
// once per instruction set with REGTUNE_TARGET set to one of
//   REGTUNE_TARGET_SCALAR  (1 lane; plain C++, any CPU, any architecture)
//   REGTUNE_TARGET_AVX2    (8 x 32-bit lanes; AVX2 + FMA)
//   REGTUNE_TARGET_AVX512  (16 x 32-bit lanes; AVX-512 F/BW/DQ/VL)
// Every operation here is exact integer arithmetic or a single IEEE-754 operation (add, mul,
// fma, div, sqrt, min, max, conversion with round-to-nearest), so a kernel written once against
// this interface computes bit-identical results on every target. No function here calls libm
// except std::fma/std::sqrt on the scalar target, which IEEE-754 defines exactly.
//
// Types: U32/F32 hold kLanes 32-bit lanes; U64/F64 hold kLanes64 64-bit lanes. A pair of U32
// vectors splits into kHalves U64 vectors (combine64), so the double-precision kernels consume
// the same Philox output vectors as the single-precision ones.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "regtune/kernels.h"  // bfloat16_t, float16_t

#define REGTUNE_TARGET_SCALAR 0
#define REGTUNE_TARGET_AVX2 1
#define REGTUNE_TARGET_AVX512 2

#ifndef REGTUNE_TARGET
#error "REGTUNE_TARGET must be defined when compiling a per-target kernel source"
#endif

#if REGTUNE_TARGET != REGTUNE_TARGET_SCALAR
#include <immintrin.h>
#endif

#define RT_INLINE inline __attribute__((always_inline))

namespace regtune {
namespace REGTUNE_NS {
namespace simd {

// IEEE binary16 <-> float32 on one value, as x86's F16C instructions convert (the scalar
// target's conversion; the tests check it against them on all 65536 halves): exact widening;
// narrowing rounds to nearest even (or toward zero), subnormals kept, a NaN quieted with its
// payload's top bits kept.
RT_INLINE uint32_t half_bits_to_float_bits(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1F) return sign | 0x7F800000u | (m << 13) | (m ? 0x00400000u : 0u);
  if (e != 0) return sign | ((e + 112u) << 23) | (m << 13);
  if (m == 0) return sign;
  int shift = 0;  // a subnormal half: normalize its mantissa
  uint32_t mm = m;
  while (!(mm & 0x400u)) mm <<= 1, ++shift;
  return sign | (uint32_t(113 - shift) << 23) | ((mm & 0x3FFu) << 13);
}

RT_INLINE uint16_t float_bits_to_half_bits(uint32_t u, bool to_zero) {
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN, quieted
  const int e = int(a >> 23) - 127;
  if (e >= 16) return uint16_t(sign | (to_zero && a != 0x7F800000u ? 0x7BFFu : 0x7C00u));
  uint32_t m, shift;
  uint32_t base;
  if (e >= -14) {  // a normal half (or an overflow by rounding)
    m = a & 0x7FFFFFu;
    shift = 13;
    base = uint32_t(e + 15) << 10;
  } else {  // a subnormal half, or zero
    if (e < -25) return sign;  // below half of the smallest subnormal (2^-25 itself ties to 0)
    m = (a & 0x7FFFFFu) | 0x800000u;
    shift = uint32_t(-1 - e);  // 14 .. 24
    base = 0;
  }
  uint32_t h = base + (m >> shift);
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (!to_zero && (rem > half || (rem == half && (h & 1u)))) ++h;  // a carry rounds up into the exponent
  if (to_zero && h >= 0x7C00u) h = 0x7BFFu;
  return uint16_t(sign | h);
}

#if REGTUNE_TARGET == REGTUNE_TARGET_SCALAR
// ------------------------------------------------------------------------------------- scalar
constexpr int kLanes = 1;
constexpr int kLanes64 = 1;
constexpr int kHalves = 1;
struct U32 { uint32_t v; };
struct F32 { float v; };
struct U64 { uint64_t v; };
struct F64 { double v; };
using M32 = bool;
using M64 = bool;

RT_INLINE U32 set1(uint32_t x) { return {x}; }
RT_INLINE U32 iota_u32() { return {0u}; }
RT_INLINE U32 add(U32 a, U32 b) { return {a.v + b.v}; }
RT_INLINE U32 sub(U32 a, U32 b) { return {a.v - b.v}; }
RT_INLINE U32 bxor(U32 a, U32 b) { return {a.v ^ b.v}; }
RT_INLINE U32 band(U32 a, U32 b) { return {a.v & b.v}; }
template <int S> RT_INLINE U32 shr(U32 a) { return {a.v >> S}; }
// 1 where a < b (unsigned), else 0.
RT_INLINE U32 lt_one(U32 a, U32 b) { return {a.v < b.v ? 1u : 0u}; }
template <int S> RT_INLINE U32 shl(U32 a) { return {a.v << S}; }
RT_INLINE M32 test_bit(U32 a, uint32_t bit) { return (a.v & bit) != 0; }
RT_INLINE void mulhilo(U32 a, uint32_t m, U32& hi, U32& lo) {
  const uint64_t p = uint64_t(a.v) * m;
  hi.v = uint32_t(p >> 32);
  lo.v = uint32_t(p);
}
RT_INLINE void store(uint32_t* p, U32 a) { *p = a.v; }

RT_INLINE F32 set1(float x) { return {x}; }
RT_INLINE F32 add(F32 a, F32 b) { return {a.v + b.v}; }
RT_INLINE F32 sub(F32 a, F32 b) { return {a.v - b.v}; }
RT_INLINE F32 mul(F32 a, F32 b) { return {a.v * b.v}; }
RT_INLINE F32 div(F32 a, F32 b) { return {a.v / b.v}; }
RT_INLINE F32 fma(F32 a, F32 b, F32 c) { return {std::fma(a.v, b.v, c.v)}; }
RT_INLINE F32 sqrt(F32 a) { return {std::sqrt(a.v)}; }
// min/max with x86 semantics (second operand when unordered) so every target agrees on NaN.
RT_INLINE F32 min(F32 a, F32 b) { return {a.v < b.v ? a.v : b.v}; }
RT_INLINE F32 max(F32 a, F32 b) { return {a.v > b.v ? a.v : b.v}; }
RT_INLINE F32 neg(F32 a) { return {-a.v}; }
RT_INLINE F32 to_f32(U32 a) { return {float(int32_t(a.v))}; }  // a < 2^31
RT_INLINE U32 bits(F32 a) { U32 r; std::memcpy(&r.v, &a.v, 4); return r; }
RT_INLINE F32 from_bits(U32 a) { F32 r; std::memcpy(&r.v, &a.v, 4); return r; }
RT_INLINE M32 lt(F32 a, F32 b) { return a.v < b.v; }
RT_INLINE M32 le(F32 a, F32 b) { return a.v <= b.v; }
RT_INLINE F32 select(M32 m, F32 a, F32 b) { return m ? a : b; }
RT_INLINE U32 select(M32 m, U32 a, U32 b) { return m ? a : b; }
RT_INLINE bool any(M32 m) { return m; }
RT_INLINE bool all(M32 m) { return m; }
RT_INLINE void store(float* p, F32 a) { *p = a.v; }

RT_INLINE U64 set1(uint64_t x) { return {x}; }
RT_INLINE U64 add(U64 a, U64 b) { return {a.v + b.v}; }
RT_INLINE U64 sub(U64 a, U64 b) { return {a.v - b.v}; }
RT_INLINE U64 band(U64 a, U64 b) { return {a.v & b.v}; }
RT_INLINE U64 bor(U64 a, U64 b) { return {a.v | b.v}; }
RT_INLINE U64 bxor(U64 a, U64 b) { return {a.v ^ b.v}; }
RT_INLINE U64 xor3(U64 a, U64 b, U64 c) { return {a.v ^ b.v ^ c.v}; }
template <int S> RT_INLINE U64 shr(U64 a) { return {a.v >> S}; }
template <int S> RT_INLINE U64 shl(U64 a) { return {a.v << S}; }
RT_INLINE M64 test_bit(U64 a, uint64_t bit) { return (a.v & bit) != 0; }
RT_INLINE U64 iota_u64() { return {0u}; }
// (a mod 2^32) * m, the full 64-bit product, lane by lane.
RT_INLINE U64 mul32(U64 a, uint32_t m) { return {uint64_t(uint32_t(a.v)) * m}; }
// The low 32 bits of a's lanes, then b's: a U32 of kLanes lanes (scalar: a only).
RT_INLINE U32 pack_lo32(U64 a, U64 /*b*/) { return {uint32_t(a.v)}; }
// lo | hi << 32, lane by lane, for lanes [h * kLanes64, (h + 1) * kLanes64) of the inputs.
RT_INLINE U64 combine64(U32 lo, U32 hi, int /*h*/) { return {uint64_t(lo.v) | (uint64_t(hi.v) << 32)}; }
RT_INLINE F64 set1(double x) { return {x}; }
RT_INLINE F64 add(F64 a, F64 b) { return {a.v + b.v}; }
RT_INLINE F64 sub(F64 a, F64 b) { return {a.v - b.v}; }
RT_INLINE F64 mul(F64 a, F64 b) { return {a.v * b.v}; }
RT_INLINE F64 div(F64 a, F64 b) { return {a.v / b.v}; }
RT_INLINE F64 fma(F64 a, F64 b, F64 c) { return {std::fma(a.v, b.v, c.v)}; }
RT_INLINE F64 sqrt(F64 a) { return {std::sqrt(a.v)}; }
RT_INLINE F64 min(F64 a, F64 b) { return {a.v < b.v ? a.v : b.v}; }
RT_INLINE F64 max(F64 a, F64 b) { return {a.v > b.v ? a.v : b.v}; }
RT_INLINE F64 neg(F64 a) { return {-a.v}; }
RT_INLINE U64 bits(F64 a) { U64 r; std::memcpy(&r.v, &a.v, 8); return r; }
RT_INLINE F64 from_bits(U64 a) { F64 r; std::memcpy(&r.v, &a.v, 8); return r; }
RT_INLINE M64 lt(F64 a, F64 b) { return a.v < b.v; }
RT_INLINE M64 le(F64 a, F64 b) { return a.v <= b.v; }
RT_INLINE F64 select(M64 m, F64 a, F64 b) { return m ? a : b; }
RT_INLINE U64 select64(M64 m, U64 a, U64 b) { return m ? a : b; }
RT_INLINE void store(double* p, F64 a) { *p = a.v; }

// Loads, and the partial loads/stores of the last k (0 < k <= lanes) elements of an array:
// lanes past k read as 0 and are not written, so a kernel's tail needs no second copy of its body.
RT_INLINE F32 load(const float* p) { return {*p}; }
RT_INLINE F64 load(const double* p) { return {*p}; }
RT_INLINE F32 load_partial(const float* p, size_t k) { return {k ? *p : 0.0f}; }
RT_INLINE F64 load_partial(const double* p, size_t k) { return {k ? *p : 0.0}; }
RT_INLINE void store_partial(float* p, F32 a, size_t k) { if (k) *p = a.v; }
RT_INLINE void store_partial(double* p, F64 a, size_t k) { if (k) *p = a.v; }
// kLanes64 floats widened to double (exactly).
RT_INLINE F64 load_wide(const float* p) { return {double(*p)}; }
RT_INLINE F64 load_wide_partial(const float* p, size_t k) { return {k ? double(*p) : 0.0}; }

// p[4 * l + k] = (a, b, c, d)[k][l]: lane-major Philox words back to memory order.
RT_INLINE void store_interleave4(uint32_t* p, U32 a, U32 b, U32 c, U32 d) {
  p[0] = a.v; p[1] = b.v; p[2] = c.v; p[3] = d.v;
}
RT_INLINE void store_interleave4(float* p, F32 a, F32 b, F32 c, F32 d) {
  p[0] = a.v; p[1] = b.v; p[2] = c.v; p[3] = d.v;
}
// p[2 * l + k] = (a, b)[k][l] for the kLanes64 lanes of half h's output.
RT_INLINE void store_interleave2(double* p, F64 a, F64 b) { p[0] = a.v; p[1] = b.v; }
// p[2 * l + k] = (a, b)[k][l] for 32-bit lanes.
RT_INLINE void store_interleave2(uint32_t* p, U32 a, U32 b) { p[0] = a.v; p[1] = b.v; }

// Word loads, unsigned compare and mask <-> bit conversions (dropout): bit l of a mask word is lane l.
RT_INLINE U32 load(const uint32_t* p) { return {*p}; }
RT_INLINE M32 ge(U32 a, U32 b) { return a.v >= b.v; }  // unsigned
RT_INLINE uint32_t mask_bits(M32 m) { return m ? 1u : 0u; }
RT_INLINE M32 mask32_from_bits(uint32_t b) { return (b & 1u) != 0; }
RT_INLINE M64 mask64_from_bits(uint32_t b) { return (b & 1u) != 0; }


// 16-bit floats: H16 holds kLanes 16-bit values (see "every target" for the formulas).
using H16 = uint16_t;
RT_INLINE H16 load_h16(const uint16_t* p) { return *p; }
RT_INLINE H16 load_h16_partial(const uint16_t* p, size_t k) { return k ? *p : uint16_t(0); }
RT_INLINE void store_h16(uint16_t* p, H16 h) { *p = h; }
RT_INLINE void store_h16_partial(uint16_t* p, H16 h, size_t k) { if (k) *p = h; }
RT_INLINE U32 widen16(H16 h) { return {uint32_t(h)}; }
RT_INLINE H16 narrow16(U32 a) { return uint16_t(a.v); }
RT_INLINE F32 half_to_f32(H16 h) { F32 r; const uint32_t b = half_bits_to_float_bits(h); std::memcpy(&r.v, &b, 4); return r; }
template <bool kToZero>
RT_INLINE H16 f32_to_half(F32 a) { uint32_t b; std::memcpy(&b, &a.v, 4); return float_bits_to_half_bits(b, kToZero); }

// Bytes and small tables (the blockwise 8-bit state): kLanes bytes widened to 32-bit lanes and
// back (the low byte of each lane), a lookup in a table of 8 by lane index (< 8), truncation of
// floats in [0, 2^31) to integers, a +1 where a mask is set.
RT_INLINE U32 load_u8(const uint8_t* p) { return {uint32_t(*p)}; }
RT_INLINE U32 load_u8_partial(const uint8_t* p, size_t k) { return {k ? uint32_t(*p) : 0u}; }
RT_INLINE void store_u8(uint8_t* p, U32 a) { *p = uint8_t(a.v); }
RT_INLINE void store_u8_partial(uint8_t* p, U32 a, size_t k) { if (k) *p = uint8_t(a.v); }
// Small tables held for lookups by lane index: TabF<N> / TabU<N> of N <= 32 entries (in registers
// on the vector targets), loaded once with tab(), read with lookup(table, index < N).
template <int N> struct TabF { const float* p; };
template <int N> struct TabU { const uint32_t* p; };
template <int N> RT_INLINE TabF<N> tab(const float* p) { return {p}; }
template <int N> RT_INLINE TabU<N> tab(const uint32_t* p) { return {p}; }
template <int N> RT_INLINE F32 lookup(const TabF<N>& t, U32 i) { return {t.p[i.v]}; }
template <int N> RT_INLINE U32 lookup(const TabU<N>& t, U32 i) { return {t.p[i.v]}; }
RT_INLINE U32 trunc_u32(F32 a) { return {uint32_t(int32_t(a.v))}; }
RT_INLINE U32 inc_where(U32 a, M32 m) { return {a.v + (m ? 1u : 0u)}; }
RT_INLINE bool none(M32 m) { return !m; }

#elif REGTUNE_TARGET == REGTUNE_TARGET_AVX2
// --------------------------------------------------------------------------------------- AVX2
constexpr int kLanes = 8;
constexpr int kLanes64 = 4;
constexpr int kHalves = 2;
struct U32 { __m256i v; };
struct F32 { __m256 v; };
struct U64 { __m256i v; };
struct F64 { __m256d v; };
struct M32 { __m256 v; };
struct M64 { __m256d v; };

RT_INLINE U32 set1(uint32_t x) { return {_mm256_set1_epi32(int(x))}; }
RT_INLINE U32 iota_u32() { return {_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)}; }
RT_INLINE U32 add(U32 a, U32 b) { return {_mm256_add_epi32(a.v, b.v)}; }
RT_INLINE U32 sub(U32 a, U32 b) { return {_mm256_sub_epi32(a.v, b.v)}; }
RT_INLINE U32 bxor(U32 a, U32 b) { return {_mm256_xor_si256(a.v, b.v)}; }
RT_INLINE U32 band(U32 a, U32 b) { return {_mm256_and_si256(a.v, b.v)}; }
template <int S> RT_INLINE U32 shr(U32 a) { return {_mm256_srli_epi32(a.v, S)}; }
RT_INLINE U32 lt_one(U32 a, U32 b) {
  const __m256i bias = _mm256_set1_epi32(int(0x80000000u));
  const __m256i gt = _mm256_cmpgt_epi32(_mm256_xor_si256(b.v, bias), _mm256_xor_si256(a.v, bias));
  return {_mm256_srli_epi32(gt, 31)};
}
template <int S> RT_INLINE U32 shl(U32 a) { return {_mm256_slli_epi32(a.v, S)}; }
RT_INLINE M32 test_bit(U32 a, uint32_t bit) {
  const __m256i b = _mm256_set1_epi32(int(bit));
  return {_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(a.v, b), b))};
}
RT_INLINE void mulhilo(U32 a, uint32_t m, U32& hi, U32& lo) {
  const __m256i mv = _mm256_set1_epi32(int(m));
  const __m256i even = _mm256_mul_epu32(a.v, mv);                          // lanes 0,2,..
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a.v, 32), mv);    // lanes 1,3,..
  lo.v = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi.v = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}
RT_INLINE void store(uint32_t* p, U32 a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a.v); }

RT_INLINE F32 set1(float x) { return {_mm256_set1_ps(x)}; }
RT_INLINE F32 add(F32 a, F32 b) { return {_mm256_add_ps(a.v, b.v)}; }
RT_INLINE F32 sub(F32 a, F32 b) { return {_mm256_sub_ps(a.v, b.v)}; }
RT_INLINE F32 mul(F32 a, F32 b) { return {_mm256_mul_ps(a.v, b.v)}; }
RT_INLINE F32 div(F32 a, F32 b) { return {_mm256_div_ps(a.v, b.v)}; }
RT_INLINE F32 fma(F32 a, F32 b, F32 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
RT_INLINE F32 sqrt(F32 a) { return {_mm256_sqrt_ps(a.v)}; }
RT_INLINE F32 min(F32 a, F32 b) { return {_mm256_min_ps(a.v, b.v)}; }
RT_INLINE F32 max(F32 a, F32 b) { return {_mm256_max_ps(a.v, b.v)}; }
RT_INLINE F32 neg(F32 a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
RT_INLINE F32 to_f32(U32 a) { return {_mm256_cvtepi32_ps(a.v)}; }
RT_INLINE U32 bits(F32 a) { return {_mm256_castps_si256(a.v)}; }
RT_INLINE F32 from_bits(U32 a) { return {_mm256_castsi256_ps(a.v)}; }
RT_INLINE M32 lt(F32 a, F32 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
RT_INLINE M32 le(F32 a, F32 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
RT_INLINE F32 select(M32 m, F32 a, F32 b) { return {_mm256_blendv_ps(b.v, a.v, m.v)}; }
RT_INLINE U32 select(M32 m, U32 a, U32 b) {
  return {_mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b.v), _mm256_castsi256_ps(a.v), m.v))};
}
RT_INLINE bool any(M32 m) { return _mm256_movemask_ps(m.v) != 0; }
RT_INLINE bool all(M32 m) { return _mm256_movemask_ps(m.v) == 0xFF; }
RT_INLINE void store(float* p, F32 a) { _mm256_storeu_ps(p, a.v); }

RT_INLINE U64 set1(uint64_t x) { return {_mm256_set1_epi64x(int64_t(x))}; }
RT_INLINE U64 add(U64 a, U64 b) { return {_mm256_add_epi64(a.v, b.v)}; }
RT_INLINE U64 sub(U64 a, U64 b) { return {_mm256_sub_epi64(a.v, b.v)}; }
RT_INLINE U64 band(U64 a, U64 b) { return {_mm256_and_si256(a.v, b.v)}; }
RT_INLINE U64 bor(U64 a, U64 b) { return {_mm256_or_si256(a.v, b.v)}; }
RT_INLINE U64 bxor(U64 a, U64 b) { return {_mm256_xor_si256(a.v, b.v)}; }
RT_INLINE U64 xor3(U64 a, U64 b, U64 c) { return {_mm256_xor_si256(_mm256_xor_si256(a.v, b.v), c.v)}; }
template <int S> RT_INLINE U64 shr(U64 a) { return {_mm256_srli_epi64(a.v, S)}; }
template <int S> RT_INLINE U64 shl(U64 a) { return {_mm256_slli_epi64(a.v, S)}; }
RT_INLINE M64 test_bit(U64 a, uint64_t bit) {
  const __m256i b = _mm256_set1_epi64x(int64_t(bit));
  return {_mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(a.v, b), b))};
}
RT_INLINE U64 iota_u64() { return {_mm256_setr_epi64x(0, 1, 2, 3)}; }
RT_INLINE U64 mul32(U64 a, uint32_t m) { return {_mm256_mul_epu32(a.v, _mm256_set1_epi64x(m))}; }
RT_INLINE U32 pack_lo32(U64 a, U64 b) {
  const __m256 ab = _mm256_shuffle_ps(_mm256_castsi256_ps(a.v), _mm256_castsi256_ps(b.v), 0x88);  // a0 a1 b0 b1 | a2 a3 b2 b3
  return {_mm256_permute4x64_epi64(_mm256_castps_si256(ab), 0xD8)};
}
RT_INLINE U64 combine64(U32 lo, U32 hi, int h) {
  const __m128i l = h == 0 ? _mm256_castsi256_si128(lo.v) : _mm256_extracti128_si256(lo.v, 1);
  const __m128i u = h == 0 ? _mm256_castsi256_si128(hi.v) : _mm256_extracti128_si256(hi.v, 1);
  return {_mm256_or_si256(_mm256_cvtepu32_epi64(l), _mm256_slli_epi64(_mm256_cvtepu32_epi64(u), 32))};
}
RT_INLINE F64 set1(double x) { return {_mm256_set1_pd(x)}; }
RT_INLINE F64 add(F64 a, F64 b) { return {_mm256_add_pd(a.v, b.v)}; }
RT_INLINE F64 sub(F64 a, F64 b) { return {_mm256_sub_pd(a.v, b.v)}; }
RT_INLINE F64 mul(F64 a, F64 b) { return {_mm256_mul_pd(a.v, b.v)}; }
RT_INLINE F64 div(F64 a, F64 b) { return {_mm256_div_pd(a.v, b.v)}; }
RT_INLINE F64 fma(F64 a, F64 b, F64 c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
RT_INLINE F64 sqrt(F64 a) { return {_mm256_sqrt_pd(a.v)}; }
RT_INLINE F64 min(F64 a, F64 b) { return {_mm256_min_pd(a.v, b.v)}; }
RT_INLINE F64 max(F64 a, F64 b) { return {_mm256_max_pd(a.v, b.v)}; }
RT_INLINE F64 neg(F64 a) { return {_mm256_xor_pd(a.v, _mm256_set1_pd(-0.0))}; }
RT_INLINE U64 bits(F64 a) { return {_mm256_castpd_si256(a.v)}; }
RT_INLINE F64 from_bits(U64 a) { return {_mm256_castsi256_pd(a.v)}; }
RT_INLINE M64 lt(F64 a, F64 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ)}; }
RT_INLINE M64 le(F64 a, F64 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_LE_OQ)}; }
RT_INLINE F64 select(M64 m, F64 a, F64 b) { return {_mm256_blendv_pd(b.v, a.v, m.v)}; }
RT_INLINE U64 select64(M64 m, U64 a, U64 b) {
  return {_mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(b.v), _mm256_castsi256_pd(a.v), m.v))};
}
RT_INLINE bool any(M64 m) { return _mm256_movemask_pd(m.v) != 0; }
RT_INLINE void store(double* p, F64 a) { _mm256_storeu_pd(p, a.v); }

RT_INLINE __m256i first_k32(size_t k) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
RT_INLINE __m256i first_k64(size_t k) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(int64_t(k)), _mm256_setr_epi64x(0, 1, 2, 3));
}
RT_INLINE F32 load(const float* p) { return {_mm256_loadu_ps(p)}; }
RT_INLINE F64 load(const double* p) { return {_mm256_loadu_pd(p)}; }
RT_INLINE F32 load_partial(const float* p, size_t k) { return {_mm256_maskload_ps(p, first_k32(k))}; }
RT_INLINE F64 load_partial(const double* p, size_t k) { return {_mm256_maskload_pd(p, first_k64(k))}; }
RT_INLINE void store_partial(float* p, F32 a, size_t k) { _mm256_maskstore_ps(p, first_k32(k), a.v); }
RT_INLINE void store_partial(double* p, F64 a, size_t k) { _mm256_maskstore_pd(p, first_k64(k), a.v); }
RT_INLINE F64 load_wide(const float* p) { return {_mm256_cvtps_pd(_mm_loadu_ps(p))}; }
RT_INLINE F64 load_wide_partial(const float* p, size_t k) {
  const __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32(int(k)), _mm_setr_epi32(0, 1, 2, 3));
  return {_mm256_cvtps_pd(_mm_maskload_ps(p, m))};
}

RT_INLINE void store_interleave4(uint32_t* p, U32 a, U32 b, U32 c, U32 d) {
  // 4x4 transposes inside each 128-bit half, then the halves into place.
  const __m256i ab_lo = _mm256_unpacklo_epi32(a.v, b.v);  // a0 b0 a1 b1 | a4 b4 a5 b5
  const __m256i ab_hi = _mm256_unpackhi_epi32(a.v, b.v);  // a2 b2 a3 b3 | a6 b6 a7 b7
  const __m256i cd_lo = _mm256_unpacklo_epi32(c.v, d.v);
  const __m256i cd_hi = _mm256_unpackhi_epi32(c.v, d.v);
  const __m256i r0 = _mm256_unpacklo_epi64(ab_lo, cd_lo);  // lane 0 | lane 4
  const __m256i r1 = _mm256_unpackhi_epi64(ab_lo, cd_lo);  // lane 1 | lane 5
  const __m256i r2 = _mm256_unpacklo_epi64(ab_hi, cd_hi);  // lane 2 | lane 6
  const __m256i r3 = _mm256_unpackhi_epi64(ab_hi, cd_hi);  // lane 3 | lane 7
  __m256i* q = reinterpret_cast<__m256i*>(p);
  _mm256_storeu_si256(q + 0, _mm256_permute2x128_si256(r0, r1, 0x20));
  _mm256_storeu_si256(q + 1, _mm256_permute2x128_si256(r2, r3, 0x20));
  _mm256_storeu_si256(q + 2, _mm256_permute2x128_si256(r0, r1, 0x31));
  _mm256_storeu_si256(q + 3, _mm256_permute2x128_si256(r2, r3, 0x31));
}
RT_INLINE void store_interleave4(float* p, F32 a, F32 b, F32 c, F32 d) {
  store_interleave4(reinterpret_cast<uint32_t*>(p), bits(a), bits(b), bits(c), bits(d));
}
RT_INLINE void store_interleave2(uint32_t* p, U32 a, U32 b) {
  const __m256i lo = _mm256_unpacklo_epi32(a.v, b.v);  // a0 b0 a1 b1 | a4 b4 a5 b5
  const __m256i hi = _mm256_unpackhi_epi32(a.v, b.v);  // a2 b2 a3 b3 | a6 b6 a7 b7
  __m256i* q = reinterpret_cast<__m256i*>(p);
  _mm256_storeu_si256(q + 0, _mm256_permute2x128_si256(lo, hi, 0x20));
  _mm256_storeu_si256(q + 1, _mm256_permute2x128_si256(lo, hi, 0x31));
}
RT_INLINE void store_interleave2(double* p, F64 a, F64 b) {
  const __m256d lo = _mm256_unpacklo_pd(a.v, b.v);  // a0 b0 | a2 b2
  const __m256d hi = _mm256_unpackhi_pd(a.v, b.v);  // a1 b1 | a3 b3
  _mm256_storeu_pd(p, _mm256_permute2f128_pd(lo, hi, 0x20));
  _mm256_storeu_pd(p + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
}

RT_INLINE U32 load(const uint32_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
RT_INLINE M32 ge(U32 a, U32 b) {  // unsigned: a >= b <=> max(a, b) == a
  return {_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(a.v, b.v), a.v))};
}
RT_INLINE uint32_t mask_bits(M32 m) { return uint32_t(_mm256_movemask_ps(m.v)); }
RT_INLINE M32 mask32_from_bits(uint32_t b) {
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return {_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(b)), bit), bit))};
}
RT_INLINE M64 mask64_from_bits(uint32_t b) {
  const __m256i bit = _mm256_setr_epi64x(1, 2, 4, 8);
  return {_mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(int64_t(b)), bit), bit))};
}


using H16 = __m128i;
RT_INLINE H16 load_h16(const uint16_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
RT_INLINE H16 load_h16_partial(const uint16_t* p, size_t k) {
  alignas(16) uint16_t t[8] = {};
  std::memcpy(t, p, k * 2);
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}
RT_INLINE void store_h16(uint16_t* p, H16 h) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h); }
RT_INLINE void store_h16_partial(uint16_t* p, H16 h, size_t k) {
  alignas(16) uint16_t t[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(t), h);
  std::memcpy(p, t, k * 2);
}
RT_INLINE U32 widen16(H16 h) { return {_mm256_cvtepu16_epi32(h)}; }
RT_INLINE H16 narrow16(U32 a) {  // lanes < 2^16
  const __m256i packed = _mm256_packus_epi32(a.v, a.v);  // a0-3 a0-3 | a4-7 a4-7
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}
RT_INLINE F32 half_to_f32(H16 h) { return {_mm256_cvtph_ps(h)}; }
template <bool kToZero>
RT_INLINE H16 f32_to_half(F32 a) {
  return _mm256_cvtps_ph(a.v, (kToZero ? _MM_FROUND_TO_ZERO : _MM_FROUND_TO_NEAREST_INT) | _MM_FROUND_NO_EXC);
}
// Bytes and small tables (the blockwise 8-bit state; see the scalar target).
RT_INLINE U32 load_u8(const uint8_t* p) {
  return {_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))};
}
RT_INLINE U32 load_u8_partial(const uint8_t* p, size_t k) {
  uint8_t b[8] = {};
  std::memcpy(b, p, k);
  return load_u8(b);
}
RT_INLINE __m128i narrow_u8(U32 a) {  // lanes < 256
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(a.v), _mm256_extracti128_si256(a.v, 1));
  return _mm_packus_epi16(w, w);
}
RT_INLINE void store_u8(uint8_t* p, U32 a) { _mm_storel_epi64(reinterpret_cast<__m128i*>(p), narrow_u8(a)); }
RT_INLINE void store_u8_partial(uint8_t* p, U32 a, size_t k) {
  uint8_t b[16];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(b), narrow_u8(a));
  std::memcpy(p, b, k);
}
template <int N> struct TabF { __m256 v[N / 8]; };
template <int N> struct TabU { __m256 v[N / 8]; };
template <int N> RT_INLINE TabF<N> tab(const float* p) {
  static_assert(N == 8 || N == 32, "tables of 8 or 32");
  TabF<N> t;
  for (int k = 0; k < N / 8; ++k) t.v[k] = _mm256_loadu_ps(p + 8 * k);
  return t;
}
template <int N> RT_INLINE TabU<N> tab(const uint32_t* p) {
  TabF<N> f = tab<N>(reinterpret_cast<const float*>(p));
  TabU<N> t;
  for (int k = 0; k < N / 8; ++k) t.v[k] = f.v[k];
  return t;
}
// 8 entries: one permute; 32: four, then bits 3 and 4 of the index choose (blendv reads the
// sign bit, where a shift puts them).
template <int N> RT_INLINE __m256 lookup_ps(const __m256* v, __m256i i) {
  if constexpr (N == 8) {
    return _mm256_permutevar8x32_ps(v[0], i);
  } else {
    const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)), b4 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 27));
    const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(v[0], i), _mm256_permutevar8x32_ps(v[1], i), b3);
    const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(v[2], i), _mm256_permutevar8x32_ps(v[3], i), b3);
    return _mm256_blendv_ps(lo, hi, b4);
  }
}
template <int N> RT_INLINE F32 lookup(const TabF<N>& t, U32 i) { return {lookup_ps<N>(t.v, i.v)}; }
template <int N> RT_INLINE U32 lookup(const TabU<N>& t, U32 i) { return {_mm256_castps_si256(lookup_ps<N>(t.v, i.v))}; }
RT_INLINE U32 trunc_u32(F32 a) { return {_mm256_cvttps_epi32(a.v)}; }
RT_INLINE U32 inc_where(U32 a, M32 m) { return {_mm256_sub_epi32(a.v, _mm256_castps_si256(m.v))}; }
RT_INLINE bool none(M32 m) { return _mm256_movemask_ps(m.v) == 0; }

#elif REGTUNE_TARGET == REGTUNE_TARGET_AVX512
// ------------------------------------------------------------------------------------ AVX-512
constexpr int kLanes = 16;
constexpr int kLanes64 = 8;
constexpr int kHalves = 2;
struct U32 { __m512i v; };
struct F32 { __m512 v; };
struct U64 { __m512i v; };
struct F64 { __m512d v; };
using M32 = __mmask16;
using M64 = __mmask8;

RT_INLINE U32 set1(uint32_t x) { return {_mm512_set1_epi32(int(x))}; }
RT_INLINE U32 iota_u32() { return {_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)}; }
RT_INLINE U32 add(U32 a, U32 b) { return {_mm512_add_epi32(a.v, b.v)}; }
RT_INLINE U32 sub(U32 a, U32 b) { return {_mm512_sub_epi32(a.v, b.v)}; }
RT_INLINE U32 bxor(U32 a, U32 b) { return {_mm512_xor_si512(a.v, b.v)}; }
RT_INLINE U32 band(U32 a, U32 b) { return {_mm512_and_si512(a.v, b.v)}; }
template <int S> RT_INLINE U32 shr(U32 a) { return {_mm512_srli_epi32(a.v, S)}; }
RT_INLINE U32 lt_one(U32 a, U32 b) {
  return {_mm512_maskz_mov_epi32(_mm512_cmplt_epu32_mask(a.v, b.v), _mm512_set1_epi32(1))};
}
template <int S> RT_INLINE U32 shl(U32 a) { return {_mm512_slli_epi32(a.v, S)}; }
RT_INLINE M32 test_bit(U32 a, uint32_t bit) { return _mm512_test_epi32_mask(a.v, _mm512_set1_epi32(int(bit))); }
RT_INLINE void mulhilo(U32 a, uint32_t m, U32& hi, U32& lo) {
  const __m512i mv = _mm512_set1_epi32(int(m));
  const __m512i even = _mm512_mul_epu32(a.v, mv);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a.v, 32), mv);
  lo.v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi.v = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}
RT_INLINE void store(uint32_t* p, U32 a) { _mm512_storeu_si512(p, a.v); }

RT_INLINE F32 set1(float x) { return {_mm512_set1_ps(x)}; }
RT_INLINE F32 add(F32 a, F32 b) { return {_mm512_add_ps(a.v, b.v)}; }
RT_INLINE F32 sub(F32 a, F32 b) { return {_mm512_sub_ps(a.v, b.v)}; }
RT_INLINE F32 mul(F32 a, F32 b) { return {_mm512_mul_ps(a.v, b.v)}; }
RT_INLINE F32 div(F32 a, F32 b) { return {_mm512_div_ps(a.v, b.v)}; }
RT_INLINE F32 fma(F32 a, F32 b, F32 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
RT_INLINE F32 sqrt(F32 a) { return {_mm512_sqrt_ps(a.v)}; }
RT_INLINE F32 min(F32 a, F32 b) { return {_mm512_min_ps(a.v, b.v)}; }
RT_INLINE F32 max(F32 a, F32 b) { return {_mm512_max_ps(a.v, b.v)}; }
RT_INLINE F32 neg(F32 a) {
  return {_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(int(0x80000000u))))};
}
RT_INLINE F32 to_f32(U32 a) { return {_mm512_cvtepi32_ps(a.v)}; }
RT_INLINE U32 bits(F32 a) { return {_mm512_castps_si512(a.v)}; }
RT_INLINE F32 from_bits(U32 a) { return {_mm512_castsi512_ps(a.v)}; }
RT_INLINE M32 lt(F32 a, F32 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
RT_INLINE M32 le(F32 a, F32 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ); }
RT_INLINE F32 select(M32 m, F32 a, F32 b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }
RT_INLINE U32 select(M32 m, U32 a, U32 b) { return {_mm512_mask_blend_epi32(m, b.v, a.v)}; }
RT_INLINE bool any(M32 m) { return m != 0; }
RT_INLINE bool all(M32 m) { return m == 0xFFFF; }
RT_INLINE void store(float* p, F32 a) { _mm512_storeu_ps(p, a.v); }

RT_INLINE U64 set1(uint64_t x) { return {_mm512_set1_epi64(int64_t(x))}; }
RT_INLINE U64 add(U64 a, U64 b) { return {_mm512_add_epi64(a.v, b.v)}; }
RT_INLINE U64 sub(U64 a, U64 b) { return {_mm512_sub_epi64(a.v, b.v)}; }
RT_INLINE U64 band(U64 a, U64 b) { return {_mm512_and_si512(a.v, b.v)}; }
RT_INLINE U64 bor(U64 a, U64 b) { return {_mm512_or_si512(a.v, b.v)}; }
RT_INLINE U64 bxor(U64 a, U64 b) { return {_mm512_xor_si512(a.v, b.v)}; }
RT_INLINE U64 xor3(U64 a, U64 b, U64 c) { return {_mm512_ternarylogic_epi64(a.v, b.v, c.v, 0x96)}; }
template <int S> RT_INLINE U64 shr(U64 a) { return {_mm512_srli_epi64(a.v, S)}; }
template <int S> RT_INLINE U64 shl(U64 a) { return {_mm512_slli_epi64(a.v, S)}; }
RT_INLINE M64 test_bit(U64 a, uint64_t bit) { return _mm512_test_epi64_mask(a.v, _mm512_set1_epi64(int64_t(bit))); }
RT_INLINE U64 iota_u64() { return {_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7)}; }
RT_INLINE U64 mul32(U64 a, uint32_t m) { return {_mm512_mul_epu32(a.v, _mm512_set1_epi64(m))}; }
RT_INLINE U32 pack_lo32(U64 a, U64 b) {
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return {_mm512_permutex2var_epi32(a.v, idx, b.v)};
}
RT_INLINE U64 combine64(U32 lo, U32 hi, int h) {
  const __m256i l = h == 0 ? _mm512_castsi512_si256(lo.v) : _mm512_extracti64x4_epi64(lo.v, 1);
  const __m256i u = h == 0 ? _mm512_castsi512_si256(hi.v) : _mm512_extracti64x4_epi64(hi.v, 1);
  return {_mm512_or_si512(_mm512_cvtepu32_epi64(l), _mm512_slli_epi64(_mm512_cvtepu32_epi64(u), 32))};
}
RT_INLINE F64 set1(double x) { return {_mm512_set1_pd(x)}; }
RT_INLINE F64 add(F64 a, F64 b) { return {_mm512_add_pd(a.v, b.v)}; }
RT_INLINE F64 sub(F64 a, F64 b) { return {_mm512_sub_pd(a.v, b.v)}; }
RT_INLINE F64 mul(F64 a, F64 b) { return {_mm512_mul_pd(a.v, b.v)}; }
RT_INLINE F64 div(F64 a, F64 b) { return {_mm512_div_pd(a.v, b.v)}; }
RT_INLINE F64 fma(F64 a, F64 b, F64 c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
RT_INLINE F64 sqrt(F64 a) { return {_mm512_sqrt_pd(a.v)}; }
RT_INLINE F64 min(F64 a, F64 b) { return {_mm512_min_pd(a.v, b.v)}; }
RT_INLINE F64 max(F64 a, F64 b) { return {_mm512_max_pd(a.v, b.v)}; }
RT_INLINE F64 neg(F64 a) {
  return {_mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(a.v), _mm512_set1_epi64(int64_t(0x8000000000000000ull))))};
}
RT_INLINE U64 bits(F64 a) { return {_mm512_castpd_si512(a.v)}; }
RT_INLINE F64 from_bits(U64 a) { return {_mm512_castsi512_pd(a.v)}; }
RT_INLINE M64 lt(F64 a, F64 b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ); }
RT_INLINE M64 le(F64 a, F64 b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LE_OQ); }
RT_INLINE F64 select(M64 m, F64 a, F64 b) { return {_mm512_mask_blend_pd(m, b.v, a.v)}; }
RT_INLINE U64 select64(M64 m, U64 a, U64 b) { return {_mm512_mask_blend_epi64(m, b.v, a.v)}; }
RT_INLINE bool any(M64 m) { return m != 0; }
RT_INLINE void store(double* p, F64 a) { _mm512_storeu_pd(p, a.v); }

RT_INLINE F32 load(const float* p) { return {_mm512_loadu_ps(p)}; }
RT_INLINE F64 load(const double* p) { return {_mm512_loadu_pd(p)}; }
RT_INLINE F32 load_partial(const float* p, size_t k) { return {_mm512_maskz_loadu_ps(__mmask16((1u << k) - 1), p)}; }
RT_INLINE F64 load_partial(const double* p, size_t k) { return {_mm512_maskz_loadu_pd(__mmask8((1u << k) - 1), p)}; }
RT_INLINE void store_partial(float* p, F32 a, size_t k) { _mm512_mask_storeu_ps(p, __mmask16((1u << k) - 1), a.v); }
RT_INLINE void store_partial(double* p, F64 a, size_t k) { _mm512_mask_storeu_pd(p, __mmask8((1u << k) - 1), a.v); }
RT_INLINE F64 load_wide(const float* p) { return {_mm512_cvtps_pd(_mm256_loadu_ps(p))}; }
RT_INLINE F64 load_wide_partial(const float* p, size_t k) {
  return {_mm512_cvtps_pd(_mm256_maskz_loadu_ps(__mmask8((1u << k) - 1), p))};
}

RT_INLINE void store_interleave4(uint32_t* p, U32 a, U32 b, U32 c, U32 d) {
  const __m512i ab_lo = _mm512_unpacklo_epi32(a.v, b.v);  // per 128-bit block: a0 b0 a1 b1
  const __m512i ab_hi = _mm512_unpackhi_epi32(a.v, b.v);  // a2 b2 a3 b3
  const __m512i cd_lo = _mm512_unpacklo_epi32(c.v, d.v);
  const __m512i cd_hi = _mm512_unpackhi_epi32(c.v, d.v);
  const __m512i r0 = _mm512_unpacklo_epi64(ab_lo, cd_lo);  // lanes 0,4,8,12 (one per block)
  const __m512i r1 = _mm512_unpackhi_epi64(ab_lo, cd_lo);  // lanes 1,5,9,13
  const __m512i r2 = _mm512_unpacklo_epi64(ab_hi, cd_hi);  // lanes 2,6,10,14
  const __m512i r3 = _mm512_unpackhi_epi64(ab_hi, cd_hi);  // lanes 3,7,11,15
  // Gather 128-bit blocks: out k holds lanes 4k..4k+3 = block k of r0, r1, r2, r3.
  const __m512i t0 = _mm512_shuffle_i32x4(r0, r1, 0x44);  // r0.b0 r0.b1 r1.b0 r1.b1
  const __m512i t1 = _mm512_shuffle_i32x4(r2, r3, 0x44);  // r2.b0 r2.b1 r3.b0 r3.b1
  const __m512i t2 = _mm512_shuffle_i32x4(r0, r1, 0xEE);  // r0.b2 r0.b3 r1.b2 r1.b3
  const __m512i t3 = _mm512_shuffle_i32x4(r2, r3, 0xEE);
  _mm512_storeu_si512(p + 0, _mm512_shuffle_i32x4(t0, t1, 0x88));   // r0.b0 r1.b0 r2.b0 r3.b0
  _mm512_storeu_si512(p + 16, _mm512_shuffle_i32x4(t0, t1, 0xDD));  // r0.b1 r1.b1 r2.b1 r3.b1
  _mm512_storeu_si512(p + 32, _mm512_shuffle_i32x4(t2, t3, 0x88));
  _mm512_storeu_si512(p + 48, _mm512_shuffle_i32x4(t2, t3, 0xDD));
}
RT_INLINE void store_interleave4(float* p, F32 a, F32 b, F32 c, F32 d) {
  store_interleave4(reinterpret_cast<uint32_t*>(p), bits(a), bits(b), bits(c), bits(d));
}
RT_INLINE void store_interleave2(uint32_t* p, U32 a, U32 b) {
  const __m512i lo = _mm512_unpacklo_epi32(a.v, b.v);  // per 128-bit block k: a4k b4k a4k+1 b4k+1
  const __m512i hi = _mm512_unpackhi_epi32(a.v, b.v);  // a4k+2 b4k+2 a4k+3 b4k+3
  // 64-bit pieces: out 0 = lo.b0 hi.b0 lo.b1 hi.b1, out 1 = lo.b2 hi.b2 lo.b3 hi.b3.
  const __m512i i0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), i1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  _mm512_storeu_si512(p + 0, _mm512_permutex2var_epi64(lo, i0, hi));
  _mm512_storeu_si512(p + 16, _mm512_permutex2var_epi64(lo, i1, hi));
}
RT_INLINE void store_interleave2(double* p, F64 a, F64 b) {
  const __m512i lo_idx = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
  const __m512i hi_idx = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  _mm512_storeu_pd(p, _mm512_permutex2var_pd(a.v, lo_idx, b.v));
  _mm512_storeu_pd(p + 8, _mm512_permutex2var_pd(a.v, hi_idx, b.v));
}
RT_INLINE U32 load(const uint32_t* p) { return {_mm512_loadu_si512(p)}; }
RT_INLINE M32 ge(U32 a, U32 b) { return _mm512_cmpge_epu32_mask(a.v, b.v); }
RT_INLINE uint32_t mask_bits(M32 m) { return uint32_t(m); }
RT_INLINE M32 mask32_from_bits(uint32_t b) { return __mmask16(b); }
RT_INLINE M64 mask64_from_bits(uint32_t b) { return __mmask8(b); }

using H16 = __m256i;
RT_INLINE H16 load_h16(const uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
RT_INLINE H16 load_h16_partial(const uint16_t* p, size_t k) { return _mm256_maskz_loadu_epi16(__mmask16((1u << k) - 1), p); }
RT_INLINE void store_h16(uint16_t* p, H16 h) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h); }
RT_INLINE void store_h16_partial(uint16_t* p, H16 h, size_t k) { _mm256_mask_storeu_epi16(p, __mmask16((1u << k) - 1), h); }
RT_INLINE U32 widen16(H16 h) { return {_mm512_cvtepu16_epi32(h)}; }
RT_INLINE H16 narrow16(U32 a) { return _mm512_cvtepi32_epi16(a.v); }
RT_INLINE F32 half_to_f32(H16 h) { return {_mm512_cvtph_ps(h)}; }
template <bool kToZero>
RT_INLINE H16 f32_to_half(F32 a) {
  return _mm512_cvtps_ph(a.v, (kToZero ? _MM_FROUND_TO_ZERO : _MM_FROUND_TO_NEAREST_INT) | _MM_FROUND_NO_EXC);
}
// Bytes and small tables (the blockwise 8-bit state; see the scalar target).
RT_INLINE U32 load_u8(const uint8_t* p) {
  return {_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
RT_INLINE U32 load_u8_partial(const uint8_t* p, size_t k) {
  return {_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(__mmask16((1u << k) - 1u), p))};
}
RT_INLINE void store_u8(uint8_t* p, U32 a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(a.v)); }
RT_INLINE void store_u8_partial(uint8_t* p, U32 a, size_t k) {
  _mm512_mask_cvtepi32_storeu_epi8(p, __mmask16((1u << k) - 1u), a.v);
}
template <int N> struct TabF { __m512 lo, hi; };
template <int N> struct TabU { __m512 lo, hi; };
template <int N> RT_INLINE TabF<N> tab(const float* p) {
  static_assert(N == 8 || N == 32, "tables of 8 or 32");
  if constexpr (N == 8) {
    return {_mm512_castps256_ps512(_mm256_loadu_ps(p)), _mm512_setzero_ps()};
  } else {
    return {_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16)};
  }
}
template <int N> RT_INLINE TabU<N> tab(const uint32_t* p) {
  const TabF<N> f = tab<N>(reinterpret_cast<const float*>(p));
  return {f.lo, f.hi};
}
template <int N> RT_INLINE __m512 lookup_ps(__m512 lo, __m512 hi, __m512i i) {
  if constexpr (N == 8) {
    return _mm512_permutexvar_ps(i, lo);
  } else {
    return _mm512_permutex2var_ps(lo, i, hi);
  }
}
template <int N> RT_INLINE F32 lookup(const TabF<N>& t, U32 i) { return {lookup_ps<N>(t.lo, t.hi, i.v)}; }
template <int N> RT_INLINE U32 lookup(const TabU<N>& t, U32 i) { return {_mm512_castps_si512(lookup_ps<N>(t.lo, t.hi, i.v))}; }
RT_INLINE U32 trunc_u32(F32 a) { return {_mm512_cvttps_epi32(a.v)}; }
RT_INLINE U32 inc_where(U32 a, M32 m) { return {_mm512_mask_add_epi32(a.v, m, a.v, _mm512_set1_epi32(1))}; }
RT_INLINE bool none(M32 m) { return m == 0; }
// A table of 256 floats in registers, read by lane index (< 256): 8 two-register permutes,
// then the three high bits of the index choose among them.
struct Tab256 { __m512 v[16]; };
RT_INLINE Tab256 tab256(const float* p) {
  Tab256 t;
  for (int k = 0; k < 16; ++k) t.v[k] = _mm512_loadu_ps(p + 16 * k);
  return t;
}
RT_INLINE F32 lookup(const Tab256& t, U32 i) {
  __m512 r[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm512_permutex2var_ps(t.v[2 * k], i.v, t.v[2 * k + 1]);
  const __mmask16 b5 = _mm512_test_epi32_mask(i.v, _mm512_set1_epi32(32));
  const __mmask16 b6 = _mm512_test_epi32_mask(i.v, _mm512_set1_epi32(64));
  const __mmask16 b7 = _mm512_test_epi32_mask(i.v, _mm512_set1_epi32(128));
  for (int k = 0; k < 4; ++k) r[k] = _mm512_mask_blend_ps(b5, r[2 * k], r[2 * k + 1]);
  for (int k = 0; k < 2; ++k) r[k] = _mm512_mask_blend_ps(b6, r[2 * k], r[2 * k + 1]);
  return {_mm512_mask_blend_ps(b7, r[0], r[1])};
}
#define REGTUNE_HAS_LOOKUP256 1
#endif

// ------------------------------------------------------------------------- every target
// Built from the exact operations above, so they agree bit for bit on every target.
// x rounded to the nearest integer (ties to even), for |x| < 2**22: the float sum does it.
RT_INLINE F32 round_small(F32 x) { return sub(add(x, set1(12582912.0f)), set1(12582912.0f)); }
RT_INLINE F32 abs(F32 a) { return from_bits(band(bits(a), set1(0x7FFFFFFFu))); }
RT_INLINE F64 abs(F64 a) { return from_bits(band(bits(a), set1(uint64_t(0x7FFFFFFFFFFFFFFFull)))); }
// -1, 0 or +1 as torch.sign: 0 for +-0 and for NaN.
RT_INLINE F32 sign(F32 a) {
  const F32 z = set1(0.0f), one = set1(1.0f);
  return sub(select(lt(z, a), one, z), select(lt(a, z), one, z));
}
RT_INLINE F64 sign(F64 a) {
  const F64 z = set1(0.0), one = set1(1.0);
  return sub(select(lt(z, a), one, z), select(lt(a, z), one, z));
}
// mag with the sign bit of s flipped in: copysign(mag, s) for mag with a clear sign bit.
RT_INLINE F32 xor_sign(F32 mag, F32 s) { return from_bits(bxor(bits(mag), band(bits(s), set1(0x80000000u)))); }
RT_INLINE F64 xor_sign(F64 mag, F64 s) {
  return from_bits(bxor(bits(mag), band(bits(s), set1(uint64_t(0x8000000000000000ull)))));
}


// ------------------------------------------------------------------ 16-bit floats, every target
// bfloat16 <-> float32 by integer arithmetic (the same on every target; no AVX-512 BF16
// instructions, whose conversion flushes subnormals): widening is a shift; narrowing rounds to
// nearest even, b + 0x7FFF + (bit 16 of b), then keeps the high half; a NaN becomes the quiet
// NaN sign | 0x7FC0 (as ml_dtypes). IEEE half uses the target's conversions above.
// sign | 0x7FC0 (the bits are disjoint, so an add is the or).
RT_INLINE U32 bf16_nan(U32 b) { return add(band(shr<16>(b), set1(0x8000u)), set1(0x7FC0u)); }

RT_INLINE F32 bf16_to_f32(H16 h) { return from_bits(shl<16>(widen16(h))); }
// le(x, x) is false exactly in the NaN lanes: one compare and one blend, not integer masks.
RT_INLINE H16 f32_to_bf16(F32 x) {
  const U32 b = bits(x);
  const U32 r = shr<16>(add(add(b, set1(0x7FFFu)), band(shr<16>(b), set1(1u))));
  return narrow16(select(le(x, x), r, bf16_nan(b)));
}

// Stochastic rounding with the 32 random bits of `rnd` per lane: x rounds to the 16-bit value
// above it in magnitude with probability (|x| - |lo|) / (|hi| - |lo|), lo and hi the
// neighbours of x toward and away from zero, else to lo; so the mean of the result is x.
// bfloat16: the high 16 random bits are added to x's low 16 bits and the sum truncated
// (exact: each of the 65536 outcomes equally likely). Infinities stay, NaN as f32_to_bf16,
// and a finite x above the largest bfloat16 may round to infinity (the next step up).
RT_INLINE H16 f32_to_bf16_sr(F32 x, U32 rnd) {
  const U32 b = bits(x);
  const U32 r = shr<16>(add(b, shr<16>(rnd)));
  return narrow16(select(le(x, x), r, bf16_nan(b)));
}
// IEEE half: lo is x rounded toward zero, hi the next half away from zero (65536 standing in
// for infinity above the largest half, 65504); x goes up when u * (|hi| - |lo|) < |x| - |lo|,
// u = (rnd >> 8) / 2^24. |x| - |lo| and the gap are exact, so the probability is exact to 24
// bits (exact wherever x is a normal half's neighbour: at most 13 bits below the half's last).
// Infinities and NaN stay as the nearest rounding gives them.
RT_INLINE H16 f32_to_half_sr(F32 x, U32 rnd) {
  const H16 lo_h = f32_to_half<true>(x);
  const U32 lo_b = widen16(lo_h), hi_b = add(lo_b, set1(1u));
  const F32 lo = half_to_f32(lo_h), ax = abs(x), alo = abs(lo);
  const F32 ahi = select(le(set1(65504.0f), alo), set1(65536.0f), abs(half_to_f32(narrow16(hi_b))));
  const F32 u = mul(to_f32(shr<8>(rnd)), set1(5.9604644775390625e-08f));  // 2^-24
  return narrow16(select(lt(mul(u, sub(ahi, alo)), sub(ax, alo)), hi_b, lo_b));
}

// Loads widen to float32 (exactly); stores round to nearest even. Partial forms as for float.
RT_INLINE const uint16_t* raw16(const bfloat16_t* p) { return reinterpret_cast<const uint16_t*>(p); }
RT_INLINE const uint16_t* raw16(const float16_t* p) { return reinterpret_cast<const uint16_t*>(p); }
RT_INLINE uint16_t* raw16(bfloat16_t* p) { return reinterpret_cast<uint16_t*>(p); }
RT_INLINE uint16_t* raw16(float16_t* p) { return reinterpret_cast<uint16_t*>(p); }
RT_INLINE F32 load(const bfloat16_t* p) { return bf16_to_f32(load_h16(raw16(p))); }
RT_INLINE F32 load(const float16_t* p) { return half_to_f32(load_h16(raw16(p))); }
RT_INLINE F32 load_partial(const bfloat16_t* p, size_t k) { return bf16_to_f32(load_h16_partial(raw16(p), k)); }
RT_INLINE F32 load_partial(const float16_t* p, size_t k) { return half_to_f32(load_h16_partial(raw16(p), k)); }
RT_INLINE void store(bfloat16_t* p, F32 a) { store_h16(raw16(p), f32_to_bf16(a)); }
RT_INLINE void store(float16_t* p, F32 a) { store_h16(raw16(p), f32_to_half<false>(a)); }
RT_INLINE void store_partial(bfloat16_t* p, F32 a, size_t k) { store_h16_partial(raw16(p), f32_to_bf16(a), k); }
RT_INLINE void store_partial(float16_t* p, F32 a, size_t k) { store_h16_partial(raw16(p), f32_to_half<false>(a), k); }
// The 16-bit bits of finite x rounded to nearest even, in the low half of 32-bit lanes: what
// store() writes for finite x, without its NaN handling (the samplers' values are finite).
RT_INLINE U32 round16_finite(const bfloat16_t*, F32 x) {
  const U32 b = bits(x);
  return shr<16>(add(add(b, set1(0x7FFFu)), band(shr<16>(b), set1(1u))));
}
RT_INLINE U32 round16_finite(const float16_t*, F32 x) { return widen16(f32_to_half<false>(x)); }
// 32-bit lanes holding the 16-bit results of finite a (low half) and b (high half). bfloat16:
// the rounding carry is added to the float32 bits, whose high halves are then the results; on
// AVX2 and AVX-512 one 16-bit blend pairs them (a's shifted down, b's in place).
RT_INLINE U32 bf16_rounded_high(F32 x) {
  const U32 b = bits(x);
  return add(add(b, set1(0x7FFFu)), band(shr<16>(b), set1(1u)));
}
RT_INLINE U32 pair16(const bfloat16_t*, F32 a, F32 b) {
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX2
  return {_mm256_blend_epi16(shr<16>(bf16_rounded_high(a)).v, bf16_rounded_high(b).v, 0xAA)};
#elif REGTUNE_TARGET == REGTUNE_TARGET_AVX512
  return {_mm512_mask_blend_epi16(__mmask32(0xAAAAAAAAu), shr<16>(bf16_rounded_high(a)).v, bf16_rounded_high(b).v)};
#else
  return add(shr<16>(bf16_rounded_high(a)), shl<16>(shr<16>(bf16_rounded_high(b))));
#endif
}
RT_INLINE U32 pair16(const float16_t* p, F32 a, F32 b) { return add(round16_finite(p, a), shl<16>(round16_finite(p, b))); }
// p[4 * l + k] = (a, b, c, d)[k][l] rounded to the 16-bit float L (finite values only): pairs of
// 16-bit results share a 32-bit lane (little-endian: the first in the low half), then one
// 32-bit interleave puts them in memory order, with no float32 round trip through memory.
template <typename L>
RT_INLINE void store_interleave4(L* p, F32 a, F32 b, F32 c, F32 d) {
#if REGTUNE_TARGET == REGTUNE_TARGET_SCALAR  // one lane: no pairing (and no byte-order assumption)
  uint16_t* q = raw16(p);
  q[0] = uint16_t(round16_finite(p, a).v), q[1] = uint16_t(round16_finite(p, b).v);
  q[2] = uint16_t(round16_finite(p, c).v), q[3] = uint16_t(round16_finite(p, d).v);
#else
  const U32 ab = pair16(p, a, b), cd = pair16(p, c, d);
  store_interleave2(reinterpret_cast<uint32_t*>(p), ab, cd);
#endif
}
// Stochastic forms of store / store_partial.
RT_INLINE H16 round_sr(bfloat16_t*, F32 a, U32 rnd) { return f32_to_bf16_sr(a, rnd); }
RT_INLINE H16 round_sr(float16_t*, F32 a, U32 rnd) { return f32_to_half_sr(a, rnd); }

}  // namespace simd
}  // namespace REGTUNE_NS
}  // namespace regtune
