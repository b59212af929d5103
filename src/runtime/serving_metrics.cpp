#include "runtime/serving_metrics.h"

#include <algorithm>

namespace hyrax {

namespace {
// Latency buckets: 1 ms to 2 minutes, roughly x2 apart (TTFT, ITL and end-to-end share them).
std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
          1.5,   2.0,    3.0,   5.0,  7.5,  10.0, 15.0, 20.0, 30.0, 60.0, 120.0};
}
constexpr double kRateWindowSeconds = 10.0;
}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds(upper_bounds.empty() ? latency_bounds() : std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t i = size_t(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
  ++counts[i];
  sum += v;
  ++count;
}

double Histogram::quantile(double q) const {
  if (count == 0) return 0;
  const double target = q * double(count);
  double seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (seen + double(counts[i]) >= target && counts[i] > 0) {
      const double lo = i == 0 ? 0.0 : bounds[i - 1];
      const double hi = i < bounds.size() ? bounds[i] : bounds.back();
      return lo + (hi - lo) * (target - seen) / double(counts[i]);
    }
    seen += double(counts[i]);
  }
  return bounds.back();
}

ServingMetrics::ServingMetrics() = default;

void ServingMetrics::on_submit() {
  std::lock_guard<std::mutex> lock(mu_);
  ++totals_.requests_submitted;
}

void ServingMetrics::on_request_end(bool cancelled, bool failed, double e2e_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled) {
    ++totals_.requests_cancelled;
  } else if (failed) {
    ++totals_.requests_failed;
  } else {
    ++totals_.requests_finished;
    totals_.e2e.observe(e2e_seconds);
  }
}

void ServingMetrics::on_first_token(double ttft_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  totals_.ttft.observe(ttft_seconds);
}

void ServingMetrics::on_inter_token(double itl_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  totals_.itl.observe(itl_seconds);
}

void ServingMetrics::on_preemption(int64_t recompute_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  ++totals_.preemptions;
  totals_.recomputed_tokens += uint64_t(recompute_tokens);
}

void ServingMetrics::on_step(int64_t prompt_tokens, int64_t generated_tokens, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++totals_.steps;
  totals_.prompt_tokens += uint64_t(prompt_tokens);
  totals_.generation_tokens += uint64_t(generated_tokens);
  totals_.busy_seconds += seconds;
  const auto now = clock::now();
  recent_.push_back({now, {prompt_tokens, generated_tokens}});
  while (!recent_.empty() && std::chrono::duration<double>(now - recent_.front().first).count() > kRateWindowSeconds)
    recent_.pop_front();
}

void ServingMetrics::fill(ServingStats& s) const {
  std::lock_guard<std::mutex> lock(mu_);
  s.requests_submitted = totals_.requests_submitted;
  s.requests_finished = totals_.requests_finished;
  s.requests_cancelled = totals_.requests_cancelled;
  s.requests_failed = totals_.requests_failed;
  s.prompt_tokens = totals_.prompt_tokens;
  s.generation_tokens = totals_.generation_tokens;
  s.recomputed_tokens = totals_.recomputed_tokens;
  s.steps = totals_.steps;
  s.preemptions = totals_.preemptions;
  s.busy_seconds = totals_.busy_seconds;
  s.ttft = totals_.ttft;
  s.itl = totals_.itl;
  s.e2e = totals_.e2e;
  // Rates over the window, ending now: an idle server reads 0 once the window has passed.
  const auto now = clock::now();
  int64_t p = 0, g = 0;
  for (const auto& [t, n] : recent_) {
    if (std::chrono::duration<double>(now - t).count() > kRateWindowSeconds) continue;
    p += n.first;
    g += n.second;
  }
  s.prompt_tokens_per_s = double(p) / kRateWindowSeconds;
  s.generation_tokens_per_s = double(g) / kRateWindowSeconds;
}

}  // namespace hyrax
