// engine/cpu_kernels.inc for avx2 (compiled with its -march, CMakeLists.txt).
#if defined(__x86_64__)
#define CLIP_ISA_NAME cpu_kernels_avx2
#define CLIP_ISA CpuIsa::avx2
#define CLIP_VW 8
#include "engine/cpu_kernels.inc"
#endif
