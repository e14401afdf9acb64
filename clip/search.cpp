// Cosine top-k search over an embedding index: the fused GPU kernel (kernels/cosine_topk.cu)
// on CUDA, the blocked CPU top-k otherwise.
#include <algorithm>
#include <vector>

#include "clip/clip.h"
#ifdef CLIP_HAVE_CUDA
#include "engine/cuda_context.h"
#include "kernels/kernels.h"
#endif

namespace clip {

#ifdef CLIP_HAVE_CUDA
// The whole index in f16 on the GPU, one fused pass (the M x N score matrix is never
// written), then the k hits of each query rescored exactly in f32 on the host and re-sorted.
static void cosine_topk_cuda(int32_t* idx, float* score, const float* q, int64_t M, const float* index,
                             int64_t N, int64_t D, int64_t k) {
  CudaContext ctx(0);
  std::vector<uint16_t> h((size_t)(N * D)), qh((size_t)(M * D));
  convert_cpu(h.data(), DType::f16, index, DType::f32, N * D);
  convert_cpu(qh.data(), DType::f16, q, DType::f32, M * D);
  Buffer Bd((size_t)(N * D) * 2, Device::cuda), Qd((size_t)(M * D) * 2, Device::cuda);
  Buffer Id((size_t)(M * k) * 4, Device::cuda), Sd((size_t)(M * k) * 4, Device::cuda);
  Buffer scratch(cuda::cosine_topk_scratch_bytes(M, N, (int)k, ctx.num_sms()), Device::cuda);
  copy_bytes(Bd.data(), Device::cuda, h.data(), Device::cpu, h.size() * 2);
  copy_bytes(Qd.data(), Device::cuda, qh.data(), Device::cpu, qh.size() * 2);
  cuda::cosine_topk_forward((int32_t*)Id.data(), (float*)Sd.data(), Qd.data(), Bd.data(), M, N, (int)D, 1.0f,
                            (int)k, DType::f16, scratch.data(), ctx.num_sms(), ctx.stream());
  ctx.synchronize();
  copy_bytes(idx, Device::cpu, Id.data(), Device::cuda, (size_t)(M * k) * 4);
  for (int64_t m = 0; m < M; m++) {
    std::vector<std::pair<float, int32_t>> hits;
    for (int64_t i = 0; i < k; i++) {
      int32_t j = idx[m * k + i];
      float s;
      cosine_sim_cpu(&s, q + m * D, index + (int64_t)j * D, 1, 1, D, 1.0f);
      hits.push_back({s, j});
    }
    std::stable_sort(hits.begin(), hits.end(), [](auto& a, auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (int64_t i = 0; i < k; i++) {
      idx[m * k + i] = hits[(size_t)i].second;
      score[m * k + i] = hits[(size_t)i].first;
    }
  }
}
#endif

void cosine_topk(int32_t* idx, float* score, const float* queries, int64_t M, const float* index, int64_t N,
                 int64_t D, int64_t k, Device device) {
  CLIP_CHECK(k >= 1 && k <= N, "top-k: k = %lld must be in [1, %lld]", (long long)k, (long long)N);
#ifdef CLIP_HAVE_CUDA
  if (device == Device::cuda && k <= 32) {
    cosine_topk_cuda(idx, score, queries, M, index, N, D, k);
    return;
  }
#else
  (void)device;
#endif
  cosine_topk_cpu(idx, score, queries, index, M, N, D, 1.0f, k);
}

}  // namespace clip
