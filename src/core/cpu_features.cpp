#include "core/cpu_features.h"

namespace hyrax {

static SimdLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
    return SimdLevel::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return SimdLevel::Avx2;
#endif
  return SimdLevel::Scalar;
}

static SimdLevel g_cap = SimdLevel::Avx512;

SimdLevel simd_level_supported() {
  static const SimdLevel level = detect();
  return level;
}

SimdLevel simd_level() {
  const SimdLevel s = simd_level_supported();
  return int(s) < int(g_cap) ? s : g_cap;
}

void cap_simd_level(SimdLevel cap) { g_cap = cap; }

const char* simd_level_name(SimdLevel s) {
  switch (s) {
    case SimdLevel::Avx512: return "avx512";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Scalar: return "scalar";
  }
  return "?";
}

}  // namespace hyrax
