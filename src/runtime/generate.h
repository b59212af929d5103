// Generating from one sequence: a Session keeps the sequence's state across calls (so a chat appends only each
// turn's new tokens), prefills in chunks aligned to absolute positions, and decodes token by token until an eos
// id, a caller's stop or the token budget.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "runtime/engine.h"
#include "runtime/sampler.h"

namespace hyrax {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;  // eos ids; generation stops after emitting one (it is included in the result)
};

enum class FinishReason { Length, Stop, Cancelled };

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (not the prompt)
  FinishReason finish = FinishReason::Length;
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

/// One sequence held open on an engine.
class Session {
 public:
  explicit Session(Engine& engine);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Forgets everything: a fresh, zero state.
  void reset();
  /// The ids whose effect the state holds.
  const std::vector<int32_t>& consumed() const { return consumed_; }
  /// Runs `ids` through the model (prefill pieces end at multiples of the engine's max_step_tokens, counted from
  /// the sequence start, so the same text is always cut the same way); returns the last position's logits.
  std::vector<float> append(std::span<const int32_t> ids);
  /// Samples up to opt.max_new_tokens tokens starting from `logits` (the last appended position's), feeding each
  /// one back except the last. on_token(id) sees each id as it is sampled; returning false cancels.
  GenerateResult generate(std::vector<float> logits, const GenerateOptions& opt,
                          const std::function<bool(int32_t)>& on_token = {});

 private:
  /// Appends one token and samples the next one on the backend (no logits come to the host).
  int32_t feed_and_sample(int32_t id, const SampleRow& row);

  Engine& engine_;
  Sequence seq_;
  std::vector<int32_t> consumed_;
};

/// Generates from a fresh sequence: prefill `prompt`, then Session::generate.
GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<bool(int32_t)>& on_token = {});

}  // namespace hyrax
