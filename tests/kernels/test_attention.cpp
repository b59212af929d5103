// Paged attention and the cache write: the fast kernel against the float64 reference on packed batches (prefill runs,
// decode steps, empty sequences) over scattered cache blocks, under every SIMD level; prefill then decode equals one
// prefill.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "kernel_test_util.h"
#include "kernels/attention/attention.h"

using namespace hyrax;
using namespace hyrax::kernels;
using namespace hyrax::test;

namespace {

// Tolerance (atol + rtol·|ref|). Outputs are convex combinations of N(0,1) values, so O(1). A float32 score s carries
// an absolute error of a few ulp of |s| (summed over D terms), which becomes the relative error of its softmax weight;
// with scores of O(1) the worst output error measured is 8e-7, a sixteenth of 1e-5 + 1e-5·|ref|, while a
// wrong mask, block lookup or head shows up as O(0.1) errors (or NaN: cache rows not written hold NaN).
constexpr double kAtol = 1e-5, kRtol = 1e-5;

struct Shape {
  int64_t Hq, Hkv, D, block_size;
};

/// A packed batch: sequence s has n_new[s] new tokens starting at position start[s]; every cache row a sequence
/// owns below its start holds random history, everything else in the pool NaN.
struct Problem {
  Shape sh;
  std::vector<int32_t> cu, start, tables;
  int64_t T = 0, ldq = 0, ldkv = 0, ldo = 0, n_blocks = 0, max_blocks = 0;
  std::vector<float> q, k, v, k_cache, v_cache;
  float scale;

  Problem(uint64_t seed, Shape s, const std::vector<int>& n_new, const std::vector<int>& starts, int64_t pad,
          float input_sd = 1.0f)
      : sh(s), start(starts.begin(), starts.end()), scale(1.0f / std::sqrt(float(s.D))) {
    Rng rng(seed);
    cu.assign(1, 0);
    for (int n : n_new) cu.push_back(cu.back() + n);
    T = cu.back();
    const int64_t n_seqs = int64_t(n_new.size());
    for (int64_t i = 0; i < n_seqs; ++i)
      max_blocks = std::max(max_blocks, (start[size_t(i)] + n_new[size_t(i)] + sh.block_size - 1) / sh.block_size);
    max_blocks = std::max<int64_t>(max_blocks, 1) + 1;  // a spare column in every table, never used
    n_blocks = n_seqs * max_blocks + 3;                  // and spare blocks in the pool
    // Blocks handed out in a random order; table entries past what a sequence needs are -1.
    std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng.gen);
    tables.assign(size_t(n_seqs * max_blocks), -1);
    size_t next = 0;
    const int64_t row = sh.Hkv * sh.D;
    k_cache = nan_vec(size_t(n_blocks * sh.block_size * row));
    v_cache = k_cache;
    for (int64_t i = 0; i < n_seqs; ++i) {
      const int64_t end = start[size_t(i)] + n_new[size_t(i)];
      for (int64_t b = 0; b * sh.block_size < end; ++b) tables[size_t(i * max_blocks + b)] = ids[next++];
      for (int64_t pos = 0; pos < start[size_t(i)]; ++pos) {
        const int64_t blk = tables[size_t(i * max_blocks + pos / sh.block_size)];
        const int64_t at = (blk * sh.block_size + pos % sh.block_size) * row;
        for (int64_t e = 0; e < row; ++e) {
          k_cache[size_t(at + e)] = rng.normal(input_sd);
          v_cache[size_t(at + e)] = rng.normal();
        }
      }
    }
    ldq = sh.Hq * sh.D + pad;
    ldkv = row + pad;
    ldo = sh.Hq * sh.D + pad;
    q = rng.normal_vec(size_t(T * ldq), input_sd);
    k = rng.normal_vec(size_t(T * ldkv), input_sd);
    v = rng.normal_vec(size_t(T * ldkv));
  }

  PagedKv kv(std::vector<float>& kc, std::vector<float>& vc) const {
    PagedKv c;
    c.k = kc.data();
    c.v = vc.data();
    c.n_blocks = n_blocks;
    c.block_size = sh.block_size;
    c.Hkv = sh.Hkv;
    c.D = sh.D;
    c.block_tables = tables.data();
    c.max_blocks_per_seq = max_blocks;
    return c;
  }
  KvWriteParams write_params(std::vector<float>& kc, std::vector<float>& vc) const {
    KvWriteParams w;
    w.n_seqs = int64_t(start.size());
    w.cu_seqlens = cu.data();
    w.start_pos = start.data();
    w.k = k.data();
    w.ldk = ldkv;
    w.v = v.data();
    w.ldv = ldkv;
    w.kv = kv(kc, vc);
    return w;
  }
  AttentionParams params(std::vector<float>& kc, std::vector<float>& vc, std::vector<float>& out) const {
    AttentionParams p;
    p.n_seqs = int64_t(start.size());
    p.cu_seqlens = cu.data();
    p.start_pos = start.data();
    p.q = q.data();
    p.ldq = ldq;
    p.out = out.data();
    p.ldo = ldo;
    p.kv = kv(kc, vc);
    p.Hq = sh.Hq;
    p.scale = scale;
    return p;
  }
};

/// Writes the new keys and values, checks the cache write, then the fast kernel against the reference.
void check(const Problem& pr, double atol = kAtol, double rtol = kRtol) {
  std::vector<float> kc = pr.k_cache, vc = pr.v_cache;
  kv_cache_write(pr.write_params(kc, vc));
  // Every new row landed at its position; nothing else in the pool changed.
  const int64_t row = pr.sh.Hkv * pr.sh.D;
  std::vector<float> kw = pr.k_cache, vw = pr.v_cache;
  for (size_t s = 0; s < pr.start.size(); ++s) {
    for (int32_t t = pr.cu[s]; t < pr.cu[s + 1]; ++t) {
      const int64_t pos = pr.start[s] + (t - pr.cu[s]);
      const int64_t blk = pr.tables[s * size_t(pr.max_blocks) + size_t(pos / pr.sh.block_size)];
      const int64_t at = (blk * pr.sh.block_size + pos % pr.sh.block_size) * row;
      std::copy_n(pr.k.data() + t * pr.ldkv, row, kw.data() + at);
      std::copy_n(pr.v.data() + t * pr.ldkv, row, vw.data() + at);
    }
  }
  EXPECT_TRUE(same_bits(kc.data(), kw.data(), kc.size())) << "keys in the cache";
  EXPECT_TRUE(same_bits(vc.data(), vw.data(), vc.size())) << "values in the cache";

  const int64_t cols = pr.sh.Hq * pr.sh.D;
  std::vector<float> ref = nan_vec(size_t(pr.T * pr.ldo));
  attention_ref(pr.params(kc, vc, ref));
  for_each_simd_level([&] {
    std::vector<float> out = nan_vec(size_t(pr.T * pr.ldo));
    attention(pr.params(kc, vc, out));
    EXPECT_TRUE(close_rows(out.data(), pr.ldo, ref.data(), pr.ldo, pr.T, cols, atol, rtol));
    EXPECT_TRUE(padding_untouched(out, pr.ldo, cols));
  });
}

// A mix in one call: a long prefill from scratch, decode steps deep into a context, a short continuation, runs at
// the blocked path's threshold (7 and 8 rows) and the query-block size (64, 65), and an empty sequence.
const std::vector<int> kNew = {300, 1, 3, 64, 130, 7, 8, 0, 65, 1};
const std::vector<int> kStart = {0, 500, 77, 64, 17, 0, 3, 5, 200, 0};

TEST(Attention, PackedBatchMatchesReference) {
  // GQA groups of 1, 2, 6; head dims that are and are not multiples of the vector width; cache blocks from one
  // position to more than a query block.
  const Shape shapes[] = {{4, 4, 64, 16}, {4, 2, 40, 5}, {6, 1, 17, 64}, {2, 2, 128, 128}, {3, 3, 8, 1}};
  for (const Shape& sh : shapes) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE(::testing::Message() << "Hq=" << sh.Hq << " Hkv=" << sh.Hkv << " D=" << sh.D
                                      << " block_size=" << sh.block_size << " seed=" << seed);
    check(Problem(seed, sh, kNew, kStart, 3));
  }
}

TEST(Attention, PeakySoftmaxStaysExact) {
  // Inputs 4x larger: scores of magnitude up to ~100, where exp without subtracting the running max would overflow.
  // Score errors grow with |s| (measured worst output error 2.5e-5), so the tolerance is 20x the default.
  const uint64_t seed = next_seed();
  SCOPED_TRACE(::testing::Message() << "seed=" << seed);
  check(Problem(seed, {4, 2, 64, 16}, {200, 1, 9}, {0, 300, 40}, 0, 4.0f), 20 * kAtol, 20 * kRtol);
}

TEST(Attention, PrefillThenDecodeEqualsOnePrefill) {
  // A 150-token prompt in one call, against 140 tokens then 10 single-token decode steps over the same cache.
  const uint64_t seed = next_seed();
  SCOPED_TRACE(::testing::Message() << "seed=" << seed);
  const int n = 150, first = 140;
  const Problem whole(seed, {4, 2, 64, 16}, {n}, {0}, 1);
  std::vector<float> kc = whole.k_cache, vc = whole.v_cache;
  kv_cache_write(whole.write_params(kc, vc));
  const int64_t cols = whole.sh.Hq * whole.sh.D;
  std::vector<float> one = nan_vec(size_t(whole.T * whole.ldo));
  attention_ref(whole.params(kc, vc, one));
  for_each_simd_level([&] {
    std::vector<float> split = nan_vec(size_t(whole.T * whole.ldo));
    AttentionParams p = whole.params(kc, vc, split);
    // Calls over tokens [t0, t1): the cache already holds every key; a call reads only positions up to its last row.
    auto call = [&](int t0, int t1) {
      AttentionParams c = p;
      const int32_t cu[2] = {0, t1 - t0}, sp[1] = {t0};
      c.cu_seqlens = cu;
      c.start_pos = sp;
      c.q += t0 * p.ldq;
      c.out += t0 * p.ldo;
      attention(c);
    };
    call(0, first);
    for (int t = first; t < n; ++t) call(t, t + 1);
    EXPECT_TRUE(close_rows(split.data(), whole.ldo, one.data(), whole.ldo, whole.T, cols, kAtol, kRtol));
  });
}

TEST(Attention, RejectsBadParams) {
  const Problem pr(next_seed(), {4, 2, 16, 4}, {5, 2}, {0, 3}, 0);
  std::vector<float> kc = pr.k_cache, vc = pr.v_cache, out = nan_vec(size_t(pr.T * pr.ldo));
  {
    AttentionParams p = pr.params(kc, vc, out);
    p.Hq = 3;  // not a multiple of Hkv = 2
    EXPECT_THROW(attention(p), Error);
  }
  {
    std::vector<int32_t> tables = pr.tables;
    tables[0] = int32_t(pr.n_blocks);  // a block outside the pool
    AttentionParams p = pr.params(kc, vc, out);
    p.kv.block_tables = tables.data();
    EXPECT_THROW(attention(p), Error);
    KvWriteParams w = pr.write_params(kc, vc);
    w.kv.block_tables = tables.data();
    EXPECT_THROW(kv_cache_write(w), Error);
  }
  {
    const int32_t far[2] = {0, int32_t(pr.max_blocks * 4)};  // past the end of the block table
    AttentionParams p = pr.params(kc, vc, out);
    p.start_pos = far;
    EXPECT_THROW(attention_ref(p), Error);
  }
}

}  // namespace
