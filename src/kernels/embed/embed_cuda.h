// Row gathers on the GPU: the embedding lookup and picking the rows whose logits are wanted.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace hyrax::kernels::cuda {

/// dst[i, :] = src[idx[i], :] for i < n; rows of C bf16 values; idx on the device (caller checks its range).
void gather_rows(const __nv_bfloat16* src, int64_t ld_src, const int32_t* idx, int64_t n, int64_t C,
                 __nv_bfloat16* dst, int64_t ld_dst, cudaStream_t stream);

}  // namespace hyrax::kernels::cuda
