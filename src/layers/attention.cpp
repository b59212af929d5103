#include "layers/attention.h"

#include <cmath>

namespace hyrax {

void attention_forward(Backend& be, const AttentionWeights& w, const AttentionShape& s, const Tensor& x,
                       const KvPools& kv, Workspace& ws, const Tensor& out) {
  const int64_t T = x.rows();
  const int64_t qd = s.Hq * s.D, kd = s.Hkv * s.D;
  Tensor qkv = ws.get("attn.qkv", T, w.qkv_proj.dim(0));
  be.matmul(x, w.qkv_proj, qkv);
  const Tensor q = qkv.cols(0, qd), k = qkv.cols(qd, qd + kd), v = qkv.cols(qd + kd, qd + 2 * kd);
  be.rms_norm_pair(q, w.q_norm, k, w.k_norm, s.norm_eps);
  if (s.rope) {
    be.rope(q, s.Hq, s.rope_theta);
    be.rope(k, s.Hkv, s.rope_theta);
  }
  Tensor o = ws.get("attn.out", T, s.Hq * s.D);
  be.attention(q, k, v, kv, s.Hq, s.Hkv, s.D, 1.0f / std::sqrt(float(s.D)), o);
  be.matmul(o, w.o_proj, out);
}

}  // namespace hyrax
