// Sampling on the GPU: the semantics of kernels::sample_ref (sampling.h), one block per row, no scratch memory
// beyond shared memory, no host synchronization (capturable). How it avoids sorting the vocabulary: sampling.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/sampling/sampling.h"

namespace hyrax::kernels::cuda {

/// Largest vocabulary the kernel takes (its fixed-point mass sums hold V · 2^45).
constexpr int64_t kSampleMaxVocab = int64_t(1) << 19;

/// p's pointers are device pointers (logits, rows, tokens and logprobs); logprobs may be null. A row's result
/// depends only on that row and its parameters.
void sample(const SampleParams& p, cudaStream_t stream);

/// The host side of one sampling call: pinned staging for the rows' parameters and the results, device copies.
class SampleRunner {
 public:
  SampleRunner() = default;
  ~SampleRunner();
  SampleRunner(const SampleRunner&) = delete;
  SampleRunner& operator=(const SampleRunner&) = delete;

  /// Uploads `rows` (host, [R]), samples the R rows of `logits` (device, row stride ld) on `stream`, waits, and
  /// writes tokens [R] and logprobs [R] (host; logprobs may be null).
  void run(const float* logits, int64_t ld, int64_t R, int64_t V, const SampleRow* rows, int32_t* tokens,
           float* logprobs, cudaStream_t stream);

 private:
  void reserve(int64_t R);
  void* host_ = nullptr;  // pinned: rows [cap] | tokens [cap] | logprobs [cap]
  void* dev_ = nullptr;   // the same layout on the device
  int64_t cap_ = 0;
};

}  // namespace hyrax::kernels::cuda
