// regtune._core samplers (bits, uniform, normal, truncated_normal) and the threaded fill and copy.
#include <pybind11/stl.h>

#include <array>
#include <type_traits>

#include "common.h"
#include "regtune/kernels.h"

namespace regtune::bind {

namespace {

// Runs fill(ptr, n) on `out` (float32 or float64, checked) with the GIL released.
// With `first`, the elements first.. of a stream: checked to end within it (two words per
// float64 element).
template <typename Fill>
void fill_float(const py::object& out, Fill fill, const uint64_t* first = nullptr) {
  if (has_dtype(out, py::dtype::of<double>())) {
    auto arr = writable_array<double>(out, "out");
    auto* p = static_cast<double*>(arr.mutable_data());
    const size_t n = size_t(arr.size());
    if (first != nullptr) check_stream_range(*first, n, 2);
    py::gil_scoped_release nogil;
    fill(p, n);
  } else {
    auto arr = writable_array<float>(out, "out");
    auto* p = static_cast<float*>(arr.mutable_data());
    const size_t n = size_t(arr.size());
    if (first != nullptr) check_stream_range(*first, n, 1);
    py::gil_scoped_release nogil;
    fill(p, n);
  }
}

}  // namespace

void register_random(py::module_& m) {
  m.def(
      "bits",
      [](const py::object& out, uint64_t key, uint64_t stream, uint64_t first) {
        auto arr = writable_array<uint32_t>(out, "out");
        auto* p = static_cast<uint32_t*>(arr.mutable_data());
        const size_t n = size_t(arr.size());
        check_stream_range(first, n, 1);
        py::gil_scoped_release nogil;
        fill_bits({key, stream}, first, n, p);
      },
      py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"),
      "Fill uint32 `out` with words first.. of the Philox4x32-10 stream (key, stream).");
  m.def(
      "philox",
      [](std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
        const Stream s{uint64_t(key[0]) | (uint64_t(key[1]) << 32), uint64_t(ctr[2]) | (uint64_t(ctr[3]) << 32)};
        std::array<uint32_t, 4> out{};
        random_kernels().blocks(s, uint64_t(ctr[0]) | (uint64_t(ctr[1]) << 32), 1, out.data());
        return out;
      },
      py::arg("counter"), py::arg("key"),
      "Philox4x32-10 of one 4-word counter under a 2-word key, on the selected SIMD path.");
  m.def(
      "uniform",
      [](const py::object& out, uint64_t key, uint64_t stream, uint64_t first, double low, double high) {
        fill_float(out, [&](auto* p, size_t n) { fill_uniform({key, stream}, first, n, p, low, high); }, &first);
      },
      py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"), py::arg("low"), py::arg("high"));
  m.def(
      "normal",
      [](const py::object& out, uint64_t key, uint64_t stream, uint64_t first, double mean, double std) {
        fill_float(out, [&](auto* p, size_t n) { fill_normal({key, stream}, first, n, p, mean, std); }, &first);
      },
      py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"), py::arg("mean"), py::arg("std"));
  m.def(
      "truncated_normal",
      [](const py::object& out, uint64_t key, uint64_t stream, uint64_t first, double mean, double std, double a,
         double b) {
        fill_float(out, [&](auto* p, size_t n) { fill_truncnorm({key, stream}, first, n, p, mean, std, a, b); }, &first);
      },
      py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"), py::arg("mean"), py::arg("std"),
      py::arg("a"), py::arg("b"));
  m.def(
      "truncnorm_mass",
      [](double mean, double std, double a, double b) { return truncnorm_params(mean, std, a, b).mass; },
      py::arg("mean"), py::arg("std"), py::arg("a"), py::arg("b"),
      "P(a <= mean + std * Z <= b) for standard normal Z, as the truncated-normal kernels compute it.");
  m.def(
      "fill",
      [](const py::object& out, double value) {
        fill_float(out, [&](auto* p, size_t n) {
          using T = std::remove_pointer_t<decltype(p)>;
          parallel_fill<T>(p, n, T(value));
        });
      },
      py::arg("out"), py::arg("value"), "Fill float32/float64 `out` with `value`, with all threads.");
  m.def(
      "parallel_copy",
      [](const py::object& dst, const py::object& src) {
        if (!py::isinstance<py::array>(dst) || !py::isinstance<py::array>(src)) {
          throw py::type_error("dst and src must be numpy.ndarray");
        }
        auto d = py::reinterpret_borrow<py::array>(dst);
        auto s = py::reinterpret_borrow<py::array>(src);
        if (!same_dtype(d.dtype(), s.dtype()) || d.size() != s.size()) {
          throw py::value_error("dst and src must have the same dtype and size");
        }
        if (!(d.flags() & py::array::c_style) || !(s.flags() & py::array::c_style) || !d.writeable()) {
          throw py::value_error("dst must be C-contiguous and writable, src C-contiguous");
        }
        void* dp = d.mutable_data();
        const void* sp = s.data();
        const size_t nbytes = size_t(d.nbytes());
        py::gil_scoped_release nogil;
        parallel_copy(dp, sp, nbytes);
      },
      py::arg("dst"), py::arg("src"),
      "Copy src into dst with all threads (the memory-bandwidth yardstick of the benchmarks).");
}

}  // namespace regtune::bind
