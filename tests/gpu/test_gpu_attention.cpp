// Paged attention prefill on the GPU: every head dim against the float64 reference (packed sequences, cached
// history, GQA, scattered blocks, unwritten cache rows NaN), and each row bitwise the same for any chunking of its
// sequence and any batch around it (the batch-invariance rule, docs/CUDA.md).
//
// Tolerance: P is rounded to bf16 for the P·V product and the output to bf16, about 2^-9 relative each, so outputs
// of O(1) are held to 2e-2 (atol and rtol); a wrong mask, block or head gives O(0.1) errors or NaN.
#include <algorithm>
#include <numeric>

#include "gpu_test_util.h"
#include "kernels/attention/attention.h"
#include "kernels/attention/attention_cuda.h"

using namespace hyrax;
using namespace hyrax::gputest;
namespace kc = hyrax::kernels::cuda;
using bf16 = __nv_bfloat16;

namespace {

/// Sequences with their whole cache (history and new tokens) written, blocks of 16 positions handed out in a random
/// order, every other cache row NaN; queries for every position of every sequence.
struct Problem {
  int64_t Hq, Hkv, D, bs = 16, width = 0, n_blocks = 0, ldq = 0;
  std::vector<int32_t> lens, tables;  // [n_seqs], [n_seqs][width]
  std::vector<float> k, v;            // [n_blocks·bs, Hkv, D], bf16 values
  std::vector<std::vector<float>> q;  // per sequence [len][ldq], bf16 values, padding NaN

  Problem(int64_t hq, int64_t hkv, int64_t d, std::vector<int32_t> seq_lens) : Hq(hq), Hkv(hkv), D(d), lens(seq_lens) {
    Rng rng(next_seed());
    const int64_t n = int64_t(lens.size());
    for (int32_t L : lens) width = std::max(width, (int64_t(L) + bs - 1) / bs);
    n_blocks = n * width + 2;
    std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng.gen);
    tables.assign(size_t(n * width), 0);
    const int64_t row = Hkv * D;
    k.assign(size_t(n_blocks * bs * row), std::nanf(""));
    v = k;
    ldq = Hq * D + 8;
    size_t next = 0;
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t b = 0; b * bs < lens[size_t(s)]; ++b) tables[size_t(s * width + b)] = ids[next++];
      for (int64_t pos = 0; pos < lens[size_t(s)]; ++pos) {
        const int64_t at = (tables[size_t(s * width + pos / bs)] * bs + pos % bs) * row;
        for (int64_t e = 0; e < row; ++e) {
          k[size_t(at + e)] = bf16_to_f32(f32_to_bf16(rng.normal()));
          v[size_t(at + e)] = bf16_to_f32(f32_to_bf16(rng.normal()));
        }
      }
      std::vector<float> qs(size_t(lens[size_t(s)] * ldq), std::nanf(""));
      for (int64_t t = 0; t < lens[size_t(s)]; ++t)
        for (int64_t e = 0; e < Hq * D; ++e) qs[size_t(t * ldq + e)] = bf16_to_f32(f32_to_bf16(rng.normal()));
      q.push_back(std::move(qs));
    }
  }

  /// One piece of a call: the new tokens [begin, end) of sequence s (positions begin .. end - 1).
  struct Piece {
    int32_t s, begin, end;
  };

  /// Runs the GPU prefill over the pieces packed in one call; returns the outputs [T][ldq] (padding NaN).
  std::vector<float> gpu(const std::vector<Piece>& pieces) const {
    std::vector<int32_t> cu = {0}, start, tok_seq, tbl, tiles;
    std::vector<float> qh;
    const int64_t rows = kc::attention_prefill_tile_rows(D);
    for (size_t i = 0; i < pieces.size(); ++i) {
      const Piece& pc = pieces[i];
      start.push_back(pc.begin);
      cu.push_back(cu.back() + pc.end - pc.begin);
      for (int32_t t = pc.begin; t < pc.end; ++t) tok_seq.push_back(int32_t(i));
      tbl.insert(tbl.end(), tables.begin() + pc.s * width, tables.begin() + (pc.s + 1) * width);
      qh.insert(qh.end(), q[size_t(pc.s)].begin() + pc.begin * ldq, q[size_t(pc.s)].begin() + pc.end * ldq);
      for (int32_t r = 0; r < pc.end - pc.begin; r += int32_t(rows)) tiles.push_back(int32_t(i)), tiles.push_back(r);
    }
    const int64_t T = cu.back();
    DevBuf dk = upload_bf16(k), dv = upload_bf16(v), dq = upload_bf16(qh), dout(size_t(T * ldq) * 2);
    DevBuf dcu = upload_i32(cu), dst = upload_i32(start), dts = upload_i32(tok_seq), dt = upload_i32(tbl),
           dtiles = upload_i32(tiles);
    dout.poison();
    kc::AttentionParams p;
    p.batch = {int64_t(pieces.size()), T, dcu.get<int32_t>(), dst.get<int32_t>(), dts.get<int32_t>()};
    p.q = dq.get<bf16>();
    p.ldq = ldq;
    p.out = dout.get<bf16>();
    p.ldo = ldq;
    p.kv = {dk.get<bf16>(), dv.get<bf16>(), n_blocks, bs, Hkv, D, dt.get<int32_t>(), width};
    p.Hq = Hq;
    p.scale = 1.0f / std::sqrt(float(D));
    kc::attention_prefill(p, dtiles.get<int32_t>(), int64_t(tiles.size() / 2), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    return download_bf16(dout, size_t(T * ldq));
  }

  /// The float64 reference over the same pieces.
  std::vector<float> ref(const std::vector<Piece>& pieces) {
    std::vector<int32_t> cu = {0}, start, tbl;
    std::vector<float> qh;
    for (const Piece& pc : pieces) {
      start.push_back(pc.begin);
      cu.push_back(cu.back() + pc.end - pc.begin);
      tbl.insert(tbl.end(), tables.begin() + pc.s * width, tables.begin() + (pc.s + 1) * width);
      qh.insert(qh.end(), q[size_t(pc.s)].begin() + pc.begin * ldq, q[size_t(pc.s)].begin() + pc.end * ldq);
    }
    std::vector<float> out(size_t(cu.back() * ldq), std::nanf(""));
    kernels::AttentionParams p;
    p.n_seqs = int64_t(pieces.size());
    p.cu_seqlens = cu.data();
    p.start_pos = start.data();
    p.q = qh.data();
    p.ldq = ldq;
    p.out = out.data();
    p.ldo = ldq;
    p.kv = {k.data(), v.data(), n_blocks, bs, Hkv, D, tbl.data(), width};
    p.Hq = Hq;
    p.scale = 1.0f / std::sqrt(float(D));
    kernels::attention_ref(p);
    return out;
  }
};

/// Rows [r0, r0 + n) of a [T][ld] output.
std::vector<float> rows_of(const std::vector<float>& out, int64_t ld, int64_t r0, int64_t n) {
  return std::vector<float>(out.begin() + r0 * ld, out.begin() + (r0 + n) * ld);
}

}  // namespace

// Every head dim, GQA groups of 3 and 1, a packed call mixing prefill from scratch (1, 63, 200 tokens) and
// continuations over cached history (starts 37 and 320, so that query tiles straddle key tiles).
TEST(GpuAttention, PrefillMatchesReferenceAtEveryHeadDim) {
  REQUIRE_GPU();
  struct Case {
    int64_t Hq, Hkv, D;
  };
  for (const Case& cs : {Case{6, 2, 16}, Case{6, 2, 32}, Case{6, 2, 64}, Case{6, 2, 96}, Case{6, 2, 128},
                         Case{4, 4, 128}, Case{6, 2, 256}}) {
    SCOPED_TRACE("Hq " + std::to_string(cs.Hq) + " Hkv " + std::to_string(cs.Hkv) + " D " + std::to_string(cs.D));
    Problem pb(cs.Hq, cs.Hkv, cs.D, {1, 63, 200, 166, 620});
    const std::vector<Problem::Piece> pieces = {{0, 0, 1}, {1, 0, 63}, {2, 0, 200}, {3, 37, 166}, {4, 320, 620}};
    const std::vector<float> got = pb.gpu(pieces), want = pb.ref(pieces);
    const int64_t T = int64_t(got.size()) / pb.ldq;
    EXPECT_TRUE(close_rows(got.data(), pb.ldq, want.data(), pb.ldq, T, pb.Hq * pb.D, 2e-2, 2e-2));
    EXPECT_TRUE(test::padding_untouched(got, pb.ldq, pb.Hq * pb.D));
  }
}

// A sequence of 700 tokens: in one call alone, in chunks starting at multiples of 64 (each chunk a call of its own,
// its earlier positions read from the cache), and packed behind other sequences: every row bitwise the same.
TEST(GpuAttention, PrefillRowsAreBitwiseInvariantToChunksAndBatch) {
  REQUIRE_GPU();
  for (int64_t D : {64, 128, 256}) {
    SCOPED_TRACE("D " + std::to_string(D));
    Problem pb(4, 2, D, {700, 300, 90});
    const int64_t ld = pb.ldq;
    const std::vector<float> whole = pb.gpu({{0, 0, 700}});
    const std::vector<int32_t> cuts = {0, 64, 256, 448, 512, 700};
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      const std::vector<float> part = pb.gpu({{0, cuts[i], cuts[i + 1]}});
      EXPECT_TRUE(same_bits(part, rows_of(whole, ld, cuts[i], cuts[i + 1] - cuts[i])))
          << "chunk " << cuts[i] << ".." << cuts[i + 1];
    }
    const std::vector<float> packed = pb.gpu({{1, 0, 300}, {2, 26, 90}, {0, 0, 700}});
    EXPECT_TRUE(same_bits(rows_of(packed, ld, 364, 700), whole)) << "behind two other sequences";
    const std::vector<float> packed_part = pb.gpu({{2, 0, 90}, {0, 192, 700}});
    EXPECT_TRUE(same_bits(rows_of(packed_part, ld, 90, 508), rows_of(whole, ld, 192, 508))) << "chunk in a batch";
  }
}

// More query tiles x heads than the GPU has SMs (480 items at head dim 128): each persistent block takes several
// items in turn, its ring of key tiles and its turns going on from one to the next. Rows against the reference, and
// bitwise the same as in calls of a few tiles each (one item per block).
TEST(GpuAttention, PrefillBlocksTakingManyItemsMatchAndStayInvariant) {
  REQUIRE_GPU();
  Problem pb(32, 8, 128, {1100, 700});
  const int64_t ld = pb.ldq;
  const std::vector<Problem::Piece> both = {{0, 0, 1100}, {1, 0, 700}};
  const std::vector<float> got = pb.gpu(both), want = pb.ref(both);
  EXPECT_TRUE(close_rows(got.data(), ld, want.data(), ld, 1800, pb.Hq * pb.D, 2e-2, 2e-2));
  const std::vector<int32_t> cuts = {0, 64, 320, 576, 832, 1100};
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const std::vector<float> part = pb.gpu({{0, cuts[i], cuts[i + 1]}});
    EXPECT_TRUE(same_bits(part, rows_of(got, ld, cuts[i], cuts[i + 1] - cuts[i])))
        << "chunk " << cuts[i] << ".." << cuts[i + 1];
  }
}
