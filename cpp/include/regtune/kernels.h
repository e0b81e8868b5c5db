// regtune's kernel interface: plain pointers and counts, no SIMD types.
//
// Every sampler is a pure function of (key, stream, element index): element i of a fill that
// starts at `first` is element first + i of the stream, whatever the thread count, chunking or
// instruction set. The element -> Philox-word mapping (the stream-stability contract):
//   bits            element i  <- word i
//   float32 samplers element i <- word i          (4 elements per Philox block)
//   float64 samplers element i <- words 2i, 2i+1  (2 elements per Philox block)
//   normal          Box-Muller on the element pairs (4j, 4j+1), (4j+2, 4j+3) of block j (f32),
//                   or (2j, 2j+1) of block j (f64): the first element of a pair takes the radius
//                   from the pair's first word(s), the angle from the second.
// Word w of the stream is word (w % 4) of Philox4x32-10 applied to the counter
// (j & 0xffffffff, j >> 32, stream & 0xffffffff, stream >> 32), j = w / 4, under the key
// (key & 0xffffffff, key >> 32).
#pragma once

#include <cstddef>
#include <cstdint>

#include "regtune/threads.h"  // the drivers below run on regtune's pool

namespace regtune {

struct Stream {
  uint64_t key;
  uint64_t stream;
};

// 16-bit floating-point storage: the bits of a bfloat16 (ml_dtypes.bfloat16: float32's sign and
// exponent, 7 mantissa bits) or of an IEEE binary16 (numpy.float16). Kernels compute in float32
// and convert on load (exactly) and store (round to nearest even, or stochastically).
struct bfloat16_t { uint16_t bits; };
struct float16_t { uint16_t bits; };

// out[i] = low + (high - low) * u_i, u_i uniform on [0, 1); results >= high are replaced by
// `below_high` (the largest value < high), so `high` is never returned.
template <typename T>
struct UniformParams {
  T low, scale, below_high;
};

template <typename T>
struct NormalParams {
  T mean, std;
};

// Inverse-CDF truncated normal on [a, b] (absolute): with u uniform on (0, 1),
//   p = p_lo + u * mass,  q = q_hi + (1 - u) * mass   (p + q = 1, each accurate on its own)
//   z = p < 1/2 ? ndtri(p) : -ndtri(q),  out = clamp(mean + std * z, a, b)
// where p_lo = Phi(alpha), q_hi = 1 - Phi(beta), mass = Phi(beta) - Phi(alpha).
template <typename T>
struct TruncNormalParams {
  T mean, std, a, b, p_lo, q_hi, mass;
};

// One instruction set's sampler kernels. Each fills out[0, count) with elements [first, first + count)
// on the calling thread; threading lives in the drivers below.
struct RandomKernels {
  const char* name;
  // Philox4x32-10 of counters (block .. block + nblocks - 1, stream), 4 words each: any 64-bit
  // block index, for checks against Random123's known answers.
  void (*blocks)(Stream, uint64_t block, size_t nblocks, uint32_t* out);
  void (*bits)(Stream, uint64_t first, size_t count, uint32_t* out);
  void (*uniform_f32)(Stream, uint64_t first, size_t count, float* out, const UniformParams<float>&);
  void (*uniform_f64)(Stream, uint64_t first, size_t count, double* out, const UniformParams<double>&);
  void (*normal_f32)(Stream, uint64_t first, size_t count, float* out, const NormalParams<float>&);
  void (*normal_f64)(Stream, uint64_t first, size_t count, double* out, const NormalParams<double>&);
  void (*truncnorm_f32)(Stream, uint64_t first, size_t count, float* out, const TruncNormalParams<float>&);
  void (*truncnorm_f64)(Stream, uint64_t first, size_t count, double* out, const TruncNormalParams<double>&);
  // float32 -> bfloat16 / IEEE half rounded to nearest even (NaN quieted), and back (exact),
  // identical bits on every path; the _sr forms round stochastically with word first + i of
  // the stream for x[i] (see simd.h).
  void (*to_bf16)(const float* x, size_t count, bfloat16_t* out);
  void (*to_f16)(const float* x, size_t count, float16_t* out);
  void (*from_bf16)(const bfloat16_t* x, size_t count, float* out);
  void (*from_f16)(const float16_t* x, size_t count, float* out);
  void (*to_bf16_sr)(Stream, uint64_t first, const float* x, size_t count, bfloat16_t* out);
  void (*to_f16_sr)(Stream, uint64_t first, const float* x, size_t count, float16_t* out);
  // The float32 samplers writing 16-bit floats: each float32 value rounded to nearest even as
  // it is stored (the same bits as the float32 kernel followed by to_bf16 / to_f16).
  void (*uniform_bf16)(Stream, uint64_t first, size_t count, bfloat16_t* out, const UniformParams<float>&);
  void (*uniform_f16)(Stream, uint64_t first, size_t count, float16_t* out, const UniformParams<float>&);
  void (*normal_bf16)(Stream, uint64_t first, size_t count, bfloat16_t* out, const NormalParams<float>&);
  void (*normal_f16)(Stream, uint64_t first, size_t count, float16_t* out, const NormalParams<float>&);
  void (*truncnorm_bf16)(Stream, uint64_t first, size_t count, bfloat16_t* out, const TruncNormalParams<float>&);
  void (*truncnorm_f16)(Stream, uint64_t first, size_t count, float16_t* out, const TruncNormalParams<float>&);
};

// ---- dispatch (dispatch.cpp) -------------------------------------------------------------
enum class Simd { scalar = 0, avx2 = 1, avx512 = 2 };

const char* simd_name(Simd s);
bool simd_compiled(Simd s);   // this build has kernels for s
bool simd_supported(Simd s);  // compiled, and this CPU and OS run it
Simd best_simd();
// Select the kernels used from now on. Throws std::invalid_argument when unsupported.
void select_simd(Simd s);
Simd current_simd();
const RandomKernels& random_kernels();  // the sampler kernels of the selected path

// ---- drivers (random.cpp): threaded fills over the selected kernels ----------------------
// Where a fill's elements come from: out[r * run_len + j] is stream element firsts[r] + j, for
// r < runs. A contiguous slice of the stream is one run; a column block of a larger array is
// one run per row (regtune.dask fills such a chunk in one call).
struct Runs {
  const uint64_t* firsts;
  size_t runs;
  size_t run_len;
  size_t size() const { return runs * run_len; }
};
// T is float, double, or a 16-bit float: a 16-bit draw is the float32 draw of the same stream
// elements rounded to nearest even (uniform's values may then round up to `high`).
// Parameters arrive in double and are checked by the caller (low < high with a finite width,
// std > 0, a < b with a non-negligible probability between them).
void fill_bits(Stream s, const Runs& where, uint32_t* out);
template <typename T>
void fill_uniform(Stream s, const Runs& where, T* out, double low, double high);
template <typename T>
void fill_normal(Stream s, const Runs& where, T* out, double mean, double std);
// The kernel parameters for a truncated normal on [a, b]: tail probabilities and mass in double.
TruncNormalParams<double> truncnorm_params(double mean, double std, double a, double b);
// float32 output whose cut-offs lie beyond float32's reach (a tail probability below 1e-30, or
// less than 1/256 of the mass between them) is computed by the float64 kernel and rounded, so
// the result stays accurate; the choice depends on the parameters alone.
template <typename T>
void fill_truncnorm(Stream s, const Runs& where, T* out, double mean, double std, double a, double b);
// Threaded conversions between float32 and the 16-bit floats (L = bfloat16_t or float16_t).
// convert_sr rounds x[i] stochastically with word first + i of stream s.
template <typename L>
void convert_to(const float* x, size_t count, L* out);
template <typename L>
void convert_from(const L* x, size_t count, float* out);
template <typename L>
void convert_sr(Stream s, uint64_t first, const float* x, size_t count, L* out);
// Copies n bytes with all threads: the yardstick for memory bandwidth in the benchmarks.
void parallel_copy(void* dst, const void* src, size_t nbytes);
// out[0, count) = value, with all threads (init.constant, zeros, ones); T is float, double, or
// uint16_t for the bits of a 16-bit float.
template <typename T>
void parallel_fill(T* out, size_t count, T value);

}  // namespace regtune
