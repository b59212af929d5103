// Paged attention on the GPU.
//
// Prefill (flash attention, mma.sync; head dim 128 runs on wgmma instead, attention_prefill_wgmma.cu): a block of
// 4 warps takes 128 query rows (64 at head dim 256) of one sequence and one query head;
// K and V tiles of 64 positions stream through shared memory (cp.async, double-buffered, gathered through the
// block table) in increasing position order; scores, the running max and sum stay in float32; P is rounded to bf16
// for the P·V product. Positions above a row's own are masked, so a row's bits depend only on its own sequence.
//
// Decode: one query row per sequence. Its cache is cut into parts of kDecodePart positions (a cut that depends
// only on the sequence's length); a block per (head, sequence) and slot of a fixed-width grid computes parts of
// it (each part's max, sum and weighted values), and a second kernel merges the parts in order.
#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "kernels/attention/attention_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"

namespace hyrax::kernels::cuda {
namespace {

using namespace hyrax::cuda;

__device__ __forceinline__ int64_t kv_offset(const PagedKv& kv, int s, int64_t pos, int64_t hk) {
  const int64_t block = kv.block_tables[int64_t(s) * kv.max_blocks_per_seq + pos / kv.block_size];
  return ((block * kv.block_size + pos % kv.block_size) * kv.Hkv + hk) * kv.D;
}

// ---- cache write ---------------------------------------------------------------------------------------------

template <int V>
__global__ void kv_write_kernel(AttnBatch b, const bf16* k, int64_t ldk, const bf16* v, int64_t ldv, PagedKv kv) {
  hyrax::cuda::begin_after_previous_grids();
  const int64_t row = kv.Hkv * kv.D, per_tok = row / V, n = b.T * per_tok;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / per_tok, r = (e % per_tok) * V;
    const int s = b.tok_seq[t];
    const int64_t pos = b.start_pos[s] + (t - b.cu_seqlens[s]);
    const int64_t dst = kv_offset(kv, s, pos, 0) + r;
    if constexpr (V == 8) {
      *reinterpret_cast<uint4*>(kv.k + dst) = *reinterpret_cast<const uint4*>(k + t * ldk + r);
      *reinterpret_cast<uint4*>(kv.v + dst) = *reinterpret_cast<const uint4*>(v + t * ldv + r);
    } else {
      kv.k[dst] = k[t * ldk + r];
      kv.v[dst] = v[t * ldv + r];
    }
  }
}

// ---- prefill ---------------------------------------------------------------------------------------------------

constexpr int kBN = 64, kPrefillThreads = 128;

// Each of the 4 warps owns MT m-tiles (16 query rows each): two below head dim 256, so that every K and V fragment
// loaded from shared memory feeds two products; one at 256, where two would not fit in registers.
template <int D>
constexpr int prefill_mt() {
  return D <= 128 ? 2 : 1;
}
template <int D>
constexpr int prefill_rows() {
  return 64 * prefill_mt<D>();
}
template <int D>
constexpr size_t prefill_smem() {
  return size_t(prefill_rows<D>() + 4 * kBN) * (D + 8) * sizeof(bf16);
}

template <int D>
__global__ __launch_bounds__(kPrefillThreads) void attn_prefill_kernel(AttentionParams p, const int32_t* tiles) {
  hyrax::cuda::begin_after_previous_grids();
  constexpr int MT = prefill_mt<D>(), BM = prefill_rows<D>();
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int LD = D + 8, CPR = D / 8;  // row stride in elements; 16-byte chunks per row
  bf16* Qs = reinterpret_cast<bf16*>(smem);  // [BM][LD]
  bf16* Ks = Qs + BM * LD;                   // [2][kBN][LD]
  bf16* Vs = Ks + 2 * kBN * LD;              // [2][kBN][LD]

  const int s = tiles[2 * blockIdx.x], row0 = tiles[2 * blockIdx.x + 1];
  const int64_t h = blockIdx.y, hk = h / (p.Hq / p.kv.Hkv);
  const int64_t t0 = p.batch.cu_seqlens[s];
  const int n_new = p.batch.cu_seqlens[s + 1] - int(t0);
  const int64_t start = p.batch.start_pos[s];
  const int rows = min(BM, n_new - row0);
  const int64_t kv_end = start + row0 + rows;  // the tile's rows attend to positions [0, kv_end)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;

  for (int i = threadIdx.x; i < BM * CPR; i += kPrefillThreads) {
    const int r = i / CPR, c = (i % CPR) * 8;
    const bf16* src = p.q + (t0 + row0 + min(r, rows - 1)) * p.ldq + h * D + c;
    cp_async16(Qs + r * LD + c, src, r < rows ? 16 : 0);
  }
  auto load_kv = [&](int kt, int buf) {
    for (int i = threadIdx.x; i < kBN * CPR; i += kPrefillThreads) {
      const int r = i / CPR, c = (i % CPR) * 8;
      const int64_t pos = int64_t(kt) * kBN + r;
      const bool ok = pos < kv_end;
      const int64_t off = kv_offset(p.kv, s, ok ? pos : 0, hk) + c;
      cp_async16(Ks + (buf * kBN + r) * LD + c, p.kv.k + off, ok ? 16 : 0);
      cp_async16(Vs + (buf * kBN + r) * LD + c, p.kv.v + off, ok ? 16 : 0);
    }
  };
  load_kv(0, 0);
  cp_async_commit();

  const int n_kt = int((kv_end - 1) / kBN) + 1;
  const float sl2 = p.scale * 1.4426950408889634f;  // scores in log2 units
  int qpos[MT][2];  // positions fit in int32 (block tables are int32 too)
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int r = 0; r < 2; ++r) qpos[mi][r] = int(start) + row0 + 16 * (MT * warp + mi) + g + 8 * r;
  float m[MT][2], l[MT][2];
  float o[MT][D / 8][4];
#pragma unroll
  for (int mi = 0; mi < MT; ++mi) {
    m[mi][0] = m[mi][1] = -INFINITY;
    l[mi][0] = l[mi][1] = 0.0f;
    zero_acc(o[mi]);
  }

  for (int kt = 0; kt < n_kt; ++kt) {
    if (kt + 1 < n_kt) {
      load_kv(kt + 1, (kt + 1) & 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* Kb = Ks + (kt & 1) * kBN * LD;
    const bf16* Vb = Vs + (kt & 1) * kBN * LD;

    // S = Q·Kᵀ: each K fragment serves all MT m-tiles.
    float sc[MT][kBN / 8][4];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi) zero_acc(sc[mi]);
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) load_a<Major::Row>(a[mi], Qs, LD, 16 * (MT * warp + mi), ks * 16);
#pragma unroll
      for (int j = 0; j < kBN / 8; j += 2) {
        uint32_t b[4];
        load_b2<Major::Col>(b, Kb, LD, ks * 16, j * 8);
#pragma unroll
        for (int mi = 0; mi < MT; ++mi) {
          mma_bf16(sc[mi][j], a[mi], b[0], b[1]);
          mma_bf16(sc[mi][j + 1], a[mi], b[2], b[3]);
        }
      }
    }

    // Online softmax in float32, per row (a row's four lanes share it through two butterflies).
    // Tiles wholly at or below every row of this warp need no mask.
    const bool unmasked = kt * kBN + kBN - 1 <= qpos[0][0];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi) {
      float mt[2] = {-INFINITY, -INFINITY};
      if (unmasked) {
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            sc[mi][j][e] *= sl2;
            mt[e >> 1] = fmaxf(mt[e >> 1], sc[mi][j][e]);
          }
      } else {
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int kpos = kt * kBN + j * 8 + 2 * tq + (e & 1);
            const float v = kpos <= qpos[mi][e >> 1] ? sc[mi][j][e] * sl2 : -INFINITY;
            sc[mi][j][e] = v;
            mt[e >> 1] = fmaxf(mt[e >> 1], v);
          }
      }
      float corr[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
        mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
        const float m_new = fmaxf(m[mi][r], mt[r]);
        corr[r] = m_new == -INFINITY ? 1.0f : fast_exp2(m[mi][r] - m_new);
        m[mi][r] = m_new;
      }
      float rs[2] = {0.0f, 0.0f};
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e >> 1;
          const float pv = m[mi][r] == -INFINITY ? 0.0f : fast_exp2(sc[mi][j][e] - m[mi][r]);
          sc[mi][j][e] = pv;
          rs[r] += pv;
        }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        rs[r] += __shfl_xor_sync(0xffffffffu, rs[r], 1);
        rs[r] += __shfl_xor_sync(0xffffffffu, rs[r], 2);
        l[mi][r] = l[mi][r] * corr[r] + rs[r];
      }
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        o[mi][j][0] *= corr[0];
        o[mi][j][1] *= corr[0];
        o[mi][j][2] *= corr[1];
        o[mi][j][3] *= corr[1];
      }
    }
    // O += P·V: the score accumulators of n-tiles 2kk, 2kk+1 are exactly the A fragment of k-step kk; each V
    // fragment serves all MT m-tiles.
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        a[mi][0] = pack_bf16(sc[mi][2 * kk][0], sc[mi][2 * kk][1]);
        a[mi][1] = pack_bf16(sc[mi][2 * kk][2], sc[mi][2 * kk][3]);
        a[mi][2] = pack_bf16(sc[mi][2 * kk + 1][0], sc[mi][2 * kk + 1][1]);
        a[mi][3] = pack_bf16(sc[mi][2 * kk + 1][2], sc[mi][2 * kk + 1][3]);
      }
#pragma unroll
      for (int j = 0; j < D / 8; j += 2) {
        uint32_t b[4];
        load_b2<Major::Row>(b, Vb, LD, kk * 16, j * 8);
#pragma unroll
        for (int mi = 0; mi < MT; ++mi) {
          mma_bf16(o[mi][j], a[mi], b[0], b[1]);
          mma_bf16(o[mi][j + 1], a[mi], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // this buffer is refilled two tiles later
  }

#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = 16 * (MT * warp + mi) + g + 8 * r;
      if (row >= rows) continue;
      const float inv = 1.0f / l[mi][r];
      bf16* dst = p.out + (t0 + row0 + row) * p.ldo + h * D;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        *reinterpret_cast<__nv_bfloat162*>(dst + j * 8 + 2 * tq) =
            __floats2bfloat162_rn(o[mi][j][2 * r] * inv, o[mi][j][2 * r + 1] * inv);
      }
    }
}

template <int D>
void launch_prefill(const AttentionParams& p, const int32_t* tiles, int64_t n_tiles, cudaStream_t stream) {
  constexpr size_t smem = prefill_smem<D>();
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured = true;
  }
  hyrax::cuda::launch("attention_prefill", attn_prefill_kernel<D>, dim3(unsigned(n_tiles), unsigned(p.Hq)),
                      dim3(kPrefillThreads), smem, stream, p, tiles);
}

// ---- decode ------------------------------------------------------------------------------------------------------

constexpr int64_t kDecodeBlocks = 8192;  // blocks a decode launch aims at (those past a sequence's length exit at
                                         // once). H200, B = 32 at 8k, 256-thread blocks: 4096 to 16384 within 1%

// One block per (query head, listed sequence) and slot x of the grid's first dimension; the block computes the
// parts x, x + gridDim.x, ... of its sequence's cache, each exactly as a block of its own would (the grid's width
// changes which block computes a part, never its bits). G lanes (a power of two, G·8 >= D) share one cache row, 8
// elements (16 bytes) each. The block's T threads form NG = T / G row groups (row j of a part belongs to group
// j % NG); each runs a flash-decoding online softmax over its rows, U rows a pass with their K and V loads in flight
// together and no barrier, and at the part's end the groups' (max, sum, weighted values) are merged in group order.
// Scores are kept in the log2 domain (q is scaled by scale·log2 e).
template <int G, int U, int T>
__global__ __launch_bounds__(T) void attn_decode_kernel(AttentionParams p, const int32_t* seqs, int64_t max_parts,
                                                        float* scratch) {
  hyrax::cuda::begin_after_previous_grids();
  constexpr int NG = T / G, RPL = int(kDecodePart) / T;
  static_assert(U % RPL == 0 && U <= RPL * G, "a pass's rows must come from whole lanes of the row index");
  __shared__ float ored[NG][G * 8];
  __shared__ float gm[NG], gl[NG];
  const int i = blockIdx.z;
  const int64_t h = blockIdx.y;
  const int s = seqs[i];
  const int64_t t = p.batch.cu_seqlens[s], kv_len = p.batch.start_pos[s] + 1;
  if (int64_t(blockIdx.x) * kDecodePart >= kv_len) return;
  const int D = int(p.kv.D);
  const int64_t hk = h / (p.Hq / p.kv.Hkv), bs = p.kv.block_size, row_stride = p.kv.Hkv * D;
  const int grp = threadIdx.x / G, li = threadIdx.x % G;
  const bool active = li * 8 < D;
  const int32_t* table = p.kv.block_tables + int64_t(s) * p.kv.max_blocks_per_seq;

  const float qscale = p.scale * 1.4426950408889634f;  // log2 e
  float qv[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) qv[e] = active ? to_f(p.q[t * p.ldq + h * D + li * 8 + e]) * qscale : 0.0f;
  const bf16* kbase = p.kv.k + hk * D + li * 8;
  const bf16* vbase = p.kv.v + hk * D + li * 8;

  for (int64_t part = blockIdx.x; part * kDecodePart < kv_len; part += gridDim.x) {
    const int64_t p0 = part * kDecodePart;
    const int np = int(min(kv_len, p0 + kDecodePart) - p0);

    // The cache row of each of the group's rows: group-local row r = lane·RPL + e is part row (r / U)·U·NG +
    // (r % U)·NG + grp; -1 past the sequence's length.
    int crow[RPL];
#pragma unroll
    for (int e = 0; e < RPL; ++e) {
      const int r = li * RPL + e, j = (r / U) * U * NG + (r % U) * NG + grp;
      const int64_t pos = p0 + j;
      crow[e] = j < np ? int(int64_t(table[pos / bs]) * bs + pos % bs) : -1;
    }

    float m = -INFINITY, l = 0.0f, acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k * U * NG < np; ++k) {
      int row[U];
      uint4 kr[U], vr[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        row[u] = __shfl_sync(0xffffffffu, crow[u % RPL], k * (U / RPL) + u / RPL, G);
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
        if (row[u] >= 0 && active) {
          kr[u] = *reinterpret_cast<const uint4*>(kbase + int64_t(row[u]) * row_stride);
          vr[u] = *reinterpret_cast<const uint4*>(vbase + int64_t(row[u]) * row_stride);
        }
      }
      float sc[U], mx = m;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const bf16* k8 = reinterpret_cast<const bf16*>(&kr[u]);
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot = fmaf(qv[e], to_f(k8[e]), dot);
#pragma unroll
        for (int o = G / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        sc[u] = row[u] >= 0 ? dot : -INFINITY;
        mx = fmaxf(mx, sc[u]);
      }
      const float mref = mx == -INFINITY ? 0.0f : mx;  // no row of the group's so far lies within the sequence
      const float corr = fast_exp2(m - mref);
      m = mx;
      l *= corr;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] *= corr;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const float w = fast_exp2(sc[u] - mref);
        l += w;
        const bf16* v8 = reinterpret_cast<const bf16*>(&vr[u]);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] = fmaf(w, to_f(v8[e]), acc[e]);
      }
    }

    if (active) {
#pragma unroll
      for (int e = 0; e < 8; ++e) ored[grp][li * 8 + e] = acc[e];
    }
    if (li == 0) gm[grp] = m, gl[grp] = l;
    __syncthreads();
    float M = -INFINITY;
#pragma unroll
    for (int g = 0; g < NG; ++g) M = fmaxf(M, gm[g]);  // group 0 holds the part's first row: M is finite
    float* dst = scratch + ((int64_t(i) * p.Hq + h) * max_parts + part) * (D + 2);
    for (int d = threadIdx.x; d < D; d += T) {
      float o = 0.0f;
      for (int g = 0; g < NG; ++g) o = fmaf(ored[g][d], fast_exp2(gm[g] - M), o);
      dst[d] = o;
    }
    if (threadIdx.x == 0) {
      float L = 0.0f;
      for (int g = 0; g < NG; ++g) L = fmaf(gl[g], fast_exp2(gm[g] - M), L);
      dst[D] = M;
      dst[D + 1] = L;
    }
    __syncthreads();  // the next part reuses ored, gm and gl
  }
}

// Merges a sequence's parts in part order (maxima in the log2 domain, as the parts wrote them).
__global__ void attn_decode_merge_kernel(AttentionParams p, const int32_t* seqs, int64_t max_parts,
                                         const float* scratch) {
  hyrax::cuda::begin_after_previous_grids();
  const int i = blockIdx.y;
  const int64_t h = blockIdx.x;
  const int s = seqs[i];
  const int64_t t = p.batch.cu_seqlens[s], kv_len = p.batch.start_pos[s] + 1;
  const int n_parts = int((kv_len + kDecodePart - 1) / kDecodePart);
  const int D = int(p.kv.D);
  const float* base = scratch + (int64_t(i) * p.Hq + h) * max_parts * (D + 2);
  float M = -INFINITY;
  for (int q = 0; q < n_parts; ++q) M = fmaxf(M, base[q * (D + 2) + D]);
  float L = 0.0f;
  for (int q = 0; q < n_parts; ++q) L = fmaf(base[q * (D + 2) + D + 1], fast_exp2(base[q * (D + 2) + D] - M), L);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.0f;
    for (int q = 0; q < n_parts; ++q) o = fmaf(base[q * (D + 2) + d], fast_exp2(base[q * (D + 2) + D] - M), o);
    p.out[t * p.ldo + h * D + d] = to_bf(o / L);
  }
}

// The part kernel for D's lanes per cache row. Head dims 72 ... 128 (the 7B's 128) run 256 threads, 4 rows a pass
// (H200, B = 32 at 8k: 0.92 ms; 128 threads: 0.93 ms with 4 rows, 0.96 with 8, 1.18 with 16); the others 128
// threads, 8 rows a pass (4 where a group has only 4).
void launch_decode_parts(const AttentionParams& p, const int32_t* seqs, int64_t max_parts, float* scratch, dim3 grid,
                         cudaStream_t stream) {
  const int64_t D = p.kv.D;
  auto go = [&](auto kernel, unsigned threads) {
    hyrax::cuda::launch("attention_decode", kernel, grid, dim3(threads), 0, stream, p, seqs, max_parts, scratch);
  };
  if (D <= 8) go(attn_decode_kernel<1, 4, 128>, 128);
  else if (D <= 16) go(attn_decode_kernel<2, 8, 128>, 128);
  else if (D <= 32) go(attn_decode_kernel<4, 8, 128>, 128);
  else if (D <= 64) go(attn_decode_kernel<8, 8, 128>, 128);
  else if (D <= 128) go(attn_decode_kernel<16, 4, 256>, 256);
  else go(attn_decode_kernel<32, 8, 128>, 128);
}

void check_params(const AttentionParams& p) {
  HYRAX_CHECK(p.q && p.out && p.kv.k && p.kv.v && p.kv.block_tables, "attention: null pointer");
  HYRAX_CHECK(p.kv.Hkv > 0 && p.Hq % p.kv.Hkv == 0, "query heads Hq=", p.Hq, " not a multiple of kv heads Hkv=",
              p.kv.Hkv);
  HYRAX_CHECK(p.kv.D > 0 && p.kv.D % 8 == 0 && p.kv.D <= 256, "attention head dim D=", p.kv.D,
              " (multiples of 8 up to 256)");
  HYRAX_CHECK(p.ldq >= p.Hq * p.kv.D && p.ldo >= p.Hq * p.kv.D, "attention row strides ldq=", p.ldq, " ldo=", p.ldo);
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

void kv_cache_write(const AttnBatch& b, const __nv_bfloat16* k, int64_t ldk, const __nv_bfloat16* v, int64_t ldv,
                    const PagedKv& kv, cudaStream_t stream) {
  if (b.T == 0) return;
  HYRAX_CHECK(k && v && kv.k && kv.v && kv.block_tables && b.tok_seq, "kv_cache_write: null pointer");
  HYRAX_CHECK(ldk >= kv.Hkv * kv.D && ldv >= kv.Hkv * kv.D, "kv_cache_write: row strides ldk=", ldk, " ldv=", ldv);
  const int64_t row = kv.Hkv * kv.D;
  const bool vec = kv.D % 8 == 0 && ldk % 8 == 0 && ldv % 8 == 0 && aligned16(k) && aligned16(v) && aligned16(kv.k) &&
                   aligned16(kv.v);
  const int64_t n = b.T * (vec ? row / 8 : row);
  const int threads = 256;
  const unsigned blocks = unsigned(std::min<int64_t>((n + threads - 1) / threads, 132 * 16));
  hyrax::cuda::launch("kv_cache_write", vec ? kv_write_kernel<8> : kv_write_kernel<1>, dim3(blocks), dim3(threads), 0,
                      stream, b, k, ldk, v, ldv, kv);
}

void attention_prefill(const AttentionParams& p, const int32_t* tiles, int64_t n_tiles, cudaStream_t stream) {
  if (n_tiles == 0) return;
  check_params(p);
  HYRAX_CHECK(tiles, "attention_prefill: null tile list");
  HYRAX_CHECK(p.ldq % 8 == 0 && aligned16(p.q) && aligned16(p.kv.k) && aligned16(p.kv.v),
              "attention_prefill needs 16-byte aligned q rows and cache");
  HYRAX_CHECK(n_tiles <= INT32_MAX && p.Hq <= 65535, "attention_prefill: grid ", n_tiles, " x ", p.Hq);
  switch (p.kv.D) {
    case 16: return launch_prefill<16>(p, tiles, n_tiles, stream);
    case 32: return launch_prefill<32>(p, tiles, n_tiles, stream);
    case 64: return launch_prefill<64>(p, tiles, n_tiles, stream);
    case 96: return launch_prefill<96>(p, tiles, n_tiles, stream);
    case 128: return attention_prefill_d128_wgmma(p, tiles, n_tiles, stream);
    case 256: return launch_prefill<256>(p, tiles, n_tiles, stream);
    default: fail("attention_prefill: unsupported head dim D=", p.kv.D, " (supported: 16, 32, 64, 96, 128, 256)");
  }
}

int64_t attention_prefill_tile_rows(int64_t D) { return D <= 128 ? 128 : 64; }

int64_t attention_decode_scratch(int64_t n, int64_t Hq, int64_t D, int64_t max_kv) {
  const int64_t parts = (max_kv + kDecodePart - 1) / kDecodePart;
  return n * Hq * parts * (D + 2);
}

void attention_decode(const AttentionParams& p, const int32_t* seqs, int64_t n, int64_t max_kv, float* scratch,
                      cudaStream_t stream) {
  if (n == 0) return;
  check_params(p);
  HYRAX_CHECK(seqs && scratch, "attention_decode: null pointer");
  HYRAX_CHECK(aligned16(p.kv.k) && aligned16(p.kv.v), "attention_decode needs a 16-byte aligned cache");
  HYRAX_CHECK(n <= 65535 && p.Hq <= 65535, "attention_decode: ", n, " sequences x ", p.Hq, " heads");
  const int64_t max_parts = (max_kv + kDecodePart - 1) / kDecodePart;
  // Enough blocks to fill the GPU, each looping over parts where there are fewer: the grid depends on max_kv, n and
  // Hq only, and a part's bits on nothing but its sequence (a recorded step graph replays with any lengths).
  const int64_t grid_parts = std::clamp<int64_t>(kDecodeBlocks / (p.Hq * n), 1, max_parts);
  launch_decode_parts(p, seqs, max_parts, scratch, dim3(unsigned(grid_parts), unsigned(p.Hq), unsigned(n)), stream);
  hyrax::cuda::launch("attention_decode (merge)", attn_decode_merge_kernel, dim3(unsigned(p.Hq), unsigned(n)),
                      dim3(128), 0, stream, p, seqs, max_parts, scratch);
}

}  // namespace hyrax::kernels::cuda
