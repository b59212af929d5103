// Softmax self-attention as Olmo 3 writes it: q and k RMS-normed over the whole projection (not per head),
// optional RoPE, causal GQA over the paged KV cache, then the output projection.
#pragma once

#include "layers/workspace.h"

namespace hyrax {

struct AttentionWeights {
  Tensor qkv_proj;                // q_proj [Hq·D, C], k_proj and v_proj [Hkv·D, C] stacked (WeightReader::stacked)
  Tensor o_proj;                  // [C, Hq·D]
  Tensor q_norm, k_norm;          // [Hq·D], [Hkv·D] float32
};

struct AttentionShape {
  int64_t Hq = 0, Hkv = 0, D = 0;
  float norm_eps = 1e-6f;
  bool rope = false;
  float rope_theta = 10000.0f;
};

/// out[T, C] = Attn(x[T, C]) for the step's sequences; stores their keys and values in `kv`.
void attention_forward(Backend& be, const AttentionWeights& w, const AttentionShape& s, const Tensor& x,
                       const KvPools& kv, Workspace& ws, const Tensor& out);

}  // namespace hyrax
