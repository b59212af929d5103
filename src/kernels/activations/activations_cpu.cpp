// swiglu on all cores: rows split across threads, each row in vectors (exp by simd::exp).
#include "core/check.h"
#include "core/thread_pool.h"
#include "kernels/activations/activations.h"
#include "kernels/cpu_simd.h"

namespace hyrax::kernels {

namespace detail {
void check_swiglu(const SwigluParams& p);
}  // namespace detail

void swiglu(const SwigluParams& p) {
  using simd::kLanes;
  using simd::vf;
  detail::check_swiglu(p);
  const int64_t grain = p.C >= 16384 ? 1 : 16384 / p.C;
  parallel_for(p.T, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* g = p.gate + t * p.ldg;
      const float* u = p.up + t * p.ldu;
      float* y = p.y + t * p.ldy;
      int64_t c = 0;
      for (; c + kLanes <= p.C; c += kLanes) simd::store(y + c, simd::silu(simd::load(g + c)) * simd::load(u + c));
      if (c < p.C) {  // tail: a zero-padded vector, so every element goes through the same arithmetic
        vf gv{}, uv{};
        for (int64_t i = c; i < p.C; ++i) gv[i - c] = g[i], uv[i - c] = u[i];
        const vf yv = simd::silu(gv) * uv;
        for (int64_t i = c; i < p.C; ++i) y[i] = yv[i - c];
      }
    }
  });
}

}  // namespace hyrax::kernels
