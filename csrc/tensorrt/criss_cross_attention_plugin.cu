// CUDA launcher of the CrissCrossAttention plugin: the forward kernel of csrc/kernels/criss_cross_attention.cuh
// (same launch geometry as csrc/python/cca_cuda.cu: one block of kNW warps per (tile of kTJ pixels, row, batch)).
#include <cuda_fp16.h>

#include "kernels/criss_cross_attention.cuh"
#include "tensorrt/launch.h"

namespace segrt {
namespace trt {

cudaError_t launch_cca_forward(void const* q, void const* k, void const* v, void* out, float* lse, int64_t batch,
                               int64_t cq, int64_t c, int64_t h, int64_t w, bool half, cudaStream_t stream) noexcept {
  if (batch * h * w == 0) return cudaSuccess;
  if (batch > 65535 || h > 65535 || cq <= 0 || c <= 0) return cudaErrorInvalidValue;
  const cuda::CcaDims d{static_cast<int>(cq), static_cast<int>(c), static_cast<int>(h), static_cast<int>(w), h * w};
  const dim3 grid(static_cast<unsigned>((w + cuda::kTJ - 1) / cuda::kTJ), static_cast<unsigned>(h),
                  static_cast<unsigned>(batch));
  if (half) {
    cuda::cca_forward_kernel<__half><<<grid, cuda::kNW * 32, 0, stream>>>(
        static_cast<__half const*>(q), static_cast<__half const*>(k), static_cast<__half const*>(v),
        static_cast<__half*>(out), lse, d);
  } else {
    cuda::cca_forward_kernel<float><<<grid, cuda::kNW * 32, 0, stream>>>(
        static_cast<float const*>(q), static_cast<float const*>(k), static_cast<float const*>(v),
        static_cast<float*>(out), lse, d);
  }
  return cudaGetLastError();
}

}  // namespace trt
}  // namespace segrt
