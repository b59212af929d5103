// Plain reference for the gated delta rule: the recurrent form, token by token, in float64, one thread.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/gated_delta_rule/gated_delta_rule.h"

namespace hyrax::kernels {

namespace detail {
void check_gated_delta_rule(const GatedDeltaRuleParams& p) {
  HYRAX_CHECK(p.n_seqs >= 0, "n_seqs=", p.n_seqs);
  HYRAX_CHECK(p.Hk > 0 && p.Hv > 0 && p.Dk > 0 && p.Dv > 0, "Hk=", p.Hk, " Hv=", p.Hv, " Dk=", p.Dk, " Dv=", p.Dv);
  HYRAX_CHECK(p.Hv % p.Hk == 0, "value heads Hv=", p.Hv, " not a multiple of key heads Hk=", p.Hk);
  if (p.n_seqs == 0) return;
  HYRAX_CHECK(p.cu_seqlens && p.state_slots && p.state && p.q && p.k && p.v && p.a && p.b && p.A_log && p.dt_bias &&
                  p.out,
              "null pointer");
  HYRAX_CHECK(p.ld_qkv >= p.Hk * p.Dk && p.ld_qkv >= p.Hv * p.Dv, "row stride ld_qkv=", p.ld_qkv,
              " below a q/k row (", p.Hk * p.Dk, ") or a v row (", p.Hv * p.Dv, ")");
  HYRAX_CHECK(p.ld_ab >= p.Hv, "row stride ld_ab=", p.ld_ab, " below Hv=", p.Hv);
  HYRAX_CHECK(p.ld_out >= p.Hv * p.Dv, "row stride ld_out=", p.ld_out, " below Hv*Dv=", p.Hv * p.Dv);
  HYRAX_CHECK(p.cu_seqlens[0] >= 0, "cu_seqlens[0]=", p.cu_seqlens[0]);
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    HYRAX_CHECK(p.cu_seqlens[s + 1] >= p.cu_seqlens[s], "cu_seqlens decreases at sequence ", s);
    HYRAX_CHECK(p.state_slots[s] >= 0, "sequence ", s, " has state slot ", p.state_slots[s]);
  }
  std::vector<int32_t> slots(p.state_slots, p.state_slots + p.n_seqs);
  std::sort(slots.begin(), slots.end());
  HYRAX_CHECK(std::adjacent_find(slots.begin(), slots.end()) == slots.end(), "two sequences share a state slot");
}
}  // namespace detail

void gated_delta_rule_ref(const GatedDeltaRuleParams& p) {
  detail::check_gated_delta_rule(p);
  const int64_t Dk = p.Dk, Dv = p.Dv, group = p.Hv / p.Hk;
  const size_t nk = static_cast<size_t>(Dk), nv = static_cast<size_t>(Dv);
  std::vector<double> S(nk * nv), q(nk), k(nk), u(nv);
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    for (int64_t h = 0; h < p.Hv; ++h) {
      const int64_t hk = h / group;
      float* state = p.state + (int64_t(p.state_slots[s]) * p.Hv + h) * Dk * Dv;
      for (int64_t i = 0; i < Dk * Dv; ++i) S[size_t(i)] = state[i];
      const double A = std::exp(double(p.A_log[h]));
      for (int64_t t = p.cu_seqlens[s]; t < p.cu_seqlens[s + 1]; ++t) {
        // q, k: l2-normalized (x·rsqrt(Σx² + 1e-6)); q scaled by 1/sqrt(Dk).
        const float* qr = p.q + t * p.ld_qkv + hk * Dk;
        const float* kr = p.k + t * p.ld_qkv + hk * Dk;
        double qq = 0.0, kk = 0.0;
        for (int64_t i = 0; i < Dk; ++i) qq += double(qr[i]) * qr[i], kk += double(kr[i]) * kr[i];
        const double qs = 1.0 / std::sqrt(qq + 1e-6) / std::sqrt(double(Dk)), ks = 1.0 / std::sqrt(kk + 1e-6);
        for (int64_t i = 0; i < Dk; ++i) q[size_t(i)] = qr[i] * qs, k[size_t(i)] = kr[i] * ks;
        // beta = sigmoid(b)·(1 or 2); g = -exp(A_log)·softplus(a + dt_bias), softplus(x) = x above 20 (torch).
        double beta = 1.0 / (1.0 + std::exp(-double(p.b[t * p.ld_ab + h])));
        if (p.allow_neg_eigval) beta *= 2.0;
        const double x = double(p.a[t * p.ld_ab + h]) + double(p.dt_bias[h]);
        const double alpha = std::exp(-A * (x > 20.0 ? x : std::log1p(std::exp(x))));
        // S = alpha·S;  u = beta·(v - Sᵀk);  S += k uᵀ;  o = Sᵀq.
        const float* v = p.v + t * p.ld_qkv + h * Dv;
        for (int64_t j = 0; j < Dv; ++j) {
          double kv = 0.0;
          for (int64_t i = 0; i < Dk; ++i) kv += k[size_t(i)] * S[size_t(i * Dv + j)];
          u[size_t(j)] = beta * (double(v[j]) - alpha * kv);
        }
        float* o = p.out + t * p.ld_out + h * Dv;
        for (int64_t j = 0; j < Dv; ++j) {
          double acc = 0.0;
          for (int64_t i = 0; i < Dk; ++i) {
            double& sij = S[size_t(i * Dv + j)];
            sij = alpha * sij + k[size_t(i)] * u[size_t(j)];
            acc += q[size_t(i)] * sij;
          }
          o[j] = float(acc);
        }
      }
      for (int64_t i = 0; i < Dk * Dv; ++i) state[i] = float(S[size_t(i)]);
    }
  }
}

}  // namespace hyrax::kernels
