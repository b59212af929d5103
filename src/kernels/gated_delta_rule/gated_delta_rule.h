// The gated delta rule (Gated DeltaNet's recurrence) over packed variable-length sequences, each reading and
// updating its float32 state in a pool in place. See docs/ and OLMO_HYBRID.md for the math. Per token t and value
// head h (key head hk = h / (Hv / Hk)):
//   q, k   = l2norm(q[hk]), l2norm(k[hk])   (x · rsqrt(Σx² + 1e-6)),  q *= 1/sqrt(Dk)
//   beta   = sigmoid(b[h]) · (allow_neg_eigval ? 2 : 1)
//   g      = −exp(A_log[h]) · softplus(a[h] + dt_bias[h]),  alpha = exp(g)
//   S      = alpha · S;   u = beta · (v − Sᵀk);   S = S + k uᵀ;   o = Sᵀq        (S is [Dk, Dv])
// Two algorithms compute this same function: the recurrent form (token by token: decode) and the chunked form
// (chunks of 64 tokens in the WY/UT form: prefill). Tests prove they agree.
#pragma once

#include <cstdint>

namespace hyrax::kernels {

struct GatedDeltaRuleParams {
  int64_t n_seqs = 0;
  const int32_t* cu_seqlens = nullptr;   // [n_seqs + 1] token offsets of each sequence in the packed batch
  const int32_t* state_slots = nullptr;  // [n_seqs] slot of each sequence in `state`
  float* state = nullptr;                // [n_slots, Hv, Dk, Dv] float32; read as the initial state, overwritten
  const float* q = nullptr;              // [T, Hk, Dk] row stride ld_qkv (raw: normalized inside)
  const float* k = nullptr;              // [T, Hk, Dk] row stride ld_qkv (raw: normalized inside)
  const float* v = nullptr;              // [T, Hv, Dv] row stride ld_qkv
  int64_t ld_qkv = 0;
  const float* a = nullptr;  // [T, Hv] decay pre-activation (a_proj output), row stride ld_ab
  const float* b = nullptr;  // [T, Hv] beta pre-activation (b_proj output), row stride ld_ab
  int64_t ld_ab = 0;
  const float* A_log = nullptr;    // [Hv]
  const float* dt_bias = nullptr;  // [Hv]
  float* out = nullptr;            // [T, Hv, Dv] row stride ld_out
  int64_t ld_out = 0;
  int64_t Hk = 0, Hv = 0, Dk = 0, Dv = 0;  // Hv a multiple of Hk
  bool allow_neg_eigval = true;
};

/// Plain reference: the recurrent form in float64, one thread.
void gated_delta_rule_ref(const GatedDeltaRuleParams& p);
/// Recurrent form (decode), float32, all cores. A sequence split over several calls gives bitwise the same outputs
/// and state as one call.
void gated_delta_rule_recurrent(const GatedDeltaRuleParams& p);
/// Chunked form (prefill), chunks of `chunk` tokens (64 by default, any chunk >= 1), float32, all cores. A sequence
/// split over calls at multiples of `chunk` gives bitwise the same outputs and state as one call.
void gated_delta_rule_chunked(const GatedDeltaRuleParams& p, int chunk = 64);
// All three: state slots must be distinct; slots not named in state_slots are never touched; a sequence's result
// depends only on its own inputs and state, never on the other sequences of the call or on the thread count.

}  // namespace hyrax::kernels
