// What the scheduler measures while serving: counters, gauges and latency histograms, safe to read from any thread.
// The server renders them as Prometheus text (server/metrics_text.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

namespace hyrax {

/// A cumulative histogram with fixed upper bounds (Prometheus semantics: bucket i counts values <= bounds[i]).
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // [bounds.size() + 1]: the last is +Inf
  double sum = 0;
  uint64_t count = 0;

  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  /// The value below which a fraction q of observations fall, interpolated within its bucket.
  double quantile(double q) const;
};

/// A snapshot of the scheduler's state and totals.
struct ServingStats {
  // Gauges.
  int64_t waiting_requests = 0, waiting_seqs = 0, running_seqs = 0, running_seqs_peak = 0;
  int64_t slots_total = 0, slots_used = 0;
  int64_t blocks_total = 0, blocks_used = 0, blocks_used_peak = 0, block_size = 0;
  double generation_tokens_per_s = 0, prompt_tokens_per_s = 0;  // over the last few seconds
  // Counters.
  uint64_t requests_submitted = 0, requests_finished = 0, requests_cancelled = 0, requests_failed = 0;
  uint64_t prompt_tokens = 0, generation_tokens = 0, recomputed_tokens = 0;
  uint64_t steps = 0, preemptions = 0;
  double busy_seconds = 0;  // time spent inside forward steps
  // Latencies (seconds).
  Histogram ttft{{}}, itl{{}}, e2e{{}};
};

/// Thread-safe accumulation of ServingStats' counters and histograms.
class ServingMetrics {
 public:
  ServingMetrics();
  void on_submit();
  void on_request_end(bool cancelled, bool failed, double e2e_seconds);
  void on_first_token(double ttft_seconds);
  void on_inter_token(double itl_seconds);
  void on_preemption(int64_t recompute_tokens);
  void on_step(int64_t prompt_tokens, int64_t generated_tokens, double seconds);
  /// Copies counters and histograms into `s` (gauges are the scheduler's to fill).
  void fill(ServingStats& s) const;

 private:
  using clock = std::chrono::steady_clock;
  mutable std::mutex mu_;
  ServingStats totals_;
  std::deque<std::pair<clock::time_point, std::pair<int64_t, int64_t>>> recent_;  // (time, (prompt, generated))
};

}  // namespace hyrax
