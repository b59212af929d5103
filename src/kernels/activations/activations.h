// Elementwise activations.
#pragma once

#include <cstdint>

namespace hyrax::kernels {

struct SwigluParams {
  const float* gate = nullptr;  // [T, C], row stride ldg
  int64_t ldg = 0;
  const float* up = nullptr;  // [T, C], row stride ldu
  int64_t ldu = 0;
  float* y = nullptr;  // [T, C], row stride ldy; may alias gate or up
  int64_t ldy = 0;
  int64_t T = 0, C = 0;
};

/// y = silu(gate) * up, silu(z) = z / (1 + exp(-z))
void swiglu_ref(const SwigluParams& p);
void swiglu(const SwigluParams& p);

}  // namespace hyrax::kernels
