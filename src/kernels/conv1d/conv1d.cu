// conv1d on the GPU: one thread per (token, channel) for the outputs (taps summed in order j = 0 .. W-1), then one
// thread per (sequence, channel) shifts the last W-1 inputs into the state. Two launches, so that every output
// reads the state as it was before the step.
#include <algorithm>

#include "core/check.h"
#include "kernels/conv1d/conv1d_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"

namespace hyrax::kernels::cuda {
namespace {

using hyrax::cuda::silu;
using hyrax::cuda::to_bf;
using hyrax::cuda::to_f;

__global__ void conv1d_out_kernel(Conv1dParams p) {
  const int64_t n = p.T * p.C, S = p.W - 1;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / p.C, c = e % p.C;
    const int s = p.tok_seq[t];
    const int64_t t0 = p.cu_seqlens[s], i = t - t0;
    const float* st = p.state + int64_t(p.state_slots[s]) * S * p.C;
    float acc = 0.0f;
    for (int64_t j = 0; j < p.W; ++j) {
      const int64_t q = i - S + j;  // input index within the sequence; negative: from the state
      const float xv = q >= 0 ? to_f(p.x[(t0 + q) * p.ldx + c]) : st[(S + q) * p.C + c];
      acc = fmaf(p.w[c * p.W + j], xv, acc);
    }
    p.y[t * p.ldy + c] = to_bf(p.silu ? silu(acc) : acc);
  }
}

__global__ void conv1d_state_kernel(Conv1dParams p) {
  const int64_t n = p.n_seqs * p.C, S = p.W - 1;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = e / p.C, c = e % p.C;
    const int64_t t0 = p.cu_seqlens[s], L = p.cu_seqlens[s + 1] - t0;
    if (L == 0) continue;
    float* st = p.state + int64_t(p.state_slots[s]) * S * p.C;
    // New row r is input L + r of [state; x]; rows are rewritten in increasing order and each reads a later one.
    for (int64_t r = 0; r < S; ++r) {
      const int64_t src = L + r;
      st[r * p.C + c] = src < S ? st[src * p.C + c] : to_f(p.x[(t0 + src - S) * p.ldx + c]);
    }
  }
}

unsigned blocks_for(int64_t n, int threads) { return unsigned(std::min<int64_t>((n + threads - 1) / threads, 132 * 32)); }

}  // namespace

void conv1d(const Conv1dParams& p, cudaStream_t stream) {
  HYRAX_CHECK(p.n_seqs >= 0 && p.T >= 0 && p.C > 0 && p.W >= 1, "n_seqs=", p.n_seqs, " T=", p.T, " C=", p.C,
              " W=", p.W);
  if (p.n_seqs == 0 || p.T == 0) return;
  HYRAX_CHECK(p.cu_seqlens && p.state_slots && p.tok_seq && p.x && p.y && p.w, "null pointer");
  HYRAX_CHECK(p.W == 1 || p.state, "null state with W=", p.W);
  HYRAX_CHECK(p.ldx >= p.C && p.ldy >= p.C, "row strides ldx=", p.ldx, " ldy=", p.ldy, " below C=", p.C);
  HYRAX_CHECK(static_cast<const void*>(p.x) != static_cast<const void*>(p.y), "y must not alias x");
  const int threads = 256;
  conv1d_out_kernel<<<blocks_for(p.T * p.C, threads), threads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("conv1d (outputs)");
  if (p.W > 1) {
    conv1d_state_kernel<<<blocks_for(p.n_seqs * p.C, threads), threads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv1d (state)");
  }
}

}  // namespace hyrax::kernels::cuda
