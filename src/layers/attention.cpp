#include "layers/attention.h"

#include <cmath>

namespace hyrax {

void attention_forward(Backend& be, const AttentionWeights& w, const AttentionShape& s, const Tensor& x,
                       const KvPools& kv, Workspace& ws, const Tensor& out) {
  const int64_t T = x.rows();
  Tensor q = ws.get("attn.q", T, s.Hq * s.D);
  Tensor k = ws.get("attn.k", T, s.Hkv * s.D);
  Tensor v = ws.get("attn.v", T, s.Hkv * s.D);
  be.matmul(x, w.q_proj, q);
  be.matmul(x, w.k_proj, k);
  be.matmul(x, w.v_proj, v);
  be.rms_norm(q, w.q_norm, s.norm_eps, q);
  be.rms_norm(k, w.k_norm, s.norm_eps, k);
  if (s.rope) {
    be.rope(q, s.Hq, s.rope_theta);
    be.rope(k, s.Hkv, s.rope_theta);
  }
  Tensor o = ws.get("attn.out", T, s.Hq * s.D);
  be.attention(q, k, v, kv, s.Hq, s.Hkv, s.D, 1.0f / std::sqrt(float(s.D)), o);
  be.matmul(o, w.o_proj, out);
}

}  // namespace hyrax
