// The continuous-batching scheduler on the demo model (CPU): batch invariance (a request gives the same bits alone
// or among others), prompt logprobs equal to the engine's own scoring, exact capacity, preemption by recompute,
// cancellation, stop conditions, n choices, queueing, shutdown.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "models/model.h"
#include "runtime/capacity.h"
#include "runtime/scheduler.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace hyrax;

namespace {

struct Outcome {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<TokenLogprob>> lps;
  std::vector<std::string> text;
  std::vector<Finish> finish;
  std::vector<std::string> stop_string;
  std::optional<PromptLogprobs> prompt_lp;
  bool done = false, failed = false;
  std::string error;
  RequestDone usage;
};

void absorb(Outcome& o, RequestEvent&& e) {
  if (auto* u = std::get_if<ChoiceUpdate>(&e)) {
    const size_t i = size_t(u->index);
    if (o.ids.size() <= i) {
      o.ids.resize(i + 1);
      o.lps.resize(i + 1);
      o.text.resize(i + 1);
      o.finish.resize(i + 1, Finish::None);
      o.stop_string.resize(i + 1);
    }
    o.ids[i].insert(o.ids[i].end(), u->ids.begin(), u->ids.end());
    o.lps[i].insert(o.lps[i].end(), u->logprobs.begin(), u->logprobs.end());
    o.text[i] += u->text;
    if (u->finish != Finish::None) {
      o.finish[i] = u->finish;
      o.stop_string[i] = u->stop_string;
    }
  } else if (auto* p = std::get_if<PromptLogprobs>(&e)) {
    o.prompt_lp = *p;
  } else if (auto* d = std::get_if<RequestDone>(&e)) {
    o.done = true;
    o.usage = *d;
  } else if (auto* f = std::get_if<RequestFailed>(&e)) {
    o.failed = true;
    o.error = f->message;
  }
}

Outcome drain_handle(RequestHandle& h) {
  Outcome o;
  while (auto e = h.next(std::chrono::milliseconds(0))) absorb(o, std::move(*e));
  return o;
}

/// The demo model behind a scheduler, stepped on the test's thread.
struct Rig {
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Scheduler> sched;
  Capacity cap;

  explicit Rig(CapacityRequest cr, int64_t prefill_chunk = 128, int64_t max_step = 0) {
    const std::string dir = test::source_dir() + "/models/kjv-hybrid";
    auto be = make_cpu_backend();
    auto model = load_model(dir, *be);
    cap = plan_capacity(model->state_spec(), be->kv_dtype(), model->info().max_positions, cr);
    engine = std::make_unique<Engine>(std::move(be), std::move(model),
                                      cap.engine_config(max_step > 0 ? max_step : prefill_chunk + cap.max_seqs));
    tok = std::make_unique<Tokenizer>(Tokenizer::from_model_dir(dir));
    SchedulerConfig sc;
    sc.prefill_chunk = prefill_chunk;
    sched = std::make_unique<Scheduler>(*engine, tok.get(), sc);
  }

  /// Steps until every handle has finished.
  void run_all(const std::vector<std::shared_ptr<RequestHandle>>& hs) {
    for (int guard = 0; guard < 1000000; ++guard) {
      bool all = true;
      for (const auto& h : hs) all = all && h->finished();
      if (all) return;
      sched->step_once();
    }
    FAIL() << "requests did not finish";
  }

  Outcome run_one(const RequestParams& p) {
    auto h = sched->submit(p);
    run_all({h});
    return drain_handle(*h);
  }
};

CapacityRequest seqs(int64_t n, int64_t len = 1024) {
  CapacityRequest cr;
  cr.max_seqs = n;
  cr.max_seq_len = len;
  return cr;
}

std::vector<int32_t> random_prompt(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int32_t> d(2, 4095);
  std::vector<int32_t> p(n);
  for (auto& t : p) t = d(rng);
  return p;
}

void expect_same(const Outcome& a, const Outcome& b, const std::string& what) {
  ASSERT_TRUE(a.done && b.done) << what;
  ASSERT_EQ(a.ids, b.ids) << what;
  ASSERT_EQ(a.text, b.text) << what;
  ASSERT_EQ(a.lps.size(), b.lps.size()) << what;
  for (size_t c = 0; c < a.lps.size(); ++c)
    for (size_t t = 0; t < a.lps[c].size(); ++t) {
      ASSERT_EQ(a.lps[c][t].logprob, b.lps[c][t].logprob) << what << " choice " << c << " token " << t;
      ASSERT_EQ(a.lps[c][t].top, b.lps[c][t].top) << what;
    }
  ASSERT_EQ(a.prompt_lp.has_value(), b.prompt_lp.has_value()) << what;
  if (a.prompt_lp) {
    for (size_t t = 0; t < a.prompt_lp->tokens.size(); ++t)
      ASSERT_EQ(a.prompt_lp->tokens[t].logprob, b.prompt_lp->tokens[t].logprob) << what << " prompt token " << t;
  }
}

std::vector<RequestParams> mixed_requests() {
  std::mt19937 rng(1234);
  std::vector<RequestParams> out;
  const size_t lens[] = {1, 5, 63, 64, 65, 130, 300, 700};
  for (size_t i = 0; i < std::size(lens); ++i) {
    RequestParams p;
    p.prompt = random_prompt(rng, lens[i]);
    p.max_tokens = 20 + int64_t(i);
    p.logprobs = 3;
    p.prompt_logprobs = i % 3 == 0;
    p.sampling.temperature = i % 2 ? 0.8f : 0.0f;
    p.sampling.top_p = i % 4 == 1 ? 0.9f : 1.0f;
    p.sampling.seed = 100 + i;
    out.push_back(p);
  }
  return out;
}

}  // namespace

TEST(Scheduler, SameBitsAloneOrBatched) {
  Rig rig(seqs(8), 128, 512);
  const auto reqs = mixed_requests();
  std::vector<Outcome> alone;
  for (const auto& p : reqs) alone.push_back(rig.run_one(p));
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& p : reqs) hs.push_back(rig.sched->submit(p));
  rig.run_all(hs);
  for (size_t i = 0; i < reqs.size(); ++i) expect_same(alone[i], drain_handle(*hs[i]), "request " + std::to_string(i));
  // Staggered arrivals: each new request joins while the others decode.
  hs.clear();
  for (const auto& p : reqs) {
    hs.push_back(rig.sched->submit(p));
    for (int k = 0; k < 3; ++k) rig.sched->step_once();
  }
  rig.run_all(hs);
  for (size_t i = 0; i < reqs.size(); ++i) expect_same(alone[i], drain_handle(*hs[i]), "staggered " + std::to_string(i));
  EXPECT_EQ(rig.sched->stats().preemptions, 0u);
}

TEST(Scheduler, PromptLogprobsEqualEngineScoring) {
  Rig rig(seqs(2), 128);
  std::mt19937 rng(7);
  RequestParams p;
  p.prompt = random_prompt(rng, 300);
  p.max_tokens = 0;
  p.logprobs = 2;
  p.prompt_logprobs = true;
  const Outcome o = rig.run_one(p);
  ASSERT_TRUE(o.done && o.prompt_lp);
  ASSERT_EQ(o.prompt_lp->tokens.size(), p.prompt.size());
  // The engine's own scoring, prefilled at the same split points (128 tokens).
  auto be = make_cpu_backend();
  auto model = load_model(test::source_dir() + "/models/kjv-hybrid", *be);
  EngineConfig ec;
  ec.max_seq_len = 512;
  ec.max_step_tokens = 128;
  Engine ref(std::move(be), std::move(model), ec);
  const auto logits = ref.logits_all(p.prompt);
  const int64_t V = ref.vocab_size();
  for (size_t t = 1; t < p.prompt.size(); ++t) {
    const TokenLogprob want = token_logprob(&logits[(t - 1) * size_t(V)], V, p.prompt[t], 2);
    ASSERT_EQ(o.prompt_lp->tokens[t].id, p.prompt[t]);
    ASSERT_EQ(o.prompt_lp->tokens[t].logprob, want.logprob) << "position " << t;
    ASSERT_EQ(o.prompt_lp->tokens[t].top, want.top) << "position " << t;
  }
  EXPECT_EQ(o.usage.prompt_tokens, 300);
  EXPECT_EQ(o.usage.completion_tokens, 0);
}

TEST(Scheduler, CapacityIsExactAndAllOfItIsUsable) {
  // A budget of 4 sequences' state plus exactly 40 KV blocks (and less than one block to spare).
  Rig probe(seqs(4, 512));
  const size_t block_bytes = size_t(probe.cap.block_size) * probe.cap.token_bytes;
  CapacityRequest cr = seqs(4, 512);
  cr.max_memory = 4 * probe.cap.slot_bytes + 40 * block_bytes + block_bytes - 1;
  Rig rig(cr);
  EXPECT_EQ(rig.cap.max_seqs, 4);
  EXPECT_EQ(rig.cap.n_blocks, 40);
  EXPECT_EQ(rig.cap.kv_tokens, 40 * rig.cap.block_size);
  EXPECT_EQ(rig.engine->pool().bytes(), rig.cap.pool_bytes);
  EXPECT_LE(rig.cap.pool_bytes, cr.max_memory);
  EXPECT_GT(rig.cap.pool_bytes + block_bytes, cr.max_memory);

  // Four sequences that each cache a quarter of the pool: all run at once, fill every block, no preemption.
  const int64_t per_seq = rig.cap.kv_tokens / 4;  // cached positions = prompt + max_tokens - 1
  std::mt19937 rng(3);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 4; ++i) {
    RequestParams p;
    p.prompt = random_prompt(rng, 30);
    p.max_tokens = per_seq - 30 + 1;
    p.sampling.temperature = 0;
    hs.push_back(rig.sched->submit(p));
  }
  rig.sched->step_once();
  EXPECT_EQ(rig.sched->stats().running_seqs, 4);
  rig.run_all(hs);
  for (auto& h : hs) {
    const Outcome o = drain_handle(*h);
    ASSERT_TRUE(o.done);
    EXPECT_EQ(int64_t(o.ids[0].size()), per_seq - 30 + 1);
  }
  const ServingStats s = rig.sched->stats();
  EXPECT_EQ(s.blocks_used_peak, 40);
  EXPECT_EQ(s.preemptions, 0u);
  EXPECT_EQ(s.blocks_used, 0);
  EXPECT_EQ(s.slots_used, 0);
  // A request longer than the context is refused up front (the pool always holds one full-context sequence).
  RequestParams big;
  big.prompt = random_prompt(rng, 30);
  big.max_tokens = rig.cap.max_seq_len - 30 + 1;
  EXPECT_THROW(rig.sched->validate(big), SubmitError);
  big.max_tokens -= 1;
  EXPECT_NO_THROW(rig.sched->validate(big));
  EXPECT_GE(rig.cap.kv_tokens, rig.cap.max_seq_len);
}

TEST(Scheduler, PreemptionRecomputesAndEveryRequestFinishes) {
  Rig probe(seqs(4, 256));
  const size_t block_bytes = size_t(probe.cap.block_size) * probe.cap.token_bytes;
  CapacityRequest cr = seqs(4, 256);
  cr.max_memory = 4 * probe.cap.slot_bytes + 16 * block_bytes;  // 256 positions for 4 x 99 wanted
  Rig rig(cr);
  std::mt19937 rng(11);
  std::vector<RequestParams> reqs;
  for (int i = 0; i < 6; ++i) {
    RequestParams p;
    p.prompt = random_prompt(rng, 40);
    p.max_tokens = 60;
    p.logprobs = 0;
    p.sampling.temperature = 0;
    reqs.push_back(p);
  }
  std::vector<Outcome> alone;
  for (const auto& p : reqs) alone.push_back(rig.run_one(p));
  EXPECT_EQ(rig.sched->stats().preemptions, 0u);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& p : reqs) hs.push_back(rig.sched->submit(p));
  rig.run_all(hs);
  const ServingStats s = rig.sched->stats();
  EXPECT_GT(s.preemptions, 0u);
  EXPECT_EQ(s.blocks_used, 0);
  EXPECT_EQ(s.slots_used, 0);
  // Recomputed state equals the decoded one to float tolerance (not bitwise): same greedy tokens, close logprobs.
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Outcome o = drain_handle(*hs[i]);
    ASSERT_TRUE(o.done);
    EXPECT_EQ(o.ids, alone[i].ids) << "request " << i;
    for (size_t t = 0; t < o.lps[0].size(); ++t)
      EXPECT_NEAR(o.lps[0][t].logprob, alone[i].lps[0][t].logprob, 1e-4) << "request " << i << " token " << t;
  }
}

TEST(Scheduler, CancelFreesSlotAndBlocksAtTheNextIteration) {
  Rig rig(seqs(4));
  std::mt19937 rng(5);
  RequestParams p;
  p.prompt = random_prompt(rng, 200);
  p.max_tokens = 500;
  auto h = rig.sched->submit(p);
  for (int i = 0; i < 5; ++i) rig.sched->step_once();
  ServingStats s = rig.sched->stats();
  EXPECT_EQ(s.slots_used, 1);
  EXPECT_GT(s.blocks_used, 0);
  h->cancel();
  rig.sched->step_once();
  s = rig.sched->stats();
  EXPECT_EQ(s.slots_used, 0);
  EXPECT_EQ(s.blocks_used, 0);
  EXPECT_EQ(s.running_seqs, 0);
  EXPECT_EQ(s.requests_cancelled, 1u);
  const Outcome o = drain_handle(*h);
  EXPECT_TRUE(o.failed);
  EXPECT_EQ(o.error, "cancelled");
  // A request cancelled while still queued never runs.
  auto q = rig.sched->submit(p);
  q->cancel();
  EXPECT_FALSE(rig.sched->step_once());
  EXPECT_TRUE(drain_handle(*q).failed);
}

TEST(Scheduler, StopStringsStopIdsAndMaxTokens) {
  Rig rig(seqs(4));
  RequestParams p;
  p.prompt = rig.tok->encode("And God said");
  p.max_tokens = 40;
  p.sampling.temperature = 0;
  const Outcome full = rig.run_one(p);
  ASSERT_EQ(full.finish[0], Finish::Length);
  ASSERT_EQ(full.ids[0].size(), 40u);
  EXPECT_EQ(full.text[0], rig.tok->decode(full.ids[0], true));

  // A stop string taken from the middle of the text: the text ends right before it.
  const std::string stop = full.text[0].substr(full.text[0].size() / 2, 4);
  const size_t at = full.text[0].find(stop);
  RequestParams ps = p;
  ps.stop = {"never appears", stop};
  const Outcome s = rig.run_one(ps);
  EXPECT_EQ(s.finish[0], Finish::Stop);
  EXPECT_EQ(s.stop_string[0], stop);
  EXPECT_EQ(s.text[0], full.text[0].substr(0, at));
  ps.include_stop_str = true;
  EXPECT_EQ(rig.run_one(ps).text[0], full.text[0].substr(0, at + stop.size()));

  // A stop id: generation ends after emitting it.
  RequestParams pi = p;
  pi.stop_ids = {full.ids[0][7]};
  const size_t first = size_t(std::find(full.ids[0].begin(), full.ids[0].end(), full.ids[0][7]) - full.ids[0].begin());
  const Outcome i = rig.run_one(pi);
  EXPECT_EQ(i.finish[0], Finish::Stop);
  EXPECT_EQ(i.ids[0], std::vector<int32_t>(full.ids[0].begin(), full.ids[0].begin() + int64_t(first) + 1));
  EXPECT_EQ(i.usage.completion_tokens, int64_t(first) + 1);
}

TEST(Scheduler, ChoicesAreSeededSequences) {
  Rig rig(seqs(8));
  RequestParams p;
  p.prompt = rig.tok->encode("In the beginning");
  p.max_tokens = 16;
  p.n = 3;
  p.sampling.temperature = 1.0f;
  p.sampling.seed = 42;
  const Outcome all = rig.run_one(p);
  ASSERT_EQ(all.ids.size(), 3u);
  EXPECT_EQ(all.usage.completion_tokens, 48);
  for (int i = 0; i < 3; ++i) {
    RequestParams one = p;
    one.n = 1;
    one.sampling.seed = 42 + uint64_t(i);
    EXPECT_EQ(rig.run_one(one).ids[0], all.ids[size_t(i)]) << "choice " << i;
  }
  EXPECT_NE(all.ids[0], all.ids[1]);
}

TEST(Scheduler, QueuesBeyondItsSlotsAndServesEveryone) {
  Rig rig(seqs(2));
  std::mt19937 rng(9);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 7; ++i) {
    RequestParams p;
    p.prompt = random_prompt(rng, 10 + size_t(i));
    p.max_tokens = 8;
    hs.push_back(rig.sched->submit(p));
  }
  rig.sched->step_once();
  const ServingStats s = rig.sched->stats();
  EXPECT_EQ(s.running_seqs, 2);
  EXPECT_EQ(s.waiting_seqs, 5);
  EXPECT_EQ(s.waiting_requests, 5);
  rig.run_all(hs);
  for (auto& h : hs) EXPECT_EQ(drain_handle(*h).ids[0].size(), 8u);
}

TEST(Scheduler, RejectsWhatItCannotServe) {
  Rig rig(seqs(2, 256));
  RequestParams p;
  p.prompt = {1, 2, 3};
  p.max_tokens = 10;
  EXPECT_NO_THROW(rig.sched->validate(p));
  auto bad = [&](auto edit) {
    RequestParams q = p;
    edit(q);
    EXPECT_THROW(rig.sched->validate(q), SubmitError);
  };
  bad([](RequestParams& q) { q.prompt.clear(); });
  bad([](RequestParams& q) { q.prompt[1] = 4096; });
  bad([](RequestParams& q) { q.prompt[1] = -1; });
  bad([](RequestParams& q) { q.max_tokens = 254; });
  bad([](RequestParams& q) { q.max_tokens = -1; });
  bad([](RequestParams& q) { q.n = 0; });
  bad([](RequestParams& q) { q.logprobs = 21; });
  bad([](RequestParams& q) { q.stop = {""}; });
  bad([](RequestParams& q) { q.sampling.top_p = 0; });
}

TEST(Scheduler, ShutdownDrainsOrCancels) {
  Rig rig(seqs(2));
  RequestParams p;
  p.prompt = {5, 6, 7};
  p.max_tokens = 1000;
  p.sampling.temperature = 0;
  auto h = rig.sched->submit(p);
  std::thread engine([&] { rig.sched->run(); });
  rig.sched->shutdown(true);
  EXPECT_THROW(rig.sched->submit(p), SubmitError);  // draining: nothing new
  rig.sched->shutdown(false);                        // then cancel what is left
  engine.join();
  Outcome o;
  while (auto e = h->next(std::chrono::milliseconds(0))) absorb(o, std::move(*e));
  EXPECT_TRUE(o.done || o.failed);
  EXPECT_EQ(rig.sched->stats().slots_used, 0);
}
