// Named coefficients: each rule declares its fields once, as a list
//
//   #define REGTUNE_FIELDS(F) F(num, lr) F(lerp, beta1_comp) F(flag, nesterov)
//   REGTUNE_COEFFICIENTS(REGTUNE_FIELDS)
//
// and that one list makes the struct the kernel reads (Coef<T>, a member per field with the
// field's name), rounds the caller's doubles into it (Coef<T>::from), and names the fields for
// the bindings (fields[], reported by optim_rules(): the Python dict's keys). No SIMD here.
#pragma once

#include <array>
#include <cmath>

#include "regtune/optim.h"

namespace regtune {

// An optional term: `on` when the caller gave it.
template <typename T>
struct Opt {
  T v = 0;
  bool on = false;
};

// torch's lerp_(end, w) rounds w to the tensor's type, then computes fma(w, end - x, x) for
// |w| < 0.5 and fma(w - 1, end - x, end) otherwise (ATen's vectorized lerp): `coef` is w or
// w - 1, `small` says which.
template <typename T>
struct Lerp {
  T w = 0, coef = 0;
  bool small = true, on = false;
};

namespace coef {
template <typename T> inline void set(T& x, double v, bool) { x = T(v); }
inline void set(bool& x, double v, bool given) { x = given && v != 0; }
template <typename T> inline void set(Opt<T>& x, double v, bool given) { x.v = T(v), x.on = given; }
template <typename T> inline void set(Lerp<T>& x, double v, bool given) {
  x.w = T(v);
  x.small = std::fabs(x.w) < T(0.5);
  x.coef = x.small ? x.w : T(x.w - T(1));
  x.on = given;
}
template <typename T, FieldKind K> struct TypeOf;
template <typename T> struct TypeOf<T, FieldKind::num> { using type = T; };
template <typename T> struct TypeOf<T, FieldKind::flag> { using type = bool; };
template <typename T> struct TypeOf<T, FieldKind::opt> { using type = Opt<T>; };
template <typename T> struct TypeOf<T, FieldKind::lerp> { using type = Lerp<T>; };
}  // namespace coef

#define REGTUNE_FIELD_DECL(kind, name) typename ::regtune::coef::TypeOf<T, ::regtune::FieldKind::kind>::type name{};
#define REGTUNE_FIELD_SET(kind, name) ::regtune::coef::set(c.name, v.v[i], v.given[i]), ++i;
#define REGTUNE_FIELD_INFO(kind, name) ::regtune::Field{#name, ::regtune::FieldKind::kind},
#define REGTUNE_FIELD_COUNT(kind, name) +1

// Inside a rule's struct: Coef<T>, its `from`, and the field list. `FIELDS` may be empty.
#define REGTUNE_COEFFICIENTS(FIELDS)                                                                  \
  template <typename T>                                                                               \
  struct Coef {                                                                                       \
    FIELDS(REGTUNE_FIELD_DECL)                                                                        \
    static Coef from(const ::regtune::Values& v) {                                                   \
      Coef c;                                                                                         \
      int i = 0;                                                                                      \
      FIELDS(REGTUNE_FIELD_SET)                                                                       \
      (void)v, (void)i;                                                                               \
      return c;                                                                                       \
    }                                                                                                 \
  };                                                                                                  \
  static constexpr int nfields = 0 FIELDS(REGTUNE_FIELD_COUNT);                                     \
  static_assert(nfields <= ::regtune::kMaxFields, "too many coefficients");                          \
  static constexpr std::array<::regtune::Field, nfields> fields{{FIELDS(REGTUNE_FIELD_INFO)}};

// What every rule can fuse into its pass, apart from the rules. For each element, with p the
// parameter and g the gradient:
//   g = -g                            maximize (torch's maximize=True: ascend the objective)
//   g = g * clip                      clip   (max_grad_norm's scale; set by the driver)
//   g = g + l1 * sign(p)              l1     (sign(0) = sign(NaN) = 0, as torch.sign)
//   p = p * decay                     decay  (decoupled weight decay: 1 - lr * weight_decay)
//   g = fma(p, wd, g)                 wd     (L2 weight decay folded into the gradient)
// then the rule, and last
//   p = sign(p) * max(|p| - prox, 0)  prox   (soft-thresholding: exact zeros)
//   the weight average, updated from the new p: avg = p when ema_copy (its first update);
//   avg + (p - avg) / ema_count when ema_count is given (torch's SWA average on the CPU);
//   else lerp(avg, p, ema_weight) (torch's EMA); ema_weight switches the average on.
struct Fused {
#define REGTUNE_FUSED_FIELDS(F) \
  F(opt, clip) F(opt, l1) F(opt, decay) F(opt, wd) F(opt, prox) F(lerp, ema_weight) F(opt, ema_count) F(flag, ema_copy) \
  F(flag, maximize)
  REGTUNE_COEFFICIENTS(REGTUNE_FUSED_FIELDS)
  enum Index { clip_index = 0, wd_index = 3, ema_weight_index = 5 };  // the fields the driver, rules and bindings use
};
constexpr bool same_name(const char* a, const char* b) { return *a == *b && (*a == 0 || same_name(a + 1, b + 1)); }
static_assert(same_name(Fused::fields[Fused::clip_index].name, "clip") &&
                  same_name(Fused::fields[Fused::wd_index].name, "wd") &&
                  same_name(Fused::fields[Fused::ema_weight_index].name, "ema_weight"),
              "Fused::Index must follow REGTUNE_FUSED_FIELDS");

}  // namespace regtune
