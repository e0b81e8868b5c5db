// LAMB (You et al., 2019), as pytorch-optimizer's Lamb.update, in two passes over each tensor:
//   first:  m = fma(g, beta3, m * beta1) (exp_avg.mul_(beta1).add_(grad, alpha=beta3)), v as
//           Adam's; the norms of the (decoupled-decayed) param and of the update
//           u = m / (sqrt(v) + eps) (+ weight_decay * p, coupled decay)
//   trust:  w = min(|p|, trust_clamp), r = |u|; ratio = 1 when either is 0, else w / (r + eps)
//   second: p = fma(u, -lr / bias_correction1 * ratio, p * decay), u recomputed from the new m, v.
#pragma once
#include <cmath>

#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct lamb : RuleDefaults {
  static constexpr int nstates = 2;  // exp_avg, exp_avg_sq
  static constexpr bool blockwise8 = false;  // its first pass reads the state (no 8-bit path)
  static constexpr bool per_tensor = true;
#define REGTUNE_LAMB(F)                                                                                   \
  F(num, neg_step_size) F(num, beta1) F(num, beta3) F(num, beta2) F(num, one_minus_beta2) F(num, eps)    \
  F(num, trust_clamp) F(opt, weight_decay)
  REGTUNE_COEFFICIENTS(REGTUNE_LAMB)
#undef REGTUNE_LAMB

  // The tensor's coefficients from its two sums of squares (in double).
  static void trust(Values& coef, Values&, double sq0, double sq1, bool) {
    constexpr int step = field_index(fields, "neg_step_size"), clamp = field_index(fields, "trust_clamp"),
                  eps = field_index(fields, "eps");
    const double w = std::min(std::sqrt(sq0), coef.v[clamp]), u = std::sqrt(sq1);
    coef.v[step] *= w == 0 || u == 0 ? 1.0 : w / (u + coef.v[eps]);
  }

  template <typename T, typename Q, typename C, typename P>
  static void sums(Q param, C grad, P m_, P v_, size_t n, const Coef<T>& coef, const FusedOf<T>& fused, double* out) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    trust_blocks<T>(n, out, [&](size_t i, auto mem, T* x0, T* x1) {
      V p = mem.load(param + i);
      const V g = clipped_grad(mem, grad + i, p, f);
      if (f.decay.on) p = mul(p, set1(f.decay.v));
      const V m = fma(g, set1(c.beta3), mul(mem.load(m_ + i), set1(c.beta1)));
      const V v = square_avg(mem.load(v_ + i), g, c.beta2, c.one_minus_beta2);
      mem.store(m_ + i, m);
      mem.store(v_ + i, v);
      V u = div(m, add(sqrt(v), set1(c.eps)));
      if (c.weight_decay.on) u = fma(p, set1(c.weight_decay.v), u);
      mem.store(x0, p);
      mem.store(x1, u);
    });
  }

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C, P m_, P v_, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      if (f.decay.on) p = mul(p, set1(f.decay.v));
      V u = div(mem.load(m_ + i), add(sqrt(mem.load(v_ + i)), set1(c.eps)));
      if (c.weight_decay.on) u = fma(p, set1(c.weight_decay.v), u);
      finish<kFast, kEma>(mem, param + i, ema + i, fma(u, set1(c.neg_step_size), p), f);
    }, param, m_, v_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
