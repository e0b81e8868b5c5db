// RAdam, as torch's _single_tensor_radam: m and v as Adam's; u = (m / bias_correction1) * lr;
// when the variance is tractable (rho_t > 5: `rect` given)
// u = (u * (1 / (sqrt(v) + eps) * sqrt(bias_correction2))) * rect (a scalar divided by a tensor
// is its reciprocal times the scalar in torch); p = p - u.
#pragma once
#include "optim/rules/adam.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct radam : RuleDefaults {
  static constexpr int nstates = 2;  // exp_avg, exp_avg_sq
  static constexpr unsigned nonnegative = 0b10u;  // exp_avg_sq
#define REGTUNE_RADAM(F)                                                                                  \
  F(num, lr) F(lerp, one_minus_beta1) F(num, beta2) F(num, one_minus_beta2) F(num, bias_correction1)     \
  F(num, bias_correction2_sqrt) F(num, eps) F(opt, rect)
  REGTUNE_COEFFICIENTS(REGTUNE_RADAM)
#undef REGTUNE_RADAM

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P m_, P v_, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p, g, m, v;
      adam_moments<kFast>(mem, param + i, grad + i, m_ + i, v_ + i, p, g, m, v, c, f);
      V u = mul(div(m, set1(c.bias_correction1)), set1(c.lr));
      if (c.rect.on) {
        const V adaptive = mul(div(set1(T(1)), add(sqrt(v), set1(c.eps))), set1(c.bias_correction2_sqrt));
        u = mul(mul(u, adaptive), set1(c.rect.v));
      }
      finish<kFast, kEma>(mem, param + i, ema + i, sub(p, u), f);
    }, param, grad, m_, v_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
