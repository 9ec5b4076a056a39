// Element types and host-side bf16/fp16 conversions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace tl {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, U16, I64, U8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Parses "f32", "bf16", ...; throws on an unknown name.
DType dtype_from_name(const std::string& name);

// bf16 is the top half of an fp32; round to nearest even, NaN kept quiet.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

// n little-endian f16 / bf16 values at src (any byte alignment: files map them unaligned)
// -> f32; large runs are converted on all cores.
void f16_bytes_to_f32(const uint8_t* src, int64_t n, float* dst);
void bf16_bytes_to_f32(const uint8_t* src, int64_t n, float* dst);

}  // namespace tl
