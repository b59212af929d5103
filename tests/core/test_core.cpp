#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

using namespace hyrax;

TEST(DType, Bf16RoundTripAndRounding) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16MatchesIeeeOnRandomValues) {
  std::mt19937 rng(123);
  std::uniform_int_distribution<int> bits(0, 0xffff);
  for (int i = 0; i < 20000; ++i) {
    const uint16_t h = uint16_t(bits(rng));
    const float f = f16_to_f32(h);
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << "half bits " << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0xfbff), -65504.0f);
}

TEST(ThreadPool, CoversEveryIndexOnceAndRethrows) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
  EXPECT_THROW(pool.parallel_for(10, 1, [](int64_t b, int64_t) { HYRAX_CHECK(b != 0, "first range"); }), Error);
}

TEST(Check, MessageNamesConditionAndValues) {
  try {
    int x = 3;
    HYRAX_CHECK(x == 4, "x=", x);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x == 4"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("x=3"), std::string::npos);
  }
}
