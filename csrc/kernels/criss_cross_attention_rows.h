// Row bodies of criss-cross attention on the CPU (see criss_cross_attention.h, which includes this file once per
// instruction set with SEGRT_CCA_ISA naming the namespace and SEGRT_CCA_TILE_R / _N the register tile, under the
// matching `#pragma GCC target`). No include guard on purpose; do not include it directly.
#ifndef SEGRT_CCA_ISA
#error "criss_cross_attention_rows.h is included by criss_cross_attention.h only"
#endif
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

// Calls f(i, tag) over [0, n) in blocks of N (tag = N), then one by one (tag = 1).
template <int N, class F>
inline void blocks(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + N <= n; i += N) f(i, std::integral_constant<int, N>{});
  for (; i < n; ++i) f(i, std::integral_constant<int, 1>{});
}

constexpr int kR = SEGRT_CCA_TILE_R;  // register tile: image rows ...
constexpr int kN = SEGRT_CCA_TILE_N;  // ... times candidates or channels

// Vertical scores of a register tile: S[q*ss + kk*Wp + t] (+)= sum_c x[c*s + q*W + t] * y[c*s + kk*W + t].
// x: X rows r0.. of the chunk, y: Y rows k0.. of the chunk; every y load serves R rows, every x load NK candidates.
template <typename T, int R, int NK, bool Full>
inline void vscore(T* __restrict S, int64_t ss, int64_t Wp, const T* __restrict x, const T* __restrict y, int64_t W,
                   int64_t s, int64_t nc, int n_, bool add) {
  const int n = Full ? kL : n_;
  T acc[R][NK][kL] = {};
  if (add) {
    for (int q = 0; q < R; ++q)
      for (int kk = 0; kk < NK; ++kk)
        for (int t = 0; t < n; ++t) acc[q][kk][t] = S[q * ss + kk * Wp + t];
  }
  for (int64_t c = 0; c < nc; ++c) {
    const T* xc = x + c * s;
    const T* yc = y + c * s;
    for (int q = 0; q < R; ++q)
      for (int kk = 0; kk < NK; ++kk) {
#pragma omp simd
        for (int t = 0; t < n; ++t) acc[q][kk][t] += xc[q * W + t] * yc[kk * W + t];
      }
  }
  for (int q = 0; q < R; ++q)
    for (int kk = 0; kk < NK; ++kk)
      for (int t = 0; t < n; ++t) S[q * ss + kk * Wp + t] = acc[q][kk][t];
}

// Horizontal scores of one row: S[l*Wp + t] (+)= sum_c y[c*s + l] * x[c*s + t] for l < NL (y: Y[c, r, l0..]).
template <typename T, int NL, bool Full>
inline void hscore(T* __restrict S, int64_t Wp, const T* __restrict x, const T* __restrict y, int64_t s, int64_t nc,
                   int n_, bool add) {
  const int n = Full ? kL : n_;
  T acc[NL][kL] = {};
  if (add) {
    for (int l = 0; l < NL; ++l)
      for (int t = 0; t < n; ++t) acc[l][t] = S[l * Wp + t];
  }
  for (int64_t c = 0; c < nc; ++c) {
    const T* xc = x + c * s;
    for (int l = 0; l < NL; ++l) {
      const T yv = y[c * s + l];
#pragma omp simd
      for (int t = 0; t < n; ++t) acc[l][t] += yv * xc[t];
    }
  }
  for (int l = 0; l < NL; ++l)
    for (int t = 0; t < n; ++t) S[l * Wp + t] = acc[l][t];
}

// Scores of rows r0 .. r0+R-1 (scratch of row r0+q at S + q*ss): S[k][j] = sum_c X[c,r,j] Y[c,k,j] and
// S[H+l][j] = sum_c Y[c,r,l] X[c,r,j]. Channel blocks outermost so that their planes stay in L2.
template <typename T>
inline void scores(T* S, int64_t ss, const T* X, const T* Y, int64_t r0, int64_t R, int64_t nc, const Dims& d,
                   bool horizontal = true) {
  const int64_t H = d.H, W = d.W, HW = d.HW(), Wp = d.Wp;
  for (int64_t c0 = 0; c0 < nc; c0 += kCB) {
    const int64_t cn = std::min<int64_t>(kCB, nc - c0);
    const bool add = c0 > 0;
    const T* x = X + c0 * HW + r0 * W;
    const T* y = Y + c0 * HW;
    chunks(W, [&](int64_t j0, auto full, int n) {
      constexpr bool F = decltype(full)::value;
      blocks<kR>(R, [&](int64_t q0, auto rt) {
        blocks<kN>(H, [&](int64_t k0, auto nt) {
          vscore<T, decltype(rt)::value, decltype(nt)::value, F>(S + q0 * ss + k0 * Wp + j0, ss, Wp,
                                                                 x + q0 * W + j0, y + k0 * W + j0, W, HW, cn, n, add);
        });
      });
      for (int64_t q = 0; q < R && horizontal; ++q) {
        blocks<4>(W, [&](int64_t l0, auto lt) {
          hscore<T, decltype(lt)::value, F>(S + q * ss + (H + l0) * Wp + j0, Wp, x + q * W + j0,
                                            y + (r0 + q) * W + l0, HW, cn, n, add);
        });
      }
    });
  }
}

// Vertical part of the aggregation: o[cc*s + q*W + t] = sum_k S[q*ss + k*Wp + t] * z[cc*s + k*W + t].
template <typename T, int R, int NC, bool Full>
inline void vgather(T* __restrict o, const T* __restrict S, int64_t ss, int64_t Wp, const T* __restrict z, int64_t H,
                    int64_t W, int64_t s, int n_) {
  const int n = Full ? kL : n_;
  T acc[R][NC][kL] = {};
  for (int64_t k = 0; k < H; ++k) {
    for (int cc = 0; cc < NC; ++cc) {
      const T* zk = z + cc * s + k * W;
      for (int q = 0; q < R; ++q) {
        const T* sk = S + q * ss + k * Wp;
#pragma omp simd
        for (int t = 0; t < n; ++t) acc[q][cc][t] += sk[t] * zk[t];
      }
    }
  }
  for (int q = 0; q < R; ++q)
    for (int cc = 0; cc < NC; ++cc)
      for (int t = 0; t < n; ++t) o[cc * s + q * W + t] = acc[q][cc][t];
}

// Horizontal part for one row: o[cc*s + t] += sum_l S[l*Wp + t] * z[cc*s + l] (z: Z[c, r, 0..]).
template <typename T, int NC, bool Full>
inline void hgather(T* __restrict o, const T* __restrict S, int64_t Wp, const T* __restrict z, int64_t W, int64_t s,
                    int n_) {
  const int n = Full ? kL : n_;
  T acc[NC][kL];
  for (int cc = 0; cc < NC; ++cc)
    for (int t = 0; t < n; ++t) acc[cc][t] = o[cc * s + t];
  for (int64_t l = 0; l < W; ++l) {
    const T* sl = S + l * Wp;
    for (int cc = 0; cc < NC; ++cc) {
      const T zv = z[cc * s + l];
#pragma omp simd
      for (int t = 0; t < n; ++t) acc[cc][t] += sl[t] * zv;
    }
  }
  for (int cc = 0; cc < NC; ++cc)
    for (int t = 0; t < n; ++t) o[cc * s + t] = acc[cc][t];
}

// O[c, r, j] = sum_k S_r[k][j] Z[c,k,j] + sum_l S_r[H+l][j] Z[c,r,l] for rows r0 .. r0+R-1 and c < nc (O, Z: one
// batch's [nc, H, W]). S_r[r] (the masked centre) must be 0.
template <typename T>
inline void gather(T* O, const T* S, int64_t ss, const T* Z, int64_t r0, int64_t R, int64_t nc, const Dims& d) {
  const int64_t H = d.H, W = d.W, HW = d.HW(), Wp = d.Wp;
  blocks<kN>(nc, [&](int64_t c0, auto ct) {
    constexpr int NC = decltype(ct)::value;
    chunks(W, [&](int64_t j0, auto full, int n) {
      constexpr bool F = decltype(full)::value;
      blocks<kR>(R, [&](int64_t q0, auto rt) {
        vgather<T, decltype(rt)::value, NC, F>(O + c0 * HW + (r0 + q0) * W + j0, S + q0 * ss + j0, ss, Wp,
                                               Z + c0 * HW + j0, H, W, HW, n);
      });
      for (int64_t q = 0; q < R; ++q) {
        hgather<T, NC, F>(O + c0 * HW + (r0 + q) * W + j0, S + q * ss + H * Wp + j0, Wp, Z + c0 * HW + (r0 + q) * W,
                          W, HW, n);
      }
    });
  });
}

// Softmax of row r in place over the candidates p (p = r masked to 0); writes lse[r, :]. tmp: [2 * Wp].
template <typename T>
inline void softmax_row(T* __restrict S, T* __restrict lse, int64_t r, const Dims& d, T* __restrict tmp) {
  const int64_t W = d.W, Wp = d.Wp, P = d.H + d.W;
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
}

// Forward of rows r0 .. r0+R-1: out[:, r, :] (skipped when out is null) and lse[r, :].
// S: R * (H + W) * Wp scratch, tmp: 2 * Wp.
template <typename T>
void forward_block(const T* Q, const T* K, const T* V, T* out, T* lse, int64_t r0, int64_t R, const Dims& d, T* S,
                   T* tmp) {
  const int64_t ss = (d.H + d.W) * d.Wp;
  scores(S, ss, Q, K, r0, R, d.Cq, d);
  for (int64_t q = 0; q < R; ++q) softmax_row(S + q * ss, lse, r0 + q, d, tmp);
  if (out) gather(out, S, ss, V, r0, R, d.C, d);
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

// Backward of rows r0 .. r0+R-1: dQ, dK and dV of their pixels. SA, SB: R * (H + W) * Wp scratch each.
template <typename T>
void backward_block(const T* Q, const T* K, const T* V, const T* G, const T* lse, const T* D, T* dQ, T* dK, T* dV,
                    int64_t r0, int64_t R, const Dims& d, T* SA, T* SB) {
  const int64_t H = d.H, W = d.W, Wp = d.Wp, ss = (H + W) * Wp;
  // Pixels as queries: dE[p][j] = A (dA - D), dQ = sum_p dE K.
  scores(SA, ss, Q, K, r0, R, d.Cq, d);
  scores(SB, ss, G, V, r0, R, d.C, d);
  for (int64_t q = 0; q < R; ++q) {
    const int64_t r = r0 + q;
    const T* lr = lse + r * W;
    const T* dr = D + r * W;
    for (int64_t p = 0; p < H + W; ++p) {
      T* e = SA + q * ss + p * Wp;
      T* g = SB + q * ss + p * Wp;
      if (p == r) {
        for (int64_t j = 0; j < W; ++j) e[j] = g[j] = T(0);
        continue;
      }
      for (int64_t j = 0; j < W; ++j) {
        const T a = std::exp(e[j] - lr[j]);
        e[j] = a;
        g[j] = a * (g[j] - dr[j]);
      }
    }
  }
  gather(dQ, SB, ss, K, r0, R, d.Cq, d);
  // Pixels as keys/values: their sources are their own criss-cross. Within the row, the weights (A, dE) of source
  // (r, l) for key (r, j) are the query-side ones transposed; the column ones are recomputed from the sources' lse, D.
  for (int64_t q = 0; q < R; ++q) {
    for (T* S : {SA + q * ss + H * Wp, SB + q * ss + H * Wp}) {
      for (int64_t l = 1; l < W; ++l)
        for (int64_t j = 0; j < l; ++j) std::swap(S[l * Wp + j], S[j * Wp + l]);
    }
  }
  scores(SA, ss, K, Q, r0, R, d.Cq, d, false);
  scores(SB, ss, V, G, r0, R, d.C, d, false);
  for (int64_t q = 0; q < R; ++q) {
    const int64_t r = r0 + q;
    for (int64_t p = 0; p < H; ++p) {  // source (p, j)
      T* e = SA + q * ss + p * Wp;
      T* g = SB + q * ss + p * Wp;
      if (p == r) {
        for (int64_t j = 0; j < W; ++j) e[j] = g[j] = T(0);
        continue;
      }
      const T* ls = lse + p * W;
      const T* ds = D + p * W;
      for (int64_t j = 0; j < W; ++j) {
        const T a = std::exp(e[j] - ls[j]);
        e[j] = a;
        g[j] = a * (g[j] - ds[j]);
      }
    }
  }
  gather(dK, SB, ss, Q, r0, R, d.Cq, d);
  gather(dV, SA, ss, G, r0, R, d.C, d);
}

}  // namespace SEGRT_CCA_ISA
}  // namespace cca
}  // namespace segrt

