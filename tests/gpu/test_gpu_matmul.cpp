// The decode GEMM (kernels/matmul/matmul.cu) against the plain CPU reference on fresh random inputs rounded to
// bf16, outputs poisoned with NaN; and its row invariance: a row's bits do not depend on how many rows share the call
// or which.
//
// Tolerance: float32 accumulation of bf16 products (exact in float32) differs from the float64 reference by a few
// float32 ulps of the sum of magnitudes; a bf16 output adds its rounding, 2^-9 of the value.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "gpu_test_util.h"
#include "kernels/activations/activations_cuda.h"
#include "kernels/conv1d/conv1d_cuda.h"
#include "kernels/matmul/matmul.h"
#include "kernels/matmul/matmul_cuda.h"

using namespace hyrax;
using namespace hyrax::gputest;
namespace kc = hyrax::kernels::cuda;
using bf16 = __nv_bfloat16;

namespace {

struct Problem {
  int64_t R, N, K, ldx, ldy, xoff, yoff;  // xoff, yoff: element offsets of x and y in their buffers
  bool f32;
};

std::vector<float> random_x(Rng& rng, const Problem& p) {  // [R, K] at row stride ldx (padding NaN), bf16 values
  std::vector<float> x(size_t(p.R * p.ldx), std::nanf(""));
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t k = 0; k < p.K; ++k) x[size_t(r * p.ldx + k)] = bf16_to_f32(f32_to_bf16(rng.normal()));
  return x;
}

std::vector<float> with_offset(std::vector<float> v, int64_t off) {
  v.insert(v.begin(), size_t(off), 0.0f);
  return v;
}

/// x [R, K] at row stride ldx after xoff elements, w [N, K]: host values (bf16-exact) and device copies.
struct Inputs {
  Inputs(Rng& rng, const Problem& p)
      : x(random_x(rng, p)), w(round_bf16(rng.normal_vec(size_t(p.N * p.K), 0.05f))),
        dx(upload_bf16(with_offset(x, p.xoff))), dw(upload_bf16(w)) {}
  std::vector<float> x, w;
  DevBuf dx, dw;
};

/// Runs decode_gemm on rows [r0, r0 + R) of x into a NaN-poisoned y (with the shape's K split, or k_warps warps
/// when given); returns y's whole buffer (from yoff on).
std::vector<float> run_decode(const Problem& p, const Inputs& in, int64_t r0, int64_t R, int k_warps = 0,
                              int layout = -1) {
  const size_t ysz = p.f32 ? 4 : 2, n = size_t(p.yoff + R * p.ldy);
  DevBuf dy(n * ysz);
  dy.poison();
  kc::GemmArgs a;
  a.x = in.dx.get<bf16>() + p.xoff + r0 * p.ldx;
  a.ldx = p.ldx;
  a.w = in.dw.get<bf16>();
  a.y = static_cast<char*>(dy.get()) + size_t(p.yoff) * ysz;
  a.y_f32 = p.f32;
  a.ldy = p.ldy;
  a.R = R;
  a.N = p.N;
  a.K = p.K;
  kc::decode_gemm(a, nullptr, k_warps == 0 ? kc::decode_gemm_k_warps(p.N, p.K) : k_warps, layout);
  CUDA_CHECK(cudaGetLastError());
  auto all = p.f32 ? download_f32(dy, n) : download_bf16(dy, n);
  return std::vector<float>(all.begin() + p.yoff, all.end());
}

std::string describe(const Problem& p) {
  return "R=" + std::to_string(p.R) + " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K) + " ldx=" +
         std::to_string(p.ldx) + " ldy=" + std::to_string(p.ldy) + " xoff=" + std::to_string(p.xoff) + " yoff=" +
         std::to_string(p.yoff) + (p.f32 ? " f32" : " bf16");
}

}  // namespace

TEST(GpuDecodeGemm, MatchesReference) {
  REQUIRE_GPU();
  struct Shape {
    int64_t N, K, xpad, ypad, xoff, yoff;
  };
  // Exact tiles; K neither a multiple of 64 nor of 8 (element loads); N not a multiple of 16; strided and
  // misaligned x and y (as the GDN a/b projections write into columns of a wider buffer); a 7B shape.
  const std::vector<Shape> shapes = {{16, 64, 0, 0, 0, 0},      {37, 100, 3, 5, 1, 1},   {200, 328, 8, 0, 0, 0},
                                     {30, 3840, 0, 30, 0, 30},  {1000, 1032, 16, 3, 0, 0}, {129, 2000, 0, 0, 0, 0},
                                     {2880, 3840, 0, 0, 0, 0}};
  for (const Shape& sh : shapes) {
    for (bool f32 : {false, true}) {
      const int64_t Rmax = sh.N * sh.K > 4'000'000 ? 8 : 70;
      const uint64_t seed = next_seed();
      Problem p{Rmax, sh.N, sh.K, sh.K + sh.xpad, sh.N + sh.ypad, sh.xoff, sh.yoff, f32};
      SCOPED_TRACE("seed " + std::to_string(seed) + " " + describe(p));
      Rng rng(seed);
      const Inputs in(rng, p);
      std::vector<float> ref(size_t(Rmax * p.ldy), 0.0f);
      kernels::MatmulParams mp;
      mp.x = in.x.data();
      mp.ldx = p.ldx;
      mp.w = in.w.data();
      mp.w_dtype = DType::F32;
      mp.y = ref.data();
      mp.ldy = p.ldy;
      mp.T = Rmax;
      mp.N = p.N;
      mp.K = p.K;
      kernels::matmul_ref(mp);
      std::vector<int64_t> rows;
      for (int64_t R = 1; R <= Rmax; ++R)
        if (R <= 18 || R % 8 <= 1 || R == Rmax) rows.push_back(R);
      for (int64_t R : rows) {
        for (int kw : {0, 1, 8}) {  // the shape's K split, and the extremes
          const auto got = run_decode(p, in, 0, R, kw);
          const double atol = 2e-3 * max_abs(ref), rtol = f32 ? 1e-5 : 4e-3;
          EXPECT_TRUE(close_rows(got.data(), p.ldy, ref.data(), p.ldy, R, p.N, atol, rtol))
              << "R=" << R << " k_warps " << kw;
          // Padding columns of y stay as they were (NaN).
          bool pad_untouched = true;
          for (int64_t r = 0; r < R; ++r)
            for (int64_t c = p.N; c < p.ldy; ++c) pad_untouched &= std::isnan(got[size_t(r * p.ldy + c)]);
          EXPECT_TRUE(pad_untouched) << "R=" << R << ": y written outside [R, N]";
        }
      }
    }
  }
}

// Row r computed with R − 1 other rows (any R, any neighbours) has the bits of row r computed alone.
TEST(GpuDecodeGemm, RowsAreBitwiseIndependentOfTheRowsBesideThem) {
  REQUIRE_GPU();
  struct Shape {
    int64_t N, K, ypad, yoff;
    bool f32;
  };
  for (Shape sh : {Shape{2880, 3840, 0, 0, false}, Shape{30, 3840, 30, 30, false}, Shape{4000, 1024, 0, 0, true},
                   Shape{77, 11008, 3, 0, true}}) {
    const int64_t total = 360;
    const uint64_t seed = next_seed();
    Problem p{total, sh.N, sh.K, sh.K, sh.N + sh.ypad, 0, sh.yoff, sh.f32};
    SCOPED_TRACE("seed " + std::to_string(seed) + " " + describe(p));
    Rng rng(seed);
    const Inputs in(rng, p);
    // Each row alone.
    std::vector<std::vector<float>> alone(static_cast<size_t>(total));
    for (int64_t r = 0; r < total; ++r) {
      auto y = run_decode(p, in, r, 1);
      alone[size_t(r)].assign(y.begin(), y.begin() + p.N);
    }
    int64_t bad_calls = 0;
    for (int64_t R = 1; R <= 300; ++R) {
      if (R > 72 && R % 9 != 0 && R != 128 && R != 256 && R != 300) continue;
      const int64_t r0 = int64_t(rng.uniform_int(0, int(total - R)));
      // Every layout of the work (from 17 rows there are several) gives the bits of the row alone.
      for (int layout = 0; layout < (R > 16 ? kc::kDecodeGemmLayouts : 1); ++layout) {
        const auto y = run_decode(p, in, r0, R, 0, R > 16 ? layout : -1);
        bool same = true;
        for (int64_t r = 0; r < R; ++r)
          same &= std::memcmp(y.data() + r * p.ldy, alone[size_t(r0 + r)].data(), size_t(p.N) * sizeof(float)) == 0;
        if (!same && bad_calls++ < 5)
          ADD_FAILURE() << "R=" << R << " layout " << layout << " (rows from " << r0 << "): a row differs from alone";
      }
    }
    EXPECT_EQ(bad_calls, 0);
  }
}

// The gated MLP's activation fused into the decode GEMM (glu_half): bitwise the GEMM into [gate | up] (bf16) then
// the swiglu kernel, at every row-group count, with I not a multiple of 16, an unaligned K and a 7B-like shape;
// columns past I of y are left as they were.
TEST(GpuDecodeGemm, FusedSwigluIsGemmThenSwigluBitwise) {
  REQUIRE_GPU();
  struct Shape {
    int64_t I, K;
  };
  for (const Shape& sh : {Shape{200, 136}, Shape{24, 100}, Shape{1376, 3840}}) {
    const int64_t Rmax = 70, N = 2 * sh.I;
    const uint64_t seed = next_seed();
    Problem p{Rmax, N, sh.K, sh.K, N, 0, 0, false};
    SCOPED_TRACE("seed " + std::to_string(seed) + " " + describe(p));
    Rng rng(seed);
    const Inputs in(rng, p);
    for (int64_t R : {1, 3, 8, 9, 16, 17, 32, 33, 64, 70}) {
      // Unfused: [gate | up] by the decode GEMM, then swiglu into the gate columns.
      DevBuf gu(size_t(R * N) * 2);
      gu.poison();
      kc::GemmArgs a;
      a.x = in.dx.get<bf16>();
      a.ldx = p.ldx;
      a.w = in.dw.get<bf16>();
      a.y = gu.get();
      a.ldy = N;
      a.R = R;
      a.N = N;
      a.K = p.K;
      kc::decode_gemm(a, nullptr);
      bf16* g = gu.get<bf16>();
      kc::swiglu({g, N}, {g + sh.I, N}, {g, N}, R, sh.I, nullptr);
      const auto want = download_bf16(gu, size_t(R * N));
      // Fused, into a poisoned [R, N] buffer: the first I columns written, the rest untouched.
      DevBuf fu(size_t(R * N) * 2);
      fu.poison();
      a.y = fu.get();
      a.glu_half = sh.I;
      kc::decode_gemm(a, nullptr);
      CUDA_CHECK(cudaGetLastError());
      const auto got = download_bf16(fu, size_t(R * N));
      bool same = true, pad_untouched = true;
      for (int64_t r = 0; r < R; ++r) {
        same &= std::memcmp(got.data() + r * N, want.data() + r * N, size_t(sh.I) * sizeof(float)) == 0;
        for (int64_t c = sh.I; c < N; ++c) pad_untouched &= std::isnan(got[size_t(r * N + c)]);
      }
      EXPECT_TRUE(same) << "R=" << R << ": fused differs from GEMM then swiglu";
      EXPECT_TRUE(pad_untouched) << "R=" << R << ": fused wrote past column I";
    }
  }
}

// The conv1d in the decode GEMM's epilogue (GemmArgs::conv): y, the conv outputs and the conv state bitwise those of
// the GEMM followed by conv1d (one token per sequence), at 1-8 rows, with the rows' state slots out of order, a
// window of 4 and of 2, and conv channels fewer than the GEMM's columns (the 7B's in_proj, scaled down).
TEST(GpuDecodeGemm, ConvEpilogueIsGemmThenConv1dBitwise) {
  REQUIRE_GPU();
  struct Shape {
    int64_t N, K, C, W;
  };
  for (const Shape& sh : {Shape{200, 136, 136, 4}, Shape{1000, 512, 704, 4}, Shape{96, 64, 40, 2}}) {
    for (int64_t R : {1, 3, 5, 8}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE("seed " + std::to_string(seed) + " N=" + std::to_string(sh.N) + " C=" + std::to_string(sh.C) +
                   " W=" + std::to_string(sh.W) + " R=" + std::to_string(R));
      Rng rng(seed);
      const int64_t S = sh.W - 1, n_slots = R + 5;
      const DevBuf dx = upload_bf16(round_bf16(rng.normal_vec(size_t(R * sh.K))));
      const DevBuf dw = upload_bf16(round_bf16(rng.normal_vec(size_t(sh.N * sh.K), 0.05f)));
      const DevBuf dcw = upload_f32(rng.normal_vec(size_t(sh.C * sh.W), 0.5f));
      const auto state0 = rng.normal_vec(size_t(n_slots * S * sh.C));
      std::vector<int32_t> slots, cu = {0}, tok;
      for (int64_t r = 0; r < R; ++r) {
        slots.push_back(int32_t((r * 7 + 3) % n_slots));
        cu.push_back(int32_t(r + 1));
        tok.push_back(int32_t(r));
      }
      const DevBuf dslots = upload_i32(slots), dcu = upload_i32(cu), dtok = upload_i32(tok);
      kc::GemmArgs a;
      a.x = dx.get<bf16>();
      a.ldx = sh.K;
      a.w = dw.get<bf16>();
      a.ldy = sh.N;
      a.R = R;
      a.N = sh.N;
      a.K = sh.K;
      // The GEMM, then conv1d.
      DevBuf y1(size_t(R * sh.N) * 2), c1(size_t(R * sh.C) * 2);
      DevBuf st1 = upload_f32(state0);
      y1.poison();
      c1.poison();
      a.y = y1.get();
      kc::decode_gemm(a, nullptr);
      kc::Conv1dParams cp;
      cp.n_seqs = R;
      cp.T = R;
      cp.cu_seqlens = dcu.get<int32_t>();
      cp.state_slots = dslots.get<int32_t>();
      cp.tok_seq = dtok.get<int32_t>();
      cp.state = st1.get<float>();
      cp.x = y1.get<bf16>();
      cp.ldx = sh.N;
      cp.y = c1.get<bf16>();
      cp.ldy = sh.C;
      cp.w = dcw.get<float>();
      cp.C = sh.C;
      cp.W = sh.W;
      cp.one_token_each = true;
      kc::conv1d(cp, nullptr);
      // Fused.
      DevBuf y2(size_t(R * sh.N) * 2), c2(size_t(R * sh.C) * 2);
      DevBuf st2 = upload_f32(state0);
      y2.poison();
      c2.poison();
      a.y = y2.get();
      a.conv.C = sh.C;
      a.conv.W = sh.W;
      a.conv.w = dcw.get<float>();
      a.conv.state = st2.get<float>();
      a.conv.slots = dslots.get<int32_t>();
      a.conv.out = c2.get<bf16>();
      a.conv.ld_out = sh.C;
      kc::decode_gemm(a, nullptr);
      CUDA_CHECK(cudaGetLastError());
      const auto conv_out = download_bf16(c2, size_t(R * sh.C));
      bool finite = true;
      for (float v : conv_out) finite &= std::isfinite(v);
      EXPECT_TRUE(finite);
      EXPECT_TRUE(same_bits(download_bf16(y2, size_t(R * sh.N)), download_bf16(y1, size_t(R * sh.N)))) << "y";
      EXPECT_TRUE(same_bits(conv_out, download_bf16(c1, size_t(R * sh.C)))) << "conv outputs";
      EXPECT_TRUE(same_bits(download_f32(st2, state0.size()), download_f32(st1, state0.size()))) << "conv state";
    }
  }
}
