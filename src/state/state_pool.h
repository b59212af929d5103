// The memory of every sequence's state, sized once: recurrent-state slots (conv + delta-rule state per recurrent
// layer) and a paged KV cache (blocks of block_size positions per attention layer). Sequences borrow a slot and
// blocks and give them back; nothing is allocated per step.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "state/state_spec.h"

namespace hyrax {

struct StatePoolConfig {
  int64_t n_slots = 1;       // sequences that can hold state at once
  int64_t n_blocks = 0;      // KV blocks per attention layer
  int64_t block_size = 16;   // positions per KV block
};

class StatePool {
 public:
  StatePool(Backend& backend, const StateSpec& spec, const StatePoolConfig& cfg);
  ~StatePool();
  StatePool(const StatePool&) = delete;
  StatePool& operator=(const StatePool&) = delete;

  /// A free slot with zeroed recurrent state, or -1 when all are taken.
  int32_t acquire_slot();
  void release_slot(int32_t slot);

  /// Grows `table` so it covers positions [0, n_positions); false (table unchanged) when blocks run out.
  bool reserve_blocks(std::vector<int32_t>& table, int64_t n_positions);
  /// Returns all of the table's blocks and clears it.
  void release_blocks(std::vector<int32_t>& table);

  /// A free slot and a free block, left free: a step may overwrite their contents (the padding rows of a recorded
  /// step graph) since acquire_slot zeroes a slot's state and a sequence writes a block's positions before reading
  /// them. -1 when none is free.
  int32_t spare_slot() const { return free_slots_.empty() ? -1 : free_slots_.back(); }
  int32_t spare_block() const { return free_blocks_.empty() ? -1 : free_blocks_.back(); }

  RecurrentPools recurrent(int layer) const { return recurrent_[size_t(layer)]; }
  KvPools kv(int layer) const { return kv_[size_t(layer)]; }

  const StateSpec& spec() const { return spec_; }
  const StatePoolConfig& config() const { return cfg_; }
  int64_t free_slots() const { return int64_t(free_slots_.size()); }
  int64_t free_blocks() const { return int64_t(free_blocks_.size()); }
  int64_t blocks_for(int64_t n_positions) const { return (n_positions + cfg_.block_size - 1) / cfg_.block_size; }
  /// Bytes held on the backend's device.
  size_t bytes() const { return bytes_; }

 private:
  Backend& be_;
  StateSpec spec_;
  StatePoolConfig cfg_;
  std::vector<RecurrentPools> recurrent_;
  std::vector<KvPools> kv_;
  std::vector<int32_t> free_slots_, free_blocks_;
  std::vector<void*> allocations_;
  size_t bytes_ = 0;
};

}  // namespace hyrax
