// cuda_runtime.h of the CUDA emulator (tests/emu/simt.h): the qualifiers, vector types, device
// functions and runtime calls the project uses, and nothing else. Device code is ordinary C++
// here; the runtime is in tests/emu/emu.cpp.
#pragma once
#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "../simt.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One instance, shared by the threads of the running block. (It keeps what the last block left
// in it: a kernel that reads shared memory it did not write is not caught.)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};

// ---- device functions --------------------------------------------------------------------

inline void __syncthreads() { emu::sync_block(); }

namespace emu {
template <typename T> struct ShflIn {
  T v;
  int src;
};
template <typename T> void shfl_combine(const ShflIn<T>* in, T* out, unsigned mask) {
  for (int l = 0; l < 32; l++) {
    if (!(mask >> l & 1)) continue;
    const int s = in[l].src;
    if (!(mask >> s & 1)) kernel_error("shuffle: lane %d reads lane %d, which is not in the mask %08x", l, s, mask);
    out[l] = in[s].v;
  }
}
template <typename T> T shfl(const char* what, unsigned mask, T v, int src) {
  return collective<ShflIn<T>, T, shfl_combine<T>>(what, mask, ShflIn<T>{v, src});
}
inline void ballot_combine(const int* in, unsigned* out, unsigned mask) {
  unsigned bits = 0;
  for (int l = 0; l < 32; l++)
    if ((mask >> l & 1) && in[l]) bits |= 1u << l;
  for (int l = 0; l < 32; l++) out[l] = bits;
}
inline void no_combine(const char*, char*, unsigned) {}
}  // namespace emu

// A lane whose source is outside its segment of `width` lanes keeps its own value.
template <typename T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = emu::lane_id(), base = lane & ~(width - 1);
  return emu::shfl("__shfl_sync", mask, v, base + (src & (width - 1)));
}
// (A source in a later segment gives the lane its own value; an earlier one may be read.)
template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = emu::lane_id(), s = lane ^ lane_mask;
  return emu::shfl("__shfl_xor_sync", mask, v, s <= (lane | (width - 1)) ? s : lane);
}
template <typename T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = emu::lane_id(), s = lane - (int)delta;
  return emu::shfl("__shfl_up_sync", mask, v, s >= (lane & ~(width - 1)) ? s : lane);
}
template <typename T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = emu::lane_id(), s = lane + (int)delta;
  return emu::shfl("__shfl_down_sync", mask, v, s < (lane & ~(width - 1)) + width ? s : lane);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return emu::collective<int, unsigned, emu::ballot_combine>("__ballot_sync", mask, pred != 0);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  emu::collective<char, char, emu::no_combine>("__syncwarp", mask, 0);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }

// Integer and float min/max of CUDA's math library, for mixed argument types too.
template <typename A, typename B> inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B> inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
// expf, exp2f, erff, fmaf, fmaxf, sqrtf ...: the C library's, from <cmath>.

// ---- inline PTX the kernels use, as functions (CLIP_CUDA_EMU branches in the kernels) -------

namespace emu {
inline float to_f32(__half h) { return __half2float(h); }
inline float to_f32(__nv_bfloat16 h) { return __bfloat162float(h); }

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32, fragments as the PTX ISA
// lays them out (g = lane / 4, t = lane % 4; two 16-bit values per register, low half first):
//   A 16x16: reg i holds row g + 8 (i & 1), columns 2t + 8 (i >> 1) and the next one;
//   B 16x8: reg i holds rows (k) 2t + 8 i and the next one, column (n) g;
//   C, D 16x8 f32: c[i] is row g + 8 (i >> 1), column 2t + (i & 1).
// D = A B + C, each dot product summed in f32 in k order (the hardware's internal rounding
// differs slightly).
struct MmaIn {
  uint32_t a[4], b[2];
  float c[4];
};
struct MmaOut {
  float d[4];
};
template <typename T> void mma_m16n8k16_combine(const MmaIn* in, MmaOut* out, unsigned) {
  float A[16][16], B[16][8], C[16][8];
  auto half = [](uint32_t r, int hi) {
    T h;
    const uint16_t bits = (uint16_t)(hi ? r >> 16 : r & 0xffff);
    std::memcpy(&h, &bits, 2);
    return to_f32(h);
  };
  for (int lane = 0; lane < 32; lane++) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 2; j++) A[g + 8 * (i & 1)][2 * t + 8 * (i >> 1) + j] = half(in[lane].a[i], j);
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) B[2 * t + 8 * i + j][g] = half(in[lane].b[i], j);
    for (int i = 0; i < 4; i++) C[g + 8 * (i >> 1)][2 * t + (i & 1)] = in[lane].c[i];
  }
  for (int lane = 0; lane < 32; lane++) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; i++) {
      const int r = g + 8 * (i >> 1), n = 2 * t + (i & 1);
      float s = 0.0f;
      for (int k = 0; k < 16; k++) s += A[r][k] * B[k][n];
      out[lane].d[i] = C[r][n] + s;
    }
  }
}
template <typename T> void mma_m16n8k16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  const MmaIn in{{a[0], a[1], a[2], a[3]}, {b0, b1}, {c[0], c[1], c[2], c[3]}};
  const MmaOut o = collective<MmaIn, MmaOut, mma_m16n8k16_combine<T>>("mma.sync.m16n8k16", 0xffffffffu, in);
  for (int i = 0; i < 4; i++) c[i] = o.d[i];
}
}  // namespace emu

// ---- runtime -----------------------------------------------------------------------------

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalState = 401,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
enum cudaDeviceAttr {
  cudaDevAttrClockRate = 13,
  cudaDevAttrMemoryClockRate = 36,
  cudaDevAttrGlobalMemoryBusWidth = 37,
};
constexpr unsigned cudaStreamNonBlocking = 1;

struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
typedef CUevent_st* cudaEvent_t;
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int major, minor;
  int multiProcessorCount;
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t e);

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t n);
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t stream = nullptr);

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
