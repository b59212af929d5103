// Plain reference for rope: the angle exactly as transformers forms it (float32), cos/sin and the rotation in
// float64, one thread.
#include <cmath>

#include "core/check.h"
#include "kernels/rope/rope.h"

namespace hyrax::kernels {

namespace detail {
void check_rope(const RopeParams& p) {
  HYRAX_CHECK(p.T >= 0 && p.H > 0 && p.D > 0, "T=", p.T, " H=", p.H, " D=", p.D);
  HYRAX_CHECK(p.D % 2 == 0, "head dim D=", p.D, " must be even");
  HYRAX_CHECK(p.T == 0 || (p.x && p.pos), "null pointer");
  HYRAX_CHECK(p.ldx >= p.H * p.D, "row stride ldx=", p.ldx, " below H*D=", p.H * p.D);
  HYRAX_CHECK(p.theta > 0.0f, "theta=", p.theta);
}

// transformers: inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), all float32.
float rope_inv_freq(float theta, int64_t i, int64_t D) {
  return 1.0f / std::pow(theta, float(2 * i) / float(D));
}
}  // namespace detail

void rope_ref(const RopeParams& p) {
  detail::check_rope(p);
  const int64_t half = p.D / 2;
  for (int64_t t = 0; t < p.T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p.pos[t]) * detail::rope_inv_freq(p.theta, i, p.D);
      const double c = std::cos(double(angle)), s = std::sin(double(angle));
      for (int64_t h = 0; h < p.H; ++h) {
        float* x = p.x + t * p.ldx + h * p.D;
        const double x1 = x[i], x2 = x[i + half];
        x[i] = float(x1 * c - x2 * s);
        x[i + half] = float(x2 * c + x1 * s);
      }
    }
  }
}

}  // namespace hyrax::kernels
