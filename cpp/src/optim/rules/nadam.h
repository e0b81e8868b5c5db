// NAdam, as torch's _single_tensor_nadam: m and v as Adam's; denom = sqrt(v / bias_correction2) + eps;
// p = p + (c_grad * g) / denom; p = p + (c_avg * m) / denom (two addcdiv_, in that order) with
// c_grad = -lr (1 - mu_t) / (1 - prod mu), c_avg = -lr mu_{t+1} / (1 - prod mu * mu_{t+1}).
#pragma once
#include "optim/rules/adam.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct nadam : RuleDefaults {
  static constexpr int nstates = 2;  // exp_avg, exp_avg_sq
  static constexpr unsigned nonnegative = 0b10u;  // exp_avg_sq
#define REGTUNE_NADAM(F)                                                                                  \
  F(num, c_grad) F(num, c_avg) F(lerp, one_minus_beta1) F(num, beta2) F(num, one_minus_beta2)            \
  F(num, bias_correction2) F(num, eps)
  REGTUNE_COEFFICIENTS(REGTUNE_NADAM)
#undef REGTUNE_NADAM

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P m_, P v_, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p, g, m, v;
      adam_moments<kFast>(mem, param + i, grad + i, m_ + i, v_ + i, p, g, m, v, c, f);
      const V denom = add(sqrt(div(v, set1(c.bias_correction2))), set1(c.eps));
      p = add(p, div(mul(set1(c.c_grad), g), denom));
      finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(c.c_avg), m), denom)), f);
    }, param, grad, m_, v_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
