// Which SIMD instruction sets this CPU offers, read once at run time (the build itself targets baseline x86-64).
#pragma once

namespace hyrax {

enum class SimdLevel { Scalar, Avx2, Avx512 };

/// The widest level usable here: AVX-512 needs F+BW+VL+DQ, AVX2 needs AVX2+FMA+F16C.
SimdLevel simd_level();
/// The widest level this CPU supports, whatever the cap.
SimdLevel simd_level_supported();
/// Caps simd_level() (tests use it to run every code path this CPU has); a level above the supported one is clamped.
void cap_simd_level(SimdLevel cap);
const char* simd_level_name(SimdLevel s);

}  // namespace hyrax
