#include "state/state_pool.h"

#include <algorithm>

#include "core/check.h"

namespace hyrax {

StatePool::StatePool(Backend& backend, const StateSpec& spec, const StatePoolConfig& cfg)
    : be_(backend), spec_(spec), cfg_(cfg) {
  HYRAX_CHECK(cfg.n_slots > 0 && cfg.block_size > 0 && cfg.n_blocks >= 0, "state pool config");
  auto grab = [&](size_t bytes) {
    void* p = be_.alloc(bytes);
    allocations_.push_back(p);
    bytes_ += bytes;
    return p;
  };
  recurrent_.resize(spec.layers.size());
  kv_.resize(spec.layers.size());
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const auto& l = spec.layers[i];
    if (l.kind == LayerStateSpec::Kind::Recurrent) {
      recurrent_[i].conv = static_cast<float*>(grab(l.conv_floats() * sizeof(float) * size_t(cfg.n_slots)));
      recurrent_[i].ssm = static_cast<float*>(grab(l.ssm_floats() * sizeof(float) * size_t(cfg.n_slots)));
    } else if (l.kind == LayerStateSpec::Kind::Attention && cfg.n_blocks > 0) {
      const size_t block_bytes = size_t(cfg.block_size * l.kv_heads * l.head_dim) * dtype_size(be_.kv_dtype());
      kv_[i].k = grab(block_bytes * size_t(cfg.n_blocks));
      kv_[i].v = grab(block_bytes * size_t(cfg.n_blocks));
      kv_[i].n_blocks = cfg.n_blocks;
      kv_[i].block_size = cfg.block_size;
    }
  }
  // Hand out low indices first.
  for (int64_t s = cfg.n_slots - 1; s >= 0; --s) free_slots_.push_back(int32_t(s));
  for (int64_t b = cfg.n_blocks - 1; b >= 0; --b) free_blocks_.push_back(int32_t(b));
}

StatePool::~StatePool() {
  for (void* p : allocations_) be_.release(p);
}

int32_t StatePool::acquire_slot() {
  if (free_slots_.empty()) return -1;
  const int32_t slot = free_slots_.back();
  free_slots_.pop_back();
  for (size_t i = 0; i < spec_.layers.size(); ++i) {
    const auto& l = spec_.layers[i];
    if (l.kind != LayerStateSpec::Kind::Recurrent) continue;
    be_.zero(recurrent_[i].conv + size_t(slot) * l.conv_floats(), l.conv_floats() * sizeof(float));
    be_.zero(recurrent_[i].ssm + size_t(slot) * l.ssm_floats(), l.ssm_floats() * sizeof(float));
  }
  return slot;
}

void StatePool::release_slot(int32_t slot) {
  HYRAX_CHECK(slot >= 0 && slot < cfg_.n_slots, "slot ", slot);
  HYRAX_CHECK(std::find(free_slots_.begin(), free_slots_.end(), slot) == free_slots_.end(), "slot ", slot,
              " released twice");
  free_slots_.push_back(slot);
}

bool StatePool::reserve_blocks(std::vector<int32_t>& table, int64_t n_positions) {
  const int64_t need = blocks_for(n_positions) - int64_t(table.size());
  if (need <= 0) return true;
  if (need > int64_t(free_blocks_.size())) return false;
  for (int64_t i = 0; i < need; ++i) {
    table.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return true;
}

void StatePool::release_blocks(std::vector<int32_t>& table) {
  for (int32_t b : table) free_blocks_.push_back(b);
  table.clear();
}

}  // namespace hyrax
