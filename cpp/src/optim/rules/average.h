// Not an optimizer: the weight average's update on its own (EMA.update, SWA.update, and
// Schedule-Free's train()/eval() switch, a lerp of the parameter toward z): the averages are
// the step's `param`, the values they follow its `grad`; the fused extras' ema fields say how
// (ema_copy: a copy; ema_count: SWA's mean; else lerp with ema_weight).
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct average : RuleDefaults {
  static constexpr int nstates = 0;
  static constexpr bool blockwise8 = false;  // the average is a copy of the parameters
#define REGTUNE_AVERAGE(F)
  REGTUNE_COEFFICIENTS(REGTUNE_AVERAGE)
#undef REGTUNE_AVERAGE

  template <typename T>
  static bool fast(const Coef<T>&) {
    return false;
  }

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q avg, C p, P, P, P, E, size_t n, const Coef<T>&, const FusedOf<T>& fused) {
    const FusedOf<T> f = fused;
    if (f.ema_copy) {
      if constexpr (std::is_same_v<Q, T*> && std::is_same_v<C, const T*>) {
        std::memcpy(avg, p, n * sizeof(T));
      } else {
        for_vectors<T>(n, [&](size_t i, auto mem) { mem.store(avg + i, mem.load(p + i)); });
      }
      return;
    }
    for_vectors<T>(n, [&](size_t i, auto mem) {
      mem.store(avg + i, average_to(mem.load(avg + i), mem.load(p + i), f));
    }, avg, p);
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
