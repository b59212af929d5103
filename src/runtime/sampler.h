// Turning logits into the next token: greedy, or sampling with temperature, top-k, top-p and min-p.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/sampling/sampling.h"

namespace hyrax {

using kernels::SampleRow;

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy (argmax)
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  uint64_t seed = 0;

  /// Throws hyrax::Error naming the first out-of-range field.
  void validate() const;
};

/// Samples tokens from logits. Filters apply in the order transformers applies them: temperature, top-k, top-p,
/// min-p. The same seed and logits give the same tokens. The algorithm is kernels::sample_ref; the sampler owns the
/// request's random stream (one draw per sampled token, none when greedy), so that a device can run the same
/// algorithm on the same draws (next_row).
class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  int32_t sample(const float* logits, int64_t vocab);
  /// The next token's parameters for kernels::sample / Backend::sample, with its uniform draw taken from the stream
  /// (sample(logits) == the backend's token for next_row() on the same logits).
  SampleRow next_row();
  /// log-softmax of the raw logits at `token` (for logprobs).
  static float logprob(const float* logits, int64_t vocab, int32_t token);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

/// The lowest index of the largest value (ties go to the lowest id, as torch.argmax does).
int32_t argmax(const float* logits, int64_t vocab);

}  // namespace hyrax
