#include "layers/mlp.h"

namespace hyrax {

void mlp_forward(Backend& be, const MlpWeights& w, const Tensor& x, Workspace& ws, const Tensor& out) {
  const int64_t T = x.rows(), I = w.down_proj.dim(1);
  Tensor gate_up = ws.get("mlp.gate_up", T, w.gate_up.dim(0));
  be.matmul_swiglu(x, w.gate_up, gate_up);  // silu(gate) * up into gate_up's first I columns
  be.matmul(gate_up.cols(0, I), w.down_proj, out);
}

}  // namespace hyrax
