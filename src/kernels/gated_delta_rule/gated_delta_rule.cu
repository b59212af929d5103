// The gated delta rule on the GPU, recurrent form (decode, and any one-token piece).
//
// Recurrent: a block of 128 threads owns 32 state columns of one (sequence, value head): 8 column quads × 16 row
// groups, each thread holding ceil(Dk/16) rows × 4 columns of S in registers for the whole sequence. Per token:
// kv = Sᵀk and o = Sᵀq are summed over the 16 row groups through shared memory in a fixed order.
// The chunked kernels (prefill) are in gated_delta_rule_chunked.cu.
#include "kernels/cuda/cuda_check.h"
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

// Enough blocks per SM to keep ~100 KB of state loads in flight (decode is a pass over the state).
template <int RPT>
__global__ __launch_bounds__(kRecThreads, RPT <= 2 ? 8 : RPT <= 8 ? 6 : 4) void gdn_recurrent_kernel(GdnParams p) {
  __shared__ float qn[256], kn[256];
  __shared__ float red_kv[kRecGroups][kRecCols], red_o[kRecGroups][kRecCols];
  __shared__ float s_alpha, s_beta;
  const int seq = p.seqs[blockIdx.z];
  const int64_t h = blockIdx.y, hk = h / (p.Hv / p.Hk);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, quad = tid & 7, rg = tid >> 3;
  const int64_t c = int64_t(blockIdx.x) * kRecCols + quad * 4;
  const bool cok = c < p.Dv;
  const int64_t t0 = p.cu_seqlens[seq], t1 = p.cu_seqlens[seq + 1];
  if (t0 == t1) return;
  const int Dk = int(p.Dk);
  float* S = p.state + (int64_t(p.state_slots[seq]) * p.Hv + h) * p.Dk * p.Dv;

  float s[RPT][4];
#pragma unroll
  for (int i = 0; i < RPT; ++i) {
    const int r = rg + kRecGroups * i;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < Dk && cok) v = *reinterpret_cast<const float4*>(S + r * p.Dv + c);
    s[i][0] = v.x, s[i][1] = v.y, s[i][2] = v.z, s[i][3] = v.w;
  }
  const float qscale = float(1.0 / sqrt(double(p.Dk)));

  for (int64_t t = t0; t < t1; ++t) {
    if (warp < 2) {  // warp 0 normalizes q, warp 1 k
      const bf16* src = (warp == 0 ? p.q : p.k) + t * p.ld_qkv + hk * p.Dk;
      float* dst = warp == 0 ? qn : kn;
      float ss = 0.0f;
      for (int d = lane; d < Dk; d += 32) ss += to_f(src[d]) * to_f(src[d]);
      ss = warp_sum(ss);
      const float r = 1.0f / sqrtf(ss + 1e-6f), sc = warp == 0 ? qscale : 1.0f;
      for (int d = lane; d < Dk; d += 32) dst[d] = to_f(src[d]) * r * sc;
    } else if (tid == 64) {
      float g, beta;
      gate_beta(to_f(p.a[t * p.ld_ab + h]), to_f(p.b[t * p.ld_ab + h]), p.A_log[h], p.dt_bias[h],
                p.allow_neg_eigval, &g, &beta);
      s_alpha = expf(g);
      s_beta = beta;
    }
    float v4[4] = {0.f, 0.f, 0.f, 0.f};
    if (cok) {
      const bf16* vp = p.v + t * p.ld_qkv + h * p.Dv + c;
#pragma unroll
      for (int x = 0; x < 4; ++x) v4[x] = to_f(vp[x]);
    }
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
#pragma unroll
  for (int i = 0; i < RPT; ++i) {
    const int r = rg + kRecGroups * i;
    if (r < Dk && cok) *reinterpret_cast<float4*>(S + r * p.Dv + c) = make_float4(s[i][0], s[i][1], s[i][2], s[i][3]);
  }
}

template <int RPT>
void launch_recurrent(const GdnParams& p, cudaStream_t stream) {
  const dim3 grid(unsigned((p.Dv + kRecCols - 1) / kRecCols), unsigned(p.Hv), unsigned(p.n));
  gdn_recurrent_kernel<RPT><<<grid, kRecThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("gdn_recurrent");
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
