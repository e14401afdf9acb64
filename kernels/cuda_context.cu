// CudaContext: device, stream, cuBLASLt handle, workspace and the linear-plan cache.
#include "kernels/cuda_context.h"

#include "kernels/cuda_common.cuh"

namespace clip {

CudaContext::CudaContext(int device, size_t workspace_bytes)
    : device_(device), workspace_bytes_(workspace_bytes) {
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  CLIP_CHECK(device >= 0 && device < count, "CUDA device %d does not exist (%d present)", device,
             count);
  CUDA_CHECK(cudaSetDevice(device_));
  CUDA_CHECK(cudaGetDeviceProperties(&props_, device_));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasLtCreate(&lt_));
  if (workspace_bytes_ > 0) CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

CudaContext::~CudaContext() {
  // Destructors must not throw: errors here are ignored.
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& kv : plans_) {
    LinearPlan& p = kv.second;
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
  if (workspace_) cudaFree(workspace_);
  if (lt_) cublasLtDestroy(lt_);
  if (stream_) cudaStreamDestroy(stream_);
}

LinearPlan* CudaContext::find_linear_plan(const LinearPlanKey& k) {
  auto it = plans_.find(k);
  return it == plans_.end() ? nullptr : &it->second;
}

LinearPlan& CudaContext::add_linear_plan(const LinearPlanKey& k, const LinearPlan& p) {
  auto r = plans_.emplace(k, p);
  CLIP_CHECK(r.second, "linear plan cache: duplicate key");
  return r.first->second;
}

void CudaContext::activate() const { CUDA_CHECK(cudaSetDevice(device_)); }

void CudaContext::synchronize() const { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace clip
