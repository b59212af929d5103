// Olmo Hybrid (Ai2): Gated DeltaNet layers interleaved with Olmo 3 post-norm attention layers.
// Mirrors transformers 5.17 models/olmo_hybrid/modeling_olmo_hybrid.py; the facts are in shared/OLMO_HYBRID.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json_file.h"

namespace hyrax {

struct OlmoHybridConfig {
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  std::vector<bool> is_linear;  // per layer: linear_attention (true) or full_attention
  bool rope = false;            // false: NoPE
  double rope_theta = 10000.0;
  int64_t linear_num_key_heads = 0, linear_num_value_heads = 0, linear_key_head_dim = 0, linear_value_head_dim = 0;
  int64_t linear_conv_kernel_dim = 4;
  bool linear_allow_neg_eigval = true;
  bool tie_word_embeddings = false;
  std::vector<int32_t> eos_token_ids;  // config.json and generation_config.json together

  /// Parses and validates config.json (and the eos ids of generation_config.json); errors name file and field.
  static OlmoHybridConfig parse(const io::JsonFile& config, const io::JsonFile& generation_config);

  int64_t gdn_key_dim() const { return linear_num_key_heads * linear_key_head_dim; }
  int64_t gdn_value_dim() const { return linear_num_value_heads * linear_value_head_dim; }
  int64_t gdn_conv_dim() const { return 2 * gdn_key_dim() + gdn_value_dim(); }
};

}  // namespace hyrax
