// Shared device helpers for the CUDA bodies: bilinear taps (same sampling as common.h) and float/half conversion.
// align_corners=false by default everywhere; the scale is computed on the host with segrt::bilinear_scale.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace segrt {
namespace cuda {

struct DevTap {
  int i0, i1;
  float w0, w1;
};

__device__ __forceinline__ DevTap dev_tap(int dst, int in_size, float scale, bool align_corners) {
  float src = align_corners ? scale * static_cast<float>(dst) : scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  src = fmaxf(src, 0.f);
  int i0 = min(static_cast<int>(src), in_size - 1);
  const int i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  const float l1 = src - static_cast<float>(i0);
  return DevTap{i0, i1, 1.f - l1, l1};
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

// Grid-stride loop index helpers (64-bit so large batches cannot overflow).
__device__ __forceinline__ int64_t global_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace cuda
}  // namespace segrt
