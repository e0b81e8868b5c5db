// regtune._core dropout: dropout (forward), dropout_apply (from a stored mask, or per channel),
// dropout_mask. The Python layer (regtune.dropout) computes threshold and coefficients.
#include <string>
#include <type_traits>
#include <utility>

#include "common.h"
#include "regtune/dropout.h"

namespace regtune::bind {

namespace {

constexpr uint64_t kMaxThreshold = uint64_t(1) << 32;

void check_threshold(uint64_t threshold) {
  if (threshold > kMaxThreshold) {
    throw py::value_error("threshold must be <= 2**32, got " + std::to_string(threshold));
  }
}

// The packed mask of `bits` elements: uint8, ceil(bits / 8) bytes, C-contiguous.
template <bool kWrite>
uint8_t* mask_pointer(const py::object& obj, size_t bits) {
  auto arr = kWrite ? writable_array<uint8_t>(obj, "mask") : readable_array<uint8_t>(obj, "mask");
  const size_t want = (bits + 7) / 8;
  if (size_t(arr.size()) != want) {
    throw py::value_error("mask must hold ceil(" + std::to_string(bits) + " / 8) = " + std::to_string(want) +
                          " bytes, got " + std::to_string(arr.size()));
  }
  return static_cast<uint8_t*>(const_cast<void*>(arr.data()));
}

// x (read) and y (written) of dtype T and one size.
template <typename T>
std::pair<const T*, T*> pair_pointers(const py::object& x, const py::object& y, size_t& n) {
  auto xa = readable_array<T>(x, "x");
  auto ya = writable_array<T>(y, "out");
  if (xa.size() != ya.size()) {
    throw py::value_error("x and out must have the same size, got " + std::to_string(xa.size()) + " and " +
                          std::to_string(ya.size()));
  }
  n = size_t(ya.size());
  return {static_cast<const T*>(xa.data()), static_cast<T*>(ya.mutable_data())};
}

// Calls run(tag) with a T* tag for the dtype of y (float32, float64, bfloat16 or float16;
// anything else raises, from the float32 checks).
template <typename Run>
void by_dtype(const py::object& y, Run run) {
  switch (float_kind(y)) {
    case FloatKind::f64: run(static_cast<double*>(nullptr)); break;
    case FloatKind::bf16: run(static_cast<bfloat16_t*>(nullptr)); break;
    case FloatKind::f16: run(static_cast<float16_t*>(nullptr)); break;
    default: run(static_cast<float*>(nullptr));
  }
}

}  // namespace

void register_dropout(py::module_& m) {
  m.def(
      "dropout",
      [](const py::object& x, const py::object& out, const py::object& mask, uint64_t key, uint64_t stream,
         uint64_t first, uint64_t threshold, double scale, double shift, double drop) {
        check_threshold(threshold);
        by_dtype(out, [&](auto* tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          size_t n = 0;
          const auto [xp, yp] = pair_pointers<T>(x, out, n);
          uint8_t* mp = mask.is_none() ? nullptr : mask_pointer<true>(mask, n);
          check_stream_range(first, n, 1);
          py::gil_scoped_release nogil;
          dropout_forward<T>({key, stream}, first, n, xp, yp, mp, threshold, scale, shift, drop);
        });
      },
      py::arg("x"), py::arg("out"), py::arg("mask"), py::arg("key"), py::arg("stream"), py::arg("first"),
      py::arg("threshold"), py::arg("scale"), py::arg("shift"), py::arg("drop"),
      "out[i] = x[i] * scale (+ shift when shift != 0) where word first + i of the stream is >= threshold, "
      "else drop; the packed keep mask into `mask` unless it is None. out may be x.");
  m.def(
      "dropout_apply",
      [](const py::object& x, const py::object& out, const py::object& mask, size_t row_len, double scale,
         double shift, double drop) {
        by_dtype(out, [&](auto* tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          size_t n = 0;
          const auto [xp, yp] = pair_pointers<T>(x, out, n);
          if (row_len == 0 || n % row_len != 0) {
            throw py::value_error("row_len must be >= 1 and divide the size " + std::to_string(n) + ", got " +
                                  std::to_string(row_len));
          }
          const uint8_t* mp = mask_pointer<false>(mask, n / row_len);
          py::gil_scoped_release nogil;
          dropout_apply<T>(mp, n, row_len, xp, yp, scale, shift, drop);
        });
      },
      py::arg("x"), py::arg("out"), py::arg("mask"), py::arg("row_len"), py::arg("scale"), py::arg("shift"),
      py::arg("drop"),
      "out = x * scale (+ shift) where bit i // row_len of the packed mask is set, else drop. out may be x.");
  m.def(
      "dropout_mask",
      [](const py::object& mask, size_t n, uint64_t key, uint64_t stream, uint64_t first, uint64_t threshold) {
        check_threshold(threshold);
        uint8_t* mp = mask_pointer<true>(mask, n);
        check_stream_range(first, n, 1);
        py::gil_scoped_release nogil;
        dropout_mask({key, stream}, first, n, mp, threshold);
      },
      py::arg("mask"), py::arg("n"), py::arg("key"), py::arg("stream"), py::arg("first"), py::arg("threshold"),
      "The packed keep mask of n elements (bit i: word first + i >= threshold) into `mask`.");
}

}  // namespace regtune::bind
