// Rotary embedding: the fast kernel against the reference (same float32 angles, float64 rotation), for head dims
// around the vector width, positions up to 10^6, strided rows.
#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"
#include "kernel_test_util.h"
#include "kernels/rope/rope.h"

using namespace hyrax;
using namespace hyrax::kernels;
using namespace hyrax::test;

namespace {

// Tolerance (atol + rtol·|ref|): both sides use the same float32 angle; the fast kernel's cosf/sinf are within 1 ulp
// of cos/sin of that angle and its rotation rounds twice, so for O(1) inputs the error is a few 1e-7 (measured worst
// 4.8e-7, a tenth of 2e-6 + 2e-6·|ref|); a wrong frequency, half or sign is an O(1) error.
constexpr double kAtol = 2e-6, kRtol = 2e-6;

TEST(Rope, MatchesReference) {
  for (int64_t D : {2, 6, 64, 96, 128, 130}) {
    for (float theta : {10000.0f, 500000.0f}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE(::testing::Message() << "D=" << D << " theta=" << theta << " seed=" << seed);
      Rng rng(seed);
      const int64_t T = 37, H = 3, ld = H * D + 5;
      std::vector<int32_t> pos(static_cast<size_t>(T));
      for (int32_t& p : pos) p = rng.uniform_int(0, 4096);
      pos[0] = 0, pos[1] = 1, pos[2] = 1000000;
      const std::vector<float> x = rng.normal_vec(size_t(T * ld));
      RopeParams p;
      p.ldx = ld;
      p.pos = pos.data();
      p.T = T, p.H = H, p.D = D;
      p.theta = theta;
      std::vector<float> ref = x, got = x;
      p.x = ref.data();
      rope_ref(p);
      p.x = got.data();
      rope(p);
      EXPECT_TRUE(close_rows(got.data(), ld, ref.data(), ld, T, H * D, kAtol, kRtol));
      EXPECT_TRUE(same_bits(got.data() + H * D, x.data() + H * D, 5)) << "row padding";
    }
  }
}

TEST(Rope, PositionZeroIsIdentity) {
  std::vector<float> x = Rng(next_seed()).normal_vec(2 * 64);
  const std::vector<float> x0 = x;
  const int32_t pos = 0;
  RopeParams p;
  p.x = x.data(), p.ldx = 128, p.pos = &pos, p.T = 1, p.H = 2, p.D = 64;
  rope(p);
  EXPECT_TRUE(same_bits(x.data(), x0.data(), x.size()));
}

TEST(Rope, RejectsOddHeadDim) {
  std::vector<float> x(30);
  const int32_t pos = 3;
  RopeParams p;
  p.x = x.data(), p.ldx = 15, p.pos = &pos, p.T = 1, p.H = 3, p.D = 5;
  EXPECT_THROW(rope(p), Error);
  EXPECT_THROW(rope_ref(p), Error);
}

}  // namespace
