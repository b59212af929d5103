// RMS normalization, plain and gated (Gated DeltaNet's output norm), over the last dimension.
#pragma once

#include <cstdint>

namespace hyrax::kernels {

struct RmsNormParams {
  const float* x = nullptr;  // [T, C], row stride ldx
  int64_t ldx = 0;
  const float* w = nullptr;  // [C]
  float* y = nullptr;        // [T, C], row stride ldy; may alias x
  int64_t ldy = 0;
  int64_t T = 0, C = 0;
  float eps = 1e-6f;
};

/// y = x / sqrt(mean(x²) + eps) * w
void rms_norm_ref(const RmsNormParams& p);
void rms_norm(const RmsNormParams& p);

struct GatedRmsNormParams {
  const float* x = nullptr;  // [T, H, D], row stride ldx between tokens
  int64_t ldx = 0;
  const float* gate = nullptr;  // [T, H, D], row stride ldg
  int64_t ldg = 0;
  const float* w = nullptr;  // [D], shared by all heads
  float* y = nullptr;        // [T, H, D], row stride ldy; may alias x
  int64_t ldy = 0;
  int64_t T = 0, H = 0, D = 0;
  float eps = 1e-5f;
};

/// Per head: y = x / sqrt(mean(x²) + eps) * w * silu(gate)
void gated_rms_norm_ref(const GatedRmsNormParams& p);
void gated_rms_norm(const GatedRmsNormParams& p);

}  // namespace hyrax::kernels
