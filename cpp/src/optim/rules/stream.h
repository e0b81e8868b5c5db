// Not an optimizer: the roofline yardstick of a step (bench/bench_roofline.py). It reads and
// writes the arrays a rule with that state does, in the same order with the same prefetching,
// with one add per array in place of the rule's arithmetic.
#pragma once
#include "optim/loop.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

struct stream : RuleDefaults {
  static constexpr int nstates = 3;
  static constexpr bool blockwise8 = false;  // the benchmarks' yardstick
#define REGTUNE_STREAM(F)
  REGTUNE_COEFFICIENTS(REGTUNE_STREAM)
#undef REGTUNE_STREAM

  template <typename T>
  static bool fast(const Coef<T>&) {
    return false;
  }

  template <bool kFast, bool kEma, typename T, typename Q, typename C, typename P, typename E>
  static void body(Q param, C grad, P s0, P s1, P s2, E, size_t n, const Coef<T>&, const FusedOf<T>&) {
    using V = typename Vec<T>::type;
    for_vectors<T>(n, [&](size_t i, auto mem) {
      const V p = mem.load(param + i);
      const V g = mem.load(grad + i);
      const V a = s0 ? mem.load(s0 + i) : g;
      const V b = s1 ? mem.load(s1 + i) : g;
      const V c = s2 ? mem.load(s2 + i) : g;
      if (s0) mem.store(s0 + i, add(a, g));
      if (s1) mem.store(s1 + i, add(b, g));
      if (s2) mem.store(s2 + i, add(c, g));
      mem.store(param + i, add(p, g));
    }, param, grad, s0, s1, s2);
  }
};

}  // namespace
}  // namespace REGTUNE_NS
}  // namespace regtune
