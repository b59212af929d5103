// Internal to the CPU matmul: the register-tile kernel and the two loop nests (direct for decode, packed for
// prefill), written once over a small vector type V and instantiated by matmul_cpu.cpp (scalar), matmul_avx2.cpp and
// matmul_avx512.cpp, each compiled for its own ISA.
//
// The one order of operations (what makes results batch invariant). K is cut into blocks of B.kc (the last one
// shorter). Within a block, one register of V::L float lanes accumulates x[t, k]·w[n, k], lane l taking k ≡ l (mod L)
// in increasing k through V::fma (fused on AVX, multiply then add in the scalar build), the final K % L elements in one
// zero-padded step; the block's lanes are then summed by a fixed pairwise tree (V::hsum). y[t, n] is the first
// block's sum plus each next block's sum, in block order. Every tile shape, cache block and thread computes exactly
// this; tiles only differ in which outputs share loads. So only K, the weight dtype and the ISA decide y[t, n].
// (Summing per block also keeps the running total where prefill blocks over K: in y, 4 bytes an output, rather than
// 4·L bytes of lanes.)
//
// Everything here is a template on V (every V lives in an anonymous namespace, so each instantiation has internal
// linkage) or `static`: no AVX code can be picked by the linker for a baseline caller.
#pragma once

#include <cstdint>

#include "kernels/matmul/matmul.h"

namespace hyrax::kernels::matmul_detail {

/// Weight element types as stored; 16-bit payloads are told apart by type.
struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

/// Tile and cache-block sizes of one ISA. kc is part of the order of operations; the rest only of speed.
struct Blocking {
  int lanes;             // V::L
  int64_t kc;            // K block (multiple of lanes): lanes are summed into y at every block end
  int direct_mr[2];         // decode path: up to this many x rows per tile (16-bit, F32 weights) ...
  int direct_nr;            // ... times this many W rows, W read as stored
  int64_t direct_max_t[2];  // T up to this takes the decode path (16-bit, F32 weights), larger T the packed path
  int mr, nr;            // packed path: register tile, x rows × W rows (mr·nr accumulators)
  int64_t nb;            // W rows per packed panel (multiple of nr): nb × kc floats, in L2
  int64_t tb;            // x rows per block (multiple of mr): tb × kc floats, in L2 while every panel passes
};

/// Floats of per-thread scratch the packed path needs (64-byte aligned): one W panel and one x block.
static constexpr int64_t scratch_floats(const Blocking& b) { return (b.nb + b.tb) * b.kc; }

// Measured on Zen 5 (2 cores, 1 MiB L2): F32 weights fill L1 twice as fast, so their decode tiles are shorter and
// their packed path pays off sooner.
//                                 L   kc    dmr    dnr  dmaxT    mr nr nb  tb
inline constexpr Blocking kScalar{8, 512, {2, 2}, 4, {4, 4}, 2, 4, 16, 64};
inline constexpr Blocking kAvx2{8, 512, {2, 2}, 4, {24, 8}, 4, 3, 24, 96};
inline constexpr Blocking kAvx512{16, 1024, {3, 2}, 8, {32, 8}, 6, 4, 32, 192};

/// Index into Blocking's per-weight-width fields.
static constexpr int f32_index(DType t) { return t == DType::F32 ? 1 : 0; }

/// One thread's share: rows [t0, t1) × columns [n0, n1) of y.
struct Block {
  const MatmulParams* p = nullptr;
  int64_t t0 = 0, t1 = 0, n0 = 0, n1 = 0;
  bool direct = false;       // decode path (else packed)
  float* scratch = nullptr;  // scratch_floats() floats (64-byte aligned) for the packed path
};

void matmul_block_scalar(const Block& b);
void matmul_block_avx2(const Block& b);
void matmul_block_avx512(const Block& b);

static constexpr int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/// y[i·ldy + j] = hsum(a[i][j]) (first K block) or y[i·ldy + j] + hsum(a[i][j]), for the valid i < mr, j < nr.
template <class V, int MR, int NR>
inline void add_tile(const typename V::R (&a)[MR][NR], float* y, int64_t ldy, int mr, int nr, bool first) {
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* yi = y + i * ldy;
    if constexpr (V::kHsum4 && NR % 4 == 0) {  // four tree sums at once: the same adds, fewer shuffles
#pragma GCC unroll 8
      for (int j = 0; j < NR; j += 4) {
        const int n = nr - j < 4 ? nr - j : 4;
        if (n > 0) V::add_hsum4(&a[i][j], yi + j, n, first);
      }
    } else {
#pragma GCC unroll 32
      for (int j = 0; j < NR; ++j)
        if (j < nr) yi[j] = first ? V::hsum(a[i][j]) : yi[j] + V::hsum(a[i][j]);
    }
  }
}

/// Adds one K block to y: for the valid i < mr, j < nr, y[i·ldy + j] = hsum(Σ_k x[i][k]·w[j][k] over k < kc), or
/// `first`: y = that sum. x / w point at the block's first element. Rows past mr / nr point at a valid row and are
/// computed but dropped. PF: prefetch distance in bytes along the W rows (0: none).
template <class V, int MR, int NR, int PF, class W>
inline void tile(const float* const* x, const W* const* w, int64_t kc, float* y, int64_t ldy, int mr, int nr,
                 bool first) {
  using R = typename V::R;
  constexpr int L = V::L;
  R a[MR][NR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) a[i][j] = V::zero();

  auto step = [&](int64_t k) __attribute__((always_inline)) {
    R wv[NR];
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) wv[j] = V::loadw(w[j] + k);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const R xv = V::load(x[i] + k);
#pragma GCC unroll 32
      for (int j = 0; j < NR; ++j) a[i][j] = V::fma(xv, wv[j], a[i][j]);
    }
  };
  // Steps covering 64 bytes of each W row, so one prefetch per row and cache line.
  constexpr int U = int(64 / (L * sizeof(W))) > 0 ? int(64 / (L * sizeof(W))) : 1;
  int64_t k = 0;
  for (; k + U * L <= kc; k += U * L) {
    if constexpr (PF > 0) {
#pragma GCC unroll 32
      for (int j = 0; j < NR; ++j) V::prefetch(reinterpret_cast<const char*>(w[j] + k) + PF);
    }
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) step(k + u * L);
  }
  for (; k + L <= kc; k += L) step(k);
  if (k < kc) {  // the K tail: lanes past it are zero in both operands, so they add +0
    const int n = int(kc - k);
    R wv[NR];
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) wv[j] = V::load_part(w[j] + k, n);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const R xv = V::load_part(x[i] + k, n);
#pragma GCC unroll 32
      for (int j = 0; j < NR; ++j) a[i][j] = V::fma(xv, wv[j], a[i][j]);
    }
  }

  add_tile<V, MR, NR>(a, y, ldy, mr, nr, first);
}

/// Decode path (small T): tiles of up to direct_mr x rows × direct_nr W rows; W is streamed as stored (converted in
/// registers, prefetched ahead) and read from memory once, each K block of it staying in L1 for the other x rows.
template <class V, const Blocking& B, int MR, class W>
inline void direct_tile(const float* const* x, const W* const* w, int64_t kc, float* y, int64_t ldy, int mr, int nr,
                        bool first) {
  constexpr int kPrefetchBytes = 1024;
  if constexpr (MR > 1) {
    if (mr < MR) return direct_tile<V, B, MR - 1, W>(x, w, kc, y, ldy, mr, nr, first);
  }
  tile<V, MR, B.direct_nr, kPrefetchBytes, W>(x, w, kc, y, ldy, mr, nr, first);
}

template <class V, const Blocking& B, class W>
void run_direct(const Block& b, const W* w) {
  const MatmulParams& p = *b.p;
  constexpr int MR = B.direct_mr[sizeof(W) == 4 ? 1 : 0], NR = B.direct_nr;
  for (int64_t n = b.n0; n < b.n1; n += NR) {
    const int nr = int(min64(NR, b.n1 - n));
    for (int64_t k0 = 0; k0 < p.K; k0 += B.kc) {
      const W* wr[NR];
      for (int j = 0; j < NR; ++j) wr[j] = w + (n + (j < nr ? j : nr - 1)) * p.K + k0;
      for (int64_t t = b.t0; t < b.t1; t += MR) {
        const int mr = int(min64(MR, b.t1 - t));
        const float* xr[MR];
        for (int i = 0; i < MR; ++i) xr[i] = p.x + (t + (i < mr ? i : mr - 1)) * p.ldx + k0;
        direct_tile<V, B, MR, W>(xr, wr, min64(B.kc, p.K - k0), p.y + t * p.ldy + n, p.ldy, mr, nr, k0 == 0);
      }
    }
  }
}

/// Packs rows × kc of a row-major matrix (row stride ld) as float32 into G-row groups, each laid out chunk by chunk
/// ([group][chunk][G rows][L lanes]) so that a register tile reads it front to back. The last chunk and the rows past
/// `rows` are zero-filled, which adds the same +0 lanes as the decode path's zero-padded tail. Exact for every dtype.
/// W is read in short spans of many rows, which the hardware prefetcher does not run ahead of: so while packing a row,
/// the same span kAhead rows further on is prefetched, up to `readable` rows (which may extend past `rows`).
template <class V, int G, class E>
void pack_rows(const E* src, int64_t ld, int64_t rows, int64_t kc, float* dst, int64_t readable = 0) {
  constexpr int L = V::L, kAhead = 4;
  constexpr int kStepsPerLine = 64 / int(L * sizeof(E)) > 0 ? 64 / int(L * sizeof(E)) : 1;
  const int64_t chunks = (kc + L - 1) / L, full = kc / L;
  for (int64_t g = 0; g < rows; g += G) {
    for (int i = 0; i < G; ++i) {
      float* d = dst + (g / G) * chunks * G * L + i * L;
      if (g + i >= rows) {
        for (int64_t c = 0; c < chunks; ++c) V::store(d + c * G * L, V::zero());
        continue;
      }
      const E* row = src + (g + i) * ld;
      if (g + i + kAhead < readable) {
        const char* ahead = reinterpret_cast<const char*>(row + kAhead * ld);
        for (int64_t c = 0; c < full; ++c) {
          if (c % kStepsPerLine == 0) V::prefetch(ahead + c * L * int64_t(sizeof(E)));
          V::store(d + c * G * L, V::loadw(row + c * L));
        }
      } else {
        for (int64_t c = 0; c < full; ++c) V::store(d + c * G * L, V::loadw(row + c * L));
      }
      if (full < chunks) V::store(d + full * G * L, V::load_part(row + full * L, int(kc - full * L)));
    }
  }
}

/// One K block of an mr × nr tile from packed operands (see pack_rows): `chunks` steps of L, no tail.
template <class V, int MR, int NR>
inline void packed_tile(const float* xp, const float* wp, int64_t chunks, float* y, int64_t ldy, int mr, int nr,
                        bool first) {
  using R = typename V::R;
  constexpr int L = V::L;
  R a[MR][NR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) a[i][j] = V::zero();
  // The y rows are far apart and long out of cache by the next K block: fetch them while the FMAs run.
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) V::prefetch(reinterpret_cast<const char*>(y + (i < mr ? i : 0) * ldy));
  for (int64_t c = 0; c < chunks; ++c, xp += MR * L, wp += NR * L) {
    R wv[NR];
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) wv[j] = V::load(wp + j * L);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const R xv = V::load(xp + i * L);
#pragma GCC unroll 32
      for (int j = 0; j < NR; ++j) a[i][j] = V::fma(xv, wv[j], a[i][j]);
    }
  }
  add_tile<V, MR, NR>(a, y, ldy, mr, nr, first);
}

/// Prefill path: for each block of tb x rows and each K block, the x block is packed once and stays in L2 while the
/// thread's columns pass in panels of nb W rows, packed (converted to float32) once and reused by every mr × nr
/// register tile of the tb rows; each tile adds its K block into y.
template <class V, const Blocking& B, class W>
void run_packed(const Block& b, const W* w) {
  const MatmulParams& p = *b.p;
  constexpr int L = V::L, MR = B.mr, NR = B.nr;
  static_assert(B.nb % NR == 0 && B.tb % MR == 0 && B.kc % L == 0);
  float* wpack = b.scratch;            // [nb / NR][chunks][NR][L]
  float* xpack = b.scratch + B.nb * B.kc;  // [tb / MR][chunks][MR][L]
  for (int64_t tb = b.t0; tb < b.t1; tb += B.tb) {
    const int64_t te = min64(tb + B.tb, b.t1);
    for (int64_t k0 = 0; k0 < p.K; k0 += B.kc) {
      const int64_t kc = min64(B.kc, p.K - k0), chunks = (kc + L - 1) / L;
      pack_rows<V, MR>(p.x + tb * p.ldx + k0, p.ldx, te - tb, kc, xpack);
      for (int64_t nb = b.n0; nb < b.n1; nb += B.nb) {
        const int64_t ne = min64(nb + B.nb, b.n1);
        pack_rows<V, NR>(w + nb * p.K + k0, p.K, ne - nb, kc, wpack, b.n1 - nb);
        for (int64_t t = tb; t < te; t += MR) {
          const float* xp = xpack + (t - tb) / MR * chunks * MR * L;
          for (int64_t n = nb; n < ne; n += NR) {
            const float* wp = wpack + (n - nb) / NR * chunks * NR * L;
            packed_tile<V, MR, NR>(xp, wp, chunks, p.y + t * p.ldy + n, p.ldy, int(min64(MR, te - t)),
                                   int(min64(NR, ne - n)), k0 == 0);
          }
        }
      }
    }
  }
}

/// Runs one Block with vector type V and blocking B: picks the weight type and the path.
template <class V, const Blocking& B>
void run_block(const Block& b) {
  const void* w = b.p->w;
  switch (b.p->w_dtype) {
    case DType::F32: {
      auto* wf = static_cast<const float*>(w);
      return b.direct ? run_direct<V, B>(b, wf) : run_packed<V, B>(b, wf);
    }
    case DType::BF16: {
      auto* wb = static_cast<const Bf16*>(w);
      return b.direct ? run_direct<V, B>(b, wb) : run_packed<V, B>(b, wb);
    }
    case DType::F16: {
      auto* wh = static_cast<const F16*>(w);
      return b.direct ? run_direct<V, B>(b, wh) : run_packed<V, B>(b, wh);
    }
  }
}

}  // namespace hyrax::kernels::matmul_detail
