#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace hyrax {

void SamplingParams::validate() const {
  HYRAX_REQUIRE(std::isfinite(temperature) && temperature >= 0, "temperature must be >= 0, got ", temperature);
  HYRAX_REQUIRE(top_k >= 0, "top_k must be >= 0 (0 disables it), got ", top_k);
  HYRAX_REQUIRE(top_p > 0 && top_p <= 1, "top_p must be in (0, 1], got ", top_p);
  HYRAX_REQUIRE(min_p >= 0 && min_p <= 1, "min_p must be in [0, 1], got ", min_p);
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

int32_t argmax(const float* logits, int64_t vocab) {
  int32_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = int32_t(i);
  return best;
}

float Sampler::logprob(const float* logits, int64_t vocab, int32_t token) {
  float mx = logits[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - mx);
  return float(double(logits[token]) - mx - std::log(sum));
}

SampleRow Sampler::next_row() {
  SampleRow r{p_.temperature, p_.top_k, p_.top_p, p_.min_p, 0.0};
  // One uniform draw from 53 random bits, the same on every platform.
  if (p_.temperature != 0.0f) r.u = double(rng_() >> 11) * (1.0 / 9007199254740992.0);
  return r;
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  const SampleRow row = next_row();
  int32_t token = 0;
  kernels::SampleParams p;
  p.logits = logits;
  p.ld = vocab;
  p.R = 1;
  p.V = vocab;
  p.rows = &row;
  p.tokens = &token;
  kernels::sample_ref(p);
  return token;
}

}  // namespace hyrax
