// pybind11 binding of the video kernels (csrc/kernels/yuv.h): RGB -> I420 planes for encoders, GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "kernels/yuv.h"
#include "python/checks.h"

namespace py = pybind11;
using namespace segrt::checks;

namespace segrt {
namespace {

// A writeable uint8 plane of exactly rows x cols whose columns are adjacent (rows may be padded, as in AVFrame).
uint8_t* plane(const py::object& obj, int64_t rows, int64_t cols, const std::string& where, const char* name,
               int64_t* stride) {
  py::array a = as_array(obj, where, name);
  require_dtype<uint8_t>(a, where, name, "uint8");
  if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols) {
    fail(where, std::string(name) + " must have shape (" + std::to_string(rows) + ", " + std::to_string(cols) +
                    "), got " + shape_str(a));
  }
  if (a.strides(1) != 1 || a.strides(0) < cols) fail(where, std::string(name) + " must have contiguous rows");
  require_writeable(a, where, name);
  *stride = a.strides(0);
  return static_cast<uint8_t*>(a.mutable_data());
}

void rgb_to_yuv420p(const py::object& img_obj, const py::object& y_obj, const py::object& u_obj,
                    const py::object& v_obj) {
  const std::string where = "rgb_to_yuv420p";
  py::array img = as_array(img_obj, where, "img");
  require_dtype<uint8_t>(img, where, "img", "uint8");
  require_layout(img, where, "img", 3, "[H, W, 3]");
  const int64_t h = img.shape(0), w = img.shape(1);
  if (img.shape(2) != 3) fail(where, "img must have 3 channels (H, W, 3), got shape " + shape_str(img));
  if (h % 2 || w % 2) fail(where, "img height and width must be even for 4:2:0, got shape " + shape_str(img));
  int64_t ys, us, vs;
  uint8_t* y = plane(y_obj, h, w, where, "y", &ys);
  uint8_t* u = plane(u_obj, h / 2, w / 2, where, "u", &us);
  uint8_t* v = plane(v_obj, h / 2, w / 2, where, "v", &vs);
  const auto* src = static_cast<const uint8_t*>(img.data());
  py::gil_scoped_release release;
  rgb_to_i420_cpu(src, h, w, y, ys, u, us, v, vs);
}

}  // namespace
}  // namespace segrt

void bind_video_ops(py::module_& m) {
  using py::arg;
  m.def("rgb_to_yuv420p", &segrt::rgb_to_yuv420p, arg("img"), arg("y"), arg("u"), arg("v"),
        "uint8 [H, W, 3] RGB (even H, W) -> BT.601 limited-range I420 planes y [H, W], u and v [H/2, W/2], written "
        "in place (rows may be padded).");
}
