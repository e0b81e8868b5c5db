// The dropout kernels, written once and compiled once per instruction set (see simd.h).
//
// One pass: Philox words for a tile of elements go to a small L1 buffer in memory order
// (store_interleave4 undoes Philox's block-major lanes), then each vector of kLanes elements
// compares its words with the threshold, takes x, writes y and collects the mask bits.
// Work is done in groups of 64 elements (one 64-bit mask word); a partial group at the end
// runs the same body on a padded copy, so there is no separate scalar tail.
//
// Nothing here has static storage with a dynamic initializer (this file is compiled with
// AVX2/AVX-512 flags and must not run before the CPU has been checked).
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "regtune/dropout.h"
#include "philox.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;

constexpr int kGroup = 64;      // elements per 64-bit mask word
// Elements per tile: 1 KiB of words keeps the Philox work interleaved with the loads and stores
// it feeds (measured at 4096^2 float32 on 2 cores: 2048-element tiles made the forward ~30%
// slower, 128 was no faster than 256).
constexpr size_t kTile = 256;
static_assert(kGroup % kLanes == 0 && kTile % kGroup == 0, "groups hold whole vectors, tiles whole groups");

// The params broadcast to vectors once per call: F64 for double storage, F32 for float and for
// the 16-bit floats, which load widened to F32 and store rounded to nearest even (simd.h).
template <typename T>
struct Coef {
  using C = typename DropoutCompute<T>::type;
  using V = std::conditional_t<std::is_same_v<C, double>, F64, F32>;
  V scale, shift, drop;
  explicit Coef(const DropoutParams<C>& p) : scale(set1(p.scale)), shift(set1(p.shift)), drop(set1(p.drop)) {}
};
template <typename T>
using Params = DropoutParams<typename DropoutCompute<T>::type>;

// x * scale, plus shift for alpha dropout: two roundings, as torch's mul then add.
template <bool kAffine, typename V, typename C>
RT_INLINE V kept(V x, const C& c) {
  return kAffine ? add(mul(x, c.scale), c.shift) : mul(x, c.scale);
}

// A load the compiler may not fold into the masked multiply that follows: a masked load from
// memory runs at about 2/3 the speed of a plain load plus a masked register multiply on AMD
// Zen 4 (measured, AVX-512). The empty asm changes no value.
template <typename T>
RT_INLINE auto load_plain(const T* p) {
  auto v = load(p);
#if REGTUNE_TARGET == REGTUNE_TARGET_AVX512
  __asm__("" : "+v"(v.v));
#endif
  return v;
}

// kLanes elements under the keep mask k (lane l = element l); T is float or a 16-bit float,
// whose load widens and whose store rounds once (so y is the float32 result, rounded).
template <bool kAffine, typename T, std::enable_if_t<!std::is_same_v<T, double>, int> = 0>
RT_INLINE void body(M32 k, const T* x, T* y, const Coef<T>& c) {
  store(y, select(k, kept<kAffine>(load_plain(x), c), c.drop));
}
template <bool kAffine>
RT_INLINE void body(M32 k, const double* x, double* y, const Coef<double>& c) {
  const uint32_t b = mask_bits(k);
  for (int h = 0; h < kHalves; ++h) {
    const F64 v = kept<kAffine>(load_plain(x + h * kLanes64), c);
    store(y + h * kLanes64, select(mask64_from_bits(b >> (h * kLanes64)), v, c.drop));
  }
}

// One group of n <= 64 elements; keep(j) is the M32 of elements [j, j + kLanes). Returns the
// group's keep bits (bit j = element j, zero from n on). A partial group runs on padded copies.
template <typename T, bool kAffine, typename Keep>
RT_INLINE uint64_t group(const T* x, T* y, int n, const Keep& keep, const Coef<T>& c) {
  uint64_t bits = 0;
  auto run = [&](const T* xs, T* ys) {
    for (int j = 0; j < kGroup; j += kLanes) {
      const M32 k = keep(j);
      bits |= uint64_t(mask_bits(k)) << j;
      body<kAffine>(k, xs + j, ys + j, c);
    }
  };
  if (n == kGroup) {
    run(x, y);
    return bits;
  }
  alignas(64) T xb[kGroup] = {};
  alignas(64) T yb[kGroup];
  std::memcpy(xb, x, size_t(n) * sizeof(T));
  run(xb, yb);
  std::memcpy(y, yb, size_t(n) * sizeof(T));
  return bits & ((uint64_t(1) << n) - 1);  // 0 < n < 64
}

// Writes the ceil(n / 8) bytes of a group's bits, little-endian whatever the host.
RT_INLINE void store_bits(uint8_t* m, uint64_t bits, int n) {
  if (n == kGroup) {
    for (int b = 0; b < 8; ++b) m[b] = uint8_t(bits >> (8 * b));
  } else {
    for (int b = 0; b < (n + 7) / 8; ++b) m[b] = uint8_t(bits >> (8 * b));
  }
}

RT_INLINE uint64_t load_bits(const uint8_t* m, int n) {
  uint64_t bits = 0;
  const int bytes = n == kGroup ? 8 : (n + 7) / 8;
  for (int b = 0; b < bytes; ++b) bits |= uint64_t(m[b]) << (8 * b);
  return bits;
}

constexpr size_t kStepWords = size_t(4) * kLanes * kSteps;  // words per philox() call

// The stream's words from `first` on, in memory order, a philox() call at a time: next(m)
// gives the next m <= kTile words. Calls need not end on block boundaries, so an offset that
// is not a multiple of 4 costs nothing extra, and small tiles keep the Philox work close to
// the loads and stores it feeds.
class WordStream {
 public:
  WordStream(Stream s, uint64_t first) : rk_(s), block_(first / 4), skip_(size_t(first % 4)) {}

  const uint32_t* next(size_t m) {
    const size_t have = hi_ - lo_;  // generated, not yet consumed: < kStepWords
    if (have > 0) std::memmove(buf_, buf_ + lo_, have * sizeof(uint32_t));
    hi_ = have;
    Words v[kSteps];
    while (hi_ < skip_ + m) {
      philox(rk_, block_, v);
      for (int g = 0; g < kSteps; ++g) {
        store_interleave4(buf_ + hi_ + 4 * kLanes * g, v[g].w0, v[g].w1, v[g].w2, v[g].w3);
      }
      hi_ += kStepWords;
      block_ += kStepWords / 4;
    }
    const uint32_t* out = buf_ + skip_;
    lo_ = skip_ + m;
    skip_ = 0;
    return out;
  }

 private:
  const RoundKeys rk_;
  uint64_t block_;      // next block to generate
  size_t skip_;         // words of the first block before `first`
  size_t lo_ = 0, hi_ = 0;
  alignas(64) uint32_t buf_[kTile + kStepWords + 4];
};

template <typename T, bool kAffine>
void forward_impl(Stream s, uint64_t first, size_t count, const T* x, T* y, uint8_t* mask, const Params<T>& p) {
  const Coef<T> c(p);
  const U32 thr = set1(p.threshold);
  WordStream ws(s, first);
  for (size_t t = 0; t < count; t += kTile) {
    const size_t m = std::min(kTile, count - t);
    // Whole groups of words, so a partial group's padding lanes compare real (unused) words.
    const uint32_t* w = ws.next((m + kGroup - 1) / kGroup * kGroup);
    for (size_t g = 0; g < m; g += kGroup) {
      const int n = int(std::min<size_t>(kGroup, m - g));
      const uint32_t* wg = w + g;
      const uint64_t bits = group<T, kAffine>(x + t + g, y + t + g, n, [&](int j) { return ge(load(wg + j), thr); }, c);
      if (mask != nullptr) store_bits(mask + (t + g) / 8, bits, n);
    }
  }
}

template <typename T>
void forward(Stream s, uint64_t first, size_t count, const T* x, T* y, uint8_t* mask, const Params<T>& p) {
  if (p.affine) {
    forward_impl<T, true>(s, first, count, x, y, mask, p);
  } else {
    forward_impl<T, false>(s, first, count, x, y, mask, p);
  }
}

template <typename T, bool kAffine>
void apply_impl(const uint8_t* mask, size_t count, const T* x, T* y, const Params<T>& p) {
  const Coef<T> c(p);
  constexpr uint32_t kLaneBits = uint32_t((uint64_t(1) << kLanes) - 1);
  for (size_t g = 0; g < count; g += kGroup) {
    const int n = int(std::min<size_t>(kGroup, count - g));
    const uint64_t bits = load_bits(mask + g / 8, n);
    group<T, kAffine>(x + g, y + g, n, [&](int j) { return mask32_from_bits(uint32_t(bits >> j) & kLaneBits); }, c);
  }
}

template <typename T>
void apply(const uint8_t* mask, size_t count, const T* x, T* y, const Params<T>& p) {
  if (p.affine) {
    apply_impl<T, true>(mask, count, x, y, p);
  } else {
    apply_impl<T, false>(mask, count, x, y, p);
  }
}

template <typename T, bool kAffine>
void fill_impl(bool keep, size_t count, const T* x, T* y, const Params<T>& p) {
  const Coef<T> c(p);
  const M32 k = mask32_from_bits(keep ? ~0u : 0u);
  for (size_t g = 0; g < count; g += kGroup) {
    const int n = int(std::min<size_t>(kGroup, count - g));
    group<T, kAffine>(x + g, y + g, n, [&](int) { return k; }, c);
  }
}

template <typename T>
void fill(bool keep, size_t count, const T* x, T* y, const Params<T>& p) {
  if (p.affine) {
    fill_impl<T, true>(keep, count, x, y, p);
  } else {
    fill_impl<T, false>(keep, count, x, y, p);
  }
}

void mask_kernel(Stream s, uint64_t first, size_t count, uint8_t* mask, uint32_t threshold) {
  const U32 thr = set1(threshold);
  WordStream ws(s, first);
  for (size_t t = 0; t < count; t += kTile) {
    const size_t m = std::min(kTile, count - t);
    const uint32_t* w = ws.next((m + kGroup - 1) / kGroup * kGroup);
    for (size_t g = 0; g < m; g += kGroup) {
      const int n = int(std::min<size_t>(kGroup, m - g));
      uint64_t bits = 0;
      for (int j = 0; j < kGroup; j += kLanes) bits |= uint64_t(mask_bits(ge(load(w + g + j), thr))) << j;
      if (n < kGroup) bits &= (uint64_t(1) << n) - 1;
      store_bits(mask + (t + g) / 8, bits, n);
    }
  }
}

}  // namespace

DropoutKernels dropout_kernels() {
  DropoutKernels k{REGTUNE_NS_NAME, forward<float>, forward<double>, apply<float>, apply<double>,
                   fill<float>,     fill<double>,    mask_kernel};
  k.forward_bf16 = forward<bfloat16_t>;
  k.forward_f16 = forward<float16_t>;
  k.apply_bf16 = apply<bfloat16_t>;
  k.apply_f16 = apply<float16_t>;
  k.fill_bf16 = fill<bfloat16_t>;
  k.fill_f16 = fill<float16_t>;
  return k;
}

}  // namespace REGTUNE_NS
}  // namespace regtune
