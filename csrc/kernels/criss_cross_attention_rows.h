// Column and row phases of criss-cross attention on the CPU (see criss_cross_attention.h, which includes this file
// once per instruction set after criss_cross_attention_gemm.h). No include guard on purpose; do not include it
// directly. Column phase: one task per (batch, chunk of L image columns), every lane a column j, and each product an
// H x H matrix product per lane (lane_gemm). Row phase: one task per (batch, image row i), lanes along the row, and each
// product a W x W (or C x W) matrix product with broadcast scalars (bcast_gemm). Layout of a column chunk: View.
#ifndef SEGRT_CCA_ISA
#error "criss_cross_attention_rows.h is included by criss_cross_attention.h only"
#endif
namespace segrt {
namespace cca {
namespace SEGRT_CCA_ISA {

// dst[c][i][0..L) = chunk vector (c0 + c, i) of x, for c < nc, i < H (contiguous, for the channel loops).
template <typename T>
inline void pack(T* __restrict dst, View<const T> x, int64_t c0, int64_t nc, int64_t H) {
  constexpr int L = lanes<T>();
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t i = 0; i < H; ++i) vstore(dst + (c * H + i) * L, vload(x.p + (c0 + c) * x.ps + i * x.rs));
}

// E[i][k] = sum_c X[c,i] * Y[c,k] over nc channels (E: [H][H] vectors), channel blocks of kPB packed first.
template <typename T>
void energies(T* E, View<const T> x, View<const T> y, int64_t nc, int64_t H, T* px, T* py) {
  constexpr int L = lanes<T>();
  for (int64_t c0 = 0; c0 < nc; c0 += kPB) {
    const int64_t cn = std::min<int64_t>(kPB, nc - c0);
    pack(px, x, c0, cn, H);
    pack(py, y, c0, cn, H);
    lane_gemm<T>(H, H, cn, E, H * L, L, px, L, H * L, py, L, H * L, c0 > 0);
  }
}

// Forward, column phase of one chunk: the column branch of every pixel with its own max mh and sum sh
// (A = exp(E - mh), centre 0); o[c][i] = sum_k V[c,k] A[i][k], unnormalized (skipped when o.p is null).
template <typename T>
void col_forward(View<const T> q, View<const T> k, View<const T> v, View<T> o, View<T> mh, View<T> sh, const Dims& d,
                 T* E, T* px, T* py) {
  using V = vec_t<T>;
  constexpr int L = lanes<T>();
  const int64_t H = d.H;
  const T inf = std::numeric_limits<T>::infinity();
  energies(E, q, k, d.Cq, H, px, py);
  for (int64_t i = 0; i < H; ++i) {
    T* e = E + i * H * L;
    vstore(e + i * L, vset(-inf));
    V m = vset(-inf);
    for (int64_t kk = 0; kk < H; ++kk) m = vmax<T>(m, vload(e + kk * L));
    const V mu = m == vset(-inf) ? V{} : m;  // H = 1: no candidate, A = exp(-inf - 0) = 0
    V s{};
    for (int64_t kk = 0; kk < H; ++kk) {
      const V a = vexp(vload(e + kk * L) - mu);
      vstore(e + kk * L, a);
      s += a;
    }
    vstore(mh.p + i * mh.rs, m);
    vstore(sh.p + i * sh.rs, s);
  }
  if (o.p) lane_gemm<T>(d.C, H, H, o.p, o.ps, o.rs, v.p, v.ps, v.rs, E, H * L, L, false);
}

// Backward, column phase of one chunk: A, dE of the column branch; dq, dk, dv of the chunk written (not added).
template <typename T>
void col_backward(View<const T> q, View<const T> k, View<const T> v, View<const T> g, View<const T> lse,
                  View<const T> D, View<T> dq, View<T> dk, View<T> dv, const Dims& d, T* E, T* dA, T* px, T* py) {
  using V = vec_t<T>;
  constexpr int L = lanes<T>();
  const int64_t H = d.H, HL = H * L;
  energies(E, q, k, d.Cq, H, px, py);
  energies(dA, g, v, d.C, H, px, py);  // dA[i][k] = sum_c G[c,i] V[c,k]
  for (int64_t i = 0; i < H; ++i) {
    const V li = vload(lse.p + i * lse.rs), di = vload(D.p + i * D.rs);
    for (int64_t kk = 0; kk < H; ++kk) {
      T* e = E + i * HL + kk * L;
      T* da = dA + i * HL + kk * L;
      const V a = kk == i ? V{} : vexp(vload(e) - li);
      vstore(e, a);
      vstore(da, a * (vload(da) - di));
    }
  }
  lane_gemm<T>(d.Cq, H, H, dq.p, dq.ps, dq.rs, k.p, k.ps, k.rs, dA, HL, L, false);  // dq[c][i] = sum_k K[c,k] dE[i][k]
  lane_gemm<T>(d.Cq, H, H, dk.p, dk.ps, dk.rs, q.p, q.ps, q.rs, dA, L, HL, false);  // dk[c][k] = sum_i Q[c,i] dE[i][k]
  lane_gemm<T>(d.C, H, H, dv.p, dv.ps, dv.rs, g.p, g.ps, g.rs, E, L, HL, false);    // dv[c][k] = sum_i G[c,i] A[i][k]
}

// dst[c][0..Wp) = src[c*HW + 0..W) (row of nc planes), zero padded.
template <typename T>
inline void load_row(T* __restrict dst, const T* __restrict src, int64_t nc, const Dims& d) {
  for (int64_t c = 0; c < nc; ++c) {
    std::memcpy(dst + c * d.Wp, src + c * d.HW(), d.W * sizeof(T));
    std::fill(dst + c * d.Wp + d.W, dst + (c + 1) * d.Wp, T(0));
  }
}
template <typename T>
inline void store_row(T* __restrict dst, const T* __restrict src, int64_t nc, const Dims& d) {
  for (int64_t c = 0; c < nc; ++c) std::memcpy(dst + c * d.HW(), src + c * d.Wp, d.W * sizeof(T));
}

// Forward, row phase of image row i of one batch (Q, K, V, O: that batch's planes; mh, sh, lse: its [H, W] maps):
// joins the row branch with the column branch's (mh, sh), writes lse and finishes O's row (skipped when O is null).
template <typename T>
void row_forward(const T* Q, const T* K, const T* V_, T* O, const T* mh, const T* sh, T* lse, int64_t i,
                 const Dims& d, RowScratch<T>& s) {
  using V = vec_t<T>;
  constexpr int L = lanes<T>();
  const int64_t W = d.W, Wp = d.Wp, HW = d.HW(), Nv = Wp / L;
  const T inf = std::numeric_limits<T>::infinity();
  T *Et = s.Et.data(), *m0 = s.st.data(), *s0 = m0 + Wp, *al = s0 + Wp, *ls = al + Wp;
  load_row(s.X.data(), Q + i * W, d.Cq, d);
  bcast_gemm<T>(W, Nv, d.Cq, Et, Wp, K + i * W, 1, HW, s.X.data(), Wp, false);  // Et[l][j] = sum_c K[c,i,l] Q[c,i,j]
  std::memcpy(m0, mh + i * W, W * sizeof(T));
  std::memcpy(s0, sh + i * W, W * sizeof(T));
  std::fill(m0 + W, m0 + Wp, T(0));
  std::fill(s0 + W, s0 + Wp, T(0));
  for (int64_t n = 0; n < Nv; ++n) {
    const V mc = vload(m0 + n * L);
    V m = mc;
    for (int64_t l = 0; l < W; ++l) m = vmax<T>(m, vload(Et + l * Wp + n * L));
    V tot = vload(s0 + n * L) * vexp(mc - m);
    for (int64_t l = 0; l < W; ++l) tot += vexp(vload(Et + l * Wp + n * L) - m);
    V lv;
    for (int t = 0; t < L; ++t) lv[t] = m[t] + std::log(tot[t]);
    vstore(ls + n * L, lv);
    vstore(al + n * L, mc == vset(-inf) ? V{} : vexp(mc - lv));
    for (int64_t l = 0; l < W; ++l) vstore(Et + l * Wp + n * L, vexp(vload(Et + l * Wp + n * L) - lv));
  }
  std::memcpy(lse + i * W, ls, W * sizeof(T));
  if (!O) return;
  T* S = s.S.data();
  for (int64_t c = 0; c < d.C; ++c) {
    const T* o = O + c * HW + i * W;
    for (int64_t j = 0; j < W; ++j) S[c * Wp + j] = o[j] * al[j];
  }
  bcast_gemm<T>(d.C, Nv, W, S, Wp, V_ + i * W, HW, 1, Et, Wp, true);  // O[c,i,j] += sum_l V[c,i,l] A[l][j]
  store_row(O + i * W, S, d.C, d);
}

// Tt[j][l] = S[l][j] for j, l < W.
template <typename T>
inline void transpose(T* __restrict Tt, const T* __restrict S, const Dims& d) {
  for (int64_t l = 0; l < d.W; ++l)
    for (int64_t j = 0; j < d.W; ++j) Tt[j * d.Wp + l] = S[l * d.Wp + j];
}

// Backward, row phase of image row i of one batch: adds the row branch's share to dq, dk, dv of the row's pixels.
template <typename T>
void row_backward(const T* Q, const T* K, const T* V_, const T* G, const T* lse, const T* D, T* dQ, T* dK, T* dV,
                  int64_t i, const Dims& d, RowScratch<T>& s) {
  using V = vec_t<T>;
  constexpr int L = lanes<T>();
  const int64_t W = d.W, Wp = d.Wp, HW = d.HW(), Nv = Wp / L;
  T *Et = s.Et.data(), *dAt = s.dAt.data(), *X = s.X.data(), *S = s.S.data(), *ls = s.st.data(), *ds = ls + Wp;
  load_row(X, Q + i * W, d.Cq, d);
  bcast_gemm<T>(W, Nv, d.Cq, Et, Wp, K + i * W, 1, HW, X, Wp, false);  // Et[l][j] = sum_c K[c,i,l] Q[c,i,j]
  load_row(X, G + i * W, d.C, d);
  bcast_gemm<T>(W, Nv, d.C, dAt, Wp, V_ + i * W, 1, HW, X, Wp, false);  // dAt[l][j] = sum_c V[c,i,l] G[c,i,j]
  load_row(ls, lse + i * W, 1, d);
  load_row(ds, D + i * W, 1, d);
  for (int64_t l = 0; l < W; ++l) {
    for (int64_t n = 0; n < Nv; ++n) {
      T* e = Et + l * Wp + n * L;
      T* da = dAt + l * Wp + n * L;
      const V a = vexp(vload(e) - vload(ls + n * L));
      vstore(e, a);
      vstore(da, a * (vload(da) - vload(ds + n * L)));
    }
  }
  load_row(S, dQ + i * W, d.Cq, d);
  bcast_gemm<T>(d.Cq, Nv, W, S, Wp, K + i * W, HW, 1, dAt, Wp, true);  // dq[c,i,j] += sum_l K[c,i,l] dE[l][j]
  store_row(dQ + i * W, S, d.Cq, d);
  transpose(s.Tt.data(), dAt, d);
  transpose(s.Ta.data(), Et, d);
  load_row(S, dK + i * W, d.Cq, d);
  bcast_gemm<T>(d.Cq, Nv, W, S, Wp, Q + i * W, HW, 1, s.Tt.data(), Wp, true);  // dk[c,i,l] += sum_j Q[c,i,j] dE[l][j]
  store_row(dK + i * W, S, d.Cq, d);
  load_row(S, dV + i * W, d.C, d);
  bcast_gemm<T>(d.C, Nv, W, S, Wp, G + i * W, HW, 1, s.Ta.data(), Wp, true);  // dv[c,i,l] += sum_j G[c,i,j] A[l][j]
  store_row(dV + i * W, S, d.C, d);
}

}  // namespace SEGRT_CCA_ISA
}  // namespace cca
}  // namespace segrt
