// Bilinear resize of NCHW planes, CUDA body: one thread per output pixel (x fastest, so loads and stores coalesce).
// T is float or __half; arithmetic in float. align_corners=false by default.
#pragma once

#include "common.cuh"

namespace segrt {
namespace cuda {

template <typename T>
__global__ void resize_bilinear_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t planes, int h, int w,
                                       int oh, int ow, float scale_y, float scale_x, bool align_corners) {
  const int64_t total = planes * oh * ow;
  for (int64_t i = global_index(); i < total; i += global_stride()) {
    const int x = static_cast<int>(i % ow);
    const int64_t t = i / ow;
    const int y = static_cast<int>(t % oh);
    const int64_t p = t / oh;
    const DevTap tx = dev_tap(x, w, scale_x, align_corners);
    const DevTap ty = dev_tap(y, h, scale_y, align_corners);
    const T* r0 = in + (p * h + ty.i0) * w;
    const T* r1 = in + (p * h + ty.i1) * w;
    const float top = to_float(r0[tx.i0]) * tx.w0 + to_float(r0[tx.i1]) * tx.w1;
    const float bot = to_float(r1[tx.i0]) * tx.w0 + to_float(r1[tx.i1]) * tx.w1;
    out[i] = from_float<T>(top * ty.w0 + bot * ty.w1);
  }
}

}  // namespace cuda
}  // namespace segrt
