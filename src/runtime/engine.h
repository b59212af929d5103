// The engine: a backend, a model and the state pool sized for it, plus the step that runs a packed batch of
// sequences through the model. Everything above (generation, the scheduler, the server) drives it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "models/model.h"
#include "runtime/sampler.h"
#include "state/state_pool.h"

namespace hyrax {

struct EngineConfig {
  int64_t max_seqs = 1;           // sequences holding state at once
  int64_t max_seq_len = 4096;     // positions per sequence the KV cache must hold (when max_kv_tokens is 0)
  int64_t max_kv_tokens = 0;      // total KV positions in the pool; 0: max_seqs * max_seq_len
  int64_t block_size = 16;        // KV positions per block
  int64_t max_step_tokens = 512;  // most tokens one step packs (prefill chunk)
  // Decode steps (every sequence bringing one token) as step graphs recorded once per batch-size bucket, where the
  // backend records them (CUDA). Logits are bitwise the same either way; off: every step launches eagerly.
  bool cuda_graphs = true;
};

/// A sequence's hold on the engine's state.
struct Sequence {
  int32_t slot = -1;
  std::vector<int32_t> blocks;
  int64_t n_cached = 0;  // positions already in the state
};

/// One sequence's part of a step: append `tokens` and want logits for the last one, or for all of them.
struct StepItem {
  Sequence* seq = nullptr;
  const int32_t* tokens = nullptr;
  int64_t n_tokens = 0;
  bool all_logits = false;
};

/// A token sampled on the backend and its log-softmax under the raw logits.
struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;
};

class Engine {
 public:
  Engine(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, const EngineConfig& cfg);
  ~Engine();

  Backend& backend() { return *backend_; }
  Model& model() { return *model_; }
  StatePool& pool() { return *pool_; }
  const EngineConfig& config() const { return cfg_; }
  int64_t vocab_size() const { return model_->info().vocab_size; }

  /// Takes a state slot for a new sequence; false when none is free.
  bool open(Sequence& seq);
  /// Gives back the sequence's slot and KV blocks.
  void close(Sequence& seq);

  /// Runs one forward step over `items` (at most max_step_tokens tokens in all). Returns the logits rows, host
  /// float32 [rows, vocab]: per item, its last token's row, or all of its rows when all_logits. Throws
  /// hyrax::Error (and changes nothing) when a sequence would exceed its KV capacity.
  std::vector<float> step(const std::vector<StepItem>& items);

  /// Logits of every position of `ids` for a fresh sequence, prefilled in chunks of max_step_tokens.
  std::vector<float> logits_all(const std::vector<int32_t>& ids);

  /// Whether decode steps run as step graphs.
  bool graphs() const { return graphs_; }
  /// The batch-size bucket a decode step of n sequences is padded to: 1, 2, 4, 8, 16, 24, 32, 48, 64, then
  /// multiples of 32.
  static int64_t graph_bucket(int64_t n);
  /// Decode steps so far that replayed a graph, and graphs recorded (for tests and benchmarks).
  int64_t graph_replays() const { return graph_replays_; }
  int64_t graph_captures() const { return graph_captures_; }
  /// step() for callers that need no logits on the host: item i's last row is sampled on the backend with rows[i]
  /// (its parameters and uniform draw, Sampler::next_row) and only the tokens and their logprobs come back. No
  /// item may ask for all_logits.
  std::vector<SampledToken> step_sample(const std::vector<StepItem>& items, const std::vector<SampleRow>& rows);

  /// Samples host logits rows [n, vocab] (from step()) on the backend, so that a token is drawn the same way
  /// whichever of step() and step_sample() produced its logits.
  std::vector<SampledToken> sample_rows(const float* logits, const std::vector<SampleRow>& rows);

 private:
  /// Packs `items` (one-token sequences first) and runs the step; the logits rows stay in logits_dev_ in the packed
  /// order, which is returned (item indices).
  std::vector<size_t> forward_step(const std::vector<StepItem>& items);
  /// Grows logits_dev_ to hold `rows` rows.
  void reserve_logits(size_t rows);
  /// Runs the model over the packed step `m` (logits into logits_dev_): eagerly, or as the graph of `key` (>= 0).
  void run_forward(const StepMeta& m, const std::vector<int32_t>& rows, int64_t key);

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  EngineConfig cfg_;
  std::unique_ptr<StatePool> pool_;
  void* logits_dev_ = nullptr;  // device buffer for logits rows
  size_t logits_bytes_ = 0;
  bool graphs_ = false;  // decode steps as step graphs
  int64_t graph_replays_ = 0, graph_captures_ = 0;
  std::vector<int64_t> failed_keys_;  // keys whose recording could not be kept: they stay eager
  std::vector<SampledToken> sample_device_rows(int64_t n, const std::vector<SampleRow>& rows);
};

}  // namespace hyrax
