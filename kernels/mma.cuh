// The tensor-core MMA both mma.sync kernels use (kernels/attention.cu, kernels/gemm_bias_act.cu):
// c [16x8, f32] += a [16x16, f16/bf16, row-major] · b [16x8, "col"], per warp, in the fragment
// layouts of mma.sync.aligned.m16n8k16 (kernels/attention.cu's header lists them). On the CPU
// emulator (tests/emu) the same fragments go through emu::mma_m16n8k16.
#pragma once
#include "kernels/cuda_common.cuh"

namespace clip::cuda {

template <typename T>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__half>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#ifdef CLIP_CUDA_EMU  // the CPU emulator (tests/emu) runs the same fragments
  emu::mma_m16n8k16<__half>(c, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float c[4], const uint32_t a[4], uint32_t b0,
                                                        uint32_t b1) {
#ifdef CLIP_CUDA_EMU
  emu::mma_m16n8k16<__nv_bfloat16>(c, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

}  // namespace clip::cuda
