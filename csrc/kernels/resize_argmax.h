// Fused bilinear resize + argmax over channels, CPU body.
//
// For logits [B, C, h, w] this writes labels [B, oh, ow] (and optionally the winning interpolated logit) without ever
// holding [C, oh, ow]. Each thread owns a contiguous block of output rows and caches, for the two input rows an
// output row needs, the horizontally interpolated rows of all C channels ([C, ow] each). An output row is then a
// vertical blend per channel folded into a running max / argmax row, which is contiguous and vectorizes. Ties keep
// the first channel, like torch.argmax (NaN logits are not treated specially). align_corners=false by default.
#pragma once

#include <omp.h>

#include <cstdint>
#include <vector>

#include "common.h"

namespace segrt {

// best[x], idx[x] = max / argmax over c of top[c][x] * wy0 + bot[c][x] * wy1 (rows of length ow, first max wins).
// The hot loop of the op: compiled twice (AVX2 and baseline) and picked at load time where the compiler can.
SEGRT_TARGET_CLONES
inline void argmax_blend_rows(const float* top, const float* bot, float wy0, float wy1, int64_t channels, int64_t ow,
                              float* __restrict best, int32_t* __restrict idx) {
  for (int64_t x = 0; x < ow; ++x) {
    best[x] = top[x] * wy0 + bot[x] * wy1;
    idx[x] = 0;
  }
  for (int64_t c = 1; c < channels; ++c) {
    const float* __restrict a = top + c * ow;
    const float* __restrict d = bot + c * ow;
    const int32_t ci = static_cast<int32_t>(c);
    for (int64_t x = 0; x < ow; ++x) {
      const float v = a[x] * wy0 + d[x] * wy1;
      const bool more = v > best[x];
      best[x] = more ? v : best[x];
      idx[x] = more ? ci : idx[x];
    }
  }
}

template <typename Label>
void resize_argmax_cpu(const float* logits, Label* labels, float* scores, int64_t batch, int64_t channels, int64_t h,
                       int64_t w, int64_t oh, int64_t ow, bool align_corners) {
  const Taps tx(w, ow, align_corners), ty(h, oh, align_corners);
  const int64_t rows = batch * oh;
  const int nt = omp_get_max_threads();
  const int64_t per_thread = (2 * channels + 1) * ow;  // two cached [C, ow] rows + running max row
  std::vector<float> scratch(static_cast<size_t>(nt) * per_thread);
  std::vector<int32_t> arg_scratch(static_cast<size_t>(nt) * ow);
#pragma omp parallel num_threads(nt)
  {
    int64_t r_begin, r_end;
    const int t = omp_get_thread_num();
    split_range(rows, omp_get_num_threads(), t, &r_begin, &r_end);
    float* mine = scratch.data() + t * per_thread;
    RowCache cache(mine, channels * ow);
    float* best = mine + 2 * channels * ow;
    int32_t* idx = arg_scratch.data() + t * ow;
    // key = b * h + y_in: all channels of input row y_in of image b, interpolated to width ow.
    auto fill = [&](int64_t key, float* dst) {
      const int64_t b = key / h, y = key % h;
      for (int64_t c = 0; c < channels; ++c) {
        const float* src = logits + ((b * channels + c) * h + y) * w;
        lerp_gather(src, tx.i0.data(), tx.i1.data(), tx.w0.data(), tx.w1.data(), ow, dst + c * ow);
      }
    };
    for (int64_t r = r_begin; r < r_end; ++r) {
      const int64_t b = r / oh, y = r % oh;
      const int64_t k0 = b * h + ty.i0[y], k1 = b * h + ty.i1[y];
      const float* top = cache.get(k0, k1, fill);
      const float* bot = cache.get(k1, k0, fill);
      const float wy0 = ty.w0[y], wy1 = ty.w1[y];
      argmax_blend_rows(top, bot, wy0, wy1, channels, ow, best, idx);
      Label* __restrict lab = labels + r * ow;
      for (int64_t x = 0; x < ow; ++x) lab[x] = static_cast<Label>(idx[x]);
      if (scores != nullptr) {
        float* __restrict s = scores + r * ow;
        for (int64_t x = 0; x < ow; ++x) s[x] = best[x];
      }
    }
  }
}

}  // namespace segrt
