// Preprocess, CPU body: uint8 HxWx3 image -> float [1, 3, oh, ow] in one pass:
// bilinear resize (as torch interpolate on the float image; align_corners=false by default), optional BGR->RGB swap,
// (x - mean) / std per channel and HWC -> CHW. mean/std are given per output (RGB) channel in 0..255 pixel units.
#pragma once

#include <omp.h>

#include <cstdint>
#include <vector>

#include "common.h"

namespace segrt {

inline void preprocess_cpu(const uint8_t* img, int64_t h, int64_t w, float* out, int64_t oh, int64_t ow,
                           const float mean[3], const float stdev[3], bool bgr, bool align_corners) {
  float scale[3], shift[3];
  int src_ch[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.f / stdev[c];
    shift[c] = mean[c];
    src_ch[c] = bgr ? 2 - c : c;
  }
  const int64_t plane = oh * ow;

  if (oh == h && ow == w) {  // no resize: de-interleave and normalize
#pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* __restrict src = img + y * w * 3;
      for (int c = 0; c < 3; ++c) {
        float* __restrict o = out + c * plane + y * ow;
        const uint8_t* __restrict s = src + src_ch[c];
        const float m = shift[c], k = scale[c];
        for (int64_t x = 0; x < w; ++x) o[x] = (static_cast<float>(s[3 * x]) - m) * k;
      }
    }
    return;
  }

  const Taps tx(w, ow, align_corners), ty(h, oh, align_corners);
  // Column taps in units of interleaved bytes, so one table serves all three channels.
  std::vector<int64_t> c0(ow), c1(ow);
  for (int64_t x = 0; x < ow; ++x) {
    c0[x] = tx.i0[x] * 3;
    c1[x] = tx.i1[x] * 3;
  }
  const int nt = omp_get_max_threads();
  // Per thread: two cached input rows, each resized horizontally into 3 planar rows (input channel order).
  std::vector<float> scratch(static_cast<size_t>(nt) * 6 * ow);
#pragma omp parallel num_threads(nt)
  {
    int64_t r_begin, r_end;
    split_range(oh, omp_get_num_threads(), omp_get_thread_num(), &r_begin, &r_end);
    RowCache cache(scratch.data() + omp_get_thread_num() * 6 * ow, 3 * ow);
    auto fill = [&](int64_t y, float* dst) {
      const uint8_t* src = img + y * w * 3;
      for (int c = 0; c < 3; ++c) {
        lerp_gather(src + c, c0.data(), c1.data(), tx.w0.data(), tx.w1.data(), ow, dst + c * ow);
      }
    };
    for (int64_t y = r_begin; y < r_end; ++y) {
      const float* top = cache.get(ty.i0[y], ty.i1[y], fill);
      const float* bot = cache.get(ty.i1[y], ty.i0[y], fill);
      const float wy0 = ty.w0[y], wy1 = ty.w1[y];
      for (int c = 0; c < 3; ++c) {
        const float* __restrict a = top + src_ch[c] * ow;
        const float* __restrict b = bot + src_ch[c] * ow;
        float* __restrict o = out + c * plane + y * ow;
        const float m = shift[c], k = scale[c];
        for (int64_t x = 0; x < ow; ++x) o[x] = (a[x] * wy0 + b[x] * wy1 - m) * k;
      }
    }
  }
}

}  // namespace segrt
