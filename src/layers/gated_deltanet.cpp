#include "layers/gated_deltanet.h"

namespace hyrax {

void gated_deltanet_forward(Backend& be, const GdnWeights& w, const GdnLayerShape& s, const Tensor& x,
                            const RecurrentPools& pools, Workspace& ws, const Tensor& out) {
  const int64_t T = x.rows();
  const int64_t key_dim = s.gdn.Hk * s.gdn.Dk, value_dim = s.gdn.Hv * s.gdn.Dv;
  const int64_t conv_dim = 2 * key_dim + value_dim;
  // mixed_qkv = concat(q_proj(x), k_proj(x), v_proj(x))
  Tensor qkv = ws.get("gdn.qkv", T, conv_dim);
  be.matmul(x, w.q_proj, qkv.cols(0, key_dim));
  be.matmul(x, w.k_proj, qkv.cols(key_dim, 2 * key_dim));
  be.matmul(x, w.v_proj, qkv.cols(2 * key_dim, conv_dim));
  // causal conv1d + SiLU
  Tensor conv = ws.get("gdn.conv", T, conv_dim);
  be.conv1d(qkv, w.conv, pools.conv, conv);
  // decay and beta pre-activations side by side: [a | b]
  Tensor ab = ws.get("gdn.ab", T, 2 * s.gdn.Hv);
  be.matmul(x, w.a_proj, ab.cols(0, s.gdn.Hv));
  be.matmul(x, w.b_proj, ab.cols(s.gdn.Hv, 2 * s.gdn.Hv));
  // the gated delta rule
  Tensor core = ws.get("gdn.core", T, value_dim);
  be.gated_delta_rule(conv, ab.cols(0, s.gdn.Hv), ab.cols(s.gdn.Hv, 2 * s.gdn.Hv), w.A_log, w.dt_bias, s.gdn,
                      pools.ssm, core);
  // o_norm(core, silu(g_proj(x))), then o_proj
  Tensor gate = ws.get("gdn.gate", T, value_dim);
  be.matmul(x, w.g_proj, gate);
  be.gated_rms_norm(core, gate, w.o_norm, s.o_norm_eps, core);
  be.matmul(core, w.o_proj, out);
}

}  // namespace hyrax
