// rms_norm and gated_rms_norm on all cores: rows split across threads, each row vectorized (sums in kLanes partial
// sums, then a fixed pairwise lane reduction), in float32 as transformers computes them.
#include "core/check.h"
#include "core/thread_pool.h"
#include "kernels/cpu_simd.h"
#include "kernels/rms_norm/rms_norm.h"

namespace hyrax::kernels {

namespace detail {
void check_rms_norm(const RmsNormParams& p);
void check_gated_rms_norm(const GatedRmsNormParams& p);
}  // namespace detail

namespace {

using simd::kLanes;
using simd::vf;

/// Σ x² over n floats in float32: kLanes·2 running sums, then the tail.
float sum_squares(const float* x, int64_t n) {
  vf s0{}, s1{};
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    const vf a = simd::load(x + i), b = simd::load(x + i + kLanes);
    s0 += a * a;
    s1 += b * b;
  }
  if (i + kLanes <= n) {
    const vf a = simd::load(x + i);
    s0 += a * a;
    i += kLanes;
  }
  float s = simd::hsum(s0 + s1);
  for (; i < n; ++i) s += x[i] * x[i];
  return s;
}

/// Rows per task so that one task touches at least ~16k floats.
int64_t row_grain(int64_t row) { return row >= 16384 ? 1 : 16384 / row; }

}  // namespace

void rms_norm(const RmsNormParams& p) {
  detail::check_rms_norm(p);
  parallel_for(p.T, row_grain(p.C), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* x = p.x + t * p.ldx;
      float* y = p.y + t * p.ldy;
      const float r = 1.0f / __builtin_sqrtf(sum_squares(x, p.C) / float(p.C) + p.eps);
      int64_t c = 0;
      for (; c + kLanes <= p.C; c += kLanes) simd::store(y + c, simd::load(p.w + c) * (simd::load(x + c) * r));
      for (; c < p.C; ++c) y[c] = p.w[c] * (x[c] * r);
    }
  });
}

void gated_rms_norm(const GatedRmsNormParams& p) {
  detail::check_gated_rms_norm(p);
  parallel_for(p.T, row_grain(p.H * p.D), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t h = 0; h < p.H; ++h) {
        const float* x = p.x + t * p.ldx + h * p.D;
        const float* g = p.gate + t * p.ldg + h * p.D;
        float* y = p.y + t * p.ldy + h * p.D;
        const float r = 1.0f / __builtin_sqrtf(sum_squares(x, p.D) / float(p.D) + p.eps);
        int64_t d = 0;
        for (; d + kLanes <= p.D; d += kLanes)
          simd::store(y + d, (simd::load(x + d) * r) * simd::load(p.w + d) * simd::silu(simd::load(g + d)));
        for (; d < p.D; ++d) {
          // The tail goes through the same vector silu (one live lane) so every element is computed alike.
          vf gv{};
          gv[0] = g[d];
          y[d] = (x[d] * r) * p.w[d] * simd::silu(gv)[0];
        }
      }
    }
  });
}

}  // namespace hyrax::kernels
