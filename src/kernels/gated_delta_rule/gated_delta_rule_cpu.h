// Internal to the CPU gated delta rule: the per-(sequence, value head) kernels of both algorithms, written once over
// simd::vf and compiled by gated_delta_rule_cpu.cpp (x86-64 baseline), gated_delta_rule_avx2.cpp and
// gated_delta_rule_avx512.cpp, each for its own ISA. The including file defines HYRAX_GDN_ISA, the namespace its
// entry points (bottom of this file) go in; everything else has internal linkage.
//
// Notation for one sequence and one value head h (key head h / (Hv / Hk)), state S [Dk, Dv]:
//   recurrent, per token:  kv = Sᵀk;  u = β(v − α·kv);  S = α·S + k uᵀ;  o = Sᵀq
//   chunked, per chunk of n tokens (rows i, j), S0 the state at its start, G = cumsum(g), γ = exp(G):
//     A   = strictly-lower(β_i · exp(G_i − G_j) · k_i·k_j)      U = (I + A)⁻¹ · diag(β) · (V − diag(γ)·K·S0)
//     O   = diag(γ)·Q·S0 + lower(Q·Kᵀ ⊙ exp(G_i − G_j)) · U      S = γ_n·S0 + (diag(exp(G_n − G_j))·K)ᵀ · U
//   exp is only taken of G_i − G_j with i ≥ j (≤ 0), so nothing overflows. G is summed in float64: in float32 a
//   difference of two large cumulative sums (G ~ −1000 under strong decay) would lose ~1e-4 to cancellation.
#pragma once

#include <cstdint>

#include "kernels/cpu_simd.h"
#include "kernels/gated_delta_rule/gated_delta_rule.h"

#ifndef HYRAX_GDN_ISA
#error "define HYRAX_GDN_ISA (the namespace of this ISA's entry points) before including gated_delta_rule_cpu.h"
#endif

namespace hyrax::kernels::gdn_detail {
namespace {

using simd::kLanes;
using simd::vf;
using P = GatedDeltaRuleParams;

// Register tile of the small matrix products: kMR rows × kNV vectors of kLanes columns.
#if defined(__AVX512F__)
constexpr int kMR = 4, kNV = 4;  // 16 accumulators of 32 registers
#else
constexpr int kMR = 4, kNV = 2;  // 8 accumulators of 16 registers
#endif
static_assert(kLanes % kMR == 0, "a row tile must lie in one kLanes group of P's zero-padded columns (Tri::LowerA)");

constexpr int64_t kGroup = 32;  // tokens whose q, k, α, β the recurrent kernel prepares at once

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// ---- per-token inputs ------------------------------------------------------------------------------------------

/// y = x · rsqrt(Σx² + 1e-6) · scale over n floats (float32; Σ in kLanes partial sums).
inline void l2norm(const float* x, int64_t n, float scale, float* y) {
  vf acc{};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const vf v = simd::load(x + i);
    acc += v * v;
  }
  float ss = simd::hsum(acc);
  for (; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.0f / __builtin_sqrtf(ss + 1e-6f);
  for (i = 0; i < n; ++i) y[i] = x[i] * r * scale;
}

/// g = −A·softplus(a + dt_bias) with A = exp(A_log[h]) (torch's softplus: x above 20) and β = sigmoid(b)·(1 or 2),
/// float32.
inline void gate_and_beta(const P& p, int64_t t, int64_t h, float A, float* g, float* beta) {
  const float x = p.a[t * p.ld_ab + h] + p.dt_bias[h];
  const float softplus = x > 20.0f ? x : __builtin_log1pf(__builtin_expf(x));
  *g = -A * softplus;
  const float sig = 1.0f / (1.0f + __builtin_expf(-p.b[t * p.ld_ab + h]));
  *beta = p.allow_neg_eigval ? 2.0f * sig : sig;
}

inline float q_scale(const P& p) { return float(1.0 / __builtin_sqrt(double(p.Dk))); }

/// Asks for the cache lines of [p, p + n floats) ahead of use (write = they are about to be overwritten).
inline void prefetch(const float* p, int64_t n, bool write = false) {
  const char* c = reinterpret_cast<const char*>(p);
  const char* end = c + n * int64_t(sizeof(float));
  for (c -= reinterpret_cast<uintptr_t>(c) % 64; c < end; c += 64) {
    if (write) __builtin_prefetch(c, 1, 3);
    else __builtin_prefetch(c, 0, 3);
  }
}

/// Prefetches the inputs and outputs of tokens [t, t + n) of value head h. Their rows are far apart (one packed row
/// per token), which the hardware prefetcher does not follow: without this, loads of q, k, v and stores of o wait
/// on memory for about a third of a prefill.
inline void prefetch_tokens(const P& p, int64_t t, int64_t n, int64_t h) {
  const int64_t hk = h / (p.Hv / p.Hk);
  for (int64_t i = t; i < t + n; ++i) {
    prefetch(p.q + i * p.ld_qkv + hk * p.Dk, p.Dk);
    prefetch(p.k + i * p.ld_qkv + hk * p.Dk, p.Dk);
    prefetch(p.v + i * p.ld_qkv + h * p.Dv, p.Dv);
    prefetch(p.a + i * p.ld_ab + h, 1);
    prefetch(p.b + i * p.ld_ab + h, 1);
    prefetch(p.out + i * p.ld_out + h * p.Dv, p.Dv, true);
  }
}

// ---- small matrix products -------------------------------------------------------------------------------------

/// C[MR, NV·kLanes] = (accumulate ? cs·C : 0) + A[MR, K]·B[K, NV·kLanes], where A(r, k) = A[r·ars + k·aks].
template <int MR, int NV>
inline void gemm_tile(int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb, float* C,
                      int64_t ldc, bool accumulate, float cs) {
  vf c[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) c[r][v] = vf{};
  for (int64_t k = 0; k < K; ++k) {
    vf b[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) b[v] = simd::load(B + k * ldb + v * kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const vf a = simd::splat(A[r * ars + k * aks]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) c[r][v] += a * b[v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      float* cp = C + r * ldc + v * kLanes;
      simd::store(cp, accumulate ? cs * simd::load(cp) + c[r][v] : c[r][v]);
    }
}

enum class Tri {
  None,
  LowerA,  // A[r, k] = 0 for k > r: a row tile's inner loop stops at its last row
  LowerC,  // only C[r, c] with c ≤ r is wanted: column tiles entirely above the diagonal are skipped
};

/// C[M, N] = (accumulate ? cs·C : 0) + A[M, K]·B[K, N]; N a multiple of kLanes. With Tri::LowerC, the entries of
/// row r in columns [0, round_up(r + 1, kLanes)) are computed; others are left as they were.
inline void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate, float cs, Tri tri = Tri::None) {
  for (int64_t n0 = 0; n0 < N;) {
    const bool wide = N - n0 >= kNV * kLanes;
    for (int64_t m0 = 0; m0 < M;) {
      const int64_t mr = M - m0 >= kMR ? kMR : 1;
      if (tri == Tri::LowerC && n0 > m0 + mr - 1) {  // the tile lies above the diagonal
        m0 += mr;
        continue;
      }
      const int64_t kk = tri == Tri::LowerA ? min64(K, m0 + mr) : K;
      const float* a = A + m0 * ars;
      float* c = C + m0 * ldc + n0;
      if (mr == kMR) {
        if (wide) gemm_tile<kMR, kNV>(kk, a, ars, aks, B + n0, ldb, c, ldc, accumulate, cs);
        else gemm_tile<kMR, 1>(kk, a, ars, aks, B + n0, ldb, c, ldc, accumulate, cs);
      } else {
        if (wide) gemm_tile<1, kNV>(kk, a, ars, aks, B + n0, ldb, c, ldc, accumulate, cs);
        else gemm_tile<1, 1>(kk, a, ars, aks, B + n0, ldb, c, ldc, accumulate, cs);
      }
      m0 += mr;
    }
    n0 += (wide ? kNV : 1) * kLanes;
  }
}

/// U = (I − N)⁻¹·U in place for N [n, n] strictly lower (row stride ldn, zero on and above the diagonal up to the
/// next multiple of kLanes), U [n, N]: forward substitution, U[i] += Σ_{j<i} N[i, j]·U[j] in row order. Rows go in
/// blocks of kMR: the part from earlier blocks is one register-tiled product, the triangle inside the block a few
/// vector AXPYs.
inline void forward_subst(int64_t n, int64_t N, const float* Nm, int64_t ldn, float* U, int64_t ldu) {
  for (int64_t r0 = 0; r0 < n; r0 += kMR) {
    const int64_t mr = min64(kMR, n - r0);
    if (r0 > 0) gemm(mr, N, r0, Nm + r0 * ldn, ldn, 1, U, ldu, U + r0 * ldu, ldu, true, 1.0f);
    for (int64_t r = r0 + 1; r < r0 + mr; ++r) {
      for (int64_t j = r0; j < r; ++j) {
        const vf a = simd::splat(Nm[r * ldn + j]);
        for (int64_t c = 0; c < N; c += kLanes)
          simd::store(U + r * ldu + c, simd::load(U + r * ldu + c) + a * simd::load(U + j * ldu + c));
      }
    }
  }
}

// ---- chunked form ----------------------------------------------------------------------------------------------

/// Where each buffer of one (sequence, head) task lies in its scratch (offsets in floats, 64-byte multiples).
struct ChunkLayout {
  int64_t C, Cp, Dk, Dvp;  // chunk, chunk rounded up to kLanes, key dim, value dim rounded up to kLanes
  int64_t S, Q, K, KT, QK, KK, QS, U, G, dG, gam, beta, tail, total;

  ChunkLayout(const P& p, int64_t chunk)
      : C(chunk), Cp(round_up(chunk, kLanes)), Dk(p.Dk), Dvp(round_up(p.Dv, kLanes)) {
    int64_t at = 0;
    auto take = [&](int64_t n) {
      const int64_t o = at;
      at += round_up(n, 16);
      return o;
    };
    S = take(Dk * Dvp);   // [Dk, Dvp]  the state, zero in columns ≥ Dv
    Q = take(C * Dk);     // [C, Dk]    normalized, scaled q; then ·γ_i
    K = take(C * Dk);     // [C, Dk]    normalized k; then ·γ_i
    KT = take(Dk * Cp);   // [Dk, Cp]   normalized kᵀ, zero in columns ≥ n; then column j ·exp(G_n − G_j)
    QK = take(C * Cp);    // [C, Cp]    Q·Kᵀ, then P = lower(Q·Kᵀ ⊙ exp(G_i − G_j))
    KK = take(C * Cp);    // [C, Cp]    K·Kᵀ, then −A
    QS = take(C * Dvp);   // [C, Dvp]   γQ·S0, then O
    U = take(C * Dvp);    // [C, Dvp]   γK·S0, then the right-hand side, then U
    G = take(2 * Cp);     // cumulative log decay (float64), zero past n
    dG = take(Cp);        // G_i − G_j of one row i
    gam = take(Cp);       // exp(G_i)
    beta = take(Cp);      // β_i
    tail = take(Cp);      // exp(G_n − G_i)
    total = at;
  }
};

/// One chunk of n ≤ C tokens starting at token t of value head h; S (in the scratch) goes from S0 to its successor.
/// The rows of the next chunk's n_next tokens are prefetched on the way, a token per row of the decay pass.
inline void chunk_step(const P& p, const ChunkLayout& L, float* w, int64_t t, int64_t n, int64_t h, int64_t n_next) {
  const int64_t Dk = p.Dk, Dv = p.Dv, Cp = L.Cp, Dvp = L.Dvp, hk = h / (p.Hv / p.Hk);
  float *S = w + L.S, *Q = w + L.Q, *K = w + L.K, *KT = w + L.KT, *QK = w + L.QK, *KK = w + L.KK;
  float *QS = w + L.QS, *U = w + L.U, *dG = w + L.dG, *gam = w + L.gam, *beta = w + L.beta, *tail = w + L.tail;
  double* G = reinterpret_cast<double*>(w + L.G);

  // Inputs: normalized q, k; Kᵀ; G = cumsum(g); β.
  const float qs = q_scale(p), A = __builtin_expf(p.A_log[h]);
  double G_run = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    l2norm(p.q + (t + i) * p.ld_qkv + hk * Dk, Dk, qs, Q + i * Dk);
    l2norm(p.k + (t + i) * p.ld_qkv + hk * Dk, Dk, 1.0f, K + i * Dk);
    float g;
    gate_and_beta(p, t + i, h, A, &g, &beta[i]);
    G_run += double(g);
    G[i] = G_run;
  }
  for (int64_t i = n; i < Cp; ++i) G[i] = 0.0, beta[i] = 0.0f;
  for (int64_t d = 0; d < Dk; ++d) {
    for (int64_t i = 0; i < n; ++i) KT[d * Cp + i] = K[i * Dk + d];
    for (int64_t i = n; i < Cp; ++i) KT[d * Cp + i] = 0.0f;
  }
  const int64_t np = round_up(n, kLanes);
  for (int64_t i = 0; i < np; ++i) dG[i] = float(G[i]);
  for (int64_t i0 = 0; i0 < np; i0 += kLanes) simd::store(gam + i0, simd::exp(simd::load(dG + i0)));
  for (int64_t i = 0; i < np; ++i) dG[i] = float(G[n - 1] - G[i]);
  for (int64_t i0 = 0; i0 < np; i0 += kLanes) simd::store(tail + i0, simd::exp(simd::load(dG + i0)));

  // Q·Kᵀ and K·Kᵀ (lower triangles), then P and −A with the pairwise decays. Row i is written on columns
  // [0, round_up(i + 1, kLanes)), zero above the diagonal: that covers every column the lower-A product reads.
  gemm(n, np, Dk, Q, Dk, 1, KT, Cp, QK, Cp, false, 1.0f, Tri::LowerC);
  gemm(n, np, Dk, K, Dk, 1, KT, Cp, KK, Cp, false, 1.0f, Tri::LowerC);
  for (int64_t i = 0; i < n; ++i) {
    if (i < n_next) prefetch_tokens(p, t + n + i, 1, h);
    const int64_t cols = round_up(i + 1, kLanes);
    for (int64_t j = 0; j < cols; ++j) dG[j] = float(G[i] - G[j]);
    const simd::vi ii = simd::vi{} + int32_t(i);
    for (int64_t j0 = 0; j0 < cols; j0 += kLanes) {
      const simd::vi jj = simd::iota() + int32_t(j0);
      const vf d = simd::exp(simd::load(dG + j0));
      const vf qk = simd::load(QK + i * Cp + j0), kk = simd::load(KK + i * Cp + j0);
      simd::store(QK + i * Cp + j0, jj <= ii ? qk * d : vf{});
      simd::store(KK + i * Cp + j0, jj < ii ? -beta[i] * (kk * d) : vf{});
    }
  }

  // γQ·S0 and γK·S0 in one pass over S0 each.
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < Dk; ++d) Q[i * Dk + d] *= gam[i], K[i * Dk + d] *= gam[i];
  }
  gemm(n, Dvp, Dk, Q, Dk, 1, S, Dvp, QS, Dvp, false, 1.0f);
  gemm(n, Dvp, Dk, K, Dk, 1, S, Dvp, U, Dvp, false, 1.0f);

  // Right-hand side β(V − γK·S0), then U = (I + A)⁻¹ · rhs.
  for (int64_t i = 0; i < n; ++i) {
    const float* v = p.v + (t + i) * p.ld_qkv + h * Dv;
    float* u = U + i * Dvp;
    for (int64_t c = 0; c < Dv; ++c) u[c] = beta[i] * (v[c] - u[c]);
    for (int64_t c = Dv; c < Dvp; ++c) u[c] = 0.0f;
  }
  forward_subst(n, Dvp, KK, Cp, U, Dvp);

  // O = γQ·S0 + P·U.
  gemm(n, Dvp, n, QK, Cp, 1, U, Dvp, QS, Dvp, true, 1.0f, Tri::LowerA);
  for (int64_t i = 0; i < n; ++i) {
    float* o = p.out + (t + i) * p.ld_out + h * Dv;
    for (int64_t c = 0; c < Dv; ++c) o[c] = QS[i * Dvp + c];
  }

  // S = γ_n·S0 + (diag(exp(G_n − G_j))·K)ᵀ·U.
  for (int64_t d = 0; d < Dk; ++d) {
    for (int64_t j0 = 0; j0 < np; j0 += kLanes)
      simd::store(KT + d * Cp + j0, simd::load(KT + d * Cp + j0) * simd::load(tail + j0));
  }
  gemm(Dk, Dvp, n, KT, Cp, 1, U, Dvp, S, Dvp, true, gam[n - 1]);
}

inline int64_t chunked_scratch(const P& p, int chunk) { return ChunkLayout(p, chunk).total; }

inline void chunked_task(const P& p, int64_t s, int64_t h, int chunk, float* w) {
  const int64_t t0 = p.cu_seqlens[s], t1 = p.cu_seqlens[s + 1];
  if (t1 == t0) return;
  const ChunkLayout L(p, chunk);
  const int64_t Dk = p.Dk, Dv = p.Dv;
  float* state = p.state + (int64_t(p.state_slots[s]) * p.Hv + h) * Dk * Dv;
  float* S = w + L.S;
  for (int64_t d = 0; d < Dk; ++d) {
    for (int64_t c = 0; c < Dv; ++c) S[d * L.Dvp + c] = state[d * Dv + c];
    for (int64_t c = Dv; c < L.Dvp; ++c) S[d * L.Dvp + c] = 0.0f;
  }
  prefetch_tokens(p, t0, min64(chunk, t1 - t0), h);
  for (int64_t t = t0; t < t1; t += chunk) {
    const int64_t n = min64(chunk, t1 - t);
    chunk_step(p, L, w, t, n, h, min64(chunk, t1 - t - n));
  }
  for (int64_t d = 0; d < Dk; ++d)
    for (int64_t c = 0; c < Dv; ++c) state[d * Dv + c] = S[d * L.Dvp + c];
}

// ---- recurrent form --------------------------------------------------------------------------------------------

template <class V>
inline V ld(const float* p) {
  if constexpr (sizeof(V) == sizeof(float)) return *p;
  else return simd::load(p);
}
template <class V>
inline void st(float* p, V v) {
  if constexpr (sizeof(V) == sizeof(float)) *p = v;
  else simd::store(p, v);
}

/// ng tokens on the state columns [c, c + NV·width(V)): S points at column c of row 0 (row stride lds), v and o at
/// column c of the first token's value and output rows. Columns are independent, so a tile of the state (Dk rows of
/// 4 vectors: 24 KiB at Dk = 96 with AVX-512) stays in L1 from pass 1 to pass 2 and across the tokens. The tile
/// widths depend only on Dv and the ISA, so the arithmetic of a column never depends on how tokens are split.
template <class V, int NV>
inline void recurrent_tile(int64_t ng, int64_t Dk, const float* Qn, const float* Kn, const float* alpha,
                           const float* beta, float* S, int64_t lds, const float* v, int64_t ldv, float* o,
                           int64_t ldo) {
  constexpr int64_t W = sizeof(V) / sizeof(float);
  constexpr int R = NV < 8 ? 2 : 1;  // rows per step, so that there are at least 8 independent FMA chains
  for (int64_t i = 0; i < ng; ++i) {
    const float* q = Qn + i * Dk;
    const float* k = Kn + i * Dk;
    // Pass 1: kv = Sᵀk.
    V a[R][NV];
#pragma GCC unroll 16
    for (int j = 0; j < NV; ++j)
      for (int rr = 0; rr < R; ++rr) a[rr][j] = V{};
    int64_t r = 0;
    for (; r + R <= Dk; r += R) {
#pragma GCC unroll 16
      for (int j = 0; j < NV; ++j)
        for (int rr = 0; rr < R; ++rr) a[rr][j] += k[r + rr] * ld<V>(S + (r + rr) * lds + j * W);
    }
    for (; r < Dk; ++r) {
#pragma GCC unroll 16
      for (int j = 0; j < NV; ++j) a[0][j] += k[r] * ld<V>(S + r * lds + j * W);
    }
    V u[NV];
#pragma GCC unroll 16
    for (int j = 0; j < NV; ++j) {
      V kv = a[0][j];
      for (int rr = 1; rr < R; ++rr) kv += a[rr][j];
      u[j] = beta[i] * (ld<V>(v + i * ldv + j * W) - alpha[i] * kv);
    }
    // Pass 2: S = αS + k uᵀ and o = Sᵀq.
#pragma GCC unroll 16
    for (int j = 0; j < NV; ++j)
      for (int rr = 0; rr < R; ++rr) a[rr][j] = V{};
    for (r = 0; r + R <= Dk; r += R) {
#pragma GCC unroll 16
      for (int j = 0; j < NV; ++j) {
        for (int rr = 0; rr < R; ++rr) {
          float* sp = S + (r + rr) * lds + j * W;
          const V sn = alpha[i] * ld<V>(sp) + k[r + rr] * u[j];
          st<V>(sp, sn);
          a[rr][j] += q[r + rr] * sn;
        }
      }
    }
    for (; r < Dk; ++r) {
#pragma GCC unroll 16
      for (int j = 0; j < NV; ++j) {
        float* sp = S + r * lds + j * W;
        const V sn = alpha[i] * ld<V>(sp) + k[r] * u[j];
        st<V>(sp, sn);
        a[0][j] += q[r] * sn;
      }
    }
#pragma GCC unroll 16
    for (int j = 0; j < NV; ++j) {
      V oj = a[0][j];
      for (int rr = 1; rr < R; ++rr) oj += a[rr][j];
      st<V>(o + i * ldo + j * W, oj);
    }
  }
}

inline int64_t recurrent_scratch(const P& p) { return 2 * kGroup * p.Dk + 2 * kGroup; }

inline void recurrent_task(const P& p, int64_t s, int64_t h, float* w) {
  const int64_t t0 = p.cu_seqlens[s], t1 = p.cu_seqlens[s + 1];
  const int64_t Dk = p.Dk, Dv = p.Dv, hk = h / (p.Hv / p.Hk);
  float* S = p.state + (int64_t(p.state_slots[s]) * p.Hv + h) * Dk * Dv;
  float *Qn = w, *Kn = w + kGroup * Dk, *alpha = w + 2 * kGroup * Dk, *beta = alpha + kGroup;
  const float qs = q_scale(p), A = __builtin_expf(p.A_log[h]);
  for (int64_t t = t0; t < t1; t += kGroup) {
    const int64_t ng = min64(kGroup, t1 - t);
    for (int64_t i = 0; i < ng; ++i) {
      l2norm(p.q + (t + i) * p.ld_qkv + hk * Dk, Dk, qs, Qn + i * Dk);
      l2norm(p.k + (t + i) * p.ld_qkv + hk * Dk, Dk, 1.0f, Kn + i * Dk);
      float g;
      gate_and_beta(p, t + i, h, A, &g, &beta[i]);
      alpha[i] = __builtin_expf(g);
    }
    const float* v = p.v + t * p.ld_qkv + h * Dv;
    float* o = p.out + t * p.ld_out + h * Dv;
    int64_t c = 0;
    for (; c + 4 * kLanes <= Dv; c += 4 * kLanes)
      recurrent_tile<vf, 4>(ng, Dk, Qn, Kn, alpha, beta, S + c, Dv, v + c, p.ld_qkv, o + c, p.ld_out);
    for (; c + kLanes <= Dv; c += kLanes)
      recurrent_tile<vf, 1>(ng, Dk, Qn, Kn, alpha, beta, S + c, Dv, v + c, p.ld_qkv, o + c, p.ld_out);
    for (; c < Dv; ++c)
      recurrent_tile<float, 1>(ng, Dk, Qn, Kn, alpha, beta, S + c, Dv, v + c, p.ld_qkv, o + c, p.ld_out);
  }
}

}  // namespace
}  // namespace hyrax::kernels::gdn_detail

// This ISA's entry points (plain functions, so the dispatcher in gated_delta_rule_cpu.cpp can pick one at run time).
namespace hyrax::kernels::HYRAX_GDN_ISA {
/// Floats of scratch one recurrent / chunked (sequence, head) task needs.
int64_t recurrent_scratch(const GatedDeltaRuleParams& p) { return gdn_detail::recurrent_scratch(p); }
int64_t chunked_scratch(const GatedDeltaRuleParams& p, int chunk) { return gdn_detail::chunked_scratch(p, chunk); }
/// Runs sequence s, value head h, reading and updating its state in place.
void recurrent_task(const GatedDeltaRuleParams& p, int64_t s, int64_t h, float* scratch) {
  gdn_detail::recurrent_task(p, s, h, scratch);
}
void chunked_task(const GatedDeltaRuleParams& p, int64_t s, int64_t h, int chunk, float* scratch) {
  gdn_detail::chunked_task(p, s, h, chunk, scratch);
}
}  // namespace hyrax::kernels::HYRAX_GDN_ISA
