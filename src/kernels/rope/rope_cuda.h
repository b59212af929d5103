// Rotary position embedding on the GPU, in place on bf16 [T, H·D] (rotate-half convention; see rope.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace hyrax::kernels::cuda {

struct RopeParams {
  __nv_bfloat16* x = nullptr;  // [T, H, D], row stride ldx; rotated in place
  int64_t ldx = 0;
  const int32_t* pos = nullptr;  // [T] device: position of each token
  int64_t T = 0, H = 0, D = 0;   // D even
  float theta = 10000.0f;
};

void rope(const RopeParams& p, cudaStream_t stream);

}  // namespace hyrax::kernels::cuda
