// The sampler kernels, written once and compiled once per instruction set (see simd.h).
//
// Nothing here has static storage with a dynamic initializer: this file is compiled with
// AVX2/AVX-512 flags and its code must not run before the CPU has been checked.
#include <algorithm>
#include <cstring>

#include "regtune/kernels.h"
#include "philox.h"

namespace regtune {
namespace REGTUNE_NS {
namespace {

using namespace simd;

// ------------------------------------------------------------------------------------ math
// Constants broadcast to the lane type of V.
template <typename V> RT_INLINE V cst(double c);
template <> RT_INLINE F32 cst<F32>(double c) { return set1(float(c)); }
template <> RT_INLINE F64 cst<F64>(double c) { return set1(c); }

// c[0] + x * (c[1] + x * (... + x * c[N-1])), by Horner with fused multiply-adds.
template <typename V, size_t N>
RT_INLINE V horner(V x, const double (&c)[N]) {
  V acc = cst<V>(c[N - 1]);
  for (size_t i = N - 1; i-- > 0;) acc = fma(acc, x, cst<V>(c[i]));
  return acc;
}

// log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1] as f - s * (f - R(s^2)), s = f / (2 + f):
// the series of 2 atanh(s) (as fdlibm's e_log.c); R's coefficients per precision below.
template <typename V, size_t N>
RT_INLINE V log1p_reduced(V f, const double (&c)[N]) {
  const V s = div(f, add(cst<V>(2.0), f));
  const V z = mul(s, s);
  const V r = mul(z, horner(z, c));
  return sub(f, mul(s, sub(f, r)));
}

// log(1 + f) - f for f in [sqrt(1/2) - 1, sqrt(2) - 1], float32: Cephes' logf polynomial (no
// division), -f^2/2 + f^3 P(f). The end-to-end Box-Muller tests bound its error.
RT_INLINE F32 log1p_minus_f(F32 f) {
  static constexpr double kP[] = {3.3333331174e-1, -2.4999993993e-1, 2.0000714765e-1,
                                  -1.6668057665e-1, 1.4249322787e-1, -1.2420140846e-1,
                                  1.1676998740e-1, -1.1514610310e-1, 7.0376836292e-2};
  const F32 z = mul(f, f);
  return fma(z, cst<F32>(-0.5), mul(mul(z, f), horner(f, kP)));
}

// log x = e log 2 + log(1 + f) from the reduction x = (1 + f) 2^e (log 2 split in two parts,
// Cephes' logf order). With e = 0 it is f + log1p_minus_f(f) = log(1 + f), exactly as rounded.
RT_INLINE F32 log_from(F32 e, F32 f) {
  return fma(e, cst<F32>(0.693359375), add(f, fma(e, cst<F32>(-2.12194440e-4), log1p_minus_f(f))));
}

// The reduction of a positive normal float32 x = m 2^e, m in [sqrt(1/2), sqrt(2)), f = m - 1.
RT_INLINE void log_reduce(F32 x, F32& e, F32& f) {
  // Shift the exponent so the mantissa lands in [sqrt(1/2), sqrt(2)).
  const U32 b = add(bits(x), set1(uint32_t(0x3F800000u - 0x3F3504F3u)));
  e = to_f32(sub(shr<23>(b), set1(127u)));
  f = sub(from_bits(add(band(b, set1(0x007FFFFFu)), set1(0x3F3504F3u))), cst<F32>(1.0));
}

// Natural log for positive normal float32.
RT_INLINE F32 log(F32 x) {
  F32 e, f;
  log_reduce(x, e, f);
  return log_from(e, f);
}

// Natural log for positive normal float64. Lanes: float64. Max error about 1 ulp.
// R: fdlibm's minimax Lg1..Lg7 for 2 atanh(s) on |s| < 0.1716.
RT_INLINE F64 log(F64 x) {
  static constexpr double kR[] = {6.666666666666735130e-01, 3.999999999940941908e-01,
                                  2.857142874366239149e-01, 2.222219843214978396e-01,
                                  1.818357216161805012e-01, 1.531383769920937332e-01,
                                  1.479819860511658591e-01};
  const U64 b = add(bits(x), set1(uint64_t(0x3FF0000000000000ull - 0x3FE6A09E667F3BCDull)));
  const U64 ei = sub(shr<52>(b), set1(uint64_t(1023)));
  // int64 -> double for |e| < 2^51, exactly, on targets without a 64-bit integer conversion.
  const F64 e = sub(from_bits(add(ei, set1(uint64_t(0x4338000000000000ull)))), cst<F64>(6755399441055744.0));
  const F64 m = from_bits(add(band(b, set1(uint64_t(0x000FFFFFFFFFFFFFull))), set1(uint64_t(0x3FE6A09E667F3BCDull))));
  const F64 lm = log1p_reduced(sub(m, cst<F64>(1.0)), kR);
  return fma(e, cst<F64>(6.93147180369123816490e-01), fma(e, cst<F64>(1.90821492927058770002e-10), lm));
}

// sin and cos of x in [-pi/4, pi/4]. Cephes' minimax polynomials: float32 max error
// about 1 ulp (sinf.c/cosf.c), float64 about 1 ulp (sin.c).
RT_INLINE void sincos_reduced(F32 x, F32& s, F32& c) {
  static constexpr double kS[] = {-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4};
  static constexpr double kC[] = {4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5};
  const F32 z = mul(x, x);
  s = fma(mul(z, x), horner(z, kS), x);
  c = fma(mul(z, z), horner(z, kC), fma(z, cst<F32>(-0.5), cst<F32>(1.0)));
}
RT_INLINE void sincos_reduced(F64 x, F64& s, F64& c) {
  static constexpr double kS[] = {-1.66666666666666307295e-1, 8.33333333332211858878e-3,
                                  -1.98412698295895385996e-4, 2.75573136213857245213e-6,
                                  -2.50507477628578072866e-8, 1.58962301576546568060e-10};
  static constexpr double kC[] = {4.16666666666665929218e-2, -1.38888888888730564116e-3,
                                  2.48015872888517045348e-5, -2.75573141792967388112e-7,
                                  2.08757008419747316778e-9, -1.13585365213876817300e-11};
  const F64 z = mul(x, x);
  s = fma(mul(z, x), horner(z, kS), x);
  c = fma(mul(z, z), horner(z, kC), fma(z, cst<F64>(-0.5), cst<F64>(1.0)));
}

// cos and sin of 2 pi v / 2^24 for a 24-bit integer v: the quadrant n and the remainder come
// from integer arithmetic, so the reduction is exact.
RT_INLINE void sincos_turns24(U32 v, F32& sin_out, F32& cos_out) {
  const U32 n = shr<22>(add(v, set1(1u << 21)));                       // nearest quadrant, 0..4
  const F32 x = mul(to_f32(sub(v, shl<22>(n))), cst<F32>(1.5707963267948966 / 4194304.0));
  F32 s, c;
  sincos_reduced(x, s, c);
  const M32 odd = test_bit(n, 1u);
  const F32 cs = select(odd, s, c), sn = select(odd, c, s);
  // cos is negative in quadrants 1 and 2, sin in quadrants 2 and 3.
  cos_out = from_bits(bxor(bits(cs), shl<30>(band(add(n, set1(1u)), set1(2u)))));
  sin_out = from_bits(bxor(bits(sn), shl<30>(band(n, set1(2u)))));
}

// The same for a 53-bit integer v (turns = v / 2^53).
RT_INLINE void sincos_turns53(U64 v, F64& sin_out, F64& cos_out) {
  const U64 n = shr<51>(add(v, set1(uint64_t(1) << 50)));
  const U64 r = sub(v, shl<51>(n));  // in [-2^50, 2^50) as int64
  const F64 rd = sub(from_bits(add(r, set1(uint64_t(0x4338000000000000ull)))), cst<F64>(6755399441055744.0));
  const F64 x = mul(rd, cst<F64>(1.5707963267948966 / 2251799813685248.0));
  F64 s, c;
  sincos_reduced(x, s, c);
  const M64 odd = test_bit(n, uint64_t(1));
  const F64 cs = select(odd, s, c), sn = select(odd, c, s);
  cos_out = from_bits(bxor(bits(cs), shl<62>(band(add(n, set1(uint64_t(1))), set1(uint64_t(2))))));
  sin_out = from_bits(bxor(bits(sn), shl<62>(band(n, set1(uint64_t(2))))));
}

// Wichura's AS 241: the standard normal quantile for a lower-tail probability t in (0, 1/2],
// as a rational function in three regions. float32 uses PPND7 (relative error about 1e-7),
// float64 PPND16 (about 1e-16).
struct Ppnd7 {
  static constexpr double a[] = {3.3871327179e+00, 5.0434271938e+01, 1.5929113202e+02, 5.9109374720e+01};
  static constexpr double b[] = {1.0, 1.7895169469e+01, 7.8757757664e+01, 6.7187563600e+01};
  static constexpr double c[] = {1.4234372777e+00, 2.7568153900e+00, 1.3067284816e+00, 1.7023821103e-01};
  static constexpr double d[] = {1.0, 7.3700164250e-01, 1.2021132975e-01};
  static constexpr double e[] = {6.6579051150e+00, 3.0812263860e+00, 4.2868294337e-01, 1.7337203997e-02};
  static constexpr double f[] = {1.0, 2.4197894225e-01, 1.2258202635e-02};
};
struct Ppnd16 {
  static constexpr double a[] = {3.3871328727963666080e+00, 1.3314166789178437745e+02, 1.9715909503065514427e+03,
                                 1.3731693765509461125e+04, 4.5921953931549871457e+04, 6.7265770927008700853e+04,
                                 3.3430575583588128105e+04, 2.5090809287301226727e+03};
  static constexpr double b[] = {1.0, 4.2313330701600911252e+01, 6.8718700749205790830e+02, 5.3941960214247511077e+03,
                                 2.1213794301586595867e+04, 3.9307895800092710610e+04, 2.8729085735721942674e+04,
                                 5.2264952788528545610e+03};
  static constexpr double c[] = {1.42343711074968357734e+00, 4.63033784615654529590e+00, 5.76949722146069140550e+00,
                                 3.64784832476320460504e+00, 1.27045825245236838258e+00, 2.41780725177450611770e-01,
                                 2.27238449892691845833e-02, 7.74545014278341407640e-04};
  static constexpr double d[] = {1.0, 2.05319162663775882187e+00, 1.67638483018380384940e+00, 6.89767334985100004550e-01,
                                 1.48103976427480074590e-01, 1.51986665636164571966e-02, 5.47593808499534494600e-04,
                                 1.05075007164441684324e-09};
  static constexpr double e[] = {6.65790464350110377720e+00, 5.46378491116411436990e+00, 1.78482653991729133580e+00,
                                 2.96560571828504891230e-01, 2.65321895265761230930e-02, 1.24266094738807843860e-03,
                                 2.71155556874348757815e-05, 2.01033439929228813265e-07};
  static constexpr double f[] = {1.0, 5.99832206555887937690e-01, 1.36929880922735805310e-01, 1.48753612908506148525e-02,
                                 7.86869131145613259100e-04, 1.84631831751005468180e-05, 1.42151175831644588870e-07,
                                 2.04426310338993978564e-15};
};

// Quantile of t in (0, 1/2]: returns z <= 0 with Phi(z) = t. The regions a lane does not need
// are skipped when no lane of the vector needs them.
template <typename C, typename V>
RT_INLINE V ndtri_lower(V t) {
  // Numerator and denominator are chosen lane by lane first, so each lane pays one division.
  const V qq = sub(t, cst<V>(0.5));
  const V rc = fma(qq, neg(qq), cst<V>(0.180625));
  V num = mul(qq, horner(rc, C::a));
  V den = horner(rc, C::b);
  const auto tail = lt(t, cst<V>(0.075));  // |t - 1/2| > 0.425
  if (any(tail)) {
    // Lanes outside the tail take t = 1/2 here so the log stays finite; their result is unused.
    const V r = sqrt(neg(log(select(tail, t, cst<V>(0.5)))));
    const V r1 = sub(r, cst<V>(1.6));
    V nt = horner(r1, C::c), dt = horner(r1, C::d);
    const auto far = lt(cst<V>(5.0), r);
    if (any(far)) {
      const V r2 = sub(r, cst<V>(5.0));
      nt = select(far, horner(r2, C::e), nt);
      dt = select(far, horner(r2, C::f), dt);
    }
    num = select(tail, neg(nt), num);
    den = select(tail, dt, den);
  }
  return div(num, den);
}

// ------------------------------------------------------------------------------- the kernels
void blocks_kernel(Stream s, uint64_t block, size_t nblocks, uint32_t* out) {
  for_blocks<uint32_t, 4>(s, block, 0, 4 * nblocks, out, [](const Words& w, uint32_t* dst) {
    store_interleave4(dst, w.w0, w.w1, w.w2, w.w3);
  });
}

void bits_kernel(Stream s, uint64_t first, size_t count, uint32_t* out) {
  for_blocks<uint32_t, 4>(s, first / 4, int(first % 4), count, out, [](const Words& w, uint32_t* dst) {
    store_interleave4(dst, w.w0, w.w1, w.w2, w.w3);
  });
}

// float32 uniform from a 24-bit integer: u = (w >> 8) / 2^24 in [0, 1).
RT_INLINE F32 unit24(U32 w) { return mul(to_f32(shr<8>(w)), cst<F32>(1.0 / 16777216.0)); }

// The float32 samplers are templated on their output O: float, or a 16-bit float whose store
// rounds the float32 values to nearest even as they are written (no float32 buffer).
template <typename O>
void uniform_f32_kernel(Stream s, uint64_t first, size_t count, O* out, const UniformParams<float>& p) {
  const F32 low = set1(p.low), scale = set1(p.scale), top = set1(p.below_high);
  for_blocks<O, 4>(s, first / 4, int(first % 4), count, out, [&](const Words& w, O* dst) {
    auto f = [&](U32 x) { return min(fma(unit24(x), scale, low), top); };
    store_interleave4(dst, f(w.w0), f(w.w1), f(w.w2), f(w.w3));
  });
}

// float64 uniform from the top 52 bits of a 64-bit word: u = k / 2^52 in [0, 1), exactly.
RT_INLINE F64 unit52(U64 w) {
  return sub(from_bits(bor(shr<12>(w), set1(uint64_t(0x3FF0000000000000ull)))), cst<F64>(1.0));
}

void uniform_f64_kernel(Stream s, uint64_t first, size_t count, double* out, const UniformParams<double>& p) {
  const F64 low = set1(p.low), scale = set1(p.scale), top = set1(p.below_high);
  for_blocks<double, 2>(s, first / 2, int(first % 2), count, out, [&](const Words& w, double* dst) {
    for (int h = 0; h < kHalves; ++h) {
      const F64 a = min(fma(unit52(combine64(w.w0, w.w1, h)), scale, low), top);
      const F64 b = min(fma(unit52(combine64(w.w2, w.w3, h)), scale, low), top);
      store_interleave2(dst + 2 * kLanes64 * h, a, b);
    }
  });
}

// Box-Muller, float32: radius from a 31-bit uniform u = (k + 1/2) / 2^31 in (0, 1) (|z| <= 6.66),
// angle from 24 bits. Near u = 1, where the radius is small, float(k) would round away the low
// bits of 1 - u; there -log u is taken as -log1p(-t) with t = 1 - u from the integer
// 2^31 - 1 - k, which is exact, so small radii keep float32's relative precision.
RT_INLINE void box_muller(U32 wr, U32 wa, F32& z0, F32& z1) {
  const U32 k = shr<1>(wr);
  const F32 u = fma(to_f32(k), cst<F32>(1.0 / 2147483648.0), cst<F32>(1.0 / 4294967296.0));
  const F32 t = fma(to_f32(sub(set1(0x7FFFFFFFu), k)), cst<F32>(1.0 / 2147483648.0), cst<F32>(1.0 / 4294967296.0));
  // One polynomial for both: where t < 1/4, log u = log1p(-t) = log_from(0, -t), which is
  // f + P(f) with f = -t: the same value, rounded the same way, as P(-t) - t.
  F32 e, f;
  log_reduce(u, e, f);
  const M32 near_one = lt(t, cst<F32>(0.25));
  const F32 log_u = log_from(select(near_one, cst<F32>(0.0), e), select(near_one, neg(t), f));
  const F32 r = sqrt(mul(cst<F32>(-2.0), log_u));
  F32 s, c;
  sincos_turns24(shr<8>(wa), s, c);
  z0 = mul(r, c);
  z1 = mul(r, s);
}

// Philox groups per call for the float32 normal: on AVX2, 8 groups (two philox() calls' worth)
// put more Box-Muller chains side by side for the out-of-order core, at the cost of spilling
// Philox state: one thread in L1 on Zen 4, 1.27 -> 1.20 ns per element (1 and 2 groups: 1.62
// and 1.40). Elsewhere the default.
constexpr int kNormalGroups = REGTUNE_TARGET == REGTUNE_TARGET_AVX2 ? 2 * kSteps : kSteps;

template <typename O>
void normal_f32_kernel(Stream s, uint64_t first, size_t count, O* out, const NormalParams<float>& p) {
  const F32 mean = set1(p.mean), sd = set1(p.std);
  for_blocks<O, 4, kNormalGroups>(s, first / 4, int(first % 4), count, out, [&](const Words& w, O* dst) {
    F32 a, b, c, d;
    box_muller(w.w0, w.w1, a, b);
    box_muller(w.w2, w.w3, c, d);
    store_interleave4(dst, fma(a, sd, mean), fma(b, sd, mean), fma(c, sd, mean), fma(d, sd, mean));
  });
}

// Box-Muller, float64: radius from a 53-bit uniform (2k + 1) / 2^53 in (0, 1) (|z| <= 8.57),
// angle from 53 bits.
void normal_f64_kernel(Stream s, uint64_t first, size_t count, double* out, const NormalParams<double>& p) {
  const F64 mean = set1(p.mean), sd = set1(p.std);
  for_blocks<double, 2>(s, first / 2, int(first % 2), count, out, [&](const Words& w, double* dst) {
    for (int h = 0; h < kHalves; ++h) {
      const F64 u = add(unit52(combine64(w.w0, w.w1, h)), cst<F64>(1.0 / 9007199254740992.0));
      const F64 r = sqrt(mul(cst<F64>(-2.0), log(u)));
      F64 sn, cs;
      sincos_turns53(shr<11>(combine64(w.w2, w.w3, h)), sn, cs);
      store_interleave2(dst + 2 * kLanes64 * h, fma(mul(r, cs), sd, mean), fma(mul(r, sn), sd, mean));
    }
  });
}

// Inverse-CDF truncated normal for uniform u in (0, 1) and um = 1 - u (both exact).
template <typename C, typename V, typename T>
RT_INLINE V truncnorm_map(V u, V um, const TruncNormalParams<T>& p) {
  const V mass = cst<V>(p.mass);
  const V lower = fma(u, mass, cst<V>(p.p_lo));   // P(Z <= z)
  const V upper = fma(um, mass, cst<V>(p.q_hi));  // P(Z > z)
  const auto left = lt(lower, upper);
  const V z0 = ndtri_lower<C>(select(left, lower, upper));
  const V z = select(left, z0, neg(z0));
  return min(max(fma(z, cst<V>(p.std), cst<V>(p.mean)), cst<V>(p.a)), cst<V>(p.b));
}

template <typename O>
void truncnorm_f32_kernel(Stream s, uint64_t first, size_t count, O* out, const TruncNormalParams<float>& p) {
  for_blocks<O, 4>(s, first / 4, int(first % 4), count, out, [&](const Words& w, O* dst) {
    // u = (2k + 1) / 2^24 for a 23-bit k: u and 1 - u are both exact in float32.
    auto f = [&](U32 x) {
      const F32 u = fma(to_f32(shr<9>(x)), cst<F32>(2.0 / 16777216.0), cst<F32>(1.0 / 16777216.0));
      return truncnorm_map<Ppnd7>(u, sub(cst<F32>(1.0), u), p);
    };
    store_interleave4(dst, f(w.w0), f(w.w1), f(w.w2), f(w.w3));
  });
}

void truncnorm_f64_kernel(Stream s, uint64_t first, size_t count, double* out, const TruncNormalParams<double>& p) {
  for_blocks<double, 2>(s, first / 2, int(first % 2), count, out, [&](const Words& w, double* dst) {
    // u = (2k + 1) / 2^53 for a 52-bit k: u and 1 - u are both exact in float64.
    auto f = [&](U64 x) {
      const F64 u = add(unit52(x), cst<F64>(1.0 / 9007199254740992.0));
      return truncnorm_map<Ppnd16>(u, sub(cst<F64>(1.0), u), p);
    };
    for (int h = 0; h < kHalves; ++h) {
      store_interleave2(dst + 2 * kLanes64 * h, f(combine64(w.w0, w.w1, h)), f(combine64(w.w2, w.w3, h)));
    }
  });
}

// ------------------------------------------------------------------------ 16-bit floats
// float32 -> bfloat16 / half rounded to nearest even, and back (exact).
template <typename L>
void narrow_kernel(const float* x, size_t n, L* out) {
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(out + i, load(x + i));
  if (i < n) store_partial(out + i, load_partial(x + i, n - i), n - i);
}

template <typename L>
void widen_kernel(const L* x, size_t n, float* out) {
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(out + i, load(x + i));
  if (i < n) store_partial(out + i, load_partial(x + i, n - i), n - i);
}

// Stochastic rounding of x[i] with word first + i of the stream (see simd.h's round_sr).
template <typename L>
void narrow_sr_kernel(Stream s, uint64_t first, const float* x, size_t n, L* out) {
  constexpr size_t kPiece = 256;
  alignas(64) uint32_t w[kPiece];
  for (size_t c = 0; c < n; c += kPiece) {
    const size_t m = std::min(kPiece, n - c);
    bits_kernel(s, first + c, m, w);
    size_t i = 0;
    for (; i + kLanes <= m; i += kLanes) store_h16(raw16(out + c + i), round_sr(out, load(x + c + i), load(w + i)));
    if (i < m) {
      alignas(64) uint32_t wt[kLanes] = {};
      std::memcpy(wt, w + i, (m - i) * 4);
      store_h16_partial(raw16(out + c + i), round_sr(out, load_partial(x + c + i, m - i), load(wt)), m - i);
    }
  }
}

}  // namespace

RandomKernels random_kernels() {
  RandomKernels k{REGTUNE_NS_NAME,           blocks_kernel,     bits_kernel,
                  uniform_f32_kernel<float>, uniform_f64_kernel, normal_f32_kernel<float>,
                  normal_f64_kernel,         truncnorm_f32_kernel<float>, truncnorm_f64_kernel};
  k.uniform_bf16 = uniform_f32_kernel<bfloat16_t>;
  k.uniform_f16 = uniform_f32_kernel<float16_t>;
  k.normal_bf16 = normal_f32_kernel<bfloat16_t>;
  k.normal_f16 = normal_f32_kernel<float16_t>;
  k.truncnorm_bf16 = truncnorm_f32_kernel<bfloat16_t>;
  k.truncnorm_f16 = truncnorm_f32_kernel<float16_t>;
  k.to_bf16 = narrow_kernel<bfloat16_t>;
  k.to_f16 = narrow_kernel<float16_t>;
  k.from_bf16 = widen_kernel<bfloat16_t>;
  k.from_f16 = widen_kernel<float16_t>;
  k.to_bf16_sr = narrow_sr_kernel<bfloat16_t>;
  k.to_f16_sr = narrow_sr_kernel<float16_t>;
  return k;
}

}  // namespace REGTUNE_NS
}  // namespace regtune
