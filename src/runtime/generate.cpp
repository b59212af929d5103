#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "core/check.h"

namespace hyrax {

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<bool(int32_t)>& on_token) {
  HYRAX_REQUIRE(!prompt.empty(), "the prompt is empty: give at least one token");
  HYRAX_REQUIRE(opt.max_new_tokens >= 0, "max_new_tokens must be >= 0");
  opt.sampling.validate();
  using clock = std::chrono::steady_clock;
  GenerateResult res;
  res.prompt_tokens = int64_t(prompt.size());
  if (opt.max_new_tokens == 0) return res;

  Sequence seq;
  HYRAX_REQUIRE(engine.open(seq), "no free sequence slot");
  struct Closer {
    Engine& e;
    Sequence& s;
    ~Closer() { e.close(s); }
  } closer{engine, seq};

  Sampler sampler(opt.sampling);
  const int64_t V = engine.vocab_size();
  const int64_t chunk = engine.config().max_step_tokens;
  const auto t0 = clock::now();
  std::vector<float> logits;
  for (size_t i = 0; i < prompt.size(); i += size_t(chunk)) {
    const int64_t n = std::min<int64_t>(chunk, int64_t(prompt.size() - i));
    logits = engine.step({StepItem{&seq, prompt.data() + i, n, false}});
  }
  const auto t1 = clock::now();
  res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  for (;;) {
    const int32_t id = sampler.sample(logits.data(), V);
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
    logits = engine.step({StepItem{&seq, &id, 1, false}});
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace hyrax
