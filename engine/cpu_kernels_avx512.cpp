// engine/cpu_kernels.inc for avx512 (compiled with its -march, CMakeLists.txt).
#if defined(__x86_64__)
#define CLIP_ISA_NAME cpu_kernels_avx512
#define CLIP_ISA CpuIsa::avx512
#define CLIP_VW 16
#include "engine/cpu_kernels.inc"
#endif
