#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "core/check.h"

namespace hyrax {

using steady = std::chrono::steady_clock;

Session::Session(Engine& engine) : engine_(engine) {
  HYRAX_REQUIRE(engine_.open(seq_), "no free sequence slot");
}

Session::~Session() { engine_.close(seq_); }

void Session::reset() {
  engine_.close(seq_);
  consumed_.clear();
  HYRAX_REQUIRE(engine_.open(seq_), "no free sequence slot");
}

std::vector<float> Session::append(std::span<const int32_t> ids) {
  HYRAX_REQUIRE(!ids.empty(), "nothing to append: the prompt is empty");
  const int64_t chunk = engine_.config().max_step_tokens;
  std::vector<float> logits;
  size_t i = 0;
  while (i < ids.size()) {
    const int64_t to_boundary = chunk - seq_.n_cached % chunk;
    const int64_t n = std::min<int64_t>(to_boundary, int64_t(ids.size() - i));
    logits = engine_.step({StepItem{&seq_, ids.data() + i, n, false}});
    consumed_.insert(consumed_.end(), ids.begin() + int64_t(i), ids.begin() + int64_t(i) + n);
    i += size_t(n);
  }
  return logits;
}

int32_t Session::feed_and_sample(int32_t id, const SampleRow& row) {
  const auto got = engine_.step_sample({StepItem{&seq_, &id, 1, false}}, {row});
  consumed_.push_back(id);
  return got[0].token;
}

GenerateResult Session::generate(std::vector<float> logits, const GenerateOptions& opt,
                                 const std::function<bool(int32_t)>& on_token) {
  HYRAX_REQUIRE(opt.max_new_tokens >= 0, "max_new_tokens must be >= 0");
  opt.sampling.validate();
  GenerateResult res;
  if (opt.max_new_tokens == 0) return res;
  HYRAX_REQUIRE(int64_t(logits.size()) == engine_.vocab_size(), "generate: expected one row of ",
                engine_.vocab_size(), " logits, got ", logits.size(), " values");
  Sampler sampler(opt.sampling);
  const auto t0 = steady::now();
  // Every token is drawn on the backend (the first from the given logits), the same way the scheduler draws them.
  int32_t id = engine_.sample_rows(logits.data(), {sampler.next_row()})[0].token;
  for (;;) {
    res.tokens.push_back(id);
    if (on_token && !on_token(id)) {
      res.finish = FinishReason::Cancelled;
      break;
    }
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), id) != opt.stop_ids.end()) {
      res.finish = FinishReason::Stop;
      break;
    }
    if (int64_t(res.tokens.size()) >= opt.max_new_tokens) break;
    id = feed_and_sample(id, sampler.next_row());
  }
  res.decode_seconds = std::chrono::duration<double>(steady::now() - t0).count();
  return res;
}

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<bool(int32_t)>& on_token) {
  HYRAX_REQUIRE(!prompt.empty(), "the prompt is empty: give at least one token");
  Session session(engine);
  const auto t0 = steady::now();
  auto logits = session.append(prompt);
  const double prefill = std::chrono::duration<double>(steady::now() - t0).count();
  GenerateResult res = session.generate(std::move(logits), opt, on_token);
  res.prompt_tokens = int64_t(prompt.size());
  res.prefill_seconds = prefill;
  return res;
}

}  // namespace hyrax
