// cuda_fp16.h of the CUDA emulator: __half as its 16 bits, converted (round to nearest even,
// subnormals, infinities and NaN included) by the engine's own f16 conversion. Only what the
// project uses.
#pragma once
#include <cstdint>

#include "core/base.h"

struct __half {
  uint16_t __x;
};
struct alignas(4) __half2 {
  __half x, y;
};

inline float __half2float(__half h) { return clip::f16_to_f32(h.__x); }
inline __half __float2half_rn(float f) { return {clip::f32_to_f16(f)}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }
