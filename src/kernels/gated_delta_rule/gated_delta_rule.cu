// The gated delta rule on the GPU, recurrent form (decode, and any one-token piece).
//
// Recurrent: a block of 128 threads works on 32 state columns of one (sequence, value head) at a time: 8 column quads
// × 16 row groups, each thread holding ceil(Dk/16) rows × 4 columns of S in registers for the whole sequence. Per
// token: kv = Sᵀk and o = Sᵀq are summed over the 16 row groups through shared memory in a fixed order. Blocks are
// persistent and load the next slice while they work on this one (below).
// The chunked kernels (prefill) are in gated_delta_rule_chunked.cu.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/gated_delta_rule/gdn_common.cuh"

namespace hyrax::kernels::cuda {
namespace {

using namespace hyrax::cuda;
using gdn::check_params;
using gdn::gate_beta;

// ================================================================================================================
// Recurrent form
// ================================================================================================================

constexpr int kRecThreads = 128, kRecCols = 32, kRecGroups = 16;

// Blocks per SM: ~100 KB of state in flight per SM (decode is a pass over the state).
template <int RPT>
constexpr int rec_min_blocks() {
  return RPT <= 2 ? 8 : RPT <= 6 ? 6 : RPT <= 8 ? 5 : 4;
}

template <int RPT>
constexpr size_t rec_smem_bytes() {
  return 2 * RPT * kRecThreads * sizeof(float4);
}

// An item is one block's work: 32 state columns of one (sequence, value head), every token of that sequence.
// Blocks are persistent, taking items blockIdx.x, blockIdx.x + gridDim.x, ...; while a block works on an item, the
// next item's state slice is on its way into shared memory (cp.async into the other of two buffers; each thread
// copies, and later reads, only its own float4s, so no barrier guards them) and its first token's inputs into
// registers. The first item's state and its head's gate weights are requested before the grid dependency wait
// (launch.cuh): the step's metadata is written by copies before the step, and no kernel that may run just before
// this one writes the slots it decodes. An item's arithmetic does not depend on which block runs it, or when.
template <int RPT>
__global__ __launch_bounds__(kRecThreads, rec_min_blocks<RPT>()) void gdn_recurrent_kernel(GdnParams p, int n_items,
                                                                                           float qscale) {
  __shared__ float qn[256], kn[256];
  __shared__ float red_kv[kRecGroups][kRecCols], red_o[kRecGroups][kRecCols];
  __shared__ float s_alpha, s_beta;
  extern __shared__ float4 ring[];  // [2][RPT][kRecThreads]: the state slices of this item and the next
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, quad = tid & 7, rg = tid >> 3;
  const int Dk = int(p.Dk);
  const int slices = int((p.Dv + kRecCols - 1) / kRecCols), Hv = int(p.Hv);

  // The gate weights (A_log, dt_bias) of the head of this item [buf] and the next [buf ^ 1], written and read only
  // by thread 64, which forms the gates.
  __shared__ float gate_w[2][2];
  struct Item {
    int t0, t1, h, c;  // tokens [t0, t1), value head, this thread's first column
    float* S;          // the (sequence, head) state, [Dk, Dv]
  };
  auto item_at = [&](int i) {
    Item it;
    const int x = i % slices, h = (i / slices) % Hv, z = i / (slices * Hv);
    const int seq = p.seqs[z];
    it.t0 = p.cu_seqlens[seq];
    it.t1 = p.cu_seqlens[seq + 1];
    it.h = h;
    it.c = x * kRecCols + quad * 4;
    it.S = p.state + (int64_t(p.state_slots[seq]) * p.Hv + h) * p.Dk * p.Dv;
    return it;
  };
  auto fetch = [&](const Item& it, int buf) {  // this thread's float4s of the item's state -> ring[buf]
#pragma unroll
    for (int i = 0; i < RPT; ++i) {
      const int r = rg + kRecGroups * i;
      const bool ok = r < Dk && it.c < p.Dv && it.t0 < it.t1;
      cp_async16(&ring[(buf * RPT + i) * kRecThreads + tid], ok ? it.S + r * p.Dv + it.c : it.S, ok ? 16 : 0);
    }
    cp_async_commit();
    if (tid == 64) gate_w[buf][0] = p.A_log[it.h], gate_w[buf][1] = p.dt_bias[it.h];
  };

  // One token's inputs as this thread uses them: warps 0 and 1 their lanes' elements of q or k, thread 64 the
  // gates' a and b, every thread its 4 values of v. The next item's first token is loaded with its state.
  constexpr int KPL = (kRecGroups * RPT + 31) / 32;  // q or k elements per lane
  struct TokenIn {  // bf16 pairs, low half first
    uint32_t qk[(KPL + 1) / 2], ab, v[2];
  };
  const auto bits = [](bf16 x) { return uint32_t(__bfloat16_as_ushort(x)); };
  const auto half = [](uint32_t w, int i) { return __uint_as_float((i ? w >> 16 : w & 0xffffu) << 16); };
  auto load_token = [&](const Item& it, int64_t t) {  // nothing read for an item without tokens
    TokenIn in = {};
    if (it.t0 == it.t1) return in;
    const int hk = it.h / int(p.Hv / p.Hk);
    if (warp < 2) {
      const bf16* src = (warp == 0 ? p.q : p.k) + t * p.ld_qkv + hk * p.Dk;
#pragma unroll
      for (int j = 0; j < KPL; j += 2) {
        const uint32_t lo = lane + 32 * j < Dk ? bits(src[lane + 32 * j]) : 0u;
        const uint32_t hi = j + 1 < KPL && lane + 32 * (j + 1) < Dk ? bits(src[lane + 32 * (j + 1)]) : 0u;
        in.qk[j / 2] = lo | hi << 16;
      }
    } else if (tid == 64) {
      in.ab = bits(p.a[t * p.ld_ab + it.h]) | bits(p.b[t * p.ld_ab + it.h]) << 16;
    }
    if (it.c < p.Dv) {
      const bf16* vp = p.v + t * p.ld_qkv + it.h * p.Dv + it.c;
      in.v[0] = bits(vp[0]) | bits(vp[1]) << 16;
      in.v[1] = bits(vp[2]) | bits(vp[3]) << 16;
    }
    return in;
  };

  int i_item = int(blockIdx.x);
  Item it = item_at(i_item);
  fetch(it, 0);
  wait_for_previous_grids();
  // A block with one item lets the next kernel in at once (launch.cuh); one with more only by exiting. Measured on an
  // H100: back to back at 32 sequences 56.0 µs, against 56.6 letting it in as the block starts its last item and 59.5
  // at once; the 7B step at batch 8 6.08-6.09 against 6.17-6.19 ms (as the last item starts); batch 1 and 32 alike.
  if (i_item + int(gridDim.x) >= n_items) let_next_grid_start();
  TokenIn first = load_token(it, it.t0);

  for (int buf = 0; i_item < n_items; i_item += gridDim.x, buf ^= 1) {
    const Item cur = it;
    TokenIn in = first;
    if (i_item + gridDim.x < n_items) {
      it = item_at(i_item + gridDim.x);
      fetch(it, buf ^ 1);
      first = load_token(it, it.t0);
      cp_async_wait<1>();
    } else {
      cp_async_wait_all();
    }
    float s[RPT][4];
#pragma unroll
    for (int i = 0; i < RPT; ++i) {
      const float4 v = ring[(buf * RPT + i) * kRecThreads + tid];
      s[i][0] = v.x, s[i][1] = v.y, s[i][2] = v.z, s[i][3] = v.w;
    }
    if (cur.t0 == cur.t1) continue;
    const int64_t h = cur.h, c = cur.c;
    const bool cok = c < p.Dv;

    for (int64_t t = cur.t0; t < cur.t1; ++t) {
      if (t > cur.t0) in = load_token(cur, t);
      if (warp < 2) {  // warp 0 normalizes q, warp 1 k
        float* dst = warp == 0 ? qn : kn;
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < KPL; ++j) ss += half(in.qk[j / 2], j % 2) * half(in.qk[j / 2], j % 2);
        ss = warp_sum(ss);
        const float r = 1.0f / sqrtf(ss + 1e-6f), sc = warp == 0 ? qscale : 1.0f;
#pragma unroll
        for (int j = 0; j < KPL; ++j)
          if (lane + 32 * j < Dk) dst[lane + 32 * j] = half(in.qk[j / 2], j % 2) * r * sc;
      } else if (tid == 64) {
        float g, beta;
        gate_beta(half(in.ab, 0), half(in.ab, 1), gate_w[buf][0], gate_w[buf][1], p.allow_neg_eigval, &g, &beta);
        s_alpha = expf(g);
        s_beta = beta;
      }
      float v4[4];
#pragma unroll
      for (int x = 0; x < 4; ++x) v4[x] = cok ? half(in.v[x / 2], x % 2) : 0.0f;
      __syncthreads();
      // kv = Sᵀk: this thread's rows, then the 16 row groups in order.
      float kv[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int i = 0; i < RPT; ++i) {
        const int r = rg + kRecGroups * i;
        if (r < Dk) {
          const float kr = kn[r];
#pragma unroll
          for (int x = 0; x < 4; ++x) kv[x] = fmaf(kr, s[i][x], kv[x]);
        }
      }
#pragma unroll
      for (int x = 0; x < 4; ++x) red_kv[rg][quad * 4 + x] = kv[x];
      __syncthreads();
      const float alpha = s_alpha, beta = s_beta;
      float u[4];
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        float tot = 0.0f;
#pragma unroll
        for (int g2 = 0; g2 < kRecGroups; ++g2) tot += red_kv[g2][quad * 4 + x];
        u[x] = beta * (v4[x] - alpha * tot);
      }
      // S = αS + k uᵀ and o = Sᵀq.
      float o[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int i = 0; i < RPT; ++i) {
        const int r = rg + kRecGroups * i;
        if (r < Dk) {
          const float kr = kn[r], qr = qn[r];
#pragma unroll
          for (int x = 0; x < 4; ++x) {
            s[i][x] = fmaf(alpha, s[i][x], kr * u[x]);
            o[x] = fmaf(qr, s[i][x], o[x]);
          }
        }
      }
#pragma unroll
      for (int x = 0; x < 4; ++x) red_o[rg][quad * 4 + x] = o[x];
      __syncthreads();
      if (rg == 0 && cok) {
        bf16* op = p.out + t * p.ld_out + h * p.Dv + c;
#pragma unroll
        for (int x = 0; x < 4; ++x) {
          float tot = 0.0f;
#pragma unroll
          for (int g2 = 0; g2 < kRecGroups; ++g2) tot += red_o[g2][quad * 4 + x];
          op[x] = to_bf(tot);
        }
      }
    }
    // The slice goes back with streaming stores (evict-first in L2): nothing reads it before the next step. At 32
    // sequences 58.7 against 59.5 µs, at 64 110.1 against 114.2 (H100, back to back).
#pragma unroll
    for (int i = 0; i < RPT; ++i) {
      const int r = rg + kRecGroups * i;
      if (r < Dk && cok)
        __stcs(reinterpret_cast<float4*>(cur.S + r * p.Dv + c), make_float4(s[i][0], s[i][1], s[i][2], s[i][3]));
    }
  }
}

template <int RPT>
void launch_recurrent(const GdnParams& p, cudaStream_t stream) {
  static const int max_blocks = [] {  // resident blocks on this device, once per instance
    int dev = 0, sms = 0, per_sm = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaFuncSetAttribute(gdn_recurrent_kernel<RPT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(rec_smem_bytes<RPT>())));
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gdn_recurrent_kernel<RPT>, kRecThreads,
                                                             rec_smem_bytes<RPT>()));
    return sms * std::max(per_sm, 1);
  }();
  // As many blocks as are resident (measured on an H100: as few as take the same number of rounds, so that every
  // block has the same number of items, was slower at 32 sequences, 58.9 against 57.2 µs).
  const int64_t n_items = (p.Dv + kRecCols - 1) / kRecCols * p.Hv * p.n;
  const unsigned grid = unsigned(std::min<int64_t>(n_items, max_blocks));
  HYRAX_CHECK(n_items <= INT32_MAX - max_blocks, "gdn_recurrent: ", n_items, " work items");
  launch("gdn_recurrent", gdn_recurrent_kernel<RPT>, dim3(grid), dim3(kRecThreads), rec_smem_bytes<RPT>(), stream, p,
         int(n_items), float(1.0 / std::sqrt(double(p.Dk))));
}

}  // namespace

void gdn_recurrent(const GdnParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
  check_params(p);
  const int64_t rpt = (p.Dk + kRecGroups - 1) / kRecGroups;
  if (rpt <= 1) return launch_recurrent<1>(p, stream);
  if (rpt <= 2) return launch_recurrent<2>(p, stream);
  if (rpt <= 3) return launch_recurrent<3>(p, stream);
  if (rpt <= 4) return launch_recurrent<4>(p, stream);
  if (rpt <= 6) return launch_recurrent<6>(p, stream);
  if (rpt <= 8) return launch_recurrent<8>(p, stream);
  if (rpt <= 12) return launch_recurrent<12>(p, stream);
  return launch_recurrent<16>(p, stream);
}

}  // namespace hyrax::kernels::cuda
