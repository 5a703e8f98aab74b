// Bilinear resize of NCHW planes (forward and backward), CPU body, templated on the storage type T (float, double).
// Arithmetic in acc_t<T> (float for float, double for double), like PyTorch's opmath type.
// Same sampling as torch.nn.functional.interpolate(mode="bilinear", antialias=False); align_corners=false by default.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common.h"

namespace segrt {

// in: [planes, h, w] -> out: [planes, oh, ow]. Horizontal pass into a cached row, vertical blend of two cached rows.
template <typename T>
void resize_bilinear_cpu(const T* in, T* out, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners) {
  using S = acc_t<T>;
  const BasicTaps<S> tx(w, ow, align_corners), ty(h, oh, align_corners);
  const int64_t rows = planes * oh;
  const int nt = omp_get_max_threads();
  std::vector<S> scratch(static_cast<size_t>(nt) * 2 * ow);
#pragma omp parallel num_threads(nt)
  {
    int64_t r_begin, r_end;
    split_range(rows, omp_get_num_threads(), omp_get_thread_num(), &r_begin, &r_end);
    BasicRowCache<S> cache(scratch.data() + omp_get_thread_num() * 2 * ow, ow);
    auto fill = [&](int64_t key, S* dst) {
      lerp_gather(in + key * w, tx.i0.data(), tx.i1.data(), tx.w0.data(), tx.w1.data(), ow, dst);
    };
    for (int64_t r = r_begin; r < r_end; ++r) {
      const int64_t p = r / oh, y = r % oh;
      const int64_t k0 = p * h + ty.i0[y], k1 = p * h + ty.i1[y];
      const S* a = cache.get(k0, k1, fill);
      const S* b = cache.get(k1, k0, fill);
      const S wy0 = ty.w0[y], wy1 = ty.w1[y];
      T* __restrict o = out + r * ow;
      for (int64_t x = 0; x < ow; ++x) o[x] = static_cast<T>(a[x] * wy0 + b[x] * wy1);
    }
  }
}

// Gradient of resize_bilinear_cpu: grad_out [planes, oh, ow] -> grad_in [planes, h, w] (overwritten).
// Planes are independent, so threads split planes; within a plane the scatter is serial (deterministic).
// Accumulates in T itself, so T is float or double (its own accumulation type).
// The transpose of the horizontal pass is a scatter (slow, not vectorizable), the transpose of the vertical blend is
// a contiguous axpy of whole rows. When the input has fewer rows than the output (vertical upsampling), the vertical
// transpose runs first into h rows of width ow, so only h rows (not oh) go through the scatter; otherwise the
// horizontal scatter runs on each output row into one input-width row, which is blended into two input rows.
template <typename T>
void resize_bilinear_backward_cpu(const T* grad_out, T* grad_in, int64_t planes, int64_t h, int64_t w, int64_t oh,
                                  int64_t ow, bool align_corners) {
  using S = acc_t<T>;
  static_assert(std::is_same<S, T>::value, "resize_bilinear_backward_cpu: T must be float or double");
  const BasicTaps<S> tx(w, ow, align_corners), ty(h, oh, align_corners);
  const bool rows_first = h < oh;
  const int64_t per_thread = rows_first ? h * ow : w;
  const int nt = omp_get_max_threads();
  std::vector<S> scratch(static_cast<size_t>(nt) * per_thread);
  // dst[i0[x]] += src[x] * w0[x]; dst[i1[x]] += src[x] * w1[x]: transpose of one horizontal pass.
  auto scatter_row = [&](const S* __restrict src, S* __restrict dst) {
    for (int64_t x = 0; x < ow; ++x) {
      dst[tx.i0[x]] += src[x] * tx.w0[x];
      dst[tx.i1[x]] += src[x] * tx.w1[x];
    }
  };
  auto axpy = [](const S* __restrict src, S a, int64_t n, S* __restrict dst) {
    for (int64_t x = 0; x < n; ++x) dst[x] += src[x] * a;
  };
#pragma omp parallel num_threads(nt)
  {
    S* buf = scratch.data() + omp_get_thread_num() * per_thread;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      S* gi = grad_in + p * h * w;
      const T* gp = grad_out + p * oh * ow;
      std::fill(gi, gi + h * w, S(0));
      if (rows_first) {
        std::fill(buf, buf + h * ow, S(0));
        for (int64_t y = 0; y < oh; ++y) {
          axpy(gp + y * ow, ty.w0[y], ow, buf + ty.i0[y] * ow);
          axpy(gp + y * ow, ty.w1[y], ow, buf + ty.i1[y] * ow);
        }
        for (int64_t iy = 0; iy < h; ++iy) scatter_row(buf + iy * ow, gi + iy * w);
      } else {
        for (int64_t y = 0; y < oh; ++y) {
          std::fill(buf, buf + w, S(0));
          scatter_row(gp + y * ow, buf);
          axpy(buf, ty.w0[y], w, gi + ty.i0[y] * w);
          axpy(buf, ty.w1[y], w, gi + ty.i1[y] * w);
        }
      }
    }
  }
}

}  // namespace segrt
