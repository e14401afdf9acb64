// CudaContext: everything the CUDA backend needs that outlives one op, owned in one place
// (no globals): the device id and its properties, one non-blocking stream, the cuBLASLt
// handle, a cuBLASLt workspace, and the cache of linear-layer plans (cuBLASLt descriptors
// and the algorithm chosen by the heuristic, once per shape; see kernels/linear.cu).
//
// One context per host thread: the plan cache is not locked. This header needs the CUDA
// toolkit headers; include it only in builds with CLIP_HAVE_CUDA.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace clip {

// What a cached linear plan depends on (kernels/linear.cu): sizes, dtype, activation, whether
// it has a bias (and whether that bias is 16-byte aligned) and a residual, and the smallest
// pointer alignment (capped at 16 bytes) the chosen algorithm may assume.
struct LinearPlanKey {
  int64_t M = 0, N = 0, K = 0;
  int dtype = 0, act = 0, align = 0;
  bool bias = false, bias16 = false, residual = false;
  bool operator<(const LinearPlanKey& o) const {
    return std::tie(M, N, K, dtype, act, align, bias, bias16, residual) <
           std::tie(o.M, o.N, o.K, o.dtype, o.act, o.align, o.bias, o.bias16, o.residual);
  }
};

// How a linear layer runs: cuBLASLt's chosen algorithm (with the bias in its epilogue or not;
// then the bias + activation kernel follows), the fused GEMM + bias + activation kernel, or the
// project's own fallback GEMM where cuBLASLt has no algorithm.
struct LinearPlan {
  enum Kind { cublaslt, fused, fallback } kind = cublaslt;
  bool bias_epilogue = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // w, x, y (column-major view)
  cublasLtMatmulAlgo_t algo{};
  size_t workspace_bytes = 0;
  int candidates = 0;   // algorithms the heuristic offered
  float best_ms = 0;    // the chosen one's time, when several were timed (0: not timed)
};

class CudaContext {
 public:
  // Selects `device` for the calling thread and creates the stream, handle and workspace.
  explicit CudaContext(int device = 0, size_t workspace_bytes = size_t(32) << 20);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasLtHandle_t lt() const { return lt_; }
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  const cudaDeviceProp& props() const { return props_; }
  int num_sms() const { return props_.multiProcessorCount; }

  // The linear-plan cache: find returns null when absent; add takes ownership of the
  // descriptors (destroyed with the context) and returns the stored plan.
  LinearPlan* find_linear_plan(const LinearPlanKey& k);
  LinearPlan& add_linear_plan(const LinearPlanKey& k, const LinearPlan& p);
  size_t linear_plan_count() const { return plans_.size(); }

  // Makes this context's device current for the calling thread.
  void activate() const;
  // Waits for all work on the stream (tests and tools; the executor syncs itself).
  void synchronize() const;

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cudaDeviceProp props_{};
  std::map<LinearPlanKey, LinearPlan> plans_;
};

}  // namespace clip
