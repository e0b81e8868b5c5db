// regtune._core samplers (bits, uniform, normal, truncated_normal) and the threaded fill and copy.
#include <pybind11/stl.h>

#include <array>
#include <type_traits>

#include "common.h"
#include "regtune/kernels.h"

namespace regtune::bind {

namespace {

// `first` as the binding receives it: an int (out is one run of the stream from there) or a
// 1-D uint64 array of run starts (out, C-contiguous, holds len(first) runs of equal length,
// run r from stream element first[r]). Every run is checked to end within the stream.
class Where {
 public:
  Where(const py::object& first, size_t n, unsigned words_per_element) {
    if (py::isinstance<py::array>(first)) {
      starts_ = readable_array<uint64_t>(first, "first");
      if (starts_.ndim() != 1) throw py::value_error("first must be an int or a 1-D uint64 array");
      const auto* f = static_cast<const uint64_t*>(starts_.data());
      const size_t runs = size_t(starts_.size());
      if (runs == 0 ? n != 0 : n % runs != 0) {
        throw py::value_error("out.size (" + std::to_string(n) + ") must be a multiple of len(first) (" +
                              std::to_string(runs) + ")");
      }
      runs_ = {f, runs, runs ? n / runs : 0};
    } else {
      try {
        one_ = first.cast<uint64_t>();
      } catch (const py::cast_error&) {
        throw py::type_error("first must be an int in [0, 2**64) or a 1-D uint64 array of run starts");
      }
      runs_ = {&one_, n ? size_t(1) : size_t(0), n};
    }
    for (size_t r = 0; r < runs_.runs; ++r) check_stream_range(runs_.firsts[r], runs_.run_len, words_per_element);
  }
  const Runs& runs() const { return runs_; }

 private:
  py::array starts_;  // keeps the array of run starts alive
  uint64_t one_ = 0;
  Runs runs_{};
};

// Runs fill(ptr, where) on `out` (float32, float64, bfloat16 or float16, checked) with the GIL
// released; float64 elements take two words each.
template <typename Fill>
void fill_float(const py::object& out, const py::object& first, Fill fill) {
  const FloatKind kind = float_kind(out);
  if (kind == FloatKind::bf16 || kind == FloatKind::f16) {
    auto arr = py::reinterpret_borrow<py::array>(out);
    if (!(arr.flags() & py::array::c_style)) throw py::value_error("out must be C-contiguous");
    if (!arr.writeable()) throw py::value_error("out must be writable");
    const Where where(first, size_t(arr.size()), 1);
    void* p = arr.mutable_data();
    py::gil_scoped_release nogil;
    if (kind == FloatKind::bf16) {
      fill(static_cast<bfloat16_t*>(p), where.runs());
    } else {
      fill(static_cast<float16_t*>(p), where.runs());
    }
    return;
  }
  if (has_dtype(out, py::dtype::of<double>())) {
    auto arr = writable_array<double>(out, "out");
    const Where where(first, size_t(arr.size()), 2);
    auto* p = static_cast<double*>(arr.mutable_data());
    py::gil_scoped_release nogil;
    fill(p, where.runs());
  } else {
    auto arr = writable_array<float>(out, "out");
    const Where where(first, size_t(arr.size()), 1);
    auto* p = static_cast<float*>(arr.mutable_data());
    py::gil_scoped_release nogil;
    fill(p, where.runs());
  }
}

// v as a 16-bit float L: rounded to float32, then to L (nearest even both times), as every
// 16-bit value regtune makes is its float32 value rounded (and as ml_dtypes casts float64).
template <typename L>
uint16_t from_double(double v) {
  const float f = float(v);
  L r;
  convert_to(&f, 1, &r);
  return r.bits;
}

}  // namespace

void register_random(py::module_& m) {
  m.def(
      "bits",
      [](const py::object& out, uint64_t key, uint64_t stream, const py::object& first) {
        auto arr = writable_array<uint32_t>(out, "out");
        const Where where(first, size_t(arr.size()), 1);
        auto* p = static_cast<uint32_t*>(arr.mutable_data());
        py::gil_scoped_release nogil;
        fill_bits({key, stream}, where.runs(), p);
      },
      py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"),
      "Fill uint32 `out` with words first.. of the Philox4x32-10 stream (key, stream); `first` may\n"
      "also be a uint64 array of run starts, as for the samplers.");
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
      [](const py::object& out, uint64_t key, uint64_t stream, const py::object& first, double low, double high) {
        fill_float(out, first, [&](auto* p, const Runs& w) { fill_uniform({key, stream}, w, p, low, high); });
      },
      py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"), py::arg("low"), py::arg("high"));
  m.def(
      "normal",
      [](const py::object& out, uint64_t key, uint64_t stream, const py::object& first, double mean, double std) {
        fill_float(out, first, [&](auto* p, const Runs& w) { fill_normal({key, stream}, w, p, mean, std); });
      },
      py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"), py::arg("mean"), py::arg("std"));
  m.def(
      "truncated_normal",
      [](const py::object& out, uint64_t key, uint64_t stream, const py::object& first, double mean, double std,
         double a, double b) {
        fill_float(out, first, [&](auto* p, const Runs& w) { fill_truncnorm({key, stream}, w, p, mean, std, a, b); });
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
        fill_float(
            out, py::int_(0),
            [&](auto* p, const Runs& w) {
              using T = std::remove_pointer_t<decltype(p)>;
              if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
                parallel_fill<T>(p, w.size(), T(value));
              } else {
                parallel_fill<uint16_t>(reinterpret_cast<uint16_t*>(p), w.size(), from_double<T>(value));
              }
            });
      },
      py::arg("out"), py::arg("value"),
      "Fill float32/float64/bfloat16/float16 `out` with `value` (16-bit: float32(value) rounded to nearest even), with\n"
      "all threads.");
  m.def(
      "convert",
      [](const py::object& x, const py::object& out) {
        // float32 -> bfloat16 / float16 (nearest even), or back (exact)
        auto src = py::reinterpret_borrow<py::array>(x);
        const FloatKind ks = float_kind(x), ko = float_kind(out);
        auto check = [](const py::object& o, const char* name, bool write) {
          if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + " must be a numpy.ndarray");
          auto a = py::reinterpret_borrow<py::array>(o);
          if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
          if (write && !a.writeable()) throw py::value_error(std::string(name) + " must be writable");
          return a;
        };
        auto s = check(x, "x", false), d = check(out, "out", true);
        if (s.size() != d.size()) throw py::value_error("x and out must have the same size");
        const size_t n = size_t(s.size());
        const void* sp = s.data();
        void* dp = d.mutable_data();
        if (ks == FloatKind::f32 && (ko == FloatKind::bf16 || ko == FloatKind::f16)) {
          py::gil_scoped_release nogil;
          if (ko == FloatKind::bf16) convert_to(static_cast<const float*>(sp), n, static_cast<bfloat16_t*>(dp));
          else convert_to(static_cast<const float*>(sp), n, static_cast<float16_t*>(dp));
        } else if ((ks == FloatKind::bf16 || ks == FloatKind::f16) && ko == FloatKind::f32) {
          py::gil_scoped_release nogil;
          if (ks == FloatKind::bf16) convert_from(static_cast<const bfloat16_t*>(sp), n, static_cast<float*>(dp));
          else convert_from(static_cast<const float16_t*>(sp), n, static_cast<float*>(dp));
        } else {
          throw py::type_error("convert: x float32 and out bfloat16/float16, or x bfloat16/float16 and out float32");
        }
      },
      py::arg("x"), py::arg("out"),
      "float32 x rounded to nearest even into bfloat16/float16 out, or 16-bit x widened into float32 out.");
  m.def(
      "round_stochastic",
      [](const py::object& x, const py::object& out, uint64_t key, uint64_t stream, uint64_t first) {
        auto s = readable_array<float>(x, "x");
        const FloatKind ko = float_kind(out);
        if (ko != FloatKind::bf16 && ko != FloatKind::f16) throw py::type_error("out must be bfloat16 or float16");
        auto d = py::reinterpret_borrow<py::array>(out);
        if (!(d.flags() & py::array::c_style) || !d.writeable()) throw py::value_error("out must be C-contiguous and writable");
        if (s.size() != d.size()) throw py::value_error("x and out must have the same size");
        const size_t n = size_t(s.size());
        check_stream_range(first, n, 1);
        const float* sp = static_cast<const float*>(s.data());
        void* dp = d.mutable_data();
        py::gil_scoped_release nogil;
        if (ko == FloatKind::bf16) convert_sr({key, stream}, first, sp, n, static_cast<bfloat16_t*>(dp));
        else convert_sr({key, stream}, first, sp, n, static_cast<float16_t*>(dp));
      },
      py::arg("x"), py::arg("out"), py::arg("key"), py::arg("stream"), py::arg("first"),
      "float32 x rounded stochastically into bfloat16/float16 out with words first.. of the stream.");
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
