// LARS (You et al., 2017), as pytorch-optimizer's LARS, in two passes over each tensor:
//   first:  the norms of the param and of the (clipped) gradient
//   trust:  ratio = trust_coefficient |p| / (|g| + wd |p|) when both are > 0, else 1 (a NaN norm
//           fails both tests: 1, and the NaN gradient carries on); a tensor it does not adapt
//           (Tensor::adapt false: biases and norm scales) gets 1 and no weight decay
//   second: g = (g + wd * p) * ratio, buf = fma(g, 1 - dampening, buf * momentum) (from zeros:
//           no first-step copy), g = nesterov ? fma(buf, momentum, g) : buf; p = fma(g, -lr, p)
#pragma once
#include <cmath>

#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct lars : RuleDefaults {
  static constexpr int nstates = 1;  // momentum_buffer
  static constexpr bool blockwise8 = false;  // its first pass reads the state (no 8-bit path)
  static constexpr bool per_tensor = true;
#define REGTUNE_LARS(F)                                                                                   \
  F(num, neg_lr) F(num, trust_coefficient) F(flag, nesterov) F(opt, momentum) F(num, one_minus_dampening) \
  F(opt, trust_ratio)
  REGTUNE_COEFFICIENTS(REGTUNE_LARS)
#undef REGTUNE_LARS

  static void trust(Values& coef, Values& fused, double sq0, double sq1, bool adapt) {
    constexpr int ratio = field_index(fields, "trust_ratio"), tc = field_index(fields, "trust_coefficient");
    constexpr int wd = Fused::wd_index;
    coef.given[ratio] = true;
    if (!adapt) {  // a bias or a norm's scale: plain SGD
      coef.v[ratio] = 1.0;
      fused.given[wd] = false;
      return;
    }
    const double p = std::sqrt(sq0), denom = std::sqrt(sq1) + (fused.given[wd] ? fused.v[wd] : 0.0) * p;
    coef.v[ratio] = p > 0 && denom > 0 ? coef.v[tc] * p / denom : 1.0;
  }

  template <typename T, typename Q, typename C, typename P>
  static void sums(Q param, C grad, P, P, size_t n, const Coef<T>&, const FusedOf<T>& fused, double* out) {
    using V = typename Vec<T>::type;
    const FusedOf<T> f = fused;
    trust_blocks<T>(n, out, [&](size_t i, auto mem, T* x0, T* x1) {
      const V p = mem.load(param + i);
      mem.store(x0, p);
      mem.store(x1, clipped_grad(mem, grad + i, p, f));
    });
  }

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P buf, P, P, E ema, size_t n, const Coef<T>& coef, const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p = mem.load(param + i);
      V g = mul(prepare<kFast>(mem, grad + i, p, f), set1(c.trust_ratio.v));
      if (c.momentum.on) {
        const V b = fma(g, set1(c.one_minus_dampening), mul(mem.load(buf + i), set1(c.momentum.v)));
        mem.store(buf + i, b);
        g = c.nesterov ? fma(b, set1(c.momentum.v), g) : b;
      }
      finish<kFast, kEma>(mem, param + i, ema + i, fma(g, set1(c.neg_lr), p), f);
    }, param, grad, c.momentum.on ? buf : nullptr, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
