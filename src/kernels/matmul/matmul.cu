// The decode GEMM (kernels/matmul/matmul_cuda.h): y[r, n] = Σ_k x[r, k] w[n, k] for few rows, on mma.sync
// m16n8k16 with the weights as the A operand (16 weight rows) and 8 rows of x as the B operand.
//
// Work split. A block owns 16·MT weight rows and 8·RG rows of x; its KW warps split K into KW contiguous ranges of
// 64-wide chunks, each warp accumulating its range in registers, chunk after chunk; the KW partial sums are then
// added in shared memory in warp order. KW depends on (N, K) only, MT and RG on R only, so an output element's sum
// (which chunks, in which order, in which partial) is fixed by (N, K): each column of an mma is computed on its own,
// and a row's result cannot depend on the rows beside it. No split across blocks: no scratch, no atomics.
//
// Fragments. Thread (g = lane/4, t = lane%4) owns the 16 consecutive K elements [64c + 16t, 64c + 16t + 16) of
// weight rows g and g + 8 and of x row g. The chunk is four mma k-steps, step j taking the thread's elements
// 4j … 4j+3 as its k columns {2t, 2t+1, 2t+8, 2t+9}: a fixed permutation of k, applied to both operands alike.
// Weights stream through a 4-chunk ring in shared memory (cp.async, each thread its own slots); x, small and read
// by every block, comes through L1.
#include <algorithm>

#include "core/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/matmul/matmul_cuda.h"

namespace hyrax::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kChunk = 64;     // K elements per warp step
constexpr int kMaxWarps = 8;   // K-splitting warps per block
constexpr int kRowGroups = 8;  // the most 8-row groups of x per block (64 rows)
constexpr int kDefaultVariant = 2;

struct DecodeParams {
  const bf16* x;  // [R, K], row stride ldx
  int64_t ldx;
  const bf16* w;  // [N, K], contiguous
  void* y;        // [R, N], row stride ldy
  int64_t ldy;
  int64_t R, N, K;
  bool y_f32;
};

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

template <bool VEC>
__device__ __forceinline__ uint4 load_w(const bf16* p, int64_t left) {
  if (left <= 0) return make_uint4(0, 0, 0, 0);
  if constexpr (VEC) return load8_stream(p);
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

// Where half h (8 elements) of thread t's share of a chunk starts. CONTIG: [8t, 8t+8) and [32 + 8t, 32 + 8t + 8),
// so that one 16-byte load instruction of a warp covers 64 contiguous bytes of each row; else [16t, 16t+16).
template <bool CONTIG>
__device__ __forceinline__ int chunk_offset(int t, int h) {
  return CONTIG ? 32 * h + 8 * t : 16 * t + 8 * h;
}

template <int RG, int MT>
constexpr size_t smem_bytes(int kw) {  // the partial sums [KW][MT·RG·4][32] float
  return size_t(kw) * MT * RG * 4 * 32 * sizeof(float);
}

// Grid: (row batches of 8·RG rows, tiles of 16·MT weight rows); block: KW warps. A stage of U chunks of weights is
// loaded into registers before any is used (the bytes in flight); with PREFETCH the next stage is loaded while the
// current one is multiplied. RG, MT, U and PREFETCH change how the work is laid out, never a sum.
template <int RG, int MT, int U, bool PREFETCH, bool CONTIG, bool VEC>
__global__ void __launch_bounds__(kMaxWarps * 32) decode_gemm_kernel(DecodeParams p) {
  extern __shared__ float partial[];  // [KW][MT·RG·4][32] each warp's accumulators
  const int KW = int(blockDim.x / 32), warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
  const int g = lane / 4, t = lane % 4;
  const int64_t n0 = int64_t(blockIdx.y) * 16 * MT, r0 = int64_t(blockIdx.x) * 8 * RG;
  const int64_t chunks = (p.K + kChunk - 1) / kChunk;
  const int64_t c_begin = chunks * warp / KW, c_end = chunks * (warp + 1) / KW;
  const int o0 = chunk_offset<CONTIG>(t, 0), o1 = chunk_offset<CONTIG>(t, 1);

  const bf16* wrow[MT][2];
  bool wvalid[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t n = n0 + mt * 16 + g + 8 * h;
      wvalid[mt][h] = n < p.N;
      wrow[mt][h] = p.w + (wvalid[mt][h] ? n : 0) * p.K;
    }
  const bf16* xrow[RG];
  bool xvalid[RG];
#pragma unroll
  for (int rg = 0; rg < RG; ++rg) {
    const int64_t r = r0 + rg * 8 + g;
    xvalid[rg] = r < p.R;
    xrow[rg] = p.x + (xvalid[rg] ? r : 0) * p.ldx;
  }

  float acc[MT][RG][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int rg = 0; rg < RG; ++rg)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][rg][i] = 0.0f;

  // Chunks c … c+U-1 of the weights (zeros, without a load, past the warp's range).
  auto load_stage = [&](uint4 (&wv)[U][MT][2][2], int64_t c) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k = (c + u) * kChunk;
      const bool in = c + u < c_end;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t l0 = in && wvalid[mt][h] ? p.K - k - o0 : 0, l1 = in && wvalid[mt][h] ? p.K - k - o1 : 0;
          wv[u][mt][h][0] = load_w<VEC>(wrow[mt][h] + k + o0, l0);
          wv[u][mt][h][1] = load_w<VEC>(wrow[mt][h] + k + o1, l1);
        }
    }
  };
  auto multiply_stage = [&](const uint4 (&wv)[U][MT][2][2], int64_t c) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c + u >= c_end) break;
      const int64_t k = (c + u) * kChunk;
#pragma unroll
      for (int rg = 0; rg < RG; ++rg) {
        const uint4 xv[2] = {load_x<VEC>(xrow[rg] + k + o0, xvalid[rg] ? p.K - k - o0 : 0),
                             load_x<VEC>(xrow[rg] + k + o1, xvalid[rg] ? p.K - k - o1 : 0)};
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) mma_chunk(acc[mt][rg], wv[u][mt], xv);
      }
    }
  };

  uint4 wv[U][MT][2][2];
  if constexpr (PREFETCH) load_stage(wv, c_begin);
  for (int64_t c = c_begin; c < c_end; c += U) {
    if constexpr (PREFETCH) {
      uint4 next[U][MT][2][2];
      load_stage(next, c + U);
      multiply_stage(wv, c);
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) wv[u][mt][h][0] = next[u][mt][h][0], wv[u][mt][h][1] = next[u][mt][h][1];
    } else {
      load_stage(wv, c);
      multiply_stage(wv, c);
    }
  }

  // The warps' partial sums, added in warp order.
  constexpr int E = MT * RG * 4;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int rg = 0; rg < RG; ++rg)
#pragma unroll
      for (int i = 0; i < 4; ++i) partial[(warp * E + (mt * RG + rg) * 4 + i) * 32 + lane] = acc[mt][rg][i];
  __syncthreads();
  // Element (row rr, column nn) of the block's [8·RG, 16·MT] output sits in accumulator (mt, rg, i) of lane (gg, tt).
  for (int idx = int(threadIdx.x); idx < E * 32; idx += int(blockDim.x)) {
    const int nn = idx % (16 * MT), rr = idx / (16 * MT);
    const int mt = nn / 16, gg = nn % 8, rg = rr / 8, tt = (rr % 8) / 2, i = 2 * ((nn % 16) / 8) + rr % 2;
    const int at = ((mt * RG + rg) * 4 + i) * 32 + gg * 4 + tt;
    float s = partial[at];
    for (int w = 1; w < KW; ++w) s += partial[w * E * 32 + at];
    const int64_t n = n0 + nn, r = r0 + rr;
    if (n >= p.N || r >= p.R) continue;
    if (p.y_f32) static_cast<float*>(p.y)[r * p.ldy + n] = s;
    else static_cast<bf16*>(p.y)[r * p.ldy + n] = __float2bfloat16_rn(s);
  }
}

template <int RG, int MT, int U, bool PREFETCH, bool CONTIG, bool VEC>
void launch_variant(const DecodeParams& p, int kw, cudaStream_t stream) {
  const int64_t row_batches = (p.R + 8 * RG - 1) / (8 * RG), tiles = (p.N + 16 * MT - 1) / (16 * MT);
  HYRAX_CHECK(tiles <= 65535 && row_batches <= 2147483647, "decode gemm: N=", p.N, " R=", p.R, " is too large");
  const dim3 grid{unsigned(row_batches), unsigned(tiles)};
  auto* kernel = decode_gemm_kernel<RG, MT, U, PREFETCH, CONTIG, VEC>;
  static const bool attr_set = [&] {  // once per variant, at its first (uncaptured) use
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(smem_bytes<RG, MT>(kMaxWarps))));
    return true;
  }();
  (void)attr_set;
  kernel<<<grid, unsigned(kw * 32), smem_bytes<RG, MT>(kw), stream>>>(p);
  CUDA_CHECK_LAUNCH("decode_gemm");
}

// Layout variants (the same sums within a CONTIG value): 0 = U 4/2 (by RG), old fragment offsets; 1 = the same with
// contiguous offsets; 2 = contiguous, U 2 with prefetch; 3 = contiguous, prefetch, 32 weight rows per warp.
template <int RG, bool VEC>
void launch(const DecodeParams& p, int kw, int variant, cudaStream_t stream) {
  constexpr int U = RG <= 2 ? 4 : 2;
  switch (variant) {
    case 0: return launch_variant<RG, 1, U, false, false, VEC>(p, kw, stream);
    case 1: return launch_variant<RG, 1, U, false, true, VEC>(p, kw, stream);
    case 2: return launch_variant<RG, 1, 2, true, true, VEC>(p, kw, stream);
    case 3: return launch_variant<RG, 2, (RG <= 2 ? 2 : 1), true, true, VEC>(p, kw, stream);
    default: fail("decode gemm: no layout variant ", variant);
  }
}

template <int RG>
void launch(const DecodeParams& p, int kw, int variant, cudaStream_t stream) {
  const bool vec = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && reinterpret_cast<uintptr_t>(p.w) % 16 == 0 &&
                   p.K % 8 == 0 && p.ldx % 8 == 0;
  if (vec) launch<RG, true>(p, kw, variant, stream);
  else launch<RG, false>(p, kw, variant, stream);
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

void decode_gemm(const GemmArgs& a, cudaStream_t stream) {
  decode_gemm(a, stream, decode_gemm_k_warps(a.N, a.K), kDefaultVariant);
}

void decode_gemm(const GemmArgs& a, cudaStream_t stream, int k_warps, int variant) {
  HYRAX_CHECK(a.R >= 0 && a.N > 0 && a.K > 0, "decode gemm R=", a.R, " N=", a.N, " K=", a.K);
  HYRAX_CHECK(a.x && a.w && a.y, "decode gemm: null pointer");
  HYRAX_CHECK(a.ldx >= a.K && a.ldy >= a.N, "decode gemm: row strides ldx=", a.ldx, " ldy=", a.ldy, " for K=", a.K,
              " N=", a.N);
  HYRAX_CHECK(k_warps == 1 || k_warps == 2 || k_warps == 4 || k_warps == 8, "decode gemm: k_warps ", k_warps);
  if (a.R == 0) return;
  const DecodeParams p{a.x, a.ldx, a.w, a.y, a.ldy, a.R, a.N, a.K, a.y_f32};
  // Row groups (8 rows of x) per block, by R only.
  if (a.R <= 8) launch<1>(p, k_warps, variant, stream);
  else if (a.R <= 16) launch<2>(p, k_warps, variant, stream);
  else if (a.R <= 32) launch<4>(p, k_warps, variant, stream);
  else launch<kRowGroups>(p, k_warps, variant, stream);
}

}  // namespace hyrax::kernels::cuda
