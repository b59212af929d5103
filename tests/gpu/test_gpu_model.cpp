// Whole models on the CUDA backend: logits against transformers' fixtures, against the CPU backend, full forward
// against prefill + decode, and batch invariance (bitwise) across batch composition and prefill chunking.
//
// Tolerance against float32 references: the GPU keeps activations in bf16, so every activation carries a rounding
// error of up to 2^-9 (0.2%) relative, and f32 checkpoints are rounded to bf16 on upload. These tiny random models
// (initializer_range 0.08, β up to 2) amplify such perturbations: transformers itself, run in bf16 on the GPU,
// lands at top-1 agreement 80-98% and mean KL 3e-5 .. 4e-3 against its own float32 logits on these fixtures
// (bench/peers/bf16_floor.py; figures in docs/PERFORMANCE.md). The bounds below sit at that floor (mean KL 5e-3,
// worst position 0.1, top-1 80%); hyrax measures at or better than transformers-bf16 on every fixture, and a wrong
// kernel lands orders of magnitude beyond them.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "gpu_test_util.h"
#include "models/model.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "test_util.h"

using namespace hyrax;
using namespace hyrax::gputest;

namespace {

const char* kFixtures[] = {"nope_mha_f32", "rope_gqa_tied_f32", "legacy_rope_bf16", "nope_gqa_headdim_bf16"};

std::string demo_model() { return source_dir() + "/models/kjv-hybrid"; }

std::unique_ptr<Engine> open_gpu(const std::string& dir, int64_t chunk, int64_t max_seqs = 4, int64_t max_len = 1024) {
  auto be = make_cuda_backend();
  auto model = load_model(dir, *be);
  EngineConfig cfg;
  cfg.max_seqs = max_seqs;
  cfg.max_seq_len = max_len;
  cfg.max_step_tokens = chunk;
  return std::make_unique<Engine>(std::move(be), std::move(model), cfg);
}

struct Agreement {
  double top1 = 0, max_kl = 0, mean_kl = 0, max_rel = 0;
};

/// Per position of [T, V] logits: argmax agreement, KL(softmax(want) ‖ softmax(got)), max |Δ| / max |want|.
Agreement agreement(const std::vector<float>& got, const std::vector<float>& want, int64_t V) {
  Agreement a;
  const int64_t T = int64_t(want.size()) / V;
  int64_t same = 0;
  for (int64_t t = 0; t < T; ++t) {
    const float* g = got.data() + t * V;
    const float* w = want.data() + t * V;
    same += (std::max_element(g, g + V) - g) == (std::max_element(w, w + V) - w);
    const double mg = *std::max_element(g, g + V), mw = *std::max_element(w, w + V);
    double zg = 0, zw = 0, scale = 0, diff = 0;
    for (int64_t v = 0; v < V; ++v) {
      zg += std::exp(double(g[v]) - mg);
      zw += std::exp(double(w[v]) - mw);
      scale = std::max(scale, double(std::fabs(w[v])));
      diff = std::max(diff, std::fabs(double(g[v]) - double(w[v])));
    }
    double kl = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double lw = double(w[v]) - mw - std::log(zw), lg = double(g[v]) - mg - std::log(zg);
      kl += std::exp(lw) * (lw - lg);
    }
    if (std::isnan(kl) || std::isnan(diff)) kl = INFINITY;
    a.max_kl = std::max(a.max_kl, kl);
    a.mean_kl += kl / double(T);
    a.max_rel = std::max(a.max_rel, diff / scale);
  }
  a.top1 = double(same) / double(T);
  return a;
}

void report(const std::string& what, const Agreement& a) {
  std::printf("  %-44s top-1 %6.2f%%  KL mean %.2e max %.2e  max|dlogit|/max|logit| %.2e\n", what.c_str(),
              100.0 * a.top1, a.mean_kl, a.max_kl, a.max_rel);
  ::testing::Test::RecordProperty(what + "_top1", std::to_string(a.top1));
  ::testing::Test::RecordProperty(what + "_mean_kl", std::to_string(a.mean_kl));
  ::testing::Test::RecordProperty(what + "_max_kl", std::to_string(a.max_kl));
}

void expect_within_bf16_noise(const Agreement& a) {
  EXPECT_LE(a.mean_kl, 5e-3);
  EXPECT_LE(a.max_kl, 1e-1);
  EXPECT_GE(a.top1, 0.80);
}

std::vector<int32_t> random_ids(uint64_t seed, size_t n, int32_t vocab) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace

class GpuFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(GpuFixture, LogitsMatchTransformersWithinBf16Noise) {
  REQUIRE_GPU();
  const std::string name = GetParam();
  const auto meta = test::read_json(fixture_dir(name) + "/reference/meta.json");
  const auto want = test::read_f32(fixture_dir(name) + "/reference/logits.f32");
  const auto ids = meta["ids"].get<std::vector<int32_t>>();
  const int64_t V = meta["vocab_size"].get<int64_t>();
  for (int64_t chunk : {int64_t(512), int64_t(64)}) {
    auto engine = open_gpu(fixture_dir(name), chunk);
    const auto got = engine->logits_all(ids);
    const Agreement a = agreement(got, want, V);
    report(name + " vs transformers (chunk " + std::to_string(chunk) + ")", a);
    expect_within_bf16_noise(a);
  }
  // Every position as a decode step (recurrent GDN, decode attention): separates the chunked kernels' own error
  // from the bf16 activations'.
  auto engine = open_gpu(fixture_dir(name), 512);
  Sequence seq;
  ASSERT_TRUE(engine->open(seq));
  std::vector<float> stepped;
  for (size_t t = 0; t < ids.size(); ++t) {
    auto row = engine->step({StepItem{&seq, &ids[t], 1, false}});
    stepped.insert(stepped.end(), row.begin(), row.end());
  }
  engine->close(seq);
  const Agreement d = agreement(stepped, want, V);
  report(name + " vs transformers (decode only)", d);
  expect_within_bf16_noise(d);
}

TEST_P(GpuFixture, GreedyContinuationAgainstTransformers) {
  REQUIRE_GPU();
  const std::string name = GetParam();
  const auto meta = test::read_json(fixture_dir(name) + "/reference/meta.json");
  const auto prompt = meta["greedy_prompt"].get<std::vector<int32_t>>();
  const auto want = meta["greedy_continuation"].get<std::vector<int32_t>>();
  auto engine = open_gpu(fixture_dir(name), 512);
  GenerateOptions opt;
  opt.max_new_tokens = int64_t(want.size());
  opt.sampling.temperature = 0;
  opt.stop_ids = engine->model().info().eos_token_ids;
  const auto res = generate(*engine, prompt, opt);
  size_t agree = 0;
  while (agree < want.size() && agree < res.tokens.size() && res.tokens[agree] == want[agree]) ++agree;
  std::printf("  %-44s greedy: first %zu of %zu tokens as transformers (its smallest top-2 margin %.3g)\n",
              name.c_str(), agree, want.size(), meta["greedy_min_margin"].get<double>());
  RecordProperty("greedy_agree", std::to_string(agree));
  EXPECT_FALSE(res.tokens.empty());
}

// Full forward == prefill of a prefix + one decode step per remaining token (recurrent GDN, decode attention).
TEST_P(GpuFixture, PrefillThenDecodeMatchesFullForward) {
  REQUIRE_GPU();
  const std::string name = GetParam();
  const auto meta = test::read_json(fixture_dir(name) + "/reference/meta.json");
  auto ids = meta["ids"].get<std::vector<int32_t>>();
  ids.resize(std::min<size_t>(ids.size(), 150));
  const int64_t V = meta["vocab_size"].get<int64_t>();
  auto engine = open_gpu(fixture_dir(name), 512);
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
  const Agreement a = agreement(stepped, full, V);
  report(name + " prefill+decode vs full forward", a);
  // Decode takes the float32 recurrent GDN and the decode attention, prefill the tensor-core kernels: the two
  // differ by bf16 operand rounding only.
  EXPECT_LE(a.mean_kl, 5e-3);
  EXPECT_LE(a.max_kl, 1e-1);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuFixture, ::testing::ValuesIn(kFixtures));

TEST(GpuDemoModel, GreedyContinuationsAgainstTransformers) {
  REQUIRE_GPU();
  const auto ref = test::read_json(source_dir() + "/tests/fixtures/kjv_hybrid_greedy.json");
  auto engine = open_gpu(demo_model(), 512);
  size_t total = 0, agree_all = 0;
  for (const auto& g : ref["greedy"]) {
    const auto prompt = g["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = g["continuation"].get<std::vector<int32_t>>();
    GenerateOptions opt;
    opt.max_new_tokens = int64_t(want.size());
    opt.sampling.temperature = 0;
    const auto res = generate(*engine, prompt, opt);
    size_t agree = 0;
    while (agree < want.size() && agree < res.tokens.size() && res.tokens[agree] == want[agree]) ++agree;
    std::string shown = g["prompt"].get<std::string>();
    std::replace(shown.begin(), shown.end(), '\n', ' ');
    std::printf("  kjv-hybrid greedy \"%s\": first %zu of %zu tokens as transformers\n", shown.c_str(), agree,
                want.size());
    total += want.size();
    agree_all += agree;
  }
  RecordProperty("greedy_agree", std::to_string(agree_all) + "/" + std::to_string(total));
  EXPECT_GT(agree_all, 0u);
}

TEST(GpuDemoModel, LogitsMatchCpuBackendWithinBf16Noise) {
  REQUIRE_GPU();
  const auto ids = random_ids(next_seed(), 300, 4096);
  auto gpu = open_gpu(demo_model(), 512);
  auto cpu_be = make_cpu_backend();
  auto cpu_model = load_model(demo_model(), *cpu_be);
  EngineConfig cfg;
  cfg.max_seq_len = 1024;
  Engine cpu(std::move(cpu_be), std::move(cpu_model), cfg);
  const Agreement a = agreement(gpu->logits_all(ids), cpu.logits_all(ids), 4096);
  report("kjv-hybrid GPU vs CPU (random prompt)", a);
  expect_within_bf16_noise(a);
}

// A sequence's logits are bitwise the same whatever prefill chunk (a multiple of 64) splits its prompt.
TEST(GpuDemoModel, LogitsAreBitwiseInvariantToPrefillChunksOf64) {
  REQUIRE_GPU();
  const auto ids = random_ids(next_seed(), 300, 4096);
  auto one = open_gpu(demo_model(), 512);
  const auto whole = one->logits_all(ids);
  for (int64_t chunk : {64, 128, 192, 256}) {
    auto e = open_gpu(demo_model(), chunk);
    const auto got = e->logits_all(ids);
    EXPECT_TRUE(same_bits(got, whole)) << "chunk " << chunk << ": max diff " << max_diff(got, whole);
  }
  // Chunks off the 64-token grid regroup the chunked recurrence's sums: equal within rounding, not bitwise.
  auto odd = open_gpu(demo_model(), 97);
  const auto got = odd->logits_all(ids);
  const Agreement a = agreement(got, whole, 4096);
  report("kjv-hybrid chunk 97 vs one pass", a);
  EXPECT_LE(a.mean_kl, 5e-3);
}

// A sequence's logits are bitwise the same alone and in a step with 1 ... 64 other sequences (prefill and decode).
// Engines of up to 32 sequences run decoding rows on the decode GEMM, larger ones on cuBLASLt (docs/CUDA.md): both.
class GpuBatchInvariance : public ::testing::TestWithParam<int64_t> {};

TEST_P(GpuBatchInvariance, LogitsAreBitwiseInvariantToBatchComposition) {
  REQUIRE_GPU();
  const int64_t V = 4096, capacity = GetParam();
  auto engine = open_gpu(demo_model(), 16384, capacity, 512);
  const auto prompt = random_ids(next_seed(), 100, int32_t(V));
  const std::vector<int32_t> next = {17, 400, 3000};
  // Alone.
  std::vector<std::vector<float>> alone;
  {
    Sequence s;
    ASSERT_TRUE(engine->open(s));
    alone.push_back(engine->step({StepItem{&s, prompt.data(), int64_t(prompt.size()), true}}));
    for (const int32_t& t : next) alone.push_back(engine->step({StepItem{&s, &t, 1, false}}));
    engine->close(s);
  }
  std::mt19937_64 rng(next_seed());
  for (int n_others : {1, 2, 7, 31, 64}) {
    if (n_others + 1 > capacity) continue;
    SCOPED_TRACE("with " + std::to_string(n_others) + " other sequences");
    std::vector<Sequence> seqs(size_t(n_others) + 1);
    for (auto& s : seqs) ASSERT_TRUE(engine->open(s));
    const size_t me = size_t(n_others) / 2;  // somewhere in the middle of the batch
    std::vector<std::vector<int32_t>> prompts(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i)
      prompts[i] = i == me ? prompt : random_ids(rng(), size_t(1 + rng() % 80), int32_t(V));
    // Prefill step: everyone's prompt (some of one token, which decode), logits of all our rows.
    std::vector<StepItem> items;
    size_t my_row = 0, rows = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      items.push_back(StepItem{&seqs[i], prompts[i].data(), int64_t(prompts[i].size()), i == me});
      if (i == me) my_row = rows;
      rows += i == me ? prompts[i].size() : 1;
    }
    const auto out = engine->step(items);
    const std::vector<float> mine(out.begin() + int64_t(my_row) * V,
                                  out.begin() + int64_t(my_row + prompt.size()) * V);
    EXPECT_TRUE(same_bits(mine, alone[0])) << "prefill: max diff " << max_diff(mine, alone[0]);
    // Decode steps: one token each.
    for (size_t k = 0; k < next.size(); ++k) {
      std::vector<StepItem> dec;
      std::vector<int32_t> toks(seqs.size());
      for (size_t i = 0; i < seqs.size(); ++i) {
        toks[i] = i == me ? next[k] : int32_t(rng() % uint64_t(V));
        dec.push_back(StepItem{&seqs[i], &toks[i], 1, false});
      }
      const auto o = engine->step(dec);
      const std::vector<float> row(o.begin() + int64_t(me) * V, o.begin() + int64_t(me + 1) * V);
      EXPECT_TRUE(same_bits(row, alone[k + 1])) << "decode step " << k << ": max diff " << max_diff(row, alone[k + 1]);
    }
    for (auto& s : seqs) engine->close(s);
  }
}

INSTANTIATE_TEST_SUITE_P(Capacity, GpuBatchInvariance, ::testing::Values(int64_t(32), int64_t(65)));
