// Row gathers: one block per output row, 16-byte copies when rows are aligned.
#include "core/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/embed/embed_cuda.h"

namespace hyrax::kernels::cuda {
namespace {

template <class V>
__global__ void gather_kernel(const V* src, int64_t ld_src, const int32_t* idx, int64_t cols, V* dst, int64_t ld_dst) {
  hyrax::cuda::begin_after_previous_grids();
  const V* s = src + int64_t(idx[blockIdx.x]) * ld_src;
  V* d = dst + int64_t(blockIdx.x) * ld_dst;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

void gather_rows(const __nv_bfloat16* src, int64_t ld_src, const int32_t* idx, int64_t n, int64_t C,
                 __nv_bfloat16* dst, int64_t ld_dst, cudaStream_t stream) {
  HYRAX_CHECK(n >= 0 && C > 0 && ld_src >= C && ld_dst >= C, "gather_rows: n=", n, " C=", C);
  if (n == 0) return;
  HYRAX_CHECK(src && idx && dst, "gather_rows: null pointer");
  HYRAX_CHECK(n <= INT32_MAX, "gather_rows: n=", n);
  if (C % 8 == 0 && ld_src % 8 == 0 && ld_dst % 8 == 0 && aligned16(src) && aligned16(dst)) {
    hyrax::cuda::launch("gather_rows", gather_kernel<uint4>, dim3(unsigned(n)), dim3(128), 0, stream,
                        reinterpret_cast<const uint4*>(src), ld_src / 8, idx, C / 8, reinterpret_cast<uint4*>(dst),
                        ld_dst / 8);
  } else {
    hyrax::cuda::launch("gather_rows", gather_kernel<__nv_bfloat16>, dim3(unsigned(n)), dim3(128), 0, stream, src,
                        ld_src, idx, C, dst, ld_dst);
  }
}

}  // namespace hyrax::kernels::cuda
