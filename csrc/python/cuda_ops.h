// Host launchers of the CUDA kernels (csrc/python/cuda_ops.cu). Pointers are raw device addresses, `stream` is a
// cudaStream_t as an integer (0 = default stream). Launches are asynchronous; a launch error throws std::runtime_error.
// Label dtype: uint8 when channels <= 255, else int32 (same policy as the CPU ops).
#pragma once

#include <cstdint>

namespace segrt {
namespace cuda {

int device_count();  // 0 when there is no driver or no GPU; never throws

void preprocess(uintptr_t img, int64_t h, int64_t w, uintptr_t out, int64_t oh, int64_t ow, const float mean[3],
                const float stdev[3], bool bgr, bool align_corners, bool half_out, uintptr_t stream);

void resize_bilinear(uintptr_t in, uintptr_t out, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                     bool align_corners, bool half, uintptr_t stream);

// Gradient of resize_bilinear: grad_out [planes, oh, ow] -> grad_in [planes, h, w] (overwritten), no atomics.
void resize_bilinear_backward(uintptr_t grad_out, uintptr_t grad_in, int64_t planes, int64_t h, int64_t w, int64_t oh,
                              int64_t ow, bool align_corners, bool half, uintptr_t stream);

void resize_argmax(uintptr_t logits, uintptr_t labels, uintptr_t scores, int64_t batch, int64_t channels, int64_t h,
                   int64_t w, int64_t oh, int64_t ow, bool align_corners, bool half, uintptr_t stream);

void overlay(uintptr_t frame, uintptr_t labels, bool int32_labels, int64_t pixels, uintptr_t palette, int64_t k,
             float alpha, uintptr_t out, uintptr_t stream);

}  // namespace cuda
}  // namespace segrt
