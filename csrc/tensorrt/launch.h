// CUDA launchers behind the TensorRT plugins (no TensorRT types here, so the .cu files build without its headers).
// They launch the kernels of csrc/kernels/*.cuh on `stream`, never throw, and return the launch status.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace segrt {
namespace trt {

// logits [B, C, h, w] (float, or __half when `half`) -> labels int32 [B, oh, ow]: bilinear resize + argmax over C.
cudaError_t launch_resize_argmax(void const* logits, int32_t* labels, int64_t batch, int64_t channels, int64_t h,
                                 int64_t w, int64_t oh, int64_t ow, bool align_corners, bool half,
                                 cudaStream_t stream) noexcept;

// Criss-cross attention forward: q, k [B, Cq, H, W], v -> out [B, C, H, W] (float, or __half when `half`).
// `lse` is scratch of B * H * W floats (the plugin's workspace).
cudaError_t launch_cca_forward(void const* q, void const* k, void const* v, void* out, float* lse, int64_t batch,
                               int64_t cq, int64_t c, int64_t h, int64_t w, bool half, cudaStream_t stream) noexcept;

}  // namespace trt
}  // namespace segrt
