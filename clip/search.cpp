// Cosine top-k search over an embedding index: the fused GPU kernel (kernels/cosine_topk.cu)
// on CUDA, the blocked CPU top-k otherwise.
#include <algorithm>
#include <cmath>
#include <vector>

#include "clip/clip.h"
#ifdef CLIP_HAVE_CUDA
#include "engine/cuda_context.h"
#include "kernels/kernels.h"
#endif

namespace clip {

bool cosine_topk_refine(int32_t* idx, float* score, const float* query, const float* index, int64_t N, int64_t D,
                        int64_t k, const int32_t* cand, const float* cand_score, int64_t kk, double eps) {
  CLIP_CHECK(k >= 1 && k <= kk && kk <= N, "top-k refine: need 1 <= k (%lld) <= candidates (%lld) <= N (%lld)",
             (long long)k, (long long)kk, (long long)N);
  std::vector<std::pair<float, int32_t>> hits;
  for (int64_t i = 0; i < kk; i++) {
    const int32_t j = cand[i];
    CLIP_CHECK(j >= 0 && j < N, "top-k refine: candidate %d is outside the index [0, %lld)", j, (long long)N);
    float s;
    cosine_sim_cpu(&s, query, index + (int64_t)j * D, 1, 1, D, 1.0f);
    hits.push_back({std::isnan(s) ? -INFINITY : s, j});  // a NaN row ranks last (and sorts)
  }
  std::sort(hits.begin(), hits.end(), [](auto& a, auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  // Any row that is not a candidate scored at most cand_score[kk - 1] approximately, so at
  // most that + eps exactly; the other eps covers the f32 rounding of both exact scores.
  if (kk < N && !((double)hits[(size_t)(k - 1)].first > (double)cand_score[kk - 1] + 2 * eps)) {
    cosine_topk_cpu(idx, score, query, index, 1, N, D, 1.0f, k);
    return false;
  }
  for (int64_t i = 0; i < k; i++) {
    idx[i] = hits[(size_t)i].second;
    score[i] = hits[(size_t)i].first;
  }
  return true;
}

#ifdef CLIP_HAVE_CUDA
// The whole index in f16 on the GPU, one fused pass (the M x N score matrix is never
// written) for the 32 best candidates of each query, which cosine_topk_refine makes exact.
// Rows are L2-normalized before they are rounded, so no scale overflows or underflows f16:
// each rounding then moves a unit vector by at most 2^-11 of its length, and a cosine by at
// most ~2^-10; the f32 sums add up to (2D + 16) * 2^-24 more.
static void cosine_topk_cuda(int32_t* idx, float* score, const float* q, int64_t M, const float* index,
                             int64_t N, int64_t D, int64_t k) {
  const int64_t kk = std::min<int64_t>(N, 32);
  const double eps = std::ldexp(1.0, -9) + (double)(2 * D + 16) * std::ldexp(1.0, -24);
  CudaContext ctx(0);
  auto to_f16 = [D](std::vector<uint16_t>& out, const float* x, int64_t rows) {
    out.resize((size_t)(rows * D));
    std::vector<float> block;
    for (int64_t r0 = 0; r0 < rows; r0 += 4096) {  // normalized a block at a time
      const int64_t n = std::min<int64_t>(4096, rows - r0);
      block.resize((size_t)(n * D));
      l2_normalize_cpu(block.data(), x + r0 * D, n, D);
      convert_cpu(out.data() + r0 * D, DType::f16, block.data(), DType::f32, n * D);
    }
  };
  std::vector<uint16_t> h, qh;
  to_f16(h, index, N);
  to_f16(qh, q, M);
  Buffer Bd((size_t)(N * D) * 2, Device::cuda), Qd((size_t)(M * D) * 2, Device::cuda);
  Buffer Id((size_t)(M * kk) * 4, Device::cuda), Sd((size_t)(M * kk) * 4, Device::cuda);
  Buffer scratch(cuda::cosine_topk_scratch_bytes(M, N, (int)kk, ctx.num_sms()), Device::cuda);
  copy_bytes(Bd.data(), Device::cuda, h.data(), Device::cpu, h.size() * 2);
  copy_bytes(Qd.data(), Device::cuda, qh.data(), Device::cpu, qh.size() * 2);
  cuda::cosine_topk_forward((int32_t*)Id.data(), (float*)Sd.data(), Qd.data(), Bd.data(), M, N, (int)D, 1.0f,
                            (int)kk, DType::f16, scratch.data(), ctx.num_sms(), ctx.stream());
  ctx.synchronize();
  std::vector<int32_t> cand((size_t)(M * kk));
  std::vector<float> cand_score((size_t)(M * kk));
  copy_bytes(cand.data(), Device::cpu, Id.data(), Device::cuda, cand.size() * 4);
  copy_bytes(cand_score.data(), Device::cpu, Sd.data(), Device::cuda, cand_score.size() * 4);
  for (int64_t m = 0; m < M; m++)
    cosine_topk_refine(idx + m * k, score + m * k, q + m * D, index, N, D, k, cand.data() + m * kk,
                       cand_score.data() + m * kk, kk, eps);
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
