// `hyrax bench serve`'s load generator: N concurrent streaming clients send random token-id prompts of a fixed length
// to an OpenAI-compatible /v1/completions endpoint (greedy, ignore_eos, so every request generates exactly
// output_len tokens) and time each token as it arrives: output tokens/s, time to first token, inter-token latency.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hyrax::server {

struct LoadOptions {
  std::string url;             // http://host:port of the server
  std::string model;           // the model id sent with each request ("" : none)
  int64_t concurrency = 8;     // clients, each with one request in flight
  int64_t num_prompts = 0;     // requests in all (0: 4 per client)
  int64_t input_len = 256;     // prompt tokens per request
  int64_t output_len = 128;    // generated tokens per request
  int64_t vocab_size = 0;      // prompt ids are drawn from [0, vocab_size); 0: ask the server's /health
  int64_t warmup = 1;          // requests sent one by one before the clock starts
  uint64_t seed = 1;
};

struct LoadReport {
  int64_t ok = 0, failed = 0;
  std::string first_error;
  double seconds = 0;
  int64_t prompt_tokens = 0, output_tokens = 0;
  std::vector<double> ttft, itl, tpot, e2e;  // seconds: per request (ttft, tpot, e2e) and per token gap (itl)

  /// The human-readable summary (percentiles in ms).
  std::string text(const LoadOptions& o) const;
};

/// Runs the load; throws hyrax::Error when the server cannot be reached at all.
LoadReport run_load(const LoadOptions& o);

/// The value below which a fraction q of `v` lies (linear interpolation between order statistics); 0 when empty.
double percentile(std::vector<double> v, double q);

}  // namespace hyrax::server
