// Adafactor's kernels (torch.optim.Adafactor), three passes over each row segment of a tensor;
// the driver (optim/adafactor.cpp) forms the factors and step sizes in between. Per target.
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

// Adafactor's coefficients: the weight of this step's squared gradient in the running
// variances (torch's beta2_t = 1 - one_minus_beta2_t), eps = eps1^2, the per-tensor step size
// (set by the driver), and rho, eps1, eps2 and d (the driver's).
struct adafactor {
#define REGTUNE_ADAFACTOR(F)                                                                              \
  F(lerp, one_minus_beta2_t) F(num, eps) F(opt, neg_step_size) F(num, rho) F(num, eps1) F(num, eps2) F(num, d)
  REGTUNE_COEFFICIENTS(REGTUNE_ADAFACTOR)
#undef REGTUNE_ADAFACTOR
};
template <typename T> using AdafactorCoef = adafactor::Coef<T>;

// torch.optim.Adafactor's u = rsqrt(clamp_min(v, eps1^2)) * g with v = (row_var @ col_var) /
// clamp_min(mean(row_var), eps1) (the outer product of one row and one column: rv * cv rounded
// once) or v = variance. clamp_min keeps a NaN: x86's max(eps, v) returns v when unordered.
template <typename T, typename V, typename Mem>
RT_INLINE V adafactor_u(const Mem& mem, size_t i, V g, const T* cv, T rv, T m, const T* var, const AdafactorCoef<T>& c) {
  const V v = cv ? div(mul(set1(rv), mem.load(cv + i)), set1(m)) : mem.load(var + i);
  return mul(div(set1(T(1)), sqrt(max(set1(c.eps), v))), g);
}

// Q and C: the parameter's and the gradient's pointer types (16-bit steps: LowParam, and a
// 16-bit or float32 gradient); the factors are T (float32 for 16-bit parameters).
template <typename T, typename Q, typename C>
void adafactor_first(Q p_, C g_, size_t n, const AdafactorCoef<T>& coef, const FusedOf<T>& fused, double* out, double* acc, T* var) {
  using V = typename Vec<T>::type;
  const AdafactorCoef<T> c = coef;
  const FusedOf<T> f = fused;
  alignas(64) T gb[kTrustChunk];
  alignas(64) T pb[std::is_pointer_v<Q> ? 1 : kTrustChunk];  // 16-bit parameters, widened for the sums
  double sp[2] = {0.0, 0.0}, sg[2] = {0.0, 0.0};
  for (size_t o = 0; o < n; o += kTrustChunk) {
    const size_t k = std::min(kTrustChunk, n - o);
    for_vectors<T>(k, [&](size_t i, auto mem) {
      const V p = mem.load(p_ + (o + i));
      if constexpr (!std::is_pointer_v<Q>) mem.store(pb + i, p);
      const V g = clipped_grad(mem, g_ + (o + i), p, f);
      mem.store(gb + i, g);
      if (var) mem.store(var + o + i, lerp_to(mem.load(var + o + i), mul(g, g), c.one_minus_beta2_t));  // variance.lerp_(g * g, w)
    });
    if constexpr (std::is_pointer_v<Q>) {
      sums_kernel(p_ + o, k, sp);
    } else {
      sums_kernel(pb, k, sp);
    }
    sums_kernel(gb, k, sg);
    if (acc) {
      for (size_t j = 0; j < k; ++j) {  // in double, a product then a sum: the same on every path
        const double x = double(gb[j]);
        acc[o + j] += x * x;
      }
    }
  }
  out[0] += sp[1];
  out[1] += sg[1];
}

template <typename T, typename Q, typename C>
void adafactor_second(Q p_, C g_, size_t n, const AdafactorCoef<T>& coef, const FusedOf<T>& fused, const T* cv, T rv, T m, const T* var,
                      double* out) {
  using V = typename Vec<T>::type;
  const AdafactorCoef<T> c = coef;
  const FusedOf<T> f = fused;
  alignas(64) T ub[kTrustChunk];
  double su[2] = {0.0, 0.0};
  for (size_t o = 0; o < n; o += kTrustChunk) {
    const size_t k = std::min(kTrustChunk, n - o);
    for_vectors<T>(k, [&](size_t i, auto mem) {
      const V p = f.l1.on ? mem.load(p_ + (o + i)) : set1(T(0));  // p only for the L1 term
      const V g = clipped_grad(mem, g_ + (o + i), p, f);
      mem.store(ub + i, adafactor_u(mem, o + i, g, cv, rv, m, var, c));
    });
    sums_kernel(ub, k, su);
  }
  out[0] += su[1];
}

template <typename T, typename Q, typename C>
void adafactor_apply(Q p_, C g_, size_t n, const AdafactorCoef<T>& coef, const FusedOf<T>& fused, const T* cv, T rv, T m, const T* var, T* ema) {
  using V = typename Vec<T>::type;
  const AdafactorCoef<T> c = coef;
  const FusedOf<T> f = fused;
  for_vectors<T>(n, [&](size_t i, auto mem) {
    V p = mem.load(p_ + i);
    const V u = adafactor_u(mem, i, clipped_grad(mem, g_ + i, p, f), cv, rv, m, var, c);
    if (f.decay.on) p = mul(p, set1(f.decay.v));  // param.mul_(1 - lr * weight_decay) first
    finish<false, false>(mem, p_ + i, ema + i, fma(u, set1(c.neg_step_size.v), p), f);
  }, p_, g_, cv, var, ema_on(f) ? ema : nullptr);
}

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
