// Every CUDA kernel against its plain CPU reference on fresh random inputs (rounded to bf16 first, so that the
// reference computes on exactly what the GPU sees), outputs poisoned with NaN before each run.
//
// Tolerances: a bf16 result carries a rounding error of up to 2^-9 ≈ 0.2% of its value, so element-wise kernels
// are held to rtol 4e-3; kernels that round operands of tensor-core products to bf16 (attention's P, the chunked
// gated delta rule) are held to about 1-2% of the output's scale, the error bf16 operands produce.
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "gpu_test_util.h"
#include "kernels/activations/activations.h"
#include "kernels/activations/activations_cuda.h"
#include "kernels/conv1d/conv1d.h"
#include "kernels/conv1d/conv1d_cuda.h"
#include "kernels/gated_delta_rule/gated_delta_rule.h"
#include "kernels/gated_delta_rule/gated_delta_rule_cuda.h"
#include "kernels/matmul/matmul.h"
#include "kernels/matmul/matmul_cuda.h"
#include "kernels/rms_norm/rms_norm.h"
#include "kernels/rms_norm/rms_norm_cuda.h"
#include "kernels/rope/rope.h"
#include "kernels/rope/rope_cuda.h"

using namespace hyrax;
using namespace hyrax::gputest;
namespace kc = hyrax::kernels::cuda;
using bf16 = __nv_bfloat16;

namespace {

/// T rows of C values at row stride ld, the padding NaN (a kernel reading it would produce NaN).
std::vector<float> strided(Rng& rng, int64_t T, int64_t C, int64_t ld, float sd = 1.0f) {
  std::vector<float> v(size_t(T * ld), std::nanf(""));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) v[size_t(t * ld + c)] = bf16_to_f32(f32_to_bf16(rng.normal(sd)));
  return v;
}

}  // namespace

TEST(GpuRmsNorm, MatchesReferenceStridedAndInPlace) {
  REQUIRE_GPU();
  struct Case {
    int64_t T, C, ld;
  };
  for (Case cs : {Case{1, 64, 64}, Case{37, 3840, 3848}, Case{5, 100, 104}, Case{3, 12, 13}}) {
    for (bool in_place : {false, true}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE("seed " + std::to_string(seed) + " T=" + std::to_string(cs.T) + " C=" + std::to_string(cs.C));
      Rng rng(seed);
      auto x = strided(rng, cs.T, cs.C, cs.ld, 2.0f);
      auto w = rng.normal_vec(size_t(cs.C));
      std::vector<float> ref(size_t(cs.T * cs.ld));
      kernels::RmsNormParams rp{x.data(), cs.ld, w.data(), ref.data(), cs.ld, cs.T, cs.C, 1e-6f};
      kernels::rms_norm_ref(rp);
      DevBuf dx = upload_bf16(x), dw = upload_f32(w), dy(x.size() * 2);
      dy.poison();
      kc::RmsNormParams p{dx.get<bf16>(), cs.ld, dw.get<float>(), in_place ? dx.get<bf16>() : dy.get<bf16>(),
                          cs.ld, cs.T, cs.C, 1e-6f};
      kc::rms_norm(p, nullptr);
      const auto got = download_bf16(in_place ? dx : dy, x.size());
      EXPECT_TRUE(close_rows(got.data(), cs.ld, ref.data(), cs.ld, cs.T, cs.C, 1e-6, 4e-3));
    }
  }
}

// The residual steps fused with their norm give the same bits as the separate ops (add, then rms_norm; rms_norm,
// then add), on aligned (vectorized) and unaligned rows.
TEST(GpuRmsNorm, FusedResidualFormsMatchTheSeparateOpsBitwise) {
  REQUIRE_GPU();
  for (auto [T, C, ld] : {std::tuple<int64_t, int64_t, int64_t>{1, 3840, 3840}, {37, 3840, 3848}, {5, 100, 101}}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " T=" + std::to_string(T) + " C=" + std::to_string(C));
    Rng rng(seed);
    auto res = strided(rng, T, C, ld, 2.0f), d = strided(rng, T, C, ld, 3.0f);
    auto w = rng.normal_vec(size_t(C));
    const size_t n = res.size();
    DevBuf dw = upload_f32(w);
    // add then rms_norm, separately and fused
    DevBuf r1 = upload_bf16(res), d1 = upload_bf16(d), h1(n * 2), r2 = upload_bf16(res), d2 = upload_bf16(d), h2(n * 2);
    h1.poison();
    h2.poison();
    kc::add({r1.get<bf16>(), ld}, {d1.get<bf16>(), ld}, {r1.get<bf16>(), ld}, T, C, nullptr);
    kc::RmsNormParams p{r1.get<bf16>(), ld, dw.get<float>(), h1.get<bf16>(), ld, T, C, 1e-6f};
    kc::rms_norm(p, nullptr);
    kc::RmsNormParams f{d2.get<bf16>(), ld, dw.get<float>(), h2.get<bf16>(), ld, T, C, 1e-6f, r2.get<bf16>(), ld};
    kc::add_rms_norm(f, nullptr);
    auto rows = [&](const std::vector<float>& v) {
      std::vector<float> out;
      for (int64_t t = 0; t < T; ++t) out.insert(out.end(), v.begin() + t * ld, v.begin() + t * ld + C);
      return out;
    };
    EXPECT_TRUE(same_bits(rows(download_bf16(r1, n)), rows(download_bf16(r2, n))));
    EXPECT_TRUE(same_bits(rows(download_bf16(h1, n)), rows(download_bf16(h2, n))));
    // rms_norm then add, separately and fused
    DevBuf r3 = upload_bf16(res), d3 = upload_bf16(d), r4 = upload_bf16(res), d4 = upload_bf16(d);
    kc::RmsNormParams q{d3.get<bf16>(), ld, dw.get<float>(), d3.get<bf16>(), ld, T, C, 1e-6f};
    kc::rms_norm(q, nullptr);
    kc::add({r3.get<bf16>(), ld}, {d3.get<bf16>(), ld}, {r3.get<bf16>(), ld}, T, C, nullptr);
    kc::RmsNormParams g{d4.get<bf16>(), ld, dw.get<float>(), nullptr, 0, T, C, 1e-6f, r4.get<bf16>(), ld};
    kc::rms_norm_add(g, nullptr);
    EXPECT_TRUE(same_bits(rows(download_bf16(r3, n)), rows(download_bf16(r4, n))));
  }
}

// Two norms in one launch (attention's q and k, in place) give the bits of two rms_norm calls: rows alike (one
// launch), and rows of another length or alignment (two).
TEST(GpuRmsNorm, PairMatchesTwoCallsBitwise) {
  REQUIRE_GPU();
  struct Case {
    int64_t T, C1, ld1, C2, ld2;
  };
  for (const Case& cs :
       {Case{1, 3840, 11520, 3840, 11520}, Case{9, 1024, 1032, 1024, 1040}, Case{4, 512, 512, 96, 101}}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " T=" + std::to_string(cs.T) + " C=" + std::to_string(cs.C1) + "/" +
                 std::to_string(cs.C2));
    Rng rng(seed);
    const auto x1 = strided(rng, cs.T, cs.C1, cs.ld1, 2.0f), x2 = strided(rng, cs.T, cs.C2, cs.ld2, 0.5f);
    const DevBuf w1 = upload_f32(rng.normal_vec(size_t(cs.C1))), w2 = upload_f32(rng.normal_vec(size_t(cs.C2)));
    DevBuf a1 = upload_bf16(x1), b1 = upload_bf16(x2), a2 = upload_bf16(x1), b2 = upload_bf16(x2);
    auto params = [&](DevBuf& d, const DevBuf& w, int64_t C, int64_t ld) {
      return kc::RmsNormParams{d.get<bf16>(), ld, w.get<float>(), d.get<bf16>(), ld, cs.T, C, 1e-6f};
    };
    kc::rms_norm(params(a1, w1, cs.C1, cs.ld1), nullptr);
    kc::rms_norm(params(b1, w2, cs.C2, cs.ld2), nullptr);
    kc::rms_norm_pair(params(a2, w1, cs.C1, cs.ld1), params(b2, w2, cs.C2, cs.ld2), nullptr);
    CUDA_CHECK(cudaGetLastError());
    const auto got1 = download_bf16(a2, x1.size()), got2 = download_bf16(b2, x2.size());
    bool finite = true;
    for (int64_t t = 0; t < cs.T; ++t)
      for (int64_t c = 0; c < cs.C1; ++c) finite &= std::isfinite(got1[size_t(t * cs.ld1 + c)]);
    EXPECT_TRUE(finite);
    EXPECT_TRUE(same_bits(got1, download_bf16(a1, x1.size())));
    EXPECT_TRUE(same_bits(got2, download_bf16(b1, x2.size())));
  }
}

TEST(GpuGatedRmsNorm, MatchesReference) {
  REQUIRE_GPU();
  for (int64_t D : {16, 96, 192}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " D=" + std::to_string(D));
    Rng rng(seed);
    const int64_t T = 9, H = 3, ld = H * D + 8;
    auto x = strided(rng, T, H * D, ld), g = strided(rng, T, H * D, ld, 2.0f);
    auto w = rng.normal_vec(size_t(D));
    std::vector<float> ref(x.size());
    kernels::GatedRmsNormParams rp{x.data(), ld, g.data(), ld, w.data(), ref.data(), ld, T, H, D, 1e-5f};
    kernels::gated_rms_norm_ref(rp);
    DevBuf dx = upload_bf16(x), dg = upload_bf16(g), dw = upload_f32(w), dy(x.size() * 2);
    dy.poison();
    kc::GatedRmsNormParams p{dx.get<bf16>(), ld, dg.get<bf16>(), ld, dw.get<float>(), dy.get<bf16>(), ld, T, H, D,
                             1e-5f};
    kc::gated_rms_norm(p, nullptr);
    EXPECT_TRUE(close_rows(download_bf16(dy, x.size()).data(), ld, ref.data(), ld, T, H * D, 1e-6, 4e-3));
  }
}

TEST(GpuElementwise, SwigluAndAddMatchReference) {
  REQUIRE_GPU();
  for (int64_t C : {64, 11008, 77}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " C=" + std::to_string(C));
    Rng rng(seed);
    const int64_t T = 6, ld = C + 8;
    auto g = strided(rng, T, C, ld, 3.0f), u = strided(rng, T, C, ld);
    std::vector<float> ref(g.size()), sum(g.size());
    kernels::SwigluParams sp{g.data(), ld, u.data(), ld, ref.data(), ld, T, C};
    kernels::swiglu_ref(sp);
    for (size_t i = 0; i < g.size(); ++i) sum[i] = g[i] + u[i];
    DevBuf dg = upload_bf16(g), du = upload_bf16(u), dy(g.size() * 2), ds(g.size() * 2);
    dy.poison();
    ds.poison();
    kc::swiglu({dg.get<bf16>(), ld}, {du.get<bf16>(), ld}, {dy.get<bf16>(), ld}, T, C, nullptr);
    kc::add({dg.get<bf16>(), ld}, {du.get<bf16>(), ld}, {ds.get<bf16>(), ld}, T, C, nullptr);
    EXPECT_TRUE(close_rows(download_bf16(dy, g.size()).data(), ld, ref.data(), ld, T, C, 1e-6, 4e-3));
    EXPECT_TRUE(close_rows(download_bf16(ds, g.size()).data(), ld, sum.data(), ld, T, C, 1e-6, 4e-3));
  }
}

TEST(GpuRope, MatchesReference) {
  REQUIRE_GPU();
  for (float theta : {10000.0f, 500000.0f}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    Rng rng(seed);
    const int64_t T = 7, H = 3, D = 64, ld = H * D + 16;
    auto x = strided(rng, T, H * D, ld);
    std::vector<int32_t> pos(static_cast<size_t>(T));
    for (auto& p : pos) p = rng.uniform_int(0, 5000);
    auto ref = x;
    kernels::RopeParams rp{ref.data(), ld, pos.data(), T, H, D, theta};
    kernels::rope_ref(rp);
    DevBuf dx = upload_bf16(x), dp = upload_i32(pos);
    kc::RopeParams p{dx.get<bf16>(), ld, dp.get<int32_t>(), T, H, D, theta};
    kc::rope(p, nullptr);
    // 2e-3 absolute: the angle pos·inv_freq may differ by an ulp of inv_freq between the device's powf and the
    // host's, i.e. up to ~5000 · 6e-8 rad.
    EXPECT_TRUE(close_rows(download_bf16(dx, x.size()).data(), ld, ref.data(), ld, T, H * D, 2e-3, 4e-3));
  }
}

namespace {

/// Sequences of `lens` tokens packed one after another: cu_seqlens and each token's sequence.
struct Varlen {
  std::vector<int32_t> cu{0}, tok_seq;
  explicit Varlen(const std::vector<int32_t>& lens) {
    for (size_t s = 0; s < lens.size(); ++s) {
      cu.push_back(cu.back() + lens[s]);
      for (int i = 0; i < lens[s]; ++i) tok_seq.push_back(int32_t(s));
    }
  }
  int64_t T() const { return cu.back(); }
};

/// conv1d on the GPU over x [T, C] (row stride ld, also y's) with taps w [C, W]; `state` (the pool, host copy) is
/// updated. Returns y [T, ld] (padding columns NaN).
std::vector<float> gpu_conv1d(const Varlen& v, const std::vector<int32_t>& slots, const std::vector<float>& x,
                              int64_t ld, const std::vector<float>& w, int64_t C, int64_t W, std::vector<float>& state,
                              bool one_token_each = false) {
  const int64_t T = v.T();
  DevBuf dx = upload_bf16(x), dw = upload_f32(w), dst = upload_f32(state), dy(size_t(T * ld) * 2);
  DevBuf dcu = upload_i32(v.cu), dsl = upload_i32(slots), dts = upload_i32(v.tok_seq);
  dy.poison();
  kc::Conv1dParams p;
  p.n_seqs = int64_t(slots.size());
  p.T = T;
  p.cu_seqlens = dcu.get<int32_t>();
  p.state_slots = dsl.get<int32_t>();
  p.tok_seq = dts.get<int32_t>();
  p.state = dst.get<float>();
  p.x = dx.get<bf16>();
  p.ldx = ld;
  p.y = dy.get<bf16>();
  p.ldy = ld;
  p.w = dw.get<float>();
  p.C = C;
  p.W = W;
  p.one_token_each = one_token_each;
  kc::conv1d(p, nullptr);
  state = download_f32(dst, state.size());
  return download_bf16(dy, size_t(T * ld));
}

/// The CPU reference of gpu_conv1d: returns y [T, ld] (padding columns 0); `state` is updated.
std::vector<float> ref_conv1d(const Varlen& v, const std::vector<int32_t>& slots, const std::vector<float>& x,
                              int64_t ld, const std::vector<float>& w, int64_t C, int64_t W, std::vector<float>& state) {
  std::vector<float> y(size_t(v.T() * ld));
  kernels::Conv1dParams rp;
  rp.n_seqs = int64_t(slots.size());
  rp.cu_seqlens = v.cu.data();
  rp.state_slots = slots.data();
  rp.state = state.data();
  rp.x = x.data();
  rp.ldx = ld;
  rp.y = y.data();
  rp.ldy = ld;
  rp.w = w.data();
  rp.C = C;
  rp.W = W;
  kernels::conv1d_ref(rp);
  return y;
}

}  // namespace

// (C, row stride): 16-byte aligned rows take the vectorized kernel (runs of 16 tokens crossing sequence starts),
// the others the one-thread-per-element kernel.
class GpuConv1d : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(GpuConv1d, MatchesReferenceOutputsAndStateVarlen) {
  REQUIRE_GPU();
  const uint64_t seed = next_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Rng rng(seed);
  const auto [C, ld] = GetParam();
  const int64_t W = 4, n_slots = 7;
  const std::vector<int32_t> slots = {4, 0, 2, 5, 6, 1, 3};
  const Varlen v({5, 1, 2, 9, 40, 1, 17});
  const int64_t T = v.T();
  auto x = strided(rng, T, C, ld);
  auto w = rng.normal_vec(size_t(C * W), 0.5f);
  auto state = rng.normal_vec(size_t(n_slots * (W - 1) * C));
  auto state_ref = state;
  const auto y_ref = ref_conv1d(v, slots, x, ld, w, C, W, state_ref);
  const auto y = gpu_conv1d(v, slots, x, ld, w, C, W, state);
  EXPECT_TRUE(close_rows(y.data(), ld, y_ref.data(), ld, T, C, 1e-5, 4e-3));
  // The state holds inputs (bf16 values, exact in float32) or old state: bitwise, untouched slots included.
  EXPECT_TRUE(same_bits(state, state_ref));
}

// The vectorized and the per-element kernels sum the same products in the same order: bitwise the same outputs.
TEST(GpuConv1dPaths, VectorizedAndPerElementKernelsAgreeBitwise) {
  REQUIRE_GPU();
  const uint64_t seed = next_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Rng rng(seed);
  const int64_t C = 64, W = 4;
  const std::vector<int32_t> slots = {1, 3, 0, 2};
  const Varlen v({3, 1, 30, 20});
  const int64_t T = v.T();
  auto w = rng.normal_vec(size_t(C * W), 0.5f);
  const auto state0 = rng.normal_vec(size_t(4 * (W - 1) * C));
  auto x = strided(rng, T, C, C);
  std::vector<std::vector<float>> outs;
  for (int64_t ld : {C, C + 4}) {  // 128-byte rows: vectorized; 136-byte rows: per element
    std::vector<float> xs(size_t(T * ld), 0.0f);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) xs[size_t(t * ld + c)] = x[size_t(t * C + c)];
    auto state = state0;
    const auto y = gpu_conv1d(v, slots, xs, ld, w, C, W, state);
    std::vector<float> packed;
    for (int64_t t = 0; t < T; ++t) packed.insert(packed.end(), y.begin() + t * ld, y.begin() + t * ld + C);
    outs.push_back(packed);
  }
  EXPECT_TRUE(same_bits(outs[0], outs[1]));
}

// Decode: every sequence one token. The one-launch kernel against the two-launch path (bitwise, outputs and state)
// and the reference, at aligned and unaligned rows.
TEST(GpuConv1dPaths, DecodeKernelMatchesTwoLaunchPathBitwise) {
  REQUIRE_GPU();
  const uint64_t seed = next_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Rng rng(seed);
  const int64_t W = 4, n_slots = 9;
  const std::vector<int32_t> slots = {4, 0, 8, 5, 6, 1, 3};
  const Varlen v({1, 1, 1, 1, 1, 1, 1});
  const int64_t T = v.T();
  for (const auto& [C, ld] : {std::pair<int64_t, int64_t>{64, 64}, {40, 44}}) {
    auto x = strided(rng, T, C, ld);
    auto w = rng.normal_vec(size_t(C * W), 0.5f);
    const auto state0 = rng.normal_vec(size_t(n_slots * (W - 1) * C));
    auto st_two = state0, st_one = state0, st_ref = state0;
    const auto y_two = gpu_conv1d(v, slots, x, ld, w, C, W, st_two, false);
    const auto y_one = gpu_conv1d(v, slots, x, ld, w, C, W, st_one, true);
    const auto y_ref = ref_conv1d(v, slots, x, ld, w, C, W, st_ref);
    std::vector<float> a, b;
    for (int64_t t = 0; t < T; ++t) {
      a.insert(a.end(), y_one.begin() + t * ld, y_one.begin() + t * ld + C);
      b.insert(b.end(), y_two.begin() + t * ld, y_two.begin() + t * ld + C);
    }
    EXPECT_TRUE(same_bits(a, b)) << "outputs, C=" << C;
    EXPECT_TRUE(same_bits(st_one, st_two)) << "state, C=" << C;
    EXPECT_TRUE(same_bits(st_one, st_ref)) << "state vs reference, C=" << C;
    EXPECT_TRUE(close_rows(y_one.data(), ld, y_ref.data(), ld, T, C, 1e-5, 4e-3)) << "outputs vs reference, C=" << C;
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, GpuConv1d,
                         ::testing::Values(std::make_pair(int64_t(40), int64_t(48)), std::make_pair(int64_t(64), int64_t(64)),
                                           std::make_pair(int64_t(36), int64_t(44))));

// ---- GEMM: correctness and batch invariance of the pinned cuBLASLt algorithms ----

TEST(GpuGemm, MatchesReferenceAndRowsAreBitwiseIndependentOfRowCount) {
  REQUIRE_GPU();
  struct Case {
    int64_t N, K;
    bool f32;
  };
  kc::Gemm gemm;
  for (Case cs : {Case{64, 64, false}, Case{30, 3840, false}, Case{2880, 3840, false}, Case{4096, 1024, true},
                  Case{512, 256, true}}) {
    const uint64_t seed = next_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " N=" + std::to_string(cs.N) + " K=" + std::to_string(cs.K));
    Rng rng(seed);
    const int64_t Rmax = 1000;
    auto x = round_bf16(rng.normal_vec(size_t(Rmax * cs.K)));
    auto w = round_bf16(rng.normal_vec(size_t(cs.N * cs.K), 0.05f));
    DevBuf dx = upload_bf16(x), dw = upload_bf16(w);
    const size_t ysz = cs.f32 ? 4 : 2;
    auto run = [&](int64_t R) {
      DevBuf dy(size_t(R * cs.N) * ysz);
      dy.poison();
      kc::GemmArgs a{dx.get<bf16>(), cs.K, dw.get<bf16>(), dy.get(), cs.f32, cs.N, R, cs.N, cs.K};
      gemm.run(a, nullptr);
      return cs.f32 ? download_f32(dy, size_t(R * cs.N)) : download_bf16(dy, size_t(R * cs.N));
    };
    const auto full = run(Rmax);
    // Correctness of a few rows against float64 sums.
    std::vector<float> got, ref;
    for (int64_t r : {int64_t(0), int64_t(1), int64_t(577), Rmax - 1}) {
      for (int64_t n = 0; n < cs.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < cs.K; ++k) acc += double(x[size_t(r * cs.K + k)]) * double(w[size_t(n * cs.K + k)]);
        ref.push_back(float(acc));
        got.push_back(full[size_t(r * cs.N + n)]);
      }
    }
    EXPECT_TRUE(close(got, ref, 2e-3 * max_abs(ref), cs.f32 ? 1e-4 : 4e-3));
    // Every row count gives the same bits on the rows it shares with the largest.
    for (int64_t R : {1, 2, 3, 7, 8, 16, 17, 33, 64, 65, 128, 255, 512}) {
      const auto part = run(R);
      const std::vector<float> head(full.begin(), full.begin() + R * cs.N);
      EXPECT_TRUE(same_bits(part, head)) << "R=" << R << " differs from R=" << Rmax << " (max diff "
                                         << max_diff(part, head) << "); algorithm "
                                         << gemm.pinned_algo({dx.get<bf16>(), cs.K, dw.get<bf16>(), dx.get(), cs.f32,
                                                              cs.N, R, cs.N, cs.K});
    }
  }
}

// Outputs written into columns of a wider buffer at an odd offset (as the GDN a/b projections are) go through an
// aligned staging copy: the same bits as a plain call.
TEST(GpuGemm, MisalignedOutputColumnsGiveTheSameBits) {
  REQUIRE_GPU();
  const uint64_t seed = next_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Rng rng(seed);
  const int64_t N = 30, K = 256, ld = 2 * N;
  kc::Gemm gemm;
  for (int64_t R : {1, 5, 64, 300}) {
    auto x = round_bf16(rng.normal_vec(size_t(R * K)));
    auto w = round_bf16(rng.normal_vec(size_t(N * K), 0.05f));
    DevBuf dx = upload_bf16(x), dw = upload_bf16(w), plain(size_t(R * N) * 2), wide(size_t(R * ld) * 2);
    plain.poison();
    wide.poison();
    gemm.run({dx.get<bf16>(), K, dw.get<bf16>(), plain.get(), false, N, R, N, K}, nullptr);
    gemm.run({dx.get<bf16>(), K, dw.get<bf16>(), wide.get<bf16>() + N, false, ld, R, N, K}, nullptr);
    const auto a = download_bf16(plain, size_t(R * N)), b = download_bf16(wide, size_t(R * ld));
    std::vector<float> cols;
    for (int64_t r = 0; r < R; ++r) cols.insert(cols.end(), b.begin() + r * ld + N, b.begin() + r * ld + 2 * N);
    EXPECT_TRUE(same_bits(a, cols)) << "R=" << R;
  }
}

// ---- gated delta rule ----

namespace {

struct GdnCase {
  int64_t Hk, Hv, Dk, Dv;
  std::vector<int32_t> lens;
};

/// One packed varlen problem: inputs rounded to bf16, a non-zero initial state in non-contiguous slots.
struct GdnProblem {
  GdnCase cs;
  int64_t T = 0, ld_qkv = 0, n_slots = 0;
  std::vector<int32_t> cu, slots;
  std::vector<float> qkv, ab, A_log, dt_bias, state;

  GdnProblem(const GdnCase& c, Rng& rng) : cs(c) {
    cu = {0};
    for (size_t s = 0; s < c.lens.size(); ++s) {
      cu.push_back(cu.back() + c.lens[s]);
      slots.push_back(int32_t(3 * s + 1));
    }
    n_slots = int64_t(3 * c.lens.size() + 2);
    T = cu.back();
    ld_qkv = 2 * c.Hk * c.Dk + c.Hv * c.Dv;
    qkv = round_bf16(rng.normal_vec(size_t(T * ld_qkv)));
    ab = round_bf16(rng.normal_vec(size_t(T * 2 * c.Hv)));
    for (int64_t h = 0; h < c.Hv; ++h) {
      A_log.push_back(std::log(1.0f + 15.0f * rng.uniform(0, 1)));
      dt_bias.push_back(std::log(std::expm1(0.001f + 0.099f * rng.uniform(0, 1))));
    }
    state = rng.normal_vec(size_t(n_slots * c.Hv * c.Dk * c.Dv), 0.5f);
  }

  /// The float64 reference: outputs [T, Hv·Dv] and the state pool afterwards.
  void reference(std::vector<float>& out, std::vector<float>& st) const {
    st = state;
    out.assign(size_t(T * cs.Hv * cs.Dv), 0.0f);
    kernels::GatedDeltaRuleParams p;
    p.n_seqs = int64_t(cs.lens.size());
    p.cu_seqlens = cu.data();
    p.state_slots = slots.data();
    p.state = st.data();
    p.q = qkv.data();
    p.k = qkv.data() + cs.Hk * cs.Dk;
    p.v = qkv.data() + 2 * cs.Hk * cs.Dk;
    p.ld_qkv = ld_qkv;
    p.a = ab.data();
    p.b = ab.data() + cs.Hv;
    p.ld_ab = 2 * cs.Hv;
    p.A_log = A_log.data();
    p.dt_bias = dt_bias.data();
    p.out = out.data();
    p.ld_out = cs.Hv * cs.Dv;
    p.Hk = cs.Hk;
    p.Hv = cs.Hv;
    p.Dk = cs.Dk;
    p.Dv = cs.Dv;
    kernels::gated_delta_rule_ref(p);
  }
};

/// Device copies of a problem, and runs of either kernel over a chosen list of its sequences.
struct GdnDevice {
  const GdnProblem& pb;
  DevBuf qkv, ab, A_log, dt_bias, slots, state, out;
  GdnDevice(const GdnProblem& p)
      : pb(p), qkv(upload_bf16(p.qkv)), ab(upload_bf16(p.ab)), A_log(upload_f32(p.A_log)),
        dt_bias(upload_f32(p.dt_bias)), slots(upload_i32(p.slots)),
        state(upload_f32(p.state)), out(size_t(p.T * p.cs.Hv * p.cs.Dv) * 2) {
    out.poison();
  }
  void reset_state() {
    CUDA_CHECK(cudaMemcpy(state.get(), pb.state.data(), pb.state.size() * 4, cudaMemcpyHostToDevice));
    out.poison();
  }
  /// Runs `chunked` or recurrent on sequences `which` (indices into the problem's lists), with their cu_seqlens
  /// optionally replaced (to run a part of each sequence).
  void run(bool chunked, const std::vector<int32_t>& which, const std::vector<int32_t>* cu_override = nullptr,
           int value_slice = 0) {
    DevBuf list = upload_i32(which);
    DevBuf cu2 = upload_i32(cu_override ? *cu_override : pb.cu);
    kc::GdnParams p;
    p.n = int64_t(which.size());
    p.seqs = list.get<int32_t>();
    p.cu_seqlens = cu2.get<int32_t>();
    p.state_slots = slots.get<int32_t>();
    p.state = state.get<float>();
    const auto& c = pb.cs;
    p.q = qkv.get<bf16>();
    p.k = p.q + c.Hk * c.Dk;
    p.v = p.q + 2 * c.Hk * c.Dk;
    p.ld_qkv = pb.ld_qkv;
    p.T = pb.T;
    p.a = ab.get<bf16>();
    p.b = p.a + c.Hv;
    p.ld_ab = 2 * c.Hv;
    p.A_log = A_log.get<float>();
    p.dt_bias = dt_bias.get<float>();
    p.out = out.get<bf16>();
    p.ld_out = c.Hv * c.Dv;
    p.Hk = c.Hk;
    p.Hv = c.Hv;
    p.Dk = c.Dk;
    p.Dv = c.Dv;
    p.allow_neg_eigval = true;
    if (chunked) {
      const kc::GdnChunkPlan plan = kc::gdn_plan_chunks((cu_override ? *cu_override : pb.cu).data(), which);
      DevBuf chunks = upload_i32(plan.chunks.empty() ? std::vector<int32_t>{0} : plan.chunks);
      DevBuf first = upload_i32(plan.first_chunk);
      const int64_t n_chunks = int64_t(plan.chunks.size() / 2);
      DevBuf scratch(kc::gdn_chunked_scratch_bytes(n_chunks, c.Hv, c.Dk));
      scratch.poison();
      kc::GdnChunkWork w{chunks.get<int32_t>(), first.get<int32_t>(), n_chunks, scratch.get()};
      w.value_slice = value_slice;
      kc::gdn_chunked(p, w, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
    } else {
      kc::gdn_recurrent(p, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
    }
  }
  std::vector<float> outputs() const { return download_bf16(out, size_t(pb.T * pb.cs.Hv * pb.cs.Dv)); }
  std::vector<float> states() const { return download_f32(state, pb.state.size()); }
};

std::vector<int32_t> all_seqs(const GdnProblem& p) {
  std::vector<int32_t> v(p.cs.lens.size());
  std::iota(v.begin(), v.end(), 0);
  return v;
}

const std::vector<int32_t> kLens = {1, 2, 63, 64, 65, 200, 1000};

}  // namespace

class GpuGdn : public ::testing::TestWithParam<GdnCase> {};

// Both kernels against the float64 recurrent reference, and against each other, over a packed batch of sequences
// of lengths 1, 2, 63, 64, 65, 200 and 1000 in non-contiguous state slots with a non-zero initial state.
TEST_P(GpuGdn, RecurrentAndChunkedMatchReferenceAndEachOther) {
  REQUIRE_GPU();
  const uint64_t seed = next_seed();
  const GdnCase& c = GetParam();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Rng rng(seed);
  GdnProblem pb(c, rng);
  std::vector<float> out_ref, st_ref;
  pb.reference(out_ref, st_ref);
  GdnDevice dev(pb);
  dev.run(false, all_seqs(pb));
  const auto out_rec = dev.outputs(), st_rec = dev.states();
  dev.reset_state();
  dev.run(true, all_seqs(pb));
  const auto out_chk = dev.outputs(), st_chk = dev.states();
  const double mo = max_abs(out_ref), ms = max_abs(st_ref);
  std::printf("  GDN Hk=%lld Hv=%lld Dk=%lld Dv=%lld: max |err|/max|ref|: recurrent out %.2e state %.2e; "
              "chunked out %.2e state %.2e; chunked vs recurrent out %.2e\n",
              (long long)c.Hk, (long long)c.Hv, (long long)c.Dk, (long long)c.Dv, max_diff(out_rec, out_ref) / mo,
              max_diff(st_rec, st_ref) / ms, max_diff(out_chk, out_ref) / mo, max_diff(st_chk, st_ref) / ms,
              max_diff(out_chk, out_rec) / mo);
  // Recurrent: float32 arithmetic, outputs rounded to bf16 once.
  EXPECT_TRUE(close(out_rec, out_ref, 2e-3 * mo, 8e-3)) << "recurrent outputs";
  EXPECT_TRUE(close(st_rec, st_ref, 1e-4 * ms, 1e-3)) << "recurrent state";
  // Chunked: bf16 tensor-core operands (normalized q, k, the state, T, R, Ũ), float32 accumulation.
  EXPECT_TRUE(close(out_chk, out_ref, 2e-2 * mo, 2e-2)) << "chunked outputs";
  EXPECT_TRUE(close(st_chk, st_ref, 2e-2 * ms, 2e-2)) << "chunked state";
  EXPECT_TRUE(close(out_chk, out_rec, 2e-2 * mo, 2e-2)) << "chunked vs recurrent outputs";
  EXPECT_TRUE(close(st_chk, st_rec, 2e-2 * ms, 2e-2)) << "chunked vs recurrent state";
  // Where the default state pass is the warpgroup-MMA one (64-column slices), the mma.sync one too.
  if (c.Dv % 64 == 0 && c.Dk > 32 && c.Dk <= 128) {
    dev.reset_state();
    dev.run(true, all_seqs(pb), nullptr, 32);
    const auto out32 = dev.outputs(), st32 = dev.states();
    std::printf("  mma.sync state pass: out %.2e state %.2e\n", max_diff(out32, out_ref) / mo,
                max_diff(st32, st_ref) / ms);
    EXPECT_TRUE(close(out32, out_ref, 2e-2 * mo, 2e-2)) << "chunked outputs, 32-column slices";
    EXPECT_TRUE(close(st32, st_ref, 2e-2 * ms, 2e-2)) << "chunked state, 32-column slices";
  }
}

// A sequence split at multiples of 64 (the chunk grid) gives bitwise the same outputs and state as one call; and a
// sequence's result is bitwise the same alone and packed with others.
TEST_P(GpuGdn, ChunkedIsBitwiseInvariantToSplitsAndBatch) {
  REQUIRE_GPU();
  const uint64_t seed = next_seed();
  const GdnCase& c = GetParam();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Rng rng(seed);
  GdnProblem pb(c, rng);
  GdnDevice dev(pb);
  dev.run(true, all_seqs(pb));
  const auto out_all = dev.outputs(), st_all = dev.states();
  // The two longest sequences, each alone, in pieces of 64 / 128 / 512 tokens.
  const int32_t s_a = int32_t(pb.cs.lens.size()) - 2, s_b = int32_t(pb.cs.lens.size()) - 1;
  for (int32_t piece : {64, 128, 512}) {
    dev.reset_state();
    for (int32_t s : {s_a, s_b}) {
      for (int32_t off = 0; off < pb.cs.lens[size_t(s)]; off += piece) {
        std::vector<int32_t> cu2 = pb.cu;
        cu2[size_t(s)] = pb.cu[size_t(s)] + off;
        cu2[size_t(s) + 1] = std::min(pb.cu[size_t(s)] + off + piece, pb.cu[size_t(s) + 1]);
        dev.run(true, {s}, &cu2);
      }
    }
    const auto out = dev.outputs(), st = dev.states();
    const int64_t row = pb.cs.Hv * pb.cs.Dv;
    for (int32_t s : {s_a, s_b}) {
      const std::vector<float> a(out.begin() + pb.cu[size_t(s)] * row, out.begin() + pb.cu[size_t(s) + 1] * row);
      const std::vector<float> b(out_all.begin() + pb.cu[size_t(s)] * row,
                                 out_all.begin() + pb.cu[size_t(s) + 1] * row);
      EXPECT_TRUE(same_bits(a, b)) << "outputs of sequence " << s << " in pieces of " << piece;
      const int64_t sz = pb.cs.Hv * pb.cs.Dk * pb.cs.Dv, off = int64_t(pb.slots[size_t(s)]) * sz;
      const std::vector<float> sa(st.begin() + off, st.begin() + off + sz), sb(st_all.begin() + off,
                                                                               st_all.begin() + off + sz);
      EXPECT_TRUE(same_bits(sa, sb)) << "state of sequence " << s << " in pieces of " << piece;
    }
  }
  // Recurrent, one sequence alone vs in the batch.
  dev.reset_state();
  dev.run(false, all_seqs(pb));
  const auto out_rb = dev.outputs();
  dev.reset_state();
  const int32_t s_c = int32_t(pb.cs.lens.size()) / 2;
  dev.run(false, {s_c});
  const auto out_r1 = dev.outputs();
  const int64_t row = pb.cs.Hv * pb.cs.Dv;
  const auto seg = [&](const std::vector<float>& v) {
    return std::vector<float>(v.begin() + pb.cu[size_t(s_c)] * row, v.begin() + pb.cu[size_t(s_c) + 1] * row);
  };
  EXPECT_TRUE(same_bits(seg(out_r1), seg(out_rb))) << "recurrent: sequence " << s_c << " alone vs in the batch";
  // Chunked, one sequence alone vs in the batch.
  dev.reset_state();
  dev.run(true, {s_c});
  EXPECT_TRUE(same_bits(seg(dev.outputs()), seg(out_all))) << "chunked: sequence " << s_c << " alone vs in the batch";
  // Chunked on the mma.sync state pass, slices of 32 columns and of 48: the same sums.
  if (pb.cs.Dv % 48 == 0) {
    dev.reset_state();
    dev.run(true, all_seqs(pb), nullptr, 48);
    const auto out48 = dev.outputs(), st48 = dev.states();
    dev.reset_state();
    dev.run(true, all_seqs(pb), nullptr, 32);
    EXPECT_TRUE(same_bits(dev.outputs(), out48)) << "chunked: 32-column state slices vs 48";
    EXPECT_TRUE(same_bits(dev.states(), st48)) << "chunked: state, 32-column slices vs 48";
  }
}

// Decode-sized work over many sequences: more (sequence, head, column slice) items than resident blocks, so each
// persistent block of the recurrent kernel takes several, prefetching the next one's state; some sequences have no
// token this call, some two or three. Against the float64 reference, and one sequence alone vs in the batch.
TEST(GpuGdnDecode, ManyItemsPerBlockMatchReferenceAndAreBatchInvariant) {
  REQUIRE_GPU();
  const uint64_t seed = next_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Rng rng(seed);
  GdnCase c{8, 16, 64, 128, {}};
  for (int i = 0; i < 96; ++i) c.lens.push_back(i % 11 == 3 ? 0 : i % 13 == 5 ? 3 : i % 7 == 2 ? 2 : 1);
  GdnProblem pb(c, rng);
  std::vector<float> out_ref, st_ref;
  pb.reference(out_ref, st_ref);
  GdnDevice dev(pb);
  dev.run(false, all_seqs(pb));
  const auto out_all = dev.outputs(), st_all = dev.states();
  const double mo = max_abs(out_ref), ms = max_abs(st_ref);
  EXPECT_TRUE(close(out_all, out_ref, 2e-3 * mo, 8e-3)) << "recurrent outputs";
  EXPECT_TRUE(close(st_all, st_ref, 1e-4 * ms, 1e-3)) << "recurrent state";
  const int64_t row = c.Hv * c.Dv;
  for (int32_t s : {0, 5, 95}) {
    dev.reset_state();
    dev.run(false, {s});
    const auto out = dev.outputs();
    const std::vector<float> a(out.begin() + pb.cu[size_t(s)] * row, out.begin() + pb.cu[size_t(s) + 1] * row);
    const std::vector<float> b(out_all.begin() + pb.cu[size_t(s)] * row, out_all.begin() + pb.cu[size_t(s) + 1] * row);
    EXPECT_TRUE(same_bits(a, b)) << "sequence " << s << " alone vs in the batch";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuGdn,
                         ::testing::Values(GdnCase{2, 2, 12, 24, kLens}, GdnCase{1, 2, 16, 16, kLens},
                                           GdnCase{2, 2, 48, 96, kLens}, GdnCase{2, 4, 96, 192, kLens},
                                           GdnCase{2, 2, 128, 128, kLens}, GdnCase{1, 1, 256, 64, {1, 2, 65, 200}},
                                           GdnCase{2, 2, 64, 64, kLens}, GdnCase{1, 1, 80, 64, {1, 65, 200}}));
