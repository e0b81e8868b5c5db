// One instruction set's optimizer kernels, as the drivers (optim.cpp, adafactor.cpp) call them.
// Private to the library: made per target by optim_kernels.cpp from the rule list. Every entry
// takes typed array descriptors and picks the storage's instantiation of the one body; each
// runs on the calling thread over elements [lo, lo + n) of one tensor.
#pragma once

#include "regtune/optim.h"

namespace regtune {

constexpr int kMaxRules = 32;

struct OptimTable {
  const char* name;
  int nrules;
  const RuleInfo* rules;
  // The step of rule r; for rules with a trust ratio its first pass (`first`: the tensor
  // block's two sums of squares added to out[0], out[1]) and `trust` (the tensor's coefficients
  // from the sums, in double).
  void (*step[kMaxRules])(const Tensor& t, size_t lo, size_t n, const Values& coef, const Values& fused);
  void (*first[kMaxRules])(const Tensor& t, size_t lo, size_t n, const Values& coef, const Values& fused, double* out);
  void (*trust[kMaxRules])(Values& coef, Values& fused, double sq0, double sq1, bool adapt);
  // Adafactor's three passes (see optim/adafactor_kernels.h); the factors and variances are of
  // the compute type (double for float64 parameters, else float), passed untyped.
  const Field* adafactor_fields;
  int adafactor_nfields;
  void (*ada_first)(const Tensor& t, size_t o, size_t n, const Values& coef, const Values& fused, double* out,
                    double* acc, void* var);
  void (*ada_second)(const Tensor& t, size_t o, size_t n, const Values& coef, const Values& fused, const void* cv,
                     double rv, double m, const void* var, double* out);
  void (*ada_apply)(const Tensor& t, size_t o, size_t n, const Values& coef, const Values& fused, const void* cv,
                    double rv, double m, const void* var);
  // out[0] += sum |x|, out[1] += sum x^2 over x[0, n), in double, in a fixed order: element i
  // goes to accumulator i % 16, and the 16 accumulators are combined pairwise (16-bit values
  // widened first). The result is the same on every target.
  void (*sums)(Array x, size_t n, double* out);
  void (*scale)(Array x, size_t n, double s);             // x *= s
  void (*clamp)(Array x, size_t n, double c);             // x = min(c, max(-c, x)); NaN stays NaN
  void (*prox_l1)(Array x, size_t n, double threshold);   // x = sign(x) * max(|x| - threshold, 0)
  // g += l1 * sign(w) + l2 * w  (computed as g + (l1 * sign(w) + l2 * w), no fma).
  void (*penalty_grad)(Array g, Array w, size_t n, double l1, double l2);
  // Blockwise 8-bit encoding / decoding of n values from the start of a block (see optim/blockwise8.h).
  void (*q8_encode)(const float* x, size_t n, uint8_t* codes, float* absmax, bool is_signed);
  void (*q8_decode)(const uint8_t* codes, const float* absmax, size_t n, float* out, bool is_signed);
};

}  // namespace regtune
