// Philox4x32-10 on vectors, and the loop that turns its blocks into output elements.
// Per-target: include from a kernel source compiled once per instruction set (see simd.h).
#pragma once

#include <algorithm>
#include <cstring>

#include "regtune/kernels.h"
#include "simd.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;

// ---------------------------------------------------------------------------- Philox4x32-10
// Random123's Philox4x32 with 10 rounds (Salmon et al., SC'11): a bijection of the 128-bit
// counter under a 64-bit key. Each lane computes one block; lane l holds counter j0 + l.
struct Words {
  U32 w0, w1, w2, w3;
};

// The ten round keys, widened to 64-bit lanes once per call so that every round's xor can
// take its key as a broadcast memory operand.
struct RoundKeys {
  uint64_t k0[10], k1[10];
  uint64_t stream_lo, stream_hi;
  explicit RoundKeys(Stream s) : stream_lo(s.stream & 0xFFFFFFFFu), stream_hi(s.stream >> 32) {
    uint32_t a = uint32_t(s.key), b = uint32_t(s.key >> 32);
    for (int r = 0; r < 10; ++r, a += 0x9E3779B9u, b += 0xBB67AE85u) {
      k0[r] = a;
      k1[r] = b;
    }
  }
};

// kSteps groups of kLanes consecutive blocks from block j0, in independent dependency chains.
// AVX-512 (and the scalar path): each 64-bit lane carries one 32-bit word in its low half, so
// vpmuludq gives the full product with no even/odd shuffling (the high halves are never read),
// kHalves chains per group; in-cache single-thread words/ns measured best at 3 groups with 32
// vector registers (0.21 -> 0.19 ns/word from 2). AVX2: one block per 32-bit lane (see the
// AVX2 philox below), best at 4 groups with 16 registers (one thread, in L1, Zen 4 at 3.6 GHz:
// 0.59 ns/word with the 64-bit-lane form at 2 groups; 0.53, 0.50, 0.48 at 2, 3, 4 groups; 5
// and 6 gained under 3% more).
constexpr int kSteps = REGTUNE_TARGET == REGTUNE_TARGET_AVX512 ? 3 : REGTUNE_TARGET == REGTUNE_TARGET_AVX2 ? 4 : 1;

#if REGTUNE_TARGET == REGTUNE_TARGET_AVX2
// AVX2: one 32-bit lane per block, so the state of 8 blocks takes 4 registers (the 64-bit-lane
// form below needs 8, and with 16 vector registers its 4 chains spilled on every round). Each
// product's high half comes from two vpmuludq (even and odd lanes) and a blend, its low half
// from vpmulld.
template <int N = kSteps>
RT_INLINE void philox(const RoundKeys& rk, uint64_t j0, Words (&out)[N]) {
  __m256i c0[N], c1[N], c2[N], c3[N];
  for (int g = 0; g < N; ++g) {
    // Block j0 + 8 g + l in lane l: its 64-bit index split into low and high words.
    const U64 ja = add(set1(j0 + uint64_t(g) * kLanes), iota_u64());
    const U64 jb = add(set1(j0 + uint64_t(g) * kLanes + kLanes64), iota_u64());
    c0[g] = pack_lo32(ja, jb).v;
    c1[g] = pack_lo32(shr<32>(ja), shr<32>(jb)).v;
    c2[g] = _mm256_set1_epi32(int(rk.stream_lo));
    c3[g] = _mm256_set1_epi32(int(rk.stream_hi));
  }
  const __m256i m0 = _mm256_set1_epi32(int(0xD2511F53u)), m1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  auto mulhi = [](__m256i a, __m256i m) {
    const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(a, m), 32);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    return _mm256_blend_epi32(even, odd, 0xAA);
  };
#if defined(__clang__)
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi32(int(rk.k0[round])), key1 = _mm256_set1_epi32(int(rk.k1[round]));
    for (int g = 0; g < N; ++g) {
      const __m256i hi0 = mulhi(c0[g], m0), lo0 = _mm256_mullo_epi32(c0[g], m0);
      const __m256i hi1 = mulhi(c2[g], m1), lo1 = _mm256_mullo_epi32(c2[g], m1);
      c0[g] = _mm256_xor_si256(hi1, _mm256_xor_si256(c1[g], key0));
      c1[g] = lo1;
      c2[g] = _mm256_xor_si256(hi0, _mm256_xor_si256(c3[g], key1));
      c3[g] = lo0;
    }
  }
  for (int g = 0; g < N; ++g) out[g] = {{c0[g]}, {c1[g]}, {c2[g]}, {c3[g]}};
}
#else
template <int N = kSteps>
RT_INLINE void philox(const RoundKeys& rk, uint64_t j0, Words (&out)[N]) {
  constexpr int kChains = N * kHalves;
  U64 c0[kChains], c1[kChains], c2[kChains], c3[kChains];
  for (int h = 0; h < kChains; ++h) {
    const U64 j = add(set1(j0 + uint64_t(h) * kLanes64), iota_u64());
    c0[h] = j;
    c1[h] = shr<32>(j);
    c2[h] = set1(rk.stream_lo);
    c3[h] = set1(rk.stream_hi);
  }
  // Fully unrolled: the state rotates between registers with no copies at a loop edge.
#if defined(__clang__)
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    const U64 key0 = set1(rk.k0[round]), key1 = set1(rk.k1[round]);
    for (int h = 0; h < kChains; ++h) {
      const U64 p0 = mul32(c0[h], 0xD2511F53u);
      const U64 p1 = mul32(c2[h], 0xCD9E8D57u);
      c0[h] = xor3(shr<32>(p1), c1[h], key0);
      c1[h] = p1;
      c2[h] = xor3(shr<32>(p0), c3[h], key1);
      c3[h] = p0;
    }
  }
  for (int g = 0; g < N; ++g) {
    const int a = g * kHalves, b = g * kHalves + kHalves - 1;
    out[g] = {pack_lo32(c0[a], c0[b]), pack_lo32(c1[a], c1[b]), pack_lo32(c2[a], c2[b]), pack_lo32(c3[a], c3[b])};
  }
}
#endif

// Runs emit(words, dst) over the Philox blocks j, j + 1, ... that cover `count` elements
// (kGroups groups of kLanes blocks per philox() call),
// kEpb elements per block, the first `skip` elements of block j dropped. Whole groups of
// kLanes blocks are written straight to `out`; the partial groups at either end go through a
// small buffer, so there is one body and no separate scalar tail.
template <typename T, int kEpb, int kGroups = kSteps, typename Emit>
RT_INLINE void for_blocks(Stream s, uint64_t j, int skip, size_t count, T* out, Emit emit) {
  constexpr int64_t kGroup = int64_t(kLanes) * kEpb;
  const int64_t n = int64_t(count);
  int64_t k = -int64_t(skip);  // output index of the group's first element
  alignas(64) T tmp[kGroup];
  const RoundKeys rk(s);
  Words w[kGroups];
  for (; k < n; j += uint64_t(kLanes) * kGroups) {
    philox<kGroups>(rk, j, w);
    for (int g = 0; g < kGroups && k < n; ++g, k += kGroup) {
      if (k >= 0 && k + kGroup <= n) {
        emit(w[g], out + k);
      } else {
        emit(w[g], tmp);
        const int64_t lo = std::max<int64_t>(k, 0), hi = std::min<int64_t>(k + kGroup, n);
        std::memcpy(out + lo, tmp + (lo - k), size_t(hi - lo) * sizeof(T));
      }
    }
  }
}

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
