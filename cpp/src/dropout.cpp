// Threaded dropout drivers over the selected kernels. Threads own whole 64-element groups,
// so each writes whole mask words and whole cache lines of y, and element i's result depends
// on (stream, first + i) alone, whatever the thread count.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "dispatch.h"
#include "regtune/dropout.h"

namespace regtune {
REGTUNE_DECLARE_MAKERS(DropoutKernels, dropout_kernels)

namespace {

constexpr size_t kGrain = 64;  // elements: one 64-bit mask word
constexpr uint64_t kKeepNone = uint64_t(1) << 32;

const DropoutKernels& kernels() {
  static PerTarget<DropoutKernels> t(REGTUNE_MAKERS(dropout_kernels));
  return t.get();
}

template <typename T> struct Kern;
template <> struct Kern<float> {
  static auto forward() { return kernels().forward_f32; }
  static auto apply() { return kernels().apply_f32; }
  static auto fill() { return kernels().fill_f32; }
};
template <> struct Kern<double> {
  static auto forward() { return kernels().forward_f64; }
  static auto apply() { return kernels().apply_f64; }
  static auto fill() { return kernels().fill_f64; }
};
template <> struct Kern<bfloat16_t> {
  static auto forward() { return kernels().forward_bf16; }
  static auto apply() { return kernels().apply_bf16; }
  static auto fill() { return kernels().fill_bf16; }
};
template <> struct Kern<float16_t> {
  static auto forward() { return kernels().forward_f16; }
  static auto apply() { return kernels().apply_f16; }
  static auto fill() { return kernels().fill_f16; }
};
template <typename T>
using Compute = typename DropoutCompute<T>::type;

// `drop` as stored in T: rounded to nearest even for the 16-bit floats, as the kernels store.
template <typename T>
T stored(Compute<T> v) {
  if constexpr (std::is_same_v<T, Compute<T>>) {
    return v;
  } else {
    T r;
    convert_to(&v, 1, &r);
    return r;
  }
}

template <typename T>
DropoutParams<Compute<T>> params(uint64_t threshold, double scale, double shift, double drop) {
  using C = Compute<T>;
  return {uint32_t(std::min(threshold, kKeepNone - 1)), shift != 0.0, C(scale), C(shift), C(drop)};
}

// Runs body(begin, end) over chunks of [0, n) that start on group boundaries; Ctrl-C may stop it.
template <typename Body>
void threaded(size_t n, const Body& body) {
  parallel_for(n, kGrain, [](void* c, size_t b, size_t e) { (*static_cast<const Body*>(c))(b, e); },
               const_cast<Body*>(&body), /*interruptible=*/true);
}

// Nothing kept (p = 1): y = drop everywhere and a zero mask, without drawing.
template <typename T>
void keep_none(size_t count, T* y, uint8_t* mask, T drop) {
  threaded(count, [&](size_t b, size_t e) {
    std::fill(y + b, y + e, drop);
    if (mask != nullptr) std::memset(mask + b / 8, 0, (e - b + 7) / 8);
  });
}

}  // namespace

template <typename T>
void dropout_forward(Stream s, uint64_t first, size_t count, const T* x, T* y, uint8_t* mask, uint64_t threshold,
                     double scale, double shift, double drop) {
  const auto p = params<T>(threshold, scale, shift, drop);
  if (threshold >= kKeepNone) {
    keep_none(count, y, mask, stored<T>(p.drop));
    return;
  }
  const auto kernel = Kern<T>::forward();
  threaded(count, [&](size_t b, size_t e) {
    kernel(s, first + b, e - b, x + b, y + b, mask == nullptr ? nullptr : mask + b / 8, p);
  });
}

template <typename T>
void dropout_apply(const uint8_t* mask, size_t count, size_t row_len, const T* x, T* y, double scale, double shift,
                   double drop) {
  const auto p = params<T>(0, scale, shift, drop);
  if (row_len == 1) {
    const auto kernel = Kern<T>::apply();
    threaded(count, [&](size_t b, size_t e) { kernel(mask + b / 8, e - b, x + b, y + b, p); });
    return;
  }
  // Feature dropout: walk the rows that meet [b, e), one keep bit per row.
  const auto kernel = Kern<T>::fill();
  threaded(count, [&](size_t b, size_t e) {
    for (size_t i = b; i < e;) {
      const size_t r = i / row_len, end = std::min(e, (r + 1) * row_len);
      kernel(((mask[r / 8] >> (r % 8)) & 1) != 0, end - i, x + i, y + i, p);
      i = end;
    }
  });
}

void dropout_mask(Stream s, uint64_t first, size_t count, uint8_t* mask, uint64_t threshold) {
  if (threshold >= kKeepNone) {
    std::memset(mask, 0, (count + 7) / 8);
    return;
  }
  const auto kernel = kernels().mask;
  const uint32_t thr = uint32_t(threshold);
  threaded(count, [&](size_t b, size_t e) { kernel(s, first + b, e - b, mask + b / 8, thr); });
}

template void dropout_forward<float>(Stream, uint64_t, size_t, const float*, float*, uint8_t*, uint64_t, double,
                                     double, double);
template void dropout_forward<double>(Stream, uint64_t, size_t, const double*, double*, uint8_t*, uint64_t, double,
                                      double, double);
template void dropout_apply<float>(const uint8_t*, size_t, size_t, const float*, float*, double, double, double);
template void dropout_apply<double>(const uint8_t*, size_t, size_t, const double*, double*, double, double, double);
template void dropout_forward<bfloat16_t>(Stream, uint64_t, size_t, const bfloat16_t*, bfloat16_t*, uint8_t*, uint64_t,
                                          double, double, double);
template void dropout_forward<float16_t>(Stream, uint64_t, size_t, const float16_t*, float16_t*, uint8_t*, uint64_t,
                                         double, double, double);
template void dropout_apply<bfloat16_t>(const uint8_t*, size_t, size_t, const bfloat16_t*, bfloat16_t*, double, double,
                                        double);
template void dropout_apply<float16_t>(const uint8_t*, size_t, size_t, const float16_t*, float16_t*, double, double,
                                       double);

}  // namespace regtune
