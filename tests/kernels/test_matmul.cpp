// The CPU matmul against its float64 reference on random inputs (every shape class, weight dtype and SIMD level this
// CPU has), and its batch invariance: bitwise the same row alone, inside any batch, at any tile position, on any
// number of threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/matmul/matmul.h"

using namespace hyrax;
using hyrax::kernels::MatmulParams;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

/// Random problem: x [T, ldx] with NaN in the row padding (a kernel that reads past K poisons its output),
/// W [N, K] in the given dtype, values uniform in [-1, 1].
struct Problem {
  int64_t T, N, K, ldx, ldy;
  DType dtype;
  std::vector<float> x;
  std::vector<uint8_t> w;

  Problem(int64_t T_, int64_t N_, int64_t K_, DType dt, uint32_t seed, int64_t x_pad = 0, int64_t y_pad = 0)
      : T(T_), N(N_), K(K_), ldx(K_ + x_pad), ldy(N_ + y_pad), dtype(dt) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    x.assign(size_t(T * ldx), kNaN);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k) x[size_t(t * ldx + k)] = u(rng);
    w.resize(size_t(N * K) * dtype_size(dt));
    for (int64_t i = 0; i < N * K; ++i) {
      const float v = u(rng);
      if (dt == DType::F32) {
        std::memcpy(&w[size_t(i) * 4], &v, 4);
      } else {
        const uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(&w[size_t(i) * 2], &h, 2);
      }
    }
  }

  /// Params for rows [t0, t0 + rows) and W rows [n0, n0 + cols), writing into y (row stride ldy).
  MatmulParams params(float* y, int64_t t0, int64_t rows, int64_t n0, int64_t cols) const {
    MatmulParams p;
    p.x = x.data() + t0 * ldx;
    p.ldx = ldx;
    p.w = w.data() + size_t(n0 * K) * dtype_size(dtype);
    p.w_dtype = dtype;
    p.y = y;
    p.ldy = ldy;
    p.T = rows, p.N = cols, p.K = K;
    return p;
  }
  MatmulParams params(float* y) const { return params(y, 0, T, 0, N); }

  /// Σ_k |x[t, k]·w[n, k]|, in float64.
  double abs_dot(int64_t t, int64_t n) const {
    std::vector<float> row(static_cast<size_t>(K));
    to_f32(dtype, w.data() + size_t(n * K) * dtype_size(dtype), row.data(), size_t(K));
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::fabs(double(x[size_t(t * ldx + k)]) * row[size_t(k)]);
    return s;
  }
};

/// Runs the fast kernel into a NaN-poisoned y of T rows × ldy.
std::vector<float> run_fast(const MatmulParams& p) {
  std::vector<float> y(size_t(p.T * p.ldy), kNaN);
  MatmulParams q = p;
  q.y = y.data();
  kernels::matmul(q);
  return y;
}

/// Restores the SIMD cap (the default: no cap) when a test ends, even on failure.
struct SimdCapGuard {
  ~SimdCapGuard() { cap_simd_level(SimdLevel::Avx512); }
};

std::vector<SimdLevel> supported_levels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel s : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512})
    if (int(s) <= int(simd_level_supported())) levels.push_back(s);
  return levels;
}

constexpr DType kDtypes[] = {DType::F32, DType::BF16, DType::F16};

}  // namespace

TEST(Matmul, MatchesReferenceAcrossShapesDtypesAndSimdLevels) {
  SimdCapGuard guard;
  const auto levels = supported_levels();
  uint32_t seed = 1;
  int64_t cases = 0;
  for (int64_t T : {1, 2, 3, 5, 17, 64, 129})
    for (int64_t N : {1, 3, 16, 17, 100})
      for (int64_t K : {1, 7, 16, 33, 96, 257, 1000})
        for (DType dt : kDtypes) {
          // Every other case with row strides past the row length (x padding holds NaN, y padding must stay NaN).
          const bool padded = seed % 2 == 0;
          const Problem pr(T, N, K, dt, seed++, padded ? 5 : 0, padded ? 3 : 0);
          std::vector<float> ref(size_t(T * pr.ldy), kNaN);
          kernels::matmul_ref(pr.params(ref.data()));
          // Tolerance: every kernel sums the K products in a fixed tree of depth at most K/8 + 4 (per K block of
          // ≥ 512: lanes of ≥ 8 with a serial chain each and a log2(lanes) reduction; then a serial sum over at most
          // K/512 + 1 blocks), plus one rounding per product in the scalar build. Each level rounds by at most
          // u = 2^-24 relative to the partial sum, so |y - exact| ≤ (K/8 + 5)·u·Σ|x·w|: that is atol, per output.
          // rtol = 2u covers the reference's own rounding of its float64 sum to float32.
          std::vector<double> atol(size_t(T * N));
          for (int64_t t = 0; t < T; ++t)
            for (int64_t n = 0; n < N; ++n)
              atol[size_t(t * N + n)] = (double(K) / 8 + 5) * 0x1p-24 * pr.abs_dot(t, n);
          const double rtol = 2 * 0x1p-24;
          for (SimdLevel level : levels) {
            cap_simd_level(level);
            const auto y = run_fast(pr.params(nullptr));
            const std::string where = std::string("T=") + std::to_string(T) + " N=" + std::to_string(N) +
                                      " K=" + std::to_string(K) + " " + std::string(dtype_name(dt)) + " " +
                                      simd_level_name(level) + (padded ? " padded" : "");
            int bad = 0;
            for (int64_t t = 0; t < T && bad < 5; ++t) {
              for (int64_t n = 0; n < pr.ldy && bad < 5; ++n) {
                const float got = y[size_t(t * pr.ldy + n)];
                if (n >= N) {  // padding untouched
                  if (!std::isnan(got)) ++bad, ADD_FAILURE() << where << ": wrote y padding at t=" << t << " n=" << n;
                  continue;
                }
                const double want = ref[size_t(t * pr.ldy + n)];
                const double tol = atol[size_t(t * N + n)] + rtol * std::fabs(want);
                if (!(std::fabs(got - want) <= tol))  // NaN fails too
                  ++bad, ADD_FAILURE() << where << ": y[" << t << "," << n << "] = " << got << ", reference " << want
                                       << ", tolerance " << tol;
              }
            }
            ++cases;
          }
        }
  EXPECT_EQ(cases, int64_t(7 * 5 * 7 * 3) * int64_t(levels.size()));
}

TEST(Matmul, BatchInvariantAcrossRowsTilePositionsAndThreads) {
  SimdCapGuard guard;
  uint32_t seed = 1000;
  for (SimdLevel level : supported_levels()) {
    cap_simd_level(level);
    for (DType dt : kDtypes)
      for (int64_t K : {7, 257, 1100}) {
        const int64_t T = 129, N = 37;
        const Problem pr(T, N, K, dt, seed++, 3, 2);
        const size_t row_bytes = size_t(N) * 4;
        const std::string where = std::string(dtype_name(dt)) + " K=" + std::to_string(K) + " " +
                                  simd_level_name(level);
        set_num_threads(2);
        const auto full = run_fast(pr.params(nullptr));

        // Every row alone (decode path) is bitwise the row inside the batch (prefill path).
        for (int64_t t = 0; t < T; ++t) {
          const auto one = run_fast(pr.params(nullptr, t, 1, 0, N));
          ASSERT_EQ(std::memcmp(one.data(), &full[size_t(t * pr.ldy)], row_bytes), 0) << where << " row " << t;
        }
        // Sub-batches of every size class, starting anywhere: rows land at other positions within tiles and blocks.
        for (auto [t0, rows] : {std::pair<int64_t, int64_t>{1, 2}, {4, 3}, {7, 4}, {2, 5}, {11, 17}, {3, 100}}) {
          const auto part = run_fast(pr.params(nullptr, t0, rows, 0, N));
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(std::memcmp(&part[size_t(r * pr.ldy)], &full[size_t((t0 + r) * pr.ldy)], row_bytes), 0)
                << where << " rows [" << t0 << ", " << t0 + rows << ") row " << r;
        }
        // W rows shifted by j: each W row lands at another position within the register tile and the panel.
        for (int64_t j : {1, 2, 3, 5}) {
          for (int64_t rows : {int64_t(1), T}) {
            const auto shifted = run_fast(pr.params(nullptr, 0, rows, j, N - j));
            for (int64_t t = 0; t < rows; ++t)
              ASSERT_EQ(std::memcmp(&shifted[size_t(t * pr.ldy)], &full[size_t(t * pr.ldy + j)], size_t(N - j) * 4),
                        0)
                  << where << " W shifted by " << j << ", T=" << rows << ", row " << t;
          }
        }
        // Any thread count.
        for (int threads : {1, 3}) {
          set_num_threads(threads);
          const auto again = run_fast(pr.params(nullptr));
          for (int64_t t = 0; t < T; ++t)
            ASSERT_EQ(std::memcmp(&again[size_t(t * pr.ldy)], &full[size_t(t * pr.ldy)], row_bytes), 0)
                << where << " threads=" << threads << " row " << t;
        }
      }
  }
  set_num_threads(0);
}

TEST(Matmul, WideAndNarrowShapesStayInvariantAcrossThreads) {
  // Few columns and many rows: the work is split over T as well; many columns: over N only.
  for (auto [T, N, K] : {std::tuple<int64_t, int64_t, int64_t>{300, 5, 600}, {2, 3000, 64}, {1, 4099, 130}}) {
    const Problem pr(T, N, K, DType::BF16, uint32_t(T * 7 + N));
    set_num_threads(1);
    const auto one = run_fast(pr.params(nullptr));
    for (int threads : {2, 3}) {
      set_num_threads(threads);
      const auto many = run_fast(pr.params(nullptr));
      EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * 4), 0) << "T=" << T << " N=" << N
                                                                         << " threads=" << threads;
    }
  }
  set_num_threads(0);
}

TEST(Matmul, EmptyShapesAndBadParameters) {
  const Problem pr(3, 4, 5, DType::F32, 7);
  // K = 0: every output is an empty sum.
  std::vector<float> y(12, kNaN);
  MatmulParams p = pr.params(y.data());
  p.K = 0;
  kernels::matmul(p);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  // T = 0 or N = 0: nothing is written.
  std::fill(y.begin(), y.end(), kNaN);
  p = pr.params(y.data());
  p.T = 0;
  kernels::matmul(p);
  p = pr.params(y.data());
  p.N = 0;
  kernels::matmul(p);
  for (float v : y) EXPECT_TRUE(std::isnan(v));
  // Row strides shorter than the rows are rejected.
  p = pr.params(y.data());
  p.ldx = 4;
  EXPECT_THROW(kernels::matmul(p), Error);
  p = pr.params(y.data());
  p.ldy = 3;
  EXPECT_THROW(kernels::matmul(p), Error);
}
