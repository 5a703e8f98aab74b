// Overlay, CUDA body: out = floor((1 - alpha) * frame + alpha * palette[label] + 0.5) per channel, one thread per
// pixel; labels outside [0, K) leave the pixel unchanged. palette is a device array [K, 3] uint8.
#pragma once

#include "common.cuh"

namespace segrt {
namespace cuda {

template <typename Label>
__global__ void overlay_kernel(const uint8_t* frame, const Label* __restrict__ labels, int64_t pixels,
                               const uint8_t* __restrict__ palette, int64_t k, float alpha, uint8_t* out) {
  for (int64_t i = global_index(); i < pixels; i += global_stride()) {
    const int64_t l = static_cast<int64_t>(labels[i]);
    const uint8_t* f = frame + i * 3;
    uint8_t* o = out + i * 3;
    if (l >= 0 && l < k) {
      const uint8_t* p = palette + l * 3;
#pragma unroll
      for (int c = 0; c < 3; ++c) {
        o[c] = static_cast<uint8_t>(static_cast<float>(f[c]) * (1.f - alpha) + alpha * static_cast<float>(p[c]) + 0.5f);
      }
    } else {
#pragma unroll
      for (int c = 0; c < 3; ++c) o[c] = f[c];
    }
  }
}

}  // namespace cuda
}  // namespace segrt
