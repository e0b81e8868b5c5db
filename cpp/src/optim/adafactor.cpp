// The Adafactor driver (torch.optim.Adafactor): three passes over the tensors in one call, the
// small factors formed in between; every reduction in a fixed order. Baseline code; the
// passes are the selected path's kernels (optim/adafactor_kernels.h).
#include <cmath>
#include <cstring>

#include "optim/driver.h"

namespace regtune {

namespace {

// The indices of Adafactor's fields (optim/adafactor_kernels.h) by name.
struct Scalars {
  int weight = -1, step = -1, rho = -1, eps1 = -1, eps2 = -1, d = -1;
  double rho_v = 0, eps1_v = 0, eps2_v = 0, d_v = 1;
  explicit Scalars(const Values& coef) {
    int n;
    const Field* f = adafactor_fields(&n);
    for (int i = 0; i < n; ++i) {
      const char* s = f[i].name;
      int* slot = !std::strcmp(s, "one_minus_beta2_t") ? &weight : !std::strcmp(s, "neg_step_size") ? &step
                : !std::strcmp(s, "rho") ? &rho : !std::strcmp(s, "eps1") ? &eps1 : !std::strcmp(s, "eps2") ? &eps2
                : !std::strcmp(s, "d") ? &d : nullptr;
      if (slot) *slot = i;
    }
    rho_v = coef.v[rho], eps1_v = coef.v[eps1], eps2_v = coef.v[eps2], d_v = coef.v[d];
  }
};

// torch's lerp_(end, w) on one number (w as its rounded T; see Lerp).
template <typename T>
T lerp1(T x, T end, const Lerp<T>& w) {
  return std::fma(w.coef, end - x, w.small ? x : end);
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

// The body of an Adafactor step over `count` tensors, after clipping; the factors are T, the
// compute type (double for float64 parameters, else float).
template <typename T>
void adafactor_core(const Tensor* tensors, size_t count, void* const* row_vars_, void* const* col_vars_,
                    void* const* variances_, const size_t* batches, const size_t* rows, const size_t* cols,
                    const unsigned char* factored, const Values& coef, const Values& fused,
                    const AdafactorReduce& reduce) {
  const OptimTable& k = optim_kernels();
  const Scalars sc(coef);
  Lerp<T> lw;  // the lerp weight of the running variances, rounded to T as torch's lerp_
  coef::set(lw, coef.v[sc.weight], true);
  auto row_vars = reinterpret_cast<T* const*>(row_vars_);
  auto col_vars = reinterpret_cast<T* const*>(col_vars_);
  auto variances = reinterpret_cast<T* const*>(variances_);
  std::vector<size_t> sizes(count);
  for (size_t t = 0; t < count; ++t) sizes[t] = tensors[t].size;
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
      k.ada_first(tensors[w.t], o, w.c1 - w.c0, coef, fused, &rowpart[2 * slot(w, r)], acc,
                    factored[w.t] ? nullptr : variances[w.t] + o);
    }
  });

  // The small factors, serially in a fixed order: row_var, col_var, the clamped means of
  // row_var, and each tensor's alpha = max(eps2, rms(p)) * rho_t. With `reduce`, the sums
  // they come from go through it first, each with the count it divides by (see AdafactorReduce).
  std::vector<size_t> seg(count + 1, 0);
  std::vector<double> sums;
  auto segments = [&](auto size_of) {
    for (size_t t = 0; t < count; ++t) seg[t + 1] = seg[t] + size_of(t);
    sums.assign(seg[count], 0.0);
  };
  // stage 0: [sum p^2, n, rows, column sums of g^2 (batch x cols, factored tensors)]
  segments([&](size_t t) { return 3 + (factored[t] ? batches[t] * cols[t] : 0); });
  for (size_t t = 0; t < count; ++t) {
    const size_t B = batches[t], R = rows[t], C = cols[t], S = stripes[t];
    double* x = &sums[seg[t]];
    for (size_t j = 0; j < B * R * S; ++j) x[0] += rowpart[2 * (row0[t] + j)];
    x[1] = double(sizes[t]), x[2] = double(R);
    if (!factored[t]) continue;
    for (size_t b = 0; b < B; ++b) {
      for (size_t c = 0; c < C; ++c) {
        double gsq = 0.0;
        for (size_t g = 0; g < groups[t]; ++g) gsq += colpart[col0[t] + (b * groups[t] + g) * C + c];
        x[3 + b * C + c] = gsq;
      }
    }
  }
  if (reduce) reduce(0, sums.data(), seg.data(), count);
  std::vector<double> alpha(count), rows_of(count), n_of(count);
  for (size_t t = 0; t < count; ++t) {
    const double* x = &sums[seg[t]];
    n_of[t] = x[1], rows_of[t] = x[2];
    const double rms = n_of[t] ? std::sqrt(x[0]) / std::sqrt(n_of[t]) : 0.0;
    alpha[t] = (rms > sc.eps2_v ? rms : sc.eps2_v) * sc.rho_v;  // Python's max(eps2, rms): eps2 for a NaN rms
    if (!factored[t]) continue;
    const size_t B = batches[t], R = rows[t], C = cols[t], S = stripes[t];
    for (size_t b = 0; b < B; ++b) {
      for (size_t r = 0; r < R; ++r) {
        double gsq = 0.0;
        for (size_t s = 0; s < S; ++s) gsq += rowpart[2 * (row0[t] + (b * R + r) * S + s) + 1];
        T& rv = row_vars[t][b * R + r];
        rv = lerp1(rv, T(gsq / double(C)), lw);
      }
      for (size_t c = 0; c < C; ++c) {
        T& cv = col_vars[t][b * C + c];
        cv = lerp1(cv, T(x[3 + b * C + c] / rows_of[t]), lw);
      }
    }
  }
  // stage 1: [sum of row_var per batch (factored tensors), rows]
  std::vector<size_t> mean0(count);
  segments([&](size_t t) { return factored[t] ? batches[t] + 1 : 0; });
  for (size_t t = 0; t < count; ++t) {
    if (!factored[t]) continue;
    double* x = &sums[seg[t]];
    for (size_t b = 0; b < batches[t]; ++b) {
      for (size_t r = 0; r < rows[t]; ++r) x[b] += double(row_vars[t][b * rows[t] + r]);
    }
    x[batches[t]] = double(rows[t]);
  }
  if (reduce) reduce(1, sums.data(), seg.data(), count);
  std::vector<T> means;  // per (tensor, batch)
  for (size_t t = 0; t < count; ++t) {
    mean0[t] = means.size();
    if (!factored[t]) continue;
    const double* x = &sums[seg[t]];
    for (size_t b = 0; b < batches[t]; ++b) {
      const T mean = T(x[b] / x[batches[t]]);
      means.push_back(mean > T(sc.eps1_v) ? mean : (std::isnan(mean) ? mean : T(sc.eps1_v)));  // clamp_(min=eps1)
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
    k.ada_second(tensors[w.t], o, w.c1 - w.c0, coef, fused, cv, double(rv), double(m), var,
                 &rowpart[2 * slot(w, r)]);
  });

  // stage 2: [sum u^2, n]
  segments([](size_t) { return 2; });
  for (size_t t = 0; t < count; ++t) {
    double* x = &sums[seg[t]];
    for (size_t j = 0; j < batches[t] * rows[t] * stripes[t]; ++j) x[0] += rowpart[2 * (row0[t] + j)];
    x[1] = double(sizes[t]);
  }
  if (reduce) reduce(2, sums.data(), seg.data(), count);
  std::vector<Values> at(count, coef);
  for (size_t t = 0; t < count; ++t) {
    const double usq = sums[seg[t]], n = sums[seg[t] + 1];
    const double ratio = n ? std::sqrt(usq) / (std::sqrt(n) * sc.d_v) : 0.0;
    const double denom = ratio > 1.0 ? ratio : 1.0;  // Python's max(1.0, ratio)
    at[t].v[sc.step] = -alpha[t] / denom;
    at[t].given[sc.step] = true;
  }
  each_row([&](const AdafactorTask& w, size_t, size_t o, const T* cv, T rv, T m, const T* var) {
    k.ada_apply(tensors[w.t], o, w.c1 - w.c0, at[w.t], fused, cv, double(rv), double(m), var);
  });
}
}  // namespace

double adafactor_step(const Tensor* tensors, size_t count, void* const* row_vars, void* const* col_vars,
                      void* const* variances, const size_t* batches, const size_t* rows, const size_t* cols,
                      const unsigned char* factored, const Values& coef, const Values& fused_in, double max_grad_norm,
                      const AdafactorReduce& reduce) {
  Values fused = fused_in;
  const double norm = clip_fused(tensors, count, max_grad_norm, fused);
  if (count && tensors[0].param.dt == DType::f64) {
    adafactor_core<double>(tensors, count, row_vars, col_vars, variances, batches, rows, cols, factored, coef, fused,
                           reduce);
  } else {
    adafactor_core<float>(tensors, count, row_vars, col_vars, variances, batches, rows, cols, factored, coef, fused,
                          reduce);
  }
  return norm;
}

}  // namespace regtune
