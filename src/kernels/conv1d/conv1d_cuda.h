// Causal depthwise conv1d + SiLU on the GPU over packed variable-length sequences (see conv1d.h): bf16 inputs and
// outputs, float32 taps, float32 state pool [n_slots, W-1, C] read and updated in place.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace hyrax::kernels::cuda {

struct Conv1dParams {
  int64_t n_seqs = 0, T = 0;             // sequences; tokens (cu_seqlens[n_seqs], with cu_seqlens[0] == 0)
  const int32_t* cu_seqlens = nullptr;   // [n_seqs + 1] device
  const int32_t* state_slots = nullptr;  // [n_seqs] device
  const int32_t* tok_seq = nullptr;      // [T] device: the sequence of each token
  float* state = nullptr;                // [n_slots, W-1, C]
  const __nv_bfloat16* x = nullptr;      // [T, C], row stride ldx
  int64_t ldx = 0;
  __nv_bfloat16* y = nullptr;  // [T, C], row stride ldy; must not alias x
  int64_t ldy = 0;
  const float* w = nullptr;  // [C, W]
  int64_t C = 0, W = 0;
  bool silu = true;
  bool one_token_each = false;  // every sequence has exactly one token (decode): one launch instead of two
};

void conv1d(const Conv1dParams& p, cudaStream_t stream);

}  // namespace hyrax::kernels::cuda
