// The bundled demo model (models/kjv-hybrid): hyrax's greedy continuations equal transformers' (recorded by
// tools/train_demo.py from the saved folder, float32 math).
#include <gtest/gtest.h>

#include "models/model.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace hyrax;

TEST(DemoModel, GreedyContinuationsMatchTransformers) {
  const auto ref = test::read_json(test::source_dir() + "/tests/fixtures/kjv_hybrid_greedy.json");
  auto be = make_cpu_backend();
  auto model = load_model(test::source_dir() + "/models/kjv-hybrid", *be);
  EngineConfig cfg;
  cfg.max_seq_len = 128;
  Engine engine(std::move(be), std::move(model), cfg);
  ASSERT_GE(ref["greedy"].size(), 5u);
  for (const auto& g : ref["greedy"]) {
    GenerateOptions opt;
    const auto want = g["continuation"].get<std::vector<int32_t>>();
    opt.max_new_tokens = int64_t(want.size());
    opt.sampling.temperature = 0;
    opt.stop_ids = engine.model().info().eos_token_ids;
    const auto res = generate(engine, g["prompt_ids"].get<std::vector<int32_t>>(), opt);
    EXPECT_EQ(res.tokens, want) << "prompt: " << g["prompt"].get<std::string>();
  }
}

// The demo's tokenizer gives the ids and text transformers' tokenizer gave.
TEST(DemoModel, TokenizerMatchesTheRecordedIdsAndText) {
  const auto ref = test::read_json(test::source_dir() + "/tests/fixtures/kjv_hybrid_greedy.json");
  const Tokenizer tok = Tokenizer::from_model_dir(test::source_dir() + "/models/kjv-hybrid");
  for (const auto& g : ref["greedy"]) {
    EXPECT_EQ(tok.encode(g["prompt"].get<std::string>()), g["prompt_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.decode(g["continuation"].get<std::vector<int32_t>>(), true), g["text"].get<std::string>());
  }
}
