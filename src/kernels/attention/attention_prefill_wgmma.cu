// Causal attention prefill at head dim 128 on Hopper's warpgroup MMA (sm_90a), in the manner of FlashAttention-3.
//
// A block of 3 warpgroups takes items of 128 query rows of one sequence and one query head, one after another:
//   - warpgroup 0 (producer) gathers K and V tiles of kBN positions through the block table into shared memory by
//     cp.async, into a ring of kStages stages; mbarriers say when a stage's K, its V, have landed and when both
//     consumers are done with them;
//   - warpgroups 1 and 2 (consumers) own 64 query rows each: S = Q·Kᵀ by wgmma from shared memory (Q and K
//     K-major), the online softmax in float32 registers, P rounded to bf16 and O += P·V by wgmma with P from
//     registers (V N-major, as the cache stores it).
// Each consumer step ("turn") issues S of tile i and P·V of tile i - 1 together, then computes the softmax of tile i
// while its P·V runs; the two consumers take turns (named barriers), so that one's softmax overlaps the other's
// products. The cp.async data reach wgmma through the mbarriers alone, with no proxy fence per stage (as CUTLASS's
// cp.async GMMA mainloops do).
//
// The blocks are persistent, one per SM: the items, longest first (every head's before any shorter one), are dealt
// to the blocks in rounds, every other round in reverse, so that the blocks' loads even out. The key tiles of a
// block's items follow one another through the same ring, so the producer loads the next item's first tiles while
// the consumers finish the last ones.
//
// Every row visits the key tiles [0, kBN), [kBN, 2·kBN), ... (fixed to absolute positions) in increasing order up to
// the one holding the item's last row, with the same arithmetic whatever the tile it sits in: a tile wholly above a
// row adds exact zeros (its max is -inf, the rescale factor exactly 1), so a row's bits depend on its own sequence
// alone, for any chunking and any batch.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/check.h"
#include "kernels/attention/attention_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace hyrax::kernels::cuda {
namespace {

using namespace hyrax::cuda;

constexpr int kD = 128;        // head dim
constexpr int kBM = 128;       // query rows per item (64 per consumer warpgroup)
constexpr int kBN = 128;       // positions per key / value tile
constexpr int kStages = 3;     // K/V tiles in flight
constexpr int kThreads = 384;  // producer + 2 consumer warpgroups
constexpr int kProducerRegs = 56, kConsumerRegs = 224;  // 128·56 + 256·224 <= 64K registers
constexpr int kTurnBar = 3;    // named barriers kTurnBar + c: consumer c may issue its products
constexpr int kProducerBar = 5;  // named barrier of the producer warpgroup

// Shared memory (bytes), every tile in SW128 panels of 64 columns (128-byte rows, see wgmma.cuh).
constexpr int kQPanel = 64 * 128;                    // one consumer's 64 rows x 64 columns
constexpr int kQBytes = 2 * 2 * kQPanel;             // [consumer][panel]
constexpr int kKvPanel = kBN * 128;                  // kBN rows x 64 columns
constexpr int kKvStage = 2 * kKvPanel;               // [panel]
constexpr int kKOff = kQBytes;                       // K ring [stage][panel]
constexpr int kVOff = kKOff + kStages * kKvStage;    // V ring [stage][panel]
constexpr int kRowOff = kVOff + kStages * kKvStage;  // [2][kBN] int32: cache rows of the tile being loaded
constexpr int kBarOff = kRowOff + 2 * kBN * 4;       // mbarriers
constexpr int kSmemBytes = kBarOff + 4 * kStages * 8 + 1024;  // + slack to align the base to 1024
static_assert(kSmemBytes <= 227 * 1024, "shared memory per block on Hopper");

__device__ __forceinline__ void warp_arrive(uint64_t* bar) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) mbar_arrive(bar);
}

/// One item of the launch: a query tile of one sequence and one query head.
struct Item {
  int s, h, t0, row0;  // sequence, query head, its first token in the batch, the tile's first row in the sequence
  int start, rows;     // the sequence's first new position, rows of the tile (<= kBM)
  int kv_end, n_kt;    // the tile's rows attend to positions [0, kv_end), key tiles [0, n_kt)
};

/// Item k of the launch: tiles from the end of the list (the longest first), the heads of a tile consecutive.
__device__ __forceinline__ Item load_item(const AttentionParams& p, const int32_t* tiles, int n_tiles, int k) {
  Item it;
  const int tile = n_tiles - 1 - k / int(p.Hq);
  it.h = k % int(p.Hq);
  it.s = tiles[2 * tile];
  it.row0 = tiles[2 * tile + 1];
  it.t0 = p.batch.cu_seqlens[it.s];
  it.start = p.batch.start_pos[it.s];
  it.rows = min(kBM, p.batch.cu_seqlens[it.s + 1] - it.t0 - it.row0);
  it.kv_end = it.start + it.row0 + it.rows;
  it.n_kt = (it.kv_end - 1) / kBN + 1;
  return it;
}

/// The item this block takes in round r: rounds of gridDim.x items, every other one dealt in reverse.
__device__ __forceinline__ int item_of_round(int r) {
  const int b = int(blockIdx.x), n = int(gridDim.x);
  return r * n + ((r & 1) ? n - 1 - b : b);
}

__global__ __launch_bounds__(kThreads, 1) void attn_prefill_wgmma_kernel(AttentionParams p, const int32_t* tiles,
                                                                          int n_tiles, int n_items) {
  hyrax::cuda::begin_after_previous_grids();
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem =
      reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* full_k = reinterpret_cast<uint64_t*>(smem + kBarOff);  // [kStages] producer -> consumers: K landed
  uint64_t* full_v = full_k + kStages;                             // [kStages] V landed
  uint64_t* empty_k = full_v + kStages;                            // [kStages] consumers -> producer: K read
  uint64_t* empty_v = empty_k + kStages;                           // [kStages] V read

  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) {
      mbar_init(&full_k[i], 128);  // one cp.async arrival per producer thread
      mbar_init(&full_v[i], 128);
      mbar_init(&empty_k[i], 8);  // one arrival per consumer warp
      mbar_init(&empty_v[i], 8);
    }
  }
  __syncthreads();

  if (threadIdx.x < 128) {
    // ---- producer ----
    setmaxnreg_dec<kProducerRegs>();
    // Thread t looks up the cache row of the tile's position t (one table read, fetched a tile ahead, and one
    // division) into shared memory; then each thread copies one 16-byte chunk of rows r0, r0 + 8, ... (16 threads
    // cover a row's 256 bytes).
    int32_t* prow_s = reinterpret_cast<int32_t*>(smem + kRowOff);  // [2][kBN] cache rows of a tile, -1 past the end
    const int chunk = threadIdx.x & 15, r0 = threadIdx.x >> 4;
    const uint32_t dst0 = uint32_t(chunk >> 3) * kKvPanel + sw128(r0, chunk & 7);  // row r0 + 8i: + i·1024
    const int64_t row_stride = p.kv.Hkv * kD;
    const int bs = int(p.kv.block_size);
    int g = 0;  // key tiles loaded so far: the ring's position
#pragma unroll 1
    for (int r = 0;; ++r) {
      const int k = item_of_round(r);
      if (k >= n_items) break;
      const Item it = load_item(p, tiles, n_tiles, k);
      const int64_t hk = it.h / (p.Hq / p.kv.Hkv);
      const int32_t* table = p.kv.block_tables + int64_t(it.s) * p.kv.max_blocks_per_seq;
      const bf16* kbase = p.kv.k + hk * kD + chunk * 8;
      const bf16* vbase = p.kv.v + hk * kD + chunk * 8;
      int blk = int(threadIdx.x) < it.kv_end ? table[int(threadIdx.x) / bs] : 0;
#pragma unroll 1
      for (int kt = 0; kt < it.n_kt; ++kt, ++g) {
        const int st = g % kStages;
        const uint32_t par = ((g / kStages) - 1) & 1;  // the phase that freed this stage
        const int pos = kt * kBN + int(threadIdx.x);
        int32_t* pr = prow_s + (g & 1) * kBN;
        pr[threadIdx.x] = pos < it.kv_end ? blk * bs + pos % bs : -1;
        blk = pos + kBN < it.kv_end ? table[(pos + kBN) / bs] : 0;
        named_barrier_sync(kProducerBar, 128);
        int prow[kBN / 8];
#pragma unroll
        for (int i = 0; i < kBN / 8; ++i) prow[i] = pr[r0 + 8 * i];
        unsigned char* ks = smem + kKOff + st * kKvStage + dst0;
        unsigned char* vs = smem + kVOff + st * kKvStage + dst0;
        if (g >= kStages) mbar_wait(&empty_k[st], par);
#pragma unroll
        for (int i = 0; i < kBN / 8; ++i)
          cp_async16(ks + i * 1024, kbase + max(prow[i], 0) * row_stride, prow[i] >= 0 ? 16 : 0);
        mbar_arrive_cp_async(&full_k[st]);
        if (g >= kStages) mbar_wait(&empty_v[st], par);
#pragma unroll
        for (int i = 0; i < kBN / 8; ++i)
          cp_async16(vs + i * 1024, vbase + max(prow[i], 0) * row_stride, prow[i] >= 0 ? 16 : 0);
        mbar_arrive_cp_async(&full_v[st]);
      }
    }
    cp_async_wait_all();
    return;
  }

  // ---- consumers ----
  setmaxnreg_inc<kConsumerRegs>();
  const int c = threadIdx.x / 128 - 1, wt = threadIdx.x & 127, warp = wt >> 5, lane = wt & 31;
  const int g = lane >> 2, tq = lane & 3;

  // Q: this warpgroup's 64 rows of an item into its two panels (rows past the sequence zero-filled).
  unsigned char* qs = smem + c * 2 * kQPanel;
  auto load_q = [&](const Item& it) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int idx = wt + 128 * i, r = idx >> 4, chunk = idx & 15, row = 64 * c + r;
      const int64_t t = int64_t(it.t0) + it.row0 + min(row, it.rows - 1);
      const bf16* src = p.q + t * p.ldq + int64_t(it.h) * kD + chunk * 8;
      cp_async16(qs + (chunk >> 3) * kQPanel + sw128(r, chunk & 7), src, row < it.rows ? 16 : 0);
    }
    cp_async_commit();
  };
  auto q_landed = [&] {
    cp_async_wait<0>();
    fence_proxy_async();
    named_barrier_sync(1 + c, 128);
  };
  Item it = load_item(p, tiles, n_tiles, item_of_round(0));
  load_q(it);
  q_landed();
  if (c == 0) named_barrier_arrive(kTurnBar, 256);  // consumer 0 takes the first turn

  const float sl2 = p.scale * 1.4426950408889634f;  // scores in log2 units (scale > 0)
  const uint64_t desc_q = sw128_desc(qs, 16, 1024);
  int base = 0;  // key tiles of the block's earlier items: the ring's position
#pragma unroll 1
  for (int round = 0;; ++round) {
    const int k_next = item_of_round(round + 1);
    const bool more = k_next < n_items;
    Item next = it;
    if (more) next = load_item(p, tiles, n_tiles, k_next);  // its loads land during this item
    const int n_kt = it.n_kt;
    const int qpos0 = it.start + it.row0 + 64 * c + 16 * warp;  // the warp's first row
    const int qpos[2] = {qpos0 + g, qpos0 + g + 8};
    float m[2] = {-INFINITY, -INFINITY};  // running max of the raw scores
    float l[2] = {0.0f, 0.0f};            // this thread's part of the running sum (its 4 lanes added at the end)
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
    uint32_t pa[kBN / 16][4];  // P of the previous tile in bf16: the A fragments of its 8 k-steps

    // Turn i issues S of tile i (i < n_kt) and P·V of tile i - 1 (i >= 1), then computes the softmax of tile i while
    // P·V runs. Both consumers take every tile of the item (a tile above all of a consumer's rows adds exact zeros).
    auto turn = [&](int i, auto with_s, auto with_pv) {
      constexpr bool kS = decltype(with_s)::value, kPV = decltype(with_pv)::value;
      const int gs = base + i, gp = base + i - 1;  // the tiles' places in the ring
      const int st = gs % kStages, stp = gp % kStages;
      const uint32_t par = (gs / kStages) & 1, parp = (gp / kStages) & 1;
      float sc[64];

      named_barrier_sync(kTurnBar + c, 256);
      if constexpr (kS) {  // S = Q·Kᵀ [64 x kBN]: 8 k-steps of 16 over the head dim, 4 per 64-column panel
        mbar_wait(&full_k[st], par);
        const uint64_t desc_k = sw128_desc(smem + kKOff + st * kKvStage, 16, 1024);
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < kD / 16; ++k) {
          const int step = (k & 3) * 32;  // bytes into the 128-byte row
          wgmma_ss<128, 0, 0>(sc, desc_q + (((k >> 2) * kQPanel + step) >> 4),
                              desc_k + (((k >> 2) * kKvPanel + step) >> 4), k > 0);
        }
        wgmma_commit();
      }
      if constexpr (kPV) {  // O += P·V: k-step kk reads V rows 16kk .. 16kk + 15 (2 KB into each panel)
        mbar_wait(&full_v[stp], parp);
        const uint64_t desc_v = sw128_desc(smem + kVOff + stp * kKvStage, kKvPanel, 1024);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) wgmma_rs<128, 1>(o, pa[kk], desc_v + ((kk * 16 * 128) >> 4), true);
        wgmma_commit();
      }
      // The other consumer's turn; consumer 1's last turn of the block hands none on.
      if (!(c == 1 && i == n_kt && !more)) named_barrier_arrive(kTurnBar + (1 - c), 256);
      float corr[2];
      if constexpr (kS) {
        if constexpr (kPV) wgmma_wait<1>();
        else wgmma_wait<0>();
        fence_regs(sc);
        warp_arrive(&empty_k[st]);

        // Online softmax in float32. Positions above a row's own are -inf (only tiles reaching past the warp's first
        // row need the mask); the max is taken on raw scores (the scale is positive, so it commutes with rounding).
        if (i * kBN + kBN - 1 > qpos0) {
#pragma unroll
          for (int j = 0; j < 16; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              if (i * kBN + 8 * j + 2 * tq + (e & 1) > qpos[e >> 1]) sc[4 * j + e] = -INFINITY;
        }
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < 16; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], sc[4 * j + e]);
        float ms[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
          mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
          const float m_new = fmaxf(m[r], mx[r]);
          corr[r] = m_new == m[r] ? 1.0f : fast_exp2((m[r] - m_new) * sl2);
          ms[r] = m_new == -INFINITY ? 0.0f : m_new * sl2;
          m[r] = m_new;
        }
        float rs[2] = {0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 16; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float pv = fast_exp2(fmaf(sc[4 * j + e], sl2, -ms[e >> 1]));
            sc[4 * j + e] = pv;
            rs[e >> 1] += pv;
          }
#pragma unroll
        for (int r = 0; r < 2; ++r) l[r] = l[r] * corr[r] + rs[r];
      }
      if constexpr (kPV) {
        wgmma_wait<0>();
        fence_regs(o);
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) fence_regs(pa[kk]);
        warp_arrive(&empty_v[stp]);
      }
      if constexpr (kS) {
        if (corr[0] != 1.0f || corr[1] != 1.0f) {  // most tiles leave the max alone: skip the exact no-op
#pragma unroll
          for (int j = 0; j < 16; ++j) {
            o[4 * j + 0] *= corr[0];
            o[4 * j + 1] *= corr[0];
            o[4 * j + 2] *= corr[1];
            o[4 * j + 3] *= corr[1];
          }
        }
        // P in bf16: the score accumulators of columns 16kk .. 16kk + 15 are the A fragment of k-step kk.
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) {
          acc_a_frag(pa[kk], sc, kk);
        }
      }
    };
    using yes = std::true_type;
    using no = std::false_type;
    turn(0, yes{}, no{});
#pragma unroll 1
    for (int i = 1; i < n_kt; ++i) turn(i, yes{}, yes{});
    turn(n_kt, no{}, yes{});

    // The Q panels are free (every warp passed its last turn's barrier after its last S): the next item's Q loads
    // while this one's output is stored.
    if (more) load_q(next);

    // O / l, rounded to bf16; rows past the sequence are not stored.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = 64 * c + 16 * warp + g + 8 * r;
      float lt = l[r] + __shfl_xor_sync(0xffffffffu, l[r], 1);
      lt += __shfl_xor_sync(0xffffffffu, lt, 2);
      if (row >= it.rows) continue;
      const float inv = 1.0f / lt;
      bf16* dst = p.out + (int64_t(it.t0) + it.row0 + row) * p.ldo + int64_t(it.h) * kD;
#pragma unroll
      for (int j = 0; j < 16; ++j)
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j + 2 * tq) =
            __floats2bfloat162_rn(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
    }
    if (!more) break;
    q_landed();
    base += n_kt;
    it = next;
  }
}

}  // namespace

void attention_prefill_d128_wgmma(const AttentionParams& p, const int32_t* tiles, int64_t n_tiles,
                                  cudaStream_t stream) {
  HYRAX_CHECK(p.kv.D == kD, "attention_prefill_d128_wgmma: head dim D=", p.kv.D);
  HYRAX_CHECK(p.scale > 0.0f, "attention_prefill at head dim 128 needs a positive scale, got ", p.scale);
  HYRAX_CHECK(n_tiles <= INT32_MAX, "attention_prefill: ", n_tiles, " tiles");
  HYRAX_CHECK(n_tiles * p.Hq <= INT32_MAX, "attention_prefill: ", n_tiles, " tiles x ", p.Hq, " heads");
  static int n_sms = 0;  // one persistent block per SM
  if (n_sms == 0) {
    CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    kSmemBytes));
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&n_sms, cudaDevAttrMultiProcessorCount, dev));
  }
  const int n_items = int(n_tiles * p.Hq);
  const unsigned grid = unsigned(std::min(n_items, n_sms));
  hyrax::cuda::launch("attention_prefill (wgmma, D=128)", attn_prefill_wgmma_kernel, dim3(grid), dim3(kThreads),
                      kSmemBytes, stream, p, tiles, int(n_tiles), n_items);
}

}  // namespace hyrax::kernels::cuda
