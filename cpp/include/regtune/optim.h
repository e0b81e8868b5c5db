// Fused optimizer steps, penalty gradients and deterministic reductions: plain pointers and
// counts, no SIMD types.
//
// Every step makes one pass over its arrays: it reads param, grad and the state it needs once,
// writes param and state once, and folds gradient clipping, an L1 gradient term, weight decay,
// an L1 proximal step and the weight average into that pass. The rules live one per file under
// cpp/src/optim/rules/, listed once in cpp/src/optim/rules.def; this header knows none of them
// by name: a rule is an index into that list, its coefficients a named field list it declares
// (optim_rules() reports both), and the arrays of a step are typed descriptors, so one driver
// serves every rule and every storage type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "regtune/kernels.h"

namespace regtune {

// ---- storage ---------------------------------------------------------------------------------
// The element type of an array, known at run time. A step computes in double for f64
// parameters and in float32 for every other (16-bit values widen exactly; stores round to
// nearest even, or stochastically for the parameter, see Tensor).
//
// A state may also be blockwise 8-bit (q8s, q8u): one uint8 code per element, standing for
// code[q] * absmax of its block, where code is bitsandbytes' dynamic map (signed for q8s,
// unsigned for q8u: states that are never negative) and absmax[b] the largest |value| of
// elements [b * kQ8Block, (b + 1) * kQ8Block) of its tensor (float32). A step decodes a block,
// updates it in float32 and encodes it again: codes are the nearest entry of the map to
// value * (1 / absmax) (ties to the lower one), so they depend on the block's values only.
enum class DType : unsigned char { f32 = 0, bf16 = 1, f16 = 2, f64 = 3, q8s = 4, q8u = 5 };
constexpr size_t bytes_of(DType d) {
  return d == DType::f64 ? 8 : d == DType::f32 ? 4 : (d == DType::q8s || d == DType::q8u) ? 1 : 2;
}
constexpr bool is_16bit(DType d) { return d == DType::bf16 || d == DType::f16; }
constexpr bool is_q8(DType d) { return d == DType::q8s || d == DType::q8u; }
constexpr size_t kQ8Block = 256;

// An array: its first element and element type (null: absent); for a blockwise 8-bit state,
// the float32 absmax of each of its blocks.
struct Array {
  void* data = nullptr;
  DType dt = DType::f32;
  float* absmax = nullptr;
  explicit operator bool() const { return data != nullptr; }
};

// One tensor of a step. The parameter, its gradient (the parameter's dtype, or float32 for
// 16-bit parameters), up to three state arrays (one dtype: the parameter's, float32 for 16-bit
// parameters, or blockwise 8-bit for float32 and 16-bit ones) and the weight average (float32
// for 16-bit parameters). With a float32 master copy, `param` is the master (the step's
// parameter) and `shadow` the 16-bit parameter that receives its rounding to nearest even. With
// `stochastic`, a 16-bit parameter is rounded stochastically with word i of stream `sr` for
// element i of the tensor.
struct Tensor {
  Array param, grad, state[3], ema, shadow;
  size_t size = 0;
  bool stochastic = false;
  Stream sr{0, 0};
  bool adapt = true;  // rules with a trust ratio: whether this tensor gets it (LARS: ndim > 1)
};

// ---- coefficients ----------------------------------------------------------------------------
// A coefficient is one named number of a rule (or of the fused extras every rule shares). Its
// kind says how the step reads it; every field of one list is given in double, in the list's
// order, and rounded to the step's compute type once, by the list (see optim/coefficients.h).
enum class FieldKind : unsigned char {
  num,   // a number (required)
  flag,  // a switch, 0 or 1 (absent: off)
  opt,   // an optional term: absent switches it off
  lerp,  // the weight of torch's lerp_ (required): rounded, then its form chosen by |w| < 0.5
};
struct Field {
  const char* name;
  FieldKind kind;
};
constexpr int kMaxFields = 16;
// The values of one field list: v[i] for field i, given[i] whether the caller set it.
struct Values {
  double v[kMaxFields] = {};
  bool given[kMaxFields] = {};
};

// What the bindings and front ends learn about each rule of rules.def.
struct RuleInfo {
  const char* name;
  const Field* fields;  // the rule's own coefficients
  int nfields;
  int nstates;          // state arrays per tensor, at most (0-3)
  bool per_tensor;      // a trust ratio per tensor: two passes (LAMB, LARS)
  unsigned nonnegative; // bit k: state k is never negative (blockwise 8-bit: the unsigned map)
  bool blockwise8;      // whether its states may be blockwise 8-bit
};
// The rules of rules.def, in its order (a rule's index is its id), and the fused extras' fields.
const RuleInfo* optim_rules(int* count);
const Field* fused_fields(int* count);
int optim_rule_id(const char* name);  // -1 when there is none of that name
const Field* adafactor_fields(int* count);  // Adafactor's (it has a driver of its own)

// Blocks of the deterministic reductions: partial sums per block of this many elements of one
// tensor, combined in tensor and block order whatever the thread count.
constexpr size_t kReduceBlock = 4096;

// ---- drivers (optim.cpp) ---------------------------------------------------------------------
// One step of rule `rule` over `count` tensors: the elements of all tensors are split into
// cache-line-aligned ranges across threads, so many small tensors parallelize like one large
// one. `coef` holds the rule's coefficients, `fused` the extras (fused_fields()). With
// max_grad_norm > 0 the global L2 norm of the gradients is computed first (one deterministic
// pass) and its clip scale applied inside the step pass; the norm is returned (NaN otherwise).
// Rules with a trust ratio take two passes in the one call: the first (blocks of
// kReduceBlock) forms each tensor's two norms, the rule turns them into the tensor's
// coefficients, the second applies the step. Between the two, `reduce` (when given) is called
// on the calling thread with each tensor's two sums (sums[2t], sums[2t + 1]) and may change
// them in place: a sharded tensor's step holds its shard's sums, which the caller makes the
// whole tensor's (an all-reduce over the processes sharing it). What it throws leaves the
// call after the first pass (the rule's state updated, the parameters not).
using SumsReduce = std::function<void(double* sums, size_t count)>;
double optim_step(int rule, const Tensor* tensors, size_t count, const Values& coef, const Values& fused,
                  double max_grad_norm, const SumsReduce& reduce = {});

// One torch.optim.Adafactor step over a list (cpp/src/optim/adafactor.cpp). Tensor t has
// batches[t] x rows[t] x cols[t] elements (its last two axes and the product of the others; a
// vector or scalar: 1 x 1 x n); factored[t] says whether it keeps row_var (batches x rows) and
// col_var (batches x cols), or variance (n), all of the compute type (float64 for float64
// parameters, else float32). `coef` holds Adafactor's fields (beta2_comp, eps, rho, eps1,
// eps2, d); each tensor's step size is -max(eps2, rms(p)) * rho / max(1, rms(u) / d), rms over
// the tensor. Three passes over the tensors in one call, every reduction in a fixed order.
//
// `reduce` (when given) is called on the calling thread at three points with the sums the step
// divides, each beside the count it divides by, and may change them in place; tensor t's are
// sums[offsets[t], offsets[t + 1]). A tensor sharded over processes (rows of a matrix, the
// leading axis of a batch of them, elements of a vector) steps with the whole tensor's sums
// when the caller all-reduces the parts that its shards split:
//   stage 0: sum p^2, n (elements), rows, then for a factored tensor the column sums of g^2
//            (batch x cols, divided by rows into col_var)
//   stage 1: a factored tensor's sum of row_var per batch, then rows (their mean: / rows);
//            none for the others
//   stage 2: sum u^2, n (the update's rms)
// What it throws leaves the call there (the factors updated as far as it got, the parameters not).
using AdafactorReduce = std::function<void(int stage, double* sums, const size_t* offsets, size_t count)>;
double adafactor_step(const Tensor* tensors, size_t count, void* const* row_vars, void* const* col_vars,
                      void* const* variances, const size_t* batches, const size_t* rows, const size_t* cols,
                      const unsigned char* factored, const Values& coef, const Values& fused, double max_grad_norm,
                      const AdafactorReduce& reduce = {});

// Blockwise 8-bit encoding of x[0, n) (float32) into codes[0, n) and absmax[0, ceil(n /
// kQ8Block)) with bitsandbytes' signed or unsigned dynamic map, and its decoding (out = code[q]
// * absmax); threaded. A block holding a NaN or an infinity gets absmax NaN (it decodes as NaN).
void quantize_blockwise(const float* x, size_t n, uint8_t* codes, float* absmax, bool is_signed);
void dequantize_blockwise(const uint8_t* codes, const float* absmax, size_t n, float* out, bool is_signed);
// The map's 256 values (signed or unsigned), in increasing order.
const float* dynamic_map(bool is_signed);

// sum |x| and sum x^2 over every element of a list of arrays of any dtype (16-bit values
// widened), in double, deterministically.
void list_sums(const Array* x, const size_t* sizes, size_t count, double* abs_sum, double* sq_sum);
// min(max_norm / (total_norm + 1e-6), 1) as torch.nn.utils.clip_grad_norm_; NaN when the norm is.
double clip_coefficient(double total_norm, double max_norm);
// x *= s, or x = clamp(x, -s, s) (NaN stays NaN), over a list; rounded back to each dtype.
void scale_list(const Array* x, const size_t* sizes, size_t count, double s, bool clamp);
// g += l1 * sign(w) + l2 * w (w: g's dtype, or float32 for a 16-bit g); threaded.
void add_penalty_grad(Array g, Array w, size_t n, double l1, double l2);
// w = sign(w) * max(|w| - threshold, 0); threaded.
void prox_l1(Array w, size_t n, double threshold);

}  // namespace regtune
