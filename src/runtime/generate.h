// Generating one sequence: prefill the prompt in chunks, then decode token by token until an eos id, a stop
// condition or the token budget.
#pragma once

#include <cstdint>
#include <functional>
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

/// on_token(id) is called for each generated id as soon as it is sampled; returning false stops generation
/// (FinishReason::Cancelled).
GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<bool(int32_t)>& on_token = {});

}  // namespace hyrax
