// The sample op: the reference is the Sampler's algorithm (same seed, same tokens), and the CPU backend's op is the
// reference row by row, with the log-softmax of the chosen token.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/backend.h"
#include "kernels/sampling/sampling.h"
#include "runtime/sampler.h"

using namespace hyrax;
using namespace hyrax::kernels;
using namespace hyrax::test;

namespace {

TEST(Sampling, BackendOpDrawsWhatTheSamplerDraws) {
  const uint64_t seed = next_seed();
  SCOPED_TRACE(::testing::Message() << "seed=" << seed);
  Rng rng(seed);
  const int64_t R = 12, V = 1000, ld = V + 5;
  std::vector<float> logits = rng.normal_vec(size_t(R * ld), 2.5f);
  for (int64_t r = 0; r < R; ++r) logits[size_t(r * ld + 17)] = -INFINITY;  // -inf entries never win
  const std::vector<SamplingParams> params = {
      {0.0f, 0, 1.0f, 0.0f, 1},   {1.0f, 0, 1.0f, 0.0f, 2},     {0.7f, 50, 1.0f, 0.0f, 3},  {1.3f, 0, 0.9f, 0.0f, 4},
      {1.0f, 0, 1.0f, 0.05f, 5},  {0.5f, 40, 0.95f, 0.01f, 6},  {5.0f, 1, 1.0f, 0.0f, 7},   {0.05f, 0, 0.3f, 0.0f, 8},
      {2.0f, 999, 0.99f, 0.2f, 9}, {1.0f, 1000, 1.0f, 0.0f, 10}, {0.9f, 7, 0.5f, 0.5f, 11}, {3.0f, 0, 0.01f, 0.0f, 12}};
  auto backend = make_cpu_backend();
  for (int step = 0; step < 3; ++step) {  // several draws from each request's stream
    std::vector<Sampler> want, draw;
    for (int64_t r = 0; r < R; ++r) {
      SamplingParams p = params[size_t(r)];
      p.seed += uint64_t(step) * 100;
      want.emplace_back(p);
      draw.emplace_back(p);
    }
    std::vector<SampleRow> rows;
    for (auto& s : draw) rows.push_back(s.next_row());
    std::vector<int32_t> tokens(size_t(R), -1);
    std::vector<float> lps = nan_vec(size_t(R));
    Tensor t(logits.data(), DType::F32, {R, V});
    t.ld = ld;
    backend->sample(t, rows, tokens.data(), lps.data());
    for (int64_t r = 0; r < R; ++r) {
      const float* row = logits.data() + r * ld;
      EXPECT_EQ(tokens[size_t(r)], want[size_t(r)].sample(row, V)) << "row " << r;
      EXPECT_EQ(lps[size_t(r)], Sampler::logprob(row, V, tokens[size_t(r)])) << "row " << r;
      EXPECT_NE(tokens[size_t(r)], 17);
    }
    EXPECT_EQ(tokens[0], argmax(logits.data(), V));
  }
}

TEST(Sampling, ReferenceEdgeCases) {
  // Ties: greedy and top-k 1 take the lowest id; u just below 1 takes the last kept token.
  const std::vector<float> l = {1.0f, 3.0f, -INFINITY, 3.0f, 2.0f};
  auto run = [&](SampleRow s) {
    int32_t t = -1;
    float lp = NAN;
    SampleParams p;
    p.logits = l.data(), p.ld = 5, p.R = 1, p.V = 5, p.rows = &s, p.tokens = &t, p.logprobs = &lp;
    sample_ref(p);
    EXPECT_FALSE(std::isnan(lp));
    return t;
  };
  EXPECT_EQ(run({0.0f, 0, 1.0f, 0.0f, 0.0}), 1);
  EXPECT_EQ(run({1.0f, 1, 1.0f, 0.0f, 0.9}), 1);
  EXPECT_EQ(run({1.0f, 2, 1.0f, 0.0f, 0.999}), 3);
  EXPECT_EQ(run({1.0f, 0, 1.0f, 0.0f, 0.0}), 1);
  EXPECT_EQ(run({1.0f, 0, 1.0f, 0.0f, 0.9999999}), 0);  // the last finite token; -inf has no mass
  EXPECT_EQ(run({1.0f, 0, 0.3f, 0.0f, 0.999}), 1);      // top-p keeps the first of the tied pair
  EXPECT_EQ(run({1.0f, 0, 0.4f, 0.0f, 0.999}), 3);      // 0.3995 < 0.4: both
  SampleRow bad{1.0f, 0, 1.0f, 0.0f, 1.0};
  EXPECT_THROW(run(bad), Error);
}

}  // namespace
