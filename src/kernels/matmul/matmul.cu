// The decode GEMM (kernels/matmul/matmul_cuda.h): y[r, n] = Σ_k x[r, k] w[n, k] for few rows, on mma.sync
// m16n8k16 with the weights as the A operand (16 weight rows) and 8 rows of x as the B operand.
//
// Work split. A block owns 16 weight rows and 8·RG rows of x; its KW warps split K into KW contiguous ranges of
// 64-wide chunks, each warp accumulating its range in registers, chunk after chunk; the KW partial sums are then
// added in shared memory in warp order. KW depends on (N, K) only, RG (and how the loads are staged) on R only, so an
// output element's sum (which chunks, in which order, in which partial) is fixed by (N, K): each column of an mma is
// computed on its own, and a row's result cannot depend on the rows beside it. No split across blocks: no scratch,
// no atomics.
//
// Fragments. Thread (g = lane/4, t = lane%4) owns the 16 consecutive K elements [64c + 16t, 64c + 16t + 16) of
// weight rows g and g + 8 and of x row g, loaded straight into registers (two 16-byte loads each). The chunk is four
// mma k-steps, step j taking the thread's elements 4j … 4j+3 as its k columns {2t, 2t+1, 2t+8, 2t+9}: a fixed
// permutation of k, applied to both operands alike. Weights are read once (no L1 allocation); x, small and read by
// every block, comes through L1.
//
// Measured alternatives (H100, bench-kernels): streaming the weights through a cp.async ring in shared memory ran
// at about half the rate; 64-byte-contiguous fragment offsets and 32 weight rows per warp were no faster.
#include <algorithm>
#include <type_traits>

#include "core/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/matmul/matmul_cuda.h"

namespace hyrax::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kChunk = 64;     // K elements per warp step
constexpr int kMaxWarps = 8;   // K-splitting warps per block
constexpr int kRowGroups = 8;  // the most 8-row groups of x per block (64 rows)

struct DecodeParams {
  const bf16* x;  // [R, K], row stride ldx
  int64_t ldx;
  const bf16* w;  // [N, K], contiguous
  void* y;        // [R, N], row stride ldy
  int64_t ldy;
  int64_t R, N, K;
  bool y_f32;
  int64_t half;  // GLU: y[r, n] = silu(x·w[n]) · (x·w[n + half]) for n < half (N = 2·half), as swiglu computes it
  GemmArgs::Conv conv;  // conv.C > 0: the conv1d of the first conv.C columns (GemmArgs::conv)
  bool let_next_in;     // let the next kernel be scheduled once this one's inputs are ready (launch, below)
};

// The conv1d epilogue (GemmArgs::conv, up to 8 rows, at most kConvW taps): a thread's elements of the block's output
// are known before the main loop, so their state and taps are loaded then, and the epilogue only computes, as conv1d
// does: taps in order from 0 with fmaf, SiLU, then the state shifted.
constexpr int kConvW = kDecodeGemmConvTaps;
constexpr int kConvElems = 4;  // 16 columns × 8 rows over at least 32 threads
static_assert(kDecodeGemmConvRows == 8, "the conv1d epilogue runs in the one-row-group (8-row) kernel");

struct ConvIn {
  float st[kConvW - 1], w[kConvW - 1];  // the state rows and the taps that multiply them
  float wx;                             // the tap of the new input
};

__device__ __forceinline__ ConvIn conv_load(const GemmArgs::Conv& cv, int64_t r, int64_t n) {
  ConvIn in;
  const int S = int(cv.W) - 1;
  const float* st = cv.state + int64_t(cv.slots[r]) * S * cv.C + n;
#pragma unroll
  for (int j = 0; j < kConvW - 1; ++j) in.st[j] = j < S ? st[j * cv.C] : 0.0f;
#pragma unroll
  for (int j = 0; j < kConvW - 1; ++j) in.w[j] = j < S ? cv.w[n * cv.W + j] : 0.0f;
  in.wx = cv.w[n * cv.W + S];
  return in;
}

__device__ __forceinline__ void conv_store(const GemmArgs::Conv& cv, const ConvIn& in, int64_t r, int64_t n, float x) {
  const int S = int(cv.W) - 1;
  float acc = 0.0f;
#pragma unroll
  for (int j = 0; j < kConvW - 1; ++j)
    if (j < S) acc = fmaf(in.w[j], in.st[j], acc);
  acc = fmaf(in.wx, x, acc);
  cv.out[r * cv.ld_out + n] = __float2bfloat16_rn(hyrax::cuda::silu(acc));
  float* st = cv.state + int64_t(cv.slots[r]) * S * cv.C + n;
#pragma unroll
  for (int j = 0; j + 1 < kConvW - 1; ++j)
    if (j + 1 < S) st[j * cv.C] = in.st[j + 1];
  if (S > 0) st[(S - 1) * cv.C] = x;
}

// 8 bf16 at p[0..8) (zeros at or past `left` elements), loaded element by element: for unaligned operands and a K
// that is not a multiple of 8.
__device__ __forceinline__ uint4 load8_scalar(const bf16* p, int64_t left) {
  const unsigned short* q = reinterpret_cast<const unsigned short*>(p);
  uint32_t v[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = 2 * i < left ? q[2 * i] : 0u;
    const uint32_t hi = 2 * i + 1 < left ? q[2 * i + 1] : 0u;
    v[i] = lo | (hi << 16);
  }
  return make_uint4(v[0], v[1], v[2], v[3]);
}

template <bool VEC>
__device__ __forceinline__ uint4 load_x(const bf16* p, int64_t left) {
  if (left <= 0) return make_uint4(0, 0, 0, 0);
  if constexpr (VEC) return __ldg(reinterpret_cast<const uint4*>(p));
  else return load8_scalar(p, left);
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Weights are streamed once: no L1 allocation.
__device__ __forceinline__ uint4 load8_stream(const bf16* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// The same without .nc, for the loads issued before the grid dependency wait: ptxas places read-only (.nc) loads
// after that wait, plain ones where they are written.
__device__ __forceinline__ uint4 load8_stream_early(const bf16* p) {
  uint4 v;
  asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

template <bool VEC, bool EARLY = false>
__device__ __forceinline__ uint4 load_w(const bf16* p, int64_t left) {
  if (left <= 0) return make_uint4(0, 0, 0, 0);
  if constexpr (VEC) return EARLY ? load8_stream_early(p) : load8_stream(p);
  else return load8_scalar(p, left);
}

// d[16×8] += a[16×16] · b[16×8], bf16 operands, float32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One 64-wide chunk: the thread's 16 elements of weight rows g, g+8 (w[row][half]) and of x row g (xv[half]).
__device__ __forceinline__ void mma_chunk(float (&d)[4], const uint4 (&w)[2][2], const uint4 (&xv)[2]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int h = j / 2, i = 2 * (j % 2);  // the thread's elements 4j … 4j+3 are words i, i+1 of half h
    mma_bf16(d, word(w[0][h], i), word(w[1][h], i), word(w[0][h], i + 1), word(w[1][h], i + 1), word(xv[h], i),
             word(xv[h], i + 1));
  }
}

template <int RG, int TN>
constexpr size_t smem_bytes(int kw) {  // the partial sums [KW][TN·RG·4][32] float
  return size_t(kw) * TN * RG * 4 * 32 * sizeof(float);
}

// Grid: (row batches of 8·RG rows, tiles of 16·TN weight rows); block: KW warps. A stage of U chunks of weights is
// loaded into registers before any is used (the bytes in flight); with PREFETCH the next stage is loaded while the
// current one is multiplied. A warp's TN weight tiles share each x fragment it loads (TN times fewer x reads per
// weight byte). RG, TN, U and PREFETCH change how the work is laid out, never a sum: each output element is still
// its warp's chunks in order, then the warps' partials in order.
//
// GLU (TN = 2): a warp's two tiles are gate rows n … n+15 and the up rows n + half …, and the epilogue writes
// silu(gate)·up from the two sums, each rounded to bf16 first: the bits of the GEMM into [gate | up] then swiglu.
//
// PAIR (TN = 1, the activation as GLU's): the gate tile and its up tile in one block, on two sets of warps, each
// set splitting K as the plain GEMM's warps do; the epilogue takes the gate sum from the first set and the up sum
// from the second. The same warps per weight byte as the plain GEMM (GLU's TN = 2 halves them), and its sums.
//
// CONV: the conv1d epilogue (GemmArgs::conv), its inputs loaded before the main loop.
template <int RG, int TN, int U, bool PREFETCH, bool VEC, bool GLU, bool CONV = false, bool PAIR = false>
__global__ void __launch_bounds__((PAIR ? 2 : 1) * kMaxWarps * 32) decode_gemm_kernel(DecodeParams p) {
  static_assert(!CONV || (RG == 1 && TN == 1 && !GLU && !PAIR), "the conv1d epilogue: up to 8 rows, plain");
  static_assert(!GLU || TN == 2, "GLU pairs a gate tile with an up tile");
  static_assert(!PAIR || (TN == 1 && !GLU), "PAIR puts the gate and up tiles on separate warps");
  extern __shared__ float partial[];  // [KW][TN·RG·4][32] each warp's accumulators
  const int KW = int(blockDim.x / 32), warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
  const int g = lane / 4, t = lane % 4;
  // PAIR: warps [0, KT) the gate tile, [KT, 2·KT) the up tile; otherwise all KW warps split K.
  const int KT = PAIR ? KW / 2 : KW, kpart = PAIR ? warp % KT : warp, up_tile = PAIR ? warp / KT : 0;
  const int64_t n0 = int64_t(blockIdx.y) * 16 * (GLU || PAIR ? 1 : TN), r0 = int64_t(blockIdx.x) * 8 * RG;
  const int64_t chunks = (p.K + kChunk - 1) / kChunk;
  const int64_t c_begin = chunks * kpart / KT, c_end = chunks * (kpart + 1) / KT;

  const bf16* wrow[TN][2];  // weight rows g, g + 8 of each of the warp's tiles
  bool wvalid[TN][2];
#pragma unroll
  for (int tn = 0; tn < TN; ++tn)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t n = GLU    ? n0 + g + 8 * h + tn * p.half
                        : PAIR ? n0 + g + 8 * h + up_tile * p.half
                               : n0 + 16 * tn + g + 8 * h;
      wvalid[tn][h] = GLU || PAIR ? n0 + g + 8 * h < p.half : n < p.N;
      wrow[tn][h] = p.w + (wvalid[tn][h] ? n : 0) * p.K;
    }
  const bf16* xrow[RG];  // x row g of each row group
  bool xvalid[RG];
#pragma unroll
  for (int rg = 0; rg < RG; ++rg) {
    const int64_t r = r0 + rg * 8 + g;
    xvalid[rg] = r < p.R;
    xrow[rg] = p.x + (xvalid[rg] ? r : 0) * p.ldx;
  }

  float acc[TN][RG][4];
#pragma unroll
  for (int tn = 0; tn < TN; ++tn)
#pragma unroll
    for (int rg = 0; rg < RG; ++rg)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[tn][rg][i] = 0.0f;

  // Chunks c … c+U-1 of weight rows g, g+8 of each tile: wv[u][tile][row][half] (zeros, without a load, past the
  // warp's range).
  auto load_stage = [&](uint4(&wv)[U][TN][2][2], int64_t c, auto early) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k = (c + u) * kChunk + 16 * t;
      const int64_t left = c + u < c_end ? p.K - k : 0;
#pragma unroll
      for (int tn = 0; tn < TN; ++tn)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          wv[u][tn][h][0] = load_w<VEC, decltype(early)::value>(wrow[tn][h] + k, wvalid[tn][h] ? left : 0);
          wv[u][tn][h][1] = load_w<VEC, decltype(early)::value>(wrow[tn][h] + k + 8, wvalid[tn][h] ? left - 8 : 0);
        }
    }
  };
  auto multiply_stage = [&](const uint4 (&wv)[U][TN][2][2], int64_t c) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c + u >= c_end) break;
      const int64_t k = (c + u) * kChunk + 16 * t;
#pragma unroll
      for (int rg = 0; rg < RG; ++rg) {
        const uint4 xv[2] = {load_x<VEC>(xrow[rg] + k, xvalid[rg] ? p.K - k : 0),
                             load_x<VEC>(xrow[rg] + k + 8, xvalid[rg] ? p.K - k - 8 : 0)};
#pragma unroll
        for (int tn = 0; tn < TN; ++tn) mma_chunk(acc[tn][rg], wv[u][tn], xv);
      }
    }
  };

  // The first stage of weights is on its way before the previous kernel ends (weights are never written):
  // launch.cuh's contract. Whether the next kernel is let in now or as this one's blocks exit: launch, below.
  uint4 wv[U][TN][2][2];
  if constexpr (PREFETCH) load_stage(wv, c_begin, std::true_type{});
  hyrax::cuda::wait_for_previous_grids();
  if (p.let_next_in) hyrax::cuda::let_next_grid_start();
  // The conv1d epilogue's inputs, for the elements this thread will write (the epilogue's loop below).
  ConvIn conv_in[CONV ? kConvElems : 1];
  if constexpr (CONV) {
#pragma unroll
    for (int j = 0; j < kConvElems; ++j) {
      const int idx = int(threadIdx.x) + j * int(blockDim.x), nn = idx % 16, rr = idx / 16;
      if (idx < 16 * 8 && n0 + nn < p.conv.C && r0 + rr < p.R) conv_in[j] = conv_load(p.conv, r0 + rr, n0 + nn);
    }
  }
  for (int64_t c = c_begin; c < c_end; c += U) {
    if constexpr (PREFETCH) {
      uint4 next[U][TN][2][2];
      load_stage(next, c + U, std::false_type{});
      multiply_stage(wv, c);
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int tn = 0; tn < TN; ++tn)
#pragma unroll
          for (int h = 0; h < 2; ++h) wv[u][tn][h][0] = next[u][tn][h][0], wv[u][tn][h][1] = next[u][tn][h][1];
    } else {
      load_stage(wv, c, std::false_type{});
      multiply_stage(wv, c);
    }
  }

  // The warps' partial sums, added in warp order.
  constexpr int E = TN * RG * 4;
#pragma unroll
  for (int tn = 0; tn < TN; ++tn)
#pragma unroll
    for (int rg = 0; rg < RG; ++rg)
#pragma unroll
      for (int i = 0; i < 4; ++i) partial[(warp * E + (tn * RG + rg) * 4 + i) * 32 + lane] = acc[tn][rg][i];
  __syncthreads();
  // Element (row rr, column nn) of the block's [8·RG, 16·TN] output sits in accumulator (tn, rg, i) of lane (gg, tt).
  // (PAIR: the partials of warps [w0, w0 + KT).)
  auto sum_at = [&](int nn, int rr, int w0 = 0) {
    const int tn = nn / 16, nt = nn % 16;
    const int gg = nt % 8, rg = rr / 8, tt = (rr % 8) / 2, i = 2 * (nt / 8) + rr % 2;
    const int at = ((tn * RG + rg) * 4 + i) * 32 + gg * 4 + tt;
    float s = partial[w0 * E * 32 + at];
    for (int w = 1; w < KT; ++w) s += partial[(w0 + w) * E * 32 + at];
    return s;
  };
  if constexpr (GLU || PAIR) {
    for (int idx = int(threadIdx.x); idx < 16 * 8 * RG; idx += int(blockDim.x)) {
      const int nn = idx % 16, rr = idx / 16;
      const int64_t n = n0 + nn, r = r0 + rr;
      if (n >= p.half || r >= p.R) continue;
      const float gate = __bfloat162float(__float2bfloat16_rn(sum_at(nn, rr)));
      const float up = __bfloat162float(__float2bfloat16_rn(PAIR ? sum_at(nn, rr, KT) : sum_at(16 + nn, rr)));
      static_cast<bf16*>(p.y)[r * p.ldy + n] = __float2bfloat16_rn(hyrax::cuda::silu(gate) * up);
    }
  } else {
    auto emit = [&](int idx, const ConvIn& cin) {
      const int nn = idx % (16 * TN), rr = idx / (16 * TN);
      const float s = sum_at(nn, rr);
      const int64_t n = n0 + nn, r = r0 + rr;
      if (n >= p.N || r >= p.R) return;
      if (p.y_f32) {
        static_cast<float*>(p.y)[r * p.ldy + n] = s;
      } else {
        const bf16 yv = __float2bfloat16_rn(s);
        static_cast<bf16*>(p.y)[r * p.ldy + n] = yv;
        if constexpr (CONV)
          if (n < p.conv.C) conv_store(p.conv, cin, r, n, __bfloat162float(yv));
      }
    };
    if constexpr (CONV) {
#pragma unroll
      for (int j = 0; j < kConvElems; ++j)
        if (int(threadIdx.x) + j * int(blockDim.x) < E * 32) emit(int(threadIdx.x) + j * int(blockDim.x), conv_in[j]);
    } else {
      for (int idx = int(threadIdx.x); idx < E * 32; idx += int(blockDim.x)) emit(idx, conv_in[0]);
    }
  }
}

template <int RG, int TN, int U, bool PREFETCH, bool VEC, bool GLU, bool CONV = false, bool PAIR = false>
void launch(const DecodeParams& p, int kw, cudaStream_t stream) {
  const int64_t row_batches = (p.R + 8 * RG - 1) / (8 * RG);
  const int64_t tiles = GLU || PAIR ? (p.half + 15) / 16 : (p.N + 16 * TN - 1) / (16 * TN);
  const int warps = (PAIR ? 2 : 1) * kw;
  HYRAX_CHECK(tiles <= 65535 && row_batches <= 2147483647, "decode gemm: N=", p.N, " R=", p.R, " is too large");
  const dim3 grid{unsigned(row_batches), unsigned(tiles)};
  auto* kernel = decode_gemm_kernel<RG, TN, U, PREFETCH, VEC, GLU, CONV, PAIR>;
  static const int sms = [&] {  // once per instance, at its first (uncaptured) use
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(smem_bytes<RG, TN>((PAIR ? 2 : 1) * kMaxWarps))));
    int dev = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  static int per_sm[4] = {-1, -1, -1, -1};  // resident blocks per SM, by kw = 1, 2, 4, 8
  int& resident = per_sm[kw == 1 ? 0 : kw == 2 ? 1 : kw == 4 ? 2 : 3];
  if (resident < 0)
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, warps * 32, smem_bytes<RG, TN>(warps)));
  // Overlapped with the kernel before it up to 16 rows only: on an H100 (2026-11-27) it took the 7B batch-1 step
  // from 6.13 to 5.91 ms, while at 32 rows the step went from 9.36 to 9.71 ms (9.42 with the GEMMs alone launched
  // in order). The next kernel is let in as soon as this one's inputs are ready when every block of this grid is
  // resident at once: it then takes only the room this grid leaves, and its blocks are in place, their first loads
  // made (a norm's weights, the GDN state, the next GEMM's first weights), when this one ends. A grid of more
  // blocks lets it in as its blocks exit: letting it in earlier took SMs from this grid's later blocks (an H100 at
  // 32 rows, gate+up back to back: 100 µs letting it in at the start, 75.5 µs not).
  const bool overlap = RG <= 2;
  DecodeParams q = p;
  q.let_next_in = overlap && int64_t(grid.x) * grid.y <= int64_t(resident) * sms;
  hyrax::cuda::launch("decode_gemm", kernel, grid, dim3(unsigned(warps * 32)), smem_bytes<RG, TN>(warps), stream,
                      overlap ? hyrax::cuda::Overlap::allowed : hyrax::cuda::Overlap::none, q);
}

template <int RG, int TN, int U, bool PREFETCH, bool GLU = false, bool CONV = false, bool PAIR = false>
void launch_vec(const DecodeParams& p, int kw, cudaStream_t stream) {
  const bool vec = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && reinterpret_cast<uintptr_t>(p.w) % 16 == 0 &&
                   p.K % 8 == 0 && p.ldx % 8 == 0;
  if (vec) launch<RG, TN, U, PREFETCH, true, GLU, CONV, PAIR>(p, kw, stream);
  else launch<RG, TN, U, PREFETCH, false, GLU, CONV, PAIR>(p, kw, stream);
}

// How the weights are staged, by row groups: 2 chunks a stage with the next stage prefetched up to 32 rows, without
// the prefetch at 64 (it costs more registers than it hides). At 1-16 rows the H100 measured 4 chunks without the
// prefetch best; on the H200 (more bandwidth, so more bytes in flight wanted) the prefetch wins on every Olmo 7B
// shape (bench-kernels --only gemm, 2026-11-27 17:56 UTC, R = 1: lm_head 221.9 -> 187.2 µs = 82 -> 98% of copy
// bandwidth, gate+up 60.5 -> 46.3 µs, q+k+v 30.7 -> 27.1 µs; the 7B batch-1 step 5.66 -> 4.78 ms); the H100 is to
// be measured again. From 17 rows, `layout` 1 and 2 give each warp two weight tiles sharing its x reads (2: with the
// prefetch at 32 rows). Staging and layout change no sum: every choice gives the same bits. The fused activation
// (glu_half) runs as PAIR up to 8 rows (as many warps as the plain GEMM), from 9 rows as GLU.
template <int RG>
void launch(const DecodeParams& p, int kw, int layout, cudaStream_t stream) {
  constexpr int U = 2;
  if constexpr (RG == 1) {
    if (p.conv.C > 0) return launch_vec<1, 1, U, true, false, true>(p, kw, stream);
    if (p.half > 0) return launch_vec<1, 1, U, true, false, false, true>(p, kw, stream);  // PAIR
  }
  if (p.half > 0) return launch_vec<RG, 2, U, RG <= 4, true>(p, kw, stream);
  if constexpr (RG < 4) {
    launch_vec<RG, 1, U, true>(p, kw, stream);
  } else {
    if (layout == 1) launch_vec<RG, 2, U, false>(p, kw, stream);
    else if (layout == 2) launch_vec<RG, 2, U, RG == 4>(p, kw, stream);
    else launch_vec<RG, 1, U, RG == 4>(p, kw, stream);
  }
}

}  // namespace

int decode_gemm_k_warps(int64_t N, int64_t K) {
  // As many warps as fit one wave of 16 warps on each of 132 SMs (an H100's; a constant, so that the sums do not
  // depend on the device), at most 8 and at least 4 chunks each: every warp then streams an equal share at once.
  const int64_t tiles = (N + 15) / 16, chunks = (K + kChunk - 1) / kChunk;
  int kw = 1;
  while (kw < kMaxWarps && tiles * 2 * kw <= 132 * 16 && chunks >= 4 * 2 * kw) kw *= 2;
  return kw;
}

void decode_gemm(const GemmArgs& a, cudaStream_t stream) { decode_gemm(a, stream, decode_gemm_k_warps(a.N, a.K)); }

void decode_gemm(const GemmArgs& a, cudaStream_t stream, int k_warps, int layout) {
  HYRAX_CHECK(a.R >= 0 && a.N > 0 && a.K > 0, "decode gemm R=", a.R, " N=", a.N, " K=", a.K);
  HYRAX_CHECK(a.x && a.w && a.y, "decode gemm: null pointer");
  HYRAX_CHECK(a.glu_half == 0 || (a.N == 2 * a.glu_half && !a.y_f32), "decode gemm: GLU half ", a.glu_half,
              " of N=", a.N, a.y_f32 ? " (float32 output)" : "");
  HYRAX_CHECK(a.ldx >= a.K && a.ldy >= (a.glu_half > 0 ? a.glu_half : a.N), "decode gemm: row strides ldx=", a.ldx,
              " ldy=", a.ldy, " for K=", a.K, " N=", a.N);
  HYRAX_CHECK(a.conv.C == 0 || (a.R <= kDecodeGemmConvRows && a.conv.C <= a.N && a.conv.W >= 1 && a.conv.W <= kConvW &&
                                a.conv.w && a.conv.state && a.conv.slots && a.conv.out && a.conv.ld_out >= a.conv.C &&
                                !a.y_f32 && a.glu_half == 0),
              "decode gemm: conv1d of ", a.conv.C, " columns (W=", a.conv.W, ") of N=", a.N,
              a.y_f32 ? " (float32 output)" : "");
  HYRAX_CHECK(k_warps == 1 || k_warps == 2 || k_warps == 4 || k_warps == 8, "decode gemm: k_warps ", k_warps);
  HYRAX_CHECK(layout >= -1 && layout < kDecodeGemmLayouts, "decode gemm: layout ", layout);
  // The layout by shape (it changes no bit). Measured on an H100 (bench-kernels --only gemm, 2026-11-27): at 17-32
  // rows two tiles a warp with the prefetch (2) win from N = 3840 up (gate+up 22016×3840: 80.4 -> 73.5 µs, lm_head
  // 359 -> 349 µs, gdn o 24.3 -> 23.4 µs) and lose a little below (q,k 2880×3840: 16.2 against 17.0 µs); at 33-64
  // rows two tiles a warp (1) win on every stacked shape (mlp down 81.6 -> 60.2 µs, attention 32.1 -> 23.5 µs).
  if (layout < 0) layout = a.R <= 16 ? 0 : a.R <= 32 ? (a.N >= 3840 ? 2 : 0) : 1;
  if (a.R == 0) return;
  const DecodeParams p{a.x, a.ldx, a.w, a.y, a.ldy, a.R, a.N, a.K, a.y_f32, a.glu_half, a.conv, false};
  // Row groups (8 rows of x) per block, by R only.
  if (a.R <= 8) launch<1>(p, k_warps, layout, stream);
  else if (a.R <= 16) launch<2>(p, k_warps, layout, stream);
  else if (a.R <= 32) launch<4>(p, k_warps, layout, stream);
  else launch<kRowGroups>(p, k_warps, layout, stream);
}

}  // namespace hyrax::kernels::cuda
