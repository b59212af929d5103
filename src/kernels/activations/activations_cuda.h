// Elementwise ops on the GPU over bf16 [T, C] views with row strides, float32 arithmetic.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace hyrax::kernels::cuda {

/// A [T, C] bf16 view: element (t, c) at p[t * ld + c].
struct View2d {
  __nv_bfloat16* p = nullptr;
  int64_t ld = 0;
};

/// y = silu(gate) * up (y may alias gate or up with the same row stride)
void swiglu(View2d gate, View2d up, View2d y, int64_t T, int64_t C, cudaStream_t stream);
/// y = a + b (y may alias either with the same row stride)
void add(View2d a, View2d b, View2d y, int64_t T, int64_t C, cudaStream_t stream);

}  // namespace hyrax::kernels::cuda
