// Causal softmax attention of new tokens over a paged KV cache, for packed variable-length sequences (prefill
// chunks and decode steps in one call), with grouped-query heads.
//
// The cache of one layer is a pool of blocks, each holding `block_size` consecutive positions of one sequence:
// k_cache, v_cache [n_blocks, block_size, Hkv, D]. A sequence's block table maps its logical block i (positions
// i·block_size ...) to a physical block.
#pragma once

#include <cstdint>

namespace hyrax::kernels {

struct PagedKv {
  float* k = nullptr;  // [n_blocks, block_size, Hkv, D]
  float* v = nullptr;  // [n_blocks, block_size, Hkv, D]
  int64_t n_blocks = 0, block_size = 0, Hkv = 0, D = 0;
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq], row stride max_blocks_per_seq
  int64_t max_blocks_per_seq = 0;
};

struct AttentionParams {
  int64_t n_seqs = 0;
  const int32_t* cu_seqlens = nullptr;  // [n_seqs + 1] offsets of each sequence's new tokens in the packed batch
  const int32_t* start_pos = nullptr;   // [n_seqs] position of each sequence's first new token
  const float* q = nullptr;             // [T, Hq, D], row stride ldq
  int64_t ldq = 0;
  float* out = nullptr;  // [T, Hq, D], row stride ldo
  int64_t ldo = 0;
  PagedKv kv;          // already holds positions 0 .. start_pos + n_new - 1 of every sequence
  int64_t Hq = 0;      // a multiple of kv.Hkv; query head h reads kv head h / (Hq / Hkv)
  float scale = 1.0f;  // usually 1 / sqrt(D)
};

/// out = softmax(q·Kᵀ·scale, causal) · V, softmax in float32. Reference: float64 accumulation, one thread.
void attention_ref(const AttentionParams& p);
void attention(const AttentionParams& p);

struct KvWriteParams {
  int64_t n_seqs = 0;
  const int32_t* cu_seqlens = nullptr;  // [n_seqs + 1]
  const int32_t* start_pos = nullptr;   // [n_seqs]
  const float* k = nullptr;             // [T, Hkv, D], row stride ldk
  int64_t ldk = 0;
  const float* v = nullptr;  // [T, Hkv, D], row stride ldv
  int64_t ldv = 0;
  PagedKv kv;
};

/// Stores the new tokens' keys and values at their positions in the paged cache.
void kv_cache_write(const KvWriteParams& p);

}  // namespace hyrax::kernels
