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

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (p_.temperature == 0.0f) return argmax(logits, vocab);
  // Candidates sorted by logit (descending, ties by id), scaled by 1/temperature.
  cand_.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) cand_[size_t(i)] = {logits[i] / p_.temperature, int32_t(i)};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t n = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = size_t(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax over the survivors (float64 for a stable sum).
  std::vector<double> prob(n);
  const double mx = cand_[0].first;
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += prob[i] = std::exp(double(cand_[i].first) - mx);
  for (auto& v : prob) v /= total;
  // top-p: keep the smallest prefix whose mass reaches top_p (always at least one token).
  if (p_.top_p < 1.0f) {
    double acc = 0;
    size_t keep = 0;
    while (keep < n) {
      acc += prob[keep++];
      if (acc >= double(p_.top_p)) break;
    }
    n = std::max<size_t>(keep, 1);
  }
  // min-p: drop tokens below min_p times the top probability.
  if (p_.min_p > 0.0f) {
    const double floor = double(p_.min_p) * prob[0];
    size_t keep = 1;
    while (keep < n && prob[keep] >= floor) ++keep;
    n = keep;
  }
  double mass = 0;
  for (size_t i = 0; i < n; ++i) mass += prob[i];
  // One uniform draw from 53 random bits, the same on every platform.
  const double u = double(rng_() >> 11) * (1.0 / 9007199254740992.0) * mass;
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += prob[i];
    if (u < acc) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace hyrax
