// Causal depthwise 1-D convolution with SiLU, over packed variable-length sequences, each continuing from (and
// leaving behind) its last W-1 inputs in a state pool. Prefill (many tokens) and decode (one token) are one call.
#pragma once

#include <cstdint>

namespace hyrax::kernels {

struct Conv1dParams {
  int64_t n_seqs = 0;
  const int32_t* cu_seqlens = nullptr;   // [n_seqs + 1] token offsets of each sequence in the packed batch
  const int32_t* state_slots = nullptr;  // [n_seqs] slot of each sequence in `state`
  float* state = nullptr;  // [n_slots, W-1, C]: the last W-1 inputs, oldest first; read, then overwritten
  const float* x = nullptr;  // [T, C] inputs, row stride ldx
  int64_t ldx = 0;
  float* y = nullptr;  // [T, C] outputs, row stride ldy; must not alias x
  int64_t ldy = 0;
  const float* w = nullptr;  // [C, W] filter taps, w[c, W-1] multiplies the current input
  int64_t C = 0, W = 0;
  bool silu = true;
};

/// y[t, c] = act(Σ_j w[c, j] · x[t - (W-1) + j, c]), inputs before the sequence's first token come from the state.
/// Afterwards the state holds the last W-1 rows of [old state; x] (a sequence shorter than W-1 shifts the old rows
/// forward). State slots must be distinct; other slots are never touched. A sequence split over calls gives bitwise
/// the same outputs and state as one call.
void conv1d_ref(const Conv1dParams& p);
void conv1d(const Conv1dParams& p);

}  // namespace hyrax::kernels
