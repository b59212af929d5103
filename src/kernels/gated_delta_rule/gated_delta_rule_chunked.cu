// The gated delta rule on the GPU, chunked WY form (prefill); the recurrent form is in gated_delta_rule.cu.
//
// Chunked, per chunk of n tokens (rows i, j), with G = cumsum(g) (float64), γ = exp(G), tail = exp(G_n − G),
// rq, rk the rows' inverse norms, s = 1/sqrt(Dk), and q, k, v the raw bf16 inputs:
//   P  = lower((rq·s)_i rk_j (q·kᵀ)_ij exp(G_i − G_j))      L = strictly-lower(β_i rk_i rk_j (k·kᵀ)_ij exp(G_i − G_j))
//   T  = (I + L)⁻¹ (float32: diagonal 16×16 blocks by substitution, the rest by block products, 3xTF32)
//   P' = P·T      W' = Kᵀ·diag(tail·rk)·T      R = β ⊙ (V − γ·rk ⊙ (K·S))
//   O  = γ·rq·s ⊙ (Q·S) + P'·R                 S ← γ_n·S + W'·R
// Prep kernel (one block per chunk and head, all in parallel): W', P' and the row scales into a scratch record.
// Then one of two state passes walks each sequence's chunks in order, the state slice in float32 registers:
//   - on warpgroup MMA (32 < Dk <= 128, Dv a multiple of 64): gated_delta_rule_chunked_wgmma.cu;
//   - on mma.sync for every other shape: one block of 16 warps per sequence, head and BV state columns, two phases a
//     chunk, the state's bf16 copy in shared memory as the tensor-core operand, later chunks' inputs loaded by
//     cp.async meanwhile.
// Products run on tensor cores (bf16 operands, float32 accumulation); q·kᵀ, k·kᵀ, K·S and Q·S straight on the raw
// inputs, norms, γ, β and tail scaling float32 results. Every output element sums its products in one fixed order,
// independent of the other sequences and of where the caller split the sequence (at multiples of 64); on mma.sync
// also of BV.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/gated_delta_rule/gdn_chunked.cuh"
#include "kernels/gated_delta_rule/gdn_common.cuh"

namespace hyrax::kernels::cuda {
namespace {

using namespace hyrax::cuda;
using gdn::aligned16;
using gdn::check_params;
using gdn::gate_beta;
using gdn::kC;
using gdn::Rec;
using gdn::rec_off;

// ================================================================================================================
// Chunked form
// ================================================================================================================

/// Copies rows [0, n) of a [64][WIDTH] bf16 block (thread t of THREADS) (source rows `ld_src` apart, columns
/// [col0, col0 + WIDTH) of which those below `lim` exist) into shared memory rows `ld_dst` apart; zeros elsewhere.
/// vec: 16-byte cp.async wherever a whole group of 8 is in range. Thread t copies groups t, t + THREADS, ...; their
/// (row, group) pairs are stepped, not divided out, and only the row offset is 64-bit.
template <int WIDTH, int THREADS>
__device__ __forceinline__ void load_rows(bf16* dst, int ld_dst, const bf16* src, int64_t ld_src, int64_t col0,
                                          int64_t lim, int n, bool vec, int t = threadIdx.x) {
  constexpr int G = WIDTH / 8, E = kC * G, N = (E + THREADS - 1) / THREADS;
  const bf16 zero = to_bf(0.0f);
  const bf16* base = src + col0;
  const int w = int(lim - col0);  // columns of the block that exist
  int i = t / G, c = (t % G) * 8;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    if (E % THREADS == 0 || t + k * THREADS < E) {
      const bf16* s = base + int64_t(i) * ld_src + c;
      bf16* d = dst + i * ld_dst + c;
      if (i < n && vec && c + 8 <= w) {
        cp_async16(d, s);
      } else {
#pragma unroll
        for (int x = 0; x < 8; ++x) d[x] = (i < n && c + x < w) ? s[x] : zero;
      }
    }
    i += THREADS / G, c += (THREADS % G) * 8;
    if (c >= WIDTH) c -= WIDTH, ++i;
  }
}

// ---- prep: one block per (chunk, value head), independent of the state ---------------------------------------

constexpr int kPrepThreads = 256;

template <int KP>
struct PrepSmem {
  static constexpr int LDK = KP + 8, LDF = kC + 4, LDP = kC + 8, LDM = 32 + 4;
  // q and k rows (k's later scaled by tail·rk); F: L in float32, overwritten block by block with T = (I + L)⁻¹ as
  // the inverse proceeds; TT: T in bf16 (before it, M: products of the inverse); P in bf16, over q once q is read
  // where q is large enough. 55 KB at KP = 96: four blocks an SM.
  static constexpr size_t q = 0, k = size_t(kC) * LDK * 2, F = size_t(4) * kC * LDK, TT = F + size_t(kC) * LDF * 4;
  static constexpr size_t M = TT, P = KP >= 64 ? q : TT + size_t(2) * kC * LDP;
  static constexpr size_t G = (KP >= 64 ? TT : P) + size_t(2) * kC * LDP;  // doubles
  static_assert(32 * LDM * 4 <= size_t(2) * kC * LDP, "M fits in TT");
  static constexpr size_t rq = G + kC * 8, rk = rq + kC * 4, gv = rk + kC * 4, beta = gv + kC * 4;
  static constexpr size_t gam = beta + kC * 4, tail = gam + kC * 4, total = tail + kC * 4;
  static_assert(total <= 227 * 1024, "prep block needs more shared memory than an SM has");
};

/// x's tf32 part (its top 19 bits: truncated, not rounded), as a 32-bit register. One instruction, where
/// cvt.rna.tf32.f32 is four on sm_90 (and was a seventh of the prep's instructions).
__device__ __forceinline__ uint32_t tf32_trunc(float x) { return __float_as_uint(x) & 0xffffe000u; }

__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// acc (16×8) += A[0:16, 8·k0 : 8·k1] · B[8·k0 : 8·k1, 0:8] for float32 matrices in shared memory (row-major),
/// on tensor cores in three tf32 products (hi·lo + lo·hi + hi·hi: float32-level accuracy). hi is x truncated to
/// tf32, lo = x − hi (exact) truncated again: what is dropped is below 2⁻²⁰·|x|. Fragments of
/// m16n8k8.tf32: a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]; b0 = B[t][g], b1 = B[t+4][g].
__device__ __forceinline__ void mma_f32x3(float (&acc)[4], const float* A, int lda, const float* B, int ldb, int k0,
                                          int k1) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  for (int kk = k0; kk < k1; ++kk) {
    const int c = 8 * kk + t;
    const float a[4] = {A[g * lda + c], A[(g + 8) * lda + c], A[g * lda + c + 4], A[(g + 8) * lda + c + 4]};
    const float b[2] = {B[c * ldb + g], B[(c + 4) * ldb + g]};
    uint32_t ah[4], al[4], bh[2], bl[2];
#pragma unroll
    for (int x = 0; x < 4; ++x) ah[x] = tf32_trunc(a[x]), al[x] = tf32_trunc(a[x] - __uint_as_float(ah[x]));
#pragma unroll
    for (int x = 0; x < 2; ++x) bh[x] = tf32_trunc(b[x]), bl[x] = tf32_trunc(b[x] - __uint_as_float(bh[x]));
    mma_tf32(acc, ah, bl[0], bl[1]);
    mma_tf32(acc, al, bh[0], bh[1]);
    mma_tf32(acc, ah, bh[0], bh[1]);
  }
}

/// Stores a 16×8 accumulator tile at (r0, c0) of a float32 matrix, negated if `neg`.
__device__ __forceinline__ void store_acc(float* D, int ld, int r0, int c0, const float (&acc)[4], bool neg) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const float s = neg ? -1.0f : 1.0f;
  *reinterpret_cast<float2*>(D + (r0 + g) * ld + c0 + 2 * t) = make_float2(s * acc[0], s * acc[1]);
  *reinterpret_cast<float2*>(D + (r0 + g + 8) * ld + c0 + 2 * t) = make_float2(s * acc[2], s * acc[3]);
}

template <int KP>
__global__ __launch_bounds__(kPrepThreads) void gdn_chunk_prep_kernel(GdnParams p, GdnChunkWork w, bool vec,
                                                                      float qscale) {
  hyrax::cuda::begin_after_previous_grids();
  using L = PrepSmem<KP>;
  constexpr int LDK = L::LDK, LDF = L::LDF, LDP = L::LDP, LDM = L::LDM, KS = KP / 16;
  extern __shared__ __align__(16) unsigned char sm[];
  bf16* qs = reinterpret_cast<bf16*>(sm + L::q);
  bf16* ks = reinterpret_cast<bf16*>(sm + L::k);
  bf16* Ps = reinterpret_cast<bf16*>(sm + L::P);
  float* M = reinterpret_cast<float*>(sm + L::M);
  float* F = reinterpret_cast<float*>(sm + L::F);
  double* G = reinterpret_cast<double*>(sm + L::G);
  float* rq = reinterpret_cast<float*>(sm + L::rq);
  float* rk = reinterpret_cast<float*>(sm + L::rk);
  float* gv = reinterpret_cast<float*>(sm + L::gv);
  float* beta = reinterpret_cast<float*>(sm + L::beta);
  float* gam = reinterpret_cast<float*>(sm + L::gam);
  float* tail = reinterpret_cast<float*>(sm + L::tail);

  const int64_t ci = blockIdx.x, h = blockIdx.y, hk = int(h) / int(p.Hv / p.Hk);
  const int seq = w.chunks[2 * ci], off = w.chunks[2 * ci + 1];
  const int64_t t0 = p.cu_seqlens[seq], tc = t0 + off;
  const int n = min(kC, int(p.cu_seqlens[seq + 1] - tc));
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  unsigned char* rec = static_cast<unsigned char*>(w.scratch) + (ci * p.Hv + h) * Rec<KP>::bytes;
  float* scale_g = reinterpret_cast<float*>(rec + Rec<KP>::scale);

  load_rows<KP, kPrepThreads>(qs, LDK, p.q + tc * p.ld_qkv, p.ld_qkv, hk * p.Dk, (hk + 1) * p.Dk, n, vec);
  load_rows<KP, kPrepThreads>(ks, LDK, p.k + tc * p.ld_qkv, p.ld_qkv, hk * p.Dk, (hk + 1) * p.Dk, n, vec);
  cp_async_commit();
  // Threads 128..191: the gates of the chunk's tokens.
  const int gi = tid - 2 * kC;
  float ra = 0.0f, rb = 0.0f;
  if (gi >= 0 && gi < n) {
    ra = to_f(p.a[(tc + gi) * p.ld_ab + h]);
    rb = to_f(p.b[(tc + gi) * p.ld_ab + h]);
  }
  cp_async_wait_all();
  __syncthreads();

  // Row norms (thread r: q row r; thread 64 + r: k row r) and the gates.
  if (tid < 2 * kC) {
    const int r = tid & (kC - 1);
    const bf16* row = (tid < kC ? qs : ks) + r * LDK;
    float ss = 0.0f;
#pragma unroll
    for (int c = 0; c < KP; c += 8) {
      const uint4 raw = *reinterpret_cast<const uint4*>(row + c);
      const bf16* v8 = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
      for (int x = 0; x < 8; ++x) ss += to_f(v8[x]) * to_f(v8[x]);
    }
    (tid < kC ? rq : rk)[r] = 1.0f / sqrtf(ss + 1e-6f);
  } else if (gi < kC) {
    float gg = 0.0f, bb = 0.0f;
    if (gi < n) gate_beta(ra, rb, p.A_log[h], p.dt_bias[h], p.allow_neg_eigval, &gg, &bb);
    gv[gi] = gg;
    beta[gi] = bb;
  }
  __syncthreads();

  // Warp 0 first: G = cumsum(g) in float64, γ, tail. Then every warp: raw q·kᵀ and k·kᵀ of its tiles of the
  // lower block triangle (m-tile mt, n8-tile nt <= 2mt+1: 20 tiles), kept in registers across the barrier.
  if (warp == 0) {
    const double s0 = gv[2 * lane], s1 = s0 + double(gv[2 * lane + 1]);
    double x = s1;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    double ex = __shfl_up_sync(0xffffffffu, x, 1);
    if (lane == 0) ex = 0.0;
    G[2 * lane] = ex + s0;
    G[2 * lane + 1] = ex + s1;
    __syncwarp();
    const double Gn = G[n - 1];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int i = 2 * lane + e;
      gam[i] = expf(float(G[i]));
      tail[i] = expf(float(Gn - G[i]));
    }
    if (lane == 0) *reinterpret_cast<float*>(rec + Rec<KP>::gn) = expf(float(Gn));
  }
  // Jobs wj, wj + 8, ... with wj = (warp + 4) % 8: warp 0, which scans first, has two jobs, not three.
  constexpr int kJobs = 20, kPerWarp = (kJobs + kPrepThreads / 32 - 1) / (kPrepThreads / 32);
  const int wj = (warp + 4) & 7;
  float aq[kPerWarp][4], ak[kPerWarp][4];
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int jb = wj + i * (kPrepThreads / 32);
    aq[i][0] = aq[i][1] = aq[i][2] = aq[i][3] = 0.0f;
    ak[i][0] = ak[i][1] = ak[i][2] = ak[i][3] = 0.0f;
    if (jb >= kJobs) continue;
    const int mt = jb < 2 ? 0 : jb < 6 ? 1 : jb < 12 ? 2 : 3;
    const int nt = jb - (mt == 0 ? 0 : mt == 1 ? 2 : mt == 2 ? 6 : 12);
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      uint32_t fq[4], fk[4], b[2];
      load_a<Major::Row>(fq, qs, LDK, 16 * mt, 16 * kk);
      load_a<Major::Row>(fk, ks, LDK, 16 * mt, 16 * kk);
      load_b1<Major::Col>(b, ks, LDK, 16 * kk, 8 * nt);
      mma_bf16(aq[i], fq, b[0], b[1]);
      mma_bf16(ak[i], fk, b[0], b[1]);
    }
  }
  __syncthreads();  // G, γ, tail are ready; q is no longer read (P may reuse it)

  // Decays and norms: P (bf16, zero above the diagonal) and L = β·Kn·Knᵀ ⊙ decay (float32, strictly lower).
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int jb = wj + i * (kPrepThreads / 32);
    if (jb >= kJobs) continue;
    const int mt = jb < 2 ? 0 : jb < 6 ? 1 : jb < 12 ? 2 : 3;
    const int nt = jb - (mt == 0 ? 0 : mt == 1 ? 2 : mt == 2 ? 6 : 12);
    const int c0 = 8 * nt + 2 * tq;  // this thread's columns c0, c0 + 1 on rows 16mt + g and + 8
    const double2 Gc = *reinterpret_cast<const double2*>(G + c0);
    const float2 rkc = *reinterpret_cast<const float2*>(rk + c0);
#pragma unroll
    for (int h2 = 0; h2 < 2; ++h2) {
      const int r = 16 * mt + g + 8 * h2;
      const double Gr = G[r];
      const float rqs = rq[r] * qscale, rkr = rk[r], br = beta[r];
      float pv[2], lv[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int cc = c0 + e;
        const float d = cc <= r ? __expf(float(Gr - (e ? Gc.y : Gc.x))) : 0.0f;
        const float rkcc = e ? rkc.y : rkc.x;
        pv[e] = cc <= r ? aq[i][2 * h2 + e] * rqs * rkcc * d : 0.0f;
        lv[e] = cc < r ? br * (ak[i][2 * h2 + e] * rkr * rkcc * d) : 0.0f;
      }
      *reinterpret_cast<uint32_t*>(Ps + r * LDP + c0) = pack_bf16(pv[0], pv[1]);
      *reinterpret_cast<float2*>(F + r * LDF + c0) = make_float2(lv[0], lv[1]);
    }
  }
  if (tid < kC) {
    scale_g[tid] = gam[tid] * rq[tid] * qscale;
    scale_g[kC + tid] = gam[tid] * rk[tid];
    scale_g[2 * kC + tid] = tail[tid] * rk[tid];
    scale_g[3 * kC + tid] = beta[tid];
  }
  __syncthreads();

  // T = (I + L)⁻¹. Diagonal 16×16 blocks by forward substitution (lane -> block, column), float32.
  if (warp < 2) {
    const int blk = warp * 2 + (lane >> 4), col = lane & 15, o = 16 * blk;
    float x[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      float sacc = i == col ? 1.0f : 0.0f;
#pragma unroll
      for (int j = 0; j < i; ++j) sacc -= F[(o + i) * LDF + o + j] * x[j];
      x[i] = sacc;
    }
    __syncwarp();  // the block's L is read: T_ii replaces it
#pragma unroll
    for (int i = 0; i < 16; ++i) F[(o + i) * LDF + o + col] = x[i];
  }
  __syncthreads();
  // Blocks below the diagonal: [A 0; C B]⁻¹ = [A⁻¹ 0; −B⁻¹·C·A⁻¹ B⁻¹], first for the two 32×32 diagonal blocks
  // (16×16 pieces), then for the whole (32×32 pieces). Products on tensor cores in float32-level tf32 (mma_f32x3).
  float acc2[4] = {0.f, 0.f, 0.f, 0.f};
  const int b2 = warp >> 1, hh = warp & 1, i2 = 32 * b2 + 16, j2 = 32 * b2;
  if (warp < 4) {  // T_10 and T_32: (block pair b2, column half hh)
    float* Mw = M + warp * 16 * 8;  // this warp's 16×8 piece of L_ij·T_jj, row stride 8
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    mma_f32x3(acc, F + i2 * LDF + j2, LDF, F + j2 * LDF + j2 + 8 * hh, LDF, 0, 2);
    store_acc(Mw, 8, 0, 0, acc, false);
    __syncwarp();
    mma_f32x3(acc2, F + i2 * LDF + i2, LDF, Mw, 8, 0, 2);
  }
  __syncthreads();  // L_10 and L_32 are read: T_10 and T_32 replace them
  if (warp < 4) store_acc(F, LDF, i2, j2 + 8 * hh, acc2, true);
  __syncthreads();
  {  // M = C·A⁻¹ (C = L[32:64, 0:32]; A⁻¹ = T[0:32, 0:32] is zero above its diagonal blocks): 8 tiles of 16×8.
    const int mt = warp >> 2, nt = warp & 3;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    mma_f32x3(acc, F + (32 + 16 * mt) * LDF, LDF, F + 8 * nt, LDF, (nt >> 1) * 2, 4);
    store_acc(M, LDM, 16 * mt, 8 * nt, acc, false);
  }
  __syncthreads();
  {  // T[32:64, 0:32] = −B⁻¹·M (B⁻¹ = T[32:64, 32:64], zero above its diagonal blocks), over C.
    const int mt = warp >> 2, nt = warp & 3;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    mma_f32x3(acc, F + (32 + 16 * mt) * LDF + 32, LDF, M + 8 * nt, LDM, 0, 2 * (mt + 1));
    store_acc(F, LDF, 32 + 16 * mt, 8 * nt, acc, true);
  }
  __syncthreads();
  // T in bf16, zeros above the diagonal blocks; the k rows scaled by u_r = tail_r·rk_r (rounded to bf16).
  bf16* Tb = reinterpret_cast<bf16*>(sm + L::TT);
  for (int e = tid; e < kC * kC / 8; e += kPrepThreads) {
    const int r = e >> 3, c8 = (e & 7) * 8;
    uint4 vb = make_uint4(0, 0, 0, 0);
    if ((c8 >> 4) <= (r >> 4)) {
      const float4 a = *reinterpret_cast<const float4*>(F + r * LDF + c8);
      const float4 b = *reinterpret_cast<const float4*>(F + r * LDF + c8 + 4);
      vb = make_uint4(pack_bf16(a.x, a.y), pack_bf16(a.z, a.w), pack_bf16(b.x, b.y), pack_bf16(b.z, b.w));
    }
    *reinterpret_cast<uint4*>(Tb + r * LDP + c8) = vb;
  }
  for (int e = tid; e < kC * KP / 8; e += kPrepThreads) {
    const int r = e / (KP / 8), c8 = (e % (KP / 8)) * 8;
    uint4* x = reinterpret_cast<uint4*>(ks + r * LDK + c8);
    const uint4 v = *x;
    const float u = tail[r] * rk[r];
    const bf16* h8 = reinterpret_cast<const bf16*>(&v);
    *x = make_uint4(pack_bf16(u * to_f(h8[0]), u * to_f(h8[1])), pack_bf16(u * to_f(h8[2]), u * to_f(h8[3])),
                    pack_bf16(u * to_f(h8[4]), u * to_f(h8[5])), pack_bf16(u * to_f(h8[6]), u * to_f(h8[7])));
  }
  __syncthreads();
  // The record's products, on tensor cores (bf16 operands, float32 sums), 16×16 tiles straight to the record:
  // P' = P·T (lower block triangle: tile (mt, nb ≤ mt) sums k-blocks nb..mt) and W' = (diag(u)·K)ᵀ·T (tile (row tile
  // rt of Kᵀ, nb) sums k-blocks nb..3, T being zero above its diagonal blocks).
  unsigned char* Pg = rec + Rec<KP>::P;
  unsigned char* Wg = rec + Rec<KP>::W;
  for (int jb = warp; jb < 10 + 4 * KS; jb += kPrepThreads / 32) {
    float acc[2][4];
    zero_acc(acc);
    int r0, c0;
    unsigned char* dst;
    if (jb < 10) {
      const int mt = jb < 1 ? 0 : jb < 3 ? 1 : jb < 6 ? 2 : 3, nb = jb - mt * (mt + 1) / 2;
      warp_mma<2, Major::Row, Major::Row>(acc, Ps, LDP, Tb, LDP, 16 * mt, 16 * nb, nb, mt + 1);
      r0 = 16 * mt, c0 = 16 * nb, dst = Pg;
    } else {
      const int rt = (jb - 10) >> 2, nb = (jb - 10) & 3;
      warp_mma<2, Major::Col, Major::Row>(acc, ks, LDK, Tb, LDP, 16 * rt, 16 * nb, nb, kC / 16);
      r0 = 16 * rt, c0 = 16 * nb, dst = Wg;
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const uint32_t o = rec_off(r0 + g, c0 + 8 * j + 2 * tq);  // row r0 + g + 8: the same swizzle, 8 rows on
      *reinterpret_cast<uint32_t*>(dst + o) = pack_bf16(acc[j][0], acc[j][1]);
      *reinterpret_cast<uint32_t*>(dst + o + 8 * 128) = pack_bf16(acc[j][2], acc[j][3]);
    }
  }
  // P''s six tiles above the diagonal blocks are zeros (the wgmma state pass reads the whole of P').
  if (tid < 6 * 16 * 2) {
    const int tile = tid >> 5, r = (tid >> 1) & 15, half = tid & 1;
    const int mt = tile < 3 ? 0 : tile < 5 ? 1 : 2, nb = tile < 3 ? 1 + tile : tile < 5 ? tile - 1 : 3;
    *reinterpret_cast<uint4*>(Pg + rec_off(16 * mt + r, 16 * nb + 8 * half)) = make_uint4(0, 0, 0, 0);
  }
}

// ---- state pass: one block per (sequence, value head, value slice), chunks in order ---------------------------
//
// With R = β ⊙ (V − γ·rk ⊙ K·S), the chunk's products fold into two matrices the prep kernel makes:
//   O = γ·rq/sqrt(Dk) ⊙ (Q·S) + P'·R        S ← γ_n·S + W'·R        (P' = P·T, W' = Kᵀ·diag(tail·rk)·T)
// so each chunk is two phases between barriers (a warp's jobs are fixed for the whole sequence; each takes two row
// tiles that share the other operand, so that a fragment read from shared memory feeds two products):
//   1. warps 0-7 (row tile mt = w/2, column half w%2): K·S and Q·S together; K·S becomes R in shared memory,
//      the scaled Q·S stays in registers. Warps 8-15 load a later chunk meanwhile.
//   2. warps 0-7: O = (scaled Q·S) + P'·R, stored. Warps 8-15: S ← γ_n·S + W'·R, two row tiles × a column half
//      per job; the state slice lives in these warps' registers, its bf16 copy in shared memory as the next
//      chunk's operand.
// Every output element sums the same products in the same order whatever BV and however the jobs are dealt.

constexpr int kStateWarps = 16, kStateThreads = 32 * kStateWarps;

template <int KP, int BV, int STAGES>
struct StateSmem {
  static constexpr int LDK = KP + 8, LDV = BV + 8, LDC = kC + 8;
  // One stage: q, k rows, the value slice, P', W', the row scales and γ_n.
  static constexpr size_t sq = 0, sk = sq + size_t(kC) * LDK * 2, sv = sk + size_t(kC) * LDK * 2;
  static constexpr size_t sP = sv + size_t(kC) * LDV * 2, sW = sP + size_t(kC) * LDC * 2;
  static constexpr size_t sScale = sW + size_t(KP) * LDC * 2, stage = sScale + 4 * kC * 4 + 16;
  static constexpr size_t R = STAGES * stage, Sbf = R + size_t(kC) * LDV * 2, total = Sbf + size_t(KP) * LDV * 2;
  static_assert(stage % 16 == 0, "stage alignment");
};

/// Stages of the state kernel's pipeline: three where they fit in shared memory, else two, one at KP = 256.
template <int KP, int BV>
constexpr int state_stages() {
  return KP > 128 ? 1 : StateSmem<KP, BV, 3>::total <= 227 * 1024 ? 3 : 2;
}

template <int KP, int BV, int STAGES>
__global__ __launch_bounds__(kStateThreads, 1) void gdn_chunk_state_kernel(GdnParams p, GdnChunkWork w, bool vec,
                                                                          bool vec_out) {
  hyrax::cuda::begin_after_previous_grids();
  using L = StateSmem<KP, BV, STAGES>;
  static_assert(L::total <= 227 * 1024, "state block needs more shared memory than an SM has");
  constexpr int LDK = L::LDK, LDV = L::LDV, LDC = L::LDC;
  constexpr int KS = KP / 16, HB = BV / 2, NTH = HB / 8;
  // State jobs: row tiles 2i and 2i + 1 (one if KS is odd), column half h; on warps 8-15, in rounds.
  constexpr int PAIR = KS % 2 == 0 ? 2 : 1, SJOBS = 2 * (KS / PAIR), SJ = (SJOBS + 7) / 8;
  constexpr int LT = kStateThreads / 2;  // loader threads (warps 8-15)
  extern __shared__ __align__(16) unsigned char sm[];
  bf16* Rm = reinterpret_cast<bf16*>(sm + L::R);
  bf16* Sbf = reinterpret_cast<bf16*>(sm + L::Sbf);

  const int i_seq = blockIdx.z, seq = p.seqs[i_seq];
  const int64_t h = blockIdx.y, hk = int(h) / int(p.Hv / p.Hk), j0 = int64_t(blockIdx.x) * BV;
  const int64_t t0 = p.cu_seqlens[seq], t1 = p.cu_seqlens[seq + 1];
  if (t0 == t1) return;
  const int nc = int((t1 - t0 + kC - 1) / kC), c_first = w.first_chunk[i_seq];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int Dk = int(p.Dk);
  float* state = p.state + (int64_t(p.state_slots[seq]) * p.Hv + h) * p.Dk * p.Dv;
  const unsigned char* records = static_cast<const unsigned char*>(w.scratch) + int64_t(c_first) * p.Hv * Rec<KP>::bytes;

  // This warp's state jobs: job j covers rows 16·PAIR·(j/2) + [0, 16·PAIR) and columns (j%2)·HB + [0, HB) of the
  // slice; S[i][t] holds row tile t of job i.
  int my_job[SJ];
  float S[SJ][PAIR][NTH][4];
#pragma unroll
  for (int i = 0; i < SJ; ++i) {
    const int j = 8 * i + (warp - 8);
    my_job[i] = warp >= 8 && j < SJOBS ? j : -1;
#pragma unroll
    for (int t = 0; t < PAIR; ++t) {
      const int q0 = 16 * (PAIR * (j >> 1) + t) + g, sn0 = (j & 1) * HB;
#pragma unroll
      for (int n = 0; n < NTH; ++n) {
        const int cc = sn0 + 8 * n + 2 * tq;
#pragma unroll
        for (int x = 0; x < 4; ++x) {
          const int r = q0 + (x >> 1) * 8, col = cc + (x & 1);
          S[i][t][n][x] = (my_job[i] >= 0 && r < Dk && j0 + col < p.Dv) ? state[int64_t(r) * p.Dv + j0 + col] : 0.0f;
        }
        if (my_job[i] >= 0) {
          *reinterpret_cast<__nv_bfloat162*>(Sbf + q0 * LDV + cc) =
              __floats2bfloat162_rn(S[i][t][n][0], S[i][t][n][1]);
          *reinterpret_cast<__nv_bfloat162*>(Sbf + (q0 + 8) * LDV + cc) =
              __floats2bfloat162_rn(S[i][t][n][2], S[i][t][n][3]);
        }
      }
    }
  }

  // The record's 16-byte pieces (P' rows, W' rows, scales), contiguous in the scratch: piece e goes to shared memory
  // at rec_dst(e) from rec_src(e) (W' and P' are swizzled in the record, W' first).
  constexpr int kRecPieces = (kC + KP) * 8 + (4 * kC * 4 + 16) / 16;
  auto rec_dst = [&](int e) -> size_t {
    return e < (kC + KP) * 8 ? L::sP + size_t(e >> 3) * LDC * 2 + (e & 7) * 16 : L::sScale + (e - (kC + KP) * 8) * 16;
  };  // (sW follows sP, so W' row r is P' row 64 + r, and 64 rows keep the swizzle's phase)
  auto rec_src = [](int e) -> uint32_t {
    const int r = e >> 3, c = (e & 7) * 8;
    return r < kC        ? uint32_t(Rec<KP>::P) + rec_off(r, c)
           : r < kC + KP ? uint32_t(Rec<KP>::W) + rec_off(r - kC, c)
                         : uint32_t(Rec<KP>::scale) + (e - (kC + KP) * 8) * 16;
  };
  static_assert(L::sW == L::sP + size_t(kC) * LDC * 2, "W' follows P' in a stage");
  // Loads chunk c into stage st: q, k, v rows and the chunk's record; thread t of TH.
  auto fetch = [&](int c, int st, int t, auto threads) {
    constexpr int TH = decltype(threads)::value;
    unsigned char* base = sm + size_t(st) * L::stage;
    const int64_t tc = t0 + int64_t(c) * kC;
    const int n = min(kC, int(t1 - tc));
    load_rows<KP, TH>(reinterpret_cast<bf16*>(base + L::sq), LDK, p.q + tc * p.ld_qkv, p.ld_qkv, hk * p.Dk,
                      (hk + 1) * p.Dk, n, vec, t);
    load_rows<KP, TH>(reinterpret_cast<bf16*>(base + L::sk), LDK, p.k + tc * p.ld_qkv, p.ld_qkv, hk * p.Dk,
                      (hk + 1) * p.Dk, n, vec, t);
    load_rows<BV, TH>(reinterpret_cast<bf16*>(base + L::sv), LDV, p.v + tc * p.ld_qkv, p.ld_qkv, h * p.Dv + j0,
                      (h + 1) * p.Dv, n, vec, t);
    const unsigned char* rec = records + int64_t(c) * p.Hv * Rec<KP>::bytes + h * Rec<KP>::bytes;
    for (int e = t; e < kRecPieces; e += TH) cp_async16(base + rec_dst(e), rec + rec_src(e));
    cp_async_commit();
  };
  // The same for the loaders (warps 8-15) when rows are 16-byte aligned: each thread's pieces of q, k and v (shared
  // offset, offset in the chunk's rows, row) are worked out once.
  constexpr int NQK = (kC * KP / 8 + LT - 1) / LT, NV = (kC * BV / 8 + LT - 1) / LT;
  const int lt = tid - LT;
  uint32_t qk_smem[NQK], v_smem[NV];
  int32_t qk_off[NQK], v_off[NV], qk_row[NQK], v_row[NV];  // row -1: nothing to load; kC: zeros
#pragma unroll
  for (int i = 0; i < NQK; ++i) {
    const int e = lt + LT * i, r = e / (KP / 8), c8 = (e % (KP / 8)) * 8;
    qk_smem[i] = uint32_t(r * LDK * 2 + c8 * 2);
    qk_off[i] = int32_t(int64_t(r) * p.ld_qkv + hk * p.Dk + c8);
    qk_row[i] = (e < kC * KP / 8 && c8 + 8 <= p.Dk) ? r : (e < kC * KP / 8 ? kC : -1);
  }
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int e = lt + LT * i, r = e / (BV / 8), c8 = (e % (BV / 8)) * 8;
    v_smem[i] = uint32_t(r * LDV * 2 + c8 * 2);
    v_off[i] = int32_t(int64_t(r) * p.ld_qkv + h * p.Dv + j0 + c8);
    v_row[i] = (e < kC * BV / 8 && j0 + c8 + 8 <= p.Dv) ? r : (e < kC * BV / 8 ? kC : -1);
  }
  auto fetch_fast = [&](int c, int st) {
    unsigned char* base = sm + size_t(st) * L::stage;
    const int64_t tc = t0 + int64_t(c) * kC;
    const int n = min(kC, int(t1 - tc));
    const bf16 *q = p.q + tc * p.ld_qkv, *k = p.k + tc * p.ld_qkv, *v = p.v + tc * p.ld_qkv;
#pragma unroll
    for (int i = 0; i < NQK; ++i) {
      if (qk_row[i] < 0) continue;
      const int bytes = qk_row[i] < n ? 16 : 0;  // rows past the chunk's end (and columns past Dk) read as zeros
      cp_async16(base + L::sq + qk_smem[i], q + (bytes ? qk_off[i] : 0), bytes);
      cp_async16(base + L::sk + qk_smem[i], k + (bytes ? qk_off[i] : 0), bytes);
    }
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      if (v_row[i] < 0) continue;
      const int bytes = v_row[i] < n ? 16 : 0;
      cp_async16(base + L::sv + v_smem[i], v + (bytes ? v_off[i] : 0), bytes);
    }
    const unsigned char* rec = records + int64_t(c) * p.Hv * Rec<KP>::bytes + h * Rec<KP>::bytes;
#pragma unroll
    for (int i = 0; i < (kRecPieces + LT - 1) / LT; ++i) {
      const int e = lt + LT * i;
      if (e < kRecPieces) cp_async16(base + rec_dst(e), rec + rec_src(e));
    }
    cp_async_commit();
  };
  using Half = std::integral_constant<int, LT>;
  using All = std::integral_constant<int, kStateThreads>;
  const bool loader = warp >= 8;
  auto fetch_loader = [&](int c, int st) {
    if (vec) {
      fetch_fast(c, st);
    } else {
      fetch(c, st, lt, Half{});
    }
  };
  // With two or three stages, warps 8-15 load chunk c + STAGES - 1 during chunk c's phase 1, into the stage chunk
  // c - 1 used; with one, every thread loads chunk c at its start.
  if (STAGES > 1 && loader)
    for (int c = 0; c < min(STAGES - 1, nc); ++c) fetch_loader(c, c);

  // Phase 1-2 job of warps 0-7: row tile mt of K and of Q, columns n0 of the slice.
  const int mt = (warp >> 1) & 3, n0 = (warp & 1) * HB;
  const bool front = warp < 8;
  const int r0 = 16 * mt + g, r1 = r0 + 8;  // this thread's accumulator rows
  int st = 0;
  for (int c = 0; c < nc; ++c) {
    if (STAGES == 1) {
      __syncthreads();  // the previous chunk is done with the stage
      fetch(c, 0, tid, All{});
      cp_async_wait_all();
    } else if (STAGES == 3 && c + 1 < nc) {
      cp_async_wait<1>();  // chunk c has landed; chunk c + 1 may still be on its way
    } else {
      cp_async_wait_all();
    }
    __syncthreads();  // the stage is visible; the previous chunk's state copy is written, its R read

    const unsigned char* base = sm + size_t(st) * L::stage;
    const bf16* qs = reinterpret_cast<const bf16*>(base + L::sq);
    const bf16* ks = reinterpret_cast<const bf16*>(base + L::sk);
    const bf16* vs = reinterpret_cast<const bf16*>(base + L::sv);
    const bf16* Ps = reinterpret_cast<const bf16*>(base + L::sP);
    const bf16* Ws = reinterpret_cast<const bf16*>(base + L::sW);
    const float* o_scale = reinterpret_cast<const float*>(base + L::sScale);
    const float* r_scale = o_scale + kC;
    const float* beta = o_scale + 3 * kC;
    const float gn = o_scale[4 * kC];
    const int64_t tc = t0 + int64_t(c) * kC;
    const int n = min(kC, int(t1 - tc));

    // Phase 1: K·S and Q·S (warps 0-7); the next load (warps 8-15).
    float qacc[NTH][4];
    if (front) {
      float kacc[NTH][4];
      zero_acc(kacc);
      zero_acc(qacc);
      warp_mma_pair<NTH, Major::Row, Major::Row>(kacc, qacc, ks, qs, LDK, 16 * mt, 16 * mt, Sbf, LDV, n0, 0, KS);
      // R = β ⊙ (V − γ·rk ⊙ (K·S))
      const float b0 = beta[r0], b1 = beta[r1], s0 = r_scale[r0], s1 = r_scale[r1];
#pragma unroll
      for (int j = 0; j < NTH; ++j) {
        const int cc = n0 + 8 * j + 2 * tq;
        const float2 v0 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(vs + r0 * LDV + cc));
        const float2 v1 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(vs + r1 * LDV + cc));
        *reinterpret_cast<__nv_bfloat162*>(Rm + r0 * LDV + cc) =
            __floats2bfloat162_rn(b0 * (v0.x - s0 * kacc[j][0]), b0 * (v0.y - s0 * kacc[j][1]));
        *reinterpret_cast<__nv_bfloat162*>(Rm + r1 * LDV + cc) =
            __floats2bfloat162_rn(b1 * (v1.x - s1 * kacc[j][2]), b1 * (v1.y - s1 * kacc[j][3]));
      }
      // γ·rq/sqrt(Dk) ⊙ (Q·S), kept for phase 2
      const float o0 = o_scale[r0], o1 = o_scale[r1];
#pragma unroll
      for (int j = 0; j < NTH; ++j) {
        qacc[j][0] *= o0, qacc[j][1] *= o0, qacc[j][2] *= o1, qacc[j][3] *= o1;
      }
    } else if (STAGES > 1 && c + STAGES - 1 < nc) {
      fetch_loader(c + STAGES - 1, (st + STAGES - 1) % STAGES);  // the stage chunk c - 1 used
    }
    __syncthreads();
    // Phase 2: O = (scaled Q·S) + P'·R (P' lower triangular: k-steps 0..mt) ...
    if (front) {
      warp_mma<NTH, Major::Row, Major::Row>(qacc, Ps, LDC, Rm, LDV, 16 * mt, n0, 0, mt + 1);
      bf16* out0 = p.out + (tc + r0) * p.ld_out + h * p.Dv;
      bf16* out1 = p.out + (tc + r1) * p.ld_out + h * p.Dv;
#pragma unroll
      for (int j = 0; j < NTH; ++j) {
        const int64_t col = j0 + n0 + 8 * j + 2 * tq;  // even, and Dv is a multiple of 4: col + 1 < Dv too
        if (col < p.Dv) {
          if (vec_out) {
            if (r0 < n) *reinterpret_cast<__nv_bfloat162*>(out0 + col) = __floats2bfloat162_rn(qacc[j][0], qacc[j][1]);
            if (r1 < n) *reinterpret_cast<__nv_bfloat162*>(out1 + col) = __floats2bfloat162_rn(qacc[j][2], qacc[j][3]);
          } else {
            if (r0 < n) out0[col] = to_bf(qacc[j][0]), out0[col + 1] = to_bf(qacc[j][1]);
            if (r1 < n) out1[col] = to_bf(qacc[j][2]), out1[col + 1] = to_bf(qacc[j][3]);
          }
        }
      }
    }
    // ... and S ← γ_n·S + W'·R; its bf16 copy is read after the next chunk's first barrier.
#pragma unroll
    for (int i = 0; i < SJ; ++i) {
      const int j = my_job[i];
      if (j < 0) continue;
      const int m0 = 16 * PAIR * (j >> 1), sn0 = (j & 1) * HB;
#pragma unroll
      for (int t = 0; t < PAIR; ++t)
#pragma unroll
        for (int nn = 0; nn < NTH; ++nn)
#pragma unroll
          for (int x = 0; x < 4; ++x) S[i][t][nn][x] *= gn;
      if constexpr (PAIR == 2) {
        warp_mma_pair<NTH, Major::Row, Major::Row>(S[i][0], S[i][1], Ws, Ws, LDC, m0, m0 + 16, Rm, LDV, sn0, 0,
                                                   kC / 16);
      } else {
        warp_mma<NTH, Major::Row, Major::Row>(S[i][0], Ws, LDC, Rm, LDV, m0, sn0, 0, kC / 16);
      }
#pragma unroll
      for (int t = 0; t < PAIR; ++t) {
        const int q0 = m0 + 16 * t + g;
#pragma unroll
        for (int nn = 0; nn < NTH; ++nn) {
          const int cc = sn0 + 8 * nn + 2 * tq;
          *reinterpret_cast<__nv_bfloat162*>(Sbf + q0 * LDV + cc) =
              __floats2bfloat162_rn(S[i][t][nn][0], S[i][t][nn][1]);
          *reinterpret_cast<__nv_bfloat162*>(Sbf + (q0 + 8) * LDV + cc) =
              __floats2bfloat162_rn(S[i][t][nn][2], S[i][t][nn][3]);
        }
      }
    }
    st = st + 1 == STAGES ? 0 : st + 1;
  }
#pragma unroll
  for (int i = 0; i < SJ; ++i) {
    const int j = my_job[i];
    if (j < 0) continue;
    const int sn0 = (j & 1) * HB;
#pragma unroll
    for (int t = 0; t < PAIR; ++t)
#pragma unroll
      for (int nn = 0; nn < NTH; ++nn)
#pragma unroll
        for (int x = 0; x < 4; ++x) {
          const int r = 16 * (PAIR * (j >> 1) + t) + g + (x >> 1) * 8, col = sn0 + 8 * nn + 2 * tq + (x & 1);
          if (r < Dk && j0 + col < p.Dv) state[int64_t(r) * p.Dv + j0 + col] = S[i][t][nn][x];
        }
  }
}

// Which of the two launches to make (gdn_chunked makes both; the benchmark times them apart).
enum Phase { kPrep = 1, kState = 2 };

template <int KP, int BV>
void launch_chunked(const GdnParams& p, const GdnChunkWork& w, bool vec, int phases, cudaStream_t stream) {
  constexpr size_t prep_smem = PrepSmem<KP>::total;
  constexpr int STAGES = state_stages<KP, BV>();
  constexpr size_t state_smem = StateSmem<KP, BV, STAGES>::total;
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(gdn_chunk_prep_kernel<KP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(prep_smem)));
    CUDA_CHECK(cudaFuncSetAttribute(gdn_chunk_state_kernel<KP, BV, STAGES>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(state_smem)));
    configured = true;
  }
  if ((phases & kPrep) && w.n_chunks > 0) {
    hyrax::cuda::launch("gdn_chunked (prep)", gdn_chunk_prep_kernel<KP>, dim3(unsigned(w.n_chunks), unsigned(p.Hv)),
                        dim3(kPrepThreads), prep_smem, stream, p, w, vec,
                        float(1.0 / std::sqrt(double(p.Dk))));  // 1/sqrt(Dk), as the recurrent kernel rounds it
  }
  if (phases & kState) {
    const dim3 grid(unsigned((p.Dv + BV - 1) / BV), unsigned(p.Hv), unsigned(p.n));
    const bool vec_out = p.ld_out % 2 == 0 && (reinterpret_cast<uintptr_t>(p.out) & 3) == 0;
    hyrax::cuda::launch("gdn_chunked (state)", gdn_chunk_state_kernel<KP, BV, STAGES>, grid, dim3(kStateThreads),
                        state_smem, stream, p, w, vec, vec_out);
  }
}

}  // namespace

GdnChunkPlan gdn_plan_chunks(const int32_t* cu_seqlens_host, const std::vector<int32_t>& seqs) {
  GdnChunkPlan plan;
  for (int32_t s : seqs) {
    plan.first_chunk.push_back(int32_t(plan.chunks.size() / 2));
    const int32_t len = cu_seqlens_host[s + 1] - cu_seqlens_host[s];
    for (int32_t off = 0; off < len; off += kC) plan.chunks.push_back(s), plan.chunks.push_back(off);
  }
  return plan;
}

size_t gdn_chunked_scratch_bytes(int64_t n_chunks, int64_t Hv, int64_t Dk) {
  const size_t rec = Dk <= 16 ? Rec<16>::bytes : Dk <= 32 ? Rec<32>::bytes : Dk <= 64 ? Rec<64>::bytes
                     : Dk <= 96 ? Rec<96>::bytes : Dk <= 128 ? Rec<128>::bytes : Rec<256>::bytes;
  return size_t(std::max<int64_t>(n_chunks, 1) * Hv) * rec;
}

static void run_chunked(const GdnParams& p, const GdnChunkWork& w, int phases, cudaStream_t stream) {
  if (p.n == 0) return;
  check_params(p);
  HYRAX_CHECK(w.first_chunk && (w.n_chunks == 0 || (w.chunks && w.scratch)), "gdn_chunked: missing chunk work");
  HYRAX_CHECK(w.n_chunks <= INT32_MAX, "gdn_chunked: ", w.n_chunks, " chunks");
  HYRAX_CHECK(w.value_slice == 0 || w.value_slice == 32 || w.value_slice == 48, "value_slice=", w.value_slice);
  const bool vec = p.ld_qkv % 8 == 0 && p.Dk % 8 == 0 && p.Dv % 8 == 0 && aligned16(p.q) && aligned16(p.k) &&
                   aligned16(p.v);
  const bool wgmma =
      vec && p.ld_out % 8 == 0 && aligned16(p.out) && p.T > 0 && p.Dv % 64 == 0 && p.Dk > 32 && p.Dk <= 128;
  if (wgmma && w.value_slice == 0) {
    if (p.Dk <= 64) {
      launch_chunked<64, 32>(p, w, vec, phases & kPrep, stream);
    } else if (p.Dk <= 96) {
      launch_chunked<96, 32>(p, w, vec, phases & kPrep, stream);
    } else {
      launch_chunked<128, 32>(p, w, vec, phases & kPrep, stream);
    }
    if (phases & kState) gdn::chunk_state_wgmma(p, w, stream);
    return;
  }
  const bool bv48 = w.value_slice ? w.value_slice == 48 : p.Dv % 48 == 0;
  if (p.Dk <= 16) return launch_chunked<16, 32>(p, w, vec, phases, stream);
  if (p.Dk <= 32) return launch_chunked<32, 32>(p, w, vec, phases, stream);
  if (p.Dk <= 64)
    return bv48 ? launch_chunked<64, 48>(p, w, vec, phases, stream) : launch_chunked<64, 32>(p, w, vec, phases, stream);
  if (p.Dk <= 96)
    return bv48 ? launch_chunked<96, 48>(p, w, vec, phases, stream) : launch_chunked<96, 32>(p, w, vec, phases, stream);
  if (p.Dk <= 128)
    return bv48 ? launch_chunked<128, 48>(p, w, vec, phases, stream)
                : launch_chunked<128, 32>(p, w, vec, phases, stream);
  return launch_chunked<256, 32>(p, w, vec, phases, stream);
}

void gdn_chunked(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream) {
  run_chunked(p, w, kPrep | kState, stream);
}
void gdn_chunked_prep(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream) {
  run_chunked(p, w, kPrep, stream);
}
void gdn_chunked_state(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream) {
  run_chunked(p, w, kState, stream);
}

}  // namespace hyrax::kernels::cuda
