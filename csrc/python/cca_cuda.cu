// CUDA launchers of criss-cross attention (csrc/kernels/criss_cross_attention.cuh): raw device pointers + stream in,
// no framework. Bound in csrc/python/cca_ops.cpp as engine._C.cuda.criss_cross_attention_{forward,backward}.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/criss_cross_attention.cuh"

namespace segrt {
namespace cuda {
namespace {

void check(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": CUDA launch failed: " + cudaGetErrorString(err));
}

CcaDims dims(int64_t cq, int64_t c, int64_t h, int64_t w) {
  return CcaDims{static_cast<int>(cq), static_cast<int>(c), static_cast<int>(h), static_cast<int>(w), h * w};
}

dim3 row_grid(int64_t b, int64_t h, int64_t w) {
  if (h > 65535 || b > 65535) throw std::runtime_error("criss_cross_attention: B and H must be <= 65535 on CUDA");
  return dim3(static_cast<unsigned>((w + kTJ - 1) / kTJ), static_cast<unsigned>(h), static_cast<unsigned>(b));
}

template <typename T>
void forward_t(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, int64_t b, const CcaDims& d,
               cudaStream_t s) {
  cca_forward_kernel<T><<<row_grid(b, d.H, d.W), kNW * 32, 0, s>>>(
      reinterpret_cast<const T*>(q), reinterpret_cast<const T*>(k), reinterpret_cast<const T*>(v),
      reinterpret_cast<T*>(out), reinterpret_cast<float*>(lse), d);
  check("criss_cross_attention_forward");
}

template <typename T>
void backward_t(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t g, uintptr_t gq,
                uintptr_t gk, uintptr_t gv, uintptr_t ws, int64_t b, const CcaDims& d, cudaStream_t s) {
  const auto* qp = reinterpret_cast<const T*>(q);
  const auto* kp = reinterpret_cast<const T*>(k);
  const auto* vp = reinterpret_cast<const T*>(v);
  const auto* gp = reinterpret_cast<const T*>(g);
  auto* delta = reinterpret_cast<float*>(ws);
  const int64_t pixels = b * d.HW;
  const float* lp = reinterpret_cast<const float*>(lse);
  if (lse == 0) {  // recompute lse into the second half of the workspace
    float* l = delta + pixels;
    cca_forward_kernel<T><<<row_grid(b, d.H, d.W), kNW * 32, 0, s>>>(qp, kp, vp, nullptr, l, d);
    check("criss_cross_attention_backward (lse)");
    lp = l;
  }
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((pixels + 255) / 256, 1 << 20));
  cca_delta_kernel<T><<<blocks, 256, 0, s>>>(gp, reinterpret_cast<const T*>(out), delta, b, d);
  check("criss_cross_attention_backward (delta)");
  const dim3 grid = row_grid(b, d.H, d.W);
  cca_grad_q_kernel<T><<<grid, kNW * 32, 0, s>>>(qp, kp, vp, gp, lp, delta, reinterpret_cast<T*>(gq), d);
  check("criss_cross_attention_backward (grad q)");
  cca_grad_kv_kernel<T><<<grid, kNW * 32, 0, s>>>(qp, kp, vp, gp, lp, delta, reinterpret_cast<T*>(gk),
                                                   reinterpret_cast<T*>(gv), d);
  check("criss_cross_attention_backward (grad k, v)");
}

}  // namespace

void cca_forward(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, int64_t b, int64_t cq,
                 int64_t c, int64_t h, int64_t w, bool half, uintptr_t stream) {
  const CcaDims d = dims(cq, c, h, w);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  if (half) {
    forward_t<__half>(q, k, v, out, lse, b, d, s);
  } else {
    forward_t<float>(q, k, v, out, lse, b, d, s);
  }
}

void cca_backward(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t grad_out,
                  uintptr_t gq, uintptr_t gk, uintptr_t gv, uintptr_t workspace, int64_t b, int64_t cq, int64_t c,
                  int64_t h, int64_t w, bool half, uintptr_t stream) {
  const CcaDims d = dims(cq, c, h, w);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  if (half) {
    backward_t<__half>(q, k, v, out, lse, grad_out, gq, gk, gv, workspace, b, d, s);
  } else {
    backward_t<float>(q, k, v, out, lse, grad_out, gq, gk, gv, workspace, b, d, s);
  }
}

}  // namespace cuda
}  // namespace segrt
