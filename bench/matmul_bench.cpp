// Throughput of the CPU matmul against this machine's limits: GEMV (decode) in GB/s of weights streamed next to
// the measured DRAM read bandwidth, GEMM (prefill) in GFLOP/s next to the measured FMA peak.
//
// Not part of the CMake build. After building hyrax_lib:
//   g++ -O3 -std=c++20 -Isrc bench/matmul_bench.cpp build/libhyrax_lib.a -lpthread -o build/matmul_bench
//   ./build/matmul_bench [threads] [scalar|avx2|avx512]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/matmul/matmul.h"

using namespace hyrax;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Best time of `reps` calls of fn after one warm-up call.
template <class F>
double best_seconds(int reps, F&& fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

void* alloc_bytes(size_t n) {
  void* p = std::aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) std::abort();
  return p;
}

/// Sums n floats (a multiple of 256) as four interleaved streams with software prefetch, the access pattern that
/// reads fastest here (tried: 1-8 streams, prefetch distance 0-2 KiB).
__attribute__((target("avx512f"))) float read_avx512(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const int64_t quarter = n / 4;
  for (int64_t i = 0; i < quarter; i += 64)
    for (int s = 0; s < 4; ++s) {
      const float* q = p + s * quarter + i;
      _mm_prefetch(reinterpret_cast<const char*>(q) + 1024, _MM_HINT_T0);
      a0 = _mm512_add_ps(a0, _mm512_load_ps(q));
      a1 = _mm512_add_ps(a1, _mm512_load_ps(q + 16));
      a2 = _mm512_add_ps(a2, _mm512_load_ps(q + 32));
      a3 = _mm512_add_ps(a3, _mm512_load_ps(q + 48));
    }
  float out[16];
  _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  return out[0];
}
float read_sse(const float* p, int64_t n) {
  __m128 a[8] = {};
  for (int64_t i = 0; i < n; i += 32)
    for (int j = 0; j < 8; ++j) a[j] = _mm_add_ps(a[j], _mm_load_ps(p + i + 4 * j));
  for (int j = 1; j < 8; ++j) a[0] = _mm_add_ps(a[0], a[j]);
  return _mm_cvtss_f32(a[0]);
}

/// DRAM read bandwidth: every thread sums its share of a 1 GiB buffer with wide loads.
double read_bandwidth_gbs() {
  const size_t bytes = size_t(1) << 30, floats = bytes / 4, blocks = floats / 4096;
  auto* buf = static_cast<float*>(alloc_bytes(bytes));
  parallel_for(int64_t(blocks), 1, [&](int64_t b, int64_t e) {
    std::memset(buf + b * 4096, 0, size_t(e - b) * 4096 * 4);
  });
  std::vector<float> sink(size_t(thread_pool().size()) + 1);
  const double s = best_seconds(5, [&] {
    parallel_for(int64_t(blocks), 1, [&](int64_t b, int64_t e) {
      const float* p = buf + b * 4096;
      const int64_t n = (e - b) * 4096;
      sink[size_t(b * thread_pool().size() / int64_t(blocks))] +=
          simd_level() == SimdLevel::Avx512 ? read_avx512(p, n) : read_sse(p, n);
    });
  });
  std::free(buf);
  return double(bytes) / s / 1e9;
}

/// memcpy of 512 MiB split over the threads, counting read + write bytes.
double copy_bandwidth_gbs() {
  const size_t bytes = size_t(1) << 29;
  auto* a = static_cast<char*>(alloc_bytes(bytes));
  auto* b = static_cast<char*>(alloc_bytes(bytes));
  std::memset(a, 1, bytes);
  std::memset(b, 2, bytes);
  const double s = best_seconds(5, [&] {
    parallel_for(int64_t(bytes >> 16), 1, [&](int64_t i0, int64_t i1) {
      std::memcpy(b + (i0 << 16), a + (i0 << 16), size_t(i1 - i0) << 16);
    });
  });
  std::free(a);
  std::free(b);
  return 2.0 * double(bytes) / s / 1e9;
}

/// Peak float32 FMA rate with 16-lane AVX-512 (or 8-lane AVX2) registers: independent chains, no memory.
__attribute__((target("avx512f"))) double fma_peak_one_thread_avx512(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  const auto t0 = Clock::now();
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  const double s = seconds_since(t0);
  for (int i = 1; i < 12; ++i) a[0] = _mm512_add_ps(a[0], a[i]);
  float out[16];
  _mm512_storeu_ps(out, a[0]);
  volatile float keep = out[0];
  (void)keep;
  return double(iters) * 12 * 16 * 2 / s / 1e9;
}
__attribute__((target("avx2,fma"))) double fma_peak_one_thread_avx2(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  const auto t0 = Clock::now();
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  const double s = seconds_since(t0);
  for (int i = 1; i < 12; ++i) a[0] = _mm256_add_ps(a[0], a[i]);
  float out[8];
  _mm256_storeu_ps(out, a[0]);
  volatile float keep = out[0];
  (void)keep;
  return double(iters) * 12 * 8 * 2 / s / 1e9;
}

double fma_peak_gflops() {
  if (simd_level() == SimdLevel::Scalar) return 0;
  std::vector<double> per(size_t(thread_pool().size()));
  parallel_for(int64_t(per.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      per[size_t(i)] = simd_level() == SimdLevel::Avx512 ? fma_peak_one_thread_avx512(20'000'000)
                                                         : fma_peak_one_thread_avx2(20'000'000);
  });
  double total = 0;
  for (double g : per) total += g;
  return total;
}

/// Weights [N, K] of the dtype, random in [-1, 1].
std::vector<uint8_t> random_weights(int64_t N, int64_t K, DType dt) {
  std::vector<uint8_t> w(size_t(N * K) * dtype_size(dt));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < N * K; ++i) {
    const float v = u(rng);
    if (dt == DType::F32) {
      std::memcpy(&w[size_t(i) * 4], &v, 4);
    } else {
      const uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
      std::memcpy(&w[size_t(i) * 2], &h, 2);
    }
  }
  return w;
}

struct Result {
  double seconds, gbs, gflops;
  double read_gbs;  // the same weight bytes read by the read loop, timed interleaved with the matmul calls
};

/// Reads `bytes` at p with every thread (the read loop of read_bandwidth_gbs); returns a value to keep.
float read_all(const void* p, size_t bytes) {
  const int64_t parts = thread_pool().size(), part = int64_t(bytes / 4) / parts / 256 * 256;
  std::vector<float> sink(static_cast<size_t>(parts));
  parallel_for(parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* q = static_cast<const float*>(p) + i * part;
      sink[size_t(i)] = simd_level() == SimdLevel::Avx512 ? read_avx512(q, part) : read_sse(q, part);
    }
  });
  return sink[0];
}

/// Times y = x·Wᵀ, best of `reps` calls. Weights are cycled through enough copies (≥ 512 MiB together) that every
/// call streams them from DRAM, never from the 32 MiB L3. With `vs_read`, each call alternates with a plain read of
/// another copy, so that the matmul and its bandwidth limit are measured under the same load.
Result time_matmul(int64_t T, int64_t N, int64_t K, DType dt, int reps, bool vs_read = false) {
  const auto w0 = random_weights(N, K, dt);
  const size_t copies = std::max<size_t>(2, (size_t(512) << 20) / w0.size());
  std::vector<std::vector<uint8_t>> w(copies, w0);
  std::vector<float> x(size_t(T * K)), y(size_t(T * N));
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : x) v = u(rng);
  kernels::MatmulParams p;
  p.x = x.data(), p.ldx = K, p.w_dtype = dt, p.y = y.data(), p.ldy = N, p.T = T, p.N = N, p.K = K;
  p.w = w[0].data();
  kernels::matmul(p);  // warm-up: threads, scratch
  double best = 1e30, best_read = 1e30;
  float keep = 0;
  for (int r = 0; r < reps; ++r) {
    p.w = w[size_t(2 * r) % copies].data();
    auto t0 = Clock::now();
    kernels::matmul(p);
    best = std::min(best, seconds_since(t0));
    if (vs_read) {
      t0 = Clock::now();
      keep += read_all(w[size_t(2 * r + 1) % copies].data(), w0.size());
      best_read = std::min(best_read, seconds_since(t0));
    }
  }
  volatile float sink = keep;
  (void)sink;
  const double bytes = double(w0.size()) + 4.0 * double(T * K + T * N);
  return {best, bytes / best / 1e9, 2.0 * double(T) * double(N) * double(K) / best / 1e9,
          vs_read ? double(w0.size()) / best_read / 1e9 : 0};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) set_num_threads(std::atoi(argv[1]));
  if (argc > 2) {
    const std::string lv = argv[2];
    cap_simd_level(lv == "scalar" ? SimdLevel::Scalar : lv == "avx2" ? SimdLevel::Avx2 : SimdLevel::Avx512);
  }
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::localtime(&now));
  std::printf("hyrax matmul bench, %s, %d threads, simd %s\n", date, thread_pool().size(),
              simd_level_name(simd_level()));
  // Other processes on the machine skew every figure below; say how busy it was.
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    double load = 0;
    if (std::fscanf(f, "%lf", &load) == 1)
      std::printf("load average (1 min) %.2f on %u hardware threads%s\n", load, std::thread::hardware_concurrency(),
                  load > 0.5 ? ": busy machine, figures are skewed" : "");
    std::fclose(f);
  }

  const double read_bw = read_bandwidth_gbs();
  const double copy_bw = copy_bandwidth_gbs();
  const double peak = fma_peak_gflops();
  std::printf("memory: read %.1f GB/s (1 GiB, all threads), memcpy %.1f GB/s (read + write)\n", read_bw, copy_bw);
  std::printf("compute: FMA peak %.0f GFLOP/s (all threads, registers only)\n\n", peak);

  std::printf("GEMV (T=1), weights streamed from DRAM; limit = the read loop over the same bytes, interleaved:\n");
  struct Gemv {
    int64_t N, K;
    DType dt;
  };
  for (const Gemv g : {Gemv{11008, 4096, DType::BF16}, Gemv{4096, 11008, DType::BF16}, Gemv{11008, 4096, DType::F32},
                       Gemv{11008, 4096, DType::F16}}) {
    const Result r = time_matmul(1, g.N, g.K, g.dt, 30, true);
    std::printf("  N=%-6lld K=%-6lld %-4s  %7.3f ms  %6.1f GB/s  limit %6.1f GB/s  = %3.0f%%\n", (long long)g.N,
                (long long)g.K, std::string(dtype_name(g.dt)).c_str(), r.seconds * 1e3, r.gbs, r.read_gbs,
                100 * r.gbs / r.read_gbs);
  }

  std::printf("\nGEMM (prefill), N=11008 K=3840:\n");
  for (DType dt : {DType::BF16, DType::F32})
    for (int64_t T : {16, 128, 512}) {
      const Result r = time_matmul(T, 11008, 3840, dt, T >= 512 ? 3 : 5);
      std::printf("  T=%-4lld %-4s  %8.2f ms  %6.1f GFLOP/s", (long long)T, std::string(dtype_name(dt)).c_str(),
                  r.seconds * 1e3, r.gflops);
      if (peak > 0) std::printf("  = %3.0f%% of FMA peak", 100 * r.gflops / peak);
      std::printf("\n");
    }
  return 0;
}
