// Fused bilinear resize + argmax over channels, CUDA body: one thread per output pixel, channels looped with a running
// max, so [C, oh, ow] never exists. Ties keep the first channel (torch.argmax). T is float or __half; Label is uint8_t
// or int32_t; scores (the winning interpolated logit, float) is optional. align_corners=false by default.
#pragma once

#include "common.cuh"

namespace segrt {
namespace cuda {

template <typename T, typename Label>
__global__ void resize_argmax_kernel(const T* __restrict__ logits, Label* __restrict__ labels,
                                     float* __restrict__ scores, int64_t batch, int channels, int h, int w, int oh,
                                     int ow, float scale_y, float scale_x, bool align_corners) {
  const int64_t total = batch * oh * ow;
  const int64_t plane = static_cast<int64_t>(h) * w;
  for (int64_t i = global_index(); i < total; i += global_stride()) {
    const int x = static_cast<int>(i % ow);
    const int64_t t = i / ow;
    const int y = static_cast<int>(t % oh);
    const int64_t b = t / oh;
    const DevTap tx = dev_tap(x, w, scale_x, align_corners);
    const DevTap ty = dev_tap(y, h, scale_y, align_corners);
    const T* src = logits + b * channels * plane;
    const int64_t o00 = static_cast<int64_t>(ty.i0) * w + tx.i0, o01 = static_cast<int64_t>(ty.i0) * w + tx.i1;
    const int64_t o10 = static_cast<int64_t>(ty.i1) * w + tx.i0, o11 = static_cast<int64_t>(ty.i1) * w + tx.i1;
    float best = 0.f;
    int arg = 0;
    for (int c = 0; c < channels; ++c, src += plane) {
      const float top = to_float(src[o00]) * tx.w0 + to_float(src[o01]) * tx.w1;
      const float bot = to_float(src[o10]) * tx.w0 + to_float(src[o11]) * tx.w1;
      const float v = top * ty.w0 + bot * ty.w1;
      if (c == 0 || v > best) {
        best = v;
        arg = c;
      }
    }
    labels[i] = static_cast<Label>(arg);
    if (scores != nullptr) scores[i] = best;
  }
}

}  // namespace cuda
}  // namespace segrt
