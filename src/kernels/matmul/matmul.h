// Dense projection y = x · Wᵀ, the workhorse of every layer.
//
// Batch invariance: y[t, n] is computed by one fixed sequence of operations that depends only on K, the weight
// dtype and the SIMD level, never on T, on which other rows run with it, or on the thread count. So a token's
// result is bitwise the same in a prefill of any length and in a decode step.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace hyrax::kernels {

struct MatmulParams {
  const float* x = nullptr;  // [T, K] activations, row stride ldx
  int64_t ldx = 0;
  const void* w = nullptr;  // [N, K] weight rows, contiguous (row stride K), as stored: F32, BF16 or F16
  DType w_dtype = DType::F32;
  float* y = nullptr;  // [T, N] output, row stride ldy
  int64_t ldy = 0;
  int64_t T = 0, N = 0, K = 0;
};

/// Plain reference: float64 accumulation, one thread.
void matmul_ref(const MatmulParams& p);
/// Fast CPU version: all cores, SIMD chosen at run time.
/// Columns of y are split over hyrax::thread_pool(); the widest build simd_level() allows runs (AVX-512, AVX2, else
/// portable C++). Weights are read where they lie: decode streams them, prefill converts cache-sized panels, never
/// the whole matrix. Results differ between SIMD levels, never between batch sizes or thread counts. Throws
/// hyrax::Error for negative sizes or row strides shorter than the rows.
void matmul(const MatmulParams& p);

}  // namespace hyrax::kernels
