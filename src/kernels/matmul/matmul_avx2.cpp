// AVX2 + FMA + F16C build of the CPU matmul: 8 float lanes per accumulator (see matmul_cpu.h for the order of
// operations).
#include <immintrin.h>

#include "kernels/matmul/matmul_cpu.h"

namespace hyrax::kernels::matmul_detail {
namespace {

struct V256 {
  using R = __m256;
  static constexpr int L = 8;
  static constexpr bool kHsum4 = false;

  static R zero() { return _mm256_setzero_ps(); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T0); }

  static R loadw(const float* p) { return _mm256_loadu_ps(p); }
  // bf16 is the top half of a float32: widen to 32 bits and shift left by 16.
  static R widen_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
  static R loadw(const Bf16* p) { return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static R loadw(const F16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

  // n in [1, L): lanes n.. are zero, and memory past them is not touched.
  static R load_part(const float* p, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane));
  }
  template <class W>  // AVX2 has no masked 16-bit load: go through a zeroed buffer
  static __m128i load_part16(const W* p, int n) {
    alignas(16) uint16_t buf[8] = {};
    for (int i = 0; i < n; ++i) buf[i] = p[i].bits;
    return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
  }
  static R load_part(const Bf16* p, int n) { return widen_bf16(load_part16(p, n)); }
  static R load_part(const F16* p, int n) { return _mm256_cvtph_ps(load_part16(p, n)); }

  // Fixed tree: lanes l and l+4, then l and l+2, then 0 and 1.
  static float hsum(R v) {
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }
};

}  // namespace

void matmul_block_avx2(const Block& b) { run_block<V256, kAvx2>(b); }

}  // namespace hyrax::kernels::matmul_detail
