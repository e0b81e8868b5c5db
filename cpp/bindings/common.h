// Shared argument checks for the bindings. The Python layer gives users their friendly
// messages; these checks make sure no call into _core can crash or write into a copy.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "regtune/kernels.h"

namespace regtune::bind {

namespace py = pybind11;

// Same dtype, by value: an unpickled float32 array carries an equal but distinct dtype
// object, so identity is not enough; byte order counts (a big-endian float32 is not float32).
inline bool same_dtype(const py::dtype& a, const py::dtype& b) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(a.ptr(), b.ptr());
}

// The NumPy dtype of a kernel element type: bfloat16 is ml_dtypes.bfloat16 (a dependency;
// imported when first needed), float16_t numpy.float16.
template <typename T>
inline py::dtype dtype_of() {
  return py::dtype::of<T>();
}
template <>
inline py::dtype dtype_of<bfloat16_t>() {
  return py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16"));
}
template <>
inline py::dtype dtype_of<float16_t>() {
  return py::dtype("float16");
}

// An array a kernel only reads: an ndarray of exactly dtype T and C-contiguous (never converted
// here: the Python layer decides what may be copied).
template <typename T>
py::array readable_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!same_dtype(arr.dtype(), dtype_of<T>())) {
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(dtype_of<T>())) +
                         ", got " + std::string(py::str(arr.dtype())));
  }
  if (!(arr.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous");
  }
  return arr;
}

// The array a kernel will write: as readable_array, and writable.
template <typename T>
py::array writable_array(const py::object& obj, const char* name) {
  auto arr = readable_array<T>(obj, name);
  if (!arr.writeable()) {
    throw py::value_error(std::string(name) + " must be writable");
  }
  return arr;
}

// Elements [first, first + n) of a stream, each `words` Philox words wide, must lie within the
// 2**64 words of the stream: a range past the end would wrap the counter around silently.
inline void check_stream_range(uint64_t first, size_t n, unsigned words) {
  using u128 = unsigned __int128;
  if (n != 0 && (u128(first) + u128(n)) * words > (u128(1) << 64)) {
    throw py::value_error("first + n runs past the end of the 2**64-word stream (first = " + std::to_string(first) +
                          ", n = " + std::to_string(n) + ", " + std::to_string(words) + " word(s) per element)");
  }
}

inline bool has_dtype(const py::object& obj, const py::dtype& dt) {
  return py::isinstance<py::array>(obj) && same_dtype(py::reinterpret_borrow<py::array>(obj).dtype(), dt);
}

// Which floating type an array holds: 0 float32, 1 float64, 2 bfloat16, 3 float16, -1 other
// (ml_dtypes is imported only when the array's dtype might be bfloat16: a 2-byte void-kind dtype).
enum class FloatKind { other = -1, f32 = 0, f64 = 1, bf16 = 2, f16 = 3 };
inline FloatKind float_kind(const py::object& obj) {
  if (!py::isinstance<py::array>(obj)) return FloatKind::other;
  const py::dtype dt = py::reinterpret_borrow<py::array>(obj).dtype();
  if (same_dtype(dt, py::dtype::of<float>())) return FloatKind::f32;
  if (same_dtype(dt, py::dtype::of<double>())) return FloatKind::f64;
  if (dt.itemsize() != 2) return FloatKind::other;
  if (same_dtype(dt, dtype_of<float16_t>())) return FloatKind::f16;
  if (dt.kind() != 'V' && dt.kind() != 'f') return FloatKind::other;
  if (same_dtype(dt, dtype_of<bfloat16_t>())) return FloatKind::bf16;
  return FloatKind::other;
}

}  // namespace regtune::bind
