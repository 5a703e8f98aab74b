// Label visualisation, CPU bodies: alpha-blend a palette over a frame, and plain colorize.
// A label outside [0, K) (e.g. 255 = ignore) leaves the frame pixel unchanged (overlay) or black (colorize).
#pragma once

#include <omp.h>

#include <cstdint>
#include <vector>

namespace segrt {

template <typename Label>
inline bool label_valid(Label l, int64_t k) {
  return static_cast<uint64_t>(static_cast<int64_t>(l)) < static_cast<uint64_t>(k);
}

// out = floor((1 - alpha) * frame + alpha * palette[label] + 0.5), per channel; `out` may alias `frame`.
template <typename Label>
void overlay_cpu(const uint8_t* frame, const Label* labels, int64_t pixels, const uint8_t* palette, int64_t k,
                 float alpha, uint8_t* out) {
  std::vector<float> tint(k * 3);  // alpha * palette, plus the rounding offset
  for (int64_t i = 0; i < k * 3; ++i) tint[i] = alpha * static_cast<float>(palette[i]) + 0.5f;
  const float keep = 1.f - alpha;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < pixels; ++i) {
    const Label l = labels[i];
    const uint8_t* f = frame + i * 3;
    uint8_t* o = out + i * 3;
    if (label_valid(l, k)) {
      const float* t = tint.data() + static_cast<int64_t>(l) * 3;
      for (int c = 0; c < 3; ++c) o[c] = static_cast<uint8_t>(static_cast<float>(f[c]) * keep + t[c]);
    } else {
      for (int c = 0; c < 3; ++c) o[c] = f[c];
    }
  }
}

// out = palette[label], black where the label is outside [0, K).
template <typename Label>
void colorize_cpu(const Label* labels, int64_t pixels, const uint8_t* palette, int64_t k, uint8_t* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < pixels; ++i) {
    const Label l = labels[i];
    uint8_t* o = out + i * 3;
    if (label_valid(l, k)) {
      const uint8_t* p = palette + static_cast<int64_t>(l) * 3;
      o[0] = p[0];
      o[1] = p[1];
      o[2] = p[2];
    } else {
      o[0] = o[1] = o[2] = 0;
    }
  }
}

}  // namespace segrt
