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

// What a cached linear plan depends on: shapes, dtype, cuBLASLt epilogue and the smallest
// pointer alignment (capped at 16 bytes) the chosen algorithm may assume.
struct LinearPlanKey {
  int64_t M = 0, N = 0, K = 0;
  int dtype = 0, epilogue = 0, align = 0;
  bool operator<(const LinearPlanKey& o) const {
    return std::tie(M, N, K, dtype, epilogue, align) <
           std::tie(o.M, o.N, o.K, o.dtype, o.epilogue, o.align);
  }
};

struct LinearPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // w, x, y (column-major view)
  cublasLtMatmulAlgo_t algo{};
  size_t workspace_bytes = 0;
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
