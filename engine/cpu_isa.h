// Which instruction set the CPU backend's own loops run with, and those loops.
//
// The hot loops (engine/cpu_kernels.inc: the GEMM, LayerNorm, softmax, attention) are
// compiled three times on x86-64, for AVX-512 (x86-64-v4), AVX2 + FMA (x86-64-v3) and the
// x86-64 baseline (SSE2), and once, as the baseline, elsewhere (aarch64). cpu_isa() is the
// best one the CPU runs, capped by the environment variable CLIP_CPU_ISA
// (avx512 | avx2 | baseline), so one machine can test what another would run.
#pragma once
#include <cstdint>
#include <string>

#include "engine/cpu_ops.h"

namespace clip {

enum class CpuIsa : uint8_t { baseline, avx2, avx512 };
const char* cpu_isa_name(CpuIsa isa);

// The detected instruction set capped by CLIP_CPU_ISA (read once; a value that is not one of
// the three names is an Error naming it; a cap above what the CPU has is printed once and
// ignored).
CpuIsa cpu_isa();
CpuIsa cpu_isa_detected();  // what the CPU runs, without the cap
// What the CPU has, as the names Linux's /proc/cpuinfo uses: "avx2 fma avx512f ... amx_bf16".
std::string cpu_features();
// Whether the CPU has bf16 dot products (AVX512-BF16 or AMX-BF16).
bool cpu_has_bf16();

// One instruction set's loops. The GEMM works on weights packed once (pack_weights) and an
// input packed per call into xp (input_floats(M, K) floats, 64-byte aligned).
struct CpuKernels {
  CpuIsa isa;
  int mr, nr;  // the GEMM's tile: rows x columns of accumulators
  int64_t (*packed_floats)(int64_t N, int64_t K);
  int64_t (*input_floats)(int64_t M, int64_t K);
  // wp = w [N, K] in panels; bf16: every weight rounded to bf16.
  void (*pack_weights)(float* wp, const float* w, int64_t N, int64_t K, bool bf16);
  // y [M, N] = act(x [M, K] · wᵀ + b [N]); b may be null; bf16: each input rounded to bf16.
  void (*gemm)(float* y, const float* x, const float* wp, const float* b, int64_t M, int64_t N, int64_t K, Act act,
               bool bf16, float* xp);
  void (*layernorm)(float* y, const float* x, const float* g, const float* b, int64_t M, int64_t C, float eps);
  void (*add_layernorm)(float* sum, float* y, const float* x, const float* r, const float* g, const float* b,
                        int64_t M, int64_t C, float eps);
  void (*softmax)(float* y, const float* x, int64_t M, int64_t N);
  void (*attention)(float* out, const float* qkv, int64_t B, int64_t T, int64_t NH, int64_t HS, bool causal);
  // engine/cpu_ops.h: attention_pool_cpu; scratch holds per floats for each OpenMP thread.
  void (*attention_pool)(float* y, const float* x, const float* q, const float* wk, const float* wv,
                         const float* bv, int64_t B, int64_t T, int64_t C, int64_t D, int64_t NH, int64_t q_stride,
                         float* scratch, int64_t per);
  float (*act)(float v, Act act);  // the GEMM's activation on one value (QuickGELU, GELU)
};

// The loops for cpu_isa().
const CpuKernels& cpu_kernels();

// Each compiled instruction set's table (the x86 ones exist on x86-64 only).
const CpuKernels* cpu_kernels_baseline();
const CpuKernels* cpu_kernels_avx2();
const CpuKernels* cpu_kernels_avx512();

}  // namespace clip
