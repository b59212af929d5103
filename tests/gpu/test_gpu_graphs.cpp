// Decode steps as CUDA graphs (docs/CUDA.md, "CUDA graphs"): an engine recording its decode steps per batch-size
// bucket against a twin that launches every op eagerly, both fed the same schedule. Every logits row must be
// bitwise the same (and finite): across every batch size 1 ... 64 (buckets and the sizes between), long decodes
// crossing KV blocks, 512-position attention parts and block-row width classes, sequences joining and leaving,
// mixed prefill + decode steps (which stay eager), and the transformers fixtures. Under graphs, a sequence's
// logits are also the same alone and with 1 ... 63 others.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/attention/attention_cuda.h"
#include "models/model.h"
#include "runtime/engine.h"
#include "test_util.h"

using namespace hyrax;
using namespace hyrax::gputest;

namespace {

const char* kFixtures[] = {"nope_mha_f32", "rope_gqa_tied_f32", "legacy_rope_bf16", "nope_gqa_headdim_bf16"};

std::string demo_model() { return source_dir() + "/models/kjv-hybrid"; }

std::unique_ptr<Engine> open_engine(const std::string& dir, bool graphs, int64_t max_seqs, int64_t max_len,
                                    int64_t chunk) {
  auto be = make_cuda_backend();
  auto model = load_model(dir, *be);
  EngineConfig cfg;
  cfg.max_seqs = max_seqs;
  cfg.max_seq_len = max_len;
  cfg.max_step_tokens = chunk;
  cfg.cuda_graphs = graphs;
  return std::make_unique<Engine>(std::move(be), std::move(model), cfg);
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

/// The same model twice: `g` records decode steps as graphs, `e` runs eagerly; sequence i exists in both.
struct Twin {
  std::unique_ptr<Engine> g, e;
  std::vector<Sequence> sg, se;
  std::vector<bool> open_;
  int64_t vocab = 0;

  Twin(const std::string& dir, int64_t max_seqs, int64_t max_len, int64_t chunk = 512)
      : g(open_engine(dir, true, max_seqs, max_len, chunk)), e(open_engine(dir, false, max_seqs, max_len, chunk)),
        sg(size_t(max_seqs)), se(size_t(max_seqs)), open_(size_t(max_seqs), false), vocab(g->vocab_size()) {}

  bool ready() const { return g->graphs() && !e->graphs(); }
  void open(size_t i) {
    ASSERT_TRUE(g->open(sg[i]) && e->open(se[i]));
    open_[i] = true;
  }
  void close(size_t i) {
    g->close(sg[i]);
    e->close(se[i]);
    open_[i] = false;
  }
  bool is_open(size_t i) const { return open_[i]; }
  int64_t cached(size_t i) const { return sg[i].n_cached; }

  /// One step over (sequence, new tokens) pairs in both engines; expects bitwise-equal, finite logits and returns
  /// the graph engine's.
  std::vector<float> step(const std::vector<std::pair<size_t, std::vector<int32_t>>>& work, const std::string& what) {
    std::vector<StepItem> ig, ie;
    for (const auto& [i, toks] : work) {
      ig.push_back(StepItem{&sg[i], toks.data(), int64_t(toks.size()), false});
      ie.push_back(StepItem{&se[i], toks.data(), int64_t(toks.size()), false});
    }
    const auto lg = g->step(ig);
    const auto le = e->step(ie);
    EXPECT_TRUE(all_finite(lg)) << what << ": non-finite logits under graphs";
    EXPECT_TRUE(same_bits(lg, le)) << what << ": graphs vs eager, max diff " << max_diff(lg, le);
    return lg;
  }
};

std::vector<int32_t> random_ids(std::mt19937_64& rng, size_t n, int64_t vocab) {
  std::vector<int32_t> v(n);
  for (auto& x : v) x = int32_t(rng() % uint64_t(vocab));
  return v;
}

/// One decode step of every open sequence, random tokens.
std::vector<std::pair<size_t, std::vector<int32_t>>> decode_all(const Twin& t, std::mt19937_64& rng) {
  std::vector<std::pair<size_t, std::vector<int32_t>>> w;
  for (size_t i = 0; i < t.sg.size(); ++i)
    if (t.is_open(i)) w.push_back({i, random_ids(rng, 1, t.vocab)});
  return w;
}

// The decode attention's grid comes from the bound max_kv, not from the lengths (what lets a graph replay with any
// lengths): the outputs are bitwise the same for any bound, parts past a sequence's length are skipped, and they
// agree with a float64 softmax over the bf16 cache.
void check_decode_any_bound(int64_t Hq, int64_t Hkv, int64_t D, int64_t bs) {
  SCOPED_TRACE("Hq " + std::to_string(Hq) + " Hkv " + std::to_string(Hkv) + " D " + std::to_string(D) + " block " +
               std::to_string(bs));
  namespace kc = kernels::cuda;
  const std::vector<int64_t> lens = {1, 511, 512, 513, 1700};
  const int64_t n = int64_t(lens.size()), width = 4096 / bs, n_blocks = n * width;
  Rng rng(next_seed());
  const auto k = round_bf16(rng.normal_vec(size_t(n_blocks * bs * Hkv * D)));
  const auto v = round_bf16(rng.normal_vec(size_t(n_blocks * bs * Hkv * D)));
  const auto q = round_bf16(rng.normal_vec(size_t(n * Hq * D)));
  const size_t un = lens.size();
  std::vector<int32_t> tables(un * size_t(width)), cu(un + 1), start(un), tok_seq(un), seqs(un);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = int32_t((i * 7919) % size_t(n_blocks));  // scattered
  for (int64_t s = 0; s < n; ++s) {
    cu[size_t(s + 1)] = int32_t(s + 1);
    start[size_t(s)] = int32_t(lens[size_t(s)] - 1);
    tok_seq[size_t(s)] = seqs[size_t(s)] = int32_t(s);
  }
  DevBuf dk = upload_bf16(k), dv = upload_bf16(v), dq = upload_bf16(q), dt = upload_i32(tables), dcu = upload_i32(cu),
         dst = upload_i32(start), dts = upload_i32(tok_seq), dseq = upload_i32(seqs);
  kc::AttentionParams p;
  p.batch = {n, n, dcu.get<int32_t>(), dst.get<int32_t>(), dts.get<int32_t>()};
  p.q = dq.get<__nv_bfloat16>();
  p.ldq = Hq * D;
  p.ldo = Hq * D;
  p.kv = {dk.get<__nv_bfloat16>(), dv.get<__nv_bfloat16>(), n_blocks, bs, Hkv, D, dt.get<int32_t>(), width};
  p.Hq = Hq;
  p.scale = 1.0f / std::sqrt(float(D));
  std::vector<std::vector<float>> outs;
  for (int64_t max_kv : {int64_t(1700), int64_t(2048), int64_t(4096)}) {
    DevBuf out(size_t(n * Hq * D) * 2), scratch(size_t(kc::attention_decode_scratch(n, Hq, D, max_kv)) * 4);
    out.poison();
    scratch.poison();
    p.out = out.get<__nv_bfloat16>();
    kc::attention_decode(p, dseq.get<int32_t>(), n, max_kv, scratch.get<float>(), nullptr);
    outs.push_back(download_bf16(out, size_t(n * Hq * D)));
    ASSERT_TRUE(all_finite(outs.back())) << "max_kv " << max_kv;
  }
  for (size_t i = 1; i < outs.size(); ++i) EXPECT_TRUE(same_bits(outs[i], outs[0])) << "bound " << i;
  std::vector<float> want(size_t(n * Hq * D));
  for (int64_t s = 0; s < n; ++s)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / (Hq / Hkv), L = lens[size_t(s)];
      std::vector<double> w(static_cast<size_t>(L));
      double mx = -1e300, sum = 0;
      auto at = [&](const std::vector<float>& c, int64_t pos, int64_t d) {
        const int64_t b = tables[size_t(s * width + pos / bs)];
        return double(c[size_t(((b * bs + pos % bs) * Hkv + hk) * D + d)]);
      };
      for (int64_t j = 0; j < L; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += double(q[size_t((s * Hq + h) * D + d)]) * at(k, j, d);
        w[size_t(j)] = dot * double(p.scale);
        mx = std::max(mx, w[size_t(j)]);
      }
      for (auto& x : w) sum += (x = std::exp(x - mx));
      for (int64_t d = 0; d < D; ++d) {
        double o = 0;
        for (int64_t j = 0; j < L; ++j) o += w[size_t(j)] * at(v, j, d);
        want[size_t((s * Hq + h) * D + d)] = float(o / sum);
      }
    }
  EXPECT_TRUE(close(outs[0], want, 2e-2, 2e-2));
}

}  // namespace

TEST(GpuGraphs, AttentionDecodeIsBitwiseTheSameForAnyLengthBound) {
  REQUIRE_GPU();
  check_decode_any_bound(8, 2, 128, 16);
}

// The same at every head dim class of the decode kernel (lanes per cache row 1 ... 32, head dims that leave lanes
// idle), grouped and plain heads, and blocks of 8 and 32 positions.
TEST(GpuGraphs, AttentionDecodeIsBitwiseTheSameForAnyLengthBoundAtEveryHeadDim) {
  REQUIRE_GPU();
  for (int64_t D : {8, 16, 24, 40, 64, 96, 136, 200, 256}) check_decode_any_bound(6, D % 16 == 0 ? 3 : 6, D, 8);
  check_decode_any_bound(4, 4, 128, 32);
}

// Every batch size 1 ... 64: the buckets 1, 2, 4, 8, 16, 24, 32, 48, 64 and every size padded up to one.
TEST(GpuGraphs, DecodeIsBitwiseEagerAtEveryBatchSize) {
  REQUIRE_GPU();
  Twin t(demo_model(), 64, 512, 4096);
  ASSERT_TRUE(t.ready()) << "the graphs engine records no graphs, or the eager twin does";
  std::mt19937_64 rng(next_seed());
  for (size_t n = 1; n <= 64; ++n) {
    SCOPED_TRACE("batch " + std::to_string(n));
    std::vector<std::pair<size_t, std::vector<int32_t>>> prefill;
    for (size_t i = 0; i < n; ++i) {
      t.open(i);
      prefill.push_back({i, random_ids(rng, 1 + rng() % 40, t.vocab)});
    }
    t.step(prefill, "prefill");
    for (int k = 0; k < 3; ++k) t.step(decode_all(t, rng), "decode " + std::to_string(k));
    for (size_t i = 0; i < n; ++i) t.close(i);
  }
  // Three decode steps per size: the first replays or records (a larger prefill drops the graphs recorded before
  // it), the others replay.
  EXPECT_GE(t.g->graph_captures(), 9);
  EXPECT_GE(t.g->graph_replays(), 64 * 2);
  EXPECT_EQ(t.e->graph_replays() + t.e->graph_captures(), 0);
}

// Under graphs a sequence's decode logits are the same alone (bucket 1) and with 1 ... 63 others (buckets 2 ... 64).
TEST(GpuGraphs, SequenceAloneOrWithOthersIsBitwiseTheSame) {
  REQUIRE_GPU();
  auto engine = open_engine(demo_model(), true, 64, 512, 4096);
  ASSERT_TRUE(engine->graphs()) << "the CUDA backend records no step graphs";
  const int64_t V = engine->vocab_size();
  std::mt19937_64 rng(next_seed());
  const auto prompt = random_ids(rng, 37, V);
  const auto next = random_ids(rng, 4, V);
  std::vector<std::vector<float>> alone;
  {
    Sequence s;
    ASSERT_TRUE(engine->open(s));
    engine->step({StepItem{&s, prompt.data(), int64_t(prompt.size()), false}});
    for (const int32_t& tok : next) alone.push_back(engine->step({StepItem{&s, &tok, 1, false}}));
    engine->close(s);
  }
  ASSERT_TRUE(all_finite(alone.back()));
  for (int n_others = 1; n_others <= 63; ++n_others) {
    SCOPED_TRACE("with " + std::to_string(n_others) + " others");
    std::vector<Sequence> seqs(size_t(n_others) + 1);
    for (auto& s : seqs) ASSERT_TRUE(engine->open(s));
    const size_t me = rng() % seqs.size();
    std::vector<std::vector<int32_t>> prompts(seqs.size());
    std::vector<StepItem> items;
    for (size_t i = 0; i < seqs.size(); ++i) {
      prompts[i] = i == me ? prompt : random_ids(rng, 1 + rng() % 60, V);
      items.push_back(StepItem{&seqs[i], prompts[i].data(), int64_t(prompts[i].size()), false});
    }
    engine->step(items);
    for (size_t k = 0; k < next.size(); ++k) {
      std::vector<int32_t> toks = random_ids(rng, seqs.size(), V);
      toks[me] = next[k];
      std::vector<StepItem> dec;
      for (size_t i = 0; i < seqs.size(); ++i) dec.push_back(StepItem{&seqs[i], &toks[i], 1, false});
      const auto o = engine->step(dec);
      const std::vector<float> row(o.begin() + int64_t(me) * V, o.begin() + int64_t(me + 1) * V);
      EXPECT_TRUE(same_bits(row, alone[k])) << "decode " << k << ": max diff " << max_diff(row, alone[k]);
    }
    for (auto& s : seqs) engine->close(s);
  }
  EXPECT_GT(engine->graph_replays(), 100);
}

// Long decodes: positions cross KV blocks (16), the attention decode's 512-position parts and the block-row width
// classes of the graphs (8, 16, ..., 128 blocks), with sequences at different lengths in one step.
TEST(GpuGraphs, LongDecodesAcrossBlocksPartsAndWidths) {
  REQUIRE_GPU();
  Twin t(demo_model(), 4, 2048, 1024);
  ASSERT_TRUE(t.ready()) << "the graphs engine records no graphs, or the eager twin does";
  std::mt19937_64 rng(next_seed());
  const size_t lens[] = {500, 3, 1020};
  for (size_t i = 0; i < 3; ++i) t.open(i);
  t.step({{0, random_ids(rng, lens[0], t.vocab)}, {1, random_ids(rng, lens[1], t.vocab)}}, "prefill a, b");
  t.step({{2, random_ids(rng, lens[2], t.vocab)}}, "prefill c");
  for (int k = 0; k < 560; ++k) {
    t.step(decode_all(t, rng), "decode " + std::to_string(k));
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_EQ(t.cached(2), 1020 + 560);  // crossed 1024 and 1536
  EXPECT_GT(t.g->graph_replays(), 500);
}

// A sequence longer than max_seq_len (the KV pool lends it the blocks of an idle one) widens the block rows past
// the width the graphs were sized for: they are recorded again at the new width.
TEST(GpuGraphs, SequencePastMaxSeqLen) {
  REQUIRE_GPU();
  Twin t(demo_model(), 2, 256, 512);
  ASSERT_TRUE(t.ready()) << "the graphs engine records no graphs, or the eager twin does";
  std::mt19937_64 rng(next_seed());
  t.open(0);
  t.step({{0, random_ids(rng, 200, t.vocab)}}, "prefill");
  for (int k = 0; k < 250; ++k) t.step(decode_all(t, rng), "decode " + std::to_string(k));
  EXPECT_EQ(t.cached(0), 450);
}

// Sequences join (prefill, sometimes in the same step as others' decodes) and leave between steps.
TEST(GpuGraphs, SequencesJoiningAndLeaving) {
  REQUIRE_GPU();
  const size_t slots = 20;  // not a bucket: 17 ... 20 sequences pad to 24
  Twin t(demo_model(), int64_t(slots), 512, 512);
  ASSERT_TRUE(t.ready()) << "the graphs engine records no graphs, or the eager twin does";
  std::mt19937_64 rng(next_seed());
  for (int k = 0; k < 150 && !::testing::Test::HasFailure(); ++k) {
    for (size_t i = 0; i < slots; ++i)  // leave: done, or out of room
      if (t.is_open(i) && (rng() % 12 == 0 || t.cached(i) > 400)) t.close(i);
    auto work = decode_all(t, rng);
    if (rng() % 3 == 0) {  // join, in a step of its own or beside the decodes
      std::vector<std::pair<size_t, std::vector<int32_t>>> joins;
      for (size_t i = 0; i < slots && joins.size() < 4; ++i)
        if (!t.is_open(i) && rng() % 2 == 0) {
          t.open(i);
          joins.push_back({i, random_ids(rng, 1 + rng() % 50, t.vocab)});
        }
      if (rng() % 2 == 0) t.step(joins, "join " + std::to_string(k));
      else work.insert(work.end(), joins.begin(), joins.end());
    }
    if (!work.empty()) t.step(work, "step " + std::to_string(k));
  }
  EXPECT_GT(t.g->graph_replays(), 30);
}

// A step mixing prefill and decode runs eagerly under graphs too, and agrees with the eager twin.
TEST(GpuGraphs, MixedStepStaysEager) {
  REQUIRE_GPU();
  Twin t(demo_model(), 8, 512, 512);
  ASSERT_TRUE(t.ready()) << "the graphs engine records no graphs, or the eager twin does";
  std::mt19937_64 rng(next_seed());
  for (size_t i = 0; i < 5; ++i) t.open(i);
  std::vector<std::pair<size_t, std::vector<int32_t>>> prefill;
  for (size_t i = 0; i < 5; ++i) prefill.push_back({i, random_ids(rng, 10 + i, t.vocab)});
  t.step(prefill, "prefill");
  for (int k = 0; k < 3; ++k) t.step(decode_all(t, rng), "decode");
  const int64_t replays = t.g->graph_replays(), captures = t.g->graph_captures();
  EXPECT_EQ(replays, 2);
  EXPECT_EQ(captures, 1);
  t.open(5);
  auto mixed = decode_all(t, rng);
  mixed.back().second = random_ids(rng, 17, t.vocab);  // the new sequence's prompt beside five decodes
  t.step(mixed, "mixed");
  EXPECT_EQ(t.g->graph_replays(), replays);
  EXPECT_EQ(t.g->graph_captures(), captures);
  for (int k = 0; k < 3; ++k) t.step(decode_all(t, rng), "decode after");
  EXPECT_GT(t.g->graph_replays(), replays);
}

// Padding rows borrow a free state slot and KV block; with every slot taken, a step of 3 (bucket 4) runs eagerly,
// and a step of 2 (a bucket itself) needs no padding.
TEST(GpuGraphs, NoFreeSlotRunsEagerUnlessNoPaddingIsNeeded) {
  REQUIRE_GPU();
  Twin t(demo_model(), 3, 512, 512);
  ASSERT_TRUE(t.ready()) << "the graphs engine records no graphs, or the eager twin does";
  std::mt19937_64 rng(next_seed());
  std::vector<std::pair<size_t, std::vector<int32_t>>> prefill;
  for (size_t i = 0; i < 3; ++i) {
    t.open(i);
    prefill.push_back({i, random_ids(rng, 5 + i, t.vocab)});
  }
  t.step(prefill, "prefill");
  for (int k = 0; k < 3; ++k) t.step(decode_all(t, rng), "decode of 3");
  EXPECT_EQ(t.g->graph_captures() + t.g->graph_replays(), 0);
  t.close(1);
  for (int k = 0; k < 3; ++k) t.step(decode_all(t, rng), "decode of 2");
  EXPECT_EQ(t.g->graph_captures(), 1);
  EXPECT_EQ(t.g->graph_replays(), 2);
}

class GpuGraphsFixture : public ::testing::TestWithParam<const char*> {};

// The transformers fixtures: several sequences at different prefixes of the reference ids, then teacher-forced
// decode steps of all of them together.
TEST_P(GpuGraphsFixture, DecodeIsBitwiseEager) {
  REQUIRE_GPU();
  const std::string name = GetParam();
  const auto meta = test::read_json(fixture_dir(name) + "/reference/meta.json");
  const auto ids = meta["ids"].get<std::vector<int32_t>>();
  Twin t(fixture_dir(name), 8, 1024, 512);
  ASSERT_TRUE(t.ready()) << "the graphs engine records no graphs, or the eager twin does";
  const size_t prefixes[] = {1, 7, 20, 33, 64};
  std::vector<std::pair<size_t, std::vector<int32_t>>> prefill;
  for (size_t i = 0; i < 5; ++i) {
    t.open(i);
    const size_t n = std::min(prefixes[i], ids.size());
    prefill.push_back({i, std::vector<int32_t>(ids.begin(), ids.begin() + int64_t(n))});
  }
  t.step(prefill, name + " prefill");
  for (size_t k = 0; k < 40; ++k) {
    std::vector<std::pair<size_t, std::vector<int32_t>>> w;
    for (size_t i = 0; i < 5; ++i) w.push_back({i, {ids[size_t(t.cached(i)) % ids.size()]}});
    t.step(w, name + " decode " + std::to_string(k));
  }
  EXPECT_EQ(t.g->graph_replays(), 39);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuGraphsFixture, ::testing::ValuesIn(kFixtures));
