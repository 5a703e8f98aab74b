// Preprocess, CUDA body: uint8 HxWx3 -> [1, 3, oh, ow] (float or __half) in one pass: bilinear resize of the float
// image, optional BGR->RGB swap, (x - mean) / std, HWC -> CHW. One thread per output pixel. align_corners=false by
// default. mean and inv_std are per output (RGB) channel, in 0..255 pixel units.
#pragma once

#include "common.cuh"

namespace segrt {
namespace cuda {

struct Normalize {
  float mean[3];
  float inv_std[3];
};

template <typename T>
__global__ void preprocess_kernel(const uint8_t* __restrict__ img, T* __restrict__ out, int h, int w, int oh, int ow,
                                  float scale_y, float scale_x, Normalize norm, bool bgr, bool align_corners) {
  const int64_t plane = static_cast<int64_t>(oh) * ow;
  for (int64_t i = global_index(); i < plane; i += global_stride()) {
    const int x = static_cast<int>(i % ow);
    const int y = static_cast<int>(i / ow);
    const DevTap tx = dev_tap(x, w, scale_x, align_corners);
    const DevTap ty = dev_tap(y, h, scale_y, align_corners);
    const uint8_t* p00 = img + (static_cast<int64_t>(ty.i0) * w + tx.i0) * 3;
    const uint8_t* p01 = img + (static_cast<int64_t>(ty.i0) * w + tx.i1) * 3;
    const uint8_t* p10 = img + (static_cast<int64_t>(ty.i1) * w + tx.i0) * 3;
    const uint8_t* p11 = img + (static_cast<int64_t>(ty.i1) * w + tx.i1) * 3;
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const int s = bgr ? 2 - c : c;
      const float top = static_cast<float>(p00[s]) * tx.w0 + static_cast<float>(p01[s]) * tx.w1;
      const float bot = static_cast<float>(p10[s]) * tx.w0 + static_cast<float>(p11[s]) * tx.w1;
      const float v = top * ty.w0 + bot * ty.w1;
      out[c * plane + i] = from_float<T>((v - norm.mean[c]) * norm.inv_std[c]);
    }
  }
}

}  // namespace cuda
}  // namespace segrt
