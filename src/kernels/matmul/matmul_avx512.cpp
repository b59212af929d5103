// AVX-512 build of the CPU matmul: 16 float lanes per accumulator (see matmul_cpu.h for the order of operations).
#include <immintrin.h>

// GCC 12 flags the deliberately undefined upper halves inside AVX-512 intrinsics (_mm512_undefined_*) as
// uninitialized (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/matmul/matmul_cpu.h"

namespace hyrax::kernels::matmul_detail {
namespace {

struct V512 {
  using R = __m512;
  static constexpr int L = 16;

  static R zero() { return _mm512_setzero_ps(); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T0); }
  static __mmask16 first_n(int n) { return __mmask16((1u << n) - 1); }

  static R loadw(const float* p) { return _mm512_loadu_ps(p); }
  // bf16 is the top half of a float32: widen to 32 bits and shift left by 16.
  static R widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static R loadw(const Bf16* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static R loadw(const F16* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

  // n in [1, L): lanes n.. are zero, and memory past them is not touched.
  static R load_part(const float* p, int n) { return _mm512_maskz_loadu_ps(first_n(n), p); }
  static R load_part(const Bf16* p, int n) { return widen_bf16(_mm256_maskz_loadu_epi16(first_n(n), p)); }
  static R load_part(const F16* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_n(n), p)); }

  // Fixed tree: lanes l and l+8, then l and l+4, then l and l+2, then 0 and 1.
  static float hsum(R v) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }

  // hsum of a[0..3] by the same tree, four at a time; y[j] = sum j (first) or y[j] + sum j, for j < n.
  static constexpr bool kHsum4 = true;
  static void add_hsum4(const R* a, float* y, int n, bool first) {
    // [a: l + (l+8) | b: same], [c | d]
    const R ab = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], 0x44), _mm512_shuffle_f32x4(a[0], a[1], 0xee));
    const R cd = _mm512_add_ps(_mm512_shuffle_f32x4(a[2], a[3], 0x44), _mm512_shuffle_f32x4(a[2], a[3], 0xee));
    // one 128-bit chunk per input: l + (l+4), then l + (l+2), then 0 + 1
    const R s4 = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    const R s2 = _mm512_add_ps(s4, _mm512_permute_ps(s4, 0x4e));
    const R s1 = _mm512_add_ps(s2, _mm512_permute_ps(s2, 0xb1));
    const __m128 h = _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0,
                                                                                     0, 0, 0, 0, 0), s1));
    const __mmask8 m = __mmask8((1u << n) - 1);
    _mm_mask_storeu_ps(y, m, first ? h : _mm_add_ps(_mm_maskz_loadu_ps(m, y), h));
  }
};

}  // namespace

void matmul_block_avx512(const Block& b) { run_block<V512, kAvx512>(b); }

}  // namespace hyrax::kernels::matmul_detail
