// Vector type, exp and the two register-tiled micro-kernels of criss-cross attention on the CPU (see
// criss_cross_attention.h, which includes this file once per instruction set with SEGRT_CCA_ISA naming the namespace
// and SEGRT_CCA_MR / SEGRT_CCA_NR the register tile, under the matching `#pragma GCC target`). No include guard on
// purpose; do not include it directly. Vectors are GCC vector extensions of 64 bytes (16 floats, 8 doubles): one zmm
// on AVX-512, two ymm on AVX2, four xmm on baseline x86-64; the compiler keeps the accumulator tiles in registers.
#ifndef SEGRT_CCA_ISA
#error "criss_cross_attention_gemm.h is included by criss_cross_attention.h only"
#endif
namespace segrt {
namespace cca {
namespace SEGRT_CCA_ISA {

constexpr int kMR = SEGRT_CCA_MR;  // register tile: rows ...
constexpr int kNR = SEGRT_CCA_NR;  // ... times vectors

template <typename T>
SEGRT_CCA_INLINE vec_t<T> vload(const T* p) {
  vec_t<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
SEGRT_CCA_INLINE void vstore(T* p, vec_t<T> v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
SEGRT_CCA_INLINE vec_t<T> vset(T s) {
  return vec_t<T>{} + s;
}
template <typename T>
SEGRT_CCA_INLINE vec_t<T> vmax(vec_t<T> a, vec_t<T> b) {
  return a > b ? a : b;
}

// exp of every lane. float: Cephes expf (2^n times a polynomial on [-ln2/2, ln2/2], ~1 ulp; -inf and x < -87.3 give
// 0); double (the gradcheck path): libm lane by lane. A template so that no vector signature exists outside a target.
template <typename V>
SEGRT_CCA_INLINE V vexp(V x) {
  if constexpr (sizeof(x[0]) == 4) {
    using I = ivec_t;
    const V big = vset(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer kept in the low mantissa bits
    const V xc = x > vset(88.0f) ? vset(88.0f) : (x < vset(-87.5f) ? vset(-87.5f) : x);
    const V t = xc * 1.44269504088896341f + big;
    const V n = t - big;
    const V r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    V p = vset(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const V y = p * r * r + r + 1.0f;
    const I e = ((I)t - (I)big + 127) << 23;
    return x < vset(-87.3f) ? vset(0.0f) : y * (V)e;
  } else {
    for (int t = 0; t < 8; ++t) x[t] = std::exp(x[t]);
    return x;
  }
}

// Calls f(std::integral_constant<int, n>) for 1 <= n <= N.
template <int N, class F>
inline void with_n(int n, F&& f) {
  if constexpr (N > 1) {
    if (n == N) return f(std::integral_constant<int, N>{});
    return with_n<N - 1>(n, f);
  } else {
    f(std::integral_constant<int, 1>{});
  }
}

// Lane-batched product, every lane its own matrix product: C[m][n] (+)= sum_{p<P} X[m][p] * Y[n][p], where element
// (m, p) of X is the vector at x + m*xm + p*xp (likewise Y, C). A MR x NR tile loads MR + NR vectors per p.
template <typename T, int MR, int NR>
inline void lg_tile(T* __restrict c, int64_t cm, int64_t cn, const T* __restrict x, int64_t xm, int64_t xp,
                    const T* __restrict y, int64_t yn, int64_t yp, int64_t P, bool add) {
  using V = vec_t<T>;
  V acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) acc[m][n] = add ? vload(c + m * cm + n * cn) : V{};
  for (int64_t p = 0; p < P; ++p) {
    V xv[MR], yv[NR];
    for (int m = 0; m < MR; ++m) xv[m] = vload(x + m * xm + p * xp);
    for (int n = 0; n < NR; ++n) yv[n] = vload(y + n * yn + p * yp);
    for (int m = 0; m < MR; ++m)
      for (int n = 0; n < NR; ++n) acc[m][n] += xv[m] * yv[n];
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) vstore(c + m * cm + n * cn, acc[m][n]);
}

template <typename T>
void lane_gemm(int64_t M, int64_t N, int64_t P, T* c, int64_t cm, int64_t cn, const T* x, int64_t xm, int64_t xp,
               const T* y, int64_t yn, int64_t yp, bool add) {
  for (int64_t m0 = 0; m0 < M; m0 += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
    for (int64_t n0 = 0; n0 < N; n0 += kNR) {
      const int nr = static_cast<int>(std::min<int64_t>(kNR, N - n0));
      with_n<kMR>(mr, [&](auto mt) {
        with_n<kNR>(nr, [&](auto nt) {
          lg_tile<T, decltype(mt)::value, decltype(nt)::value>(c + m0 * cm + n0 * cn, cm, cn, x + m0 * xm, xm, xp,
                                                              y + n0 * yn, yn, yp, P, add);
        });
      });
    }
  }
}

// Broadcast product: C[m][n] (+)= sum_{p<P} a[m*am + p*ap] * B[p*bp + n] for the Nv vectors n of a row (C row m at
// c + m*cm). A MR x NR tile loads NR vectors and broadcasts MR scalars per p.
template <typename T, int MR, int NR>
inline void bg_tile(T* __restrict c, int64_t cm, const T* __restrict a, int64_t am, int64_t ap,
                    const T* __restrict b, int64_t bp, int64_t P, bool add) {
  using V = vec_t<T>;
  constexpr int L = lanes<T>();
  V acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) acc[m][n] = add ? vload(c + m * cm + n * L) : V{};
  for (int64_t p = 0; p < P; ++p) {
    V bv[NR];
    for (int n = 0; n < NR; ++n) bv[n] = vload(b + p * bp + n * L);
    for (int m = 0; m < MR; ++m) {
      const T s = a[m * am + p * ap];
      for (int n = 0; n < NR; ++n) acc[m][n] += s * bv[n];
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) vstore(c + m * cm + n * L, acc[m][n]);
}

template <typename T>
void bcast_gemm(int64_t M, int64_t Nv, int64_t P, T* c, int64_t cm, const T* a, int64_t am, int64_t ap, const T* b,
                int64_t bp, bool add) {
  constexpr int L = lanes<T>();
  for (int64_t n0 = 0; n0 < Nv; n0 += kNR) {
    const int nr = static_cast<int>(std::min<int64_t>(kNR, Nv - n0));
    for (int64_t m0 = 0; m0 < M; m0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      with_n<kMR>(mr, [&](auto mt) {
        with_n<kNR>(nr, [&](auto nt) {
          bg_tile<T, decltype(mt)::value, decltype(nt)::value>(c + m0 * cm + n0 * L, cm, a + m0 * am, am, ap,
                                                              b + n0 * L, bp, P, add);
        });
      });
    }
  }
}

}  // namespace SEGRT_CCA_ISA
}  // namespace cca
}  // namespace segrt
