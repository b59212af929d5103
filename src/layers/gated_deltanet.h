// Gated DeltaNet (Yang et al., "Gated Delta Networks", 2024) as transformers' OlmoHybridGatedDeltaNet computes it:
// q/k/v projections, causal depthwise conv + SiLU, the gated delta rule with float32 state, a gated RMSNorm per
// value head and the output projection. Written once; every GDN model reuses it through GdnShape.
#pragma once

#include "layers/workspace.h"

namespace hyrax {

struct GdnWeights {
  // The input projections stacked into one matrix, in this order: q, k [Hk·Dk, C] each, v, g [Hv·Dv, C] each,
  // a, b [Hv, C] each, then zero rows up to a multiple of 8 (WeightReader::stacked).
  Tensor in_proj;
  Tensor o_proj;          // [C, Hv·Dv]
  Tensor conv;            // [2·Hk·Dk + Hv·Dv, W] float32 taps over the concatenated q | k | v channels
  Tensor A_log, dt_bias;  // [Hv] float32
  Tensor o_norm;          // [Dv] float32
};

struct GdnLayerShape {
  GdnShape gdn;
  float o_norm_eps = 1e-5f;
};

/// out[T, C] = GDN(x[T, C]) for the step's sequences, continuing from and updating their state in `pools`.
void gated_deltanet_forward(Backend& be, const GdnWeights& w, const GdnLayerShape& s, const Tensor& x,
                            const RecurrentPools& pools, Workspace& ws, const Tensor& out);

}  // namespace hyrax
