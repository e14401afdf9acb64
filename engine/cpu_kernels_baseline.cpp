// engine/cpu_kernels.inc for the baseline instruction set (x86-64: SSE2; aarch64: NEON).
#define CLIP_ISA_NAME cpu_kernels_baseline
#define CLIP_ISA CpuIsa::baseline
#define CLIP_VW 4
#include "engine/cpu_kernels.inc"
