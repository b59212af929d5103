// The gated delta rule on the GPU (see gated_delta_rule.h for the math): bf16 q, k, v, a, b and outputs, float32
// state read and updated in place in the pool, float32 arithmetic (bf16 tensor-core operands in the chunked form).
//
// Two kernels compute the same function. Both handle each listed sequence on its own (its own blocks, its own
// state), so a sequence's result never depends on the others in the launch.
//   gdn_recurrent: token by token with the state in registers (decode: one token per sequence).
//   gdn_chunked:   chunks of 64 tokens in the WY form on tensor cores (prefill), in two launches: every chunk's
//                  state-independent part in parallel (decays, the triangular inverse), then one pass per
//                  (sequence, head, value slice) over its chunks carrying the state. A sequence split at multiples
//                  of 64 tokens gives bitwise the same outputs and state as the whole sequence in one call.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace hyrax::kernels::cuda {

struct GdnParams {
  int64_t n = 0;                         // sequences in this launch
  const int32_t* seqs = nullptr;         // [n] device: which sequences (indices into cu_seqlens and state_slots)
  const int32_t* cu_seqlens = nullptr;   // [n_seqs + 1] device token offsets
  const int32_t* state_slots = nullptr;  // [n_seqs] device
  float* state = nullptr;                // [n_slots, Hv, Dk, Dv] float32
  const __nv_bfloat16* q = nullptr;      // [T, Hk, Dk] row stride ld_qkv (raw: l2-normalized inside)
  const __nv_bfloat16* k = nullptr;      // [T, Hk, Dk] row stride ld_qkv
  const __nv_bfloat16* v = nullptr;      // [T, Hv, Dv] row stride ld_qkv
  int64_t ld_qkv = 0;
  int64_t T =
      0;  // rows of q, k, v: their extent for tensor-map loads (0: unknown, the chunked form then loads by rows)
  const __nv_bfloat16* a = nullptr;  // [T, Hv] row stride ld_ab
  const __nv_bfloat16* b = nullptr;  // [T, Hv] row stride ld_ab
  int64_t ld_ab = 0;
  const float* A_log = nullptr;    // [Hv]
  const float* dt_bias = nullptr;  // [Hv]
  __nv_bfloat16* out = nullptr;    // [T, Hv, Dv] row stride ld_out
  int64_t ld_out = 0;
  int64_t Hk = 0, Hv = 0, Dk = 0, Dv = 0;  // Dk, Dv <= 256; Dv a multiple of 4; Hv a multiple of Hk
  bool allow_neg_eigval = true;
};

/// Recurrent form; any number of tokens per sequence. It reads the state of its sequences before the kernel launched
/// just before it on the stream has finished (kernels/cuda/launch.cuh): that kernel must not write those slots.
void gdn_recurrent(const GdnParams& p, cudaStream_t stream);

/// The chunks of the chunked form, made on the host from the host copy of cu_seqlens.
struct GdnChunkPlan {
  std::vector<int32_t> chunks;       // [n_chunks][2]: sequence index, first token of the chunk within the sequence
  std::vector<int32_t> first_chunk;  // [n]: index in `chunks` of the first chunk of each launched sequence
};
/// Chunks of 64 tokens of the sequences `seqs` (indices into cu_seqlens), in that order.
GdnChunkPlan gdn_plan_chunks(const int32_t* cu_seqlens_host, const std::vector<int32_t>& seqs);

/// Device copies of a plan, and scratch of gdn_chunked_scratch_bytes(n_chunks, Hv, Dk) bytes.
struct GdnChunkWork {
  const int32_t* chunks = nullptr;       // [n_chunks][2] device
  const int32_t* first_chunk = nullptr;  // [n] device
  int64_t n_chunks = 0;
  void* scratch = nullptr;
  // State columns per block of the second launch. 0: by the shapes (64 on warpgroup MMA where Dv is a multiple of 64
  // and 32 < Dk <= 128, else 48 or 32). 32 or 48: the mma.sync pass (the same bits for either).
  int value_slice = 0;
};
size_t gdn_chunked_scratch_bytes(int64_t n_chunks, int64_t Hv, int64_t Dk);

/// Chunked form (chunks of 64) for the sequences p.seqs, whose chunks `w` lists.
void gdn_chunked(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream);
/// Its two launches apart (benchmarks): the per-chunk prep, then the pass that carries the state.
void gdn_chunked_prep(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream);
void gdn_chunked_state(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream);

}  // namespace hyrax::kernels::cuda
