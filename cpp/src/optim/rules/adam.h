// Adam / AdamW, as torch.optim.Adam and AdamW (the decay is the fused extras' wd or decay):
//   m = lerp(m, g, 1 - beta1);  v = fma((1 - beta2) * g, g, v * beta2)
//   vmax = max(vmax, v) (amsgrad; then v = vmax)
//   p = p + (-lr / bias_correction1 * m) / (sqrt(v) / sqrt(bias_correction2) + eps)
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

// The first half of Adam and of the rules built on it (NAdam, RAdam): p loaded, g prepared,
// m = lerp(m, g, 1 - beta1) and v = fma((1 - beta2) g, g, v beta2) updated and stored.
// Pointers are those of the vector at hand.
template <bool kFast, typename T, typename Q, typename C, typename P, typename V, typename Mem, typename K>
RT_INLINE void adam_moments(const Mem& mem, Q param, C grad, P m_, P v_, V& p, V& g, V& m, V& v, const K& c,
                            const FusedOf<T>& f) {
  p = mem.load(param);
  g = prepare<kFast>(mem, grad, p, f);
  m = lerp_to(mem.load(m_), g, c.one_minus_beta1);
  v = square_avg(mem.load(v_), g, c.beta2, c.one_minus_beta2);
  mem.store(m_, m);
  mem.store(v_, v);
}

struct adam : RuleDefaults {
  static constexpr int nstates = 3;  // exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad)
  static constexpr unsigned nonnegative = 0b110u;  // exp_avg_sq, max_exp_avg_sq
#define REGTUNE_ADAM(F)                                                                                   \
  F(num, neg_step_size) F(lerp, one_minus_beta1) F(num, beta2) F(num, one_minus_beta2)                   \
  F(num, bias_correction2_sqrt) F(num, eps) F(flag, amsgrad)
  REGTUNE_COEFFICIENTS(REGTUNE_ADAM)
#undef REGTUNE_ADAM

  template <typename T>
  static bool fast(const Coef<T>& c) {
    return !c.amsgrad;
  }

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P m_, P v_, P vmax_, E ema, size_t n, const Coef<T>& coef,
                   const FusedOf<T>& fused) {
    using V = typename Vec<T>::type;
    const Coef<T> c = coef;
    const FusedOf<T> f = fused;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      V p, g, m, v;
      adam_moments<kFast>(mem, param + i, grad + i, m_ + i, v_ + i, p, g, m, v, c, f);
      if (!kFast && c.amsgrad) {
        v = max(mem.load(vmax_ + i), v);  // v when either is NaN: a NaN gradient still propagates
        mem.store(vmax_ + i, v);
      }
      const V denom = add(div(sqrt(v), set1(c.bias_correction2_sqrt)), set1(c.eps));
      finish<kFast, kEma>(mem, param + i, ema + i, add(p, div(mul(set1(c.neg_step_size), m), denom)), f);
    }, param, grad, m_, v_, !kFast && c.amsgrad ? vmax_ : nullptr, ema_stream<kFast, kEma>(ema, f));
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
