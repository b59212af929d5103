// rope on all cores: tokens split across threads; each token's cos/sin (float32, as transformers) computed once and
// applied to every head.
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/thread_pool.h"
#include "kernels/rope/rope.h"

namespace hyrax::kernels {

namespace detail {
void check_rope(const RopeParams& p);
float rope_inv_freq(float theta, int64_t i, int64_t D);
}  // namespace detail

void rope(const RopeParams& p) {
  detail::check_rope(p);
  const int64_t half = p.D / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = detail::rope_inv_freq(p.theta, i, p.D);
  const int64_t grain = p.H * p.D >= 4096 ? 1 : 4096 / (p.H * p.D);
  parallel_for(p.T, grain, [&](int64_t t0, int64_t t1) {
    std::vector<float> cs(static_cast<size_t>(p.D));  // [cos | sin], D/2 each
    float* cos_t = cs.data();
    float* sin_t = cs.data() + half;
    for (int64_t t = t0; t < t1; ++t) {
      const float pos = float(p.pos[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[size_t(i)];
        cos_t[i] = std::cos(angle);
        sin_t[i] = std::sin(angle);
      }
      for (int64_t h = 0; h < p.H; ++h) {
        float* __restrict x1 = p.x + t * p.ldx + h * p.D;
        float* __restrict x2 = x1 + half;
        for (int64_t i = 0; i < half; ++i) {
          const float a = x1[i], b = x2[i];
          x1[i] = a * cos_t[i] - b * sin_t[i];
          x2[i] = b * cos_t[i] + a * sin_t[i];
        }
      }
    }
  });
}

}  // namespace hyrax::kernels
