// Adadelta, as torch's _single_tensor_adadelta: sq = fma((1 - rho) g, g, sq rho);
// delta = sqrt(acc + eps) / sqrt(sq + eps) * g; acc = fma((1 - rho) delta, delta, acc rho);
// p = fma(delta, -lr, p).
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct adadelta : RuleDefaults {
  static constexpr int nstates = 2;  // square_avg, acc_delta
  static constexpr unsigned nonnegative = 0b11u;  // square_avg and acc_delta
#define REGTUNE_ADADELTA(F) F(num, neg_lr) F(num, rho) F(num, one_minus_rho) F(num, eps)
  REGTUNE_COEFFICIENTS(REGTUNE_ADADELTA)
#undef REGTUNE_ADADELTA

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P sq_, P acc_, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      const V g = prepare<kFast>(mem, grad + i, p, f);
      const V sq = square_avg(mem.load(sq_ + i), g, c.rho, c.one_minus_rho);
      const V acc = mem.load(acc_ + i);
      const V delta = mul(div(sqrt(add(acc, set1(c.eps))), sqrt(add(sq, set1(c.eps)))), g);
      mem.store(sq_ + i, sq);
      mem.store(acc_ + i, square_avg(acc, delta, c.rho, c.one_minus_rho));
      finish<kFast, kEma>(mem, param + i, ema + i, fma(delta, set1(c.neg_lr), p), f);
    }, param, grad, sq_, acc_, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
