// Tensor maps for Hopper's tensor memory accelerator (TMA): the descriptor a kernel's cp.async.bulk.tensor loads
// name (wgmma.cuh has the device side).
#pragma once

#include <cuda.h>

#include <cstdint>

namespace hyrax::cuda {

/// A 3-D tiled map over bf16 data: dims innermost first, strides of dims 1 and 2 in bytes (multiples of 16), the base
/// 16-byte aligned. Boxes land in shared memory in the 128-byte swizzle (wgmma.cuh's SW128 layout: box[0] = 64);
/// elements outside the tensor read as zeros. Throws naming `what` if the driver refuses the map.
CUtensorMap tensor_map_bf16_3d(const char* what, const void* base, const uint64_t (&dims)[3],
                               const uint64_t (&strides)[2], const uint32_t (&box)[3]);

}  // namespace hyrax::cuda
