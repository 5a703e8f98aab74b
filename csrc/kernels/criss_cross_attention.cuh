// Criss-cross attention, CUDA body (same semantics as criss_cross_attention.h, decomposed by image row; see
// docs/criss_cross_attention.md). T is float or __half; all arithmetic and lse / delta are float.
//
// One thread block per (batch b, image row r, tile of kTJ = 32 pixels of that row): lane = pixel, warp = a slice of
// the H + W candidates (scores) or of the channels (aggregation). The attention of the tile is produced kPC
// candidates at a time into a shared-memory tile [kPC][kTJ] and consumed from there, so no [B, H, W, H + W] tensor is
// ever stored. Loads along a row are coalesced across the lanes; the horizontal branch reads a broadcast value.
// Outputs are accumulated chunk by chunk in T (one block owns each output element; no atomics).
#pragma once

#include <math_constants.h>

#include "common.cuh"

namespace segrt {
namespace cuda {

constexpr int kTJ = 32;  // pixels per block (one per lane)
constexpr int kNW = 8;   // warps per block
constexpr int kPC = 64;  // candidates per shared-memory chunk

struct CcaDims {
  int Cq, C, H, W;
  int64_t HW;
};

// Score of candidate p for pixel (r, j): p < H: sum_c X[c,r,j] Y[c,p,j]; p >= H: sum_c Y[c,r,p-H] X[c,r,j].
template <typename T>
__device__ __forceinline__ float cc_dot(const T* __restrict__ X, const T* __restrict__ Y, int p, int r, int j, int nc,
                                        const CcaDims& d) {
  const T* x = X + static_cast<int64_t>(r) * d.W + j;
  const T* y = p < d.H ? Y + static_cast<int64_t>(p) * d.W + j : Y + static_cast<int64_t>(r) * d.W + (p - d.H);
  float acc = 0.f;
  for (int c = 0; c < nc; ++c) acc += to_float(x[c * d.HW]) * to_float(y[c * d.HW]);
  return acc;
}

// Value of channel c at candidate p of pixel (r, j): Z[c,p,j] (vertical) or Z[c,r,p-H] (horizontal).
template <typename T>
__device__ __forceinline__ float cc_val(const T* __restrict__ Z, int p, int r, int j, int c, const CcaDims& d) {
  const int64_t off = p < d.H ? static_cast<int64_t>(p) * d.W + j : static_cast<int64_t>(r) * d.W + (p - d.H);
  return to_float(Z[c * d.HW + off]);
}

// o[c*HW] (+)= sum_{pp < n} tile[pp][lane] * Z(p0 + pp, c) for the channels of this warp.
template <typename T>
__device__ __forceinline__ void cc_gather(T* __restrict__ o, const float (*tile)[kTJ], const T* __restrict__ Z, int p0,
                                          int n, int r, int j, int nc, int warp, int lane, const CcaDims& d) {
  for (int c = warp; c < nc; c += kNW) {
    float acc = 0.f;
    for (int pp = 0; pp < n; ++pp) acc += tile[pp][lane] * cc_val(Z, p0 + pp, r, j, c, d);
    T* dst = o + c * d.HW;
    *dst = from_float<T>(p0 == 0 ? acc : to_float(*dst) + acc);
  }
}

// Forward: out [B, C, H, W] (null: only lse), lse [B, H, W] (float). Grid (ceil(W / kTJ), H, B), block kNW * 32.
template <typename T>
__global__ void __launch_bounds__(kNW * 32) cca_forward_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                               const T* __restrict__ v, T* __restrict__ out,
                                                               float* __restrict__ lse, CcaDims d) {
  __shared__ float red_m[kNW][kTJ], red_s[kNW][kTJ];
  __shared__ float tile[kPC][kTJ];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int b = blockIdx.z, r = blockIdx.y, j = blockIdx.x * kTJ + lane;
  const bool valid = j < d.W;
  const int P = d.H + d.W;
  q += b * d.Cq * d.HW;
  k += b * d.Cq * d.HW;
  v += b * d.C * d.HW;
  // Online log-sum-exp over this warp's candidates, then across warps.
  float m = -CUDART_INF_F, s = 0.f;
  if (valid) {
    for (int p = warp; p < P; p += kNW) {
      if (p == r) continue;
      const float e = cc_dot(q, k, p, r, j, d.Cq, d);
      const float mn = fmaxf(m, e);
      s = s * __expf(m - mn) + __expf(e - mn);
      m = mn;
    }
  }
  red_m[warp][lane] = m;
  red_s[warp][lane] = s;
  __syncthreads();
  float M = -CUDART_INF_F, S = 0.f;
  for (int w = 0; w < kNW; ++w) M = fmaxf(M, red_m[w][lane]);
  for (int w = 0; w < kNW; ++w) S += red_m[w][lane] == -CUDART_INF_F ? 0.f : red_s[w][lane] * __expf(red_m[w][lane] - M);
  const float L = M + __logf(S);
  const int64_t pix = static_cast<int64_t>(r) * d.W + j;
  if (valid && warp == 0) lse[b * d.HW + pix] = L;
  if (out == nullptr) return;  // lse only (backward without a saved lse)
  T* o = out + b * d.C * d.HW + pix;
  for (int p0 = 0; p0 < P; p0 += kPC) {
    const int n = min(kPC, P - p0);
    for (int pp = warp; pp < kPC; pp += kNW) {
      const int p = p0 + pp;
      tile[pp][lane] = valid && p < P && p != r ? __expf(cc_dot(q, k, p, r, j, d.Cq, d) - L) : 0.f;
    }
    __syncthreads();
    if (valid) cc_gather(o, tile, v, p0, n, r, j, d.C, warp, lane, d);
    __syncthreads();
  }
}

// delta[b, i, j] = sum_c grad_out[b,c,i,j] * out[b,c,i,j] (grid-stride over the B*H*W pixels).
template <typename T>
__global__ void cca_delta_kernel(const T* __restrict__ g, const T* __restrict__ out, float* __restrict__ delta,
                                 int64_t batch, CcaDims d) {
  for (int64_t i = global_index(); i < batch * d.HW; i += global_stride()) {
    const int64_t b = i / d.HW, pix = i % d.HW;
    const T* gp = g + b * d.C * d.HW + pix;
    const T* op = out + b * d.C * d.HW + pix;
    float acc = 0.f;
    for (int c = 0; c < d.C; ++c) acc += to_float(gp[c * d.HW]) * to_float(op[c * d.HW]);
    delta[i] = acc;
  }
}

// dQ of the pixels of row r (as queries): dE = A (dA - delta), dQ = sum_p dE K(p).
template <typename T>
__global__ void __launch_bounds__(kNW * 32)
    cca_grad_q_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                      const T* __restrict__ g, const float* __restrict__ lse, const float* __restrict__ delta,
                      T* __restrict__ gq, CcaDims d) {
  __shared__ float tile[kPC][kTJ];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int b = blockIdx.z, r = blockIdx.y, j = blockIdx.x * kTJ + lane;
  const bool valid = j < d.W;
  const int P = d.H + d.W;
  const int64_t o1 = b * d.Cq * d.HW, o2 = b * d.C * d.HW, pix = static_cast<int64_t>(r) * d.W + j;
  q += o1;
  k += o1;
  v += o2;
  g += o2;
  const float L = valid ? lse[b * d.HW + pix] : 0.f, D = valid ? delta[b * d.HW + pix] : 0.f;
  for (int p0 = 0; p0 < P; p0 += kPC) {
    const int n = min(kPC, P - p0);
    for (int pp = warp; pp < kPC; pp += kNW) {
      const int p = p0 + pp;
      float de = 0.f;
      if (valid && p < P && p != r) {
        const float a = __expf(cc_dot(q, k, p, r, j, d.Cq, d) - L);
        de = a * (cc_dot(g, v, p, r, j, d.C, d) - D);
      }
      tile[pp][lane] = de;
    }
    __syncthreads();
    if (valid) cc_gather(gq + o1 + pix, tile, k, p0, n, r, j, d.Cq, warp, lane, d);
    __syncthreads();
  }
}

// dK and dV of the pixels of row r (as keys / values): their sources are the pixels of their own criss-cross, whose
// weights are recomputed from the sources' lse and delta. No scatter, no atomics.
template <typename T>
__global__ void __launch_bounds__(kNW * 32)
    cca_grad_kv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                       const T* __restrict__ g, const float* __restrict__ lse, const float* __restrict__ delta,
                       T* __restrict__ gk, T* __restrict__ gv, CcaDims d) {
  __shared__ float tile_a[kPC][kTJ], tile_d[kPC][kTJ];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int b = blockIdx.z, r = blockIdx.y, j = blockIdx.x * kTJ + lane;
  const bool valid = j < d.W;
  const int P = d.H + d.W;
  const int64_t o1 = b * d.Cq * d.HW, o2 = b * d.C * d.HW, pix = static_cast<int64_t>(r) * d.W + j;
  q += o1;
  k += o1;
  v += o2;
  g += o2;
  lse += b * d.HW;
  delta += b * d.HW;
  for (int p0 = 0; p0 < P; p0 += kPC) {
    const int n = min(kPC, P - p0);
    for (int pp = warp; pp < kPC; pp += kNW) {
      const int p = p0 + pp;
      float a = 0.f, de = 0.f;
      if (valid && p < P && p != r) {
        const int64_t src = p < d.H ? static_cast<int64_t>(p) * d.W + j : static_cast<int64_t>(r) * d.W + (p - d.H);
        a = __expf(cc_dot(k, q, p, r, j, d.Cq, d) - lse[src]);
        de = a * (cc_dot(v, g, p, r, j, d.C, d) - delta[src]);
      }
      tile_a[pp][lane] = a;
      tile_d[pp][lane] = de;
    }
    __syncthreads();
    if (valid) {
      cc_gather(gk + o1 + pix, tile_d, q, p0, n, r, j, d.Cq, warp, lane, d);
      cc_gather(gv + o2 + pix, tile_a, g, p0, n, r, j, d.C, warp, lane, d);
    }
    __syncthreads();
  }
}

}  // namespace cuda
}  // namespace segrt
