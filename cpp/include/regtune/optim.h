// Fused optimizer steps, penalty gradients and deterministic reductions: plain pointers and
// counts, no SIMD types.
//
// Every step kernel makes one pass over its arrays: it reads param, grad and the state it
// needs once, writes param and state once, and folds gradient clipping, an L1 gradient term,
// weight decay and an L1 proximal step into that pass. The element-wise rules follow the
// `_single_tensor_*` functions of torch.optim (same operations, same order); the per-step
// scalars (bias corrections, step sizes) are computed by the caller in double, as torch does.
#pragma once

#include <cstddef>
#include <cstdint>

#include "regtune/kernels.h"

namespace regtune {

// `stream` is no optimizer: the roofline yardstick of the benchmarks, with a step's memory
// traffic (param and grad read, param and each given state read and written) and one add per
// array in place of the rule. `average` is no optimizer either: the weight average's update
// (EMA / SWA) on its own, param := the average, grad := the parameter it follows.
enum class OptimKind {
  sgd = 0, adam = 1, rmsprop = 2, adagrad = 3, stream = 4, lion = 5,
  nadam = 6, radam = 7, adamax = 8, adadelta = 9, average = 10, lamb = 11, lars = 12,
};
constexpr int kOptimKinds = 13;

// The coefficients of one step. The driver receives them in double and rounds them to T once.
// For each element, with p the param and g the grad:
//   g = g * clip                       if clip_on   (max_grad_norm: the clip scale)
//   g = g + l1 * sign(p)               if l1_on     (sign(0) = sign(NaN) = 0, as torch.sign)
//   p = p * decay                      if decay_on  (AdamW: decay = 1 - lr * weight_decay)
//   g = fma(p, wd, g)                  if wd_on     (L2 weight decay folded into the gradient)
// then the rule of the optimizer (see optim_kernels.cpp), and last
//   p = sign(p) * max(|p| - prox, 0)   if prox_on   (soft-thresholding: exact zeros)
// Where the rule needs a linear interpolation (torch's lerp_) toward g with weight w, it is
// computed as torch's vectorized lerp: fma(w, g - a, a) for |w| < 0.5, else fma(w - 1, g - a, g).
template <typename T>
struct OptimArgs {
  T clip = 1, l1 = 0, decay = 1, wd = 0, prox = 0;
  bool clip_on = false, l1_on = false, decay_on = false, wd_on = false, prox_on = false;
  // The coefficient of the update: -lr (SGD, RMSprop, Lion), -lr / bias_correction1 (Adam),
  // -lr / (1 + (step - 1) * lr_decay) (Adagrad).
  T step = 0;
  // SGD and RMSprop momentum; SGD dampening enters as damp_weight = 1 - dampening. Lion's
  // update direction interpolates with momentum = beta1, damp_weight = 1 - beta1.
  T momentum = 0, damp_weight = 1;
  bool momentum_on = false, first_step = false, nesterov = false;
  // Adam's exp_avg and RMSprop's grad_avg: lerp toward g with weight avg_weight (1 - beta1,
  // 1 - alpha). The driver rounds avg_weight to T and sets avg_coef / avg_small from it.
  T avg_weight = 0, avg_coef = 0;
  bool avg_small = true;
  // Adam's exp_avg_sq and RMSprop's square_avg: s = fma(sq_weight * g, g, s * sq_decay).
  // Lion's exp_avg: m = fma(g, sq_weight, m * sq_decay) with sq_decay = beta2, sq_weight = 1 - beta2.
  T sq_decay = 0, sq_weight = 0;
  T bc2_sqrt = 1, eps = 0;  // Adam: sqrt(1 - beta2^step); Adam, RMSprop, Adagrad: eps
  bool amsgrad = false, centered = false;
  // NAdam: step and step2 are the coefficients of g and of exp_avg, bc2 = 1 - beta2^step.
  // RAdam: bc1 = 1 - beta1^step, scale = lr, bc2_sqrt, and the rectification rect when rect_on.
  T step2 = 0, bc2 = 1, bc1 = 1, scale = 1, rect = 1;
  bool rect_on = false;
  // The weight average updated in the step's pass (and by kind `average`): after the update,
  // avg = p when ema_copy (its first update); avg = avg + (p - avg) / ema_count when ema_mean
  // (torch's SWA average on the CPU); else lerp toward p with weight ema_weight (as
  // avg_weight: the driver rounds it and sets ema_coef / ema_small).
  T ema_weight = 0, ema_coef = 0, ema_count = 1;
  bool ema_on = false, ema_copy = false, ema_small = true, ema_mean = false;
  // LAMB and LARS, the rules with a trust ratio per tensor (two passes, see optim_step):
  // LAMB's coupled weight decay enters the update, u = fma(p, update_wd, u); its trust ratio is
  // min(|p|, trust_clamp) / (|u| + eps). LARS's is trust_coef |p| / (|g| + wd |p|), applied as
  // g = (g + wd p) * scale. The driver sets step (LAMB) or scale and wd_on (LARS) per tensor.
  T update_wd = 0, trust_clamp = 10, trust_coef = 1e-3;
  bool update_wd_on = false;
};

// One step of n elements. Each rule uses up to three state arrays, in this order:
//   sgd     s0 = momentum_buffer
//   adam    s0 = exp_avg, s1 = exp_avg_sq, s2 = max_exp_avg_sq (amsgrad)
//   rmsprop s0 = square_avg, s1 = grad_avg (centered), s2 = momentum_buffer
//   adagrad s0 = sum
//   lion    s0 = exp_avg
//   nadam   s0 = exp_avg, s1 = exp_avg_sq
//   radam   s0 = exp_avg, s1 = exp_avg_sq
//   adamax  s0 = exp_avg, s1 = exp_inf
//   adadelta s0 = square_avg, s1 = acc_delta
//   lamb    s0 = exp_avg, s1 = exp_avg_sq        (the second pass; the first is trust_sums)
//   lars    s0 = momentum_buffer                 (likewise)
// and `ema` is the weight average of the parameters (ema_on). Unused pointers may be null.
template <typename T>
using StepKernel = void (*)(T* param, const T* grad, T* s0, T* s1, T* s2, T* ema, size_t n, const OptimArgs<T>& a);

// The first pass of a rule with a trust ratio, over at most kReduceBlock elements of one tensor:
// updates what comes before the norms (LAMB: exp_avg and exp_avg_sq) and adds to out[0] and
// out[1] the sums of squares, in double and in a fixed order (see sums), of the two vectors
// whose norms make the ratio (LAMB: the decayed param and the update; LARS: param and grad).
template <typename T>
using TrustSums = void (*)(const T* param, const T* grad, T* s0, T* s1, size_t n, const OptimArgs<T>& a, double* out);

// Adafactor (torch.optim.Adafactor), on one segment of n elements of one row of a tensor (a
// factored tensor's rows are its last axis; a vector is one row). The gradient is g' =
// clip * g + l1 * sign(p). `cv` is the segment's part of col_var, `rv` the row's row_var and `m`
// the clamped mean of row_var (factored: v = (rv * cv) / m); else `var` is the segment's part
// of variance (v = var). u = 1 / sqrt(max(v, eps)) * g' (eps = eps1^2).
template <typename T>
struct AdafactorKernels {
  // sums of squares of p and g' added to out[0], out[1] (fixed order, see sums); acc[c] +=
  // g'[c]^2 in double (factored, else null); var = lerp(var, g'^2, avg_weight) (vectors).
  void (*first)(const T* p, const T* g, size_t n, const OptimArgs<T>& a, double* out, double* acc, T* var);
  // the sum of squares of u added to out[0].
  void (*second)(const T* p, const T* g, size_t n, const OptimArgs<T>& a, const T* cv, T rv, T m, const T* var,
                 double* out);
  // p = fma(u, step, p * decay), then the proximal step and the weight average.
  void (*apply)(T* p, const T* g, size_t n, const OptimArgs<T>& a, const T* cv, T rv, T m, const T* var, T* ema);
};

template <typename T>
struct OptimKernelsOf {
  StepKernel<T> step[kOptimKinds];
  TrustSums<T> lamb_sums, lars_sums;
  AdafactorKernels<T> adafactor;
  // out[0] += sum |x|, out[1] += sum x^2 over x[0, n), in double, in a fixed order: element i
  // goes to accumulator i % 16, and the 16 accumulators are combined pairwise. The result is
  // the same on every target.
  void (*sums)(const T* x, size_t n, double* out);
  // g += l1 * sign(w) + l2 * w  (computed as g + (l1 * sign(w) + l2 * w), no fma).
  void (*penalty_grad)(T* g, const T* w, size_t n, T l1, T l2);
  void (*prox_l1)(T* w, size_t n, T threshold);  // w = sign(w) * max(|w| - threshold, 0)
  void (*scale)(T* x, size_t n, T s);             // x *= s
  void (*clamp)(T* x, size_t n, T c);             // x = min(c, max(-c, x)); NaN stays NaN
};

// ---- low precision -------------------------------------------------------------------------
// Steps on bfloat16 / half parameters: the float32 rule (the same body, the same float32
// arithmetic) on arrays whose dtypes are given at run time: gradients in the parameter's dtype
// or float32, each state in float32 or the parameter's dtype. The new parameter is rounded to
// nearest even, or stochastically (`stochastic`: word i of stream `sr` rounds element i of the
// tensor); with master weights the float32 master is the step's parameter (param, f32) and its
// rounding to nearest even is written to `shadow`.
enum class DType : unsigned char { f32 = 0, bf16 = 1, f16 = 2 };

struct LowTensor {
  void* param = nullptr;
  const void* grad = nullptr;
  void* state[3] = {nullptr, nullptr, nullptr};
  void* ema = nullptr;
  void* shadow = nullptr;
  DType param_dt = DType::f32, grad_dt = DType::f32, state_dt[3] = {DType::f32, DType::f32, DType::f32},
        ema_dt = DType::f32, shadow_dt = DType::bf16;
  bool stochastic = false;
  Stream sr{0, 0};
};

struct LowKernels {
  // elements [lo, lo + n) of the tensor
  void (*step[kOptimKinds])(const LowTensor& t, size_t lo, size_t n, const OptimArgs<float>& a);
  void (*lamb_sums)(const LowTensor& t, size_t lo, size_t n, const OptimArgs<float>& a, double* out);
  void (*lars_sums)(const LowTensor& t, size_t lo, size_t n, const OptimArgs<float>& a, double* out);
  // Adafactor's three passes (see AdafactorKernels) on elements [o, o + n) of the tensor; the
  // factors, variance and average are float32.
  struct {
    void (*first)(const LowTensor& t, size_t o, size_t n, const OptimArgs<float>& a, double* out, double* acc,
                  float* var);
    void (*second)(const LowTensor& t, size_t o, size_t n, const OptimArgs<float>& a, const float* cv, float rv,
                   float m, const float* var, double* out);
    void (*apply)(const LowTensor& t, size_t o, size_t n, const OptimArgs<float>& a, const float* cv, float rv,
                  float m, const float* var, float* ema);
  } adafactor;
  void (*sums)(const void* x, DType dt, size_t n, double* out);  // of the values widened to float32
  void (*scale)(void* x, DType dt, size_t n, float s);
  void (*clamp)(void* x, DType dt, size_t n, float c);
  void (*prox_l1)(void* x, DType dt, size_t n, float threshold);
  void (*penalty_grad)(void* g, DType gdt, const void* w, DType wdt, size_t n, float l1, float l2);
};

// One instruction set's kernels. Each runs on the calling thread; threads live in optim.cpp.
struct OptimKernels {
  const char* name;
  OptimKernelsOf<float> f32;
  OptimKernelsOf<double> f64;
  LowKernels low;
};

// ---- drivers (optim.cpp) ------------------------------------------------------------------
// A list of `count` tensors of one dtype: tensor t has sizes[t] elements at data[t].
template <typename T>
struct TensorList {
  size_t count = 0;
  T* const* data = nullptr;
  const size_t* sizes = nullptr;
};

// Blocks of the deterministic reductions: partial sums per block of this many elements of one
// tensor, combined in tensor and block order whatever the thread count.
constexpr size_t kReduceBlock = 4096;

// sum |x| and sum x^2 over every element of the list, in double, deterministically.
template <typename T>
void list_sums(const TensorList<T>& x, double* abs_sum, double* sq_sum);

// min(max_norm / (total_norm + 1e-6), 1) as torch.nn.utils.clip_grad_norm_; NaN when the norm is.
double clip_coefficient(double total_norm, double max_norm);

// One step over a list: the elements of all tensors are split into cache-line-aligned ranges
// across threads, so many small tensors parallelize like one large one. `states[k]` is the
// list of state k (null when the rule does not use it). With max_grad_norm > 0 the global L2
// norm of the grads is computed first (one deterministic pass) and its clip scale applied
// inside the step pass; the norm is returned (NaN otherwise). `states[3]` is the list of the
// weight averages (null unless args.ema_on).
// LAMB and LARS take two passes in the one call: the first (blocks of kReduceBlock, as
// list_sums) forms each tensor's two norms, the driver turns them into the tensor's trust
// ratio, the second applies the step. `adapt[t]` (LARS; null: every tensor) says whether
// tensor t gets the trust ratio and weight decay (pytorch-optimizer's LARS: tensors of more
// than one dimension) or a plain SGD step.
template <typename T>
double optim_step(OptimKind kind, const TensorList<T>& params, const TensorList<const T>& grads,
                  T* const* const states[4], const OptimArgs<double>& args, double max_grad_norm,
                  const unsigned char* adapt = nullptr);

// One torch.optim.Adafactor step over a list. Tensor t has batches[t] x rows[t] x cols[t]
// elements (its last two axes and the product of the others; a vector or scalar: 1 x 1 x n);
// factored[t] says whether it keeps row_var (batches x rows) and col_var (batches x cols), or
// variance (n). args.avg_weight is 1 - beta2_t, args.decay the weight decay, args.eps = eps1^2;
// `s` holds rho_t, eps1, eps2 and d. Each tensor's step size is
// -max(eps2, rms(p)) * rho_t / max(1, rms(u) / d), rms over the tensor. Three passes over the
// tensors in one call (sums of p and g with the column sums; sums of u; the update), the small
// factors computed in between; every reduction in a fixed order. Returns the global grad norm
// when max_grad_norm > 0, else NaN. `emas` (null unless args.ema_on): the weight averages.
struct AdafactorScalars {
  double rho = 0, eps1 = 0, eps2 = 0, d = 1;
};
template <typename T>
double adafactor_step(const TensorList<T>& params, const TensorList<const T>& grads, T* const* row_vars,
                      T* const* col_vars, T* const* variances, T* const* emas, const size_t* batches,
                      const size_t* rows, const size_t* cols, const unsigned char* factored,
                      const OptimArgs<double>& args, const AdafactorScalars& s, double max_grad_norm);

// The low-precision drivers (see LowTensor). optim_step_low: one step over `count` tensors of
// sizes[t] elements, as optim_step (clipping by the global grad norm, LAMB/LARS's two passes,
// `adapt`), computed in float32 with every coefficient rounded to float once.
double optim_step_low(OptimKind kind, const LowTensor* tensors, const size_t* sizes, size_t count,
                      const OptimArgs<double>& args, double max_grad_norm, const unsigned char* adapt = nullptr);
// adafactor_step on 16-bit parameters (tensors[t]: param, grad, ema, shadow, rounding; the
// factors and variances float32).
double adafactor_step_low(const LowTensor* tensors, const size_t* sizes, size_t count, float* const* row_vars,
                          float* const* col_vars, float* const* variances, const size_t* batches, const size_t* rows,
                          const size_t* cols, const unsigned char* factored, const OptimArgs<double>& args,
                          const AdafactorScalars& sc, double max_grad_norm);
// sum |x| and sum x^2 of arrays of any of the three dtypes (widened), in double, deterministically.
void low_list_sums(const void* const* data, const DType* dts, const size_t* sizes, size_t count, double* abs_sum,
                   double* sq_sum);
// x *= s, or x = clamp(x, -s, s), rounded back to each array's dtype.
void low_scale_list(void* const* data, const DType* dts, const size_t* sizes, size_t count, double s, bool clamp);
void low_penalty_grad(void* g, DType gdt, const void* w, DType wdt, size_t n, double l1, double l2);
void low_prox_l1(void* w, DType dt, size_t n, double threshold);

// Threaded element-wise penalty operations on one array (or a list, for scale and clamp).
template <typename T>
void add_penalty_grad(T* g, const T* w, size_t n, double l1, double l2);
template <typename T>
void prox_l1(T* w, size_t n, double threshold);
template <typename T>
void scale_list(const TensorList<T>& x, double s);
template <typename T>
void clamp_list(const TensorList<T>& x, double c);

}  // namespace regtune
