// SGD with momentum, as torch.optim.SGD:
//   buf = g (first step) | buf * momentum + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf;  p = p - lr * g
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct sgd : RuleDefaults {
  static constexpr int nstates = 1;  // momentum_buffer
#define REGTUNE_SGD(F) \
  F(num, neg_lr) F(opt, momentum) F(num, one_minus_dampening) F(flag, first_step) F(flag, nesterov)
  REGTUNE_COEFFICIENTS(REGTUNE_SGD)
#undef REGTUNE_SGD

  // The fast body: no extras, momentum after the first step, no nesterov.
  template <typename T>
  static bool fast(const Coef<T>& c) {
    return c.momentum.on && !c.first_step && !c.nesterov;
  }

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P buf, P, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;  // copies: stores through T* cannot change them, so they stay in registers
    const FusedOf<T> f = fused;
    const bool momentum = kFast || c.momentum.on;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      V g = prepare<kFast>(mem, grad + i, p, f);
      if (momentum) {
        const V b = !kFast && c.first_step ? g
                                           : fma(g, set1(c.one_minus_dampening), mul(mem.load(buf + i), set1(c.momentum.v)));
        mem.store(buf + i, b);
        g = !kFast && c.nesterov ? fma(b, set1(c.momentum.v), g) : b;
      }
      finish<kFast, kEma>(mem, param + i, ema + i, fma(g, set1(c.neg_lr), p), f);
    }, param, grad, momentum ? buf : nullptr, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
