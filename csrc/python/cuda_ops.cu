// CUDA launchers: raw device pointers + stream in, kernels from csrc/kernels/*.cuh, no framework.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/common.h"
#include "kernels/overlay.cuh"
#include "kernels/preprocess.cuh"
#include "kernels/resize.cuh"
#include "kernels/resize_argmax.cuh"
#include "python/cuda_ops.h"

namespace segrt {
namespace cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(b, 1 << 20)));  // grid-stride beyond that
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": CUDA launch failed: " + cudaGetErrorString(err));
  }
}

cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

void preprocess(uintptr_t img, int64_t h, int64_t w, uintptr_t out, int64_t oh, int64_t ow, const float mean[3],
                const float stdev[3], bool bgr, bool align_corners, bool half_out, uintptr_t stream) {
  Normalize norm;
  for (int c = 0; c < 3; ++c) {
    norm.mean[c] = mean[c];
    norm.inv_std[c] = 1.f / stdev[c];
  }
  const float sy = bilinear_scale(h, oh, align_corners), sx = bilinear_scale(w, ow, align_corners);
  const auto* src = reinterpret_cast<const uint8_t*>(img);
  const unsigned grid = blocks_for(oh * ow);
  if (half_out) {
    preprocess_kernel<__half><<<grid, kThreads, 0, as_stream(stream)>>>(
        src, reinterpret_cast<__half*>(out), int(h), int(w), int(oh), int(ow), sy, sx, norm, bgr, align_corners);
  } else {
    preprocess_kernel<float><<<grid, kThreads, 0, as_stream(stream)>>>(
        src, reinterpret_cast<float*>(out), int(h), int(w), int(oh), int(ow), sy, sx, norm, bgr, align_corners);
  }
  check_launch("preprocess");
}

void resize_bilinear(uintptr_t in, uintptr_t out, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                     bool align_corners, bool half, uintptr_t stream) {
  const float sy = bilinear_scale(h, oh, align_corners), sx = bilinear_scale(w, ow, align_corners);
  const unsigned grid = blocks_for(planes * oh * ow);
  if (half) {
    resize_bilinear_kernel<__half><<<grid, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const __half*>(in), reinterpret_cast<__half*>(out), planes, int(h), int(w), int(oh), int(ow),
        sy, sx, align_corners);
  } else {
    resize_bilinear_kernel<float><<<grid, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const float*>(in), reinterpret_cast<float*>(out), planes, int(h), int(w), int(oh), int(ow),
        sy, sx, align_corners);
  }
  check_launch("resize_bilinear");
}

void resize_bilinear_backward(uintptr_t grad_out, uintptr_t grad_in, int64_t planes, int64_t h, int64_t w, int64_t oh,
                              int64_t ow, bool align_corners, bool half, uintptr_t stream) {
  const float sy = bilinear_scale(h, oh, align_corners), sx = bilinear_scale(w, ow, align_corners);
  const unsigned grid = blocks_for(planes * h * w);
  if (half) {
    resize_bilinear_backward_kernel<__half><<<grid, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const __half*>(grad_out), reinterpret_cast<__half*>(grad_in), planes, int(h), int(w), int(oh),
        int(ow), sy, sx, align_corners);
  } else {
    resize_bilinear_backward_kernel<float><<<grid, kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<const float*>(grad_out), reinterpret_cast<float*>(grad_in), planes, int(h), int(w), int(oh),
        int(ow), sy, sx, align_corners);
  }
  check_launch("resize_bilinear_backward");
}

template <typename T>
void launch_argmax(uintptr_t logits, uintptr_t labels, uintptr_t scores, int64_t batch, int64_t channels, int64_t h,
                   int64_t w, int64_t oh, int64_t ow, bool align_corners, cudaStream_t stream) {
  const float sy = bilinear_scale(h, oh, align_corners), sx = bilinear_scale(w, ow, align_corners);
  const unsigned grid = blocks_for(batch * oh * ow);
  const auto* in = reinterpret_cast<const T*>(logits);
  auto* sc = reinterpret_cast<float*>(scores);
  if (channels <= 255) {
    resize_argmax_kernel<T, uint8_t><<<grid, kThreads, 0, stream>>>(in, reinterpret_cast<uint8_t*>(labels), sc, batch,
                                                                     int(channels), int(h), int(w), int(oh), int(ow),
                                                                     sy, sx, align_corners);
  } else {
    resize_argmax_kernel<T, int32_t><<<grid, kThreads, 0, stream>>>(in, reinterpret_cast<int32_t*>(labels), sc, batch,
                                                                     int(channels), int(h), int(w), int(oh), int(ow),
                                                                     sy, sx, align_corners);
  }
}

void resize_argmax(uintptr_t logits, uintptr_t labels, uintptr_t scores, int64_t batch, int64_t channels, int64_t h,
                   int64_t w, int64_t oh, int64_t ow, bool align_corners, bool half, uintptr_t stream) {
  if (half) {
    launch_argmax<__half>(logits, labels, scores, batch, channels, h, w, oh, ow, align_corners, as_stream(stream));
  } else {
    launch_argmax<float>(logits, labels, scores, batch, channels, h, w, oh, ow, align_corners, as_stream(stream));
  }
  check_launch("resize_argmax");
}

void overlay(uintptr_t frame, uintptr_t labels, bool int32_labels, int64_t pixels, uintptr_t palette, int64_t k,
             float alpha, uintptr_t out, uintptr_t stream) {
  const unsigned grid = blocks_for(pixels);
  const auto* f = reinterpret_cast<const uint8_t*>(frame);
  const auto* p = reinterpret_cast<const uint8_t*>(palette);
  auto* o = reinterpret_cast<uint8_t*>(out);
  if (int32_labels) {
    overlay_kernel<int32_t><<<grid, kThreads, 0, as_stream(stream)>>>(f, reinterpret_cast<const int32_t*>(labels),
                                                                       pixels, p, k, alpha, o);
  } else {
    overlay_kernel<uint8_t><<<grid, kThreads, 0, as_stream(stream)>>>(f, reinterpret_cast<const uint8_t*>(labels),
                                                                       pixels, p, k, alpha, o);
  }
  check_launch("overlay");
}

}  // namespace cuda
}  // namespace segrt
