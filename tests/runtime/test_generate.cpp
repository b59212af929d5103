// Sessions (state kept across calls), text streaming with stop strings, and the sampler.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "models/model.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "runtime/text_stream.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace hyrax;

namespace {

std::unique_ptr<Engine> demo_engine(int64_t chunk = 512) {
  auto be = make_cpu_backend();
  auto model = load_model(test::source_dir() + "/models/kjv-hybrid", *be);
  EngineConfig cfg;
  cfg.max_seqs = 2;
  cfg.max_seq_len = 256;
  cfg.max_step_tokens = chunk;
  return std::make_unique<Engine>(std::move(be), std::move(model), cfg);
}

}  // namespace

TEST(Session, AppendingInPiecesEqualsOnePrefill) {
  auto engine = demo_engine(64);
  std::vector<int32_t> ids(150);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % 4000);
  Session one(*engine);
  const auto whole = one.append(ids);
  {
    // Pieces that end on the 64-token grid are the same computation as one prefill: bitwise equal.
    Session pieces(*engine);
    pieces.append(std::span<const int32_t>(ids.data(), 64));
    const auto last = pieces.append(std::span<const int32_t>(ids.data() + 64, ids.size() - 64));
    ASSERT_EQ(pieces.consumed(), ids);
    EXPECT_EQ(whole, last);
  }
  {
    // Pieces cut elsewhere group the chunked sums differently: equal within float32 rounding.
    Session pieces(*engine);
    pieces.append(std::span<const int32_t>(ids.data(), 50));
    pieces.append(std::span<const int32_t>(ids.data() + 50, 1));
    const auto last = pieces.append(std::span<const int32_t>(ids.data() + 51, ids.size() - 51));
    ASSERT_EQ(last.size(), whole.size());
    float scale = 0;
    for (float v : whole) scale = std::max(scale, std::fabs(v));
    for (size_t i = 0; i < whole.size(); ++i) ASSERT_NEAR(last[i], whole[i], 1e-4f * scale) << i;
  }
}

TEST(Session, ResetGivesAFreshState) {
  auto engine = demo_engine();
  const std::vector<int32_t> a = {10, 20, 30, 40}, b = {7, 8, 9};
  Session s(*engine);
  const auto fresh = s.append(b);
  s.reset();
  s.append(a);
  s.reset();
  EXPECT_EQ(s.append(b), fresh);
  EXPECT_EQ(s.consumed(), b);
}

TEST(TextStream, StopsBeforeTheStopStringAndHoldsBackPartialMatches) {
  const Tokenizer tok = Tokenizer::from_model_dir(test::source_dir() + "/models/kjv-hybrid");
  const std::string text = "And God said, Let there be light: and there was light.";
  const auto ids = tok.encode(text);
  TextStream s(tok, {"there was"});
  std::string out;
  for (int32_t id : ids) {
    out += s.push(id);
    if (s.stopped()) break;
  }
  out += s.finish();
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(out, "And God said, Let there be light: and ");
  // Without a stop, the streamed text is the whole decode.
  TextStream all(tok, {});
  std::string whole;
  for (int32_t id : ids) whole += all.push(id);
  whole += all.finish();
  EXPECT_EQ(whole, text);
}

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  const std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f};
  Sampler s(SamplingParams{0.0f, 0, 1.0f, 0.0f, 0});
  EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(Sampler, FiltersKeepOnlyWhatTheyShould) {
  // Probabilities after softmax of these logits: about 0.64, 0.24, 0.09, 0.03.
  const std::vector<float> l = {3.0f, 2.0f, 1.0f, 0.0f};
  auto draws = [&](SamplingParams p) {
    Sampler s(p);
    std::vector<int> counts(4, 0);
    for (int i = 0; i < 4000; ++i) counts[size_t(s.sample(l.data(), 4))]++;
    return counts;
  };
  auto k1 = draws({1.0f, 1, 1.0f, 0.0f, 3});
  EXPECT_EQ(k1[0], 4000);
  auto k2 = draws({1.0f, 2, 1.0f, 0.0f, 3});
  EXPECT_EQ(k2[2] + k2[3], 0);
  EXPECT_GT(k2[1], 0);
  auto p = draws({1.0f, 0, 0.7f, 0.0f, 3});  // 0.64 < 0.7 <= 0.64 + 0.24: two tokens survive
  EXPECT_EQ(p[2] + p[3], 0);
  EXPECT_GT(p[1], 0);
  auto m = draws({1.0f, 0, 1.0f, 0.3f, 3});  // min_p 0.3 x 0.64 = 0.19: tokens 0 and 1 survive
  EXPECT_EQ(m[2] + m[3], 0);
  auto all = draws({1.0f, 0, 1.0f, 0.0f, 3});
  EXPECT_GT(all[3], 0);
  EXPECT_NEAR(all[0] / 4000.0, 0.644, 0.03);
}

TEST(Sampler, SameSeedSameTokens) {
  std::vector<float> l(1000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(float(i));
  Sampler a(SamplingParams{0.9f, 40, 0.95f, 0.01f, 42}), b(SamplingParams{0.9f, 40, 0.95f, 0.01f, 42});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(l.data(), 1000), b.sample(l.data(), 1000));
}

TEST(Sampler, RejectsOutOfRangeParameters) {
  EXPECT_THROW(Sampler(SamplingParams{-1.0f, 0, 1.0f, 0.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplingParams{1.0f, 0, 0.0f, 0.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplingParams{1.0f, 0, 1.0f, 1.5f, 0}), Error);
}
