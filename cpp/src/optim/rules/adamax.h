// Adamax, as torch's _single_tensor_adamax: m as Adam's; u = maximum(u * beta2, |g| + eps)
// (NaN when either is; u >= 0, checked on loading); p = p + (-clr * m) / u with
// clr = lr / (1 - beta1^t).
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

// torch.maximum(a, b) of a, b >= 0: NaN when either is. x86's max(a, b) returns b when either
// is NaN; a + b is NaN exactly when one is (no infinities of opposite signs), and is >= the
// maximum otherwise, so the min keeps the maximum or the NaN.
template <typename V>
RT_INLINE V max_nonneg(V a, V b) {
  return min(max(a, b), add(a, b));
}

struct adamax : RuleDefaults {
  static constexpr int nstates = 2;  // exp_avg, exp_inf
  static constexpr unsigned nonnegative = 0b10u;  // exp_inf
#define REGTUNE_ADAMAX(F) F(num, neg_clr) F(lerp, one_minus_beta1) F(num, beta2) F(num, eps)
  REGTUNE_COEFFICIENTS(REGTUNE_ADAMAX)
#undef REGTUNE_ADAMAX

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P m_, P u_, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      const V g = prepare<kFast>(mem, grad + i, p, f);
      const V m = lerp_to(mem.load(m_ + i), g, c.one_minus_beta1);
      const V u = max_nonneg(mul(mem.load(u_ + i), set1(c.beta2)), add(abs(g), set1(c.eps)));
      mem.store(m_ + i, m);
      mem.store(u_ + i, u);
      finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(c.neg_clr), m), u)), f);
    }, param, grad, m_, u_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
