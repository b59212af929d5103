// swiglu: the fast kernel against the float64 reference, strided, in place over either input, extreme gates.
#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"
#include "kernel_test_util.h"
#include "kernels/activations/activations.h"

using namespace hyrax;
using namespace hyrax::kernels;
using namespace hyrax::test;

namespace {

// Tolerance (atol + rtol·|ref|): silu through simd::exp (≈1 ulp) and a division, then a product, so a few ulp; the
// worst error measured is a twentieth of 1e-6 + 4e-6·|ref|. A wrong formula is an O(0.1) error.
constexpr double kAtol = 1e-6, kRtol = 4e-6;

TEST(Swiglu, MatchesReference) {
  for (int64_t C : {1, 5, 16, 100, 11008}) {
    for (int alias = 0; alias < 3; ++alias) {  // y separate, y = gate, y = up
      const uint64_t seed = next_seed();
      SCOPED_TRACE(::testing::Message() << "C=" << C << " alias=" << alias << " seed=" << seed);
      Rng rng(seed);
      const int64_t T = 9, ld = C + 2;
      std::vector<float> gate = rng.normal_vec(size_t(T * ld), 3.0f);
      // Far tails: silu saturates to x above and to -0 below; exp must not overflow into NaN.
      gate[0] = 100.0f;
      gate[size_t(ld)] = -100.0f;
      gate[size_t(2 * ld)] = -1e30f;
      const std::vector<float> up = rng.normal_vec(size_t(T * ld));
      SwigluParams p;
      p.T = T, p.C = C;
      std::vector<float> ref = nan_vec(size_t(T * ld));
      p.gate = gate.data(), p.ldg = ld, p.up = up.data(), p.ldu = ld, p.y = ref.data(), p.ldy = ld;
      swiglu_ref(p);
      std::vector<float> g2 = gate, u2 = up, got = nan_vec(size_t(T * ld));
      p.gate = g2.data(), p.up = u2.data();
      p.y = alias == 1 ? g2.data() : alias == 2 ? u2.data() : got.data();
      swiglu(p);
      const std::vector<float>& y = alias == 1 ? g2 : alias == 2 ? u2 : got;
      EXPECT_TRUE(close_rows(y.data(), ld, ref.data(), ld, T, C, kAtol, kRtol));
      if (alias == 0) {
        EXPECT_TRUE(padding_untouched(got, ld, C));
      }
    }
  }
}

TEST(Swiglu, RejectsBadParams) {
  std::vector<float> a(8);
  SwigluParams p;
  p.gate = a.data(), p.ldg = 4, p.up = a.data(), p.ldu = 3, p.y = a.data() + 4, p.ldy = 4, p.T = 1, p.C = 4;
  EXPECT_THROW(swiglu(p), Error);  // ldu below C
}

}  // namespace
