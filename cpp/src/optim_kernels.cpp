// Optimizer steps, penalty kernels and the deterministic sums, written once and compiled once
// per instruction set (see simd.h).
//
// Each update rule is the element-wise part of the `_single_tensor_*` function of torch.optim
// with the operations torch's CPU kernels use, in their order:
//   x.add_(y, alpha=a)          -> fma(y, a, x)            (ATen's vectorized add with alpha)
//   x.addcmul_(y, z, value=a)   -> fma(a * y, z, x)
//   x.addcdiv_(y, z, value=a)   -> x + (a * y) / z
//   x.mul_(a)                   -> x * a
//   x.lerp_(y, w)               -> see OptimArgs (fma, as ATen's vectorized lerp)
// (checked against torch 2.x on float32: bit for bit on its vectorized path). Floating-point
// contraction is off, so these are the only fused operations.
//
// Nothing here has static storage with a dynamic initializer (see random_kernels.cpp).
#include <algorithm>
#include <cstring>
#include <tuple>
#include <type_traits>

#include "regtune/optim.h"
#include "philox.h"
#include "simd.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;

template <typename T> struct Vec;
template <> struct Vec<float> { using type = F32; static constexpr size_t lanes = size_t(kLanes); };
template <> struct Vec<double> { using type = F64; static constexpr size_t lanes = size_t(kLanes64); };

// ------------------------------------------------------------------- low-precision arrays
// The steps on bfloat16/half parameters compute in float32 (the float32 bodies, instantiated
// once more per storage type): loads widen exactly; stores round to nearest even, or, for the
// parameter, stochastically with the Philox word at the element's index in its tensor.
constexpr size_t bytes_of(DType d) { return d == DType::f32 ? 4 : 2; }

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
// compile time (no clip, L1 or proximal term, and the rule's own, see each kernel), so its
// loop carries no test for them, and kEma says whether it also updates the weight average (a
// later update, not the first copy). At one thread a shorter loop keeps more cache lines in
// flight: SGD with momentum, 4096 x 4096 float32, AVX2, one thread, in one process on the same
// arrays, went from 1.18-1.25x the roofline yardstick's time to 1.02-1.10x.
template <typename T>
RT_INLINE bool no_extras(const OptimArgs<T>& a) {
  return !a.clip_on && !a.l1_on && !a.prox_on;
}

// Calls body(kFast, kEma) (std::bool_constant tags) for the step `a` describes; rule_fast says
// whether the rule's own switches are those its fast body assumes.
// The low-precision steps (Q, the parameter, not a plain pointer) compile the fast body without
// the weight average and the general one.
template <typename Q, typename T, typename Body>
RT_INLINE void dispatch_rule(const OptimArgs<T>& a, bool rule_fast, Body body) {
  if constexpr (!std::is_pointer_v<Q>) {
    if (no_extras(a) && rule_fast && !a.ema_on) {
      body(std::true_type{}, std::false_type{});
    } else {
      body(std::false_type{}, std::false_type{});
    }
  } else if (no_extras(a) && rule_fast && !a.ema_on) {
    body(std::true_type{}, std::false_type{});
  } else if (no_extras(a) && rule_fast && !a.ema_copy) {
    body(std::true_type{}, std::true_type{});
  } else {
    body(std::false_type{}, std::false_type{});
  }
}

// The gradient the rule sees: clipped, plus the L1 term, then the decoupled or coupled
// weight decay (p may be rescaled by the decoupled decay).
template <bool kFast, typename T, typename C, typename V, typename Mem>
RT_INLINE V prepare(const Mem& mem, C grad, V& p, const OptimArgs<T>& a) {
  V g = mem.load(grad);
  if (!kFast && a.clip_on) g = mul(g, set1(a.clip));
  if (!kFast && a.l1_on) g = add(g, mul(set1(a.l1), sign(p)));
  if (a.decay_on) p = mul(p, set1(a.decay));
  if (a.wd_on) g = fma(p, set1(a.wd), g);
  return g;
}

// torch's vectorized lerp_(end, w): fma(w, end - x, x) for |w| < 0.5, else fma(w - 1, end - x, end)
// (coef = w or w - 1, small = |w| < 0.5).
template <typename T, typename V>
RT_INLINE V lerp_coef(V x, V end, T coef, bool small) {
  return fma(set1(coef), sub(end, x), small ? x : end);
}

template <typename T, typename V>
RT_INLINE V lerp_to(V x, V end, const OptimArgs<T>& a) {
  return lerp_coef(x, end, a.avg_coef, a.avg_small);
}

// fma(w * g, g, x * s): exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2) and RMSprop's
// square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha).
template <typename T, typename V>
RT_INLINE V square_avg(V x, V g, const OptimArgs<T>& a) {
  return fma(mul(set1(a.sq_weight), g), g, mul(x, set1(a.sq_decay)));
}

// Soft-thresholding sign(p) * max(|p| - t, 0); max(0, .) keeps a NaN a NaN.
template <typename T, typename V>
RT_INLINE V soft_threshold(V p, T t) {
  return xor_sign(max(set1(T(0)), sub(abs(p), set1(t))), p);
}

// The weight average's update toward p (not its first update, a copy): torch's AveragedModel
// on the CPU: _foreach_lerp_(avg, p, 1 - decay) for the EMA, avg + (p - avg) / (n + 1) for SWA.
template <typename T, typename V>
RT_INLINE V average_to(V avg, V p, const OptimArgs<T>& a) {
  return a.ema_mean ? add(avg, div(sub(p, avg), set1(a.ema_count))) : lerp_coef(avg, p, a.ema_coef, a.ema_small);
}

// Stores the updated p (after the proximal step) and updates the weight average from it.
template <bool kFast, bool kEma, typename T, typename Q, typename E, typename V, typename Mem>
RT_INLINE void finish(const Mem& mem, Q param, E ema, V p, const OptimArgs<T>& a) {
  if (!kFast && a.prox_on) p = soft_threshold(p, a.prox);
  if constexpr (std::is_pointer_v<Q>) {
    mem.store(param, p);
  } else {
    p = mem.store(param, p);  // 16-bit: the average follows the parameter as written
  }
  if (kEma || (!kFast && a.ema_on)) mem.store(ema, !kEma && a.ema_copy ? p : average_to(mem.load(ema), p, a));
}

template <bool kFast, bool kEma, typename T, typename E>
RT_INLINE E ema_stream(E ema, const OptimArgs<T>& a) {
  return kEma || (!kFast && a.ema_on) ? ema : E(nullptr);
}

// The first half of Adam and of the rules built on it (NAdam, RAdam): p loaded, g prepared,
// m = lerp(m, g, 1 - beta1) and v = fma((1 - beta2) g, g, v beta2) updated and stored.
// Pointers are those of the vector at hand.
template <bool kFast, typename T, typename Q, typename C, typename P, typename V, typename Mem>
RT_INLINE void adam_moments(const Mem& mem, Q param, C grad, P m_, P v_, V& p, V& g, V& m, V& v,
                            const OptimArgs<T>& a) {
  p = mem.load(param);
  g = prepare<kFast>(mem, grad, p, a);
  m = lerp_to(mem.load(m_), g, a);
  v = square_avg(mem.load(v_), g, a);
  mem.store(m_, m);
  mem.store(v_, v);
}

// ------------------------------------------------------------------------------ the rules
// SGD: buf = g on the first step, else buf * momentum + (1 - dampening) * g;
// g = nesterov ? g + momentum * buf : buf; p = p - lr * g.
// kFast: no extras, momentum after the first step, no nesterov.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void sgd_body(Q param, C grad, P buf, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;  // a copy: stores through T* cannot change it, so it stays in registers
  const bool momentum = kFast || a.momentum_on;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    V g = prepare<kFast>(mem, grad + i, p, a);
    if (momentum) {
      const V b = !kFast && a.first_step ? g : fma(g, set1(a.damp_weight), mul(mem.load(buf + i), set1(a.momentum)));
      mem.store(buf + i, b);
      g = !kFast && a.nesterov ? fma(b, set1(a.momentum), g) : b;
    }
    finish<kFast, kEma>(mem, param + i, ema + i, fma(g, set1(a.step), p), a);
  }, param, grad, momentum ? buf : nullptr, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void sgd_kernel(Q param, C grad, P buf, P, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, a.momentum_on && !a.first_step && !a.nesterov, [&](auto fast, auto e) {
    sgd_body<fast(), e(), T>(param, grad, buf, ema, n, a);
  });
}

// Adam / AdamW: m = lerp(m, g, 1 - beta1); v = fma((1 - beta2) * g, g, v * beta2);
// vmax = max(vmax, v) with amsgrad; p = p + (-step_size * m) / (sqrt(v) / bc2_sqrt + eps).
// kFast: no extras, no amsgrad.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void adam_body(Q param, C grad, P m_, P v_, P vmax_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p, g, m, v;
    adam_moments<kFast>(mem, param + i, grad + i, m_ + i, v_ + i, p, g, m, v, a);
    if (!kFast && a.amsgrad) {
      v = max(mem.load(vmax_ + i), v);  // v when either is NaN: a NaN gradient still propagates
      mem.store(vmax_ + i, v);
    }
    const V denom = add(div(sqrt(v), set1(a.bc2_sqrt)), set1(a.eps));
    finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(a.step), m), denom)), a);
  }, param, grad, m_, v_, !kFast && a.amsgrad ? vmax_ : nullptr, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void adam_kernel(Q param, C grad, P m_, P v_, P vmax_, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, !a.amsgrad, [&](auto fast, auto e) { adam_body<fast(), e(), T>(param, grad, m_, v_, vmax_, ema, n, a); });
}

// RMSprop: sq = fma((1 - alpha) * g, g, sq * alpha); centered: ga = lerp(ga, g, 1 - alpha),
// avg = sqrt(max(0, fma(-ga, ga, sq))), else avg = sqrt(sq); avg += eps; with momentum
// buf = buf * momentum + g / avg, p = p - lr * buf; without, p = p + (-lr * g) / avg.
// kFast: no extras.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void rmsprop_body(Q param, C grad, P sq_, P ga_, P buf_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V sq = square_avg(mem.load(sq_ + i), g, a);
    mem.store(sq_ + i, sq);
    V avg;
    if (a.centered) {
      const V ga = lerp_to(mem.load(ga_ + i), g, a);
      mem.store(ga_ + i, ga);
      // square_avg.addcmul(ga, ga, value=-1) (-1 * ga is exact), clamped at 0: with a steady
      // gradient the two running averages agree to the last bit and the difference can round
      // below 0, where torch's sqrt gives NaN. max(0, x) keeps a NaN x (from a NaN gradient).
      avg = sqrt(max(set1(T(0)), fma(neg(ga), ga, sq)));
    } else {
      avg = sqrt(sq);
    }
    avg = add(avg, set1(a.eps));
    if (a.momentum_on) {
      const V b = add(mul(mem.load(buf_ + i), set1(a.momentum)), div(g, avg));
      mem.store(buf_ + i, b);
      p = fma(b, set1(a.step), p);
    } else {
      p = add(p, div(mul(set1(a.step), g), avg));
    }
    finish<kFast, kEma>(mem, param + i, ema + i, p, a);
  }, param, grad, sq_, a.centered ? ga_ : nullptr, a.momentum_on ? buf_ : nullptr, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void rmsprop_kernel(Q param, C grad, P sq_, P ga_, P buf_, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { rmsprop_body<fast(), e(), T>(param, grad, sq_, ga_, buf_, ema, n, a); });
}

// Adagrad: sum = fma(g, g, sum); p = p + (-clr * g) / (sqrt(sum) + eps).
// kFast: no extras.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void adagrad_body(Q param, C grad, P sum_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V s = fma(g, g, mem.load(sum_ + i));  // addcmul_(g, g, value=1)
    mem.store(sum_ + i, s);
    finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(a.step), g), add(sqrt(s), set1(a.eps)))), a);
  }, param, grad, sum_, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void adagrad_kernel(Q param, C grad, P sum_, P, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { adagrad_body<fast(), e(), T>(param, grad, sum_, ema, n, a); });
}

// Lion (Chen et al., 2023), as lion-pytorch's update_fn: c = fma(g, 1 - beta1, m * beta1)
// (exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1)); p = fma(sign(c), -lr, p);
// m = fma(g, 1 - beta2, m * beta2). sign(0) = 0, and a NaN c moves p by 0 (torch's sgn_ of a
// NaN is 0 on its vectorized path, as regtune's sign).
// kFast: no extras.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void lion_body(Q param, C grad, P m_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V m = mem.load(m_ + i);
    const V c = fma(g, set1(a.damp_weight), mul(m, set1(a.momentum)));
    mem.store(m_ + i, fma(g, set1(a.sq_weight), mul(m, set1(a.sq_decay))));
    finish<kFast, kEma>(mem, param + i, ema + i, fma(sign(c), set1(a.step), p), a);
  }, param, grad, m_, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void lion_kernel(Q param, C grad, P m_, P, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { lion_body<fast(), e(), T>(param, grad, m_, ema, n, a); });
}

// NAdam, as torch's _single_tensor_nadam: m and v as Adam's; denom = sqrt(v / bc2) + eps;
// p = p + (c1 * g) / denom; p = p + (c2 * m) / denom (two addcdiv_, in that order) with
// c1 = -lr (1 - mu_t) / (1 - prod mu), c2 = -lr mu_{t+1} / (1 - prod mu * mu_{t+1}).
// kFast: no extras.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void nadam_body(Q param, C grad, P m_, P v_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p, g, m, v;
    adam_moments<kFast>(mem, param + i, grad + i, m_ + i, v_ + i, p, g, m, v, a);
    const V denom = add(sqrt(div(v, set1(a.bc2))), set1(a.eps));
    p = add(p, div(mul(set1(a.step), g), denom));
    finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(a.step2), m), denom)), a);
  }, param, grad, m_, v_, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void nadam_kernel(Q param, C grad, P m_, P v_, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { nadam_body<fast(), e(), T>(param, grad, m_, v_, ema, n, a); });
}

// RAdam, as torch's _single_tensor_radam: m and v as Adam's; u = (m / bc1) * lr; when the
// variance is tractable (rho_t > 5, rect_on) u = (u * (1 / (sqrt(v) + eps) * bc2_sqrt)) * rect
// (a scalar divided by a tensor is its reciprocal times the scalar in torch); p = p - u.
// kFast: no extras.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void radam_body(Q param, C grad, P m_, P v_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p, g, m, v;
    adam_moments<kFast>(mem, param + i, grad + i, m_ + i, v_ + i, p, g, m, v, a);
    V u = mul(div(m, set1(a.bc1)), set1(a.scale));
    if (a.rect_on) {
      const V adaptive = mul(div(set1(T(1)), add(sqrt(v), set1(a.eps))), set1(a.bc2_sqrt));
      u = mul(mul(u, adaptive), set1(a.rect));
    }
    finish<kFast, kEma>(mem, param + i, ema + i, sub(p, u), a);
  }, param, grad, m_, v_, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void radam_kernel(Q param, C grad, P m_, P v_, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { radam_body<fast(), e(), T>(param, grad, m_, v_, ema, n, a); });
}

// torch.maximum(a, b) of a, b >= 0: NaN when either is. x86's max(a, b) returns b when either
// is NaN; a + b is NaN exactly when one is (no infinities of opposite signs), and is >= the
// maximum otherwise, so the min keeps the maximum or the NaN.
template <typename V>
RT_INLINE V max_nonneg(V a, V b) {
  return min(max(a, b), add(a, b));
}

// Adamax, as torch's _single_tensor_adamax: m as Adam's; u = maximum(u * beta2, |g| + eps)
// (NaN when either is; u >= 0, checked on loading); p = p + (-clr * m) / u with clr = lr / (1 - beta1^t).
// kFast: no extras.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void adamax_body(Q param, C grad, P m_, P u_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V m = lerp_to(mem.load(m_ + i), g, a);
    const V u = max_nonneg(mul(mem.load(u_ + i), set1(a.sq_decay)), add(abs(g), set1(a.eps)));
    mem.store(m_ + i, m);
    mem.store(u_ + i, u);
    finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(a.step), m), u)), a);
  }, param, grad, m_, u_, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void adamax_kernel(Q param, C grad, P m_, P u_, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { adamax_body<fast(), e(), T>(param, grad, m_, u_, ema, n, a); });
}

// Adadelta, as torch's _single_tensor_adadelta: sq = fma((1 - rho) g, g, sq rho);
// delta = sqrt(acc + eps) / sqrt(sq + eps) * g; acc = fma((1 - rho) delta, delta, acc rho);
// p = fma(delta, -lr, p).
// kFast: no extras.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void adadelta_body(Q param, C grad, P sq_, P acc_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V sq = square_avg(mem.load(sq_ + i), g, a);
    const V acc = mem.load(acc_ + i);
    const V delta = mul(div(sqrt(add(acc, set1(a.eps))), sqrt(add(sq, set1(a.eps)))), g);
    mem.store(sq_ + i, sq);
    mem.store(acc_ + i, square_avg(acc, delta, a));
    finish<kFast, kEma>(mem, param + i, ema + i, fma(delta, set1(a.step), p), a);
  }, param, grad, sq_, acc_, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void adadelta_kernel(Q param, C grad, P sq_, P acc_, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { adadelta_body<fast(), e(), T>(param, grad, sq_, acc_, ema, n, a); });
}

// The weight average's update on its own (EMA.update, SWA.update), avg passed as `param` and p
// as `grad`.
template <typename T, typename Q, typename C, typename P, typename E>
void average_kernel(Q avg, C p, P, P, P, E, size_t n, const OptimArgs<T>& args) {
  const OptimArgs<T> a = args;
  if (a.ema_copy) {
    if constexpr (std::is_same_v<Q, T*> && std::is_same_v<C, const T*>) {
      std::memcpy(avg, p, n * sizeof(T));
    } else {
      for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(avg + i, mem.load(p + i)); });
    }
    return;
  }
  for_vectors<T>(n, [&](size_t i, auto mem) {
    mem.store(avg + i, average_to(mem.load(avg + i), mem.load(p + i), a));
  }, avg, p);
}

// ------------------------------------------------------------- rules with a trust ratio
// LAMB and LARS scale each tensor's step by a ratio of two norms, so a step takes two passes:
// trust_sums (first) forms the two sums of squares of a reduction block, the driver combines
// the blocks of each tensor in order and sets the tensor's coefficient, and the step kernel
// (second) applies it. Each vector whose norm is taken is written to a small buffer in cache
// and summed there by the deterministic reduction (sums_kernel), so the sums are the same on
// every path and thread count.
template <typename T>
void sums_kernel(const T* x, size_t n, double* out);

constexpr size_t kTrustChunk = 256;  // elements per buffer: 1-2 KiB, in L1

// The gradient LAMB and LARS see in their first pass: clipped, plus the L1 term (no weight
// decay: it does not enter the norm of the gradient).
template <typename T, typename C, typename V, typename Mem>
RT_INLINE V clipped_grad(const Mem& mem, C grad, V p, const OptimArgs<T>& a) {
  V g = mem.load(grad);
  if (a.clip_on) g = mul(g, set1(a.clip));
  if (a.l1_on) g = add(g, mul(set1(a.l1), sign(p)));
  return g;
}

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

// LAMB's first pass, as pytorch-optimizer's Lamb.update: m = fma(g, beta3, m * beta1)
// (exp_avg.mul_(beta1).add_(grad, alpha=beta3)), v as Adam's; the norms of the decayed param
// and of the update u = m / (sqrt(v) + eps) (+ wd * p, coupled decay).
template <typename T, typename Q, typename C, typename P>
void lamb_sums(Q param, C grad, P m_, P v_, size_t n, const OptimArgs<T>& args, double* out) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  trust_blocks<T>(n, out, [&](size_t i, auto mem, T* x0, T* x1) {
    V p = mem.load(param + i);
    const V g = clipped_grad(mem, grad + i, p, a);
    if (a.decay_on) p = mul(p, set1(a.decay));
    const V m = fma(g, set1(a.damp_weight), mul(mem.load(m_ + i), set1(a.momentum)));
    const V v = square_avg(mem.load(v_ + i), g, a);
    mem.store(m_ + i, m);
    mem.store(v_ + i, v);
    V u = div(m, add(sqrt(v), set1(a.eps)));
    if (a.update_wd_on) u = fma(p, set1(a.update_wd), u);
    mem.store(x0, p);
    mem.store(x1, u);
  });
}

// LAMB's second pass: p = fma(u, -lr * trust, p * decay), with u recomputed from the new m, v.
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void lamb_body(Q param, P m_, P v_, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    if (a.decay_on) p = mul(p, set1(a.decay));
    V u = div(mem.load(m_ + i), add(sqrt(mem.load(v_ + i)), set1(a.eps)));
    if (a.update_wd_on) u = fma(p, set1(a.update_wd), u);
    finish<kFast, kEma>(mem, param + i, ema + i, fma(u, set1(a.step), p), a);
  }, param, m_, v_, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void lamb_kernel(Q param, C, P m_, P v_, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { lamb_body<fast(), e(), T, Q, C, P, E>(param, m_, v_, ema, n, a); });
}

// LARS's first pass: the norms of the param and of the (clipped) gradient.
template <typename T, typename Q, typename C, typename P>
void lars_sums(Q param, C grad, P, P, size_t n, const OptimArgs<T>& args, double* out) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  trust_blocks<T>(n, out, [&](size_t i, auto mem, T* x0, T* x1) {
    const V p = mem.load(param + i);
    mem.store(x0, p);
    mem.store(x1, clipped_grad(mem, grad + i, p, a));
  });
}

// LARS's second pass, as pytorch-optimizer's LARS: g = (g + wd * p) * trust (scale; plain g
// on a tensor it does not adapt), buf = fma(g, 1 - dampening, buf * momentum) (from zeros:
// no first-step copy), g = nesterov ? fma(buf, momentum, g) : buf; p = fma(g, -lr, p).
template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
void lars_body(Q param, C grad, P buf, E ema, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    V g = mul(prepare<kFast>(mem, grad + i, p, a), set1(a.scale));
    if (a.momentum_on) {
      const V b = fma(g, set1(a.damp_weight), mul(mem.load(buf + i), set1(a.momentum)));
      mem.store(buf + i, b);
      g = a.nesterov ? fma(b, set1(a.momentum), g) : b;
    }
    finish<kFast, kEma>(mem, param + i, ema + i, fma(g, set1(a.step), p), a);
  }, param, grad, a.momentum_on ? buf : nullptr, ema_stream<kFast, kEma>(ema, a));
}

template <typename T, typename Q, typename C, typename P, typename E>
void lars_kernel(Q param, C grad, P buf, P, P, E ema, size_t n, const OptimArgs<T>& a) {
  dispatch_rule<Q>(a, true, [&](auto fast, auto e) { lars_body<fast(), e(), T>(param, grad, buf, ema, n, a); });
}

// ----------------------------------------------------------------------------- Adafactor
// torch.optim.Adafactor's u = rsqrt(clamp_min(v, eps1^2)) * g with v = (row_var @ col_var) /
// clamp_min(mean(row_var), eps1) (the outer product of one row and one column: rv * cv rounded
// once) or v = variance. clamp_min keeps a NaN: x86's max(eps, v) returns v when unordered.
template <typename T, typename V, typename Mem>
RT_INLINE V adafactor_u(const Mem& mem, size_t i, V g, const T* cv, T rv, T m, const T* var, const OptimArgs<T>& a) {
  const V v = cv ? div(mul(set1(rv), mem.load(cv + i)), set1(m)) : mem.load(var + i);
  return mul(div(set1(T(1)), sqrt(max(set1(a.eps), v))), g);
}

// Q and C: the parameter's and the gradient's pointer types (16-bit steps: LowParam, and a
// 16-bit or float32 gradient); the factors are T (float32 for 16-bit parameters).
template <typename T, typename Q, typename C>
void adafactor_first(Q p_, C g_, size_t n, const OptimArgs<T>& args, double* out, double* acc, T* var) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  alignas(64) T gb[kTrustChunk];
  alignas(64) T pb[std::is_pointer_v<Q> ? 1 : kTrustChunk];  // 16-bit parameters, widened for the sums
  double sp[2] = {0.0, 0.0}, sg[2] = {0.0, 0.0};
  for (size_t c = 0; c < n; c += kTrustChunk) {
    const size_t k = std::min(kTrustChunk, n - c);
    for_vectors<T>(k, [&](size_t i, auto mem) {
      const V p = mem.load(p_ + (c + i));
      if constexpr (!std::is_pointer_v<Q>) mem.store(pb + i, p);
      const V g = clipped_grad(mem, g_ + (c + i), p, a);
      mem.store(gb + i, g);
      if (var) mem.store(var + c + i, lerp_to(mem.load(var + c + i), mul(g, g), a));  // variance.lerp_(g * g, w)
    });
    if constexpr (std::is_pointer_v<Q>) {
      sums_kernel(p_ + c, k, sp);
    } else {
      sums_kernel(pb, k, sp);
    }
    sums_kernel(gb, k, sg);
    if (acc) {
      for (size_t j = 0; j < k; ++j) {  // in double, a product then a sum: the same on every path
        const double x = double(gb[j]);
        acc[c + j] += x * x;
      }
    }
  }
  out[0] += sp[1];
  out[1] += sg[1];
}

template <typename T, typename Q, typename C>
void adafactor_second(Q p_, C g_, size_t n, const OptimArgs<T>& args, const T* cv, T rv, T m, const T* var,
                      double* out) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  alignas(64) T ub[kTrustChunk];
  double su[2] = {0.0, 0.0};
  for (size_t c = 0; c < n; c += kTrustChunk) {
    const size_t k = std::min(kTrustChunk, n - c);
    for_vectors<T>(k, [&](size_t i, auto mem) {
      const V p = a.l1_on ? mem.load(p_ + (c + i)) : set1(T(0));  // p only for the L1 term
      const V g = clipped_grad(mem, g_ + (c + i), p, a);
      mem.store(ub + i, adafactor_u(mem, c + i, g, cv, rv, m, var, a));
    });
    sums_kernel(ub, k, su);
  }
  out[0] += su[1];
}

template <typename T, typename Q, typename C>
void adafactor_apply(Q p_, C g_, size_t n, const OptimArgs<T>& args, const T* cv, T rv, T m, const T* var, T* ema) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(p_ + i);
    const V u = adafactor_u(mem, i, clipped_grad(mem, g_ + i, p, a), cv, rv, m, var, a);
    if (a.decay_on) p = mul(p, set1(a.decay));  // param.mul_(1 - lr * weight_decay) first
    finish<false, false>(mem, p_ + i, ema + i, fma(u, set1(a.step), p), a);
  }, p_, g_, cv, var, a.ema_on ? ema : nullptr);
}

// The roofline yardstick of a step (bench/bench_roofline.py): the arrays a rule with that
// state reads and writes, loaded and stored in the same order with the same prefetching, and
// one add per array in place of the rule's arithmetic.
template <typename T, typename Q, typename C, typename P, typename E>
void stream_kernel(Q param, C grad, P s0, P s1, P s2, E, size_t n, const OptimArgs<T>&) {
  using V = typename Vec<T>::type;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    const V p = mem.load(param + i);
    const V g = mem.load(grad + i);
    const V a = s0 ? mem.load(s0 + i) : g;
    const V b = s1 ? mem.load(s1 + i) : g;
    const V c = s2 ? mem.load(s2 + i) : g;
    if (s0) mem.store(s0 + i, add(a, g));
    if (s1) mem.store(s1 + i, add(b, g));
    if (s2) mem.store(s2 + i, add(c, g));
    mem.store(param + i, add(p, g));
  }, param, grad, s0, s1, s2);
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

// ------------------------------------------------------------------------- element-wise
template <typename T, typename P, typename C>
void penalty_grad_kernel(P g, C w, size_t n, T l1, T l2) {
  for_vectors<T>(n, [&](size_t i, auto mem) {
    const auto x = mem.load(w + i);
    mem.store(g + i, add(mem.load(g + i), add(mul(set1(l1), sign(x)), mul(set1(l2), x))));
  }, g, w);
}

template <typename T, typename P, typename C>
void prox_l1_kernel(P w, size_t n, T threshold) {
  for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(w + i, soft_threshold(mem.load(w + i), threshold)); }, w);
}

template <typename T, typename P, typename C>
void scale_kernel(P x, size_t n, T s) {
  for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(x + i, mul(mem.load(x + i), set1(s))); }, x);
}

// min(c, max(-c, x)): x86 min/max return their second operand when unordered, so NaN survives.
template <typename T, typename P, typename C>
void clamp_kernel(P x, size_t n, T c) {
  for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(x + i, min(set1(c), max(set1(-c), mem.load(x + i)))); }, x);
}

template <typename T>
OptimKernelsOf<T> kernels_of() {
  using P = T*;
  using C = const T*;
  OptimKernelsOf<T> k{};
  k.step[int(OptimKind::sgd)] = sgd_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::adam)] = adam_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::rmsprop)] = rmsprop_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::adagrad)] = adagrad_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::stream)] = stream_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::lion)] = lion_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::nadam)] = nadam_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::radam)] = radam_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::adamax)] = adamax_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::adadelta)] = adadelta_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::average)] = average_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::lamb)] = lamb_kernel<T, P, C, P, P>;
  k.step[int(OptimKind::lars)] = lars_kernel<T, P, C, P, P>;
  k.lamb_sums = lamb_sums<T, C, C, P>;
  k.lars_sums = lars_sums<T, C, C, P>;
  k.adafactor = {adafactor_first<T, const T*, const T*>, adafactor_second<T, const T*, const T*>,
                 adafactor_apply<T, T*, const T*>};
  k.sums = sums_kernel<T>;
  k.penalty_grad = penalty_grad_kernel<T, P, C>;
  k.prox_l1 = prox_l1_kernel<T, P, C>;
  k.scale = scale_kernel<T, P, C>;
  k.clamp = clamp_kernel<T, P, C>;
  return k;
}

// ------------------------------------------------------------------ low-precision entries
// Each rule's general body, instantiated per 16-bit dtype L of the parameter and per storage of
// the gradient (L or float32) and of the state (float32 or L); the weight averages are
// float32. So the loops carry no dtype tests; the parameter's three ways of writing back
// (nearest, stochastic, master) are tests the branch predictor settles.
#define REGTUNE_RULE(name)                                                                                    \
  struct name##_rule {                                                                                        \
    template <typename Q, typename C, typename P>                                                             \
    static void step(Q q, C g, P s0, P s1, P s2, float* e, size_t n, const OptimArgs<float>& a) {            \
      name##_kernel<float, Q, C, P, float*>(q, g, s0, s1, s2, e, n, a);                                      \
    }                                                                                                         \
  };
REGTUNE_RULE(sgd)
REGTUNE_RULE(adam)
REGTUNE_RULE(rmsprop)
REGTUNE_RULE(adagrad)
REGTUNE_RULE(stream)
REGTUNE_RULE(lion)
REGTUNE_RULE(nadam)
REGTUNE_RULE(radam)
REGTUNE_RULE(adamax)
REGTUNE_RULE(adadelta)
REGTUNE_RULE(lamb)
REGTUNE_RULE(lars)
#undef REGTUNE_RULE
struct lamb_first {
  template <typename Q, typename C, typename P>
  static void sums(Q q, C g, P s0, P s1, size_t n, const OptimArgs<float>& a, double* out) {
    lamb_sums<float, Q, C, P>(q, g, s0, s1, n, a, out);
  }
};
struct lars_first {
  template <typename Q, typename C, typename P>
  static void sums(Q q, C g, P s0, P s1, size_t n, const OptimArgs<float>& a, double* out) {
    lars_sums<float, Q, C, P>(q, g, s0, s1, n, a, out);
  }
};

template <typename X>
RT_INLINE X* at_(const void* base, size_t lo) {
  return base ? static_cast<X*>(const_cast<void*>(base)) + lo : nullptr;
}

// The parameter of tensor t from element lo: its 16-bit array, and its master copy or the
// words of its stochastic rounding.
template <typename L>
RT_INLINE LowParam<L> low_param(const LowTensor& t, size_t lo, SrWords* words) {
  LowParam<L> q;
  if (t.shadow) {
    q.p = at_<L>(t.shadow, lo), q.master = at_<float>(t.param, lo);
  } else {
    q.p = at_<L>(t.param, lo);
    if (t.stochastic) q.sr = words;
  }
  q.idx = lo;
  return q;
}

// f(param, grad, s0, s1, s2) with the pointers of tensor t from element lo, typed.
template <typename L, typename F>
RT_INLINE void with_types(const LowTensor& t, size_t lo, SrWords* words, F f) {
  const LowParam<L> q = low_param<L>(t, lo, words);
  const bool g32 = t.grad_dt == DType::f32;
  const bool s32 = t.state_dt[0] == DType::f32;  // every state of a step has one dtype
  auto states = [&](auto tag) {
    using S = decltype(tag);
    return std::make_tuple(at_<S>(t.state[0], lo), at_<S>(t.state[1], lo), at_<S>(t.state[2], lo));
  };
  if (g32 && s32) {
    auto [a, b, c] = states(float{});
    f(q, at_<const float>(t.grad, lo), a, b, c);
  } else if (g32) {
    auto [a, b, c] = states(L{});
    f(q, at_<const float>(t.grad, lo), a, b, c);
  } else if (s32) {
    auto [a, b, c] = states(float{});
    f(q, at_<const L>(t.grad, lo), a, b, c);
  } else {
    auto [a, b, c] = states(L{});
    f(q, at_<const L>(t.grad, lo), a, b, c);
  }
}

template <typename R>
void low_step(const LowTensor& t, size_t lo, size_t n, const OptimArgs<float>& a) {
  SrWords words(t.sr);
  float* e = at_<float>(t.ema, lo);
  auto run = [&](auto q, auto g, auto s0, auto s1, auto s2) { R::step(q, g, s0, s1, s2, e, n, a); };
  if (t.param_dt == DType::bf16 || (t.shadow && t.shadow_dt == DType::bf16)) {
    with_types<bfloat16_t>(t, lo, &words, run);
  } else {
    with_types<float16_t>(t, lo, &words, run);
  }
}

template <typename R>
void low_first(const LowTensor& t, size_t lo, size_t n, const OptimArgs<float>& a, double* out) {
  auto run = [&](auto q, auto g, auto s0, auto s1, auto) { R::sums(q, g, s0, s1, n, a, out); };
  if (t.param_dt == DType::bf16 || (t.shadow && t.shadow_dt == DType::bf16)) {
    with_types<bfloat16_t>(t, lo, nullptr, run);
  } else {
    with_types<float16_t>(t, lo, nullptr, run);
  }
}

// The weight average's update on 16-bit parameters: float32 averages toward them.
void low_average(const LowTensor& t, size_t lo, size_t n, const OptimArgs<float>& a) {
  float* avg = at_<float>(t.param, lo);
  if (t.grad_dt == DType::bf16) {
    average_kernel<float, float*, const bfloat16_t*, float*, float*>(avg, at_<const bfloat16_t>(t.grad, lo), nullptr,
                                                                     nullptr, nullptr, nullptr, n, a);
  } else {
    average_kernel<float, float*, const float16_t*, float*, float*>(avg, at_<const float16_t>(t.grad, lo), nullptr,
                                                                    nullptr, nullptr, nullptr, n, a);
  }
}

// Adafactor on 16-bit parameters: the parameter (LowParam) and gradient typed per call, the
// factors float32.
template <typename F>
RT_INLINE void with_param_grad(const LowTensor& t, size_t o, SrWords* words, F f) {
  auto run = [&](auto tag) {
    using L = decltype(tag);
    const LowParam<L> q = low_param<L>(t, o, words);
    if (t.grad_dt == DType::f32) {
      f(q, at_<const float>(t.grad, o));
    } else {
      f(q, at_<const L>(t.grad, o));
    }
  };
  if (t.param_dt == DType::bf16 || (t.shadow && t.shadow_dt == DType::bf16)) {
    run(bfloat16_t{});
  } else {
    run(float16_t{});
  }
}

void low_ada_first(const LowTensor& t, size_t o, size_t n, const OptimArgs<float>& a, double* out, double* acc,
                   float* var) {
  with_param_grad(t, o, nullptr, [&](auto q, auto g) { adafactor_first<float>(q, g, n, a, out, acc, var); });
}
void low_ada_second(const LowTensor& t, size_t o, size_t n, const OptimArgs<float>& a, const float* cv, float rv,
                    float m, const float* var, double* out) {
  with_param_grad(t, o, nullptr, [&](auto q, auto g) { adafactor_second<float>(q, g, n, a, cv, rv, m, var, out); });
}
void low_ada_apply(const LowTensor& t, size_t o, size_t n, const OptimArgs<float>& a, const float* cv, float rv,
                   float m, const float* var, float* ema) {
  SrWords words(t.sr);
  with_param_grad(t, o, &words, [&](auto q, auto g) { adafactor_apply<float>(q, g, n, a, cv, rv, m, var, ema); });
}

// sums (see OptimKernelsOf) of a 16-bit or float32 array: widened to float32 a piece at a time
// in L1, then the float32 reduction, so the sums equal those of the widened values.
void low_array_sums(const void* x, DType dt, size_t n, double* out) {
  if (dt == DType::f32) return sums_kernel(static_cast<const float*>(x), n, out);
  alignas(64) float buf[kTrustChunk];
  const Arr a(x, dt);
  for (size_t c = 0; c < n; c += kTrustChunk) {
    const size_t k = std::min(kTrustChunk, n - c);
    for_vectors<float>(k, [&](size_t i, auto mem) { mem.store(buf + i, mem.load(a + (c + i))); });
    sums_kernel(buf, k, out);
  }
}

void low_scale(void* x, DType dt, size_t n, float s) { scale_kernel<float, Arr, Arr>(Arr(x, dt), n, s); }
void low_clamp(void* x, DType dt, size_t n, float c) { clamp_kernel<float, Arr, Arr>(Arr(x, dt), n, c); }
void low_prox(void* x, DType dt, size_t n, float t) { prox_l1_kernel<float, Arr, Arr>(Arr(x, dt), n, t); }
void low_penalty_grad(void* g, DType gdt, const void* w, DType wdt, size_t n, float l1, float l2) {
  penalty_grad_kernel<float, Arr, Arr>(Arr(g, gdt), Arr(w, wdt), n, l1, l2);
}

LowKernels low_kernels() {
  LowKernels k{};
  k.step[int(OptimKind::sgd)] = low_step<sgd_rule>;
  k.step[int(OptimKind::adam)] = low_step<adam_rule>;
  k.step[int(OptimKind::rmsprop)] = low_step<rmsprop_rule>;
  k.step[int(OptimKind::adagrad)] = low_step<adagrad_rule>;
  k.step[int(OptimKind::stream)] = low_step<stream_rule>;
  k.step[int(OptimKind::lion)] = low_step<lion_rule>;
  k.step[int(OptimKind::nadam)] = low_step<nadam_rule>;
  k.step[int(OptimKind::radam)] = low_step<radam_rule>;
  k.step[int(OptimKind::adamax)] = low_step<adamax_rule>;
  k.step[int(OptimKind::adadelta)] = low_step<adadelta_rule>;
  k.step[int(OptimKind::average)] = low_average;
  k.step[int(OptimKind::lamb)] = low_step<lamb_rule>;
  k.step[int(OptimKind::lars)] = low_step<lars_rule>;
  k.lamb_sums = low_first<lamb_first>;
  k.lars_sums = low_first<lars_first>;
  k.adafactor = {low_ada_first, low_ada_second, low_ada_apply};
  k.sums = low_array_sums;
  k.scale = low_scale;
  k.clamp = low_clamp;
  k.prox_l1 = low_prox;
  k.penalty_grad = low_penalty_grad;
  return k;
}

}  // namespace

OptimKernels optim_kernels() { return OptimKernels{REGTUNE_NS_NAME, kernels_of<float>(), kernels_of<double>(), low_kernels()}; }

}  // namespace REGTUNE_NS
}  // namespace regtune
