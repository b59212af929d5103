// rms_norm and gated_rms_norm: the fast kernels against the float64 references, strided and in place.
#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"
#include "kernel_test_util.h"
#include "kernels/rms_norm/rms_norm.h"

using namespace hyrax;
using namespace hyrax::kernels;
using namespace hyrax::test;

namespace {

// Tolerance (atol + rtol·|ref|): float32 Σx² in partial sums (relative error ~1e-7·log C), one rsqrt, two or three
// products, and for the gate SiLU through simd::exp, so a few ulp; the worst error measured is 4e-6 on outputs up
// to ~30, a twentieth of 5e-6 + 5e-6·|ref|. A wrong mean, eps or weight index is an O(0.1) error.
constexpr double kAtol = 5e-6, kRtol = 5e-6;

TEST(RmsNorm, MatchesReference) {
  for (int64_t C : {1, 7, 16, 100, 3840, 4097}) {
    for (bool in_place : {false, true}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE(::testing::Message() << "C=" << C << " in_place=" << in_place << " seed=" << seed);
      Rng rng(seed);
      const int64_t T = 19, ld = C + 3;
      const std::vector<float> x = rng.normal_vec(size_t(T * ld), 3.0f);
      const std::vector<float> w = rng.normal_vec(size_t(C));
      RmsNormParams p;
      p.w = w.data(), p.T = T, p.C = C, p.eps = 1e-6f;
      std::vector<float> ref = nan_vec(size_t(T * ld));
      p.x = x.data(), p.ldx = ld, p.y = ref.data(), p.ldy = ld;
      rms_norm_ref(p);
      std::vector<float> got = in_place ? x : nan_vec(size_t(T * ld));
      p.x = in_place ? got.data() : x.data(), p.y = got.data();
      rms_norm(p);
      EXPECT_TRUE(close_rows(got.data(), ld, ref.data(), ld, T, C, kAtol, kRtol));
      if (!in_place) {
        EXPECT_TRUE(padding_untouched(got, ld, C));
      }
    }
  }
}

TEST(RmsNorm, GatedMatchesReference) {
  struct Shape {
    int64_t H, D;
  };
  for (const Shape& s : {Shape{4, 64}, Shape{3, 192}, Shape{2, 33}, Shape{1, 5}}) {
    for (bool in_place : {false, true}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE(::testing::Message() << "H=" << s.H << " D=" << s.D << " in_place=" << in_place
                                        << " seed=" << seed);
      Rng rng(seed);
      const int64_t T = 11, row = s.H * s.D, ldx = row + 1, ldg = row + 4;
      const std::vector<float> x = rng.normal_vec(size_t(T * ldx));
      const std::vector<float> gate = rng.normal_vec(size_t(T * ldg), 4.0f);
      const std::vector<float> w = rng.normal_vec(size_t(s.D));
      GatedRmsNormParams p;
      p.gate = gate.data(), p.ldg = ldg, p.w = w.data(), p.T = T, p.H = s.H, p.D = s.D, p.eps = 1e-5f;
      std::vector<float> ref = nan_vec(size_t(T * ldx));
      p.x = x.data(), p.ldx = ldx, p.y = ref.data(), p.ldy = ldx;
      gated_rms_norm_ref(p);
      std::vector<float> got = in_place ? x : nan_vec(size_t(T * ldx));
      p.x = in_place ? got.data() : x.data(), p.y = got.data();
      gated_rms_norm(p);
      EXPECT_TRUE(close_rows(got.data(), ldx, ref.data(), ldx, T, row, kAtol, kRtol));
      if (!in_place) {
        EXPECT_TRUE(padding_untouched(got, ldx, row));
      }
    }
  }
}

TEST(RmsNorm, RejectsBadParams) {
  std::vector<float> x(8), w(4);
  RmsNormParams p;
  p.x = x.data(), p.ldx = 2, p.w = w.data(), p.y = x.data(), p.ldy = 2, p.T = 2, p.C = 4;
  EXPECT_THROW(rms_norm(p), Error);  // row stride below C
  GatedRmsNormParams g;
  g.x = x.data(), g.ldx = 4, g.gate = x.data(), g.ldg = 4, g.w = w.data(), g.y = x.data(), g.ldy = 8, g.T = 2;
  g.H = 1, g.D = 4;
  EXPECT_THROW(gated_rms_norm(g), Error);  // in place with another row stride
}

}  // namespace
