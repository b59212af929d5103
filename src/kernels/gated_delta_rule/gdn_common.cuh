// Pieces the two gated-delta-rule CUDA files share: the gates as transformers forms them, and the checks of a
// launch's parameters.
#pragma once

#include <cstdint>

#include "core/check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/gated_delta_rule/gated_delta_rule_cuda.h"

namespace hyrax::kernels::cuda::gdn {

/// g = −exp(A_log)·softplus(a + dt_bias) (softplus(x) = x above 20, as torch) and β = sigmoid(b)·(1 or 2).
__device__ __forceinline__ void gate_beta(float a, float b, float A_log, float dt_bias, bool neg, float* g,
                                          float* beta) {
  const float x = a + dt_bias;
  const float sp = x > 20.0f ? x : log1pf(expf(x));
  *g = -expf(A_log) * sp;
  const float sig = 1.0f / (1.0f + expf(-b));
  *beta = neg ? 2.0f * sig : sig;
}

inline bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

inline void check_params(const GdnParams& p) {
  HYRAX_CHECK(p.Hk > 0 && p.Hv > 0 && p.Hv % p.Hk == 0, "value heads Hv=", p.Hv, " not a multiple of key heads Hk=",
              p.Hk);
  HYRAX_CHECK(p.Dk > 0 && p.Dk <= 256 && p.Dv > 0 && p.Dv <= 256 && p.Dv % 4 == 0, "GDN head dims Dk=", p.Dk,
              " Dv=", p.Dv, " (supported: Dk, Dv <= 256, Dv a multiple of 4)");
  HYRAX_CHECK(p.seqs && p.cu_seqlens && p.state_slots && p.state && p.q && p.k && p.v && p.a && p.b && p.A_log &&
                  p.dt_bias && p.out,
              "gated delta rule: null pointer");
  HYRAX_CHECK(p.ld_qkv >= p.Hk * p.Dk && p.ld_qkv >= p.Hv * p.Dv && p.ld_ab >= p.Hv && p.ld_out >= p.Hv * p.Dv,
              "gated delta rule: row strides ld_qkv=", p.ld_qkv, " ld_ab=", p.ld_ab, " ld_out=", p.ld_out);
  HYRAX_CHECK(aligned16(p.state), "the state pool must be 16-byte aligned");
  HYRAX_CHECK(p.n <= 65535 && p.Hv <= 65535, "gated delta rule: ", p.n, " sequences x ", p.Hv, " heads");
}

}  // namespace hyrax::kernels::cuda::gdn
