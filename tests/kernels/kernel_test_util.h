// Shared helpers of the kernel tests: seeded random inputs, NaN poisoning, comparison with atol + rtol·|ref| over
// strided rows, and running a check under every SIMD level this CPU has.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/cpu_features.h"

namespace hyrax::test {

/// A fresh seed for every case (deterministic across runs, so a failure can be replayed; tests print it).
inline uint64_t next_seed() {
  static uint64_t s = 0x5eedULL;
  s = s * 6364136223846793005ULL + 1442695040888963407ULL;
  return s >> 17;
}

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  float normal(float sd = 1.0f) { return std::normal_distribution<float>(0.0f, sd)(gen); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  std::vector<float> normal_vec(size_t n, float sd = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = normal(sd);
    return v;
  }
};

inline std::vector<float> nan_vec(size_t n) { return std::vector<float>(n, std::nanf("")); }

/// |got − ref| ≤ atol + rtol·|ref| (got not NaN) on rows × cols elements at row strides ldg / ldr. Reports how many
/// fail and the worst one.
inline ::testing::AssertionResult close_rows(const float* got, int64_t ldg, const float* ref, int64_t ldr,
                                             int64_t rows, int64_t cols, double atol, double rtol) {
  int64_t bad = 0, worst_r = -1, worst_c = -1;
  double worst = 0.0, max_err = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double g = got[r * ldg + c], e = ref[r * ldr + c];
      const double err = std::fabs(g - e), lim = atol + rtol * std::fabs(e);
      if (!(err <= lim)) {  // NaN fails here
        ++bad;
        const double ratio = std::isnan(err) ? INFINITY : err / lim;
        if (worst_r < 0 || ratio > worst) worst = ratio, worst_r = r, worst_c = c;
      }
      if (!std::isnan(err)) max_err = std::max(max_err, err);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "max abs error " << max_err;
  return ::testing::AssertionFailure() << bad << " of " << rows * cols << " elements off (atol " << atol << ", rtol "
                                       << rtol << "); worst at [" << worst_r << ", " << worst_c << "]: got "
                                       << got[worst_r * ldg + worst_c] << ", want " << ref[worst_r * ldr + worst_c];
}

inline ::testing::AssertionResult close(const std::vector<float>& got, const std::vector<float>& ref, double atol,
                                        double rtol) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "sizes differ";
  return close_rows(got.data(), 0, ref.data(), 0, 1, int64_t(got.size()), atol, rtol);
}

/// The floats of buf outside columns [0, cols) of its rows (row stride ld) still hold NaN: nothing was written there.
inline ::testing::AssertionResult padding_untouched(const std::vector<float>& buf, int64_t ld, int64_t cols) {
  for (size_t i = 0; i < buf.size(); ++i) {
    if (int64_t(i) % ld >= cols && !std::isnan(buf[i]))
      return ::testing::AssertionFailure() << "padding element " << i << " was written";
  }
  return ::testing::AssertionSuccess();
}

inline bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

/// Runs fn once per SIMD level this CPU supports (scalar, AVX2, AVX-512), with simd_level() capped to it.
inline void for_each_simd_level(const std::function<void()>& fn) {
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    if (int(level) > int(simd_level_supported())) break;
    cap_simd_level(level);
    SCOPED_TRACE(std::string("simd level ") + simd_level_name(level));
    fn();
  }
  cap_simd_level(SimdLevel::Avx512);
}

}  // namespace hyrax::test
