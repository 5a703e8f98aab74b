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
// The hot loops are compiled twice (AVX2+FMA and baseline x86-64) and chosen at run time.
#ifdef SEGRT_CCA_ISA
// ---- inner pass: the per-row bodies, compiled in namespace SEGRT_CCA_ISA under the active target pragma ----
namespace segrt {
namespace cca {
namespace SEGRT_CCA_ISA {

// Calls f(j0, full_tag, n) for the chunks of [0, W): full chunks with a compile-time width, then the tail.
template <class F>
inline void chunks(int64_t W, F&& f) {
  int64_t j0 = 0;
  for (; j0 + kL <= W; j0 += kL) f(j0, std::true_type{}, kL);
  if (j0 < W) f(j0, std::false_type{}, static_cast<int>(W - j0));
}

// Calls f(i, nr_tag) over [0, n) in blocks of 4 then 1.
template <class F>
inline void blocks4(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) f(i, std::integral_constant<int, 4>{});
  for (; i < n; ++i) f(i, std::integral_constant<int, 1>{});
}

// out[q*os + t] = sum_c x[c*s + t] * y[q*ys + c*s + t] for q < NR, t < n: NR column dot products at once.
template <typename T, int NR, bool Full>
inline void dot_cols(T* __restrict out, int64_t os, const T* __restrict x, const T* __restrict y, int64_t ys,
                     int64_t s, int64_t nc, int n_) {
  const int n = Full ? kL : n_;
  T acc[NR][kL] = {};
  for (int64_t c = 0; c < nc; ++c) {
    const T* xc = x + c * s;
    const T* yc = y + c * s;
    for (int q = 0; q < NR; ++q) {
#pragma omp simd
      for (int t = 0; t < n; ++t) acc[q][t] += xc[t] * yc[q * ys + t];
    }
  }
  for (int q = 0; q < NR; ++q) {
    for (int t = 0; t < n; ++t) out[q * os + t] = acc[q][t];
  }
}

// out[q*os + t] = sum_c y[c*s + q] * x[c*s + t]: like dot_cols with a scalar (broadcast) second factor.
template <typename T, int NR, bool Full>
inline void dot_bcast(T* __restrict out, int64_t os, const T* __restrict x, const T* __restrict y, int64_t s,
                      int64_t nc, int n_) {
  const int n = Full ? kL : n_;
  T acc[NR][kL] = {};
  for (int64_t c = 0; c < nc; ++c) {
    const T* xc = x + c * s;
    for (int q = 0; q < NR; ++q) {
      const T yv = y[c * s + q];
#pragma omp simd
      for (int t = 0; t < n; ++t) acc[q][t] += yv * xc[t];
    }
  }
  for (int q = 0; q < NR; ++q) {
    for (int t = 0; t < n; ++t) out[q * os + t] = acc[q][t];
  }
}

// Scores of row r: S[k][j] = sum_c X[c,r,j] Y[c,k,j] and S[H+l][j] = sum_c Y[c,r,l] X[c,r,j] (X, Y: [nc, H, W]).
template <typename T>
inline void scores(T* __restrict S, const T* X, const T* Y, int64_t r, int64_t nc, const Dims& d) {
  const int64_t W = d.W, HW = d.HW(), Wp = d.Wp;
  const T* xr = X + r * W;
  chunks(W, [&](int64_t j0, auto full, int n) {
    constexpr bool F = decltype(full)::value;
    blocks4(d.H, [&](int64_t k, auto nr) {
      dot_cols<T, decltype(nr)::value, F>(S + k * Wp + j0, Wp, xr + j0, Y + k * W + j0, W, HW, nc, n);
    });
    blocks4(W, [&](int64_t l, auto nr) {
      dot_bcast<T, decltype(nr)::value, F>(S + (d.H + l) * Wp + j0, Wp, xr + j0, Y + r * W + l, HW, nc, n);
    });
  });
}

// out[c*HW + j] = sum_{k != r} S[k][j] Z[c,k,j] + sum_l S[H+l][j] Z[c,r,l] for c < nc (out: row r of [nc, H, W]).
template <typename T>
inline void gather(T* __restrict out, const T* __restrict S, const T* __restrict Z, int64_t r, int64_t nc,
                   const Dims& d) {
  const int64_t H = d.H, W = d.W, HW = d.HW(), Wp = d.Wp;
  blocks4(nc, [&](int64_t c0, auto nr) {
    constexpr int NR = decltype(nr)::value;
    const T* z = Z + c0 * HW;
    chunks(W, [&](int64_t j0, auto full, int n_) {
      const int n = decltype(full)::value ? kL : n_;
      T acc[NR][kL] = {};
      for (int64_t k = 0; k < H; ++k) {
        if (k == r) continue;
        const T* sk = S + k * Wp + j0;
        for (int q = 0; q < NR; ++q) {
          const T* zk = z + q * HW + k * W + j0;
#pragma omp simd
          for (int t = 0; t < n; ++t) acc[q][t] += sk[t] * zk[t];
        }
      }
      for (int64_t l = 0; l < W; ++l) {
        const T* sl = S + (H + l) * Wp + j0;
        for (int q = 0; q < NR; ++q) {
          const T zv = z[q * HW + r * W + l];
#pragma omp simd
          for (int t = 0; t < n; ++t) acc[q][t] += sl[t] * zv;
        }
      }
      for (int q = 0; q < NR; ++q) {
        T* o = out + (c0 + q) * HW + j0;
        for (int t = 0; t < n; ++t) o[t] = acc[q][t];
      }
    });
  });
}

// Forward of row r: out[:, r, :] and lse[r, :]. S: [(H + W) * Wp] scratch, tmp: [2 * Wp].
template <typename T>
void forward_row(const T* Q, const T* K, const T* V, T* out, T* lse, int64_t r, const Dims& d, T* S, T* tmp) {
  const int64_t W = d.W, Wp = d.Wp, P = d.H + d.W;
  scores(S, Q, K, r, d.Cq, d);
  T* m = tmp;
  T* sum = tmp + Wp;
  for (int64_t j = 0; j < W; ++j) {
    m[j] = -std::numeric_limits<T>::infinity();
    sum[j] = T(0);
  }
  for (int64_t p = 0; p < P; ++p) {
    if (p == r) continue;
    const T* s = S + p * Wp;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) m[j] = s[j] > m[j] ? s[j] : m[j];
  }
  for (int64_t p = 0; p < P; ++p) {
    T* s = S + p * Wp;
    if (p == r) {
      for (int64_t j = 0; j < W; ++j) s[j] = T(0);
      continue;
    }
    for (int64_t j = 0; j < W; ++j) {
      s[j] = std::exp(s[j] - m[j]);
      sum[j] += s[j];
    }
  }
  for (int64_t j = 0; j < W; ++j) {
    lse[r * W + j] = m[j] + std::log(sum[j]);
    sum[j] = T(1) / sum[j];
  }
  for (int64_t p = 0; p < P; ++p) {
    T* s = S + p * Wp;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) s[j] *= sum[j];
  }
  gather(out + r * W, S, V, r, d.C, d);
}

// D[r, j] = sum_c G[c,r,j] * O[c,r,j] (= sum_p A dA of pixel (r, j)).
template <typename T>
void delta_row(const T* G, const T* O, T* D, int64_t r, const Dims& d) {
  const int64_t W = d.W, HW = d.HW();
  T* dr = D + r * W;
  for (int64_t j = 0; j < W; ++j) dr[j] = T(0);
  for (int64_t c = 0; c < d.C; ++c) {
    const T* g = G + c * HW + r * W;
    const T* o = O + c * HW + r * W;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) dr[j] += g[j] * o[j];
  }
}

// Backward of row r: dQ, dK and dV of the pixels of row r. SA, SB: [(H + W) * Wp] scratch each.
template <typename T>
void backward_row(const T* Q, const T* K, const T* V, const T* G, const T* lse, const T* D, T* dQ, T* dK, T* dV,
                  int64_t r, const Dims& d, T* SA, T* SB) {
  const int64_t H = d.H, W = d.W, Wp = d.Wp;
  const T* lr = lse + r * W;
  const T* dr = D + r * W;
  // Pixels of row r as queries: dE[p][j] = A (dA - D), dQ = sum_p dE K.
  scores(SA, Q, K, r, d.Cq, d);
  scores(SB, G, V, r, d.C, d);
  for (int64_t p = 0; p < H + W; ++p) {
    T* e = SA + p * Wp;
    T* g = SB + p * Wp;
    if (p == r) {
      for (int64_t j = 0; j < W; ++j) g[j] = T(0);
      continue;
    }
    for (int64_t j = 0; j < W; ++j) g[j] = std::exp(e[j] - lr[j]) * (g[j] - dr[j]);
  }
  gather(dQ + r * W, SB, K, r, d.Cq, d);
  // Pixels of row r as keys/values: their sources are their own criss-cross; weights from the sources' lse and D.
  scores(SA, K, Q, r, d.Cq, d);
  scores(SB, V, G, r, d.C, d);
  for (int64_t k = 0; k < H; ++k) {
    T* e = SA + k * Wp;
    T* g = SB + k * Wp;
    if (k == r) {
      for (int64_t j = 0; j < W; ++j) e[j] = g[j] = T(0);
      continue;
    }
    const T* lk = lse + k * W;
    const T* dk = D + k * W;
    for (int64_t j = 0; j < W; ++j) {
      const T a = std::exp(e[j] - lk[j]);
      e[j] = a;
      g[j] = a * (g[j] - dk[j]);
    }
  }
  for (int64_t l = 0; l < W; ++l) {
    T* e = SA + (H + l) * Wp;
    T* g = SB + (H + l) * Wp;
    const T ls = lr[l], ds = dr[l];
    for (int64_t j = 0; j < W; ++j) {
      const T a = std::exp(e[j] - ls);
      e[j] = a;
      g[j] = a * (g[j] - ds);
    }
  }
  gather(dK + r * W, SB, Q, r, d.Cq, d);
  gather(dV + r * W, SA, G, r, d.C, d);
}

}  // namespace SEGRT_CCA_ISA
}  // namespace cca
}  // namespace segrt

#else
// ---- outer pass: includes, the two compilations of the row bodies, the OpenMP drivers ----
#ifndef SEGRT_KERNELS_CRISS_CROSS_ATTENTION_H
#define SEGRT_KERNELS_CRISS_CROSS_ATTENTION_H

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace segrt {
namespace cca {

constexpr int kL = 16;  // pixels per vector chunk (one zmm / two ymm of float)

struct Dims {
  int64_t Cq, C, H, W, Wp;  // Wp: W rounded up to kL (row pitch of the scratch)
  int64_t HW() const { return H * W; }
};

}  // namespace cca
}  // namespace segrt

#define SEGRT_CCA_ISA base
#include "criss_cross_attention.h"  // NOLINT(build/include): second pass, baseline ISA
#undef SEGRT_CCA_ISA

#if defined(__x86_64__) && defined(__GNUC__)
#define SEGRT_CCA_HAVE_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SEGRT_CCA_ISA avx2
#include "criss_cross_attention.h"  // NOLINT(build/include): third pass, AVX2 + FMA
#undef SEGRT_CCA_ISA
#pragma GCC pop_options
#endif

namespace segrt {
namespace cca {

inline bool use_avx2() {
#ifdef SEGRT_CCA_HAVE_AVX2
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

inline Dims make_dims(int64_t cq, int64_t c, int64_t h, int64_t w) {
  return Dims{cq, c, h, w, (w + kL - 1) / kL * kL};
}

}  // namespace cca

// Forward: q, k [B, Cq, H, W], v [B, C, H, W] -> out [B, C, H, W], lse [B, H, W]. T = float or double.
template <typename T>
void criss_cross_attention_forward_cpu(const T* q, const T* k, const T* v, T* out, T* lse, int64_t B, int64_t Cq,
                                       int64_t C, int64_t H, int64_t W) {
  const cca::Dims d = cca::make_dims(Cq, C, H, W);
  const bool avx2 = cca::use_avx2();
  const int64_t HW = H * W, rows = B * H;
#pragma omp parallel
  {
    std::vector<T> S((H + W) * d.Wp), tmp(2 * d.Wp);
#pragma omp for schedule(static)
    for (int64_t br = 0; br < rows; ++br) {
      const int64_t b = br / H, r = br % H;
      const T *qb = q + b * Cq * HW, *kb = k + b * Cq * HW, *vb = v + b * C * HW;
      T* ob = out + b * C * HW;
      T* lb = lse + b * HW;
#ifdef SEGRT_CCA_HAVE_AVX2
      if (avx2) {
        cca::avx2::forward_row(qb, kb, vb, ob, lb, r, d, S.data(),
                               tmp.data());
        continue;
      }
#endif
      cca::base::forward_row(qb, kb, vb, ob, lb, r, d, S.data(), tmp.data());
    }
  }
}

// Backward: gradients of out w.r.t. q, k, v given grad_out g, the forward's out and lse. Every element of gq, gk, gv
// is written (no zeroing needed).
template <typename T>
void criss_cross_attention_backward_cpu(const T* q, const T* k, const T* v, const T* out, const T* lse, const T* g,
                                        T* gq, T* gk, T* gv, int64_t B, int64_t Cq, int64_t C, int64_t H, int64_t W) {
  const cca::Dims d = cca::make_dims(Cq, C, H, W);
  const bool avx2 = cca::use_avx2();
  const int64_t HW = H * W, rows = B * H;
  std::vector<T> delta(B * HW);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t br = 0; br < rows; ++br) {
      const int64_t b = br / H, r = br % H;
      cca::base::delta_row(g + b * C * HW, out + b * C * HW, delta.data() + b * HW, r, d);
    }
    std::vector<T> SA((H + W) * d.Wp), SB((H + W) * d.Wp);
#pragma omp for schedule(static)
    for (int64_t br = 0; br < rows; ++br) {
      const int64_t b = br / H, r = br % H;
      const int64_t o1 = b * Cq * HW, o2 = b * C * HW;
#ifdef SEGRT_CCA_HAVE_AVX2
      if (avx2) {
        cca::avx2::backward_row(q + o1, k + o1, v + o2, g + o2, lse + b * HW, delta.data() + b * HW, gq + o1, gk + o1,
                                gv + o2, r, d, SA.data(), SB.data());
        continue;
      }
#endif
      cca::base::backward_row(q + o1, k + o1, v + o2, g + o2, lse + b * HW, delta.data() + b * HW, gq + o1, gk + o1,
                              gv + o2, r, d, SA.data(), SB.data());
    }
  }
}

}  // namespace segrt

#endif  // SEGRT_KERNELS_CRISS_CROSS_ATTENTION_H
#endif  // SEGRT_CCA_ISA
