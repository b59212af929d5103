#include "kernels/cuda/tma.h"

#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include "core/check.h"

namespace hyrax::cuda {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    const cudaError_t err =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found);
    HYRAX_CHECK(err == cudaSuccess && found == cudaDriverEntryPointSuccess && f,
                "the CUDA driver has no cuTensorMapEncodeTiled (", cudaGetErrorString(err), ")");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

}  // namespace

CUtensorMap tensor_map_bf16_3d(const char* what, const void* base, const uint64_t (&dims)[3],
                               const uint64_t (&strides)[2], const uint32_t (&box)[3]) {
  CUtensorMap map{};
  const cuuint64_t dim[3] = {dims[0], dims[1], dims[2]}, stride[2] = {strides[0], strides[1]};
  const cuuint32_t bx[3] = {box[0], box[1], box[2]}, elem[3] = {1, 1, 1};
  const CUresult r = encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dim, stride, bx,
                                    elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  HYRAX_CHECK(r == CUDA_SUCCESS, what, ": tensor map refused (CUresult ", int(r), ") for dims ", dims[0], " x ",
              dims[1], " x ", dims[2], ", strides ", strides[0], ", ", strides[1], " bytes, box ", box[0], " x ",
              box[1], " x ", box[2]);
  return map;
}

}  // namespace hyrax::cuda
