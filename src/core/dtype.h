// Element types of stored tensors and their conversions to float32.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace hyrax {

enum class DType : uint8_t { F32, BF16, F16 };

/// Bytes per element.
inline constexpr size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

/// "F32" / "BF16" / "F16", the safetensors spelling.
std::string_view dtype_name(DType t);

/// Parses a safetensors dtype string; returns false for any other (e.g. "I64", "F8_E4M3").
bool parse_dtype(std::string_view s, DType* out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

/// Converts n elements of type t at src to float32.
void to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace hyrax
