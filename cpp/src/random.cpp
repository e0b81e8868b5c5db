// Threaded drivers: split a fill into per-thread ranges and run the selected kernels on each.
// out[r * run_len + j] is stream element firsts[r] + j whatever the split, so the result does
// not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "regtune/kernels.h"

namespace regtune {
namespace {

// Calls kernel(stream, first, n, out, params) on the pieces of the runs that fall in each
// per-thread range of out's elements.
template <typename T, typename Params, typename Kernel>
void run_threaded(Kernel kernel, Stream s, const Runs& where, T* out, const Params& p) {
  struct Ctx {
    Kernel kernel;
    Stream s;
    Runs where;
    T* out;
    const Params* p;
  } ctx{kernel, s, where, out, &p};
  parallel_for(where.size(), 256 / sizeof(T), [](void* c, size_t b, size_t e) {
    auto* x = static_cast<Ctx*>(c);
    const size_t len = x->where.run_len;
    while (b < e) {
      const size_t r = b / len, j = b % len, n = std::min(len - j, e - b);
      x->kernel(x->s, x->where.firsts[r] + j, n, x->out + b, *x->p);
      b += n;
    }
  }, &ctx, /*interruptible=*/true);
}

struct NoParams {};

template <typename T> struct Kern;
template <> struct Kern<float> {
  static auto uniform() { return random_kernels().uniform_f32; }
  static auto normal() { return random_kernels().normal_f32; }
  static auto truncnorm() { return random_kernels().truncnorm_f32; }
};
template <> struct Kern<double> {
  static auto uniform() { return random_kernels().uniform_f64; }
  static auto normal() { return random_kernels().normal_f64; }
  static auto truncnorm() { return random_kernels().truncnorm_f64; }
};

// Standard normal lower and upper tail probabilities, each accurate on its own side.
double phi_lower(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double phi_upper(double x) { return 0.5 * std::erfc(x / std::sqrt(2.0)); }

template <typename T>
TruncNormalParams<T> cast_params(const TruncNormalParams<double>& d) {
  return {T(d.mean), T(d.std), T(d.a), T(d.b), T(d.p_lo), T(d.q_hi), T(d.mass)};
}

}  // namespace

void fill_bits(Stream s, const Runs& where, uint32_t* out) {
  auto k = [](Stream st, uint64_t f, size_t n, uint32_t* o, const NoParams&) { random_kernels().bits(st, f, n, o); };
  run_threaded(k, s, where, out, NoParams{});
}

template <typename T>
void fill_uniform(Stream s, const Runs& where, T* out, double low, double high) {
  const T lo = T(low), hi = T(high);
  // The largest T below high: low + (high - low) * u may round up to high for u near 1.
  const T below = std::nextafter(hi, -std::numeric_limits<T>::infinity());
  const UniformParams<T> p{lo, T(hi - lo), std::max(below, lo)};
  run_threaded(Kern<T>::uniform(), s, where, out, p);
}

template <typename T>
void fill_normal(Stream s, const Runs& where, T* out, double mean, double std) {
  run_threaded(Kern<T>::normal(), s, where, out, NormalParams<T>{T(mean), T(std)});
}

TruncNormalParams<double> truncnorm_params(double mean, double std, double a, double b) {
  const double alpha = (a - mean) / std, beta = (b - mean) / std;
  TruncNormalParams<double> d{mean, std, a, b, 0, 0, 0};
  d.p_lo = phi_lower(alpha);
  d.q_hi = phi_upper(beta);
  // The mass between the cut-offs, from whichever side loses no digits.
  d.mass = alpha > 0 ? phi_upper(alpha) - d.q_hi : (beta < 0 ? phi_lower(beta) - d.p_lo : 1.0 - d.p_lo - d.q_hi);
  return d;
}

template <typename T>
void fill_truncnorm(Stream s, const Runs& where, T* out, double mean, double std, double a, double b) {
  const TruncNormalParams<double> d = truncnorm_params(mean, std, a, b);
  const bool float_ok = d.mass >= 1.0 / 256 && (d.p_lo == 0 || d.p_lo >= 1e-30) && (d.q_hi == 0 || d.q_hi >= 1e-30);
  if (sizeof(T) == 8 || float_ok) {
    run_threaded(Kern<T>::truncnorm(), s, where, out, cast_params<T>(d));
    return;
  }
  // float32 out of float64 draws, in small stack-sized pieces.
  auto k = [](Stream st, uint64_t f, size_t n, T* o, const TruncNormalParams<double>& p) {
    constexpr size_t kPiece = 1024;
    double tmp[kPiece];
    for (size_t i = 0; i < n; i += kPiece) {
      const size_t m = std::min(kPiece, n - i);
      random_kernels().truncnorm_f64(st, f + i, m, tmp, p);
      for (size_t j = 0; j < m; ++j) o[i + j] = T(tmp[j]);
    }
  };
  run_threaded(k, s, where, out, d);
}

template void fill_uniform<float>(Stream, const Runs&, float*, double, double);
template void fill_uniform<double>(Stream, const Runs&, double*, double, double);
template void fill_normal<float>(Stream, const Runs&, float*, double, double);
template void fill_normal<double>(Stream, const Runs&, double*, double, double);
template void fill_truncnorm<float>(Stream, const Runs&, float*, double, double, double, double);
template void fill_truncnorm<double>(Stream, const Runs&, double*, double, double, double, double);

}  // namespace regtune
