// Lion (Chen et al., 2023), as lion-pytorch's update_fn:
//   c = fma(g, 1 - beta1, m * beta1)   (exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1))
//   p = fma(sign(c), -lr, p);  m = fma(g, 1 - beta2, m * beta2)
// sign(0) = 0, and a NaN c moves p by 0 (torch's sgn_ of a NaN is 0 on its vectorized path).
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct lion : RuleDefaults {
  static constexpr int nstates = 1;  // exp_avg
#define REGTUNE_LION(F) F(num, neg_lr) F(num, beta1) F(num, one_minus_beta1) F(num, beta2) F(num, one_minus_beta2)
  REGTUNE_COEFFICIENTS(REGTUNE_LION)
#undef REGTUNE_LION

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P m_, P, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      const V g = prepare<kFast>(mem, grad + i, p, f);
      const V m = mem.load(m_ + i);
      const V u = fma(g, set1(c.one_minus_beta1), mul(m, set1(c.beta1)));
      mem.store(m_ + i, fma(g, set1(c.one_minus_beta2), mul(m, set1(c.beta2))));
      finish<kFast, kEma>(mem, param + i, ema + i, fma(sign(u), set1(c.neg_lr), p), f);
    }, param, grad, m_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
