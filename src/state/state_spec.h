// What state each layer of a model keeps per sequence. Models declare it; state/ owns the memory.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace hyrax {

struct LayerStateSpec {
  enum class Kind { None, Recurrent, Attention };
  Kind kind = Kind::None;
  // Recurrent (Gated DeltaNet): conv inputs [conv_width - 1, conv_channels] and state [heads, dk, dv], float32.
  int64_t conv_channels = 0, conv_width = 0, heads = 0, dk = 0, dv = 0;
  // Attention: keys and values [kv_heads, head_dim] per token.
  int64_t kv_heads = 0, head_dim = 0;

  size_t conv_floats() const { return size_t((conv_width - 1) * conv_channels); }
  size_t ssm_floats() const { return size_t(heads * dk * dv); }
};

struct StateSpec {
  std::vector<LayerStateSpec> layers;  // one per model layer

  /// Recurrent state of one sequence, all layers (constant in its length).
  size_t recurrent_bytes_per_seq() const {
    size_t n = 0;
    for (const auto& l : layers)
      if (l.kind == LayerStateSpec::Kind::Recurrent) n += (l.conv_floats() + l.ssm_floats()) * sizeof(float);
    return n;
  }
  /// KV cache bytes per token, all attention layers.
  size_t kv_bytes_per_token(DType kv_dtype) const {
    size_t n = 0;
    for (const auto& l : layers)
      if (l.kind == LayerStateSpec::Kind::Attention) n += size_t(2 * l.kv_heads * l.head_dim) * dtype_size(kv_dtype);
    return n;
  }
};

}  // namespace hyrax
