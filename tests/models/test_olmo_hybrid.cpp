// Olmo Hybrid on CPU against transformers 5.17 (fixtures made by tools/make_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "models/model.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "test_util.h"

using namespace hyrax;

namespace {

const char* kFixtures[] = {"nope_mha_f32", "rope_gqa_tied_f32", "legacy_rope_bf16", "nope_gqa_headdim_bf16"};

std::unique_ptr<Engine> open(const std::string& fixture, int64_t chunk, int64_t max_len = 512) {
  auto be = make_cpu_backend();
  auto model = load_model(test::fixture_dir(fixture), *be);
  EngineConfig cfg;
  cfg.max_seqs = 4;
  cfg.max_seq_len = max_len;
  cfg.max_step_tokens = chunk;
  return std::make_unique<Engine>(std::move(be), std::move(model), cfg);
}

// Per position: max |Δlogit| <= tol · max |logit of the reference at that position|.
void expect_close_rows(const std::vector<float>& got, const std::vector<float>& want, int64_t V, double rel,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const int64_t T = int64_t(want.size()) / V;
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    double scale = 0, diff = 0;
    for (int64_t v = 0; v < V; ++v) {
      const float g = got[size_t(t * V + v)], w = want[size_t(t * V + v)];
      ASSERT_FALSE(std::isnan(g)) << what << " position " << t;
      scale = std::max(scale, double(std::fabs(w)));
      diff = std::max(diff, double(std::fabs(g - w)));
    }
    worst = std::max(worst, diff / scale);
    ASSERT_LE(diff, rel * scale) << what << ": position " << t << " max |dlogit| " << diff << " vs max |logit| "
                                 << scale;
  }
  ::testing::Test::RecordProperty(what + "_worst_rel", std::to_string(worst));
}

}  // namespace

class OlmoHybridFixture : public ::testing::TestWithParam<const char*> {};

// Float32 math on the stored weights (bf16 fixtures too: their reference ran float32 math on the same
// bf16-rounded weights), so the only differences are float32 rounding in a different order (and the chunked GDN
// against torch's chunked GDN). Observed worst per-position error: 1.9e-5 of the largest logit (nope_mha_f32, 8
// layers, 300 tokens); 1e-4 leaves 5x headroom and stays ~30x below the smallest greedy margin of the fixtures.
constexpr double kRelTol = 1e-4;

TEST_P(OlmoHybridFixture, LogitsMatchTransformersAtEveryPosition) {
  const std::string name = GetParam();
  const auto meta = test::read_json(test::fixture_dir(name) + "/reference/meta.json");
  const auto want = test::read_f32(test::fixture_dir(name) + "/reference/logits.f32");
  const auto ids = meta["ids"].get<std::vector<int32_t>>();
  const int64_t V = meta["vocab_size"].get<int64_t>();
  // One prefill pass, and prefill in chunks that do not align with the 64-token GDN chunks.
  for (int64_t chunk : {int64_t(512), int64_t(97)}) {
    auto engine = open(name, chunk);
    expect_close_rows(engine->logits_all(ids), want, V, kRelTol, name + " chunk " + std::to_string(chunk));
  }
}

TEST_P(OlmoHybridFixture, GreedyContinuationMatchesTransformers) {
  const std::string name = GetParam();
  const auto meta = test::read_json(test::fixture_dir(name) + "/reference/meta.json");
  const auto prompt = meta["greedy_prompt"].get<std::vector<int32_t>>();
  const auto want = meta["greedy_continuation"].get<std::vector<int32_t>>();
  auto engine = open(name, 512);
  GenerateOptions opt;
  opt.max_new_tokens = int64_t(want.size());
  opt.sampling.temperature = 0;
  opt.stop_ids = engine->model().info().eos_token_ids;
  const auto res = generate(*engine, prompt, opt);
  EXPECT_EQ(res.tokens, want);
}

// Full forward == prefill of a prefix + one decode step per remaining token (recurrent GDN, KV cache growth).
TEST_P(OlmoHybridFixture, PrefillThenDecodeEqualsFullForward) {
  const std::string name = GetParam();
  const auto meta = test::read_json(test::fixture_dir(name) + "/reference/meta.json");
  auto ids = meta["ids"].get<std::vector<int32_t>>();
  ids.resize(std::min<size_t>(ids.size(), 150));
  const int64_t V = meta["vocab_size"].get<int64_t>();
  auto engine = open(name, 512);
  const auto full = engine->logits_all(ids);
  Sequence seq;
  ASSERT_TRUE(engine->open(seq));
  const int64_t prefix = 70;
  std::vector<float> stepped = engine->step({StepItem{&seq, ids.data(), prefix, true}});
  for (size_t t = size_t(prefix); t < ids.size(); ++t) {
    auto row = engine->step({StepItem{&seq, &ids[t], 1, false}});
    stepped.insert(stepped.end(), row.begin(), row.end());
  }
  engine->close(seq);
  expect_close_rows(stepped, full, V, kRelTol, name + " decode");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OlmoHybridFixture, ::testing::ValuesIn(kFixtures));

// A sequence's logits do not depend on the other sequences of its step (CPU: bitwise).
TEST(OlmoHybridBatch, SequenceLogitsAreBitwiseTheSameAloneAndInABatch) {
  const auto meta = test::read_json(test::fixture_dir("nope_mha_f32") + "/reference/meta.json");
  auto ids = meta["ids"].get<std::vector<int32_t>>();
  auto engine = open("nope_mha_f32", 512);
  const int64_t V = engine->vocab_size();
  const std::vector<int32_t> a(ids.begin(), ids.begin() + 40), b(ids.begin() + 100, ids.begin() + 133),
      c(ids.begin() + 200, ids.begin() + 201);
  // Alone: prefill a, then decode two tokens.
  Sequence s1;
  ASSERT_TRUE(engine->open(s1));
  auto alone_prefill = engine->step({StepItem{&s1, a.data(), int64_t(a.size()), true}});
  auto alone_d1 = engine->step({StepItem{&s1, &ids[250], 1, false}});
  engine->close(s1);
  // Together with two other sequences in the same steps, in the middle of the batch.
  Sequence x, y, z;
  ASSERT_TRUE(engine->open(x) && engine->open(y) && engine->open(z));
  auto both = engine->step({StepItem{&x, b.data(), int64_t(b.size()), false},
                            StepItem{&y, a.data(), int64_t(a.size()), true},
                            StepItem{&z, c.data(), int64_t(c.size()), false}});
  ASSERT_EQ(both.size(), size_t(V) * (1 + a.size() + 1));
  EXPECT_TRUE(std::equal(alone_prefill.begin(), alone_prefill.end(), both.begin() + V));
  auto both_d1 = engine->step({StepItem{&z, &ids[7], 1, false}, StepItem{&y, &ids[250], 1, false},
                               StepItem{&x, &ids[9], 1, false}});
  EXPECT_TRUE(std::equal(alone_d1.begin(), alone_d1.end(), both_d1.begin() + V));
  engine->close(x);
  engine->close(y);
  engine->close(z);
}
