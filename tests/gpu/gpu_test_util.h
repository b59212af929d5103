// Helpers of the GPU tests: device buffers, bf16 round trips, NaN poisoning, seeded random data, comparisons.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/kernel_test_util.h"
#include "test_util.h"

namespace hyrax::gputest {

using test::fixture_dir;
using test::next_seed;
using test::Rng;
using test::source_dir;

/// Rounds every value to bf16 (what the GPU sees), in place; returns the vector for chaining.
inline std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

/// Device memory freed on destruction.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t bytes) : n_(bytes) { CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 16))); }
  ~DevBuf() {
    if (p_) cudaFree(p_);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  template <class T = void>
  T* get() const { return static_cast<T*>(p_); }
  size_t bytes() const { return n_; }
  /// Every byte 0xFF: NaN as float32 and as bf16, so unwritten outputs fail any comparison.
  void poison() { CUDA_CHECK(cudaMemset(p_, 0xFF, n_)); }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

inline DevBuf upload_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  DevBuf d(h.size() * 2);
  CUDA_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  return d;
}
inline DevBuf upload_f32(const std::vector<float>& v) {
  DevBuf d(v.size() * 4);
  CUDA_CHECK(cudaMemcpy(d.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return d;
}
inline DevBuf upload_i32(const std::vector<int32_t>& v) {
  DevBuf d(v.size() * 4);
  CUDA_CHECK(cudaMemcpy(d.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return d;
}
inline std::vector<float> download_bf16(const DevBuf& d, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint16_t> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d.get(), n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(h[i]);
  return v;
}
inline std::vector<float> download_f32(const DevBuf& d, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> v(n);
  CUDA_CHECK(cudaMemcpy(v.data(), d.get(), n * 4, cudaMemcpyDeviceToHost));
  return v;
}

/// |got − ref| ≤ atol + rtol·|ref| on rows × cols elements (row strides ldg, ldr); NaN fails. Reports the count of
/// failures, the worst element and the largest error.
inline ::testing::AssertionResult close_rows(const float* got, int64_t ldg, const float* ref, int64_t ldr,
                                             int64_t rows, int64_t cols, double atol, double rtol) {
  int64_t bad = 0, wr = -1, wc = -1;
  double worst = 0.0, max_err = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double g = got[r * ldg + c], e = ref[r * ldr + c];
      const double err = std::fabs(g - e), lim = atol + rtol * std::fabs(e);
      if (!(err <= lim)) {
        ++bad;
        const double ratio = std::isnan(err) ? INFINITY : err / lim;
        if (wr < 0 || ratio > worst) worst = ratio, wr = r, wc = c;
      }
      if (!std::isnan(err)) max_err = std::max(max_err, err);
    }
  if (bad == 0) return ::testing::AssertionSuccess() << "max abs error " << max_err;
  return ::testing::AssertionFailure() << bad << " of " << rows * cols << " elements off (atol " << atol << ", rtol "
                                       << rtol << ", max abs error " << max_err << "); worst at [" << wr << ", " << wc
                                       << "]: got " << got[wr * ldg + wc] << ", want " << ref[wr * ldr + wc];
}

inline ::testing::AssertionResult close(const std::vector<float>& got, const std::vector<float>& ref, double atol,
                                        double rtol) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "sizes differ";
  return close_rows(got.data(), 0, ref.data(), 0, 1, int64_t(got.size()), atol, rtol);
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

/// Largest |a − b| over all elements (NaN -> infinity).
inline double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  }
  return m;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// True when a CUDA device is present; tests skip (GTEST_SKIP) otherwise.
inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

}  // namespace hyrax::gputest

#define REQUIRE_GPU()                                          \
  do {                                                         \
    if (!::hyrax::gputest::have_gpu()) GTEST_SKIP() << "no GPU"; \
  } while (0)
