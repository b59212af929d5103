// A float vector of the widest width the including file is compiled for (16 lanes in *_avx512.cpp, 8 in *_avx2.cpp,
// 4 at the x86-64 baseline), on GCC vector extensions, with the few operations the CPU kernels need (exp among them).
// One source thus serves every ISA: a kernel body written over `vf` is compiled once per ISA file.
//
// Everything here has internal linkage (anonymous namespace), so files compiled for different ISAs never share a
// definition: the linker can never hand an AVX-512 copy of a helper to a baseline caller.
#pragma once

#include <cstdint>

namespace hyrax::kernels::simd {
namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vf load(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return vf{} + x; }
/// {0, 1, 2, ...}: lane indices, for masks.
inline vi iota() {
  vi v{};
  for (int i = 0; i < kLanes; ++i) v[i] = i;
  return v;
}
/// Lane-wise max; NaN in a propagates.
inline vf max(vf a, vf b) { return a < b ? b : a; }
/// Sum of the lanes in a fixed pairwise order: lane i += lane i + w for w = kLanes/2, ..., 1.
inline float hsum(vf v) {
#pragma GCC unroll 8
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    vi rotate;
    for (int i = 0; i < kLanes; ++i) rotate[i] = (i + w) % kLanes;
    v += __builtin_shuffle(v, rotate);
  }
  return v[0];
}

/// e^x lane-wise (Cephes expf: range reduction by ln 2 and a degree-5 polynomial, ≈1 ulp). Returns 0 below
/// -87.33 (where e^x leaves the normal range), saturates at e^88 above 88, keeps NaN.
inline vf exp(vf x) {
  const vf lo = splat(-87.33654475f), hi = splat(88.0f);
  const auto underflow = x < lo;
  x = x < lo ? lo : x;  // written so that a NaN x stays NaN
  x = x > hi ? hi : x;
  // n = round(x / ln 2) by the 1.5·2^23 trick (round to nearest even, exact for |n| < 2^22).
  const vf magic = splat(12582912.0f);
  const vf n = (x * 1.44269504088896341f + magic) - magic;
  const vf r = x - n * 0.693359375f - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = p * r * r + r + 1.0f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return underflow ? vf{} : y * scale;
}

/// silu(x) = x / (1 + e^-x), as torch computes it.
inline vf silu(vf x) { return x / (1.0f + exp(-x)); }

}  // namespace
}  // namespace hyrax::kernels::simd
