// Basic vocabulary shared by every part of the project: errors, dtypes, devices,
// and the f16/bf16 <-> f32 conversions used on the CPU.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace clip {

// Every error a user can cause (bad file, bad shape, bad input) is thrown as clip::Error
// with a message that names the file or op and says what is wrong. Library code never exits.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An allocation failed (GPU memory, or a configured memory limit). Callers may retry with
// less work, e.g. a smaller batch.
struct OutOfMemory : Error {
  using Error::Error;
};

// A model that is not where it was looked for (not in the local Hugging Face cache).
struct NotFound : Error {
  using Error::Error;
};

std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

#define CLIP_CHECK(cond, ...) \
  do {                        \
    if (!(cond)) ::clip::fail(__VA_ARGS__); \
  } while (0)

// A loop compiled three times (AVX-512, AVX2+FMA, baseline x86-64), the best one for the
// running CPU picked at load time by GCC (CLIP_CPU_ISA does not cap it): for exact integer
// loops only (image resize). The engine's float loops are dispatched by engine/cpu_isa.h.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CLIP_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLIP_SIMD_CLONES
#endif

// u8: image bytes (RGB pixels before normalization), a graph input only.
enum class DType : uint8_t { f32, f16, bf16, i32, u8 };
enum class Device : uint8_t { cpu, cuda };

inline size_t dtype_size(DType t) {
  return t == DType::u8 ? 1 : t == DType::f16 || t == DType::bf16 ? 2 : 4;
}
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& s);  // "f32", "f16", "bf16", "i32", "u8"; throws otherwise
inline const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

// IEEE half <-> float, round to nearest even; NaN/Inf preserved.
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do { man <<= 1; e++; } while (!(man & 0x400));
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  // rounds to inf
  if (ax < 0x38800000u) {                                      // subnormal or zero in half
    if (ax < 0x33000000u) return (uint16_t)sign;
    uint32_t e = ax >> 23, man = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // 14 + (113 - e)
    uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((ax >> 13) - (112u << 10)), rem = ax & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)(sign | h);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

// Erases the entry of a map whose value has the smallest .last_use (a small LRU cache).
template <typename Map>
void erase_least_recent(Map& m) {
  auto lru = m.begin();
  for (auto e = m.begin(); e != m.end(); ++e)
    if (e->second.last_use < lru->second.last_use) lru = e;
  if (lru != m.end()) m.erase(lru);
}

// Converts n elements between dtypes on the CPU (f32/f16/bf16; i32 only to i32).
void convert_cpu(void* dst, DType dst_t, const void* src, DType src_t, int64_t n);

// The header of a little-endian float32 or float16 [rows, cols] .npy (version 1.0), always
// 128 bytes, so a file can be streamed and its header rewritten once the row count is known.
std::string npy_header(DType t, int64_t rows, int64_t cols);

}  // namespace clip
