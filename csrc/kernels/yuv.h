// RGB -> YUV 4:2:0 (I420) for video encoders, CPU body: uint8 HxWx3 RGB -> Y plane HxW, U and V planes H/2 x W/2.
// BT.601 limited range ("TV", Y 16..235, U/V 16..240): the matrix FFmpeg's swscale uses by default and the one H.264
// decoders assume for untagged video, so files read back as they did through swscale. Each chroma sample is computed
// from the mean of its 2x2 block of RGB pixels. H and W must be even. Fixed point: 15 fractional bits, rounded.
#pragma once

#include <omp.h>

#include <cstdint>

#include "common.h"

namespace segrt {

namespace yuv601 {
// round(2^15 * coefficient), coefficients of BT.601 limited range on 0..255 RGB; each chroma row sums to zero.
constexpr int32_t kYR = 8414, kYG = 16519, kYB = 3208;
constexpr int32_t kUR = -4857, kUG = -9535, kUB = 14392;
constexpr int32_t kVR = 14392, kVG = -12052, kVB = -2340;
}  // namespace yuv601

// One pair of input rows -> two Y rows and one U and one V row.
SEGRT_TARGET_CLONES
inline void rgb_to_i420_rows(const uint8_t* __restrict r0, const uint8_t* __restrict r1, int64_t w,
                             uint8_t* __restrict y0, uint8_t* __restrict y1, uint8_t* __restrict u,
                             uint8_t* __restrict v) {
  using namespace yuv601;
  constexpr int32_t kYOff = (16 << 15) + (1 << 14), kCOff = (128 << 17) + (1 << 16);
  for (int64_t x = 0; x < w; ++x) {
    const int32_t ra = r0[3 * x], ga = r0[3 * x + 1], ba = r0[3 * x + 2];
    const int32_t rb = r1[3 * x], gb = r1[3 * x + 1], bb = r1[3 * x + 2];
    y0[x] = static_cast<uint8_t>((kYR * ra + kYG * ga + kYB * ba + kYOff) >> 15);
    y1[x] = static_cast<uint8_t>((kYR * rb + kYG * gb + kYB * bb + kYOff) >> 15);
  }
  for (int64_t x = 0; x < w / 2; ++x) {
    const uint8_t* a = r0 + 6 * x;
    const uint8_t* b = r1 + 6 * x;
    const int32_t sr = a[0] + a[3] + b[0] + b[3], sg = a[1] + a[4] + b[1] + b[4], sb = a[2] + a[5] + b[2] + b[5];
    u[x] = static_cast<uint8_t>((kUR * sr + kUG * sg + kUB * sb + kCOff) >> 17);
    v[x] = static_cast<uint8_t>((kVR * sr + kVG * sg + kVB * sb + kCOff) >> 17);
  }
}

// Planes may have row strides (e.g. an encoder frame's padded line size); rows of the RGB image are contiguous.
inline void rgb_to_i420_cpu(const uint8_t* rgb, int64_t h, int64_t w, uint8_t* y, int64_t y_stride, uint8_t* u,
                            int64_t u_stride, uint8_t* v, int64_t v_stride) {
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < h / 2; ++j) {
    const uint8_t* r0 = rgb + 2 * j * w * 3;
    rgb_to_i420_rows(r0, r0 + w * 3, w, y + 2 * j * y_stride, y + (2 * j + 1) * y_stride, u + j * u_stride,
                     v + j * v_stride);
  }
}

}  // namespace segrt
