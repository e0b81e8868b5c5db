// RMSprop, as torch.optim.RMSprop:
//   sq = fma((1 - alpha) * g, g, sq * alpha)
//   centered: ga = lerp(ga, g, 1 - alpha), avg = sqrt(max(0, fma(-ga, ga, sq))); else avg = sqrt(sq)
//   avg += eps; with momentum buf = buf * momentum + g / avg, p = p - lr * buf;
//   without, p = p + (-lr * g) / avg
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct rmsprop : RuleDefaults {
  static constexpr int nstates = 3;  // square_avg, grad_avg (centered), momentum_buffer
  static constexpr unsigned nonnegative = 0b1u;  // square_avg
  // one_minus_alpha is a lerp weight (grad_avg) whose rounded value is also square_avg's weight.
#define REGTUNE_RMSPROP(F) F(num, neg_lr) F(num, alpha) F(lerp, one_minus_alpha) F(num, eps) F(flag, centered) F(opt, momentum)
  REGTUNE_COEFFICIENTS(REGTUNE_RMSPROP)
#undef REGTUNE_RMSPROP

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P sq_, P ga_, P buf_, E ema, size_t n, const Coef<T>& coef,
                   const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      const V g = prepare<kFast>(mem, grad + i, p, f);
      const V sq = square_avg(mem.load(sq_ + i), g, c.alpha, c.one_minus_alpha.w);
      mem.store(sq_ + i, sq);
      V avg;
      if (c.centered) {
        const V ga = lerp_to(mem.load(ga_ + i), g, c.one_minus_alpha);
        mem.store(ga_ + i, ga);
        // square_avg.addcmul(ga, ga, value=-1) (-1 * ga is exact), clamped at 0: with a steady
        // gradient the two running averages agree to the last bit and the difference can round
        // below 0, where torch's sqrt gives NaN. max(0, x) keeps a NaN x (from a NaN gradient).
        avg = sqrt(max(set1(T(0)), fma(neg(ga), ga, sq)));
      } else {
        avg = sqrt(sq);
      }
      avg = add(avg, set1(c.eps));
      if (c.momentum.on) {
        const V b = add(mul(mem.load(buf_ + i), set1(c.momentum.v)), div(g, avg));
        mem.store(buf_ + i, b);
        p = fma(b, set1(c.neg_lr), p);
      } else {
        p = add(p, div(mul(set1(c.neg_lr), g), avg));
      }
      finish<kFast, kEma>(mem, param + i, ema + i, p, f);
    }, param, grad, sq_, c.centered ? ga_ : nullptr, c.momentum.on ? buf_ : nullptr, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
