// Rotary position embedding, rotate-half convention (as in HF's apply_rotary_pos_emb), cos/sin in float32.
#pragma once

#include <cstdint>

namespace hyrax::kernels {

struct RopeParams {
  float* x = nullptr;  // [T, H, D], row stride ldx between tokens; rotated in place
  int64_t ldx = 0;
  const int32_t* pos = nullptr;  // [T] position of each token
  int64_t T = 0, H = 0, D = 0;   // D even
  float theta = 10000.0f;
};

/// inv_freq[i] = 1 / theta^(2i / D) (float32), angle = pos · inv_freq[i] (float32);
/// x[:D/2], x[D/2:] = x1·cos − x2·sin, x2·cos + x1·sin.
void rope_ref(const RopeParams& p);
void rope(const RopeParams& p);

}  // namespace hyrax::kernels
