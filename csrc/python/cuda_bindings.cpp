// Introspection (has_cuda, cuda_device_count) and the _C.cuda submodule of launchers over raw device pointers.
// The launchers exist only when the module was compiled with CUDA (SEGRT_WITH_CUDA); they never touch torch.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "python/checks.h"
#ifdef SEGRT_WITH_CUDA
#include "python/cuda_ops.h"
#endif

namespace py = pybind11;
using namespace segrt::checks;

namespace segrt {
namespace {

#ifdef SEGRT_WITH_CUDA
void require_ptr(uintptr_t p, const std::string& where, const char* name) {
  if (p == 0) fail(where, std::string(name) + " must be a non-null device pointer");
}

void require_dims(const std::string& where, std::initializer_list<std::pair<const char*, int64_t>> dims) {
  for (const auto& d : dims) {
    if (d.second <= 0 || d.second > INT32_MAX) fail(where, std::string(d.first) + " must be in [1, 2^31), got " +
                                                               std::to_string(d.second));
  }
}

bool half_dtype(const std::string& dtype, const std::string& where) {
  if (dtype == "float32") return false;
  if (dtype == "float16") return true;
  fail(where, "dtype must be 'float32' or 'float16', got '" + dtype + "'");
}

void bind_launchers(py::module_& cu) {
  using py::arg;
  cu.def(
      "preprocess",
      [](uintptr_t img, int64_t h, int64_t w, uintptr_t out, int64_t oh, int64_t ow, const std::vector<double>& mean,
         const std::vector<double>& stdev, bool bgr, bool align_corners, const std::string& out_dtype,
         uintptr_t stream) {
        const std::string where = "cuda.preprocess";
        require_ptr(img, where, "img_ptr");
        require_ptr(out, where, "out_ptr");
        require_dims(where, {{"h", h}, {"w", w}, {"out_h", oh}, {"out_w", ow}});
        float m[3], s[3];
        require_triple(mean, where, "mean", false, m);
        require_triple(stdev, where, "std", true, s);
        const bool half = half_dtype(out_dtype, where);
        py::gil_scoped_release release;
        cuda::preprocess(img, h, w, out, oh, ow, m, s, bgr, align_corners, half, stream);
      },
      arg("img_ptr"), arg("h"), arg("w"), arg("out_ptr"), arg("out_h"), arg("out_w"), arg("mean"), arg("std"),
      arg("bgr") = false, arg("align_corners") = false, arg("out_dtype") = "float32", arg("stream") = 0,
      "uint8 [h, w, 3] (device) -> [1, 3, out_h, out_w] float32/float16 (device), asynchronous on `stream`.");
  cu.def(
      "resize_bilinear",
      [](uintptr_t in, int64_t n, int64_t c, int64_t h, int64_t w, uintptr_t out, int64_t oh, int64_t ow,
         bool align_corners, const std::string& dtype, uintptr_t stream) {
        const std::string where = "cuda.resize_bilinear";
        require_ptr(in, where, "x_ptr");
        require_ptr(out, where, "out_ptr");
        require_dims(where, {{"N", n}, {"C", c}, {"h", h}, {"w", w}, {"out_h", oh}, {"out_w", ow}});
        const bool half = half_dtype(dtype, where);
        py::gil_scoped_release release;
        cuda::resize_bilinear(in, out, n * c, h, w, oh, ow, align_corners, half, stream);
      },
      arg("x_ptr"), arg("N"), arg("C"), arg("h"), arg("w"), arg("out_ptr"), arg("out_h"), arg("out_w"),
      arg("align_corners") = false, arg("dtype") = "float32", arg("stream") = 0,
      "[N, C, h, w] -> [N, C, out_h, out_w] on the device, float32 or float16 in and out.");
  cu.def(
      "resize_bilinear_backward",
      [](uintptr_t grad_out, int64_t n, int64_t c, int64_t oh, int64_t ow, uintptr_t grad_in, int64_t h, int64_t w,
         bool align_corners, const std::string& dtype, uintptr_t stream) {
        const std::string where = "cuda.resize_bilinear_backward";
        require_ptr(grad_out, where, "grad_out_ptr");
        require_ptr(grad_in, where, "grad_in_ptr");
        require_dims(where, {{"N", n}, {"C", c}, {"out_h", oh}, {"out_w", ow}, {"h", h}, {"w", w}});
        const bool half = half_dtype(dtype, where);
        py::gil_scoped_release release;
        cuda::resize_bilinear_backward(grad_out, grad_in, n * c, h, w, oh, ow, align_corners, half, stream);
      },
      arg("grad_out_ptr"), arg("N"), arg("C"), arg("out_h"), arg("out_w"), arg("grad_in_ptr"), arg("h"), arg("w"),
      arg("align_corners") = false, arg("dtype") = "float32", arg("stream") = 0,
      "Gradient of resize_bilinear on the device: grad_out [N, C, out_h, out_w] -> grad_in [N, C, h, w] (written, "
      "not accumulated), float32 or float16; deterministic (no atomics).");
  cu.def(
      "resize_argmax",
      [](uintptr_t logits, int64_t b, int64_t c, int64_t h, int64_t w, uintptr_t out, int64_t oh, int64_t ow,
         bool align_corners, uintptr_t stream, uintptr_t scores, const std::string& dtype) {
        const std::string where = "cuda.resize_argmax";
        require_ptr(logits, where, "logits_ptr");
        require_ptr(out, where, "out_ptr");
        require_dims(where, {{"B", b}, {"C", c}, {"h", h}, {"w", w}, {"out_h", oh}, {"out_w", ow}});
        const bool half = half_dtype(dtype, where);
        py::gil_scoped_release release;
        cuda::resize_argmax(logits, out, scores, b, c, h, w, oh, ow, align_corners, half, stream);
      },
      arg("logits_ptr"), arg("B"), arg("C"), arg("h"), arg("w"), arg("out_ptr"), arg("out_h"), arg("out_w"),
      arg("align_corners") = false, arg("stream") = 0, arg("scores_ptr") = 0, arg("dtype") = "float32",
      "Fused resize + argmax on the device: labels [B, out_h, out_w] (uint8 if C <= 255 else int32) and, if "
      "scores_ptr != 0, the winning logit as float32.");
  cu.def(
      "overlay",
      [](uintptr_t frame, uintptr_t labels, const std::string& label_dtype, int64_t h, int64_t w, uintptr_t palette,
         int64_t k, double alpha, uintptr_t out, uintptr_t stream) {
        const std::string where = "cuda.overlay";
        require_ptr(frame, where, "frame_ptr");
        require_ptr(labels, where, "labels_ptr");
        require_ptr(palette, where, "palette_ptr");
        require_ptr(out, where, "out_ptr");
        require_dims(where, {{"h", h}, {"w", w}, {"K", k}});
        if (label_dtype != "uint8" && label_dtype != "int32") {
          fail(where, "label_dtype must be 'uint8' or 'int32', got '" + label_dtype + "'");
        }
        if (!(alpha >= 0.0 && alpha <= 1.0)) fail(where, "alpha must be in [0, 1], got " + std::to_string(alpha));
        py::gil_scoped_release release;
        cuda::overlay(frame, labels, label_dtype == "int32", h * w, palette, k, static_cast<float>(alpha), out, stream);
      },
      arg("frame_ptr"), arg("labels_ptr"), arg("label_dtype"), arg("h"), arg("w"), arg("palette_ptr"), arg("K"),
      arg("alpha"), arg("out_ptr"), arg("stream") = 0, "Alpha-blend palette[labels] over a device uint8 frame.");
}
#endif

}  // namespace

void bind_cuda_ops(py::module_& m) {
#ifdef SEGRT_WITH_CUDA
  m.def("has_cuda", [] { return true; }, "True when engine._C was compiled with the CUDA kernels.");
  m.def("cuda_device_count", [] { return cuda::device_count(); }, "Visible CUDA devices; 0 without driver or GPU.");
  py::module_ cu = m.def_submodule("cuda", "CUDA launchers over raw device pointers and a stream handle.");
  bind_launchers(cu);
#else
  m.def("has_cuda", [] { return false; }, "True when engine._C was compiled with the CUDA kernels.");
  m.def("cuda_device_count", [] { return 0; }, "Visible CUDA devices; 0 without driver or GPU.");
#endif
}

}  // namespace segrt
