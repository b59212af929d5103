// Device-side helpers shared by the CUDA kernels: bf16 conversions, warp reductions in a fixed order, and thin
// wrappers over the Hopper/Ampere matrix instructions (ldmatrix, mma.sync m16n8k16 bf16 -> f32) and cp.async.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A 16x16 (row):  a0 = A[g][2t..2t+1]   a1 = A[g+8][2t..]   a2 = A[g][2t+8..]   a3 = A[g+8][2t+8..]
//   B 16x8  (col):  b0 = B[2t..2t+1][g]   b1 = B[2t+8..][g]
//   C 16x8:         c0,c1 = C[g][2t..2t+1]                     c2,c3 = C[g+8][2t..2t+1]
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

namespace hyrax::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 to_bf(float x) { return __float2bfloat16_rn(x); }

/// Two floats packed as bf16x2 in one register (low half = a), as the mma operands want them.
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
  __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&v);
}

/// Sum over the warp by a butterfly: every lane gets the same bits, in an order fixed by the lane layout.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Sum over the block (blockDim.x a multiple of 32, at most 1024): warp butterflies, then warp 0 adds the warp
/// partials in warp order. `red` is shared scratch of 32 floats. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read from a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.0f;
  for (int w = 0; w < nw; ++w) s += red[w];
  return s;
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

/// 2^x by the hardware's approximate unit (relative error ~2^-22; 2^-inf = 0): softmax weights.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---- shared-memory addresses and matrix loads ------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// Four 8x8 b16 matrices; lane l gives the address of row (l % 8) of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
/// Two 8x8 matrices; lanes 0..15 give the addresses (the others are ignored but must be valid).
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(p)));
}

/// c += a · b, bf16 operands, f32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Operand layouts in shared memory for the warp-level products below (ld in elements, rows 16-byte aligned).
enum class Major { Row, Col };  // Row: X[r][c] at X[r*ld + c];  Col: X[r][c] at X[c*ld + r]

/// The A fragment of the 16x16 tile at (m0, k0) of A[M][K] stored `major`.
template <Major AM>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* A, int lda, int m0, int k0) {
  const int lane = threadIdx.x & 31;
  if constexpr (AM == Major::Row) {
    ldmatrix_x4(a, A + (m0 + (lane & 15)) * lda + k0 + ((lane >> 4) << 3));
  } else {  // stored as A^T[K][M]: transpose while loading
    ldmatrix_x4_trans(a, A + (k0 + (lane & 7) + ((lane >> 4) << 3)) * lda + m0 + (((lane >> 3) & 1) << 3));
  }
}

/// B fragments of the two 16x8 tiles at (k0, n0) and (k0, n0 + 8) of B[K][N] stored `major`:
/// b[0], b[1] for tile n0; b[2], b[3] for tile n0 + 8.
template <Major BM>
__device__ __forceinline__ void load_b2(uint32_t (&b)[4], const bf16* B, int ldb, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  if constexpr (BM == Major::Row) {  // B[k][n] at B[k*ldb + n]: rows are k, transpose
    ldmatrix_x4_trans(b, B + (k0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * ldb + n0 + ((lane >> 4) << 3));
  } else {  // B[k][n] at B[n*ldb + k]
    ldmatrix_x4(b, B + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ldb + k0 + (((lane >> 3) & 1) << 3));
  }
}

/// B fragment of the one 16x8 tile at (k0, n0).
template <Major BM>
__device__ __forceinline__ void load_b1(uint32_t (&b)[2], const bf16* B, int ldb, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  if constexpr (BM == Major::Row) {
    ldmatrix_x2_trans(b, B + (k0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * ldb + n0);
  } else {
    ldmatrix_x2(b, B + (n0 + (lane & 7)) * ldb + k0 + (((lane >> 3) & 1) << 3));
  }
}

/// One k-step's fragments: A (16x16) and NT B tiles (16x8).
template <int NT>
struct Frags {
  uint32_t a[4];
  uint32_t b[NT][2];
};

template <int NT, Major AM, Major BM>
__device__ __forceinline__ void load_frags(Frags<NT>& f, const bf16* A, int lda, const bf16* B, int ldb, int m0,
                                           int n0, int k0) {
  load_a<AM>(f.a, A, lda, m0, k0);
#pragma unroll
  for (int j = 0; j + 1 < NT; j += 2) {
    uint32_t b[4];
    load_b2<BM>(b, B, ldb, k0, n0 + j * 8);
    f.b[j][0] = b[0], f.b[j][1] = b[1], f.b[j + 1][0] = b[2], f.b[j + 1][1] = b[3];
  }
  if constexpr (NT % 2 == 1) load_b1<BM>(f.b[NT - 1], B, ldb, k0, n0 + (NT - 1) * 8);
}

template <int NT>
__device__ __forceinline__ void mma_frags(float (&acc)[NT][4], const Frags<NT>& f) {
#pragma unroll
  for (int j = 0; j < NT; ++j) mma_bf16(acc[j], f.a, f.b[j][0], f.b[j][1]);
}

/// acc[NT] += A[m0:m0+16, 16·k_begin : 16·k_end] · B[.., n0 : n0 + 8·NT] for one warp. The k loop runs in
/// increasing order (so an output element always sums its products in the same order), loading the next k-step's
/// fragments while the current one's products run (two register sets, unrolled by two).
template <int NT, Major AM, Major BM>
__device__ __forceinline__ void warp_mma(float (&acc)[NT][4], const bf16* A, int lda, const bf16* B, int ldb, int m0,
                                         int n0, int k_begin, int k_end) {
  if (k_begin >= k_end) return;
  Frags<NT> f0, f1;
  int ks = k_begin;
  load_frags<NT, AM, BM>(f0, A, lda, B, ldb, m0, n0, ks * 16);
  while (true) {
    if (ks + 1 < k_end) load_frags<NT, AM, BM>(f1, A, lda, B, ldb, m0, n0, (ks + 1) * 16);
    mma_frags(acc, f0);
    if (++ks >= k_end) break;
    if (ks + 1 < k_end) load_frags<NT, AM, BM>(f0, A, lda, B, ldb, m0, n0, (ks + 1) * 16);
    mma_frags(acc, f1);
    if (++ks >= k_end) break;
  }
}

/// acc0 += A0[m0:m0+16, k]·B[k, n0 : n0 + 8·NT] and acc1 += A1[m1:m1+16, k]·B[..] for k-steps [k_begin, k_end):
/// each B fragment read from shared memory feeds both products. Each output element sums its products in the same
/// order as warp_mma.
template <int NT, Major AM, Major BM>
__device__ __forceinline__ void warp_mma_pair(float (&acc0)[NT][4], float (&acc1)[NT][4], const bf16* A0, const bf16* A1,
                                              int lda, int m0, int m1, const bf16* B, int ldb, int n0, int k_begin,
                                              int k_end) {
#pragma unroll
  for (int ks = k_begin; ks < k_end; ++ks) {
    Frags<NT> f;
    uint32_t a1[4];
    load_frags<NT, AM, BM>(f, A0, lda, B, ldb, m0, n0, ks * 16);
    load_a<AM>(a1, A1, lda, m1, ks * 16);
    mma_frags(acc0, f);
#pragma unroll
    for (int j = 0; j < NT; ++j) mma_bf16(acc1[j], a1, f.b[j][0], f.b[j][1]);
  }
}

template <int NT>
__device__ __forceinline__ void zero_acc(float (&acc)[NT][4]) {
#pragma unroll
  for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
}

// ---- cp.async ----------------------------------------------------------------------------------------------------

/// 16 bytes global -> shared, asynchronously; src_bytes < 16 zero-fills the rest (0: all zeros, src unread).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes = 16) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace hyrax::cuda
