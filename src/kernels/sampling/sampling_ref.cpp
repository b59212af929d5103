// The sampling reference: the host algorithm hyrax has always used (runtime::Sampler calls it), one row at a time.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/check.h"
#include "kernels/sampling/sampling.h"

namespace hyrax::kernels {

void check_sample_params(const SampleParams& p) {
  HYRAX_CHECK(p.R >= 0 && p.V > 0 && p.ld >= p.V, "sample: R=", p.R, " V=", p.V, " ld=", p.ld);
  HYRAX_CHECK(p.R == 0 || (p.logits && p.rows && p.tokens), "sample: null pointer");
  for (int64_t r = 0; r < p.R; ++r) check_sample_row(p.rows[r], r);
}

namespace {

int32_t first_max(const float* x, int64_t V) {
  int32_t best = 0;
  for (int64_t i = 1; i < V; ++i)
    if (x[i] > x[best]) best = int32_t(i);
  return best;
}

float log_softmax_at(const float* x, int64_t V, int32_t token) {
  float mx = x[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(x[i]) - mx);
  return float(double(x[token]) - mx - std::log(sum));
}

int32_t sample_row(const float* x, int64_t V, const SampleRow& s) {
  if (s.temperature == 0.0f) return first_max(x, V);
  // Candidates sorted by logit (descending, ties by id), scaled by 1/temperature.
  thread_local std::vector<std::pair<float, int32_t>> cand;
  thread_local std::vector<double> prob;
  cand.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) cand[size_t(i)] = {x[i] / s.temperature, int32_t(i)};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t n = cand.size();
  if (s.top_k > 0 && size_t(s.top_k) < n) {
    std::partial_sort(cand.begin(), cand.begin() + s.top_k, cand.end(), by_logit);
    n = size_t(s.top_k);
  } else {
    std::sort(cand.begin(), cand.end(), by_logit);
  }
  // Softmax over the survivors (float64 for a stable sum).
  prob.resize(n);
  const double mx = cand[0].first;
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += prob[i] = std::exp(double(cand[i].first) - mx);
  for (size_t i = 0; i < n; ++i) prob[i] /= total;
  // top-p: keep the smallest prefix whose mass reaches top_p (always at least one token).
  if (s.top_p < 1.0f) {
    double acc = 0;
    size_t keep = 0;
    while (keep < n) {
      acc += prob[keep++];
      if (acc >= double(s.top_p)) break;
    }
    n = std::max<size_t>(keep, 1);
  }
  // min-p: drop tokens below min_p times the top probability.
  if (s.min_p > 0.0f) {
    const double floor = double(s.min_p) * prob[0];
    size_t keep = 1;
    while (keep < n && prob[keep] >= floor) ++keep;
    n = keep;
  }
  double mass = 0;
  for (size_t i = 0; i < n; ++i) mass += prob[i];
  const double u = s.u * mass;
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += prob[i];
    if (u < acc) return cand[i].second;
  }
  return cand[n - 1].second;
}

}  // namespace

void sample_ref(const SampleParams& p) {
  check_sample_params(p);
  for (int64_t r = 0; r < p.R; ++r) {
    const float* x = p.logits + r * p.ld;
    p.tokens[r] = sample_row(x, p.V, p.rows[r]);
    if (p.logprobs) p.logprobs[r] = log_softmax_at(x, p.V, p.tokens[r]);
  }
}

}  // namespace hyrax::kernels
