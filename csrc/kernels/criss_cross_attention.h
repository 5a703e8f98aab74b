// Criss-cross attention (CCNet / mmcv CrissCrossAttention, the op only), CPU body. Exact semantics:
// docs/criss_cross_attention.md. Q, K: [B, Cq, H, W], V: [B, C, H, W], all C-contiguous NCHW; out: [B, C, H, W];
// lse: [B, H, W] (log-sum-exp of each pixel's H + W - 1 energies, saved for the backward pass).
//
// Two phases, each a set of small dense matrix products with register-tiled micro-kernels
// (criss_cross_attention_gemm.h; bodies in criss_cross_attention_rows.h):
// * column phase, one task per (batch, chunk of L = 16 float / 8 double image columns): each lane is one column j and
//   every product an H x H matrix product of that column (E = Q^T K over Cq, out = V A^T over H, and in the backward
//   dA = G^T V, dq = K dE^T, dk = Q dE, dv = G A). The last chunk is [W - L, W) (it overlaps the one before and
//   writes the same values); maps narrower than L run on zero-padded copies.
// * row phase, one task per (batch, image row i), lanes along the row: the W x W products of the row branch.
// Forward joins the two branches like flash attention: the column phase keeps each pixel's max mh and sum sh and an
// unnormalized out; the row phase finishes the softmax (lse) and rescales. Backward recomputes the weights from lse:
// the column phase writes dq, dk, dv (column share), the row phase adds the row share; no scatter, no atomics, and
// nothing of size [B, H, W, H + W] exists (scratch per thread: O(H * H * L + C * W)).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

// Helpers that take or return 64-byte vectors are always inlined: no vector crosses a call (no ABI question).
#define SEGRT_CCA_INLINE inline __attribute__((always_inline))

namespace segrt {
namespace cca {

template <typename T>
struct VecT;
template <>
struct VecT<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VecT<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <typename T>
using vec_t = typename VecT<T>::type;
typedef int32_t ivec_t __attribute__((vector_size(64)));
template <typename T>
constexpr int lanes() {
  return 64 / sizeof(T);
}

constexpr int64_t kPB = 64;  // channels per packed block of the energy products

struct Dims {
  int64_t Cq, C, H, W, Wp;  // Wp: W rounded up to 16 (row pitch of the row-phase scratch)
  int64_t HW() const { return H * W; }
};

// A column chunk of one batch: vector (c, i) at p + c*ps + i*rs.
template <typename T>
struct View {
  T* p;
  int64_t ps, rs;
};

// Per-thread scratch of the row phase.
template <typename T>
struct RowScratch {
  std::vector<T> Et, dAt, Tt, Ta, X, S, st;
  explicit RowScratch(const Dims& d)
      : Et(d.W * d.Wp), dAt(d.W * d.Wp), Tt(d.W * d.Wp), Ta(d.W * d.Wp), X(std::max(d.C, d.Cq) * d.Wp),
        S(std::max(d.C, d.Cq) * d.Wp), st(4 * d.Wp) {}
};

}  // namespace cca
}  // namespace segrt

#define SEGRT_CCA_MR 2
#define SEGRT_CCA_NR 2
#define SEGRT_CCA_ISA base
#include "criss_cross_attention_gemm.h"  // baseline ISA
#include "criss_cross_attention_rows.h"
#undef SEGRT_CCA_ISA

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SEGRT_CCA_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SEGRT_CCA_ISA avx2
#include "criss_cross_attention_gemm.h"  // AVX2 + FMA
#include "criss_cross_attention_rows.h"
#undef SEGRT_CCA_ISA
#pragma GCC pop_options
#undef SEGRT_CCA_MR
#undef SEGRT_CCA_NR
#define SEGRT_CCA_MR 4
#define SEGRT_CCA_NR 4
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=512")
#define SEGRT_CCA_ISA avx512
#include "criss_cross_attention_gemm.h"  // AVX-512
#include "criss_cross_attention_rows.h"
#undef SEGRT_CCA_ISA
#pragma GCC pop_options
#endif
#undef SEGRT_CCA_MR
#undef SEGRT_CCA_NR

namespace segrt {
namespace cca {

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

inline Dims make_dims(int64_t cq, int64_t c, int64_t h, int64_t w) { return Dims{cq, c, h, w, (w + 15) / 16 * 16}; }

// Column chunks of a batch: ceil(W / L), or one zero-padded chunk when W < L.
template <typename T>
inline int64_t n_chunks(int64_t W) {
  return W >= lanes<T>() ? (W + lanes<T>() - 1) / lanes<T>() : 1;
}

// Per-thread scratch of the column phase; with W < L also zero-padded [c][i][L] copies of the chunk's planes.
template <typename T>
struct ColScratch {
  std::vector<T> E, dA, px, py, pad;
  ColScratch(const Dims& d, bool backward) {
    const int64_t HL = d.H * lanes<T>(), pb = std::min(kPB, std::max(d.C, d.Cq));
    E.resize(d.H * HL);
    dA.resize(backward ? d.H * HL : 0);
    px.resize(pb * HL);
    py.resize(pb * HL);
    if (d.W < lanes<T>()) pad.resize((5 * d.Cq + 3 * d.C + 2) * HL);
  }
  // The chunk of planes x (nc of them) as a View: in place, or copied to pad at *off (then *off advances).
  View<T> view(T* x, int64_t nc, const Dims& d, int64_t j0, int64_t* off, bool copy_in) {
    constexpr int L = lanes<T>();
    if (pad.empty()) return View<T>{x + j0, d.HW(), d.W};
    T* p = pad.data() + *off;
    *off += nc * d.H * L;
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t i = 0; i < d.H; ++i)
        for (int64_t t = 0; t < L; ++t) p[(c * d.H + i) * L + t] = copy_in && t < d.W ? x[c * d.HW() + i * d.W + t] : T(0);
    return View<T>{p, d.H * L, L};
  }
  // Copies a padded view back to planes x (no-op in place).
  void unview(T* x, View<T> v, int64_t nc, const Dims& d) {
    if (pad.empty()) return;
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t i = 0; i < d.H; ++i) std::memcpy(x + c * d.HW() + i * d.W, v.p + c * v.ps + i * v.rs, d.W * sizeof(T));
  }
};

template <typename T>
inline View<const T> cv(View<T> v) {
  return View<const T>{v.p, v.ps, v.rs};
}

}  // namespace cca

// Forward: q, k [B, Cq, H, W], v [B, C, H, W] -> out [B, C, H, W], lse [B, H, W]. T = float or double.
// out may be null (lse only).
template <typename T>
void criss_cross_attention_forward_cpu(const T* q, const T* k, const T* v, T* out, T* lse, int64_t B, int64_t Cq,
                                       int64_t C, int64_t H, int64_t W) {
  const cca::Dims d = cca::make_dims(Cq, C, H, W);
  const cca::Isa isa = cca::best_isa();
  const int64_t HW = H * W, nch = cca::n_chunks<T>(W), L = cca::lanes<T>();
  std::vector<T> sh(B * HW);  // the column branch's sums; its maxima go to lse
#pragma omp parallel if (cca::worth_threads(B, Cq, C, H, W))
  {
    {
      cca::ColScratch<T> cs(d, false);
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < B * nch; ++t) {
        const int64_t b = t / nch, j0 = std::min(t % nch * L, std::max<int64_t>(W - L, 0));
        int64_t off = 0;
        auto in = [&](const T* x, int64_t nc) { return cca::cv(cs.view(const_cast<T*>(x), nc, d, j0, &off, true)); };
        const auto vq = in(q + b * Cq * HW, Cq), vk = in(k + b * Cq * HW, Cq);
        const auto vv = out ? in(v + b * C * HW, C) : cca::View<const T>{nullptr, 0, 0};
        auto vo = out ? cs.view(out + b * C * HW, C, d, j0, &off, false) : cca::View<T>{nullptr, 0, 0};
        auto vm = cs.view(lse + b * HW, 1, d, j0, &off, false), vs = cs.view(sh.data() + b * HW, 1, d, j0, &off, false);
        SEGRT_CCA_DISPATCH(isa, col_forward<T>(vq, vk, vv, vo, vm, vs, d, cs.E.data(), cs.px.data(), cs.py.data()))
        if (out) cs.unview(out + b * C * HW, vo, C, d);
        cs.unview(lse + b * HW, vm, 1, d);
        cs.unview(sh.data() + b * HW, vs, 1, d);
      }
    }
    cca::RowScratch<T> rs(d);
#pragma omp for schedule(dynamic, 4)
    for (int64_t t = 0; t < B * H; ++t) {
      const int64_t b = t / H, i = t % H, o1 = b * Cq * HW, o2 = b * C * HW;
      SEGRT_CCA_DISPATCH(isa, row_forward<T>(q + o1, k + o1, v + o2, out ? out + o2 : nullptr, lse + b * HW,
                                             sh.data() + b * HW, lse + b * HW, i, d, rs))
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
  const int64_t HW = H * W, nch = cca::n_chunks<T>(W), L = cca::lanes<T>();
  std::vector<T> delta(B * HW), lse_buf(lse ? 0 : B * HW);
  if (!lse) criss_cross_attention_forward_cpu<T>(q, k, nullptr, nullptr, lse_buf.data(), B, Cq, C, H, W);
  const T* ls = lse ? lse : lse_buf.data();
#pragma omp parallel if (cca::worth_threads(B, Cq, C, H, W))
  {
#pragma omp for schedule(static)
    for (int64_t br = 0; br < B * H; ++br) {  // D[b, r, j] = sum_c g * out
      const int64_t b = br / H, r = br % H;
      T* dr = delta.data() + b * HW + r * W;
      std::fill(dr, dr + W, T(0));
      for (int64_t c = 0; c < C; ++c) {
        const T* gp = g + (b * C + c) * HW + r * W;
        const T* op = out + (b * C + c) * HW + r * W;
        for (int64_t j = 0; j < W; ++j) dr[j] += gp[j] * op[j];
      }
    }
    {
      cca::ColScratch<T> cs(d, true);
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < B * nch; ++t) {
        const int64_t b = t / nch, j0 = std::min(t % nch * L, std::max<int64_t>(W - L, 0)), o1 = b * Cq * HW,
                      o2 = b * C * HW;
        int64_t off = 0;
        auto in = [&](const T* x, int64_t nc) { return cca::cv(cs.view(const_cast<T*>(x), nc, d, j0, &off, true)); };
        const auto vq = in(q + o1, Cq), vk = in(k + o1, Cq), vv = in(v + o2, C), vg = in(g + o2, C);
        const auto vl = in(ls + b * HW, 1), vd = in(delta.data() + b * HW, 1);
        auto vdq = cs.view(gq + o1, Cq, d, j0, &off, false), vdk = cs.view(gk + o1, Cq, d, j0, &off, false);
        auto vdv = cs.view(gv + o2, C, d, j0, &off, false);
        SEGRT_CCA_DISPATCH(isa, col_backward<T>(vq, vk, vv, vg, vl, vd, vdq, vdk, vdv, d, cs.E.data(), cs.dA.data(),
                                                cs.px.data(), cs.py.data()))
        cs.unview(gq + o1, vdq, Cq, d);
        cs.unview(gk + o1, vdk, Cq, d);
        cs.unview(gv + o2, vdv, C, d);
      }
    }
    cca::RowScratch<T> rs(d);
#pragma omp for schedule(dynamic, 4)
    for (int64_t t = 0; t < B * H; ++t) {
      const int64_t b = t / H, i = t % H, o1 = b * Cq * HW, o2 = b * C * HW;
      SEGRT_CCA_DISPATCH(isa, row_backward<T>(q + o1, k + o1, v + o2, g + o2, ls + b * HW, delta.data() + b * HW,
                                              gq + o1, gk + o1, gv + o2, i, d, rs))
    }
  }
}

}  // namespace segrt

