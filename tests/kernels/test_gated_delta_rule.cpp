// The gated delta rule: the recurrent and chunked float32 kernels against the float64 reference and against each
// other (outputs and final state), on packed batches with non-contiguous state slots, under every SIMD level.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "kernels/gated_delta_rule/gated_delta_rule.h"
#include "kernel_test_util.h"

using namespace hyrax;
using namespace hyrax::kernels;
using namespace hyrax::test;

namespace {

// Tolerances (atol + rtol·|ref|). Outputs are O(0.1–1), state entries O(1). The float32 kernels differ from the
// float64 reference by rounding that the recurrence carries along: each token adds a few ulp of O(1) values, and the
// decays (α < 1) and the delta rule's contraction (β ∈ [0, 2] on unit keys) keep old errors from growing. Measured
// worst over these tests, every ISA, up to 1000 tokens: 5e-7 on outputs, 2e-6 on states (chunked sums G in float64,
// so even strong decays stay there), at most an eighth of 1e-5 + 1e-5·|ref|, while a real mistake (a wrong decay,
// a missed token, a swapped head) moves outputs by 1e-2 or more.
constexpr double kAtol = 1e-5, kRtol = 1e-5;

struct Shape {
  int64_t Hk, Hv, Dk, Dv;
};

/// One packed batch: inputs of every sequence (rows with padding past the data) and a pool of states.
struct Problem {
  Shape sh;
  bool neg = true;
  std::vector<int32_t> cu, slots;
  int64_t T = 0, n_slots = 0, ld_qkv = 0, ld_ab = 0, ld_out = 0;
  std::vector<float> qkv, a, b, A_log, dt_bias, state0;

  Problem(uint64_t seed, Shape s, bool allow_neg, const std::vector<int>& lens, std::vector<int32_t> slot_of,
          int64_t pool, int64_t pad, float a_scale = 1.0f)
      : sh(s), neg(allow_neg), slots(std::move(slot_of)), n_slots(pool) {
    Rng rng(seed);
    cu.assign(1, 0);
    for (int L : lens) cu.push_back(cu.back() + L);
    T = cu.back();
    ld_qkv = 2 * sh.Hk * sh.Dk + sh.Hv * sh.Dv + pad;
    ld_ab = sh.Hv + pad;
    ld_out = sh.Hv * sh.Dv + pad;
    qkv = rng.normal_vec(size_t(T * ld_qkv));
    a = rng.normal_vec(size_t(T * ld_ab), a_scale);
    b = rng.normal_vec(size_t(T * ld_ab));
    for (int64_t h = 0; h < sh.Hv; ++h) {
      A_log.push_back(std::log(rng.uniform(1.0f, 16.0f)));
      // transformers' init: dt = exp(U(log 1e-3, log 1e-1)), dt_bias = softplus⁻¹(dt).
      const float dt = std::exp(rng.uniform(std::log(1e-3f), std::log(1e-1f)));
      dt_bias.push_back(dt + std::log(-std::expm1(-dt)));
    }
    state0 = rng.normal_vec(size_t(n_slots * sh.Hv * sh.Dk * sh.Dv), 0.5f);
  }

  GatedDeltaRuleParams params(std::vector<float>& state, std::vector<float>& out) const {
    GatedDeltaRuleParams p;
    p.n_seqs = int64_t(slots.size());
    p.cu_seqlens = cu.data();
    p.state_slots = slots.data();
    p.state = state.data();
    p.q = qkv.data();
    p.k = qkv.data() + sh.Hk * sh.Dk;
    p.v = qkv.data() + 2 * sh.Hk * sh.Dk;
    p.ld_qkv = ld_qkv;
    p.a = a.data();
    p.b = b.data();
    p.ld_ab = ld_ab;
    p.A_log = A_log.data();
    p.dt_bias = dt_bias.data();
    p.out = out.data();
    p.ld_out = ld_out;
    p.Hk = sh.Hk;
    p.Hv = sh.Hv;
    p.Dk = sh.Dk;
    p.Dv = sh.Dv;
    p.allow_neg_eigval = neg;
    return p;
  }
  int64_t state_size() const { return sh.Hv * sh.Dk * sh.Dv; }
};

enum class Algo { Ref, Recurrent, Chunked };

struct Result {
  std::vector<float> out, state;
};

Result run(const Problem& pr, Algo algo, int chunk = 64) {
  Result r{nan_vec(size_t(pr.T * pr.ld_out)), pr.state0};
  const GatedDeltaRuleParams p = pr.params(r.state, r.out);
  switch (algo) {
    case Algo::Ref: gated_delta_rule_ref(p); break;
    case Algo::Recurrent: gated_delta_rule_recurrent(p); break;
    case Algo::Chunked: gated_delta_rule_chunked(p, chunk); break;
  }
  return r;
}

/// got matches want on every output row and every state slot of the call; output padding and the slots outside the
/// call are untouched.
void expect_match(const Problem& pr, const Result& got, const Result& want, const char* what) {
  SCOPED_TRACE(what);
  const int64_t row = pr.sh.Hv * pr.sh.Dv, ss = pr.state_size();
  EXPECT_TRUE(close_rows(got.out.data(), pr.ld_out, want.out.data(), pr.ld_out, pr.T, row, kAtol, kRtol)) << "output";
  EXPECT_TRUE(padding_untouched(got.out, pr.ld_out, row));
  std::vector<bool> in_call(size_t(pr.n_slots), false);
  for (int32_t s : pr.slots) in_call[size_t(s)] = true;
  for (int64_t s = 0; s < pr.n_slots; ++s) {
    const float* g = got.state.data() + s * ss;
    if (in_call[size_t(s)]) {
      EXPECT_TRUE(close_rows(g, 0, want.state.data() + s * ss, 0, 1, ss, kAtol, kRtol)) << "state of slot " << s;
    } else {
      EXPECT_TRUE(same_bits(g, pr.state0.data() + s * ss, size_t(ss))) << "slot " << s << " is not in the call";
    }
  }
}

/// Recurrent and chunked against the reference and against each other, under every SIMD level.
void check_all(const Problem& pr, int chunk = 64) {
  const Result ref = run(pr, Algo::Ref);
  for_each_simd_level([&] {
    const Result rec = run(pr, Algo::Recurrent);
    const Result chk = run(pr, Algo::Chunked, chunk);
    expect_match(pr, rec, ref, "recurrent vs reference");
    expect_match(pr, chk, ref, "chunked vs reference");
    expect_match(pr, chk, rec, "chunked vs recurrent");
  });
}

const Shape kShapes[] = {{2, 2, 32, 64}, {2, 4, 24, 40}, {3, 3, 17, 33}, {1, 2, 96, 192}};

TEST(GatedDeltaRule, OneSequenceEveryLengthMatchesReference) {
  for (int L : {1, 2, 63, 64, 65, 200, 1000}) {
    for (bool grouped : {false, true}) {
      for (bool neg : {true, false}) {
        // Hv = Hk and Hv = 2·Hk, with head dims that are and are not multiples of the vector width.
        const Shape sh = grouped ? Shape{2, 4, 24, 40} : Shape{2, 2, 32, 64};
        const uint64_t seed = next_seed();
        SCOPED_TRACE(::testing::Message() << "L=" << L << " Hk=" << sh.Hk << " Hv=" << sh.Hv << " neg=" << neg
                                          << " seed=" << seed);
        check_all(Problem(seed, sh, neg, {L}, {1}, 3, 0));
      }
    }
  }
}

TEST(GatedDeltaRule, ShapeSweep) {
  for (const Shape& sh : kShapes) {
    for (int L : {5, 130}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE(::testing::Message() << "Hk=" << sh.Hk << " Hv=" << sh.Hv << " Dk=" << sh.Dk << " Dv=" << sh.Dv
                                        << " L=" << L << " seed=" << seed);
      check_all(Problem(seed, sh, true, {L}, {0}, 1, 3));
    }
  }
}

TEST(GatedDeltaRule, PackedBatchWithScatteredSlots) {
  // Sequences of different lengths (one empty) in one call, in slots out of order with gaps; strided rows.
  const std::vector<int> lens = {65, 1, 200, 0, 7, 64, 130};
  const std::vector<int32_t> slots = {5, 0, 3, 8, 7, 1, 4};
  for (const Shape& sh : {kShapes[0], kShapes[1]}) {
    for (bool neg : {true, false}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE(::testing::Message() << "Hv=" << sh.Hv << " neg=" << neg << " seed=" << seed);
      check_all(Problem(seed, sh, neg, lens, slots, 10, 5));
    }
  }
}

TEST(GatedDeltaRule, OtherChunkSizes) {
  // 37 is not a multiple of any vector width; 1 degenerates to the recurrence; 128 spans two default chunks.
  for (int chunk : {1, 16, 37, 128}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE(::testing::Message() << "chunk=" << chunk << " seed=" << seed);
    check_all(Problem(seed, kShapes[1], true, {300, 3}, {1, 0}, 2, 1), chunk);
  }
}

TEST(GatedDeltaRule, StrongDecayAndSoftplusThreshold) {
  // a scaled up 30x: a + dt_bias often passes 20 (softplus(x) = x there) and decays reach exp(−1000) per chunk, so
  // exp(G_i − G_j) underflows to 0 inside chunks: results must stay finite and right.
  const uint64_t seed = next_seed();
  SCOPED_TRACE(::testing::Message() << "seed=" << seed);
  check_all(Problem(seed, kShapes[0], true, {200, 70}, {0, 1}, 2, 0, 30.0f));
}

TEST(GatedDeltaRule, TwoCallsEqualOneCall) {
  // Prefix then rest (state carried in the pool) equals the whole sequence in one call: chunked + chunked,
  // chunked + token-by-token recurrent (prefill then decode), recurrent + recurrent.
  for (int prefix : {1, 64, 100}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE(::testing::Message() << "prefix=" << prefix << " seed=" << seed);
    const int L = 140;
    const Problem whole(seed, kShapes[1], true, {L}, {2}, 3, 2);
    const Result ref = run(whole, Algo::Ref);
    for_each_simd_level([&] {
      for (int mode = 0; mode < 3; ++mode) {
        SCOPED_TRACE(::testing::Message() << "mode " << mode);
        Result r{nan_vec(size_t(whole.T * whole.ld_out)), whole.state0};
        GatedDeltaRuleParams p = whole.params(r.state, r.out);
        // The same inputs, seen as calls over token ranges [t0, t1) (cu_seqlens rebased, pointers advanced).
        auto call = [&](int t0, int t1, bool chunked) {
          GatedDeltaRuleParams c = p;
          const int32_t cu[2] = {0, t1 - t0};
          c.cu_seqlens = cu;
          c.q += t0 * p.ld_qkv, c.k += t0 * p.ld_qkv, c.v += t0 * p.ld_qkv;
          c.a += t0 * p.ld_ab, c.b += t0 * p.ld_ab;
          c.out += t0 * p.ld_out;
          if (chunked) gated_delta_rule_chunked(c);
          else gated_delta_rule_recurrent(c);
        };
        if (mode == 0) {
          call(0, prefix, true), call(prefix, L, true);
        } else if (mode == 1) {
          call(0, prefix, true);
          for (int t = prefix; t < L; ++t) call(t, t + 1, false);
        } else {
          call(0, prefix, false), call(prefix, L, false);
        }
        expect_match(whole, r, ref, "split calls vs reference");
        expect_match(whole, r, run(whole, Algo::Chunked), "split calls vs one chunked call");
        // Where the split keeps every token's arithmetic the same, the results are identical: the recurrence at any
        // split, the chunked form at a split on a chunk boundary (the state passes through the pool unrounded).
        if (mode == 2 || (mode == 0 && prefix % 64 == 0)) {
          const Result one = run(whole, mode == 2 ? Algo::Recurrent : Algo::Chunked);
          EXPECT_TRUE(same_bits(r.out.data(), one.out.data(), r.out.size())) << "outputs not bitwise equal";
          EXPECT_TRUE(same_bits(r.state.data(), one.state.data(), r.state.size())) << "state not bitwise equal";
        }
      }
    });
  }
}

TEST(GatedDeltaRule, RejectsBadParams) {
  const Problem pr(next_seed(), kShapes[0], true, {3, 2}, {0, 1}, 2, 0);
  Result r{nan_vec(size_t(pr.T * pr.ld_out)), pr.state0};
  GatedDeltaRuleParams p = pr.params(r.state, r.out);
  {
    GatedDeltaRuleParams bad = p;
    bad.Hv = 3;  // not a multiple of Hk = 2
    EXPECT_THROW(gated_delta_rule_chunked(bad), Error);
  }
  {
    const int32_t same[2] = {1, 1};
    GatedDeltaRuleParams bad = p;
    bad.state_slots = same;
    EXPECT_THROW(gated_delta_rule_recurrent(bad), Error);
  }
  {
    GatedDeltaRuleParams bad = p;
    bad.ld_out = 5;
    EXPECT_THROW(gated_delta_rule_ref(bad), Error);
  }
  EXPECT_THROW(gated_delta_rule_chunked(p, 0), Error);
}

}  // namespace
