// Shared helpers for the CPU kernels: bilinear sampling coordinates.
//
// align_corners policy of the project: align_corners=false by default everywhere. The sampling below is the one of
// torch.nn.functional.interpolate(mode="bilinear", antialias=False) with no explicit scale_factor.
#pragma once

#include <cstdint>
#include <vector>

// Hot loops are compiled for AVX2 and for the baseline ISA and dispatched at load time (GCC/Clang on x86-64 Linux),
// so one portable wheel still uses 8-wide vectors. FMA is left out on purpose: it would change rounding vs. PyTorch.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define SEGRT_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SEGRT_TARGET_CLONES
#endif

namespace segrt {

// Ratio used to map an output coordinate back to the input grid (same float arithmetic as PyTorch).
inline float bilinear_scale(int64_t in_size, int64_t out_size, bool align_corners) {
  if (align_corners) {
    return out_size > 1 ? static_cast<float>(in_size - 1) / static_cast<float>(out_size - 1) : 0.f;
  }
  return static_cast<float>(in_size) / static_cast<float>(out_size);
}

// One output coordinate -> two input indices and their weights.
struct Tap {
  int64_t i0, i1;
  float w0, w1;
};

inline Tap bilinear_tap(int64_t dst, int64_t in_size, float scale, bool align_corners) {
  float src = align_corners ? scale * static_cast<float>(dst) : scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (src < 0.f) src = 0.f;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in_size - 1) i0 = in_size - 1;
  const int64_t i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  const float l1 = src - static_cast<float>(i0);
  return Tap{i0, i1, 1.f - l1, l1};
}

// Per-axis table of taps, split into plain arrays so the inner loops vectorize.
struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> w0, w1;

  Taps(int64_t in_size, int64_t out_size, bool align_corners)
      : i0(out_size), i1(out_size), w0(out_size), w1(out_size) {
    const float scale = bilinear_scale(in_size, out_size, align_corners);
    for (int64_t d = 0; d < out_size; ++d) {
      const Tap t = bilinear_tap(d, in_size, scale, align_corners);
      i0[d] = t.i0;
      i1[d] = t.i1;
      w0[d] = t.w0;
      w1[d] = t.w1;
    }
  }
};

// Split [0, n) into nt contiguous parts; part t is [begin, end).
inline void split_range(int64_t n, int nt, int t, int64_t* begin, int64_t* end) {
  const int64_t base = n / nt, rem = n % nt;
  *begin = t * base + (t < rem ? t : rem);
  *end = *begin + base + (t < rem ? 1 : 0);
}

// Two cached rows keyed by an integer (e.g. plane * in_h + y). Bilinear upsampling reads every input row for several
// output rows in a row, so the horizontally interpolated rows are computed once and blended many times.
// `storage` holds 2 * row_len floats owned by the caller: scratch is allocated before a parallel region, so that an
// allocation failure surfaces as an exception (MemoryError) instead of terminating inside OpenMP.
class RowCache {
 public:
  RowCache(float* storage, int64_t row_len) : data_(storage), len_(row_len) {}

  // Returns the row for `key`, filling it with fill(key, dst) if needed without evicting the row of `keep`.
  template <class Fill>
  const float* get(int64_t key, int64_t keep, Fill&& fill) {
    for (int s = 0; s < 2; ++s) {
      if (key_[s] == key) return data_ + s * len_;
    }
    const int s = key_[0] == keep ? 1 : 0;
    float* dst = data_ + s * len_;
    fill(key, dst);
    key_[s] = key;
    return dst;
  }

 private:
  float* data_;
  int64_t len_;
  int64_t key_[2] = {-1, -1};
};

// dst[x] = src[i0[x]] * w0[x] + src[i1[x]] * w1[x] for x in [0, n): horizontal pass of a bilinear resize.
template <typename T>
inline void lerp_gather(const T* __restrict src, const int64_t* __restrict i0, const int64_t* __restrict i1,
                        const float* __restrict w0, const float* __restrict w1, int64_t n, float* __restrict dst) {
  for (int64_t x = 0; x < n; ++x) {
    dst[x] = static_cast<float>(src[i0[x]]) * w0[x] + static_cast<float>(src[i1[x]]) * w1[x];
  }
}

}  // namespace segrt
