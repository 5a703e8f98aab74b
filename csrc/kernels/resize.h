// Bilinear resize of NCHW float planes (forward and backward), CPU body.
// Same sampling as torch.nn.functional.interpolate(mode="bilinear", antialias=False); align_corners=false by default.
#pragma once

#include <omp.h>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#include "common.h"

namespace segrt {

// in: [planes, h, w] -> out: [planes, oh, ow]. Horizontal pass into a cached row, vertical blend of two cached rows.
inline void resize_bilinear_cpu(const float* in, float* out, int64_t planes, int64_t h, int64_t w, int64_t oh,
                                int64_t ow, bool align_corners) {
  const Taps tx(w, ow, align_corners), ty(h, oh, align_corners);
  const int64_t rows = planes * oh;
  const int nt = omp_get_max_threads();
  std::vector<float> scratch(static_cast<size_t>(nt) * 2 * ow);
#pragma omp parallel num_threads(nt)
  {
    int64_t r_begin, r_end;
    split_range(rows, omp_get_num_threads(), omp_get_thread_num(), &r_begin, &r_end);
    RowCache cache(scratch.data() + omp_get_thread_num() * 2 * ow, ow);
    auto fill = [&](int64_t key, float* dst) {
      lerp_gather(in + key * w, tx.i0.data(), tx.i1.data(), tx.w0.data(), tx.w1.data(), ow, dst);
    };
    for (int64_t r = r_begin; r < r_end; ++r) {
      const int64_t p = r / oh, y = r % oh;
      const int64_t k0 = p * h + ty.i0[y], k1 = p * h + ty.i1[y];
      const float* a = cache.get(k0, k1, fill);
      const float* b = cache.get(k1, k0, fill);
      const float wy0 = ty.w0[y], wy1 = ty.w1[y];
      float* __restrict o = out + r * ow;
      for (int64_t x = 0; x < ow; ++x) o[x] = a[x] * wy0 + b[x] * wy1;
    }
  }
}

// Gradient of resize_bilinear_cpu: grad_out [planes, oh, ow] -> grad_in [planes, h, w] (overwritten).
// Planes are independent, so threads split planes; within a plane the scatter is serial (deterministic).
inline void resize_bilinear_backward_cpu(const float* grad_out, float* grad_in, int64_t planes, int64_t h, int64_t w,
                                         int64_t oh, int64_t ow, bool align_corners) {
  const Taps tx(w, ow, align_corners), ty(h, oh, align_corners);
  const int nt = omp_get_max_threads();
  std::vector<float> scratch(static_cast<size_t>(nt) * w);
#pragma omp parallel num_threads(nt)
  {
    float* row = scratch.data() + omp_get_thread_num() * w;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      float* gi = grad_in + p * h * w;
      std::memset(gi, 0, sizeof(float) * h * w);
      for (int64_t y = 0; y < oh; ++y) {
        // Transpose of the horizontal pass into a temporary input-width row, then of the vertical blend.
        std::fill(row, row + w, 0.f);
        const float* g = grad_out + (p * oh + y) * ow;
        for (int64_t x = 0; x < ow; ++x) {
          row[tx.i0[x]] += g[x] * tx.w0[x];
          row[tx.i1[x]] += g[x] * tx.w1[x];
        }
        float* d0 = gi + ty.i0[y] * w;
        const float wy0 = ty.w0[y], wy1 = ty.w1[y];
        for (int64_t x = 0; x < w; ++x) d0[x] += row[x] * wy0;
        float* d1 = gi + ty.i1[y] * w;
        for (int64_t x = 0; x < w; ++x) d1[x] += row[x] * wy1;
      }
    }
  }
}

}  // namespace segrt
