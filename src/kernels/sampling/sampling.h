// Sampling the next token from rows of float32 logits: greedy, or temperature with top-k, top-p and min-p, each
// row with its own parameters and its own uniform draw (made by the caller, so that the random stream stays with the
// request). Besides the token, each row's log-softmax of the raw logits at that token (for logprobs).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/check.h"

namespace hyrax::kernels {

/// One row's sampling parameters.
struct SampleRow {
  float temperature = 1.0f;  // 0: greedy (the lowest index of the largest logit, as torch.argmax)
  int32_t top_k = 0;         // 0 (or >= V): off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  double u = 0.0;            // uniform draw in [0, 1); unused when greedy
};

struct SampleParams {
  const float* logits = nullptr;  // [R, V], row stride ld
  int64_t ld = 0;
  int64_t R = 0, V = 0;
  const SampleRow* rows = nullptr;  // [R]
  int32_t* tokens = nullptr;        // [R] out
  float* logprobs = nullptr;        // [R] out: log-softmax of the raw logits at the token; may be null
};

/// The reference, one thread per call. Per row: scale the logits by 1/temperature (float division); sort them
/// descending (ties: lower id first); keep the first top_k; softmax over those in float64; keep the smallest prefix
/// whose probability reaches top_p (at least one token); drop tokens below min_p times the top probability; pick by
/// inverse CDF: the first token whose running sum of probabilities exceeds u times the kept mass.
void sample_ref(const SampleParams& p);

/// Checks the parameters (shapes, pointers, every row's ranges); throws hyrax::Error naming the offending value.
void check_sample_params(const SampleParams& p);
/// Checks one row's ranges (row r of a call).
inline void check_sample_row(const SampleRow& s, int64_t r) {
  HYRAX_CHECK(std::isfinite(s.temperature) && s.temperature >= 0, "sample: row ", r, " temperature ", s.temperature);
  HYRAX_CHECK(s.top_k >= 0, "sample: row ", r, " top_k ", s.top_k);
  HYRAX_CHECK(s.top_p > 0 && s.top_p <= 1, "sample: row ", r, " top_p ", s.top_p);
  HYRAX_CHECK(s.min_p >= 0 && s.min_p <= 1, "sample: row ", r, " min_p ", s.min_p);
  HYRAX_CHECK(s.u >= 0 && s.u < 1, "sample: row ", r, " u ", s.u);
}

}  // namespace hyrax::kernels
