// Criss-cross attention (CCNet / mmcv CrissCrossAttention, the op only), CPU body. Exact semantics:
// docs/criss_cross_attention.md. Q, K: [B, Cq, H, W], V: [B, C, H, W], all C-contiguous NCHW; out: [B, C, H, W];
// lse: [B, H, W] (log-sum-exp of each pixel's H + W - 1 energies, saved for the backward pass).
//
// Work is split by (batch, image row r). For the W pixels (r, j) of a row, the H + W candidates are indexed p:
// p = k < H is pixel (k, j) (vertical branch; p = r is the masked centre) and p = H + l is pixel (r, l) (horizontal
// branch, centre included). A row keeps its scores in a [H + W, Wp] scratch with j fastest, so every inner loop runs
// over 16 neighbouring pixels of one row with unit stride in NCHW and vectorizes; no [B, H, W, H + W] tensor exists.
//
// Backward recomputes the weights from lse and never scatters: the task of row r gathers dQ for the pixels of row r
// (as their queries) and dK, dV for the same pixels (as keys/values of their own criss-cross, whose sources are
// exactly the pixels of their criss-cross), so rows are independent and run in parallel without atomics.
// The row bodies (criss_cross_attention_rows.h) are compiled for AVX-512, AVX2+FMA and baseline x86-64 and chosen at
// run time.
#pragma once

#include <omp.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace segrt {
namespace cca {

constexpr int kL = 16;    // pixels per vector chunk (one zmm / two ymm of float)
constexpr int64_t kCB = 16;  // channels per cache block of the score loops

struct Dims {
  int64_t Cq, C, H, W, Wp;  // Wp: W rounded up to kL (row pitch of the scratch)
  int64_t HW() const { return H * W; }
};

}  // namespace cca
}  // namespace segrt

#define SEGRT_CCA_TILE_R 2
#define SEGRT_CCA_TILE_N 2
#define SEGRT_CCA_ISA base
#include "criss_cross_attention_rows.h"  // baseline ISA
#undef SEGRT_CCA_ISA

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SEGRT_CCA_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SEGRT_CCA_ISA avx2
#include "criss_cross_attention_rows.h"  // AVX2 + FMA
#undef SEGRT_CCA_ISA
#pragma GCC pop_options
#undef SEGRT_CCA_TILE_R
#undef SEGRT_CCA_TILE_N
#define SEGRT_CCA_TILE_R 4
#define SEGRT_CCA_TILE_N 4
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=512")
#define SEGRT_CCA_ISA avx512
#include "criss_cross_attention_rows.h"  // AVX-512
#undef SEGRT_CCA_ISA
#pragma GCC pop_options
#endif
#undef SEGRT_CCA_TILE_R
#undef SEGRT_CCA_TILE_N

namespace segrt {
namespace cca {

constexpr int64_t kRowsPerTask = 8;

enum class Isa { kBase, kAvx2, kAvx512 };

inline Isa best_isa() {
#ifdef SEGRT_CCA_X86
  static const Isa isa = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")
                             ? Isa::kAvx512
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::kAvx2
                                                                                             : Isa::kBase;
  return isa;
#else
  return Isa::kBase;
#endif
}

// Calls cca::<namespace of isa>::call.
#ifdef SEGRT_CCA_X86
#define SEGRT_CCA_DISPATCH(isa, call)    \
  switch (isa) {                         \
    case cca::Isa::kAvx512:              \
      cca::avx512::call;                 \
      break;                             \
    case cca::Isa::kAvx2:                \
      cca::avx2::call;                   \
      break;                             \
    default:                             \
      cca::base::call;                   \
  }
#else
#define SEGRT_CCA_DISPATCH(isa, call) cca::base::call;
#endif

// Threads only pay off above a few milliseconds of work (and hurt on a loaded machine below that).
inline bool worth_threads(int64_t B, int64_t Cq, int64_t C, int64_t H, int64_t W) {
  return B * H * W * (H + W) * (Cq + C) > (int64_t{1} << 25);
}

inline Dims make_dims(int64_t cq, int64_t c, int64_t h, int64_t w) {
  return Dims{cq, c, h, w, (w + kL - 1) / kL * kL};
}

}  // namespace cca

// Forward: q, k [B, Cq, H, W], v [B, C, H, W] -> out [B, C, H, W], lse [B, H, W]. T = float or double.
// out may be null (lse only).
template <typename T>
void criss_cross_attention_forward_cpu(const T* q, const T* k, const T* v, T* out, T* lse, int64_t B, int64_t Cq,
                                       int64_t C, int64_t H, int64_t W) {
  const cca::Dims d = cca::make_dims(Cq, C, H, W);
  const cca::Isa isa = cca::best_isa();
  const int64_t HW = H * W, nrb = (H + cca::kRowsPerTask - 1) / cca::kRowsPerTask;
#pragma omp parallel if (cca::worth_threads(B, Cq, C, H, W))
  {
    std::vector<T> S(cca::kRowsPerTask * (H + W) * d.Wp), tmp(2 * d.Wp);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < B * nrb; ++t) {
      const int64_t b = t / nrb, r0 = t % nrb * cca::kRowsPerTask, R = std::min(cca::kRowsPerTask, H - r0);
      T* ob = out ? out + b * C * HW : nullptr;
      SEGRT_CCA_DISPATCH(isa, forward_block<T>(q + b * Cq * HW, k + b * Cq * HW, v + b * C * HW, ob, lse + b * HW, r0,
                                               R, d, S.data(), tmp.data()))
    }
  }
}

// Backward: gradients of out w.r.t. q, k, v given grad_out g, the forward's out and its lse (null: recomputed here,
// which costs one Cq-channel pass). Every element of gq, gk, gv is written (no zeroing needed).
template <typename T>
void criss_cross_attention_backward_cpu(const T* q, const T* k, const T* v, const T* out, const T* lse, const T* g,
                                        T* gq, T* gk, T* gv, int64_t B, int64_t Cq, int64_t C, int64_t H, int64_t W) {
  const cca::Dims d = cca::make_dims(Cq, C, H, W);
  const cca::Isa isa = cca::best_isa();
  const int64_t HW = H * W, nrb = (H + cca::kRowsPerTask - 1) / cca::kRowsPerTask;
  std::vector<T> delta(B * HW), lse_buf(lse ? 0 : B * HW);
  if (!lse) criss_cross_attention_forward_cpu<T>(q, k, nullptr, nullptr, lse_buf.data(), B, Cq, C, H, W);
  const T* ls = lse ? lse : lse_buf.data();
#pragma omp parallel if (cca::worth_threads(B, Cq, C, H, W))
  {
#pragma omp for schedule(static)
    for (int64_t br = 0; br < B * H; ++br) {
      const int64_t b = br / H;
      cca::base::delta_row(g + b * C * HW, out + b * C * HW, delta.data() + b * HW, br % H, d);
    }
    std::vector<T> SA(cca::kRowsPerTask * (H + W) * d.Wp), SB(SA.size());
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < B * nrb; ++t) {
      const int64_t b = t / nrb, r0 = t % nrb * cca::kRowsPerTask, R = std::min(cca::kRowsPerTask, H - r0);
      const int64_t o1 = b * Cq * HW, o2 = b * C * HW;
      SEGRT_CCA_DISPATCH(isa, backward_block<T>(q + o1, k + o1, v + o2, g + o2, ls + b * HW, delta.data() + b * HW,
                                                gq + o1, gk + o1, gv + o2, r0, R, d, SA.data(), SB.data()))
    }
  }
}

}  // namespace segrt

