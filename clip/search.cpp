// Cosine top-k search over an embedding index: the fused GPU kernel (engine/search.h) for
// candidates on CUDA, made exact here; the blocked CPU top-k otherwise.
#include <algorithm>
#include <cmath>
#include <vector>

#include "clip/clip.h"
#include "engine/cpu_ops.h"
#include "engine/tensor.h"
#ifdef CLIP_HAVE_CUDA
#include "engine/search.h"
#endif

namespace clip {

std::vector<int32_t> rows_without_direction(const float* x, int64_t N, int64_t D) {
  std::vector<int32_t> rows;
  for (int64_t n = 0; n < N; n++) {
    double ss = 0;  // as l2_normalize_cpu
    for (int64_t c = 0; c < D; c++) ss += (double)x[n * D + c] * x[n * D + c];
    const float norm = (float)std::sqrt(ss);
    if (ss != 0 && (!(norm >= 1e-12f) || std::isinf(norm))) rows.push_back((int32_t)n);
  }
  return rows;
}

int64_t cosine_topk_refine(int32_t* idx, float* score, const float* queries, int64_t M, const float* index,
                           int64_t N, int64_t D, int64_t k, const int32_t* cand, const float* cand_score, int64_t kk,
                           const std::vector<int32_t>& exact_rows, double eps) {
  CLIP_CHECK(k >= 1 && k <= kk && kk <= N, "top-k refine: need 1 <= k (%lld) <= candidates (%lld) <= N (%lld)",
             (long long)k, (long long)kk, (long long)N);
  std::vector<float> qn((size_t)(M * D));
  l2_normalize_cpu(qn.data(), queries, M, D);
  const std::vector<int32_t> bad_queries = rows_without_direction(queries, M, D);
  std::vector<char> on_cpu((size_t)M, 0);
  for (int32_t m : bad_queries) on_cpu[(size_t)m] = 1;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t m = 0; m < M; m++) {
    if (on_cpu[(size_t)m]) continue;
    const int32_t* c = cand + m * kk;
    const float last = cand_score[m * kk + kk - 1];
    bool valid = std::isfinite(last);
    for (int64_t i = 0; i < kk; i++) valid = valid && c[i] >= 0 && c[i] < N;
    if (!valid) {  // e.g. a query whose f16 copy is not finite: no candidate ever qualified
      on_cpu[(size_t)m] = 1;
      continue;
    }
    // The exact score of a row: the cosine of the two L2-normalized f32 rows (as
    // cosine_topk_cpu normalizes them), summed in double.
    auto exact = [&](int32_t j) {
      const float* b = index + (int64_t)j * D;
      double ss = 0, dot = 0;
      for (int64_t e = 0; e < D; e++) ss += (double)b[e] * b[e];
      const float inv = 1.0f / std::max((float)std::sqrt(ss), 1e-12f);
      for (int64_t e = 0; e < D; e++) dot += (double)qn[(size_t)(m * D + e)] * (double)(b[e] * inv);
      const float s = (float)dot;
      return std::isnan(s) ? -INFINITY : s;  // a NaN row ranks last (and sorts)
    };
    std::vector<std::pair<float, int32_t>> hits;
    for (int64_t i = 0; i < kk; i++) hits.push_back({exact(c[i]), c[i]});
    for (int32_t j : exact_rows)
      if (std::find(c, c + kk, j) == c + kk) hits.push_back({exact(j), j});
    std::sort(hits.begin(), hits.end(), [](auto& a, auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    // Any other row scored at most `last` approximately, so at most last + eps exactly; the
    // other eps covers the f32 rounding of the exact scores. Rows the approximation cannot
    // vouch for are among the hits.
    if (kk < N && !((double)hits[(size_t)(k - 1)].first > (double)last + 2 * eps)) {
      on_cpu[(size_t)m] = 1;
      continue;
    }
    for (int64_t i = 0; i < k; i++) {
      idx[m * k + i] = hits[(size_t)i].second;
      score[m * k + i] = hits[(size_t)i].first;
    }
  }
  // The queries not settled: one batched CPU search.
  std::vector<int64_t> rest;
  for (int64_t m = 0; m < M; m++)
    if (on_cpu[(size_t)m]) rest.push_back(m);
  if (rest.empty()) return 0;
  const int64_t R = (int64_t)rest.size();
  std::vector<float> rq((size_t)(R * D)), rs((size_t)(R * k));
  std::vector<int32_t> ri((size_t)(R * k));
  for (int64_t r = 0; r < R; r++) std::copy_n(queries + rest[(size_t)r] * D, D, rq.begin() + r * D);
  cosine_topk_cpu(ri.data(), rs.data(), rq.data(), index, R, N, D, 1.0f, k);
  for (int64_t r = 0; r < R; r++) {
    std::copy_n(ri.begin() + r * k, k, idx + rest[(size_t)r] * k);
    std::copy_n(rs.begin() + r * k, k, score + rest[(size_t)r] * k);
  }
  return R;
}

#ifdef CLIP_HAVE_CUDA
// The whole index in f16 on the GPU, one fused pass (the M x N score matrix is never
// written) for the 32 best candidates of each query, which cosine_topk_refine makes exact.
// Rows are L2-normalized before they are rounded, so no scale overflows or underflows f16:
// each rounding then moves a unit vector by at most 2^-11 of its length, and a cosine by at
// most ~2^-10; the f32 sums add up to (2D + 16) * 2^-24 more. Rows too short to normalize
// (or not finite) are rescored exactly for every query.
static void cosine_topk_cuda(int32_t* idx, float* score, const float* q, int64_t M, const float* index,
                             int64_t N, int64_t D, int64_t k) {
  const int64_t kk = std::min<int64_t>(N, 32);
  const double eps = std::ldexp(1.0, -9) + (double)(2 * D + 16) * std::ldexp(1.0, -24);
  // Normalized and rounded a block at a time (while the block is in cache, its rows without
  // direction are listed too).
  auto to_f16 = [D](std::vector<uint16_t>& out, const float* x, int64_t rows) {
    out.resize((size_t)(rows * D));
    std::vector<float> block;
    std::vector<int32_t> odd;
    for (int64_t r0 = 0; r0 < rows; r0 += 4096) {
      const int64_t n = std::min<int64_t>(4096, rows - r0);
      block.resize((size_t)(n * D));
      l2_normalize_cpu(block.data(), x + r0 * D, n, D);
      convert_cpu(out.data() + r0 * D, DType::f16, block.data(), DType::f32, n * D);
      for (int32_t r : rows_without_direction(x + r0 * D, n, D)) odd.push_back((int32_t)r0 + r);
    }
    return odd;
  };
  std::vector<uint16_t> h, qh;
  const std::vector<int32_t> odd_rows = to_f16(h, index, N);
  to_f16(qh, q, M);  // cosine_topk_refine sends queries without direction to the CPU
  std::vector<int32_t> cand((size_t)(M * kk));
  std::vector<float> cand_score((size_t)(M * kk));
  cosine_topk_candidates_cuda(cand.data(), cand_score.data(), qh.data(), M, h.data(), N, D, kk);
  cosine_topk_refine(idx, score, q, M, index, N, D, k, cand.data(), cand_score.data(), kk, odd_rows, eps);
}
#endif

void cosine_topk(int32_t* idx, float* score, const float* queries, int64_t M, const float* index, int64_t N,
                 int64_t D, int64_t k, Device device) {
  CLIP_CHECK(k >= 1 && k <= N, "top-k: k = %lld must be in [1, %lld]", (long long)k, (long long)N);
#ifdef CLIP_HAVE_CUDA
  // 32 candidates leave a margin of 16 or more; the kernel takes rows of up to 4096.
  if (device == Device::cuda && k <= 16 && D <= 4096) {
    cosine_topk_cuda(idx, score, queries, M, index, N, D, k);
    return;
  }
#else
  (void)device;
#endif
  cosine_topk_cpu(idx, score, queries, index, M, N, D, 1.0f, k);
}

}  // namespace clip
