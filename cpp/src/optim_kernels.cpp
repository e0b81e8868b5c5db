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
#include <type_traits>

#include "regtune/optim.h"
#include "simd.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;

template <typename T> struct Vec;
template <> struct Vec<float> { using type = F32; static constexpr size_t lanes = size_t(kLanes); };
template <> struct Vec<double> { using type = F64; static constexpr size_t lanes = size_t(kLanes64); };

// Memory access for one vector of elements: a whole vector in place, or the last k < lanes
// elements of an array through masked loads and stores. Each kernel body is written once
// against this interface and runs for both.
struct Whole {
  template <typename T> RT_INLINE auto load(const T* p) const { return simd::load(p); }
  template <typename T, typename V> RT_INLINE void store(T* p, V v) const { simd::store(p, v); }
};
struct Tail {
  size_t k;
  template <typename T> RT_INLINE auto load(const T* p) const { return load_partial(p, k); }
  template <typename T, typename V> RT_INLINE void store(T* p, V v) const { store_partial(p, v, k); }
};

// Software prefetch: each stream is fetched this far ahead, one prefetch per cache line.
// Measured on the 4096 x 4096 AdamW step (Zen 4, AVX2 and AVX-512 paths, 1 and 2 threads):
// 512 B ahead was 5-12% faster than the hardware prefetchers alone; 256 B and 768 B-4 KiB
// gained less or lost.
constexpr size_t kLineBytes = 64;
constexpr size_t kPrefetchBytes = 512;

template <typename T>
RT_INLINE void prefetch(const T* p, size_t i) {
  if (p) __builtin_prefetch(p + i + kPrefetchBytes / sizeof(T), std::is_const_v<T> ? 0 : 1, 3);
}

// body(i, mem) for i = 0, lanes, 2 lanes, ... < n, a cache line of elements at a time with
// each of `streams` (null ones skipped) prefetched ahead.
template <typename T, typename Body, typename... S>
RT_INLINE void for_vectors(size_t n, Body body, S*... streams) {
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
// Each rule's body is compiled twice: kFast = false reads every switch of the coefficients;
// kFast = true is the common step, where the switches that are off are known at compile time
// (no clip, L1 or proximal term, and the rule's own, see each kernel), so its loop carries no
// test for them. At one thread a shorter loop keeps more cache lines in flight: SGD with
// momentum, 4096 x 4096 float32, AVX2, one thread, in one process on the same arrays, went
// from 1.18-1.25x the roofline yardstick's time to 1.02-1.10x.
template <typename T>
RT_INLINE bool no_extras(const OptimArgs<T>& a) {
  return !a.clip_on && !a.l1_on && !a.prox_on;
}

// The gradient the rule sees: clipped, plus the L1 term, then the decoupled or coupled
// weight decay (p may be rescaled by the decoupled decay).
template <bool kFast, typename T, typename V, typename Mem>
RT_INLINE V prepare(const Mem& mem, const T* grad, V& p, const OptimArgs<T>& a) {
  V g = mem.load(grad);
  if (!kFast && a.clip_on) g = mul(g, set1(a.clip));
  if (!kFast && a.l1_on) g = add(g, mul(set1(a.l1), sign(p)));
  if (a.decay_on) p = mul(p, set1(a.decay));
  if (a.wd_on) g = fma(p, set1(a.wd), g);
  return g;
}

// torch's vectorized lerp_(end, w): fma(w, end - x, x) for |w| < 0.5, else fma(w - 1, end - x, end).
template <typename T, typename V>
RT_INLINE V lerp_to(V x, V end, const OptimArgs<T>& a) {
  return fma(set1(a.avg_coef), sub(end, x), a.avg_small ? x : end);
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

template <bool kFast, typename T, typename V, typename Mem>
RT_INLINE void finish(const Mem& mem, T* param, V p, const OptimArgs<T>& a) {
  if (!kFast && a.prox_on) p = soft_threshold(p, a.prox);
  mem.store(param, p);
}

// ------------------------------------------------------------------------------ the rules
// SGD: buf = g on the first step, else buf * momentum + (1 - dampening) * g;
// g = nesterov ? g + momentum * buf : buf; p = p - lr * g.
// kFast: no extras, momentum after the first step, no nesterov.
template <bool kFast, typename T>
void sgd_body(T* param, const T* grad, T* buf, size_t n, const OptimArgs<T>& args) {
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
    finish<kFast>(mem, param + i, fma(g, set1(a.step), p), a);
  }, param, grad, momentum ? buf : nullptr);
}

template <typename T>
void sgd_kernel(T* param, const T* grad, T* buf, T*, T*, size_t n, const OptimArgs<T>& a) {
  if (no_extras(a) && a.momentum_on && !a.first_step && !a.nesterov) {
    sgd_body<true>(param, grad, buf, n, a);
  } else {
    sgd_body<false>(param, grad, buf, n, a);
  }
}

// Adam / AdamW: m = lerp(m, g, 1 - beta1); v = fma((1 - beta2) * g, g, v * beta2);
// vmax = max(vmax, v) with amsgrad; p = p + (-step_size * m) / (sqrt(v) / bc2_sqrt + eps).
// kFast: no extras, no amsgrad.
template <bool kFast, typename T>
void adam_body(T* param, const T* grad, T* m_, T* v_, T* vmax_, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V m = lerp_to(mem.load(m_ + i), g, a);
    V v = square_avg(mem.load(v_ + i), g, a);
    mem.store(m_ + i, m);
    mem.store(v_ + i, v);
    if (!kFast && a.amsgrad) {
      v = max(mem.load(vmax_ + i), v);  // v when either is NaN: a NaN gradient still propagates
      mem.store(vmax_ + i, v);
    }
    const V denom = add(div(sqrt(v), set1(a.bc2_sqrt)), set1(a.eps));
    finish<kFast>(mem, param + i, add(p, div(mul(set1(a.step), m), denom)), a);
  }, param, grad, m_, v_, !kFast && a.amsgrad ? vmax_ : nullptr);
}

template <typename T>
void adam_kernel(T* param, const T* grad, T* m_, T* v_, T* vmax_, size_t n, const OptimArgs<T>& a) {
  if (no_extras(a) && !a.amsgrad) {
    adam_body<true>(param, grad, m_, v_, vmax_, n, a);
  } else {
    adam_body<false>(param, grad, m_, v_, vmax_, n, a);
  }
}

// RMSprop: sq = fma((1 - alpha) * g, g, sq * alpha); centered: ga = lerp(ga, g, 1 - alpha),
// avg = sqrt(max(0, fma(-ga, ga, sq))), else avg = sqrt(sq); avg += eps; with momentum
// buf = buf * momentum + g / avg, p = p - lr * buf; without, p = p + (-lr * g) / avg.
// kFast: no extras.
template <bool kFast, typename T>
void rmsprop_body(T* param, const T* grad, T* sq_, T* ga_, T* buf_, size_t n, const OptimArgs<T>& args) {
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
    finish<kFast>(mem, param + i, p, a);
  }, param, grad, sq_, a.centered ? ga_ : nullptr, a.momentum_on ? buf_ : nullptr);
}

template <typename T>
void rmsprop_kernel(T* param, const T* grad, T* sq_, T* ga_, T* buf_, size_t n, const OptimArgs<T>& a) {
  if (no_extras(a)) {
    rmsprop_body<true>(param, grad, sq_, ga_, buf_, n, a);
  } else {
    rmsprop_body<false>(param, grad, sq_, ga_, buf_, n, a);
  }
}

// Adagrad: sum = fma(g, g, sum); p = p + (-clr * g) / (sqrt(sum) + eps).
// kFast: no extras.
template <bool kFast, typename T>
void adagrad_body(T* param, const T* grad, T* sum_, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V s = fma(g, g, mem.load(sum_ + i));  // addcmul_(g, g, value=1)
    mem.store(sum_ + i, s);
    finish<kFast>(mem, param + i, add(p, div(mul(set1(a.step), g), add(sqrt(s), set1(a.eps)))), a);
  }, param, grad, sum_);
}

template <typename T>
void adagrad_kernel(T* param, const T* grad, T* sum_, T*, T*, size_t n, const OptimArgs<T>& a) {
  if (no_extras(a)) {
    adagrad_body<true>(param, grad, sum_, n, a);
  } else {
    adagrad_body<false>(param, grad, sum_, n, a);
  }
}

// Lion (Chen et al., 2023), as lion-pytorch's update_fn: c = fma(g, 1 - beta1, m * beta1)
// (exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1)); p = fma(sign(c), -lr, p);
// m = fma(g, 1 - beta2, m * beta2). sign(0) = 0, and a NaN c moves p by 0 (torch's sgn_ of a
// NaN is 0 on its vectorized path, as regtune's sign).
// kFast: no extras.
template <bool kFast, typename T>
void lion_body(T* param, const T* grad, T* m_, size_t n, const OptimArgs<T>& args) {
  using V = typename Vec<T>::type;
  const OptimArgs<T> a = args;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(param + i);
    const V g = prepare<kFast>(mem, grad + i, p, a);
    const V m = mem.load(m_ + i);
    const V c = fma(g, set1(a.damp_weight), mul(m, set1(a.momentum)));
    mem.store(m_ + i, fma(g, set1(a.sq_weight), mul(m, set1(a.sq_decay))));
    finish<kFast>(mem, param + i, fma(sign(c), set1(a.step), p), a);
  }, param, grad, m_);
}

template <typename T>
void lion_kernel(T* param, const T* grad, T* m_, T*, T*, size_t n, const OptimArgs<T>& a) {
  if (no_extras(a)) {
    lion_body<true>(param, grad, m_, n, a);
  } else {
    lion_body<false>(param, grad, m_, n, a);
  }
}

// The roofline yardstick of a step (bench/bench_roofline.py): the arrays a rule with that
// state reads and writes, loaded and stored in the same order with the same prefetching, and
// one add per array in place of the rule's arithmetic.
template <typename T>
void stream_kernel(T* param, const T* grad, T* s0, T* s1, T* s2, size_t n, const OptimArgs<T>&) {
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
template <typename T>
void penalty_grad_kernel(T* g, const T* w, size_t n, T l1, T l2) {
  for_vectors<T>(n, [&](size_t i, auto mem) {
    const auto x = mem.load(w + i);
    mem.store(g + i, add(mem.load(g + i), add(mul(set1(l1), sign(x)), mul(set1(l2), x))));
  }, g, w);
}

template <typename T>
void prox_l1_kernel(T* w, size_t n, T threshold) {
  for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(w + i, soft_threshold(mem.load(w + i), threshold)); }, w);
}

template <typename T>
void scale_kernel(T* x, size_t n, T s) {
  for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(x + i, mul(mem.load(x + i), set1(s))); }, x);
}

// min(c, max(-c, x)): x86 min/max return their second operand when unordered, so NaN survives.
template <typename T>
void clamp_kernel(T* x, size_t n, T c) {
  for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(x + i, min(set1(c), max(set1(-c), mem.load(x + i)))); }, x);
}

template <typename T>
OptimKernelsOf<T> kernels_of() {
  OptimKernelsOf<T> k{};
  k.step[int(OptimKind::sgd)] = sgd_kernel<T>;
  k.step[int(OptimKind::adam)] = adam_kernel<T>;
  k.step[int(OptimKind::rmsprop)] = rmsprop_kernel<T>;
  k.step[int(OptimKind::adagrad)] = adagrad_kernel<T>;
  k.step[int(OptimKind::stream)] = stream_kernel<T>;
  k.step[int(OptimKind::lion)] = lion_kernel<T>;
  k.sums = sums_kernel<T>;
  k.penalty_grad = penalty_grad_kernel<T>;
  k.prox_l1 = prox_l1_kernel<T>;
  k.scale = scale_kernel<T>;
  k.clamp = clamp_kernel<T>;
  return k;
}

}  // namespace

OptimKernels optim_kernels() { return OptimKernels{REGTUNE_NS_NAME, kernels_of<float>(), kernels_of<double>()}; }

}  // namespace REGTUNE_NS
}  // namespace regtune
