#include "runtime/scheduler.h"

#include <algorithm>
#include <cstdio>

#include "core/check.h"
#include "core/thread_pool.h"
#include "tokenizer/tokenizer.h"

namespace hyrax {

/// A request: its params, its choices and what it has produced.
struct Scheduler::Req {
  uint64_t id = 0;
  RequestParams p;
  std::shared_ptr<RequestHandle> handle;
  clock::time_point arrival;
  std::vector<std::unique_ptr<Seq>> seqs;
  int32_t live = 0;                 // choices not finished
  int64_t completion_tokens = 0;
  bool first_token = false;
  bool ended = false;
  PromptLogprobs prompt_lp;         // filled by choice 0's prefill when p.prompt_logprobs
  bool prompt_lp_sent = false;
};

/// One choice: a sequence in the engine (or waiting for one) and its sampling state.
struct Scheduler::Seq {
  Req* req = nullptr;
  int32_t index = 0;
  uint64_t order = 0;               // arrival order; the largest is the youngest
  Sequence s;                       // the engine's hold: slot, KV blocks, positions cached
  std::vector<int32_t> tokens;      // prompt + generated; everything past s.n_cached is still to be fed
  int64_t generated = 0;
  Sampler sampler;
  TextTracker text;
  clock::time_point last_token;

  Seq(Req* r, int32_t i, const SamplingParams& sp, const Tokenizer* tok)
      : req(r), index(i), order((r->id << 20) | uint64_t(i)), tokens(r->p.prompt), sampler(sp),
        text(tok, &r->p.stop, r->p.skip_special_tokens, r->p.include_stop_str) {}
};

Scheduler::Scheduler(Engine& engine, const Tokenizer* tokenizer, const SchedulerConfig& cfg)
    : engine_(engine), tok_(tokenizer), cfg_(cfg) {
  const EngineConfig& ec = engine.config();
  HYRAX_REQUIRE(cfg.prefill_chunk > 0 && cfg.prefill_chunk % 64 == 0, "the prefill chunk must be a positive multiple",
                " of 64 (the gated delta rule's chunk), got ", cfg.prefill_chunk);
  HYRAX_REQUIRE(ec.max_step_tokens >= cfg.prefill_chunk + ec.max_seqs, "max_step_tokens (", ec.max_step_tokens,
                ") must be at least prefill_chunk (", cfg.prefill_chunk, ") + max_seqs (", ec.max_seqs, ")");
  const int64_t model_max = engine.model().info().max_positions;
  max_seq_len_ = model_max > 0 ? std::min(ec.max_seq_len, model_max) : ec.max_seq_len;
  model_eos_ = engine.model().info().eos_token_ids;
  publish_gauges();
}

Scheduler::~Scheduler() = default;

int64_t Scheduler::kv_capacity_tokens() const {
  const auto& pc = engine_.pool().config();
  return pc.n_blocks * pc.block_size;
}

void Scheduler::validate(const RequestParams& p) const {
  auto invalid = [](const std::string& m) { throw SubmitError(SubmitError::Kind::Invalid, m); };
  if (p.prompt.empty()) invalid("the prompt is empty: give at least one token");
  const int64_t V = engine_.vocab_size();
  for (size_t i = 0; i < p.prompt.size(); ++i)
    if (p.prompt[i] < 0 || p.prompt[i] >= V)
      invalid(str_cat("prompt token ", i, " is ", p.prompt[i], ", outside the vocabulary [0, ", V, ")"));
  if (p.max_tokens < 0) invalid(str_cat("max_tokens must be >= 0, got ", p.max_tokens));
  const int64_t P = int64_t(p.prompt.size());
  if (P + p.max_tokens > max_seq_len_)
    invalid(str_cat("this model's context is ", max_seq_len_, " tokens; the prompt has ", P,
                    " tokens and max_tokens asks for ", p.max_tokens, " more (", P + p.max_tokens, " in all)"));
  const int64_t cached = P + std::max<int64_t>(p.max_tokens, 1) - 1;
  if (cached > kv_capacity_tokens())
    invalid(str_cat("the request needs ", cached, " KV positions; the server's pool holds ", kv_capacity_tokens()));
  if (p.n < 1 || p.n > cfg_.max_n) invalid(str_cat("n must be in [1, ", cfg_.max_n, "], got ", p.n));
  if (p.logprobs < -1 || p.logprobs > cfg_.max_logprobs)
    invalid(str_cat("logprobs must be in [0, ", cfg_.max_logprobs, "], got ", p.logprobs));
  if (!p.stop.empty() && !tok_) invalid("stop strings need a tokenizer; this model has none (use stop_token_ids)");
  for (const auto& s : p.stop)
    if (s.empty()) invalid("stop strings must not be empty");
  for (int32_t id : p.stop_ids)
    if (id < 0 || id >= V) invalid(str_cat("stop token id ", id, " is outside the vocabulary [0, ", V, ")"));
  try {
    p.sampling.validate();
  } catch (const Error& e) {
    invalid(e.what());
  }
}

std::shared_ptr<RequestHandle> Scheduler::submit(RequestParams p) {
  validate(p);
  auto r = std::make_unique<Req>();
  r->p = std::move(p);
  r->arrival = clock::now();
  std::shared_ptr<RequestHandle> handle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw SubmitError(SubmitError::Kind::ShuttingDown, "the server is shutting down");
    r->id = next_id_++;
    handle = std::make_shared<RequestHandle>(r->id);
    r->handle = handle;
    handle->set_wake([this] { wake(); });
    inbox_.push_back(std::move(r));
  }
  metrics_.on_submit();
  cv_.notify_one();
  return handle;
}

void Scheduler::wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

void Scheduler::shutdown(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    drain_ = drain_ && drain;
  }
  cv_.notify_one();
}

void Scheduler::run() {
  for (;;) {
    bool cancel_all = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return woken_ || stopping_ || !inbox_.empty() || !reqs_.empty(); });
      woken_ = false;
      if (stopping_ && !drain_) cancel_all = true;
      if (stopping_ && drain_ && inbox_.empty() && reqs_.empty()) break;
    }
    if (cancel_all) {
      take_inbox();
      for (auto& [id, r] : reqs_) fail_request(r.get(), "the server is shutting down", false);
      reqs_.clear();
      ended_.clear();
      break;
    }
    step_once();
  }
  publish_gauges();
  flush_deferred();
}

bool Scheduler::step_once() {
  take_inbox();
  drop_cancelled();
  admit();
  const bool stepped = run_step();
  for (uint64_t id : ended_) reqs_.erase(id);
  ended_.clear();
  publish_gauges();
  flush_deferred();
  return stepped;
}

void Scheduler::flush_deferred() {
  for (auto& [handle, event] : deferred_) handle->push(std::move(event));
  deferred_.clear();
}

void Scheduler::take_inbox() {
  std::deque<std::unique_ptr<Req>> fresh;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fresh.swap(inbox_);
  }
  for (auto& r : fresh) {
    Req* req = r.get();
    for (int32_t i = 0; i < req->p.n; ++i) {
      SamplingParams sp = req->p.sampling;
      sp.seed = sp.seed + uint64_t(i);
      req->seqs.push_back(std::make_unique<Seq>(req, i, sp, tok_));
      waiting_.push_back(req->seqs.back().get());
    }
    req->live = req->p.n;
    if (req->p.prompt_logprobs) {
      req->prompt_lp.tokens.push_back(TokenLogprob{req->p.prompt[0], 0.0, {}});
      if (req->p.prompt.size() == 1) {
        req->handle->push(req->prompt_lp);
        req->prompt_lp_sent = true;
      }
    }
    reqs_.emplace(req->id, std::move(r));
  }
}

void Scheduler::drop_cancelled() {
  std::vector<Req*> gone;
  for (auto& [id, r] : reqs_)
    if (!r->ended && r->handle->cancelled()) gone.push_back(r.get());
  for (Req* r : gone) fail_request(r, "cancelled", true);
}

void Scheduler::remove_seq(Seq* s) {
  if (s->s.slot >= 0) engine_.close(s->s);
  running_.erase(std::remove(running_.begin(), running_.end(), s), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), s), waiting_.end());
}

void Scheduler::fail_request(Req* r, const std::string& message, bool cancelled) {
  if (r->ended) return;
  for (auto& s : r->seqs) remove_seq(s.get());
  r->ended = true;
  r->live = 0;
  deferred_.emplace_back(r->handle, RequestFailed{message});
  metrics_.on_request_end(cancelled, !cancelled, std::chrono::duration<double>(clock::now() - r->arrival).count());
  // Erase now unless a step's results are being handed out (run_step defers through ended_).
  const uint64_t id = r->id;
  if (std::find(ended_.begin(), ended_.end(), id) == ended_.end()) ended_.push_back(id);
}

bool Scheduler::is_decode(const Seq* s) const {
  return s->s.n_cached > 0 && int64_t(s->tokens.size()) - s->s.n_cached == 1;
}

int64_t Scheduler::next_piece(const Seq* s) const {
  const int64_t len = int64_t(s->tokens.size()), c = s->s.n_cached;
  if (is_decode(s)) return 1;
  // Prefill pieces end at fixed multiples of prefill_chunk from position 0, whatever else is in the step.
  const int64_t end = std::min(len, (c / cfg_.prefill_chunk + 1) * cfg_.prefill_chunk);
  return end - c;
}

void Scheduler::admit() {
  StatePool& pool = engine_.pool();
  // Blocks that admitted prefills will still take: a new sequence must not eat into them.
  int64_t reserved = 0;
  for (const Seq* s : running_)
    if (!is_decode(s)) reserved += pool.blocks_for(int64_t(s->tokens.size())) - int64_t(s->s.blocks.size());
  while (!waiting_.empty() && pool.free_slots() > 0) {
    Seq* s = waiting_.front();
    const int64_t need = pool.blocks_for(int64_t(s->tokens.size()));
    if (pool.free_blocks() - reserved < need) break;  // first come, first served: no overtaking
    HYRAX_CHECK(engine_.open(s->s), "a free slot was counted but none was handed out");
    reserved += need;
    waiting_.pop_front();
    running_.insert(std::upper_bound(running_.begin(), running_.end(), s,
                                     [](const Seq* a, const Seq* b) { return a->order < b->order; }),
                    s);
  }
}

void Scheduler::preempt(Seq* s) {
  engine_.close(s->s);
  running_.erase(std::remove(running_.begin(), running_.end(), s), running_.end());
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), s,
                                   [](const Seq* a, const Seq* b) { return a->order < b->order; }),
                  s);
  metrics_.on_preemption(int64_t(s->tokens.size()));
}

bool Scheduler::run_step() {
  StatePool& pool = engine_.pool();
  const int64_t max_step = engine_.config().max_step_tokens;
  std::vector<Seq*> seqs;
  std::vector<int64_t> counts;
  for (;;) {
    if (running_.empty()) return false;
    seqs.clear();
    counts.clear();
    int64_t budget = max_step;
    for (Seq* s : running_)
      if (is_decode(s)) {
        seqs.push_back(s);
        counts.push_back(1);
        --budget;
      }
    for (Seq* s : running_) {
      if (is_decode(s)) continue;
      const int64_t n = next_piece(s);
      if (n > budget) continue;
      seqs.push_back(s);
      counts.push_back(n);
      budget -= n;
    }
    auto blocks_needed = [&] {
      int64_t need = 0;
      for (size_t i = 0; i < seqs.size(); ++i)
        need += pool.blocks_for(seqs[i]->s.n_cached + counts[i]) - int64_t(seqs[i]->s.blocks.size());
      return need;
    };
    // Out of blocks: prefills wait first (youngest first); if decodes alone do not fit, preempt.
    while (blocks_needed() > pool.free_blocks()) {
      int64_t youngest = -1;
      for (size_t i = 0; i < seqs.size(); ++i)
        if (!is_decode(seqs[i]) && (youngest < 0 || seqs[i]->order > seqs[size_t(youngest)]->order))
          youngest = int64_t(i);
      if (youngest < 0) break;
      seqs.erase(seqs.begin() + youngest);
      counts.erase(counts.begin() + youngest);
    }
    if (!seqs.empty() && blocks_needed() <= pool.free_blocks()) break;
    if (running_.size() == 1) {
      // Cannot happen for a validated request (it fits the pool alone); fail it rather than spin.
      fail_request(running_.front()->req, "internal error: the sequence does not fit the KV pool alone", false);
      return true;
    }
    preempt(running_.back());
  }

  std::vector<StepItem> items(seqs.size());
  std::vector<int64_t> start(seqs.size());
  int64_t prompt_tokens = 0, decode_tokens = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Seq* s = seqs[i];
    Req* r = s->req;
    const int64_t P = int64_t(r->p.prompt.size());
    start[i] = s->s.n_cached;
    const bool scoring = s->index == 0 && r->p.prompt_logprobs && !r->prompt_lp_sent && s->s.n_cached < P;
    items[i] = StepItem{&s->s, s->tokens.data() + s->s.n_cached, counts[i], scoring};
    (is_decode(s) ? decode_tokens : prompt_tokens) += counts[i];
  }
  // Each sequence whose pending tokens this step completes samples its next token, on the backend, with its own
  // parameters and draw. The logits come to the host only when something needs them there: prompt logprobs (echo)
  // or the alternatives of logprobs > 0; otherwise only the tokens (and their logprobs) do.
  std::vector<char> samples(seqs.size(), 0);
  std::vector<SampleRow> sample_rows(seqs.size(), SampleRow{0.0f, 0, 1.0f, 0.0f, 0.0});  // greedy: no draw
  bool host_logits = false;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Seq* s = seqs[i];
    host_logits = host_logits || items[i].all_logits;
    if (s->req->ended || start[i] + counts[i] != int64_t(s->tokens.size())) continue;
    samples[i] = 1;
    if (s->req->p.max_tokens == 0) continue;  // the prompt is only scored
    host_logits = host_logits || s->req->p.logprobs > 0;
    sample_rows[i] = s->sampler.next_row();
  }
  const auto t0 = clock::now();
  std::vector<float> logits;
  std::vector<SampledToken> sampled_rows;
  try {
    if (host_logits) logits = engine_.step(items);
    else sampled_rows = engine_.step_sample(items, sample_rows);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hyrax: step of %zu sequences failed: %s\n", items.size(), e.what());
    for (Seq* s : seqs) fail_request(s->req, str_cat("internal error: ", e.what()), false);
    return true;
  }
  const double dt = std::chrono::duration<double>(clock::now() - t0).count();
  blocks_peak_ = std::max(blocks_peak_, pool.config().n_blocks - pool.free_blocks());

  const int64_t V = engine_.vocab_size();
  std::vector<const float*> last_row(seqs.size(), nullptr);  // host path: each item's last logits row
  if (host_logits) {
    // Prompt logprobs (echo): rows of the scoring pieces, each row independent, computed in parallel.
    struct Row {
      Req* r;
      int64_t pos;
      const float* logits;
    };
    std::vector<Row> prompt_rows;
    size_t row = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Req* r = seqs[i]->req;
      if (items[i].all_logits) {
        const int64_t P = int64_t(r->p.prompt.size());
        int64_t next_pos = int64_t(r->prompt_lp.tokens.size());
        for (const Row& pr : prompt_rows)
          if (pr.r == r) next_pos = std::max(next_pos, pr.pos + 1);
        for (int64_t j = 0; j < counts[i]; ++j) {
          const int64_t pos = start[i] + j + 1;  // row j predicts the token at pos
          if (pos < P && pos == next_pos) {
            prompt_rows.push_back(Row{r, pos, &logits[(row + size_t(j)) * size_t(V)]});
            ++next_pos;
          }
        }
        row += size_t(counts[i]);
      } else {
        row += 1;
      }
      last_row[i] = &logits[(row - 1) * size_t(V)];
    }
    std::vector<TokenLogprob> prompt_lps(prompt_rows.size());
    parallel_for(int64_t(prompt_rows.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const Row& pr = prompt_rows[size_t(k)];
        prompt_lps[size_t(k)] = token_logprob(pr.logits, V, pr.r->p.prompt[size_t(pr.pos)],
                                              std::max<int32_t>(pr.r->p.logprobs, 0));
      }
    });
    for (size_t k = 0; k < prompt_rows.size(); ++k) {
      Req* r = prompt_rows[k].r;
      r->prompt_lp.tokens.push_back(std::move(prompt_lps[k]));
      if (r->prompt_lp.tokens.size() == r->p.prompt.size() && !r->prompt_lp_sent) {
        r->handle->push(r->prompt_lp);
        r->prompt_lp_sent = true;
      }
    }
    // The sampling sequences' last rows, sampled on the backend as step_sample would.
    std::vector<size_t> which;
    for (size_t i = 0; i < seqs.size(); ++i)
      if (samples[i]) which.push_back(i);
    std::vector<float> rows_host(which.size() * size_t(V));
    std::vector<SampleRow> params(which.size());
    for (size_t k = 0; k < which.size(); ++k) {
      std::copy_n(last_row[which[k]], size_t(V), rows_host.begin() + int64_t(k * size_t(V)));
      params[k] = sample_rows[which[k]];
    }
    const auto got = engine_.sample_rows(rows_host.data(), params);
    sampled_rows.assign(seqs.size(), SampledToken{});
    for (size_t k = 0; k < which.size(); ++k) sampled_rows[which[k]] = got[k];
  }
  // Logprobs: the chosen token's comes with the sample; the k most likely alternatives need the host row.
  std::vector<size_t> to_emit;
  std::vector<TokenLogprob> lps(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i)
    if (samples[i]) to_emit.push_back(i);
  parallel_for(int64_t(to_emit.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const size_t i = to_emit[size_t(k)];
      const RequestParams& p = seqs[i]->req->p;
      if (p.max_tokens == 0 || p.logprobs < 0) continue;
      const int32_t id = sampled_rows[i].token;
      lps[i] = p.logprobs > 0 ? token_logprob(last_row[i], V, id, p.logprobs)
                              : TokenLogprob{id, double(sampled_rows[i].logprob), {}};
    }
  });
  int64_t sampled = 0;
  for (size_t i : to_emit) {
    Seq* s = seqs[i];
    if (s->req->p.max_tokens == 0) {
      finish_seq(s, Finish::Length, ChoiceUpdate{}, true);  // max_tokens 0: the prompt was only scored
      continue;
    }
    emit(s, sampled_rows[i].token, s->req->p.logprobs >= 0 ? &lps[i] : nullptr);
    ++sampled;
  }
  metrics_.on_step(prompt_tokens, sampled, dt);
  return true;
}

void Scheduler::emit(Seq* s, int32_t id, TokenLogprob* lp) {
  Req* r = s->req;
  ChoiceUpdate u;
  u.ids.push_back(id);
  if (lp) u.logprobs.push_back(std::move(*lp));
  s->tokens.push_back(id);
  ++s->generated;
  ++r->completion_tokens;

  const auto now = clock::now();
  if (!r->first_token) {
    r->first_token = true;
    metrics_.on_first_token(std::chrono::duration<double>(now - r->arrival).count());
  }
  if (s->generated > 1) metrics_.on_inter_token(std::chrono::duration<double>(now - s->last_token).count());
  s->last_token = now;

  bool stopped = false;
  std::string stop_string;
  u.text = s->text.push(id, stopped, stop_string);
  if (stopped) {
    u.stop_string = stop_string;
    finish_seq(s, Finish::Stop, std::move(u), false);
  } else if (std::find(r->p.stop_ids.begin(), r->p.stop_ids.end(), id) != r->p.stop_ids.end()) {
    u.stop_id = id;
    finish_seq(s, Finish::Stop, std::move(u), true);
  } else if (s->generated >= r->p.max_tokens || int64_t(s->tokens.size()) >= max_seq_len_) {
    finish_seq(s, Finish::Length, std::move(u), true);
  } else {
    u.index = s->index;
    r->handle->push(std::move(u));
  }
}

void Scheduler::finish_seq(Seq* s, Finish why, ChoiceUpdate&& last, bool flush_text) {
  Req* r = s->req;
  last.index = s->index;
  last.finish = why;
  if (flush_text) last.text += s->text.finish();
  r->handle->push(std::move(last));
  remove_seq(s);
  if (--r->live > 0) return;
  r->ended = true;
  // Handed out after the gauges are published: a client that has its answer sees the state it freed.
  deferred_.emplace_back(r->handle, RequestDone{int64_t(r->p.prompt.size()), r->completion_tokens});
  metrics_.on_request_end(false, false, std::chrono::duration<double>(clock::now() - r->arrival).count());
  ended_.push_back(r->id);
}

void Scheduler::publish_gauges() {
  const StatePool& pool = engine_.pool();
  ServingStats g;
  int64_t waiting_requests = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_requests = int64_t(inbox_.size());
  }
  for (const auto& [id, r] : reqs_) {
    if (r->ended) continue;
    bool started = false;
    for (const auto& s : r->seqs) started = started || s->s.slot >= 0 || s->generated > 0;
    if (!started) ++waiting_requests;
  }
  g.waiting_requests = waiting_requests;
  g.waiting_seqs = int64_t(waiting_.size());
  g.running_seqs = int64_t(running_.size());
  running_peak_ = std::max(running_peak_, g.running_seqs);
  g.running_seqs_peak = running_peak_;
  g.slots_total = pool.config().n_slots;
  g.slots_used = pool.config().n_slots - pool.free_slots();
  g.blocks_total = pool.config().n_blocks;
  g.blocks_used = pool.config().n_blocks - pool.free_blocks();
  g.blocks_used_peak = blocks_peak_;
  g.block_size = pool.config().block_size;
  std::lock_guard<std::mutex> lock(gauges_mu_);
  gauges_ = g;
}

ServingStats Scheduler::stats() const {
  ServingStats s;
  {
    std::lock_guard<std::mutex> lock(gauges_mu_);
    s = gauges_;
  }
  metrics_.fill(s);
  return s;
}

}  // namespace hyrax
