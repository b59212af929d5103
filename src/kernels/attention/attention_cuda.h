// Causal softmax attention over a paged bf16 KV cache on the GPU (see attention.h for the layout and the math).
// Prefill rows go through a flash-attention kernel (tensor cores, online softmax in float32), single new tokens
// through a split-KV decode kernel. Both read only their own sequence's cache, in an order fixed by positions, so a
// row's result does not depend on the other rows or sequences of the step.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace hyrax::kernels::cuda {

struct PagedKv {
  __nv_bfloat16* k = nullptr;  // [n_blocks, block_size, Hkv, D]
  __nv_bfloat16* v = nullptr;  // [n_blocks, block_size, Hkv, D]
  int64_t n_blocks = 0, block_size = 0, Hkv = 0, D = 0;
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq] device
  int64_t max_blocks_per_seq = 0;
};

/// The step's packed batch as the attention kernels see it (device arrays).
struct AttnBatch {
  int64_t n_seqs = 0, T = 0;
  const int32_t* cu_seqlens = nullptr;  // [n_seqs + 1], cu_seqlens[0] == 0
  const int32_t* start_pos = nullptr;   // [n_seqs]
  const int32_t* tok_seq = nullptr;     // [T] sequence of each token
};

/// Stores the step's keys and values ([T, Hkv·D] bf16, row strides ldk, ldv) at their positions in the cache.
void kv_cache_write(const AttnBatch& b, const __nv_bfloat16* k, int64_t ldk, const __nv_bfloat16* v, int64_t ldv,
                    const PagedKv& kv, cudaStream_t stream);

struct AttentionParams {
  AttnBatch batch;
  const __nv_bfloat16* q = nullptr;  // [T, Hq, D], row stride ldq
  int64_t ldq = 0;
  __nv_bfloat16* out = nullptr;  // [T, Hq, D], row stride ldo
  int64_t ldo = 0;
  PagedKv kv;  // holds positions 0 .. start_pos + n_new - 1 of every sequence
  int64_t Hq = 0;
  float scale = 1.0f;
};

/// Query rows per prefill tile at head dim D (128 up to D = 128, else 64).
int64_t attention_prefill_tile_rows(int64_t D);

/// Flash attention for the query tiles listed in `tiles` ([n_tiles][2] device: sequence, first row of a tile of
/// attention_prefill_tile_rows(D) rows within that sequence's new tokens). Head dims 16, 32, 64, 96, 128, 256.
/// At head dim 128 the tiles are dealt to persistent blocks from the end of the list: listing them by the key
/// positions they read, longest last, balances the blocks. No output bit depends on the order.
void attention_prefill(const AttentionParams& p, const int32_t* tiles, int64_t n_tiles, cudaStream_t stream);

/// attention_prefill's kernel at head dim 128 (Hopper wgmma, 128-row tiles); the others run on mma.sync.
void attention_prefill_d128_wgmma(const AttentionParams& p, const int32_t* tiles, int64_t n_tiles,
                                  cudaStream_t stream);

/// Positions of the cache one decode block reads; a sequence's cache splits into parts of this many positions
/// (fixed, so the split depends on the sequence alone).
constexpr int64_t kDecodePart = 512;

/// Floats of scratch attention_decode needs for n sequences of at most max_kv positions.
int64_t attention_decode_scratch(int64_t n, int64_t Hq, int64_t D, int64_t max_kv);

/// Attention of the one new token of each sequence listed in `seqs` ([n] device; each has exactly one new token),
/// max_kv >= its cache length (start_pos + 1). The launch grid depends on n, Hq and max_kv only, never on the
/// lengths, and parts past a sequence's length are skipped: a recorded step graph replays for any lengths up to
/// max_kv. Head dims: multiples of 8 up to 256.
void attention_decode(const AttentionParams& p, const int32_t* seqs, int64_t n, int64_t max_kv, float* scratch,
                      cudaStream_t stream);

}  // namespace hyrax::kernels::cuda
