// The loop every rule runs in, and the pieces rules share: compiled once per instruction set
// (include from per-target sources only; see simd.h). Nothing here has static storage with a
// dynamic initializer (see random_kernels.cpp).
//
// Each rule is the element-wise part of the `_single_tensor_*` function of torch.optim (or of
// its reference package) with the operations torch's CPU kernels use, in their order:
//   x.add_(y, alpha=a)          -> fma(y, a, x)            (ATen's vectorized add with alpha)
//   x.addcmul_(y, z, value=a)   -> fma(a * y, z, x)
//   x.addcdiv_(y, z, value=a)   -> x + (a * y) / z
//   x.mul_(a)                   -> x * a
//   x.lerp_(y, w)               -> lerp_to (fma, as ATen's vectorized lerp; see Lerp)
// (checked against torch 2.x on float32: bit for bit on its vectorized path). Floating-point
// contraction is off, so these are the only fused operations.
//
// A rule (see rules/*.h) is a struct deriving RuleDefaults with its coefficients
// (REGTUNE_COEFFICIENTS), its state count, `fast(c)` when it has switches of its own (whether they
// are those of its fast body), `per_tensor`, `sums` and `trust` when it takes a trust ratio, and
// `body<kFast, kEma, T>(param, grad, s0, s1, s2, ema, n, c, f)`, written once for every storage:
// Q, C and P are the pointer types of the parameter, gradient and state (plain pointers of T,
// or the 16-bit storage adapters below), T the compute type.
#pragma once

#include <algorithm>
#include <cstring>
#include <tuple>
#include <type_traits>

#include "optim/coefficients.h"
#include "philox.h"
#include "simd.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;
template <typename T> using FusedOf = Fused::Coef<T>;

template <typename T> struct Vec;
template <> struct Vec<float> { using type = F32; static constexpr size_t lanes = size_t(kLanes); };
template <> struct Vec<double> { using type = F64; static constexpr size_t lanes = size_t(kLanes64); };

// ------------------------------------------------------------------- low-precision arrays
// The steps on bfloat16/half parameters compute in float32 (the float32 bodies, instantiated
// once more per storage type): loads widen exactly; stores round to nearest even, or, for the
// parameter, stochastically with the Philox word at the element's index in its tensor.

// The random words of stochastic rounding: word i of the stream for the element at index i,
// made a buffer at a time (kSrWords, a multiple of what one philox call makes).
constexpr size_t kSrWords = size_t(4) * kLanes * kSteps * 4;
struct SrWords {
  Stream s;
  uint64_t base = ~uint64_t(0);
  alignas(64) uint32_t w[kSrWords + kLanes];
  explicit SrWords(Stream st) : s(st) {}
  // The kLanes words from index i.
  RT_INLINE U32 at(uint64_t i) {
    if (i < base || i + kLanes > base + kSrWords) refill(i);
    return load(w + (i - base));
  }
  void refill(uint64_t i) {
    base = i;
    for_blocks<uint32_t, 4>(s, i / 4, int(i % 4), kSrWords, w, [](const Words& x, uint32_t* dst) {
      store_interleave4(dst, x.w0, x.w1, x.w2, x.w3);
    });
  }
};

// An array whose dtype is known at run time (the penalties and reductions on 16-bit arrays).
struct Arr {
  char* p = nullptr;
  DType dt = DType::f32;
  Arr() = default;
  Arr(const void* d, DType t) : p(static_cast<char*>(const_cast<void*>(d))), dt(t) {}
  explicit operator bool() const { return p != nullptr; }
  Arr operator+(size_t i) const { return p ? Arr(p + i * bytes_of(dt), dt) : *this; }
};

template <typename M>
RT_INLINE F32 load_arr(const M& mem, const Arr& a) {
  if (a.dt == DType::f32) return mem.load(reinterpret_cast<const float*>(a.p));
  if (a.dt == DType::bf16) return mem.load(reinterpret_cast<const bfloat16_t*>(a.p));
  return mem.load(reinterpret_cast<const float16_t*>(a.p));
}

template <typename M>
RT_INLINE void store_arr(const M& mem, const Arr& a, F32 v) {
  if (a.dt == DType::f32) {
    mem.store(reinterpret_cast<float*>(a.p), v);
  } else if (a.dt == DType::bf16) {
    mem.store(reinterpret_cast<bfloat16_t*>(a.p), v);
  } else {
    mem.store(reinterpret_cast<float16_t*>(a.p), v);
  }
}

// The parameter of a low-precision step, its 16-bit dtype L known at compile time: read from
// and written to p, rounded to nearest even or stochastically (sr); or, with master weights,
// read from and written to the float32 master, with its rounding to nearest written to p.
template <typename L>
struct LowParam {
  L* p = nullptr;
  float* master = nullptr;
  SrWords* sr = nullptr;
  uint64_t idx = 0;  // the index of element 0 in its tensor (stochastic rounding's word)
  explicit operator bool() const { return p != nullptr; }
  LowParam operator+(size_t i) const { return {p + i, master ? master + i : nullptr, sr, idx + i}; }
};

template <typename M, typename L>
RT_INLINE F32 load_param(const M& mem, const LowParam<L>& q) {
  return q.master ? mem.load(const_cast<const float*>(q.master)) : mem.load(const_cast<const L*>(q.p));
}
RT_INLINE H16 round_nearest(const bfloat16_t*, F32 v) { return f32_to_bf16(v); }
RT_INLINE H16 round_nearest(const float16_t*, F32 v) { return f32_to_half<false>(v); }
RT_INLINE F32 widen(const bfloat16_t*, H16 h) { return bf16_to_f32(h); }
RT_INLINE F32 widen(const float16_t*, H16 h) { return half_to_f32(h); }

// Stores the new parameter v and returns the 16-bit parameter as written (widened): the
// value the weight average follows, as EMA.update() reads it.
template <typename M, typename L>
RT_INLINE F32 store_param(const M& mem, const LowParam<L>& q, F32 v) {
  if (q.master) mem.store(q.master, v);
  const H16 h = !q.master && q.sr ? round_sr(q.p, v, q.sr->at(q.idx)) : round_nearest(q.p, v);
  mem.store16(raw16(q.p), h);
  return widen(q.p, h);
}

struct Whole {
  template <typename T> RT_INLINE auto load(const T* p) const { return simd::load(p); }
  template <typename T, typename V> RT_INLINE void store(T* p, V v) const { simd::store(p, v); }
  RT_INLINE void store16(uint16_t* p, H16 h) const { store_h16(p, h); }
  RT_INLINE F32 load(const Arr& a) const { return load_arr(*this, a); }
  RT_INLINE void store(const Arr& a, F32 v) const { store_arr(*this, a, v); }
  template <typename L> RT_INLINE F32 load(const LowParam<L>& q) const { return load_param(*this, q); }
  template <typename L> RT_INLINE F32 store(const LowParam<L>& q, F32 v) const { return store_param(*this, q, v); }
};
struct Tail {
  size_t k;
  template <typename T> RT_INLINE auto load(const T* p) const { return load_partial(p, k); }
  template <typename T, typename V> RT_INLINE void store(T* p, V v) const { store_partial(p, v, k); }
  RT_INLINE void store16(uint16_t* p, H16 h) const { store_h16_partial(p, h, k); }
  RT_INLINE F32 load(const Arr& a) const { return load_arr(*this, a); }
  RT_INLINE void store(const Arr& a, F32 v) const { store_arr(*this, a, v); }
  template <typename L> RT_INLINE F32 load(const LowParam<L>& q) const { return load_param(*this, q); }
  template <typename L> RT_INLINE F32 store(const LowParam<L>& q, F32 v) const { return store_param(*this, q, v); }
};

// Software prefetch: each stream is fetched this far ahead, one prefetch per cache line.
// Measured on the 4096 x 4096 AdamW step (Zen 4, AVX2 and AVX-512 paths, 1 and 2 threads):
// 512 B ahead was 5-12% faster than the hardware prefetchers alone; 256 B and 768 B-4 KiB
// gained less or lost.
constexpr size_t kLineBytes = 64;
constexpr size_t kPrefetchBytes = 512;

// One prefetch per cache line of each stream: for_vectors asks once per line of float32
// elements, which is half a line of a 16-bit stream.
template <typename T>
RT_INLINE void prefetch(const T* p, size_t i) {
  if (sizeof(T) == 2 && (i * 2) % kLineBytes != 0) return;
  if (p) __builtin_prefetch(p + i + kPrefetchBytes / sizeof(T), std::is_const_v<T> ? 0 : 1, 3);
}
RT_INLINE void prefetch(const Arr& a, size_t i) {
  if (a.p) __builtin_prefetch(a.p + i * bytes_of(a.dt) + kPrefetchBytes, 1, 3);
}
template <typename L>
RT_INLINE void prefetch(const LowParam<L>& q, size_t i) {
  if (q.master) prefetch(q.master, i);
  prefetch(q.p, i);
}

// body(i, mem) for i = 0, lanes, 2 lanes, ... < n, a cache line of elements at a time with
// each of `streams` (null ones skipped) prefetched ahead.
template <typename T, typename Body, typename... S>
RT_INLINE void for_vectors(size_t n, Body body, S... streams) {
  constexpr size_t L = Vec<T>::lanes;
  constexpr size_t kLine = std::max(kLineBytes / sizeof(T), L);
  size_t i = 0;
  for (; i + kLine <= n; i += kLine) {
    (prefetch(streams, i), ...);
    for (size_t k = 0; k < kLine; k += L) body(i + k, Whole{});
  }
  for (; i + L <= n; i += L) body(i, Whole{});
  if (i < n) body(i, Tail{n - i});
}


// --------------------------------------------------------------------------- shared pieces
// Each rule's body is compiled three times: kFast = false reads every switch of the
// coefficients; kFast = true is the common step, where the switches that are off are known at
// compile time (no clip, L1 or proximal term, and the rule's own, see each rule's fast()), so
// its loop carries no test for them, and kEma says whether it also updates the weight average
// (a later update, not the first copy). At one thread a shorter loop keeps more cache lines in
// flight: SGD with momentum, 4096 x 4096 float32, AVX2, one thread, in one process on the same
// arrays, went from 1.18-1.25x the roofline yardstick's time to 1.02-1.10x.
template <typename T>
RT_INLINE bool no_extras(const FusedOf<T>& f) {
  return !f.clip.on && !f.l1.on && !f.prox.on && !f.maximize;
}

// Calls body(kFast, kEma) (std::bool_constant tags) for the step `f` describes; rule_fast says
// whether the rule's own switches are those its fast body assumes. The 16-bit steps (Q, the
// parameter, not a plain pointer) compile the fast body without the weight average and the
// general one.
template <typename Q, typename T, typename Body>
RT_INLINE void dispatch_rule(const FusedOf<T>& f, bool rule_fast, Body body) {
  const bool ema = f.ema_weight.on || f.ema_count.on;
  if constexpr (!std::is_pointer_v<Q>) {
    if (no_extras(f) && rule_fast && !ema) {
      body(std::true_type{}, std::false_type{});
    } else {
      body(std::false_type{}, std::false_type{});
    }
  } else if (no_extras(f) && rule_fast && !ema) {
    body(std::true_type{}, std::false_type{});
  } else if (no_extras(f) && rule_fast && !f.ema_copy) {
    body(std::true_type{}, std::true_type{});
  } else {
    body(std::false_type{}, std::false_type{});
  }
}

template <typename T>
RT_INLINE bool ema_on(const FusedOf<T>& f) {
  return f.ema_weight.on || f.ema_count.on;
}

// The gradient the rule sees: clipped, plus the L1 term, then the decoupled or coupled
// weight decay (p may be rescaled by the decoupled decay).
template <bool kFast, typename T, typename C, typename V, typename Mem>
RT_INLINE V prepare(const Mem& mem, C grad, V& p, const FusedOf<T>& f) {
  V g = mem.load(grad);
  if (!kFast && f.maximize) g = neg(g);  // exact: the clip scale and every later term see -g
  if (!kFast && f.clip.on) g = mul(g, set1(f.clip.v));
  if (!kFast && f.l1.on) g = add(g, mul(set1(f.l1.v), sign(p)));
  if (f.decay.on) p = mul(p, set1(f.decay.v));
  if (f.wd.on) g = fma(p, set1(f.wd.v), g);
  return g;
}

// The gradient of the first pass of a rule with a trust ratio (and of Adafactor): clipped,
// plus the L1 term (no weight decay: it does not enter the norm of the gradient).
template <typename T, typename C, typename V, typename Mem>
RT_INLINE V clipped_grad(const Mem& mem, C grad, V p, const FusedOf<T>& f) {
  V g = mem.load(grad);
  if (f.maximize) g = neg(g);
  if (f.clip.on) g = mul(g, set1(f.clip.v));
  if (f.l1.on) g = add(g, mul(set1(f.l1.v), sign(p)));
  return g;
}

// torch's vectorized lerp_(end, w) (see Lerp).
template <typename T, typename V>
RT_INLINE V lerp_coef(V x, V end, T coef, bool small) {
  return fma(set1(coef), sub(end, x), small ? x : end);
}
template <typename T, typename V>
RT_INLINE V lerp_to(V x, V end, const Lerp<T>& w) {
  return lerp_coef(x, end, w.coef, w.small);
}

// fma(weight * g, g, x * decay): exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2) and
// RMSprop's square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha).
template <typename T, typename V>
RT_INLINE V square_avg(V x, V g, T decay, T weight) {
  return fma(mul(set1(weight), g), g, mul(x, set1(decay)));
}

// Soft-thresholding sign(p) * max(|p| - t, 0); max(0, .) keeps a NaN a NaN.
template <typename T, typename V>
RT_INLINE V soft_threshold(V p, T t) {
  return xor_sign(max(set1(T(0)), sub(abs(p), set1(t))), p);
}

// The weight average's update toward p (not its first update, a copy): torch's AveragedModel
// on the CPU: _foreach_lerp_(avg, p, 1 - decay) for the EMA, avg + (p - avg) / (n + 1) for SWA.
template <typename T, typename V>
RT_INLINE V average_to(V avg, V p, const FusedOf<T>& f) {
  return f.ema_count.on ? add(avg, div(sub(p, avg), set1(f.ema_count.v))) : lerp_to(avg, p, f.ema_weight);
}

// Stores the updated p (after the proximal step) and updates the weight average from it.
template <bool kFast, bool kEma, typename T, typename Q, typename E, typename V, typename Mem>
RT_INLINE void finish(const Mem& mem, Q param, E ema, V p, const FusedOf<T>& f) {
  if (!kFast && f.prox.on) p = soft_threshold(p, f.prox.v);
  if constexpr (std::is_pointer_v<Q>) {
    mem.store(param, p);
  } else {
    p = mem.store(param, p);  // 16-bit: the average follows the parameter as written
  }
  if (kEma || (!kFast && ema_on(f))) mem.store(ema, !kEma && f.ema_copy ? p : average_to(mem.load(ema), p, f));
}

template <bool kFast, bool kEma, typename T, typename E>
RT_INLINE E ema_stream(E ema, const FusedOf<T>& f) {
  return kEma || (!kFast && ema_on(f)) ? ema : E(nullptr);
}

// --------------------------------------------------------------------------- reductions
// 16 accumulators on every target (16 / kLanes64 vectors): element i of x goes to
// accumulator i % 16, so the sums are formed in one order whatever the vector width. float32
// inputs widen to double exactly, and their squares are exact in double.
RT_INLINE F64 load64(const float* p) { return load_wide(p); }
RT_INLINE F64 load64(const double* p) { return load(p); }
RT_INLINE F64 load64_partial(const float* p, size_t k) { return load_wide_partial(p, k); }
RT_INLINE F64 load64_partial(const double* p, size_t k) { return load_partial(p, k); }

constexpr int kAccumulators = 16;
constexpr int kAccVectors = kAccumulators / kLanes64;
static_assert(kAccumulators % kLanes64 == 0, "accumulators must fill whole vectors");

template <typename T>
void sums_kernel(const T* x, size_t n, double* out) {
  F64 sa[kAccVectors], sq[kAccVectors];
  for (int k = 0; k < kAccVectors; ++k) sa[k] = sq[k] = set1(0.0);
  auto add_vector = [&](int k, F64 v) {
    sa[k] = add(sa[k], abs(v));
    sq[k] = add(sq[k], mul(v, v));
  };
  size_t i = 0;
  for (; i + kAccumulators <= n; i += kAccumulators) {
    for (int k = 0; k < kAccVectors; ++k) add_vector(k, load64(x + i + size_t(k) * kLanes64));
  }
  for (int k = 0; k < kAccVectors && i < n; ++k, i += kLanes64) {  // the tail: zeros add nothing
    add_vector(k, n - i >= size_t(kLanes64) ? load64(x + i) : load64_partial(x + i, n - i));
  }
  double a[kAccumulators], q[kAccumulators];
  for (int k = 0; k < kAccVectors; ++k) {
    store(a + k * kLanes64, sa[k]);
    store(q + k * kLanes64, sq[k]);
  }
  for (int w = kAccumulators / 2; w >= 1; w /= 2) {
    for (int j = 0; j < w; ++j) {
      a[j] += a[j + w];
      q[j] += q[j + w];
    }
  }
  out[0] += a[0];
  out[1] += q[0];
}

// ------------------------------------------------------------- rules with a trust ratio
// LAMB and LARS scale each tensor's step by a ratio of two norms, so a step takes two passes:
// the rule's `sums` (first) forms the two sums of squares of a reduction block, the driver
// combines the blocks of each tensor in order and the rule's `trust` sets the tensor's
// coefficients, and its body (second) applies them. Each vector whose norm is taken is written
// to a small buffer in cache and summed there by the deterministic reduction (sums_kernel), so
// the sums are the same on every path and thread count.
constexpr size_t kTrustChunk = 256;  // elements per buffer: 1-2 KiB, in L1

// body(i, mem, x0, x1) for each vector of [0, n), n <= kReduceBlock, storing the two vectors
// whose norms the rule takes into x0 and x1 at i; their sums of squares go to out[0], out[1].
template <typename T, typename Body>
RT_INLINE void trust_blocks(size_t n, double* out, Body body) {
  alignas(64) T b0[kTrustChunk], b1[kTrustChunk];
  double s0[2] = {0.0, 0.0}, s1[2] = {0.0, 0.0};
  for (size_t c = 0; c < n; c += kTrustChunk) {
    const size_t k = std::min(kTrustChunk, n - c);
    for_vectors<T>(k, [&](size_t i, auto mem) { body(c + i, mem, b0 + i, b1 + i); });
    sums_kernel(b0, k, s0);
    sums_kernel(b1, k, s1);
  }
  out[0] += s0[1];
  out[1] += s1[1];
}

// What a rule has unless it says otherwise: it is element-wise (no trust ratio per tensor), its
// states may be of either sign and blockwise 8-bit, and its fast body assumes no switch of its
// own (a rule with switches declares its own fast(c)).
struct RuleDefaults {
  static constexpr bool per_tensor = false;
  static constexpr unsigned nonnegative = 0;  // bit k: state k is never negative
  static constexpr bool blockwise8 = true;    // its states may be blockwise 8-bit
  template <typename C>
  static bool fast(const C&) {
    return true;
  }
};

// The index of field `name` in a rule's list (at compile time).
template <size_t N>
constexpr int field_index(const std::array<Field, N>& fields, const char* name) {
  for (size_t i = 0; i < N; ++i) {
    if (same_name(fields[i].name, name)) return int(i);
  }
  return -1;
}

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
