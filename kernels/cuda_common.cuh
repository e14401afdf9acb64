// Shared CUDA helpers for every kernel file: the checked-call macros (CUDA, cuBLAS/cuBLASLt,
// cuDNN), the launch helper that checks every kernel launch, dtype traits for
// float / __half / __nv_bfloat16, 16-byte vector packs and warp reductions.
//
// Every failing call throws clip::Error with the stringified call, file:line and the
// library's error string. Library code never exits.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "core/act.h"
#include "core/base.h"

namespace clip::cuda {

[[noreturn]] inline void check_failed(const char* lib, const char* call, const char* file, int line,
                                      const char* msg) {
  fail("%s error at %s:%d: %s failed: %s", lib, file, line, call, msg);
}

inline const char* cublas_status_string(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

}  // namespace clip::cuda

#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    cudaError_t _e = (call);                                                              \
    if (_e != cudaSuccess)                                                                \
      ::clip::cuda::check_failed("CUDA", #call, __FILE__, __LINE__, cudaGetErrorString(_e)); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                \
  do {                                                                                    \
    cublasStatus_t _s = (call);                                                           \
    if (_s != CUBLAS_STATUS_SUCCESS)                                                      \
      ::clip::cuda::check_failed("cuBLAS", #call, __FILE__, __LINE__,                     \
                                 ::clip::cuda::cublas_status_string(_s));                 \
  } while (0)

// Only where cudnn.h was included first (the library itself does not link cuDNN).
#ifdef CUDNN_MAJOR
#define CUDNN_CHECK(call)                                                                 \
  do {                                                                                    \
    cudnnStatus_t _s = (call);                                                            \
    if (_s != CUDNN_STATUS_SUCCESS)                                                       \
      ::clip::cuda::check_failed("cuDNN", #call, __FILE__, __LINE__, cudnnGetErrorString(_s)); \
  } while (0)
#endif

// Checks the most recent launch (bad configuration, missing kernel image).
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

namespace clip::cuda {

// Launches kernel<<<grid, block, smem, stream>>>(args...) and checks the launch. An empty
// grid is a no-op (a zero-size launch is an error in CUDA).
template <typename... KArgs, typename... Args>
inline void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
#ifdef CLIP_CUDA_EMU  // the CPU emulator (tests/emu): same arguments, same checks
  emu::launch(kernel, grid, block, smem, stream, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
  CUDA_LAUNCH_CHECK();
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline bool aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

// ---- dtype traits -------------------------------------------------------------------------

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<__half> { static constexpr DType value = DType::f16; };
template <> struct DTypeOf<__nv_bfloat16> { static constexpr DType value = DType::bf16; };

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Calls f(T{}) with T the C++ type of a float dtype (f32, f16, bf16); throws otherwise.
template <typename F> inline void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); break;
    case DType::f16: f(__half{}); break;
    case DType::bf16: f(__nv_bfloat16{}); break;
    default: fail("%s: dtype %s is not supported on CUDA (f32, f16, bf16)", op, dtype_name(t));
  }
}

// 16 bytes of T: 4 floats or 8 halves; loaded and stored as one int4.
template <typename T> struct alignas(16) Pack16 {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};
template <typename T> __device__ __forceinline__ Pack16<T> load16(const T* p) {
  Pack16<T> r;
  *reinterpret_cast<int4*>(&r) = *reinterpret_cast<const int4*>(p);
  return r;
}
template <typename T> __device__ __forceinline__ void store16(T* p, const Pack16<T>& r) {
  *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(&r);
}

// ---- warp reductions ----------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace clip::cuda
