// Threaded drivers: split a fill into per-thread ranges and run the selected kernels on each.
// out[r * run_len + j] is stream element firsts[r] + j whatever the split, so the result does
// not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

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

// float32 <-> 16-bit conversions of the selected path.
template <typename L> void narrow(const float* x, size_t n, L* out);
template <> void narrow(const float* x, size_t n, bfloat16_t* out) { random_kernels().to_bf16(x, n, out); }
template <> void narrow(const float* x, size_t n, float16_t* out) { random_kernels().to_f16(x, n, out); }
template <typename L> void widen(const L* x, size_t n, float* out);
template <> void widen(const bfloat16_t* x, size_t n, float* out) { random_kernels().from_bf16(x, n, out); }
template <> void widen(const float16_t* x, size_t n, float* out) { random_kernels().from_f16(x, n, out); }

// 16-bit output: the float32 kernels templated on their output, rounding as they store.
template <> struct Kern<bfloat16_t> {
  static auto uniform() { return random_kernels().uniform_bf16; }
  static auto normal() { return random_kernels().normal_bf16; }
  static auto truncnorm() { return random_kernels().truncnorm_bf16; }
};
template <> struct Kern<float16_t> {
  static auto uniform() { return random_kernels().uniform_f16; }
  static auto normal() { return random_kernels().normal_f16; }
  static auto truncnorm() { return random_kernels().truncnorm_f16; }
};
// The type the samplers compute in: float for the 16-bit floats.
template <typename T> struct Compute { using type = T; };
template <> struct Compute<bfloat16_t> { using type = float; };
template <> struct Compute<float16_t> { using type = float; };

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
  using C = typename Compute<T>::type;
  const C lo = C(low), hi = C(high);
  // The largest C below high: low + (high - low) * u may round up to high for u near 1.
  const C below = std::nextafter(hi, -std::numeric_limits<C>::infinity());
  const UniformParams<C> p{lo, C(hi - lo), std::max(below, lo)};
  run_threaded(Kern<T>::uniform(), s, where, out, p);
}

template <typename T>
void fill_normal(Stream s, const Runs& where, T* out, double mean, double std) {
  using C = typename Compute<T>::type;
  run_threaded(Kern<T>::normal(), s, where, out, NormalParams<C>{C(mean), C(std)});
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
  using C = typename Compute<T>::type;
  if (sizeof(C) == 8 || float_ok) {
    run_threaded(Kern<T>::truncnorm(), s, where, out, cast_params<C>(d));
    return;
  }
  // float32 out of float64 draws, in small stack-sized pieces (16-bit: then rounded again,
  // as the float32 draw is).
  auto k = [](Stream st, uint64_t f, size_t n, T* o, const TruncNormalParams<double>& p) {
    constexpr size_t kPiece = 1024;
    double tmp[kPiece];
    alignas(64) float f32[kPiece];
    for (size_t i = 0; i < n; i += kPiece) {
      const size_t m = std::min(kPiece, n - i);
      random_kernels().truncnorm_f64(st, f + i, m, tmp, p);
      if constexpr (std::is_same_v<C, T>) {
        for (size_t j = 0; j < m; ++j) o[i + j] = T(tmp[j]);
      } else {
        for (size_t j = 0; j < m; ++j) f32[j] = float(tmp[j]);
        narrow(f32, m, o + i);
      }
    }
  };
  run_threaded(k, s, where, out, d);
}

template <typename L>
void convert_to(const float* x, size_t count, L* out) {
  struct Ctx { const float* x; L* out; } ctx{x, out};
  parallel_for(count, 64, [](void* c, size_t b, size_t e) {
    auto* q = static_cast<Ctx*>(c);
    narrow(q->x + b, e - b, q->out + b);
  }, &ctx, true);
}

template <typename L>
void convert_from(const L* x, size_t count, float* out) {
  struct Ctx { const L* x; float* out; } ctx{x, out};
  parallel_for(count, 64, [](void* c, size_t b, size_t e) {
    auto* q = static_cast<Ctx*>(c);
    widen(q->x + b, e - b, q->out + b);
  }, &ctx, true);
}

template <typename L>
void convert_sr(Stream s, uint64_t first, const float* x, size_t count, L* out) {
  struct Ctx { Stream s; uint64_t first; const float* x; L* out; } ctx{s, first, x, out};
  parallel_for(count, 64, [](void* c, size_t b, size_t e) {
    auto* q = static_cast<Ctx*>(c);
    if constexpr (std::is_same_v<L, bfloat16_t>) {
      random_kernels().to_bf16_sr(q->s, q->first + b, q->x + b, e - b, q->out + b);
    } else {
      random_kernels().to_f16_sr(q->s, q->first + b, q->x + b, e - b, q->out + b);
    }
  }, &ctx, true);
}

template void convert_to<bfloat16_t>(const float*, size_t, bfloat16_t*);
template void convert_to<float16_t>(const float*, size_t, float16_t*);
template void convert_from<bfloat16_t>(const bfloat16_t*, size_t, float*);
template void convert_from<float16_t>(const float16_t*, size_t, float*);
template void convert_sr<bfloat16_t>(Stream, uint64_t, const float*, size_t, bfloat16_t*);
template void convert_sr<float16_t>(Stream, uint64_t, const float*, size_t, float16_t*);

template void fill_uniform<float>(Stream, const Runs&, float*, double, double);
template void fill_uniform<double>(Stream, const Runs&, double*, double, double);
template void fill_normal<float>(Stream, const Runs&, float*, double, double);
template void fill_normal<double>(Stream, const Runs&, double*, double, double);
template void fill_truncnorm<float>(Stream, const Runs&, float*, double, double, double, double);
template void fill_truncnorm<double>(Stream, const Runs&, double*, double, double, double, double);
template void fill_uniform<bfloat16_t>(Stream, const Runs&, bfloat16_t*, double, double);
template void fill_uniform<float16_t>(Stream, const Runs&, float16_t*, double, double);
template void fill_normal<bfloat16_t>(Stream, const Runs&, bfloat16_t*, double, double);
template void fill_normal<float16_t>(Stream, const Runs&, float16_t*, double, double);
template void fill_truncnorm<bfloat16_t>(Stream, const Runs&, bfloat16_t*, double, double, double, double);
template void fill_truncnorm<float16_t>(Stream, const Runs&, float16_t*, double, double, double, double);

}  // namespace regtune
