// The fused cosine top-k on the GPU for clip/search.cpp: uploads, one kernel pass, downloads.
#include "engine/search.h"

#include <memory>
#include <mutex>

#include "engine/tensor.h"
#include "kernels/cuda_context.h"
#include "kernels/kernels.h"

namespace clip {

void cosine_topk_candidates_cuda(int32_t* cand, float* cand_score, const uint16_t* q, int64_t M,
                                 const uint16_t* index, int64_t N, int64_t D, int64_t kk) {
  // One context (stream, handles) for every search of the process, made on first use; the
  // lock keeps concurrent searches from sharing its stream.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  static std::unique_ptr<CudaContext> ctx;
  if (!ctx) ctx = std::make_unique<CudaContext>(0);
  Buffer Bd((size_t)(N * D) * 2, Device::cuda), Qd((size_t)(M * D) * 2, Device::cuda);
  Buffer Id((size_t)(M * kk) * 4, Device::cuda), Sd((size_t)(M * kk) * 4, Device::cuda);
  Buffer scratch(cuda::cosine_topk_scratch_bytes(M, N, (int)kk, ctx->num_sms()), Device::cuda);
  copy_bytes(Bd.data(), Device::cuda, index, Device::cpu, (size_t)(N * D) * 2);
  copy_bytes(Qd.data(), Device::cuda, q, Device::cpu, (size_t)(M * D) * 2);
  cuda::cosine_topk_forward((int32_t*)Id.data(), (float*)Sd.data(), Qd.data(), Bd.data(), M, N, (int)D, 1.0f,
                            (int)kk, DType::f16, scratch.data(), ctx->num_sms(), ctx->stream());
  ctx->synchronize();
  copy_bytes(cand, Device::cpu, Id.data(), Device::cuda, (size_t)(M * kk) * 4);
  copy_bytes(cand_score, Device::cpu, Sd.data(), Device::cuda, (size_t)(M * kk) * 4);
}

}  // namespace clip
