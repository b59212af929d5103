// Internal to the CPU paged attention: the kernel of one task (a run of query rows of one sequence and head), written
// once over simd::vf and compiled by attention_cpu.cpp (x86-64 baseline), attention_avx2.cpp and attention_avx512.cpp,
// each for its own ISA. The including file defines HYRAX_ATTN_ISA, the namespace its entry points (bottom of this
// file) go in; everything else has internal linkage.
//
// Two paths, both float32 with exact (max-subtracted) softmax:
//  - blocked (kBlockedMinRows rows or more): queries transposed to Qᵀ [D, m], then for each block of kKeys keys
//    (rows read in place from their cache pages): Sᵀ = K·Qᵀ [keys, m] (vectorized over queries), causal mask,
//    online softmax (running max and sum per query, vectorized over queries), O = corr·O + P·V;
//  - per row (decode): scores q·k_j for every key, softmax, o = Σ_j p_j v_j.
#pragma once

#include <cstdint>

#include "kernels/attention/attention.h"
#include "kernels/cpu_simd.h"

#ifndef HYRAX_ATTN_ISA
#error "define HYRAX_ATTN_ISA (the namespace of this ISA's entry points) before including attention_cpu.h"
#endif

namespace hyrax::kernels::attn_detail {
namespace {

using simd::kLanes;
using simd::vf;
using P = AttentionParams;

#if defined(__AVX512F__)
constexpr int kMR = 4, kNV = 4;
#else
constexpr int kMR = 4, kNV = 2;
#endif

constexpr int64_t kBlockedMinRows = 8;  // fewer query rows than this go row by row (same on every ISA)
constexpr int64_t kMaxRows = 64;        // query rows per blocked task (the caller splits longer runs)
constexpr int64_t kKeys = 64;           // keys per block (fewer where a cache page ends)

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/// Key (or value) row of position pos of sequence s, kv head hk.
inline const float* kv_row(const PagedKv& kv, const float* pool, int64_t s, int64_t pos, int64_t hk) {
  const int64_t block = kv.block_tables[s * kv.max_blocks_per_seq + pos / kv.block_size];
  return pool + ((block * kv.block_size + pos % kv.block_size) * kv.Hkv + hk) * kv.D;
}

// Operands of the small products, read in place: A by element (strided, or rows through pointers: cache pages),
// B by row (strided, or through pointers).
struct AStrided {
  const float* p;
  int64_t rs, ks;
  float at(int64_t r, int64_t k) const { return p[r * rs + k * ks]; }
  AStrided from_row(int64_t m0) const { return {p + m0 * rs, rs, ks}; }
};
struct ARows {
  const float* const* rows;
  float at(int64_t r, int64_t k) const { return rows[r][k]; }
  ARows from_row(int64_t m0) const { return {rows + m0}; }
};
struct BStrided {
  const float* p;
  int64_t ld;
  const float* row(int64_t k) const { return p + k * ld; }
  BStrided from_col(int64_t n0) const { return {p + n0, ld}; }
};
struct BRows {
  const float* const* rows;
  int64_t col;
  const float* row(int64_t k) const { return rows[k] + col; }
  BRows from_col(int64_t n0) const { return {rows, col + n0}; }
};

/// C[MR, NV·kLanes] = (accumulate ? C : 0) + A[MR, K]·B[K, NV·kLanes].
template <int MR, int NV, class TA, class TB>
inline void gemm_tile(int64_t K, TA A, TB B, float* C, int64_t ldc, bool accumulate) {
  vf c[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) c[r][v] = accumulate ? simd::load(C + r * ldc + v * kLanes) : vf{};
  for (int64_t k = 0; k < K; ++k) {
    const float* brow = B.row(k);
    vf b[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) b[v] = simd::load(brow + v * kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const vf a = simd::splat(A.at(r, k));
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) c[r][v] += a * b[v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) simd::store(C + r * ldc + v * kLanes, c[r][v]);
}

/// C[M, N] = (accumulate ? C : 0) + A[M, K]·B[K, N]; N a multiple of kLanes.
template <class TA, class TB>
inline void gemm(int64_t M, int64_t N, int64_t K, TA A, TB B, float* C, int64_t ldc, bool accumulate) {
  for (int64_t n0 = 0; n0 < N;) {
    const bool wide = N - n0 >= kNV * kLanes;
    const TB b = B.from_col(n0);
    for (int64_t m0 = 0; m0 < M;) {
      const int64_t mr = M - m0 >= kMR ? kMR : 1;
      const TA a = A.from_row(m0);
      float* c = C + m0 * ldc + n0;
      if (mr == kMR) {
        if (wide) gemm_tile<kMR, kNV>(K, a, b, c, ldc, accumulate);
        else gemm_tile<kMR, 1>(K, a, b, c, ldc, accumulate);
      } else {
        if (wide) gemm_tile<1, kNV>(K, a, b, c, ldc, accumulate);
        else gemm_tile<1, 1>(K, a, b, c, ldc, accumulate);
      }
      m0 += mr;
    }
    n0 += (wide ? kNV : 1) * kLanes;
  }
}

/// Σ_d a[d]·b[d] over n floats: kLanes partial sums in order, a fixed lane reduction, then the tail.
inline float dot(const float* a, const float* b, int64_t n) {
  vf acc0{}, acc1{};
  int64_t d = 0;
  for (; d + 2 * kLanes <= n; d += 2 * kLanes) {
    acc0 += simd::load(a + d) * simd::load(b + d);
    acc1 += simd::load(a + d + kLanes) * simd::load(b + d + kLanes);
  }
  if (d + kLanes <= n) {
    acc0 += simd::load(a + d) * simd::load(b + d);
    d += kLanes;
  }
  float s = simd::hsum(acc0 + acc1);
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}

/// Asks for the cache lines of [p, p + n floats) ahead of use.
inline void prefetch(const float* p, int64_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  const char* end = c + n * int64_t(sizeof(float));
  for (c -= reinterpret_cast<uintptr_t>(c) % 64; c < end; c += 64) __builtin_prefetch(c, 0, 3);
}

/// Scratch layout of one task (offsets in floats).
struct Layout {
  int64_t Dp, mp;                                   // D and kMaxRows rounded up to kLanes
  int64_t QT, St, O, mrow, lrow, corr, Vb, q, score, total;
  Layout(const P& p, int64_t max_keys) : Dp(round_up(p.kv.D, kLanes)), mp(round_up(kMaxRows, kLanes)) {
    const int64_t D = p.kv.D;
    int64_t at = 0;
    auto take = [&](int64_t n) {
      const int64_t o = at;
      at += round_up(n, 16);
      return o;
    };
    QT = take(D * mp);       // [D, mp]      scaled queries, transposed
    St = take(kKeys * mp);   // [keys, mp]   scores, then probabilities, transposed
    O = take(kMaxRows * Dp); // [rows, Dp]   unnormalized outputs
    mrow = take(mp);         // running max per query
    lrow = take(mp);         // running sum per query
    corr = take(mp);         // rescale of this block
    Vb = take(kKeys * Dp);   // [keys, Dp]   values with zero columns past D (only when D % kLanes != 0)
    q = take(Dp);            // per-row path: the scaled query
    score = take(max_keys);  // per-row path: scores, then probabilities
    total = at;
  }
};

/// Query rows [i0, i1) (at most kMaxRows) of sequence s, head h.
inline void blocked_rows(const P& p, const Layout& L, float* w, int64_t s, int64_t h, int64_t i0, int64_t i1) {
  const PagedKv& kv = p.kv;
  const int64_t D = kv.D, Dp = L.Dp, ldkv = kv.Hkv * D, hk = h / (p.Hq / kv.Hkv);
  const int64_t m = i1 - i0, mp = round_up(m, kLanes);
  const int64_t t0 = p.cu_seqlens[s] + i0, pos0 = p.start_pos[s] + i0, last = pos0 + m - 1;
  float *QT = w + L.QT, *St = w + L.St, *O = w + L.O, *Vb = w + L.Vb;
  // The key and value rows of this block and the next, wherever their pages are.
  const float* rows[2][2][kKeys];
  auto find_rows = [&](int64_t kb, int64_t nk, const float** krow, const float** vrow) {
    for (int64_t j = 0; j < nk;) {  // page by page
      const int64_t run = min64(kv.block_size - (kb + j) % kv.block_size, nk - j);
      const float* K = kv_row(kv, kv.k, s, kb + j, hk);
      const float* V = kv_row(kv, kv.v, s, kb + j, hk);
      for (int64_t r = 0; r < run; ++r) krow[j + r] = K + r * ldkv, vrow[j + r] = V + r * ldkv;
      j += run;
    }
  };
  float *mrow = w + L.mrow, *lrow = w + L.lrow, *corr = w + L.corr;

  for (int64_t d = 0; d < D; ++d) {
    for (int64_t i = 0; i < m; ++i) QT[d * mp + i] = p.q[(t0 + i) * p.ldq + h * D + d] * p.scale;
    for (int64_t i = m; i < mp; ++i) QT[d * mp + i] = 0.0f;
  }
  for (int64_t i = 0; i < m * Dp; ++i) O[i] = 0.0f;
  for (int64_t i = 0; i < mp; ++i) mrow[i] = -__builtin_inff(), lrow[i] = 0.0f;

  find_rows(0, min64(kKeys, last + 1), rows[0][0], rows[0][1]);
  for (int64_t kb = 0, cur = 0; kb <= last; cur ^= 1) {
    const int64_t nk = min64(kKeys, last + 1 - kb);
    const float** krow = rows[cur][0];
    const float** vrow = rows[cur][1];
    if (kb + nk <= last) {  // the next block's rows, on their way to cache while this block computes
      const int64_t nk_next = min64(kKeys, last + 1 - kb - nk);
      find_rows(kb + nk, nk_next, rows[cur ^ 1][0], rows[cur ^ 1][1]);
      for (int64_t j = 0; j < nk_next; ++j) prefetch(rows[cur ^ 1][0][j], D), prefetch(rows[cur ^ 1][1][j], D);
    }
    if (Dp != D) {  // value rows padded to whole vectors
      for (int64_t j = 0; j < nk; ++j) {
        for (int64_t d = 0; d < D; ++d) Vb[j * Dp + d] = vrow[j][d];
        for (int64_t d = D; d < Dp; ++d) Vb[j * Dp + d] = 0.0f;
        vrow[j] = Vb + j * Dp;
      }
    }

    // Sᵀ = K·Qᵀ, then the causal mask: key kb + j is visible to query row i iff kb + j ≤ pos0 + i.
    gemm(nk, mp, D, ARows{krow}, BStrided{QT, mp}, St, mp, false);
    if (kb + nk - 1 > pos0) {
      for (int64_t j = 0; j < nk; ++j) {
        const simd::vi first_visible = simd::vi{} + int32_t(kb + j - pos0);
        for (int64_t i = 0; i < mp; i += kLanes) {
          const simd::vi ii = simd::iota() + int32_t(i);
          const vf x = simd::load(St + j * mp + i);
          simd::store(St + j * mp + i, ii < first_visible ? simd::splat(-__builtin_inff()) : x);
        }
      }
    }

    // Online softmax, vectorized over queries. Key 0 is in the first block and visible to every query, so the
    // running max is finite from then on.
    for (int64_t i = 0; i < mp; i += kLanes) {
      vf bm = simd::load(St + i);
      for (int64_t j = 1; j < nk; ++j) bm = simd::max(bm, simd::load(St + j * mp + i));
      const vf m_old = simd::load(mrow + i), m_new = simd::max(m_old, bm);
      const vf c = simd::exp(m_old - m_new);
      vf sum{};
      for (int64_t j = 0; j < nk; ++j) {
        const vf e = simd::exp(simd::load(St + j * mp + i) - m_new);
        simd::store(St + j * mp + i, e);
        sum += e;
      }
      simd::store(lrow + i, simd::load(lrow + i) * c + sum);
      simd::store(mrow + i, m_new);
      simd::store(corr + i, c);
    }
    if (kb > 0) {
      for (int64_t i = 0; i < m; ++i) {
        const vf c = simd::splat(corr[i]);
        for (int64_t d = 0; d < Dp; d += kLanes) simd::store(O + i * Dp + d, simd::load(O + i * Dp + d) * c);
      }
    }
    // O += P·V with P(i, j) = Sᵀ[j, i].
    gemm(m, Dp, nk, AStrided{St, 1, mp}, BRows{vrow, 0}, O, Dp, true);
    kb += nk;
  }

  for (int64_t i = 0; i < m; ++i) {
    const float inv = 1.0f / lrow[i];
    float* o = p.out + (t0 + i) * p.ldo + h * D;
    for (int64_t d = 0; d < D; ++d) o[d] = O[i * Dp + d] * inv;
  }
}

constexpr int64_t kAhead = 8;  // rows prefetched ahead when streaming a sequence's keys or values

/// o[d0, d0 + NV·kLanes) = inv · Σ_j prob[j]·v_j over the first n positions of sequence s, kv head hk, read one cache
/// page at a time (rows of one page are ldkv apart).
template <int NV>
inline void weighted_sum_tile(const PagedKv& kv, int64_t s, int64_t hk, int64_t n, const float* prob, int64_t d0,
                              float inv, float* o) {
  const int64_t ldkv = kv.Hkv * kv.D;
  vf acc[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) acc[v] = vf{};
  for (int64_t j0 = 0; j0 < n;) {
    const int64_t run = min64(kv.block_size - j0 % kv.block_size, n - j0);
    const float* V = kv_row(kv, kv.v, s, j0, hk) + d0;
    for (int64_t j = 0; j < run; ++j) {
      if (j + kAhead < run) prefetch(V + (j + kAhead) * ldkv, NV * kLanes);
      const vf pj = simd::splat(prob[j0 + j]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[v] += pj * simd::load(V + j * ldkv + v * kLanes);
    }
    j0 += run;
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) simd::store(o + d0 + v * kLanes, acc[v] * inv);
}

/// One query row i of sequence s, head h (decode): scores over the keys page by page, softmax, then the values page
/// by page with a tile of the output in registers.
inline void single_row(const P& p, const Layout& L, float* w, int64_t s, int64_t h, int64_t i) {
  const PagedKv& kv = p.kv;
  const int64_t D = kv.D, ldkv = kv.Hkv * D, hk = h / (p.Hq / kv.Hkv);
  const int64_t t = p.cu_seqlens[s] + i, n_keys = p.start_pos[s] + i + 1;
  float *q = w + L.q, *score = w + L.score;
  for (int64_t d = 0; d < D; ++d) q[d] = p.q[t * p.ldq + h * D + d] * p.scale;

  for (int64_t j0 = 0; j0 < n_keys;) {
    const int64_t run = min64(kv.block_size - j0 % kv.block_size, n_keys - j0);
    const float* K = kv_row(kv, kv.k, s, j0, hk);
    for (int64_t j = 0; j < run; ++j) {
      if (j + kAhead < run) prefetch(K + (j + kAhead) * ldkv, D);
      score[j0 + j] = dot(q, K + j * ldkv, D);
    }
    j0 += run;
  }
  float m = -__builtin_inff();
  for (int64_t j = 0; j < n_keys; ++j) m = score[j] > m ? score[j] : m;
  const vf mv = simd::splat(m);
  vf sv{};
  int64_t j = 0;
  for (; j + kLanes <= n_keys; j += kLanes) {
    const vf e = simd::exp(simd::load(score + j) - mv);
    simd::store(score + j, e);
    sv += e;
  }
  if (j < n_keys) {  // tail through the same exp, padded lanes left out of the sum
    vf x = mv;
    for (int64_t r = j; r < n_keys; ++r) x[r - j] = score[r];
    const vf e = simd::exp(x - mv);
    for (int64_t r = j; r < n_keys; ++r) score[r] = e[r - j], sv[r - j] += e[r - j];
  }
  const float inv = 1.0f / simd::hsum(sv);

  float* o = p.out + t * p.ldo + h * D;
  constexpr int kTile = 8;  // vectors of the output kept in registers per pass over the values
  int64_t d0 = 0;
  for (; d0 + kTile * kLanes <= D; d0 += kTile * kLanes) weighted_sum_tile<kTile>(kv, s, hk, n_keys, score, d0, inv, o);
  for (; d0 + kLanes <= D; d0 += kLanes) weighted_sum_tile<1>(kv, s, hk, n_keys, score, d0, inv, o);
  for (; d0 < D; ++d0) {
    float a = 0.0f;
    for (int64_t r = 0; r < n_keys; ++r) a += score[r] * kv_row(kv, kv.v, s, r, hk)[d0];
    o[d0] = a * inv;
  }
}

inline void rows(const P& p, int64_t s, int64_t h, int64_t i0, int64_t i1, int64_t max_keys, float* w) {
  const Layout L(p, max_keys);
  if (i1 - i0 >= kBlockedMinRows) {
    blocked_rows(p, L, w, s, h, i0, i1);
  } else {
    for (int64_t i = i0; i < i1; ++i) single_row(p, L, w, s, h, i);
  }
}

}  // namespace
}  // namespace hyrax::kernels::attn_detail

// This ISA's entry points (plain functions, so the dispatcher in attention_cpu.cpp can pick one at run time).
namespace hyrax::kernels::HYRAX_ATTN_ISA {
/// Query rows per blocked task: the caller cuts a sequence's new tokens into runs of at most this many.
int64_t max_rows() { return attn_detail::kMaxRows; }
/// Floats of scratch one task needs, where no sequence attends to more than max_keys keys.
int64_t scratch(const AttentionParams& p, int64_t max_keys) { return attn_detail::Layout(p, max_keys).total; }
/// Query rows [i0, i1) of sequence s, head h.
void rows(const AttentionParams& p, int64_t s, int64_t h, int64_t i0, int64_t i1, int64_t max_keys, float* scratch) {
  attn_detail::rows(p, s, h, i0, i1, max_keys, scratch);
}
}  // namespace hyrax::kernels::HYRAX_ATTN_ISA
