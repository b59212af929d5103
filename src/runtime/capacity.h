// How many sequences and KV positions a state-pool memory budget holds: the plan the engine's StatePool is sized
// from, computed exactly from the model's StateSpec (the pool allocates precisely pool_bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "runtime/engine.h"
#include "state/state_spec.h"

namespace hyrax {

struct CapacityRequest {
  size_t max_memory = 0;     // bytes for the state pool; 0: exactly what max_seqs full-length sequences need
  int64_t max_seqs = 0;      // sequences at once; 0: as many as the budget allows, up to default_max_seqs
  int64_t max_seq_len = 0;   // positions per sequence (prompt + output); 0: the model's max positions
  int64_t block_size = 16;   // KV positions per block
  int64_t default_max_seqs = 64;
};

struct Capacity {
  int64_t max_seqs = 0;      // recurrent-state slots
  int64_t max_seq_len = 0;   // longest sequence (positions) a request may reach
  int64_t block_size = 0;
  int64_t n_blocks = 0;      // KV blocks (each block_size positions in every attention layer)
  int64_t kv_tokens = 0;     // n_blocks * block_size: positions cached at once over all sequences
  bool has_kv = false;       // false for a model without attention layers (blocks are then bookkeeping only)
  size_t slot_bytes = 0;     // recurrent state of one sequence, all layers
  size_t token_bytes = 0;    // KV cache of one position, all attention layers
  size_t pool_bytes = 0;     // max_seqs * slot_bytes + kv_tokens * token_bytes

  /// One line for the startup log: "capacity: 64 sequences x 4096 positions, 262144 KV tokens (...) = 1.02 GiB".
  std::string describe() const;
  /// The engine configuration that allocates exactly this pool.
  EngineConfig engine_config(int64_t max_step_tokens) const;
};

/// Plans the pool. Throws hyrax::Error when the budget cannot hold one sequence of max_seq_len positions.
Capacity plan_capacity(const StateSpec& spec, DType kv_dtype, int64_t model_max_positions, const CapacityRequest& r);

/// "1.50 GiB", "640 KiB", "12 B".
std::string format_bytes(double bytes);
/// Parses "4G", "512MiB", "1.5GB", "1073741824" (binary units: K/M/G/T with or without iB/B); throws on bad text.
size_t parse_bytes(const std::string& text);

}  // namespace hyrax
