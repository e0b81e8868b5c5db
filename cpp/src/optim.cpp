// Threaded drivers for the optimizer and penalty kernels.
//
// A list of tensors is laid end to end in one index space, each tensor starting on an aligned
// index; parallel_for splits that space into aligned chunks, and each chunk
// is walked tensor by tensor. So 200 small tensors spread over the threads as one large one
// does, and no two threads write one cache line (for arrays aligned to one).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "dispatch.h"
#include "regtune/optim.h"

namespace regtune {
REGTUNE_DECLARE_MAKERS(OptimKernels, optim_kernels)

namespace {

const OptimKernels& optim_table() {
  static PerTarget<OptimKernels> tables(REGTUNE_MAKERS(optim_kernels));
  return tables.get();
}
template <typename T> const OptimKernelsOf<T>& kernels();
template <> const OptimKernelsOf<float>& kernels<float>() { return optim_table().f32; }
template <> const OptimKernelsOf<double>& kernels<double>() { return optim_table().f64; }

// Runs f(begin, end) over aligned chunks of [0, n) (see parallel_for). Not interruptible: a step
// always runs to the end, so parameters and state never hold half an update.
template <typename F>
void parallel(size_t n, size_t grain, F& f) {
  parallel_for(n, grain, [](void* c, size_t b, size_t e) { (*static_cast<F*>(c))(b, e); }, &f);
}

// Tensor t occupies [start[t], start[t] + sizes[t]) of the index space; each start is a multiple
// of `align`, and so is `total`.
struct Layout {
  std::vector<size_t> start;
  size_t total = 0;
  Layout(const size_t* sizes, size_t count, size_t align) : start(count) {
    for (size_t t = 0; t < count; ++t) {
      start[t] = total;
      total += (sizes[t] + align - 1) / align * align;
    }
  }
  // f(t, lo, hi) for the part [lo, hi) of each tensor t that lies in [b, e).
  template <typename F>
  void walk(const size_t* sizes, size_t b, size_t e, F f) const {
    size_t t = size_t(std::upper_bound(start.begin(), start.end(), b) - start.begin()) - 1;
    for (; t < start.size() && start[t] < e; ++t) {
      const size_t lo = std::max(b, start[t]) - start[t];
      const size_t hi = std::min(e - start[t], sizes[t]);
      if (lo < hi) f(t, lo, hi);
    }
  }
};

constexpr size_t kLineBytes = 64;

template <typename T>
OptimArgs<T> round_args(const OptimArgs<double>& d) {
  OptimArgs<T> a;
  a.clip = T(d.clip), a.l1 = T(d.l1), a.decay = T(d.decay), a.wd = T(d.wd), a.prox = T(d.prox);
  a.clip_on = d.clip_on, a.l1_on = d.l1_on, a.decay_on = d.decay_on, a.wd_on = d.wd_on, a.prox_on = d.prox_on;
  a.step = T(d.step), a.momentum = T(d.momentum), a.damp_weight = T(d.damp_weight);
  a.momentum_on = d.momentum_on, a.first_step = d.first_step, a.nesterov = d.nesterov;
  // torch rounds the lerp weight to the tensor's type, then picks the form by its size.
  a.avg_weight = T(d.avg_weight);
  a.avg_small = std::fabs(a.avg_weight) < T(0.5);
  a.avg_coef = a.avg_small ? a.avg_weight : T(a.avg_weight - T(1));
  a.sq_decay = T(d.sq_decay), a.sq_weight = T(d.sq_weight), a.bc2_sqrt = T(d.bc2_sqrt), a.eps = T(d.eps);
  a.amsgrad = d.amsgrad, a.centered = d.centered;
  a.step2 = T(d.step2), a.bc2 = T(d.bc2), a.bc1 = T(d.bc1), a.scale = T(d.scale), a.rect = T(d.rect);
  a.rect_on = d.rect_on;
  a.ema_weight = T(d.ema_weight);
  a.ema_small = std::fabs(a.ema_weight) < T(0.5);
  a.ema_coef = a.ema_small ? a.ema_weight : T(a.ema_weight - T(1));
  a.ema_on = d.ema_on, a.ema_copy = d.ema_copy, a.ema_count = T(d.ema_count), a.ema_mean = d.ema_mean;
  a.update_wd = T(d.update_wd), a.trust_clamp = T(d.trust_clamp), a.trust_coef = T(d.trust_coef);
  a.update_wd_on = d.update_wd_on;
  return a;
}

// The trust ratio of one tensor from the sums of squares of its two vectors (in double).
// LAMB, as pytorch-optimizer's Lamb: w = min(|p|, clamp), u = |update|; 1 when either is 0,
// else w / (u + eps). LARS, as its LARS: p = |p|, d = |g| + wd |p|; tc p / d when p > 0 and
// d > 0, else 1 (a NaN norm fails both tests: 1, and the NaN gradient carries on).
double trust_ratio(OptimKind kind, const OptimArgs<double>& d, double sq0, double sq1) {
  if (kind == OptimKind::lamb) {
    const double w = std::min(std::sqrt(sq0), d.trust_clamp), u = std::sqrt(sq1);
    return w == 0 || u == 0 ? 1.0 : w / (u + d.eps);
  }
  const double p = std::sqrt(sq0), denom = std::sqrt(sq1) + (d.wd_on ? d.wd : 0.0) * p;
  return p > 0 && denom > 0 ? d.trust_coef * p / denom : 1.0;
}

// Each tensor's coefficients of a LAMB or LARS step from the blocks' sums of squares `part`
// (combined per tensor in block order): LAMB's step times its trust ratio, LARS's scale (1 and
// no weight decay on a tensor it does not adapt).
template <typename T>
std::vector<OptimArgs<T>> trust_args(OptimKind kind, const OptimArgs<double>& d, const OptimArgs<T>& a,
                                     const Layout& blocks, const size_t* sizes, size_t count,
                                     const std::vector<double>& part, const unsigned char* adapt) {
  std::vector<OptimArgs<T>> per_tensor(count, a);
  for (size_t t = 0; t < count; ++t) {
    double sq0 = 0.0, sq1 = 0.0;
    const size_t b0 = blocks.start[t] / kReduceBlock, nb = (sizes[t] + kReduceBlock - 1) / kReduceBlock;
    for (size_t j = b0; j < b0 + nb; ++j) {
      sq0 += part[2 * j];
      sq1 += part[2 * j + 1];
    }
    OptimArgs<T>& at = per_tensor[t];
    if (kind == OptimKind::lamb) {
      at.step = T(d.step * trust_ratio(kind, d, sq0, sq1));
    } else if (adapt && !adapt[t]) {  // LARS on a bias or a norm's scale: plain SGD
      at.scale = T(1), at.wd_on = false;
    } else {
      at.scale = T(trust_ratio(kind, d, sq0, sq1));
    }
  }
  return per_tensor;
}

}  // namespace

template <typename T>
void list_sums(const TensorList<T>& x, double* abs_sum, double* sq_sum) {
  const Layout layout(x.sizes, x.count, kReduceBlock);
  std::vector<double> part(2 * (layout.total / kReduceBlock), 0.0);
  const auto sums = kernels<std::remove_const_t<T>>().sums;
  auto body = [&](size_t b, size_t e) {
    layout.walk(x.sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
      for (size_t s = lo; s < hi; s += kReduceBlock) {
        sums(x.data[t] + s, std::min(kReduceBlock, hi - s), &part[2 * ((layout.start[t] + s) / kReduceBlock)]);
      }
    });
  };
  parallel(layout.total, kReduceBlock, body);
  double a = 0.0, q = 0.0;  // in block order, whatever the thread count
  for (size_t j = 0; j < part.size(); j += 2) {
    a += part[j];
    q += part[j + 1];
  }
  *abs_sum = a;
  *sq_sum = q;
}

double clip_coefficient(double total_norm, double max_norm) {
  const double c = max_norm / (total_norm + 1e-6);
  return std::isnan(c) ? c : std::min(c, 1.0);
}

namespace {
// With max_grad_norm > 0: the global norm of the grads (one deterministic pass), and its clip
// scale switched on in `d` when it is below 1 (as torch, a NaN norm makes every gradient NaN).
// Returns the norm, or NaN without clipping.
template <typename T>
double clip_args(const TensorList<const T>& grads, double max_grad_norm, OptimArgs<double>& d) {
  if (!(max_grad_norm > 0)) return std::nan("");
  double abs_sum, sq_sum;
  list_sums(grads, &abs_sum, &sq_sum);
  const double norm = std::sqrt(sq_sum);
  const double c = clip_coefficient(norm, max_grad_norm);
  if (!(c >= 1.0)) {
    d.clip_on = true;
    d.clip = c;
  }
  return norm;
}
}  // namespace

template <typename T>
double optim_step(OptimKind kind, const TensorList<T>& params, const TensorList<const T>& grads,
                  T* const* const states[4], const OptimArgs<double>& args, double max_grad_norm,
                  const unsigned char* adapt) {
  OptimArgs<double> d = args;
  const double norm = clip_args(grads, max_grad_norm, d);
  const OptimArgs<T> a = round_args<T>(d);
  const StepKernel<T> step = kernels<T>().step[int(kind)];
  std::vector<OptimArgs<T>> per_tensor;  // LAMB and LARS: each tensor's coefficients
  if (kind == OptimKind::lamb || kind == OptimKind::lars) {
    // First pass: the two sums of squares of every block, then each tensor's in block order.
    const TrustSums<T> sums = kind == OptimKind::lamb ? kernels<T>().lamb_sums : kernels<T>().lars_sums;
    const Layout blocks(params.sizes, params.count, kReduceBlock);
    std::vector<double> part(2 * (blocks.total / kReduceBlock), 0.0);
    auto first = [&](size_t b, size_t e) {
      blocks.walk(params.sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
        for (size_t s = lo; s < hi; s += kReduceBlock) {
          T* s0 = states[0] ? states[0][t] + s : nullptr;
          T* s1 = states[1] ? states[1][t] + s : nullptr;
          sums(params.data[t] + s, grads.data[t] + s, s0, s1, std::min(kReduceBlock, hi - s), a,
               &part[2 * ((blocks.start[t] + s) / kReduceBlock)]);
        }
      });
    };
    parallel(blocks.total, kReduceBlock, first);
    per_tensor = trust_args(kind, d, a, blocks, params.sizes, params.count, part, adapt);
  }
  const Layout layout(params.sizes, params.count, kLineBytes / sizeof(T));
  auto body = [&](size_t b, size_t e) {
    layout.walk(params.sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
      T* s[4];
      for (int k = 0; k < 4; ++k) s[k] = states[k] ? states[k][t] + lo : nullptr;
      step(params.data[t] + lo, grads.data[t] + lo, s[0], s[1], s[2], s[3], hi - lo,
           per_tensor.empty() ? a : per_tensor[t]);
    });
  };
  parallel(layout.total, kLineBytes / sizeof(T), body);
  return norm;
}

namespace {

// torch's lerp_(end, w) on one number (w as its rounded T; see OptimArgs).
template <typename T>
T lerp1(T x, T end, const OptimArgs<T>& a) {
  return std::fma(a.avg_coef, end - x, a.avg_small ? x : end);
}

// Adafactor's units of work: rows [r0, r1) of batch b of tensor t, columns [c0, c1) (a vector:
// one row). The cut depends on the shapes only, so every partial sum has a fixed place and
// the sums are combined in a fixed order whatever the thread count.
constexpr size_t kAdafactorStripe = 2048;  // columns per task
constexpr size_t kAdafactorGroups = 64;    // row groups per batch, at most

struct AdafactorTask {
  size_t t, b, g, r0, r1, s, c0, c1;
  size_t start;  // the first of its elements in an index space of all tasks' elements
};

// f(task) for every task, across threads: the tasks lie end to end by their element counts
// (`total` in all), and each chunk of that space runs the tasks that start in it, so the
// threads share the elements, and small lists stay on the calling thread as parallel_for
// decides for any call of that size.
template <typename F>
void for_tasks(const std::vector<AdafactorTask>& tasks, size_t total, F f) {
  auto body = [&](size_t b, size_t e) {
    auto it = std::lower_bound(tasks.begin(), tasks.end(), b, [](const AdafactorTask& w, size_t x) { return w.start < x; });
    for (; it != tasks.end() && it->start < e; ++it) f(*it);
  };
  parallel(total + 1, kReduceBlock, body);  // + 1: an empty task at the end still runs
}

}  // namespace

double low_clip_args(const LowTensor* tensors, const size_t* sizes, size_t count, double max_grad_norm,
                     OptimArgs<double>& d);

namespace {
// The body of an Adafactor step over `count` tensors, after clipping: the three passes call
// first(t, o, n, a, out, acc, var), second(t, o, n, a, cv, rv, m, var, out) and
// apply(t, o, n, a, cv, rv, m, var) on elements [o, o + n) of tensor t (typed pointers, or a
// 16-bit step's LowTensor); the factors are T.
template <typename T, typename First, typename Second, typename Apply>
void adafactor_core(size_t count, const size_t* sizes, T* const* row_vars, T* const* col_vars, T* const* variances,
                    const size_t* batches, const size_t* rows, const size_t* cols, const unsigned char* factored,
                    const OptimArgs<T>& a, const AdafactorScalars& sc, First first, Second second, Apply apply) {
  // The tasks, and where each tensor's partial sums live: rowpart holds (p^2, g^2) and then
  // u^2 per (batch, row, stripe); colpart the column sums of g^2 per (batch, row group).
  std::vector<AdafactorTask> tasks;
  std::vector<size_t> row0(count), col0(count), stripes(count), groups(count), per(count);
  size_t nrow = 0, ncol = 0, total = 0;
  for (size_t t = 0; t < count; ++t) {
    const size_t R = rows[t], C = cols[t];
    stripes[t] = std::max<size_t>(1, (C + kAdafactorStripe - 1) / kAdafactorStripe);
    per[t] = (R + kAdafactorGroups - 1) / kAdafactorGroups;  // rows per group
    groups[t] = R ? (R + per[t] - 1) / per[t] : 0;
    row0[t] = nrow;
    col0[t] = ncol;
    nrow += batches[t] * R * stripes[t];
    if (factored[t]) ncol += batches[t] * groups[t] * C;
    for (size_t b = 0; b < batches[t]; ++b) {
      for (size_t g = 0; g < groups[t]; ++g) {
        for (size_t s = 0; s < stripes[t]; ++s) {
          const size_t r0 = g * per[t], r1 = std::min(R, (g + 1) * per[t]);
          const size_t c0 = s * kAdafactorStripe, c1 = std::min(C, (s + 1) * kAdafactorStripe);
          tasks.push_back({t, b, g, r0, r1, s, c0, c1, total});
          total += (r1 - r0) * (c1 - c0);
        }
      }
    }
  }
  std::vector<double> rowpart(2 * nrow, 0.0), colpart(ncol, 0.0);
  auto slot = [&](const AdafactorTask& w, size_t r) { return row0[w.t] + (w.b * rows[w.t] + r) * stripes[w.t] + w.s; };
  auto offset = [&](const AdafactorTask& w, size_t r) { return (w.b * rows[w.t] + r) * cols[w.t] + w.c0; };

  for_tasks(tasks, total, [&](const AdafactorTask& w) {
    const size_t C = cols[w.t];
    double* acc = factored[w.t] ? &colpart[col0[w.t] + (w.b * groups[w.t] + w.g) * C + w.c0] : nullptr;
    for (size_t r = w.r0; r < w.r1; ++r) {
      const size_t o = offset(w, r);
      first(w.t, o, w.c1 - w.c0, a, &rowpart[2 * slot(w, r)], acc, factored[w.t] ? nullptr : variances[w.t] + o);
    }
  });

  // The small factors, serially in a fixed order: row_var, col_var, the clamped means of
  // row_var, and each tensor's alpha = max(eps2, rms(p)) * rho_t.
  std::vector<T> means;  // per (tensor, batch)
  std::vector<size_t> mean0(count);
  std::vector<double> alpha(count);
  for (size_t t = 0; t < count; ++t) {
    const size_t B = batches[t], R = rows[t], C = cols[t], S = stripes[t];
    double psq = 0.0;
    for (size_t j = 0; j < B * R * S; ++j) psq += rowpart[2 * (row0[t] + j)];
    const double rms = sizes[t] ? std::sqrt(psq) / std::sqrt(double(sizes[t])) : 0.0;
    alpha[t] = (rms > sc.eps2 ? rms : sc.eps2) * sc.rho;  // Python's max(eps2, rms): eps2 for a NaN rms
    mean0[t] = means.size();
    if (!factored[t]) continue;
    for (size_t b = 0; b < B; ++b) {
      double sum_rv = 0.0;
      for (size_t r = 0; r < R; ++r) {
        double gsq = 0.0;
        for (size_t s = 0; s < S; ++s) gsq += rowpart[2 * (row0[t] + (b * R + r) * S + s) + 1];
        T& rv = row_vars[t][b * R + r];
        rv = lerp1(rv, T(gsq / double(C)), a);
        sum_rv += double(rv);
      }
      for (size_t c = 0; c < C; ++c) {
        double gsq = 0.0;
        for (size_t g = 0; g < groups[t]; ++g) gsq += colpart[col0[t] + (b * groups[t] + g) * C + c];
        T& cv = col_vars[t][b * C + c];
        cv = lerp1(cv, T(gsq / double(R)), a);
      }
      const T mean = T(sum_rv / double(R));
      means.push_back(mean > T(sc.eps1) ? mean : (std::isnan(mean) ? mean : T(sc.eps1)));  // clamp_(min=eps1)
    }
  }
  // f(task, row, offset, cv, rv, m, var) for every row segment of every task, with its factors:
  // the column factors, row factor and clamped mean of a factored tensor, or its variance.
  auto each_row = [&](auto f) {
    for_tasks(tasks, total, [&](const AdafactorTask& w) {
      for (size_t r = w.r0; r < w.r1; ++r) {
        const size_t o = offset(w, r);
        if (factored[w.t]) {
          f(w, r, o, col_vars[w.t] + w.b * cols[w.t] + w.c0, row_vars[w.t][w.b * rows[w.t] + r],
            means[mean0[w.t] + w.b], static_cast<const T*>(nullptr));
        } else {
          f(w, r, o, static_cast<const T*>(nullptr), T(0), T(1), static_cast<const T*>(variances[w.t] + o));
        }
      }
    });
  };

  std::fill(rowpart.begin(), rowpart.end(), 0.0);
  each_row([&](const AdafactorTask& w, size_t r, size_t o, const T* cv, T rv, T m, const T* var) {
    second(w.t, o, w.c1 - w.c0, a, cv, rv, m, var, &rowpart[2 * slot(w, r)]);
  });

  std::vector<OptimArgs<T>> at(count, a);
  for (size_t t = 0; t < count; ++t) {
    double usq = 0.0;
    for (size_t j = 0; j < batches[t] * rows[t] * stripes[t]; ++j) usq += rowpart[2 * (row0[t] + j)];
    const double n = double(sizes[t]);
    const double ratio = n ? std::sqrt(usq) / (std::sqrt(n) * sc.d) : 0.0;
    const double denom = ratio > 1.0 ? ratio : 1.0;  // Python's max(1.0, ratio)
    at[t].step = T(-alpha[t] / denom);
  }
  each_row([&](const AdafactorTask& w, size_t, size_t o, const T* cv, T rv, T m, const T* var) {
    apply(w.t, o, w.c1 - w.c0, at[w.t], cv, rv, m, var);
  });
}
}  // namespace

template <typename T>
double adafactor_step(const TensorList<T>& params, const TensorList<const T>& grads, T* const* row_vars,
                      T* const* col_vars, T* const* variances, T* const* emas, const size_t* batches,
                      const size_t* rows, const size_t* cols, const unsigned char* factored,
                      const OptimArgs<double>& args, const AdafactorScalars& sc, double max_grad_norm) {
  OptimArgs<double> d = args;
  const double norm = clip_args(grads, max_grad_norm, d);
  const OptimArgs<T> a = round_args<T>(d);
  const AdafactorKernels<T>& k = kernels<T>().adafactor;
  adafactor_core<T>(
      params.count, params.sizes, row_vars, col_vars, variances, batches, rows, cols, factored, a, sc,
      [&](size_t t, size_t o, size_t n, const OptimArgs<T>& at, double* out, double* acc, T* var) {
        k.first(params.data[t] + o, grads.data[t] + o, n, at, out, acc, var);
      },
      [&](size_t t, size_t o, size_t n, const OptimArgs<T>& at, const T* cv, T rv, T m, const T* var, double* out) {
        k.second(params.data[t] + o, grads.data[t] + o, n, at, cv, rv, m, var, out);
      },
      [&](size_t t, size_t o, size_t n, const OptimArgs<T>& at, const T* cv, T rv, T m, const T* var) {
        k.apply(params.data[t] + o, grads.data[t] + o, n, at, cv, rv, m, var, emas ? emas[t] + o : nullptr);
      });
  return norm;
}

double adafactor_step_low(const LowTensor* tensors, const size_t* sizes, size_t count, float* const* row_vars,
                          float* const* col_vars, float* const* variances, const size_t* batches, const size_t* rows,
                          const size_t* cols, const unsigned char* factored, const OptimArgs<double>& args,
                          const AdafactorScalars& sc, double max_grad_norm) {
  OptimArgs<double> d = args;
  const double norm = low_clip_args(tensors, sizes, count, max_grad_norm, d);
  const OptimArgs<float> a = round_args<float>(d);
  const auto& k = optim_table().low.adafactor;
  adafactor_core<float>(
      count, sizes, row_vars, col_vars, variances, batches, rows, cols, factored, a, sc,
      [&](size_t t, size_t o, size_t n, const OptimArgs<float>& at, double* out, double* acc, float* var) {
        k.first(tensors[t], o, n, at, out, acc, var);
      },
      [&](size_t t, size_t o, size_t n, const OptimArgs<float>& at, const float* cv, float rv, float m,
          const float* var, double* out) { k.second(tensors[t], o, n, at, cv, rv, m, var, out); },
      [&](size_t t, size_t o, size_t n, const OptimArgs<float>& at, const float* cv, float rv, float m,
          const float* var) {
        float* ema = tensors[t].ema ? static_cast<float*>(tensors[t].ema) + o : nullptr;
        k.apply(tensors[t], o, n, at, cv, rv, m, var, ema);
      });
  return norm;
}

template <typename T>
void add_penalty_grad(T* g, const T* w, size_t n, double l1, double l2) {
  const auto k = kernels<T>().penalty_grad;
  auto body = [&](size_t b, size_t e) { k(g + b, w + b, e - b, T(l1), T(l2)); };
  parallel(n, kLineBytes / sizeof(T), body);
}

template <typename T>
void prox_l1(T* w, size_t n, double threshold) {
  const auto k = kernels<T>().prox_l1;
  auto body = [&](size_t b, size_t e) { k(w + b, e - b, T(threshold)); };
  parallel(n, kLineBytes / sizeof(T), body);
}

namespace {
template <typename T, typename K>
void elementwise_list(const TensorList<T>& x, K k, T c) {
  const Layout layout(x.sizes, x.count, kLineBytes / sizeof(T));
  auto body = [&](size_t b, size_t e) {
    layout.walk(x.sizes, b, e, [&](size_t t, size_t lo, size_t hi) { k(x.data[t] + lo, hi - lo, c); });
  };
  parallel(layout.total, kLineBytes / sizeof(T), body);
}
}  // namespace

template <typename T>
void scale_list(const TensorList<T>& x, double s) {
  elementwise_list(x, kernels<T>().scale, T(s));
}

template <typename T>
void clamp_list(const TensorList<T>& x, double c) {
  elementwise_list(x, kernels<T>().clamp, T(c));
}

// ---------------------------------------------------------------------- low precision
namespace {
const LowKernels& low() { return optim_table().low; }
// Chunks of low-precision steps start on multiples of 32 elements of their tensor: a cache
// line of each 16-bit array (two of a float32 one), and a multiple of 4 (a Philox block) for
// the words of stochastic rounding.
constexpr size_t kLowAlign = 32;
}  // namespace

void low_list_sums(const void* const* data, const DType* dts, const size_t* sizes, size_t count, double* abs_sum,
                   double* sq_sum) {
  const Layout layout(sizes, count, kReduceBlock);
  std::vector<double> part(2 * (layout.total / kReduceBlock), 0.0);
  const auto sums = low().sums;
  auto body = [&](size_t b, size_t e) {
    layout.walk(sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
      const char* base = static_cast<const char*>(data[t]);
      const size_t w = dts[t] == DType::f32 ? 4 : 2;
      for (size_t s = lo; s < hi; s += kReduceBlock) {
        sums(base + s * w, dts[t], std::min(kReduceBlock, hi - s), &part[2 * ((layout.start[t] + s) / kReduceBlock)]);
      }
    });
  };
  parallel(layout.total, kReduceBlock, body);
  double a = 0.0, q = 0.0;
  for (size_t j = 0; j < part.size(); j += 2) {
    a += part[j];
    q += part[j + 1];
  }
  *abs_sum = a;
  *sq_sum = q;
}

// clip_args for a 16-bit step's gradients.
double low_clip_args(const LowTensor* tensors, const size_t* sizes, size_t count, double max_grad_norm,
                     OptimArgs<double>& d) {
  if (!(max_grad_norm > 0)) return std::nan("");
  std::vector<const void*> g(count);
  std::vector<DType> gd(count);
  for (size_t t = 0; t < count; ++t) g[t] = tensors[t].grad, gd[t] = tensors[t].grad_dt;
  double abs_sum, sq_sum;
  low_list_sums(g.data(), gd.data(), sizes, count, &abs_sum, &sq_sum);
  const double norm = std::sqrt(sq_sum);
  const double c = clip_coefficient(norm, max_grad_norm);
  if (!(c >= 1.0)) d.clip_on = true, d.clip = c;
  return norm;
}

double optim_step_low(OptimKind kind, const LowTensor* tensors, const size_t* sizes, size_t count,
                      const OptimArgs<double>& args, double max_grad_norm, const unsigned char* adapt) {
  OptimArgs<double> d = args;
  const double norm = low_clip_args(tensors, sizes, count, max_grad_norm, d);
  const OptimArgs<float> a = round_args<float>(d);
  const auto step = low().step[int(kind)];
  std::vector<OptimArgs<float>> per_tensor;
  if (kind == OptimKind::lamb || kind == OptimKind::lars) {
    const auto sums = kind == OptimKind::lamb ? low().lamb_sums : low().lars_sums;
    const Layout blocks(sizes, count, kReduceBlock);
    std::vector<double> part(2 * (blocks.total / kReduceBlock), 0.0);
    auto first = [&](size_t b, size_t e) {
      blocks.walk(sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
        for (size_t s = lo; s < hi; s += kReduceBlock) {
          sums(tensors[t], s, std::min(kReduceBlock, hi - s), a, &part[2 * ((blocks.start[t] + s) / kReduceBlock)]);
        }
      });
    };
    parallel(blocks.total, kReduceBlock, first);
    per_tensor = trust_args(kind, d, a, blocks, sizes, count, part, adapt);
  }
  const Layout layout(sizes, count, kLowAlign);
  auto body = [&](size_t b, size_t e) {
    layout.walk(sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
      step(tensors[t], lo, hi - lo, per_tensor.empty() ? a : per_tensor[t]);
    });
  };
  parallel(layout.total, kLowAlign, body);
  return norm;
}

void low_scale_list(void* const* data, const DType* dts, const size_t* sizes, size_t count, double s, bool clamp) {
  const Layout layout(sizes, count, kLowAlign);
  const auto k = clamp ? low().clamp : low().scale;
  auto body = [&](size_t b, size_t e) {
    layout.walk(sizes, b, e, [&](size_t t, size_t lo, size_t hi) {
      k(static_cast<char*>(data[t]) + lo * (dts[t] == DType::f32 ? 4 : 2), dts[t], hi - lo, float(s));
    });
  };
  parallel(layout.total, kLowAlign, body);
}

void low_penalty_grad(void* g, DType gdt, const void* w, DType wdt, size_t n, double l1, double l2) {
  const auto k = low().penalty_grad;
  const size_t gw = gdt == DType::f32 ? 4 : 2, ww = wdt == DType::f32 ? 4 : 2;
  auto body = [&](size_t b, size_t e) {
    k(static_cast<char*>(g) + b * gw, gdt, static_cast<const char*>(w) + b * ww, wdt, e - b, float(l1), float(l2));
  };
  parallel(n, kLowAlign, body);
}

void low_prox_l1(void* w, DType dt, size_t n, double threshold) {
  const auto k = low().prox_l1;
  const size_t ww = dt == DType::f32 ? 4 : 2;
  auto body = [&](size_t b, size_t e) { k(static_cast<char*>(w) + b * ww, dt, e - b, float(threshold)); };
  parallel(n, kLowAlign, body);
}

#define REGTUNE_INSTANTIATE(T)                                                                                \
  template void list_sums<T>(const TensorList<T>&, double*, double*);                                        \
  template void list_sums<const T>(const TensorList<const T>&, double*, double*);                            \
  template double optim_step<T>(OptimKind, const TensorList<T>&, const TensorList<const T>&, T* const* const[4], \
                                const OptimArgs<double>&, double, const unsigned char*);                     \
  template double adafactor_step<T>(const TensorList<T>&, const TensorList<const T>&, T* const*, T* const*,   \
                                    T* const*, T* const*, const size_t*, const size_t*, const size_t*,        \
                                    const unsigned char*, const OptimArgs<double>&, const AdafactorScalars&,  \
                                    double);                                                                  \
  template void add_penalty_grad<T>(T*, const T*, size_t, double, double);                                   \
  template void prox_l1<T>(T*, size_t, double);                                                              \
  template void scale_list<T>(const TensorList<T>&, double);                                                 \
  template void clamp_list<T>(const TensorList<T>&, double);
REGTUNE_INSTANTIATE(float)
REGTUNE_INSTANTIATE(double)
#undef REGTUNE_INSTANTIATE

}  // namespace regtune
