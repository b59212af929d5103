// Plain references for rms_norm and gated_rms_norm: one thread, float64 sums.
#include <cmath>

#include "core/check.h"
#include "kernels/rms_norm/rms_norm.h"

namespace hyrax::kernels {

namespace detail {
void check_rms_norm(const RmsNormParams& p) {
  HYRAX_CHECK(p.T >= 0 && p.C > 0, "T=", p.T, " C=", p.C);
  HYRAX_CHECK(p.T == 0 || (p.x && p.w && p.y), "null pointer");
  HYRAX_CHECK(p.ldx >= p.C && p.ldy >= p.C, "row strides ldx=", p.ldx, " ldy=", p.ldy, " below C=", p.C);
  HYRAX_CHECK(p.y != p.x || p.ldy == p.ldx, "in place needs ldy == ldx, got ", p.ldy, " vs ", p.ldx);
  HYRAX_CHECK(p.eps >= 0.0f, "eps=", p.eps);
}

void check_gated_rms_norm(const GatedRmsNormParams& p) {
  HYRAX_CHECK(p.T >= 0 && p.H > 0 && p.D > 0, "T=", p.T, " H=", p.H, " D=", p.D);
  HYRAX_CHECK(p.T == 0 || (p.x && p.gate && p.w && p.y), "null pointer");
  const int64_t row = p.H * p.D;
  HYRAX_CHECK(p.ldx >= row && p.ldg >= row && p.ldy >= row, "row strides ldx=", p.ldx, " ldg=", p.ldg,
              " ldy=", p.ldy, " below H*D=", row);
  HYRAX_CHECK(p.y != p.x || p.ldy == p.ldx, "in place needs ldy == ldx, got ", p.ldy, " vs ", p.ldx);
  HYRAX_CHECK(p.eps >= 0.0f, "eps=", p.eps);
}
}  // namespace detail

void rms_norm_ref(const RmsNormParams& p) {
  detail::check_rms_norm(p);
  for (int64_t t = 0; t < p.T; ++t) {
    const float* x = p.x + t * p.ldx;
    float* y = p.y + t * p.ldy;
    double ss = 0.0;
    for (int64_t c = 0; c < p.C; ++c) ss += double(x[c]) * double(x[c]);
    const double r = 1.0 / std::sqrt(ss / double(p.C) + double(p.eps));
    for (int64_t c = 0; c < p.C; ++c) y[c] = float(double(p.w[c]) * (double(x[c]) * r));
  }
}

void gated_rms_norm_ref(const GatedRmsNormParams& p) {
  detail::check_gated_rms_norm(p);
  for (int64_t t = 0; t < p.T; ++t) {
    for (int64_t h = 0; h < p.H; ++h) {
      const float* x = p.x + t * p.ldx + h * p.D;
      const float* g = p.gate + t * p.ldg + h * p.D;
      float* y = p.y + t * p.ldy + h * p.D;
      double ss = 0.0;
      for (int64_t d = 0; d < p.D; ++d) ss += double(x[d]) * double(x[d]);
      const double r = 1.0 / std::sqrt(ss / double(p.D) + double(p.eps));
      for (int64_t d = 0; d < p.D; ++d) {
        const double gd = g[d];
        y[d] = float(double(x[d]) * r * double(p.w[d]) * (gd / (1.0 + std::exp(-gd))));
      }
    }
  }
}

}  // namespace hyrax::kernels
