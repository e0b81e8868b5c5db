// Static partitioning over OpenMP threads, or the calling thread alone without OpenMP.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>

#include "regtune/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace regtune {
namespace {
// 0: follow OpenMP (omp_get_max_threads: OMP_NUM_THREADS, or omp_set_num_threads as
// threadpoolctl calls it, read at each call); > 0: set by set_num_threads and fixed from then on.
std::atomic<int> g_threads{0};
}  // namespace

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int get_num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1");
  g_threads.store(n);
}

void parallel_for(size_t n, size_t grain, void (*body)(void*, size_t, size_t), void* ctx) {
  if (n == 0) return;
  const size_t threads = size_t(get_num_threads());
  if (threads <= 1 || n < kSerialThreshold) {
    body(ctx, 0, n);
    return;
  }
  const size_t units = (n + grain - 1) / grain;
  const size_t parts = std::min(threads, units);
  const size_t per = (units + parts - 1) / parts * grain;  // elements per thread, a grain multiple
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(int(parts))
  for (long t = 0; t < long(parts); ++t) {
    const size_t begin = size_t(t) * per, end = std::min(n, begin + per);
    if (begin < end) body(ctx, begin, end);
  }
#else
  (void)per;
  body(ctx, 0, n);
#endif
}

void parallel_copy(void* dst, const void* src, size_t nbytes) {
  struct Ctx { char* d; const char* s; } ctx{static_cast<char*>(dst), static_cast<const char*>(src)};
  parallel_for(nbytes, 4096, [](void* c, size_t b, size_t e) {
    auto* x = static_cast<Ctx*>(c);
    std::memcpy(x->d + b, x->s + b, e - b);
  }, &ctx);
}

template <typename T>
void parallel_fill(T* out, size_t count, T value) {
  struct Ctx { T* o; T v; } ctx{out, value};
  parallel_for(count, 64 / sizeof(T), [](void* c, size_t b, size_t e) {
    auto* x = static_cast<Ctx*>(c);
    std::fill(x->o + b, x->o + e, x->v);
  }, &ctx);
}
template void parallel_fill<float>(float*, size_t, float);
template void parallel_fill<double>(double*, size_t, double);

}  // namespace regtune
