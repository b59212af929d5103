// SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
#pragma once

#include "layers/workspace.h"

namespace hyrax {

struct MlpWeights {
  Tensor gate_up;    // gate_proj [I, C] and up_proj [I, C] stacked (WeightReader::stacked)
  Tensor down_proj;  // [C, I]
};

/// out[T, C] = MLP(x[T, C]); out may alias x.
void mlp_forward(Backend& be, const MlpWeights& w, const Tensor& x, Workspace& ws, const Tensor& out);

}  // namespace hyrax
