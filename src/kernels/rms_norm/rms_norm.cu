// RMS norms on the GPU. One block per row (rms_norm and its fusions with the residual add) or one warp per head
// (gated_rms_norm); sums of squares in float32 in a fixed order (per-thread strided partials, then warp butterflies,
// then warps in order).
#include <algorithm>

#include "core/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/rms_norm/rms_norm_cuda.h"

namespace hyrax::kernels::cuda {
namespace {

using hyrax::cuda::bf16;
using hyrax::cuda::block_sum;
using hyrax::cuda::silu;
using hyrax::cuda::to_bf;
using hyrax::cuda::to_f;
using hyrax::cuda::warp_sum;

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// MODE: what the row's norm is fused with (the residual steps of pre- and post-norm blocks).
enum Mode { kPlain, kAddThenNorm, kNormThenAdd };

// A thread's norm weights for its first kNormPreGroups 8-column groups (VEC), loaded before the grid dependency
// wait (weights are never written: launch.cuh), so that the norm's second pass does not wait on them: with the GEMM
// before it letting it in early, a decode step's norm loads them while that GEMM runs.
constexpr int kNormPreGroups = 2;  // all of a row of up to 4096 at 256 threads
struct NormWeights {
  float w[kNormPreGroups][8];
};

template <bool VEC>
__device__ __forceinline__ NormWeights load_norm_weights(const RmsNormParams& p) {
  NormWeights nw = {};
  if constexpr (VEC) {
#pragma unroll
    for (int i = 0; i < kNormPreGroups; ++i) {
      const int64_t c = (threadIdx.x + int64_t(i) * blockDim.x) * 8;
      if (c < p.C)
#pragma unroll
        for (int j = 0; j < 8; ++j) nw.w[i][j] = p.w[c + j];
    }
  }
  return nw;
}

// VEC: 8 bf16 (16 bytes) per access; needs C, ldx, ldy (ldr) multiples of 8 and 16-byte aligned rows.
// kPlain: y = rms(x)·w. kAddThenNorm: res = bf16(res + x), y = rms(res)·w. kNormThenAdd: res = bf16(res + bf16(rms(x)·w)).
// Each rounds where the unfused ops (add, rms_norm) round, so the fused forms give the same bits.
template <bool VEC, int MODE>
__device__ __forceinline__ void rms_norm_row(const RmsNormParams& p, int64_t row, const NormWeights& nw) {
  __shared__ float red[32];
  const bf16* x = p.x + row * p.ldx;
  bf16* y = p.y + row * p.ldy;
  bf16* res = MODE == kPlain ? nullptr : p.res + row * p.ldr;
  // The row to normalize: x itself, or the residual sum written back as it is formed (each thread later reads back
  // only the elements it wrote).
  const bf16* src = MODE == kAddThenNorm ? res : x;
  float ss = 0.0f;
  if constexpr (VEC) {
    for (int64_t c = threadIdx.x * 8; c < p.C; c += blockDim.x * 8) {
      uint4 raw = *reinterpret_cast<const uint4*>(x + c);
      if constexpr (MODE == kAddThenNorm) {
        const uint4 rr = *reinterpret_cast<const uint4*>(res + c);
        const bf16* a = reinterpret_cast<const bf16*>(&rr);
        bf16* v = reinterpret_cast<bf16*>(&raw);
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] = to_bf(to_f(a[i]) + to_f(v[i]));
        *reinterpret_cast<uint4*>(res + c) = raw;
      }
      const bf16* v = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) ss += to_f(v[i]) * to_f(v[i]);
    }
  } else {
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) {
      float v = to_f(x[c]);
      if constexpr (MODE == kAddThenNorm) {
        const bf16 sum = to_bf(to_f(res[c]) + v);
        res[c] = sum;
        v = to_f(sum);
      }
      ss += v * v;
    }
  }
  ss = block_sum(ss, red);
  const float r = 1.0f / sqrtf(ss / float(p.C) + p.eps);
  if constexpr (VEC) {
    auto emit = [&](int64_t c, const float(&w)[8]) {
      const uint4 raw = *reinterpret_cast<const uint4*>(src + c);
      const bf16* v = reinterpret_cast<const bf16*>(&raw);
      uint4 out;
      bf16* o = reinterpret_cast<bf16*>(&out);
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = to_bf(w[i] * (to_f(v[i]) * r));
      if constexpr (MODE == kNormThenAdd) {
        const uint4 rr = *reinterpret_cast<const uint4*>(res + c);
        const bf16* a = reinterpret_cast<const bf16*>(&rr);
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] = to_bf(to_f(a[i]) + to_f(o[i]));
        *reinterpret_cast<uint4*>(res + c) = out;
      } else {
        *reinterpret_cast<uint4*>(y + c) = out;
      }
    };
#pragma unroll
    for (int i = 0; i < kNormPreGroups; ++i) {
      const int64_t c = (threadIdx.x + int64_t(i) * blockDim.x) * 8;
      if (c < p.C) emit(c, nw.w[i]);
    }
    for (int64_t c = (threadIdx.x + int64_t(kNormPreGroups) * blockDim.x) * 8; c < p.C; c += blockDim.x * 8) {
      float w[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) w[i] = p.w[c + i];
      emit(c, w);
    }
  } else {
    for (int64_t c = threadIdx.x; c < p.C; c += blockDim.x) {
      const bf16 o = to_bf(p.w[c] * (to_f(src[c]) * r));
      if constexpr (MODE == kNormThenAdd) res[c] = to_bf(to_f(res[c]) + to_f(o));
      else y[c] = o;
    }
  }
}

template <bool VEC, int MODE>
__global__ void rms_norm_kernel(RmsNormParams p) {
  const NormWeights nw = load_norm_weights<VEC>(p);
  hyrax::cuda::begin_after_previous_grids();
  rms_norm_row<VEC, MODE>(p, blockIdx.x, nw);
}

// Two plain norms in one launch (blockIdx.y picks which), each row as rms_norm_kernel computes it.
template <bool VEC>
__global__ void rms_norm_pair_kernel(RmsNormParams a, RmsNormParams b) {
  const NormWeights nw = blockIdx.y == 0 ? load_norm_weights<VEC>(a) : load_norm_weights<VEC>(b);
  hyrax::cuda::begin_after_previous_grids();
  if (blockIdx.y == 0) rms_norm_row<VEC, kPlain>(a, blockIdx.x, nw);
  else rms_norm_row<VEC, kPlain>(b, blockIdx.x, nw);
}

template <int MODE>
bool vec_ok(const RmsNormParams& p) {
  return p.C % 8 == 0 && p.ldx % 8 == 0 && aligned16(p.x) &&
         (MODE == kNormThenAdd || (p.ldy % 8 == 0 && aligned16(p.y))) &&
         (MODE == kPlain || (p.ldr % 8 == 0 && aligned16(p.res)));
}

// Threads per row: one 16-byte group (or one element) each, in whole warps, at most 256.
int row_threads(const RmsNormParams& p, bool vec) {
  const int64_t per_thread = vec ? 8 : 1;
  return int(std::min<int64_t>(256, std::max<int64_t>(32, (p.C / per_thread + 31) / 32 * 32)));
}

template <int MODE>
void check_norm(const RmsNormParams& p, const char* what) {
  HYRAX_CHECK(p.T >= 0 && p.C > 0, what, ": T=", p.T, " C=", p.C);
  HYRAX_CHECK(p.T == 0 || (p.x && p.w && (MODE == kNormThenAdd || p.y) && (MODE == kPlain || p.res)), what,
              ": null pointer");
  HYRAX_CHECK(p.ldx >= p.C && (MODE == kNormThenAdd || p.ldy >= p.C) && (MODE == kPlain || p.ldr >= p.C), what,
              ": row strides ldx=", p.ldx, " ldy=", p.ldy, " ldr=", p.ldr, " below C=", p.C);
  HYRAX_CHECK(p.T <= INT32_MAX, what, ": T=", p.T);
}

template <int MODE>
void launch_rms_norm(const RmsNormParams& p, cudaStream_t stream, const char* what) {
  check_norm<MODE>(p, what);
  if (p.T == 0) return;
  const bool vec = vec_ok<MODE>(p);
  hyrax::cuda::launch(what, vec ? rms_norm_kernel<true, MODE> : rms_norm_kernel<false, MODE>, dim3(unsigned(p.T)),
                      dim3(row_threads(p, vec)), 0, stream, p);
}

// One warp per (token, head); lane l takes values l, l + 32, …, the first 256 of them (x and gate) all loaded before
// any is used.
__global__ void gated_rms_norm_kernel(GatedRmsNormParams p) {
  constexpr int J = 8;
  const int lane = threadIdx.x & 31;
  const int64_t D = p.D;
  float wv[J];  // the lane's weights, before the grid dependency wait (weights are never written)
#pragma unroll
  for (int j = 0; j < J; ++j) wv[j] = lane + 32 * j < D ? p.w[lane + 32 * j] : 0.0f;
  hyrax::cuda::begin_after_previous_grids();
  const int64_t item = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (item >= p.T * p.H) return;
  const int64_t t = item / p.H, h = item % p.H;
  const bf16* x = p.x + t * p.ldx + h * D;
  const bf16* g = p.gate + t * p.ldg + h * D;
  bf16* y = p.y + t * p.ldy + h * D;
  float xv[J], gv[J];
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int64_t d = lane + 32 * j;
    xv[j] = d < D ? to_f(x[d]) : 0.0f;
    gv[j] = d < D ? to_f(g[d]) : 0.0f;
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < J; ++j)
    if (lane + 32 * j < D) ss = fmaf(xv[j], xv[j], ss);
  for (int64_t d = lane + 32 * J; d < D; d += 32) ss = fmaf(to_f(x[d]), to_f(x[d]), ss);
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / float(D) + p.eps);
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int64_t d = lane + 32 * j;
    if (d < D) y[d] = to_bf(xv[j] * r * wv[j] * silu(gv[j]));
  }
  for (int64_t d = lane + 32 * J; d < D; d += 32) y[d] = to_bf(to_f(x[d]) * r * p.w[d] * silu(to_f(g[d])));
}

}  // namespace

void rms_norm(const RmsNormParams& p, cudaStream_t stream) { launch_rms_norm<kPlain>(p, stream, "rms_norm"); }
void rms_norm_pair(const RmsNormParams& a, const RmsNormParams& b, cudaStream_t stream) {
  check_norm<kPlain>(a, "rms_norm_pair (first)");
  check_norm<kPlain>(b, "rms_norm_pair (second)");
  const bool vec = vec_ok<kPlain>(a);
  if (a.T != b.T || vec != vec_ok<kPlain>(b) || row_threads(a, vec) != row_threads(b, vec)) {
    rms_norm(a, stream);  // rows of another length or alignment: two launches
    return rms_norm(b, stream);
  }
  if (a.T == 0) return;
  hyrax::cuda::launch("rms_norm_pair", vec ? rms_norm_pair_kernel<true> : rms_norm_pair_kernel<false>,
                      dim3(unsigned(a.T), 2), dim3(row_threads(a, vec)), 0, stream, a, b);
}
void add_rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  launch_rms_norm<kAddThenNorm>(p, stream, "add_rms_norm");
}
void rms_norm_add(const RmsNormParams& p, cudaStream_t stream) {
  launch_rms_norm<kNormThenAdd>(p, stream, "rms_norm_add");
}

void gated_rms_norm(const GatedRmsNormParams& p, cudaStream_t stream) {
  HYRAX_CHECK(p.T >= 0 && p.H > 0 && p.D > 0, "T=", p.T, " H=", p.H, " D=", p.D);
  if (p.T == 0) return;
  HYRAX_CHECK(p.x && p.gate && p.w && p.y, "null pointer");
  const int64_t row = p.H * p.D;
  HYRAX_CHECK(p.ldx >= row && p.ldg >= row && p.ldy >= row, "row strides below H*D=", row);
  const int64_t items = p.T * p.H;
  const int warps = 8;
  hyrax::cuda::launch("gated_rms_norm", gated_rms_norm_kernel, dim3(unsigned((items + warps - 1) / warps)),
                      dim3(warps * 32), 0, stream, p);
}

}  // namespace hyrax::kernels::cuda
