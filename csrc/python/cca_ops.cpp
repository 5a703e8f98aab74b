// pybind11 bindings of criss-cross attention (csrc/kernels/criss_cross_attention.h): numpy float32/float64 in and
// out, strict checks (ValueError naming the argument), GIL released. The CUDA launchers (csrc/python/cca_cuda.cu)
// are added to engine._C.cuda when the module is built with CUDA.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/criss_cross_attention.h"
#include "python/checks.h"

namespace py = pybind11;
using namespace segrt::checks;

namespace segrt {

#ifdef SEGRT_WITH_CUDA
namespace cuda {
void cca_forward(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, int64_t b, int64_t cq,
                 int64_t c, int64_t h, int64_t w, bool half, uintptr_t stream);
void cca_backward(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t grad_out,
                  uintptr_t gq, uintptr_t gk, uintptr_t gv, uintptr_t workspace, int64_t b, int64_t cq, int64_t c,
                  int64_t h, int64_t w, bool half, uintptr_t stream);
}  // namespace cuda
#endif

namespace {

struct CcaShape {
  int64_t B, Cq, C, H, W;
};

// q, k: [B, Cq, H, W], v: [B, C, H, W], same float dtype, C-contiguous, non-empty. Returns the sizes.
CcaShape check_qkv(const py::array& q, const py::array& k, const py::array& v, const std::string& where) {
  if (!is_dtype<float>(q) && !is_dtype<double>(q)) {
    fail(where, "q must have dtype float32 or float64, got " + dtype_str(q));
  }
  const char* names[3] = {"q", "k", "v"};
  const py::array* arrs[3] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) {
    if (!arrs[i]->dtype().is(q.dtype())) {
      fail(where, std::string(names[i]) + " must have the dtype of q (" + dtype_str(q) + "), got " +
                      dtype_str(*arrs[i]));
    }
    require_layout(*arrs[i], where, names[i], 4, i < 2 ? "[B, Cq, H, W]" : "[B, C, H, W]");
  }
  const CcaShape s{q.shape(0), q.shape(1), v.shape(1), q.shape(2), q.shape(3)};
  if (k.shape(0) != s.B || k.shape(2) != s.H || k.shape(3) != s.W) {
    fail(where, "k must match q in B, H, W: q " + shape_str(q) + ", k " + shape_str(k));
  }
  if (k.shape(1) != s.Cq) fail(where, "k must have the channels Cq of q: q " + shape_str(q) + ", k " + shape_str(k));
  if (v.shape(0) != s.B || v.shape(2) != s.H || v.shape(3) != s.W) {
    fail(where, "v must match q in B, H, W: q " + shape_str(q) + ", v " + shape_str(v));
  }
  require_side(s.H, where, "H");
  require_side(s.W, where, "W");
  return s;
}

void check_like(const py::array& a, const py::array& ref, const std::vector<py::ssize_t>& shape,
                const std::string& where, const char* name) {
  if (!a.dtype().is(ref.dtype())) {
    fail(where, std::string(name) + " must have the dtype of q (" + dtype_str(ref) + "), got " + dtype_str(a));
  }
  require_layout(a, where, name, static_cast<py::ssize_t>(shape.size()), shape.size() == 3 ? "[B, H, W]" : "[B, C, H, W]");
  require_shape(a, shape, where, name);
}

template <typename T>
py::tuple forward_impl(const py::array& q, const py::array& k, const py::array& v, const CcaShape& s) {
  py::array_t<T> out({s.B, s.C, s.H, s.W});
  py::array_t<T> lse({s.B, s.H, s.W});
  const auto *qp = static_cast<const T*>(q.data()), *kp = static_cast<const T*>(k.data());
  const auto* vp = static_cast<const T*>(v.data());
  T *op = out.mutable_data(), *lp = lse.mutable_data();
  {
    py::gil_scoped_release release;
    criss_cross_attention_forward_cpu<T>(qp, kp, vp, op, lp, s.B, s.Cq, s.C, s.H, s.W);
  }
  return py::make_tuple(out, lse);
}

py::tuple forward(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj) {
  const std::string where = "criss_cross_attention_forward";
  py::array q = as_array(q_obj, where, "q"), k = as_array(k_obj, where, "k"), v = as_array(v_obj, where, "v");
  const CcaShape s = check_qkv(q, k, v, where);
  return is_dtype<float>(q) ? forward_impl<float>(q, k, v, s) : forward_impl<double>(q, k, v, s);
}

template <typename T>
py::tuple backward_impl(const py::array& q, const py::array& k, const py::array& v, const py::array& out,
                        const py::array* lse, const py::array& g, const CcaShape& s) {
  py::array_t<T> gq({s.B, s.Cq, s.H, s.W}), gk({s.B, s.Cq, s.H, s.W}), gv({s.B, s.C, s.H, s.W});
  auto p = [](const py::array& a) { return static_cast<const T*>(a.data()); };
  const T *qp = p(q), *kp = p(k), *vp = p(v), *op = p(out), *gp = p(g);
  const T* lp = lse ? p(*lse) : nullptr;
  T *gqp = gq.mutable_data(), *gkp = gk.mutable_data(), *gvp = gv.mutable_data();
  {
    py::gil_scoped_release release;
    criss_cross_attention_backward_cpu<T>(qp, kp, vp, op, lp, gp, gqp, gkp, gvp, s.B, s.Cq, s.C, s.H, s.W);
  }
  return py::make_tuple(gq, gk, gv);
}

py::tuple backward(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
                   const py::object& out_obj, const py::object& g_obj, const py::object& lse_obj) {
  const std::string where = "criss_cross_attention_backward";
  py::array q = as_array(q_obj, where, "q"), k = as_array(k_obj, where, "k"), v = as_array(v_obj, where, "v");
  py::array out = as_array(out_obj, where, "out"), g = as_array(g_obj, where, "grad_out");
  const CcaShape s = check_qkv(q, k, v, where);
  check_like(out, q, {s.B, s.C, s.H, s.W}, where, "out");
  check_like(g, q, {s.B, s.C, s.H, s.W}, where, "grad_out");
  py::array lse;
  const py::array* lp = nullptr;  // null: recompute
  if (!lse_obj.is_none()) {
    lse = as_array(lse_obj, where, "lse");
    check_like(lse, q, {s.B, s.H, s.W}, where, "lse");
    lp = &lse;
  }
  return is_dtype<float>(q) ? backward_impl<float>(q, k, v, out, lp, g, s)
                            : backward_impl<double>(q, k, v, out, lp, g, s);
}

#ifdef SEGRT_WITH_CUDA
void require_nonnull(uintptr_t p, const std::string& where, const char* name) {
  if (p == 0) fail(where, std::string(name) + " must be a non-null device pointer");
}

void require_sizes(int64_t b, int64_t cq, int64_t c, int64_t h, int64_t w, const std::string& where) {
  const std::pair<const char*, int64_t> dims[] = {{"B", b}, {"Cq", cq}, {"C", c}, {"H", h}, {"W", w}};
  for (const auto& d : dims) {
    if (d.second <= 0 || d.second > INT32_MAX) {
      fail(where, std::string(d.first) + " must be in [1, 2^31), got " + std::to_string(d.second));
    }
  }
  if (h * w > INT32_MAX) fail(where, "H * W must be < 2^31");
  if (b > 65535 || h > 65535) fail(where, "B and H must be <= 65535 (CUDA grid limits)");
}

bool is_half(const std::string& dtype, const std::string& where) {
  if (dtype == "float32") return false;
  if (dtype == "float16") return true;
  fail(where, "dtype must be 'float32' or 'float16', got '" + dtype + "'");
}

void bind_cuda(py::module_& cu) {
  using py::arg;
  cu.def(
      "criss_cross_attention_forward",
      [](uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, int64_t b, int64_t cq, int64_t c,
         int64_t h, int64_t w, const std::string& dtype, uintptr_t stream) {
        const std::string where = "cuda.criss_cross_attention_forward";
        const std::pair<const char*, uintptr_t> ptrs[] = {
            {"q_ptr", q}, {"k_ptr", k}, {"v_ptr", v}, {"out_ptr", out}, {"lse_ptr", lse}};
        for (const auto& p : ptrs) require_nonnull(p.second, where, p.first);
        require_sizes(b, cq, c, h, w, where);
        const bool half = is_half(dtype, where);
        py::gil_scoped_release release;
        cuda::cca_forward(q, k, v, out, lse, b, cq, c, h, w, half, stream);
      },
      arg("q_ptr"), arg("k_ptr"), arg("v_ptr"), arg("out_ptr"), arg("lse_ptr"), arg("B"), arg("Cq"), arg("C"),
      arg("H"), arg("W"), arg("dtype") = "float32", arg("stream") = 0,
      "Criss-cross attention forward on the device: q, k [B, Cq, H, W], v and out [B, C, H, W] (float32 or float16), "
      "lse [B, H, W] float32; asynchronous on `stream`.");
  cu.def(
      "criss_cross_attention_backward",
      [](uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t g, uintptr_t gq, uintptr_t gk,
         uintptr_t gv, uintptr_t workspace, int64_t b, int64_t cq, int64_t c, int64_t h, int64_t w,
         const std::string& dtype, uintptr_t stream) {
        const std::string where = "cuda.criss_cross_attention_backward";
        const std::pair<const char*, uintptr_t> ptrs[] = {
            {"q_ptr", q},        {"k_ptr", k},   {"v_ptr", v},   {"out_ptr", out}, {"grad_out_ptr", g},
            {"gq_ptr", gq},      {"gk_ptr", gk}, {"gv_ptr", gv}, {"workspace_ptr", workspace}};
        for (const auto& p : ptrs) require_nonnull(p.second, where, p.first);
        require_sizes(b, cq, c, h, w, where);
        const bool half = is_half(dtype, where);
        py::gil_scoped_release release;
        cuda::cca_backward(q, k, v, out, lse, g, gq, gk, gv, workspace, b, cq, c, h, w, half, stream);
      },
      arg("q_ptr"), arg("k_ptr"), arg("v_ptr"), arg("out_ptr"), arg("lse_ptr"), arg("grad_out_ptr"), arg("gq_ptr"),
      arg("gk_ptr"), arg("gv_ptr"), arg("workspace_ptr"), arg("B"), arg("Cq"), arg("C"), arg("H"), arg("W"),
      arg("dtype") = "float32", arg("stream") = 0,
      "Criss-cross attention backward on the device. lse_ptr = 0 recomputes lse; workspace: 2*B*H*W float32. "
      "Writes every element of gq, gk, gv.");
}
#endif

}  // namespace

}  // namespace segrt

// Global (not in segrt) so that module.cpp can register it with a single self-contained line.
void bind_cca_ops(py::module_& m) {
  using namespace segrt;
  using py::arg;
  m.def("criss_cross_attention_forward", &forward, arg("q"), arg("k"), arg("v"),
        "Criss-cross attention: q, k [B, Cq, H, W], v [B, C, H, W] (float32 or float64, C-contiguous) -> "
        "(out [B, C, H, W], lse [B, H, W]).");
  m.def("criss_cross_attention_backward", &backward, arg("q"), arg("k"), arg("v"), arg("out"), arg("grad_out"),
        arg("lse") = py::none(),
        "Gradients (gq, gk, gv) of criss_cross_attention_forward given its out and grad_out; lse (the forward's "
        "second output) is recomputed when None.");
#ifdef SEGRT_WITH_CUDA
  py::module_ cu = py::hasattr(m, "cuda") ? py::reinterpret_borrow<py::module_>(m.attr("cuda"))
                                          : m.def_submodule("cuda", "CUDA launchers over raw device pointers.");
  bind_cuda(cu);
#endif
}
