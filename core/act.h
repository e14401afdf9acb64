// Activations: one list, from which the enum, the names and the scalar f32 function that
// both backends compute come (the CPU's vector loops and the CUDA kernels evaluate exactly
// these formulas; engine/cpu_kernels.inc has the vector forms).
//
//   none        x
//   gelu        0.5 x (1 + erf(x / sqrt 2))        exact GELU (torch.nn.GELU())
//   quick_gelu  x / (1 + exp(-1.702 x))            OpenAI's QuickGELU
//   gelu_tanh   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//                                                  tanh GELU (gelu_pytorch_tanh: SigLIP)
//   relu        max(x, 0)                          the ResNet towers
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define CLIP_HOST_DEVICE __host__ __device__
#else
#define CLIP_HOST_DEVICE
#endif

#define CLIP_ACTIVATIONS(X)                                \
  X(none, x)                                               \
  X(gelu, 0.5f * x * (1.0f + erff(x * 0.70710678118654752f))) \
  X(quick_gelu, x / (1.0f + expf(-1.702f * x)))            \
  X(relu, x < 0.0f ? 0.0f : x)                             \
  X(gelu_tanh, 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x))))

namespace clip {

#define CLIP_ACT_ENUM(name, f) name,
enum class Act : uint8_t { CLIP_ACTIVATIONS(CLIP_ACT_ENUM) };
#undef CLIP_ACT_ENUM

const char* act_name(Act a);
Act act_from_name(const char* s);  // one of the names above; throws clip::Error otherwise

// act(x) in f32, the formula of the list.
CLIP_HOST_DEVICE inline float act_ref(float x, Act a) {
  switch (a) {
#define CLIP_ACT_CASE(name, f) \
  case Act::name: return f;
    CLIP_ACTIVATIONS(CLIP_ACT_CASE)
#undef CLIP_ACT_CASE
  }
  return x;
}

}  // namespace clip
