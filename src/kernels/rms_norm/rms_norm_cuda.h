// RMS normalization on the GPU: bf16 activations, float32 weights and arithmetic (see rms_norm.h for the math).
// Each row is reduced by one block in a fixed order, so a row's result never depends on the other rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace hyrax::kernels::cuda {

struct RmsNormParams {
  const __nv_bfloat16* x = nullptr;  // [T, C], row stride ldx
  int64_t ldx = 0;
  const float* w = nullptr;  // [C]
  __nv_bfloat16* y = nullptr;  // [T, C], row stride ldy; may alias x (then ldy == ldx)
  int64_t ldy = 0;
  int64_t T = 0, C = 0;
  float eps = 1e-6f;
  __nv_bfloat16* res = nullptr;  // [T, C], row stride ldr: the residual stream of the fused forms
  int64_t ldr = 0;
};

/// y = x / sqrt(mean(x²) + eps) * w
void rms_norm(const RmsNormParams& p, cudaStream_t stream);
/// rms_norm(a) and rms_norm(b) (the same rows: a.T == b.T), in one launch where their rows are alike (length,
/// alignment); the bits of the two calls either way.
void rms_norm_pair(const RmsNormParams& a, const RmsNormParams& b, cudaStream_t stream);
/// res = res + x, then y = rms_norm(res) (a pre-norm residual step); the same bits as add then rms_norm.
void add_rms_norm(const RmsNormParams& p, cudaStream_t stream);
/// res = res + rms_norm(x) (a post-norm residual step; y unused); the same bits as rms_norm then add.
void rms_norm_add(const RmsNormParams& p, cudaStream_t stream);

struct GatedRmsNormParams {
  const __nv_bfloat16* x = nullptr;  // [T, H, D], row stride ldx between tokens
  int64_t ldx = 0;
  const __nv_bfloat16* gate = nullptr;  // [T, H, D], row stride ldg
  int64_t ldg = 0;
  const float* w = nullptr;  // [D]
  __nv_bfloat16* y = nullptr;  // [T, H, D], row stride ldy; may alias x
  int64_t ldy = 0;
  int64_t T = 0, H = 0, D = 0;
  float eps = 1e-5f;
};

/// Per head: y = x / sqrt(mean(x²) + eps) * w * silu(gate)
void gated_rms_norm(const GatedRmsNormParams& p, cudaStream_t stream);

}  // namespace hyrax::kernels::cuda
