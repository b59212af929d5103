// What the chunked gated delta rule's two state passes share with its prep kernel: the chunk length, the layout of
// a chunk's record in the scratch; and the state pass on warpgroup MMA (gated_delta_rule_chunked_wgmma.cu).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gated_delta_rule/gated_delta_rule_cuda.h"

namespace hyrax::kernels::cuda::gdn {

constexpr int kC = 64;  // chunk length

// One chunk's record in the scratch, written by the prep kernel and read by the state kernel (KP: Dk padded):
//   W' = Kᵀ·diag(tail·rk)·T [KP][64] bf16, P' = P·T [64][64] bf16, row scales [4][64] float (o: γ·rq/sqrt(Dk),
//   r: γ·rk, unused, β), γ_n. W' and P' are stored as their shared-memory image in the SW128 layout (wgmma.cuh),
//   so that one bulk copy lands them ready for wgmma, W' rows then P' rows as one B operand of KP + 64 rows:
//   element (r, c) of either at byte rec_off(r, c) from its start.
template <int KP>
struct Rec {
  static constexpr size_t W = 0, P = size_t(KP) * 128, scale = P + 8192, gn = scale + 1024, bytes = gn + 16;
};

/// Byte offset of element (r, c) of a [rows][64] bf16 matrix stored in the SW128 layout (wgmma.cuh's sw128 of its
/// 16-byte chunk, plus its place in the chunk).
__host__ __device__ constexpr uint32_t rec_off(int r, int c) {
  return uint32_t(r * 128 + ((((c >> 3) ^ (r & 7)) << 4) | ((c & 7) * 2)));
}

/// The state pass on warpgroup MMA (sm_90a) over the chunks the prep has recorded: 32 < Dk <= 128, Dv a multiple of
/// 64, q, k, v and out rows 16-byte aligned, p.T set (gdn_chunked checks all of it before choosing this pass).
void chunk_state_wgmma(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream);

}  // namespace hyrax::kernels::cuda::gdn
