#include "layers/mlp.h"

namespace hyrax {

void mlp_forward(Backend& be, const MlpWeights& w, const Tensor& x, Workspace& ws, const Tensor& out) {
  const int64_t T = x.rows(), I = w.gate_proj.dim(0);
  Tensor gate = ws.get("mlp.gate", T, I);
  Tensor up = ws.get("mlp.up", T, I);
  be.matmul(x, w.gate_proj, gate);
  be.matmul(x, w.up_proj, up);
  be.swiglu(gate, up, gate);
  be.matmul(gate, w.down_proj, out);
}

}  // namespace hyrax
