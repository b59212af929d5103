// The bundled demo model (models/kjv-hybrid): hyrax's greedy continuations equal transformers' (recorded by
// tools/train_demo.py from the saved folder, float32 math).
#include <gtest/gtest.h>

#include "models/model.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "test_util.h"

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
