// Sampling on the GPU with the reference's semantics (sampling.h), without sorting the vocabulary.
//
// One block of 1024 threads per row. With s = logit / temperature, smax its largest value and d = smax − s ≥ 0 (in
// float64), every filter of the reference keeps a prefix of the tokens in (s descending, id ascending) order, and
// the draw picks a position in that order. So the kernel never sorts; it locates positions:
//  1. One pass: the row's largest logit, its first index (greedy) and Σ exp(x − max) (logprobs).
//  2. One pass: a histogram of d in 2048 buckets of 0.0183 nats over [0, 37.5]: per bucket the count and the mass
//     Σ exp(−d) as a 64-bit fixed-point sum relative to the bucket's top (q = round(2^45 · exp(−(d − d_bucket)))),
//     so that the sums are integers: exact and independent of the order the atomics land in. Tokens past 37.5
//     nats (e^−d < 2^−54) are left out: the reference adds them to running sums that are already ≥ 1 (or ≥ the
//     first probability, for the normalized ones), where they change no bit, so they can never be chosen.
//  3. Bucket prefix sums (counts, float64 masses) locate the bucket of each cut (top-k by count, top-p by mass,
//     min-p by the bucket of −ln(min_p), the draw by mass); inside that bucket a radix select over the 64-bit key
//     (order-preserving bits of s, then the id) finds the exact token by count or by fixed-point mass. A bucket's
//     tokens are first gathered into shared memory (up to 4096 of them; more, e.g. a vocabulary of ties, are read
//     from the row on every radix level).
// The result equals the reference's except where u · mass lies within the rounding of the reference's own float64
// running sums (≤ ~1e-11 of the mass) of a boundary. No atomics whose order changes a result (integer sums, min,
// or/and), so rows are deterministic and independent of each other.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/sampling/sampling_cuda.h"

namespace hyrax::kernels::cuda {
namespace {

using u64 = unsigned long long;

constexpr int kThreads = 1024;
constexpr int kBuckets = 2048;
constexpr double kTailD = 37.5;                 // e^-37.5 ≈ 5.2e-17 < 2^-54
constexpr double kBucketW = kTailD / kBuckets;  // 0.018310546875, exact
constexpr double kInvW = kBuckets / kTailD;
constexpr double kFix = 35184372088832.0;  // 2^45
constexpr int kListCap = 4096;
constexpr int kBins = 256;
constexpr u64 kAllKeys = ~0ull;

/// A cut: everything up to and including key `key` of bucket b is kept (key kAllKeys: the whole bucket); q and n:
/// the fixed-point mass and the count of bucket b's kept part.
struct Cut {
  int b;
  u64 key, q, n;
};

struct Smem {
  uint32_t cnt[kBuckets];
  u64 qsum[kBuckets];
  uint32_t cexcl[kBuckets + 1];  // exclusive prefix counts
  double mexcl[kBuckets + 1];    // exclusive prefix masses (float64, fixed order)
  u64 list[kListCap];            // keys of the gathered buckets' tokens
  uint32_t bin_cnt[kBins];
  u64 bin_q[kBins], bin_any[kBins];
  double red_d[32];
  float red_m[32];
  int red_i[32];
  uint32_t red_u[32];
  // broadcast scalars
  float xmax;
  int amax;
  double sumexp;
  int list_n, list_b0, list_b1;
  int tmp_b;
  uint32_t tmp_n;
  u64 kor, kand;
  // the running select
  u64 sel_target, sel_cb, sel_qb, sel_key, sel_qself;
  int sel_state;  // 0 running, 1 found, 2 not found
  int sel_g;
};

/// *p += v as two native 32-bit shared-memory atomics (a 64-bit one is a compare-and-swap loop, 2x slower here):
/// the low word's wrap-arounds carry into the high word, so the sum is exact in any order.
__device__ __forceinline__ void add_u64(u64* p, u64 v) {
  uint32_t* w = reinterpret_cast<uint32_t*>(p);
  const uint32_t lo = uint32_t(v), old = atomicAdd(w, lo);
  const uint32_t hi = uint32_t(v >> 32) + (old + lo < old ? 1u : 0u);
  if (hi) atomicAdd(w + 1, hi);
}

/// Bits of s in descending order of s (so that ascending keys = the reference's order); -0 counts as +0.
__device__ __forceinline__ uint32_t desc_key(float s) {
  const uint32_t u = __float_as_uint(s);
  const uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~asc;
}
__device__ __forceinline__ float key_value(uint32_t k) {
  const uint32_t asc = ~k;
  return __uint_as_float((asc & 0x80000000u) ? (asc & 0x7fffffffu) : ~asc);
}

/// The bucket of s, from d = smax − s in float (monotone in s, which is all the buckets need); -1 past the tail
/// (there d > 37.5·(1 − 2^-24), so e^-d < 2^-54 still).
__device__ __forceinline__ int bucket_of(float s, float smax) {
  const float d = __fsub_rn(smax, s);
  if (!(d <= float(kTailD))) return -1;
  return min(kBuckets - 1, int(__fmul_rn(d, float(kInvW))));
}

/// s's mass relative to its bucket's top in fixed point: exp(−t) for t = d − d_bucket (float64, d exact) by its
/// Taylor series to degree 6 (error < 2e-16, below the 2^-45 grain); t may stray a float rounding outside [0, W].
__device__ __forceinline__ u64 fixed_mass(float s, float smax, int b) {
  const double t = (double(smax) - double(s)) - double(b) * kBucketW;
  const double e =
      1.0 + t * (-1.0 + t * (0.5 + t * (-1.0 / 6 + t * (1.0 / 24 + t * (-1.0 / 120 + t * (1.0 / 720))))));
  return __double2ull_rn(e * kFix);
}

/// The bucket's fixed-point unit in probability mass: 2^-45 · exp(−d_bucket).
__device__ __forceinline__ double bucket_scale(int b) { return exp(-double(b) * kBucketW) / kFix; }

__device__ __forceinline__ float scaled(float x, float temperature) {
  return __fadd_rn(__fdiv_rn(x, temperature), 0.0f);
}

/// Calls f(x, i) for every element of the row; thread t owns elements [4096k + 4t, +4) for k = 0, 1, …, in that
/// order, whatever the row's alignment (so float sums are the same for a row alone or among others).
template <class F>
__device__ __forceinline__ void for_row(const float* row, int64_t V64, bool vec, F&& f) {
  constexpr int kTile = 4 * kThreads;
  const int V = int(V64);
  for (int base = 0; base < V; base += 4 * kTile) {
    float4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = base + u * kTile + 4 * int(threadIdx.x);
      if (vec && i + 3 < V) {
        v[u] = __ldg(reinterpret_cast<const float4*>(row + i));
      } else {
        v[u].x = i < V ? row[i] : 0.0f;
        v[u].y = i + 1 < V ? row[i + 1] : 0.0f;
        v[u].z = i + 2 < V ? row[i + 2] : 0.0f;
        v[u].w = i + 3 < V ? row[i + 3] : 0.0f;
      }
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = base + u * kTile + 4 * int(threadIdx.x);
      if (i + 3 < V) {
        f(v[u].x, i), f(v[u].y, i + 1), f(v[u].z, i + 2), f(v[u].w, i + 3);
      } else {
        if (i < V) f(v[u].x, i);
        if (i + 1 < V) f(v[u].y, i + 1);
        if (i + 2 < V) f(v[u].z, i + 2);
      }
    }
  }
}

struct Row {
  const float* x;
  int64_t V;
  bool vec;
  float T, smax;
};

// The passes and the searches are separate functions (__noinline__): each gets the whole register budget of a
// 1024-thread block, and only the orchestration between them spills.

// ---- pass 1: max, first argmax, Σ exp(x − max) ---------------------------------------------------------------------

__device__ __forceinline__ void combine_max(float& m, int& i, double& s, float m2, int i2, double s2) {
  const float M = fmaxf(m, m2);
  const double a = m == -INFINITY ? 0.0 : s * exp(double(m) - double(M));
  const double b = m2 == -INFINITY ? 0.0 : s2 * exp(double(m2) - double(M));
  i = m > m2 ? i : m2 > m ? i2 : min(i, i2);
  m = M;
  s = a + b;
}

__device__ __noinline__ void row_stats(Smem& S, const Row& r) {
  // Per thread: the running max moves at most once per tile of 32 values (one float64 rescale), the first index of
  // the max is tracked on its own, a tile's expf(x − max) are summed in float (≤ 32 terms ≤ 1: relative error
  // < 2e-6, far below the logprob's needs) and added to a float64 sum.
  float m = -INFINITY, best = -INFINITY;
  int idx = 0;
  double sum = 0.0;
  constexpr int kTile = 4 * kThreads;
  const int V = int(r.V);
  for (int base = 0; base < V; base += 8 * kTile) {
    float v[32];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int i = base + u * kTile + 4 * int(threadIdx.x);
      if (r.vec && i + 3 < V) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(r.x + i));
        v[4 * u] = f.x, v[4 * u + 1] = f.y, v[4 * u + 2] = f.z, v[4 * u + 3] = f.w;
      } else {
#pragma unroll
        for (int k = 0; k < 4; ++k) v[4 * u + k] = i + k < V ? r.x[i + k] : -INFINITY;
      }
    }
    float lm = m;
#pragma unroll
    for (int k = 0; k < 32; ++k) lm = fmaxf(lm, v[k]);  // fmaxf drops NaN
    if (lm > m) {
      sum = m == -INFINITY ? 0.0 : sum * exp(double(m) - double(lm));
      m = lm;
    }
    float part = 0.0f;
#pragma unroll
    for (int u = 0; u < 8; ++u)
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int i = base + u * kTile + 4 * int(threadIdx.x) + k;
        const float x = v[4 * u + k];
        if (i < V && x > best) best = x, idx = i;
        if (x > -INFINITY) part += expf(x - m);
      }
    sum += double(part);
  }
  m = best;  // == m unless every value was -inf or NaN
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    const double s2 = __shfl_xor_sync(0xffffffffu, sum, o);
    combine_max(m, idx, sum, m2, i2, s2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) S.red_m[warp] = m, S.red_i[warp] = idx, S.red_d[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    m = S.red_m[lane], idx = S.red_i[lane], sum = S.red_d[lane];
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
      const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
      const double s2 = __shfl_xor_sync(0xffffffffu, sum, o);
      combine_max(m, idx, sum, m2, i2, s2);
    }
    if (lane == 0) S.xmax = m, S.amax = idx, S.sumexp = sum;
  }
  __syncthreads();
}

// ---- pass 2: bucket histogram and prefix sums -----------------------------------------------------------------------

__device__ __noinline__ void histogram(Smem& S, const Row& r) {
  for (int b = threadIdx.x; b < kBuckets; b += kThreads) S.cnt[b] = 0, S.qsum[b] = 0;
  __syncthreads();
  for_row(r.x, r.V, r.vec, [&](float x, int64_t) {
    const float sx = scaled(x, r.T);
    const int b = bucket_of(sx, r.smax);
    if (b >= 0) {
      atomicAdd(&S.cnt[b], 1u);
      add_u64(&S.qsum[b], fixed_mass(sx, r.smax, b));
    }
  });
  __syncthreads();
  // Exclusive prefix sums, two buckets per thread, in a fixed order.
  static_assert(kBuckets == 2 * kThreads, "two buckets per thread");
  const int b0 = 2 * threadIdx.x;
  const uint32_t c0 = S.cnt[b0], c1 = S.cnt[b0 + 1];
  const double m0 = double(S.qsum[b0]) * bucket_scale(b0), m1 = double(S.qsum[b0 + 1]) * bucket_scale(b0 + 1);
  uint32_t c = c0 + c1;
  double m = m0 + m1;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t c2 = __shfl_up_sync(0xffffffffu, c, o);
    const double m2 = __shfl_up_sync(0xffffffffu, m, o);
    if (lane >= o) c += c2, m += m2;
  }
  if (lane == 31) S.red_u[warp] = c, S.red_d[warp] = m;
  __syncthreads();
  if (warp == 0) {
    uint32_t wc = S.red_u[lane];
    double wm = S.red_d[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t c2 = __shfl_up_sync(0xffffffffu, wc, o);
      const double m2 = __shfl_up_sync(0xffffffffu, wm, o);
      if (lane >= o) wc += c2, wm += m2;
    }
    S.red_u[lane] = wc;  // inclusive over warps
    S.red_d[lane] = wm;
  }
  __syncthreads();
  // Exclusive prefix of this thread's pair = (warps before) + (lanes before in this warp).
  const uint32_t cw = warp ? S.red_u[warp - 1] : 0u;
  const double mw = warp ? S.red_d[warp - 1] : 0.0;
  const uint32_t cl = __shfl_up_sync(0xffffffffu, c, 1);
  const double ml = __shfl_up_sync(0xffffffffu, m, 1);
  const uint32_t ce = cw + (lane ? cl : 0u);
  const double me = lane ? mw + ml : mw;
  S.cexcl[b0] = ce;
  S.cexcl[b0 + 1] = ce + c0;
  S.mexcl[b0] = me;
  S.mexcl[b0 + 1] = me + m0;
  if (threadIdx.x == kThreads - 1) S.cexcl[kBuckets] = ce + c0 + c1, S.mexcl[kBuckets] = me + m0 + m1;
  __syncthreads();
}

/// The first bucket whose inclusive prefix mass is ≥ target (strict: > target); kBuckets if none.
__device__ int first_bucket_by_mass(Smem& S, double target, bool strict) {
  if (threadIdx.x == 0) S.tmp_b = kBuckets;
  __syncthreads();
  for (int b = threadIdx.x; b < kBuckets; b += kThreads) {
    const double v = S.mexcl[b + 1];
    if ((strict ? v > target : v >= target) && S.cnt[b] > 0) atomicMin(&S.tmp_b, b);
  }
  __syncthreads();
  const int b = S.tmp_b;
  __syncthreads();
  return b;
}

/// The first bucket whose inclusive prefix count is ≥ k.
__device__ int first_bucket_by_count(Smem& S, uint32_t k) {
  if (threadIdx.x == 0) S.tmp_b = kBuckets;
  __syncthreads();
  for (int b = threadIdx.x; b < kBuckets; b += kThreads)
    if (S.cexcl[b + 1] >= k && S.cnt[b] > 0) atomicMin(&S.tmp_b, b);
  __syncthreads();
  const int b = S.tmp_b;
  __syncthreads();
  return b;
}

/// The last non-empty bucket at or before b (bucket 0 always holds the largest token).
__device__ int last_bucket_upto(Smem& S, int b) {
  if (threadIdx.x == 0) S.tmp_b = -1;
  __syncthreads();
  for (int i = threadIdx.x; i <= b; i += kThreads)
    if (S.cnt[i] > 0) atomicMax(&S.tmp_b, i);
  __syncthreads();
  const int r = S.tmp_b;
  __syncthreads();
  return r;
}

// ---- a bucket's tokens ----------------------------------------------------------------------------------------------

/// Gathers the keys of buckets [b0, b1] (at most kListCap tokens) into shared memory.
__device__ __noinline__ void gather(Smem& S, const Row& r, int b0, int b1) {
  if (threadIdx.x == 0) S.list_n = 0;
  __syncthreads();
  for_row(r.x, r.V, r.vec, [&](float x, int64_t i) {
    const float s = scaled(x, r.T);
    const int b = bucket_of(s, r.smax);
    if (b >= b0 && b <= b1) S.list[atomicAdd(&S.list_n, 1)] = (u64(desc_key(s)) << 32) | u64(i);
  });
  if (threadIdx.x == 0) S.list_b0 = b0, S.list_b1 = b1;
  __syncthreads();
}

/// Makes bucket b's tokens readable from shared memory when they fit.
__device__ void ensure_gathered(Smem& S, const Row& r, int b) {
  if (b >= S.list_b0 && b <= S.list_b1) return;
  if (S.cnt[b] <= kListCap) gather(S, r, b, b);
}

/// Calls f(key, q, s) for this thread's share of bucket b's tokens (from shared memory or from the row).
template <class F>
__device__ __forceinline__ void for_bucket(Smem& S, const Row& r, int b, F&& f) {
  if (b >= S.list_b0 && b <= S.list_b1) {
    const int n = S.list_n;
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const u64 key = S.list[i];
      const float s = key_value(uint32_t(key >> 32));
      if (bucket_of(s, r.smax) == b) f(key, fixed_mass(s, r.smax, b), s);
    }
  } else {
    for_row(r.x, r.V, r.vec, [&](float x, int64_t i) {
      const float s = scaled(x, r.T);
      if (bucket_of(s, r.smax) == b) f((u64(desc_key(s)) << 32) | u64(i), fixed_mass(s, r.smax, b), s);
    });
  }
}

struct Sel {
  bool found;
  u64 key, cnt_before, q_before, q_self;
};

/// In bucket b, among the tokens with key ≤ kmax, in key order: the first whose running count (by_mass false) or
/// running fixed-point mass (by_mass true), itself included, reaches target ≥ 1. A radix select over the 64-bit
/// keys, 8 bits per level, starting at the highest bit where the candidates differ; integer sums only.
__device__ __noinline__ Sel select_in_bucket(Smem& S, const Row& r, int b, u64 kmax, bool by_mass, u64 target) {
  ensure_gathered(S, r, b);
  if (threadIdx.x == 0) S.kor = 0, S.kand = kAllKeys, S.sel_target = target, S.sel_cb = 0, S.sel_qb = 0, S.sel_state = 0;
  __syncthreads();
  u64 lor = 0, land = kAllKeys;
  for_bucket(S, r, b, [&](u64 key, u64, float) {
    if (key <= kmax) lor |= key, land &= key;
  });
  if (lor) atomicOr(&S.kor, lor);
  if (land != kAllKeys) atomicAnd(&S.kand, land);
  __syncthreads();
  const u64 diff = S.kor ^ S.kand;
  int hi = diff ? 63 - __clzll(diff) : 0;
  u64 fixed = hi == 63 ? 0ull : ~((2ull << hi) - 1);  // bits known equal for every candidate
  u64 prefix = S.kand & fixed;
  const int lane = threadIdx.x % 32;
  for (;;) {
    const int shift = max(hi - 7, 0), width = hi - shift + 1;
    const u64 dmask = (1ull << width) - 1;
    for (int g = threadIdx.x; g < kBins; g += kThreads) S.bin_cnt[g] = 0, S.bin_q[g] = 0;
    __syncthreads();
    for_bucket(S, r, b, [&](u64 key, u64 q, float) {
      if (key <= kmax && (key & fixed) == prefix) {
        const int g = int((key >> shift) & dmask);
        atomicAdd(&S.bin_cnt[g], 1u);
        add_u64(&S.bin_q[g], q);
        S.bin_any[g] = key;  // read only where the bin holds one token
      }
    });
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l scans bins [8l, 8l + 8): its sums, a warp prefix sum, then the crossing lane walks its bins.
      u64 lc = 0, lq = 0;
      for (int j = 0; j < 8; ++j) lc += S.bin_cnt[8 * lane + j], lq += S.bin_q[8 * lane + j];
      u64 ic = lc, iq = lq;
      for (int o = 1; o < 32; o <<= 1) {
        const u64 c2 = __shfl_up_sync(0xffffffffu, ic, o), q2 = __shfl_up_sync(0xffffffffu, iq, o);
        if (lane >= o) ic += c2, iq += q2;
      }
      const u64 t = S.sel_target;
      const unsigned hit = __ballot_sync(0xffffffffu, (by_mass ? iq : ic) >= t);
      if (hit == 0) {
        if (lane == 0) S.sel_state = 2;
      } else if (lane == __ffs(hit) - 1) {
        u64 cb = ic - lc, qb = iq - lq;
        int g = 8 * lane + 7;
        for (int j = 0; j < 8; ++j) {
          const u64 c = S.bin_cnt[8 * lane + j], q = S.bin_q[8 * lane + j];
          if ((by_mass ? qb + q : cb + c) >= t) {
            g = 8 * lane + j;
            break;
          }
          cb += c, qb += q;
        }
        S.sel_cb += cb;
        S.sel_qb += qb;
        S.sel_target = t - (by_mass ? qb : cb);
        S.sel_g = g;
        if (S.bin_cnt[g] == 1) S.sel_key = S.bin_any[g], S.sel_qself = S.bin_q[g], S.sel_state = 1;
      }
    }
    __syncthreads();
    const int state = S.sel_state, g = S.sel_g;
    __syncthreads();
    if (state == 2) return {false, 0, 0, 0, 0};
    if (state == 1 || shift == 0) break;  // keys are unique: the last level always ends at one token
    prefix |= u64(g) << shift;
    fixed |= dmask << shift;
    hi = shift - 1;
  }
  const Sel out{S.sel_state == 1, S.sel_key, S.sel_cb, S.sel_qb, S.sel_qself};
  __syncthreads();
  return out;
}

/// Tokens of bucket b with key ≤ kmax whose probability e^(−d) / total is ≥ floor (min-p).
__device__ __noinline__ uint32_t count_min_p(Smem& S, const Row& r, int b, u64 kmax, double total, double floor) {
  ensure_gathered(S, r, b);
  if (threadIdx.x == 0) S.tmp_n = 0;
  __syncthreads();
  uint32_t n = 0;
  for_bucket(S, r, b, [&](u64 key, u64, float s) {
    if (key <= kmax && exp(double(s) - double(r.smax)) / total >= floor) ++n;
  });
  if (n) atomicAdd(&S.tmp_n, n);
  __syncthreads();
  const uint32_t c = S.tmp_n;
  __syncthreads();
  return c;
}

/// The kept part of bucket b cut after its n-th token (1-based): a whole bucket needs no search.
__device__ Cut cut_at_rank(Smem& S, const Row& r, int b, u64 n) {
  if (n >= S.cnt[b]) return {b, kAllKeys, S.qsum[b], S.cnt[b]};
  const Sel s = select_in_bucket(S, r, b, kAllKeys, false, n);
  return {b, s.key, s.q_before + s.q_self, n};
}

/// The last kept token's id.
__device__ int32_t last_token(Smem& S, const Row& r, const Cut& c) {
  if (c.key != kAllKeys) return int32_t(uint32_t(c.key));
  const Sel s = select_in_bucket(S, r, c.b, kAllKeys, false, c.n);
  return int32_t(uint32_t(s.key));
}

/// The mass of everything up to and including the cut.
__device__ double cut_mass(const Smem& S, const Cut& c) { return S.mexcl[c.b] + double(c.q) * bucket_scale(c.b); }

/// The reference's algorithm (sampling_ref.cpp) on the histogram; returns the token.
__device__ int32_t sample_filtered(Smem& S, const Row& r, const SampleRow& p) {
  histogram(S, r);
  const uint32_t live = S.cexcl[kBuckets];
  if (live == 0) return S.amax;  // no finite logit
  if (threadIdx.x == 0) S.list_b0 = 1, S.list_b1 = 0;
  // top-k (tokens past the tail are never worth keeping: see the file comment).
  const uint32_t K = p.top_k > 0 && uint32_t(p.top_k) < live ? uint32_t(p.top_k) : live;
  const int bk = first_bucket_by_count(S, K);
  // Everything kept fits in shared memory: gather it once.
  if (S.cexcl[bk + 1] <= kListCap) gather(S, r, 0, bk);
  else __syncthreads();
  Cut cut = cut_at_rank(S, r, bk, K - S.cexcl[bk]);
  const double total = cut_mass(S, cut);
  // top-p: through the first token whose running mass reaches top_p · total.
  if (p.top_p < 1.0f) {
    const double target = double(p.top_p) * total;
    const int b = first_bucket_by_mass(S, target, false);
    if (b <= cut.b) {
      const u64 lim_q = b == cut.b ? cut.q : S.qsum[b];
      const double w = ceil((target - S.mexcl[b]) / bucket_scale(b));
      const u64 wq = w < 1.0 ? 1ull : w > 9.0e18 ? kAllKeys : u64(w);
      if (wq <= lim_q) {
        const Sel s = select_in_bucket(S, r, b, b == cut.b ? cut.key : kAllKeys, true, wq);
        if (s.found) cut = {b, s.key, s.q_before + s.q_self, s.cnt_before + 1};
      } else if (b < cut.b) {
        cut = {b, kAllKeys, S.qsum[b], S.cnt[b]};
      }
    }
  }
  // min-p: tokens whose probability is ≥ min_p times the top one's; decided per token only in the three buckets
  // around d = −ln(min_p) (outside them the answer is clear by a bucket's width, 1.8%).
  if (p.min_p > 0.0f) {
    const double dstar = -log(double(p.min_p));
    const double floor = double(p.min_p) * (1.0 / total);
    const int bm = int(dstar * kInvW);
    if (dstar < kTailD + kBucketW && cut.b >= bm - 1) {
      const int w0 = max(bm - 1, 0), w1 = min(bm + 1, kBuckets - 1);
      bool changed = false;
      for (int b = w0; b <= min(w1, cut.b) && !changed; ++b) {
        const u64 n = b == cut.b ? cut.n : S.cnt[b];
        if (n == 0) continue;
        const u64 c = count_min_p(S, r, b, b == cut.b ? cut.key : kAllKeys, total, floor);
        if (c < n) {
          if (c > 0) {
            cut = cut_at_rank(S, r, b, c);
          } else {
            const int prev = last_bucket_upto(S, b - 1);
            cut = {prev, kAllKeys, S.qsum[prev], S.cnt[prev]};
          }
          changed = true;
        }
      }
      if (!changed && cut.b > w1) {
        const int prev = last_bucket_upto(S, w1);
        cut = {prev, kAllKeys, S.qsum[prev], S.cnt[prev]};
      }
    }
  }
  // The draw: the first token whose running mass exceeds u · mass.
  const double target = p.u * cut_mass(S, cut);
  const int b = first_bucket_by_mass(S, target, true);
  if (b > cut.b) return last_token(S, r, cut);
  const u64 lim_q = b == cut.b ? cut.q : S.qsum[b];
  const double w = floor((target - S.mexcl[b]) / bucket_scale(b)) + 1.0;
  const u64 wq = w < 1.0 ? 1ull : w > 9.0e18 ? kAllKeys : u64(w);
  const Cut whole = b == cut.b ? cut : Cut{b, kAllKeys, S.qsum[b], S.cnt[b]};
  if (wq > lim_q) return last_token(S, r, whole);
  const Sel s = select_in_bucket(S, r, b, whole.key, true, wq);
  return s.found ? int32_t(uint32_t(s.key)) : last_token(S, r, whole);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(SampleParams p) {
  hyrax::cuda::begin_after_previous_grids();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& S = *reinterpret_cast<Smem*>(smem_raw);
  const int64_t row = blockIdx.x;
  const SampleRow prm = p.rows[row];
  Row r;
  r.x = p.logits + row * p.ld;
  r.V = p.V;
  r.vec = (reinterpret_cast<uintptr_t>(r.x) & 15) == 0;
  r.T = prm.temperature;
  row_stats(S, r);
  int32_t token = S.amax;
  if (prm.temperature != 0.0f) {
    r.smax = scaled(S.xmax, r.T);
    token = sample_filtered(S, r, prm);
  }
  if (threadIdx.x == 0) {
    p.tokens[row] = token;
    if (p.logprobs) p.logprobs[row] = float(double(r.x[token]) - double(S.xmax) - log(S.sumexp));
  }
}

}  // namespace

void sample(const SampleParams& p, cudaStream_t stream) {
  HYRAX_CHECK(p.R >= 0 && p.V > 0 && p.ld >= p.V, "sample: R=", p.R, " V=", p.V, " ld=", p.ld);
  HYRAX_CHECK(p.V <= kSampleMaxVocab, "sample: vocabulary ", p.V, " exceeds ", kSampleMaxVocab);
  HYRAX_CHECK(p.R == 0 || (p.logits && p.rows && p.tokens), "sample: null pointer");
  if (p.R == 0) return;
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sizeof(Smem))));
    configured = true;
  }
  hyrax::cuda::launch("sample", sample_kernel, dim3(unsigned(p.R)), dim3(kThreads), sizeof(Smem), stream, p);
}

// ---- SampleRunner -------------------------------------------------------------------------------------------------

namespace {
constexpr size_t kRowBytes = sizeof(SampleRow) + sizeof(int32_t) + sizeof(float);
}

SampleRunner::~SampleRunner() {
  if (host_) cudaFreeHost(host_);
  if (dev_) cudaFree(dev_);
}

void SampleRunner::reserve(int64_t R) {
  if (R <= cap_) return;
  if (host_) CUDA_CHECK(cudaFreeHost(host_));
  if (dev_) CUDA_CHECK(cudaFree(dev_));
  cap_ = std::max<int64_t>(R, 2 * cap_);
  CUDA_CHECK(cudaMallocHost(&host_, size_t(cap_) * kRowBytes));
  CUDA_CHECK(cudaMalloc(&dev_, size_t(cap_) * kRowBytes));
}

void SampleRunner::run(const float* logits, int64_t ld, int64_t R, int64_t V, const SampleRow* rows, int32_t* tokens,
                       float* logprobs, cudaStream_t stream) {
  if (R == 0) return;
  reserve(R);
  const size_t rows_bytes = size_t(cap_) * sizeof(SampleRow);
  auto* h = static_cast<unsigned char*>(host_);
  auto* d = static_cast<unsigned char*>(dev_);
  std::memcpy(h, rows, size_t(R) * sizeof(SampleRow));
  CUDA_CHECK(cudaMemcpyAsync(d, h, size_t(R) * sizeof(SampleRow), cudaMemcpyHostToDevice, stream));
  SampleParams p;
  p.logits = logits;
  p.ld = ld;
  p.R = R;
  p.V = V;
  p.rows = reinterpret_cast<const SampleRow*>(d);
  p.tokens = reinterpret_cast<int32_t*>(d + rows_bytes);
  p.logprobs = reinterpret_cast<float*>(d + rows_bytes + size_t(cap_) * sizeof(int32_t));
  sample(p, stream);
  // Tokens and logprobs sit together: one copy back.
  const size_t out_bytes = size_t(cap_) * sizeof(int32_t) + size_t(R) * sizeof(float);
  CUDA_CHECK(cudaMemcpyAsync(h + rows_bytes, d + rows_bytes, out_bytes, cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::memcpy(tokens, h + rows_bytes, size_t(R) * sizeof(int32_t));
  if (logprobs) std::memcpy(logprobs, h + rows_bytes + size_t(cap_) * sizeof(int32_t), size_t(R) * sizeof(float));
}

}  // namespace hyrax::kernels::cuda
