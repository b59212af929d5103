// The chunked gated delta rule's state pass on warpgroup MMA (sm_90a); the prep kernel, the mma.sync state pass for
// other shapes and the dispatch are in gated_delta_rule_chunked.cu, the math at the top of that file.
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tma.h"
#include "kernels/cuda/wgmma.cuh"
#include "kernels/gated_delta_rule/gdn_chunked.cuh"

namespace hyrax::kernels::cuda::gdn {
namespace {

using namespace hyrax::cuda;

// State pass on warpgroup MMA: 32 < Dk <= 128, Dv a multiple of 64.
//
// Two warpgroups per (sequence, value head, slice of 64 state columns), working transposed:
//   warpgroup A (the recurrence; each product's A operand from its own registers):
//     (K·S)ᵀ = Sᵀ·Kᵀ                         A: Sᵀ (bf16 of the float32 slice it holds), B: the k rows as loaded
//     Rᵀ = β ⊙ (Vᵀ − γ·rk ⊙ (K·S)ᵀ)          by column (chunk row); Vᵀ by ldmatrix.trans from the v rows
//     Sᵀ ← γ_n·Sᵀ + Rᵀ·W'ᵀ                   A: Rᵀ, B: W' ([KP][64], its rows the key dims) as stored
//   warpgroup B (the outputs, a chunk behind at most), from the bf16 Sᵀ and Rᵀ that A leaves in shared memory:
//     Oᵀ = γ·rq/sqrt(Dk) ⊙ (Sᵀ·Qᵀ) + Rᵀ·P'ᵀ  A: Sᵀ, Rᵀ; B: the q rows, P' as stored
// An accumulator tile's columns 16kk .. 16kk + 15, packed to bf16, are the A fragment of k-step kk (wgmma.cuh), and
// what A stores (stmatrix) for B. One warpgroup issues a wgmma every ~80 cycles at N = 64 and ~95 at N = 96 on an
// H100, whatever the dependences, and two warpgroups on one SM each keep that rate: B's half of the products runs
// beside A's. The two hand over through named barriers (Sᵀ and Rᵀ ready; read). Outputs leave by stmatrix.trans
// into an SW128 tile and one TMA store (a chunk cut short by the sequence's end by plain stores of its rows). Each
// warpgroup has its own ring of inputs, refilled by its warps' lane 0 as soon as it is done with a stage: A's the
// k and v rows (tensor maps), W' and the row scales; B's the q rows, P' and the row scales (bulk copies from the
// record, stored as its shared-memory image). Rows past the batch read as zeros; rows of a later sequence reach only
// columns of Rᵀ set to zero and outputs not stored. Every output element sums the same products in the same order
// whatever the batch and wherever the caller split the sequence (at multiples of 64).

constexpr int kWgThreads = 256;
constexpr int kBarReady = 1, kBarFree = 2, kBarA = 3, kBarB = 4;  // named barriers (0 is __syncthreads)

template <int KP>
struct WgSmem {
  static constexpr int QP = (KP + 63) / 64;  // 64-column panels of a q or k row and of the copy of Sᵀ
  static constexpr size_t scale_bytes = 4 * kC * 4 + 16;
  // Ring A stage: k (SW128 panels), v (SW128), W' (SW128), row scales and γ_n. Ring B stage: q, P', row scales.
  static constexpr size_t ak = 0, av = QP * 8192, aW = av + 8192, aS = aW + size_t(KP) * 128;
  static constexpr size_t a_stage = (aS + scale_bytes + 1023) / 1024 * 1024;
  static constexpr size_t bq = 0, bP = QP * 8192, bS = bP + 8192, b_stage = (bS + scale_bytes + 1023) / 1024 * 1024;
  static constexpr uint32_t tx_k = QP * 8192, tx_v = 8192, tx_w = KP * 128 + uint32_t(scale_bytes), tx_q = QP * 8192,
                            tx_p = 8192 + uint32_t(scale_bytes);
  // The copy of Sᵀ ([64][KP], SW128 panels), Rᵀ ([64][64]), the output tile, mbarriers, slack to align to 1024.
  static constexpr size_t rest = QP * 8192 + 8192 + 8192 + 64 + 1024;
  static constexpr int SA = 3, SB = SA * a_stage + 3 * b_stage + rest <= 227 * 1024 ? 3 : 2;
  static constexpr size_t ring_b = SA * a_stage, St = ring_b + SB * b_stage, Rt = St + QP * 8192, out = Rt + 8192;
  static constexpr size_t bars = out + 8192, total = SA * a_stage + SB * b_stage + rest;
  static_assert(total <= 227 * 1024, "wgmma state block needs more shared memory than an SM has");
  static_assert(Rec<KP>::W == 0 && Rec<KP>::P == size_t(KP) * 128 && Rec<KP>::scale == size_t(KP + kC) * 128,
                "record layout");
};

/// Stores A fragment `a` of k-step kk (warp w's rows 16w .. 16w + 15) into a K-major SW128 tile (panels of 64
/// columns, 8 KB each), as the A operand of a shared-memory wgmma.
__device__ __forceinline__ void st_frag(unsigned char* tile, const uint32_t (&a)[4], int kk, int warp, int lane) {
  const int m = lane >> 3, row = 16 * warp + 8 * (m & 1) + (lane & 7), col8 = 2 * kk + (m >> 1);
  stmatrix_x4(tile + (col8 >> 3) * 8192 + sw128(row, col8 & 7), a);
}

template <int KP>
__global__ __launch_bounds__(kWgThreads, 1) void gdn_chunk_state_wgmma_kernel(
    GdnParams p, GdnChunkWork w, const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
    const __grid_constant__ CUtensorMap tm_v, const __grid_constant__ CUtensorMap tm_out) {
  hyrax::cuda::begin_after_previous_grids();
  using L = WgSmem<KP>;
  constexpr int SA = L::SA, SB = L::SB, KS = KP / 16;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sm =
      reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* full_a = reinterpret_cast<uint64_t*>(sm + L::bars);  // [SA]: the ring A stage's loads have landed
  uint64_t* full_b = full_a + SA;                                // [SB]

  const int i_seq = blockIdx.z, seq = p.seqs[i_seq];
  const int64_t h = blockIdx.y, hk = int(h) / int(p.Hv / p.Hk), j0 = int64_t(blockIdx.x) * 64;
  const int64_t t0 = p.cu_seqlens[seq], t1 = p.cu_seqlens[seq + 1];
  if (t0 == t1) return;
  const int nc = int((t1 - t0 + kC - 1) / kC), c_first = w.first_chunk[i_seq];
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int v0 = 16 * warp + g, v1 = v0 + 8;  // this thread's accumulator rows: state columns j0 + v0, j0 + v1
  const int Dk = int(p.Dk);
  const unsigned char* records =
      static_cast<const unsigned char*>(w.scratch) + int64_t(c_first) * p.Hv * Rec<KP>::bytes;
  auto record = [&](int c) { return records + (int64_t(c) * p.Hv + h) * Rec<KP>::bytes; };
  unsigned char* St = sm + L::St;  // bf16 Sᵀ of the chunk B works on, K-major
  unsigned char* Rt = sm + L::Rt;  // bf16 Rᵀ, K-major

  if (tid == 0) {
    for (int i = 0; i < SA; ++i) mbar_init(&full_a[i], 3);  // one arrival per requesting warp
    for (int i = 0; i < SB; ++i) mbar_init(&full_b[i], 2);
    fence_mbarrier_init();
  }
  __syncthreads();

  if (wg == 0) {
    // ---- warpgroup A: the recurrence ----
    auto issue = [&](int c) {  // lane 0 of warps 0-2: chunk c's k rows, v rows, W' and scales -> ring A
      if (lane != 0 || warp == 3) return;
      const int st = c % SA, tc = int(t0) + c * kC;
      unsigned char* base = sm + size_t(st) * L::a_stage;
      if (warp == 0) {
        mbar_arrive_expect_tx(&full_a[st], L::tx_k);
#pragma unroll
        for (int q = 0; q < L::QP; ++q) tma_load_3d(base + L::ak + q * 8192, &tm_k, 64 * q, int(hk), tc, &full_a[st]);
      } else if (warp == 1) {
        mbar_arrive_expect_tx(&full_a[st], L::tx_v);
        tma_load_3d(base + L::av, &tm_v, int(j0), int(h), tc, &full_a[st]);
      } else {
        mbar_arrive_expect_tx(&full_a[st], L::tx_w);
        bulk_load(base + L::aW, record(c) + Rec<KP>::W, KP * 128, &full_a[st]);
        bulk_load(base + L::aS, record(c) + Rec<KP>::scale, uint32_t(L::scale_bytes), &full_a[st]);
      }
    };
    for (int c = 0; c < min(SA, nc); ++c) issue(c);
    float* state = p.state + (int64_t(p.state_slots[seq]) * p.Hv + h) * p.Dk * p.Dv;
    // Sᵀ [64 state columns][KP key dims] in float32: S[4j + e] = Sᵀ[v0 + 8·(e / 2)][8j + 2tq + e % 2].
    float S[KP / 2];
#pragma unroll
    for (int j = 0; j < KP / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int k = 8 * j + 2 * tq + (e & 1);
        S[4 * j + e] = k < Dk ? state[int64_t(k) * p.Dv + j0 + (e < 2 ? v0 : v1)] : 0.0f;
      }
    float ks[32];  // (K·S)ᵀ, then Rᵀ: [64 state columns][64 chunk rows]
#pragma unroll
    for (int i = 0; i < 32; ++i) ks[i] = 0.0f;
    for (int c = 0; c < nc; ++c) {
      const unsigned char* base = sm + size_t(c % SA) * L::a_stage;
      const float* scales = reinterpret_cast<const float*>(base + L::aS);
      const int n = min(kC, int(t1 - t0) - c * kC);
      uint32_t sa[KS][4];  // Sᵀ in bf16: the A fragments of the key-dim k-steps
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) acc_a_frag(sa[kk], S, kk);
      mbar_wait(&full_a[c % SA], uint32_t(c / SA) & 1);
      {
        const uint64_t dk = sw128_desc(base + L::ak, 16, 1024);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < KS; ++kk)
          wgmma_rs<64, 0>(ks, sa[kk], dk + (uint32_t((kk >> 2) * 8192 + (kk & 3) * 32) >> 4), kk > 0);
        wgmma_commit();
      }
      // Meanwhile: Vᵀ by ldmatrix.trans (the 8×8 block of chunk rows 8j.. and state columns 16·warp + 8x.. -> this
      // thread's Vᵀ[v0 or v1][8j + 2tq ..]), and Sᵀ for warpgroup B once it has read the previous one.
      uint32_t vt[16];
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        const int m = lane >> 3, r = 8 * (j + (m >> 1)) + (lane & 7);
        uint32_t x[4];
        ldmatrix_x4_trans(x, base + L::av + sw128(r, 2 * warp + (m & 1)));
        vt[2 * j] = x[0], vt[2 * j + 1] = x[1], vt[2 * j + 2] = x[2], vt[2 * j + 3] = x[3];
      }
      if (c > 0) named_barrier_sync(kBarFree, kWgThreads);
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) st_frag(St, sa[kk], kk, warp, lane);
      wgmma_wait<0>();
      fence_regs(ks);
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) fence_regs(sa[kk]);
        // Rᵀ = β ⊙ (Vᵀ − γ·rk ⊙ (K·S)ᵀ), columns past the chunk's end zero.
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int r = 8 * j + 2 * tq;
        const float2 b = *reinterpret_cast<const float2*>(scales + 3 * kC + r);
        const float2 rs = *reinterpret_cast<const float2*>(scales + kC + r);
#pragma unroll
        for (int x = 0; x < 2; ++x) {
          const uint32_t vv = vt[2 * j + x];
          const float va = __uint_as_float(vv << 16), vb = __uint_as_float(vv & 0xffff0000u);
          ks[4 * j + 2 * x] = r < n ? b.x * (va - rs.x * ks[4 * j + 2 * x]) : 0.0f;
          ks[4 * j + 2 * x + 1] = r + 1 < n ? b.y * (vb - rs.y * ks[4 * j + 2 * x + 1]) : 0.0f;
        }
      }
      uint32_t ra[4][4];  // Rᵀ in bf16: the A fragments of the chunk-row k-steps
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        acc_a_frag(ra[kk], ks, kk);
        st_frag(Rt, ra[kk], kk, warp, lane);
      }
      fence_proxy_async();  // Sᵀ and Rᵀ are read by warpgroup B's wgmma
      named_barrier_arrive(kBarReady, kWgThreads);
      // Sᵀ ← γ_n·Sᵀ + Rᵀ·W'ᵀ
      const float gn = scales[4 * kC];
#pragma unroll
      for (int i = 0; i < KP / 2; ++i) S[i] *= gn;
      {
        const uint64_t dw = sw128_desc(base + L::aW, 16, 1024);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) wgmma_rs<KP, 0>(S, ra[kk], dw + ((kk * 32) >> 4), true);
        wgmma_commit();
        // While it runs: every warp of A is done with the previous chunk's stage; refill it.
        named_barrier_sync(kBarA, 128);
        if (c > 0 && c - 1 + SA < nc) issue(c - 1 + SA);
        wgmma_wait<0>();
        fence_regs(S);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) fence_regs(ra[kk]);
      }
    }
#pragma unroll
    for (int j = 0; j < KP / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int k = 8 * j + 2 * tq + (e & 1);
        if (k < Dk) state[int64_t(k) * p.Dv + j0 + (e < 2 ? v0 : v1)] = S[4 * j + e];
      }
    return;
  }

  // ---- warpgroup B: the outputs ----
  auto issue = [&](int c) {  // lane 0 of warps 0-1 (of B): chunk c's q rows, P' and scales -> ring B
    if (lane != 0 || warp >= 2) return;
    const int st = c % SB, tc = int(t0) + c * kC;
    unsigned char* base = sm + L::ring_b + size_t(st) * L::b_stage;
    if (warp == 0) {
      mbar_arrive_expect_tx(&full_b[st], L::tx_q);
#pragma unroll
      for (int q = 0; q < L::QP; ++q) tma_load_3d(base + L::bq + q * 8192, &tm_q, 64 * q, int(hk), tc, &full_b[st]);
    } else {
      mbar_arrive_expect_tx(&full_b[st], L::tx_p);
      bulk_load(base + L::bP, record(c) + Rec<KP>::P, 8192, &full_b[st]);
      bulk_load(base + L::bS, record(c) + Rec<KP>::scale, uint32_t(L::scale_bytes), &full_b[st]);
    }
  };
  for (int c = 0; c < min(SB, nc); ++c) issue(c);
  float o[32];  // (Q·S)ᵀ, then Oᵀ: [64 state columns][64 chunk rows]
#pragma unroll
  for (int i = 0; i < 32; ++i) o[i] = 0.0f;
  unsigned char* tile = sm + L::out;
  for (int c = 0; c < nc; ++c) {
    const unsigned char* base = sm + L::ring_b + size_t(c % SB) * L::b_stage;
    const float* scales = reinterpret_cast<const float*>(base + L::bS);
    const int tc = int(t0) + c * kC, n = min(kC, int(t1) - tc);
    mbar_wait(&full_b[c % SB], uint32_t(c / SB) & 1);
    named_barrier_sync(kBarReady, kWgThreads);  // A's Sᵀ and Rᵀ of chunk c
    {
      const uint64_t ds = sw128_desc(St, 16, 1024), dq = sw128_desc(base + L::bq, 16, 1024);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        const uint32_t off = uint32_t((kk >> 2) * 8192 + (kk & 3) * 32) >> 4;
        wgmma_ss<64, 0, 0>(o, ds + off, dq + off, kk > 0);
      }
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(o);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 os = *reinterpret_cast<const float2*>(scales + 8 * j + 2 * tq);
      o[4 * j] *= os.x, o[4 * j + 1] *= os.y, o[4 * j + 2] *= os.x, o[4 * j + 3] *= os.y;
    }
    {
      const uint64_t dr = sw128_desc(Rt, 16, 1024), dp = sw128_desc(base + L::bP, 16, 1024);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) wgmma_ss<64, 0, 0>(o, dr + ((kk * 32) >> 4), dp + ((kk * 32) >> 4), true);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(o);
    }
    if (c + 1 < nc) named_barrier_arrive(kBarFree, kWgThreads);  // A may overwrite Sᵀ and Rᵀ
    if (n == kC) {  // Oᵀ -> the output tile (free once the previous store has read it) -> one TMA store
      if (tid == 128) bulk_wait_read<0>();
      named_barrier_sync(kBarB, 128);
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        const uint32_t r[4] = {pack_bf16(o[4 * j], o[4 * j + 1]), pack_bf16(o[4 * j + 2], o[4 * j + 3]),
                               pack_bf16(o[4 * j + 4], o[4 * j + 5]), pack_bf16(o[4 * j + 6], o[4 * j + 7])};
        const int m = lane >> 3;
        stmatrix_x4_trans(tile + sw128(8 * (j + (m >> 1)) + (lane & 7), 2 * warp + (m & 1)), r);
      }
      fence_proxy_async();
    } else {
      bf16* out = p.out + int64_t(tc) * p.ld_out + h * p.Dv + j0;
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = 8 * j + 2 * tq + (e & 1);
          if (r < n) out[int64_t(r) * p.ld_out + (e < 2 ? v0 : v1)] = to_bf(o[4 * j + e]);
        }
    }
    // Every warp of B is done with this stage (and has written its part of the tile): refill it, store the tile.
    named_barrier_sync(kBarB, 128);
    if (n == kC && tid == 128) {
      tma_store_3d(&tm_out, int(j0), int(h), tc, tile);
      bulk_commit();
    }
    if (c + SB < nc) issue(c + SB);
  }
  if (tid == 128) bulk_wait<0>();
}

template <int KP>
void launch_state(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream) {
  using L = WgSmem<KP>;
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(gdn_chunk_state_wgmma_kernel<KP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(L::total)));
    configured = true;
  }
  // q, k: [T][Hk][Dk], v: [T][Hv][Dv] (rows ld_qkv apart); boxes of 64 columns x 1 head x 64 tokens.
  const uint64_t T = uint64_t(p.T), row = uint64_t(p.ld_qkv) * 2;
  const CUtensorMap tm_q = tensor_map_bf16_3d("gdn_chunked q", p.q, {uint64_t(p.Dk), uint64_t(p.Hk), T},
                                              {uint64_t(p.Dk) * 2, row}, {64, 1, 64});
  const CUtensorMap tm_k = tensor_map_bf16_3d("gdn_chunked k", p.k, {uint64_t(p.Dk), uint64_t(p.Hk), T},
                                              {uint64_t(p.Dk) * 2, row}, {64, 1, 64});
  const CUtensorMap tm_v = tensor_map_bf16_3d("gdn_chunked v", p.v, {uint64_t(p.Dv), uint64_t(p.Hv), T},
                                              {uint64_t(p.Dv) * 2, row}, {64, 1, 64});
  const CUtensorMap tm_out = tensor_map_bf16_3d("gdn_chunked out", p.out, {uint64_t(p.Dv), uint64_t(p.Hv), T},
                                                {uint64_t(p.Dv) * 2, uint64_t(p.ld_out) * 2}, {64, 1, 64});
  const dim3 grid(unsigned(p.Dv / 64), unsigned(p.Hv), unsigned(p.n));
  hyrax::cuda::launch("gdn_chunked (state, wgmma)", gdn_chunk_state_wgmma_kernel<KP>, grid, dim3(kWgThreads), L::total,
                      stream, p, w, tm_q, tm_k, tm_v, tm_out);
}

}  // namespace

void chunk_state_wgmma(const GdnParams& p, const GdnChunkWork& w, cudaStream_t stream) {
  if (p.Dk <= 64) return launch_state<64>(p, w, stream);
  if (p.Dk <= 96) return launch_state<96>(p, w, stream);
  return launch_state<128>(p, w, stream);
}

}  // namespace hyrax::kernels::cuda::gdn
