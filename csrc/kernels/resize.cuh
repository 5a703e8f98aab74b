// Bilinear resize of NCHW planes, CUDA body: one thread per output pixel (x fastest, so loads and stores coalesce).
// T is float or __half; arithmetic in float. align_corners=false by default.
// Backward: a gather, one thread per input pixel summing the output pixels whose taps touch it (no atomics, so the
// result is deterministic); float accumulation for float and half gradients.
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

// First output index d in [0, out) with dev_tap(d).i0 >= target (out if none). i0 is non-decreasing in d, so `guess`
// only decides how far the two walks go; the result is exact for any guess.
__device__ __forceinline__ int first_tap_at_least(int target, int guess, int in_size, int out_size, float scale,
                                                  bool align_corners) {
  int d = min(max(guess, 0), out_size);
  while (d > 0 && dev_tap(d - 1, in_size, scale, align_corners).i0 >= target) --d;
  while (d < out_size && dev_tap(d, in_size, scale, align_corners).i0 < target) ++d;
  return d;
}

// Output indices [*lo, *hi) that read input index i (as i0 or i1): those with i - 1 <= i0(d) <= i.
__device__ __forceinline__ void touching_range(int i, int in_size, int out_size, float scale, bool align_corners,
                                               int* lo, int* hi) {
  // Every d has i0(d) >= i - 1 when i <= 1. Estimate of the first d with src(d) >= t, inverting
  // src = scale * (d + 0.5) - 0.5 (or scale * d).
  auto guess = [&](int t) -> int {
    if (!(scale > 0.f)) return 0;
    const float d = align_corners ? static_cast<float>(t) / scale : (static_cast<float>(t) + 0.5f) / scale - 0.5f;
    return static_cast<int>(fminf(fmaxf(ceilf(d), 0.f), static_cast<float>(out_size)));
  };
  *lo = i <= 1 ? 0 : first_tap_at_least(i - 1, guess(i - 1), in_size, out_size, scale, align_corners);
  *hi = i >= in_size - 1 ? out_size : first_tap_at_least(i + 1, guess(i + 1), in_size, out_size, scale, align_corners);
}

// Weight of input index i in output index d (both taps may name i, at the border or for equal sizes).
__device__ __forceinline__ float tap_weight(int d, int i, int in_size, float scale, bool align_corners) {
  const DevTap t = dev_tap(d, in_size, scale, align_corners);
  return (t.i0 == i ? t.w0 : 0.f) + (t.i1 == i ? t.w1 : 0.f);
}

// grad_out [planes, oh, ow] -> grad_in [planes, h, w] (every element written): one thread per input pixel.
template <typename T>
__global__ void resize_bilinear_backward_kernel(const T* __restrict__ grad_out, T* __restrict__ grad_in,
                                                int64_t planes, int h, int w, int oh, int ow, float scale_y,
                                                float scale_x, bool align_corners) {
  const int64_t total = planes * h * w;
  for (int64_t i = global_index(); i < total; i += global_stride()) {
    const int ix = static_cast<int>(i % w);
    const int64_t t = i / w;
    const int iy = static_cast<int>(t % h);
    const int64_t p = t / h;
    int y0, y1, x0, x1;
    touching_range(iy, h, oh, scale_y, align_corners, &y0, &y1);
    touching_range(ix, w, ow, scale_x, align_corners, &x0, &x1);
    const T* g = grad_out + p * oh * ow;
    float acc = 0.f;
    for (int y = y0; y < y1; ++y) {
      const float wy = tap_weight(y, iy, h, scale_y, align_corners);
      if (wy == 0.f) continue;
      const T* row = g + static_cast<int64_t>(y) * ow;
      float racc = 0.f;
      for (int x = x0; x < x1; ++x) racc += tap_weight(x, ix, w, scale_x, align_corners) * to_float(row[x]);
      acc += wy * racc;
    }
    grad_in[i] = from_float<T>(acc);
  }
}

}  // namespace cuda
}  // namespace segrt
