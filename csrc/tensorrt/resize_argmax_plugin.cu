// CUDA launcher of the ResizeArgmax plugin: the fused kernel of csrc/kernels/resize_argmax.cuh with int32 labels.
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/common.h"
#include "kernels/resize_argmax.cuh"
#include "tensorrt/launch.h"

namespace segrt {
namespace trt {

cudaError_t launch_resize_argmax(void const* logits, int32_t* labels, int64_t batch, int64_t channels, int64_t h,
                                 int64_t w, int64_t oh, int64_t ow, bool align_corners, bool half,
                                 cudaStream_t stream) noexcept {
  const int64_t total = batch * oh * ow;
  if (total == 0) return cudaSuccess;
  if (channels <= 0 || h <= 0 || w <= 0) return cudaErrorInvalidValue;
  constexpr int kThreads = 256;
  const auto grid = static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 20));
  const float sy = bilinear_scale(h, oh, align_corners), sx = bilinear_scale(w, ow, align_corners);
  if (half) {
    cuda::resize_argmax_kernel<__half, int32_t><<<grid, kThreads, 0, stream>>>(
        static_cast<__half const*>(logits), labels, nullptr, batch, int(channels), int(h), int(w), int(oh), int(ow),
        sy, sx, align_corners);
  } else {
    cuda::resize_argmax_kernel<float, int32_t><<<grid, kThreads, 0, stream>>>(
        static_cast<float const*>(logits), labels, nullptr, batch, int(channels), int(h), int(w), int(oh), int(ow),
        sy, sx, align_corners);
  }
  return cudaGetLastError();
}

}  // namespace trt
}  // namespace segrt
