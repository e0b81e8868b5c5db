// Schedule-Free AdamW (Defazio et al., 2024, "The Road Less Scheduled"), as the schedulefree
// package's AdamWScheduleFree. The parameter is y, the point the gradient is taken at; z is
// the base sequence, x (the average the model is evaluated at) is implicit:
//   v = fma((1 - beta2) * g, g, v * beta2)
//   u = g / (sqrt(v / bias_correction2) + eps);  u = fma(y, weight_decay, u)   (decay at y)
//   y = lerp(y, z, c);  y = fma(u, lr * (beta1 * (1 - c) - 1), y);  z = fma(u, -lr, z)
// with c = weight / weight_sum, the weight of this step in the average (computed by the caller).
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct schedule_free_adamw : RuleDefaults {
  static constexpr int nstates = 2;  // z, exp_avg_sq
  static constexpr bool blockwise8 = false;  // z is an iterate, a copy of the parameters
#define REGTUNE_SCHEDULE_FREE_ADAMW(F)                                                                    \
  F(num, neg_lr) F(num, y_step) F(lerp, ckp1) F(num, beta2) F(num, one_minus_beta2)                      \
  F(num, bias_correction2) F(num, eps) F(opt, weight_decay)
  REGTUNE_COEFFICIENTS(REGTUNE_SCHEDULE_FREE_ADAMW)
#undef REGTUNE_SCHEDULE_FREE_ADAMW

  template <typename T>
  static bool fast(const Coef<T>& c) {
    return !c.weight_decay.on;
  }

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P z_, P v_, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V y = mem.load(param + i);
      const V g = prepare<kFast>(mem, grad + i, y, f);
      const V v = square_avg(mem.load(v_ + i), g, c.beta2, c.one_minus_beta2);
      mem.store(v_ + i, v);
      V u = div(g, add(sqrt(div(v, set1(c.bias_correction2))), set1(c.eps)));
      if (!kFast && c.weight_decay.on) u = fma(y, set1(c.weight_decay.v), u);
      const V z = mem.load(z_ + i);
      y = fma(u, set1(c.y_step), lerp_to(y, z, c.ckp1));
      mem.store(z_ + i, fma(u, set1(c.neg_lr), z));
      finish<kFast, kEma>(mem, param + i, ema + i, y, f);
    }, param, grad, z_, v_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
