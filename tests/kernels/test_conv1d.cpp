// Causal depthwise conv1d with a state pool: the fast kernel against the float64 reference on packed batches with
// scattered slots (outputs and states), and a sequence split over several calls against one call.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernel_test_util.h"
#include "kernels/conv1d/conv1d.h"

using namespace hyrax;
using namespace hyrax::kernels;
using namespace hyrax::test;

namespace {

// Tolerance (atol + rtol·|ref|): each output is a W-term float32 dot product of O(1) values (a few ulp), then SiLU
// through simd::exp (≈1 ulp); the worst error measured is 9.5e-7 on outputs up to ~5, a tenth of 2e-6 + 2e-6·|ref|;
// a wrong tap, channel or history row moves outputs by O(0.1). States are copies of inputs: they match bit for bit.
constexpr double kAtol = 2e-6, kRtol = 2e-6;

struct Problem {
  int64_t C, W, T = 0, n_slots, ldx, ldy;
  bool silu;
  std::vector<int32_t> cu, slots;
  std::vector<float> x, w, state0;

  Problem(uint64_t seed, int64_t channels, int64_t taps, bool act, const std::vector<int>& lens,
          std::vector<int32_t> slot_of, int64_t pool, int64_t pad)
      : C(channels), W(taps), n_slots(pool), ldx(channels + pad), ldy(channels + 2 * pad), silu(act),
        slots(std::move(slot_of)) {
    Rng rng(seed);
    cu.assign(1, 0);
    for (int L : lens) cu.push_back(cu.back() + L);
    T = cu.back();
    x = rng.normal_vec(size_t(T * ldx));
    w = rng.normal_vec(size_t(C * W), 0.5f);
    state0 = rng.normal_vec(size_t(n_slots * (W - 1) * C));
  }
  Conv1dParams params(std::vector<float>& state, std::vector<float>& y) const {
    Conv1dParams p;
    p.n_seqs = int64_t(slots.size());
    p.cu_seqlens = cu.data();
    p.state_slots = slots.data();
    p.state = state.data();
    p.x = x.data();
    p.ldx = ldx;
    p.y = y.data();
    p.ldy = ldy;
    p.w = w.data();
    p.C = C;
    p.W = W;
    p.silu = silu;
    return p;
  }
};

TEST(Conv1d, PackedBatchMatchesReference) {
  // Sequences shorter than, equal to and longer than the history (W-1), an empty one; slots out of order with gaps;
  // channel counts around the vector width and the per-task channel block (256).
  const std::vector<int> lens = {1, 2, 3, 0, 17, 5};
  const std::vector<int32_t> slots = {4, 0, 6, 2, 1, 5};
  for (int64_t C : {1, 7, 256, 300, 513}) {
    for (int64_t W : {1, 2, 4, 5}) {
      for (bool silu : {true, false}) {
        const uint64_t seed = next_seed();
        SCOPED_TRACE(::testing::Message() << "C=" << C << " W=" << W << " silu=" << silu << " seed=" << seed);
        const Problem pr(seed, C, W, silu, lens, slots, 7, 3);
        std::vector<float> ref_state = pr.state0, ref_y = nan_vec(size_t(pr.T * pr.ldy));
        conv1d_ref(pr.params(ref_state, ref_y));
        // Slot 3 is not in the call: it keeps its state (and the fast kernel must match the reference bit for bit).
        const int64_t ss = (W - 1) * C;
        EXPECT_TRUE(same_bits(ref_state.data() + 3 * ss, pr.state0.data() + 3 * ss, size_t(ss)));
        for_each_simd_level([&] {
          std::vector<float> state = pr.state0, y = nan_vec(size_t(pr.T * pr.ldy));
          conv1d(pr.params(state, y));
          EXPECT_TRUE(close_rows(y.data(), pr.ldy, ref_y.data(), pr.ldy, pr.T, C, kAtol, kRtol));
          EXPECT_TRUE(padding_untouched(y, pr.ldy, C));
          EXPECT_TRUE(same_bits(state.data(), ref_state.data(), state.size())) << "states";
        });
      }
    }
  }
}

TEST(Conv1d, SplitCallsEqualOneCall) {
  // One 20-token sequence as calls of 1, 2, 3 and 14 tokens (the first three shorter than the history): the fast
  // kernel computes every output from the same inputs in the same order either way, so the results are identical.
  for (int64_t W : {2, 4, 5}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE(::testing::Message() << "W=" << W << " seed=" << seed);
    const Problem pr(seed, 300, W, true, {20}, {1}, 2, 1);
    for_each_simd_level([&] {
      std::vector<float> state1 = pr.state0, y1 = nan_vec(size_t(pr.T * pr.ldy));
      conv1d(pr.params(state1, y1));
      std::vector<float> state2 = pr.state0, y2 = nan_vec(size_t(pr.T * pr.ldy));
      int t0 = 0;
      for (int n : {1, 2, 3, 14}) {
        Conv1dParams p = pr.params(state2, y2);
        const int32_t cu[2] = {0, n};
        p.cu_seqlens = cu;
        p.x += t0 * pr.ldx;
        p.y += t0 * pr.ldy;
        conv1d(p);
        t0 += n;
      }
      EXPECT_TRUE(same_bits(y1.data(), y2.data(), y1.size())) << "outputs";
      EXPECT_TRUE(same_bits(state1.data(), state2.data(), state1.size())) << "states";
    });
  }
}

TEST(Conv1d, RejectsBadParams) {
  const Problem pr(next_seed(), 8, 4, true, {2, 3}, {0, 1}, 2, 0);
  std::vector<float> state = pr.state0, y = nan_vec(size_t(pr.T * pr.ldy));
  {
    const int32_t same[2] = {1, 1};
    Conv1dParams p = pr.params(state, y);
    p.state_slots = same;
    EXPECT_THROW(conv1d(p), Error);
  }
  {
    Conv1dParams p = pr.params(state, y);
    p.y = const_cast<float*>(p.x);
    EXPECT_THROW(conv1d(p), Error);
  }
  {
    Conv1dParams p = pr.params(state, y);
    p.ldx = 4;
    EXPECT_THROW(conv1d_ref(p), Error);
  }
}

}  // namespace
