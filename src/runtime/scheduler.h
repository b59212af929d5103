// Continuous batching over one Engine: requests arrive from any thread (submit), one engine thread runs the loop
// (run). Each iteration admits waiting sequences while state slots and KV blocks allow, packs one forward step —
// one token for every decoding sequence, then whole prefill pieces under the per-step token budget — samples, and
// streams the results back through each request's RequestHandle.
//
// Exactness: a sequence's logits do not depend on what it is batched with, provided its prefill is cut at the same
// positions; so prompts are cut into pieces at fixed multiples of prefill_chunk (a multiple of 64, the gated delta
// rule's chunk) from position 0, whatever the load, and decoding is always one token per sequence per step.
// Preemption (KV blocks ran out: the youngest sequence gives back its state and later recomputes its prompt and
// generated tokens as a prefill) is the one exception: the recomputed state is equal to float tolerance, not bitwise,
// to the one its decode steps built. Stats count preemptions so that a caller can tell.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "runtime/engine.h"
#include "runtime/request.h"
#include "runtime/sampler.h"
#include "runtime/serving_metrics.h"

namespace hyrax {

class Tokenizer;

struct SchedulerConfig {
  int64_t prefill_chunk = 256;  // prefill piece in tokens, a multiple of 64
  int32_t max_logprobs = 20;    // most alternatives per token a request may ask for
  int32_t max_n = 128;          // most choices per request
};

/// Why submit() refused a request.
class SubmitError : public Error {
 public:
  enum class Kind { Invalid, ShuttingDown };
  SubmitError(Kind kind, const std::string& msg) : Error(msg), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

class Scheduler {
 public:
  /// `tokenizer` may be null (token-id models: no text, no stop strings). The engine's max_step_tokens must be at
  /// least prefill_chunk + max_seqs, so that the oldest prefill always fits beside every decode.
  Scheduler(Engine& engine, const Tokenizer* tokenizer, const SchedulerConfig& cfg);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// Throws SubmitError(Invalid) naming what the engine cannot serve (ids outside the vocabulary, longer than the
  /// context or the KV pool, out-of-range n or logprobs, stop strings without a tokenizer).
  void validate(const RequestParams& p) const;
  /// Queues a request; its events arrive on the returned handle. Thread-safe.
  std::shared_ptr<RequestHandle> submit(RequestParams p);

  /// The engine thread: serves until shutdown() has been called and the remaining requests are done (drain) or
  /// cancelled.
  void run();
  /// Makes run() return: with drain, once the requests already submitted have finished (new ones are refused);
  /// without, at once, failing what is left. May be called again to turn a drain into a cancel.
  void shutdown(bool drain);

  /// One iteration on the calling thread (tests, benchmarks without a server thread): takes new submissions, drops
  /// cancelled requests, admits, runs one step. Returns false when there was nothing to do.
  bool step_once();

  ServingStats stats() const;
  const SchedulerConfig& config() const { return cfg_; }
  Engine& engine() { return engine_; }
  int64_t max_seq_len() const { return max_seq_len_; }
  /// KV positions the pool holds in all (a request needs prompt + max_tokens - 1 of them).
  int64_t kv_capacity_tokens() const;

 private:
  struct Req;
  struct Seq;
  using clock = std::chrono::steady_clock;

  void wake();
  void take_inbox();
  void drop_cancelled();
  void admit();
  bool run_step();
  void preempt(Seq* s);
  void emit(Seq* s, int32_t id, TokenLogprob* lp);
  void finish_seq(Seq* s, Finish why, ChoiceUpdate&& last, bool flush_text);
  void fail_request(Req* r, const std::string& message, bool cancelled);
  void remove_seq(Seq* s);
  void publish_gauges();
  void flush_deferred();
  int64_t next_piece(const Seq* s) const;
  bool is_decode(const Seq* s) const;

  Engine& engine_;
  const Tokenizer* tok_;
  SchedulerConfig cfg_;
  int64_t max_seq_len_ = 0;
  std::vector<int32_t> model_eos_;

  // Shared with submitting threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Req>> inbox_;
  bool stopping_ = false, drain_ = true, woken_ = false;
  uint64_t next_id_ = 1;

  // Engine thread only.
  std::map<uint64_t, std::unique_ptr<Req>> reqs_;
  std::vector<uint64_t> ended_;  // requests to erase once the current step's results are handed out
  std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>> deferred_;  // final events, sent last
  std::vector<Seq*> running_;  // by arrival order
  std::deque<Seq*> waiting_;   // by arrival order (preempted sequences go back in their place)
  int64_t blocks_peak_ = 0, running_peak_ = 0;

  ServingMetrics metrics_;
  mutable std::mutex gauges_mu_;
  ServingStats gauges_;
};

}  // namespace hyrax
