// pybind11 bindings of the CPU kernels (csrc/kernels/*.h): numpy arrays in and out, strict checks, GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/overlay.h"
#include "kernels/preprocess.h"
#include "kernels/resize.h"
#include "kernels/resize_argmax.h"
#include "python/checks.h"

namespace py = pybind11;
using namespace segrt::checks;

namespace segrt {
namespace {

// `out` is None (allocate) or a writeable C-contiguous array of dtype T and exactly `shape`.
template <typename T>
py::array_t<T> typed_output(const py::object& out, const std::vector<py::ssize_t>& shape, const std::string& where,
                            const char* name, const char* dtype) {
  if (out.is_none()) return py::array_t<T>(shape);
  py::array a = as_array(out, where, name);
  require_dtype<T>(a, where, name, dtype);
  require_shape(a, shape, where, name);
  require_layout(a, where, name, static_cast<py::ssize_t>(shape.size()), "buffer");
  require_writeable(a, where, name);
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

// `out` is None (allocate) or a writeable C-contiguous float32 array of exactly `shape`.
py::array_t<float> float_output(const py::object& out, const std::vector<py::ssize_t>& shape,
                                const std::string& where) {
  return typed_output<float>(out, shape, where, "out", "float32");
}

py::array preprocess(const py::object& img_obj, int64_t out_h, int64_t out_w, const std::vector<double>& mean,
                     const std::vector<double>& stdev, bool bgr, bool align_corners, const py::object& out) {
  const std::string where = "preprocess";
  py::array img = as_array(img_obj, where, "img");
  require_dtype<uint8_t>(img, where, "img", "uint8");
  require_layout(img, where, "img", 3, "[H, W, 3]");
  if (img.shape(2) != 3) fail(where, "img must have 3 channels (H, W, 3), got shape " + shape_str(img));
  require_side(out_h, where, "out_h");
  require_side(out_w, where, "out_w");
  float m[3], s[3];
  require_triple(mean, where, "mean", false, m);
  require_triple(stdev, where, "std", true, s);
  py::array_t<float> result = float_output(out, {1, 3, out_h, out_w}, where);
  const auto* src = static_cast<const uint8_t*>(img.data());
  float* dst = result.mutable_data();
  const int64_t h = img.shape(0), w = img.shape(1);
  {
    py::gil_scoped_release release;
    preprocess_cpu(src, h, w, dst, out_h, out_w, m, s, bgr, align_corners);
  }
  return result;
}

// float32 or float64 (the output has the input's dtype); anything else is a ValueError naming `name`.
void require_float_dtype(const py::array& a, const std::string& where, const char* name) {
  if (!is_dtype<float>(a) && !is_dtype<double>(a)) {
    fail(where, std::string(name) + " must have dtype float32 or float64, got " + dtype_str(a));
  }
}

template <typename T>
py::array run_resize(const py::array& x, int64_t out_h, int64_t out_w, bool align_corners) {
  const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  py::array_t<T> result({n, c, out_h, out_w});
  const auto* src = static_cast<const T*>(x.data());
  T* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    resize_bilinear_cpu<T>(src, dst, n * c, h, w, out_h, out_w, align_corners);
  }
  return result;
}

template <typename T>
py::array run_resize_backward(const py::array& g, int64_t in_h, int64_t in_w, bool align_corners) {
  const int64_t n = g.shape(0), c = g.shape(1), oh = g.shape(2), ow = g.shape(3);
  py::array_t<T> result({n, c, in_h, in_w});
  const auto* src = static_cast<const T*>(g.data());
  T* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    resize_bilinear_backward_cpu<T>(src, dst, n * c, in_h, in_w, oh, ow, align_corners);
  }
  return result;
}

py::array resize_bilinear(const py::object& x_obj, int64_t out_h, int64_t out_w, bool align_corners) {
  const std::string where = "resize_bilinear";
  py::array x = as_array(x_obj, where, "x");
  require_float_dtype(x, where, "x");
  require_layout(x, where, "x", 4, "[N, C, H, W]");
  require_side(out_h, where, "out_h");
  require_side(out_w, where, "out_w");
  return is_dtype<double>(x) ? run_resize<double>(x, out_h, out_w, align_corners)
                             : run_resize<float>(x, out_h, out_w, align_corners);
}

py::array resize_bilinear_backward(const py::object& g_obj, int64_t in_h, int64_t in_w, bool align_corners) {
  const std::string where = "resize_bilinear_backward";
  py::array g = as_array(g_obj, where, "grad_out");
  require_float_dtype(g, where, "grad_out");
  require_layout(g, where, "grad_out", 4, "[N, C, H_out, W_out]");
  require_side(in_h, where, "in_h");
  require_side(in_w, where, "in_w");
  return is_dtype<double>(g) ? run_resize_backward<double>(g, in_h, in_w, align_corners)
                             : run_resize_backward<float>(g, in_h, in_w, align_corners);
}

template <typename Label>
py::array run_argmax(const float* src, py::ssize_t b, py::ssize_t c, py::ssize_t h, py::ssize_t w, int64_t oh,
                     int64_t ow, bool align_corners, float* scores, const py::object& out, const char* dtype) {
  py::array_t<Label> labels = typed_output<Label>(out, {b, static_cast<py::ssize_t>(oh), static_cast<py::ssize_t>(ow)},
                                                  "resize_argmax", "out", dtype);
  Label* dst = labels.mutable_data();
  {
    py::gil_scoped_release release;
    resize_argmax_cpu<Label>(src, dst, scores, b, c, h, w, oh, ow, align_corners);
  }
  return labels;
}

py::object resize_argmax(const py::object& x_obj, int64_t out_h, int64_t out_w, bool align_corners,
                         bool return_scores, const py::object& out, const py::object& scores_out) {
  const std::string where = "resize_argmax";
  py::array x = as_array(x_obj, where, "logits");
  require_dtype<float>(x, where, "logits", "float32");
  require_layout(x, where, "logits", 4, "[B, C, H, W]");
  require_side(out_h, where, "out_h");
  require_side(out_w, where, "out_w");
  const py::ssize_t b = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  if (c > INT32_MAX) fail(where, "logits has too many channels");
  if (!return_scores && !scores_out.is_none()) fail(where, "scores_out is only written with return_scores=True");
  py::array_t<float> scores;
  float* sp = nullptr;
  if (return_scores) {
    scores = typed_output<float>(scores_out, {b, static_cast<py::ssize_t>(out_h), static_cast<py::ssize_t>(out_w)},
                                 where, "scores_out", "float32");
    sp = scores.mutable_data();
  }
  const auto* src = static_cast<const float*>(x.data());
  py::array labels =
      c <= 255 ? run_argmax<uint8_t>(src, b, c, h, w, out_h, out_w, align_corners, sp, out, "uint8 (<= 255 classes)")
               : run_argmax<int32_t>(src, b, c, h, w, out_h, out_w, align_corners, sp, out, "int32 (> 255 classes)");
  if (return_scores) return py::make_tuple(labels, scores);
  return labels;
}

// labels must be [H, W] uint8/int32/int64 matching frame; palette [K, 3] uint8.
void check_labels_palette(const py::array& labels, const py::array& palette, py::ssize_t h, py::ssize_t w,
                          const std::string& where) {
  if (!is_dtype<uint8_t>(labels) && !is_dtype<int32_t>(labels) && !is_dtype<int64_t>(labels)) {
    fail(where, "labels must have dtype uint8, int32 or int64, got " + dtype_str(labels));
  }
  require_layout(labels, where, "labels", 2, "[H, W]");
  if (h >= 0 && (labels.shape(0) != h || labels.shape(1) != w)) {
    fail(where, "labels shape " + shape_str(labels) + " must equal the frame's (H, W) = (" + std::to_string(h) + ", " +
                    std::to_string(w) + ")");
  }
  require_dtype<uint8_t>(palette, where, "palette", "uint8");
  require_layout(palette, where, "palette", 2, "[K, 3]");
  if (palette.shape(1) != 3) fail(where, "palette must have shape (K, 3), got " + shape_str(palette));
}

template <typename F>
void dispatch_labels(const py::array& labels, F&& f) {
  if (is_dtype<uint8_t>(labels)) {
    f(static_cast<const uint8_t*>(labels.data()));
  } else if (is_dtype<int32_t>(labels)) {
    f(static_cast<const int32_t*>(labels.data()));
  } else {
    f(static_cast<const int64_t*>(labels.data()));
  }
}

py::array overlay(const py::object& frame_obj, const py::object& labels_obj, const py::object& palette_obj,
                  double alpha, const py::object& out) {
  const std::string where = "overlay";
  py::array frame = as_array(frame_obj, where, "frame");
  py::array labels = as_array(labels_obj, where, "labels");
  py::array palette = as_array(palette_obj, where, "palette");
  require_dtype<uint8_t>(frame, where, "frame", "uint8");
  require_layout(frame, where, "frame", 3, "[H, W, 3]");
  if (frame.shape(2) != 3) fail(where, "frame must have 3 channels (H, W, 3), got shape " + shape_str(frame));
  const py::ssize_t h = frame.shape(0), w = frame.shape(1);
  check_labels_palette(labels, palette, h, w, where);
  if (!(alpha >= 0.0 && alpha <= 1.0)) fail(where, "alpha must be in [0, 1], got " + std::to_string(alpha));
  py::array_t<uint8_t> result;
  if (out.is_none()) {
    result = py::array_t<uint8_t>({h, w, py::ssize_t{3}});
  } else {
    py::array o = as_array(out, where, "out");
    require_dtype<uint8_t>(o, where, "out", "uint8");
    require_shape(o, {h, w, 3}, where, "out");
    require_layout(o, where, "out", 3, "[H, W, 3]");
    require_writeable(o, where, "out");
    result = py::reinterpret_borrow<py::array_t<uint8_t>>(o);
  }
  const auto* f = static_cast<const uint8_t*>(frame.data());
  const auto* p = static_cast<const uint8_t*>(palette.data());
  uint8_t* dst = result.mutable_data();
  const int64_t k = palette.shape(0);
  const float a = static_cast<float>(alpha);
  dispatch_labels(labels, [&](auto* lab) {
    py::gil_scoped_release release;
    overlay_cpu(f, lab, h * w, p, k, a, dst);
  });
  return result;
}

py::array colorize(const py::object& labels_obj, const py::object& palette_obj) {
  const std::string where = "colorize";
  py::array labels = as_array(labels_obj, where, "labels");
  py::array palette = as_array(palette_obj, where, "palette");
  check_labels_palette(labels, palette, -1, -1, where);
  const py::ssize_t h = labels.shape(0), w = labels.shape(1);
  py::array_t<uint8_t> result({h, w, py::ssize_t{3}});
  const auto* p = static_cast<const uint8_t*>(palette.data());
  uint8_t* dst = result.mutable_data();
  const int64_t k = palette.shape(0);
  dispatch_labels(labels, [&](auto* lab) {
    py::gil_scoped_release release;
    colorize_cpu(lab, h * w, p, k, dst);
  });
  return result;
}

}  // namespace

void bind_cpu_ops(py::module_& m) {
  using py::arg;
  m.def("preprocess", &preprocess, arg("img"), arg("out_h"), arg("out_w"), arg("mean"), arg("std"),
        arg("bgr") = false, arg("align_corners") = false, arg("out") = py::none(),
        "uint8 [H, W, 3] -> float32 [1, 3, out_h, out_w]: bilinear resize, BGR->RGB if bgr, (x - mean) / std, CHW.");
  m.def("resize_bilinear", &resize_bilinear, arg("x"), arg("out_h"), arg("out_w"), arg("align_corners") = false,
        "float32/float64 [N, C, H, W] -> [N, C, out_h, out_w] (same dtype), as F.interpolate(mode='bilinear').");
  m.def("resize_bilinear_backward", &resize_bilinear_backward, arg("grad_out"), arg("in_h"), arg("in_w"),
        arg("align_corners") = false, "Gradient of resize_bilinear w.r.t. its input (float32/float64, same dtype).");
  m.def("resize_argmax", &resize_argmax, arg("logits"), arg("out_h"), arg("out_w"), arg("align_corners") = false,
        arg("return_scores") = false, arg("out") = py::none(), arg("scores_out") = py::none(),
        "float32 [B, C, H, W] -> labels [B, out_h, out_w] (uint8 if C <= 255 else int32) [, winning logit float32]; "
        "written into out / scores_out when given.");
  m.def("overlay", &overlay, arg("frame"), arg("labels"), arg("palette"), arg("alpha") = 0.5, arg("out") = py::none(),
        "Alpha-blend palette[labels] over a uint8 [H, W, 3] frame; labels >= K leave the pixel unchanged.");
  m.def("colorize", &colorize, arg("labels"), arg("palette"), "palette[labels] as uint8 [H, W, 3]; labels >= K black.");
}

}  // namespace segrt
