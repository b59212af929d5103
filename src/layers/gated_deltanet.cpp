#include "layers/gated_deltanet.h"

namespace hyrax {

void gated_deltanet_forward(Backend& be, const GdnWeights& w, const GdnLayerShape& s, const Tensor& x,
                            const RecurrentPools& pools, Workspace& ws, const Tensor& out) {
  const int64_t T = x.rows();
  const int64_t key_dim = s.gdn.Hk * s.gdn.Dk, value_dim = s.gdn.Hv * s.gdn.Dv;
  const int64_t conv_dim = 2 * key_dim + value_dim;
  const int64_t Hv = s.gdn.Hv;
  // All input projections in one product, [q | k | v | g | a | b], then the causal conv1d + SiLU over q | k | v
  Tensor proj = ws.get("gdn.in_proj", T, w.in_proj.dim(0));
  Tensor conv = ws.get("gdn.conv", T, conv_dim);
  be.matmul_conv1d(x, w.in_proj, proj, w.conv, pools.conv, conv);
  const Tensor gate = proj.cols(conv_dim, conv_dim + value_dim);
  const Tensor a = proj.cols(conv_dim + value_dim, conv_dim + value_dim + Hv);
  const Tensor b = proj.cols(conv_dim + value_dim + Hv, conv_dim + value_dim + 2 * Hv);
  // the gated delta rule
  Tensor core = ws.get("gdn.core", T, value_dim);
  be.gated_delta_rule(conv, a, b, w.A_log, w.dt_bias, s.gdn, pools.ssm, core);
  // o_norm(core, silu(g)), then o_proj
  be.gated_rms_norm(core, gate, w.o_norm, s.o_norm_eps, core);
  be.matmul(core, w.o_proj, out);
}

}  // namespace hyrax
