// cuda_bf16.h of the CUDA emulator: __nv_bfloat16 as the top 16 bits of an f32, rounded to
// nearest even by the engine's own bf16 conversion. Only what the project uses.
#pragma once
#include <cstdint>

#include "core/base.h"

struct __nv_bfloat16 {
  uint16_t __x;
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 h) { return clip::bf16_to_f32(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {clip::f32_to_bf16(f)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
