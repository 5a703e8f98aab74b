// Shared helpers for the CPU kernels: bilinear sampling coordinates.
//
// align_corners policy of the project: align_corners=false by default everywhere. The sampling below is the one of
// torch.nn.functional.interpolate(mode="bilinear", antialias=False) with no explicit scale_factor.
#pragma once

#include <algorithm>
#include <cmath>
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

// Scalar type of the sampling arithmetic (scale, source coordinate, weights) and of the accumulation for a storage
// type T: float for float (and narrower types), double for double, as PyTorch's opmath type.
template <typename T>
struct acc_type {
  using type = float;
};
template <>
struct acc_type<double> {
  using type = double;
};
template <typename T>
using acc_t = typename acc_type<T>::type;

// Ratio used to map an output coordinate back to the input grid (same arithmetic as PyTorch, in S).
template <typename S = float>
inline S bilinear_scale(int64_t in_size, int64_t out_size, bool align_corners) {
  if (align_corners) {
    return out_size > 1 ? static_cast<S>(in_size - 1) / static_cast<S>(out_size - 1) : S(0);
  }
  return static_cast<S>(in_size) / static_cast<S>(out_size);
}

// One output coordinate -> two input indices and their weights.
template <typename S>
struct BasicTap {
  int64_t i0, i1;
  S w0, w1;
};
using Tap = BasicTap<float>;

// PyTorch's compute_source_index_and_lambda: equal sizes copy; otherwise the index is floorf() of the (clamped)
// source coordinate -- a float floor also for double, as in ATen -- and the weight is clamped to [0, 1].
template <typename S = float>
inline BasicTap<S> bilinear_tap(int64_t dst, int64_t in_size, int64_t out_size, S scale, bool align_corners) {
  if (in_size == out_size) return BasicTap<S>{dst, dst, S(1), S(0)};
  S src = align_corners ? scale * static_cast<S>(dst) : scale * (static_cast<S>(dst) + S(0.5)) - S(0.5);
  if (src < S(0)) src = S(0);
  int64_t i0 = static_cast<int64_t>(std::floor(static_cast<float>(src)));
  if (i0 > in_size - 1) i0 = in_size - 1;
  const int64_t i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  const S l1 = std::min(std::max(src - static_cast<S>(i0), S(0)), S(1));
  return BasicTap<S>{i0, i1, S(1) - l1, l1};
}

// Per-axis table of taps, split into plain arrays so the inner loops vectorize.
template <typename S>
struct BasicTaps {
  std::vector<int64_t> i0, i1;
  std::vector<S> w0, w1;

  BasicTaps(int64_t in_size, int64_t out_size, bool align_corners)
      : i0(out_size), i1(out_size), w0(out_size), w1(out_size) {
    const S scale = bilinear_scale<S>(in_size, out_size, align_corners);
    for (int64_t d = 0; d < out_size; ++d) {
      const BasicTap<S> t = bilinear_tap<S>(d, in_size, out_size, scale, align_corners);
      i0[d] = t.i0;
      i1[d] = t.i1;
      w0[d] = t.w0;
      w1[d] = t.w1;
    }
  }
};
using Taps = BasicTaps<float>;

// Split [0, n) into nt contiguous parts; part t is [begin, end).
inline void split_range(int64_t n, int nt, int t, int64_t* begin, int64_t* end) {
  const int64_t base = n / nt, rem = n % nt;
  *begin = t * base + (t < rem ? t : rem);
  *end = *begin + base + (t < rem ? 1 : 0);
}

// Two cached rows keyed by an integer (e.g. plane * in_h + y). Bilinear upsampling reads every input row for several
// output rows in a row, so the horizontally interpolated rows are computed once and blended many times.
// `storage` holds 2 * row_len values owned by the caller: scratch is allocated before a parallel region, so that an
// allocation failure surfaces as an exception (MemoryError) instead of terminating inside OpenMP.
template <typename S>
class BasicRowCache {
 public:
  BasicRowCache(S* storage, int64_t row_len) : data_(storage), len_(row_len) {}

  // Returns the row for `key`, filling it with fill(key, dst) if needed without evicting the row of `keep`.
  template <class Fill>
  const S* get(int64_t key, int64_t keep, Fill&& fill) {
    for (int s = 0; s < 2; ++s) {
      if (key_[s] == key) return data_ + s * len_;
    }
    const int s = key_[0] == keep ? 1 : 0;
    S* dst = data_ + s * len_;
    fill(key, dst);
    key_[s] = key;
    return dst;
  }

 private:
  S* data_;
  int64_t len_;
  int64_t key_[2] = {-1, -1};
};
using RowCache = BasicRowCache<float>;

// dst[x] = src[i0[x]] * w0[x] + src[i1[x]] * w1[x] for x in [0, n): horizontal pass of a bilinear resize.
template <typename T, typename S>
inline void lerp_gather(const T* __restrict src, const int64_t* __restrict i0, const int64_t* __restrict i1,
                        const S* __restrict w0, const S* __restrict w1, int64_t n, S* __restrict dst) {
  for (int64_t x = 0; x < n; ++x) {
    dst[x] = static_cast<S>(src[i0[x]]) * w0[x] + static_cast<S>(src[i1[x]]) * w1[x];
  }
}

}  // namespace segrt
