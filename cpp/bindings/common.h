// Shared argument checks for the bindings. The Python layer gives users their friendly
// messages; these checks make sure no call into _core can crash or write into a copy.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

namespace regtune::bind {

namespace py = pybind11;

// The array a kernel will write: an ndarray of exactly dtype T, C-contiguous and writable.
template <typename T>
py::array writable_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(arr.dtype())));
  }
  if (!(arr.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous");
  }
  if (!arr.writeable()) {
    throw py::value_error(std::string(name) + " must be writable");
  }
  return arr;
}

// An array a kernel only reads: an ndarray of exactly dtype T and C-contiguous (never converted
// here: the Python layer decides what may be copied).
template <typename T>
py::array readable_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(arr.dtype())));
  }
  if (!(arr.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous");
  }
  return arr;
}

inline bool has_dtype(const py::object& obj, const py::dtype& dt) {
  return py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).dtype().is(dt);
}

}  // namespace regtune::bind
