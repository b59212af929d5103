// Plain reference for y = x · Wᵀ: weights widened to float32 one row at a time, sums in float64, one thread.
#include <vector>

#include "core/check.h"
#include "kernels/matmul/matmul.h"

namespace hyrax::kernels {

void matmul_ref(const MatmulParams& p) {
  HYRAX_CHECK(p.T >= 0 && p.N >= 0 && p.K >= 0, "T=", p.T, " N=", p.N, " K=", p.K);
  if (p.T == 0 || p.N == 0) return;
  HYRAX_CHECK(p.y != nullptr && p.ldy >= p.N, "ldy=", p.ldy, " N=", p.N);
  HYRAX_CHECK(p.K == 0 || (p.x != nullptr && p.w != nullptr && p.ldx >= p.K), "ldx=", p.ldx, " K=", p.K);
  std::vector<float> wrow(size_t(p.K));  // [K] row n of W as float32
  const auto* w = static_cast<const uint8_t*>(p.w);
  for (int64_t n = 0; n < p.N; ++n) {
    if (p.K > 0) to_f32(p.w_dtype, w + size_t(n * p.K) * dtype_size(p.w_dtype), wrow.data(), size_t(p.K));
    for (int64_t t = 0; t < p.T; ++t) {
      const float* xt = p.x + t * p.ldx;
      double s = 0;
      for (int64_t k = 0; k < p.K; ++k) s += double(xt[k]) * double(wrow[size_t(k)]);
      p.y[t * p.ldy + n] = float(s);
    }
  }
}

}  // namespace hyrax::kernels
