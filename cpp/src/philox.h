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

RT_INLINE Words philox(Stream s, uint64_t j0) {
  const U32 lane = iota_u32();
  U32 c0 = add(set1(uint32_t(j0)), lane);
  U32 c1 = add(set1(uint32_t(j0 >> 32)), lt_one(c0, lane));  // carry out of the low word
  U32 c2 = set1(uint32_t(s.stream));
  U32 c3 = set1(uint32_t(s.stream >> 32));
  uint32_t k0 = uint32_t(s.key), k1 = uint32_t(s.key >> 32);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    U32 hi0, lo0, hi1, lo1;
    mulhilo(c0, 0xD2511F53u, hi0, lo0);
    mulhilo(c2, 0xCD9E8D57u, hi1, lo1);
    const U32 n0 = bxor(bxor(hi1, c1), set1(k0));
    const U32 n2 = bxor(bxor(hi0, c3), set1(k1));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return {c0, c1, c2, c3};
}

// Runs emit(words, dst) over the Philox blocks j, j + 1, ... that cover `count` elements,
// kEpb elements per block, the first `skip` elements of block j dropped. Whole groups of
// kLanes blocks are written straight to `out`; the partial groups at either end go through a
// small buffer, so there is one body and no separate scalar tail.
template <typename T, int kEpb, typename Emit>
RT_INLINE void for_blocks(Stream s, uint64_t j, int skip, size_t count, T* out, Emit emit) {
  constexpr int64_t kGroup = int64_t(kLanes) * kEpb;
  const int64_t n = int64_t(count);
  int64_t k = -int64_t(skip);  // output index of the group's first element
  alignas(64) T tmp[kGroup];
  for (; k < n; k += kGroup, j += kLanes) {
    const Words w = philox(s, j);
    if (k >= 0 && k + kGroup <= n) {
      emit(w, out + k);
    } else {
      emit(w, tmp);
      const int64_t lo = std::max<int64_t>(k, 0), hi = std::min<int64_t>(k + kGroup, n);
      std::memcpy(out + lo, tmp + (lo - k), size_t(hi - lo) * sizeof(T));
    }
  }
}

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
