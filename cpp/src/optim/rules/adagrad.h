// Adagrad, as torch.optim.Adagrad: sum = fma(g, g, sum); p = p + (-clr * g) / (sqrt(sum) + eps)
// with clr = lr / (1 + (t - 1) * lr_decay).
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct adagrad : RuleDefaults {
  static constexpr int nstates = 1;  // sum
  static constexpr unsigned nonnegative = 0b1u;  // sum
#define REGTUNE_ADAGRAD(F) F(num, neg_clr) F(num, eps)
  REGTUNE_COEFFICIENTS(REGTUNE_ADAGRAD)
#undef REGTUNE_ADAGRAD

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P sum_, P, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      const V g = prepare<kFast>(mem, grad + i, p, f);
      const V s = fma(g, g, mem.load(sum_ + i));  // addcmul_(g, g, value=1)
      mem.store(sum_ + i, s);
      finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(c.neg_clr), g), add(sqrt(s), set1(c.eps)))), f);
    }, param, grad, sum_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
