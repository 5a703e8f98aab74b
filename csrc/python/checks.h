// Argument checks for the pybind11 bindings: every problem becomes a ValueError (TypeError for a non-array) whose
// message names the function, the argument and what was wrong, before any native code touches the buffer.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace segrt {
namespace checks {

namespace py = pybind11;

// Largest accepted output height/width; guards against absurd sizes overflowing index arithmetic.
constexpr int64_t kMaxSide = int64_t{1} << 20;

[[noreturn]] inline void fail(const std::string& where, const std::string& what) {
  throw py::value_error(where + ": " + what);
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    s += std::to_string(a.shape(i));
    if (i + 1 < a.ndim() || a.ndim() == 1) s += ",";
    if (i + 1 < a.ndim()) s += " ";
  }
  return s + ")";
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// obj must be a numpy array; returns it without copying.
inline py::array as_array(const py::handle& obj, const std::string& where, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(where + ": " + name + " must be a numpy.ndarray, got " +
                         py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  return py::reinterpret_borrow<py::array>(obj);
}

template <typename T>
bool is_dtype(const py::array& a) {
  return a.dtype().is(py::dtype::of<T>());
}

template <typename T>
void require_dtype(const py::array& a, const std::string& where, const char* name, const char* expected) {
  if (!is_dtype<T>(a)) fail(where, std::string(name) + " must have dtype " + expected + ", got " + dtype_str(a));
}

// Rank, contiguity and non-empty sizes; `layout` describes the expected shape, e.g. "[N, C, H, W]".
inline void require_layout(const py::array& a, const std::string& where, const char* name, py::ssize_t ndim,
                           const char* layout) {
  if (a.ndim() != ndim) {
    fail(where, std::string(name) + " must be " + std::to_string(ndim) + "-D " + layout + ", got shape " +
                    shape_str(a));
  }
  for (py::ssize_t i = 0; i < ndim; ++i) {
    if (a.shape(i) == 0) fail(where, std::string(name) + " must not be empty, got shape " + shape_str(a));
  }
  if (!(a.flags() & py::array::c_style)) {
    fail(where, std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray), got strides that are not");
  }
}

inline void require_writeable(const py::array& a, const std::string& where, const char* name) {
  if (!a.writeable()) fail(where, std::string(name) + " must be writeable");
}

inline void require_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const std::string& where,
                          const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok) {
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) want += std::to_string(shape[i]) + (i + 1 < shape.size() ? ", " : "");
    fail(where, std::string(name) + " must have shape " + want + "), got " + shape_str(a));
  }
}

inline void require_side(int64_t v, const std::string& where, const char* name) {
  if (v <= 0 || v > kMaxSide) {
    fail(where, std::string(name) + " must be in [1, " + std::to_string(kMaxSide) + "], got " + std::to_string(v));
  }
}

// Three finite per-channel values (mean or std); nonzero when `nonzero`.
inline void require_triple(const std::vector<double>& v, const std::string& where, const char* name, bool nonzero,
                           float out[3]) {
  if (v.size() != 3) fail(where, std::string(name) + " must have 3 values (R, G, B), got " + std::to_string(v.size()));
  for (int i = 0; i < 3; ++i) {
    if (!std::isfinite(v[i]) || (nonzero && v[i] == 0.0)) {
      fail(where, std::string(name) + " values must be finite" + (nonzero ? " and nonzero" : "") + ", got " +
                      std::to_string(v[i]));
    }
    out[i] = static_cast<float>(v[i]);
  }
}

}  // namespace checks
}  // namespace segrt
