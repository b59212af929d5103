// conv1d on the GPU: the outputs first (taps summed in order j = 0 .. W-1 from 0 with fmaf), then one thread per
// (sequence, channel) shifts the last W-1 inputs into the state. Two launches, so that every output reads the state
// as it was before the step; one where every sequence has one token (decode).
//
// Outputs: where W = 4 and rows are 16-byte aligned, a thread owns 8 channels of a run of 16 tokens, loads each input
// once (16-byte loads) and slides its window over the run, rebuilding it from the state or the inputs where a new
// sequence starts; otherwise one thread per (token, channel). Both sum the same products in the same order: the
// same bits.
#include <algorithm>

#include "core/check.h"
#include "kernels/conv1d/conv1d_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"

namespace hyrax::kernels::cuda {
namespace {

using hyrax::cuda::silu;
using hyrax::cuda::to_bf;
using hyrax::cuda::to_f;

__global__ void conv1d_out_kernel(Conv1dParams p) {
  hyrax::cuda::begin_after_previous_grids();
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

constexpr int kRun = 16;  // tokens per thread in the vectorized kernel

template <int W>
__global__ void conv1d_out_vec_kernel(Conv1dParams p) {
  hyrax::cuda::begin_after_previous_grids();
  static_assert(W >= 2, "a window of at least two taps");
  constexpr int S = W - 1;
  const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (c0 >= p.C) return;
  const int64_t tb = int64_t(blockIdx.y) * kRun, te = tb + kRun < p.T ? tb + kRun : p.T;
  float w[8][W];
#pragma unroll
  for (int k = 0; k < 8; ++k)
#pragma unroll
    for (int j = 0; j < W; ++j) w[k][j] = p.w[(c0 + k) * W + j];
  auto load_x = [&](int64_t t, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p.x + t * p.ldx + c0);
    const __nv_bfloat16* b = reinterpret_cast<const __nv_bfloat16*>(&v);
#pragma unroll
    for (int k = 0; k < 8; ++k) out[k] = to_f(b[k]);
  };
  float win[S][8];  // win[j]: the input at i - S + j for the current token i
  int cur = -1;
  for (int64_t t = tb; t < te; ++t) {
    const int s = p.tok_seq[t];
    const int64_t t0 = p.cu_seqlens[s], i = t - t0;
    if (s != cur) {  // first token of the run, or a new sequence: the window from the inputs or the state
      cur = s;
      const float* st = p.state + int64_t(p.state_slots[s]) * S * p.C;
#pragma unroll
      for (int j = 0; j < S; ++j) {
        const int64_t q = i - S + j;
        if (q >= 0) {
          load_x(t0 + q, win[j]);
        } else {
          const float4 a = *reinterpret_cast<const float4*>(st + (S + q) * p.C + c0);
          const float4 b = *reinterpret_cast<const float4*>(st + (S + q) * p.C + c0 + 4);
          win[j][0] = a.x, win[j][1] = a.y, win[j][2] = a.z, win[j][3] = a.w;
          win[j][4] = b.x, win[j][5] = b.y, win[j][6] = b.z, win[j][7] = b.w;
        }
      }
    }
    float xt[8];
    load_x(t, xt);
    uint4 out;
    __nv_bfloat16* ob = reinterpret_cast<__nv_bfloat16*>(&out);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float acc = 0.0f;
#pragma unroll
      for (int j = 0; j < S; ++j) acc = fmaf(w[k][j], win[j][k], acc);
      acc = fmaf(w[k][S], xt[k], acc);
      ob[k] = to_bf(p.silu ? silu(acc) : acc);
    }
    *reinterpret_cast<uint4*>(p.y + t * p.ldy + c0) = out;
#pragma unroll
    for (int j = 0; j + 1 < S; ++j)
#pragma unroll
      for (int k = 0; k < 8; ++k) win[j][k] = win[j + 1][k];
#pragma unroll
    for (int k = 0; k < 8; ++k) win[S - 1][k] = xt[k];
  }
}

__global__ void conv1d_state_kernel(Conv1dParams p) {
  hyrax::cuda::begin_after_previous_grids();
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

// One token per sequence (decode): the output and the state in one launch, a thread per (sequence, channel) reading
// its state rows before it shifts them. The same products in the same order as the kernels above: the same bits.
__global__ void conv1d_decode_kernel(Conv1dParams p) {
  hyrax::cuda::begin_after_previous_grids();
  const int64_t n = p.n_seqs * p.C, S = p.W - 1;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = e / p.C, c = e % p.C, t = p.cu_seqlens[s];
    float* st = p.state + int64_t(p.state_slots[s]) * S * p.C;
    float acc = 0.0f;
    for (int64_t j = 0; j < S; ++j) acc = fmaf(p.w[c * p.W + j], st[j * p.C + c], acc);
    const float xv = to_f(p.x[t * p.ldx + c]);
    acc = fmaf(p.w[c * p.W + S], xv, acc);
    p.y[t * p.ldy + c] = to_bf(p.silu ? silu(acc) : acc);
    for (int64_t r = 0; r + 1 < S; ++r) st[r * p.C + c] = st[(r + 1) * p.C + c];
    if (S > 0) st[(S - 1) * p.C + c] = xv;
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
  if (p.one_token_each) {
    HYRAX_CHECK(p.T == p.n_seqs, "conv1d: one token each, but T=", p.T, " for ", p.n_seqs, " sequences");
    hyrax::cuda::launch("conv1d (decode)", conv1d_decode_kernel, dim3(blocks_for(p.n_seqs * p.C, threads)),
                        dim3(threads), 0, stream, p);
    return;
  }
  auto aligned = [](const void* ptr, int64_t ld) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ld % 8 == 0; };
  if (p.W == 4 && p.C % 8 == 0 && aligned(p.x, p.ldx) && aligned(p.y, p.ldy) && aligned(p.state, 8) &&
      (p.T + kRun - 1) / kRun <= 65535) {
    const int vt = 128;
    const dim3 grid(unsigned((p.C / 8 + vt - 1) / vt), unsigned((p.T + kRun - 1) / kRun));
    hyrax::cuda::launch("conv1d (outputs)", conv1d_out_vec_kernel<4>, grid, dim3(vt), 0, stream, p);
  } else {
    hyrax::cuda::launch("conv1d (outputs)", conv1d_out_kernel, dim3(blocks_for(p.T * p.C, threads)), dim3(threads), 0,
                        stream, p);
  }
  if (p.W > 1)
    hyrax::cuda::launch("conv1d (state)", conv1d_state_kernel, dim3(blocks_for(p.n_seqs * p.C, threads)), dim3(threads),
                        0, stream, p);
}

}  // namespace hyrax::kernels::cuda
