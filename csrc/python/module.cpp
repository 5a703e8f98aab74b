// engine._C: pybind11 module over the framework-free kernels in csrc/kernels.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace segrt {
void bind_cpu_ops(py::module_& m);
void bind_cuda_ops(py::module_& m);
}  // namespace segrt

PYBIND11_MODULE(_C, m) {
  m.doc() = "segrt native kernels: preprocess, bilinear resize, fused resize+argmax, overlay, colorize "
            "(CPU; CUDA launchers in the .cuda submodule when compiled with CUDA)";
  segrt::bind_cpu_ops(m);
  segrt::bind_cuda_ops(m);
  { void bind_cca_ops(py::module_&); bind_cca_ops(m); }  // criss-cross attention (csrc/python/cca_ops.cpp)
  { void bind_video_ops(py::module_&); bind_video_ops(m); }  // RGB -> I420 for encoders (csrc/python/video_ops.cpp)
}
