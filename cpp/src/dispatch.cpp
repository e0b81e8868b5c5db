// Chooses one kernel table at import: the best the CPU runs, or the one REGTUNE_SIMD names.
#include <atomic>
#include <stdexcept>
#include <string>

#include "dispatch.h"

#if defined(__x86_64__) || defined(_M_X64)
#define REGTUNE_X86 1
#include <cpuid.h>
#else
#define REGTUNE_X86 0
#endif

namespace regtune {
REGTUNE_DECLARE_MAKERS(RandomKernels, random_kernels)

namespace {

#if REGTUNE_X86
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

// What the CPU has *and* the OS saves on context switch (XCR0), as the Intel SDM requires.
struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 + FMA + F16C (every AVX2 CPU has F16C; the kernels convert halves with it)
  bool avx512 = false;    // F + DQ + BW + VL
  CpuFeatures() {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!(osxsave && avx)) return;
    const uint64_t xcr0 = xgetbv0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6, zmm_state = (xcr0 & 0xE6) == 0xE6;
    if (__get_cpuid_max(0, nullptr) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = b & (1u << 5);
    const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    avx2_fma = ymm_state && avx2 && fma && f16c;
    avx512 = avx2_fma && zmm_state && f && dq && bw && vl;
  }
};
#endif

std::atomic<int> g_current{-1};

}  // namespace

const char* simd_name(Simd s) {
  switch (s) {
    case Simd::scalar: return "scalar";
    case Simd::avx2: return "avx2";
    case Simd::avx512: return "avx512";
  }
  return "?";
}

bool simd_compiled(Simd s) {
  return s == Simd::scalar || REGTUNE_HAVE_SIMD_TARGETS;
}

bool simd_supported(Simd s) {
  if (!simd_compiled(s)) return false;
#if REGTUNE_X86
  static const CpuFeatures cpu;  // baseline code: safe to run on any x86-64
  if (s == Simd::avx2) return cpu.avx2_fma;
  if (s == Simd::avx512) return cpu.avx512;
#endif
  return s == Simd::scalar;
}

Simd best_simd() {
  if (simd_supported(Simd::avx512)) return Simd::avx512;
  if (simd_supported(Simd::avx2)) return Simd::avx2;
  return Simd::scalar;
}

void select_simd(Simd s) {
  if (!simd_compiled(s)) {
    throw std::invalid_argument(std::string("SIMD path '") + simd_name(s) +
                                "' is not compiled into this build of regtune (built for " +
                                (REGTUNE_HAVE_SIMD_TARGETS ? "scalar, avx2, avx512" : "scalar only") + ")");
  }
  if (!simd_supported(s)) {
    throw std::invalid_argument(std::string("SIMD path '") + simd_name(s) +
                                "' is not supported by this CPU; the best it runs is '" +
                                simd_name(best_simd()) + "'");
  }
  g_current.store(int(s));
}

Simd current_simd() {
  if (g_current.load() < 0) select_simd(best_simd());
  return Simd(g_current.load());
}

const RandomKernels& random_kernels() {
  static PerTarget<RandomKernels> tables(REGTUNE_MAKERS(random_kernels));
  return tables.get();
}

}  // namespace regtune
